//! The CPU preprocessing reference: I420 → letterboxed, normalised RGB CHW f32.
//!
//! Resampling is bilinear with pixel centres aligned (OpenCV's `INTER_LINEAR`
//! convention), luma and chroma sampled separately, then converted with the frame's
//! [`ColorMatrix`]. Padding is grey 114/255 on all three channels.

use crate::decode::{ColorMatrix, Frame};

use super::Letterbox;

/// The letterbox padding value, as Ultralytics uses.
pub const PAD_VALUE: f32 = 114.0 / 255.0;

/// Precomputed bilinear taps along one axis: (index0, index1, weight of index1).
fn taps(dst_len: u32, src_len: u32) -> Vec<(usize, usize, f32)> {
    let ratio = src_len as f32 / dst_len as f32;
    let last = src_len as usize - 1;
    (0..dst_len)
        .map(|d| {
            let s = ((d as f32 + 0.5) * ratio - 0.5).max(0.0);
            let i0 = (s.floor() as usize).min(last);
            let i1 = (i0 + 1).min(last);
            (i0, i1, s - i0 as f32)
        })
        .collect()
}

#[inline]
fn sample(plane: &[u8], stride: usize, x: (usize, usize, f32), y: (usize, usize, f32)) -> f32 {
    let r0 = y.0 * stride;
    let r1 = y.1 * stride;
    let top = f32::from(plane[r0 + x.0]) * (1.0 - x.2) + f32::from(plane[r0 + x.1]) * x.2;
    let bottom = f32::from(plane[r1 + x.0]) * (1.0 - x.2) + f32::from(plane[r1 + x.1]) * x.2;
    top * (1.0 - y.2) + bottom * y.2
}

/// YUV (0..255) → RGB (0..1) with `matrix`.
#[inline]
pub fn yuv_to_rgb(matrix: ColorMatrix, y: f32, u: f32, v: f32) -> [f32; 3] {
    let (u, v) = (u - 128.0, v - 128.0);
    let (r, g, b) = match matrix {
        ColorMatrix::Bt601 => {
            let y = 1.164_383 * (y - 16.0);
            (
                y + 1.596_027 * v,
                y - 0.391_762 * u - 0.812_968 * v,
                y + 2.017_232 * u,
            )
        }
        ColorMatrix::Bt709 => {
            let y = 1.164_383 * (y - 16.0);
            (
                y + 1.792_741 * v,
                y - 0.213_249 * u - 0.532_909 * v,
                y + 2.112_402 * u,
            )
        }
        ColorMatrix::Bt601Full => (
            y + 1.402 * v,
            y - 0.344_136 * u - 0.714_136 * v,
            y + 1.772 * u,
        ),
    };
    [
        r.clamp(0.0, 255.0) / 255.0,
        g.clamp(0.0, 255.0) / 255.0,
        b.clamp(0.0, 255.0) / 255.0,
    ]
}

/// Letterboxes `frame` into `slot`, a `3 × dst_h × dst_w` CHW tensor slice, and returns
/// the transform. `slot` must be exactly that long.
pub fn letterbox_into(frame: &Frame, dst_w: u32, dst_h: u32, slot: &mut [f32]) -> Letterbox {
    let area = (dst_w * dst_h) as usize;
    assert_eq!(slot.len(), 3 * area, "slot is not 3×{dst_h}×{dst_w}");
    let lb = Letterbox::fit(frame.width, frame.height, dst_w, dst_h);
    slot.fill(PAD_VALUE);

    let (w, h) = (frame.width as usize, frame.height as usize);
    let (cw, ch) = (w / 2, h / 2);
    let luma_x = taps(lb.resized_w, frame.width);
    let luma_y = taps(lb.resized_h, frame.height);
    // Chroma sits at half resolution: sample it on its own grid.
    let chroma_x = taps(lb.resized_w, cw as u32);
    let chroma_y = taps(lb.resized_h, ch as u32);
    let [yp, up, vp] = frame.planes();
    let (r_plane, rest) = slot.split_at_mut(area);
    let (g_plane, b_plane) = rest.split_at_mut(area);

    for dy in 0..lb.resized_h as usize {
        let row = (dy + lb.pad_y as usize) * dst_w as usize + lb.pad_x as usize;
        let (ly, cy) = (luma_y[dy], chroma_y[dy]);
        for dx in 0..lb.resized_w as usize {
            let yv = sample(yp, w, luma_x[dx], ly);
            let uv = sample(up, cw, chroma_x[dx], cy);
            let vv = sample(vp, cw, chroma_x[dx], cy);
            let [r, g, b] = yuv_to_rgb(frame.matrix, yv, uv, vv);
            r_plane[row + dx] = r;
            g_plane[row + dx] = g;
            b_plane[row + dx] = b;
        }
    }
    lb
}

