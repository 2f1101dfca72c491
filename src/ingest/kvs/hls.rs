//! KVS over HLS: `GetHLSStreamingSessionURL` → master playlist → media playlist →
//! segments (fragmented MP4 or MPEG-TS) → demuxer → access units.
//!
//! Live playback starts at the newest segment and follows the sliding window by media
//! sequence number: each segment once, in order; segments that slid out before we got
//! to them are counted as a gap. Each segment's `EXT-X-PROGRAM-DATE-TIME` (the
//! producer's clock) dates its frames. The session URL is renewed at 80% of its
//! lifetime; the new session's overlap is skipped through the camera's timeline (by
//! fragment number where the segment URLs carry one, else by program date time).
//! A segment that cannot be fetched or parsed is skipped and counted; a playlist that
//! cannot be fetched (expired session, 404) ends the connection and the supervisor
//! reconnects with a new session.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use aws_sdk_kinesisvideo::types::ApiName;
use aws_sdk_kinesisvideoarchivedmedia::error::DisplayErrorContext;
use aws_sdk_kinesisvideoarchivedmedia::primitives::DateTime;
use aws_sdk_kinesisvideoarchivedmedia::types::{
    ContainerFormat, HlsDiscontinuityMode, HlsDisplayFragmentTimestamp, HlsFragmentSelector,
    HlsFragmentSelectorType, HlsPlaybackMode, HlsTimestampRange,
};
use m3u8_rs::Playlist;

use super::Kvs;
use crate::config::{HlsContainer, StartFragmentMode};
use crate::ingest::demux::{mp4::Mp4Demuxer, ts::TsDemuxer, Demuxer};
use crate::ingest::http::{resolve, HttpClient, HttpError};
use crate::ingest::live::{self, SharedCursor};
use crate::ingest::timeline::Stamp;
use crate::ingest::{AccessUnit, FrameSource, IngestError, StreamInfo};
use crate::telemetry::CameraMetrics;
use crate::BoxFuture;

/// Deadline for one playlist or segment request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Shortest pause between polls of an unchanged live playlist.
const MIN_POLL: Duration = Duration::from_millis(250);

/// One segment waiting to be fetched.
#[derive(Debug, Clone, PartialEq)]
struct Segment {
    sequence: u64,
    url: String,
    /// The fMP4 init segment it needs.
    init_url: Option<String>,
    /// `EXT-X-PROGRAM-DATE-TIME`, epoch ms.
    date_ms: Option<i64>,
}

/// What one poll of a media playlist adds.
#[derive(Debug, PartialEq)]
struct Poll {
    segments: Vec<Segment>,
    /// Segments that slid out of the window before we fetched them.
    missed: u64,
    ended: bool,
    target_duration: Duration,
}

/// Picks the segments after `next` (or, on the first poll, where playback starts).
fn plan(
    playlist: &m3u8_rs::MediaPlaylist,
    base: &str,
    next: Option<u64>,
    live_edge: bool,
) -> Result<Poll, String> {
    let first = playlist.media_sequence;
    let count = playlist.segments.len() as u64;
    let start = match next {
        Some(n) => n.max(first),
        // Live: the newest segment, for the least latency.
        None if live_edge => first + count.saturating_sub(1),
        None => first,
    };
    let missed = next.map_or(0, |n| first.saturating_sub(n));
    let mut init_url = None;
    let mut segments = Vec::new();
    for (i, s) in playlist.segments.iter().enumerate() {
        if let Some(map) = &s.map {
            init_url = Some(resolve(base, &map.uri)?);
        }
        let sequence = first + i as u64;
        if sequence < start {
            continue;
        }
        segments.push(Segment {
            sequence,
            url: resolve(base, &s.uri)?,
            init_url: init_url.clone(),
            date_ms: s.program_date_time.map(|d| d.timestamp_millis()),
        });
    }
    Ok(Poll {
        segments,
        missed,
        ended: playlist.end_list,
        target_duration: Duration::from_secs(playlist.target_duration.max(1)),
    })
}

