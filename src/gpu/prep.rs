//! GPU preprocessing for an engine whose inputs live in device memory. A batch of
//! decoded frames (NVDEC's, already in device memory, are read where they are; host
//! frames are copied up as YUV, half the bytes of the RGB tensor they become) is
//! letterboxed, converted and normalised by one launch of our batch kernel into a
//! device tensor the engine reads where it lies. The CPU's letterbox, the largest
//! per-frame cost after decoding, leaves the host.
//!
//! Each worker's preprocessing runs on a non-blocking stream of its own, so it never
//! waits for another worker's inference (the engine sessions have their own streams):
//! while one worker's batch runs, the next worker's is being prepared. Frames are
//! staged in page-locked memory and copied with the batch's jobs in two asynchronous
//! copies; every buffer is kept and grown, never allocated per batch.

use std::path::Path;

use super::batch::{batch_kernel_name, launch_batch, BatchJob, DevicePlanes};
use super::driver::{DeviceBuffer, DriverError, PinnedBuffer, Stream};
use super::kernels::{images_for_device, PREPROCESS};
use super::letterbox::{GpuLetterbox, Layout, Precision};
use crate::decode::Frame;
use crate::preprocess::Letterbox;

/// One engine worker's GPU preprocessing.
pub struct GpuPrep {
    gpu: GpuLetterbox,
    stream: Stream,
    dst_w: u32,
    dst_h: u32,
    /// Host staging: every frame's planes back to back, then the jobs.
    staging: Option<PinnedBuffer>,
    /// The same bytes on the device.
    frames: Option<DeviceBuffer<u8>>,
    jobs: Option<DeviceBuffer<BatchJob>>,
    batch: Option<DeviceBuffer<f32>>,
}

/// `buf` when it holds at least `len`, else a new one from `alloc` with a quarter more
/// room, so a stream of slowly growing batches does not allocate every time.
pub(super) fn grown<B>(
    buf: &mut Option<B>,
    len: usize,
    size: impl Fn(&B) -> usize,
    alloc: impl FnOnce(usize) -> Result<B, DriverError>,
) -> Result<(), DriverError> {
    if buf.as_ref().is_none_or(|b| size(b) < len) {
        *buf = None;
        *buf = Some(alloc(len + len / 4)?);
    }
    Ok(())
}

/// Bytes [`stage`] copies for `frames`: the planes of those not already on the device.
pub fn staged_bytes(frames: &[&Frame]) -> usize {
    frames
        .iter()
        .filter(|f| f.device.is_none())
        .map(|f| f.planes().iter().map(Vec::len).sum::<usize>())
        .sum()
}

/// Lays out a batch for the batch kernel into a `dst_w`×`dst_h` tensor: the planes of
/// frames in host memory are copied back to back into `staging` (at least
/// [`staged_bytes`] long), whose copy will lie at device address `base`; frames
/// already on the device (NVDEC's) are read where they are. Returns frame `k`'s job
/// for slot `k`. Pure, so it is tested on the CPU with the kernel run there too.
pub fn stage(frames: &[&Frame], staging: &mut [u8], base: u64, dst: (u32, u32)) -> Vec<BatchJob> {
    let (dst_w, dst_h) = dst;
    let mut at = 0usize;
    let mut jobs = Vec::with_capacity(frames.len());
    for (k, frame) in frames.iter().enumerate() {
        if let Some(image) = &frame.device {
            jobs.push(image.planes().job(dst_w, dst_h, k));
            continue;
        }
        let mut addr = [0u64; 3];
        for (i, plane) in frame.planes().iter().enumerate() {
            staging[at..at + plane.len()].copy_from_slice(plane);
            addr[i] = base + at as u64;
            at += plane.len();
        }
        let planes = DevicePlanes {
            y: addr[0],
            u: addr[1],
            v: addr[2],
            y_stride: frame.width,
            uv_stride: frame.width / 2,
            layout: Layout::I420,
            width: frame.width,
            height: frame.height,
            matrix: frame.matrix,
        };
        jobs.push(planes.job(dst_w, dst_h, k));
    }
    jobs
}

