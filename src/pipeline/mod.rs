//! The wiring, in one readable place: telemetry, publishers, models, cameras and the
//! HTTP server are built from the config here, supervised, and shut down in DESIGN
//! §4's order: stop intake → drain in-flight batches → publish their events → flush
//! every publisher within the deadline → log final figures → stop HTTP.
//!
//! Models load before any camera starts, so a missing or broken model is a start-up
//! error naming the file, and detectors are checked against their models' classes
//! before anything is written. Config parts whose stage is not built yet (KVS and RTSP
//! sources) are refused at start-up with their config path rather than silently
//! ignored.

mod camera;
pub mod models;
mod order;
mod results;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{join_key, Config, DetectorConfig};
use crate::detect;
use crate::http::{self, AppState};
use crate::publish::{start_aws_publishers, LocalPublisher, Publisher};
use crate::shard::Shard;
use crate::telemetry::{CameraMetrics, Telemetry, TelemetryError};
use camera::Ingest;
use models::{detection_model, ocr_model, ModelsError};
use results::{Bound, Results};

/// Tracks which enabled cameras have started, for `/readyz`.
#[derive(Debug, Default)]
pub struct Readiness {
    waiting: Mutex<BTreeSet<String>>,
}

impl Readiness {
    /// Readiness waiting on `camera_ids`; ready at once when there are none.
    pub fn new<I: IntoIterator<Item = String>>(camera_ids: I) -> Self {
        Self {
            waiting: Mutex::new(camera_ids.into_iter().collect()),
        }
    }

    /// Records that a camera's worker has started receiving frames.
    pub fn mark_started(&self, camera_id: &str) {
        self.lock().remove(camera_id);
    }

    /// Whether a camera has started.
    pub fn is_started(&self, camera_id: &str) -> bool {
        !self.lock().contains(camera_id)
    }

    /// Enabled cameras that have not started yet, in id order.
    pub fn waiting_for(&self) -> Vec<String> {
        self.lock().iter().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Runtime options that come from the command line rather than the config.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where the HTTP server listens.
    pub http_addr: SocketAddr,
    /// Exact per-frame figures for `kvs-infer bench`; `None` in normal operation.
    pub probe: Option<Arc<Probe>>,
    /// Which share of the enabled cameras this replica serves.
    pub shard: Shard,
    /// Record into this telemetry instead of a new one (the benchmark reads it).
    pub telemetry: Option<Arc<Telemetry>>,
}

/// Per-frame figures the benchmark reads while the pipeline runs: a frame count and
/// every frame's latency (the metrics' histogram buckets are too coarse for p99).
#[derive(Debug, Default)]
pub struct Probe {
    frames: std::sync::atomic::AtomicU64,
    reads: std::sync::atomic::AtomicU64,
    latencies_ms: Mutex<Vec<f32>>,
}

impl Probe {
    /// Records one processed frame.
    pub fn record(&self, latency_ms: f64) {
        self.frames
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.latencies_ms
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(latency_ms as f32);
    }

