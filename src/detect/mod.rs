//! Detect: the detectors' rules, per camera. A detector turns one processed frame's
//! detections into zero or more [`Finding`]s; the camera wraps each in the event
//! envelope. Here: the generic [`yolo`] detector. `weapon` (temporal confirmation),
//! `fire_smoke`, `alpr` and cooldown/de-duplication arrive with the detectors issue.

pub mod yolo;

use crate::postprocess::Detection;
use crate::publish::{EventDetection, Plate};

/// What a detector found in one frame: an event without its envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// The event type (`yolo`, `weapon`, `fire`, …).
    pub event_type: &'static str,
    /// The detections that make it.
    pub detections: Vec<EventDetection>,
    /// A plate read, for `alpr`.
    pub plate: Option<Plate>,
}

/// The seam between a model's detections and events: one instance per camera and
/// detector, holding that camera's state for it.
pub trait Detector: Send {
    /// The detector's `type` name.
    fn type_name(&self) -> &'static str;

    /// Consumes one processed frame's detections from this detector's model.
    fn observe(&mut self, detections: &[Detection]) -> Vec<Finding>;
}

/// A detection as the envelope carries it.
pub fn to_event_detection(d: &Detection) -> EventDetection {
    EventDetection {
        label: d.label.clone(),
        confidence: d.confidence,
        bbox: d.bbox,
    }
}
