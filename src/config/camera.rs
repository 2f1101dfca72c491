//! The camera half of the configuration schema: `[cameras.<id>]`, its source (KVS,
//! RTSP, file, synthetic) and its detectors with their parameters. Defaults live beside
//! their fields, as in [`super::schema`]; checks are in [`super::validate`].

use std::path::PathBuf;

use serde::Deserialize;

use super::schema::yes;

/// `[cameras.<id>]`: one camera, its source and its detectors.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraConfig {
    /// On unless set to false; a disabled camera needs no source.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Frames per second handed to the detectors (evenly spaced).
    #[serde(default = "default_fps_target")]
    pub fps_target: f64,
    /// Kinesis Video Streams source.
    pub kvs: Option<KvsSourceConfig>,
    /// File source (MP4, MKV, MPEG-TS).
    pub file: Option<FileSourceConfig>,
    /// RTSP source.
    pub rtsp: Option<RtspSourceConfig>,
    /// Generated frames, for load tests.
    pub synthetic: Option<SyntheticSourceConfig>,
    /// Detectors; parsed one by one by the loader so each error keeps its own path.
    #[serde(skip)]
    pub detectors: Vec<DetectorConfig>,
}

fn default_fps_target() -> f64 {
    5.0
}

/// The source a camera reads, once validation has checked there is exactly one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SourceRef<'a> {
    /// Kinesis Video Streams.
    Kvs(&'a KvsSourceConfig),
    /// A file.
    File(&'a FileSourceConfig),
    /// RTSP.
    Rtsp(&'a RtspSourceConfig),
    /// Synthetic frames.
    Synthetic(&'a SyntheticSourceConfig),
}

impl CameraConfig {
    /// Every source table present, in a fixed order.
    pub fn sources(&self) -> Vec<SourceRef<'_>> {
        let mut out = Vec::with_capacity(1);
        if let Some(s) = &self.kvs {
            out.push(SourceRef::Kvs(s));
        }
        if let Some(s) = &self.file {
            out.push(SourceRef::File(s));
        }
        if let Some(s) = &self.rtsp {
            out.push(SourceRef::Rtsp(s));
        }
        if let Some(s) = &self.synthetic {
            out.push(SourceRef::Synthetic(s));
        }
        out
    }

    /// The camera's one source, if it has exactly one.
    pub fn source(&self) -> Option<SourceRef<'_>> {
        match self.sources().as_slice() {
            [one] => Some(*one),
            _ => None,
        }
    }
}

impl SourceRef<'_> {
    /// The source's table name in the config.
    pub fn kind(&self) -> &'static str {
        match self {
            SourceRef::Kvs(_) => "kvs",
            SourceRef::File(_) => "file",
            SourceRef::Rtsp(_) => "rtsp",
            SourceRef::Synthetic(_) => "synthetic",
        }
    }
}

/// `[cameras.<id>.kvs]`: a Kinesis Video stream.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KvsSourceConfig {
    /// Stream name.
    pub stream_name: String,
    /// AWS region; the standard AWS chain when absent.
    pub region: Option<String>,
    /// Where playback starts.
    #[serde(default)]
    pub start_fragment_mode: StartFragmentMode,
    /// Reconnect attempts before the camera is marked failed; unlimited when absent.
    pub max_retries: Option<u32>,
    /// First reconnect delay; doubles per failure, with jitter.
    #[serde(default = "default_retry_delay_sec")]
    pub retry_delay_sec: f64,
    /// No frame for this long counts as a failure (and a reconnect).
    #[serde(default = "default_stall_timeout_sec")]
    pub stall_timeout_sec: f64,
    /// Endpoint override for the KVS control plane.
    pub endpoint_url: Option<String>,
    /// How media is read: HLS (the default) or GetMedia (lower latency).
    #[serde(default)]
    pub mode: KvsMode,
    /// Container of HLS segments.
    #[serde(default)]
    pub container: HlsContainer,
    /// Lifetime asked for each HLS session URL (300..=43200); a new one is fetched
    /// before it expires.
    #[serde(default = "default_session_expires_sec")]
    pub session_expires_sec: u32,
    /// Play recorded video from this producer time (epoch ms) instead of live: HLS
    /// on-demand, or GetMedia from this timestamp.
    pub start_timestamp_ms: Option<i64>,
    /// With `start_timestamp_ms`, where HLS on-demand playback ends (epoch ms).
    pub end_timestamp_ms: Option<i64>,
}

