//! CPU decoding through libavcodec (H.264 and H.265), one decoder per camera.
//!
//! Frames the [`FrameSelector`] skips are decoded (the codec needs them) but never
//! copied out. Kept frames are copied into tight I420 planes, with the arrival time of
//! the access unit that carried them so latency is measured from receipt.

use std::time::Instant;

use ffmpeg_next as ffmpeg;

use super::arrivals::Arrivals;
use super::{init_ffmpeg, ColorMatrix, DecodeError, Decoder, Frame, FrameSelector};
use crate::ingest::{AccessUnit, Codec, StreamInfo};

/// libavcodec decoder for one stream.
pub struct FfmpegDecoder {
    decoder: ffmpeg::decoder::Video,
    selector: FrameSelector,
    frame: ffmpeg::frame::Video,
    /// When the units still inside the codec arrived.
    arrivals: Arrivals,
    codec_name: &'static str,
}

// SAFETY: the codec context is only used from the camera's thread at any one time;
// libavcodec contexts carry no thread-affine state.
unsafe impl Send for FfmpegDecoder {}

impl FfmpegDecoder {
    /// A decoder for `info`'s codec and extradata, keeping what `selector` selects.
    /// `threads` is libavcodec's frame/slice thread count (1 suits many cameras).
    pub fn new(
        info: &StreamInfo,
        selector: FrameSelector,
        threads: usize,
    ) -> Result<Self, DecodeError> {
        init_ffmpeg();
        let (id, codec_name) = match info.codec {
            Codec::H264 => (ffmpeg::codec::Id::H264, "H.264"),
            Codec::H265 => (ffmpeg::codec::Id::HEVC, "H.265"),
        };
        let open_err = |message: String| DecodeError::Open {
            codec: codec_name,
            message,
        };
        let codec = ffmpeg::decoder::find(id)
            .ok_or_else(|| open_err("libavcodec has no decoder for it".into()))?;
        let mut context = ffmpeg::codec::context::Context::new_with_codec(codec);
        if !info.extradata.is_empty() {
            let size = info.extradata.len();
            // SAFETY: the context is freshly allocated and owned here. extradata must come
            // from av_malloc with AV_INPUT_BUFFER_PADDING_SIZE zeroed bytes after it;
            // libavcodec frees it with the context.
            unsafe {
                let padded = size + ffmpeg::ffi::AV_INPUT_BUFFER_PADDING_SIZE as usize;
                let buf = ffmpeg::ffi::av_mallocz(padded) as *mut u8;
                if buf.is_null() {
                    return Err(open_err("out of memory for extradata".into()));
                }
                std::ptr::copy_nonoverlapping(info.extradata.as_ptr(), buf, size);
                let ctx = &mut *context.as_mut_ptr();
                ctx.extradata = buf;
                ctx.extradata_size = size as i32;
            }
        }
        context.set_threading(ffmpeg::codec::threading::Config {
            kind: ffmpeg::codec::threading::Type::Frame,
            count: threads.max(1),
            ..Default::default()
        });
        let decoder = context
            .decoder()
            .video()
            .map_err(|e| open_err(e.to_string()))?;
        Ok(Self {
            decoder,
            selector,
            frame: ffmpeg::frame::Video::empty(),
            arrivals: Arrivals::default(),
            codec_name,
        })
    }

    fn drain(&mut self, out: &mut Vec<Frame>) -> Result<(), DecodeError> {
        loop {
            match self.decoder.receive_frame(&mut self.frame) {
                Ok(()) => {}
                Err(ffmpeg::Error::Other { errno }) if errno == ffmpeg::ffi::EAGAIN => {
                    return Ok(())
                }
                Err(ffmpeg::Error::Eof) => return Ok(()),
                Err(e) => {
                    return Err(DecodeError::Picture {
                        pts_90k: -1,
                        message: e.to_string(),
                    })
                }
            }
            let pts_90k = self.frame.timestamp().or(self.frame.pts()).unwrap_or(-1);
            let (received_at, wall_ms) = self.arrivals.take(pts_90k);
            if !self.selector.keep(pts_90k) {
                continue;
            }
            out.push(self.copy_frame(pts_90k, received_at, wall_ms)?);
        }
    }

    fn copy_frame(
        &self,
        pts_90k: i64,
        received_at: Instant,
        wall_ms: i64,
    ) -> Result<Frame, DecodeError> {
        let f = &self.frame;
        let matrix = match f.format() {
            ffmpeg::format::Pixel::YUV420P => match f.color_space() {
                ffmpeg::color::Space::BT709 => ColorMatrix::Bt709,
                _ => ColorMatrix::Bt601,
            },
            ffmpeg::format::Pixel::YUVJ420P => ColorMatrix::Bt601Full,
            other => {
                return Err(DecodeError::Picture {
                    pts_90k,
                    message: format!("pixel format {other:?} is not supported (8-bit 4:2:0 is)"),
                })
            }
        };
        let (w, h) = (f.width() as usize & !1, f.height() as usize & !1);
        let plane = |index: usize, pw: usize, ph: usize| {
            let stride = f.stride(index);
            let data = f.data(index);
            let mut out = Vec::with_capacity(pw * ph);
            for row in 0..ph {
                out.extend_from_slice(&data[row * stride..row * stride + pw]);
            }
            out
        };
        Ok(Frame::from_planes(
            w as u32,
            h as u32,
            pts_90k,
            received_at,
            wall_ms,
            matrix,
            [
                plane(0, w, h),
                plane(1, w / 2, h / 2),
                plane(2, w / 2, h / 2),
            ],
        ))
    }
}

impl Decoder for FfmpegDecoder {
    fn decode(&mut self, unit: &AccessUnit) -> Result<Vec<Frame>, DecodeError> {
        let mut packet = ffmpeg::Packet::copy(&unit.data);
        packet.set_pts(Some(unit.pts_90k));
        packet.set_dts(None);
        self.arrivals.sent(unit);
        if let Err(e) = self.decoder.send_packet(&packet) {
            // A damaged picture is not fatal: the codec recovers at the next keyframe.
            tracing::debug!(codec = self.codec_name, pts_90k = unit.pts_90k, error = %e, "Picture rejected by the decoder.");
        }
        let mut out = Vec::new();
        self.drain(&mut out)?;
        Ok(out)
    }

    fn flush(&mut self) -> Result<Vec<Frame>, DecodeError> {
        let _ = self.decoder.send_eof();
        let mut out = Vec::new();
        self.drain(&mut out)?;
        Ok(out)
    }
}
