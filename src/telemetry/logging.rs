//! JSON logs on stdout through `tracing`, at the level named by `LOG_LEVEL`.
//!
//! Each line is one JSON object with `timestamp`, `level`, `target` (the logger),
//! `message` and the event's fields (`camera_id`, `latency_ms`, …) at the top level,
//! plus the current span's fields under `span`.

use std::str::FromStr;

use tracing::level_filters::LevelFilter;
use tracing_subscriber::EnvFilter;

/// The levels `LOG_LEVEL` accepts, in the seed's (Python logging) vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogLevel {
    /// Everything, including per-frame detail.
    Trace,
    /// Diagnostic detail.
    Debug,
    /// Normal operation (the default).
    #[default]
    Info,
    /// Something is wrong but the server carries on.
    Warning,
    /// Failures; `CRITICAL` maps here too.
    Error,
}

/// `LOG_LEVEL` named no level we know.
#[derive(Debug, thiserror::Error)]
#[error("LOG_LEVEL={0:?} is not a log level; use DEBUG, INFO, WARNING, ERROR or CRITICAL")]
pub struct LogLevelError(String);

impl FromStr for LogLevel {
    type Err = LogLevelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_uppercase().as_str() {
            "TRACE" => Ok(LogLevel::Trace),
            "DEBUG" => Ok(LogLevel::Debug),
            "INFO" | "" => Ok(LogLevel::Info),
            "WARNING" | "WARN" => Ok(LogLevel::Warning),
            "ERROR" | "CRITICAL" | "FATAL" => Ok(LogLevel::Error),
            _ => Err(LogLevelError(s.to_owned())),
        }
    }
}

impl LogLevel {
    /// Reads `LOG_LEVEL` from the environment; INFO when unset.
    pub fn from_env() -> Result<Self, LogLevelError> {
        match std::env::var("LOG_LEVEL") {
            Ok(v) => v.parse(),
            Err(_) => Ok(LogLevel::Info),
        }
    }

    fn filter(self) -> LevelFilter {
        match self {
            LogLevel::Trace => LevelFilter::TRACE,
            LogLevel::Debug => LevelFilter::DEBUG,
            LogLevel::Info => LevelFilter::INFO,
            LogLevel::Warning => LevelFilter::WARN,
            LogLevel::Error => LevelFilter::ERROR,
        }
    }

    /// Our crate logs at this level; dependencies never below INFO, so DEBUG stays
    /// readable.
    fn directives(self) -> String {
        let ours = self.filter();
        let theirs = ours.min(LevelFilter::INFO);
        format!("{theirs},kvs_infer={ours}")
    }
}

/// Installs the global JSON subscriber on stdout. Call once, from the binary.
pub fn init_logging(level: LogLevel) {
    let filter = EnvFilter::builder()
        .parse(level.directives())
        .unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(true)
        .with_ansi(false)
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_level_names_parse_case_insensitively() {
        assert_eq!("debug".parse::<LogLevel>().unwrap(), LogLevel::Debug);
        assert_eq!("WARNING".parse::<LogLevel>().unwrap(), LogLevel::Warning);
        assert_eq!("CRITICAL".parse::<LogLevel>().unwrap(), LogLevel::Error);
        assert_eq!("".parse::<LogLevel>().unwrap(), LogLevel::Info);
        let err = "LOUD".parse::<LogLevel>().unwrap_err().to_string();
        assert!(err.contains("LOG_LEVEL=\"LOUD\""), "{err}");
    }

    #[test]
    fn dependencies_stay_at_info_when_we_debug() {
        assert_eq!(LogLevel::Debug.directives(), "info,kvs_infer=debug");
        assert_eq!(LogLevel::Error.directives(), "error,kvs_infer=error");
    }
}
