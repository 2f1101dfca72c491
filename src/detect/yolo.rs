//! The generic `yolo` detector: any YOLOv8 model; a frame with detections above
//! `conf_threshold` (of the `classes` named, or any class) makes one `yolo` event
//! carrying them all.

use std::collections::HashSet;

use super::{to_event_detection, Detector, Finding};
use crate::config::YoloParams;
use crate::postprocess::Detection;

/// Event type of the generic detector.
pub const EVENT_TYPE: &str = "yolo";

/// One camera's `yolo` detector.
#[derive(Debug, Clone)]
pub struct YoloDetector {
    conf_threshold: f32,
    classes: Option<HashSet<String>>,
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

impl YoloDetector {
    /// A detector for `params`, checking its class names against the model's.
    pub fn new(params: &YoloParams, model_names: &[String]) -> Result<Self, UnknownClass> {
        if let Some(classes) = &params.classes {
            for class in classes {
                if !model_names.contains(class) {
                    return Err(UnknownClass {
                        class: class.clone(),
                        known: model_names.join(", "),
                    });
                }
            }
        }
        Ok(Self {
            conf_threshold: params.conf_threshold as f32,
            classes: params.classes.as_ref().map(|c| c.iter().cloned().collect()),
        })
    }
}

impl Detector for YoloDetector {
    fn type_name(&self) -> &'static str {
        EVENT_TYPE
    }

    fn observe(&mut self, detections: &[Detection]) -> Vec<Finding> {
        let kept: Vec<_> = detections
            .iter()
            .filter(|d| d.confidence >= self.conf_threshold)
            .filter(|d| self.classes.as_ref().is_none_or(|c| c.contains(&d.label)))
            .map(to_event_detection)
            .collect();
        if kept.is_empty() {
            return Vec::new();
        }
        vec![Finding {
            event_type: EVENT_TYPE,
            detections: kept,
            plate: None,
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(label: &str, confidence: f32) -> Detection {
        Detection {
            class_id: 0,
            label: label.into(),
            confidence,
            bbox: [0.0, 0.0, 1.0, 1.0],
        }
    }

    fn names() -> Vec<String> {
        vec!["person".into(), "car".into(), "dog".into()]
    }

    #[test]
    fn filters_by_threshold_and_class() {
        let params = YoloParams {
            model_path: "m.onnx".into(),
            conf_threshold: 0.5,
            iou_threshold: 0.45,
            classes: Some(vec!["person".into(), "car".into()]),
        };
        let mut d = YoloDetector::new(&params, &names()).unwrap();
        let found = d.observe(&[det("person", 0.9), det("car", 0.4), det("dog", 0.99)]);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].detections.len(), 1);
        assert_eq!(found[0].detections[0].label, "person");
        assert!(d.observe(&[det("dog", 0.99)]).is_empty());
    }

    #[test]
    fn unknown_classes_are_named_with_the_models_list() {
        let params = YoloParams {
            model_path: "m.onnx".into(),
            conf_threshold: 0.5,
            iou_threshold: 0.45,
            classes: Some(vec!["unicorn".into()]),
        };
        let err = YoloDetector::new(&params, &names())
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "class \"unicorn\" is not in the model's classes (person, car, dog)"
        );
    }
}
