//! Detect: the detectors' rules, per camera: `weapon` (target classes, temporal
//! confirmation N of M), `fire_smoke`, `alpr` (plate → OCR, batched across cameras),
//! and the generic `yolo`; with cooldown so a persistent object does not fire every
//! frame. Arrives with the CPU pipeline and detector issues; the config for each is in
//! [`crate::config::DetectorConfig`].

use crate::postprocess::Detection;
use crate::publish::Event;

/// The seam between a model's detections and events: one instance per camera and
/// detector, holding that camera's temporal state.
pub trait Detector: Send {
    /// The detector's `type` name.
    fn type_name(&self) -> &'static str;

    /// Consumes one processed frame's detections; returns the events it confirms.
    fn observe(&mut self, frame: FrameInfo, detections: &[Detection]) -> Vec<Event>;
}

/// What a detector knows of the frame its detections came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameInfo {
    /// Frame time, epoch milliseconds.
    pub ts_ms: i64,
    /// Presentation time within the stream, milliseconds.
    pub pts_ms: i64,
}
