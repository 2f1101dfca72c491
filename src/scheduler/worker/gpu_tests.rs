//! The worker's GPU path whole, where a GPU is (or the tests' fake driver: tests/gpu.rs
//! runs this there): frames letterboxed on the device by GPU preprocessing, an engine
//! reading them there and keeping its output there, and the candidate kernel reducing
//! it, answering as the CPU path does.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::kept_tests::{answers, frame, plain, values};
use super::tests::{detector_spec, detector_worker, SIZE};
use super::*;
use crate::engine::{EngineError, ModelSpec, OutputDims};
use crate::gpu::driver::{Context, DeviceBuffer};
use crate::gpu::letterbox::{max_abs_diff, F32_TOLERANCE};

/// An engine on GPU 0 that checks its input is the frames letterboxed in device
/// memory, and answers with [`values`] kept there.
struct OnDevice {
    spec: ModelSpec,
    ctx: Context,
    kept_runs: Arc<AtomicUsize>,
    /// The largest difference between an input slot and the CPU's letterbox.
    input_error: Arc<Mutex<f32>>,
}

impl Engine for OnDevice {
    fn name(&self) -> &'static str {
        "cuda"
    }
    fn spec(&self) -> &ModelSpec {
        &self.spec
    }
    fn run(&mut self, _: &[f32], _: usize, _: &mut BatchOutput) -> Result<(), EngineError> {
        panic!("a host input: GPU preprocessing did not run");
    }
    fn device(&self) -> Option<i32> {
        Some(0)
    }
    fn run_kept(
        &mut self,
        input: BatchInput<'_>,
        batch: usize,
        _: &mut BatchOutput,
    ) -> Result<Option<KeptOutput>, EngineError> {
        let BatchInput::Device(address) = input else {
            panic!("a host input: GPU preprocessing did not run");
        };
        self.kept_runs.fetch_add(1, Ordering::SeqCst);
        let slot = 3 * (SIZE * SIZE) as usize;
        let mut got = vec![0f32; batch * slot];
        self.ctx.bind().unwrap();
        // SAFETY: the worker's device tensor holds `batch` slots of this model's size.
        unsafe { self.ctx.copy_to_host(&mut got, address) }.unwrap();
        let mut want = vec![0f32; slot];
        crate::preprocess::cpu::letterbox_into(&frame(), SIZE, SIZE, &mut want);
        let error = got
            .chunks(slot)
            .map(|s| max_abs_diff(s, &want))
            .fold(0.0, f32::max);
        *self.input_error.lock().unwrap() = error;
        let kept: DeviceBuffer<f32> = self.ctx.upload(&values(batch)).unwrap();
        Ok(Some(KeptOutput {
            ptr: kept.device_ptr(),
            device: Some(0),
            dims: OutputDims {
                batch,
                channels: 6,
                anchors: 3,
            },
            _keep: Box::new(kept),
        }))
    }
}

#[test]
fn on_a_gpu_the_worker_prepares_and_reduces_on_the_device_and_answers_as_the_cpu_does() {
    if !crate::gpu::probe().is_available() {
        eprintln!("SKIPPED on_a_gpu_the_worker…: no GPU (tests/gpu.rs runs it on the fake driver)");
        return;
    }
    let (kept_runs, input_error) = (Arc::new(AtomicUsize::new(0)), Arc::new(Mutex::new(-1.0)));
    let engine = OnDevice {
        spec: detector_spec("on-device.onnx", &["a", "b"]),
        ctx: Context::new(0).unwrap(),
        kept_runs: kept_runs.clone(),
        input_error: input_error.clone(),
    };
    let cache = std::env::temp_dir().join(format!("kvs-infer-worker-gpu-{}", std::process::id()));
    let mut worker = detector_worker(Box::new(engine), Some(cache));
    assert!(worker.gpu.is_some(), "GPU preprocessing started");
    assert!(worker.post.is_some(), "the candidate stage started");
    let detections = answers(&mut worker, 2);
    assert_eq!(kept_runs.load(Ordering::SeqCst), 2);
    assert!(worker.gpu.is_some() && worker.post.is_some(), "no fallback");
    let error = *input_error.lock().unwrap();
    assert!(
        (0.0..=F32_TOLERANCE).contains(&error),
        "input error {error}"
    );
    let want = plain();
    assert_eq!(detections, [&want[..], &want[..]].concat());
}
