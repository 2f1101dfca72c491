//! The async shell around [`State`]: one actor task per model owns the queue, and one
//! worker thread per engine instance preprocesses, runs and decodes batches.
//!
//! Cameras submit [`Job`]s through a cloneable [`ModelQueue`]. The actor forms a batch
//! only when a worker is idle, so while one worker runs a batch the next is being
//! formed and preprocessed by another: preprocessing overlaps inference. Results go
//! back on each job's own reply channel; a job whose channel has closed is dropped
//! (reason `cancelled`) rather than run.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio::task::JoinHandle;

use super::state::{Dropped, Entry, Limits, State};
use crate::decode::Frame;
use crate::engine::{BatchOutput, Engine, ModelSpec};
use crate::postprocess::yolo::{self, DecodeParams};
use crate::postprocess::Detection;
use crate::preprocess::cpu::letterbox_into;
use crate::telemetry::{CameraMetrics, ModelMetrics};

/// Where a camera receives its results.
pub type Reply = mpsc::UnboundedSender<InferResult>;

/// One frame for one model, with its way home.
pub struct Job {
    /// The camera's index in the pipeline.
    pub camera: usize,
    /// The decoded frame, shared with the camera (for snapshots).
    pub frame: Arc<Frame>,
    /// The camera's result channel.
    pub reply: Reply,
    /// Held by offline sources until the job is taken: their backpressure.
    pub permit: Option<OwnedSemaphorePermit>,
}

/// Detections for one frame from one model.
#[derive(Debug)]
pub struct InferResult {
    /// Which model queue produced it.
    pub model: usize,
    /// The frame.
    pub frame: Arc<Frame>,
    /// Detections in source pixels, best first.
    pub detections: Vec<Detection>,
    /// Size of the batch the frame ran in.
    pub batch_size: usize,
    /// When the detections were ready.
    pub ready_at: Instant,
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
    Idle(usize),
    Drain,
}

/// A handle to one model's queue; clone freely.
#[derive(Clone)]
pub struct ModelQueue {
    tx: mpsc::UnboundedSender<Msg>,
    spec: Arc<ModelSpec>,
    label: Arc<str>,
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
    /// Decoding thresholds.
    pub decode: DecodeParams,
    /// The model queue's instruments.
    pub metrics: ModelMetrics,
    /// Every camera's instruments, by camera index (for drop counts).
    pub cameras: Arc<[CameraMetrics]>,
}

/// Joins the actor and its workers at shutdown.
pub struct QueueTask {
    actor: JoinHandle<()>,
}

impl QueueTask {
    /// Waits until every pending and in-flight batch has run and its results are sent.
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
        let label: Arc<str> = setup.label.clone().into();
        let (tx, rx) = mpsc::unbounded_channel();
        let mut workers = Vec::new();
        for (index, engine) in setup.engines.into_iter().enumerate() {
            let (batch_tx, batch_rx) = std::sync::mpsc::channel::<Vec<Entry<Job>>>();
            let worker = Worker {
                index,
                model: setup.model,
                engine,
                decode: setup.decode,
                metrics: setup.metrics.clone(),
                cameras: setup.cameras.clone(),
                idle: tx.clone(),
            };
            let name = format!("engine-{}-{index}", setup.label);
            let handle = std::thread::Builder::new()
                .name(name)
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
            draining: false,
        };
        let task = tokio::spawn(actor.run(rx));
        (ModelQueue { tx, spec, label }, QueueTask { actor: task })
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

    /// Queues a frame; it may replace the camera's previous pending frame.
    pub fn submit(&self, job: Job) -> Result<(), SubmitError> {
        self.tx.send(Msg::Submit(job)).map_err(|_| SubmitError {
            model: self.label.to_string(),
        })
    }

    /// Shutdown: run whatever is pending at once, then stop when all is done.
    pub fn drain(&self) {
        let _ = self.tx.send(Msg::Drain);
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
    draining: bool,
}

impl Actor {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Msg>) {
        let mut dropped = Vec::new();
        loop {
            let deadline = self.state.next_deadline().filter(|_| !self.idle.is_empty());
            // Outer None: the deadline passed. Inner None: every handle is gone.
            let msg = match deadline {
                Some(at) => tokio::select! {
                    msg = rx.recv() => Some(msg),
                    () = tokio::time::sleep_until(at.into()) => None,
                },
                None => Some(rx.recv().await),
            };
            let now = Instant::now();
            match msg {
                Some(Some(Msg::Add)) => self.state.add_camera(),
                Some(Some(Msg::Remove)) => self.state.remove_camera(),
                Some(Some(Msg::Submit(job))) => {
                    let born = job.frame.received_at;
                    dropped.extend(self.state.push(job.camera, job, born, now));
                }
                Some(Some(Msg::Idle(worker))) => self.idle.push(worker),
                Some(Some(Msg::Drain)) | Some(None) => {
                    self.draining = true;
                    self.state.drain();
                }
                None => {}
            }
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
                    camera.dropped(reason.as_str(), 1);
                }
            }
            if self.draining && self.state.is_empty() && self.idle.len() == self.workers.len() {
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

struct Worker {
    index: usize,
    model: usize,
    engine: Box<dyn Engine>,
    decode: DecodeParams,
    metrics: ModelMetrics,
    cameras: Arc<[CameraMetrics]>,
    idle: mpsc::UnboundedSender<Msg>,
}

impl Worker {
    fn run(mut self, batches: &std::sync::mpsc::Receiver<Vec<Entry<Job>>>) {
        let mut input = Vec::new();
        let mut output = BatchOutput::default();
        while let Ok(batch) = batches.recv() {
            self.run_batch(batch, &mut input, &mut output);
            if self.idle.send(Msg::Idle(self.index)).is_err() {
                break;
            }
        }
    }

    fn run_batch(
        &mut self,
        batch: Vec<Entry<Job>>,
        input: &mut Vec<f32>,
        output: &mut BatchOutput,
    ) {
        let started = Instant::now();
        let spec = self.engine.spec();
        let (w, h) = (spec.width, spec.height);
        let slot = 3 * (w * h) as usize;
        input.resize(slot * batch.len(), 0.0);
        let mut jobs = Vec::with_capacity(batch.len());
        let mut boxes = Vec::with_capacity(batch.len());
        for (k, entry) in batch.into_iter().enumerate() {
            let mut job = entry.item;
            boxes.push(letterbox_into(
                &job.frame,
                w,
                h,
                &mut input[k * slot..(k + 1) * slot],
            ));
            // Taken and prepared: an offline source may send its next frame.
            job.permit.take();
            jobs.push(job);
        }
        let n = jobs.len();
        if let Err(e) = self.engine.run(input, n, output) {
            tracing::error!(error = %e, batch = n, "Batch failed; its frames are dropped.");
            for job in &jobs {
                if let Some(camera) = self.cameras.get(job.camera) {
                    camera.dropped("engine_error", 1);
                }
            }
            return;
        }
        let names = &self.engine.spec().names;
        let ready_at = Instant::now();
        for (k, job) in jobs.into_iter().enumerate() {
            let src = (job.frame.width, job.frame.height);
            let detections = yolo::decode(
                output.image(k),
                output.anchors,
                names,
                &self.decode,
                &boxes[k],
                src,
            );
            // A camera that has gone away no longer listens; nothing to do then.
            let _ = job.reply.send(InferResult {
                model: self.model,
                frame: job.frame,
                detections,
                batch_size: n,
                ready_at,
            });
        }
        self.metrics
            .batch(n, started.elapsed().as_secs_f64() * 1000.0);
    }
}
