//! YOLOv8 decoding: `[4 + classes (+ mask coefficients), anchors]` per image, channels
//! 0..3 the box centre and size in input pixels, then per-class scores (already
//! sigmoid, no objectness). Extra mask channels are ignored. Greedy NMS per class.

use super::{iou, Detection};
use crate::preprocess::Letterbox;

/// Thresholds for decoding.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecodeParams {
    /// Candidates scoring below this are discarded before NMS.
    pub conf_threshold: f32,
    /// Same-class boxes overlapping more than this are suppressed.
    pub iou_threshold: f32,
    /// At most this many detections per image are kept (best first).
    pub max_detections: usize,
}

impl Default for DecodeParams {
    fn default() -> Self {
        Self {
            conf_threshold: 0.25,
            iou_threshold: 0.45,
            max_detections: 300,
        }
    }
}

/// An anchor whose best class scores at least the threshold, its box in input pixels:
/// the output of the candidate stage ([`candidates`]), which a GPU kernel
/// (`kernels/postprocess.cu`, laid out as this) takes over so only candidates, not the
/// whole output, leave the device.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[repr(C)]
pub struct Candidate {
    /// Box centre x.
    pub cx: f32,
    /// Box centre y.
    pub cy: f32,
    /// Box width.
    pub w: f32,
    /// Box height.
    pub h: f32,
    /// Its best class's score.
    pub score: f32,
    /// Its best class (the first of equals).
    pub class_id: u32,
    /// Which anchor.
    pub anchor: u32,
}

/// The candidate stage on the CPU: every anchor of one image's `[4 + classes, anchors]`
/// output whose best class scores at least `conf`, in anchor order.
pub fn candidates(output: &[f32], anchors: usize, classes: usize, conf: f32) -> Vec<Candidate> {
    debug_assert!(output.len() >= (4 + classes) * anchors);
    // Best class per anchor, scanning class-major so memory is read in order.
    let mut best = vec![(f32::MIN, 0u32); anchors];
    for c in 0..classes {
        let row = &output[(4 + c) * anchors..(5 + c) * anchors];
        for (slot, &score) in best.iter_mut().zip(row) {
            if score > slot.0 {
                *slot = (score, c as u32);
            }
        }
    }
    best.iter()
        .enumerate()
        .filter(|(_, (score, _))| *score >= conf)
        .map(|(a, &(score, class_id))| Candidate {
            cx: output[a],
            cy: output[anchors + a],
            w: output[2 * anchors + a],
            h: output[3 * anchors + a],
            score,
            class_id,
            anchor: a as u32,
        })
        .collect()
}

/// Detections from one image's candidates, in any order (the GPU's come unordered):
/// mapped back to source pixels, clipped to the `src_w`×`src_h` frame, NMS, best first.
/// Equal scores are taken in anchor order, so the result does not depend on the order
/// candidates came in.
pub fn from_candidates(
    candidates: &[Candidate],
    names: &[String],
    params: &DecodeParams,
    letterbox: &Letterbox,
    src_size: (u32, u32),
) -> Vec<Detection> {
    let mut sorted = candidates.to_vec();
    sorted.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.anchor.cmp(&b.anchor)));
    let (src_w, src_h) = (src_size.0 as f32, src_size.1 as f32);
    let detections = sorted
        .into_iter()
        .filter(|c| (c.class_id as usize) < names.len())
        .map(|c| {
            let (x1, y1) = letterbox.to_source(c.cx - c.w / 2.0, c.cy - c.h / 2.0);
            let (x2, y2) = letterbox.to_source(c.cx + c.w / 2.0, c.cy + c.h / 2.0);
            Detection {
                class_id: c.class_id,
                label: names[c.class_id as usize].clone(),
                confidence: c.score,
                bbox: [
                    x1.clamp(0.0, src_w),
                    y1.clamp(0.0, src_h),
                    x2.clamp(0.0, src_w),
                    y2.clamp(0.0, src_h),
                ],
            }
        })
        .collect();
    nms(detections, params.iou_threshold, params.max_detections)
}

/// Decodes one image's output into detections in source pixels, clipped to the
/// `src_w`×`src_h` frame, best first.
pub fn decode(
    output: &[f32],
    anchors: usize,
    names: &[String],
    params: &DecodeParams,
    letterbox: &Letterbox,
    src_size: (u32, u32),
) -> Vec<Detection> {
    let found = candidates(output, anchors, names.len(), params.conf_threshold);
    from_candidates(&found, names, params, letterbox, src_size)
}

