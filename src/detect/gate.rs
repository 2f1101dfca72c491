//! When a detection becomes an event: temporal confirmation (seen in ≥ N of the last M
//! processed frames) and de-duplication (IoU tracks; a track emits when confirmed, then
//! at most once per cooldown while it persists; a new track emits anew).
//!
//! Pure and driven by stream time (the frame's pts in ms), so a clip processed faster
//! than real time keeps the same cooldowns, and tests script detection sequences.

use std::collections::VecDeque;

use crate::postprocess::{iou, Detection};

/// "Seen in at least N of the last M frames."
#[derive(Debug, Clone)]
pub struct TemporalConfirm {
    window: usize,
    threshold: usize,
    history: VecDeque<bool>,
}

impl TemporalConfirm {
    /// N of M; `threshold` ≤ `window` (validated by the config).
    pub fn new(window: u32, threshold: u32) -> Self {
        Self {
            window: window.max(1) as usize,
            threshold: threshold.max(1) as usize,
            history: VecDeque::new(),
        }
    }

    /// Records whether this frame had a hit; returns whether the window confirms.
    pub fn observe(&mut self, hit: bool) -> bool {
        if self.history.len() == self.window {
            self.history.pop_front();
        }
        self.history.push_back(hit);
        self.history.iter().filter(|h| **h).count() >= self.threshold
    }
}

/// Tracks are matched when boxes of the same label overlap at least this much...
pub const TRACK_IOU: f32 = 0.3;
/// ...or, for small or fast objects that moved clear of their last box, when their
/// centres are within this fraction of the larger box's diagonal and their areas
/// differ by less than [`TRACK_AREA_RATIO`] (so a small object never takes over a large
/// one's track, or the reverse).
pub const TRACK_CENTRE_DISTANCE: f32 = 0.75;
/// Largest area ratio between a track's box and a detection matched by distance.
pub const TRACK_AREA_RATIO: f32 = 2.0;

/// How well a detection continues a track: IoU when they overlap enough, else a score
/// below any IoU match that falls with centre distance; `None` when unrelated.
fn match_score(a: &[f32; 4], b: &[f32; 4]) -> Option<f32> {
    let overlap = iou(a, b);
    if overlap >= TRACK_IOU {
        return Some(overlap);
    }
    let area = |r: &[f32; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let (small, large) = (area(a).min(area(b)), area(a).max(area(b)));
    if small <= 0.0 || large / small > TRACK_AREA_RATIO {
        return None;
    }
    let centre = |r: &[f32; 4]| ((r[0] + r[2]) / 2.0, (r[1] + r[3]) / 2.0);
    let diagonal = |r: &[f32; 4]| (r[2] - r[0]).hypot(r[3] - r[1]);
    let (ca, cb) = (centre(a), centre(b));
    let reach = diagonal(a).max(diagonal(b)) * TRACK_CENTRE_DISTANCE;
    let distance = (ca.0 - cb.0).hypot(ca.1 - cb.1);
    (reach > 0.0 && distance <= reach).then(|| TRACK_IOU * (1.0 - distance / reach) * 0.99)
}

#[derive(Debug, Clone)]
struct Track {
    id: u64,
    label: String,
    bbox: [f32; 4],
    missed: u32,
    last_emitted_ms: Option<i64>,
}

/// Per-camera IoU tracker with an emission cooldown.
#[derive(Debug, Clone)]
pub struct Tracker {
    tracks: Vec<Track>,
    cooldown_ms: i64,
    max_missed: u32,
    next_id: u64,
}

/// A detection's track in this frame, and whether that track may emit now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tracked {
    /// The track's id, stable while the object persists.
    pub track_id: u64,
    /// New, or its cooldown has passed.
    pub due: bool,
}

impl Tracker {
    /// A tracker whose tracks emit at most every `cooldown_sec` and are forgotten
    /// after `max_missed` frames without a match.
    pub fn new(cooldown_sec: f64, max_missed: u32) -> Self {
        Self {
            tracks: Vec::new(),
            cooldown_ms: (cooldown_sec * 1000.0).round() as i64,
            max_missed,
            next_id: 0,
        }
    }

    /// Matches this frame's detections to tracks (greedy by IoU, same label only);
    /// returns, for each detection, the index of its track.
    fn associate(&mut self, detections: &[Detection]) -> Vec<usize> {
        let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
        for (d, det) in detections.iter().enumerate() {
            for (t, track) in self.tracks.iter().enumerate() {
                if track.label == det.label {
                    if let Some(score) = match_score(&track.bbox, &det.bbox) {
                        pairs.push((score, d, t));
                    }
                }
            }
        }
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut of_detection = vec![usize::MAX; detections.len()];
        let mut track_taken = vec![false; self.tracks.len()];
        for (_, d, t) in pairs {
            if of_detection[d] == usize::MAX && !track_taken[t] {
                of_detection[d] = t;
                track_taken[t] = true;
            }
        }
        for (t, track) in self.tracks.iter_mut().enumerate() {
            if track_taken[t] {
                track.missed = 0;
            } else {
                track.missed += 1;
            }
        }
        for (d, det) in detections.iter().enumerate() {
            if of_detection[d] == usize::MAX {
                of_detection[d] = self.tracks.len();
                self.next_id += 1;
                self.tracks.push(Track {
                    id: self.next_id,
                    label: det.label.clone(),
                    bbox: det.bbox,
                    missed: 0,
                    last_emitted_ms: None,
                });
            } else {
                self.tracks[of_detection[d]].bbox = det.bbox;
            }
        }
        of_detection
    }

