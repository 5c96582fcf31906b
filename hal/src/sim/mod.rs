//! A simulated vehicle: drives a synthesized road network in simulated time and
//! emits what its hardware would — J1939 frames, NMEA sentences, the ignition line.
//!
//! [`Vehicle`] is pure: the caller says how far simulated time has advanced and
//! gets the outputs due up to then, so tests can run hours of driving in
//! milliseconds and the agent can pace it by any clock.

mod emitter;
pub mod j1939;
pub mod nmea;
pub mod road;
pub mod script;

use crate::can::CanFrame;
use emitter::{EcuState, Emitter};
use j1939::Dtc;
use nmea::GnssFix;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
pub use road::{City, RoadClass, RoadNetwork, CITIES, DENVER, LYON, ROTTERDAM};
use std::sync::Arc;

/// Physics step in milliseconds.
const STEP_MS: u64 = 100;

/// Something the vehicle's hardware produced.
#[derive(Debug, Clone, PartialEq)]
pub enum SimOutput {
    Can(CanFrame),
    /// One NMEA line (without line ending) and its time in microseconds.
    Nmea(String, u64),
    /// The ignition line changed, at this time in microseconds.
    Ignition(bool, u64),
}

/// How often each parameter group is sent, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FramePeriods {
    pub eec1: u64,
    pub eec2: u64,
    pub ccvs1: u64,
    pub lfe: u64,
    /// ET1, DD, HOURS, VD, VDHR, LFC, VEP1 and DM1.
    pub slow: u64,
}

impl FramePeriods {
    /// The periods J1939-71 recommends (EEC1 at 20 ms; real engines often 10 ms).
    pub const STANDARD: FramePeriods = FramePeriods {
        eec1: 20,
        eec2: 50,
        ccvs1: 100,
        lfe: 100,
        slow: 1000,
    };
    /// Fewer frames for the same signals, for running many vehicles at once.
    pub const THINNED: FramePeriods = FramePeriods {
        eec1: 100,
        eec2: 200,
        ccvs1: 200,
        lfe: 500,
        slow: 1000,
    };
}

/// What kind of vehicle, and how its driver behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct VehicleSpec {
    pub periods: FramePeriods,
    /// Top speed the vehicle is limited to, m/s.
    pub max_speed_mps: f64,
    /// Comfortable acceleration and braking, m/s².
    pub accel_mps2: f64,
    pub brake_mps2: f64,
    /// How far the driver strays from the limit: 1.0 drives at it.
    pub driver_speed_factor: f64,
    /// Share of stops where the driver leaves the engine running.
    pub idling_habit: f64,
    pub tank_l: f64,
    /// Mean time the vehicle waits at its depot between shifts.
    pub depot_park_s: f64,
}

impl VehicleSpec {
    /// A distribution truck, speed-limited to 85 km/h, drawn from `rng`.
    pub fn truck(rng: &mut impl Rng, periods: FramePeriods) -> Self {
        VehicleSpec {
            periods,
            max_speed_mps: 85.0 / 3.6,
            accel_mps2: rng.gen_range(0.6..1.0),
            brake_mps2: rng.gen_range(1.2..1.8),
            driver_speed_factor: rng.gen_range(0.88..1.06),
            idling_habit: rng.gen_range(0.1..0.6),
            tank_l: 400.0,
            depot_park_s: rng.gen_range(300.0..1200.0),
        }
    }
}

/// The true state of the vehicle, for tests and for whoever wants to compare what
/// the agent decoded with what happened.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Truth {
    pub t_ms: u64,
    pub lat: f64,
    pub lon: f64,
    pub speed_mps: f64,
    pub heading_deg: f64,
    pub ignition: bool,
    pub rpm: f64,
    pub coolant_c: f64,
    pub fuel_level_pct: f64,
    pub odometer_m: f64,
    pub engine_hours: f64,
    pub fuel_used_l: f64,
    pub battery_v: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// Ignition off.
    Parked {
        until_ms: u64,
    },
    /// Starter turning.
    Cranking {
        until_ms: u64,
    },
    /// Engine running, not moving yet (warm-up, or the driver idling at a stop).
    Idling {
        until_ms: u64,
    },
    Driving,
    /// Waiting at a red light.
    Waiting {
        until_ms: u64,
    },
}

