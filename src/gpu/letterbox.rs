//! Runs the preprocessing kernels on a GPU, and compares them with the CPU reference.
//!
//! [`GpuLetterbox`] uploads a decoded frame, letterboxes it into slot `k` of a device
//! batch tensor and (for checks) brings the slot back. The comparison helpers are pure
//! so they are tested without a GPU; `bench/gpu-check.sh` and `tests/gpu.rs` use both.

use std::time::Instant;

use super::driver::{Context, DeviceBuffer, DriverError, Module};
use crate::decode::Frame;
use crate::preprocess::f16_bits;

/// How chroma is laid out in device memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Planar U and V (what the CPU decoder gives).
    I420,
    /// Interleaved UV (what NVDEC gives).
    Nv12,
}

/// Batch tensor element type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// 32-bit float.
    F32,
    /// IEEE half, stored as bits.
    F16,
}

/// A slot brought back to the host.
#[derive(Debug, Clone, PartialEq)]
pub enum SlotData {
    /// fp32 values.
    F32(Vec<f32>),
    /// fp16 bits.
    F16(Vec<u16>),
}

/// The kernel name for a layout and precision.
pub fn kernel_name(layout: Layout, precision: Precision) -> &'static str {
    match (layout, precision) {
        (Layout::I420, Precision::F32) => "letterbox_i420_f32",
        (Layout::I420, Precision::F16) => "letterbox_i420_f16",
        (Layout::Nv12, Precision::F32) => "letterbox_nv12_f32",
        (Layout::Nv12, Precision::F16) => "letterbox_nv12_f16",
    }
}

/// Interleaves a frame's U and V planes into NV12's UV plane.
pub fn interleave_uv(u: &[u8], v: &[u8]) -> Vec<u8> {
    u.iter().zip(v).flat_map(|(&a, &b)| [a, b]).collect()
}

/// Largest absolute difference between two fp32 tensors (∞ when lengths differ).
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return f32::INFINITY;
    }
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Largest distance in units of the last place between two fp16 tensors of
/// non-negative values (`u32::MAX` when lengths differ).
pub fn max_ulp_diff(a: &[u16], b: &[u16]) -> u32 {
    if a.len() != b.len() {
        return u32::MAX;
    }
    a.iter()
        .zip(b)
        .map(|(&x, &y)| u32::from(x.abs_diff(y)))
        .max()
        .unwrap_or(0)
}

/// The CPU reference for a slot, in the given precision.
pub fn reference(frame: &Frame, dst_w: u32, dst_h: u32, precision: Precision) -> SlotData {
    let mut slot = vec![0f32; 3 * (dst_w * dst_h) as usize];
    crate::preprocess::cpu::letterbox_into(frame, dst_w, dst_h, &mut slot);
    match precision {
        Precision::F32 => SlotData::F32(slot),
        Precision::F16 => SlotData::F16(slot.into_iter().map(f16_bits).collect()),
    }
}

/// One kernel run: the model input size, the layouts, and where in the batch.
#[derive(Debug, Clone, Copy)]
pub struct SlotJob {
    /// Model input width.
    pub dst_w: u32,
    /// Model input height.
    pub dst_h: u32,
    /// Chroma layout uploaded.
    pub layout: Layout,
    /// Output element type.
    pub precision: Precision,
    /// Slots in the batch tensor.
    pub batch: usize,
    /// The slot written.
    pub slot: usize,
    /// Launches, for timing (at least one).
    pub runs: usize,
}

/// The preprocessing kernels loaded on one GPU.
pub struct GpuLetterbox {
    ctx: Context,
    module: Module,
}

impl GpuLetterbox {
    /// Loads `ptx` (from [`super::kernels::compile_all`]) on device `ordinal`.
    pub fn new(ordinal: i32, ptx: &str) -> Result<Self, DriverError> {
        let ctx = Context::new(ordinal)?;
        let module = ctx.load_ptx(ptx)?;
        Ok(Self { ctx, module })
    }

