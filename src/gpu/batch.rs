//! One kernel launch for a whole batch (`letterbox_batch_*` in `kernels/preprocess.cu`):
//! each frame's planes, geometry and slot travel as a [`BatchJob`] in device memory,
//! so frames of any size, layout (I420 from the CPU decoder, pitched NV12 straight
//! from NVDEC) and colour matrix fill a batch in one launch instead of one per frame.
//! [`check_batch`] measures both ways and compares every slot with the CPU reference.

use std::ffi::c_void;
use std::time::Instant;

use super::driver::{DeviceBuffer, DriverError, Function, Stream};
use super::kernels::matrix_arg;
use super::letterbox::{
    interleave_uv, kernel_name, max_abs_diff, max_ulp_diff, parity_cases, reference, GpuLetterbox,
    Layout, Precision, SlotData, F16_TOLERANCE_ULP, F32_TOLERANCE,
};
use crate::decode::{ColorMatrix, Frame};
use crate::preprocess::Letterbox;

/// One frame of a batch launch, as the kernel reads it (`struct BatchJob`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BatchJob {
    /// Luma plane address.
    pub y_plane: u64,
    /// U plane (I420) or interleaved UV plane (NV12) address.
    pub u_plane: u64,
    /// V plane (I420) or `u_plane + 1` (NV12).
    pub v_plane: u64,
    /// Bytes between luma rows.
    pub y_stride: i32,
    /// Bytes between chroma rows.
    pub uv_stride: i32,
    /// 1 for planar chroma, 2 for interleaved.
    pub chroma_step: i32,
    /// Source width.
    pub src_w: i32,
    /// Source height.
    pub src_h: i32,
    /// Left padding in the slot.
    pub pad_x: i32,
    /// Top padding in the slot.
    pub pad_y: i32,
    /// Width of the resized picture.
    pub resized_w: i32,
    /// Height of the resized picture.
    pub resized_h: i32,
    /// `matrix_arg` of the frame's colour matrix.
    pub matrix: i32,
    /// Slot of the batch tensor written.
    pub slot: i32,
    /// Zero.
    pub reserved: i32,
}

/// A decoded frame's planes in device memory.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DevicePlanes {
    /// Luma plane.
    pub y: u64,
    /// U plane (I420) or UV plane (NV12).
    pub u: u64,
    /// V plane (I420; ignored for NV12).
    pub v: u64,
    /// Bytes between luma rows.
    pub y_stride: u32,
    /// Bytes between chroma rows.
    pub uv_stride: u32,
    /// Chroma layout.
    pub layout: Layout,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// YUV → RGB conversion.
    pub matrix: ColorMatrix,
}

impl DevicePlanes {
    /// An NV12 picture: luma at `y`, interleaved chroma at `uv`, both `pitch` bytes per
    /// row (how NVDEC lays out a surface).
    pub fn nv12(
        (y, uv, pitch): (u64, u64, usize),
        width: u32,
        height: u32,
        matrix: ColorMatrix,
    ) -> Self {
        DevicePlanes {
            y,
            u: uv,
            v: 0,
            y_stride: pitch as u32,
            uv_stride: pitch as u32,
            layout: Layout::Nv12,
            width,
            height,
            matrix,
        }
    }

    /// The kernel's job for letterboxing these planes into `slot` of a
    /// `dst_w`×`dst_h` batch tensor: the same geometry as the CPU's [`Letterbox`].
    pub fn job(&self, dst_w: u32, dst_h: u32, slot: usize) -> BatchJob {
        let lb = Letterbox::fit(self.width, self.height, dst_w, dst_h);
        let (v, step) = match self.layout {
            Layout::I420 => (self.v, 1),
            Layout::Nv12 => (self.u + 1, 2),
        };
        BatchJob {
            y_plane: self.y,
            u_plane: self.u,
            v_plane: v,
            y_stride: self.y_stride as i32,
            uv_stride: self.uv_stride as i32,
            chroma_step: step,
            src_w: self.width as i32,
            src_h: self.height as i32,
            pad_x: lb.pad_x as i32,
            pad_y: lb.pad_y as i32,
            resized_w: lb.resized_w as i32,
            resized_h: lb.resized_h as i32,
            matrix: matrix_arg(self.matrix),
            slot: slot as i32,
            reserved: 0,
        }
    }
}

