//! OpenTelemetry meters exported in Prometheus text format, and typed handles to them.
//!
//! Hot paths hold a [`CameraMetrics`] or [`SinkMetrics`] whose label sets are built once,
//! so recording is an add on a pre-made attribute slice.

use opentelemetry::metrics::{Counter, Gauge, Histogram, MeterProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use prometheus::{Encoder as _, TextEncoder};

use super::names::*;

/// Telemetry could not be set up or rendered.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The Prometheus exporter refused its configuration.
    #[error("cannot build the Prometheus exporter: {0}")]
    Exporter(String),
    /// Encoding the metric families failed.
    #[error("cannot encode metrics: {0}")]
    Encode(#[from] prometheus::Error),
}

/// The server's meter provider, its Prometheus registry and its instruments.
pub struct Telemetry {
    registry: prometheus::Registry,
    provider: SdkMeterProvider,
    metrics: Metrics,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry").finish_non_exhaustive()
    }
}

impl Telemetry {
    /// Builds the exporter (units and scope labels off) and every instrument.
    pub fn new() -> Result<Self, TelemetryError> {
        let registry = prometheus::Registry::new();
        let exporter = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .without_units()
            .without_counter_suffixes()
            .scope_info_enabled(false)
            .without_target_info()
            .build()
            .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
        let provider = SdkMeterProvider::builder().with_reader(exporter).build();
        let metrics = Metrics::new(&provider);
        Ok(Self {
            registry,
            provider,
            metrics,
        })
    }

    /// Handles to the instruments; clone freely.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Every metric family in Prometheus text format (version 0.0.4).
    pub fn render(&self) -> Result<String, TelemetryError> {
        Ok(TextEncoder::new().encode_to_string(&self.registry.gather())?)
    }

    /// The content type of [`Telemetry::render`]'s output.
    pub fn content_type(&self) -> String {
        TextEncoder::new().format_type().to_owned()
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        // Nothing is pushed anywhere; shutting down only releases the reader.
        let _ = self.provider.shutdown();
    }
}

/// The instruments every part of the server records into.
#[derive(Clone)]
pub struct Metrics {
    frames: Counter<u64>,
    events: Counter<u64>,
    latency_ms: Histogram<f64>,
    publisher_failures: Counter<u64>,
    worker_alive: Gauge<i64>,
    frames_dropped: Counter<u64>,
    ingest_errors: Counter<u64>,
    timeline_resets: Counter<u64>,
    batch_size: Histogram<u64>,
    queue_delay_ms: Histogram<f64>,
    engine_batch_ms: Histogram<f64>,
    shard_owned: Gauge<i64>,
}

impl Metrics {
    fn new(provider: &SdkMeterProvider) -> Self {
        let meter = provider.meter("kvs-infer");
        Self {
            frames: meter
                .u64_counter(INFER_FRAMES_TOTAL)
                .with_description("Frames run through a model, per camera.")
                .build(),
            events: meter
                .u64_counter(INFER_EVENTS_TOTAL)
                .with_description("Events emitted, per camera and event type.")
                .build(),
            latency_ms: meter
                .f64_histogram(INFER_LATENCY_MS)
                .with_description("Frame received to detections ready, in milliseconds.")
                .with_boundaries(LATENCY_BUCKETS_MS.to_vec())
                .build(),
            publisher_failures: meter
                .u64_counter(PUBLISHER_FAILURES_TOTAL)
                .with_description("Failed publish attempts, per sink.")
                .build(),
            worker_alive: meter
                .i64_gauge(WORKER_ALIVE)
                .with_description("1 while a camera's worker receives frames, 0 otherwise.")
                .build(),
            frames_dropped: meter
                .u64_counter(FRAMES_DROPPED_TOTAL)
                .with_description("Frames dropped before inference, per camera and reason.")
                .build(),
            ingest_errors: meter
                .u64_counter(INGEST_ERRORS_TOTAL)
                .with_description("Ingest failures per camera and reason.")
                .build(),
            timeline_resets: meter
                .u64_counter(INGEST_TIMELINE_RESETS_TOTAL)
                .with_description("Timecode jumps that started a new timeline segment, per camera.")
                .build(),
            batch_size: meter
                .u64_histogram(SCHEDULER_BATCH_SIZE)
                .with_description("Images per batch handed to an engine, per model.")
                .with_boundaries(BATCH_SIZE_BUCKETS.to_vec())
                .build(),
            queue_delay_ms: meter
                .f64_histogram(SCHEDULER_QUEUE_DELAY_MS)
                .with_description("Time frames waited in the scheduler queue, in milliseconds.")
                .with_boundaries(SHORT_MS_BUCKETS.to_vec())
                .build(),
            engine_batch_ms: meter
                .f64_histogram(ENGINE_BATCH_MS)
                .with_description(
                    "Preprocess, inference and decoding time per batch, in milliseconds.",
                )
                .with_boundaries(SHORT_MS_BUCKETS.to_vec())
                .build(),
            shard_owned: meter
                .i64_gauge(SHARD_CAMERA_OWNED)
                .with_description("1 for each camera this replica serves, with its shard.")
                .build(),
        }
    }

