//! Fuel-level drops while the vehicle stands still: possible theft.
//!
//! Tank senders slosh and jitter by several percent, so levels are smoothed with
//! a running median first. While the vehicle stands, the highest smoothed level
//! of the last `within_min` minutes is the reference; falling more than
//! `drop_pct` below it is an event, after which the reference starts again.
//! Time without readings (the bus sleeps with the ignition off) does not age the
//! reference, so a tank drained overnight shows when the ignition comes back.

use super::FuelDropRules;
use std::collections::VecDeque;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FuelDrop {
    pub from_pct: f64,
    pub to_pct: f64,
    /// When the reference level was read, and when the drop was confirmed.
    pub from_ms: u64,
    pub at_ms: u64,
}

impl FuelDrop {
    pub fn drop_pct(&self) -> f64 {
        self.from_pct - self.to_pct
    }
}

pub struct FuelDropDetector {
    cfg: FuelDropRules,
    /// Raw readings of the smoothing window.
    raw: VecDeque<(u64, f64)>,
    /// Smoothed levels while stationary: (active time, mono time, level).
    history: VecDeque<(u64, u64, f64)>,
    /// Time that counts towards `within_min`: gaps in the readings are left out.
    active_ms: u64,
    last_ms: Option<u64>,
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

impl FuelDropDetector {
    pub fn new(cfg: FuelDropRules) -> Self {
        Self {
            cfg,
            raw: VecDeque::new(),
            history: VecDeque::new(),
            active_ms: 0,
            last_ms: None,
        }
    }

    /// The vehicle moves: using fuel is what driving does.
    pub fn moving(&mut self) {
        self.history.clear();
    }

    /// A level reading at `t`, with whether the vehicle stands still (speed 0 or
    /// the ignition off).
    pub fn level(&mut self, t: u64, pct: f64, stationary: bool) -> Option<FuelDrop> {
        let smoothing_ms = (self.cfg.smoothing_s * 1000.0) as u64;
        if let Some(last) = self.last_ms {
            if t <= last {
                return None;
            }
            self.active_ms += (t - last).min(smoothing_ms.max(1_000));
            if t - last > smoothing_ms {
                // The readings before a gap say nothing about the slosh after it.
                self.raw.clear();
            }
        }
        self.last_ms = Some(t);
        self.raw.push_back((t, pct));
        while self.raw.front().is_some_and(|(r, _)| t - r > smoothing_ms) {
            self.raw.pop_front();
        }
        if !stationary {
            self.history.clear();
            return None;
        }
        let mut window: Vec<f64> = self.raw.iter().map(|(_, v)| *v).collect();
        let level = median(&mut window);
        let within_ms = (self.cfg.within_min * 60_000.0) as u64;
        while self
            .history
            .front()
            .is_some_and(|(a, _, _)| self.active_ms - a > within_ms)
        {
            self.history.pop_front();
        }
        self.history.push_back((self.active_ms, t, level));
        let (_, from_ms, from_pct) = self
            .history
            .iter()
            .copied()
            .max_by(|a, b| a.2.total_cmp(&b.2))?;
        if from_pct - level > self.cfg.drop_pct {
            self.history.clear();
            self.history.push_back((self.active_ms, t, level));
            return Some(FuelDrop {
                from_pct,
                to_pct: level,
                from_ms,
                at_ms: t,
            });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detector() -> FuelDropDetector {
        FuelDropDetector::new(FuelDropRules::default())
    }

    /// Deterministic slosh of ±`amp` percent around `level`.
    fn slosh(i: u64, level: f64, amp: f64) -> f64 {
        level + amp * ((i * 7_919 % 13) as f64 / 6.0 - 1.0)
    }

    #[test]
    fn siphoning_while_parked_is_one_event() {
        let mut d = detector();
        let mut out = Vec::new();
        // 10 min steady at 60 %, then 32 L of a 400 L tank out in 4 minutes.
        for i in 0..1_200u64 {
            let level = if i < 600 {
                60.0
            } else {
                (60.0 - (i - 600) as f64 * 10.0 / 300.0).max(52.0)
            };
            out.extend(d.level(i * 1000, slosh(i, level, 1.5), true));
        }
        assert_eq!(out.len(), 1, "{out:?}");
        assert!((out[0].from_pct - 60.0).abs() < 0.6, "{out:?}");
        assert!(out[0].drop_pct() > 5.0);
    }

    #[test]
    fn slosh_and_driving_consumption_are_not_theft() {
        let mut d = detector();
        let mut out = Vec::new();
        // An hour of driving burns 8 % with ±4 % slosh, then standing still with slosh.
        for i in 0..3_600u64 {
            out.extend(d.level(i * 1000, slosh(i, 70.0 - i as f64 / 450.0, 4.0), false));
        }
        for i in 3_600..4_800u64 {
            out.extend(d.level(i * 1000, slosh(i, 62.0, 2.5), true));
        }
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn tank_drained_while_the_bus_slept_shows_at_the_next_start() {
        let mut d = detector();
        let mut out = Vec::new();
        for i in 0..120u64 {
            out.extend(d.level(i * 1000, 55.0, true));
        }
        // Eight hours later, ignition on: 20 % less, same place.
        let later = 8 * 3_600_000;
        for i in 0..120u64 {
            out.extend(d.level(later + i * 1000, 35.0, true));
        }
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].from_pct, 55.0);
        assert_eq!(out[0].to_pct, 35.0);
        assert_eq!(out[0].from_ms, 119_000);
    }
}
