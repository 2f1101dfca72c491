//! ONNX Runtime's GPU execution providers: asking the loaded runtime which it has
//! ([`host_caps`]), settling where models run ([`Placement`]) and configuring them for
//! a model ([`dispatch`]): CUDA on a device, or TensorRT with fp16, an optimisation
//! profile for batch 1..max and the engine cache of [`super::accel::engine_dir`]. Registration fails loudly (`error_on_failure`), so
//! a provider that cannot start is a start-up error, never a silent run on the CPU.

use ort::ep::cuda::ConvAlgorithmSearch;
use ort::ep::{ExecutionProvider, ExecutionProviderDispatch, TensorRT, CUDA};

use std::path::Path;

use super::accel::{choose, engine_dir, Accel, Choice, HostCaps, TrtOptions};
use super::{EngineError, ModelSpec};
use crate::config::Backend;
use crate::gpu::GpuStatus;

/// What this host offers the engines: a usable GPU, and the ONNX Runtime providers and
/// TensorRT library that run on it. Loads ONNX Runtime when it was not yet.
pub fn host_caps() -> HostCaps {
    let gpu = crate::gpu::probe();
    let gpu_missing = (!gpu.is_available()).then(|| gpu.summary());
    let runtime = super::onnx::runtime_library();
    let has = |name: &str, available: ort::Result<bool>| match (&runtime, available) {
        (Err(e), _) => Some(e.to_string()),
        (Ok(_), Ok(true)) => None,
        (Ok(lib), Ok(false)) => Some(format!(
            "the ONNX Runtime in use ({}) has no {name} execution provider; \
             point ORT_DYLIB_PATH at a GPU build (onnxruntime-linux-x64-gpu)",
            lib.display()
        )),
        (Ok(_), Err(e)) => Some(format!("ONNX Runtime cannot list its providers: {e}")),
    };
    let cuda_ep_missing = has("CUDA", <CUDA as ExecutionProvider>::is_available());
    let trt_missing = has("TensorRT", <TensorRT as ExecutionProvider>::is_available())
        .or_else(|| crate::gpu::tensorrt::version().err());
    HostCaps {
        gpu_missing,
        cuda_ep_missing,
        trt_missing,
    }
}

/// The providers a session for `spec` registers under `accel`, most preferred first.
/// TensorRT is followed by CUDA for the nodes it does not take.
pub fn dispatch(accel: &Accel, spec: &ModelSpec) -> Vec<ExecutionProviderDispatch> {
    match accel {
        Accel::Cpu => Vec::new(),
        Accel::Cuda { device_id } => vec![cuda(*device_id).build().error_on_failure()],
        Accel::TensorRt(o) => {
            let mut trt = TensorRT::default()
                .with_device_id(o.device_id)
                .with_fp16(o.fp16)
                .with_engine_cache(true)
                .with_engine_cache_path(o.cache_dir.display())
                .with_timing_cache(true)
                .with_timing_cache_path(o.cache_dir.display());
            if spec.max_batch.is_none() {
                let (min, opt, max) = o.batch;
                let shape =
                    |b: u32| format!("{}:{b}x3x{}x{}", spec.input_name, spec.height, spec.width);
                trt = trt
                    .with_profile_min_shapes(shape(min))
                    .with_profile_opt_shapes(shape(opt))
                    .with_profile_max_shapes(shape(max));
            }
            vec![trt.build().error_on_failure(), cuda(o.device_id).build()]
        }
    }
}

/// The CUDA provider on `device_id`. cuDNN picks its convolution algorithms by
/// heuristics, not by its default exhaustive benchmark: that benchmark runs again for
/// every new input shape, and the scheduler's batches take every size from 1 to the
/// largest. On the first H100 run it cost seconds per new batch size in each session,
/// so a camera's detections waited 3 s and a fifth of its frames were dropped.
fn cuda(device_id: i32) -> CUDA {
    CUDA::default()
        .with_device_id(device_id)
        .with_conv_algorithm_search(ConvAlgorithmSearch::Heuristic)
}

