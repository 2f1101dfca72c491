//! Pure semantic validation: ranges, consistency and names, with every problem reported.
//!
//! No file, network or credential is touched here, so `check-config` gives the same
//! answer on a laptop as on the production host. Whether model files exist is checked
//! when the pipeline loads them.

use std::path::Path;

use super::error::{join_key, ConfigError};
use super::{
    AlprParams, CameraConfig, Config, DetectorConfig, FireSmokeParams, KvsMode, PublishersConfig,
    SchedulerConfig, SourceRef, WeaponParams, YoloParams,
};

/// Largest batch any engine is asked to run.
pub const MAX_BATCH_SIZE_LIMIT: u32 = 1024;
/// Records per Kinesis `PutRecords` call, the API's limit.
pub const KDS_MAX_BATCH: u32 = 500;

/// Every problem in `config`, in document order.
pub fn validate(config: &Config) -> Vec<ConfigError> {
    let mut v = Validator::default();
    v.scheduler(&config.scheduler);
    v.range_u64(
        "shutdown.deadline_ms",
        config.shutdown.deadline_ms,
        100,
        600_000,
    );
    v.range_u64("engine.instances", config.engine.instances.into(), 0, 64);
    v.range_u64(
        "engine.intra_threads",
        config.engine.intra_threads.into(),
        0,
        256,
    );
    v.range_u64("engine.device_id", config.engine.device_id.into(), 0, 63);
    v.range_u64(
        "decode.extra_surfaces",
        config.decode.extra_surfaces.into(),
        0,
        16,
    );
    v.publishers(&config.publishers);
    for (id, camera) in &config.cameras {
        v.camera(id, camera);
    }
    v.errors
}

/// Every problem in one detector's params, located under `path` (`….params`).
pub(crate) fn validate_detector(path: &str, detector: &DetectorConfig) -> Vec<ConfigError> {
    let mut v = Validator::default();
    v.detector(path, detector);
    v.errors
}

#[derive(Default)]
struct Validator {
    errors: Vec<ConfigError>,
}

