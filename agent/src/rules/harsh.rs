//! Harsh acceleration, braking and cornering.
//!
//! Longitudinal acceleration is the derivative of ground speed over about a
//! second: the wheels when the bus reports them, GPS Doppler speed otherwise.
//! Lateral acceleration is speed times yaw rate, the yaw rate coming from the
//! change of GPS course between fixes. A GPS fix that jumps (its position
//! disagrees with its speed, or its speed changes faster than a road vehicle
//! can) breaks the chain instead of becoming an event.

use super::HarshRules;
use fleet_protocol::Position;
use std::collections::VecDeque;

/// Which way the vehicle was pushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HarshKind {
    Acceleration,
    Braking,
    Cornering,
}

/// One harsh episode, reported once it is over.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HarshEpisode {
    pub kind: HarshKind,
    pub start_ms: u64,
    pub end_ms: u64,
    pub peak_mps2: f64,
    /// Ground speed when the episode began.
    pub speed_kmh: f64,
    /// Where the peak was, degrees.
    pub at: Option<(f64, f64)>,
    /// `wheel` or `gps`.
    pub source: &'static str,
}

impl HarshEpisode {
    pub fn duration_s(&self) -> f64 {
        self.end_ms.saturating_sub(self.start_ms) as f64 / 1000.0
    }
}

#[derive(Debug, Clone, Copy)]
struct Open {
    start_ms: u64,
    last_over_ms: u64,
    peak: f64,
    speed_kmh: f64,
    at: Option<(f64, f64)>,
    source: &'static str,
}

/// Hysteresis and minimum duration for one kind.
#[derive(Debug, Clone)]
struct Tracker {
    kind: HarshKind,
    open: Option<Open>,
}

/// One derivative sample: its value and the time it was measured over.
#[derive(Debug, Clone, Copy)]
struct Reading {
    t: u64,
    window_ms: u64,
    value: f64,
    speed_kmh: f64,
    at: Option<(f64, f64)>,
    source: &'static str,
}

impl Tracker {
    fn new(kind: HarshKind) -> Self {
        Self { kind, open: None }
    }

    fn threshold(&self, cfg: &HarshRules) -> f64 {
        match self.kind {
            HarshKind::Acceleration => cfg.acceleration_mps2,
            HarshKind::Braking => cfg.braking_mps2,
            HarshKind::Cornering => cfg.cornering_mps2,
        }
    }

    fn update(&mut self, cfg: &HarshRules, r: Reading) -> Option<HarshEpisode> {
        let threshold = self.threshold(cfg);
        match &mut self.open {
            None if r.value > threshold => {
                self.open = Some(Open {
                    start_ms: r.t.saturating_sub(r.window_ms),
                    last_over_ms: r.t,
                    peak: r.value,
                    speed_kmh: r.speed_kmh,
                    at: r.at,
                    source: r.source,
                });
                None
            }
            None => None,
            Some(open) if r.value >= threshold * cfg.release_ratio => {
                if r.value > threshold {
                    open.last_over_ms = r.t;
                }
                if r.value > open.peak {
                    open.peak = r.value;
                    open.at = r.at.or(open.at);
                }
                None
            }
            Some(_) => self.close(cfg),
        }
    }

    fn close(&mut self, cfg: &HarshRules) -> Option<HarshEpisode> {
        let open = self.open.take()?;
        let episode = HarshEpisode {
            kind: self.kind,
            start_ms: open.start_ms,
            end_ms: open.last_over_ms,
            peak_mps2: open.peak,
            speed_kmh: open.speed_kmh,
            at: open.at,
            source: open.source,
        };
        (episode.duration_s() >= cfg.min_duration_s).then_some(episode)
    }
}

/// Wheel speed older than this no longer stands in for GPS speed.
const WHEEL_FRESH_MS: u64 = 3_000;
/// Speed derivatives are taken over at least this long, against quantisation.
const DERIVATIVE_WINDOW_MS: u64 = 1_000;
/// A gap longer than this between two speeds is not differentiated across.
const MAX_GAP_MS: u64 = 3_000;
/// A fix with an HDOP above this (×10) or fewer satellites is not trusted.
const MAX_HDOP_D: u16 = 50;
const MIN_SATS: u8 = 4;

#[derive(Debug, Clone, Copy)]
struct GpsPoint {
    t: u64,
    pos: Position,
    speed: f64,
}

pub struct HarshDetector {
    cfg: HarshRules,
    accel: Tracker,
    brake: Tracker,
    corner: Tracker,
    wheel: VecDeque<(u64, f64)>,
    last_gps: Option<GpsPoint>,
    /// Fixes rejected as jumps or glitches, for health reports.
    pub rejected_fixes: u64,
}

fn distance_m(a: &Position, b: &Position) -> f64 {
    const M_PER_DEG: f64 = 111_320.0;
    let dy = (b.lat() - a.lat()) * M_PER_DEG;
    let dx = (b.lon() - a.lon()) * M_PER_DEG * a.lat().to_radians().cos();
    dx.hypot(dy)
}

