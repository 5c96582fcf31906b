//! Progress of a backfill: after a long outage the outbox drains in many full
//! batches, and a technician watching the journal wants to see it move. Pure:
//! the sync loop says when batches are acked and logs what this returns, at most
//! once per period.

use std::time::{Duration, Instant};

/// How often a running backfill is reported.
pub const REPORT_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct Backfill {
    every: Duration,
    /// When the backfill started and the ack then.
    start: Option<(Instant, u64)>,
    last_report: Option<Instant>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BackfillReport {
    pub acked: u64,
    pub remaining: u64,
    pub events_per_s: f64,
    /// Time left at the rate so far.
    pub eta: Option<Duration>,
    pub done: bool,
}

impl Backfill {
    pub fn new(every: Duration) -> Self {
        Self {
            every,
            start: None,
            last_report: None,
        }
    }

    /// A batch was acked; `full` when it held as many events as a batch may, so
    /// more are waiting. True when the caller should look up the store's last
    /// seq and call [`Backfill::report`].
    pub fn on_ack(&mut self, now: Instant, acked_before: u64, full: bool) -> bool {
        match (self.start, full) {
            (None, true) => {
                self.start = Some((now, acked_before));
                self.last_report = Some(now);
                false
            }
            (None, false) => false,
            // A short batch ends the backfill: report the end once.
            (Some(_), false) => true,
            (Some(_), true) => self.last_report.is_none_or(|t| now - t >= self.every),
        }
    }

    /// The figures to log, given the ack now and the last seq recorded.
    pub fn report(&mut self, now: Instant, acked: u64, recorded: u64) -> Option<BackfillReport> {
        let (started, acked_at_start) = self.start?;
        self.last_report = Some(now);
        let secs = (now - started).as_secs_f64().max(1e-3);
        let rate = acked.saturating_sub(acked_at_start) as f64 / secs;
        let remaining = recorded.saturating_sub(acked);
        let done = remaining == 0;
        if done {
            self.start = None;
        }
        Some(BackfillReport {
            acked,
            remaining,
            events_per_s: rate,
            eta: (rate > 0.0 && !done).then(|| Duration::from_secs_f64(remaining as f64 / rate)),
            done,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_backfill_is_reported_once_per_period_with_rate_and_eta_then_once_at_the_end() {
        let t0 = Instant::now();
        let mut b = Backfill::new(Duration::from_secs(10));
        assert!(
            !b.on_ack(t0, 0, true),
            "the first full batch only starts it"
        );
        assert!(!b.on_ack(t0 + Duration::from_secs(4), 5_000, true));
        let at = t0 + Duration::from_secs(10);
        assert!(b.on_ack(at, 10_000, true));
        let r = b.report(at, 15_000, 45_000).expect("running");
        assert_eq!(r.remaining, 30_000);
        assert!((r.events_per_s - 1_500.0).abs() < 1e-6, "{r:?}");
        assert_eq!(r.eta, Some(Duration::from_secs(20)));
        assert!(!r.done);
        assert!(
            !b.on_ack(at + Duration::from_secs(1), 15_000, true),
            "rate-limited"
        );
        let end = at + Duration::from_secs(12);
        assert!(b.on_ack(end, 40_000, false));
        let r = b.report(end, 45_000, 45_000).expect("end");
        assert!(r.done && r.eta.is_none());
        assert!(!b.on_ack(end, 45_000, false), "nothing after the end");
    }

    #[test]
    fn short_batches_of_live_traffic_are_never_reported() {
        let t0 = Instant::now();
        let mut b = Backfill::new(Duration::from_secs(10));
        for i in 0..100 {
            assert!(!b.on_ack(t0 + Duration::from_secs(i * 20), i * 10, false));
        }
    }
}
