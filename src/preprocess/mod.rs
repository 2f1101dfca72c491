//! Preprocess: letterbox a decoded frame to the model's input (keep aspect, pad grey
//! 114, as Ultralytics does), convert YUV → RGB, scale to 0..1 and write CHW straight
//! into the batch tensor's slot. [`cpu`] is the reference implementation the CUDA
//! kernels in `kernels/` are checked against. The [`Letterbox`] transform is kept so
//! boxes map back to source pixels.

pub mod cpu;

/// How a source frame was placed into the model input: scaled, then offset.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Letterbox {
    /// Source pixels → input pixels.
    pub scale: f32,
    /// Left padding in input pixels.
    pub pad_x: f32,
    /// Top padding in input pixels.
    pub pad_y: f32,
    /// Width of the resized picture inside the input.
    pub resized_w: u32,
    /// Height of the resized picture inside the input.
    pub resized_h: u32,
}

impl Letterbox {
    /// The Ultralytics-style letterbox of a `src_w`×`src_h` frame into `dst_w`×`dst_h`:
    /// the largest uniform scale that fits, centred.
    pub fn fit(src_w: u32, src_h: u32, dst_w: u32, dst_h: u32) -> Self {
        let scale = (dst_w as f32 / src_w as f32).min(dst_h as f32 / src_h as f32);
        let resized_w = ((src_w as f32 * scale).round() as u32).clamp(1, dst_w);
        let resized_h = ((src_h as f32 * scale).round() as u32).clamp(1, dst_h);
        Self {
            scale,
            pad_x: ((dst_w - resized_w) / 2) as f32,
            pad_y: ((dst_h - resized_h) / 2) as f32,
            resized_w,
            resized_h,
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
        assert_eq!((lb.resized_w, lb.resized_h), (640, 360));
        assert_eq!(lb.to_source(320.0, 320.0), (640.0, 360.0));
        assert_eq!(lb.to_source(0.0, 140.0), (0.0, 0.0));
    }

    #[test]
    fn a_portrait_frame_gets_bars_left_and_right() {
        let lb = Letterbox::fit(720, 1280, 640, 640);
        assert_eq!((lb.resized_w, lb.resized_h), (360, 640));
        assert_eq!((lb.pad_x, lb.pad_y), (140.0, 0.0));
    }
}
