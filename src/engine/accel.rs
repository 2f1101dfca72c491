//! Where a model runs: the CPU, or a GPU through ONNX Runtime's CUDA or TensorRT
//! execution provider. [`choose`] is the pure decision (`engine.backend` against what
//! the host has, with the reason for every fallback); [`engine_dir`] names the cache of
//! built TensorRT engines: `engines/<model>-<hash>/<gpu>-trt<version>/`, so an edited
//! model, another GPU or another TensorRT never reuses a stale engine.
//!
//! TensorRT is run by ONNX Runtime's TensorRT provider, which loads `libnvinfer` at run
//! time, builds the engine from the ONNX with an optimisation profile for batch
//! 1..max, and serialises it into the directory we give it. The build machine needs
//! neither: without them each choice is a reason, never a crash.

use std::path::{Path, PathBuf};

use crate::config::Backend;

/// Options of the TensorRT provider.
#[derive(Debug, Clone, PartialEq)]
pub struct TrtOptions {
    /// GPU ordinal.
    pub device_id: i32,
    /// Build fp16 kernels where TensorRT finds them faster.
    pub fp16: bool,
    /// The optimisation profile's batch sizes: smallest, the one to tune for, largest.
    pub batch: (u32, u32, u32),
    /// Where built engines are cached (see [`engine_dir`]).
    pub cache_dir: PathBuf,
}

/// How a model's sessions run.
#[derive(Debug, Clone, PartialEq)]
pub enum Accel {
    /// ONNX Runtime on the CPU.
    Cpu,
    /// ONNX Runtime's CUDA provider on GPU `device_id`.
    Cuda {
        /// GPU ordinal.
        device_id: i32,
    },
    /// ONNX Runtime's TensorRT provider.
    TensorRt(TrtOptions),
}

impl Accel {
    /// The backend's short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Accel::Cpu => "cpu",
            Accel::Cuda { .. } => "cuda",
            Accel::TensorRt(_) => "tensorrt",
        }
    }
}

/// What the host offers, found by the probes (`gpu::probe`, `gpu::tensorrt`, and the
/// providers the loaded ONNX Runtime lists).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HostCaps {
    /// Why no GPU is usable, or `None` when one is.
    pub gpu_missing: Option<String>,
    /// Why ONNX Runtime has no CUDA provider, or `None` when it has.
    pub cuda_ep_missing: Option<String>,
    /// Why ONNX Runtime cannot run TensorRT (no provider, or no `libnvinfer`), or `None`.
    pub trt_missing: Option<String>,
}

/// The engine kind `choose` settled on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// The CPU; under `auto`, with the reason the GPU was not used.
    Cpu,
    /// ONNX Runtime with CUDA.
    Cuda,
    /// ONNX Runtime with TensorRT.
    TensorRt,
}

/// Decides where models run. `auto` takes TensorRT, then CUDA, then the CPU, and says
/// why it passed each over; `cuda` and `tensorrt` are an error (the reason) when the
/// host cannot run them.
pub fn choose(backend: Backend, caps: &HostCaps) -> Result<(Choice, Option<String>), String> {
    let gpu = |then: &Option<String>| match (&caps.gpu_missing, then) {
        (Some(why), _) => Some(why.clone()),
        (None, Some(why)) => Some(why.clone()),
        (None, None) => None,
    };
    match backend {
        Backend::Cpu => Ok((Choice::Cpu, None)),
        Backend::Cuda => match gpu(&caps.cuda_ep_missing) {
            None => Ok((Choice::Cuda, None)),
            Some(why) => Err(why),
        },
        Backend::Tensorrt => match gpu(&caps.trt_missing) {
            None => Ok((Choice::TensorRt, None)),
            Some(why) => Err(why),
        },
        Backend::Auto => match (gpu(&caps.trt_missing), gpu(&caps.cuda_ep_missing)) {
            (None, _) => Ok((Choice::TensorRt, None)),
            (Some(_), None) => Ok((Choice::Cuda, None)),
            // The probe's own finding is logged beside this (the `gpu` field).
            (Some(_), Some(_)) if caps.gpu_missing.is_some() => {
                Ok((Choice::Cpu, Some("no usable GPU".into())))
            }
            (Some(trt), Some(cuda)) => Ok((
                Choice::Cpu,
                Some(format!("a GPU is present but {trt}, and {cuda}")),
            )),
        },
    }
}

