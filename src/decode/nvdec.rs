//! GPU decoding: NVDEC ([`crate::gpu::nvdec`]) decodes, so the CPU's decode work (the
//! largest per-stream cost, `bench/README.md`) moves to the video engines. The frames
//! a camera keeps stay in device memory when its models run on the GPU (the
//! preprocessing kernel reads them there: no host copy), and are copied out as I420
//! otherwise. Skipped frames never leave the GPU.

use std::sync::Arc;

use super::arrivals::Arrivals;
use super::{DecodeError, Decoder, Frame, FrameSelector};
use crate::gpu::devframe::FramePool;
use crate::gpu::driver::Context;
use crate::gpu::nvdec::{NvDecoder, NvdecError};
use crate::ingest::{AccessUnit, StreamInfo};

/// One camera's NVDEC decoder behind the [`Decoder`] seam.
pub struct NvdecFrames {
    decoder: NvDecoder,
    selector: FrameSelector,
    arrivals: Arrivals,
    /// On a failure, turn NVDEC off for the process (`decode.backend = "auto"`).
    fallback: bool,
    /// Where kept pictures stay on the GPU (for a GPU engine); `None` copies them out.
    pool: Option<FramePool>,
}

impl NvdecFrames {
    /// A decoder for `info` on GPU `device_id`, with `extra_surfaces` beyond the
    /// codec's minimum in its pool.
    pub fn new(
        info: &StreamInfo,
        selector: FrameSelector,
        device_id: i32,
        extra_surfaces: u32,
    ) -> Result<Self, NvdecError> {
        crate::gpu::nvdec::api()?;
        let ctx = Arc::new(Context::new(device_id)?);
        Ok(Self {
            decoder: NvDecoder::new(ctx, info, extra_surfaces)?,
            selector,
            arrivals: Arrivals::default(),
            fallback: false,
            pool: None,
        })
    }

    /// Keeps kept pictures in device memory (a pool of at most `idle` spare buffers)
    /// instead of copying them to the host: for cameras whose models run on the GPU.
    pub fn on_device(mut self, device_id: i32, idle: usize) -> Result<Self, NvdecError> {
        let ctx = Arc::new(Context::new(device_id)?);
        self.pool = Some(FramePool::new(ctx, idle)?);
        Ok(self)
    }

    /// Makes a failure turn NVDEC off for the process, so reconnects decode on the CPU.
    pub fn with_fallback(mut self, fallback: bool) -> Self {
        self.fallback = fallback;
        self
    }

    fn drain(&mut self, out: &mut Vec<Frame>) -> Result<(), DecodeError> {
        let fallback = self.fallback;
        loop {
            let mapped = match self.decoder.next_picture() {
                Ok(Some(m)) => m,
                Ok(None) => return Ok(()),
                Err(e) => return Err(failed(fallback, -1, e)),
            };
            let pts_90k = mapped.pts_90k;
            let (received_at, wall_ms) = self.arrivals.take(pts_90k);
            if !self.selector.keep(pts_90k) {
                continue;
            }
            let frame = match &self.pool {
                Some(pool) => mapped.keep(pool, received_at, wall_ms),
                None => mapped.download(received_at, wall_ms),
            };
            drop(mapped);
            out.push(frame.map_err(|e| failed(fallback, pts_90k, e))?);
        }
    }
}

impl Decoder for NvdecFrames {
    fn decode(&mut self, unit: &AccessUnit) -> Result<Vec<Frame>, DecodeError> {
        self.arrivals.sent(unit);
        if let Err(e) = self.decoder.push(&unit.data, unit.keyframe, unit.pts_90k) {
            return Err(failed(self.fallback, unit.pts_90k, e));
        }
        let mut out = Vec::new();
        self.drain(&mut out)?;
        Ok(out)
    }

    fn flush(&mut self) -> Result<Vec<Frame>, DecodeError> {
        if let Err(e) = self.decoder.finish() {
            return Err(failed(self.fallback, -1, e));
        }
        let mut out = Vec::new();
        self.drain(&mut out)?;
        Ok(out)
    }
}

/// A decode error; under `auto`, NVDEC is turned off for the process first.
fn failed(fallback: bool, pts_90k: i64, e: NvdecError) -> DecodeError {
    if fallback {
        super::turn_nvdec_off(&e.to_string());
    }
    DecodeError::Picture {
        pts_90k,
        message: e.to_string(),
    }
}
