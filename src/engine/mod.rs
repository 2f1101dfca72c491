//! Engine: runs a batch through a model. ONNX Runtime on the CPU, CUDA and TensorRT on
//! the GPU (runtime-loaded, so the build needs neither), chosen by `[engine] backend`.
//! Implementations arrive with the CPU pipeline and GPU issues; a backend that is absent
//! is a clear [`EngineError::Unavailable`], never a panic.

/// Shape and limits an engine reports for its model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInput {
    /// Input tensor name.
    pub name: String,
    /// Input width in pixels.
    pub width: u32,
    /// Input height in pixels.
    pub height: u32,
    /// Largest batch the model (or its engine plan) accepts.
    pub max_batch: u32,
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
    /// The model failed to load.
    #[error("loading model {model}: {message}")]
    Load {
        /// Model path.
        model: String,
        /// What the runtime said.
        message: String,
    },
    /// A batch failed to run.
    #[error("running a batch of {batch}: {message}")]
    Run {
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

    /// The model's input shape and batch limit.
    fn input(&self) -> &ModelInput;

    /// Runs `batch` images laid out as NCHW f32 in `input`; returns the raw output
    /// tensor (batch-major) for postprocessing.
    fn run(&mut self, input: &[f32], batch: usize) -> Result<Vec<f32>, EngineError>;
}
