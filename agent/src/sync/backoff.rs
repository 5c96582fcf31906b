//! Exponential backoff with full jitter: the n-th retry waits a uniformly random
//! time in `[0, min(max, base · 2ⁿ)]`, so a thousand devices that lost the server
//! at the same moment come back spread over the whole window instead of in waves.
//!
//! Pure: the caller passes the random source and does the sleeping.

use rand::Rng;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max: max.max(base),
            attempt: 0,
        }
    }

    /// Failures since the last success.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The upper bound of the next delay: `min(max, base · 2^attempt)`.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        self.base
            .checked_mul(factor)
            .map_or(self.max, |d| d.min(self.max))
    }

    /// The delay before the next retry; counts one more failure.
    pub fn next_delay<R: Rng + ?Sized>(&mut self, rng: &mut R) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rng.gen_range(0..=nanos))
    }

    /// The longest wait, for failures that retrying soon can't fix (a 4xx that
    /// needs a new agent or an operator). Later retries stay at the maximum.
    pub fn give_up_delay(&mut self) -> Duration {
        self.attempt = u32::MAX;
        self.max
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn delays_stay_within_full_jitter_bounds() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(30);
        let mut rng = StdRng::seed_from_u64(7);
        let mut b = Backoff::new(base, max);
        for n in 0..40u32 {
            let bound = base
                .checked_mul(1u32.checked_shl(n).unwrap_or(u32::MAX))
                .map_or(max, |d| d.min(max));
            assert_eq!(b.ceiling(), bound, "attempt {n}");
            let d = b.next_delay(&mut rng);
            assert!(d <= bound, "attempt {n}: {d:?} > {bound:?}");
        }
    }

    #[test]
    fn jitter_spreads_over_the_whole_window() {
        let mut rng = StdRng::seed_from_u64(42);
        let window = Duration::from_secs(8);
        let samples: Vec<Duration> = (0..2_000)
            .map(|_| {
                let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
                for _ in 0..3 {
                    b.next_delay(&mut rng);
                }
                b.next_delay(&mut rng)
            })
            .collect();
        let low = samples.iter().filter(|d| **d < window / 4).count();
        let high = samples.iter().filter(|d| **d > window * 3 / 4).count();
        // Uniform over [0, 8 s]: about a quarter in each outer quarter.
        assert!((400..600).contains(&low), "low quarter {low}");
        assert!((400..600).contains(&high), "high quarter {high}");
        assert!(samples.iter().all(|d| *d <= window));
    }

    #[test]
    fn success_resets_the_window_to_base() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut b = Backoff::new(Duration::from_millis(50), Duration::from_secs(10));
        for _ in 0..10 {
            b.next_delay(&mut rng);
        }
        assert_eq!(b.ceiling(), Duration::from_secs(10));
        b.reset();
        assert_eq!(b.attempt(), 0);
        assert_eq!(b.ceiling(), Duration::from_millis(50));
    }

    #[test]
    fn giving_up_waits_the_maximum_and_stays_there() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut b = Backoff::new(Duration::from_millis(50), Duration::from_secs(10));
        assert_eq!(b.give_up_delay(), Duration::from_secs(10));
        assert_eq!(b.ceiling(), Duration::from_secs(10));
        assert!(b.next_delay(&mut rng) <= Duration::from_secs(10));
    }

    #[test]
    fn a_huge_attempt_count_does_not_overflow() {
        let mut b = Backoff::new(Duration::from_secs(3600), Duration::from_secs(7200));
        b.attempt = 1_000;
        assert_eq!(b.ceiling(), Duration::from_secs(7200));
    }
}