    /// Records that this replica (shard `INDEX/COUNT`) serves `camera_id`.
    pub fn shard_owns(&self, shard: &str, camera_id: &str) {
        self.shard_owned.record(
            1,
            &[
                KeyValue::new(LABEL_SHARD, shard.to_owned()),
                KeyValue::new(LABEL_CAMERA_ID, camera_id.to_owned()),
            ],
        );
    }

    /// Handles labelled for one camera. `event_types` are the types its detectors emit:
    /// their counters are created at zero so dashboards and `rate()` see them at once.
    pub fn camera(&self, camera_id: &str, event_types: &[&str]) -> CameraMetrics {
        let attrs = [KeyValue::new(LABEL_CAMERA_ID, camera_id.to_owned())];
        self.frames.add(0, &attrs);
        self.timeline_resets.add(0, &attrs);
        self.worker_alive.record(0, &attrs);
        for event_type in event_types {
            self.events.add(0, &event_attrs(camera_id, event_type));
        }
        for reason in DropReason::ALL {
            self.frames_dropped.add(
                0,
                &[
                    KeyValue::new(LABEL_CAMERA_ID, camera_id.to_owned()),
                    KeyValue::new(LABEL_REASON, reason.as_str()),
                ],
            );
        }
        for reason in INGEST_ERROR_REASONS {
            self.ingest_errors.add(
                0,
                &[
                    KeyValue::new(LABEL_CAMERA_ID, camera_id.to_owned()),
                    KeyValue::new(LABEL_REASON, reason),
                ],
            );
        }
        CameraMetrics {
            metrics: self.clone(),
            camera_id: camera_id.to_owned(),
            attrs,
        }
    }

    /// Handles labelled for one model's scheduler queue.
    pub fn model(&self, model: &str) -> ModelMetrics {
        ModelMetrics {
            metrics: self.clone(),
            attrs: [KeyValue::new(LABEL_MODEL, model.to_owned())],
        }
    }

    /// Handles labelled for one publisher sink; its failure counter starts at zero.
    pub fn sink(&self, sink: &'static str) -> SinkMetrics {
        let attrs = [KeyValue::new(LABEL_SINK, sink)];
        self.publisher_failures.add(0, &attrs);
        SinkMetrics {
            metrics: self.clone(),
            attrs,
        }
    }
}

fn event_attrs(camera_id: &str, event_type: &str) -> [KeyValue; 2] {
    [
        KeyValue::new(LABEL_CAMERA_ID, camera_id.to_owned()),
        KeyValue::new(LABEL_TYPE, event_type.to_owned()),
    ]
}

/// One camera's instruments.
#[derive(Clone)]
pub struct CameraMetrics {
    metrics: Metrics,
    camera_id: String,
    attrs: [KeyValue; 1],
}

impl CameraMetrics {
    /// Counts `n` frames run through a model.
    pub fn frames(&self, n: u64) {
        self.metrics.frames.add(n, &self.attrs);
    }

    /// Counts `n` events of `event_type`.
    pub fn events(&self, event_type: &str, n: u64) {
        self.metrics
            .events
            .add(n, &event_attrs(&self.camera_id, event_type));
    }

    /// Records one frame's latency from receipt to detections ready.
    pub fn latency_ms(&self, ms: f64) {
        self.metrics.latency_ms.record(ms, &self.attrs);
    }

    /// Counts `n` frames dropped before inference for `reason`.
    pub fn dropped(&self, reason: DropReason, n: u64) {
        self.metrics.frames_dropped.add(
            n,
            &[
                KeyValue::new(LABEL_CAMERA_ID, self.camera_id.clone()),
                KeyValue::new(LABEL_REASON, reason.as_str()),
            ],
        );
    }