/// Crops `bbox` (source pixels) out of `frame` for a text recogniser: resized to the
/// slot's height keeping its aspect (width capped at the slot's), BGR, normalised to
/// `(x / 255 - 0.5) / 0.5`, padded on the right with 0, written CHW into `slot`
/// (`3 × dst_h × dst_w`). Returns the width used.
pub fn ocr_crop_into(
    frame: &Frame,
    bbox: [f32; 4],
    dst_w: u32,
    dst_h: u32,
    slot: &mut [f32],
) -> u32 {
    let area = (dst_w * dst_h) as usize;
    assert_eq!(slot.len(), 3 * area, "slot is not 3×{dst_h}×{dst_w}");
    slot.fill(0.0);
    let (fw, fh) = (frame.width as f32, frame.height as f32);
    let x1 = bbox[0].clamp(0.0, fw - 1.0);
    let y1 = bbox[1].clamp(0.0, fh - 1.0);
    let x2 = bbox[2].clamp(x1 + 1.0, fw);
    let y2 = bbox[3].clamp(y1 + 1.0, fh);
    let (cw, ch) = (x2 - x1, y2 - y1);
    let out_w = ((dst_h as f32 * cw / ch).ceil() as u32).clamp(1, dst_w);
    let (w, cw_plane) = (frame.width as usize, frame.width as usize / 2);
    let [yp, up, vp] = frame.planes();
    let (plane_b, rest) = slot.split_at_mut(area);
    let (plane_g, plane_r) = rest.split_at_mut(area);
    let sx = cw / out_w as f32;
    let sy = ch / dst_h as f32;
    let clamp = |v: f32, max: usize| (v.max(0.0) as usize).min(max - 1);
    for dy in 0..dst_h as usize {
        let src_y = y1 + (dy as f32 + 0.5) * sy - 0.5;
        let (y0, fy) = (src_y.floor(), src_y - src_y.floor());
        let (r0, r1) = (
            clamp(y0, frame.height as usize),
            clamp(y0 + 1.0, frame.height as usize),
        );
        for dx in 0..out_w as usize {
            let src_x = x1 + (dx as f32 + 0.5) * sx - 0.5;
            let (x0, fx) = (src_x.floor(), src_x - src_x.floor());
            let (c0, c1) = (clamp(x0, w), clamp(x0 + 1.0, w));
            let luma = |r: usize, c: usize| f32::from(yp[r * w + c]);
            let yv = (luma(r0, c0) * (1.0 - fx) + luma(r0, c1) * fx) * (1.0 - fy)
                + (luma(r1, c0) * (1.0 - fx) + luma(r1, c1) * fx) * fy;
            let ci = (r0 / 2) * cw_plane + c0 / 2;
            let [r, g, b] = yuv_to_rgb(frame.matrix, yv, f32::from(up[ci]), f32::from(vp[ci]));
            let o = dy * dst_w as usize + dx;
            plane_b[o] = b * 2.0 - 1.0;
            plane_g[o] = g * 2.0 - 1.0;
            plane_r[o] = r * 2.0 - 1.0;
        }
    }
    out_w
}

