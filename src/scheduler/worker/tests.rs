//! The worker's fallback when its engine claims a GPU the host cannot use.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::engine::{EngineError, ModelKind, ModelSpec};
use crate::postprocess::yolo::DecodeParams;

/// An engine that claims a GPU, answers one confident box for every image, and
/// counts which way it was called.
struct ClaimsGpu {
    spec: ModelSpec,
    host_runs: Arc<AtomicUsize>,
    device_runs: Arc<AtomicUsize>,
}

impl Engine for ClaimsGpu {
    fn name(&self) -> &'static str {
        "cuda"
    }
    fn spec(&self) -> &ModelSpec {
        &self.spec
    }
    fn run(
        &mut self,
        input: &[f32],
        batch: usize,
        out: &mut BatchOutput,
    ) -> Result<(), EngineError> {
        assert_eq!(
            input.len(),
            batch * 3 * (SIZE * SIZE) as usize,
            "a host tensor per image"
        );
        self.host_runs.fetch_add(1, Ordering::SeqCst);
        // 5 channels (box + one class) × 1 anchor: a 20×20 box at the centre.
        out.data = [32.0, 32.0, 20.0, 20.0, 0.9].repeat(batch);
        (out.batch, out.channels, out.anchors) = (batch, 5, 1);
        Ok(())
    }
    fn device(&self) -> Option<i32> {
        Some(0)
    }
    fn run_device(&mut self, _: u64, _: usize, _: &mut BatchOutput) -> Result<(), EngineError> {
        self.device_runs.fetch_add(1, Ordering::SeqCst);
        Err(EngineError::Unavailable {
            backend: "cuda",
            reason: "no GPU in this test".into(),
        })
    }
}

#[test]
fn an_engine_on_a_gpu_the_host_cannot_use_gets_cpu_preprocessing_and_loses_nothing() {
    if crate::gpu::probe().is_available() {
        return; // The GPU path itself is checked by tests/gpu.rs and gpu-check.
    }
    let (host_runs, device_runs) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let engine = ClaimsGpu {
        spec: detector_spec("claims-gpu.onnx", &["thing"]),
        host_runs: host_runs.clone(),
        device_runs: device_runs.clone(),
    };
    let mut worker = detector_worker(
        Box::new(engine),
        Some(std::env::temp_dir().join("kvs-infer-worker-kernels")),
    );
    assert!(
        worker.gpu.is_none(),
        "no usable GPU: preprocessing stays on the CPU"
    );
    let (reply, mut results) = mpsc::unbounded_channel();
    let frame = Arc::new(Frame::pattern(
        128,
        96,
        crate::decode::ColorMatrix::Bt601,
        1,
    ));
    worker.run_batch(
        two_frames(&frame, &reply),
        &mut Vec::new(),
        &mut BatchOutput::default(),
    );
    assert_eq!(
        (
            host_runs.load(Ordering::SeqCst),
            device_runs.load(Ordering::SeqCst)
        ),
        (1, 0)
    );
    for _ in 0..2 {
        let result = results.try_recv().expect("every frame answered");
        let Output::Detections(d) = result.output else {
            panic!("{:?}", result.output);
        };
        assert_eq!(d.len(), 1);
        assert_eq!(result.batch_size, 2);
    }
}

/// A detector's worker for `engine` with default thresholds, one camera, and the
/// kernel cache given (`None`: no GPU stages).
pub(super) fn detector_worker(engine: Box<dyn Engine>, kernel_cache: Option<PathBuf>) -> Worker {
    let telemetry = crate::telemetry::Telemetry::new().unwrap();
    let metrics = telemetry.metrics();
    let (idle, _idle_rx) = mpsc::unbounded_channel();
    Worker::new(
        WorkerSetup {
            index: 0,
            model: 0,
            task: Task::Detect(DecodeParams::default()),
            metrics: metrics.model("test"),
            cameras: Arc::from(vec![metrics.camera("cam", &[])]),
            idle,
            kernel_cache,
        },
        engine,
    )
}

/// A batch of `frame` twice, answered on `reply`.
pub(super) fn two_frames(
    frame: &Arc<Frame>,
    reply: &mpsc::UnboundedSender<InferResult>,
) -> Vec<Entry<Job>> {
    (0..2)
        .map(|k| Entry {
            camera: k,
            born_at: std::time::Instant::now(),
            enqueued_at: std::time::Instant::now(),
            item: Job {
                key: k,
                camera: 0,
                frame: frame.clone(),
                input: Input::Frame(None),
                reply: reply.clone(),
                permit: None,
                tag: k as u64,
                notice: None,
            },
        })
        .collect()
}

/// The test models' input width and height.
pub(super) const SIZE: u32 = 64;

/// A [`SIZE`]-square detector of `names`, from the model file `path` (which need not
/// exist).
pub(super) fn detector_spec(path: &str, names: &[&str]) -> ModelSpec {
    ModelSpec {
        kind: ModelKind::Detector,
        path: path.into(),
        input_name: "images".into(),
        width: SIZE,
        height: SIZE,
        max_batch: None,
        names: names.iter().map(|n| n.to_string()).collect(),
        random_weights: false,
    }
}
