//! Synthetic frames for load tests: a moving bright square and bar over a grey
//! gradient, generated directly as I420 at the configured size and rate.
//!
//! They skip the decoder on purpose: a load test then measures scheduling and
//! inference rather than encoding our own test pattern. Use a `file` camera with the
//! real clips to include decode cost.

use std::time::{Duration, Instant};

use crate::decode::{ColorMatrix, Frame};
use crate::ingest::now_epoch_ms;

/// Generates frames at `fps`, paced in real time.
pub struct SyntheticFrames {
    width: u32,
    height: u32,
    interval: Duration,
    index: u64,
    start: Option<Instant>,
}

impl SyntheticFrames {
    /// A generator of `width`×`height` frames at `fps` (validated by the config).
    pub fn new(width: u32, height: u32, fps: f64) -> Self {
        Self {
            width: width & !1,
            height: height & !1,
            interval: Duration::from_secs_f64(1.0 / fps),
            index: 0,
            start: None,
        }
    }

    /// Sleeps until the next frame is due, then returns it.
    pub fn next_frame(&mut self) -> Frame {
        let start = *self.start.get_or_insert_with(Instant::now);
        let due = start + self.interval * self.index as u32;
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let frame = self.render(self.index);
        self.index += 1;
        frame
    }

    /// The frame with this index (pure: the same index gives the same picture).
    pub fn render(&self, index: u64) -> Frame {
        let (w, h) = (self.width as usize, self.height as usize);
        let mut y = vec![0u8; w * h];
        for (row, line) in y.chunks_exact_mut(w).enumerate() {
            let base = 40 + (row * 120 / h.max(1)) as u8;
            line.fill(base);
        }
        // A square moving left → right and a bar moving top → bottom.
        let side = (h / 4).max(2);
        let x0 = (index as usize * 8) % w.saturating_sub(side).max(1);
        for row in h / 3..(h / 3 + side).min(h) {
            y[row * w + x0..row * w + (x0 + side).min(w)].fill(235);
        }
        let bar_y = (index as usize * 4) % h.saturating_sub(8).max(1);
        for row in bar_y..bar_y + 8.min(h) {
            y[row * w..row * w + w / 2].fill(16);
        }
        let interval_90k = (self.interval.as_secs_f64() * 90_000.0).round() as i64;
        Frame::from_planes(
            self.width,
            self.height,
            index as i64 * interval_90k,
            Instant::now(),
            now_epoch_ms(),
            ColorMatrix::Bt601,
            [y, vec![128; w * h / 4], vec![160; w * h / 4]],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_have_the_configured_size_and_move() {
        let s = SyntheticFrames::new(320, 240, 10.0);
        let a = s.render(0);
        let b = s.render(5);
        assert_eq!((a.width, a.height), (320, 240));
        assert_eq!(a.planes()[0].len(), 320 * 240);
        assert_eq!(a.planes()[1].len(), 160 * 120);
        assert_ne!(a.planes()[0], b.planes()[0]);
        assert_eq!(b.pts_90k, 5 * 9000);
    }
}
