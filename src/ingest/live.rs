//! What live sources share: the resume cursor a camera keeps across reconnects (with
//! its [`Timeline`]), the pacer that turns bursts back into a steady stream, and the
//! step from a demuxed [`Sample`] to an [`AccessUnit`].
//!
//! A reconnect (or a new HLS session) replays some video: the live window of a fresh
//! playlist, the fragment a GetMedia resumes at. The cursor's timeline remembers what
//! it placed, and after a reconnect skips exactly what repeats, so the detectors see
//! neither a gap nor a repeat; a producer restart is a new timeline segment, not a
//! replay.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use super::demux::Sample;
use super::timeline::{Placement, Stamp, Timeline};
use super::{now_epoch_ms, AccessUnit};
use crate::telemetry::CameraMetrics;

/// Where a camera's stream was when its connection ended.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Cursor {
    /// The camera's timeline, across its connections.
    pub timeline: Timeline,
    /// KVS: the last fragment read.
    pub fragment_number: Option<String>,
    /// KVS GetMedia: where to resume.
    pub continuation_token: Option<String>,
    /// Connections that resumed at the saved point and have not yet delivered a unit.
    pub fruitless_resumes: u32,
}

impl Cursor {
    /// A new connection starts: what it replays is skipped.
    pub fn reconnecting(&mut self) {
        self.timeline.connected(true);
    }

    /// Places a unit on the timeline: its timeline pts, or `None` for a replay. A jump
    /// in the stream's timecodes is logged with both values and counted in
    /// `ingest_timeline_resets_total`.
    pub fn place(&mut self, stamp: Stamp, metrics: &CameraMetrics) -> Option<i64> {
        match self.timeline.place(stamp) {
            Placement::Replay => None,
            Placement::Placed { pts_90k, jump } => {
                self.fruitless_resumes = 0;
                if let Some(jump) = jump {
                    metrics.timeline_reset();
                    tracing::warn!(
                        from_ms = jump.from_raw_90k / 90,
                        to_ms = jump.to_raw_90k / 90,
                        timeline_ms = pts_90k / 90,
                        "The stream's timecodes jumped (a producer restart?); a new timeline segment starts."
                    );
                }
                Some(pts_90k)
            }
        }
    }
}

/// Spreads frames that arrive in bursts (an HLS segment at once, a GetMedia chunk of
/// several frames) over their own timeline, so the scheduler sees a steady stream
/// rather than a burst in which each frame replaces the last.
///
/// A frame is held only to keep its spacing from the frame before, at
/// [`Pacer::SPEED`] times real time: a burst is spread out, and a backlog (a burst
/// that is late) drains instead of becoming a lasting delay. A gap wider than
/// [`Pacer::MAX_GAP`] or a pts that goes backwards starts afresh.
#[derive(Debug, Default)]
pub struct Pacer {
    /// (when the last frame was due, its pts).
    last: Option<(Instant, i64)>,
}

impl Pacer {
    /// How much faster than real time held frames are let go.
    pub const SPEED: f64 = 1.25;
    /// The widest pts step that is still paced; beyond it the timeline has jumped.
    pub const MAX_GAP: std::time::Duration = std::time::Duration::from_secs(3);

    /// When the frame with `pts_90k` is due, given that it is `now`.
    pub fn due(&mut self, pts_90k: i64, now: Instant) -> Instant {
        let due = match self.last {
            Some((last_due, last_pts)) => {
                let step_90k = pts_90k.saturating_sub(last_pts);
                let step = std::time::Duration::from_micros(step_90k.max(0) as u64 * 100 / 9);
                if step_90k < 0 || step > Self::MAX_GAP {
                    now
                } else {
                    (last_due + step.div_f64(Self::SPEED)).max(now)
                }
            }
            None => now,
        };
        self.last = Some((due, pts_90k));
        due
    }

    /// Sleeps until the frame with `pts_90k` is due.
    pub async fn wait(&mut self, pts_90k: i64) {
        let now = Instant::now();
        let due = self.due(pts_90k, now);
        if due > now {
            tokio::time::sleep_until(due.into()).await;
        }
    }
}

/// A camera's cursor, shared by its successive connections.
pub type SharedCursor = Arc<Mutex<Cursor>>;

/// Locks the cursor; a poisoned lock still holds a usable cursor.
pub fn lock(cursor: &SharedCursor) -> std::sync::MutexGuard<'_, Cursor> {
    cursor.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The access unit for `sample`, placed at `pts_90k` on the camera's timeline and
/// received at `received_at`; `wall_ms` falls back to the ingest clock.
pub fn unit(sample: Sample, pts_90k: i64, received_at: Instant) -> AccessUnit {
    AccessUnit {
        data: sample.data,
        pts_90k,
        keyframe: sample.keyframe,
        received_at,
        wall_ms: sample.wall_ms.unwrap_or_else(now_epoch_ms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_is_spread_out_and_a_backlog_drains() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut p = Pacer::default();
        // A 2-second segment at 25 fps arrives at t0: 40 ms apart at 1.25× is 32 ms.
        assert_eq!(p.due(0, t0), t0);
        assert_eq!(p.due(3600, t0), t0 + ms(32));
        for k in 2..50 {
            p.due(k * 3600, t0);
        }
        // The last frame is due at 49 × 32 ms = 1.568 s: before the next segment.
        let next = t0 + ms(2000);
        assert_eq!(p.due(50 * 3600, next), next);
        // Frames that come at their real pace are never held.
        assert_eq!(p.due(51 * 3600, next + ms(40)), next + ms(40));
        // A jump of a minute, or pts going backwards, starts afresh.
        let later = next + ms(80);
        assert_eq!(p.due(51 * 3600 + 60 * 90_000, later), later);
        assert_eq!(p.due(0, later), later);
    }

    #[test]
    fn after_a_reconnect_only_newer_units_pass_and_then_everything_does() {
        let metrics = crate::telemetry::Telemetry::new()
            .unwrap()
            .metrics()
            .camera("c", &[]);
        let mut c = Cursor::default();
        for pts in [0, 3600, 7200] {
            assert_eq!(c.place(Stamp::raw(pts), &metrics), Some(pts));
        }
        c.reconnecting();
        // The replayed window is skipped, the first new unit opens the gate.
        assert_eq!(c.place(Stamp::raw(0), &metrics), None);
        assert_eq!(c.place(Stamp::raw(7200), &metrics), None);
        assert_eq!(c.place(Stamp::raw(10_800), &metrics), Some(10_800));
        // B-frames after it are admitted even though their pts is lower.
        assert_eq!(c.place(Stamp::raw(9000), &metrics), Some(9000));
        assert_eq!(c.timeline.newest_90k(), Some(10_800));
    }
}
