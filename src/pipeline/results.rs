//! One camera's results task: detections → detectors → OCR requests → events →
//! publishers, in stream order ([`super::order`]).
//!
//! It ends by itself once the camera's ingest thread and every queued job for this
//! camera are gone (its channel closes), which is what lets shutdown drain in-flight
//! batches before the publishers flush.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::order::InOrder;
use crate::detect::{Action, Detector, Finding, ReadRequest};
use crate::ingest::now_epoch_ms;
use crate::publish::{new_event_id, snapshot_key, Event, Published, Publisher, EVENT_SCHEMA};
use crate::scheduler::{DropNotice, InferResult, Input, Job, ModelQueue, Output, Reply};
use crate::telemetry::CameraMetrics;

/// A detector bound to the model queue it listens to, and its OCR stage if any.
pub struct Bound {
    /// Index of the model whose results it observes.
    pub model: usize,
    /// The model file, for the envelope's `model`.
    pub model_name: String,
    /// The detector.
    pub detector: Box<dyn Detector>,
    /// The OCR queue its read requests go to, and that model's index.
    pub ocr: Option<(usize, ModelQueue)>,
}

/// One camera's results: detectors, the OCR stage's answers, and event publishing.
pub struct Results {
    /// Camera index.
    pub index: usize,
    /// Camera id.
    pub id: String,
    /// Its detectors.
    pub detectors: Vec<Bound>,
    /// Where events go.
    pub publishers: Vec<Arc<dyn Publisher>>,
    /// Its instruments.
    pub metrics: CameraMetrics,
    /// The benchmark's probe, when one is running.
    pub probe: Option<Arc<super::Probe>>,
    /// (bucket, prefix) when the S3 sink saves snapshots: events carry the URI.
    pub s3_snapshots: Option<(String, String)>,
}

/// Frame results a camera holds back at most while an earlier one is missing.
const REORDER_MAX_HELD: usize = 64;

/// OCR jobs are keyed above every camera index, so they never replace one another.
const OCR_KEY_BASE: usize = 1 << 40;

/// Tags of OCR requests, unique across cameras (they share the OCR queue's keys).
fn next_tag() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl Results {
    /// Consumes results until the ingest thread and every queued job for this camera are
    /// gone and every OCR request has been answered.
    pub async fn run(mut self, mut rx: mpsc::UnboundedReceiver<InferResult>) {
        let (ocr_tx, mut ocr_rx) = mpsc::unbounded_channel();
        let mut pending: HashMap<u64, (usize, ReadRequest)> = HashMap::new();
        for (_, queue) in self.detectors.iter().filter_map(|b| b.ocr.as_ref()) {
            queue.add_camera();
        }
        // Frames come back numbered, possibly out of order (several engine workers):
        // the detectors see them in stream order.
        let mut order = InOrder::new(REORDER_MAX_HELD);
        let mut open = true;
        while open || !pending.is_empty() {
            tokio::select! {
                result = rx.recv(), if open => match result {
                    Some(result) => {
                        for result in order.push(result.model, result.tag, result) {
                            self.on_detections(result, &ocr_tx, &mut pending);
                        }
                    }
                    None => open = false,
                },
                Some(result) = ocr_rx.recv() => self.on_text(result, &mut pending),
            }
        }
        for (_, queue) in self.detectors.iter().filter_map(|b| b.ocr.as_ref()) {
            queue.remove_camera();
        }
    }

    fn on_detections(
        &mut self,
        result: InferResult,
        ocr_tx: &Reply,
        pending: &mut HashMap<u64, (usize, ReadRequest)>,
    ) {
        let Output::Detections(detections) = &result.output else {
            return;
        };
        let latency_ms = result
            .ready_at
            .saturating_duration_since(result.frame.received_at)
            .as_secs_f64()
            * 1000.0;
        self.metrics.frames(1);
        self.metrics.latency_ms(latency_ms);
        if let Some(probe) = &self.probe {
            probe.record(latency_ms);
        }
        // Detectors run on stream time, so cooldowns hold when a clip runs faster than
        // real time.
        let ts_ms = result.frame.pts_ms();
        let mut findings = Vec::new();
        for (d, bound) in self.detectors.iter_mut().enumerate() {
            if bound.model != result.model {
                continue;
            }
            for action in bound.detector.observe(ts_ms, detections) {
                match action {
                    Action::Event(finding) => findings.push((d, finding)),
                    Action::Read(request) => {
                        let Some((ocr_model, queue)) = &bound.ocr else {
                            continue;
                        };
                        let tag = next_tag();
                        let job = Job {
                            key: OCR_KEY_BASE + tag as usize,
                            camera: self.index,
                            frame: result.frame.clone(),
                            input: Input::Crop(request.detection.bbox),
                            reply: ocr_tx.clone(),
                            permit: None,
                            tag,
                            notice: Some(DropNotice::new(
                                ocr_tx.clone(),
                                *ocr_model,
                                result.frame.clone(),
                                tag,
                            )),
                        };
                        pending.insert(tag, (d, request));
                        if queue.submit(job).is_err() {
                            pending.remove(&tag);
                        }
                    }
                }
            }
        }
        for (d, finding) in findings {
            self.emit(d, finding, &result, latency_ms);
        }
    }

    fn on_text(&mut self, result: InferResult, pending: &mut HashMap<u64, (usize, ReadRequest)>) {
        let Some((d, request)) = pending.remove(&result.tag) else {
            return;
        };
        let Output::Text { text, confidence } = &result.output else {
            return;
        };
        if let Some(probe) = &self.probe {
            probe.record_read();
        }
        let ts_ms = result.frame.wall_ms;
        if let Some(finding) = self.detectors[d]
            .detector
            .on_text(ts_ms, request, text, *confidence)
        {
            let latency_ms = result
                .ready_at
                .saturating_duration_since(result.frame.received_at)
                .as_secs_f64()
                * 1000.0;
            self.emit(d, finding, &result, latency_ms);
        }
    }

    fn emit(&self, detector: usize, finding: Finding, result: &InferResult, latency_ms: f64) {
        let mut event = Event {
            event_id: new_event_id(result.frame.wall_ms),
            schema: EVENT_SCHEMA.to_owned(),
            camera_id: self.id.clone(),
            event_type: finding.event_type.to_owned(),
            ts_ms: result.frame.wall_ms,
            pts_ms: result.frame.pts_ms(),
            detected_at_ms: now_epoch_ms(),
            detections: finding.detections,
            plate: finding.plate,
            model: self.detectors[detector].model_name.clone(),
            snapshot: None,
        };
        if let Some((bucket, prefix)) = &self.s3_snapshots {
            event.snapshot = Some(format!("s3://{bucket}/{}", snapshot_key(prefix, &event)));
        }
        let event = Arc::new(event);
        self.metrics.events(finding.event_type, 1);
        tracing::info!(
            camera_id = %self.id,
            event_id = %event.event_id,
            event_type = finding.event_type,
            detections = event.detections.len(),
            plate = event.plate.as_ref().map(|p| p.text.as_str()),
            latency_ms = latency_ms.round() as u64,
            batch_size = result.batch_size,
            "Event."
        );
        // Queued events keep their frame until the snapshot is made: on the host, so a
        // slow sink never holds device memory.
        let frame = (!self.publishers.is_empty()).then(|| result.frame.on_host());
        for publisher in &self.publishers {
            let item = Published {
                event: event.clone(),
                frame: frame.clone(),
            };
            if let Err(e) = publisher.publish(item) {
                tracing::warn!(sink = publisher.name(), error = %e, "Event not queued.");
            }
        }
    }
}
