//! Monotonic guards for the vehicle's lifetime counters (odometer, engine hours,
//! total fuel used): a reading that goes backwards, or forwards faster than the
//! vehicle could, is a glitch and is ignored, unless enough readings in a row
//! agree with it, which is what a replaced or reset ECU looks like.

/// One accepted reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Accepted {
    /// In line with the previous reading.
    Value(f64),
    /// A new baseline after a reset; `previous` is the last good reading.
    Rebased { value: f64, previous: f64 },
}

#[derive(Debug, Clone)]
pub struct MeterGuard {
    /// The most a counter may grow per hour, plus a fixed slack for resolution.
    max_per_h: f64,
    slack: f64,
    rebase_after: u32,
    last: Option<(u64, f64)>,
    /// A run of readings that disagree with `last` but agree with each other.
    candidate: Option<(u64, f64, u32)>,
    /// Readings ignored as glitches.
    pub rejected: u64,
}

impl MeterGuard {
    pub fn new(max_per_h: f64, slack: f64, rebase_after: u32) -> Self {
        Self {
            max_per_h,
            slack,
            rebase_after: rebase_after.max(1),
            last: None,
            candidate: None,
            rejected: 0,
        }
    }

    fn follows(&self, from: (u64, f64), t: u64, v: f64) -> bool {
        let hours = t.saturating_sub(from.0) as f64 / 3_600_000.0;
        v >= from.1 && v - from.1 <= self.max_per_h * hours + self.slack
    }

    /// The latest good value.
    pub fn value(&self) -> Option<f64> {
        self.last.map(|(_, v)| v)
    }

    pub fn offer(&mut self, t: u64, v: f64) -> Option<Accepted> {
        if !v.is_finite() || v < 0.0 {
            self.rejected += 1;
            return None;
        }
        let Some(last) = self.last else {
            self.last = Some((t, v));
            return Some(Accepted::Value(v));
        };
        if self.follows(last, t, v) {
            self.last = Some((t, v));
            self.candidate = None;
            return Some(Accepted::Value(v));
        }
        let run = match self.candidate {
            Some((ct, cv, n)) if self.follows((ct, cv), t, v) => n + 1,
            _ => 1,
        };
        if run >= self.rebase_after {
            self.last = Some((t, v));
            self.candidate = None;
            return Some(Accepted::Rebased {
                value: v,
                previous: last.1,
            });
        }
        self.candidate = Some((t, v, run));
        self.rejected += 1;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glitches_are_ignored_and_a_reset_rebases_after_agreeing_readings() {
        // An odometer in km, at most 200 km/h, 0.2 km resolution slack.
        let mut g = MeterGuard::new(200.0, 0.2, 5);
        assert_eq!(g.offer(0, 1_000.0), Some(Accepted::Value(1_000.0)));
        assert_eq!(g.offer(1_000, 1_000.02), Some(Accepted::Value(1_000.02)));
        assert_eq!(g.offer(2_000, 0.0), None, "a zero glitch");
        assert_eq!(
            g.offer(3_000, 16_777.2),
            None,
            "an all-ones-ish jump forward"
        );
        assert_eq!(g.offer(4_000, 999.0), None, "backwards");
        assert_eq!(g.offer(5_000, 1_000.05), Some(Accepted::Value(1_000.05)));
        assert_eq!(g.value(), Some(1_000.05));
        // The cluster was replaced: it now counts from 12 km, consistently.
        let mut got = Vec::new();
        for i in 0..6u64 {
            got.push(g.offer(6_000 + i * 1000, 12.0 + i as f64 * 0.01));
        }
        assert_eq!(got[..4], [None, None, None, None]);
        assert_eq!(
            got[4],
            Some(Accepted::Rebased {
                value: 12.04,
                previous: 1_000.05
            })
        );
        assert_eq!(got[5], Some(Accepted::Value(12.05)));
        assert_eq!(g.rejected, 7);
    }
}
