//! An engine worker: one thread per engine instance, fed batches by its model's actor.
//! It prepares each batch's input (letterboxed frames, or OCR crops), runs the engine
//! and decodes the outputs back to each job's camera.
//!
//! Preprocessing happens on the CPU into a host tensor, or, for an engine that reads
//! device memory (CUDA, TensorRT), on the GPU with our kernels into a device tensor
//! the engine reads where it lies ([`crate::gpu::prep`]). There, a detector's output
//! stays on the device too, and only its candidates come back
//! ([`crate::gpu::candidates`]); NMS finishes on the host. A GPU stage that cannot
//! start or fails is logged and the worker goes on on the CPU: a batch is never lost
//! to it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use super::actor::{InferResult, Input, Job, Output, Task};
use super::state::{DropReason, Entry};
use crate::decode::Frame;
use crate::engine::{BatchInput, BatchOutput, Engine, KeptOutput};
use crate::gpu::candidates::{CandidateStage, GpuCandidates};
use crate::gpu::prep::GpuPrep;
use crate::postprocess::ctc::greedy_decode;
use crate::postprocess::yolo::{self, Candidate};
use crate::preprocess::cpu::{letterbox_into, ocr_crop_into};
use crate::preprocess::Letterbox;
use crate::telemetry::{CameraMetrics, ModelMetrics};

/// What a worker is told besides its engine.
pub(super) struct WorkerSetup {
    pub index: usize,
    pub model: usize,
    pub task: Task,
    pub metrics: ModelMetrics,
    pub cameras: Arc<[CameraMetrics]>,
    pub idle: mpsc::UnboundedSender<usize>,
    pub kernel_cache: Option<PathBuf>,
}

pub(super) struct Worker {
    index: usize,
    model: usize,
    engine: Box<dyn Engine>,
    task: Task,
    metrics: ModelMetrics,
    cameras: Arc<[CameraMetrics]>,
    idle: mpsc::UnboundedSender<usize>,
    /// GPU preprocessing, for a detector on an engine that reads device memory.
    gpu: Option<GpuPrep>,
    /// The candidate stage on the GPU, beside GPU preprocessing.
    post: Option<Box<dyn CandidateStage>>,
}

