//! The ALPR benchmark: the OCR engine alone on real plate crops at batch 1 and N, and
//! the two-stage pipeline (plate detector → OCR) with N cameras at max batch N and 1.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::{
    engine_throughput, fill_batch, machine, measure, progress, sample_frames, BenchError, EngineRun,
};
use crate::config::EngineConfig;
use crate::engine::onnx::OrtEngine;
use crate::engine::{BatchOutput, Engine, ModelKind};
use crate::pipeline::models::engine_shape;
use crate::preprocess::cpu::{letterbox_into, ocr_crop_into};

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
    let (warmup, measure_for) = (
        Duration::from_secs_f64(args.warmup),
        Duration::from_secs_f64(args.seconds),
    );
    for batch in [1, args.cameras] {
        progress(&format!("OCR engine, batch {batch}…"));
        let run = EngineRun {
            model: &args.ocr_model,
            accel: &crate::engine::accel::Accel::Cpu,
            kind: ModelKind::Recognizer,
            instances,
            threads,
            batch,
            warmup,
            measure: measure_for,
        };
        let t = engine_throughput(&run, |spec| {
            fill_batch(&crops[..batch], spec, |(frame, bbox), w, h, slot| {
                ocr_crop_into(frame, *bbox, w, h, slot);
            })
        })?;
        ocr_engine.push((batch, t.images_per_s));
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
    let window = measure(&text, args.warmup, args.seconds)?;
    Ok((max_batch, window.reads_per_s, window.frames_per_s))
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