/// Why the vehicle is stopped where it is after `Driving` ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arrival {
    Customer,
    Depot,
}

pub struct Vehicle {
    net: Arc<RoadNetwork>,
    spec: VehicleSpec,
    rng: StdRng,
    t_ms: u64,
    phase: Phase,
    /// Nodes of the current leg, and where on it the vehicle is.
    path: Vec<usize>,
    seg: usize,
    along_m: f64,
    /// The node where the current segment ends must be stopped at (red light).
    stop_at_end: bool,
    node: usize,
    home: usize,
    stops_left: u32,
    x: f64,
    y: f64,
    heading: f64,
    v: f64,
    a: f64,
    rpm: f64,
    load: f64,
    pedal: f64,
    coolant: f64,
    fuel_l: f64,
    fuel_used_l: f64,
    odometer_m: f64,
    engine_h: f64,
    battery: f64,
    ignition: bool,
    /// Whether the ignition state at start has been put out yet.
    ignition_reported: bool,
    dtcs: Vec<Dtc>,
    gps_noise: (f64, f64),
    emitter: Emitter,
}

impl Vehicle {
    /// A vehicle somewhere in its working day: most are out on a delivery round,
    /// some stand at a customer or idle, a few are parked at their depot. Where it
    /// is, its odometer, driver and schedule all come from `seed`.
    pub fn new(net: Arc<RoadNetwork>, spec: VehicleSpec, seed: u64, start_ms: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let emitter = Emitter::new(spec.periods, start_ms);
        let home = net.depots[rng.gen_range(0..net.depots.len())];
        let n = net.nodes[home];
        let odometer_m = rng.gen_range(80_000.0..600_000.0) * 1000.0;
        let tank = spec.tank_l;
        let fuel_l = tank * rng.gen_range(0.3..0.95);
        let mut v = Vehicle {
            spec,
            rng,
            t_ms: start_ms,
            phase: Phase::Parked { until_ms: start_ms },
            path: Vec::new(),
            seg: 0,
            along_m: 0.0,
            stop_at_end: false,
            node: home,
            home,
            stops_left: 0,
            x: n.x,
            y: n.y,
            heading: 0.0,
            v: 0.0,
            a: 0.0,
            rpm: 0.0,
            load: 0.0,
            pedal: 0.0,
            coolant: 18.0,
            fuel_l,
            fuel_used_l: odometer_m / 1000.0 * 0.31,
            odometer_m,
            engine_h: odometer_m / 1000.0 / 38.0,
            battery: 24.8,
            ignition: false,
            ignition_reported: false,
            dtcs: Vec::new(),
            gps_noise: (0.0, 0.0),
            emitter,
            net,
        };
        v.place_in_day();
        v
    }

    /// Draw where in the day's cycle the vehicle starts, so that a fleet started
    /// at once looks like a fleet at work rather than all parked at three depots.
    fn place_in_day(&mut self) {
        let now = self.t_ms;
        let draw: f64 = self.rng.gen();
        if draw < 0.62 && self.place_mid_route() {
            // A few of them are stopped at a red light on the way.
            if self.rng.gen_bool(0.1) {
                self.v = 0.0;
                self.along_m = 0.0;
                self.place_on_segment();
                self.phase = Phase::Waiting {
                    until_ms: now + self.rng.gen_range(3_000..30_000),
                };
            }
            self.engine_warm();
            return;
        }
        if draw < 0.88 {
            let stop = self.net.stops[self.rng.gen_range(0..self.net.stops.len())];
            self.put_at(stop);
            self.stops_left = self.rng.gen_range(0..5);
            if draw < 0.75 {
                self.engine_warm();
                self.phase = Phase::Idling {
                    until_ms: now + self.rng.gen_range(20_000..300_000),
                };
            } else {
                self.coolant = self.rng.gen_range(45.0..80.0);
                self.phase = Phase::Parked {
                    until_ms: now + self.rng.gen_range(30_000..600_000),
                };
            }
            return;
        }
        self.put_at(self.home);
        if draw < 0.94 {
            // Warming up before the round.
            self.engine_warm();
            self.coolant = self.rng.gen_range(30.0..60.0);
            self.phase = Phase::Idling {
                until_ms: now + self.rng.gen_range(10_000..90_000),
            };
        } else {
            self.coolant = self.rng.gen_range(12.0..40.0);
            self.phase = Phase::Parked {
                until_ms: now + self.rng.gen_range(60_000..900_000),
            };
        }
    }

