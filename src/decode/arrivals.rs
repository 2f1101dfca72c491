//! When each access unit still inside a decoder arrived, so the frame it becomes
//! carries its arrival (the latency clock's start) and wall time, whichever decoder
//! (libavcodec or NVDEC) reorders it.

use std::collections::VecDeque;
use std::time::Instant;

use crate::ingest::AccessUnit;

/// Units remembered at most: more than any codec holds back.
const PENDING_LIMIT: usize = 64;

/// Arrival times of access units sent to a decoder and not yet seen as frames.
#[derive(Debug, Default)]
pub struct Arrivals {
    /// (pts_90k, received_at, wall_ms).
    pending: VecDeque<(i64, Instant, i64)>,
}

impl Arrivals {
    /// Remembers `unit` as sent.
    pub fn sent(&mut self, unit: &AccessUnit) {
        if self.pending.len() >= PENDING_LIMIT {
            self.pending.pop_front();
        }
        self.pending
            .push_back((unit.pts_90k, unit.received_at, unit.wall_ms));
    }

    /// The arrival of the unit with this pts (units may come out reordered); for an
    /// unknown pts (a decoder that invents them), the oldest pending.
    pub fn take(&mut self, pts_90k: i64) -> (Instant, i64) {
        if let Some(i) = self.pending.iter().position(|p| p.0 == pts_90k) {
            if let Some((_, at, wall)) = self.pending.remove(i) {
                return (at, wall);
            }
        }
        self.pending.pop_front().map_or(
            (Instant::now(), crate::ingest::now_epoch_ms()),
            |(_, at, wall)| (at, wall),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(pts_90k: i64, wall_ms: i64) -> AccessUnit {
        AccessUnit {
            data: Vec::new(),
            pts_90k,
            keyframe: false,
            received_at: Instant::now(),
            wall_ms,
        }
    }

    #[test]
    fn reordered_frames_find_their_own_arrival_and_strangers_the_oldest() {
        let mut a = Arrivals::default();
        for (pts, wall) in [(0, 10), (6000, 30), (3000, 20)] {
            a.sent(&unit(pts, wall));
        }
        assert_eq!(a.take(3000).1, 20);
        assert_eq!(a.take(123).1, 10);
        assert_eq!(a.take(6000).1, 30);
        for pts in 0..100 {
            a.sent(&unit(pts, pts));
        }
        // Only the newest PENDING_LIMIT are kept.
        assert_eq!(a.take(-1).1, 100 - PENDING_LIMIT as i64);
    }
}