/// The batch kernel's name for a precision.
pub fn batch_kernel_name(precision: Precision) -> &'static str {
    match precision {
        Precision::F32 => "letterbox_batch_f32",
        Precision::F16 => "letterbox_batch_f16",
    }
}

/// Letterboxes `frames[k]` into slot `k` of the batch tensor at `out` with one launch,
/// and waits for it.
pub fn letterbox_batch(
    gpu: &GpuLetterbox,
    frames: &[DevicePlanes],
    dst_w: u32,
    dst_h: u32,
    precision: Precision,
    out: u64,
) -> Result<(), DriverError> {
    let jobs: Vec<BatchJob> = frames
        .iter()
        .enumerate()
        .map(|(k, f)| f.job(dst_w, dst_h, k))
        .collect();
    let jobs = gpu.context().upload(&jobs)?;
    let function = gpu.module().function(batch_kernel_name(precision))?;
    // SAFETY: `jobs` holds one job per frame, each frame's planes are live, `out`
    // holds a slot per frame, and everything outlives the synchronise below.
    unsafe {
        launch_batch(
            gpu,
            &function,
            None,
            jobs.device_ptr(),
            frames.len(),
            (dst_w, dst_h),
            out,
        )?;
    }
    gpu.context().synchronize()
}

/// Queues one launch of the batch kernel `function` (from [`batch_kernel_name`] for the
/// output's precision) on `stream` (`None`: the legacy default stream) for `count` jobs
/// at device address `jobs`, into the tensor at `out`.
///
/// # Safety
/// `jobs` must hold `count` [`BatchJob`]s whose planes are live device memory, `out`
/// must hold `count` slots of `dst`, and all of it must stay valid until the stream
/// has run the launch.
pub unsafe fn launch_batch(
    gpu: &GpuLetterbox,
    function: &Function<'_>,
    stream: Option<&Stream>,
    jobs: u64,
    count: usize,
    (dst_w, dst_h): (u32, u32),
    out: u64,
) -> Result<(), DriverError> {
    let (mut jobs_ptr, mut w, mut h, mut out_ptr) = (jobs, dst_w as i32, dst_h as i32, out);
    let mut args: [*mut c_void; 4] = [
        (&mut jobs_ptr as *mut u64).cast(),
        (&mut w as *mut i32).cast(),
        (&mut h as *mut i32).cast(),
        (&mut out_ptr as *mut u64).cast(),
    ];
    // SAFETY: the arguments follow `letterbox_batch_*`'s parameters; the memory per
    // this function's contract.
    unsafe {
        gpu.context()
            .launch_on(stream, function, (dst_w, dst_h, count as u32), &mut args)
    }
}

/// Launches the one-frame kernel `function` (from [`kernel_name`] for the job's layout
/// and the output's precision) for `job`: the launch-per-frame way.
///
/// # Safety
/// `job`'s planes must be live device memory holding its frame, and `out` must hold
/// the job's slot of a `dst_w`×`dst_h` tensor of the kernel's precision.
pub(super) unsafe fn launch_single(
    gpu: &GpuLetterbox,
    function: &Function<'_>,
    job: &BatchJob,
    (dst_w, dst_h): (u32, u32),
    out: u64,
) -> Result<(), DriverError> {
    let (mut y, mut u, mut v, mut out_ptr) = (job.y_plane, job.u_plane, job.v_plane, out);
    let mut ints = [
        job.y_stride,
        job.uv_stride,
        job.src_w,
        job.src_h,
        dst_w as i32,
        dst_h as i32,
        job.pad_x,
        job.pad_y,
        job.resized_w,
        job.resized_h,
        job.matrix,
        job.slot,
    ];
    let mut args: Vec<*mut c_void> = vec![
        (&mut y as *mut u64).cast(),
        (&mut u as *mut u64).cast(),
        (&mut v as *mut u64).cast(),
    ];
    args.extend(ints.iter_mut().map(|i| (i as *mut i32).cast::<c_void>()));
    args.push((&mut out_ptr as *mut u64).cast());
    // SAFETY: KERNEL_ARGS order (three planes, twelve ints, the output); the memory per
    // this function's contract.
    unsafe { gpu.context().launch_2d(function, dst_w, dst_h, &mut args) }
}