    fn put_at(&mut self, node: usize) {
        let n = self.net.nodes[node];
        self.node = node;
        self.x = n.x;
        self.y = n.y;
    }

    fn engine_warm(&mut self) {
        self.ignition = true;
        self.coolant = self.rng.gen_range(78.0..90.0);
        self.rpm = 650.0;
        self.battery = 27.8;
    }

    /// Somewhere along a leg from anywhere on the network to a customer (or home
    /// at the end of the round), already at speed. False if no leg was found.
    fn place_mid_route(&mut self) -> bool {
        let stops_left = self.rng.gen_range(0..5);
        for _ in 0..20 {
            let from = self.rng.gen_range(0..self.net.nodes.len());
            let to = if stops_left == 0 {
                self.home
            } else {
                self.net.stops[self.rng.gen_range(0..self.net.stops.len())]
            };
            let Some(path) = self.net.route(from, to).filter(|p| p.len() >= 2) else {
                continue;
            };
            self.stops_left = stops_left;
            self.seg = self.rng.gen_range(0..path.len() - 1);
            self.path = path;
            self.node = self.path[self.seg];
            self.along_m = self.seg_len(self.seg) * self.rng.gen_range(0.0..0.6);
            self.stop_at_end = false;
            self.phase = Phase::Driving;
            let cruise = self.seg_limit(self.seg) * self.rng.gen_range(0.6..1.0);
            self.v = cruise.min(self.allowed_speed());
            self.place_on_segment();
            return true;
        }
        false
    }

    pub fn truth(&self) -> Truth {
        let (lat, lon) = self.net.city.to_lat_lon(self.x, self.y);
        Truth {
            t_ms: self.t_ms,
            lat,
            lon,
            speed_mps: self.v,
            heading_deg: self.heading,
            ignition: self.ignition,
            rpm: self.rpm,
            coolant_c: self.coolant,
            fuel_level_pct: self.fuel_l / self.spec.tank_l * 100.0,
            odometer_m: self.odometer_m,
            engine_hours: self.engine_h,
            fuel_used_l: self.fuel_used_l,
            battery_v: self.battery,
        }
    }

    pub fn network(&self) -> &RoadNetwork {
        &self.net
    }

    /// Run the simulation up to monotonic time `t_ms` and append what the hardware
    /// produced meanwhile, in time order per source. `wall_offset_ms` turns
    /// monotonic time into the UTC time the GNSS receiver reports.
    pub fn advance_to(&mut self, t_ms: u64, wall_offset_ms: i64, out: &mut Vec<SimOutput>) {
        // A vehicle that starts with its engine running reports the ignition line
        // as it finds it, like a gateway booting in a running truck.
        if !self.ignition_reported {
            self.ignition_reported = true;
            if self.ignition {
                out.push(SimOutput::Ignition(true, self.t_ms * 1000));
            }
        }
        while self.t_ms + STEP_MS <= t_ms {
            self.t_ms += STEP_MS;
            self.step(STEP_MS as f64 / 1000.0, out);
            self.emit(wall_offset_ms, out);
        }
    }