/// Greedy class-aware NMS over candidates sorted best first.
pub fn nms(sorted: Vec<Detection>, iou_threshold: f32, max_detections: usize) -> Vec<Detection> {
    let mut kept: Vec<Detection> = Vec::new();
    for candidate in sorted {
        if kept.len() >= max_detections {
            break;
        }
        let suppressed = kept.iter().any(|k| {
            k.class_id == candidate.class_id && iou(&k.bbox, &candidate.bbox) > iou_threshold
        });
        if !suppressed {
            kept.push(candidate);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a `[4 + classes, anchors]` output from (cx, cy, w, h, class, score).
    fn output(
        anchors: usize,
        classes: usize,
        boxes: &[(f32, f32, f32, f32, usize, f32)],
    ) -> Vec<f32> {
        let mut out = vec![0.0; (4 + classes) * anchors];
        for (a, &(cx, cy, w, h, class, score)) in boxes.iter().enumerate() {
            out[a] = cx;
            out[anchors + a] = cy;
            out[2 * anchors + a] = w;
            out[3 * anchors + a] = h;
            out[(4 + class) * anchors + a] = score;
        }
        out
    }

    fn names() -> Vec<String> {
        vec!["person".into(), "car".into()]
    }

    #[test]
    fn boxes_map_back_through_the_letterbox_and_overlaps_are_suppressed_per_class() {
        let lb = Letterbox::fit(1280, 720, 640, 640);
        let out = output(
            8,
            2,
            &[
                (320.0, 320.0, 100.0, 50.0, 0, 0.9),
                (322.0, 321.0, 100.0, 50.0, 0, 0.8), // same person, suppressed
                (322.0, 321.0, 100.0, 50.0, 1, 0.7), // a car in the same place: kept
                (100.0, 200.0, 20.0, 20.0, 1, 0.1),  // below threshold
            ],
        );
        let dets = decode(
            &out,
            8,
            &names(),
            &DecodeParams::default(),
            &lb,
            (1280, 720),
        );
        assert_eq!(dets.len(), 2, "{dets:?}");
        assert_eq!(dets[0].label, "person");
        assert_eq!(dets[0].confidence, 0.9);
        // Input (270, 295)-(370, 345) → source: x ×2, y −140 then ×2.
        assert_eq!(dets[0].bbox, [540.0, 310.0, 740.0, 410.0]);
        assert_eq!(dets[1].label, "car");
    }

    #[test]
    fn boxes_are_clipped_to_the_frame_and_capped_in_number() {
        let lb = Letterbox::fit(640, 640, 640, 640);
        let out = output(
            4,
            2,
            &[
                (5.0, 5.0, 40.0, 40.0, 0, 0.9),
                (600.0, 600.0, 10.0, 10.0, 1, 0.8),
            ],
        );
        let params = DecodeParams {
            max_detections: 1,
            ..DecodeParams::default()
        };
        let dets = decode(&out, 4, &names(), &params, &lb, (640, 640));
        assert_eq!(dets.len(), 1);
        assert_eq!(dets[0].bbox, [0.0, 0.0, 25.0, 25.0]);
    }

    #[test]
    fn iou_of_identical_disjoint_and_half_overlapping_boxes() {
        let a = [0.0, 0.0, 10.0, 10.0];
        assert_eq!(iou(&a, &a), 1.0);
        assert_eq!(iou(&a, &[20.0, 20.0, 30.0, 30.0]), 0.0);
        assert!((iou(&a, &[5.0, 0.0, 15.0, 10.0]) - 1.0 / 3.0).abs() < 1e-6);
    }

    #[test]
    fn candidates_in_any_order_give_the_same_detections_as_the_full_decode() {
        let lb = Letterbox::fit(1280, 720, 640, 640);
        let out = output(
            8,
            2,
            &[
                (320.0, 320.0, 100.0, 50.0, 0, 0.9),
                (322.0, 321.0, 100.0, 50.0, 0, 0.9), // equal score: anchor order decides
                (500.0, 100.0, 40.0, 40.0, 1, 0.6),
                (100.0, 200.0, 20.0, 20.0, 1, 0.1),
            ],
        );
        let params = DecodeParams::default();
        let found = candidates(&out, 8, 2, params.conf_threshold);
        assert_eq!(
            found.iter().map(|c| c.anchor).collect::<Vec<_>>(),
            [0, 1, 2]
        );
        assert_eq!(
            (found[2].class_id, found[2].score, found[2].cx),
            (1, 0.6, 500.0)
        );
        let want = decode(&out, 8, &names(), &params, &lb, (1280, 720));
        let mut shuffled = found.clone();
        shuffled.reverse();
        assert_eq!(
            from_candidates(&shuffled, &names(), &params, &lb, (1280, 720)),
            want
        );
        // The first of two equal anchors is the one kept.
        assert_eq!(want.len(), 2);
        assert!((want[0].bbox[0] - lb.to_source(270.0, 0.0).0).abs() < 1e-3);
    }
}