    /// Updates tracks with this frame's detections; for each detection, its track and
    /// whether that track may emit now. Tracks unseen for too long are forgotten.
    pub fn update(&mut self, ts_ms: i64, detections: &[Detection]) -> Vec<Tracked> {
        let of_detection = self.associate(detections);
        let out = of_detection
            .iter()
            .map(|&t| {
                let track = &self.tracks[t];
                Tracked {
                    track_id: track.id,
                    due: self.cooled_down(track, ts_ms),
                }
            })
            .collect();
        let max_missed = self.max_missed;
        self.tracks.retain(|t| t.missed <= max_missed);
        out
    }

    /// Whether a track may emit at `ts_ms`: never emitted, its cooldown has passed, or
    /// stream time went backwards (a reconnect) so the old time means nothing.
    fn cooled_down(&self, track: &Track, ts_ms: i64) -> bool {
        track
            .last_emitted_ms
            .is_none_or(|last| ts_ms < last || ts_ms - last >= self.cooldown_ms)
    }

    /// Whether a live track may emit at `ts_ms`; a forgotten track may (it would be new).
    pub fn is_due(&self, track_id: u64, ts_ms: i64) -> bool {
        self.tracks
            .iter()
            .find(|t| t.id == track_id)
            .is_none_or(|t| self.cooled_down(t, ts_ms))
    }

    /// Records that a track emitted at `ts_ms` (a no-op if it has been forgotten).
    pub fn mark_emitted(&mut self, track_id: u64, ts_ms: i64) {
        if let Some(track) = self.tracks.iter_mut().find(|t| t.id == track_id) {
            track.last_emitted_ms = Some(ts_ms);
        }
    }

    /// Updates tracks and, when `emit`, returns (and marks emitted) the detections whose
    /// track may emit now. When `emit` is false (not confirmed yet) nothing is marked.
    pub fn step(&mut self, ts_ms: i64, detections: &[Detection], emit: bool) -> Vec<Detection> {
        let tracked = self.update(ts_ms, detections);
        if !emit {
            return Vec::new();
        }
        let mut out = Vec::new();
        for (det, t) in detections.iter().zip(tracked) {
            if t.due {
                self.mark_emitted(t.track_id, ts_ms);
                out.push(det.clone());
            }
        }
        out
    }

    /// Live tracks (for tests and debugging).
    pub fn len(&self) -> usize {
        self.tracks.len()
    }

    /// Whether no track is live.
    pub fn is_empty(&self) -> bool {
        self.tracks.is_empty()
    }
}

/// Confirmation and de-duplication together: what a detector keeps per camera and
/// event type.
#[derive(Debug, Clone)]
pub struct Gate {
    confirm: TemporalConfirm,
    tracker: Tracker,
}

impl Gate {
    /// N of M confirmation, and a cooldown per track. Tracks survive M missed frames
    /// (at least 2), so a flicker inside the window keeps its track.
    pub fn new(window: u32, threshold: u32, cooldown_sec: f64) -> Self {
        Self {
            confirm: TemporalConfirm::new(window, threshold),
            tracker: Tracker::new(cooldown_sec, window.max(2)),
        }
    }