impl HarshDetector {
    pub fn new(cfg: HarshRules) -> Self {
        Self {
            accel: Tracker::new(HarshKind::Acceleration),
            brake: Tracker::new(HarshKind::Braking),
            corner: Tracker::new(HarshKind::Cornering),
            cfg,
            wheel: VecDeque::new(),
            last_gps: None,
            rejected_fixes: 0,
        }
    }

    fn wheel_fresh(&self, now: u64) -> bool {
        self.wheel
            .back()
            .is_some_and(|(t, _)| now.saturating_sub(*t) <= WHEEL_FRESH_MS)
    }

    fn longitudinal(&mut self, r: Reading, out: &mut Vec<HarshEpisode>) {
        let a = r.value;
        out.extend(self.accel.update(&self.cfg, Reading { value: a, ..r }));
        out.extend(self.brake.update(&self.cfg, Reading { value: -a, ..r }));
    }

    /// A wheel-based speed reading, km/h.
    pub fn wheel_speed(
        &mut self,
        t: u64,
        kmh: f64,
        at: Option<(f64, f64)>,
        out: &mut Vec<HarshEpisode>,
    ) {
        if self
            .wheel
            .back()
            .is_some_and(|(last, _)| t <= *last || t - last > MAX_GAP_MS)
        {
            self.wheel.clear();
        }
        let v = kmh / 3.6;
        self.wheel.push_back((t, v));
        while self.wheel.len() > 2 && t - self.wheel[1].0 >= DERIVATIVE_WINDOW_MS {
            self.wheel.pop_front();
        }
        let (t0, v0) = self.wheel[0];
        let window = t - t0;
        if window < DERIVATIVE_WINDOW_MS {
            return;
        }
        let a = (v - v0) / (window as f64 / 1000.0);
        if a.abs() > self.cfg.max_plausible_mps2 {
            return;
        }
        self.longitudinal(
            Reading {
                t,
                window_ms: window,
                value: a,
                speed_kmh: v0 * 3.6,
                at,
                source: "wheel",
            },
            out,
        );
    }

    /// A GNSS fix with Doppler speed and course.
    pub fn fix(&mut self, t: u64, pos: Position, out: &mut Vec<HarshEpisode>) {
        let trusted = pos.hdop_d.is_none_or(|h| h <= MAX_HDOP_D)
            && pos.sats.is_none_or(|s| s >= MIN_SATS)
            && pos.speed_cms.is_some();
        if !trusted {
            self.last_gps = None;
            return;
        }
        let speed = f64::from(pos.speed_cms.unwrap_or(0)) / 100.0;
        let here = GpsPoint { t, pos, speed };
        let Some(prev) = self.last_gps.replace(here) else {
            return;
        };
        if t <= prev.t || t - prev.t > MAX_GAP_MS {
            return;
        }
        let dt = (t - prev.t) as f64 / 1000.0;
        // The distance between the fixes must fit the speeds the receiver reported.
        let expected = (prev.speed + speed) / 2.0 * dt;
        let moved = distance_m(&prev.pos, &pos);
        let a = (speed - prev.speed) / dt;
        if (moved - expected).abs() > 15.0 + 0.5 * expected || a.abs() > self.cfg.max_plausible_mps2
        {
            self.rejected_fixes += 1;
            self.last_gps = None;
            self.close_all(out);
            return;
        }
        let at = Some((pos.lat(), pos.lon()));
        let window_ms = t - prev.t;
        if !self.wheel_fresh(t) {
            self.longitudinal(
                Reading {
                    t,
                    window_ms,
                    value: a,
                    speed_kmh: prev.speed * 3.6,
                    at,
                    source: "gps",
                },
                out,
            );
        }
        let v = prev.speed.min(speed);
        let lateral = match (prev.pos.heading_cdeg, pos.heading_cdeg) {
            (Some(h0), Some(h1)) if v >= self.cfg.cornering_min_speed_mps => {
                let turn = (f64::from(h1) - f64::from(h0)) / 100.0;
                let turn = (turn + 540.0).rem_euclid(360.0) - 180.0;
                v * turn.to_radians().abs() / dt
            }
            _ => 0.0,
        };
        if lateral > self.cfg.max_plausible_mps2 {
            self.rejected_fixes += 1;
            out.extend(self.corner.close(&self.cfg));
            return;
        }
        out.extend(self.corner.update(
            &self.cfg,
            Reading {
                t,
                window_ms,
                value: lateral,
                speed_kmh: prev.speed * 3.6,
                at,
                source: "gps",
            },
        ));
    }

