//! S3 snapshots: the event's frame as JPEG with boxes and labels drawn, at
//! `jpeg_quality`, under `<prefix>/<camera_id>/<yyyy>/<mm>/<dd>/<ts_ms>_<event_id>.jpg`
//! (UTC date of the frame). The key is a pure function of the event, so the pipeline
//! puts the `s3://` URI in the envelope every sink sends, before the upload. Encoding
//! runs on a blocking thread, off the camera's path. Path-style addressing when an
//! endpoint is set (local emulators).

use aws_config::SdkConfig;
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use tokio::task::JoinSet;

use super::aws::quick_backoff;
use super::queue::{Attempt, Sink};
use super::snapshot::{render, safe_segment};
use super::{Event, Published};
use crate::config::S3PublisherConfig;
use crate::BoxFuture;

/// Snapshots uploaded concurrently per attempt.
const UPLOADS_PER_BATCH: usize = 8;
/// Quick retries of one upload inside an attempt.
const QUICK_RETRIES: u32 = 2;

/// The object key of an event's snapshot. Safe whatever the camera id contains: every
/// segment is sanitised and none is empty.
pub fn snapshot_key(prefix: &str, event: &Event) -> String {
    let (y, m, d) = civil_date(event.ts_ms.div_euclid(86_400_000));
    let file = format!("{}_{}.jpg", event.ts_ms, safe_segment(&event.event_id));
    let path = format!(
        "{}/{y:04}/{m:02}/{d:02}/{file}",
        safe_segment(&event.camera_id)
    );
    let prefix = prefix.trim_matches('/');
    if prefix.is_empty() {
        path
    } else {
        format!("{prefix}/{path}")
    }
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_date(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// One bucket.
pub struct S3Sink {
    client: Client,
    bucket: String,
    prefix: String,
    quality: u8,
}

impl S3Sink {
    /// A sink for `config`'s bucket.
    pub fn new(sdk: &SdkConfig, config: &S3PublisherConfig) -> Self {
        let mut builder = aws_sdk_s3::config::Builder::from(sdk);
        if let Some(url) = &config.endpoint_url {
            builder = builder.endpoint_url(url).force_path_style(true);
        }
        Self {
            client: Client::from_conf(builder.build()),
            bucket: config.bucket.clone(),
            prefix: config.prefix.clone(),
            quality: config.jpeg_quality,
        }
    }
}

/// Encodes and uploads one snapshot, with quick retries; `Err` names why it failed.
async fn upload(
    client: Client,
    bucket: String,
    key: String,
    quality: u8,
    item: &Published,
) -> Result<u64, (u64, String)> {
    let Some(frame) = item.frame.clone() else {
        return Ok(0);
    };
    let event = item.event.clone();
    let jpeg = tokio::task::spawn_blocking(move || {
        let canvas = render(&frame, &event);
        let mut out = Vec::new();
        let (w, h) = (canvas.width as u16, canvas.height as u16);
        jpeg_encoder::Encoder::new(&mut out, quality)
            .encode(&canvas.rgb, w, h, jpeg_encoder::ColorType::Rgb)
            .map(|()| out)
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| (0, e.to_string()))?
    .map_err(|e| (0, format!("JPEG encoding failed: {e}")))?;
    let mut calls = 0;
    let mut last = String::new();
    for n in 0..=QUICK_RETRIES {
        if n > 0 {
            tokio::time::sleep(quick_backoff(100, n)).await;
        }
        calls += 1;
        match client
            .put_object()
            .bucket(&bucket)
            .key(&key)
            .content_type("image/jpeg")
            .body(ByteStream::from(jpeg.clone()))
            .send()
            .await
        {
            Ok(_) => return Ok(calls),
            Err(e) => last = DisplayErrorContext(&e).to_string(),
        }
    }
    Err((calls, last))
}

impl Sink for S3Sink {
    fn name(&self) -> &'static str {
        "s3"
    }

    /// Logs clearly when the bucket cannot be used (snapshots still queue and retry).
    fn check(&self) -> BoxFuture<'static, ()> {
        let (client, bucket) = (self.client.clone(), self.bucket.clone());
        Box::pin(async move {
            if let Err(e) = client.head_bucket().bucket(&bucket).send().await {
                tracing::error!(sink = "s3", bucket = %bucket, error = %DisplayErrorContext(&e), "S3 bucket is not usable; snapshots queue and are retried.");
            }
        })
    }

    fn max_batch(&self) -> usize {
        UPLOADS_PER_BATCH
    }

    fn send(&mut self, batch: Vec<Published>) -> BoxFuture<'_, Attempt> {
        Box::pin(async move {
            let mut uploads = JoinSet::new();
            for (i, item) in batch.iter().enumerate() {
                let key = snapshot_key(&self.prefix, &item.event);
                let (client, bucket, quality, item) = (
                    self.client.clone(),
                    self.bucket.clone(),
                    self.quality,
                    item.clone(),
                );
                uploads
                    .spawn(async move { (i, upload(client, bucket, key, quality, &item).await) });
            }
            let mut attempt = Attempt::default();
            let mut failed_at = Vec::new();
            while let Some(joined) = uploads.join_next().await {
                match joined {
                    Ok((_, Ok(calls))) => attempt.calls += calls,
                    Ok((i, Err((calls, why)))) => {
                        attempt.calls += calls;
                        attempt.retries += calls.saturating_sub(1);
                        attempt.error = Some(why);
                        failed_at.push(i);
                    }
                    Err(e) => attempt.error = Some(e.to_string()),
                }
            }
            failed_at.sort_unstable();
            let mut batch: Vec<Option<Published>> = batch.into_iter().map(Some).collect();
            attempt.failed = failed_at
                .into_iter()
                .filter_map(|i| batch[i].take())
                .collect();
            attempt
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publish::event::sample;

    #[test]
    fn keys_follow_the_layout_with_the_frames_utc_date() {
        let mut event = sample("cam_1", 0);
        event.ts_ms = 1_795_491_018_173; // 2026-11-24T03:30:18Z
        event.event_id = "abc-1".into();
        assert_eq!(
            snapshot_key("snapshots", &event),
            "snapshots/cam_1/2026/11/24/1795491018173_abc-1.jpg"
        );
        assert_eq!(
            snapshot_key("/a/b/", &event),
            "a/b/cam_1/2026/11/24/1795491018173_abc-1.jpg"
        );
        assert_eq!(
            snapshot_key("", &event),
            "cam_1/2026/11/24/1795491018173_abc-1.jpg"
        );
    }

    #[test]
    fn hostile_camera_ids_cannot_escape_or_empty_a_segment() {
        let mut event = sample("../../etc/passwd", 0);
        event.ts_ms = 0;
        let key = snapshot_key("p", &event);
        assert!(key.starts_with("p/.._.._etc_passwd/1970/01/01/0_"), "{key}");
        assert!(
            !key.split('/')
                .any(|s| s.is_empty() || s == ".." || s == "."),
            "{key}"
        );
        event.camera_id = String::new();
        assert!(!snapshot_key("p", &event).contains("//"));
    }

    #[test]
    fn civil_dates_match_known_days() {
        assert_eq!(civil_date(0), (1970, 1, 1));
        assert_eq!(civil_date(-1), (1969, 12, 31));
        assert_eq!(civil_date(11_016), (2000, 2, 29));
        assert_eq!(civil_date(20_781), (2026, 11, 24));
    }
}
