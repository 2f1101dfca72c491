//! The batching state machine: pure, synchronous, driven by the caller's clock.
//!
//! At most one pending entry per camera (a newer frame replaces the older one, reason
//! `replaced`). [`State::next_batch`] drops stale and cancelled entries, then forms a
//! batch when enough is waiting (`preferred_batch_size`), when the oldest entry has
//! waited `max_queue_delay`, or when every active camera already has a frame pending
//! (nothing more can come, so waiting would only add latency). Batches take up to
//! `max_batch_size` entries round-robin, starting after the key served last.
//!
//! Entries are keyed by the caller: a camera's index for frames (so a newer frame
//! replaces the older one), a unique key per request where nothing may be replaced
//! (OCR crops).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Batching limits for one model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest batch.
    pub max_batch_size: usize,
    /// Batch size worth waiting for.
    pub preferred_batch_size: usize,
    /// Longest the oldest entry waits for a fuller batch.
    pub max_queue_delay: Duration,
    /// Entries whose frame is older than this are dropped.
    pub max_staleness: Duration,
}

/// Why an entry left the queue without being run (the scheduler's reasons are
/// `Replaced`, `Stale` and `Cancelled`).
pub use crate::telemetry::names::DropReason;

/// A queued frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry<T> {
    /// Its key: the camera that sent it, or a unique request key.
    pub camera: usize,
    /// When the frame was received (its age counts from here).
    pub born_at: Instant,
    /// When it entered the queue.
    pub enqueued_at: Instant,
    /// The caller's payload.
    pub item: T,
}

/// An entry that left without being run, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Dropped<T> {
    /// The entry.
    pub entry: Entry<T>,
    /// Why.
    pub reason: DropReason,
}

/// The queue of one model.
#[derive(Debug)]
pub struct State<T> {
    limits: Limits,
    pending: BTreeMap<usize, Entry<T>>,
    active_cameras: usize,
    last_served: Option<usize>,
}

impl<T> State<T> {
    /// An empty queue with these limits.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            pending: BTreeMap::new(),
            active_cameras: 0,
            last_served: None,
        }
    }

    /// Entries waiting.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// A camera starts sending frames to this model.
    pub fn add_camera(&mut self) {
        self.active_cameras += 1;
    }

    /// A camera has stopped sending frames. What it already queued still runs (its
    /// results may still be awaited); only waiting for it stops. Entries whose reply
    /// route has closed are dropped in [`State::next_batch`] (reason `cancelled`).
    pub fn remove_camera(&mut self) {
        self.active_cameras = self.active_cameras.saturating_sub(1);
    }

    /// Queues a frame; returns the camera's older pending frame it replaced, if any.
    pub fn push(
        &mut self,
        camera: usize,
        item: T,
        born_at: Instant,
        now: Instant,
    ) -> Option<Dropped<T>> {
        let entry = Entry {
            camera,
            born_at,
            enqueued_at: now,
            item,
        };
        self.pending.insert(camera, entry).map(|old| Dropped {
            entry: old,
            reason: DropReason::Replaced,
        })
    }

    /// Drops stale and cancelled entries into `dropped`, then returns a batch if one
    /// should run now (the caller has a free engine slot).
    pub fn next_batch(
        &mut self,
        now: Instant,
        is_cancelled: impl Fn(&T) -> bool,
        dropped: &mut Vec<Dropped<T>>,
    ) -> Option<Vec<Entry<T>>> {
        let stale_or_gone: Vec<(usize, DropReason)> = self
            .pending
            .iter()
            .filter_map(|(&camera, e)| {
                if is_cancelled(&e.item) {
                    Some((camera, DropReason::Cancelled))
                } else if now.saturating_duration_since(e.born_at) > self.limits.max_staleness {
                    Some((camera, DropReason::Stale))
                } else {
                    None
                }
            })
            .collect();
        for (camera, reason) in stale_or_gone {
            if let Some(entry) = self.pending.remove(&camera) {
                dropped.push(Dropped { entry, reason });
            }
        }
        if self.pending.is_empty() || !self.ready(now) {
            return None;
        }
        // Round-robin: cameras after the one served last first, then wrap around.
        let start = self.last_served.map_or(0, |c| c + 1);
        let order: Vec<usize> = self
            .pending
            .range(start..)
            .chain(self.pending.range(..start))
            .map(|(&c, _)| c)
            .take(self.limits.max_batch_size.max(1))
            .collect();
        self.last_served = order.last().copied();
        Some(
            order
                .iter()
                .filter_map(|c| self.pending.remove(c))
                .collect(),
        )
    }

    fn ready(&self, now: Instant) -> bool {
        // Nothing more can arrive when every active camera has an entry pending, or
        // when no camera is active at all (shutdown): waiting would only add latency.
        let everyone_waiting = self.pending.len() >= self.active_cameras;
        self.pending.len() >= self.limits.preferred_batch_size
            || everyone_waiting
            || self
                .oldest_enqueued()
                .is_some_and(|t| now.saturating_duration_since(t) >= self.limits.max_queue_delay)
    }

    fn oldest_enqueued(&self) -> Option<Instant> {
        self.pending.values().map(|e| e.enqueued_at).min()
    }

    /// When `next_batch` could next have something to do without a new push: the
    /// oldest entry's queue-delay deadline or the earliest staleness deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        let delay = self
            .oldest_enqueued()
            .map(|t| t + self.limits.max_queue_delay);
        let stale = self
            .pending
            .values()
            .map(|e| e.born_at + self.limits.max_staleness + Duration::from_millis(1))
            .min();
        match (delay, stale) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests;
