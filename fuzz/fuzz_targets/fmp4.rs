//! Fuzzes the fmp4 demuxer: any bytes, in any chunking, must never panic.
#![no_main]

use kvs_infer_fuzz::ingest::demux::mp4::Mp4Demuxer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    kvs_infer_fuzz::drive(&mut Mp4Demuxer::new(), data);
});
