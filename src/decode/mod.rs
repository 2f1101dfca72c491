//! Decode: access units → frames. On the CPU through libavcodec ([`ffmpeg`]); on the GPU
//! through NVDEC ([`nvdec`]); [`DecodePlan`] picks one per host and falls back. The decoder decodes every picture the codec needs and
//! hands on only those the camera's `fps_target` asks for ([`FrameSelector`]), so
//! skipped frames are never copied out of the codec.

pub mod annexb;
mod arrivals;
mod choice;
pub mod ffmpeg;
pub mod nvdec;
mod select;

use std::sync::{Arc, Once, OnceLock};
use std::time::Instant;

pub use choice::{nvdec_missing, turn_nvdec_off, DecodePlan};
pub use select::FrameSelector;

use crate::gpu::devframe::DeviceNv12;

use crate::ingest::AccessUnit;

/// How a frame's YUV samples map to RGB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ColorMatrix {
    /// BT.601, limited range (16..235): SD video, and the default when unsignalled.
    #[default]
    Bt601,
    /// BT.709, limited range: HD video that signals it.
    Bt709,
    /// BT.601, full range (0..255): JPEG-style `yuvj` streams.
    Bt601Full,
}

/// A decoded picture: planar YUV 4:2:0 (I420) on the host, or NV12 in device memory
/// when NVDEC decoded it for a GPU engine (then copied to the host only if a CPU
/// consumer asks, see [`Frame::planes`]).
#[derive(Debug, Clone)]
pub struct Frame {
    /// Width in pixels (even).
    pub width: u32,
    /// Height in pixels (even).
    pub height: u32,
    /// Presentation time in 90 kHz units.
    pub pts_90k: i64,
    /// When its access unit arrived: the start of the latency clock.
    pub received_at: Instant,
    /// Frame time, epoch milliseconds.
    pub wall_ms: i64,
    /// YUV → RGB conversion.
    pub matrix: ColorMatrix,
    /// Y (width × height), U and V (width/2 × height/2) planes, tightly packed, on the
    /// host: set by CPU decoders; for a frame kept on the GPU, filled from device memory
    /// the first time [`Frame::planes`] is asked.
    pub host: OnceLock<[Vec<u8>; 3]>,
    /// The picture in device memory, when the decoder kept it there.
    pub device: Option<Arc<DeviceNv12>>,
}

impl Frame {
    /// A frame on the host from its Y, U and V planes.
    pub fn from_planes(
        width: u32,
        height: u32,
        pts_90k: i64,
        received_at: Instant,
        wall_ms: i64,
        matrix: ColorMatrix,
        planes: [Vec<u8>; 3],
    ) -> Frame {
        Frame {
            width,
            height,
            pts_90k,
            received_at,
            wall_ms,
            matrix,
            host: OnceLock::from(planes),
            device: None,
        }
    }

    /// This frame with its picture on the host alone: itself when it is there already,
    /// else a host copy. Whatever keeps frames for long (a publisher's queue of events
    /// waiting for snapshots) takes this, so it never pins the GPU's memory.
    pub fn on_host(self: &Arc<Self>) -> Arc<Frame> {
        if self.device.is_none() {
            return self.clone();
        }
        Arc::new(Frame::from_planes(
            self.width,
            self.height,
            self.pts_90k,
            self.received_at,
            self.wall_ms,
            self.matrix,
            self.planes().clone(),
        ))
    }

    /// The Y, U and V planes on the host, copied from device memory on first use for a
    /// frame kept on the GPU. Should that copy fail (the GPU is broken), the error is
    /// logged and the picture reads as mid-grey, so a consumer sees nothing in it
    /// rather than crashing.
    pub fn planes(&self) -> &[Vec<u8>; 3] {
        self.host.get_or_init(|| {
            let (w, h) = (self.width as usize, self.height as usize);
            let grey = || [vec![128; w * h], vec![128; w * h / 4], vec![128; w * h / 4]];
            match self.device.as_ref().map(|d| d.download()) {
                Some(Ok(planes)) => planes,
                Some(Err(e)) => {
                    tracing::error!(error = %e, "A frame in device memory could not be copied to the host; it reads as grey.");
                    grey()
                }
                None => grey(),
            }
        })
    }