/// A KVS stream read over HLS.
pub struct HlsSource {
    kvs: Kvs,
    http: HttpClient,
    cursor: SharedCursor,
    metrics: CameraMetrics,
    demux: Box<dyn Demuxer>,
    info: StreamInfo,
    media_url: String,
    renew_at: Instant,
    next_sequence: Option<u64>,
    queue: VecDeque<Segment>,
    loaded_init: Option<String>,
    ended: bool,
    poll_every: Duration,
    last_poll: Option<Instant>,
    /// (first pts, its producer time) of the segment being read.
    dating: Option<(i64, i64)>,
    segment_date_ms: Option<i64>,
    /// The KVS fragment number of the segment being read (its URL's `FragmentNumber`).
    segment_fragment: Option<u128>,
    pacer: live::Pacer,
}

impl HlsSource {
    /// Opens a session and reads until the video track is known.
    pub async fn open(
        kvs: Kvs,
        cursor: SharedCursor,
        metrics: CameraMetrics,
    ) -> Result<Self, IngestError> {
        let http = HttpClient::new(REQUEST_TIMEOUT).map_err(|e| kvs.error(e.to_string()))?;
        let (media_url, renew_at) = session(&kvs, &http).await?;
        let demux: Box<dyn Demuxer> = match kvs.config().container {
            HlsContainer::Fmp4 => Box::new(Mp4Demuxer::new()),
            HlsContainer::Mpegts => Box::new(TsDemuxer::new()),
        };
        live::lock(&cursor).reconnecting();
        let mut source = Self {
            kvs,
            http,
            cursor,
            metrics,
            demux,
            info: StreamInfo::unknown(),
            media_url,
            renew_at,
            next_sequence: None,
            queue: VecDeque::new(),
            loaded_init: None,
            ended: false,
            poll_every: MIN_POLL,
            last_poll: None,
            dating: None,
            segment_date_ms: None,
            segment_fragment: None,
            pacer: live::Pacer::default(),
        };
        while source.demux.info().is_none() {
            if !source.step().await? {
                return Err(source.kvs.error("the stream ended before any video"));
            }
        }
        source.info = source.demux.info().cloned().unwrap_or(source.info);
        tracing::info!(stream = source.kvs.stream(), container = ?source.kvs.config().container, codec = ?source.info.codec, "KVS HLS session open.");
        Ok(source)
    }

    /// Fetches the next segment (polling the playlist when none is queued);
    /// false at the end of an on-demand playlist.
    async fn step(&mut self) -> Result<bool, IngestError> {
        if let Some(segment) = self.queue.pop_front() {
            self.read_segment(segment).await?;
            return Ok(true);
        }
        if self.ended {
            return Ok(false);
        }
        if Instant::now() >= self.renew_at {
            let (url, renew_at) = session(&self.kvs, &self.http).await?;
            tracing::info!(stream = self.kvs.stream(), "HLS session renewed.");
            self.media_url = url;
            self.renew_at = renew_at;
            // The new session numbers its segments afresh; its window overlaps ours.
            self.next_sequence = None;
            live::lock(&self.cursor).reconnecting();
        }
        if let Some(at) = self.last_poll {
            let due = at + self.poll_every;
            tokio::time::sleep_until(due.into()).await;
        }
        self.last_poll = Some(Instant::now());
        let body = self
            .http
            .get(&self.media_url)
            .await
            .map_err(|e| self.kvs.error(format!("media playlist: {e}")))?;
        let playlist = match m3u8_rs::parse_playlist_res(&body) {
            Ok(Playlist::MediaPlaylist(p)) => p,
            Ok(Playlist::MasterPlaylist(_)) => {
                return Err(self
                    .kvs
                    .error("expected a media playlist, got a master playlist"))
            }
            Err(_) => return Err(self.kvs.error("the media playlist does not parse as HLS")),
        };
        let live_edge = self.next_sequence.is_none()
            && self.kvs.config().start_timestamp_ms.is_none()
            && self.kvs.config().start_fragment_mode == StartFragmentMode::Now
            && !playlist.end_list;
        let poll = plan(&playlist, &self.media_url, self.next_sequence, live_edge)
            .map_err(|e| self.kvs.error(e))?;
        if poll.missed > 0 {
            tracing::warn!(
                stream = self.kvs.stream(),
                missed = poll.missed,
                "Segments slid out of the live window before they were read."
            );
            for _ in 0..poll.missed.min(100) {
                self.metrics.ingest_error("segment");
            }
        }
        let fresh = !poll.segments.is_empty();
        if let Some(last) = poll.segments.last() {
            self.next_sequence = Some(last.sequence + 1);
        }
        self.queue.extend(poll.segments);
        self.ended = poll.ended;
        // Nothing new: poll again after a quarter of a target duration (every 0.5 s
        // for KVS's 2 s fragments, well inside its 5 playlist calls/s per session). A
        // segment is then seen 0.25 s after it is listed, on average.
        self.poll_every = if fresh {
            MIN_POLL
        } else {
            (poll.target_duration / 4).max(MIN_POLL)
        };
        Ok(true)
    }

