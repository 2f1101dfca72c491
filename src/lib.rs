//! kvs-infer: a GPU-first, batched, multi-camera video inference server.
//!
//! Modules follow the data flow (DESIGN §3); a frame travels them in this order:
//!
//! ```text
//! ingest ──► decode ──► preprocess ──► scheduler ──► engine ──► postprocess ──► detect ──► publish
//! (per camera task)                    (central)     (per model)   (per camera again)
//! ```
//!
//! Around the flow: [`config`] (schema, loading, pure validation), [`telemetry`]
//! (metric vocabulary, Prometheus exporter, JSON logs), [`aws`] (settings shared by every
//! AWS client), [`backoff`] (the one retry schedule), [`http`] (`/healthz`, `/readyz`,
//! `/metrics`), [`shutdown`] (signals) and [`pipeline`], where everything is wired,
//! supervised and shut down in order.

use std::future::Future;
use std::pin::Pin;

pub mod config;

pub mod ingest;

pub mod decode;

pub mod preprocess;

pub mod gpu;

pub mod scheduler;

pub mod engine;

pub mod postprocess;

pub mod detect;

pub mod publish;

pub mod aws;
pub mod backoff;
pub mod bench;
pub mod cli;
pub mod hash;
pub mod http;
pub mod pipeline;
pub mod shard;
pub mod shutdown;
pub mod telemetry;

/// A boxed, sendable future: what the object-safe seams (`FrameSource`, `Publisher`) return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The service name reported by `/healthz` and in logs.
pub const SERVICE_NAME: &str = "kvs-infer";

/// The version with the git commit it was built from, when known (set by `build.rs`).
pub const VERSION: &str = env!("KVS_INFER_VERSION");