    /// Close every open episode (a data gap, or the agent stopping).
    pub fn close_all(&mut self, out: &mut Vec<HarshEpisode>) {
        out.extend(self.accel.close(&self.cfg));
        out.extend(self.brake.close(&self.cfg));
        out.extend(self.corner.close(&self.cfg));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: f64 = 1.0 / 111_320.0;

    fn fix(north_m: f64, speed: f64, heading: f64) -> Position {
        Position {
            lat_e7: ((51.9 + north_m * M) * 1e7).round() as i32,
            lon_e7: 44_000_000,
            alt_dm: None,
            speed_cms: Some((speed * 100.0).round() as u32),
            heading_cdeg: Some((heading.rem_euclid(360.0) * 100.0) as u16),
            hdop_d: Some(9),
            sats: Some(9),
            fix: 2,
        }
    }

    /// 1 Hz fixes along a straight road north for the speed profile given.
    fn along(speeds: &[f64]) -> Vec<(u64, Position)> {
        let mut north = 0.0;
        let mut prev = speeds[0];
        speeds
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                north += (prev + v) / 2.0;
                prev = v;
                (i as u64 * 1000, fix(north, v, 0.0))
            })
            .collect()
    }

    fn run(fixes: &[(u64, Position)]) -> (Vec<HarshEpisode>, HarshDetector) {
        let mut d = HarshDetector::new(HarshRules::default());
        let mut out = Vec::new();
        for (t, p) in fixes {
            d.fix(*t, *p, &mut out);
        }
        d.close_all(&mut out);
        (out, d)
    }

    #[test]
    fn hard_stop_from_gps_is_one_braking_event_with_its_peak() {
        // 20 m/s, then 5 s at 4.5 m/s² down to 0 with a 5 m/s² peak.
        let mut v = vec![20.0; 10];
        v.extend([15.5, 10.5, 6.0, 1.5, 0.0]);
        v.extend([0.0; 5]);
        let (out, _) = run(&along(&v));
        assert_eq!(out.len(), 1, "{out:?}");
        let e = out[0];
        assert_eq!(e.kind, HarshKind::Braking);
        assert!((e.peak_mps2 - 5.0).abs() < 0.05, "{e:?}");
        assert!((e.speed_kmh - 72.0).abs() < 0.5);
        assert_eq!(e.source, "gps");
        assert!((e.duration_s() - 4.0).abs() < 0.01, "{e:?}");
    }

    #[test]
    fn normal_driving_and_a_single_noisy_fix_make_no_event() {
        let mut v: Vec<f64> = (0..30).map(|i| (i as f64 * 0.8).min(15.0)).collect();
        v.extend((0..10).map(|i| 15.0 - i as f64 * 1.5));
        let (out, _) = run(&along(&v));
        assert!(out.is_empty(), "{out:?}");
        // One fix reads 4 m/s slow: one second over the threshold is not an episode.
        let mut v = vec![15.0; 20];
        v[10] = 11.0;
        let (out, _) = run(&along(&v));
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn gps_jump_is_rejected_not_reported() {
        let mut fixes = along(&[15.0; 20]);
        // The receiver jumps 80 m sideways and reports a wild speed for a fix.
        fixes[10].1.lat_e7 += (80.0 * M * 1e7) as i32;
        fixes[10].1.speed_cms = Some(0);
        fixes[11].1.speed_cms = Some(1_500);
        let (out, d) = run(&fixes);
        assert!(out.is_empty(), "{out:?}");
        assert!(d.rejected_fixes >= 1);
    }

    #[test]
    fn wheel_speed_wins_over_gps_for_longitudinal() {
        let mut d = HarshDetector::new(HarshRules::default());
        let mut out = Vec::new();
        // Wheels say a 4 m/s² stop over 5 s; GPS (stale Doppler) says steady.
        for i in 0..=100u64 {
            let t = i * 100;
            let v = if t < 3_000 {
                20.0
            } else {
                (20.0 - 4.0 * (t - 3_000) as f64 / 1000.0).max(0.0)
            };
            d.wheel_speed(t, v * 3.6, None, &mut out);
            if t % 1000 == 0 {
                d.fix(t, fix(t as f64 / 1000.0 * 20.0, 20.0, 0.0), &mut out);
            }
        }
        d.close_all(&mut out);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].kind, HarshKind::Braking);
        assert_eq!(out[0].source, "wheel");
        assert!((out[0].peak_mps2 - 4.0).abs() < 0.05, "{:?}", out[0]);
    }

    #[test]
    fn tight_fast_turn_is_cornering_and_a_gentle_curve_is_not() {
        // 15 m/s turning 20°/s for 5 s: 15 × 0.349 = 5.2 m/s² sideways.
        let mut fixes = Vec::new();
        let mut heading = 0.0;
        for i in 0..20u64 {
            if (5..10).contains(&i) {
                heading += 20.0;
            }
            // Positions along the arc are not checked against heading, only speed.
            fixes.push((i * 1000, fix(i as f64 * 15.0, 15.0, heading)));
        }
        let (out, _) = run(&fixes);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].kind, HarshKind::Cornering);
        assert!((out[0].peak_mps2 - 15.0 * 20f64.to_radians()).abs() < 0.05);
        let gentle: Vec<_> = (0..20u64)
            .map(|i| (i * 1000, fix(i as f64 * 15.0, 15.0, i as f64 * 5.0)))
            .collect();
        assert!(run(&gentle).0.is_empty());
    }
}
