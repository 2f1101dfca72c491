//! Postprocess: YOLOv8 output decoding and class-aware NMS ([`yolo`]), boxes mapped back
//! through the [`crate::preprocess::Letterbox`] into source pixels, and CTC greedy
//! decoding for the OCR stage ([`ctc`]).

pub mod ctc;
pub mod yolo;

/// One detection in source-frame pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    /// Class index in the model's `names`.
    pub class_id: u32,
    /// Class name.
    pub label: String,
    /// Score in 0..=1.
    pub confidence: f32,
    /// `[x1, y1, x2, y2]` in source pixels.
    pub bbox: [f32; 4],
}

/// Intersection over union of two `[x1, y1, x2, y2]` boxes.
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    let area = |r: &[f32; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let union = area(a) + area(b) - inter;
    if union <= 0.0 {
        0.0
    } else {
        inter / union
    }
}