    fn step(&mut self, dt: f64, out: &mut Vec<SimOutput>) {
        let now = self.t_ms;
        match self.phase {
            Phase::Parked { until_ms } => {
                self.v = 0.0;
                self.rpm = 0.0;
                if now >= until_ms {
                    self.set_ignition(true, out);
                    self.phase = Phase::Cranking {
                        until_ms: now + self.rng.gen_range(800..2_000),
                    };
                }
            }
            Phase::Cranking { until_ms } => {
                self.rpm = 180.0 + self.rng.gen_range(-20.0..20.0);
                if now >= until_ms {
                    let warm = if self.coolant < 50.0 {
                        40_000..120_000
                    } else {
                        8_000..30_000
                    };
                    self.phase = Phase::Idling {
                        until_ms: now + self.rng.gen_range(warm),
                    };
                }
            }
            Phase::Idling { until_ms } => {
                self.v = 0.0;
                if now >= until_ms {
                    self.start_next_leg(out);
                }
            }
            Phase::Waiting { until_ms } => {
                self.v = 0.0;
                if now >= until_ms {
                    self.phase = Phase::Driving;
                }
            }
            Phase::Driving => self.drive(dt, out),
        }
        self.update_engine(dt);
    }

    fn set_ignition(&mut self, on: bool, out: &mut Vec<SimOutput>) {
        if self.ignition != on {
            self.ignition = on;
            out.push(SimOutput::Ignition(on, self.t_ms * 1000));
        }
    }

    /// Pick where to go next: a customer, or home when the round is done.
    fn start_next_leg(&mut self, out: &mut Vec<SimOutput>) {
        if self.stops_left == 0 && self.node == self.home {
            self.stops_left = self.rng.gen_range(4..10);
        }
        for _ in 0..20 {
            let target = if self.stops_left == 0 {
                self.home
            } else {
                self.net.stops[self.rng.gen_range(0..self.net.stops.len())]
            };
            if target == self.node {
                continue;
            }
            if let Some(path) = self.net.route(self.node, target) {
                self.path = path;
                self.seg = 0;
                self.along_m = 0.0;
                self.stop_at_end = false;
                self.phase = Phase::Driving;
                return;
            }
        }
        // Nowhere reachable (an isolated node): stay put with the engine off.
        self.set_ignition(false, out);
        self.phase = Phase::Parked {
            until_ms: self.t_ms + 600_000,
        };
    }

    fn seg_limit(&self, seg: usize) -> f64 {
        let class = self
            .net
            .edge(self.path[seg], self.path[seg + 1])
            .map_or(RoadClass::Local, |e| e.class);
        (class.limit_mps() * self.spec.driver_speed_factor).min(self.spec.max_speed_mps)
    }

    fn seg_len(&self, seg: usize) -> f64 {
        self.net.distance(self.path[seg], self.path[seg + 1])
    }

    fn seg_heading(&self, seg: usize) -> f64 {
        let (a, b) = (
            self.net.nodes[self.path[seg]],
            self.net.nodes[self.path[seg + 1]],
        );
        (b.x - a.x).atan2(b.y - a.y).to_degrees().rem_euclid(360.0)
    }

    /// The speed at which the vehicle may pass the node at the end of `seg`.
    fn junction_speed(&self, seg: usize) -> f64 {
        if seg + 2 >= self.path.len() || (seg == self.seg && self.stop_at_end) {
            return 0.0;
        }
        let turn =
            (self.seg_heading(seg + 1) - self.seg_heading(seg) + 540.0).rem_euclid(360.0) - 180.0;
        let limit = self.seg_limit(seg).min(self.seg_limit(seg + 1));
        let turn_speed = if turn.abs() < 15.0 {
            limit
        } else {
            (22.0 / 3.6 + (1.0 - turn.abs() / 180.0) * 15.0 / 3.6).min(limit)
        };
        // A side street joining a bigger road: slow right down to look.
        let entering_bigger = self.net.major_class_at(self.path[seg + 1]) != RoadClass::Local
            && self.seg_limit(seg) <= RoadClass::Local.limit_mps() * 1.1;
        if entering_bigger {
            turn_speed.min(2.0)
        } else {
            turn_speed
        }
    }

