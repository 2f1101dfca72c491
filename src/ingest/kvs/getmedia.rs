//! KVS over GetMedia: one long HTTP response of MKV fragments, parsed as it streams.
//!
//! Lower latency than HLS (no segment polling). The demuxer reports each fragment's KVS
//! tags; the camera's cursor keeps the last continuation token (or fragment number), so
//! a reconnect resumes where the stream stopped. Frames are placed on the camera's
//! timeline by the producer timestamp plus their offset in the fragment; what a resume
//! replays is skipped by fragment number and timecode.
//! A response that ends is an error: live GetMedia never ends on its own.

use std::time::Instant;

use aws_sdk_kinesisvideo::types::ApiName;
use aws_sdk_kinesisvideomedia::error::DisplayErrorContext;
use aws_sdk_kinesisvideomedia::primitives::{ByteStream, DateTime};
use aws_sdk_kinesisvideomedia::types::{StartSelector, StartSelectorType};

use super::Kvs;
use crate::config::StartFragmentMode;
use crate::ingest::demux::mkv::MkvDemuxer;
use crate::ingest::demux::Demuxer;
use crate::ingest::live::{self, Cursor, SharedCursor};
use crate::ingest::timeline::Stamp;
use crate::ingest::{AccessUnit, FrameSource, IngestError, StreamInfo};
use crate::telemetry::CameraMetrics;
use crate::BoxFuture;

/// Resumes at the saved point that may fail before it is given up.
const MAX_FRUITLESS_RESUMES: u32 = 2;

/// A KVS stream read with GetMedia.
pub struct GetMediaSource {
    kvs: Kvs,
    cursor: SharedCursor,
    metrics: CameraMetrics,
    payload: ByteStream,
    demux: MkvDemuxer,
    info: StreamInfo,
    /// The fragment whose error code was last logged.
    reported_error: Option<String>,
    pacer: live::Pacer,
}

/// Where GetMedia starts: after the last fragment read when there is one, otherwise as
/// configured.
fn start_selector(cursor: &Cursor, config: &crate::config::KvsSourceConfig) -> StartSelector {
    let builder = StartSelector::builder();
    let builder = if let Some(token) = &cursor.continuation_token {
        builder
            .start_selector_type(StartSelectorType::ContinuationToken)
            .continuation_token(token)
    } else if let Some(number) = &cursor.fragment_number {
        builder
            .start_selector_type(StartSelectorType::FragmentNumber)
            .after_fragment_number(number)
    } else if let Some(start) = config.start_timestamp_ms {
        builder
            .start_selector_type(StartSelectorType::ProducerTimestamp)
            .start_timestamp(DateTime::from_millis(start))
    } else {
        builder.start_selector_type(match config.start_fragment_mode {
            StartFragmentMode::Now => StartSelectorType::Now,
            StartFragmentMode::Earliest => StartSelectorType::Earliest,
        })
    };
    // Only the type is required, and it is always set above.
    builder.build().unwrap_or_else(|_| {
        StartSelector::builder()
            .start_selector_type(StartSelectorType::Now)
            .build()
            .expect("a selector with its type set builds")
    })
}

impl GetMediaSource {
    /// Calls GetMedia and reads until the video track is known.
    pub async fn open(
        kvs: Kvs,
        cursor: SharedCursor,
        metrics: CameraMetrics,
    ) -> Result<Self, IngestError> {
        let endpoint = kvs.data_endpoint(ApiName::GetMedia).await?;
        let mut builder = aws_sdk_kinesisvideomedia::config::Builder::from(kvs.sdk());
        builder = builder.endpoint_url(endpoint);
        let client = aws_sdk_kinesisvideomedia::Client::from_conf(builder.build());
        let selector = {
            let mut c = live::lock(&cursor);
            c.reconnecting();
            let saved = c.continuation_token.is_some() || c.fragment_number.is_some();
            if saved && c.fruitless_resumes >= MAX_FRUITLESS_RESUMES {
                // The stream breaks at the same place each time (a damaged fragment
                // KVS keeps serving): give up that point rather than loop on it.
                tracing::warn!(stream = kvs.stream(), fragment = ?c.fragment_number, "The resume point failed repeatedly; continuing from the configured start instead.");
                c.continuation_token = None;
                c.fragment_number = None;
                c.fruitless_resumes = 0;
            }
            start_selector(&c, kvs.config())
        };
        let resumed = selector.start_selector_type().clone();
        let out = client
            .get_media()
            .stream_name(kvs.stream())
            .start_selector(selector)
            .send()
            .await
            .map_err(|e| kvs.error(format!("GetMedia failed: {}", DisplayErrorContext(&e))))?;
        if resumed != StartSelectorType::Now && resumed != StartSelectorType::Earliest {
            live::lock(&cursor).fruitless_resumes += 1;
        }
        let mut source = Self {
            kvs,
            cursor,
            metrics,
            payload: out.payload,
            demux: MkvDemuxer::new(),
            info: StreamInfo::unknown(),
            reported_error: None,
            pacer: live::Pacer::default(),
        };
        while source.demux.info().is_none() {
            source.read_chunk().await?;
        }
        source.info = source.demux.info().cloned().unwrap_or(source.info);
        tracing::info!(stream = source.kvs.stream(), start = %resumed, codec = ?source.info.codec, "KVS GetMedia stream open.");
        Ok(source)
    }