/// Converts a whole frame to packed RGB8 at full resolution (for snapshots).
pub fn to_rgb8(frame: &Frame) -> Vec<u8> {
    let (w, h) = (frame.width as usize, frame.height as usize);
    let cw = w / 2;
    let [yp, up, vp] = frame.planes();
    let mut out = vec![0u8; w * h * 3];
    for y in 0..h {
        for x in 0..w {
            let c = (y / 2) * cw + x / 2;
            let rgb = yuv_to_rgb(
                frame.matrix,
                f32::from(yp[y * w + x]),
                f32::from(up[c]),
                f32::from(vp[c]),
            );
            let o = (y * w + x) * 3;
            for k in 0..3 {
                out[o + k] = (rgb[k] * 255.0).round() as u8;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grey_yuv_is_grey_rgb_and_padding_is_114() {
        // Y=126 limited range ≈ 0.5 grey; neutral chroma.
        let frame = Frame::flat(64, 32, 126, 128, 128);
        let mut slot = vec![0.0; 3 * 32 * 32];
        let lb = letterbox_into(&frame, 32, 32, &mut slot);
        assert_eq!((lb.resized_w, lb.resized_h, lb.pad_y), (32, 16, 8.0));
        let at = |c: usize, y: usize, x: usize| slot[c * 32 * 32 + y * 32 + x];
        for c in 0..3 {
            assert!((at(c, 0, 0) - PAD_VALUE).abs() < 1e-6, "top padding");
            assert!((at(c, 31, 31) - PAD_VALUE).abs() < 1e-6, "bottom padding");
            let v = at(c, 16, 16);
            assert!((v - 0.5).abs() < 0.01, "channel {c} = {v}");
        }
    }

    #[test]
    fn pure_red_in_bt601_maps_to_red() {
        // BT.601 limited-range red: Y=81, U=90, V=240.
        let [r, g, b] = yuv_to_rgb(ColorMatrix::Bt601, 81.0, 90.0, 240.0);
        assert!(r > 0.99 && g < 0.01 && b < 0.01, "{r} {g} {b}");
        let [r, g, b] = yuv_to_rgb(ColorMatrix::Bt709, 63.0, 102.0, 240.0);
        assert!(r > 0.99 && g < 0.02 && b < 0.02, "{r} {g} {b}");
    }

    #[test]
    fn bilinear_downscale_averages_a_two_pixel_pattern() {
        // Alternating columns of Y=16 and Y=235 halved in width average to the middle.
        let mut frame = Frame::flat(8, 8, 0, 128, 128);
        for (i, px) in frame.host.get_mut().expect("a host frame")[0]
            .iter_mut()
            .enumerate()
        {
            *px = if i % 2 == 0 { 16 } else { 235 };
        }
        let mut slot = vec![0.0; 3 * 4 * 4];
        letterbox_into(&frame, 4, 4, &mut slot);
        for v in &slot[..16] {
            assert!((v - 0.5).abs() < 0.01, "{v}");
        }
    }

    #[test]
    fn ocr_crops_keep_aspect_are_bgr_normalised_and_zero_padded() {
        // A red frame; crop a 100×25 box into a 48×320 slot: 192 columns used.
        let frame = Frame::flat(200, 100, 81, 90, 240);
        let mut slot = vec![9.0; 3 * 48 * 320];
        let used = ocr_crop_into(&frame, [10.0, 10.0, 110.0, 35.0], 320, 48, &mut slot);
        assert_eq!(used, 192);
        let at = |c: usize, y: usize, x: usize| slot[c * 48 * 320 + y * 320 + x];
        assert!(
            at(0, 20, 50) < -0.98,
            "blue channel first, and red has none"
        );
        assert!(at(2, 20, 50) > 0.98, "red last");
        assert_eq!(at(0, 20, 200), 0.0, "padding");
    }

    #[test]
    fn rgb8_snapshot_conversion_matches_the_reference_colour() {
        let frame = Frame::flat(4, 4, 81, 90, 240);
        let rgb = to_rgb8(&frame);
        assert_eq!(rgb.len(), 48);
        assert!(rgb[0] > 250 && rgb[1] < 3 && rgb[2] < 3, "{:?}", &rgb[..3]);
    }
}
