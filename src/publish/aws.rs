//! AWS plumbing shared by the Kinesis, S3 and DynamoDB sinks: the standard credential
//! and region chain, an endpoint override for local emulators, tight timeouts so an
//! unreachable endpoint fails an attempt quickly (our queue retries it), and the quick
//! in-attempt retry schedule.

use std::sync::Arc;
use std::time::Duration;

pub use crate::aws::sdk_config;

use super::dynamodb::DynamoSink;
use super::kinesis::KinesisSink;
use super::queue::{BatchingPublisher, Sink};
use super::s3::S3Sink;
use super::Publisher;
use crate::backoff::Backoff;
use crate::config::PublishersConfig;
use crate::telemetry::Metrics;

/// The pause before quick retry `n` (1-based): `base_ms · 2^(n-1)` (at most 1024 times
/// `base_ms`), ±20% jitter.
pub fn quick_backoff(base_ms: u64, n: u32) -> Duration {
    let base = Duration::from_millis(base_ms);
    Backoff::new(base, base.saturating_mul(1024)).delay(n)
}

/// Checks a sink's resource in the background and starts its queue.
fn launch<S: Sink>(
    sink: S,
    queue_size: u32,
    metrics: &Metrics,
    target: &str,
    endpoint: Option<&str>,
) -> Arc<dyn Publisher> {
    tokio::spawn(sink.check());
    let name = sink.name();
    tracing::info!(
        sink = name,
        target,
        endpoint = endpoint.unwrap_or("AWS"),
        "Publisher ready."
    );
    Arc::new(BatchingPublisher::start(
        sink,
        queue_size as usize,
        metrics.sink(name),
    ))
}

/// Starts every enabled AWS publisher, each checking its resource in the background
/// (a missing stream, bucket or table is logged clearly; events queue and are retried).
pub async fn start_aws_publishers(
    config: &PublishersConfig,
    metrics: &Metrics,
) -> Vec<Arc<dyn Publisher>> {
    let mut out: Vec<Arc<dyn Publisher>> = Vec::new();
    if let Some(kds) = config.kds.as_ref().filter(|c| c.enabled) {
        let sdk = sdk_config(kds.region.as_deref()).await;
        let target = format!("stream {}", kds.stream_name);
        out.push(launch(
            KinesisSink::new(&sdk, kds),
            kds.queue_size,
            metrics,
            &target,
            kds.endpoint_url.as_deref(),
        ));
    }
    if let Some(s3) = config.s3.as_ref().filter(|c| c.enabled) {
        let sdk = sdk_config(s3.region.as_deref()).await;
        let target = format!("bucket {}", s3.bucket);
        out.push(launch(
            S3Sink::new(&sdk, s3),
            s3.queue_size,
            metrics,
            &target,
            s3.endpoint_url.as_deref(),
        ));
    }
    if let Some(ddb) = config.ddb.as_ref().filter(|c| c.enabled) {
        let sdk = sdk_config(ddb.region.as_deref()).await;
        let target = format!("table {}", ddb.table_name);
        out.push(launch(
            DynamoSink::new(&sdk, ddb),
            ddb.queue_size,
            metrics,
            &target,
            ddb.endpoint_url.as_deref(),
        ));
    }
    out
}
