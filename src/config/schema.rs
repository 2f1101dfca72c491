//! The configuration schema: one set of serde types for both TOML and the seed's YAML.
//! This file holds the top-level sections; cameras are in [`super::camera`].
//!
//! Every struct denies unknown keys. Defaults live here, beside the field they belong
//! to, so `docs/configuration.md` and the code read the same. Range and consistency
//! checks are not here: they are in [`super::validate`], which collects every problem.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::camera::CameraConfig;

/// The whole server configuration.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    /// How frames from all cameras are packed into batches.
    pub scheduler: SchedulerConfig,
    /// Which inference backend runs the batches.
    pub engine: EngineConfig,
    /// Where video is decoded.
    pub decode: DecodeConfig,
    /// Where events go.
    pub publishers: PublishersConfig,
    /// How the server stops.
    pub shutdown: ShutdownConfig,
    /// Cameras by id, in id order.
    pub cameras: BTreeMap<String, CameraConfig>,
}

impl Config {
    /// The cameras that are enabled, in id order.
    pub fn enabled_cameras(&self) -> impl Iterator<Item = (&String, &CameraConfig)> {
        self.cameras.iter().filter(|(_, c)| c.enabled)
    }
}

/// `[scheduler]`: dynamic batching across cameras (DESIGN §3a).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulerConfig {
    /// Largest batch handed to an engine.
    pub max_batch_size: u32,
    /// Batch size worth waiting for (at most `max_queue_delay_ms`).
    pub preferred_batch_size: u32,
    /// Longest time the oldest queued frame waits for a fuller batch.
    pub max_queue_delay_ms: u64,
    /// Frames older than this are dropped (reason `stale`) rather than run late.
    pub max_staleness_ms: u64,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            max_batch_size: 8,
            preferred_batch_size: 4,
            max_queue_delay_ms: 50,
            max_staleness_ms: 2000,
        }
    }
}

/// `[engine]`: the inference backend.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Which backend to use; `auto` picks the GPU when usable.
    pub backend: Backend,
    /// Engine instances per model pulling from its queue; 0 = one per CPU core, up to 4.
    pub instances: u32,
    /// Threads inside each CPU engine instance; 0 = cores / instances.
    pub intra_threads: u32,
    /// GPU ordinal the GPU engines run on.
    pub device_id: u32,
    /// Let TensorRT build fp16 kernels (where faster; outputs stay fp32).
    pub fp16: bool,
    /// Where built TensorRT engines are cached, keyed by model, GPU and TensorRT.
    pub engines_dir: std::path::PathBuf,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            backend: Backend::Auto,
            instances: 0,
            intra_threads: 0,
            device_id: 0,
            fp16: true,
            engines_dir: "engines".into(),
        }
    }
}

/// `[decode]`: where cameras' video is decoded.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DecodeConfig {
    /// `auto`: NVDEC when the host has it, else the CPU.
    pub backend: DecodeBackend,
    /// NVDEC surfaces per camera beyond what the stream's codec needs.
    pub extra_surfaces: u32,
}

impl Default for DecodeConfig {
    fn default() -> Self {
        Self {
            backend: DecodeBackend::Auto,
            extra_surfaces: 4,
        }
    }
}

/// Decoders.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DecodeBackend {
    /// NVDEC when the host has a GPU and its decoder library, the CPU otherwise; a
    /// camera whose NVDEC decoding fails falls back to the CPU.
    #[default]
    Auto,
    /// libavcodec on the CPU.
    Cpu,
    /// NVDEC (GPU engine `engine.device_id`); a start-up error where it is absent.
    Nvdec,
}

impl std::str::FromStr for DecodeBackend {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        [
            DecodeBackend::Auto,
            DecodeBackend::Cpu,
            DecodeBackend::Nvdec,
        ]
        .into_iter()
        .find(|b| b.as_str() == s)
        .ok_or_else(|| format!("unknown decoder {s:?} (auto, cpu, nvdec)"))
    }
}

impl DecodeBackend {
    /// The name as the config writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            DecodeBackend::Auto => "auto",
            DecodeBackend::Cpu => "cpu",
            DecodeBackend::Nvdec => "nvdec",
        }
    }
}

/// Inference backends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// The GPU when one is usable, the CPU otherwise (and the log says why).
    #[default]
    Auto,
    /// ONNX Runtime on the CPU.
    Cpu,
    /// ONNX Runtime with CUDA; a start-up error without a usable GPU.
    Cuda,
    /// TensorRT engines (through ONNX Runtime's TensorRT provider); a start-up error
    /// without a usable GPU and TensorRT.
    Tensorrt,
}