    /// The detections (already filtered by class and confidence) that make an event
    /// in the frame at `ts_ms`.
    pub fn step(&mut self, ts_ms: i64, candidates: &[Detection]) -> Vec<Detection> {
        let confirmed = self.confirm.observe(!candidates.is_empty());
        self.tracker.step(ts_ms, candidates, confirmed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(label: &str, x: f32) -> Detection {
        Detection {
            class_id: 0,
            label: label.into(),
            confidence: 0.9,
            bbox: [x, 100.0, x + 100.0, 200.0],
        }
    }

    #[test]
    fn n_of_m_confirms_only_with_enough_hits_in_the_window() {
        let mut c = TemporalConfirm::new(5, 3);
        let seq = [
            true, false, true, false, false, false, true, true, false, true,
        ];
        let got: Vec<bool> = seq.iter().map(|h| c.observe(*h)).collect();
        // Window contents after each frame; confirmed when ≥ 3 hits among the last 5.
        assert_eq!(
            got,
            [false, false, false, false, false, false, false, false, false, true]
        );
    }

    #[test]
    fn a_flicker_below_n_of_m_never_fires() {
        let mut gate = Gate::new(5, 3, 10.0);
        for frame in 0..100 {
            // Seen in 2 of every 5 frames: never 3 of 5.
            let seen = frame % 5 < 2;
            let dets = if seen {
                vec![det("knife", 10.0)]
            } else {
                vec![]
            };
            assert!(gate.step(frame * 200, &dets).is_empty(), "frame {frame}");
        }
    }

    #[test]
    fn a_steady_object_fires_once_per_cooldown() {
        let mut gate = Gate::new(5, 3, 10.0);
        let mut fired_at = Vec::new();
        // 5 fps for 35 s, the object drifting slowly to the right.
        for frame in 0..175i64 {
            let ts = frame * 200;
            if !gate.step(ts, &[det("knife", frame as f32)]).is_empty() {
                fired_at.push(ts);
            }
        }
        // Confirmed at the third frame, then every 10 s.
        assert_eq!(fired_at, [400, 10_400, 20_400, 30_400]);
    }

    #[test]
    fn a_new_object_fires_anew_and_a_returning_one_after_it_was_forgotten() {
        let mut gate = Gate::new(1, 1, 60.0);
        assert_eq!(gate.step(0, &[det("gun", 0.0)]).len(), 1);
        assert_eq!(
            gate.step(200, &[det("gun", 5.0)]).len(),
            0,
            "same track, cooling down"
        );
        // A second gun far away is a new track: it fires though the first cools down.
        let both = gate.step(400, &[det("gun", 10.0), det("gun", 900.0)]);
        assert_eq!(both.len(), 1);
        assert_eq!(both[0].bbox[0], 900.0);
        // Both vanish for longer than the track memory (2 frames), then one returns.
        for ts in [600, 800, 1000] {
            assert!(gate.step(ts, &[]).is_empty());
        }
        assert_eq!(gate.step(1200, &[det("gun", 10.0)]).len(), 1, "a new track");
    }

    #[test]
    fn tracks_match_only_their_own_label_and_cooldown_zero_fires_every_frame() {
        let mut tracker = Tracker::new(0.0, 2);
        let first = tracker.step(0, &[det("fire", 0.0), det("smoke", 0.0)], true);
        assert_eq!(first.len(), 2);
        assert_eq!(tracker.len(), 2);
        let again = tracker.step(100, &[det("fire", 1.0), det("smoke", 1.0)], true);
        assert_eq!(again.len(), 2, "cooldown 0 emits every frame");
        assert_eq!(tracker.len(), 2, "matched, not duplicated");
    }

    #[test]
    fn a_small_object_moving_clear_of_its_box_keeps_its_track() {
        let mut tracker = Tracker::new(10.0, 2);
        let small = |x: f32| Detection {
            bbox: [x, 0.0, x + 20.0, 40.0],
            ..det("person", 0.0)
        };
        assert_eq!(tracker.step(0, &[small(0.0)], true).len(), 1);
        // 30 px per frame: no overlap with the last box, but the centre is close.
        assert!(tracker.step(500, &[small(30.0)], true).is_empty());
        assert!(tracker.step(1000, &[small(60.0)], true).is_empty());
        assert_eq!(tracker.len(), 1);
        // Far away is another object.
        assert_eq!(
            tracker.step(1500, &[small(90.0), small(600.0)], true).len(),
            1
        );
    }

    #[test]
    fn a_small_object_near_a_large_one_never_takes_over_its_track() {
        let mut tracker = Tracker::new(10.0, 2);
        let large = det("person", 0.0); // 100 × 100
        let small = Detection {
            bbox: [120.0, 150.0, 140.0, 190.0], // 20 × 40, centre 80 px away
            ..det("person", 0.0)
        };
        assert_eq!(tracker.step(0, &[large], true).len(), 1);
        // The large one is missed this frame; the small one nearby is a new object.
        assert_eq!(tracker.step(200, &[small], true).len(), 1);
        assert_eq!(tracker.len(), 2);
    }

    #[test]
    fn stream_time_going_backwards_does_not_silence_a_track() {
        let mut tracker = Tracker::new(10.0, 2);
        assert_eq!(tracker.step(50_000, &[det("gun", 0.0)], true).len(), 1);
        // A reconnect restarts pts at 0: the track may emit rather than wait 60 s.
        assert_eq!(tracker.step(0, &[det("gun", 0.0)], true).len(), 1);
    }

    #[test]
    fn unconfirmed_frames_do_not_use_up_the_first_emission() {
        let mut gate = Gate::new(3, 3, 10.0);
        assert!(gate.step(0, &[det("knife", 0.0)]).is_empty());
        assert!(gate.step(200, &[det("knife", 0.0)]).is_empty());
        assert_eq!(gate.step(400, &[det("knife", 0.0)]).len(), 1);
    }
}
