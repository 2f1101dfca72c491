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

/// Label: the camera id from the config.
pub const LABEL_CAMERA_ID: &str = "camera_id";
/// Label: the event type (`weapon`, `fire`, `smoke`, `alpr`, …).
pub const LABEL_TYPE: &str = "type";
/// Label: the publisher sink (`local`, `kds`, `s3`, `ddb`).
pub const LABEL_SINK: &str = "sink";

/// Bucket bounds of [`INFER_LATENCY_MS`], as the seed's dashboards expect.
pub const LATENCY_BUCKETS_MS: [f64; 8] = [10.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0];

/// Every metric family the server exports, for tests and docs.
pub const ALL_FAMILIES: [&str; 5] = [
    INFER_FRAMES_TOTAL,
    INFER_EVENTS_TOTAL,
    INFER_LATENCY_MS,
    PUBLISHER_FAILURES_TOTAL,
    WORKER_ALIVE,
];
