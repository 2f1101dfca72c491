//! The ONNX Runtime engine on the real model and clip: a batch of images gives the
//! same detections as each image run alone.

mod common;

use std::sync::Arc;

use common::fixture;
use kvs_infer::decode::ffmpeg::FfmpegDecoder;
use kvs_infer::decode::{Decoder, Frame, FrameSelector};
use kvs_infer::engine::onnx::OrtEngine;
use kvs_infer::engine::{BatchOutput, Engine, ModelKind, ModelSpec};
use kvs_infer::ingest::file::FileSource;
use kvs_infer::ingest::FrameSource;
use kvs_infer::postprocess::yolo::{decode, DecodeParams};
use kvs_infer::postprocess::Detection;
use kvs_infer::preprocess::cpu::letterbox_into;
use kvs_infer::preprocess::Letterbox;

/// `count` frames spread over the clip (one per second).
fn frames(clip: &std::path::Path, count: usize) -> Vec<Arc<Frame>> {
    let mut source = FileSource::open(clip, false, false).unwrap();
    let mut decoder = FfmpegDecoder::new(source.info(), FrameSelector::new(1.0), 1).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut out = Vec::new();
    while out.len() < count {
        let unit = runtime
            .block_on(source.next_access_unit())
            .unwrap()
            .expect("clip too short");
        out.extend(decoder.decode(&unit).unwrap().into_iter().map(Arc::new));
    }
    out.truncate(count);
    out
}

/// `frames` letterboxed on the CPU into one input tensor for `spec`, and their
/// letterboxes.
fn batch_input(spec: &ModelSpec, frames: &[Arc<Frame>]) -> (Vec<f32>, Vec<Letterbox>) {
    let slot = 3 * (spec.width * spec.height) as usize;
    let mut input = vec![0.0; slot * frames.len()];
    let boxes = frames
        .iter()
        .zip(input.chunks_mut(slot))
        .map(|(f, slot)| letterbox_into(f, spec.width, spec.height, slot))
        .collect();
    (input, boxes)
}

fn detect(engine: &mut OrtEngine, frames: &[Arc<Frame>]) -> Vec<Vec<Detection>> {
    let spec = engine.spec().clone();
    let (input, boxes) = batch_input(&spec, frames);
    let mut output = BatchOutput::default();
    engine.run(&input, frames.len(), &mut output).unwrap();
    (0..frames.len())
        .map(|k| {
            decode(
                output.image(k),
                output.anchors,
                &spec.names,
                &DecodeParams::default(),
                &boxes[k],
                (frames[k].width, frames[k].height),
            )
        })
        .collect()
}

#[test]
fn a_batch_equals_each_image_run_alone() {
    let (Some(clip), Some(model)) = (
        fixture("video/person-motorcycle-720p.mp4"),
        fixture("models/yolov8n-coco.onnx"),
    ) else {
        common::skip("no demo clip or yolov8n-coco.onnx (scripts/fetch-assets.sh)");
        return;
    };
    let mut engine = OrtEngine::load(&model, 2, ModelKind::Detector).unwrap();
    assert_eq!(engine.spec().names.len(), 80);
    assert_eq!((engine.spec().width, engine.spec().height), (640, 640));
    let frames = frames(&clip, 4);
    let batched = detect(&mut engine, &frames);
    for (k, frame) in frames.iter().enumerate() {
        let alone = detect(&mut engine, std::slice::from_ref(frame)).remove(0);
        assert_eq!(alone.len(), batched[k].len(), "image {k}");
        assert!(
            alone.iter().any(|d| d.label == "person"),
            "image {k}: {alone:?}"
        );
        assert!(
            alone.iter().any(|d| d.label == "motorcycle"),
            "image {k}: {alone:?}"
        );
        for (a, b) in alone.iter().zip(&batched[k]) {
            assert_eq!(a.label, b.label);
            for (x, y) in a.bbox.iter().zip(b.bbox) {
                assert!(
                    (x - y).abs() <= 1e-3 * x.abs().max(1.0),
                    "image {k}: {a:?} vs {b:?}"
                );
            }
            assert!((a.confidence - b.confidence).abs() <= 1e-3);
        }
    }
}

#[test]
fn a_kept_output_is_the_plain_runs_output_left_in_the_engines_own_memory() {
    use kvs_infer::engine::BatchInput;
    let (Some(clip), Some(model)) = (
        fixture("video/person-motorcycle-720p.mp4"),
        fixture("models/yolov8n-coco.onnx"),
    ) else {
        common::skip("no demo clip or yolov8n-coco.onnx (scripts/fetch-assets.sh)");
        return;
    };
    let mut engine = OrtEngine::load(&model, 2, ModelKind::Detector).unwrap();
    let spec = engine.spec().clone();
    let (input, _) = batch_input(&spec, &frames(&clip, 2));
    let slot = input.len() / 2;
    let mut plain = BatchOutput::default();
    engine.run(&input, 2, &mut plain).unwrap();

    // The plain run has taught the engine the output's shape (if the model did not
    // fix it), so the output now stays where the session made it: here, host memory.
    let mut untouched = BatchOutput::default();
    let kept = engine
        .run_kept(BatchInput::Host(&input), 2, &mut untouched)
        .unwrap()
        .expect("the output shape is known");
    assert!(
        untouched.data.is_empty(),
        "a kept run does not fill the host output"
    );
    assert_eq!(kept.device, None);
    assert_eq!(
        (kept.dims.batch, kept.dims.channels, kept.dims.anchors),
        (2, plain.channels, plain.anchors)
    );
    let values = kept.host_values().unwrap();
    assert_eq!(values.len(), plain.data.len());
    let worst = values
        .iter()
        .zip(&plain.data)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst <= 1e-4, "kept and plain outputs differ by {worst}");

    // Each kept run has a tensor of its own, alive as long as its KeptOutput.
    let again = engine
        .run_kept(BatchInput::Host(&input[..slot]), 1, &mut untouched)
        .unwrap()
        .unwrap();
    assert_ne!(again.ptr, kept.ptr);
    assert_eq!(again.dims.batch, 1);
    let first = &kept.host_values().unwrap()[..plain.channels * plain.anchors];
    let alone = again.host_values().unwrap();
    let worst = first
        .iter()
        .zip(alone)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst <= 1e-3, "image 0 alone vs in the batch: {worst}");
}
