//! A vehicle that drives a script instead of a road network: start the engine,
//! idle, speed up at a set rate, cruise, brake hard, turn, park. What its
//! hardware emits is the same as [`super::Vehicle`]'s — J1939 frames at the
//! standard periods, RMC and GGA once a second, ignition edges — so a replay
//! exercises the real decoders and rules, and a test can compute by hand what
//! the drive must produce.

use super::emitter::{EcuState, Emitter};
use super::j1939::Dtc;
use super::nmea::GnssFix;
use super::{FramePeriods, SimOutput, Truth, STEP_MS};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// One step of a script.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Manoeuvre {
    /// Ignition on; the starter turns for `secs` with the battery sagging to
    /// `battery_v`, then the engine idles.
    Start {
        secs: f64,
        battery_v: f64,
    },
    /// Engine running, standing still (or rolling on at the current speed).
    Hold {
        secs: f64,
    },
    /// Change speed to `to_mps` at `rate_mps2` (a magnitude, for either sign).
    Speed {
        to_mps: f64,
        rate_mps2: f64,
    },
    /// Turn by `deg` (positive clockwise) at `deg_per_s`, keeping the speed.
    Turn {
        deg: f64,
        deg_per_s: f64,
    },
    /// An ECU raises a fault (DM1) until [`Manoeuvre::ClearFaults`].
    Fault {
        spn: u32,
        fmi: u8,
    },
    ClearFaults,
    /// Ignition off and parked for `secs`; `drain_l` litres leave the tank
    /// meanwhile (a siphon) and the battery rests at `battery_v`.
    Park {
        secs: f64,
        drain_l: f64,
        battery_v: f64,
    },
}

/// Where and how the script begins.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScriptStart {
    pub lat: f64,
    pub lon: f64,
    /// Degrees clockwise from north.
    pub heading_deg: f64,
    pub odometer_km: f64,
    pub engine_hours: f64,
    pub fuel_l: f64,
    pub tank_l: f64,
    /// GNSS position noise, metres (a slowly wandering error).
    pub gps_noise_m: f64,
}

/// Metres per degree of latitude.
const M_PER_DEG: f64 = 111_320.0;

/// `x` metres east and `y` north of the start, in degrees.
fn lat_lon(start: &ScriptStart, x: f64, y: f64) -> (f64, f64) {
    let lat = start.lat + y / M_PER_DEG;
    let lon = start.lon + x / (M_PER_DEG * start.lat.to_radians().cos());
    (lat, lon)
}

pub struct ScriptedVehicle {
    script: Vec<Manoeuvre>,
    next: usize,
    /// The manoeuvre under way and when it ends (for timed ones).
    current: Option<(Manoeuvre, u64)>,
    start: ScriptStart,
    rng: StdRng,
    t_ms: u64,
    x: f64,
    y: f64,
    heading: f64,
    v: f64,
    a: f64,
    cranking: bool,
    ignition: bool,
    rpm: f64,
    load: f64,
    fuel_l: f64,
    fuel_used_l: f64,
    odometer_m: f64,
    engine_h: f64,
    battery: f64,
    rest_v: f64,
    coolant: f64,
    dtcs: Vec<Dtc>,
    noise: (f64, f64),
    emitter: Emitter,
}

impl ScriptedVehicle {
    pub fn new(start: ScriptStart, script: Vec<Manoeuvre>, seed: u64, start_ms: u64) -> Self {
        Self {
            script,
            next: 0,
            current: None,
            rng: StdRng::seed_from_u64(seed),
            t_ms: start_ms,
            x: 0.0,
            y: 0.0,
            heading: start.heading_deg,
            v: 0.0,
            a: 0.0,
            cranking: false,
            ignition: false,
            rpm: 0.0,
            load: 0.0,
            fuel_l: start.fuel_l,
            fuel_used_l: start.odometer_km * 0.31,
            odometer_m: start.odometer_km * 1000.0,
            engine_h: start.engine_hours,
            battery: 25.2,
            rest_v: 25.2,
            coolant: 20.0,
            dtcs: Vec::new(),
            noise: (0.0, 0.0),
            emitter: Emitter::new(FramePeriods::STANDARD, start_ms),
            start,
        }
    }

