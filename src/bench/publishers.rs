//! The publisher benchmark: events/s each AWS sink sustains against an endpoint (a
//! local moto in `bench/publishers.sh`), and Kinesis `PutRecords` calls per 1,000
//! events. Each sink runs alone: N events (with a real 720p frame, for S3's JPEG) are
//! queued as fast as possible and the sink is closed; the time to deliver all of them
//! is the figure.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{machine, progress, sample_frames, BenchError};
use crate::config::{DdbPublisherConfig, KdsPublisherConfig, PublishersConfig, S3PublisherConfig};
use crate::publish::{
    new_event_id, start_aws_publishers, Event, EventDetection, Published, EVENT_SCHEMA,
};
use crate::telemetry::Telemetry;

/// What to measure.
#[derive(Debug, Clone)]
pub struct PublisherArgs {
    /// The AWS endpoint (moto).
    pub endpoint: String,
    /// Events per sink.
    pub events: usize,
    /// Create the stream, bucket and table first.
    pub create: bool,
    /// A clip to take the snapshot frame from.
    pub clip: PathBuf,
}

/// One sink's figures.
#[derive(Debug, Clone, Serialize)]
pub struct SinkRow {
    /// The sink.
    pub sink: &'static str,
    /// Events delivered.
    pub delivered: u64,
    /// Events per second, queue to delivered.
    pub events_per_s: f64,
    /// API calls per 1,000 events.
    pub calls_per_1000: f64,
    /// Failed attempts.
    pub failed: u64,
}

/// Every sink's figures.
#[derive(Debug, Clone, Serialize)]
pub struct PublisherReport {
    /// CPU model and core count.
    pub machine: String,
    /// The endpoint measured against.
    pub endpoint: String,
    /// Events per sink.
    pub events: usize,
    /// Per sink.
    pub sinks: Vec<SinkRow>,
}

const STREAM: &str = "bench-events";
const BUCKET: &str = "bench-snapshots";
const TABLE: &str = "bench-events";

/// Runs each sink alone against `args.endpoint`.
pub fn run_publishers(args: &PublisherArgs) -> Result<PublisherReport, BenchError> {
    let frame = sample_frames(&args.clip, 1)?.remove(0);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| BenchError(e.to_string()))?;
    if args.create {
        runtime.block_on(create(&args.endpoint))?;
    }
    let endpoint = Some(args.endpoint.clone());
    let region = Some("us-east-1".to_owned());
    let configs = [
        PublishersConfig {
            kds: Some(KdsPublisherConfig {
                enabled: true,
                region: region.clone(),
                stream_name: STREAM.into(),
                batch_size: 500,
                max_retries: 3,
                base_backoff_ms: 100,
                endpoint_url: endpoint.clone(),
                queue_size: args.events as u32,
            }),
            ..PublishersConfig::default()
        },
        PublishersConfig {
            s3: Some(S3PublisherConfig {
                enabled: true,
                region: region.clone(),
                bucket: BUCKET.into(),
                prefix: "snapshots".into(),
                jpeg_quality: 90,
                save_snapshots: true,
                endpoint_url: endpoint.clone(),
                queue_size: args.events as u32,
            }),
            ..PublishersConfig::default()
        },
        PublishersConfig {
            ddb: Some(DdbPublisherConfig {
                enabled: true,
                region,
                table_name: TABLE.into(),
                ttl_days: 30,
                endpoint_url: endpoint,
                queue_size: args.events as u32,
            }),
            ..PublishersConfig::default()
        },
    ];
    let telemetry = Telemetry::new().map_err(|e| BenchError(e.to_string()))?;
    let mut sinks = Vec::new();
    for config in configs {
        let publisher = runtime
            .block_on(start_aws_publishers(&config, telemetry.metrics()))
            .remove(0);
        let name = publisher.name();
        // S3 encodes a 720p JPEG per event: a tenth of the events keeps the run short.
        let n = if name == "s3" {
            (args.events / 10).max(1)
        } else {
            args.events
        };
        progress(&format!("{name}: {n} events…"));
        let started = Instant::now();
        for i in 0..n {
            let mut event = Event {
                event_id: new_event_id(1_795_000_000_000 + i as i64),
                schema: EVENT_SCHEMA.to_owned(),
                camera_id: format!("bench_{}", i % 8),
                event_type: "yolo".into(),
                ts_ms: 1_795_000_000_000 + i as i64,
                pts_ms: i as i64 * 200,
                detected_at_ms: 1_795_000_000_050 + i as i64,
                detections: vec![EventDetection {
                    label: "person".into(),
                    confidence: 0.9,
                    bbox: [100.0, 50.0, 400.0, 600.0],
                }],
                plate: None,
                model: "yolov8n-coco.onnx".into(),
                snapshot: None,
            };
            event.snapshot = Some(format!(
                "s3://{BUCKET}/{}",
                crate::publish::snapshot_key("snapshots", &event)
            ));
            let _ = publisher.publish(Published {
                event: Arc::new(event),
                frame: Some(frame.clone()),
            });
        }
        let report = runtime.block_on(publisher.close(Instant::now() + Duration::from_secs(600)));
        let took = started.elapsed().as_secs_f64();
        sinks.push(SinkRow {
            sink: name,
            delivered: report.published,
            events_per_s: report.published as f64 / took,
            calls_per_1000: report.calls as f64 * 1000.0 / n as f64,
            failed: report.failed,
        });
    }
    Ok(PublisherReport {
        machine: machine(),
        endpoint: args.endpoint.clone(),
        events: args.events,
        sinks,
    })
}