    /// Counts one ingest failure; `reason` is one of [`INGEST_ERROR_REASONS`].
    pub fn ingest_error(&self, reason: &'static str) {
        self.metrics.ingest_errors.add(
            1,
            &[
                KeyValue::new(LABEL_CAMERA_ID, self.camera_id.clone()),
                KeyValue::new(LABEL_REASON, reason),
            ],
        );
    }

    /// Counts one jump in the camera's timecodes that started a new timeline segment.
    pub fn timeline_reset(&self) {
        self.metrics.timeline_resets.add(1, &self.attrs);
    }

    /// Sets `worker_alive` for this camera.
    pub fn alive(&self, alive: bool) {
        self.metrics
            .worker_alive
            .record(i64::from(alive), &self.attrs);
    }
}

/// One model queue's instruments.
#[derive(Clone)]
pub struct ModelMetrics {
    metrics: Metrics,
    attrs: [KeyValue; 1],
}

impl ModelMetrics {
    /// Records a batch of `size` images that took `engine_ms` to run.
    pub fn batch(&self, size: usize, engine_ms: f64) {
        self.metrics.batch_size.record(size as u64, &self.attrs);
        self.metrics.engine_batch_ms.record(engine_ms, &self.attrs);
    }

    /// Records how long one frame waited in the queue.
    pub fn queue_delay_ms(&self, ms: f64) {
        self.metrics.queue_delay_ms.record(ms, &self.attrs);
    }
}

/// One publisher sink's instruments.
#[derive(Clone)]
pub struct SinkMetrics {
    metrics: Metrics,
    attrs: [KeyValue; 1],
}

impl SinkMetrics {
    /// Counts `n` failed publish attempts.
    pub fn failures(&self, n: u64) {
        self.metrics.publisher_failures.add(n, &self.attrs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_five_families_render_with_the_seed_names_and_buckets() {
        let t = Telemetry::new().unwrap();
        let cam = t.metrics().camera("camera_1", &["weapon"]);
        cam.frames(3);
        cam.events("weapon", 1);
        cam.latency_ms(42.0);
        cam.latency_ms(700.0);
        cam.alive(true);
        t.metrics().sink("kds").failures(2);
        let text = t.render().unwrap();

        assert!(
            text.contains("infer_frames_total{camera_id=\"camera_1\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("infer_events_total{camera_id=\"camera_1\",type=\"weapon\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("publisher_failures_total{sink=\"kds\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("worker_alive{camera_id=\"camera_1\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE infer_latency_ms histogram"), "{text}");
        assert!(
            text.contains("infer_latency_ms_count{camera_id=\"camera_1\"} 2\n"),
            "{text}"
        );
        // 42 ms falls in the 50 bucket; 700 ms in 1000 and above.
        assert!(
            text.contains("infer_latency_ms_bucket{camera_id=\"camera_1\",le=\"50\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("infer_latency_ms_bucket{camera_id=\"camera_1\",le=\"500\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("infer_latency_ms_bucket{camera_id=\"camera_1\",le=\"1000\"} 2\n"),
            "{text}"
        );
        let bounds: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("infer_latency_ms_bucket"))
            .filter_map(|l| l.split("le=\"").nth(1)?.split('"').next())
            .collect();
        assert_eq!(
            bounds,
            ["10", "50", "100", "200", "500", "1000", "2000", "5000", "+Inf"]
        );
        for family in SEED_FAMILIES {
            assert!(
                text.contains(&format!("# TYPE {family} ")),
                "{family} missing"
            );
        }
        assert!(
            !text.contains("otel_scope"),
            "scope labels must be off: {text}"
        );
    }

    #[test]
    fn counters_start_at_zero_for_configured_cameras_and_sinks() {
        let t = Telemetry::new().unwrap();
        let cam = t.metrics().camera("c", &["fire", "smoke"]);
        t.metrics().sink("s3");
        let text = t.render().unwrap();
        assert!(
            text.contains("infer_frames_total{camera_id=\"c\"} 0\n"),
            "{text}"
        );
        assert!(text.contains("infer_events_total{camera_id=\"c\",type=\"smoke\"} 0\n"));
        assert!(text.contains("worker_alive{camera_id=\"c\"} 0\n"));
        assert!(text.contains("publisher_failures_total{sink=\"s3\"} 0\n"));
        cam.alive(true);
        assert!(t
            .render()
            .unwrap()
            .contains("worker_alive{camera_id=\"c\"} 1\n"));
    }
}