impl Validator {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError::new(path, message));
    }

    fn scheduler(&mut self, s: &SchedulerConfig) {
        self.range_u64(
            "scheduler.max_batch_size",
            s.max_batch_size.into(),
            1,
            MAX_BATCH_SIZE_LIMIT.into(),
        );
        if s.preferred_batch_size == 0 || s.preferred_batch_size > s.max_batch_size {
            self.push(
                "scheduler.preferred_batch_size",
                format!(
                    "{} is not in 1..=max_batch_size ({})",
                    s.preferred_batch_size, s.max_batch_size
                ),
            );
        }
        self.range_u64(
            "scheduler.max_staleness_ms",
            s.max_staleness_ms,
            1,
            3_600_000,
        );
        if s.max_queue_delay_ms >= s.max_staleness_ms {
            self.push(
                "scheduler.max_queue_delay_ms",
                format!(
                    "{} must be less than max_staleness_ms ({}), or waiting frames go stale",
                    s.max_queue_delay_ms, s.max_staleness_ms
                ),
            );
        }
    }

    fn publishers(&mut self, p: &PublishersConfig) {
        if let Some(local) = &p.local {
            if local.dir.as_os_str().is_empty() {
                self.push("publishers.local.dir", "must not be empty");
            }
        }
        if let Some(kds) = &p.kds {
            self.aws_name(
                "publishers.kds.stream_name",
                &kds.stream_name,
                1,
                128,
                "letters, digits, '_', '-' and '.'",
            );
            self.range_u64(
                "publishers.kds.batch_size",
                kds.batch_size.into(),
                1,
                KDS_MAX_BATCH.into(),
            );
            self.range_u64("publishers.kds.max_retries", kds.max_retries.into(), 0, 100);
            self.range_u64(
                "publishers.kds.base_backoff_ms",
                kds.base_backoff_ms,
                1,
                60_000,
            );
            self.range_u64(
                "publishers.kds.queue_size",
                kds.queue_size.into(),
                1,
                10_000_000,
            );
            self.region("publishers.kds.region", kds.region.as_deref());
            self.endpoint("publishers.kds.endpoint_url", kds.endpoint_url.as_deref());
        }
        if let Some(s3) = &p.s3 {
            self.bucket("publishers.s3.bucket", &s3.bucket);
            self.range_u64("publishers.s3.jpeg_quality", s3.jpeg_quality.into(), 1, 100);
            if s3.prefix.starts_with('/')
                || s3.prefix.contains("//")
                || s3.prefix.split('/').any(|seg| seg == ".." || seg == ".")
            {
                self.push(
                    "publishers.s3.prefix",
                    format!(
                        "{:?} must be a relative key prefix without empty, '.' or '..' segments",
                        s3.prefix
                    ),
                );
            }
            self.range_u64(
                "publishers.s3.queue_size",
                s3.queue_size.into(),
                1,
                1_000_000,
            );
            self.region("publishers.s3.region", s3.region.as_deref());
            self.endpoint("publishers.s3.endpoint_url", s3.endpoint_url.as_deref());
        }
        if let Some(ddb) = &p.ddb {
            self.aws_name(
                "publishers.ddb.table_name",
                &ddb.table_name,
                3,
                255,
                "letters, digits, '_', '-' and '.'",
            );
            self.range_u64("publishers.ddb.ttl_days", ddb.ttl_days.into(), 1, 3650);
            self.range_u64(
                "publishers.ddb.queue_size",
                ddb.queue_size.into(),
                1,
                10_000_000,
            );
            self.region("publishers.ddb.region", ddb.region.as_deref());
            self.endpoint("publishers.ddb.endpoint_url", ddb.endpoint_url.as_deref());
        }
    }

    fn camera(&mut self, id: &str, camera: &CameraConfig) {
        let path = join_key("cameras", id);
        if id.is_empty() || id.len() > 128 || id.chars().any(char::is_control) {
            self.push(
                &path,
                "camera id must be 1 to 128 characters without control characters",
            );
        }
        let sources = camera.sources();
        if sources.len() > 1 {
            let names: Vec<_> = sources.iter().map(SourceRef::kind).collect();
            self.push(
                &path,
                format!(
                    "has {} sources ({}); a camera reads exactly one",
                    names.len(),
                    names.join(", ")
                ),
            );
        }
        if camera.enabled {
            if sources.is_empty() {
                self.push(
                    &path,
                    "has no source; add one of the tables kvs, file, rtsp or synthetic",
                );
            }
            if camera.detectors.is_empty() {
                self.push(
                    format!("{path}.detectors"),
                    "an enabled camera needs at least one detector",
                );
            }
        }
        self.range_f64(
            &format!("{path}.fps_target"),
            camera.fps_target,
            0.0,
            120.0,
            false,
        );
        for source in sources {
            self.source(&format!("{path}.{}", source.kind()), source);
        }
        for (i, detector) in camera.detectors.iter().enumerate() {
            self.detector(&format!("{path}.detectors[{i}].params"), detector);
        }
    }

    fn source(&mut self, path: &str, source: SourceRef<'_>) {
        match source {
            SourceRef::Kvs(kvs) => {
                self.aws_name(
                    &format!("{path}.stream_name"),
                    &kvs.stream_name,
                    1,
                    256,
                    "letters, digits, '_', '-' and '.'",
                );
                self.range_f64(
                    &format!("{path}.retry_delay_sec"),
                    kvs.retry_delay_sec,
                    0.0,
                    3600.0,
                    false,
                );
                self.range_f64(
                    &format!("{path}.stall_timeout_sec"),
                    kvs.stall_timeout_sec,
                    1.0,
                    3600.0,
                    true,
                );
                if !(300..=43_200).contains(&kvs.session_expires_sec) {
                    self.push(
                        format!("{path}.session_expires_sec"),
                        format!("{} is not in 300..=43200", kvs.session_expires_sec),
                    );
                }
                match (kvs.start_timestamp_ms, kvs.end_timestamp_ms) {
                    (None, Some(_)) => self.push(
                        format!("{path}.end_timestamp_ms"),
                        "needs start_timestamp_ms",
                    ),
                    (Some(start), Some(end)) if end <= start => self.push(
                        format!("{path}.end_timestamp_ms"),
                        format!("{end} is not after start_timestamp_ms ({start})"),
                    ),
                    (Some(_), Some(_)) if kvs.mode == KvsMode::Getmedia => self.push(
                        format!("{path}.end_timestamp_ms"),
                        "is for mode = \"hls\" (GetMedia plays on from its start)",
                    ),
                    _ => {}
                }
                if let Some(start) = kvs.start_timestamp_ms {
                    if start < 0 {
                        self.push(
                            format!("{path}.start_timestamp_ms"),
                            format!("{start} is not an epoch time in milliseconds"),
                        );
                    }
                }
                self.region(&format!("{path}.region"), kvs.region.as_deref());
                self.endpoint(&format!("{path}.endpoint_url"), kvs.endpoint_url.as_deref());
            }
            SourceRef::File(file) => {
                if file.path.as_os_str().is_empty() {
                    self.push(format!("{path}.path"), "must not be empty");
                }
            }
            SourceRef::Rtsp(rtsp) => {
                let rest = rtsp
                    .url
                    .strip_prefix("rtsp://")
                    .or_else(|| rtsp.url.strip_prefix("rtsps://"));
                let host = rest.and_then(|r| r.rsplit('@').next()).unwrap_or("");
                if host.is_empty() || host.starts_with('/') || host.starts_with(':') {
                    self.push(
                        format!("{path}.url"),
                        "must be an rtsp:// or rtsps:// URL with a host",
                    );
                }
                if rtsp.password.is_some() && rtsp.username.is_none() {
                    self.push(format!("{path}.password"), "needs username");
                }
                self.range_f64(
                    &format!("{path}.retry_delay_sec"),
                    rtsp.retry_delay_sec,
                    0.0,
                    3600.0,
                    false,
                );
                self.range_f64(
                    &format!("{path}.stall_timeout_sec"),
                    rtsp.stall_timeout_sec,
                    1.0,
                    3600.0,
                    true,
                );
            }
            SourceRef::Synthetic(s) => {
                for (name, value) in [("width", s.width), ("height", s.height)] {
                    if !(16..=8192).contains(&value) || value % 2 != 0 {
                        self.push(
                            format!("{path}.{name}"),
                            format!("{value} is not an even number in 16..=8192"),
                        );
                    }
                }
                self.range_f64(&format!("{path}.fps"), s.fps, 0.0, 240.0, false);
            }
        }
    }

    fn detector(&mut self, path: &str, detector: &DetectorConfig) {
        match detector {
            DetectorConfig::Weapon(WeaponParams {
                model_path,
                conf_threshold,
                target_classes,
                temporal_window,
                confirmation_threshold,
                cooldown_sec,
            }) => {
                self.cooldown(path, *cooldown_sec);
                self.model(&format!("{path}.model_path"), model_path);
                self.unit(&format!("{path}.conf_threshold"), *conf_threshold);
                if target_classes.is_empty() {
                    self.push(
                        format!("{path}.target_classes"),
                        "must name at least one class",
                    );
                }
                self.class_names(&format!("{path}.target_classes"), target_classes);
                self.confirmation(path, *temporal_window, *confirmation_threshold);
            }
            DetectorConfig::FireSmoke(FireSmokeParams {
                model_path,
                fire_conf_threshold,
                smoke_conf_threshold,
                temporal_window,
                confirmation_threshold,
                cooldown_sec,
            }) => {
                self.cooldown(path, *cooldown_sec);
                self.model(&format!("{path}.model_path"), model_path);
                self.unit(&format!("{path}.fire_conf_threshold"), *fire_conf_threshold);
                self.unit(
                    &format!("{path}.smoke_conf_threshold"),
                    *smoke_conf_threshold,
                );
                self.confirmation(path, *temporal_window, *confirmation_threshold);
            }
            DetectorConfig::Alpr(AlprParams {
                detector_model_path,
                ocr_engine: _,
                ocr_model_path,
                conf_threshold,
                min_text_length,
                cooldown_sec,
            }) => {
                self.cooldown(path, *cooldown_sec);
                self.model(&format!("{path}.detector_model_path"), detector_model_path);
                if let Some(ocr) = ocr_model_path {
                    self.model(&format!("{path}.ocr_model_path"), ocr);
                }
                self.unit(&format!("{path}.conf_threshold"), *conf_threshold);
                self.range_u64(
                    &format!("{path}.min_text_length"),
                    (*min_text_length).into(),
                    1,
                    20,
                );
            }
            DetectorConfig::Yolo(YoloParams {
                model_path,
                conf_threshold,
                iou_threshold,
                classes,
                cooldown_sec,
            }) => {
                self.cooldown(path, *cooldown_sec);
                self.model(&format!("{path}.model_path"), model_path);
                self.unit(&format!("{path}.conf_threshold"), *conf_threshold);
                self.unit(&format!("{path}.iou_threshold"), *iou_threshold);
                if let Some(classes) = classes {
                    if classes.is_empty() {
                        self.push(
                            format!("{path}.classes"),
                            "must name at least one class, or be left out for all classes",
                        );
                    }
                    self.class_names(&format!("{path}.classes"), classes);
                }
            }
        }
    }

    fn cooldown(&mut self, path: &str, seconds: f64) {
        self.range_f64(
            &format!("{path}.cooldown_sec"),
            seconds,
            0.0,
            86_400.0,
            true,
        );
    }

    fn confirmation(&mut self, path: &str, window: u32, threshold: u32) {
        self.range_u64(&format!("{path}.temporal_window"), window.into(), 1, 1000);
        if threshold == 0 || threshold > window {
            self.push(
                format!("{path}.confirmation_threshold"),
                format!("{threshold} is not in 1..=temporal_window ({window})"),
            );
        }
    }

    fn class_names(&mut self, path: &str, names: &[String]) {
        for (i, name) in names.iter().enumerate() {
            if name.trim().is_empty() {
                self.push(format!("{path}[{i}]"), "class name must not be empty");
            }
        }
    }

    /// Models are ONNX; a PyTorch checkpoint gets the export command.
    fn model(&mut self, path: &str, model: &Path) {
        let ext = model
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("onnx") => {}
            Some("pt") | Some("pth") => self.push(
                path,
                format!(
                    "{} is a PyTorch checkpoint; kvs-infer loads ONNX. Export it with \
                     `yolo export model={} format=onnx dynamic=True` and point this at the .onnx file",
                    model.display(),
                    model.display()
                ),
            ),
            _ => self.push(
                path,
                format!("{} is not an ONNX model (expected a .onnx file)", model.display()),
            ),
        }
    }

    fn unit(&mut self, path: &str, value: f64) {
        if !(0.0..=1.0).contains(&value) {
            self.push(path, format!("{value} is not in 0..=1"));
        }
    }

    fn range_u64(&mut self, path: &str, value: u64, min: u64, max: u64) {
        if !(min..=max).contains(&value) {
            self.push(path, format!("{value} is not in {min}..={max}"));
        }
    }

    /// `value` must be finite and in (min, max] (`min_inclusive = false`) or [min, max].
    fn range_f64(&mut self, path: &str, value: f64, min: f64, max: f64, min_inclusive: bool) {
        let above_min = if min_inclusive {
            value >= min
        } else {
            value > min
        };
        if !value.is_finite() || !above_min || value > max {
            let open = if min_inclusive { "" } else { " (exclusive)" };
            self.push(path, format!("{value} is not in {min}{open}..={max}"));
        }
    }

    fn aws_name(&mut self, path: &str, name: &str, min: usize, max: usize, allowed: &str) {
        let ok = (min..=max).contains(&name.len())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !ok {
            self.push(
                path,
                format!("{name:?} must be {min} to {max} characters: {allowed}"),
            );
        }
    }

    fn bucket(&mut self, path: &str, bucket: &str) {
        let ok = (3..=63).contains(&bucket.len())
            && bucket
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
            && bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
            && bucket.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !ok {
            self.push(
                path,
                format!(
                    "{bucket:?} is not a valid S3 bucket name (3 to 63 lowercase letters, \
                     digits, '.' and '-', starting and ending with a letter or digit)"
                ),
            );
        }
    }

    fn region(&mut self, path: &str, region: Option<&str>) {
        let Some(region) = region else { return };
        let ok = !region.is_empty()
            && region.len() <= 32
            && region
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && region.contains('-');
        if !ok {
            self.push(
                path,
                format!("{region:?} is not an AWS region name (like us-east-1)"),
            );
        }
    }

    fn endpoint(&mut self, path: &str, url: Option<&str>) {
        let Some(url) = url else { return };
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"));
        if rest.is_none_or(|r| r.is_empty() || r.starts_with('/')) {
            self.push(path, format!("{url:?} must be an http:// or https:// URL"));
        }
    }
}

#[cfg(test)]
mod tests;
