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

/// An `f32` as IEEE 754 half-precision bits, rounded to nearest even: how fp16 batch
/// tensors store values, and the reference for the CUDA kernels' own conversion.
pub fn f16_bits(value: f32) -> u16 {
    let x = value.to_bits();
    let sign = ((x >> 16) & 0x8000) as u16;
    let exp = ((x >> 23) & 0xff) as i32 - 127 + 15;
    let mant = x & 0x7f_ffff;
    if (x & 0x7fff_ffff) > 0x7f80_0000 {
        return sign | 0x7e00; // NaN
    }
    if exp >= 31 {
        return sign | 0x7c00; // overflow to infinity
    }
    if exp <= 0 {
        if exp < -10 {
            return sign;
        }
        let mant = mant | 0x80_0000;
        let shift = (14 - exp) as u32;
        let mut half = mant >> shift;
        let rest = mant & ((1 << shift) - 1);
        let mid = 1 << (shift - 1);
        if rest > mid || (rest == mid && half & 1 == 1) {
            half += 1;
        }
        return sign | half as u16;
    }
    let mut half = u32::from(sign) | ((exp as u32) << 10) | (mant >> 13);
    let rest = mant & 0x1fff;
    if rest > 0x1000 || (rest == 0x1000 && half & 1 == 1) {
        half += 1;
    }
    half as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_round_to_nearest_even_like_the_hardware() {
        assert_eq!(f16_bits(0.0), 0x0000);
        assert_eq!(f16_bits(-0.0), 0x8000);
        assert_eq!(f16_bits(1.0), 0x3c00);
        assert_eq!(f16_bits(0.5), 0x3800);
        assert_eq!(f16_bits(-2.0), 0xc000);
        assert_eq!(f16_bits(65504.0), 0x7bff);
        assert_eq!(f16_bits(70000.0), 0x7c00);
        assert_eq!(f16_bits(1.0 / 3.0), 0x3555);
        assert_eq!(f16_bits(114.0 / 255.0), 0x3727);
        // Smallest subnormal, and half of it (a tie, to even: zero).
        assert_eq!(f16_bits(2f32.powi(-24)), 0x0001);
        assert_eq!(f16_bits(2f32.powi(-25)), 0x0000);
        // 1 + 2^-11 is halfway between 1 and the next half: even is 1.
        assert_eq!(f16_bits(1.0 + 2f32.powi(-11)), 0x3c00);
        assert_eq!(f16_bits(1.0 + 3.0 * 2f32.powi(-11)), 0x3c02);
        assert_eq!(f16_bits(f32::NAN) & 0x7e00, 0x7e00);
    }

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