/// A host frame uploaded for the checks: its buffers and where they are.
pub struct Uploaded {
    _buffers: Vec<DeviceBuffer<u8>>,
    /// The planes.
    pub planes: DevicePlanes,
}

/// Uploads `frame` in `layout` (NV12 interleaves its chroma first).
pub fn upload(gpu: &GpuLetterbox, frame: &Frame, layout: Layout) -> Result<Uploaded, DriverError> {
    let ctx = gpu.context();
    let [y, u, v] = frame.planes();
    let y = ctx.upload(y)?;
    let (buffers, planes) = match layout {
        Layout::I420 => {
            let (u, v) = (ctx.upload(u)?, ctx.upload(v)?);
            let planes = (
                y.device_ptr(),
                u.device_ptr(),
                v.device_ptr(),
                frame.width / 2,
            );
            (vec![y, u, v], planes)
        }
        Layout::Nv12 => {
            let uv = ctx.upload(&interleave_uv(u, v))?;
            let planes = (y.device_ptr(), uv.device_ptr(), 0, frame.width);
            (vec![y, uv], planes)
        }
    };
    Ok(Uploaded {
        _buffers: buffers,
        planes: DevicePlanes {
            y: planes.0,
            u: planes.1,
            v: planes.2,
            y_stride: frame.width,
            uv_stride: planes.3,
            layout,
            width: frame.width,
            height: frame.height,
            matrix: frame.matrix,
        },
    })
}

/// One precision's batch check.
#[derive(Debug, Clone)]
pub struct BatchRow {
    /// Output type.
    pub precision: Precision,
    /// Frames in the batch.
    pub batch: usize,
    /// Largest difference from the CPU reference over every slot (absolute for fp32,
    /// ulps for fp16).
    pub max_error: f64,
    /// Mean µs to fill the batch with one launch.
    pub micros_batched: f64,
    /// Mean µs to fill it with one launch per frame.
    pub micros_per_frame: f64,
    /// Every slot within tolerance.
    pub pass: bool,
}

