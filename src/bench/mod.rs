//! `kvs-infer bench`: capacity figures for this host, measured on the real pipeline.
//!
//! [`pipeline`]: per model, the raw engine at batch 1…32, the whole pipeline with C
//! cameras unthrottled and its ratio to the raw engine, batched versus batch-1
//! scheduling, decode cost per stream, and [`capacity`]: the most cameras at F fps
//! within a latency budget and a drop rate below 1%, with RSS per camera.
//! [`alpr`]: the OCR stage alone and the two-stage ALPR pipeline, batched and not.
//! [`publishers`]: events/s each AWS sink sustains against an endpoint (moto), and
//! Kinesis calls per 1,000 events.

pub mod alpr;
pub mod capacity;
pub mod pipeline;
pub mod publishers;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::config::{parse_str, Format};
use crate::decode::ffmpeg::FfmpegDecoder;
use crate::decode::{Decoder, Frame, FrameSelector};
use crate::engine::onnx::OrtEngine;
use crate::engine::{BatchOutput, Engine, ModelKind};
use crate::ingest::file::FileSource;
use crate::ingest::FrameSource;
use crate::pipeline::{Options, Probe};
use crate::telemetry::Telemetry;

pub use alpr::{alpr_table, run_alpr, AlprArgs, AlprReport};
pub use pipeline::{run, table, BenchArgs, Report};
pub use publishers::{publishers_table, run_publishers, PublisherArgs, PublisherReport};

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
#[error("bench: {0}")]
pub struct BenchError(pub String);

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

/// One engine throughput figure: images/s with every instance busy, and ms per batch.
pub(crate) struct Throughput {
    pub images_per_s: f64,
    pub batch_ms: f64,
}

/// How to run an engine throughput measurement.
#[derive(Clone, Copy)]
pub(crate) struct EngineRun<'a> {
    pub model: &'a Path,
    /// Where the engines run.
    pub accel: &'a crate::engine::accel::Accel,
    pub kind: ModelKind,
    pub instances: usize,
    pub threads: usize,
    pub batch: usize,
    pub warmup: Duration,
    pub measure: Duration,
}

/// A batch input for `spec`: one slot per item, filled by `fill(item, width, height,
/// slot)` (a letterbox, an OCR crop).
pub(crate) fn fill_batch<T>(
    items: &[T],
    spec: &crate::engine::ModelSpec,
    fill: impl Fn(&T, u32, u32, &mut [f32]),
) -> Vec<f32> {
    let slot = 3 * (spec.width * spec.height) as usize;
    let mut input = vec![0.0; slot * items.len()];
    for (item, out) in items.iter().zip(input.chunks_exact_mut(slot)) {
        fill(item, spec.width, spec.height, out);
    }
    input
}

/// Runs `instances` engines of `model` on the same prepared input (a batch of
/// `batch`, made by `prepare` for the model's input size) back to back for `measure`
/// after `warmup`.
pub(crate) fn engine_throughput(
    run: &EngineRun<'_>,
    prepare: impl Fn(&crate::engine::ModelSpec) -> Vec<f32>,
) -> Result<Throughput, BenchError> {
    let EngineRun {
        model,
        accel,
        kind,
        instances,
        threads,
        batch,
        warmup,
        measure,
    } = *run;
    let mut engines = Vec::new();
    for _ in 0..instances {
        engines.push(
            OrtEngine::load_with(model, threads, kind, accel)
                .map_err(|e| BenchError(e.to_string()))?,
        );
    }
    let input = Arc::new(prepare(engines[0].spec()));
    let handles: Vec<_> = engines
        .into_iter()
        .map(|mut engine| {
            let input = input.clone();
            std::thread::spawn(move || -> Result<(u64, Duration), String> {
                let mut output = BatchOutput::default();
                let start = Instant::now();
                while start.elapsed() < warmup {
                    engine
                        .run(&input, batch, &mut output)
                        .map_err(|e| e.to_string())?;
                }
                let (mut runs, begin) = (0u64, Instant::now());
                while begin.elapsed() < measure {
                    engine
                        .run(&input, batch, &mut output)
                        .map_err(|e| e.to_string())?;
                    runs += 1;
                }
                Ok((runs, begin.elapsed()))
            })
        })
        .collect();
    let (mut images_per_s, mut batch_ms) = (0.0, 0.0);
    let n = handles.len() as f64;
    for handle in handles {
        let (runs, took) = handle
            .join()
            .map_err(|_| BenchError("an engine thread panicked".into()))?
            .map_err(BenchError)?;
        images_per_s += (runs as usize * batch) as f64 / took.as_secs_f64();
        batch_ms += took.as_secs_f64() * 1000.0 / runs.max(1) as f64 / n;
    }
    Ok(Throughput {
        images_per_s,
        batch_ms,
    })
}

