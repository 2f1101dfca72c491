//! The async shell around [`State`]: one actor task per model owns the queue, and one
//! worker thread per engine instance (`super::worker`) preprocesses, runs and decodes
//! batches.
//!
//! Cameras submit [`Job`]s through a cloneable [`ModelQueue`]. The actor forms a batch
//! only when a worker is idle, so while one worker runs a batch the next is formed and
//! preprocessed by another: preprocessing overlaps inference. Results go back on each
//! job's own reply channel; a job whose channel has closed is dropped (reason
//! `cancelled`) rather than run. The actor stops once every handle is gone and every
//! queued job has run, which is how shutdown drains in-flight work.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio::task::JoinHandle;

use super::state::{Dropped, Entry, Limits, State};
use super::worker::{Worker, WorkerSetup};
use crate::decode::Frame;
use crate::engine::{Engine, ModelSpec};
use crate::postprocess::yolo::DecodeParams;
use crate::postprocess::Detection;
use crate::preprocess::Letterbox;
use crate::telemetry::{CameraMetrics, ModelMetrics};

/// Where a camera receives its results.
pub type Reply = mpsc::UnboundedSender<InferResult>;

/// A letterboxed input shared by the jobs of one frame sent to several models with the
/// same input size: the first worker to preprocess it stores it, the others copy.
#[derive(Debug, Default)]
pub struct SharedInput {
    pub(super) slot: Mutex<Option<Prepared>>,
}

/// A letterboxed input: its width, height, values and transform.
type Prepared = (u32, u32, Arc<[f32]>, Letterbox);

/// What part of the frame a job runs on.
#[derive(Debug, Clone)]
pub enum Input {
    /// The whole frame, letterboxed (detectors); optionally shared between models.
    Frame(Option<Arc<SharedInput>>),
    /// A box of the frame in source pixels, as a text line (recognisers).
    Crop([f32; 4]),
}

/// What a job produced.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Detections in source pixels, best first.
    Detections(Vec<Detection>),
    /// Recognised text (unfiltered) and its mean character probability.
    Text {
        /// The text.
        text: String,
        /// Mean probability of its characters.
        confidence: f32,
    },
    /// The job was dropped (stale, cancelled or failed) before it ran.
    Dropped,
}

/// Sends [`Output::Dropped`] for a job that leaves without a result, so a caller that
/// waits for each answer (the OCR stage) is never left waiting.
pub struct DropNotice {
    reply: Reply,
    model: usize,
    frame: Arc<Frame>,
    tag: u64,
    armed: bool,
}

impl DropNotice {
    /// A notice that answers `tag` on `reply` unless disarmed.
    pub fn new(reply: Reply, model: usize, frame: Arc<Frame>, tag: u64) -> Self {
        Self {
            reply,
            model,
            frame,
            tag,
            armed: true,
        }
    }

    pub(super) fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for DropNotice {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.reply.send(InferResult {
                model: self.model,
                frame: self.frame.clone(),
                output: Output::Dropped,
                batch_size: 0,
                ready_at: Instant::now(),
                tag: self.tag,
            });
        }
    }
}

/// One frame (or crop) for one model, with its way home.
pub struct Job {
    /// Queue key: the camera index for frames (newest replaces older), unique per
    /// request for crops.
    pub key: usize,
    /// The camera's index in the pipeline (for drop counts).
    pub camera: usize,
    /// The decoded frame, shared with the camera (for snapshots).
    pub frame: Arc<Frame>,
    /// What to run on.
    pub input: Input,
    /// The camera's result channel.
    pub reply: Reply,
    /// Held by offline sources until the job is taken: their backpressure.
    pub permit: Option<OwnedSemaphorePermit>,
    /// Echoed in the result: the caller's context.
    pub tag: u64,
    /// Answers [`Output::Dropped`] if the job never runs.
    pub notice: Option<DropNotice>,
}

/// What one job produced.
#[derive(Debug)]
pub struct InferResult {
    /// Which model queue produced it.
    pub model: usize,
    /// The frame.
    pub frame: Arc<Frame>,
    /// Detections, text, or the news that it was dropped.
    pub output: Output,
    /// Size of the batch it ran in (0 when dropped).
    pub batch_size: usize,
    /// When the output was ready.
    pub ready_at: Instant,
    /// The job's tag.
    pub tag: u64,
}

/// The queue is gone (the scheduler has shut down).
#[derive(Debug, thiserror::Error)]
#[error("the scheduler for model {model} has stopped")]
pub struct SubmitError {
    /// The model's label.
    pub model: String,
}

enum Msg {
    Add,
    Remove,
    Submit(Job),
}

/// A handle to one model's queue; clone freely. The queue runs until every handle is
/// dropped and its last job has run.
#[derive(Clone)]
pub struct ModelQueue {
    tx: mpsc::UnboundedSender<Msg>,
    model: usize,
    spec: Arc<ModelSpec>,
    label: Arc<str>,
}

/// How a queue's workers turn engine output into results.
#[derive(Debug, Clone)]
pub enum Task {
    /// YOLO decoding with these thresholds.
    Detect(DecodeParams),
    /// CTC greedy decoding with the model's character list.
    Recognize,
}

/// What a model queue needs to run.
pub struct QueueSetup {
    /// The model's index in the pipeline (echoed in results).
    pub model: usize,
    /// Metric label and log name.
    pub label: String,
    /// Batching limits.
    pub limits: Limits,
    /// One engine per worker thread (all for the same model).
    pub engines: Vec<Box<dyn Engine>>,
    /// How outputs are decoded.
    pub task: Task,
    /// The model queue's instruments.
    pub metrics: ModelMetrics,
    /// Every camera's instruments, by camera index (for drop counts).
    pub cameras: Arc<[CameraMetrics]>,
    /// Where GPU engines' preprocessing kernels are cached; `None` keeps preprocessing
    /// on the CPU for every engine.
    pub kernel_cache: Option<std::path::PathBuf>,
}

