//! Snapshots: the event's frame as JPEG with each detection's box and label drawn.
//! Runs on a publisher's writer thread, off the camera's path.

use std::path::Path;

use super::font::{glyph, GLYPH_H, GLYPH_W};
use super::Event;
use crate::decode::Frame;
use crate::preprocess::cpu::to_rgb8;

/// Box colours, picked by label so a class keeps its colour across snapshots.
const PALETTE: [[u8; 3]; 6] = [
    [255, 56, 56],
    [56, 255, 56],
    [56, 128, 255],
    [255, 178, 29],
    [207, 56, 255],
    [0, 212, 212],
];

/// An RGB8 image being drawn on.
pub struct Canvas {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Packed RGB8 pixels.
    pub rgb: Vec<u8>,
}

impl Canvas {
    /// The frame converted to RGB.
    pub fn from_frame(frame: &Frame) -> Self {
        Self {
            width: frame.width as usize,
            height: frame.height as usize,
            rgb: to_rgb8(frame),
        }
    }

    fn fill(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, color: [u8; 3]) {
        let (w, h) = (self.width as i64, self.height as i64);
        for y in y0.max(0)..y1.min(h) {
            for x in x0.max(0)..x1.min(w) {
                let o = ((y * w + x) * 3) as usize;
                self.rgb[o..o + 3].copy_from_slice(&color);
            }
        }
    }

    /// Draws a `thickness`-pixel rectangle outline.
    pub fn rect(&mut self, bbox: [f32; 4], thickness: i64, color: [u8; 3]) {
        let [x1, y1, x2, y2] = bbox.map(|v| v.round() as i64);
        self.fill(x1, y1, x2, y1 + thickness, color);
        self.fill(x1, y2 - thickness, x2, y2, color);
        self.fill(x1, y1, x1 + thickness, y2, color);
        self.fill(x2 - thickness, y1, x2, y2, color);
    }

    /// Draws `text` in white on a `color` background with its top-left at (x, y).
    pub fn label(&mut self, x: i64, y: i64, text: &str, scale: i64, color: [u8; 3]) {
        let advance = (GLYPH_W as i64 + 1) * scale;
        let width = advance * text.chars().count() as i64 + scale;
        let height = (GLYPH_H as i64 + 2) * scale;
        self.fill(x, y, x + width, y + height, color);
        for (i, c) in text.chars().enumerate() {
            let gx = x + scale + i as i64 * advance;
            for (row, bits) in glyph(c).iter().enumerate() {
                for col in 0..GLYPH_W {
                    if bits & (1 << (GLYPH_W - 1 - col)) != 0 {
                        let px = gx + col as i64 * scale;
                        let py = y + scale + row as i64 * scale;
                        self.fill(px, py, px + scale, py + scale, [255, 255, 255]);
                    }
                }
            }
        }
    }
}

fn color_for(label: &str) -> [u8; 3] {
    let hash = label
        .bytes()
        .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
    PALETTE[hash % PALETTE.len()]
}

/// Draws the event's detections on the frame.
pub fn render(frame: &Frame, event: &Event) -> Canvas {
    let mut canvas = Canvas::from_frame(frame);
    let scale = (canvas.height as i64 / 360).max(1);
    for d in &event.detections {
        let color = color_for(&d.label);
        canvas.rect(d.bbox, 2 * scale, color);
        let text = format!("{} {:.2}", d.label, d.confidence);
        let label_h = (GLYPH_H as i64 + 2) * scale;
        let top = d.bbox[1].round() as i64;
        let y = if top >= label_h { top - label_h } else { top };
        canvas.label(d.bbox[0].round() as i64, y, &text, scale, color);
    }
    canvas
}

/// Why a snapshot could not be written.
#[derive(Debug, thiserror::Error)]
#[error("snapshot {path}: {message}")]
pub struct SnapshotError {
    /// The file.
    pub path: String,
    /// What went wrong.
    pub message: String,
}

/// Encodes the canvas as JPEG at `quality` (1..=100) into `path`.
pub fn write_jpeg(canvas: &Canvas, quality: u8, path: &Path) -> Result<(), SnapshotError> {
    let err = |message: String| SnapshotError {
        path: path.display().to_string(),
        message,
    };
    let (w, h) = (
        u16::try_from(canvas.width).map_err(|_| err("too wide for JPEG".into()))?,
        u16::try_from(canvas.height).map_err(|_| err("too tall for JPEG".into()))?,
    );
    let encoder = jpeg_encoder::Encoder::new_file(path, quality).map_err(|e| err(e.to_string()))?;
    encoder
        .encode(&canvas.rgb, w, h, jpeg_encoder::ColorType::Rgb)
        .map_err(|e| err(e.to_string()))
}

/// A path segment made safe from any camera id: no separators, no dot-only names,
/// nothing empty.
pub fn safe_segment(id: &str) -> String {
    let cleaned: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if cleaned.is_empty() || cleaned.chars().all(|c| c == '.') {
        format!("_{}", cleaned.len())
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publish::event::sample;

    #[test]
    fn camera_ids_cannot_escape_the_snapshot_directory() {
        assert_eq!(safe_segment("cam_1"), "cam_1");
        assert_eq!(safe_segment("../etc"), ".._etc");
        assert_eq!(safe_segment(".."), "_2");
        assert_eq!(safe_segment(""), "_0");
        assert_eq!(safe_segment("front door/1"), "front_door_1");
    }

    #[test]
    fn boxes_are_drawn_in_the_label_colour() {
        let frame = Frame::flat(64, 48, 16, 128, 128);
        let mut event = sample("cam", 1);
        event.detections[0].bbox = [10.0, 20.0, 40.0, 40.0];
        let canvas = render(&frame, &event);
        let px = |x: usize, y: usize| &canvas.rgb[(y * 64 + x) * 3..(y * 64 + x) * 3 + 3];
        let color = color_for("knife");
        assert_eq!(px(10, 30), color, "left edge");
        assert_eq!(px(39, 30), color, "right edge");
        assert_eq!(px(25, 30), [0, 0, 0], "inside stays black");
    }
}