    /// Presentation time in milliseconds.
    pub fn pts_ms(&self) -> i64 {
        self.pts_90k / 90
    }

    /// A deterministic test picture: luma and chroma gradients with a fine texture (so
    /// bilinear taps and colour conversion both matter), for kernel checks and
    /// benchmarks. Odd sizes are rounded down to even.
    pub fn pattern(width: u32, height: u32, matrix: ColorMatrix, seed: u32) -> Frame {
        let (w, h) = ((width & !1) as usize, (height & !1) as usize);
        let mut x = seed.wrapping_mul(2_654_435_761) | 1;
        let mut noise = move || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x % 23) as usize
        };
        let mut luma = Vec::with_capacity(w * h);
        for r in 0..h {
            for c in 0..w {
                luma.push(((c * 255 / w.max(1) + r * 64 / h.max(1) + noise()) % 256) as u8);
            }
        }
        let (cw, ch) = (w / 2, h / 2);
        let mut u = Vec::with_capacity(cw * ch);
        let mut v = Vec::with_capacity(cw * ch);
        for r in 0..ch {
            for c in 0..cw {
                u.push((16 + c * 224 / cw.max(1) + noise() % 5) as u8);
                v.push((240 - r * 224 / ch.max(1) - noise() % 5) as u8);
            }
        }
        Frame::from_planes(
            w as u32,
            h as u32,
            0,
            Instant::now(),
            0,
            matrix,
            [luma, u, v],
        )
    }

    /// A frame of one colour (BT.601), for tests.
    #[cfg(test)]
    pub(crate) fn flat(width: u32, height: u32, y: u8, u: u8, v: u8) -> Frame {
        let n = (width * height) as usize;
        Frame::from_planes(
            width,
            height,
            0,
            Instant::now(),
            0,
            ColorMatrix::Bt601,
            [vec![y; n], vec![u; n / 4], vec![v; n / 4]],
        )
    }
}

/// Why decoding failed.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The decoder could not be set up for the stream.
    #[error("cannot open a {codec} decoder: {message}")]
    Open {
        /// Codec name.
        codec: &'static str,
        /// What libavcodec said.
        message: String,
    },
    /// A picture failed to decode.
    #[error("decoding pts {pts_90k}: {message}")]
    Picture {
        /// The access unit's pts.
        pts_90k: i64,
        /// What the decoder said.
        message: String,
    },
}

/// The seam between a source's access units and preprocessing.
pub trait Decoder: Send {
    /// Decodes one access unit; returns the selected frames it completes (zero or more).
    fn decode(&mut self, unit: &AccessUnit) -> Result<Vec<Frame>, DecodeError>;

    /// Drains the frames still held by the decoder at the end of a stream.
    fn flush(&mut self) -> Result<Vec<Frame>, DecodeError>;
}

/// Initialises libav* once per process and quiets its stderr chatter (our logs say what
/// matters).
pub fn init_ffmpeg() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        if let Err(e) = ::ffmpeg_next::init() {
            tracing::error!(error = %e, "FFmpeg failed to initialise.");
        }
        ::ffmpeg_next::util::log::set_level(::ffmpeg_next::util::log::Level::Fatal);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_frame_is_its_own_host_copy_and_its_planes_are_as_made() {
        let frame = Arc::new(Frame::flat(4, 2, 1, 2, 3));
        assert!(Arc::ptr_eq(&frame, &frame.on_host()));
        assert_eq!(frame.planes(), &[vec![1; 8], vec![2; 2], vec![3; 2]]);
    }

    #[test]
    fn a_frame_whose_picture_cannot_be_had_reads_as_grey_of_its_size() {
        let frame = Frame {
            host: OnceLock::new(),
            device: None,
            ..Frame::flat(4, 2, 1, 2, 3)
        };
        assert_eq!(frame.planes(), &[vec![128; 8], vec![128; 2], vec![128; 2]]);
    }
}
