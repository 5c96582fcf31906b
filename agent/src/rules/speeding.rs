//! Speeding against a configured limit: one event per episode, sent when the
//! episode is over, with its top speed and how long it lasted.

use super::SpeedingRules;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpeedingEpisode {
    pub start_ms: u64,
    pub end_ms: u64,
    pub limit_kmh: f64,
    pub max_speed_kmh: f64,
    /// Time-weighted mean speed over the episode.
    pub mean_speed_kmh: f64,
    /// Where the episode began, degrees.
    pub start_at: Option<(f64, f64)>,
    pub max_at: Option<(f64, f64)>,
}

impl SpeedingEpisode {
    pub fn duration_s(&self) -> f64 {
        self.end_ms.saturating_sub(self.start_ms) as f64 / 1000.0
    }
}

#[derive(Debug, Clone, Copy)]
struct Open {
    start_ms: u64,
    last_ms: u64,
    last_kmh: f64,
    max_kmh: f64,
    /// km/h × ms, for the mean.
    area: f64,
    start_at: Option<(f64, f64)>,
    max_at: Option<(f64, f64)>,
}

pub struct SpeedingTracker {
    cfg: SpeedingRules,
    open: Option<Open>,
}

/// Speeds further apart than this are not joined into one episode.
const MAX_GAP_MS: u64 = 10_000;

impl SpeedingTracker {
    pub fn new(cfg: SpeedingRules) -> Self {
        Self { cfg, open: None }
    }

    /// A ground speed at `t`; returns an episode once one has ended.
    pub fn speed(&mut self, t: u64, kmh: f64, at: Option<(f64, f64)>) -> Option<SpeedingEpisode> {
        if self.cfg.limit_kmh <= 0.0 {
            return None;
        }
        let start_above = self.cfg.limit_kmh + self.cfg.tolerance_kmh;
        let end_below = start_above - self.cfg.hysteresis_kmh;
        let mut ended = None;
        if let Some(open) = &mut self.open {
            if t <= open.last_ms {
                return None;
            }
            if t - open.last_ms > MAX_GAP_MS {
                ended = self.close();
            } else {
                open.area += (open.last_kmh + kmh) / 2.0 * (t - open.last_ms) as f64;
                open.last_ms = t;
                open.last_kmh = kmh;
                if kmh > open.max_kmh {
                    open.max_kmh = kmh;
                    open.max_at = at.or(open.max_at);
                }
                if kmh < end_below {
                    return self.close();
                }
                return None;
            }
        }
        if kmh > start_above {
            self.open = Some(Open {
                start_ms: t,
                last_ms: t,
                last_kmh: kmh,
                max_kmh: kmh,
                area: 0.0,
                start_at: at,
                max_at: at,
            });
        }
        ended
    }

    /// Close an open episode (data stopped, the trip ended, the agent stops).
    pub fn close(&mut self) -> Option<SpeedingEpisode> {
        let open = self.open.take()?;
        let span = open.last_ms - open.start_ms;
        let episode = SpeedingEpisode {
            start_ms: open.start_ms,
            end_ms: open.last_ms,
            limit_kmh: self.cfg.limit_kmh,
            max_speed_kmh: open.max_kmh,
            mean_speed_kmh: if span == 0 {
                open.max_kmh
            } else {
                open.area / span as f64
            },
            start_at: open.start_at,
            max_at: open.max_at,
        };
        (episode.duration_s() >= self.cfg.min_duration_s).then_some(episode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(speeds: &[f64]) -> Vec<SpeedingEpisode> {
        let mut s = SpeedingTracker::new(SpeedingRules {
            limit_kmh: 80.0,
            tolerance_kmh: 5.0,
            hysteresis_kmh: 5.0,
            min_duration_s: 10.0,
        });
        let mut out: Vec<_> = speeds
            .iter()
            .enumerate()
            .filter_map(|(i, v)| s.speed(i as u64 * 1000, *v, None))
            .collect();
        out.extend(s.close());
        out
    }

    #[test]
    fn one_episode_with_its_top_speed_even_when_it_hovers_at_the_threshold() {
        let mut v = vec![70.0; 5];
        // Over 85 for a minute, dipping to 82 now and then (inside the hysteresis).
        v.extend((0..60).map(|i| {
            if i % 7 == 3 {
                82.0
            } else {
                88.0 + (i % 5) as f64
            }
        }));
        v.extend([70.0; 5]);
        let e = run(&v);
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].max_speed_kmh, 92.0);
        assert_eq!(e[0].start_ms, 5_000);
        assert!((e[0].duration_s() - 60.0).abs() < 0.01);
        assert!(e[0].mean_speed_kmh > 85.0 && e[0].mean_speed_kmh < 92.0);
    }

    #[test]
    fn brief_overtake_is_not_speeding_and_two_episodes_are_two_events() {
        let mut v = vec![80.0; 5];
        v.extend([90.0; 5]);
        v.extend([80.0; 5]);
        assert!(run(&v).is_empty());
        let mut v = vec![90.0; 20];
        v.extend([75.0; 5]);
        v.extend([95.0; 20]);
        assert_eq!(run(&v).len(), 2);
    }
}