/// What the pipeline did during one measured window.
pub(crate) struct Window {
    /// Frames run through a model per second.
    pub frames_per_s: f64,
    /// OCR reads per second.
    pub reads_per_s: f64,
    /// Frames dropped before inference / (dropped + run).
    pub drop_rate: f64,
    /// Frame → detections latencies, sorted, ms.
    pub latencies_ms: Vec<f32>,
    /// Resident memory at the end of the window, MiB.
    pub rss_mib: f64,
}

impl Window {
    /// The `p` quantile (0..=1) of the latencies.
    pub fn latency(&self, p: f64) -> f64 {
        if self.latencies_ms.is_empty() {
            return f64::NAN;
        }
        let i = ((self.latencies_ms.len() - 1) as f64 * p).round() as usize;
        f64::from(self.latencies_ms[i])
    }
}

/// Sums every sample of a counter family in Prometheus text.
fn counter_sum(text: &str, family: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(family) && l[family.len()..].starts_with('{'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Runs the server pipeline on `config` (TOML) for `warmup`, then measures for
/// `seconds`, then shuts it down.
pub(crate) fn measure(config: &str, warmup: f64, seconds: f64) -> Result<Window, BenchError> {
    let config = parse_str(config, Format::Toml).map_err(|e| BenchError(format!("{e:?}")))?;
    let probe = Arc::new(Probe::default());
    let telemetry = Arc::new(Telemetry::new().map_err(|e| BenchError(e.to_string()))?);
    let options = Options {
        http_addr: "127.0.0.1:0".parse().expect("a literal address"),
        probe: Some(probe.clone()),
        shard: crate::shard::Shard::default(),
        telemetry: Some(telemetry.clone()),
    };
    let stop = CancellationToken::new();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| BenchError(e.to_string()))?;
    let server = runtime.spawn(crate::pipeline::run(config, options, stop.clone()));
    let counts = || -> (f64, f64) {
        let text = telemetry.render().unwrap_or_default();
        (
            counter_sum(&text, crate::telemetry::names::INFER_FRAMES_TOTAL),
            counter_sum(&text, crate::telemetry::names::FRAMES_DROPPED_TOTAL),
        )
    };
    std::thread::sleep(Duration::from_secs_f64(warmup));
    probe.take_latencies();
    let (r0, (run0, dropped0), t0) = (probe.reads(), counts(), Instant::now());
    std::thread::sleep(Duration::from_secs_f64(seconds));
    let (r1, (run1, dropped1), took) = (probe.reads(), counts(), t0.elapsed().as_secs_f64());
    let mut latencies_ms = probe.take_latencies();
    let rss_mib = rss_mib("VmRSS:");
    stop.cancel();
    runtime
        .block_on(server)
        .map_err(|e| BenchError(e.to_string()))?
        .map_err(|e| BenchError(e.to_string()))?;
    latencies_ms.sort_by(f32::total_cmp);
    let (ran, dropped) = (run1 - run0, dropped1 - dropped0);
    Ok(Window {
        frames_per_s: ran / took,
        reads_per_s: (r1 - r0) as f64 / took,
        drop_rate: if ran + dropped > 0.0 {
            dropped / (ran + dropped)
        } else {
            0.0
        },
        latencies_ms,
        rss_mib,
    })
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

/// A memory figure of this process from `/proc/self/status` (`VmRSS:` now, `VmHWM:`
/// peak), MiB.
pub(crate) fn rss_mib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_sum_across_labels_but_not_other_families() {
        let text = "infer_frames_total{camera_id=\"a\"} 3\ninfer_frames_total{camera_id=\"b\"} 4\ninfer_frames_totally{x=\"1\"} 9\n";
        assert_eq!(counter_sum(text, "infer_frames_total"), 7.0);
    }

    #[test]
    fn quantiles_pick_from_sorted_latencies() {
        let w = Window {
            frames_per_s: 0.0,
            reads_per_s: 0.0,
            drop_rate: 0.0,
            latencies_ms: (1..=100).map(|v| v as f32).collect(),
            rss_mib: 0.0,
        };
        assert_eq!(w.latency(0.5), 51.0);
        assert_eq!(w.latency(0.99), 99.0);
    }

    #[test]
    fn batches_are_filled_slot_by_slot_at_the_models_size() {
        let spec = crate::engine::ModelSpec {
            kind: crate::engine::ModelKind::Detector,
            path: "m.onnx".into(),
            input_name: "images".into(),
            width: 2,
            height: 1,
            max_batch: None,
            names: Vec::new(),
            random_weights: false,
        };
        let input = fill_batch(&[1.0f32, 2.0], &spec, |v, w, h, slot| {
            assert_eq!((w, h, slot.len()), (2, 1, 6));
            slot.fill(*v);
        });
        assert_eq!(
            input,
            [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0]
        );
    }
}