    /// The fastest speed from which the vehicle can still slow down in time for
    /// the next two junctions.
    fn allowed_speed(&self) -> f64 {
        let b = self.spec.brake_mps2;
        let remaining = self.seg_len(self.seg) - self.along_m;
        let mut allowed = self.seg_limit(self.seg);
        let mut dist = remaining.max(0.0);
        let mut s = self.seg;
        for _ in 0..3 {
            let vj = self.junction_speed(s);
            allowed = allowed.min((vj * vj + 2.0 * b * dist).sqrt());
            if vj == 0.0 || s + 2 >= self.path.len() {
                break;
            }
            s += 1;
            allowed = allowed.min((self.seg_limit(s).powi(2) + 2.0 * b * dist).sqrt());
            dist += self.seg_len(s);
        }
        allowed
    }

    fn drive(&mut self, dt: f64, out: &mut Vec<SimOutput>) {
        let b = self.spec.brake_mps2;
        let remaining = self.seg_len(self.seg) - self.along_m;
        let allowed = self.allowed_speed();
        let a = if self.v < allowed - 0.3 {
            let vmax = self.spec.max_speed_mps;
            self.spec.accel_mps2 * (1.0 - (self.v / vmax).powi(2) * 0.7)
                + self.rng.gen_range(-0.05..0.05)
        } else if self.v > allowed + 0.1 {
            -((self.v - allowed) / dt).min(b * 1.8)
        } else {
            self.rng.gen_range(-0.08..0.08)
        };
        self.a = a;
        let v_new = (self.v + a * dt).max(0.0);
        let mut moved = (self.v + v_new) / 2.0 * dt;
        self.v = v_new;
        // Never creep past a junction it must stop at.
        let must_stop_here = self.junction_speed(self.seg) == 0.0;
        if must_stop_here && remaining < 1.5 && self.v < 0.6 {
            moved = remaining.max(0.0);
            self.v = 0.0;
        }
        self.odometer_m += moved;
        self.along_m += moved;
        while self.along_m >= self.seg_len(self.seg) - 0.01 {
            let stopped_for = must_stop_here && self.v == 0.0;
            if !stopped_for && must_stop_here {
                break;
            }
            self.along_m -= self.seg_len(self.seg);
            self.along_m = self.along_m.max(0.0);
            self.node = self.path[self.seg + 1];
            if self.seg + 2 >= self.path.len() {
                self.arrive(out);
                return;
            }
            if self.stop_at_end {
                self.stop_at_end = false;
                self.phase = Phase::Waiting {
                    until_ms: self.t_ms + self.rng.gen_range(4_000..45_000),
                };
            }
            self.seg += 1;
            let end = self.path[self.seg + 1];
            self.stop_at_end =
                self.net.nodes[end].control == road::Control::Signal && self.rng.gen_bool(0.45);
            if self.phase != Phase::Driving {
                break;
            }
        }
        self.place_on_segment();
    }

    fn place_on_segment(&mut self) {
        if self.path.len() < 2 {
            return;
        }
        let (a, b) = (
            self.net.nodes[self.path[self.seg]],
            self.net.nodes[self.path[self.seg + 1]],
        );
        let len = self.seg_len(self.seg).max(0.01);
        let f = (self.along_m / len).clamp(0.0, 1.0);
        self.x = a.x + (b.x - a.x) * f;
        self.y = a.y + (b.y - a.y) * f;
        self.heading = self.seg_heading(self.seg);
    }

    fn arrive(&mut self, out: &mut Vec<SimOutput>) {
        self.v = 0.0;
        self.path.clear();
        let node = self.net.nodes[self.node];
        self.x = node.x;
        self.y = node.y;
        let arrival = if self.node == self.home && self.stops_left == 0 {
            Arrival::Depot
        } else {
            self.stops_left = self.stops_left.saturating_sub(1);
            Arrival::Customer
        };
        let now = self.t_ms;
        match arrival {
            Arrival::Depot => {
                if self.fuel_l < self.spec.tank_l * 0.35 {
                    self.fuel_l = self.spec.tank_l * 0.97;
                }
                self.set_ignition(false, out);
                let park = self.spec.depot_park_s * self.rng.gen_range(0.5..1.5);
                self.phase = Phase::Parked {
                    until_ms: now + (park * 1000.0) as u64,
                };
            }
            Arrival::Customer if self.rng.gen_bool(self.spec.idling_habit) => {
                self.phase = Phase::Idling {
                    until_ms: now + self.rng.gen_range(30_000..240_000),
                };
            }
            Arrival::Customer => {
                self.set_ignition(false, out);
                self.phase = Phase::Parked {
                    until_ms: now + self.rng.gen_range(90_000..480_000),
                };
            }
        }
    }

