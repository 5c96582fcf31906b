//! Signal sampling policies: how often a changing value is worth sending.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum SamplingPolicy {
    /// Never sent.
    Off,
    /// The latest value, once per period.
    Interval { period_s: f64 },
    /// When it moved by at least `deadband` since the last value sent, but no more
    /// often than `min_period_s`; and at least every `max_period_s` regardless.
    OnChange {
        deadband: f64,
        min_period_s: f64,
        max_period_s: f64,
    },
}

/// The state of one policy for one signal.
#[derive(Debug, Clone)]
pub struct Sampler {
    policy: SamplingPolicy,
    last_sent: Option<(u64, f64)>,
}

impl Sampler {
    pub fn new(policy: SamplingPolicy) -> Self {
        Self {
            policy,
            last_sent: None,
        }
    }

    /// Offer a value observed at `mono_ms`; `true` if it should be sent.
    pub fn offer(&mut self, mono_ms: u64, value: f64) -> bool {
        let since = |last: u64| mono_ms.saturating_sub(last) as f64 / 1000.0;
        let send = match (&self.policy, self.last_sent) {
            (SamplingPolicy::Off, _) => false,
            (_, None) => true,
            (SamplingPolicy::Interval { period_s }, Some((t, _))) => since(t) >= *period_s,
            (
                SamplingPolicy::OnChange {
                    deadband,
                    min_period_s,
                    max_period_s,
                },
                Some((t, v)),
            ) => {
                let age = since(t);
                age >= *max_period_s || (age >= *min_period_s && (value - v).abs() >= *deadband)
            }
        };
        if send {
            self.last_sent = Some((mono_ms, value));
        }
        send
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_sends_once_per_period() {
        let mut s = Sampler::new(SamplingPolicy::Interval { period_s: 10.0 });
        let sent: Vec<u64> = (0..35)
            .map(|i| i * 1000)
            .filter(|&t| s.offer(t, 1.0))
            .collect();
        assert_eq!(sent, vec![0, 10_000, 20_000, 30_000]);
    }

    #[test]
    fn on_change_respects_deadband_and_both_periods() {
        let mut s = Sampler::new(SamplingPolicy::OnChange {
            deadband: 2.0,
            min_period_s: 5.0,
            max_period_s: 60.0,
        });
        assert!(s.offer(0, 80.0));
        assert!(!s.offer(1_000, 85.0), "too soon after the last send");
        assert!(!s.offer(6_000, 81.0), "inside the deadband");
        assert!(s.offer(7_000, 83.0));
        assert!(!s.offer(50_000, 83.5));
        assert!(s.offer(67_000, 83.5), "heartbeat at the max period");
    }

    #[test]
    fn off_never_sends() {
        let mut s = Sampler::new(SamplingPolicy::Off);
        assert!(!(0..100).any(|i| s.offer(i * 1000, i as f64)));
    }
}
