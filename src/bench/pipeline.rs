//! The pipeline benchmark, per model: the raw engine at batch 1…32, the whole pipeline
//! with C cameras unthrottled and its ratio to the raw engine at the same batch size,
//! batched versus batch-1 scheduling, decode cost per stream, and the capacity search.
//!
//! Raw engine: every engine instance (the count and threads the server would use)
//! runs pre-letterboxed batches of real frames back to back. Pipeline: the real server
//! pipeline (file sources looping unthrottled, libavcodec, scheduler, engine workers
//! with preprocessing, YOLO decoding, detectors). The detector is filtered to a class
//! the clip does not contain, so no events are published: publishing is measured by
//! `--publishers`. Latencies are exact (every frame's), not histogram buckets.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::capacity::{self, CapacityReport};
use super::{
    engine_throughput, fill_batch, machine, measure, progress, rss_mib, sample_frames, BenchError,
    EngineRun,
};
use crate::config::{Backend, DecodeBackend, EngineConfig};
use crate::decode::ffmpeg::FfmpegDecoder;
use crate::decode::{Decoder, FrameSelector};
use crate::engine::onnx::OrtEngine;
use crate::engine::providers::{profile, Placement};
use crate::engine::{Engine, ModelKind};
use crate::ingest::file::FileSource;
use crate::ingest::FrameSource;
use crate::pipeline::models::engine_shape;
use crate::preprocess::cpu::letterbox_into;

/// Raw-engine batch sizes, up to the model's limit.
pub const RAW_BATCHES: [usize; 6] = [1, 2, 4, 8, 16, 32];

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchArgs {
    /// The ONNX model.
    pub model: PathBuf,
    /// The clip every camera reads.
    pub clip: PathBuf,
    /// Camera counts to run the pipeline with, unthrottled.
    pub cameras: Vec<usize>,
    /// Largest batch the scheduler forms.
    pub max_batch: usize,
    /// Measured seconds per figure.
    pub seconds: f64,
    /// Unmeasured seconds before each figure.
    pub warmup: f64,
    /// Clips whose decode cost is measured (720p, 1080p).
    pub decode_clips: Vec<PathBuf>,
    /// Capacity search: frames per second per camera (0 = skip the search).
    pub capacity_fps: f64,
    /// Capacity search: p99 latency budget, ms.
    pub budget_ms: f64,
    /// Capacity search: most cameras tried.
    pub max_cameras: usize,
    /// CI mode: only the batches the pipeline rows need, no decode or capacity.
    pub quick: bool,
    /// Engine backend (the raw engine and the pipeline).
    pub backend: Backend,
    /// Decoder of the pipeline's cameras.
    pub decode: DecodeBackend,
    /// A class of the model the clip does not show: the detector filters to it, so
    /// nothing is published (set by [`run`] to the model's last class).
    pub quiet_class: String,
}

/// Raw engine throughput at one batch size.
#[derive(Debug, Clone, Serialize)]
pub struct RawRow {
    /// Images per batch.
    pub batch: usize,
    /// Images per second over all instances.
    pub images_per_s: f64,
    /// Time of one batch on one instance (its latency), ms.
    pub batch_ms: f64,
}

/// Pipeline throughput with C cameras.
#[derive(Debug, Clone, Serialize)]
pub struct PipelineRow {
    /// Cameras.
    pub cameras: usize,
    /// Largest batch the scheduler could form.
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

/// Decode cost of one stream.
#[derive(Debug, Clone, Serialize)]
pub struct DecodeRow {
    /// The clip.
    pub clip: String,
    /// Frame size.
    pub width: u32,
    /// Frame size.
    pub height: u32,
    /// The clip's frame rate.
    pub fps: f64,
    /// CPU time to demux and decode one frame, ms (one thread).
    pub ms_per_frame: f64,
    /// Share of one core a live stream at the clip's rate costs.
    pub core_share: f64,
}

/// Everything one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// CPU model and core count.
    pub machine: String,
    /// Model file.
    pub model: String,
    /// The model's weights are random (same compute as the real model).
    pub random_weights: bool,
    /// Backend the engines ran on.
    pub backend: &'static str,
    /// Decoder asked of the pipeline's cameras.
    pub decoder: &'static str,
    /// Engine instances.
    pub instances: usize,
    /// Threads per instance.
    pub intra_threads: usize,
    /// Raw engine figures.
    pub raw: Vec<RawRow>,
    /// Pipeline figures, batched.
    pub pipeline: Vec<PipelineRow>,
    /// The largest camera count again with batch-1 scheduling.
    pub batch_one: Option<PipelineRow>,
    /// Decode cost per stream.
    pub decode: Vec<DecodeRow>,
    /// The capacity search.
    pub capacity: Option<CapacityReport>,
    /// Peak resident memory of the process, MiB.
    pub peak_rss_mib: f64,
}

