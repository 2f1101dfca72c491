//! What a decoder needs to know about a stream: its codec and configuration.
//!
//! Kept apart, with no dependencies, so the fuzz targets (`fuzz/`) can build the
//! demuxers without the rest of the server.

/// Video codecs the decoders accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// H.264 / AVC.
    H264,
    /// H.265 / HEVC.
    H265,
}

/// What a decoder needs to know about a stream before its first access unit.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamInfo {
    /// The codec.
    pub codec: Codec,
    /// Codec configuration: an `avcC`/`hvcC` record when access units are
    /// length-prefixed (MP4, MKV), or Annex B parameter sets (or nothing) when they use
    /// start codes (MPEG-TS, RTP).
    pub extradata: Vec<u8>,
    /// Coded width in pixels, when the container says.
    pub width: u32,
    /// Coded height in pixels, when the container says.
    pub height: u32,
    /// Nominal frame rate, when the container says.
    pub fps: Option<f64>,
}

impl StreamInfo {
    /// What a live source holds until its stream's header has been read: H.264 and
    /// nothing else known. The source replaces it with the demuxer's before it hands
    /// out an access unit.
    pub fn unknown() -> Self {
        Self {
            codec: Codec::H264,
            extradata: Vec::new(),
            width: 0,
            height: 0,
            fps: None,
        }
    }
}