    /// Feeds the demuxer the next chunk of the response.
    async fn read_chunk(&mut self) -> Result<(), IngestError> {
        let chunk = match self.payload.next().await {
            Some(Ok(chunk)) => chunk,
            Some(Err(e)) => return Err(self.kvs.error(format!("GetMedia stream broke: {e}"))),
            None => return Err(self.kvs.error("GetMedia stream ended")),
        };
        if let Err(e) = self.demux.push(&chunk) {
            tracing::warn!(stream = self.kvs.stream(), error = %e, "Damaged fragment skipped.");
            self.metrics.ingest_error("corrupt");
        }
        let tags = self.demux.tags();
        if let Some(code) = &tags.error {
            if self.reported_error.as_ref() != Some(code) {
                tracing::warn!(stream = self.kvs.stream(), code = %code, fragment = ?tags.fragment_number, "KVS reported an error in the stream.");
                self.reported_error = Some(code.clone());
            }
        }
        let mut cursor = live::lock(&self.cursor);
        if tags.fragment_number.is_some() {
            cursor.fragment_number.clone_from(&tags.fragment_number);
        }
        if tags.continuation_token.is_some() {
            cursor
                .continuation_token
                .clone_from(&tags.continuation_token);
        }
        Ok(())
    }

    async fn next(&mut self) -> Result<Option<AccessUnit>, IngestError> {
        loop {
            while let Some(sample) = self.demux.next_sample() {
                let stamp = Stamp {
                    raw_90k: sample.pts_90k,
                    producer_90k: sample.wall_ms.map(|ms| ms.saturating_mul(90)),
                    piece: sample.fragment,
                };
                let placed = live::lock(&self.cursor).place(stamp, &self.metrics);
                if let Some(pts_90k) = placed {
                    // Chunks carry several frames at once: hand them on at their pace.
                    let arrived = Instant::now();
                    self.pacer.wait(pts_90k).await;
                    return Ok(Some(live::unit(sample, pts_90k, arrived)));
                }
            }
            self.read_chunk().await?;
        }
    }
}

impl FrameSource for GetMediaSource {
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
    use crate::config::{HlsContainer, KvsMode, KvsSourceConfig};

    fn config(start: Option<i64>) -> KvsSourceConfig {
        KvsSourceConfig {
            stream_name: "s".into(),
            region: None,
            start_fragment_mode: StartFragmentMode::Now,
            max_retries: None,
            retry_delay_sec: 1.0,
            stall_timeout_sec: 10.0,
            endpoint_url: None,
            mode: KvsMode::Getmedia,
            container: HlsContainer::Fmp4,
            session_expires_sec: 300,
            start_timestamp_ms: start,
            end_timestamp_ms: None,
        }
    }

    #[test]
    fn a_reconnect_resumes_from_the_token_then_the_fragment_then_the_config() {
        let mut cursor = Cursor::default();
        let s = start_selector(&cursor, &config(None));
        assert_eq!(s.start_selector_type(), &StartSelectorType::Now);
        let s = start_selector(&cursor, &config(Some(1_700_000_000_000)));
        assert_eq!(
            s.start_selector_type(),
            &StartSelectorType::ProducerTimestamp
        );
        assert_eq!(
            s.start_timestamp().unwrap().to_millis().unwrap(),
            1_700_000_000_000
        );
        cursor.fragment_number = Some("91343852333181432392682062607743920146".into());
        let s = start_selector(&cursor, &config(None));
        assert_eq!(s.start_selector_type(), &StartSelectorType::FragmentNumber);
        cursor.continuation_token = Some("91343852333181432392682062607743920147".into());
        let s = start_selector(&cursor, &config(None));
        assert_eq!(
            s.start_selector_type(),
            &StartSelectorType::ContinuationToken
        );
        assert_eq!(
            s.continuation_token(),
            Some("91343852333181432392682062607743920147")
        );
    }
}
