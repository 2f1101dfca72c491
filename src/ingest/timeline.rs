//! One camera's timeline: where each access unit sits, on a clock that never goes
//! backwards, whatever its container's timecodes do.
//!
//! Real producers restart (a camera reboots, a `PutMedia` connection is renewed) and
//! their container timecodes start again near 0; timecodes repeat, and fragments are
//! sparse. A camera's frames are ordered, de-duplicated, paced and selected for
//! `fps_target` on this timeline instead (DESIGN §3, ingest):
//! - where the source has the producer's clock (KVS's producer timestamp plus the
//!   frame's offset in its fragment, HLS's `EXT-X-PROGRAM-DATE-TIME`), the timeline is
//!   that clock: it keeps going forward through a producer restart;
//! - otherwise (RTSP, files, streams without KVS tags) it is the container's timecode
//!   plus an offset that a jump re-bases, so the timeline carries on right after the
//!   newest frame placed.
//!
//! A timecode that jumps backwards by more than [`REORDER_90K`], or forwards by more
//! than [`MAX_GAP_90K`], starts a new segment of the timeline: the caller counts and
//! logs the [`Jump`], and frames keep flowing. A connection that may repeat what the
//! last one delivered (a KVS resume, a new HLS session) is checked for replays: units
//! already placed are recognised by their fragment number and timecode where the source
//! has them, else by producer time, else by timecode, and skipped exactly.
//!
//! Pure and synchronous: unit-tested here without any I/O.

/// How far a timecode may step back within a segment: B-frames come out of order, a
/// second back is a jump.
pub const REORDER_90K: i64 = 90_000;
/// The widest forward step that is still the same segment: longer than any KVS fragment
/// (sparse fragments are not resets), shorter than a timecode leaping ahead.
pub const MAX_GAP_90K: i64 = 30 * 90_000;
/// After a reconnect, a timecode this far behind the newest is a new timeline, not a
/// replay: 10 minutes.
const REPLAY_WINDOW_90K: i64 = 10 * 60 * 90_000;
/// The frame step assumed until one is seen: 25 fps.
const DEFAULT_STEP_90K: i64 = 3600;

/// Where the source says a unit is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// The container's timecode, 90 kHz.
    pub raw_90k: i64,
    /// The producer's clock for this unit, 90 kHz since the epoch, where the source has
    /// it.
    pub producer_90k: Option<i64>,
    /// The fragment the unit came in (a KVS fragment number), where the source has it:
    /// numbers only grow within a stream.
    pub piece: Option<u128>,
}

impl Stamp {
    /// A unit known only by its timecode.
    pub fn raw(raw_90k: i64) -> Self {
        Self {
            raw_90k,
            producer_90k: None,
            piece: None,
        }
    }
}

/// A timecode jump that started a new segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Jump {
    /// The timecode before the jump.
    pub from_raw_90k: i64,
    /// The timecode after it.
    pub to_raw_90k: i64,
}

/// What the timeline makes of a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// A repeat of a unit an earlier connection delivered: skip it.
    Replay,
    /// A new unit at `pts_90k` on the timeline; `jump` when it starts a new segment.
    Placed {
        /// Its place on the camera's timeline.
        pts_90k: i64,
        /// The timecode jump it follows, if any.
        jump: Option<Jump>,
    },
}

/// One camera's timeline, kept across its connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeline {
    /// The newest timeline pts placed.
    newest_90k: Option<i64>,
    /// The last timecode placed in this segment (`None` at a segment's start).
    last_raw_90k: Option<i64>,
    /// Timeline = timecode + this, where the producer's clock is unknown.
    offset_90k: i64,
    /// Timeline = producer clock + this (non-zero once that clock went backwards).
    producer_shift_90k: i64,
    /// A typical frame step, to place a new segment right after the newest frame.
    step_90k: i64,
    /// The fragment placed last and the timecodes placed in it, for exact replays.
    piece: Option<u128>,
    piece_raws: Vec<i64>,
    /// After a reconnect that may replay, until a new unit passes: units are checked
    /// against what was placed before it (nothing is placed while this holds, so the
    /// fields above still describe that).
    resuming: bool,
    /// Segments started by jumps so far.
    resets: u64,
}

