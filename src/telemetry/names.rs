//! The telemetry vocabulary: every metric name, label and bucket layout, declared once.
//!
//! The first five names are the seed's, exactly as its dashboards and alerts use them;
//! `deploy/` and `docs/metrics.md` refer to these constants' values.

/// Counter: frames run through a model, per camera.
pub const INFER_FRAMES_TOTAL: &str = "infer_frames_total";
/// Counter: events emitted, per camera and event type.
pub const INFER_EVENTS_TOTAL: &str = "infer_events_total";
/// Histogram: frame received → detections ready, in milliseconds, per camera.
pub const INFER_LATENCY_MS: &str = "infer_latency_ms";
/// Counter: failed publish attempts, per sink.
pub const PUBLISHER_FAILURES_TOTAL: &str = "publisher_failures_total";
/// Gauge: 1 while a camera's worker is receiving frames, 0 otherwise.
pub const WORKER_ALIVE: &str = "worker_alive";

/// Counter: frames dropped before inference, per camera and reason
/// (`replaced`, `stale`, `cancelled`, `engine_error`).
pub const FRAMES_DROPPED_TOTAL: &str = "frames_dropped_total";
/// Why a frame was dropped before inference: the `reason` of [`FRAMES_DROPPED_TOTAL`]
/// (each created at zero per camera, from [`DropReason::ALL`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// A newer frame from the same camera took its place in the scheduler's queue.
    Replaced,
    /// It waited past `max_staleness_ms`.
    Stale,
    /// Its camera has gone away.
    Cancelled,
    /// The engine failed on its batch.
    EngineError,
}

impl DropReason {
    /// Every reason, in the order dashboards list them.
    pub const ALL: [DropReason; 4] = [
        DropReason::Replaced,
        DropReason::Stale,
        DropReason::Cancelled,
        DropReason::EngineError,
    ];

    /// The `reason` label of [`FRAMES_DROPPED_TOTAL`].
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Replaced => "replaced",
            DropReason::Stale => "stale",
            DropReason::Cancelled => "cancelled",
            DropReason::EngineError => "engine_error",
        }
    }
}
/// Counter: ingest failures per camera and reason (`stream`: the source failed and
/// reconnects; `stall`: no frame within the stall timeout, reconnects; `segment`: an HLS
/// segment could not be fetched and was skipped; `corrupt`: damaged container data was
/// skipped).
pub const INGEST_ERRORS_TOTAL: &str = "ingest_errors_total";
/// Every `reason` of [`INGEST_ERRORS_TOTAL`] (created at zero per camera).
pub const INGEST_ERROR_REASONS: [&str; 4] = ["stream", "stall", "segment", "corrupt"];
/// Counter: jumps in a camera's container timecodes (a producer restart, a repeat, a
/// leap) that started a new segment of its timeline, per camera.
pub const INGEST_TIMELINE_RESETS_TOTAL: &str = "ingest_timeline_resets_total";
/// Histogram: images per batch handed to an engine, per model.
pub const SCHEDULER_BATCH_SIZE: &str = "scheduler_batch_size";
/// Histogram: time a frame waited in the scheduler's queue, in milliseconds, per model.
pub const SCHEDULER_QUEUE_DELAY_MS: &str = "scheduler_queue_delay_ms";
/// Histogram: engine time per batch (preprocess + inference + decode), ms, per model.
pub const ENGINE_BATCH_MS: &str = "engine_batch_ms";

/// Gauge: 1 for each camera this replica serves, labelled with its shard
/// (`INDEX/COUNT`).
pub const SHARD_CAMERA_OWNED: &str = "shard_camera_owned";

/// Label: the camera id from the config.
pub const LABEL_CAMERA_ID: &str = "camera_id";
/// Label: the event type (`weapon`, `fire`, `smoke`, `alpr`, …).
pub const LABEL_TYPE: &str = "type";
/// Label: why a frame was dropped.
pub const LABEL_REASON: &str = "reason";
/// Label: this replica's shard, `INDEX/COUNT`.
pub const LABEL_SHARD: &str = "shard";
/// Label: the model (its file stem).
pub const LABEL_MODEL: &str = "model";
/// Label: the publisher sink (`local`, `kds`, `s3`, `ddb`).
pub const LABEL_SINK: &str = "sink";

/// Bucket bounds of [`INFER_LATENCY_MS`], as the seed's dashboards expect.
pub const LATENCY_BUCKETS_MS: [f64; 8] = [10.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0];

/// Bucket bounds of [`SCHEDULER_BATCH_SIZE`].
pub const BATCH_SIZE_BUCKETS: [f64; 8] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];
/// Bucket bounds of [`SCHEDULER_QUEUE_DELAY_MS`] and [`ENGINE_BATCH_MS`].
pub const SHORT_MS_BUCKETS: [f64; 12] = [
    1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
];

/// The seed's five metric families, which its dashboards and alerts rely on.
pub const SEED_FAMILIES: [&str; 5] = [
    INFER_FRAMES_TOTAL,
    INFER_EVENTS_TOTAL,
    INFER_LATENCY_MS,
    PUBLISHER_FAILURES_TOTAL,
    WORKER_ALIVE,
];
