//! Publish: events fan out to sinks. Each [`Publisher`] has a bounded queue, batches,
//! retries with backoff, counts `publisher_failures_total{sink}`, never blocks a camera,
//! and flushes on shutdown. Sinks: local (JSONL and JPEG snapshots), Kinesis Data
//! Streams, S3 snapshots and DynamoDB; the remote ones share [`queue`]'s batching,
//! retry and flush shell.

mod aws;
mod dynamodb;
mod event;
mod font;
mod kinesis;
mod local;
mod queue;
mod s3;
pub mod snapshot;

use std::sync::Arc;
use std::time::Instant;

pub use aws::{sdk_config as aws_sdk_config, start_aws_publishers};
pub use event::{new_event_id, Event, EventDetection, Plate, EVENT_SCHEMA};
pub use local::LocalPublisher;
pub use queue::{Attempt, BatchingPublisher, Sink};
pub use s3::snapshot_key;

use crate::decode::Frame;
use crate::BoxFuture;

/// An event on its way to a sink, with the frame to snapshot when the sink saves one.
#[derive(Debug, Clone)]
pub struct Published {
    /// The envelope.
    pub event: Arc<Event>,
    /// The frame the event was detected in.
    pub frame: Option<Arc<Frame>>,
}

/// Why an event was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The sink's queue is full; the event was dropped and counted.
    #[error("{sink} queue full; event {event_id} dropped")]
    QueueFull {
        /// The sink.
        sink: &'static str,
        /// The dropped event.
        event_id: String,
    },
    /// The sink has been flushed and closed.
    #[error("{sink} is closed")]
    Closed {
        /// The sink.
        sink: &'static str,
    },
}

/// A sink's final figures, logged at shutdown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PublisherReport {
    /// Events delivered.
    pub published: u64,
    /// Snapshots saved.
    pub snapshots: u64,
    /// Failed attempts (each counted in `publisher_failures_total`).
    pub failed: u64,
    /// Events given up (queue overflow, or still queued at the deadline).
    pub dropped: u64,
    /// Quick retries inside attempts.
    pub retried: u64,
    /// Batches attempted.
    pub batches: u64,
    /// API calls made.
    pub calls: u64,
}

/// The seam between detectors and a sink.
pub trait Publisher: Send + Sync {
    /// The sink's short name (`local`, `kds`, `s3`, `ddb`), the metric label.
    fn name(&self) -> &'static str;

    /// Queues an event without waiting; never blocks the camera that calls it.
    fn publish(&self, item: Published) -> Result<(), PublishError>;

    /// Stops accepting events, delivers what is queued before `deadline`, and reports.
    fn close(&self, deadline: Instant) -> BoxFuture<'_, PublisherReport>;
}
