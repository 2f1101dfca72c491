//! Which decoded frames a camera keeps: evenly spaced at `fps_target`, by pts.

/// Keeps frames at most `fps_target` per second, evenly spaced on the pts clock.
#[derive(Debug, Clone)]
pub struct FrameSelector {
    interval_90k: i64,
    next_due_90k: Option<i64>,
}

impl FrameSelector {
    /// A selector for `fps_target` frames per second (every frame when it is 0 or less).
    pub fn new(fps_target: f64) -> Self {
        let interval_90k = if fps_target > 0.0 {
            (90_000.0 / fps_target).round() as i64
        } else {
            0
        };
        Self {
            interval_90k,
            next_due_90k: None,
        }
    }

    /// Whether the frame at `pts_90k` is kept. Frames arrive in pts order on the
    /// camera's timeline (`crate::ingest::timeline`); should a pts still go back by more
    /// than a second, the spacing restarts there rather than waiting for the old
    /// timeline to be reached again.
    pub fn keep(&mut self, pts_90k: i64) -> bool {
        // Half a source frame of slack at 60 fps absorbs pts jitter and rounding.
        const SLACK_90K: i64 = 750;
        const BACKWARDS_90K: i64 = 90_000;
        match self.next_due_90k {
            Some(due) if due - pts_90k > self.interval_90k + BACKWARDS_90K => {
                self.next_due_90k = Some(pts_90k + self.interval_90k);
                true
            }
            Some(due) if pts_90k + SLACK_90K < due => false,
            Some(due) => {
                // Step from the due time, not the frame's pts, so the rate stays exact;
                // after a gap (a jump forward), restart from this frame.
                let next = due + self.interval_90k;
                self.next_due_90k = Some(if pts_90k >= next {
                    pts_90k + self.interval_90k
                } else {
                    next
                });
                true
            }
            None => {
                self.next_due_90k = Some(pts_90k + self.interval_90k);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(fps_target: f64, source_fps: f64, seconds: f64) -> Vec<i64> {
        let mut s = FrameSelector::new(fps_target);
        let step = 90_000.0 / source_fps;
        (0..(source_fps * seconds) as i64)
            .map(|i| (i as f64 * step).round() as i64)
            .filter(|&pts| s.keep(pts))
            .collect()
    }

    #[test]
    fn five_of_twenty_five_are_every_fifth_frame() {
        let pts = kept(5.0, 25.0, 2.0);
        assert_eq!(pts.len(), 10);
        assert!(pts.windows(2).all(|w| w[1] - w[0] == 18_000), "{pts:?}");
    }

    #[test]
    fn uneven_ratios_stay_evenly_spaced_on_average() {
        // 3 fps from 25 fps: 30 frames in 10 s, gaps of 8 or 9 source frames.
        let pts = kept(3.0, 25.0, 10.0);
        assert_eq!(pts.len(), 30);
        for w in pts.windows(2) {
            let gap = w[1] - w[0];
            assert!(gap == 8 * 3600 || gap == 9 * 3600, "gap {gap}");
        }
    }

    #[test]
    fn a_target_above_the_source_rate_keeps_everything() {
        assert_eq!(kept(60.0, 25.0, 1.0).len(), 25);
        assert_eq!(kept(0.0, 25.0, 1.0).len(), 25);
    }

    #[test]
    fn a_jump_in_pts_restarts_the_spacing() {
        let mut s = FrameSelector::new(1.0);
        assert!(s.keep(0));
        assert!(!s.keep(45_000));
        assert!(s.keep(900_000)); // ten seconds later: a loop or a reconnect
        assert!(!s.keep(900_000 + 3600));
        assert!(s.keep(990_000));
    }

    #[test]
    fn pts_that_go_back_restart_the_spacing_instead_of_stopping_it() {
        let mut s = FrameSelector::new(2.0);
        assert!(s.keep(900_000));
        assert!(!s.keep(900_000 + 3600));
        // A timeline that starts again at 0 keeps flowing at 2 fps.
        let kept = (0..50).map(|k| k * 3600).filter(|&p| s.keep(p)).count();
        assert_eq!(kept, 4);
    }
}
