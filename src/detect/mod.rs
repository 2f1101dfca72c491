//! Detect: the detectors' rules, per camera. A detector turns one processed frame's
//! detections into [`Action`]s: an event to emit ([`Finding`]), or a plate to read
//! (the OCR stage, batched across cameras by the scheduler, answers through
//! [`Detector::on_text`]). Temporal confirmation and de-duplication are in [`gate`].
//!
//! Detectors: [`rules::Weapon`], [`rules::FireSmoke`], [`rules::Yolo`] and
//! [`alpr::Alpr`]; [`build`] makes one from its config, checking class names against
//! the model's.

pub mod alpr;
pub mod gate;
pub mod rules;

use crate::config::DetectorConfig;
use crate::postprocess::Detection;
use crate::publish::{EventDetection, Plate};

/// What a detector found in one frame: an event without its envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// The event type (`yolo`, `weapon`, `fire`, `smoke`, `alpr`).
    pub event_type: &'static str,
    /// The detections that make it.
    pub detections: Vec<EventDetection>,
    /// A plate read, for `alpr`.
    pub plate: Option<Plate>,
}

/// A region a detector wants read by the OCR stage.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadRequest {
    /// The track the region belongs to.
    pub track_id: u64,
    /// The region, in source pixels.
    pub detection: Detection,
}

/// What a detector wants done after a frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Emit this event.
    Event(Finding),
    /// Read the text in this region, then call [`Detector::on_text`].
    Read(ReadRequest),
}

/// The seam between a model's detections and events: one instance per camera and
/// detector, holding that camera's state for it.
pub trait Detector: Send {
    /// The detector's `type` name.
    fn type_name(&self) -> &'static str;

    /// Consumes one processed frame's detections; `ts_ms` is the frame's stream time
    /// (pts in ms), which drives cooldowns.
    fn observe(&mut self, ts_ms: i64, detections: &[Detection]) -> Vec<Action>;

    /// The OCR stage's answer to a [`ReadRequest`] made for the frame at stream time
    /// `ts_ms`.
    fn on_text(
        &mut self,
        _ts_ms: i64,
        _request: ReadRequest,
        _text: &str,
        _confidence: f32,
    ) -> Option<Finding> {
        None
    }
}

/// A configured class the model does not have.
#[derive(Debug, thiserror::Error)]
#[error("class {class:?} is not in the model's classes ({known})")]
pub struct UnknownClass {
    /// The configured name.
    pub class: String,
    /// The model's names, comma-separated.
    pub known: String,
}

/// Checks that every name in `classes` is one of the model's.
pub fn check_classes(classes: &[String], model_names: &[String]) -> Result<(), UnknownClass> {
    match classes.iter().find(|c| !model_names.contains(c)) {
        Some(class) => Err(UnknownClass {
            class: class.clone(),
            known: model_names.join(", "),
        }),
        None => Ok(()),
    }
}

/// Builds a camera's detector from its config and its model's class names.
pub fn build(
    config: &DetectorConfig,
    model_names: &[String],
) -> Result<Box<dyn Detector>, UnknownClass> {
    Ok(match config {
        DetectorConfig::Weapon(p) => Box::new(rules::Weapon::new(p, model_names)?),
        DetectorConfig::FireSmoke(p) => Box::new(rules::FireSmoke::new(p, model_names)?),
        DetectorConfig::Yolo(p) => Box::new(rules::Yolo::new(p, model_names)?),
        DetectorConfig::Alpr(p) => Box::new(alpr::Alpr::new(p)),
    })
}

/// A detection as the envelope carries it.
pub fn to_event_detection(d: &Detection) -> EventDetection {
    EventDetection {
        label: d.label.clone(),
        confidence: d.confidence,
        bbox: d.bbox,
    }
}

/// One event of `event_type` from `detections`, or nothing when there are none.
fn finding(event_type: &'static str, detections: &[Detection]) -> Vec<Action> {
    if detections.is_empty() {
        return Vec::new();
    }
    vec![Action::Event(Finding {
        event_type,
        detections: detections.iter().map(to_event_detection).collect(),
        plate: None,
    })]
}
