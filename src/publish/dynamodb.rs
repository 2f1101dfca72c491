//! DynamoDB: `BatchWriteItem` of up to 25 items; `UnprocessedItems` are resent with
//! backoff inside the attempt. Each item: `event_id` (S) + `ts_ms` (N) for the key,
//! `camera_id`, `type`, the whole `envelope` as JSON, and `expires_at` (N, epoch
//! seconds) = now + `ttl_days` for DynamoDB's TTL.

use std::collections::HashMap;

use aws_config::SdkConfig;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use aws_sdk_dynamodb::Client;

use super::aws::quick_backoff;
use super::queue::{Attempt, Sink};
use super::{Event, Published};
use crate::config::DdbPublisherConfig;
use crate::BoxFuture;

/// The `BatchWriteItem` limit.
pub const MAX_ITEMS: usize = 25;
/// Quick resends of unprocessed items inside an attempt.
const QUICK_RETRIES: u32 = 3;

/// One table.
pub struct DynamoSink {
    client: Client,
    table: String,
    ttl_sec: i64,
}

/// The item for an event, expiring `ttl_sec` after `now_sec`.
pub fn item(event: &Event, now_sec: i64, ttl_sec: i64) -> HashMap<String, AttributeValue> {
    let envelope = serde_json::to_string(event).unwrap_or_default();
    HashMap::from([
        (
            "event_id".to_owned(),
            AttributeValue::S(event.event_id.clone()),
        ),
        (
            "ts_ms".to_owned(),
            AttributeValue::N(event.ts_ms.to_string()),
        ),
        (
            "camera_id".to_owned(),
            AttributeValue::S(event.camera_id.clone()),
        ),
        (
            "type".to_owned(),
            AttributeValue::S(event.event_type.clone()),
        ),
        ("envelope".to_owned(), AttributeValue::S(envelope)),
        (
            "expires_at".to_owned(),
            AttributeValue::N((now_sec + ttl_sec).to_string()),
        ),
    ])
}

impl DynamoSink {
    /// A sink for `config`'s table.
    pub fn new(sdk: &SdkConfig, config: &DdbPublisherConfig) -> Self {
        let mut builder = aws_sdk_dynamodb::config::Builder::from(sdk);
        if let Some(url) = &config.endpoint_url {
            builder = builder.endpoint_url(url);
        }
        Self {
            client: Client::from_conf(builder.build()),
            table: config.table_name.clone(),
            ttl_sec: i64::from(config.ttl_days) * 86_400,
        }
    }
}

impl Sink for DynamoSink {
    fn name(&self) -> &'static str {
        "ddb"
    }

    /// Logs clearly when the table cannot be used (events still queue and retry).
    fn check(&self) -> BoxFuture<'static, ()> {
        let (client, table) = (self.client.clone(), self.table.clone());
        Box::pin(async move {
            if let Err(e) = client.describe_table().table_name(&table).send().await {
                tracing::error!(sink = "ddb", table = %table, error = %DisplayErrorContext(&e), "DynamoDB table is not usable; events queue and are retried.");
            }
        })
    }

    fn max_batch(&self) -> usize {
        MAX_ITEMS
    }

    fn send(&mut self, batch: Vec<Published>) -> BoxFuture<'_, Attempt> {
        Box::pin(async move {
            let now_sec = crate::ingest::now_epoch_ms() / 1000;
            let mut attempt = Attempt::default();
            let mut pending: HashMap<String, Published> = batch
                .into_iter()
                .map(|p| (p.event.event_id.clone(), p))
                .collect();
            for n in 0..=QUICK_RETRIES {
                if n > 0 {
                    attempt.retries += 1;
                    tokio::time::sleep(quick_backoff(100, n)).await;
                }
                let mut requests = Vec::new();
                for published in pending.values() {
                    match PutRequest::builder()
                        .set_item(Some(item(&published.event, now_sec, self.ttl_sec)))
                        .build()
                    {
                        Ok(put) => requests.push(WriteRequest::builder().put_request(put).build()),
                        Err(e) => attempt.error = Some(e.to_string()),
                    }
                }
                attempt.calls += 1;
                match self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, requests)
                    .send()
                    .await
                {
                    Ok(out) => {
                        let unprocessed: Vec<String> = out
                            .unprocessed_items()
                            .and_then(|m| m.get(&self.table))
                            .map(|writes| {
                                writes
                                    .iter()
                                    .filter_map(|w| w.put_request())
                                    .filter_map(|p| match p.item().get("event_id") {
                                        Some(AttributeValue::S(id)) => Some(id.clone()),
                                        _ => None,
                                    })
                                    .collect()
                            })
                            .unwrap_or_default();
                        pending.retain(|id, _| unprocessed.contains(id));
                        if pending.is_empty() {
                            return attempt;
                        }
                        attempt.error = Some(format!("{} item(s) unprocessed", pending.len()));
                    }
                    Err(e) => attempt.error = Some(DisplayErrorContext(&e).to_string()),
                }
            }
            let mut failed: Vec<Published> = pending.into_values().collect();
            failed.sort_by_key(|a| a.event.ts_ms);
            attempt.failed = failed;
            attempt
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publish::event::sample;

    #[test]
    fn items_carry_the_key_the_envelope_and_a_ttl() {
        let event = sample("cam", 3);
        let item = item(&event, 1_000, 30 * 86_400);
        assert_eq!(item["event_id"], AttributeValue::S(event.event_id.clone()));
        assert_eq!(item["ts_ms"], AttributeValue::N(event.ts_ms.to_string()));
        assert_eq!(
            item["expires_at"],
            AttributeValue::N((1_000 + 2_592_000).to_string())
        );
        let AttributeValue::S(envelope) = &item["envelope"] else {
            panic!("envelope is a string")
        };
        let back: Event = serde_json::from_str(envelope).unwrap();
        assert_eq!(back, event);
    }
}