impl GpuPrep {
    /// Loads the kernels for GPU `device_id` (its cubin, else PTX: compiled by NVRTC, or
    /// from the cache in `kernel_cache`) for a `dst_w`×`dst_h` model input.
    pub fn new(
        device_id: i32,
        dst_w: u32,
        dst_h: u32,
        kernel_cache: &Path,
    ) -> Result<Self, String> {
        let images = images_for_device(device_id, &PREPROCESS, kernel_cache)?;
        let (gpu, _) = GpuLetterbox::load(device_id, &images).map_err(|e| e.to_string())?;
        let stream = gpu.context().stream().map_err(|e| e.to_string())?;
        Ok(Self {
            gpu,
            stream,
            dst_w,
            dst_h,
            staging: None,
            frames: None,
            jobs: None,
            batch: None,
        })
    }

    /// Letterboxes `frames[k]` into slot `k` of the device batch tensor and returns its
    /// address (valid until the next call) and each frame's letterbox (for mapping
    /// boxes back). Returns once the tensor is complete.
    pub fn prepare(&mut self, frames: &[&Frame]) -> Result<(u64, Vec<Letterbox>), DriverError> {
        let ctx = self.gpu.context();
        ctx.bind()?;
        let n = frames.len();
        // Frames already in device memory (NVDEC's) are read where they are; the others
        // are staged and copied up.
        let plane_bytes = staged_bytes(frames);
        let job_bytes = n * std::mem::size_of::<BatchJob>();
        let slot = 3 * (self.dst_w * self.dst_h) as usize;
        grown(
            &mut self.staging,
            plane_bytes + job_bytes,
            PinnedBuffer::len,
            |l| ctx.pinned(l),
        )?;
        grown(&mut self.frames, plane_bytes, DeviceBuffer::len, |l| {
            ctx.alloc(l)
        })?;
        grown(&mut self.jobs, n, DeviceBuffer::len, |l| ctx.alloc(l))?;
        grown(&mut self.batch, slot * n, DeviceBuffer::len, |l| {
            ctx.alloc(l)
        })?;
        let (Some(staging), Some(dev), Some(jobs_dev), Some(batch)) =
            (&mut self.staging, &self.frames, &self.jobs, &self.batch)
        else {
            unreachable!("grown above");
        };
        let host = staging.as_mut_slice();
        let base = dev.device_ptr();
        let jobs = stage(frames, host, base, (self.dst_w, self.dst_h));
        let at = plane_bytes;
        // SAFETY: BatchJob is repr(C) plain data without padding (3 × u64, 12 × i32).
        let job_view = unsafe { std::slice::from_raw_parts(jobs.as_ptr().cast::<u8>(), job_bytes) };
        host[at..at + job_bytes].copy_from_slice(job_view);
        let function = self
            .gpu
            .module()
            .function(batch_kernel_name(Precision::F32))?;
        // SAFETY: the device buffers were sized above for these bytes; the staging is
        // not touched again until the stream is synchronised below.
        unsafe {
            if plane_bytes > 0 {
                ctx.copy_async(base, staging, 0, plane_bytes, &self.stream)?;
            }
            ctx.copy_async(jobs_dev.device_ptr(), staging, at, job_bytes, &self.stream)?;
            launch_batch(
                &self.gpu,
                &function,
                Some(&self.stream),
                jobs_dev.device_ptr(),
                n,
                (self.dst_w, self.dst_h),
                batch.device_ptr(),
            )?;
        }
        self.stream.synchronize()?;
        let boxes = frames
            .iter()
            .map(|f| Letterbox::fit(f.width, f.height, self.dst_w, self.dst_h))
            .collect();
        Ok((batch.device_ptr(), boxes))
    }

    /// The first `n` slots of the batch tensor, brought back (for checks).
    pub fn download(&self, n: usize) -> Result<Vec<f32>, DriverError> {
        self.gpu.context().bind()?;
        let slot = 3 * (self.dst_w * self.dst_h) as usize;
        let mut all = self
            .batch
            .as_ref()
            .map_or(Ok(Vec::new()), DeviceBuffer::download)?;
        all.truncate(n * slot);
        Ok(all)
    }
}
