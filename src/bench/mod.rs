//! `kvs-infer bench`: capacity figures for this host, measured on the real pipeline.
//!
//! [`pipeline`]: the raw engine against the whole pipeline with C cameras, in one run.
//! [`alpr`]: the OCR stage alone and the two-stage ALPR pipeline, batched and not.
//! [`publishers`]: events/s each AWS sink sustains against an endpoint (moto), and
//! Kinesis calls per 1,000 events.

pub mod alpr;
pub mod pipeline;
pub mod publishers;

use std::path::Path;
use std::sync::Arc;

use crate::decode::ffmpeg::FfmpegDecoder;
use crate::decode::{Decoder, Frame, FrameSelector};
use crate::ingest::file::FileSource;
use crate::ingest::FrameSource;

pub use alpr::{alpr_table, run_alpr, AlprArgs, AlprReport};
pub use pipeline::{run, table, BenchArgs, PipelineRow, RawRow, Report};
pub use publishers::{publishers_table, run_publishers, PublisherArgs, PublisherReport};

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
#[error("bench: {0}")]
pub struct BenchError(String);

pub(crate) fn progress(text: &str) {
    eprintln!("[bench] {text}");
}

/// `count` distinct frames from the clip, one every 200 ms.
pub(crate) fn sample_frames(clip: &Path, count: usize) -> Result<Vec<Arc<Frame>>, BenchError> {
    let err = |e: String| BenchError(format!("{}: {e}", clip.display()));
    let mut source = FileSource::open(clip, true, false).map_err(|e| err(e.to_string()))?;
    let mut decoder = FfmpegDecoder::new(source.info(), FrameSelector::new(5.0), 1)
        .map_err(|e| err(e.to_string()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| err(e.to_string()))?;
    let mut out = Vec::new();
    while out.len() < count {
        let unit = runtime
            .block_on(source.next_access_unit())
            .map_err(|e| err(e.to_string()))?
            .ok_or_else(|| err("no frames".into()))?;
        out.extend(
            decoder
                .decode(&unit)
                .map_err(|e| err(e.to_string()))?
                .into_iter()
                .map(Arc::new),
        );
    }
    out.truncate(count);
    Ok(out)
}

pub(crate) fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cpu}, {cores} cores")
}

pub(crate) fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}