/// Fills a batch of every parity case (I420 and NV12 alternating) into 640×640 both
/// ways, `runs` times each, and checks the batched result slot by slot.
pub fn check_batch(gpu: &GpuLetterbox, runs: usize) -> Result<Vec<BatchRow>, DriverError> {
    let (dst_w, dst_h) = (640, 640);
    let frames: Vec<Frame> = parity_cases().into_iter().map(|c| c.1).collect();
    let layouts = [Layout::I420, Layout::Nv12];
    let uploaded = frames
        .iter()
        .enumerate()
        .map(|(i, f)| upload(gpu, f, layouts[i % 2]))
        .collect::<Result<Vec<_>, _>>()?;
    let planes: Vec<DevicePlanes> = uploaded.iter().map(|u| u.planes).collect();
    let n = planes.len();
    let area = 3 * (dst_w * dst_h) as usize;
    let ctx = gpu.context();
    let mut rows = Vec::new();
    for precision in [Precision::F32, Precision::F16] {
        let out_f32 = ctx.alloc::<f32>(n * area)?;
        let out_f16 = ctx.alloc::<u16>(n * area)?;
        let out = match precision {
            Precision::F32 => out_f32.device_ptr(),
            Precision::F16 => out_f16.device_ptr(),
        };
        let jobs: Vec<BatchJob> = planes
            .iter()
            .enumerate()
            .map(|(k, p)| p.job(dst_w, dst_h, k))
            .collect();
        let jobs_dev = ctx.upload(&jobs)?;
        // Kernels are looked up before timing, so both ways time launches alone.
        let singles = layouts
            .iter()
            .map(|&l| gpu.module().function(kernel_name(l, precision)))
            .collect::<Result<Vec<_>, _>>()?;
        let batched = gpu.module().function(batch_kernel_name(precision))?;
        let started = Instant::now();
        for _ in 0..runs.max(1) {
            for (i, job) in jobs.iter().enumerate() {
                // SAFETY: the planes and output are alive until the synchronise; each
                // job's kernel matches its layout (`layouts[i % 2]`, as uploaded).
                unsafe { launch_single(gpu, &singles[i % 2], job, (dst_w, dst_h), out)? };
            }
        }
        ctx.synchronize()?;
        let micros_per_frame = started.elapsed().as_secs_f64() * 1e6 / runs.max(1) as f64;
        let started = Instant::now();
        for _ in 0..runs.max(1) {
            // SAFETY: the jobs, planes and output are alive until the synchronise.
            unsafe {
                launch_batch(
                    gpu,
                    &batched,
                    None,
                    jobs_dev.device_ptr(),
                    n,
                    (dst_w, dst_h),
                    out,
                )?;
            }
        }
        ctx.synchronize()?;
        let micros_batched = started.elapsed().as_secs_f64() * 1e6 / runs.max(1) as f64;
        let mut max_error = 0f64;
        let mut pass = true;
        let got = match precision {
            Precision::F32 => SlotData::F32(out_f32.download()?),
            Precision::F16 => SlotData::F16(out_f16.download()?),
        };
        for (k, frame) in frames.iter().enumerate() {
            let slot = k * area..(k + 1) * area;
            match (&got, reference(frame, dst_w, dst_h, precision)) {
                (SlotData::F32(got), SlotData::F32(want)) => {
                    let e = max_abs_diff(&got[slot], &want);
                    max_error = max_error.max(f64::from(e));
                    pass &= e <= F32_TOLERANCE;
                }
                (SlotData::F16(got), SlotData::F16(want)) => {
                    let e = max_ulp_diff(&got[slot], &want);
                    max_error = max_error.max(f64::from(e));
                    pass &= e <= F16_TOLERANCE_ULP;
                }
                _ => pass = false,
            }
        }
        rows.push(BatchRow {
            precision,
            batch: n,
            max_error,
            micros_batched,
            micros_per_frame,
            pass,
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_job_layout_is_what_the_kernel_reads() {
        // struct BatchJob: three 8-byte addresses, then twelve ints.
        assert_eq!(std::mem::size_of::<BatchJob>(), 72);
        assert_eq!(std::mem::offset_of!(BatchJob, y_stride), 24);
        assert_eq!(std::mem::offset_of!(BatchJob, slot), 64);
        let src = include_str!("../../kernels/preprocess.cu");
        assert!(src.contains(
            "unsigned long long y_plane, u_plane, v_plane;\n    int y_stride, uv_stride, chroma_step, src_w, src_h;\n    int pad_x, pad_y, resized_w, resized_h, matrix, slot, reserved;"
        ));
    }

    #[test]
    fn jobs_carry_the_cpu_letterbox_geometry_and_the_chroma_layout() {
        let nv12 = DevicePlanes {
            y: 0x1000,
            u: 0x9000,
            v: 0,
            y_stride: 2048,
            uv_stride: 2048,
            layout: Layout::Nv12,
            width: 1920,
            height: 1080,
            matrix: ColorMatrix::Bt709,
        };
        let job = nv12.job(640, 640, 3);
        let lb = Letterbox::fit(1920, 1080, 640, 640);
        assert_eq!((job.resized_w, job.resized_h), (640, 360));
        assert_eq!((job.pad_x, job.pad_y), (lb.pad_x as i32, lb.pad_y as i32));
        assert_eq!((job.v_plane, job.chroma_step), (0x9001, 2));
        assert_eq!((job.y_stride, job.slot), (2048, 3));
        assert_eq!(job.matrix, matrix_arg(ColorMatrix::Bt709));
        let i420 = DevicePlanes {
            v: 0x5000,
            layout: Layout::I420,
            ..nv12
        };
        assert_eq!(
            (
                i420.job(640, 640, 0).v_plane,
                i420.job(640, 640, 0).chroma_step
            ),
            (0x5000, 1)
        );
    }
}
