//! A believable hour of driving as a 1 Hz GNSS receiver reports it: city blocks
//! with traffic lights and turns, an on-ramp, half an hour of motorway with long
//! curves and hills, and back into town. Fixes carry receiver-like errors: a
//! slowly wandering position error of a few metres (what multipath and the
//! atmosphere do), a little white noise on top, Doppler speed noise, heading
//! jitter, altitude noise, HDOP and satellite counts that change now and then, and
//! a few milliseconds of serial-line jitter on the timestamps.
//!
//! Deterministic for a seed, so a benchmark run is comparable with the last.

use fleet_protocol::Position;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::f64::consts::PI;

/// One receiver fix and when the device read it.
#[derive(Debug, Clone, Copy)]
pub struct Fix {
    pub mono_ms: u64,
    pub position: Position,
    /// What the vehicle really did, for checking the drive itself.
    pub true_speed_mps: f64,
}

const ORIGIN_LAT: f64 = 52.52;
const ORIGIN_LON: f64 = 13.40;
const METRES_PER_DEGREE: f64 = 111_320.0;

#[derive(Clone, Copy, PartialEq)]
enum Road {
    City,
    Motorway,
}

/// A stretch between two decisions: how long, how fast, and what happens at its end.
struct Leg {
    length_m: f64,
    cruise_mps: f64,
    end_speed_mps: f64,
    turn_rad: f64,
    turn_radius_m: f64,
    stop_s: u32,
}

fn gaussian(rng: &mut StdRng) -> f64 {
    // Box-Muller; 1 - u keeps the logarithm finite.
    let u: f64 = 1.0 - rng.gen::<f64>();
    let v: f64 = rng.gen();
    (-2.0 * u.ln()).sqrt() * (2.0 * PI * v).cos()
}

fn next_leg(rng: &mut StdRng, road: Road) -> Leg {
    match road {
        Road::City => {
            let stop = rng.gen_bool(0.35);
            let turn = rng.gen_bool(0.45);
            Leg {
                length_m: rng.gen_range(120.0..550.0),
                cruise_mps: rng.gen_range(11.0..14.5),
                end_speed_mps: if stop {
                    0.0
                } else if turn {
                    rng.gen_range(3.5..6.0)
                } else {
                    rng.gen_range(8.0..13.0)
                },
                turn_rad: if turn {
                    if rng.gen_bool(0.5) {
                        PI / 2.0
                    } else {
                        -PI / 2.0
                    }
                } else {
                    rng.gen_range(-0.06..0.06)
                },
                turn_radius_m: rng.gen_range(9.0..16.0),
                stop_s: if stop { rng.gen_range(15..70) } else { 0 },
            }
        }
        Road::Motorway => Leg {
            length_m: rng.gen_range(1_500.0..5_000.0),
            cruise_mps: rng.gen_range(26.0..32.0),
            end_speed_mps: rng.gen_range(24.0..30.0),
            turn_rad: rng.gen_range(-0.5..0.5),
            turn_radius_m: rng.gen_range(900.0..2_500.0),
            stop_s: 0,
        },
    }
}

/// An AR(1) error: correlated over about `tau_s` seconds, `sigma` in the long run.
struct Wander {
    value: f64,
    keep: f64,
    kick: f64,
}

impl Wander {
    fn new(sigma: f64, tau_s: f64) -> Self {
        let keep = (-1.0 / tau_s).exp();
        Wander {
            value: 0.0,
            keep,
            kick: sigma * (1.0 - keep * keep).sqrt(),
        }
    }

    fn step(&mut self, rng: &mut StdRng) -> f64 {
        self.value = self.keep * self.value + self.kick * gaussian(rng);
        self.value
    }
}

