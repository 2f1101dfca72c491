//! The command line: `kvs-infer [--config PATH] [--http ADDR]` runs the server;
//! `kvs-infer check-config --config PATH` validates a config and exits 0 or 2.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::shard::Shard;

/// GPU-first, batched, multi-camera video inference server.
///
/// Without --config it runs the embedded demo config (CPU, local files).
/// LOG_LEVEL (DEBUG, INFO, WARNING, ERROR, CRITICAL) sets the log level; logs are JSON
/// on stdout.
#[derive(Debug, Parser)]
#[command(name = "kvs-infer", version = crate::VERSION, about, long_about)]
pub struct Cli {
    /// Config file (.toml, or the seed's .yaml); the embedded demo config when absent.
    #[arg(long, value_name = "PATH", env = "KVS_INFER_CONFIG")]
    pub config: Option<PathBuf>,

    /// Address the HTTP server (/healthz, /readyz, /metrics) listens on.
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "0.0.0.0:8080",
        env = "KVS_INFER_HTTP"
    )]
    pub http: SocketAddr,

    /// Serve only this replica's share of the enabled cameras: INDEX/COUNT, where
    /// INDEX may be `hostname` (the trailing number of $HOSTNAME, a StatefulSet
    /// ordinal). Ownership is a stable hash of the camera id.
    #[arg(
        long,
        value_name = "INDEX/COUNT",
        default_value = "0/1",
        env = "KVS_INFER_SHARD"
    )]
    pub shard: Shard,

    /// An operator command instead of running the server.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Operator commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate a config without touching files, network or credentials: exit 0 when
    /// valid, 2 with every problem listed.
    CheckConfig {
        /// Config file to check (.toml, .yaml or .yml).
        #[arg(long, value_name = "PATH")]
        config: PathBuf,
    },
    /// Measure the pipeline against the raw engine on this host (the CPU, or a GPU with
    /// --backend): images/s, frames/s with C cameras, their ratio, p50/p99 latency and
    /// peak RSS.
    Bench(Box<BenchCli>),
    /// Build a model's TensorRT engine ahead of time into the engine cache the server
    /// loads from (GPU hosts with TensorRT; exit 2 with the reason elsewhere).
    BuildEngine {
        /// ONNX detector to build.
        #[arg(long, value_name = "PATH")]
        model: PathBuf,
        /// Largest batch the engine accepts (the profile spans 1..=N).
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1024))]
        max_batch: u32,
        /// Allow fp16 kernels.
        #[arg(long)]
        fp16: bool,
        /// Engine cache root (engine.engines_dir).
        #[arg(long, value_name = "DIR", default_value = "engines")]
        engines_dir: PathBuf,
        /// GPU ordinal.
        #[arg(long, default_value_t = 0)]
        device_id: u32,
    },
}

/// `kvs-infer bench` flags.
#[derive(Debug, Args)]
pub struct BenchCli {
    /// ONNX model to run.
    #[arg(
        long,
        value_name = "PATH",
        default_value = ".cache/demo/yolov8n-coco.onnx"
    )]
    pub model: PathBuf,
    /// Clip every camera reads (looped, unthrottled).
    #[arg(
        long,
        value_name = "PATH",
        default_value = ".cache/demo/person-motorcycle-720p.mp4"
    )]
    pub clip: PathBuf,
    /// Camera counts to run, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "4,8")]
    pub cameras: Vec<usize>,
    /// Largest batch the scheduler forms.
    #[arg(long, default_value_t = 8)]
    pub max_batch: usize,
    /// Measured seconds per figure.
    #[arg(long, default_value_t = 20.0)]
    pub seconds: f64,
    /// Unmeasured warm-up seconds before each figure.
    #[arg(long, default_value_t = 5.0)]
    pub warmup: f64,
    /// Also write the report as JSON to this file.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
    /// Capacity search: frames per second per live camera (0 skips the search).
    #[arg(long, default_value_t = 1.0)]
    pub fps: f64,
    /// Capacity search: p99 frame→detections latency budget, ms.
    #[arg(long, default_value_t = 1000.0)]
    pub budget_ms: f64,
    /// Capacity search: most cameras tried.
    #[arg(long, default_value_t = 64)]
    pub max_cameras: usize,
    /// Clips whose decode cost per stream is measured, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = ".cache/demo/person-motorcycle-720p.mp4,../shared/fixtures/video/person-motorcycle-1080p30.mp4"
    )]
    pub decode_clips: Vec<PathBuf>,
    /// CI mode: only the raw batches the pipeline rows need; no batch-1 run, decode
    /// cost or capacity search.
    #[arg(long)]
    pub quick: bool,
    /// Exit 1 when a pipeline row reaches less than this fraction of the raw engine
    /// (a regression guard on a ratio measured in the same run, never a time).
    #[arg(long)]
    pub min_ratio: Option<f64>,
    /// Engine backend for the raw engine and the pipeline: cpu, auto, cuda, tensorrt
    /// (on a GPU host: the whole GPU pipeline's capacity).
    #[arg(long, default_value = "cpu")]
    pub backend: crate::config::Backend,
    /// Decoder for the pipeline: cpu, auto, nvdec.
    #[arg(long, default_value = "cpu")]
    pub decode: crate::config::DecodeBackend,
    /// Measure ALPR instead: the OCR stage batched across cameras versus batch 1
    /// (needs --plate-model, --ocr-model and a --clip with a plate).
    #[arg(long)]
    pub alpr: bool,
    /// Plate detector for --alpr.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "../shared/fixtures/models/plate-yolov8n.onnx"
    )]
    pub plate_model: PathBuf,
    /// Text recogniser for --alpr.
    #[arg(
        long,
        value_name = "PATH",
        default_value = ".cache/models/ppocr-v4-rec.onnx"
    )]
    pub ocr_model: PathBuf,
    /// Measure the AWS publishers instead, against --endpoint (bench/publishers.sh
    /// runs it against a local moto).
    #[arg(long)]
    pub publishers: bool,
    /// AWS endpoint for --publishers.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:5000")]
    pub endpoint: String,
    /// Events per sink for --publishers.
    #[arg(long, default_value_t = 5000)]
    pub events: usize,
    /// Create the bench stream, bucket and table first (--publishers).
    #[arg(long)]
    pub create: bool,
}
