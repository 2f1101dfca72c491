//! Kinesis Data Streams: `PutRecords` of up to `batch_size` (≤ 500) records and 5 MiB,
//! partition key = camera id. A partial failure resends only the failed records;
//! throttling and transport errors get `max_retries` quick retries (exponential from
//! `base_backoff_ms`, with jitter) before the attempt fails back to the queue.

use aws_config::SdkConfig;
use aws_sdk_kinesis::error::DisplayErrorContext;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use aws_sdk_kinesis::Client;

use super::aws::quick_backoff;
use super::queue::{Attempt, Sink};
use super::Published;
use crate::config::KdsPublisherConfig;
use crate::BoxFuture;

/// The `PutRecords` payload limit.
pub const MAX_CALL_BYTES: usize = 5 * 1024 * 1024;

/// One stream.
pub struct KinesisSink {
    client: Client,
    stream: String,
    batch_size: usize,
    max_retries: u32,
    base_backoff_ms: u64,
}

impl KinesisSink {
    /// A sink for `config`'s stream.
    pub fn new(sdk: &SdkConfig, config: &KdsPublisherConfig) -> Self {
        let mut builder = aws_sdk_kinesis::config::Builder::from(sdk);
        if let Some(url) = &config.endpoint_url {
            builder = builder.endpoint_url(url);
        }
        Self {
            client: Client::from_conf(builder.build()),
            stream: config.stream_name.clone(),
            batch_size: config.batch_size as usize,
            max_retries: config.max_retries,
            base_backoff_ms: config.base_backoff_ms,
        }
    }

    /// One `PutRecords` call; returns the items whose records failed, and why.
    async fn put(
        &self,
        items: Vec<Published>,
        records: Vec<PutRecordsRequestEntry>,
    ) -> (Vec<Published>, Option<String>) {
        match self
            .client
            .put_records()
            .stream_name(&self.stream)
            .set_records(Some(records))
            .send()
            .await
        {
            Ok(out) if out.failed_record_count().unwrap_or(0) == 0 => (Vec::new(), None),
            Ok(out) => {
                let mut why = None;
                let failed = items
                    .into_iter()
                    .zip(out.records())
                    .filter(|(_, r)| r.error_code().is_some())
                    .map(|(item, r)| {
                        why.get_or_insert_with(|| {
                            format!(
                                "{}: {}",
                                r.error_code().unwrap_or("?"),
                                r.error_message().unwrap_or("")
                            )
                        });
                        item
                    })
                    .collect();
                (failed, why)
            }
            Err(e) => (items, Some(DisplayErrorContext(&e).to_string())),
        }
    }
}

fn record(item: &Published) -> Option<(PutRecordsRequestEntry, usize)> {
    let data = serde_json::to_vec(item.event.as_ref()).ok()?;
    let size = data.len() + item.event.camera_id.len();
    let entry = PutRecordsRequestEntry::builder()
        .data(Blob::new(data))
        .partition_key(&item.event.camera_id)
        .build()
        .ok()?;
    Some((entry, size))
}

impl Sink for KinesisSink {
    fn name(&self) -> &'static str {
        "kds"
    }

    /// Logs clearly when the stream cannot be used (events still queue and retry).
    fn check(&self) -> BoxFuture<'static, ()> {
        let (client, stream) = (self.client.clone(), self.stream.clone());
        Box::pin(async move {
            if let Err(e) = client
                .describe_stream_summary()
                .stream_name(&stream)
                .send()
                .await
            {
                tracing::error!(sink = "kds", stream = %stream, error = %DisplayErrorContext(&e), "Kinesis stream is not usable; events queue and are retried.");
            }
        })
    }

    fn max_batch(&self) -> usize {
        self.batch_size
    }

    fn send(&mut self, batch: Vec<Published>) -> BoxFuture<'_, Attempt> {
        Box::pin(async move {
            let mut attempt = Attempt::default();
            let mut pending = batch;
            let mut retry = 0;
            loop {
                // Split by the 5 MiB call limit; failures of every call are collected.
                let mut failed = Vec::new();
                let mut rest = pending.into_iter().peekable();
                while rest.peek().is_some() {
                    let (mut items, mut records, mut bytes) = (Vec::new(), Vec::new(), 0);
                    while let Some(item) = rest.peek() {
                        let Some((entry, size)) = record(item) else {
                            rest.next();
                            continue;
                        };
                        if !records.is_empty() && bytes + size > MAX_CALL_BYTES {
                            break;
                        }
                        bytes += size;
                        records.push(entry);
                        items.extend(rest.next());
                    }
                    attempt.calls += 1;
                    let (f, why) = self.put(items, records).await;
                    if why.is_some() {
                        attempt.error = why;
                    }
                    failed.extend(f);
                }
                if failed.is_empty() || retry >= self.max_retries {
                    attempt.failed = failed;
                    return attempt;
                }
                retry += 1;
                attempt.retries += 1;
                tokio::time::sleep(quick_backoff(self.base_backoff_ms, retry)).await;
                pending = failed;
            }
        })
    }
}
