//! What live sources share: the resume cursor a camera keeps across reconnects, the
//! pacer that turns bursts back into a steady stream, and the step from a demuxed
//! [`Sample`] to an [`AccessUnit`].
//!
//! A reconnect (or a new HLS session) replays some video: the live window of a fresh
//! playlist, the fragment a GetMedia resumes at. The cursor remembers the newest pts
//! handed on, and after a reconnect admits only what is newer, so the detectors see
//! neither a gap nor a repeat. Within a connection everything is admitted (B-frames
//! come out of pts order).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use super::demux::Sample;
use super::{now_epoch_ms, AccessUnit};

/// A pts this far behind the newest is a new timeline (a producer restart or a wrap),
/// not a replay: 10 minutes.
const NEW_TIMELINE_90K: i64 = 10 * 60 * 90_000;

/// Where a camera's stream was when its connection ended.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Cursor {
    /// The newest pts handed on.
    pub newest_pts_90k: Option<i64>,
    /// After a reconnect: admit only pts above this.
    resume_after_90k: Option<i64>,
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
        self.resume_after_90k = self.newest_pts_90k;
    }

    /// Whether a unit with this pts is new; records it if so.
    pub fn admit(&mut self, pts_90k: i64) -> bool {
        if let Some(after) = self.resume_after_90k {
            if pts_90k <= after && after.saturating_sub(pts_90k) < NEW_TIMELINE_90K {
                return false;
            }
            self.resume_after_90k = None;
        }
        self.fruitless_resumes = 0;
        self.newest_pts_90k = Some(match self.newest_pts_90k {
            Some(n) if n.saturating_sub(pts_90k) < NEW_TIMELINE_90K => n.max(pts_90k),
            _ => pts_90k,
        });
        true
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

/// The access unit for `sample`, received now; `wall_ms` falls back to the ingest clock.
pub fn unit(sample: Sample, received_at: Instant) -> AccessUnit {
    AccessUnit {
        data: sample.data,
        pts_90k: sample.pts_90k,
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
        let mut c = Cursor::default();
        for pts in [0, 3600, 7200] {
            assert!(c.admit(pts));
        }
        c.reconnecting();
        // The replayed window is skipped, the first new unit opens the gate.
        assert!(!c.admit(0));
        assert!(!c.admit(7200));
        assert!(c.admit(10_800));
        // B-frames after it are admitted even though their pts is lower.
        assert!(c.admit(9000));
        assert_eq!(c.newest_pts_90k, Some(10_800));
    }

    #[test]
    fn a_timeline_far_behind_is_a_restart_not_a_replay() {
        let mut c = Cursor::default();
        assert!(c.admit(NEW_TIMELINE_90K * 3));
        c.reconnecting();
        assert!(c.admit(5));
        assert_eq!(c.newest_pts_90k, Some(5));
    }
}
