//! Which decoder a camera gets: settled once at start-up from `[decode] backend` and
//! what the host has ([`DecodePlan::settle`]), then opened per stream
//! ([`DecodePlan::open`]). Under `auto`, a camera whose NVDEC decoder cannot open or
//! fails mid-stream turns NVDEC off for the process (logged once, with the reason),
//! and that camera and every later one decode on the CPU; nothing is lost but the
//! pictures of the broken connection, which reconnects.

use std::sync::OnceLock;

use super::ffmpeg::FfmpegDecoder;
use super::nvdec::NvdecFrames;
use super::{DecodeError, Decoder, FrameSelector};
use crate::config::{DecodeBackend, DecodeConfig};
use crate::ingest::StreamInfo;

/// Why NVDEC was turned off for this process, once it was.
static NVDEC_OFF: OnceLock<String> = OnceLock::new();

/// Turns NVDEC off for the rest of the process, logging why the first time.
pub fn turn_nvdec_off(reason: &str) {
    if NVDEC_OFF.set(reason.to_owned()).is_ok() {
        tracing::warn!(
            error = reason,
            "NVDEC failed; decoding on the CPU from now on."
        );
    }
}

/// How cameras decode.
#[derive(Debug, Clone, PartialEq)]
pub enum DecodePlan {
    /// libavcodec.
    Cpu,
    /// NVDEC on a GPU.
    Nvdec {
        /// GPU ordinal.
        device_id: i32,
        /// Surfaces per camera beyond the codec's minimum.
        extra_surfaces: u32,
        /// Fall back to the CPU when NVDEC fails (`auto`), instead of failing.
        fallback: bool,
        /// Keep kept pictures in device memory (the models run on the GPU).
        device_frames: bool,
    },
}

impl DecodePlan {
    /// Settles `config` on GPU `device_id`: `nvdec` where NVDEC is absent is the
    /// reason as an error; otherwise it logs what it chose.
    pub fn settle(config: &DecodeConfig, device_id: u32) -> Result<Self, String> {
        if config.backend == DecodeBackend::Cpu {
            return Ok(DecodePlan::Cpu);
        }
        let missing = nvdec_missing(device_id);
        match (config.backend, missing) {
            (backend, None) => {
                tracing::info!(decoder = "nvdec", "Decoding on the GPU (NVDEC).");
                Ok(DecodePlan::Nvdec {
                    device_id: device_id as i32,
                    extra_surfaces: config.extra_surfaces,
                    // Only `auto` falls back to the CPU; `nvdec` fails instead.
                    fallback: backend != DecodeBackend::Nvdec,
                    device_frames: false,
                })
            }
            (DecodeBackend::Nvdec, Some(why)) => Err(why),
            (_, Some(why)) => {
                tracing::info!(decoder = "cpu", reason = %why, "Decoding on the CPU.");
                Ok(DecodePlan::Cpu)
            }
        }
    }

    /// The same plan, with NVDEC's kept pictures left in device memory when `on`
    /// (every model runs on the GPU, whose preprocessing reads them there).
    pub fn with_device_frames(mut self, on: bool) -> Self {
        if let DecodePlan::Nvdec { device_frames, .. } = &mut self {
            *device_frames = on;
        }
        self
    }

    /// A decoder for one stream, keeping what `selector` selects.
    pub fn open(
        &self,
        info: &StreamInfo,
        selector: FrameSelector,
    ) -> Result<Box<dyn Decoder>, DecodeError> {
        let cpu = |selector| {
            FfmpegDecoder::new(info, selector, 1).map(|d| Box::new(d) as Box<dyn Decoder>)
        };
        match *self {
            DecodePlan::Nvdec { fallback: true, .. } if NVDEC_OFF.get().is_some() => cpu(selector),
            DecodePlan::Cpu => cpu(selector),
            DecodePlan::Nvdec {
                device_id,
                extra_surfaces,
                fallback,
                device_frames,
            } => {
                match NvdecFrames::new(info, selector.clone(), device_id, extra_surfaces).and_then(
                    |d| match device_frames {
                        true => d.on_device(device_id, extra_surfaces as usize + 2),
                        false => Ok(d),
                    },
                ) {
                    Ok(d) => Ok(Box::new(d.with_fallback(fallback))),
                    Err(e) if fallback => {
                        turn_nvdec_off(&e.to_string());
                        cpu(selector)
                    }
                    Err(e) => Err(DecodeError::Open {
                        codec: "NVDEC",
                        message: e.to_string(),
                    }),
                }
            }
        }
    }
}

/// Why NVDEC cannot decode on GPU `device_id` here, or `None` when it can.
pub fn nvdec_missing(device_id: u32) -> Option<String> {
    match crate::gpu::probe() {
        crate::gpu::GpuStatus::Unavailable(why) => return Some(why),
        crate::gpu::GpuStatus::Available { devices, .. } => {
            if !devices.iter().any(|d| d.ordinal == device_id as i32) {
                return Some(format!("GPU {device_id} is not on this host"));
            }
        }
    }
    crate::gpu::nvdec::api().err().map(|e| e.to_string())
}
