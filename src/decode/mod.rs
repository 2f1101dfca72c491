//! Decode: access units → frames, on the CPU (libavcodec) or the GPU (NVDEC into device
//! memory). The decoder decodes every picture the codec needs and hands on only those
//! the camera's `fps_target` asks for, evenly spaced.
//!
//! Implementations arrive with the CPU pipeline (libavcodec) and GPU (NVDEC) issues.

use crate::ingest::AccessUnit;

/// A decoded picture in planar YUV 4:2:0 on the host.
#[derive(Debug, Clone)]
pub struct HostFrame {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Presentation time in 90 kHz units.
    pub pts_90k: i64,
    /// Y, U and V planes, each tightly packed (stride = plane width).
    pub planes: [Vec<u8>; 3],
}

/// Why decoding failed.
#[derive(Debug, thiserror::Error)]
#[error("decoding pts {pts_90k}: {message}")]
pub struct DecodeError {
    /// The access unit's pts.
    pub pts_90k: i64,
    /// What the decoder said.
    pub message: String,
}

/// The seam between a source's access units and preprocessing.
pub trait Decoder: Send {
    /// Decodes one access unit; returns the frames it completes (zero or more).
    fn decode(&mut self, unit: &AccessUnit) -> Result<Vec<HostFrame>, DecodeError>;

    /// Drains the frames still held by the decoder at the end of a stream.
    fn flush(&mut self) -> Result<Vec<HostFrame>, DecodeError>;
}