/// The directory a model's built TensorRT engines are cached in under `root`:
/// `<model stem>-<hash of its bytes>/<GPU name>-trt<version>`. Every part of the key
/// changes the path: editing the model, moving to another GPU model, or upgrading
/// TensorRT builds afresh instead of loading an engine that no longer fits.
pub fn engine_dir(root: &Path, model: &Path, model_bytes: &[u8], gpu: &str, trt: &str) -> PathBuf {
    let stem = model
        .file_stem()
        .map_or_else(|| "model".into(), |s| s.to_string_lossy().into_owned());
    let hash = crate::hash::fnv1a(&[model_bytes]);
    root.join(format!("{}-{hash:016x}", slug(&stem)))
        .join(format!("{}-trt{}", slug(gpu), slug(trt)))
}

/// A path-safe name: ASCII letters, digits, `.` and `_` kept, everything else `-`.
fn slug(s: &str) -> String {
    let out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    out.trim_matches('-').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(gpu: bool, cuda: bool, trt: bool) -> HostCaps {
        let no = |ok: bool, why: &str| (!ok).then(|| why.to_string());
        HostCaps {
            gpu_missing: no(gpu, "no CUDA driver"),
            cuda_ep_missing: no(cuda, "no CUDA provider"),
            trt_missing: no(trt, "no TensorRT"),
        }
    }

    #[test]
    fn auto_prefers_tensorrt_then_cuda_then_the_cpu_and_says_why() {
        let auto = |c| choose(Backend::Auto, &c).unwrap();
        assert_eq!(auto(caps(true, true, true)), (Choice::TensorRt, None));
        assert_eq!(auto(caps(true, true, false)), (Choice::Cuda, None));
        assert_eq!(
            auto(caps(false, true, true)),
            (Choice::Cpu, Some("no usable GPU".into()))
        );
        let (choice, why) = auto(caps(true, false, false));
        assert_eq!(choice, Choice::Cpu);
        let why = why.unwrap();
        assert!(
            why.contains("no TensorRT") && why.contains("no CUDA provider"),
            "{why}"
        );
    }

    #[test]
    fn explicit_gpu_backends_fail_with_the_reason() {
        assert_eq!(
            choose(Backend::Cuda, &caps(false, true, true)),
            Err("no CUDA driver".into())
        );
        assert_eq!(
            choose(Backend::Cuda, &caps(true, false, true)),
            Err("no CUDA provider".into())
        );
        assert_eq!(
            choose(Backend::Tensorrt, &caps(true, true, false)),
            Err("no TensorRT".into())
        );
        assert_eq!(
            choose(Backend::Tensorrt, &caps(true, false, true)),
            Ok((Choice::TensorRt, None))
        );
        assert_eq!(
            choose(Backend::Cpu, &caps(false, false, false)),
            Ok((Choice::Cpu, None))
        );
    }

    #[test]
    fn every_part_of_the_engine_key_changes_the_directory() {
        let root = Path::new("engines");
        let model = Path::new("/m/yolov8n coco.onnx");
        let a = engine_dir(root, model, b"weights", "NVIDIA H100 80GB HBM3", "10.8.0");
        assert!(
            a.to_str().unwrap().starts_with("engines/yolov8n-coco-"),
            "{}",
            a.display()
        );
        assert!(
            a.ends_with("NVIDIA-H100-80GB-HBM3-trt10.8.0"),
            "{}",
            a.display()
        );
        assert_eq!(
            a,
            engine_dir(root, model, b"weights", "NVIDIA H100 80GB HBM3", "10.8.0")
        );
        assert_ne!(
            a,
            engine_dir(root, model, b"weights2", "NVIDIA H100 80GB HBM3", "10.8.0")
        );
        assert_ne!(
            a,
            engine_dir(root, model, b"weights", "NVIDIA L4", "10.8.0")
        );
        assert_ne!(
            a,
            engine_dir(root, model, b"weights", "NVIDIA H100 80GB HBM3", "10.9.0")
        );
    }
}
