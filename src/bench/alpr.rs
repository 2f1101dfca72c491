//! The ALPR benchmark: the OCR engine alone on real plate crops at batch 1 and N, and
//! the two-stage pipeline (plate detector → OCR) with N cameras at max batch N and 1.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::{machine, progress, sample_frames, BenchError};
use crate::config::{parse_str, EngineConfig, Format};
use crate::decode::Frame;
use crate::engine::onnx::OrtEngine;
use crate::engine::{BatchOutput, Engine, ModelKind};
use crate::pipeline::models::engine_shape;
use crate::pipeline::{self, Options, Probe};
use crate::preprocess::cpu::letterbox_into;

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
