//! RTSP cameras through `retina`: DESCRIBE → SETUP of the first H.264/H.265 video
//! stream (TCP interleaved by default) → PLAY → depacketized access units.
//!
//! Credentials come from the URL's user info or the config's fields; they are sent only
//! when the camera asks (digest or basic) and never logged. Access units come out
//! length-prefixed with the stream's `avcC`/`hvcC` as extradata. A change of parameter
//! sets mid-stream ends the connection, so the supervisor reopens with a decoder built
//! for the new ones. retina unwraps RTP timestamps within a session; each session
//! starts a new segment of the camera's timeline, and a jump within one (a camera
//! resetting its clock) is a counted timeline reset.

use std::time::Instant;

use futures::StreamExt as _;
use retina::client::{
    Credentials, Demuxed, PlayOptions, Session, SessionOptions, SetupOptions, TcpTransportOptions,
    Transport, UdpTransportOptions,
};
use retina::codec::{CodecItem, ParametersRef};

use super::live::{self, SharedCursor};
use super::timeline::Stamp;
use super::{now_epoch_ms, AccessUnit, Codec, FrameSource, IngestError, StreamInfo};
use crate::config::{RtspSourceConfig, RtspTransport};
use crate::telemetry::CameraMetrics;
use crate::BoxFuture;

/// An RTSP camera's video stream.
pub struct RtspSource {
    shown: String,
    demuxed: Demuxed,
    stream_index: usize,
    info: StreamInfo,
    /// A frame read while waiting for the parameters, handed on first.
    first: Option<AccessUnit>,
    /// The camera's timeline, across its sessions.
    cursor: SharedCursor,
    metrics: CameraMetrics,
}