/// Runs every measurement and returns the report.
pub fn run(args: &BenchArgs) -> Result<Report, BenchError> {
    let (instances, threads) = engine_shape(&EngineConfig::default());
    let spec = OrtEngine::load(&args.model, 1, ModelKind::Detector)
        .map_err(|e| BenchError(e.to_string()))?
        .spec()
        .clone();
    let mut args = args.clone();
    args.quiet_class = spec.names.last().cloned().unwrap_or_default();
    let args = &args;
    let limit = spec.max_batch.map_or(32, |b| b as usize);
    let pipeline_batches: Vec<usize> = args
        .cameras
        .iter()
        .map(|&c| c.min(args.max_batch).max(1))
        .collect();
    let mut batches: Vec<usize> = if args.quick {
        pipeline_batches.clone()
    } else {
        RAW_BATCHES
            .iter()
            .copied()
            .chain(pipeline_batches.iter().copied())
            .collect()
    };
    batches.retain(|&b| b <= limit);
    batches.sort_unstable();
    batches.dedup();
    let frames = sample_frames(&args.clip, batches.iter().copied().max().unwrap_or(1))?;
    let (warmup, seconds) = (
        Duration::from_secs_f64(args.warmup),
        Duration::from_secs_f64(args.seconds),
    );

    // The raw engine runs where the pipeline's engines will: the backend settled as
    // the server settles it, TensorRT engines cached in `engines/`.
    let placement = Placement::resolve(args.backend, 0)
        .map_err(|e| BenchError(format!("--backend {}: {e}", args.backend.as_str())))?;
    let accel = placement
        .accel(
            &args.model,
            true,
            profile(args.max_batch as u32, limit as u32),
            std::path::Path::new("engines"),
        )
        .map_err(|e| BenchError(e.to_string()))?;
    let mut raw = Vec::new();
    for &batch in &batches {
        progress(&format!(
            "raw engine, batch {batch}, {instances} instance(s) × {threads} thread(s)…"
        ));
        let run = EngineRun {
            model: &args.model,
            accel: &accel,
            kind: ModelKind::Detector,
            instances,
            threads,
            batch,
            warmup,
            measure: seconds,
        };
        let t = engine_throughput(&run, |spec| {
            fill_batch(&frames[..batch], spec, |frame, w, h, slot| {
                letterbox_into(frame, w, h, slot);
            })
        })?;
        raw.push(RawRow {
            batch,
            images_per_s: t.images_per_s,
            batch_ms: t.batch_ms,
        });
    }
    let raw_at = |batch: usize| {
        raw.iter()
            .find(|r| r.batch == batch)
            .map_or(f64::NAN, |r| r.images_per_s)
    };

    let mut rows = Vec::new();
    for &cameras in &args.cameras {
        let batch = cameras.min(args.max_batch).min(limit).max(1);
        progress(&format!(
            "pipeline, {cameras} camera(s) unthrottled, batch ≤ {batch}…"
        ));
        rows.push(unthrottled(args, cameras, batch, raw_at(batch))?);
    }
    let batch_one = match (args.quick, args.cameras.iter().max()) {
        (false, Some(&cameras)) => {
            progress(&format!(
                "pipeline, {cameras} camera(s) unthrottled, batch-1 scheduling…"
            ));
            Some(unthrottled(args, cameras, 1, raw_at(1))?)
        }
        _ => None,
    };
    let mut decode = Vec::new();
    if !args.quick {
        for clip in &args.decode_clips {
            progress(&format!("decode cost, {}…", clip.display()));
            decode.push(decode_cost(clip)?);
        }
    }
    let capacity = if args.quick || args.capacity_fps <= 0.0 {
        None
    } else {
        Some(capacity::search(args, limit, &raw, &decode)?)
    };
    Ok(Report {
        machine: machine(),
        model: args.model.display().to_string(),
        random_weights: spec.random_weights,
        backend: placement.choice_name(),
        decoder: args.decode.as_str(),
        instances,
        intra_threads: threads,
        raw,
        pipeline: rows,
        batch_one,
        decode,
        capacity,
        peak_rss_mib: rss_mib("VmHWM:"),
    })
}

