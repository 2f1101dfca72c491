//! File source: MP4, MKV or MPEG-TS through libavformat, optionally looped and paced.
//!
//! `realtime = true` paces access units at the clip's timestamps, like a live camera;
//! otherwise they come as fast as the caller takes them. `loop = true` reopens the file
//! at its end; each loop is a new segment of the camera's [`Timeline`], so pts keep
//! increasing across loops (and through timecode jumps inside a file). Reads block: a
//! camera runs its
//! source on its own thread (see [`crate::pipeline`]).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ffmpeg_next as ffmpeg;

use super::timeline::{Placement, Stamp, Timeline};
use super::{now_epoch_ms, AccessUnit, Codec, FrameSource, IngestError, StreamInfo};
use crate::BoxFuture;

/// Reads a video file's access units.
pub struct FileSource {
    path: PathBuf,
    looped: bool,
    realtime: bool,
    input: ffmpeg::format::context::Input,
    stream_index: usize,
    time_base: ffmpeg::Rational,
    info: StreamInfo,
    /// Where each unit sits: loops and jumps keep it increasing.
    timeline: Timeline,
    /// Wall-clock anchor for pacing: (instant, pts at that instant).
    anchor: Option<(Instant, i64)>,
}

impl FileSource {
    /// Opens `path` and finds its video stream.
    pub fn open(path: &Path, looped: bool, realtime: bool) -> Result<Self, IngestError> {
        let (input, stream_index, time_base, info) = open_input(path)?;
        let frame_90k = info.fps.map_or(3600, |fps| (90_000.0 / fps).round() as i64);
        Ok(Self {
            path: path.to_owned(),
            looped,
            realtime,
            input,
            stream_index,
            time_base,
            info,
            timeline: Timeline::with_step(frame_90k),
            anchor: None,
        })
    }

    fn error(&self, message: impl Into<String>) -> IngestError {
        IngestError::Stream {
            stream: self.path.display().to_string(),
            message: message.into(),
        }
    }

    fn read_blocking(&mut self) -> Result<Option<AccessUnit>, IngestError> {
        let mut restarted = false;
        loop {
            let mut packet = ffmpeg::Packet::empty();
            match packet.read(&mut self.input) {
                Ok(()) => {}
                Err(ffmpeg::Error::Eof) => {
                    if !self.looped || restarted {
                        return Ok(None);
                    }
                    // Reopen rather than seek: it works for every container, TS included.
                    let (input, index, time_base, _) = open_input(&self.path)?;
                    self.input = input;
                    self.stream_index = index;
                    self.time_base = time_base;
                    self.timeline.connected(false);
                    restarted = true;
                    continue;
                }
                Err(e) => return Err(self.error(format!("reading a packet failed: {e}"))),
            }
            if packet.stream() != self.stream_index {
                continue;
            }
            let Some(data) = packet.data() else { continue };
            let Some(ts) = packet.pts().or(packet.dts()) else {
                continue;
            };
            let raw_90k = rescale_90k(ts, self.time_base);
            let Placement::Placed { pts_90k, .. } = self.timeline.place(Stamp::raw(raw_90k)) else {
                continue;
            };
            if self.realtime {
                self.pace(pts_90k);
            }
            return Ok(Some(AccessUnit {
                data: data.to_vec(),
                pts_90k,
                keyframe: packet.is_key(),
                received_at: Instant::now(),
                wall_ms: now_epoch_ms(),
            }));
        }
    }

    /// Sleeps until `pts_90k` is due, relative to the first paced unit.
    fn pace(&mut self, pts_90k: i64) {
        let (start, first_pts) = *self.anchor.get_or_insert((Instant::now(), pts_90k));
        let due = start + Duration::from_micros(((pts_90k - first_pts).max(0) as u64) * 100 / 9);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
    }
}

fn rescale_90k(ts: i64, tb: ffmpeg::Rational) -> i64 {
    let (num, den) = (i128::from(tb.numerator()), i128::from(tb.denominator()));
    if den == 0 {
        return ts;
    }
    (i128::from(ts) * num * 90_000 / den) as i64
}

fn open_input(
    path: &Path,
) -> Result<
    (
        ffmpeg::format::context::Input,
        usize,
        ffmpeg::Rational,
        StreamInfo,
    ),
    IngestError,
> {
    let stream_name = path.display().to_string();
    let err = |message: String| IngestError::Stream {
        stream: stream_name.clone(),
        message,
    };
    crate::decode::init_ffmpeg();
    let input = ffmpeg::format::input(path).map_err(|e| err(format!("cannot open: {e}")))?;
    let stream = input
        .streams()
        .best(ffmpeg::media::Type::Video)
        .ok_or_else(|| IngestError::Unsupported {
            stream: stream_name.clone(),
            message: "has no video stream".into(),
        })?;
    let params = stream.parameters();
    let codec = match params.id() {
        ffmpeg::codec::Id::H264 => Codec::H264,
        ffmpeg::codec::Id::HEVC => Codec::H265,
        other => {
            return Err(IngestError::Unsupported {
                stream: stream_name,
                message: format!("video codec {other:?} is not supported (H.264 and H.265 are)"),
            })
        }
    };
    // SAFETY: `params` wraps the stream's live AVCodecParameters, owned by `input`, which
    // outlives this block; extradata is either null or `extradata_size` readable bytes.
    let (extradata, width, height) = unsafe {
        let p = &*params.as_ptr();
        let extra = if p.extradata.is_null() || p.extradata_size <= 0 {
            Vec::new()
        } else {
            std::slice::from_raw_parts(p.extradata, p.extradata_size as usize).to_vec()
        };
        (extra, p.width.max(0) as u32, p.height.max(0) as u32)
    };
    let rate = stream.avg_frame_rate();
    let fps = (rate.numerator() > 0 && rate.denominator() > 0)
        .then(|| f64::from(rate.numerator()) / f64::from(rate.denominator()));
    let info = StreamInfo {
        codec,
        extradata,
        width,
        height,
        fps,
    };
    let index = stream.index();
    let time_base = stream.time_base();
    Ok((input, index, time_base, info))
}

impl FrameSource for FileSource {
    fn info(&self) -> &StreamInfo {
        &self.info
    }

    fn next_access_unit(&mut self) -> BoxFuture<'_, Result<Option<AccessUnit>, IngestError>> {
        // Blocking on purpose: file reads are quick and cameras have their own threads.
        let result = self.read_blocking();
        Box::pin(std::future::ready(result))
    }
}

// SAFETY: the libavformat context is used by one thread at a time (the camera's); it
// holds no thread-affine state.
unsafe impl Send for FileSource {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_rescale_to_90khz() {
        assert_eq!(rescale_90k(1, ffmpeg::Rational::new(1, 25)), 3600);
        assert_eq!(rescale_90k(512, ffmpeg::Rational::new(1, 12800)), 3600);
        assert_eq!(rescale_90k(7, ffmpeg::Rational::new(1, 90_000)), 7);
    }

    #[test]
    fn a_missing_file_is_a_stream_error_naming_it() {
        let err = FileSource::open(Path::new("/nonexistent/clip.mp4"), false, false)
            .err()
            .unwrap();
        let text = err.to_string();
        assert!(
            text.starts_with("stream /nonexistent/clip.mp4: cannot open"),
            "{text}"
        );
    }
}
