//! What live sources share: the resume cursor a camera keeps across reconnects, and the
//! step from a demuxed [`Sample`] to an [`AccessUnit`].
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
