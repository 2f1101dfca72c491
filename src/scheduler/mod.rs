//! Scheduler: the central dynamic batcher (DESIGN §3a). One queue per model, shared by
//! every camera; batches of up to `max_batch_size`, waiting at most
//! `max_queue_delay_ms` for `preferred_batch_size`; round-robin across cameras; the
//! newest frame replaces an older queued one; stale frames are dropped and counted;
//! results go back through each entry's reply route.
//!
//! [`state`] is the pure batching logic; [`actor`] is the thin async shell that owns a
//! `State`, sleeps until its next deadline, and feeds batches to engine workers
//! (`worker`: preprocessing on the CPU, or on the GPU for engines that read device
//! memory).

pub mod actor;
pub mod state;
mod worker;

pub use actor::{
    DropNotice, InferResult, Input, Job, ModelQueue, Output, QueueSetup, QueueTask, Reply,
    SharedInput, SubmitError, Task,
};
pub use state::{DropReason, Limits};