    async fn read_segment(&mut self, segment: Segment) -> Result<(), IngestError> {
        if let Some(init) = &segment.init_url {
            if self.loaded_init.as_ref() != Some(init) {
                let bytes = self.fetch(init, "init segment").await?;
                let Some(bytes) = bytes else { return Ok(()) };
                if let Err(e) = self.demux.push(&bytes) {
                    tracing::warn!(stream = self.kvs.stream(), error = %e, "Init segment unreadable.");
                    self.metrics.ingest_error("corrupt");
                    return Ok(());
                }
                self.loaded_init = Some(init.clone());
            }
        }
        let Some(bytes) = self.fetch(&segment.url, "segment").await? else {
            return Ok(());
        };
        self.segment_date_ms = segment.date_ms;
        self.segment_fragment = fragment_number(&segment.url);
        self.dating = None;
        let pushed = self.demux.push(&bytes);
        let ended = self.demux.end_of_segment();
        if let Err(e) = pushed.and(ended) {
            tracing::warn!(stream = self.kvs.stream(), sequence = segment.sequence, error = %e, "Damaged segment; kept what could be read.");
            self.metrics.ingest_error("corrupt");
        }
        Ok(())
    }

    /// GETs a segment: `None` (counted) when it is gone or unreadable, an error when
    /// the session itself is refused.
    async fn fetch(&self, url: &str, what: &str) -> Result<Option<Vec<u8>>, IngestError> {
        match self.http.get(url).await {
            Ok(b) => Ok(Some(b.to_vec())),
            Err(HttpError::Status {
                status: 401 | 403, ..
            }) => Err(self.kvs.error(format!(
                "{what} refused: the session has expired or is not authorised"
            ))),
            Err(e) => {
                tracing::warn!(stream = self.kvs.stream(), error = %e, "Skipping an {what} that could not be fetched.");
                self.metrics.ingest_error("segment");
                Ok(None)
            }
        }
    }

    async fn next(&mut self) -> Result<Option<AccessUnit>, IngestError> {
        loop {
            while let Some(mut sample) = self.demux.next_sample() {
                // The segment's program date time dates its first frame; the others
                // are dated by their offset from it.
                let producer_90k = self.segment_date_ms.map(|date| {
                    let (pts0, date0) = *self.dating.get_or_insert((sample.pts_90k, date));
                    date0
                        .saturating_mul(90)
                        .saturating_add(sample.pts_90k.saturating_sub(pts0))
                });
                sample.wall_ms = producer_90k.map(|p| p / 90);
                let stamp = Stamp {
                    raw_90k: sample.pts_90k,
                    producer_90k,
                    piece: self.segment_fragment,
                };
                let Some(pts_90k) = live::lock(&self.cursor).place(stamp, &self.metrics) else {
                    continue;
                };
                // A segment's frames come at once: hand them on at their own pace. The
                // latency clock starts at arrival, so the hold counts as latency.
                let arrived = Instant::now();
                // Recorded video on demand goes as fast as the engines take it.
                if self.kvs.config().end_timestamp_ms.is_none() {
                    self.pacer.wait(pts_90k).await;
                }
                return Ok(Some(live::unit(sample, pts_90k, arrived)));
            }
            if !self.step().await? {
                return Ok(None);
            }
        }
    }
}