/// The URL without credentials (for logs and errors), and the credentials to send.
pub fn split_credentials(
    config: &RtspSourceConfig,
) -> Result<(url::Url, Option<Credentials>), String> {
    let mut url = url::Url::parse(&config.url).map_err(|e| format!("bad URL: {e}"))?;
    let from_url = (!url.username().is_empty()).then(|| Credentials {
        username: percent_decode(url.username()),
        password: percent_decode(url.password().unwrap_or("")),
    });
    let _ = url.set_username("");
    let _ = url.set_password(None);
    let from_config = config.username.as_ref().map(|u| Credentials {
        username: u.clone(),
        password: config.password.clone().unwrap_or_default(),
    });
    Ok((url, from_config.or(from_url)))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(hex, 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl RtspSource {
    /// Connects, sets up the video stream and plays until its parameters are known.
    pub async fn open(
        config: &RtspSourceConfig,
        cursor: SharedCursor,
        metrics: CameraMetrics,
    ) -> Result<Self, IngestError> {
        let (url, creds) = split_credentials(config).map_err(|message| IngestError::Stream {
            stream: config.url.clone(),
            message,
        })?;
        let shown = url.to_string();
        let err = |message: String| IngestError::Stream {
            stream: shown.clone(),
            message,
        };
        let options = SessionOptions::default()
            .creds(creds)
            .user_agent(format!("kvs-infer/{}", env!("CARGO_PKG_VERSION")));
        let mut session = Session::describe(url.clone(), options)
            .await
            .map_err(|e| err(format!("DESCRIBE failed: {e}")))?;
        let (stream_index, codec) = session
            .streams()
            .iter()
            .enumerate()
            .find_map(|(i, s)| {
                let codec = match (s.media(), s.encoding_name()) {
                    ("video", "h264") => Codec::H264,
                    ("video", "h265") => Codec::H265,
                    _ => return None,
                };
                Some((i, codec))
            })
            .ok_or_else(|| IngestError::Unsupported {
                stream: shown.clone(),
                message: "offers no H.264 or H.265 video stream".into(),
            })?;
        let transport = match config.transport {
            RtspTransport::Tcp => Transport::Tcp(TcpTransportOptions::default()),
            RtspTransport::Udp => Transport::Udp(UdpTransportOptions::default()),
        };
        session
            .setup(stream_index, SetupOptions::default().transport(transport))
            .await
            .map_err(|e| err(format!("SETUP failed: {e}")))?;
        let playing = session
            .play(PlayOptions::default())
            .await
            .map_err(|e| err(format!("PLAY failed: {e}")))?;
        let demuxed = playing
            .demuxed()
            .map_err(|e| err(format!("cannot depacketize: {e}")))?;
        let mut source = Self {
            shown: shown.clone(),
            demuxed,
            stream_index,
            info: StreamInfo {
                codec,
                extradata: Vec::new(),
                width: 0,
                height: 0,
                fps: None,
            },
            first: None,
            cursor,
            metrics,
        };
        // A new session's timestamps start afresh: a new segment, not a replay.
        live::lock(&source.cursor).timeline.connected(false);
        // Parameters may come in the SDP or only in-band with the first frame.
        loop {
            if source.take_parameters() {
                break;
            }
            let unit = source.read().await?;
            if source.take_parameters() {
                source.first = Some(unit);
                break;
            }
        }
        tracing::info!(url = %source.shown, codec = ?source.info.codec, width = source.info.width, height = source.info.height, "RTSP stream playing.");
        Ok(source)
    }

    /// Copies the stream's parameters into `info` if they are known.
    fn take_parameters(&mut self) -> bool {
        let Some(ParametersRef::Video(v)) = self
            .demuxed
            .streams()
            .get(self.stream_index)
            .and_then(|s| s.parameters())
        else {
            return false;
        };
        let (width, height) = v.pixel_dimensions();
        self.info.extradata = v.extra_data().to_vec();
        self.info.width = width;
        self.info.height = height;
        self.info.fps = v
            .frame_rate()
            .map(|(n, d)| f64::from(d) / f64::from(n.max(1)));
        true
    }

    fn error(&self, message: String) -> IngestError {
        IngestError::Stream {
            stream: self.shown.clone(),
            message,
        }
    }

    async fn read(&mut self) -> Result<AccessUnit, IngestError> {
        loop {
            let item = match self.demuxed.next().await {
                Some(Ok(item)) => item,
                Some(Err(e)) => return Err(self.error(e.to_string())),
                // A camera has no end: the supervisor reconnects.
                None => return Err(self.error("the server ended the stream".into())),
            };
            let CodecItem::VideoFrame(frame) = item else {
                continue;
            };
            if frame.stream_id() != self.stream_index {
                continue;
            }
            if frame.has_new_parameters() && !self.info.extradata.is_empty() {
                return Err(self.error("the camera changed its parameter sets; reopening".into()));
            }
            let ts = frame.timestamp();
            let rate = i64::from(ts.clock_rate().get());
            let raw_90k = (i128::from(ts.elapsed()) * 90_000 / i128::from(rate)) as i64;
            let placed = live::lock(&self.cursor).place(Stamp::raw(raw_90k), &self.metrics);
            let Some(pts_90k) = placed else {
                continue;
            };
            return Ok(AccessUnit {
                keyframe: frame.is_random_access_point(),
                data: frame.into_data(),
                pts_90k,
                received_at: Instant::now(),
                wall_ms: now_epoch_ms(),
            });
        }
    }

    async fn next(&mut self) -> Result<Option<AccessUnit>, IngestError> {
        if let Some(unit) = self.first.take() {
            return Ok(Some(unit));
        }
        self.read().await.map(Some)
    }
}

impl FrameSource for RtspSource {
    fn info(&self) -> &StreamInfo {
        &self.info
    }

    fn next_access_unit(&mut self) -> BoxFuture<'_, Result<Option<AccessUnit>, IngestError>> {
        Box::pin(self.next())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str, user: Option<&str>) -> RtspSourceConfig {
        RtspSourceConfig {
            url: url.into(),
            username: user.map(Into::into),
            password: user.map(|_| "from-config".into()),
            transport: RtspTransport::Tcp,
            max_retries: None,
            retry_delay_sec: 1.0,
            stall_timeout_sec: 10.0,
        }
    }

    #[test]
    fn credentials_leave_the_url_and_config_fields_win() {
        let (url, creds) =
            split_credentials(&config("rtsp://admin:p%40ss@10.0.0.5:554/stream1", None)).unwrap();
        assert_eq!(url.as_str(), "rtsp://10.0.0.5:554/stream1");
        let creds = creds.unwrap();
        assert_eq!(
            (creds.username.as_str(), creds.password.as_str()),
            ("admin", "p@ss")
        );
        let (_, creds) = split_credentials(&config("rtsp://admin:x@cam/1", Some("ops"))).unwrap();
        assert_eq!(creds.unwrap().password, "from-config");
        let (_, none) = split_credentials(&config("rtsp://cam/1", None)).unwrap();
        assert!(none.is_none());
    }
}
