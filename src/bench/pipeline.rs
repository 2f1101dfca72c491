//! The pipeline benchmark: the real pipeline against the raw engine, in one run.
//!
//! Raw engine: each engine instance (the same count and threads the server would use)
//! runs pre-letterboxed batches of real frames back to back; images/s is the ceiling.
//! Pipeline: the real server pipeline (file sources looping unthrottled, libavcodec,
//! scheduler, engine workers with preprocessing, YOLO decoding, detectors) with C
//! cameras; frames/s through it, its ratio to the raw engine at the same batch size,
//! and exact p50/p99 frame→detections latency. The detector is filtered to a class the
//! clip does not contain, so no events are published: publishing cost is not part of
//! this figure. Peak RSS comes from the kernel (`VmHWM`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::{machine, peak_rss_mib, progress, sample_frames, BenchError};
use crate::config::{parse_str, EngineConfig, Format};
use crate::decode::Frame;
use crate::engine::onnx::OrtEngine;
use crate::engine::{BatchOutput, Engine, ModelKind};
use crate::pipeline::models::engine_shape;
use crate::pipeline::{self, Options, Probe};
use crate::preprocess::cpu::letterbox_into;

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchArgs {
    /// The ONNX model.
    pub model: PathBuf,
    /// The clip every camera reads.
    pub clip: PathBuf,
    /// Camera counts to run the pipeline with.
    pub cameras: Vec<usize>,
    /// Largest batch.
    pub max_batch: usize,
    /// Measured seconds per figure.
    pub seconds: f64,
    /// Unmeasured seconds before each figure.
    pub warmup: f64,
}

/// Raw engine throughput at one batch size.
#[derive(Debug, Clone, Serialize)]
pub struct RawRow {
    /// Images per batch.
    pub batch: usize,
    /// Images per second over all instances.
    pub images_per_s: f64,
    /// Mean time of one batch on one instance.
    pub batch_ms: f64,
}

/// Pipeline throughput with C cameras.
#[derive(Debug, Clone, Serialize)]
pub struct PipelineRow {
    /// Cameras.
    pub cameras: usize,
    /// Batch size the scheduler formed at most.
    pub batch: usize,
    /// Frames per second through the whole pipeline.
    pub frames_per_s: f64,
    /// The raw engine at the same batch size.
    pub raw_images_per_s: f64,
    /// frames_per_s / raw_images_per_s.
    pub ratio: f64,
    /// Median frame→detections latency.
    pub latency_p50_ms: f64,
    /// 99th percentile frame→detections latency.
    pub latency_p99_ms: f64,
}

/// Everything one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// CPU model and core count.
    pub machine: String,
    /// Model file.
    pub model: String,
    /// Backend.
    pub backend: &'static str,
    /// Engine instances.
    pub instances: usize,
    /// Threads per instance.
    pub intra_threads: usize,
    /// Raw engine figures.
    pub raw: Vec<RawRow>,
    /// Pipeline figures.
    pub pipeline: Vec<PipelineRow>,
    /// Peak resident memory of the process, MiB.
    pub peak_rss_mib: f64,
}

/// Runs every measurement and returns the report.
pub fn run(args: &BenchArgs) -> Result<Report, BenchError> {
    let (instances, threads) = engine_shape(&EngineConfig::default());
    let frames = sample_frames(&args.clip, args.max_batch)?;
    let mut batches: Vec<usize> = args
        .cameras
        .iter()
        .map(|&c| c.min(args.max_batch).max(1))
        .collect();
    batches.sort_unstable();
    batches.dedup();

    let mut raw = Vec::new();
    for &batch in &batches {
        progress(&format!(
            "raw engine, batch {batch}, {instances} instance(s) × {threads} thread(s)…"
        ));
        raw.push(raw_engine(args, &frames[..batch], instances, threads)?);
    }
    let mut rows = Vec::new();
    for &cameras in &args.cameras {
        let batch = cameras.min(args.max_batch).max(1);
        progress(&format!("pipeline, {cameras} camera(s), batch ≤ {batch}…"));
        let (fps, p50, p99) = pipeline_run(args, cameras, batch)?;
        let raw_ips = raw
            .iter()
            .find(|r| r.batch == batch)
            .map_or(f64::NAN, |r| r.images_per_s);
        rows.push(PipelineRow {
            cameras,
            batch,
            frames_per_s: fps,
            raw_images_per_s: raw_ips,
            ratio: fps / raw_ips,
            latency_p50_ms: p50,
            latency_p99_ms: p99,
        });
    }
    Ok(Report {
        machine: machine(),
        model: args.model.display().to_string(),
        backend: "cpu",
        instances,
        intra_threads: threads,
        raw,
        pipeline: rows,
        peak_rss_mib: peak_rss_mib(),
    })
}