/// The `FragmentNumber` query parameter KVS puts in each segment's URL.
fn fragment_number(url: &str) -> Option<u128> {
    let query = url.split_once('?')?.1;
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix("FragmentNumber="))
        .and_then(|n| n.parse().ok())
}

/// A new session: its media playlist URL and when to renew it.
async fn session(kvs: &Kvs, http: &HttpClient) -> Result<(String, Instant), IngestError> {
    let endpoint = kvs
        .data_endpoint(ApiName::GetHlsStreamingSessionUrl)
        .await?;
    let mut builder = aws_sdk_kinesisvideoarchivedmedia::config::Builder::from(kvs.sdk());
    builder = builder.endpoint_url(endpoint);
    let client = aws_sdk_kinesisvideoarchivedmedia::Client::from_conf(builder.build());
    let config = kvs.config();
    let (mode, range) = match (
        config.start_timestamp_ms,
        config.end_timestamp_ms,
        config.start_fragment_mode,
    ) {
        (Some(start), Some(end), _) => (HlsPlaybackMode::OnDemand, Some((start, Some(end)))),
        (Some(start), None, _) => (HlsPlaybackMode::LiveReplay, Some((start, None))),
        // The oldest retained fragment: replay from the epoch onwards.
        (None, _, StartFragmentMode::Earliest) => (HlsPlaybackMode::LiveReplay, Some((0, None))),
        (None, _, StartFragmentMode::Now) => (HlsPlaybackMode::Live, None),
    };
    let mut request = client
        .get_hls_streaming_session_url()
        .stream_name(kvs.stream())
        .playback_mode(mode.clone())
        .container_format(match config.container {
            HlsContainer::Fmp4 => ContainerFormat::FragmentedMp4,
            HlsContainer::Mpegts => ContainerFormat::MpegTs,
        })
        .discontinuity_mode(HlsDiscontinuityMode::OnDiscontinuity)
        .display_fragment_timestamp(HlsDisplayFragmentTimestamp::Always)
        .expires(config.session_expires_sec as i32);
    if let Some((start, end)) = range {
        let mut r = HlsTimestampRange::builder().start_timestamp(DateTime::from_millis(start));
        if let Some(end) = end {
            r = r.end_timestamp(DateTime::from_millis(end));
        }
        request = request.hls_fragment_selector(
            HlsFragmentSelector::builder()
                .fragment_selector_type(HlsFragmentSelectorType::ProducerTimestamp)
                .timestamp_range(r.build())
                .build(),
        );
    }
    let issued = Instant::now();
    let out = request.send().await.map_err(|e| {
        kvs.error(format!(
            "GetHLSStreamingSessionURL({mode}) failed: {}",
            DisplayErrorContext(&e)
        ))
    })?;
    let master_url = out
        .hls_streaming_session_url
        .ok_or_else(|| kvs.error("GetHLSStreamingSessionURL returned no URL"))?;
    let renew_at = issued + Duration::from_secs(u64::from(config.session_expires_sec)).mul_f64(0.8);
    let body = http
        .get(&master_url)
        .await
        .map_err(|e| kvs.error(format!("master playlist: {e}")))?;
    let media_url = match m3u8_rs::parse_playlist_res(&body) {
        Ok(Playlist::MasterPlaylist(m)) => {
            let variant = m
                .variants
                .iter()
                .find(|v| !v.is_i_frame)
                .ok_or_else(|| kvs.error("the master playlist lists no variant"))?;
            resolve(&master_url, &variant.uri).map_err(|e| kvs.error(e))?
        }
        // A media playlist straight away is fine too.
        Ok(Playlist::MediaPlaylist(_)) => master_url,
        Err(_) => return Err(kvs.error("the master playlist does not parse as HLS")),
    };
    Ok((media_url, renew_at))
}