/// `seconds` fixes at 1 Hz: the first sixth in town, then motorway, the last
/// sixth in town again.
pub fn drive(seed: u64, seconds: u32) -> Vec<Fix> {
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut x, mut y) = (0.0f64, 0.0f64);
    let mut heading = rng.gen_range(0.0..2.0 * PI);
    let mut target_heading = heading;
    let mut speed = 0.0f64;
    let mut road = Road::City;
    let mut leg = next_leg(&mut rng, road);
    let mut travelled = 0.0f64;
    let mut stopped_for = 0u32;
    let mut hill_phase = 0.0f64;

    let (mut err_e, mut err_n, mut err_up) = (
        Wander::new(2.0, 40.0),
        Wander::new(2.5, 40.0),
        Wander::new(4.0, 60.0),
    );
    let mut hdop = 9u16;
    let mut sats = 11u8;
    let mut shown_heading = heading;
    let mut mono_ms = 41_000u64;

    let mut out = Vec::with_capacity(seconds as usize);
    for t in 0..seconds {
        let want_road = if t < seconds / 6 || t >= seconds - seconds / 6 {
            Road::City
        } else {
            Road::Motorway
        };

        // Drive one second: brake for what is ahead, accelerate towards cruise.
        let remaining = (leg.length_m - travelled).max(0.0);
        let (accel, brake) = if road == Road::City {
            (1.4, 2.2)
        } else {
            (0.7, 1.2)
        };
        let reachable = (leg.end_speed_mps.powi(2) + 2.0 * brake * remaining).sqrt();
        let want = leg.cruise_mps.min(reachable);
        if stopped_for > 0 {
            // Standing at a light, after braking to a halt past the line if need be.
            if speed > 0.0 {
                speed = (speed - brake).max(0.0);
            } else {
                stopped_for -= 1;
            }
        } else if want > speed {
            speed = (speed + accel).min(want);
        } else {
            speed = (speed - brake).max(want);
        }
        let turn_rate = speed / leg.turn_radius_m;
        let dh = (target_heading - heading).clamp(-turn_rate, turn_rate);
        heading += dh;
        x += speed * heading.sin();
        y += speed * heading.cos();
        travelled += speed;

        if travelled >= leg.length_m {
            stopped_for = leg.stop_s;
            target_heading = heading + leg.turn_rad;
            road = want_road;
            leg = next_leg(&mut rng, road);
            travelled = 0.0;
        }

        // The receiver's view of it.
        let (ee, en, eu) = (
            err_e.step(&mut rng),
            err_n.step(&mut rng),
            err_up.step(&mut rng),
        );
        let east = x + ee + 0.25 * gaussian(&mut rng);
        let north = y + en + 0.25 * gaussian(&mut rng);
        let lat = ORIGIN_LAT + north / METRES_PER_DEGREE;
        let lon = ORIGIN_LON + east / (METRES_PER_DEGREE * ORIGIN_LAT.to_radians().cos());
        if road == Road::Motorway {
            hill_phase += speed / 1_800.0;
        }
        let alt_m = 38.0 + 14.0 * hill_phase.sin() + eu + 0.3 * gaussian(&mut rng);
        let shown_speed = (speed + 0.06 * gaussian(&mut rng)).max(0.0);
        if speed > 1.0 {
            // Course over ground is only meaningful while moving; receivers hold it when still.
            shown_heading = heading + (0.4f64.to_radians() + 0.8 / speed) * gaussian(&mut rng);
        }
        if rng.gen_bool(1.0 / 240.0) {
            hdop = (hdop as i32 + rng.gen_range(-2..=2)).clamp(6, 20) as u16;
        }
        if rng.gen_bool(1.0 / 90.0) {
            sats = (sats as i32 + rng.gen_range(-1..=1)).clamp(6, 16) as u8;
        }

        out.push(Fix {
            mono_ms,
            position: Position {
                lat_e7: (lat * 1e7).round() as i32,
                lon_e7: (lon * 1e7).round() as i32,
                alt_dm: Some((alt_m * 10.0).round() as i32),
                speed_cms: Some((shown_speed * 100.0).round() as u32),
                heading_cdeg: Some(
                    ((shown_heading.to_degrees().rem_euclid(360.0) * 100.0).round() as u16)
                        % 36_000,
                ),
                hdop_d: Some(hdop),
                sats: Some(sats),
                fix: 2,
            },
            true_speed_mps: speed,
        });
        // Sentences arrive over a serial line: the reading is a few ms late, by a varying amount.
        mono_ms = 41_000 + u64::from(t + 1) * 1_000 + rng.gen_range(0..12);
    }
    out
}

/// Great-circle distance between two fixes in metres (haversine).
pub fn distance_m(a: &Position, b: &Position) -> f64 {
    let (la1, lo1, la2, lo2) = (
        a.lat().to_radians(),
        a.lon().to_radians(),
        b.lat().to_radians(),
        b.lon().to_radians(),
    );
    let h = ((la2 - la1) / 2.0).sin().powi(2)
        + la1.cos() * la2.cos() * ((lo2 - lo1) / 2.0).sin().powi(2);
    2.0 * 6_371_000.0 * h.sqrt().asin()
}
