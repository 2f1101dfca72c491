//! Scheduler: the central dynamic batcher (DESIGN §3a). One queue per model, shared by
//! every camera; batches of up to `max_batch_size`, waiting at most
//! `max_queue_delay_ms` for `preferred_batch_size`; round-robin across cameras; the
//! newest frame replaces an older queued one; stale frames are dropped and counted;
//! results go back through each entry's reply route.
//!
//! The batching logic will be a pure, synchronous state machine (`state.rs`) driven by a
//! simulated clock in tests, wrapped by a thin async actor. It arrives with the CPU
//! pipeline issue; its limits come from [`crate::config::SchedulerConfig`].
