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

use std::sync::Once;
use std::time::Instant;

pub use choice::{nvdec_missing, turn_nvdec_off, DecodePlan};
pub use select::FrameSelector;

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

/// A decoded picture in planar YUV 4:2:0 (I420) on the host.
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
    /// Y (width × height), U and V (width/2 × height/2) planes, tightly packed.
    pub planes: [Vec<u8>; 3],
}

impl Frame {
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
        Frame {
            width: w as u32,
            height: h as u32,
            pts_90k: 0,
            received_at: Instant::now(),
            wall_ms: 0,
            matrix,
            planes: [luma, u, v],
        }
    }

    /// A frame of one colour (BT.601), for tests.
    #[cfg(test)]
    pub(crate) fn flat(width: u32, height: u32, y: u8, u: u8, v: u8) -> Frame {
        let n = (width * height) as usize;
        Frame {
            width,
            height,
            pts_90k: 0,
            received_at: Instant::now(),
            wall_ms: 0,
            matrix: ColorMatrix::Bt601,
            planes: [vec![y; n], vec![u; n / 4], vec![v; n / 4]],
        }
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
