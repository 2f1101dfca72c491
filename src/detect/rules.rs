//! The single-stage detectors: `weapon` (target classes, N-of-M confirmation),
//! `fire_smoke` (separate thresholds, `fire` and `smoke` events), and the generic
//! `yolo`. Each passes its candidates through a [`Gate`] so a persistent object emits
//! once per cooldown, not every frame.

use std::collections::HashSet;

use super::gate::Gate;
use super::{check_classes, finding, Action, Detector, UnknownClass};
use crate::config::{FireSmokeParams, WeaponParams, YoloParams};
use crate::postprocess::Detection;

/// `weapon`: target classes above a confidence, confirmed in N of the last M frames.
pub struct Weapon {
    conf_threshold: f32,
    targets: HashSet<String>,
    gate: Gate,
}

impl Weapon {
    /// A detector for `params`; target classes must be the model's.
    pub fn new(params: &WeaponParams, model_names: &[String]) -> Result<Self, UnknownClass> {
        check_classes(&params.target_classes, model_names)?;
        Ok(Self {
            conf_threshold: params.conf_threshold as f32,
            targets: params.target_classes.iter().cloned().collect(),
            gate: Gate::new(
                params.temporal_window,
                params.confirmation_threshold,
                params.cooldown_sec,
            ),
        })
    }
}

impl Detector for Weapon {
    fn type_name(&self) -> &'static str {
        "weapon"
    }

    fn observe(&mut self, ts_ms: i64, detections: &[Detection]) -> Vec<Action> {
        let candidates: Vec<Detection> = detections
            .iter()
            .filter(|d| d.confidence >= self.conf_threshold && self.targets.contains(&d.label))
            .cloned()
            .collect();
        finding("weapon", &self.gate.step(ts_ms, &candidates))
    }
}

/// `fire_smoke`: `fire` and `smoke` with their own thresholds and confirmation.
pub struct FireSmoke {
    fire: (f32, Gate),
    smoke: (f32, Gate),
}

impl FireSmoke {
    /// A detector for `params`; the model must have `fire` and `smoke` classes.
    pub fn new(params: &FireSmokeParams, model_names: &[String]) -> Result<Self, UnknownClass> {
        check_classes(&["fire".to_owned(), "smoke".to_owned()], model_names)?;
        let gate = || {
            Gate::new(
                params.temporal_window,
                params.confirmation_threshold,
                params.cooldown_sec,
            )
        };
        Ok(Self {
            fire: (params.fire_conf_threshold as f32, gate()),
            smoke: (params.smoke_conf_threshold as f32, gate()),
        })
    }
}

impl Detector for FireSmoke {
    fn type_name(&self) -> &'static str {
        "fire_smoke"
    }

    fn observe(&mut self, ts_ms: i64, detections: &[Detection]) -> Vec<Action> {
        let mut out = Vec::new();
        for (event_type, (threshold, gate)) in
            [("fire", &mut self.fire), ("smoke", &mut self.smoke)]
        {
            let candidates: Vec<Detection> = detections
                .iter()
                .filter(|d| d.label == event_type && d.confidence >= *threshold)
                .cloned()
                .collect();
            out.extend(finding(event_type, &gate.step(ts_ms, &candidates)));
        }
        out
    }
}

/// `yolo`: any model; detections above `conf_threshold` (of `classes`, or any class).
pub struct Yolo {
    conf_threshold: f32,
    classes: Option<HashSet<String>>,
    gate: Gate,
}

impl Yolo {
    /// A detector for `params`; configured classes must be the model's.
    pub fn new(params: &YoloParams, model_names: &[String]) -> Result<Self, UnknownClass> {
        if let Some(classes) = &params.classes {
            check_classes(classes, model_names)?;
        }
        Ok(Self {
            conf_threshold: params.conf_threshold as f32,
            classes: params.classes.as_ref().map(|c| c.iter().cloned().collect()),
            gate: Gate::new(1, 1, params.cooldown_sec),
        })
    }
}