fn raw_engine(
    args: &BenchArgs,
    frames: &[Arc<Frame>],
    instances: usize,
    threads: usize,
) -> Result<RawRow, BenchError> {
    let batch = frames.len();
    let mut engines = Vec::new();
    for _ in 0..instances {
        engines.push(
            OrtEngine::load(&args.model, threads, ModelKind::Detector)
                .map_err(|e| BenchError(e.to_string()))?,
        );
    }
    let spec = engines[0].spec().clone();
    let slot = 3 * (spec.width * spec.height) as usize;
    let mut input = vec![0.0f32; slot * batch];
    for (k, frame) in frames.iter().enumerate() {
        letterbox_into(
            frame,
            spec.width,
            spec.height,
            &mut input[k * slot..(k + 1) * slot],
        );
    }
    let input = Arc::new(input);
    let warmup = Duration::from_secs_f64(args.warmup);
    let measure = Duration::from_secs_f64(args.seconds);
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
    let mut images_per_s = 0.0;
    let mut batch_ms = Vec::new();
    for handle in handles {
        let (runs, took) = handle
            .join()
            .map_err(|_| BenchError("an engine thread panicked".into()))?
            .map_err(BenchError)?;
        images_per_s += (runs as usize * batch) as f64 / took.as_secs_f64();
        batch_ms.push(took.as_secs_f64() * 1000.0 / runs.max(1) as f64);
    }
    Ok(RawRow {
        batch,
        images_per_s,
        batch_ms: batch_ms.iter().sum::<f64>() / batch_ms.len() as f64,
    })
}

/// Runs the server pipeline with `cameras` unthrottled file cameras; returns frames/s
/// and p50/p99 latency over the measured window.
fn pipeline_run(
    args: &BenchArgs,
    cameras: usize,
    batch: usize,
) -> Result<(f64, f64, f64), BenchError> {
    let mut text = format!(
        "[scheduler]\nmax_batch_size = {batch}\npreferred_batch_size = {batch}\nmax_queue_delay_ms = 50\nmax_staleness_ms = 60000\n[engine]\nbackend = \"cpu\"\n"
    );
    for c in 0..cameras {
        text.push_str(&format!(
            "[cameras.bench_{c}]\nfps_target = 120\nfile = {{ path = {clip:?}, loop = true, realtime = false }}\n\
             detectors = [{{ type = \"yolo\", params = {{ model_path = {model:?}, classes = [\"toothbrush\"] }} }}]\n",
            clip = args.clip.display().to_string(),
            model = args.model.display().to_string(),
        ));
    }
    let config = parse_str(&text, Format::Toml).map_err(|e| BenchError(format!("{e:?}")))?;
    let probe = Arc::new(Probe::default());
    let options = Options {
        http_addr: "127.0.0.1:0".parse().expect("a literal address"),
        probe: Some(probe.clone()),
        shard: crate::shard::Shard::default(),
    };
    let stop = CancellationToken::new();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| BenchError(e.to_string()))?;
    let server = runtime.spawn(pipeline::run(config, options, stop.clone()));
    std::thread::sleep(Duration::from_secs_f64(args.warmup));
    probe.take_latencies();
    let (f0, t0) = (probe.frames(), Instant::now());
    std::thread::sleep(Duration::from_secs_f64(args.seconds));
    let (f1, took) = (probe.frames(), t0.elapsed());
    let mut latencies = probe.take_latencies();
    stop.cancel();
    runtime
        .block_on(server)
        .map_err(|e| BenchError(e.to_string()))?
        .map_err(|e| BenchError(e.to_string()))?;
    if latencies.is_empty() {
        return Err(BenchError("the pipeline processed no frame".into()));
    }
    latencies.sort_by(f32::total_cmp);
    let pct = |p: f64| f64::from(latencies[((latencies.len() - 1) as f64 * p).round() as usize]);
    Ok(((f1 - f0) as f64 / took.as_secs_f64(), pct(0.5), pct(0.99)))
}

/// The report as a human table.
pub fn table(report: &Report) -> String {
    let mut out = format!(
        "kvs-infer bench: {} on {} ({} backend, {} instance(s) × {} thread(s))\n\n",
        report.model, report.machine, report.backend, report.instances, report.intra_threads
    );
    out.push_str(
        "raw engine (preprocessed input, all instances busy)\n  batch  images/s  ms/batch\n",
    );
    for r in &report.raw {
        out.push_str(&format!(
            "  {:>5}  {:>8.1}  {:>8.1}\n",
            r.batch, r.images_per_s, r.batch_ms
        ));
    }
    out.push_str("\npipeline (file cameras looping unthrottled: decode, schedule, preprocess, infer, decode boxes, detect)\n");
    out.push_str("  cameras  batch  frames/s  raw images/s  ratio  p50 ms  p99 ms\n");
    for r in &report.pipeline {
        out.push_str(&format!(
            "  {:>7}  {:>5}  {:>8.1}  {:>12.1}  {:>4.0}%  {:>6.0}  {:>6.0}\n",
            r.cameras,
            r.batch,
            r.frames_per_s,
            r.raw_images_per_s,
            r.ratio * 100.0,
            r.latency_p50_ms,
            r.latency_p99_ms
        ));
    }
    out.push_str(&format!("\npeak RSS: {:.0} MiB\n", report.peak_rss_mib));
    out
}
