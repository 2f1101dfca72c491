//! The server's demuxers, compiled alone from their source files so the fuzz build
//! needs neither FFmpeg nor the AWS SDK: `ingest::demux` here is `src/ingest/demux/`.

#[allow(dead_code)]
pub mod ingest;

use ingest::demux::Demuxer;

/// Feeds `data` to `demuxer` in pieces whose sizes come from the data itself (so the
/// fuzzer explores chunk boundaries too), ending segments where it says, and drains
/// every sample. Nothing may panic; errors are fine.
pub fn drive(demuxer: &mut dyn Demuxer, data: &[u8]) {
    let Some((&control, mut rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(control % 64) * 37 + 1;
    let end_segments = control & 0x80 != 0;
    while !rest.is_empty() {
        let n = chunk.min(rest.len());
        let _ = demuxer.push(&rest[..n]);
        rest = &rest[n..];
        while demuxer.next_sample().is_some() {}
        if end_segments {
            let _ = demuxer.end_of_segment();
        }
    }
    let _ = demuxer.end_of_segment();
    while demuxer.next_sample().is_some() {}
    let _ = demuxer.info();
}
