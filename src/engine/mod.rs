//! Engine: runs a batch through a model. ONNX Runtime ([`onnx`]) on the CPU, or on a
//! GPU through its CUDA or TensorRT provider ([`providers`]); [`accel`] decides which
//! from `engine.backend` and what the host has. Everything GPU is loaded at run time,
//! so the build needs none of it. A backend that is absent is a clear
//! [`EngineError::Unavailable`] or start-up error, never a panic. Models are checked to be YOLOv8-style detectors when they load, before any
//! camera starts.

pub mod accel;
pub mod build;
mod inspect;
mod names;
pub mod onnx;
pub mod providers;

use std::path::PathBuf;

pub use names::parse_names;

/// What a model does, which decides how it is checked, fed and decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ModelKind {
    /// A YOLOv8-style detector: image in, `[batch, 4 + classes, anchors]` out.
    Detector,
    /// A PP-OCR-style text recogniser: line crop in, `[batch, steps, classes]` out.
    Recognizer,
}

/// What an engine learned about its model when it loaded it.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    /// What the model does.
    pub kind: ModelKind,
    /// The model file.
    pub path: PathBuf,
    /// Input tensor name.
    pub input_name: String,
    /// Input width in pixels.
    pub width: u32,
    /// Input height in pixels.
    pub height: u32,
    /// Largest batch the model accepts (`None`: any).
    pub max_batch: Option<u32>,
    /// Detector class names (index = class id), or the recogniser's character list.
    pub names: Vec<String>,
    /// The model says its weights are random (`kvs_infer_random_weights` metadata:
    /// a benchmark stand-in whose detections mean nothing).
    pub random_weights: bool,
}

/// The raw output of a batch, batch-major: `[batch, channels, anchors]` for a
/// detector, `[batch, steps, classes]` for a recogniser.
#[derive(Debug, Clone, Default)]
pub struct BatchOutput {
    /// Output values.
    pub data: Vec<f32>,
    /// Images in the batch.
    pub batch: usize,
    /// 4 box values + class scores (+ mask coefficients).
    pub channels: usize,
    /// Candidate boxes per image.
    pub anchors: usize,
}

impl BatchOutput {
    /// Image `k`'s `[channels, anchors]` slice.
    pub fn image(&self, k: usize) -> &[f32] {
        let n = self.channels * self.anchors;
        &self.data[k * n..(k + 1) * n]
    }
}

/// The shape of a batch's 3-D output: `[batch, channels, anchors]` for a detector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputDims {
    /// Images.
    pub batch: usize,
    /// 4 box values + class scores (+ mask coefficients).
    pub channels: usize,
    /// Candidate boxes per image.
    pub anchors: usize,
}

/// Where a batch's NCHW f32 input lies.
#[derive(Debug, Clone, Copy)]
pub enum BatchInput<'a> {
    /// In host memory.
    Host(&'a [f32]),
    /// In device memory on [`Engine::device`], at this address.
    Device(u64),
}

/// A batch's output the engine left where its session made it
/// ([`Engine::run_kept`]): in device memory for a GPU session, so the next stage can
/// read it there (the candidate kernel, [`crate::gpu::candidates`]) and only what
/// matters crosses to the host. Valid while this lives.
pub struct KeptOutput {
    /// Address of the `[batch, channels, anchors]` f32 values.
    pub ptr: u64,
    /// The GPU whose memory holds them; `None` for host memory.
    pub device: Option<i32>,
    /// Their shape.
    pub dims: OutputDims,
    /// What keeps the memory alive (the runtime's tensor).
    pub(crate) _keep: Box<dyn std::any::Any>,
}

impl KeptOutput {
    /// The values, when they are in host memory.
    pub fn host_values(&self) -> Option<&[f32]> {
        let len = self.dims.batch * self.dims.channels * self.dims.anchors;
        // SAFETY: host memory of `len` f32s, kept alive by `_keep` while `self` lives.
        self.device
            .is_none()
            .then(|| unsafe { std::slice::from_raw_parts(self.ptr as usize as *const f32, len) })
    }
}

/// Why an engine could not load or run.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The requested backend is not usable on this host.
    #[error("{backend} backend unavailable: {reason}")]
    Unavailable {
        /// The backend's name.
        backend: &'static str,
        /// Why (no GPU, library missing, …).
        reason: String,
    },
    /// The model failed to load or is not a detector we can run.
    #[error("model {}: {message}", model.display())]
    Model {
        /// Model path.
        model: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A batch failed to run.
    #[error("running a batch of {batch} on {}: {message}", model.display())]
    Run {
        /// Model path.
        model: PathBuf,
        /// Batch size.
        batch: usize,
        /// What the runtime said.
        message: String,
    },
}

/// The seam between the scheduler and an inference runtime. Blocking: each engine
/// instance runs on its own thread, fed batches by the scheduler.
pub trait Engine: Send {
    /// The backend's short name (`cpu`, `cuda`, `tensorrt`), for logs and metrics.
    fn name(&self) -> &'static str;

    /// The model's input, classes and batch limit.
    fn spec(&self) -> &ModelSpec;

    /// Runs `batch` images laid out as NCHW f32 in `input` into `output`.
    fn run(
        &mut self,
        input: &[f32],
        batch: usize,
        output: &mut BatchOutput,
    ) -> Result<(), EngineError>;

    /// The GPU whose memory the engine reads inputs from, when it can
    /// ([`Engine::run_device`]); `None` for host-only engines.
    fn device(&self) -> Option<i32> {
        None
    }

    /// Runs `batch` images laid out as NCHW f32 in device memory at `input` (on
    /// [`Engine::device`]), so preprocessed batches never cross to the host.
    fn run_device(
        &mut self,
        input: u64,
        batch: usize,
        output: &mut BatchOutput,
    ) -> Result<(), EngineError> {
        let _ = (input, batch, output);
        Err(EngineError::Unavailable {
            backend: self.name(),
            reason: "this engine reads its inputs from host memory".into(),
        })
    }

    /// [`Engine::run`] or [`Engine::run_device`], by where `input` lies.
    fn run_input(
        &mut self,
        input: BatchInput<'_>,
        batch: usize,
        output: &mut BatchOutput,
    ) -> Result<(), EngineError> {
        match input {
            BatchInput::Host(values) => self.run(values, batch, output),
            BatchInput::Device(address) => self.run_device(address, batch, output),
        }
    }

    /// Runs `batch` images from `input` and, when the engine can, keeps a detector's
    /// output where the session made it (device memory for a GPU session) and returns
    /// it; otherwise fills `output` on the host and returns `None`, as
    /// [`Engine::run_input`] does.
    fn run_kept(
        &mut self,
        input: BatchInput<'_>,
        batch: usize,
        output: &mut BatchOutput,
    ) -> Result<Option<KeptOutput>, EngineError> {
        self.run_input(input, batch, output).map(|()| None)
    }
}
