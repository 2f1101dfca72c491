//! The command line: `kvs-infer [--config PATH] [--http ADDR]` runs the server;
//! `kvs-infer check-config --config PATH` validates a config and exits 0 or 2.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

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
}
