//! Fuzzes the ts demuxer: any bytes, in any chunking, must never panic.
#![no_main]

use kvs_infer_fuzz::ingest::demux::ts::TsDemuxer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    kvs_infer_fuzz::drive(&mut TsDemuxer::new(), data);
});
