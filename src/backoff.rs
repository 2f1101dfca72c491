//! The one retry schedule: capped exponential backoff with jitter, for cameras that
//! reconnect and publishers that resend.
//!
//! Pure: [`Backoff::delay_with`] takes the random draw, so tests pin it exactly;
//! [`Backoff::delay`] draws it from the clock's low bits, which is enough to spread a
//! reconnect storm.

use std::time::Duration;

/// Retry `n` waits `base · 2^(n−1)`, at most `cap`, times a factor within `±jitter`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The first pause.
    pub base: Duration,
    /// The longest pause, before jitter.
    pub cap: Duration,
    /// The spread of the factor around 1 (0.2: ±20%).
    pub jitter: f64,
}

impl Backoff {
    /// `base` doubling up to `cap`, with ±20% jitter.
    pub const fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap,
            jitter: 0.2,
        }
    }

    /// The pause before retry `n` (1-based), for a draw `unit` in `0..1` (0.5 is the
    /// nominal pause).
    pub fn delay_with(&self, n: u32, unit: f64) -> Duration {
        let doublings = n.saturating_sub(1).min(20);
        let nominal = self.base.saturating_mul(1 << doublings).min(self.cap);
        nominal.mul_f64(1.0 - self.jitter + 2.0 * self.jitter * unit.clamp(0.0, 1.0))
    }

    /// The pause before retry `n` (1-based), with jitter drawn from the clock.
    pub fn delay(&self, n: u32) -> Duration {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        self.delay_with(n, f64::from(nanos % 1000) / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_up_to_the_cap_within_the_jitter() {
        let b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let nominal: Vec<u64> = (1..=8)
            .map(|n| b.delay_with(n, 0.5).as_millis() as u64)
            .collect();
        assert_eq!(
            nominal,
            [1000, 2000, 4000, 8000, 16_000, 32_000, 60_000, 60_000]
        );
        assert_eq!(b.delay_with(3, 0.0), Duration::from_millis(3200));
        assert_eq!(b.delay_with(3, 1.0), Duration::from_millis(4800));
        assert_eq!(b.delay_with(u32::MAX, 0.5), Duration::from_secs(60));
        assert_eq!(b.delay_with(0, 0.5), Duration::from_secs(1));
        for n in 1..=10 {
            let d = b.delay(n);
            let nominal = b.delay_with(n, 0.5).as_secs_f64();
            assert!((d.as_secs_f64() - nominal).abs() <= nominal * 0.2 + 1e-9);
        }
    }
}