/// The config of `cameras` file cameras on the clip through the model; `live` cameras
/// are paced at the clip's rate and sampled at `fps`, otherwise they loop as fast as
/// the engines take frames.
pub(crate) fn cameras_config(
    args: &BenchArgs,
    cameras: usize,
    batch: usize,
    live: Option<f64>,
) -> String {
    // Offline cameras never go stale: they wait for a free slot instead.
    let staleness = if live.is_some() {
        ""
    } else {
        "max_staleness_ms = 600000\n"
    };
    let mut text = format!(
        "[scheduler]\nmax_batch_size = {batch}\npreferred_batch_size = {preferred}\n{staleness}[engine]\nbackend = \"{backend}\"\n[decode]\nbackend = \"{decode}\"\n",
        preferred = batch.min(4),
        backend = args.backend.as_str(),
        decode = args.decode.as_str(),
    );
    let (fps, realtime) = live.map_or((120.0, false), |fps| (fps, true));
    for c in 0..cameras {
        text.push_str(&format!(
            "[cameras.bench_{c}]\nfps_target = {fps}\nfile = {{ path = {clip:?}, loop = true, realtime = {realtime} }}\n\
             detectors = [{{ type = \"yolo\", params = {{ model_path = {model:?}, classes = [{class:?}] }} }}]\n",
            clip = args.clip.display().to_string(),
            model = args.model.display().to_string(),
            class = args.quiet_class,
        ));
    }
    text
}

fn unthrottled(
    args: &BenchArgs,
    cameras: usize,
    batch: usize,
    raw_ips: f64,
) -> Result<PipelineRow, BenchError> {
    let window = measure(
        &cameras_config(args, cameras, batch, None),
        args.warmup,
        args.seconds,
    )?;
    Ok(PipelineRow {
        cameras,
        batch,
        frames_per_s: window.frames_per_s,
        raw_images_per_s: raw_ips,
        ratio: window.frames_per_s / raw_ips,
        latency_p50_ms: window.latency(0.5),
        latency_p99_ms: window.latency(0.99),
    })
}

/// Demuxes and decodes every frame of `clip` on one thread.
fn decode_cost(clip: &std::path::Path) -> Result<DecodeRow, BenchError> {
    let err = |e: String| BenchError(format!("{}: {e}", clip.display()));
    let mut source = FileSource::open(clip, false, false).map_err(|e| err(e.to_string()))?;
    let info = source.info().clone();
    // Keep one frame a second: the cost measured is decoding, not copying frames out.
    let mut decoder =
        FfmpegDecoder::new(&info, FrameSelector::new(1.0), 1).map_err(|e| err(e.to_string()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| err(e.to_string()))?;
    let (mut units, started) = (0u64, Instant::now());
    let (mut width, mut height) = (info.width, info.height);
    while let Some(unit) = runtime
        .block_on(source.next_access_unit())
        .map_err(|e| err(e.to_string()))?
    {
        units += 1;
        for frame in decoder.decode(&unit).map_err(|e| err(e.to_string()))? {
            (width, height) = (frame.width, frame.height);
        }
    }
    let ms_per_frame = started.elapsed().as_secs_f64() * 1000.0 / units.max(1) as f64;
    let fps = info.fps.unwrap_or(25.0);
    Ok(DecodeRow {
        clip: clip.display().to_string(),
        width,
        height,
        fps,
        ms_per_frame,
        core_share: ms_per_frame * fps / 1000.0,
    })
}

/// The report as a human table.
pub fn table(report: &Report) -> String {
    let mut out = format!(
        "kvs-infer bench: {} on {} ({} backend, {} instance(s) × {} thread(s), {} decoding)\n",
        report.model,
        report.machine,
        report.backend,
        report.instances,
        report.intra_threads,
        report.decoder
    );
    if report.random_weights {
        out.push_str("note: random weights (the real architecture: compute cost identical, detections meaningless)\n");
    }
    out.push_str(
        "\nraw engine (preprocessed input, all instances busy)\n  batch  images/s  ms/batch\n",
    );
    for r in &report.raw {
        out.push_str(&format!(
            "  {:>5}  {:>8.1}  {:>8.1}\n",
            r.batch, r.images_per_s, r.batch_ms
        ));
    }
    out.push_str("\npipeline (file cameras looping unthrottled: decode, schedule, preprocess, infer, decode boxes, detect)\n");
    out.push_str("  cameras  batch  frames/s  raw images/s  ratio  p50 ms  p99 ms\n");
    for r in report.pipeline.iter().chain(&report.batch_one) {
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
    if !report.decode.is_empty() {
        out.push_str("\ndecode (demux + decode every frame, one thread)\n  clip  size  fps  ms/frame  share of a core per live stream\n");
        for d in &report.decode {
            let name = std::path::Path::new(&d.clip)
                .file_name()
                .map_or(d.clip.clone(), |n| n.to_string_lossy().into_owned());
            out.push_str(&format!(
                "  {name}  {}x{}  {:.0}  {:.2}  {:.0}%\n",
                d.width,
                d.height,
                d.fps,
                d.ms_per_frame,
                d.core_share * 100.0
            ));
        }
    }
    if let Some(c) = &report.capacity {
        out.push_str(&capacity::table(c));
    }
    out.push_str(&format!("\npeak RSS: {:.0} MiB\n", report.peak_rss_mib));
    out
}
