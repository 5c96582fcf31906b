//! GPS curve thinning: an opening-window Ramer–Douglas–Peucker that runs on a
//! stream. A fix is dropped only while every dropped fix stays within the
//! tolerance of the straight line between the kept ones, and never for longer
//! than the maximum gap.

use super::PositionRules;
use fleet_protocol::Position;

/// Below this ground speed a vehicle counts as stopped, m/s.
const MOVING_MPS: f64 = 1.0;

#[derive(Debug, Clone, Copy)]
struct Pt {
    t: u64,
    x: f64,
    y: f64,
    pos: Position,
}

pub struct PositionThinner {
    cfg: PositionRules,
    anchor: Option<Pt>,
    /// Fixes since the anchor, not kept yet. Bounded by the maximum gap.
    window: Vec<Pt>,
    origin_lat_cos: f64,
    /// The ignition is known to be off.
    parked: bool,
}

fn speed(p: &Position) -> f64 {
    p.speed_cms.map_or(0.0, |s| f64::from(s) / 100.0)
}

/// Distance from `p` to the segment `a`-`b`, metres.
fn off_line(p: &Pt, a: &Pt, b: &Pt) -> f64 {
    let (dx, dy) = (b.x - a.x, b.y - a.y);
    let len2 = dx * dx + dy * dy;
    let t = if len2 == 0.0 {
        0.0
    } else {
        (((p.x - a.x) * dx + (p.y - a.y) * dy) / len2).clamp(0.0, 1.0)
    };
    (p.x - (a.x + t * dx)).hypot(p.y - (a.y + t * dy))
}

impl PositionThinner {
    pub fn new(cfg: PositionRules) -> Self {
        Self {
            cfg,
            anchor: None,
            window: Vec::new(),
            origin_lat_cos: 1.0,
            parked: false,
        }
    }

    /// Whether the ignition is known to be off: a vehicle standing still then
    /// reports far more rarely.
    pub fn set_parked(&mut self, parked: bool) {
        self.parked = parked;
    }

    fn project(&self, t: u64, pos: Position) -> Pt {
        const M_PER_DEG: f64 = 111_320.0;
        Pt {
            t,
            x: pos.lon() * M_PER_DEG * self.origin_lat_cos,
            y: pos.lat() * M_PER_DEG,
            pos,
        }
    }

    fn keep(&mut self, p: Pt, out: &mut Vec<(u64, Position)>) {
        out.push((p.t, p.pos));
        self.anchor = Some(p);
        self.window.clear();
    }