    /// The script has run to its end.
    pub fn done(&self) -> bool {
        self.current.is_none() && self.next >= self.script.len()
    }

    pub fn truth(&self) -> Truth {
        let (lat, lon) = lat_lon(&self.start, self.x, self.y);
        Truth {
            t_ms: self.t_ms,
            lat,
            lon,
            speed_mps: self.v,
            heading_deg: self.heading,
            ignition: self.ignition,
            rpm: self.rpm,
            coolant_c: self.coolant,
            fuel_level_pct: self.fuel_l / self.start.tank_l * 100.0,
            odometer_m: self.odometer_m,
            engine_hours: self.engine_h,
            fuel_used_l: self.fuel_used_l,
            battery_v: self.battery,
        }
    }

    /// Run the script up to `t_ms`, as [`super::Vehicle::advance_to`] does.
    pub fn advance_to(&mut self, t_ms: u64, wall_offset_ms: i64, out: &mut Vec<SimOutput>) {
        while self.t_ms + STEP_MS <= t_ms {
            self.t_ms += STEP_MS;
            self.step(STEP_MS as f64 / 1000.0, out);
            self.emit(wall_offset_ms, out);
        }
    }

    fn begin(&mut self, m: Manoeuvre, out: &mut Vec<SimOutput>) -> u64 {
        let now = self.t_ms;
        let ms = |s: f64| now + (s * 1000.0).round() as u64;
        match m {
            Manoeuvre::Start { secs, battery_v } => {
                self.set_ignition(true, out);
                self.cranking = true;
                self.battery = battery_v;
                ms(secs)
            }
            Manoeuvre::Hold { secs } => ms(secs),
            Manoeuvre::Speed { to_mps, rate_mps2 } => {
                ms((to_mps - self.v).abs() / rate_mps2.max(1e-6))
            }
            Manoeuvre::Turn { deg, deg_per_s } => ms(deg.abs() / deg_per_s.max(1e-6)),
            Manoeuvre::Fault { spn, fmi } => {
                self.dtcs.push(Dtc { spn, fmi, oc: 1 });
                now
            }
            Manoeuvre::ClearFaults => {
                self.dtcs.clear();
                now
            }
            Manoeuvre::Park {
                secs,
                drain_l,
                battery_v,
            } => {
                self.v = 0.0;
                self.set_ignition(false, out);
                self.fuel_l = (self.fuel_l - drain_l).max(0.0);
                self.rest_v = battery_v;
                ms(secs)
            }
        }
    }

    fn step(&mut self, dt: f64, out: &mut Vec<SimOutput>) {
        while self.current.is_none() && self.next < self.script.len() {
            let m = self.script[self.next];
            self.next += 1;
            let until = self.begin(m, out);
            if until > self.t_ms {
                self.current = Some((m, until));
            }
        }
        self.a = 0.0;
        if let Some((m, until)) = self.current {
            match m {
                Manoeuvre::Speed { to_mps, rate_mps2 } => {
                    let dv = (to_mps - self.v).clamp(-rate_mps2 * dt, rate_mps2 * dt);
                    self.a = dv / dt;
                    self.v = (self.v + dv).max(0.0);
                }
                Manoeuvre::Turn { deg, deg_per_s } => {
                    self.heading = (self.heading + deg.signum() * deg_per_s * dt).rem_euclid(360.0);
                }
                _ => {}
            }
            if self.t_ms >= until {
                if let Manoeuvre::Start { .. } = m {
                    self.cranking = false;
                    self.battery = 27.8;
                }
                if let Manoeuvre::Speed { to_mps, .. } = m {
                    self.v = to_mps;
                }
                self.current = None;
            }
        }
        let moved = self.v * dt;
        let h = self.heading.to_radians();
        self.x += moved * h.sin();
        self.y += moved * h.cos();
        self.odometer_m += moved;
        self.update_engine(dt);
    }

    fn set_ignition(&mut self, on: bool, out: &mut Vec<SimOutput>) {
        if self.ignition != on {
            self.ignition = on;
            out.push(SimOutput::Ignition(on, self.t_ms * 1000));
        }
    }

