//! Preprocess: letterbox a decoded frame to the model's input (keep aspect, pad grey
//! 114), convert YUV → RGB, scale to 0..1 and write CHW straight into the batch
//! tensor's slot. The CPU implementation is the reference for the CUDA kernels in
//! `kernels/`. The [`Letterbox`] transform is kept so boxes map back to source pixels.

/// How a source frame was placed into the model input: scale, then offset.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Letterbox {
    /// Source pixels → input pixels.
    pub scale: f32,
    /// Left padding in input pixels.
    pub pad_x: f32,
    /// Top padding in input pixels.
    pub pad_y: f32,
}

impl Letterbox {
    /// The Ultralytics-style letterbox of a `src_w`×`src_h` frame into `dst_w`×`dst_h`:
    /// the largest uniform scale that fits, centred.
    pub fn fit(src_w: u32, src_h: u32, dst_w: u32, dst_h: u32) -> Self {
        let scale = (dst_w as f32 / src_w as f32).min(dst_h as f32 / src_h as f32);
        let new_w = (src_w as f32 * scale).round();
        let new_h = (src_h as f32 * scale).round();
        Self {
            scale,
            pad_x: ((dst_w as f32 - new_w) / 2.0).floor(),
            pad_y: ((dst_h as f32 - new_h) / 2.0).floor(),
        }
    }

    /// Maps a point in model-input pixels back to source pixels.
    pub fn to_source(&self, x: f32, y: f32) -> (f32, f32) {
        ((x - self.pad_x) / self.scale, (y - self.pad_y) / self.scale)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_720p_frame_fits_640_with_bars_top_and_bottom() {
        let lb = Letterbox::fit(1280, 720, 640, 640);
        assert_eq!(lb.scale, 0.5);
        assert_eq!((lb.pad_x, lb.pad_y), (0.0, 140.0));
        assert_eq!(lb.to_source(320.0, 320.0), (640.0, 360.0));
        assert_eq!(lb.to_source(0.0, 140.0), (0.0, 0.0));
    }
}
