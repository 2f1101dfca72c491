//! Ingest: one [`FrameSource`] per camera yields encoded access units with their pts.
//!
//! Sources (DESIGN §3): Kinesis Video Streams (HLS and GetMedia), RTSP, files (MP4, MKV,
//! MPEG-TS) and a synthetic generator for load tests. This stage owns reconnecting with
//! exponential backoff and jitter, session refresh, and the camera's `worker_alive`.
//! The concrete sources arrive with the CPU pipeline and live-ingest issues; until
//! then the pipeline refuses enabled cameras at start-up with a clear error.

use std::time::Instant;

use crate::BoxFuture;

/// Video codecs the decoders accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// H.264 / AVC.
    H264,
    /// H.265 / HEVC.
    H265,
}

/// One encoded picture (Annex B NAL units) as it came off the stream.
#[derive(Debug, Clone)]
pub struct AccessUnit {
    /// Annex B byte stream of the picture's NAL units.
    pub data: Vec<u8>,
    /// Presentation time in 90 kHz units since the stream's start.
    pub pts_90k: i64,
    /// Whether decoding can start here.
    pub keyframe: bool,
    /// When the bytes arrived in this process: the start of the latency clock.
    pub received_at: Instant,
}

/// Why a source stopped yielding.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The stream could not be opened or read; the supervisor reconnects.
    #[error("stream {stream}: {message}")]
    Stream {
        /// Which stream (name, URL or path).
        stream: String,
        /// What went wrong.
        message: String,
    },
    /// No access unit arrived within the stall timeout.
    #[error("stream {stream}: no frame for {waited_ms} ms")]
    Stalled {
        /// Which stream.
        stream: String,
        /// How long we waited.
        waited_ms: u64,
    },
}

/// The seam between a camera's stream and its decoder.
pub trait FrameSource: Send {
    /// The codec of the access units this source yields.
    fn codec(&self) -> Codec;

    /// The next access unit; `Ok(None)` at the end of a finite source.
    fn next_access_unit(&mut self) -> BoxFuture<'_, Result<Option<AccessUnit>, IngestError>>;
}