fn default_retry_delay_sec() -> f64 {
    5.0
}
fn default_stall_timeout_sec() -> f64 {
    20.0
}
fn default_session_expires_sec() -> u32 {
    300
}

/// How a KVS camera is read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KvsMode {
    /// `GetHLSStreamingSessionURL` and segment polling: the seed's path.
    #[default]
    Hls,
    /// `GetMedia`: one long MKV response, lower latency.
    Getmedia,
}

/// The container KVS packs HLS segments in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HlsContainer {
    /// `FRAGMENTED_MP4`, KVS's default.
    #[default]
    Fmp4,
    /// `MPEG_TS`.
    Mpegts,
}

/// Where KVS playback starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StartFragmentMode {
    /// Live, from the newest fragment.
    #[default]
    Now,
    /// From the oldest retained fragment.
    Earliest,
}

/// `[cameras.<id>.file]`: a video file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSourceConfig {
    /// MP4, MKV or MPEG-TS file.
    pub path: PathBuf,
    /// Restart at the end.
    #[serde(default, rename = "loop")]
    pub loop_: bool,
    /// Pace at the clip's frame rate (a live camera); false reads as fast as downstream takes.
    #[serde(default = "yes")]
    pub realtime: bool,
}

/// `[cameras.<id>.rtsp]`: an RTSP camera.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RtspSourceConfig {
    /// `rtsp://` or `rtsps://` URL, credentials allowed.
    pub url: String,
    /// User name, when not in the URL.
    pub username: Option<String>,
    /// Password, when not in the URL.
    pub password: Option<String>,
    /// `tcp` (interleaved, the default) or `udp`.
    #[serde(default)]
    pub transport: RtspTransport,
    /// Reconnect attempts before the camera is marked failed; unlimited when absent.
    pub max_retries: Option<u32>,
    /// First reconnect delay; doubles per failure, with jitter.
    #[serde(default = "default_rtsp_retry_delay_sec")]
    pub retry_delay_sec: f64,
    /// No frame for this long counts as a failure (and a reconnect).
    #[serde(default = "default_rtsp_stall_timeout_sec")]
    pub stall_timeout_sec: f64,
}

fn default_rtsp_retry_delay_sec() -> f64 {
    1.0
}
fn default_rtsp_stall_timeout_sec() -> f64 {
    10.0
}

/// RTP transport for RTSP.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RtspTransport {
    /// RTP interleaved on the RTSP TCP connection.
    #[default]
    Tcp,
    /// RTP over UDP (LAN only: no reordering).
    Udp,
}

/// `[cameras.<id>.synthetic]`: generated frames for load tests.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyntheticSourceConfig {
    /// Frame width in pixels.
    #[serde(default = "default_synthetic_width")]
    pub width: u32,
    /// Frame height in pixels.
    #[serde(default = "default_synthetic_height")]
    pub height: u32,
    /// Frames per second generated.
    #[serde(default = "default_synthetic_fps")]
    pub fps: f64,
}

fn default_synthetic_width() -> u32 {
    1280
}
fn default_synthetic_height() -> u32 {
    720
}
fn default_synthetic_fps() -> f64 {
    25.0
}

/// One `[[cameras.<id>.detectors]]` entry: `type` picks the params' shape.
#[derive(Debug, Clone, PartialEq)]
pub enum DetectorConfig {
    /// Weapons, with temporal confirmation.
    Weapon(WeaponParams),
    /// Fire and smoke.
    FireSmoke(FireSmokeParams),
    /// License plates: detector, then OCR.
    Alpr(AlprParams),
    /// Any YOLO model.
    Yolo(YoloParams),
}

impl DetectorConfig {
    /// Every detector type name accepted in `type`.
    pub const TYPES: [&'static str; 4] = ["weapon", "fire_smoke", "alpr", "yolo"];

    /// The `type` name of this detector.
    pub fn type_name(&self) -> &'static str {
        match self {
            DetectorConfig::Weapon(_) => "weapon",
            DetectorConfig::FireSmoke(_) => "fire_smoke",
            DetectorConfig::Alpr(_) => "alpr",
            DetectorConfig::Yolo(_) => "yolo",
        }
    }

    /// The event types this detector can emit (for metric labels).
    pub fn event_types(&self) -> &'static [&'static str] {
        match self {
            DetectorConfig::Weapon(_) => &["weapon"],
            DetectorConfig::FireSmoke(_) => &["fire", "smoke"],
            DetectorConfig::Alpr(_) => &["alpr"],
            DetectorConfig::Yolo(_) => &["yolo"],
        }
    }
}