impl Default for Timeline {
    fn default() -> Self {
        Self {
            newest_90k: None,
            last_raw_90k: None,
            offset_90k: 0,
            producer_shift_90k: 0,
            step_90k: DEFAULT_STEP_90K,
            piece: None,
            piece_raws: Vec::new(),
            resuming: false,
            resets: 0,
        }
    }
}

impl Timeline {
    /// A timeline whose frames are `step_90k` apart until a step is seen (a file's
    /// nominal frame rate).
    pub fn with_step(step_90k: i64) -> Self {
        Self {
            step_90k: step_90k.clamp(1, REORDER_90K),
            ..Self::default()
        }
    }

    /// A new connection begins. `may_replay`: it can repeat what the last one delivered
    /// (a resume, a new HLS session's window), which is then skipped. Otherwise (a new
    /// RTSP session, a file's next loop) its first unit starts a new segment, uncounted.
    pub fn connected(&mut self, may_replay: bool) {
        self.resuming = may_replay;
        if !may_replay {
            self.last_raw_90k = None;
        }
    }

    /// Segments started by timecode jumps so far.
    pub fn resets(&self) -> u64 {
        self.resets
    }

    /// The newest timeline pts placed.
    pub fn newest_90k(&self) -> Option<i64> {
        self.newest_90k
    }

    /// Places the unit at `stamp`: a replay to skip, or its pts on the timeline.
    pub fn place(&mut self, stamp: Stamp) -> Placement {
        if self.resuming {
            if self.is_replay(&stamp) {
                return Placement::Replay;
            }
            self.resuming = false;
        }
        let mut jump = self.last_raw_90k.and_then(|last| {
            let step = stamp.raw_90k.saturating_sub(last);
            (!(-REORDER_90K..=MAX_GAP_90K).contains(&step)).then_some(Jump {
                from_raw_90k: last,
                to_raw_90k: stamp.raw_90k,
            })
        });
        let segment_start = jump.is_some() || self.last_raw_90k.is_none();
        let after_newest = self.newest_90k.map(|n| n.saturating_add(self.step_90k));
        let pts_90k = match stamp.producer_90k {
            Some(producer) => {
                let mut pts = producer.saturating_add(self.producer_shift_90k);
                // The producer's clock went back (not a replay, which was ruled out):
                // carry on after the newest frame instead.
                if let (Some(newest), Some(next)) = (self.newest_90k, after_newest) {
                    if pts < newest - REORDER_90K {
                        self.producer_shift_90k += next - pts;
                        pts = next;
                        jump.get_or_insert(Jump {
                            from_raw_90k: self.last_raw_90k.unwrap_or(stamp.raw_90k),
                            to_raw_90k: stamp.raw_90k,
                        });
                    }
                }
                pts
            }
            None => {
                if segment_start {
                    self.offset_90k = after_newest.map_or(0, |n| n - stamp.raw_90k);
                }
                stamp.raw_90k.saturating_add(self.offset_90k)
            }
        };
        if let Some(last) = self.last_raw_90k.filter(|_| jump.is_none()) {
            let step = stamp.raw_90k - last;
            if step > 0 && step <= REORDER_90K {
                self.step_90k = step;
            }
        }
        if jump.is_some() {
            self.resets += 1;
        }
        self.last_raw_90k = Some(stamp.raw_90k);
        self.newest_90k = Some(self.newest_90k.map_or(pts_90k, |n| n.max(pts_90k)));
        if stamp.piece != self.piece {
            self.piece = stamp.piece;
            self.piece_raws.clear();
        }
        // Only numbered fragments are replayed by number; a stream without them keeps
        // no list.
        if stamp.piece.is_some() {
            self.piece_raws.push(stamp.raw_90k);
        }
        Placement::Placed { pts_90k, jump }
    }

