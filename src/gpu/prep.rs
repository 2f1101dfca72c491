//! GPU preprocessing for an engine whose inputs live in device memory: a batch of
//! decoded host frames goes up as YUV (half the bytes of the RGB tensor it becomes),
//! and one launch of our batch kernel letterboxes, converts and normalises them into a
//! device tensor the engine reads where it lies. The CPU's letterbox, the largest
//! per-frame cost after decoding, leaves the host.
//!
//! Buffers are kept and reused: one upload buffer per slot, grown when a larger frame
//! comes, and the batch tensor for the largest batch.

use std::path::Path;

use super::batch::{letterbox_batch, DevicePlanes};
use super::driver::{DeviceBuffer, DriverError};
use super::kernels::{arch_for, ptx_cached, SOURCES};
use super::letterbox::{GpuLetterbox, Layout, Precision};
use crate::decode::Frame;
use crate::preprocess::Letterbox;

/// One engine worker's GPU preprocessing.
pub struct GpuPrep {
    gpu: GpuLetterbox,
    dst_w: u32,
    dst_h: u32,
    uploads: Vec<DeviceBuffer<u8>>,
    batch: Option<DeviceBuffer<f32>>,
}

impl GpuPrep {
    /// Loads the kernels for GPU `device_id` (compiled by NVRTC, or from the PTX cache
    /// in `kernel_cache`) for a `dst_w`×`dst_h` model input.
    pub fn new(
        device_id: i32,
        dst_w: u32,
        dst_h: u32,
        kernel_cache: &Path,
    ) -> Result<Self, String> {
        let crate::gpu::GpuStatus::Available { devices, .. } = crate::gpu::probe() else {
            return Err("no usable GPU".into());
        };
        let device = devices
            .iter()
            .find(|d| d.ordinal == device_id)
            .ok_or_else(|| format!("GPU {device_id} is not on this host"))?;
        let arch = arch_for(device.compute_capability);
        let ptx =
            ptx_cached(kernel_cache, &SOURCES[0], &arch, &mut None).map_err(|e| e.to_string())?;
        let gpu = GpuLetterbox::new(device_id, &ptx).map_err(|e| e.to_string())?;
        Ok(Self {
            gpu,
            dst_w,
            dst_h,
            uploads: Vec::new(),
            batch: None,
        })
    }

    /// Letterboxes `frames[k]` into slot `k` of the device batch tensor and returns its
    /// address (valid until the next call) and each frame's letterbox (for mapping
    /// boxes back).
    pub fn prepare(&mut self, frames: &[&Frame]) -> Result<(u64, Vec<Letterbox>), DriverError> {
        let ctx = self.gpu.context();
        ctx.bind()?;
        let slot = 3 * (self.dst_w * self.dst_h) as usize;
        if self
            .batch
            .as_ref()
            .is_none_or(|b| b.len() < slot * frames.len())
        {
            self.batch = Some(ctx.alloc::<f32>(slot * frames.len())?);
        }
        let mut planes = Vec::with_capacity(frames.len());
        for (k, frame) in frames.iter().enumerate() {
            let [y, u, v] = &frame.planes;
            let bytes = y.len() + u.len() + v.len();
            if self.uploads.len() <= k {
                self.uploads.push(ctx.alloc::<u8>(bytes)?);
            } else if self.uploads[k].len() < bytes {
                self.uploads[k] = ctx.alloc::<u8>(bytes)?;
            }
            let base = self.uploads[k].device_ptr();
            let (u_at, v_at) = (base + y.len() as u64, base + (y.len() + u.len()) as u64);
            // SAFETY: the buffer holds the three planes back to back (sized above).
            unsafe {
                ctx.copy_to_device(base, y)?;
                ctx.copy_to_device(u_at, u)?;
                ctx.copy_to_device(v_at, v)?;
            }
            planes.push(DevicePlanes {
                y: base,
                u: u_at,
                v: v_at,
                y_stride: frame.width,
                uv_stride: frame.width / 2,
                layout: Layout::I420,
                width: frame.width,
                height: frame.height,
                matrix: frame.matrix,
            });
        }
        let out = self.batch.as_ref().map_or(0, DeviceBuffer::device_ptr);
        letterbox_batch(
            &self.gpu,
            &planes,
            self.dst_w,
            self.dst_h,
            Precision::F32,
            out,
        )?;
        let boxes = frames
            .iter()
            .map(|f| Letterbox::fit(f.width, f.height, self.dst_w, self.dst_h))
            .collect();
        Ok((out, boxes))
    }
}