/// Joins the actor and its workers at shutdown.
pub struct QueueTask {
    actor: JoinHandle<()>,
}

impl QueueTask {
    /// Waits until every handle is gone and every queued job has run.
    pub async fn join(self) {
        if let Err(e) = self.actor.await {
            tracing::error!(error = %e, "Scheduler actor failed.");
        }
    }
}

impl ModelQueue {
    /// Starts the actor task (on the current runtime) and one worker thread per engine.
    pub fn start(setup: QueueSetup) -> (ModelQueue, QueueTask) {
        let spec = Arc::new(setup.engines[0].spec().clone());
        let model = setup.model;
        let label: Arc<str> = setup.label.clone().into();
        let (tx, rx) = mpsc::unbounded_channel();
        let (idle_tx, idle_rx) = mpsc::unbounded_channel();
        let mut workers = Vec::new();
        for (index, engine) in setup.engines.into_iter().enumerate() {
            let (batch_tx, batch_rx) = std::sync::mpsc::channel::<Vec<Entry<Job>>>();
            let worker = Worker::new(
                WorkerSetup {
                    index,
                    model: setup.model,
                    task: setup.task.clone(),
                    metrics: setup.metrics.clone(),
                    cameras: setup.cameras.clone(),
                    idle: idle_tx.clone(),
                    kernel_cache: setup.kernel_cache.clone(),
                },
                engine,
            );
            let handle = std::thread::Builder::new()
                .name(format!("engine-{}-{index}", setup.label))
                .spawn(move || worker.run(&batch_rx))
                .expect("spawning an engine thread");
            workers.push((batch_tx, handle));
        }
        let actor = Actor {
            state: State::new(setup.limits),
            idle: (0..workers.len()).rev().collect(),
            workers,
            metrics: setup.metrics,
            cameras: setup.cameras,
        };
        let task = tokio::spawn(actor.run(rx, idle_rx));
        (
            ModelQueue {
                tx,
                model,
                spec,
                label,
            },
            QueueTask { actor: task },
        )
    }

    /// The model's index in the pipeline (what its results carry in `model`).
    pub fn model(&self) -> usize {
        self.model
    }

    /// The model's input and classes.
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// A camera will send frames.
    pub fn add_camera(&self) {
        let _ = self.tx.send(Msg::Add);
    }

    /// A camera has stopped sending frames; what it queued still runs.
    pub fn remove_camera(&self) {
        let _ = self.tx.send(Msg::Remove);
    }

    /// Queues a job; a frame may replace the same camera's previous pending frame.
    pub fn submit(&self, job: Job) -> Result<(), SubmitError> {
        self.tx.send(Msg::Submit(job)).map_err(|_| SubmitError {
            model: self.label.to_string(),
        })
    }
}

/// A worker thread and the channel that feeds it batches.
type WorkerHandle = (
    std::sync::mpsc::Sender<Vec<Entry<Job>>>,
    std::thread::JoinHandle<()>,
);

struct Actor {
    state: State<Job>,
    idle: Vec<usize>,
    workers: Vec<WorkerHandle>,
    metrics: ModelMetrics,
    cameras: Arc<[CameraMetrics]>,
}

impl Actor {
    async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<Msg>,
        mut idle_rx: mpsc::UnboundedReceiver<usize>,
    ) {
        let mut dropped = Vec::new();
        let mut open = true;
        loop {
            let deadline = self.state.next_deadline().filter(|_| !self.idle.is_empty());
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                msg = rx.recv(), if open => match msg {
                    Some(Msg::Add) => self.state.add_camera(),
                    Some(Msg::Remove) => self.state.remove_camera(),
                    Some(Msg::Submit(job)) => {
                        let (key, born) = (job.key, job.frame.received_at);
                        dropped.extend(self.state.push(key, job, born, Instant::now()));
                    }
                    None => open = false,
                },
                Some(worker) = idle_rx.recv() => self.idle.push(worker),
                () = sleep => {}
            }
            let now = Instant::now();
            while let Some(&worker) = self.idle.last() {
                let Some(batch) =
                    self.state
                        .next_batch(now, |job| job.reply.is_closed(), &mut dropped)
                else {
                    break;
                };
                for entry in &batch {
                    let waited = now.saturating_duration_since(entry.enqueued_at);
                    self.metrics.queue_delay_ms(waited.as_secs_f64() * 1000.0);
                }
                if self.workers[worker].0.send(batch).is_err() {
                    tracing::error!(worker, "Engine worker has stopped; its batch is lost.");
                }
                self.idle.pop();
            }
            for Dropped { entry, reason } in dropped.drain(..) {
                if let Some(camera) = self.cameras.get(entry.item.camera) {
                    camera.dropped(reason, 1);
                }
            }
            if !open && self.state.is_empty() && self.idle.len() == self.workers.len() {
                break;
            }
        }
        // Closing the batch channels ends the worker threads.
        let handles: Vec<_> = self
            .workers
            .into_iter()
            .map(|(tx, handle)| {
                drop(tx);
                handle
            })
            .collect();
        let _ = tokio::task::spawn_blocking(move || {
            for handle in handles {
                let _ = handle.join();
            }
        })
        .await;
    }
}
