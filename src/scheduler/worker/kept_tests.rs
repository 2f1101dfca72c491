//! The candidate path's logic, with an engine that keeps its output in host memory
//! and a stage that reads it there: what a GPU worker does, minus the GPU.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::tests::{detector_spec, detector_worker, two_frames, SIZE};
use super::*;
use crate::engine::{EngineError, ModelSpec, OutputDims};
use crate::postprocess::Detection;

/// Three anchors of a two-class detector: class 1 passes, nothing passes, class 0
/// passes (a larger box).
pub(super) fn values(batch: usize) -> Vec<f32> {
    #[rustfmt::skip]
    let image = [
        20.0, 1.0, 40.0, // cx
        20.0, 1.0, 40.0, // cy
        10.0, 1.0, 16.0, // w
        10.0, 1.0, 16.0, // h
        0.10, 0.05, 0.80, // class 0
        0.70, 0.02, 0.30, // class 1
    ];
    image.repeat(batch)
}

#[derive(Default)]
struct Calls {
    runs: AtomicUsize,
    kept_runs: AtomicUsize,
    stage_runs: AtomicUsize,
}

struct Keeps {
    spec: ModelSpec,
    kept_fails: bool,
    calls: Arc<Calls>,
}

impl Engine for Keeps {
    fn name(&self) -> &'static str {
        "keeps"
    }
    fn spec(&self) -> &ModelSpec {
        &self.spec
    }
    fn run(&mut self, _: &[f32], batch: usize, out: &mut BatchOutput) -> Result<(), EngineError> {
        self.calls.runs.fetch_add(1, Ordering::SeqCst);
        out.data = values(batch);
        (out.batch, out.channels, out.anchors) = (batch, 6, 3);
        Ok(())
    }
    fn run_kept(
        &mut self,
        _: BatchInput<'_>,
        batch: usize,
        _: &mut BatchOutput,
    ) -> Result<Option<KeptOutput>, EngineError> {
        self.calls.kept_runs.fetch_add(1, Ordering::SeqCst);
        if self.kept_fails {
            return Err(EngineError::Unavailable {
                backend: "keeps",
                reason: "cannot keep outputs".into(),
            });
        }
        let kept = Box::new(values(batch));
        Ok(Some(KeptOutput {
            ptr: kept.as_ptr() as usize as u64,
            device: None,
            dims: OutputDims {
                batch,
                channels: 6,
                anchors: 3,
            },
            _keep: kept,
        }))
    }
}

struct HostStage {
    fails: bool,
    calls: Arc<Calls>,
}

impl CandidateStage for HostStage {
    fn candidates(
        &mut self,
        kept: &KeptOutput,
        classes: usize,
        conf: f32,
    ) -> Result<Vec<Vec<Candidate>>, String> {
        self.calls.stage_runs.fetch_add(1, Ordering::SeqCst);
        if self.fails {
            return Err("the stage broke".into());
        }
        let per_image = kept.dims.channels * kept.dims.anchors;
        Ok(kept
            .host_values()
            .unwrap()
            .chunks(per_image)
            .map(|image| {
                // Reversed: a GPU's lists come in no particular order.
                let mut found = yolo::candidates(image, kept.dims.anchors, classes, conf);
                found.reverse();
                found
            })
            .collect())
    }
    fn read_back(&mut self, kept: &KeptOutput, output: &mut BatchOutput) -> Result<(), String> {
        output.data = kept.host_values().unwrap().to_vec();
        (output.batch, output.channels, output.anchors) =
            (kept.dims.batch, kept.dims.channels, kept.dims.anchors);
        Ok(())
    }
}

/// A worker for `engine`, with `stage` as its candidate stage, and the detections
/// each of `batches` batches of two frames gave.
fn run(
    kept_fails: bool,
    stage: Option<HostStage>,
    calls: &Arc<Calls>,
    batches: usize,
) -> (Worker, Vec<Vec<Detection>>) {
    let engine = Keeps {
        spec: detector_spec("keeps.onnx", &["a", "b"]),
        kept_fails,
        calls: calls.clone(),
    };
    let mut worker = detector_worker(Box::new(engine), None);
    worker.post = stage.map(|s| Box::new(s) as Box<dyn CandidateStage>);
    let out = answers(&mut worker, batches);
    (worker, out)
}

/// The frame every test batch holds twice.
pub(super) fn frame() -> Arc<Frame> {
    Arc::new(Frame::pattern(
        SIZE,
        SIZE,
        crate::decode::ColorMatrix::Bt601,
        1,
    ))
}

/// The detections `worker` gives for each of `batches` batches of two frames.
pub(super) fn answers(worker: &mut Worker, batches: usize) -> Vec<Vec<Detection>> {
    let (reply, mut results) = mpsc::unbounded_channel();
    let frame = frame();
    let mut out = Vec::new();
    for _ in 0..batches {
        worker.run_batch(
            two_frames(&frame, &reply),
            &mut Vec::new(),
            &mut BatchOutput::default(),
        );
        for _ in 0..2 {
            match results.try_recv().expect("every frame answered").output {
                Output::Detections(d) => out.push(d),
                other => panic!("{other:?}"),
            }
        }
    }
    out
}

fn counts(calls: &Calls) -> [usize; 3] {
    [
        calls.runs.load(Ordering::SeqCst),
        calls.kept_runs.load(Ordering::SeqCst),
        calls.stage_runs.load(Ordering::SeqCst),
    ]
}

/// What the plain path (whole output, decoded on the host) gives.
pub(super) fn plain() -> Vec<Vec<Detection>> {
    let calls = Arc::new(Calls::default());
    let (_, detections) = run(false, None, &calls, 1);
    assert_eq!(counts(&calls), [1, 0, 0]);
    assert_eq!(detections[0].len(), 2, "{detections:?}");
    detections
}

#[test]
fn kept_outputs_reduced_to_candidates_give_the_plain_paths_detections() {
    let calls = Arc::new(Calls::default());
    let stage = HostStage {
        fails: false,
        calls: calls.clone(),
    };
    let (worker, detections) = run(false, Some(stage), &calls, 2);
    assert_eq!(counts(&calls), [0, 2, 2], "runs, kept runs, stage runs");
    assert!(worker.post.is_some());
    let want = plain();
    assert_eq!(detections, [&want[..], &want[..]].concat());
}

#[test]
fn a_failing_candidate_stage_loses_no_frame_and_is_turned_off() {
    let calls = Arc::new(Calls::default());
    let stage = HostStage {
        fails: true,
        calls: calls.clone(),
    };
    let (worker, detections) = run(false, Some(stage), &calls, 2);
    // The first batch is read back whole; the second runs the plain way.
    assert_eq!(counts(&calls), [1, 1, 1], "runs, kept runs, stage runs");
    assert!(worker.post.is_none());
    let want = plain();
    assert_eq!(detections, [&want[..], &want[..]].concat());
}

#[test]
fn an_engine_that_cannot_keep_its_output_runs_the_plain_way_from_then_on() {
    let calls = Arc::new(Calls::default());
    let stage = HostStage {
        fails: false,
        calls: calls.clone(),
    };
    let (worker, detections) = run(true, Some(stage), &calls, 2);
    assert_eq!(counts(&calls), [2, 1, 0], "runs, kept runs, stage runs");
    assert!(worker.post.is_none());
    let want = plain();
    assert_eq!(detections, [&want[..], &want[..]].concat());
}
