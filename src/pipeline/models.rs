//! Loading models before any camera starts: one queue per distinct (model file, kind),
//! with its engine instances, batch limits and decoding derived from the detectors
//! that use it. `alpr` detectors add a recogniser queue (the OCR stage) shared by every
//! camera, so plate crops from all cameras batch together.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{Backend, Config, DetectorConfig, EngineConfig};
use crate::engine::accel::Choice;
use crate::engine::onnx::OrtEngine;
use crate::engine::providers::Placement;
use crate::engine::{Engine, EngineError, ModelKind};
use crate::postprocess::yolo::DecodeParams;
use crate::scheduler::{Limits, ModelQueue, QueueSetup, QueueTask, Task};
use crate::telemetry::{CameraMetrics, Metrics};

/// A model a detector runs: its file and what it does.
pub type ModelKey = (PathBuf, ModelKind);

/// The detection model a detector observes.
pub fn detection_model(detector: &DetectorConfig) -> ModelKey {
    let path = match detector {
        DetectorConfig::Weapon(p) => p.model_path.clone(),
        DetectorConfig::FireSmoke(p) => p.model_path.clone(),
        DetectorConfig::Alpr(p) => p.detector_model_path.clone(),
        DetectorConfig::Yolo(p) => p.model_path.clone(),
    };
    (path, ModelKind::Detector)
}

/// The recogniser a detector sends crops to, if any.
pub fn ocr_model(detector: &DetectorConfig) -> Option<ModelKey> {
    match detector {
        DetectorConfig::Alpr(p) => Some((p.ocr_model(), ModelKind::Recognizer)),
        _ => None,
    }
}

fn thresholds(detector: &DetectorConfig) -> (f32, f32) {
    match detector {
        DetectorConfig::Yolo(p) => (p.conf_threshold as f32, p.iou_threshold as f32),
        DetectorConfig::Weapon(p) => (p.conf_threshold as f32, 0.45),
        DetectorConfig::FireSmoke(p) => (
            p.fire_conf_threshold.min(p.smoke_conf_threshold) as f32,
            0.45,
        ),
        DetectorConfig::Alpr(p) => (p.conf_threshold as f32, 0.45),
    }
}

/// How many engine instances and threads each, for this host.
pub fn engine_shape(config: &EngineConfig) -> (usize, usize) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let instances = match config.instances {
        0 => cores.clamp(1, 4),
        n => n as usize,
    };
    let threads = match config.intra_threads {
        0 => (cores / instances).max(1),
        n => n as usize,
    };
    (instances, threads)
}

/// The running model queues; index order is the `model` of results.
pub struct Models {
    /// Queues in index order.
    pub queues: Vec<ModelQueue>,
    /// Index of each model.
    pub index: BTreeMap<ModelKey, usize>,
    /// Joined at shutdown.
    pub tasks: Vec<QueueTask>,
    /// Whether the models run on a GPU (whose preprocessing reads frames in device
    /// memory).
    pub on_gpu: bool,
}

/// Why the models could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ModelsError {
    /// A model failed to load or is not a model of the kind its detector needs.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The configured GPU backend cannot run here.
    #[error("engine.backend = \"{}\" cannot run: {reason}; use \"cpu\", or \"auto\" to use the GPU when one can be", backend.as_str())]
    Backend {
        /// The backend asked for.
        backend: Backend,
        /// Why not: no usable GPU (the probe's reason), or no GPU engine in this build.
        reason: String,
    },
}