impl Detector for Yolo {
    fn type_name(&self) -> &'static str {
        "yolo"
    }

    fn observe(&mut self, ts_ms: i64, detections: &[Detection]) -> Vec<Action> {
        let candidates: Vec<Detection> = detections
            .iter()
            .filter(|d| d.confidence >= self.conf_threshold)
            .filter(|d| self.classes.as_ref().is_none_or(|c| c.contains(&d.label)))
            .cloned()
            .collect();
        finding("yolo", &self.gate.step(ts_ms, &candidates))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::Finding;

    fn det(label: &str, confidence: f32, x: f32) -> Detection {
        Detection {
            class_id: 0,
            label: label.into(),
            confidence,
            bbox: [x, 0.0, x + 50.0, 50.0],
        }
    }

    fn names() -> Vec<String> {
        ["person", "knife", "fire", "smoke"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    fn events(actions: Vec<Action>) -> Vec<Finding> {
        actions
            .into_iter()
            .map(|a| match a {
                Action::Event(f) => f,
                Action::Read(_) => panic!("no reads from single-stage detectors"),
            })
            .collect()
    }

    fn weapon(targets: &[&str]) -> WeaponParams {
        WeaponParams {
            model_path: "m.onnx".into(),
            conf_threshold: 0.5,
            target_classes: targets.iter().map(|s| s.to_string()).collect(),
            temporal_window: 3,
            confirmation_threshold: 2,
            cooldown_sec: 10.0,
        }
    }

    #[test]
    fn weapon_fires_on_its_targets_after_confirmation_only() {
        let mut w = Weapon::new(&weapon(&["knife"]), &names()).unwrap();
        let frame = [det("person", 0.9, 0.0), det("knife", 0.8, 100.0)];
        assert!(events(w.observe(0, &frame)).is_empty(), "1 of 3: not yet");
        let found = events(w.observe(200, &frame));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].event_type, "weapon");
        assert_eq!(found[0].detections.len(), 1);
        assert_eq!(found[0].detections[0].label, "knife");
        assert!(events(w.observe(400, &frame)).is_empty(), "cooling down");
        // Below the threshold counts as unseen.
        let mut w = Weapon::new(&weapon(&["knife"]), &names()).unwrap();
        for ts in [0, 200, 400] {
            assert!(events(w.observe(ts, &[det("knife", 0.4, 0.0)])).is_empty());
        }
    }

    #[test]
    fn unknown_target_classes_list_the_models_names() {
        let err = Weapon::new(&weapon(&["gun"]), &names())
            .err()
            .unwrap()
            .to_string();
        assert_eq!(
            err,
            "class \"gun\" is not in the model's classes (person, knife, fire, smoke)"
        );
    }

    #[test]
    fn fire_and_smoke_honour_their_own_thresholds() {
        let params = FireSmokeParams {
            model_path: "m.onnx".into(),
            fire_conf_threshold: 0.6,
            smoke_conf_threshold: 0.3,
            temporal_window: 1,
            confirmation_threshold: 1,
            cooldown_sec: 0.0,
        };
        let mut d = FireSmoke::new(&params, &names()).unwrap();
        let found = events(d.observe(0, &[det("fire", 0.5, 0.0), det("smoke", 0.4, 100.0)]));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].event_type, "smoke");
        let found = events(d.observe(100, &[det("fire", 0.7, 0.0), det("smoke", 0.2, 100.0)]));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].event_type, "fire");
        assert!(FireSmoke::new(&params, &["person".to_owned()]).is_err());
    }

    #[test]
    fn yolo_filters_by_class_and_deduplicates_a_persistent_object() {
        let params = YoloParams {
            model_path: "m.onnx".into(),
            conf_threshold: 0.5,
            iou_threshold: 0.45,
            classes: Some(vec!["person".into()]),
            cooldown_sec: 10.0,
        };
        let mut y = Yolo::new(&params, &names()).unwrap();
        let frame = [det("person", 0.9, 0.0), det("knife", 0.9, 300.0)];
        let found = events(y.observe(0, &frame));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].detections.len(), 1);
        for ts in (200..10_000).step_by(200) {
            assert!(events(y.observe(ts, &frame)).is_empty(), "{ts}");
        }
        assert_eq!(
            events(y.observe(10_000, &frame)).len(),
            1,
            "again after the cooldown"
        );
    }
}
