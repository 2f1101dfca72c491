//! Ingest: one [`FrameSource`] per camera yields encoded access units with their pts.
//!
//! Sources (DESIGN §3): Kinesis Video Streams over HLS or GetMedia in [`kvs`], RTSP
//! cameras in [`rtsp`], files (MP4, MKV, MPEG-TS) in [`file`], and [`synthetic`] frames
//! for load tests (generated already decoded, so they skip the decoder: a load test
//! then measures scheduling and inference, not our test pattern's encoding). Live
//! sources parse their containers with the pure, incremental [`demux`] parsers, fetch
//! over [`http`], and keep a [`live::Cursor`] across reconnects. Every live source
//! places its units on the camera's [`timeline`], which never goes backwards through
//! producer restarts, repeats and gaps. The camera supervisor
//! in [`crate::pipeline`] owns reconnecting with backoff, stall detection and
//! `worker_alive`.

pub mod demux;
pub mod file;
pub mod http;
pub mod kvs;
pub mod live;
pub mod rtsp;
mod stream;
pub mod synthetic;
pub mod timeline;

pub use stream::{Codec, StreamInfo};

use std::time::Instant;

use crate::BoxFuture;

/// One encoded picture as the container framed it (see [`StreamInfo::extradata`]).
#[derive(Debug, Clone)]
pub struct AccessUnit {
    /// The picture's NAL units.
    pub data: Vec<u8>,
    /// Presentation time in 90 kHz units on the camera's timeline: it never goes back
    /// (beyond B-frame reordering), across loops of a file, reconnects and producer
    /// restarts.
    pub pts_90k: i64,
    /// Whether decoding can start here.
    pub keyframe: bool,
    /// When the bytes arrived in this process: the start of the latency clock.
    pub received_at: Instant,
    /// Frame time, epoch milliseconds (the producer's time where the source has one).
    pub wall_ms: i64,
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
    /// The stream holds no video we can decode.
    #[error("stream {stream}: {message}")]
    Unsupported {
        /// Which stream.
        stream: String,
        /// What is missing.
        message: String,
    },
}

/// The seam between a camera's stream and its decoder.
pub trait FrameSource: Send {
    /// The stream's codec and configuration.
    fn info(&self) -> &StreamInfo;

    /// The next access unit; `Ok(None)` at the end of a finite source.
    fn next_access_unit(&mut self) -> BoxFuture<'_, Result<Option<AccessUnit>, IngestError>>;
}

/// Milliseconds since the Unix epoch, now.
pub fn now_epoch_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
