//! `kvs-infer bench`: the real pipeline against the raw engine, in one run.
//!
//! Raw engine: each engine instance (the same count and threads the server would use)
//! runs pre-letterboxed batches of real frames back to back; images/s is the ceiling.
//! Pipeline: the real server pipeline (file sources looping unthrottled, libavcodec,
//! scheduler, engine workers with preprocessing, YOLO decoding, detectors) with C
//! cameras; frames/s through it, its ratio to the raw engine at the same batch size,
//! and exact p50/p99 frame→detections latency. The detector is filtered to a class the
//! clip does not contain, so no events are published: publishing cost is not part of
//! this figure. Peak RSS comes from the kernel (`VmHWM`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::config::{parse_str, EngineConfig, Format};
use crate::decode::ffmpeg::FfmpegDecoder;
use crate::decode::{Decoder, Frame, FrameSelector};
use crate::engine::onnx::OrtEngine;
use crate::engine::{BatchOutput, Engine, ModelKind};
use crate::ingest::file::FileSource;
use crate::ingest::FrameSource;
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

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
#[error("bench: {0}")]
pub struct BenchError(String);

fn progress(text: &str) {
    eprintln!("[bench] {text}");
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

/// `count` distinct frames from the clip, one every 200 ms.
fn sample_frames(clip: &Path, count: usize) -> Result<Vec<Arc<Frame>>, BenchError> {
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

fn machine() -> String {
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

fn peak_rss_mib() -> f64 {
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

/// What to measure for ALPR.
#[derive(Debug, Clone)]
pub struct AlprArgs {
    /// The plate detector.
    pub plate_model: PathBuf,
    /// The text recogniser.
    pub ocr_model: PathBuf,
    /// A clip with a plate.
    pub clip: PathBuf,
    /// Cameras reading the clip.
    pub cameras: usize,
    /// Measured seconds per figure.
    pub seconds: f64,
    /// Unmeasured seconds before each figure.
    pub warmup: f64,
}

/// ALPR figures: the OCR stage alone and the whole two-stage pipeline, batched and not.
#[derive(Debug, Clone, Serialize)]
pub struct AlprReport {
    /// CPU model and core count.
    pub machine: String,
    /// Engine instances per model.
    pub instances: usize,
    /// Threads per instance.
    pub intra_threads: usize,
    /// OCR engine alone on real plate crops: (batch, plates/s).
    pub ocr_engine: Vec<(usize, f64)>,
    /// Whole pipeline with `cameras` cameras: (max batch, plates read/s, frames/s).
    pub pipeline: Vec<(usize, f64, f64)>,
    /// Cameras in the pipeline runs.
    pub cameras: usize,
}

/// Measures ALPR: the OCR engine at batch 1 and at `cameras`, then the pipeline with
/// `cameras` cameras at max batch `cameras` and 1.
pub fn run_alpr(args: &AlprArgs) -> Result<AlprReport, BenchError> {
    let (instances, threads) = engine_shape(&EngineConfig::default());
    let frames = sample_frames(&args.clip, args.cameras)?;
    // Real plate boxes: the detector's best box in each sampled frame.
    let mut detector = OrtEngine::load(&args.plate_model, threads, ModelKind::Detector)
        .map_err(|e| BenchError(e.to_string()))?;
    let spec = detector.spec().clone();
    let slot = 3 * (spec.width * spec.height) as usize;
    let mut crops = Vec::new();
    for frame in &frames {
        let mut input = vec![0.0; slot];
        let lb = letterbox_into(frame, spec.width, spec.height, &mut input);
        let mut out = BatchOutput::default();
        detector
            .run(&input, 1, &mut out)
            .map_err(|e| BenchError(e.to_string()))?;
        let best = crate::postprocess::yolo::decode(
            out.image(0),
            out.anchors,
            &spec.names,
            &crate::postprocess::yolo::DecodeParams::default(),
            &lb,
            (frame.width, frame.height),
        );
        let plate = best
            .first()
            .ok_or_else(|| BenchError("no plate found in the clip's frames".into()))?;
        crops.push((frame.clone(), plate.bbox));
    }
    let mut ocr_engine = Vec::new();
    for batch in [1, args.cameras] {
        progress(&format!("OCR engine, batch {batch}…"));
        ocr_engine.push((batch, ocr_raw(args, &crops[..batch], instances, threads)?));
    }
    let mut pipeline = Vec::new();
    for max_batch in [args.cameras, 1] {
        progress(&format!(
            "ALPR pipeline, {} cameras, max batch {max_batch}…",
            args.cameras
        ));
        pipeline.push(alpr_pipeline(args, max_batch)?);
    }
    Ok(AlprReport {
        machine: machine(),
        instances,
        intra_threads: threads,
        ocr_engine,
        pipeline,
        cameras: args.cameras,
    })
}

fn ocr_raw(
    args: &AlprArgs,
    crops: &[(Arc<Frame>, [f32; 4])],
    instances: usize,
    threads: usize,
) -> Result<f64, BenchError> {
    let batch = crops.len();
    let mut engines = Vec::new();
    for _ in 0..instances {
        engines.push(
            OrtEngine::load(&args.ocr_model, threads, ModelKind::Recognizer)
                .map_err(|e| BenchError(e.to_string()))?,
        );
    }
    let spec = engines[0].spec().clone();
    let slot = 3 * (spec.width * spec.height) as usize;
    let mut input = vec![0.0f32; slot * batch];
    for (k, (frame, bbox)) in crops.iter().enumerate() {
        crate::preprocess::cpu::ocr_crop_into(
            frame,
            *bbox,
            spec.width,
            spec.height,
            &mut input[k * slot..(k + 1) * slot],
        );
    }
    let input = Arc::new(input);
    let (warmup, measure) = (
        Duration::from_secs_f64(args.warmup),
        Duration::from_secs_f64(args.seconds),
    );
    let handles: Vec<_> = engines
        .into_iter()
        .map(|mut engine| {
            let input = input.clone();
            std::thread::spawn(move || -> Result<f64, String> {
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
                Ok((runs as usize * batch) as f64 / begin.elapsed().as_secs_f64())
            })
        })
        .collect();
    let mut total = 0.0;
    for handle in handles {
        total += handle
            .join()
            .map_err(|_| BenchError("an engine thread panicked".into()))?
            .map_err(BenchError)?;
    }
    Ok(total)
}

/// (max batch, plates read/s, frames/s) with every camera's plate read every frame.
fn alpr_pipeline(args: &AlprArgs, max_batch: usize) -> Result<(usize, f64, f64), BenchError> {
    let mut text = format!(
        "[scheduler]\nmax_batch_size = {max_batch}\npreferred_batch_size = {max_batch}\nmax_queue_delay_ms = 50\nmax_staleness_ms = 60000\n"
    );
    for c in 0..args.cameras {
        text.push_str(&format!(
            "[cameras.lot_{c}]\nfps_target = 120\nfile = {{ path = {clip:?}, loop = true, realtime = false }}\n\
             detectors = [{{ type = \"alpr\", params = {{ detector_model_path = {plates:?}, ocr_model_path = {ocr:?}, min_text_length = 20, cooldown_sec = 0 }} }}]\n",
            clip = args.clip.display().to_string(),
            plates = args.plate_model.display().to_string(),
            ocr = args.ocr_model.display().to_string(),
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
    let (r0, f0, t0) = (probe.reads(), probe.frames(), Instant::now());
    std::thread::sleep(Duration::from_secs_f64(args.seconds));
    let (r1, f1, took) = (probe.reads(), probe.frames(), t0.elapsed().as_secs_f64());
    stop.cancel();
    runtime
        .block_on(server)
        .map_err(|e| BenchError(e.to_string()))?
        .map_err(|e| BenchError(e.to_string()))?;
    Ok((max_batch, (r1 - r0) as f64 / took, (f1 - f0) as f64 / took))
}

/// The ALPR report as a human table.
pub fn alpr_table(report: &AlprReport) -> String {
    let mut out = format!(
        "kvs-infer bench --alpr on {} ({} instance(s) × {} thread(s))\n\nOCR engine alone (real plate crops, all instances busy)\n  batch  plates/s\n",
        report.machine, report.instances, report.intra_threads
    );
    for (batch, pps) in &report.ocr_engine {
        out.push_str(&format!("  {batch:>5}  {pps:>8.1}\n"));
    }
    out.push_str(&format!(
        "\nALPR pipeline, {} cameras unthrottled (plate detector → OCR, every plate read every frame)\n  max batch  plates read/s  frames/s\n",
        report.cameras
    ));
    for (batch, reads, fps) in &report.pipeline {
        out.push_str(&format!("  {batch:>9}  {reads:>13.1}  {fps:>8.1}\n"));
    }
    out
}
