//! Telemetry: the declared metric vocabulary, the OpenTelemetry → Prometheus exporter,
//! and JSON logging configured from `LOG_LEVEL`.

mod logging;
mod metrics;
pub mod names;

pub use logging::{init_logging, LogLevel, LogLevelError};
pub use metrics::{CameraMetrics, Metrics, ModelMetrics, SinkMetrics, Telemetry, TelemetryError};
