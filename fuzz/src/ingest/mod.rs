//! Stands in for the server's `ingest` module: the same `Codec` and `StreamInfo`, and
//! the demuxers, from their own source files.

#[path = "../../../src/ingest/stream.rs"]
mod stream;
pub use stream::{Codec, StreamInfo};

#[path = "../../../src/ingest/demux/mod.rs"]
pub mod demux;
