//! Postprocess: decode YOLOv8 outputs (`[batch, 4 + classes, anchors]`), class-aware NMS,
//! boxes mapped back through the [`crate::preprocess::Letterbox`], and CTC greedy
//! decoding for the OCR stage. Arrives with the CPU pipeline and detector issues.

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
