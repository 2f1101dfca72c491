//! Decoded pictures kept in device memory. NVDEC's mapped surfaces must be released
//! at once (a decoder maps only a couple at a time), so the frames a camera keeps are
//! copied device-to-device into buffers from a per-camera pool ([`FramePool`]) and
//! travel as [`DeviceNv12`] beside the frame's metadata. The GPU preprocessing reads
//! them where they are; a CPU consumer (a CPU engine, an OCR crop, a snapshot) has them
//! copied to the host once, on first need (`Frame::planes`).

use std::sync::{Arc, Mutex};

use super::batch::DevicePlanes;
use super::driver::{Context, DeviceBuffer, DriverError, Stream};
use crate::decode::ColorMatrix;

type Free = Arc<Mutex<Vec<DeviceBuffer<u8>>>>;

/// One camera's device buffers for kept pictures, reused as frames are dropped.
pub struct FramePool {
    ctx: Arc<Context>,
    stream: Stream,
    free: Free,
    /// Buffers kept idle at most; more are freed when their frames drop.
    idle_max: usize,
}

impl FramePool {
    /// A pool on `ctx` keeping at most `idle_max` idle buffers.
    pub fn new(ctx: Arc<Context>, idle_max: usize) -> Result<Self, DriverError> {
        ctx.bind()?;
        let stream = ctx.stream()?;
        Ok(Self {
            ctx,
            stream,
            free: Arc::default(),
            idle_max,
        })
    }

    /// Copies a picture whose luma starts at `y` and whose interleaved chroma starts at
    /// `uv` (both `pitch` bytes per row, as NVDEC maps them) into a pooled buffer.
    pub fn copy_nv12(
        &self,
        (y, uv, pitch): (u64, u64, usize),
        width: u32,
        height: u32,
        matrix: ColorMatrix,
    ) -> Result<DeviceNv12, DriverError> {
        let uv_offset = uv.checked_sub(y).ok_or_else(|| {
            DriverError::Unavailable("the chroma plane precedes the luma plane".into())
        })? as usize;
        let bytes = uv_offset + pitch * (height as usize / 2);
        let reused = {
            let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
            free.iter()
                .position(|b| b.len() >= bytes)
                .map(|i| free.swap_remove(i))
        };
        let buffer = match reused {
            Some(b) => b,
            None => self.ctx.alloc::<u8>(bytes)?,
        };
        // SAFETY: `buffer` holds `bytes`; the source is the mapped surface, which the
        // caller keeps mapped until this returns (the stream is synchronised below).
        unsafe {
            self.ctx
                .copy_device_async(buffer.device_ptr(), y, bytes, &self.stream)?;
        }
        self.stream.synchronize()?;
        Ok(DeviceNv12 {
            ctx: self.ctx.clone(),
            buffer: Some(buffer),
            free: self.free.clone(),
            idle_max: self.idle_max,
            uv_offset,
            pitch,
            width,
            height,
            matrix,
        })
    }
}

/// A decoded NV12 picture in device memory, back in its pool when dropped.
pub struct DeviceNv12 {
    ctx: Arc<Context>,
    buffer: Option<DeviceBuffer<u8>>,
    free: Free,
    idle_max: usize,
    uv_offset: usize,
    pitch: usize,
    width: u32,
    height: u32,
    matrix: ColorMatrix,
}

impl std::fmt::Debug for DeviceNv12 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceNv12")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("pitch", &self.pitch)
            .finish_non_exhaustive()
    }
}

impl DeviceNv12 {
    fn base(&self) -> u64 {
        self.buffer.as_ref().map_or(0, DeviceBuffer::device_ptr)
    }

    /// Where the preprocessing kernel finds it.
    pub fn planes(&self) -> DevicePlanes {
        let base = self.base();
        DevicePlanes::nv12(
            (base, base + self.uv_offset as u64, self.pitch),
            self.width,
            self.height,
            self.matrix,
        )
    }

    /// The picture on the host as tight I420 planes (Y, U, V).
    pub fn download(&self) -> Result<[Vec<u8>; 3], DriverError> {
        self.ctx.bind()?;
        let base = self.base();
        let at = (base, base + self.uv_offset as u64, self.pitch);
        download_nv12(&self.ctx, at, self.width, self.height)
    }
}

/// A `width`×`height` NV12 picture in device memory (luma at `y`, interleaved chroma
/// at `uv`, both `pitch` bytes per row) copied to the host as tight I420 planes.
pub fn download_nv12(
    ctx: &Context,
    (y, uv, pitch): (u64, u64, usize),
    width: u32,
    height: u32,
) -> Result<[Vec<u8>; 3], DriverError> {
    let (w, h) = (width as usize, height as usize);
    let mut luma = vec![0u8; w * h];
    let mut chroma = vec![0u8; w * h / 2];
    ctx.copy_plane_to_host(y, pitch, w, h, &mut luma)?;
    ctx.copy_plane_to_host(uv, pitch, w, h / 2, &mut chroma)?;
    Ok(split_uv(luma, &chroma))
}

/// I420 planes from a luma plane and an interleaved (NV12) chroma plane.
pub fn split_uv(y: Vec<u8>, uv: &[u8]) -> [Vec<u8>; 3] {
    let u = uv.iter().step_by(2).copied().collect();
    let v = uv.iter().skip(1).step_by(2).copied().collect();
    [y, u, v]
}

impl Drop for FramePool {
    fn drop(&mut self) {
        // Idle buffers may be freed here, on whatever thread drops the pool.
        let _ = self.ctx.bind();
    }
}

impl Drop for DeviceNv12 {
    fn drop(&mut self) {
        // A frame may be dropped on any thread: a buffer freed here needs the context.
        let _ = self.ctx.bind();
        if let Some(buffer) = self.buffer.take() {
            let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
            if free.len() < self.idle_max {
                free.push(buffer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::split_uv;

    #[test]
    fn interleaved_chroma_splits_into_u_then_v() {
        assert_eq!(
            split_uv(vec![9], &[1, 7, 2, 8]),
            [vec![9], vec![1, 2], vec![7, 8]]
        );
    }
}