async fn create(endpoint: &str) -> Result<(), BenchError> {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    };
    let sdk = crate::publish::aws_sdk_config(Some("us-east-1")).await;
    let err = |e: String| BenchError(format!("creating bench resources at {endpoint}: {e}"));
    let kinesis = aws_sdk_kinesis::Client::from_conf(
        aws_sdk_kinesis::config::Builder::from(&sdk)
            .endpoint_url(endpoint)
            .build(),
    );
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .endpoint_url(endpoint)
            .force_path_style(true)
            .build(),
    );
    let ddb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&sdk)
            .endpoint_url(endpoint)
            .build(),
    );
    kinesis
        .create_stream()
        .stream_name(STREAM)
        .shard_count(4)
        .send()
        .await
        .map_err(|e| err(aws_sdk_kinesis::error::DisplayErrorContext(&e).to_string()))?;
    s3.create_bucket()
        .bucket(BUCKET)
        .send()
        .await
        .map_err(|e| err(aws_sdk_s3::error::DisplayErrorContext(&e).to_string()))?;
    let key = |name: &str, kind| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
    };
    let attr = |name: &str, ty| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ty)
            .build()
    };
    ddb.create_table()
        .table_name(TABLE)
        .key_schema(key("event_id", KeyType::Hash).map_err(|e| err(e.to_string()))?)
        .key_schema(key("ts_ms", KeyType::Range).map_err(|e| err(e.to_string()))?)
        .attribute_definitions(
            attr("event_id", ScalarAttributeType::S).map_err(|e| err(e.to_string()))?,
        )
        .attribute_definitions(
            attr("ts_ms", ScalarAttributeType::N).map_err(|e| err(e.to_string()))?,
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .map_err(|e| err(aws_sdk_dynamodb::error::DisplayErrorContext(&e).to_string()))?;
    Ok(())
}

/// The report as a human table.
pub fn publishers_table(report: &PublisherReport) -> String {
    let mut out = format!(
        "kvs-infer bench --publishers against {} on {} ({} events per sink; S3 a tenth)\n\n  sink  delivered  events/s  calls/1000 events  failed attempts\n",
        report.endpoint, report.machine, report.events
    );
    for r in &report.sinks {
        out.push_str(&format!(
            "  {:<4}  {:>9}  {:>8.1}  {:>17.1}  {:>15}\n",
            r.sink, r.delivered, r.events_per_s, r.calls_per_1000, r.failed
        ));
    }
    out
}