    /// Records one text read answered by the OCR stage.
    pub fn record_read(&self) {
        self.reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Text reads answered so far.
    pub fn reads(&self) -> u64 {
        self.reads.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Frames processed so far.
    pub fn frames(&self) -> u64 {
        self.frames.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Takes the latencies recorded so far, leaving none.
    pub fn take_latencies(&self) -> Vec<f32> {
        std::mem::take(&mut *self.latencies_ms.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Why the server could not start. The binary exits 2 on these.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Telemetry could not be set up.
    #[error(transparent)]
    Telemetry(#[from] TelemetryError),
    /// A model could not be loaded, or the backend is absent.
    #[error(transparent)]
    Models(#[from] ModelsError),
    /// The configured decoder cannot run here.
    #[error("decode.backend = \"{backend}\" cannot run: {reason}; use \"cpu\", or \"auto\" to use NVDEC when the host has it")]
    Decoder {
        /// The backend asked for.
        backend: &'static str,
        /// Why not.
        reason: String,
    },
    /// A detector does not fit its model.
    #[error("{path}: {message}")]
    Detector {
        /// Config path of the detector.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A publisher could not be opened.
    #[error("cannot open the {sink} publisher at {target}: {source}")]
    Publisher {
        /// The sink.
        sink: &'static str,
        /// Its directory or endpoint.
        target: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A camera thread could not be started.
    #[error("cannot start a camera thread: {0}")]
    Thread(std::io::Error),
    /// The HTTP address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Why a running server failed. The binary exits 1 on these.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The server could not start.
    #[error(transparent)]
    Start(#[from] StartError),
    /// The HTTP server stopped with an error.
    #[error("HTTP server failed: {0}")]
    Http(std::io::Error),
}

/// Runs the server until `shutdown` is cancelled, then shuts down in order.
pub async fn run(
    config: Config,
    options: Options,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let telemetry = match options.telemetry.clone() {
        Some(t) => t,
        None => Arc::new(Telemetry::new().map_err(StartError::from)?),
    };
    let metrics = telemetry.metrics();

    // This replica serves its shard of the enabled cameras; the rest belong to others.
    let cameras: Vec<(String, crate::config::CameraConfig)> = config
        .enabled_cameras()
        .filter(|(id, _)| options.shard.owns(id))
        .map(|(id, c)| (id.clone(), c.clone()))
        .collect();
    let mut config = config;
    config
        .cameras
        .retain(|id, c| !c.enabled || options.shard.owns(id));
    let config = config;
    tracing::info!(
        shard = %options.shard,
        owned = ?cameras.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(),
        "Cameras this replica serves."
    );
    for (id, _) in &cameras {
        metrics.shard_owns(&options.shard.to_string(), id);
    }
    let camera_metrics: Arc<[CameraMetrics]> = cameras
        .iter()
        .map(|(id, camera)| {
            let types: Vec<&str> = camera
                .detectors
                .iter()
                .flat_map(|d| d.event_types().iter().copied())
                .collect();
            metrics.camera(id, &types)
        })
        .collect();
    let decode = crate::decode::DecodePlan::settle(&config.decode, config.engine.device_id)
        .map_err(|reason| StartError::Decoder {
            backend: config.decode.backend.as_str(),
            reason,
        })?;
    let models =
        models::start(&config, metrics, camera_metrics.clone()).map_err(StartError::from)?;
    // Recognisers (OCR crops) and snapshots read host planes, which a frame kept on the
    // GPU makes on first need; detectors on the GPU read the device copy directly.
    let decode = decode.with_device_frames(models.on_gpu);

    // Detectors are checked against their models before anything is written or started.
    let mut camera_detectors = Vec::new();
    for (id, camera) in &cameras {
        let mut bound = Vec::new();
        for (d, detector) in camera.detectors.iter().enumerate() {
            let key = detection_model(detector);
            let model = models.index[&key];
            let built =
                detect::build(detector, &models.queues[model].spec().names).map_err(|e| {
                    let param = match detector {
                        DetectorConfig::Weapon(_) => "target_classes",
                        _ => "classes",
                    };
                    StartError::Detector {
                        path: format!("{}.detectors[{d}].params.{param}", join_key("cameras", id)),
                        message: e.to_string(),
                    }
                })?;
            let ocr = ocr_model(detector).map(|key| {
                let index = models.index[&key];
                (index, models.queues[index].clone())
            });
            bound.push(Bound {
                model,
                model_name: key.0.display().to_string(),
                detector: built,
                ocr,
            });
        }
        camera_detectors.push(bound);
    }

    let mut publishers: Vec<Arc<dyn Publisher>> = Vec::new();
    if let Some(local) = config.publishers.local.as_ref().filter(|l| l.enabled) {
        let publisher =
            LocalPublisher::open(&local.dir, local.save_snapshots, metrics.sink("local")).map_err(
                |source| StartError::Publisher {
                    sink: "local",
                    target: local.dir.display().to_string(),
                    source,
                },
            )?;
        tracing::info!(sink = "local", path = %publisher.events_path().display(), "Publisher ready.");
        publishers.push(Arc::new(publisher));
    }
    publishers.extend(start_aws_publishers(&config.publishers, metrics).await);
    // Events carry their S3 snapshot's URI in every sink; the S3 sink uploads there.
    let s3_snapshots = config
        .publishers
        .s3
        .as_ref()
        .filter(|s3| s3.enabled && s3.save_snapshots)
        .map(|s3| (s3.bucket.clone(), s3.prefix.clone()));

    let camera_results: Vec<Results> = cameras
        .iter()
        .zip(camera_detectors)
        .enumerate()
        .map(|(i, ((id, _), detectors))| Results {
            index: i,
            id: id.clone(),
            detectors,
            publishers: publishers.clone(),
            metrics: camera_metrics[i].clone(),
            probe: options.probe.clone(),
            s3_snapshots: s3_snapshots.clone(),
        })
        .collect();

    let readiness = Arc::new(Readiness::new(cameras.iter().map(|(id, _)| id.clone())));
    let intake = shutdown.child_token();
    let mut results_tasks: JoinSet<()> = JoinSet::new();
    let mut ingest_threads = Vec::new();
    for ((i, (id, camera)), results) in cameras.iter().enumerate().zip(camera_results) {
        let (reply, rx) = tokio::sync::mpsc::unbounded_channel();
        results_tasks.spawn(results.run(rx));
        let queues = {
            let mut used: Vec<usize> = camera
                .detectors
                .iter()
                .map(|d| models.index[&detection_model(d)])
                .collect();
            used.sort_unstable();
            used.dedup();
            used.into_iter().map(|m| models.queues[m].clone()).collect()
        };
        let ingest = Ingest {
            index: i,
            id: id.clone(),
            config: camera.clone(),
            decode: decode.clone(),
            sent: std::cell::Cell::new(0),
            queues,
            reply,
            metrics: camera_metrics[i].clone(),
            readiness: readiness.clone(),
            stop: intake.clone(),
            runtime: tokio::runtime::Handle::current(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("camera-{i}"))
            .spawn(move || ingest.run())
            .map_err(StartError::Thread)?;
        ingest_threads.push(thread);
    }

    let listener = tokio::net::TcpListener::bind(options.http_addr)
        .await
        .map_err(|source| StartError::Listen {
            addr: options.http_addr,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Listen {
        addr: options.http_addr,
        source,
    })?;
    let http_stop = CancellationToken::new();
    let app = http::router(AppState {
        telemetry: telemetry.clone(),
        readiness: readiness.clone(),
    });
    let mut http_task = tokio::spawn({
        let stop = http_stop.clone();
        async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        }
    });
    tracing::info!(
        addr = %addr,
        version = crate::VERSION,
        cameras = ?cameras.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(),
        publishers = ?publishers.iter().map(|p| p.name()).collect::<Vec<_>>(),
        "Server listening."
    );

    let http_error = tokio::select! {
        () = shutdown.cancelled() => None,
        result = &mut http_task => Some(match result {
            Ok(Err(e)) => e,
            Ok(Ok(())) => std::io::Error::other("stopped unexpectedly"),
            Err(e) => std::io::Error::other(e),
        }),
    };

    let started = Instant::now();
    let deadline = started + Duration::from_millis(config.shutdown.deadline_ms);
    tracing::info!(
        deadline_ms = config.shutdown.deadline_ms,
        "Stopping intake."
    );
    intake.cancel();
    let (queues, queue_tasks) = (models.queues, models.tasks);
    let drained = tokio::time::timeout_at(deadline.into(), async {
        let _ = tokio::task::spawn_blocking(move || {
            for thread in ingest_threads {
                let _ = thread.join();
            }
        })
        .await;
        // Each queue stops once its last handle is gone and its last job has run: the
        // camera threads' handles went with them, ours go here, and the OCR stage's go
        // with the results tasks once every read is answered.
        tracing::info!("Draining in-flight batches.");
        drop(queues);
        for task in queue_tasks {
            task.join().await;
        }
        while results_tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::error!(
            "Shutdown deadline passed before every batch drained; flushing what is queued."
        );
    }

    tracing::info!(publishers = publishers.len(), "Flushing publishers.");
    for publisher in &publishers {
        let report = publisher.close(deadline).await;
        tracing::info!(
            sink = publisher.name(),
            published = report.published,
            snapshots = report.snapshots,
            failed = report.failed,
            dropped = report.dropped,
            retried = report.retried,
            batches = report.batches,
            calls = report.calls,
            "Publisher closed."
        );
    }

    http_stop.cancel();
    match tokio::time::timeout(Duration::from_secs(2), http_task).await {
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "HTTP server stopped with an error."),
        Err(_) => tracing::warn!("HTTP server did not stop within 2 s; leaving it."),
        _ => {}
    }
    tracing::info!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "Shutdown complete."
    );
    match http_error {
        Some(e) => Err(RunError::Http(e)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_waits_for_every_enabled_camera() {
        let r = Readiness::new(["b".to_owned(), "a".to_owned()]);
        assert_eq!(r.waiting_for(), ["a", "b"]);
        assert!(!r.is_started("a"));
        r.mark_started("a");
        assert!(r.is_started("a"));
        assert_eq!(r.waiting_for(), ["b"]);
        r.mark_started("b");
        assert!(r.waiting_for().is_empty());
        assert!(Readiness::new(Vec::new()).waiting_for().is_empty());
    }
}