impl std::str::FromStr for Backend {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        [
            Backend::Auto,
            Backend::Cpu,
            Backend::Cuda,
            Backend::Tensorrt,
        ]
        .into_iter()
        .find(|b| b.as_str() == s)
        .ok_or_else(|| format!("unknown backend {s:?} (auto, cpu, cuda, tensorrt)"))
    }
}

impl Backend {
    /// The name as the config writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Auto => "auto",
            Backend::Cpu => "cpu",
            Backend::Cuda => "cuda",
            Backend::Tensorrt => "tensorrt",
        }
    }
}

/// `[shutdown]`: how long a signal may take to flush everything.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownConfig {
    /// Deadline for draining batches and flushing publishers after a signal.
    pub deadline_ms: u64,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self {
            deadline_ms: 10_000,
        }
    }
}

/// `[publishers]`: each sink is off unless its table is present (and not disabled).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PublishersConfig {
    /// Local JSONL events and snapshot files.
    pub local: Option<LocalPublisherConfig>,
    /// Kinesis Data Streams.
    pub kds: Option<KdsPublisherConfig>,
    /// S3 snapshots.
    pub s3: Option<S3PublisherConfig>,
    /// DynamoDB event items.
    pub ddb: Option<DdbPublisherConfig>,
}

/// serde's default for flags that are on unless turned off.
pub(super) fn yes() -> bool {
    true
}

/// `[publishers.local]`: `events.jsonl` and `snapshots/` under `dir`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalPublisherConfig {
    /// On when the table is present, unless set to false.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Output directory.
    #[serde(default = "default_local_dir")]
    pub dir: PathBuf,
    /// Save a JPEG snapshot with boxes drawn for each event (on by default).
    #[serde(default = "yes")]
    pub save_snapshots: bool,
}

fn default_local_dir() -> PathBuf {
    PathBuf::from("output")
}

/// `[publishers.kds]`: Kinesis Data Streams `PutRecords`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KdsPublisherConfig {
    /// On when the table is present, unless set to false.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// AWS region; the standard AWS chain when absent.
    pub region: Option<String>,
    /// Target stream.
    pub stream_name: String,
    /// Records per `PutRecords` call (1..=500).
    #[serde(default = "default_kds_batch_size")]
    pub batch_size: u32,
    /// Quick retries per attempt.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// First backoff step; doubles per retry, with jitter.
    #[serde(default = "default_base_backoff_ms")]
    pub base_backoff_ms: u64,
    /// Endpoint override for a local emulator.
    pub endpoint_url: Option<String>,
    /// Events held while the sink is unreachable; beyond it the oldest are given up.
    #[serde(default = "default_queue_size")]
    pub queue_size: u32,
}

fn default_queue_size() -> u32 {
    10_000
}

fn default_kds_batch_size() -> u32 {
    500
}
fn default_max_retries() -> u32 {
    3
}
fn default_base_backoff_ms() -> u64 {
    100
}

/// `[publishers.s3]`: JPEG snapshots with boxes drawn.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3PublisherConfig {
    /// On when the table is present, unless set to false.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// AWS region; the standard AWS chain when absent.
    pub region: Option<String>,
    /// Target bucket.
    pub bucket: String,
    /// Key prefix.
    #[serde(default = "default_s3_prefix")]
    pub prefix: String,
    /// JPEG quality (1..=100).
    #[serde(default = "default_jpeg_quality")]
    pub jpeg_quality: u8,
    /// Save a snapshot for each frame with events.
    #[serde(default = "yes")]
    pub save_snapshots: bool,
    /// Endpoint override for a local emulator (path-style addressing).
    pub endpoint_url: Option<String>,
    /// Snapshots held while the sink is unreachable; beyond it the oldest are given up.
    #[serde(default = "default_s3_queue_size")]
    pub queue_size: u32,
}

fn default_s3_queue_size() -> u32 {
    1_000
}

fn default_s3_prefix() -> String {
    "snapshots".to_owned()
}
fn default_jpeg_quality() -> u8 {
    90
}

/// `[publishers.ddb]`: DynamoDB `BatchWriteItem`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DdbPublisherConfig {
    /// On when the table is present, unless set to false.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// AWS region; the standard AWS chain when absent.
    pub region: Option<String>,
    /// Target table.
    pub table_name: String,
    /// Items expire this many days after they are written.
    #[serde(default = "default_ttl_days")]
    pub ttl_days: u32,
    /// Endpoint override for a local emulator.
    pub endpoint_url: Option<String>,
    /// Events held while the sink is unreachable; beyond it the oldest are given up.
    #[serde(default = "default_queue_size")]
    pub queue_size: u32,
}

fn default_ttl_days() -> u32 {
    30
}
