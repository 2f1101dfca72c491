//! `alpr`: a plate detector, then text recognition. Each plate box whose track is due
//! (new, or past its cooldown) is sent to the OCR stage, which the scheduler batches
//! across cameras; a read of at least `min_text_length` characters of `[A-Z0-9]`
//! makes an `alpr` event carrying `plate: {text, confidence}` and starts the track's
//! cooldown. An unreadable plate is asked again on a later frame.

use super::gate::Tracker;
use super::{to_event_detection, Action, Detector, Finding, ReadRequest};
use crate::config::AlprParams;
use crate::postprocess::ctc::plate_text;
use crate::postprocess::Detection;
use crate::publish::Plate;

/// Frames a plate track survives without being seen.
const PLATE_TRACK_MEMORY: u32 = 5;

/// One camera's `alpr` detector.
pub struct Alpr {
    conf_threshold: f32,
    min_text_length: usize,
    tracker: Tracker,
}

impl Alpr {
    /// A detector for `params`.
    pub fn new(params: &AlprParams) -> Self {
        Self {
            conf_threshold: params.conf_threshold as f32,
            min_text_length: params.min_text_length as usize,
            tracker: Tracker::new(params.cooldown_sec, PLATE_TRACK_MEMORY),
        }
    }
}

impl Detector for Alpr {
    fn type_name(&self) -> &'static str {
        "alpr"
    }

    fn observe(&mut self, ts_ms: i64, detections: &[Detection]) -> Vec<Action> {
        let plates: Vec<Detection> = detections
            .iter()
            .filter(|d| d.confidence >= self.conf_threshold)
            .cloned()
            .collect();
        let tracked = self.tracker.update(ts_ms, &plates);
        plates
            .into_iter()
            .zip(tracked)
            .filter(|(_, t)| t.due)
            .map(|(detection, t)| {
                Action::Read(ReadRequest {
                    track_id: t.track_id,
                    detection,
                })
            })
            .collect()
    }

    fn on_text(
        &mut self,
        ts_ms: i64,
        request: ReadRequest,
        text: &str,
        confidence: f32,
    ) -> Option<Finding> {
        let text = plate_text(text);
        // Two reads of one plate may be in flight: only the first good one emits.
        if text.len() < self.min_text_length || !self.tracker.is_due(request.track_id, ts_ms) {
            return None;
        }
        self.tracker.mark_emitted(request.track_id, ts_ms);
        Some(Finding {
            event_type: "alpr",
            detections: vec![to_event_detection(&request.detection)],
            plate: Some(Plate { text, confidence }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> AlprParams {
        AlprParams {
            detector_model_path: "p.onnx".into(),
            ocr_engine: Default::default(),
            ocr_model_path: None,
            conf_threshold: 0.5,
            min_text_length: 5,
            cooldown_sec: 10.0,
        }
    }

    fn plate(x: f32) -> Detection {
        Detection {
            class_id: 0,
            label: "License_Plate".into(),
            confidence: 0.8,
            bbox: [x, 300.0, x + 120.0, 340.0],
        }
    }

    fn reads(actions: Vec<Action>) -> Vec<ReadRequest> {
        actions
            .into_iter()
            .map(|a| match a {
                Action::Read(r) => r,
                Action::Event(_) => panic!("alpr emits only after reading"),
            })
            .collect()
    }

    #[test]
    fn a_plate_is_read_until_legible_then_emits_once_per_cooldown() {
        let mut a = Alpr::new(&params());
        let r = reads(a.observe(0, &[plate(100.0)]));
        assert_eq!(r.len(), 1);
        // Too short once filtered: no event, and the plate is asked again.
        assert_eq!(a.on_text(0, r[0].clone(), "5a·u", 0.9), None);
        let r = reads(a.observe(300, &[plate(102.0)]));
        assert_eq!(r.len(), 1);
        let f = a.on_text(300, r[0].clone(), "5au5341京", 0.93).unwrap();
        assert_eq!(f.event_type, "alpr");
        assert_eq!(f.plate.as_ref().unwrap().text, "5AU5341");
        // A second read of the same plate already in flight does not emit again.
        assert_eq!(a.on_text(300, r[0].clone(), "5AU5341", 0.9), None);
        // Cooling down: no more reads of this track until 10 s later.
        assert!(reads(a.observe(600, &[plate(104.0)])).is_empty());
        assert_eq!(reads(a.observe(10_300, &[plate(106.0)])).len(), 1);
    }

    #[test]
    fn low_confidence_boxes_are_not_read() {
        let mut a = Alpr::new(&params());
        let mut weak = plate(0.0);
        weak.confidence = 0.3;
        assert!(a.observe(0, &[weak]).is_empty());
    }
}