impl FrameSource for HlsSource {
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

    fn playlist(first: u64, n: u64, end: bool) -> m3u8_rs::MediaPlaylist {
        let mut text = format!(
            "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:{first}\n#EXT-X-MAP:URI=\"init.mp4?t=1\"\n"
        );
        for i in first..first + n {
            text.push_str(&format!(
                "#EXT-X-PROGRAM-DATE-TIME:2026-11-24T06:00:{:02}.000Z\n#EXTINF:2.0,\nseg{i}.mp4?t=1\n",
                i * 2 % 60
            ));
        }
        if end {
            text.push_str("#EXT-X-ENDLIST\n");
        }
        match m3u8_rs::parse_playlist_res(text.as_bytes()).unwrap() {
            Playlist::MediaPlaylist(p) => p,
            Playlist::MasterPlaylist(_) => unreachable!(),
        }
    }

    const BASE: &str = "http://kvs/hls/v1/getHLSMediaPlaylist.m3u8?t=1";

    #[test]
    fn a_segment_url_gives_its_kvs_fragment_number() {
        let url = "https://b-1.kinesisvideo.us-east-1.amazonaws.com/hls/v1/getTSFragment.ts?SessionToken=CiV&FragmentNumber=91343852333181432392682062607743920146";
        assert_eq!(
            fragment_number(url),
            Some(91_343_852_333_181_432_392_682_062_607_743_920_146)
        );
        assert_eq!(fragment_number("http://h/seg1.ts"), None);
        assert_eq!(fragment_number("http://h/seg1.ts?FragmentNumber=x"), None);
    }

    #[test]
    fn live_playback_starts_at_the_newest_segment_and_then_follows_in_order() {
        let first = plan(&playlist(10, 3, false), BASE, None, true).unwrap();
        let seqs: Vec<_> = first.segments.iter().map(|s| s.sequence).collect();
        assert_eq!(seqs, [12]);
        assert_eq!(first.segments[0].url, "http://kvs/hls/v1/seg12.mp4?t=1");
        assert_eq!(
            first.segments[0].init_url.as_deref(),
            Some("http://kvs/hls/v1/init.mp4?t=1")
        );
        assert_eq!(first.segments[0].date_ms, Some(1_795_500_024_000));
        assert_eq!(first.target_duration, Duration::from_secs(2));
        // The window slides by one: only the new segment comes, nothing is missed.
        let next = plan(&playlist(11, 3, false), BASE, Some(13), true).unwrap();
        let seqs: Vec<_> = next.segments.iter().map(|s| s.sequence).collect();
        assert_eq!((seqs, next.missed), (vec![13], 0));
        // Nothing new: nothing queued.
        assert!(plan(&playlist(11, 3, false), BASE, Some(14), true)
            .unwrap()
            .segments
            .is_empty());
    }

    #[test]
    fn falling_behind_the_window_is_counted_as_missed_segments() {
        let poll = plan(&playlist(20, 3, false), BASE, Some(15), true).unwrap();
        let seqs: Vec<_> = poll.segments.iter().map(|s| s.sequence).collect();
        assert_eq!((seqs, poll.missed), (vec![20, 21, 22], 5));
    }

    #[test]
    fn on_demand_playback_reads_everything_and_ends() {
        let poll = plan(&playlist(0, 4, true), BASE, None, false).unwrap();
        assert_eq!(poll.segments.len(), 4);
        assert!(poll.ended);
    }
}
