//! How long to wait before reconnecting: exponential backoff with jitter, 1 s doubling up to
//! 5 min, reset after a stream that stayed up long enough to count as healthy.
//!
//! The delay is a pure function of the failure count and a jitter draw in `[0, 1)`, so the
//! schedule is tested without sleeping; [`Backoff`] only keeps the count.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::time::Duration;

/// The first delay.
pub const INITIAL: Duration = Duration::from_secs(1);
/// The longest delay.
pub const MAX: Duration = Duration::from_secs(300);
/// A stream that stayed up longer than this resets the schedule.
pub const HEALTHY_STREAM: Duration = Duration::from_secs(60);

/// The delay after `failures` consecutive failures (0 for the first retry), for a jitter draw
/// `jitter` in `[0, 1)`: "equal jitter", half the exponential step plus a random part of the
/// other half, so reconnecting agents spread out but never retry at once.
pub fn delay(failures: u32, jitter: f64) -> Duration {
    let step = INITIAL
        .checked_mul(2u32.saturating_pow(failures.min(31)))
        .unwrap_or(MAX)
        .min(MAX);
    let half = step / 2;
    half + half.mul_f64(jitter.clamp(0.0, 1.0))
}

/// A fresh jitter draw in `[0, 1)`. Not a security use: std's per-instance random hash keys
/// are enough to keep a fleet from reconnecting in lockstep.
pub fn jitter() -> f64 {
    let bits = RandomState::new().hash_one(std::process::id()) >> 11;
    bits as f64 / (1u64 << 53) as f64
}

/// The reconnect schedule of one agent.
#[derive(Debug, Default, Clone)]
pub struct Backoff {
    failures: u32,
}

impl Backoff {
    /// A schedule with no failures yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the end of a stream that was up for `up_for` (zero if it never opened) and
    /// returns how long to wait before the next attempt.
    pub fn after_stream(&mut self, up_for: Duration, jitter: f64) -> Duration {
        if up_for > HEALTHY_STREAM {
            self.failures = 0;
        }
        let wait = delay(self.failures, jitter);
        self.failures = self.failures.saturating_add(1);
        wait
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_one_second_up_to_five_minutes() {
        let top: Vec<u64> = (0..12).map(|n| delay(n, 0.999_999).as_secs()).collect();
        assert_eq!(top, [0, 1, 3, 7, 15, 31, 63, 127, 255, 299, 299, 299]);
        assert_eq!(delay(0, 0.999_999).as_millis(), 999);
        assert_eq!(delay(9, 1.0), MAX);
        assert_eq!(delay(u32::MAX, 1.0), MAX);
    }

    #[test]
    fn jitter_keeps_at_least_half_the_step() {
        assert_eq!(delay(0, 0.0), Duration::from_millis(500));
        assert_eq!(delay(3, 0.0), Duration::from_secs(4));
        assert_eq!(delay(3, 0.5), Duration::from_secs(6));
        assert_eq!(delay(20, 0.0), MAX / 2);
        // Out-of-range draws are clamped rather than trusted.
        assert_eq!(delay(3, -4.0), Duration::from_secs(4));
        assert_eq!(delay(3, 7.0), Duration::from_secs(8));
    }

    #[test]
    fn jitter_draws_are_in_range_and_vary() {
        let draws: Vec<f64> = (0..64).map(|_| jitter()).collect();
        assert!(draws.iter().all(|j| (0.0..1.0).contains(j)));
        assert!(draws.windows(2).any(|w| w[0] != w[1]));
    }

    #[test]
    fn short_streams_grow_the_delay_and_a_healthy_one_resets_it() {
        let mut b = Backoff::new();
        let short = Duration::from_secs(5);
        assert_eq!(b.after_stream(Duration::ZERO, 1.0), Duration::from_secs(1));
        assert_eq!(b.after_stream(short, 1.0), Duration::from_secs(2));
        assert_eq!(b.after_stream(short, 1.0), Duration::from_secs(4));
        assert_eq!(b.failures(), 3);
        // Exactly 60 s is not "more than 60 s".
        assert_eq!(b.after_stream(HEALTHY_STREAM, 1.0), Duration::from_secs(8));
        let healthy = HEALTHY_STREAM + Duration::from_secs(1);
        assert_eq!(b.after_stream(healthy, 1.0), Duration::from_secs(1));
        assert_eq!(b.failures(), 1);
    }
}