    fn update_engine(&mut self, dt: f64) {
        if !self.ignition {
            self.rpm = 0.0;
            self.load = 0.0;
            self.battery += (self.rest_v - self.battery) * (dt / 30.0).min(1.0);
            return;
        }
        if self.cranking {
            self.rpm = 180.0;
            self.load = 0.0;
            return;
        }
        let kmh = self.v * 3.6;
        self.rpm = if kmh < 1.0 {
            650.0
        } else {
            (1_100.0 + kmh * 8.0).min(1_900.0)
        };
        self.load = (12.0 + (kmh / 90.0).powi(2) * 35.0 + self.a.max(0.0) * 30.0).min(100.0);
        let used = (2.6 + self.load * 0.38) * dt / 3600.0;
        self.fuel_used_l += used;
        self.fuel_l = (self.fuel_l - used).max(0.0);
        self.engine_h += dt / 3600.0;
        self.coolant += (88.0 - self.coolant) * dt / 240.0;
    }

    fn emit(&mut self, wall_offset_ms: i64, out: &mut Vec<SimOutput>) {
        let now = self.t_ms;
        let (start, x, y, v, heading) = (self.start, self.x, self.y, self.v, self.heading);
        let (rng, noise) = (&mut self.rng, &mut self.noise);
        self.emitter.gnss(
            now,
            wall_offset_ms,
            |time_ms| {
                let sigma = start.gps_noise_m;
                noise.0 = noise.0 * 0.9 + rng.gen_range(-0.4..0.4) * sigma;
                noise.1 = noise.1 * 0.9 + rng.gen_range(-0.4..0.4) * sigma;
                let (lat, lon) = lat_lon(&start, x + noise.0, y + noise.1);
                GnssFix {
                    time_ms,
                    lat,
                    lon,
                    alt_m: 5.0,
                    speed_mps: v,
                    course_deg: heading,
                    sats: 9,
                    hdop: 0.9,
                }
            },
            out,
        );
        let ecu = EcuState {
            rpm: self.rpm,
            load: self.load,
            pedal: self.load * 0.8,
            speed_mps: self.v,
            braking: self.a < -0.3,
            coolant: self.coolant,
            fuel_level_pct: self.fuel_l / self.start.tank_l * 100.0,
            engine_h: self.engine_h,
            odometer_m: self.odometer_m,
            fuel_used_l: self.fuel_used_l,
            battery: self.battery,
        };
        self.emitter.bus(now, self.ignition, &ecu, &self.dtcs, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start() -> ScriptStart {
        ScriptStart {
            lat: 51.9,
            lon: 4.4,
            heading_deg: 90.0,
            odometer_km: 1_000.0,
            engine_hours: 100.0,
            fuel_l: 200.0,
            tank_l: 400.0,
            gps_noise_m: 0.0,
        }
    }

    #[test]
    fn script_runs_in_order_and_moves_as_told() {
        let mut v = ScriptedVehicle::new(
            start(),
            vec![
                Manoeuvre::Start {
                    secs: 1.5,
                    battery_v: 20.0,
                },
                Manoeuvre::Hold { secs: 10.0 },
                Manoeuvre::Speed {
                    to_mps: 20.0,
                    rate_mps2: 2.0,
                },
                Manoeuvre::Hold { secs: 50.0 },
                Manoeuvre::Speed {
                    to_mps: 0.0,
                    rate_mps2: 5.0,
                },
                Manoeuvre::Park {
                    secs: 60.0,
                    drain_l: 0.0,
                    battery_v: 24.8,
                },
            ],
            1,
            0,
        );
        let mut out = Vec::new();
        v.advance_to(200_000, 1_700_000_000_000, &mut out);
        assert!(v.done());
        let t = v.truth();
        // 100 m speeding up, 1 000 m cruising, 40 m braking, eastwards; each
        // change of manoeuvre takes effect on the next 100 ms step (2 m at 20 m/s).
        assert!(
            (t.odometer_m - 1_001_140.0).abs() <= 5.0,
            "{}",
            t.odometer_m
        );
        assert!((t.lat - 51.9).abs() < 1e-6);
        assert!(!t.ignition);
        let edges: Vec<bool> = out
            .iter()
            .filter_map(|o| match o {
                SimOutput::Ignition(on, _) => Some(*on),
                _ => None,
            })
            .collect();
        assert_eq!(edges, vec![true, false]);
        assert!(out.iter().any(|o| matches!(o, SimOutput::Can(_))));
    }
}