    /// Whether `stamp` repeats what was placed before the reconnect.
    fn is_replay(&self, stamp: &Stamp) -> bool {
        if let (Some(piece), Some(last)) = (stamp.piece, self.piece) {
            return piece < last || (piece == last && self.piece_raws.contains(&stamp.raw_90k));
        }
        let behind = |newest: i64, at: i64| at <= newest && newest - at < REPLAY_WINDOW_90K;
        if let (Some(producer), Some(newest)) = (stamp.producer_90k, self.newest_90k) {
            return behind(newest, producer.saturating_add(self.producer_shift_90k));
        }
        self.last_raw_90k
            .is_some_and(|last| behind(last, stamp.raw_90k))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placed(t: &mut Timeline, stamp: Stamp) -> (i64, bool) {
        match t.place(stamp) {
            Placement::Placed { pts_90k, jump } => (pts_90k, jump.is_some()),
            Placement::Replay => panic!("{stamp:?} taken for a replay"),
        }
    }

    fn producer(raw_90k: i64, producer_90k: i64, piece: Option<u128>) -> Stamp {
        Stamp {
            raw_90k,
            producer_90k: Some(producer_90k),
            piece,
        }
    }

    #[test]
    fn a_steady_stream_keeps_its_timecodes() {
        let mut t = Timeline::default();
        for k in 0..50 {
            assert_eq!(placed(&mut t, Stamp::raw(k * 3600)), (k * 3600, false));
        }
        assert_eq!(t.resets(), 0);
    }

    #[test]
    fn b_frames_out_of_order_are_not_jumps() {
        let mut t = Timeline::default();
        for raw in [0, 10_800, 3600, 7200, 21_600, 14_400, 18_000] {
            assert_eq!(placed(&mut t, Stamp::raw(raw)), (raw, false));
        }
    }

    #[test]
    fn a_producer_restart_without_its_clock_carries_on_after_the_newest_frame() {
        let mut t = Timeline::default();
        for k in 0..=100 {
            placed(&mut t, Stamp::raw(1_000_000 + k * 3600));
        }
        let newest = 1_000_000 + 100 * 3600;
        // Timecodes start again near 0: a new segment, counted, right after the newest.
        assert_eq!(placed(&mut t, Stamp::raw(0)), (newest + 3600, true));
        assert_eq!(placed(&mut t, Stamp::raw(3600)), (newest + 7200, false));
        assert_eq!(t.resets(), 1);
    }

    #[test]
    fn a_producer_restart_with_its_clock_follows_the_clock_and_is_counted() {
        let mut t = Timeline::default();
        let base = 1_795_500_000_000 * 90;
        for k in 0..50 {
            placed(&mut t, producer(600_000 + k * 3600, base + k * 3600, None));
        }
        // The container's timecodes restart; the producer's clock goes on.
        let (pts, jumped) = placed(&mut t, producer(0, base + 50 * 3600, None));
        assert_eq!((pts, jumped), (base + 50 * 3600, true));
        assert!(!placed(&mut t, producer(3600, base + 51 * 3600, None)).1);
        assert_eq!(t.resets(), 1);
    }

    #[test]
    fn a_leap_forward_is_a_new_segment_but_a_sparse_gap_is_not() {
        let mut t = Timeline::default();
        placed(&mut t, Stamp::raw(0));
        // Ten seconds without frames: the same segment.
        assert_eq!(placed(&mut t, Stamp::raw(900_000)), (900_000, false));
        // An hour ahead: a new segment, right after the newest.
        assert_eq!(
            placed(&mut t, Stamp::raw(900_000 + 3600 * 90_000)),
            (903_600, true)
        );
    }

    #[test]
    fn repeated_timecodes_neither_go_back_nor_stop_the_stream() {
        let mut t = Timeline::default();
        for k in 0..50 {
            placed(&mut t, Stamp::raw(k * 3600));
        }
        // The next fragment repeats the last two seconds of timecodes.
        let (pts, jumped) = placed(&mut t, Stamp::raw(0));
        assert!(jumped && pts > 49 * 3600);
        let mut last = pts;
        for k in 1..50 {
            let (pts, _) = placed(&mut t, Stamp::raw(k * 3600));
            assert!(pts > last);
            last = pts;
        }
    }

    #[test]
    fn a_resume_skips_exactly_what_was_placed_in_the_fragment_it_repeats() {
        let mut t = Timeline::default();
        // Fragment 7: five frames; the connection breaks after three of fragment 8.
        for k in 0..5 {
            placed(
                &mut t,
                Stamp {
                    piece: Some(7),
                    ..Stamp::raw(k * 3600)
                },
            );
        }
        for k in 5..8 {
            placed(
                &mut t,
                Stamp {
                    piece: Some(8),
                    ..Stamp::raw(k * 3600)
                },
            );
        }
        t.connected(true);
        // The resume repeats fragment 8 from its start: its three frames are skipped.
        for k in 5..8 {
            let stamp = Stamp {
                piece: Some(8),
                ..Stamp::raw(k * 3600)
            };
            assert_eq!(t.place(stamp), Placement::Replay);
        }
        assert_eq!(
            placed(
                &mut t,
                Stamp {
                    piece: Some(8),
                    ..Stamp::raw(8 * 3600)
                }
            ),
            (8 * 3600, false)
        );
    }

    #[test]
    fn a_resume_after_a_producer_restart_is_not_taken_for_a_replay() {
        let mut t = Timeline::default();
        // A restart an hour in: timecodes at 0 again, fragments still numbered upward.
        placed(
            &mut t,
            Stamp {
                piece: Some(1),
                ..Stamp::raw(3600 * 90_000)
            },
        );
        placed(
            &mut t,
            Stamp {
                piece: Some(2),
                ..Stamp::raw(0)
            },
        );
        placed(
            &mut t,
            Stamp {
                piece: Some(2),
                ..Stamp::raw(3600)
            },
        );
        t.connected(true);
        let (pts, _) = placed(
            &mut t,
            Stamp {
                piece: Some(3),
                ..Stamp::raw(7200)
            },
        );
        assert!(pts > 3600 * 90_000, "{pts}");
    }

    #[test]
    fn a_new_session_window_is_skipped_by_producer_time() {
        let mut t = Timeline::default();
        for k in 0..100 {
            placed(&mut t, producer(k * 3600, k * 3600 + 10_000_000, None));
        }
        t.connected(true);
        // The new session's window replays the last 75 frames, then goes on.
        for k in 25..100 {
            assert_eq!(
                t.place(producer(k * 3600, k * 3600 + 10_000_000, None)),
                Placement::Replay
            );
        }
        assert_eq!(
            placed(&mut t, producer(100 * 3600, 100 * 3600 + 10_000_000, None)),
            (100 * 3600 + 10_000_000, false)
        );
    }

    #[test]
    fn without_fragments_or_clock_a_resume_is_skipped_by_timecode() {
        let mut t = Timeline::default();
        for k in 0..10 {
            placed(&mut t, Stamp::raw(k * 3600));
        }
        t.connected(true);
        assert_eq!(t.place(Stamp::raw(0)), Placement::Replay);
        assert_eq!(t.place(Stamp::raw(9 * 3600)), Placement::Replay);
        assert_eq!(placed(&mut t, Stamp::raw(10 * 3600)), (10 * 3600, false));
        // A timeline far behind after the reconnect is new, not a replay.
        let mut t = Timeline::default();
        placed(&mut t, Stamp::raw(REPLAY_WINDOW_90K * 3));
        t.connected(true);
        let (pts, jumped) = placed(&mut t, Stamp::raw(5));
        assert!(jumped && pts > REPLAY_WINDOW_90K * 3);
    }

    #[test]
    fn a_new_session_that_does_not_replay_continues_the_timeline_uncounted() {
        let mut t = Timeline::default();
        for k in 0..10 {
            placed(&mut t, Stamp::raw(500_000 + k * 3600));
        }
        t.connected(false);
        // An RTSP session's timecodes start at 0 again.
        assert_eq!(placed(&mut t, Stamp::raw(0)), (500_000 + 10 * 3600, false));
        assert_eq!(t.resets(), 0);
    }

    #[test]
    fn a_producer_clock_that_steps_back_is_carried_forward() {
        let mut t = Timeline::default();
        for k in 0..10 {
            placed(&mut t, producer(k * 3600, 1_000_000 + k * 3600, None));
        }
        let newest = 1_000_000 + 9 * 3600;
        let (pts, jumped) = placed(&mut t, producer(10 * 3600, 100, None));
        assert_eq!((pts, jumped), (newest + 3600, true));
        assert_eq!(
            placed(&mut t, producer(11 * 3600, 3700, None)),
            (newest + 7200, false)
        );
    }
}