/// Where this host runs models: the backend settled on, and what its engines need.
#[derive(Debug, Clone)]
pub struct Placement {
    /// The engine kind.
    pub choice: Choice,
    /// Why `auto` fell back to the CPU.
    pub why: Option<String>,
    /// The GPU probe's one-line finding.
    pub gpu_summary: String,
    /// The chosen GPU's ordinal.
    pub device_id: i32,
    /// The chosen GPU's name (empty on the CPU).
    pub gpu_name: String,
    /// TensorRT's version, when TensorRT was chosen.
    pub trt_version: Option<String>,
}

impl Placement {
    /// Settles `backend` on GPU `device_id` against what this host has (probing the
    /// driver, ONNX Runtime's providers and TensorRT), or says why it cannot run.
    pub fn resolve(backend: Backend, device_id: u32) -> Result<Self, String> {
        let mut placement = Placement {
            choice: Choice::Cpu,
            why: None,
            gpu_summary: String::new(),
            device_id: device_id as i32,
            gpu_name: String::new(),
            trt_version: None,
        };
        if backend == Backend::Cpu {
            return Ok(placement);
        }
        let gpu = crate::gpu::probe();
        placement.gpu_summary = gpu.summary();
        let (choice, why) = choose(backend, &host_caps())?;
        placement.choice = choice;
        placement.why = why;
        if choice == Choice::Cpu {
            return Ok(placement);
        }
        placement.gpu_name = match &gpu {
            GpuStatus::Available { devices, .. } => devices
                .iter()
                .find(|d| d.ordinal == placement.device_id)
                .map(|d| d.name.clone())
                .ok_or_else(|| {
                    format!("GPU {device_id} is not on this host ({})", gpu.summary())
                })?,
            GpuStatus::Unavailable(why) => return Err(why.clone()),
        };
        if choice == Choice::TensorRt {
            placement.trt_version = Some(crate::gpu::tensorrt::version()?.to_string());
        }
        Ok(placement)
    }

    /// The chosen engine's short name (`cpu`, `cuda`, `tensorrt`).
    pub fn choice_name(&self) -> &'static str {
        match self.choice {
            Choice::Cpu => "cpu",
            Choice::Cuda => "cuda",
            Choice::TensorRt => "tensorrt",
        }
    }

    /// How `model`'s sessions run here; for TensorRT, with fp16 as asked, the profile
    /// `batch` and the model's engine cache under `engines_dir`.
    pub fn accel(
        &self,
        model: &Path,
        fp16: bool,
        batch: (u32, u32, u32),
        engines_dir: &Path,
    ) -> Result<Accel, EngineError> {
        Ok(match self.choice {
            Choice::Cpu => Accel::Cpu,
            Choice::Cuda => Accel::Cuda {
                device_id: self.device_id,
            },
            Choice::TensorRt => {
                let bytes = std::fs::read(model).map_err(|e| EngineError::Model {
                    model: model.to_owned(),
                    message: format!("cannot read it: {e}"),
                })?;
                let trt = self.trt_version.as_deref().unwrap_or("unknown");
                Accel::TensorRt(TrtOptions {
                    device_id: self.device_id,
                    fp16,
                    batch,
                    cache_dir: engine_dir(engines_dir, model, &bytes, &self.gpu_name, trt),
                })
            }
        })
    }
}

/// The profile's batch sizes for a model whose largest batch is `max_batch`, tuned for
/// `preferred` (both clamped to at least 1, and `preferred` to at most `max_batch`).
pub fn profile(preferred: u32, max_batch: u32) -> (u32, u32, u32) {
    let max = max_batch.max(1);
    (1, preferred.clamp(1, max), max)
}

#[cfg(test)]
mod tests {
    use super::{cuda, profile};

    #[test]
    fn the_cuda_provider_picks_convolutions_by_heuristics_on_its_device() {
        // What ONNX Runtime receives: its option names and values.
        let options = format!("{:?}", cuda(3));
        assert!(
            options.contains("\"cudnn_conv_algo_search\"") && options.contains("\"HEURISTIC\""),
            "{options}"
        );
        assert!(
            options.contains("\"device_id\"") && options.contains("\"3\""),
            "{options}"
        );
    }

    #[test]
    fn profiles_span_one_to_the_largest_batch() {
        assert_eq!(profile(4, 8), (1, 4, 8));
        assert_eq!(profile(16, 8), (1, 8, 8));
        assert_eq!(profile(0, 0), (1, 1, 1));
    }
}
