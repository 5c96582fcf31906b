//! Battery health: a low battery while parked, and weak cranking (the voltage
//! sags too far while the starter turns). Thresholds are for a 12 V system; a
//! truck's 24 V system, recognised from its readings, uses twice them.

use super::BatteryRules;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PowerEvent {
    Low {
        since_ms: u64,
        at_ms: u64,
        min_v: f64,
        threshold_v: f64,
    },
    CrankingWeak {
        start_ms: u64,
        end_ms: u64,
        min_v: f64,
        threshold_v: f64,
        /// Whether the engine started after all.
        started: bool,
    },
}

/// A reading above this can only come from a 24 V system.
const TWENTY_FOUR_VOLT_ABOVE: f64 = 16.0;
/// A start attempt that has not brought the engine up by then has failed.
const CRANK_TIMEOUT_MS: u64 = 15_000;

#[derive(Debug, Clone, Copy)]
struct Crank {
    start_ms: u64,
    min_v: Option<f64>,
}

pub struct PowerMonitor {
    cfg: BatteryRules,
    scale: Option<f64>,
    low_since: Option<(u64, f64)>,
    low_reported: bool,
    crank: Option<Crank>,
}

impl PowerMonitor {
    pub fn new(cfg: BatteryRules) -> Self {
        Self {
            cfg,
            scale: None,
            low_since: None,
            low_reported: false,
            crank: None,
        }
    }

    fn scale(&self) -> f64 {
        self.scale.unwrap_or(1.0)
    }

    /// A battery voltage reading at `t`; `ignition` is the ignition state then.
    pub fn voltage(&mut self, t: u64, v: f64, ignition: bool) -> Option<PowerEvent> {
        if v > TWENTY_FOUR_VOLT_ABOVE {
            self.scale = Some(2.0);
        } else if self.scale.is_none() && v > 8.0 && !ignition {
            // A resting 12 V battery; cranking dips of a 24 V one can look like it,
            // so only readings with the ignition off decide for 12 V.
            self.scale = Some(1.0);
        }
        if let Some(c) = &mut self.crank {
            c.min_v = Some(c.min_v.map_or(v, |m| m.min(v)));
        }
        let low = self.cfg.low_v * self.scale();
        if ignition || v > (self.cfg.low_v + self.cfg.recover_v) * self.scale() {
            self.low_since = None;
            self.low_reported = false;
            return None;
        }
        if v >= low {
            return None;
        }
        let (since, min_v) = self.low_since.get_or_insert((t, v));
        *min_v = min_v.min(v);
        let (since, min_v) = (*since, *min_v);
        if !self.low_reported && (t - since) as f64 / 1000.0 >= self.cfg.low_after_s {
            self.low_reported = true;
            return Some(PowerEvent::Low {
                since_ms: since,
                at_ms: t,
                min_v,
                threshold_v: low,
            });
        }
        None
    }

    /// The starter may be turning: the ignition came on with the engine stopped,
    /// or the engine turns below running speed.
    pub fn cranking(&mut self, t: u64) {
        if self.crank.is_none() {
            self.crank = Some(Crank {
                start_ms: t,
                min_v: None,
            });
        }
    }

    /// The engine runs (`true`) or the attempt ended: judge the crank.
    pub fn crank_over(&mut self, t: u64, started: bool) -> Option<PowerEvent> {
        let c = self.crank.take()?;
        let min_v = c.min_v?;
        let threshold_v = self.cfg.cranking_weak_v * self.scale();
        (min_v < threshold_v).then_some(PowerEvent::CrankingWeak {
            start_ms: c.start_ms,
            end_ms: t,
            min_v,
            threshold_v,
            started,
        })
    }

    /// A start attempt that never got the engine running is judged as failed.
    pub fn tick(&mut self, t: u64) -> Option<PowerEvent> {
        match self.crank {
            Some(c) if t.saturating_sub(c.start_ms) > CRANK_TIMEOUT_MS => self.crank_over(t, false),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parked_battery_draining_below_threshold_is_reported_once() {
        let mut p = PowerMonitor::new(BatteryRules::default());
        let mut out = Vec::new();
        // 12.4 V falling to 11.2 V over 40 minutes, ignition off.
        for i in 0..2_400u64 {
            out.extend(p.voltage(i * 1000, 12.4 - i as f64 * 0.0005, false));
        }
        assert_eq!(out.len(), 1, "{out:?}");
        let PowerEvent::Low {
            since_ms, at_ms, ..
        } = out[0]
        else {
            panic!("{out:?}")
        };
        // Below 11.8 V from 1 200 s on, reported 300 s later.
        assert!((since_ms as i64 - 1_201_000).abs() <= 1_000, "{since_ms}");
        assert_eq!(at_ms - since_ms, 300_000);
        // With the ignition on (alternator charging) it re-arms.
        assert!(p.voltage(2_500_000, 14.1, true).is_none());
        for i in 0..400u64 {
            out.extend(p.voltage(2_600_000 + i * 1000, 11.0, false));
        }
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn weak_crank_of_a_24_volt_truck_is_judged_against_twice_the_threshold() {
        let mut p = PowerMonitor::new(BatteryRules::default());
        assert!(p.voltage(0, 25.0, false).is_none());
        p.cranking(1_000);
        p.voltage(1_500, 20.4, true);
        assert!(
            p.crank_over(2_500, true).is_none(),
            "20.4 V on 24 V is healthy"
        );
        p.cranking(10_000);
        p.voltage(10_400, 17.1, true);
        p.voltage(10_900, 18.0, true);
        let e = p.crank_over(11_500, true).expect("weak");
        assert_eq!(
            e,
            PowerEvent::CrankingWeak {
                start_ms: 10_000,
                end_ms: 11_500,
                min_v: 17.1,
                threshold_v: 19.2,
                started: true
            }
        );
        // A crank that never starts the engine is judged when it times out.
        p.cranking(20_000);
        p.voltage(20_500, 15.0, true);
        assert!(p.tick(30_000).is_none());
        assert!(matches!(
            p.tick(36_000),
            Some(PowerEvent::CrankingWeak { started: false, .. })
        ));
    }
}