    /// Loads the first of `images` (from [`super::kernels::images_cached`], best first)
    /// that this GPU and driver accept, on device `ordinal`; the image kind loaded is
    /// returned with it. A cubin for another GPU, or PTX newer than the driver, is
    /// passed over for the next.
    pub fn load(
        ordinal: i32,
        images: &[super::kernels::Image],
    ) -> Result<(Self, &'static str), DriverError> {
        let ctx = Context::new(ordinal)?;
        let (module, kind) = super::kernels::load_first(&ctx, images)?;
        Ok((Self { ctx, module }, kind))
    }

    /// The context the kernels run in.
    pub fn context(&self) -> &Context {
        &self.ctx
    }

    /// The loaded kernels.
    pub fn module(&self) -> &Module {
        &self.module
    }

    /// Letterboxes `frame` into slot `job.slot` of a zeroed `job.batch`-slot device
    /// tensor, `job.runs` times (for timing), and returns the whole batch and the mean
    /// time per run in microseconds (upload excluded).
    pub fn run(&self, frame: &Frame, job: &SlotJob) -> Result<(SlotData, f64), DriverError> {
        let SlotJob {
            dst_w,
            dst_h,
            layout,
            precision,
            batch,
            slot,
            runs,
        } = *job;
        self.ctx.bind()?;
        let uploaded = super::batch::upload(self, frame, layout)?;
        let len = batch * 3 * (dst_w * dst_h) as usize;
        let out: (Option<DeviceBuffer<f32>>, Option<DeviceBuffer<u16>>) = match precision {
            Precision::F32 => (Some(self.ctx.upload(&vec![0f32; len])?), None),
            Precision::F16 => (None, Some(self.ctx.upload(&vec![0u16; len])?)),
        };
        let function = self.module.function(kernel_name(layout, precision))?;
        let out_ptr = match &out {
            (Some(b), _) => b.device_ptr(),
            (_, Some(b)) => b.device_ptr(),
            _ => 0,
        };
        let kernel_job = uploaded.planes.job(dst_w, dst_h, slot);
        let started = Instant::now();
        for _ in 0..runs.max(1) {
            // SAFETY: the uploaded planes hold the frame and the output holds `batch`
            // slots (`slot` among them), alive until the synchronise below.
            unsafe {
                super::batch::launch_single(self, &function, &kernel_job, (dst_w, dst_h), out_ptr)?
            };
        }
        self.ctx.synchronize()?;
        let micros = started.elapsed().as_secs_f64() * 1e6 / runs.max(1) as f64;
        let data = match out {
            (Some(b), _) => SlotData::F32(b.download()?),
            (_, Some(b)) => SlotData::F16(b.download()?),
            _ => SlotData::F32(Vec::new()),
        };
        Ok((data, micros))
    }
}

/// Largest fp32 difference from the CPU reference a kernel may show: a 40th of one
/// 8-bit step (the GPU contracts multiply-adds, so the last bits differ).
pub const F32_TOLERANCE: f32 = 1e-4;
/// Largest fp16 difference from the rounded CPU reference, in units of the last place.
pub const F16_TOLERANCE_ULP: u32 = 1;

/// One parity check's outcome.
#[derive(Debug, Clone)]
pub struct ParityRow {
    /// What was letterboxed into what.
    pub case: String,
    /// Chroma layout.
    pub layout: Layout,
    /// Output type.
    pub precision: Precision,
    /// Largest difference: absolute for fp32, in ulps for fp16.
    pub max_error: f64,
    /// Whether the other slot of the batch stayed untouched.
    pub other_slot_untouched: bool,
    /// Mean time per launch, µs (100 launches).
    pub micros: f64,
    /// Within tolerance and nothing written outside the slot.
    pub pass: bool,
}