    fn update_engine(&mut self, dt: f64) {
        let running =
            self.ignition && !matches!(self.phase, Phase::Parked { .. } | Phase::Cranking { .. });
        let kmh = self.v * 3.6;
        if running {
            const GEAR_TOP_KMH: [f64; 10] =
                [9.0, 14.0, 20.0, 28.0, 37.0, 47.0, 58.0, 70.0, 83.0, 97.0];
            let gear_top = GEAR_TOP_KMH
                .iter()
                .copied()
                .find(|top| kmh * 1.3 < *top)
                .unwrap_or(97.0);
            let target = if kmh < 1.0 {
                650.0
            } else {
                (1900.0 * kmh / gear_top).max(750.0)
            };
            self.rpm += (target - self.rpm) * (dt * 4.0).min(1.0) + self.rng.gen_range(-4.0..4.0);
            let drag = (kmh / 90.0).powi(2) * 35.0;
            let accel = (self.a.max(0.0) / self.spec.accel_mps2) * 60.0;
            self.load = (12.0 + drag + accel).clamp(0.0, 100.0);
            self.pedal = if self.a > 0.05 || (kmh > 5.0 && self.a > -0.1) {
                (8.0 + self.load * 0.8).min(100.0)
            } else {
                0.0
            };
            let rate_lph = 2.6 + self.load * 0.38;
            let used = rate_lph * dt / 3600.0;
            self.fuel_used_l += used;
            self.fuel_l = (self.fuel_l - used).max(0.0);
            self.engine_h += dt / 3600.0;
            self.coolant += (88.0 - self.coolant) * dt / 240.0;
            self.battery += (27.9 - self.battery) * (dt / 5.0).min(1.0);
        } else {
            self.load = 0.0;
            self.pedal = 0.0;
            self.coolant += (16.0 - self.coolant) * dt / 2400.0;
            if matches!(self.phase, Phase::Cranking { .. }) {
                self.battery = 20.5 + self.rng.gen_range(-0.4..0.4);
            } else {
                self.battery += (24.7 - self.battery) * (dt / 30.0).min(1.0);
            }
        }
        // Faults come and go: a few per day of driving.
        if running && self.rng.gen_bool(dt / 20_000.0) {
            let pool = [
                (3216, 20),
                (609, 9),
                (110, 16),
                (168, 1),
                (5246, 0),
                (1761, 17),
            ];
            let (spn, fmi) = pool[self.rng.gen_range(0..pool.len())];
            if !self.dtcs.iter().any(|d| d.spn == spn) {
                self.dtcs.push(Dtc { spn, fmi, oc: 1 });
            }
        }
        if !self.dtcs.is_empty() && self.rng.gen_bool(dt / 3_000.0) {
            self.dtcs.remove(0);
        }
    }

    fn emit(&mut self, wall_offset_ms: i64, out: &mut Vec<SimOutput>) {
        let now = self.t_ms;
        let (x, y, v, heading) = (self.x, self.y, self.v, self.heading);
        let (rng, noise, city) = (&mut self.rng, &mut self.gps_noise, self.net.city);
        self.emitter.gnss(
            now,
            wall_offset_ms,
            |time_ms| {
                noise.0 = noise.0 * 0.9 + rng.gen_range(-0.4..0.4);
                noise.1 = noise.1 * 0.9 + rng.gen_range(-0.4..0.4);
                let (lat, lon) = city.to_lat_lon(x + noise.0, y + noise.1);
                GnssFix {
                    time_ms,
                    lat,
                    lon,
                    alt_m: 4.0 + (x / 900.0).sin() * 3.0 + (y / 1300.0).cos() * 2.0,
                    speed_mps: v,
                    course_deg: heading,
                    sats: 8 + (now / 60_000 % 4) as u8,
                    hdop: 0.9 + (now / 30_000 % 5) as f64 * 0.1,
                }
            },
            out,
        );
        let ecu = EcuState {
            rpm: self.rpm,
            load: self.load,
            pedal: self.pedal,
            speed_mps: self.v,
            braking: self.a < -0.3,
            coolant: self.coolant,
            fuel_level_pct: self.fuel_l / self.spec.tank_l * 100.0,
            engine_h: self.engine_h,
            odometer_m: self.odometer_m,
            fuel_used_l: self.fuel_used_l,
            battery: self.battery,
        };
        self.emitter.bus(now, self.ignition, &ecu, &self.dtcs, out);
    }