/// Loads every model the enabled cameras use and starts its queue.
pub fn start(
    config: &Config,
    metrics: &Metrics,
    cameras: Arc<[CameraMetrics]>,
) -> Result<Models, ModelsError> {
    let placement = placement(&config.engine)?;
    let mut tasks: BTreeMap<ModelKey, Task> = BTreeMap::new();
    for (_, camera) in config.enabled_cameras() {
        for detector in &camera.detectors {
            let (conf, iou) = thresholds(detector);
            tasks
                .entry(detection_model(detector))
                .and_modify(|t| {
                    if let Task::Detect(p) = t {
                        p.conf_threshold = p.conf_threshold.min(conf);
                    }
                })
                .or_insert(Task::Detect(DecodeParams {
                    conf_threshold: conf,
                    iou_threshold: iou,
                    ..DecodeParams::default()
                }));
            if let Some(key) = ocr_model(detector) {
                tasks.insert(key, Task::Recognize);
            }
        }
    }
    let (instances, threads) = engine_shape(&config.engine);
    let mut models = Models {
        queues: Vec::new(),
        index: BTreeMap::new(),
        tasks: Vec::new(),
        on_gpu: placement.choice != Choice::Cpu,
    };
    for (i, ((path, kind), task)) in tasks.into_iter().enumerate() {
        // Once per model: for TensorRT this hashes the model file for its cache key.
        let engines = placement
            .accel(
                &path,
                config.engine.fp16,
                crate::engine::providers::profile(
                    config.scheduler.preferred_batch_size,
                    config.scheduler.max_batch_size,
                ),
                &config.engine.engines_dir,
            )
            .and_then(|accel| {
                (0..instances)
                    .map(|_| {
                        OrtEngine::load_with(&path, threads, kind, &accel)
                            .map(|e| Box::new(e) as Box<dyn Engine>)
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(|e| match (kind, e) {
                (ModelKind::Recognizer, EngineError::Model { model, message }) => EngineError::Model {
                    model,
                    message: format!(
                        "{message} (the alpr detector's OCR model: set ocr_model_path, or run scripts/fetch-assets.sh for the default)"
                    ),
                },
                (_, e) => e,
            })?;
        let spec = engines[0].spec();
        let label = path
            .file_stem()
            .map_or_else(|| format!("model{i}"), |s| s.to_string_lossy().into_owned());
        let max_batch = (config.scheduler.max_batch_size as usize)
            .min(spec.max_batch.map_or(usize::MAX, |b| b as usize))
            .max(1);
        tracing::info!(
            model = %path.display(),
            kind = ?kind,
            backend = engines[0].name(),
            input = format!("{}x{}", spec.width, spec.height),
            classes = spec.names.len(),
            instances,
            intra_threads = threads,
            max_batch,
            "Model loaded."
        );
        let limits = Limits {
            max_batch_size: max_batch,
            preferred_batch_size: (config.scheduler.preferred_batch_size as usize).min(max_batch),
            max_queue_delay: Duration::from_millis(config.scheduler.max_queue_delay_ms),
            max_staleness: Duration::from_millis(config.scheduler.max_staleness_ms),
        };
        let (queue, queue_task) = ModelQueue::start(QueueSetup {
            model: i,
            metrics: metrics.model(&label),
            label,
            limits,
            engines,
            task,
            cameras: cameras.clone(),
            // GPU engines letterbox on the GPU, with kernels cached beside the engines.
            kernel_cache: (placement.choice != Choice::Cpu)
                .then(|| config.engine.engines_dir.join("kernels")),
        });
        models.index.insert((path, kind), i);
        models.queues.push(queue);
        models.tasks.push(queue_task);
    }
    Ok(models)
}

/// Settles `engine.backend` against what the host has, once before any model loads:
/// `auto` logs what it chose and why; `cuda` or `tensorrt` that cannot run is
/// [`ModelsError::Backend`].
fn placement(engine: &EngineConfig) -> Result<Placement, ModelsError> {
    let placement = Placement::resolve(engine.backend, engine.device_id).map_err(|reason| {
        ModelsError::Backend {
            backend: engine.backend,
            reason,
        }
    })?;
    match placement.choice {
        Choice::Cpu if engine.backend == Backend::Cpu => {}
        Choice::Cpu => {
            let why = placement.why.as_deref().unwrap_or_default();
            tracing::info!(backend = "cpu", gpu = %placement.gpu_summary, "Using the CPU engine: {why}.");
        }
        Choice::Cuda => tracing::info!(
            backend = "cuda",
            gpu = %placement.gpu_name,
            "Using the GPU engine: ONNX Runtime with CUDA."
        ),
        Choice::TensorRt => tracing::info!(
            backend = "tensorrt",
            gpu = %placement.gpu_name,
            tensorrt = placement.trt_version.as_deref().unwrap_or_default(),
            "Using the GPU engine: TensorRT."
        ),
    }
    Ok(placement)
}
