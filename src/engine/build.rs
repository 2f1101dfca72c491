//! `kvs-infer build-engine`: builds a model's TensorRT engine ahead of time on the GPU
//! host, into the same cache the server loads from (`engine::accel::engine_dir`), so
//! the first camera does not wait minutes for TensorRT's optimiser. Building is
//! loading the model through the TensorRT provider with the engine cache on, then
//! running the profile's smallest and largest batch once.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::onnx::OrtEngine;
use super::providers::{profile, Placement};
use super::{BatchOutput, Engine, EngineError, ModelKind};
use crate::config::Backend;

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    /// The ONNX model.
    pub model: PathBuf,
    /// Largest batch the engine's profile accepts.
    pub max_batch: u32,
    /// Allow fp16 kernels.
    pub fp16: bool,
    /// Cache root (`engine.engines_dir`).
    pub engines_dir: PathBuf,
    /// GPU ordinal.
    pub device_id: u32,
}

/// What was built.
#[derive(Debug, Clone)]
pub struct Built {
    /// The cache directory the engine is in.
    pub dir: PathBuf,
    /// The GPU it is built for.
    pub gpu: String,
    /// TensorRT's version.
    pub tensorrt: String,
    /// Seconds the build (and warm-up) took.
    pub seconds: f64,
    /// Files in `dir` after the build.
    pub files: Vec<String>,
}

/// Why no engine was built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// This host cannot build TensorRT engines (no GPU, no TensorRT, no provider).
    #[error("cannot build a TensorRT engine here: {0}")]
    Unavailable(String),
    /// The model file is not there.
    #[error("model {}: file not found", .0.display())]
    NoModel(PathBuf),
    /// The model or the build failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// Builds `req.model`'s engine into its cache directory.
pub fn build_engine(req: &BuildRequest) -> Result<Built, BuildError> {
    if !req.model.is_file() {
        return Err(BuildError::NoModel(req.model.clone()));
    }
    let placement =
        Placement::resolve(Backend::Tensorrt, req.device_id).map_err(BuildError::Unavailable)?;
    let batch = profile(req.max_batch, req.max_batch);
    let accel = placement.accel(&req.model, req.fp16, batch, &req.engines_dir)?;
    let started = Instant::now();
    let mut engine = OrtEngine::load_with(&req.model, 1, ModelKind::Detector, &accel)?;
    let spec = engine.spec().clone();
    let sizes = match spec.max_batch {
        Some(fixed) => vec![fixed as usize],
        None => vec![1, req.max_batch.max(1) as usize],
    };
    let mut output = BatchOutput::default();
    for n in sizes {
        let input = vec![0.0_f32; n * 3 * (spec.width * spec.height) as usize];
        engine.run(&input, n, &mut output)?;
    }
    let dir = match &accel {
        super::accel::Accel::TensorRt(o) => o.cache_dir.clone(),
        _ => unreachable!("TensorRT was resolved"),
    };
    Ok(Built {
        files: list(&dir),
        dir,
        gpu: placement.gpu_name,
        tensorrt: placement.trt_version.unwrap_or_default(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn list(dir: &Path) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}