/// `type = "weapon"` params.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeaponParams {
    /// ONNX model.
    pub model_path: PathBuf,
    /// Minimum detection confidence (0..=1).
    #[serde(default = "default_conf_threshold")]
    pub conf_threshold: f64,
    /// Class names (from the model's metadata) that count as weapons.
    pub target_classes: Vec<String>,
    /// M: how many recent processed frames are considered.
    #[serde(default = "default_temporal_window")]
    pub temporal_window: u32,
    /// N: frames out of the last M that must contain a target.
    #[serde(default = "default_confirmation_threshold")]
    pub confirmation_threshold: u32,
    /// A tracked object emits again at most this often (frame time); 0 = every frame.
    #[serde(default = "default_cooldown_sec")]
    pub cooldown_sec: f64,
}

fn default_conf_threshold() -> f64 {
    0.5
}
fn default_temporal_window() -> u32 {
    5
}
fn default_confirmation_threshold() -> u32 {
    3
}
fn one() -> u32 {
    1
}
fn default_cooldown_sec() -> f64 {
    10.0
}

/// `type = "fire_smoke"` params.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FireSmokeParams {
    /// ONNX model (classes `fire` and `smoke`).
    pub model_path: PathBuf,
    /// Minimum confidence for `fire` (0..=1).
    #[serde(default = "default_conf_threshold")]
    pub fire_conf_threshold: f64,
    /// Minimum confidence for `smoke` (0..=1).
    #[serde(default = "default_conf_threshold")]
    pub smoke_conf_threshold: f64,
    /// M frames considered for confirmation (1 = no confirmation).
    #[serde(default = "one")]
    pub temporal_window: u32,
    /// N frames of M needed.
    #[serde(default = "one")]
    pub confirmation_threshold: u32,
    /// A tracked object emits again at most this often (frame time); 0 = every frame.
    #[serde(default = "default_cooldown_sec")]
    pub cooldown_sec: f64,
}

/// `type = "alpr"` params.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlprParams {
    /// ONNX plate detector.
    pub detector_model_path: PathBuf,
    /// OCR engine for the second stage.
    #[serde(default)]
    pub ocr_engine: OcrEngine,
    /// ONNX recogniser; the PP-OCR default when absent.
    pub ocr_model_path: Option<PathBuf>,
    /// Minimum plate confidence (0..=1).
    #[serde(default = "default_conf_threshold")]
    pub conf_threshold: f64,
    /// Shorter plate texts are discarded.
    #[serde(default = "default_min_text_length")]
    pub min_text_length: u32,
    /// A tracked plate emits again at most this often (frame time); 0 = every frame.
    #[serde(default = "default_cooldown_sec")]
    pub cooldown_sec: f64,
}

/// Where the PP-OCR recogniser is looked for when `ocr_model_path` is not set
/// (`scripts/fetch-assets.sh` puts it there).
pub const DEFAULT_OCR_MODEL_PATH: &str = ".cache/models/ppocr-v4-rec.onnx";

impl AlprParams {
    /// The OCR model: the configured path, or [`DEFAULT_OCR_MODEL_PATH`].
    pub fn ocr_model(&self) -> PathBuf {
        self.ocr_model_path
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_OCR_MODEL_PATH))
    }
}

fn default_min_text_length() -> u32 {
    4
}

/// OCR engines for ALPR.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OcrEngine {
    /// The PP-OCR recogniser as ONNX, CTC-decoded.
    #[default]
    Paddleocr,
}

/// `type = "yolo"` params.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct YoloParams {
    /// ONNX model.
    pub model_path: PathBuf,
    /// Minimum detection confidence (0..=1).
    #[serde(default = "default_yolo_conf_threshold")]
    pub conf_threshold: f64,
    /// IoU above which NMS suppresses a box (0..=1).
    #[serde(default = "default_iou_threshold")]
    pub iou_threshold: f64,
    /// Only these class names make events; all classes when absent.
    pub classes: Option<Vec<String>>,
    /// A tracked object emits again at most this often (frame time); 0 = every frame.
    #[serde(default = "default_cooldown_sec")]
    pub cooldown_sec: f64,
}

fn default_yolo_conf_threshold() -> f64 {
    0.25
}
fn default_iou_threshold() -> f64 {
    0.45
}
