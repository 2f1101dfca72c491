//! Fuzzes the mkv demuxer: any bytes, in any chunking, must never panic.
#![no_main]

use kvs_infer_fuzz::ingest::demux::mkv::MkvDemuxer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    kvs_infer_fuzz::drive(&mut MkvDemuxer::new(), data);
});