    /// Offer a fix taken at `mono_ms`; kept fixes are appended to `out`.
    pub fn push(&mut self, mono_ms: u64, pos: Position, out: &mut Vec<(u64, Position)>) {
        let Some(anchor) = self.anchor else {
            self.origin_lat_cos = pos.lat().to_radians().cos();
            let p = self.project(mono_ms, pos);
            self.keep(p, out);
            return;
        };
        let p = self.project(mono_ms, pos);
        if mono_ms <= anchor.t {
            return;
        }
        let moving = speed(&pos) >= MOVING_MPS;
        // Coming to a halt: keep where it stopped, so a map shows it there.
        if !moving && speed(&anchor.pos) >= MOVING_MPS {
            self.keep(p, out);
            return;
        }
        let stopped_gap = if self.parked {
            self.cfg.max_gap_parked_s
        } else {
            self.cfg.max_gap_stopped_s
        };
        // Standing still: there is no curve to keep, only the heartbeat, and the
        // latest fix for `flush`.
        if !moving && speed(&anchor.pos) < MOVING_MPS {
            if (mono_ms - anchor.t) as f64 / 1000.0 >= stopped_gap {
                self.keep(p, out);
            } else {
                self.window.clear();
                self.window.push(p);
            }
            return;
        }
        let tol = self.cfg.tolerance_m;
        // The fix farthest off the line is the corner: keep it, and the fixes
        // after it stay candidates against the new anchor.
        let worst = self
            .window
            .iter()
            .enumerate()
            .map(|(i, q)| (i, off_line(q, &anchor, &p)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((i, _)) = worst.filter(|w| w.1 > tol) {
            let rest = self.window.split_off(i + 1);
            let corner = self.window[i];
            self.keep(corner, out);
            self.window = rest;
        }
        let anchor = self.anchor.unwrap_or(anchor);
        let max_gap = if moving {
            self.cfg.max_gap_moving_s
        } else {
            stopped_gap
        };
        if (mono_ms - anchor.t) as f64 / 1000.0 >= max_gap {
            self.keep(p, out);
        } else {
            self.window.push(p);
        }
    }

    /// Keep the latest fix, if it was not kept (the end of a drive).
    pub fn flush(&mut self, out: &mut Vec<(u64, Position)>) {
        if let Some(last) = self.window.pop() {
            self.keep(last, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(lat: f64, lon: f64, speed_mps: f64) -> Position {
        Position {
            lat_e7: (lat * 1e7) as i32,
            lon_e7: (lon * 1e7) as i32,
            alt_dm: None,
            speed_cms: Some((speed_mps * 100.0) as u32),
            heading_cdeg: None,
            hdop_d: None,
            sats: None,
            fix: 2,
        }
    }

    fn cfg(gap: f64) -> PositionRules {
        PositionRules {
            tolerance_m: 10.0,
            max_gap_moving_s: gap,
            max_gap_stopped_s: 300.0,
            max_gap_parked_s: 3_600.0,
        }
    }

    /// 10 m/s north for `n` seconds from (lat, lon), then east.
    const M: f64 = 1.0 / 111_320.0;

    #[test]
    fn thinning_drops_a_straight_line() {
        let mut t = PositionThinner::new(cfg(1e9));
        let mut out = Vec::new();
        for s in 0..120u64 {
            t.push(
                s * 1000,
                pos(51.9 + s as f64 * 10.0 * M, 4.4, 10.0),
                &mut out,
            );
        }
        assert_eq!(
            out.len(),
            1,
            "only the first fix of a straight line: {out:?}"
        );
        t.flush(&mut out);
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn thinning_keeps_a_turn() {
        let mut t = PositionThinner::new(cfg(1e9));
        let mut out = Vec::new();
        let lon_m = M / 51.9f64.to_radians().cos();
        for s in 0..60u64 {
            let (lat, lon) = if s <= 30 {
                (51.9 + s as f64 * 10.0 * M, 4.4)
            } else {
                (51.9 + 300.0 * M, 4.4 + (s - 30) as f64 * 10.0 * lon_m)
            };
            t.push(s * 1000, pos(lat, lon, 10.0), &mut out);
        }
        t.flush(&mut out);
        assert_eq!(out.len(), 3, "start, corner, end: {out:?}");
        assert_eq!(out[1].0, 30_000, "the corner is kept");
    }

    #[test]
    fn moving_vehicle_reports_at_least_every_max_gap() {
        let mut t = PositionThinner::new(cfg(10.0));
        let mut out = Vec::new();
        for s in 0..=100u64 {
            t.push(
                s * 1000,
                pos(51.9 + s as f64 * 10.0 * M, 4.4, 10.0),
                &mut out,
            );
        }
        let gaps: Vec<u64> = out.windows(2).map(|w| w[1].0 - w[0].0).collect();
        assert!(gaps.iter().all(|&g| g <= 10_000), "{gaps:?}");
        assert_eq!(out.len(), 11);
    }

    #[test]
    fn parked_vehicle_reports_rarely_and_where_it_stopped() {
        let mut t = PositionThinner::new(cfg(10.0));
        let mut out = Vec::new();
        t.push(0, pos(51.9, 4.4, 8.0), &mut out);
        t.push(1000, pos(51.9 + 8.0 * M, 4.4, 0.0), &mut out);
        for s in 2..=900u64 {
            t.push(s * 1000, pos(51.9 + 8.0 * M, 4.4, 0.0), &mut out);
        }
        assert_eq!(out[1].0, 1000, "the stop is kept");
        assert_eq!(out.len(), 2 + 2, "two heartbeats in 15 minutes: {out:?}");
    }

    #[test]
    fn idling_vehicle_heartbeats_and_parked_one_stays_quiet() {
        let mut t = PositionThinner::new(PositionRules {
            max_gap_stopped_s: 30.0,
            ..cfg(10.0)
        });
        let mut out = Vec::new();
        let here = pos(51.9, 4.4, 0.0);
        for s in 0..=600u64 {
            t.push(s * 1000, here, &mut out);
        }
        assert_eq!(out.len(), 21, "a fix every 30 s while idling: {out:?}");
        out.clear();
        t.set_parked(true);
        for s in 601..=3_000u64 {
            t.push(s * 1000, here, &mut out);
        }
        assert!(out.is_empty(), "parked for 40 minutes: {out:?}");
        t.set_parked(false);
        t.push(3_001_000, here, &mut out);
        assert_eq!(out.len(), 1, "the first fix after the ignition comes on");
    }
}