/// The frames and input sizes the kernels are checked on: 1080p and 720p into 640×640,
/// portrait, a size that is not a multiple of anything, and upscaling.
pub fn parity_cases() -> Vec<(String, Frame, u32, u32)> {
    use crate::decode::ColorMatrix::{Bt601, Bt601Full, Bt709};
    [
        (1920, 1080, Bt709, 640, 640),
        (1280, 720, Bt601, 640, 640),
        (720, 1280, Bt709, 640, 384),
        (322, 242, Bt601Full, 320, 320),
        (160, 120, Bt601, 640, 640),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (w, h, m, dw, dh))| {
        (
            format!("{w}x{h} {m:?} → {dw}x{dh}"),
            Frame::pattern(w, h, m, i as u32 + 1),
            dw,
            dh,
        )
    })
    .collect()
}

/// Runs every parity case in every layout and precision into slot 1 of a batch of 2,
/// `runs` times each (for the time per launch).
pub fn check_parity(gpu: &GpuLetterbox, runs: usize) -> Result<Vec<ParityRow>, DriverError> {
    let mut rows = Vec::new();
    for (case, frame, dst_w, dst_h) in parity_cases() {
        let area = 3 * (dst_w * dst_h) as usize;
        for layout in [Layout::I420, Layout::Nv12] {
            for precision in [Precision::F32, Precision::F16] {
                let job = SlotJob {
                    dst_w,
                    dst_h,
                    layout,
                    precision,
                    batch: 2,
                    slot: 1,
                    runs,
                };
                let (data, micros) = gpu.run(&frame, &job)?;
                let (max_error, untouched, within) =
                    match (data, reference(&frame, dst_w, dst_h, precision)) {
                        (SlotData::F32(got), SlotData::F32(want)) => {
                            let e = max_abs_diff(&got[area..], &want);
                            (
                                f64::from(e),
                                got[..area].iter().all(|&v| v == 0.0),
                                e <= F32_TOLERANCE,
                            )
                        }
                        (SlotData::F16(got), SlotData::F16(want)) => {
                            let e = max_ulp_diff(&got[area..], &want);
                            (
                                f64::from(e),
                                got[..area].iter().all(|&v| v == 0),
                                e <= F16_TOLERANCE_ULP,
                            )
                        }
                        _ => (f64::INFINITY, false, false),
                    };
                rows.push(ParityRow {
                    case: case.clone(),
                    layout,
                    precision,
                    max_error,
                    other_slot_untouched: untouched,
                    micros,
                    pass: within && untouched,
                });
            }
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nv12_interleaves_u_then_v() {
        assert_eq!(interleave_uv(&[1, 2], &[7, 8]), [1, 7, 2, 8]);
    }

    #[test]
    fn differences_are_measured_in_the_units_that_matter() {
        assert_eq!(max_abs_diff(&[0.5, 0.25], &[0.5, 0.375]), 0.125);
        assert_eq!(max_abs_diff(&[0.5], &[0.5, 0.1]), f32::INFINITY);
        assert_eq!(max_ulp_diff(&[0x3c00, 0x3800], &[0x3c01, 0x3800]), 1);
        assert_eq!(max_ulp_diff(&[1], &[]), u32::MAX);
    }

    #[test]
    fn the_reference_in_fp16_is_the_fp32_reference_rounded() {
        let frame = Frame::pattern(64, 48, crate::decode::ColorMatrix::Bt709, 3);
        let (SlotData::F32(f32s), SlotData::F16(f16s)) = (
            reference(&frame, 32, 32, Precision::F32),
            reference(&frame, 32, 32, Precision::F16),
        ) else {
            panic!("wrong precisions");
        };
        assert_eq!(f16s, f32s.iter().map(|&v| f16_bits(v)).collect::<Vec<_>>());
        assert_eq!(
            kernel_name(Layout::Nv12, Precision::F16),
            "letterbox_nv12_f16"
        );
    }
}