    pub fn ignition(&self) -> bool {
        self.ignition
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn truck(seed: u64) -> Vehicle {
        let net = Arc::new(RoadNetwork::generate(ROTTERDAM, 1));
        let mut rng = StdRng::seed_from_u64(seed);
        let spec = VehicleSpec::truck(&mut rng, FramePeriods::THINNED);
        Vehicle::new(net, spec, seed, 0)
    }

    #[test]
    fn truck_drives_plausibly_for_hours() {
        let mut v = truck(3);
        let mut out = Vec::new();
        let mut max_speed: f64 = 0.0;
        let mut ign_changes = 0;
        let mut last = v.truth();
        let mut max_accel: f64 = 0.0;
        for s in 1..=4 * 3600 {
            out.clear();
            v.advance_to(s * 1000, 1_700_000_000_000, &mut out);
            ign_changes += out
                .iter()
                .filter(|o| matches!(o, SimOutput::Ignition(..)))
                .count();
            let t = v.truth();
            max_speed = max_speed.max(t.speed_mps);
            max_accel = max_accel.max((t.speed_mps - last.speed_mps).abs());
            assert!((t.lat - ROTTERDAM.lat).abs() < 0.15, "lat {}", t.lat);
            last = t;
        }
        assert!(max_speed > 40.0 / 3.6, "never got going: {max_speed}");
        assert!(max_speed <= 86.0 / 3.6, "too fast: {max_speed}");
        assert!(max_accel < 5.0, "jerky: {max_accel} m/s per s");
        assert!(ign_changes >= 4, "ignition changed {ign_changes} times");
        assert!(v.truth().odometer_m > 0.0);
    }

    #[test]
    fn a_fleet_starts_spread_over_the_day_and_the_map() {
        let net = Arc::new(RoadNetwork::generate(ROTTERDAM, 1));
        let (mut driving, mut idling, mut off) = (0, 0, 0);
        let mut places = std::collections::HashSet::new();
        for seed in 0..40 {
            let mut rng = StdRng::seed_from_u64(seed);
            let spec = VehicleSpec::truck(&mut rng, FramePeriods::THINNED);
            let mut v = Vehicle::new(net.clone(), spec, seed, 0);
            let mut out = Vec::new();
            v.advance_to(2_000, 0, &mut out);
            let t = v.truth();
            let reported_on = out
                .iter()
                .any(|o| matches!(o, SimOutput::Ignition(true, 0)));
            assert_eq!(reported_on, t.ignition, "the starting ignition is reported");
            match (t.ignition, t.speed_mps > 1.0) {
                (true, true) => driving += 1,
                (true, false) => idling += 1,
                (false, _) => off += 1,
            }
            places.insert(((t.lat * 1e3) as i64, (t.lon * 1e3) as i64));
        }
        assert!(driving >= 16, "{driving} of 40 start on the road");
        assert!(idling >= 3, "{idling} of 40 start idling");
        assert!(off >= 2, "{off} of 40 start parked");
        assert!(places.len() >= 30, "{} distinct start places", places.len());
    }

    #[test]
    fn same_seed_gives_same_drive() {
        let (mut a, mut b) = (truck(9), truck(9));
        let (mut oa, mut ob) = (Vec::new(), Vec::new());
        a.advance_to(900_000, 0, &mut oa);
        b.advance_to(900_000, 0, &mut ob);
        assert_eq!(oa, ob);
        assert!(oa.iter().any(|o| matches!(o, SimOutput::Can(_))));
    }
}