impl Worker {
    pub(super) fn new(setup: WorkerSetup, engine: Box<dyn Engine>) -> Self {
        let (gpu, post) = match (&setup.task, engine.device(), &setup.kernel_cache) {
            (Task::Detect(_), Some(device), Some(cache)) => {
                let spec = engine.spec();
                match GpuPrep::new(device, spec.width, spec.height, cache) {
                    Ok(prep) => {
                        let post = GpuCandidates::new(device, cache)
                            .inspect_err(|e| tracing::warn!(error = %e, "GPU candidate stage unavailable; detector outputs come back whole."))
                            .ok()
                            .map(|c| Box::new(c) as Box<dyn CandidateStage>);
                        (Some(prep), post)
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "GPU preprocessing unavailable; preprocessing on the CPU.");
                        (None, None)
                    }
                }
            }
            _ => (None, None),
        };
        if gpu.is_some() {
            let outputs = if post.is_some() {
                "candidates"
            } else {
                "whole"
            };
            tracing::info!(
                worker = setup.index,
                outputs,
                "Engine worker preprocessing on the GPU."
            );
        }
        Self {
            index: setup.index,
            model: setup.model,
            engine,
            task: setup.task,
            metrics: setup.metrics,
            cameras: setup.cameras,
            idle: setup.idle,
            gpu,
            post,
        }
    }

    pub(super) fn run(mut self, batches: &std::sync::mpsc::Receiver<Vec<Entry<Job>>>) {
        let mut input = Vec::new();
        let mut output = BatchOutput::default();
        while let Ok(batch) = batches.recv() {
            self.run_batch(batch, &mut input, &mut output);
            if self.idle.send(self.index).is_err() {
                break;
            }
        }
    }

    /// Letterboxes whole frames on the GPU into a device tensor (its address and the
    /// letterboxes), when this worker has GPU preprocessing and the batch is whole
    /// frames; `None` to prepare on the CPU. A failure turns GPU preprocessing off for
    /// this worker (logged).
    fn prepare_on_gpu(&mut self, jobs: &[Job]) -> Option<(u64, Vec<Option<Letterbox>>)> {
        let gpu = self.gpu.as_mut()?;
        if !jobs.iter().all(|j| matches!(j.input, Input::Frame(_))) {
            return None;
        }
        let frames: Vec<&Frame> = jobs.iter().map(|j| &*j.frame).collect();
        match gpu.prepare(&frames) {
            Ok((tensor, boxes)) => Some((tensor, boxes.into_iter().map(Some).collect())),
            Err(e) => {
                tracing::warn!(error = %e, "GPU preprocessing failed; preprocessing on the CPU from now on.");
                self.gpu = None;
                None
            }
        }
    }

    /// Writes one job's input into its slot; returns the letterbox for detectors.
    fn prepare(&self, job: &Job, slot: &mut [f32]) -> Option<Letterbox> {
        let spec = self.engine.spec();
        let (w, h) = (spec.width, spec.height);
        match &job.input {
            Input::Crop(bbox) => {
                ocr_crop_into(&job.frame, *bbox, w, h, slot);
                None
            }
            Input::Frame(shared) => {
                if let Some(shared) = shared {
                    let mut cached = shared.slot.lock().unwrap_or_else(|p| p.into_inner());
                    if let Some((cw, ch, data, lb)) = cached.as_ref() {
                        if (*cw, *ch) == (w, h) {
                            slot.copy_from_slice(data);
                            return Some(*lb);
                        }
                    }
                    let lb = letterbox_into(&job.frame, w, h, slot);
                    *cached = Some((w, h, Arc::from(&*slot), lb));
                    return Some(lb);
                }
                Some(letterbox_into(&job.frame, w, h, slot))
            }
        }
    }

    /// Each image's candidates from a detector's `kept` output, found where it lies;
    /// or, where that cannot be, the whole output brought back into `output` (`None`).
    /// A candidate stage that fails is logged and turned off for this worker.
    fn candidates(
        &mut self,
        kept: &KeptOutput,
        output: &mut BatchOutput,
    ) -> Result<Option<Vec<Vec<Candidate>>>, String> {
        let Some(post) = self.post.as_mut() else {
            return Err("an output was kept with no stage to read it".into());
        };
        let conf = match &self.task {
            Task::Detect(params) => params.conf_threshold,
            Task::Recognize => return post.read_back(kept, output).map(|()| None),
        };
        let classes = self.engine.spec().names.len();
        match post.candidates(kept, classes, conf) {
            Ok(found) if found.len() == kept.dims.batch => Ok(Some(found)),
            outcome => {
                let e = outcome
                    .err()
                    .unwrap_or_else(|| "a list short of the batch".into());
                tracing::warn!(error = %e, "The GPU candidate stage failed; detector outputs come back whole from now on.");
                let read = post.read_back(kept, output);
                self.post = None;
                read.map_err(|e| format!("cannot bring the output back either: {e}"))?;
                Ok(None)
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
        let mut jobs: Vec<Job> = batch.into_iter().map(|entry| entry.item).collect();
        let n = jobs.len();
        let (boxes, on_device) = match self.prepare_on_gpu(&jobs) {
            Some((tensor, boxes)) => (boxes, Some(tensor)),
            None => {
                let spec = self.engine.spec();
                let slot = 3 * (spec.width * spec.height) as usize;
                input.resize(slot * n, 0.0);
                let boxes: Vec<Option<Letterbox>> = jobs
                    .iter()
                    .enumerate()
                    .map(|(k, job)| self.prepare(job, &mut input[k * slot..(k + 1) * slot]))
                    .collect();
                (boxes, None)
            }
        };
        // Taken and prepared: an offline source may send its next frame.
        for job in &mut jobs {
            job.permit.take();
        }
        let input = match on_device {
            Some(tensor) => BatchInput::Device(tensor),
            None => BatchInput::Host(input),
        };
        let ran = match self.post {
            Some(_) => self.engine.run_kept(input, n, output).or_else(|e| {
                // Run the plain way; if that works, keeping the output is what failed.
                let plain = self.engine.run_input(input, n, output).map(|()| None);
                if plain.is_ok() {
                    tracing::warn!(error = %e, "Keeping the output on the GPU failed; detector outputs come back whole from now on.");
                    self.post = None;
                }
                plain
            }),
            None => self.engine.run_input(input, n, output).map(|()| None),
        };
        let found = match ran {
            Ok(Some(kept)) => self.candidates(&kept, output),
            Ok(None) => Ok(None),
            Err(e) => Err(e.to_string()),
        };
        let found = match found {
            Ok(found) => found,
            Err(e) => {
                tracing::error!(error = %e, batch = n, "Batch failed; its frames are dropped.");
                for job in &jobs {
                    if let Some(camera) = self.cameras.get(job.camera) {
                        camera.dropped(DropReason::EngineError, 1);
                    }
                }
                // Dropping the jobs sends their drop notices.
                return;
            }
        };
        let names = &self.engine.spec().names;
        let ready_at = Instant::now();
        for (k, mut job) in jobs.into_iter().enumerate() {
            let result = match (&self.task, boxes[k]) {
                (Task::Detect(params), Some(letterbox)) => {
                    let src = (job.frame.width, job.frame.height);
                    Output::Detections(match &found {
                        Some(found) => {
                            yolo::from_candidates(&found[k], names, params, &letterbox, src)
                        }
                        None => yolo::decode(
                            output.image(k),
                            output.anchors,
                            names,
                            params,
                            &letterbox,
                            src,
                        ),
                    })
                }
                (Task::Recognize, _) => {
                    let (text, confidence) = greedy_decode(output.image(k), output.anchors, names);
                    Output::Text { text, confidence }
                }
                (Task::Detect(_), None) => Output::Dropped,
            };
            if let Some(notice) = job.notice.take() {
                notice.disarm();
            }
            // A camera that has gone away no longer listens; nothing to do then.
            let _ = job.reply.send(InferResult {
                model: self.model,
                frame: job.frame,
                output: result,
                batch_size: n,
                ready_at,
                tag: job.tag,
            });
        }
        self.metrics
            .batch(n, started.elapsed().as_secs_f64() * 1000.0);
    }
}

#[cfg(test)]
mod gpu_tests;
#[cfg(test)]
mod kept_tests;
#[cfg(test)]
mod tests;
