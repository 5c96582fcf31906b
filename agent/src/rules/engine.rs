//! The rules engine: one per vehicle. Decoded values in, events out; no I/O, no
//! clock reads: every input carries its own monotonic time.

use super::fuel::FuelDropDetector;
use super::geofence::{Crossing, GeofenceSet, GeofenceTracker};
use super::harsh::{HarshDetector, HarshEpisode, HarshKind};
use super::meters::{Accepted, MeterGuard};
use super::power::{PowerEvent, PowerMonitor};
use super::speeding::{SpeedingEpisode, SpeedingTracker};
use super::thinning::PositionThinner;
use super::trip::{TripAccumulator, TripSample};
use super::{IgnitionSource, RulesConfig, Sampler};
use fleet_protocol::event::kinds;
use fleet_protocol::{EventData, Kind, Position, Priority};
use serde_json::{json, Map, Value};

/// An event the rules produced, before the store numbers it.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleEvent {
    pub kind: Kind,
    pub priority: Priority,
    pub mono_ms: u64,
    pub data: EventData,
}

/// The signals the rules know, in engineering units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    EngineSpeedRpm,
    WheelSpeedKmh,
    CoolantTempC,
    FuelLevelPct,
    EngineHoursH,
    OdometerKm,
    FuelRateLph,
    FuelUsedL,
    BatteryV,
    AccelPedalPct,
    EngineLoadPct,
}

const SIGNALS: usize = 11;

impl Signal {
    pub const ALL: [Signal; SIGNALS] = [
        Signal::EngineSpeedRpm,
        Signal::WheelSpeedKmh,
        Signal::CoolantTempC,
        Signal::FuelLevelPct,
        Signal::EngineHoursH,
        Signal::OdometerKm,
        Signal::FuelRateLph,
        Signal::FuelUsedL,
        Signal::BatteryV,
        Signal::AccelPedalPct,
        Signal::EngineLoadPct,
    ];

    /// The signal an OBD-II mode 01 PID carries, in the units the decoder gives.
    pub fn for_obd_pid(pid: u8) -> Option<Signal> {
        Some(match pid {
            0x0C => Signal::EngineSpeedRpm,
            0x0D => Signal::WheelSpeedKmh,
            0x05 => Signal::CoolantTempC,
            0x2F => Signal::FuelLevelPct,
            0x42 => Signal::BatteryV,
            0x5E => Signal::FuelRateLph,
            0x49 => Signal::AccelPedalPct,
            0x04 => Signal::EngineLoadPct,
            0xA6 => Signal::OdometerKm,
            _ => return None,
        })
    }

    /// The key in a `signal` event's payload.
    pub fn name(self) -> &'static str {
        match self {
            Signal::EngineSpeedRpm => "engine_speed_rpm",
            Signal::WheelSpeedKmh => "wheel_speed_kmh",
            Signal::CoolantTempC => "coolant_temp_c",
            Signal::FuelLevelPct => "fuel_level_pct",
            Signal::EngineHoursH => "engine_hours_h",
            Signal::OdometerKm => "odometer_km",
            Signal::FuelRateLph => "fuel_rate_lph",
            Signal::FuelUsedL => "fuel_used_l",
            Signal::BatteryV => "battery_v",
            Signal::AccelPedalPct => "accel_pedal_pct",
            Signal::EngineLoadPct => "engine_load_pct",
        }
    }
}

/// One active trouble code as the rules see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ActiveDtc {
    pub source: u8,
    pub spn: u32,
    pub fmi: u8,
    pub oc: u8,
}

#[derive(Debug, Clone, Copy)]
enum TripState {
    Parked,
    /// Moving, not yet for long enough.
    Starting {
        since_ms: u64,
    },
    Driving {
        slow_since: Option<u64>,
    },
}

/// Wheel speed older than this is stale and GPS speed is used instead.
const WHEEL_SPEED_FRESH_MS: u64 = 3_000;
/// A sample never stands for more than this (a gap in the data is not driving;
/// OBD adapters polling many PIDs report speed every few seconds).
const MAX_SPAN_MS: u64 = 10_000;
/// Without a fix this recent, wheel speed alone drives trips and idling.
const FIX_FRESH_MS: u64 = 3_000;
/// The interval between engine-speed readings assumed before two have arrived.
const UNKNOWN_RPM_PERIOD_MS: u64 = 10_000;
/// Engine speed in this range with the engine not running: the starter turns.
const CRANKING_RPM: f64 = 50.0;

/// Kinds the rules make besides those `fleet_protocol::event::kinds` names.
pub mod rule_kinds {
    use fleet_protocol::Kind;
    pub const HARSH_ACCELERATION: Kind = Kind::known("harsh_acceleration");
    pub const HARSH_BRAKING: Kind = Kind::known("harsh_braking");
    pub const HARSH_CORNERING: Kind = Kind::known("harsh_cornering");
    pub const SPEEDING: Kind = Kind::known("speeding");
    pub const GEOFENCE_ENTER: Kind = Kind::known("geofence_enter");
    pub const GEOFENCE_EXIT: Kind = Kind::known("geofence_exit");
    pub const FUEL_DROP: Kind = Kind::known("fuel_drop");
    pub const BATTERY_LOW: Kind = Kind::known("battery_low");
    pub const CRANKING_WEAK: Kind = Kind::known("cranking_weak");
    pub const ODOMETER: Kind = Kind::known("odometer");
    pub const ENGINE_HOURS: Kind = Kind::known("engine_hours");
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

fn json_event(kind: Kind, priority: Priority, mono_ms: u64, data: Map<String, Value>) -> RuleEvent {
    RuleEvent {
        kind,
        priority,
        mono_ms,
        data: EventData::Json(Value::Object(data)),
    }
}

fn put_place(data: &mut Map<String, Value>, at: Option<(f64, f64)>) {
    if let Some((lat, lon)) = at {
        data.insert("lat".into(), json!(lat));
        data.insert("lon".into(), json!(lon));
    }
}

pub struct Engine {
    cfg: RulesConfig,
    samplers: Vec<Sampler>,
    latest: [Option<(u64, f64)>; SIGNALS],
    pending_signals: Map<String, Value>,
    pending_signals_ms: u64,
    thinner: PositionThinner,
    kept: Vec<(u64, Position)>,
    last_fix: Option<(u64, Position)>,
    wire: Option<bool>,
    engine_on: bool,
    last_rpm_ms: Option<u64>,
    ignition: bool,
    trip: TripState,
    acc: TripAccumulator,
    /// Samples of a trip that may be starting, folded in once it has.
    starting: Vec<TripSample>,
    idle_since: Option<u64>,
    dtcs: Vec<ActiveDtc>,
    /// The usual interval between engine-speed readings.
    rpm_period_ms: u64,
    /// Ignition inferred from bus traffic, when nothing better is known.
    bus_on: Option<bool>,
    last_sample_ms: Option<u64>,
    harsh: HarshDetector,
    speeding: SpeedingTracker,
    geofences: GeofenceTracker,
    fuel: FuelDropDetector,
    power: PowerMonitor,
    odometer: MeterGuard,
    engine_hours: MeterGuard,
    fuel_total: MeterGuard,
    meters_recorded_ms: Option<u64>,
    meters_seen_ms: Option<u64>,
    scratch_harsh: Vec<HarshEpisode>,
    scratch_fences: Vec<Crossing>,
}

impl Engine {
    pub fn new(cfg: RulesConfig) -> Self {
        let s = &cfg.signals;
        let samplers = [
            &s.engine_speed_rpm,
            &s.wheel_speed_kmh,
            &s.coolant_temp_c,
            &s.fuel_level_pct,
            &s.engine_hours_h,
            &s.odometer_km,
            &s.fuel_rate_lph,
            &s.fuel_used_l,
            &s.battery_v,
            &s.accel_pedal_pct,
            &s.engine_load_pct,
        ]
        .into_iter()
        .map(|p| Sampler::new(p.clone()))
        .collect();
        let mut engine = Self {
            thinner: PositionThinner::new(cfg.positions.clone()),
            samplers,
            latest: [None; SIGNALS],
            pending_signals: Map::new(),
            pending_signals_ms: 0,
            kept: Vec::new(),
            last_fix: None,
            wire: None,
            engine_on: false,
            last_rpm_ms: None,
            ignition: false,
            trip: TripState::Parked,
            acc: TripAccumulator::default(),
            starting: Vec::new(),
            idle_since: None,
            dtcs: Vec::new(),
            rpm_period_ms: 0,
            bus_on: None,
            last_sample_ms: None,
            harsh: HarshDetector::new(cfg.harsh.clone()),
            speeding: SpeedingTracker::new(cfg.speeding.clone()),
            geofences: GeofenceTracker::new(GeofenceSet::default(), cfg.geofences.hysteresis_m),
            fuel: FuelDropDetector::new(cfg.fuel_drop.clone()),
            power: PowerMonitor::new(cfg.battery.clone()),
            odometer: MeterGuard::new(cfg.meters.max_speed_kmh, 0.2, cfg.meters.rebase_after),
            engine_hours: MeterGuard::new(1.0, 0.1, cfg.meters.rebase_after),
            fuel_total: MeterGuard::new(250.0, 1.0, cfg.meters.rebase_after),
            meters_recorded_ms: None,
            meters_seen_ms: None,
            scratch_harsh: Vec::new(),
            scratch_fences: Vec::new(),
            cfg,
        };
        engine.load_geofences();
        engine
    }

    /// Watch the geofences of the file the config names. The one read a rules
    /// engine does, at its start; `fleet-agent validate` has parsed the file
    /// already, so a failure here means it changed since, and the vehicle runs
    /// on without fences rather than not at all.
    fn load_geofences(&mut self) {
        let Some(path) = self.cfg.geofences.file.clone() else {
            return;
        };
        match GeofenceSet::load(&path) {
            Ok(set) => self.set_geofences(set),
            Err(e) => tracing::error!(file = %path.display(), "geofences not loaded: {e}"),
        }
    }

    /// The geofences to watch (read with [`GeofenceSet::load`]); replaces any
    /// earlier set, and a vehicle inside one then makes no enter event.
    pub fn set_geofences(&mut self, set: GeofenceSet) {
        self.geofences = GeofenceTracker::new(set, self.cfg.geofences.hysteresis_m);
    }

    /// Readings of the lifetime counters ignored as glitches.
    pub fn meter_glitches(&self) -> u64 {
        self.odometer.rejected + self.engine_hours.rejected + self.fuel_total.rejected
    }

    /// GPS fixes the harsh-driving rules set aside as jumps.
    pub fn rejected_fixes(&self) -> u64 {
        self.harsh.rejected_fixes
    }

    pub fn ignition(&self) -> bool {
        self.ignition
    }

    pub fn in_trip(&self) -> bool {
        matches!(self.trip, TripState::Driving { .. })
    }

    fn value(&self, s: Signal) -> Option<f64> {
        self.latest[s as usize].map(|(_, v)| v)
    }

    fn fresh(&self, s: Signal, now: u64, max_age: u64) -> Option<f64> {
        self.latest[s as usize]
            .filter(|(t, _)| now.saturating_sub(*t) <= max_age)
            .map(|(_, v)| v)
    }

    /// Ground speed in km/h: the wheels when the bus says, else GPS.
    fn speed_kmh(&self, now: u64) -> f64 {
        self.fresh(Signal::WheelSpeedKmh, now, WHEEL_SPEED_FRESH_MS)
            .or_else(|| {
                self.last_fix
                    .and_then(|(_, p)| p.speed_cms)
                    .map(|s| f64::from(s) * 0.036)
            })
            .unwrap_or(0.0)
    }

    fn engine_running(&self) -> bool {
        if self.last_rpm_ms.is_some() {
            self.engine_on
        } else {
            self.ignition
        }
    }

    fn place(&self) -> Option<(f64, f64)> {
        self.last_fix.map(|(_, p)| (p.lat(), p.lon()))
    }

    /// A decoded signal value.
    pub fn signal(&mut self, s: Signal, value: f64, mono_ms: u64, out: &mut Vec<RuleEvent>) {
        if !value.is_finite() {
            return;
        }
        // Lifetime counters pass their monotonic guard first; glitches go no further.
        let guard = match s {
            Signal::OdometerKm => Some(&mut self.odometer),
            Signal::EngineHoursH => Some(&mut self.engine_hours),
            Signal::FuelUsedL => Some(&mut self.fuel_total),
            _ => None,
        };
        if let Some(guard) = guard {
            match guard.offer(mono_ms, value) {
                None => return,
                Some(Accepted::Value(_)) => {}
                Some(Accepted::Rebased { value, previous }) => {
                    if s != Signal::FuelUsedL {
                        self.meter_event(s, value, Some(previous), "rebased", mono_ms, out);
                    }
                }
            }
        }
        self.latest[s as usize] = Some((mono_ms, value));
        if self.samplers[s as usize].offer(mono_ms, value) {
            if self.pending_signals.is_empty() {
                self.pending_signals_ms = mono_ms;
            }
            let rounded = (value * 1000.0).round() / 1000.0;
            self.pending_signals.insert(s.name().into(), json!(rounded));
        }
        match s {
            Signal::EngineSpeedRpm => self.engine_speed(value, mono_ms, out),
            Signal::WheelSpeedKmh => {
                let at = self.place();
                self.harsh
                    .wheel_speed(mono_ms, value, at, &mut self.scratch_harsh);
                self.emit_harsh(out);
                let no_fix = self
                    .last_fix
                    .is_none_or(|(t, _)| mono_ms.saturating_sub(t) > FIX_FRESH_MS);
                let due = self
                    .last_sample_ms
                    .is_none_or(|t| mono_ms.saturating_sub(t) >= 1_000);
                if no_fix && due {
                    self.sample(mono_ms, None, out);
                }
            }
            Signal::FuelLevelPct => {
                let stationary = !self.ignition || self.speed_kmh(mono_ms) < 2.0;
                if let Some(d) = self.fuel.level(mono_ms, value, stationary) {
                    let mut data = Map::new();
                    data.insert("from_pct".into(), json!(round2(d.from_pct)));
                    data.insert("to_pct".into(), json!(round2(d.to_pct)));
                    data.insert("drop_pct".into(), json!(round2(d.drop_pct())));
                    data.insert("from_mono_ms".into(), json!(d.from_ms));
                    data.insert("ignition".into(), json!(self.ignition));
                    put_place(&mut data, self.place());
                    out.push(json_event(
                        rule_kinds::FUEL_DROP,
                        Priority::Critical,
                        mono_ms,
                        data,
                    ));
                }
            }
            Signal::BatteryV => {
                let e = self.power.voltage(mono_ms, value, self.ignition);
                self.emit_power(e, out);
            }
            Signal::OdometerKm | Signal::EngineHoursH => self.meters_if_due(mono_ms, out),
            _ => {}
        }
    }

    fn engine_speed(&mut self, rpm: f64, mono_ms: u64, out: &mut Vec<RuleEvent>) {
        if let Some(last) = self.last_rpm_ms {
            self.rpm_period_ms = mono_ms.saturating_sub(last).min(60_000);
        }
        self.last_rpm_ms = Some(mono_ms);
        let on = rpm >= self.cfg.ignition.engine_on_rpm;
        if !on && rpm >= CRANKING_RPM {
            self.power.cranking(mono_ms);
        }
        if on && !self.engine_on {
            let e = self.power.crank_over(mono_ms, true);
            self.emit_power(e, out);
        }
        if on != self.engine_on {
            self.engine_on = on;
            self.update_ignition(mono_ms, out);
        }
    }

    /// How busy the CAN bus is, frames per second over the last second or so.
    /// With no ignition wire and no engine speed on the bus, this is what says
    /// the ignition is on: ECUs only talk when powered.
    pub fn bus_activity(&mut self, frames_per_s: f64, mono_ms: u64, out: &mut Vec<RuleEvent>) {
        let on = frames_per_s >= self.cfg.ignition.bus_active_fps;
        if self.bus_on != Some(on) {
            self.bus_on = Some(on);
            self.update_ignition(mono_ms, out);
        }
    }

    /// The ignition sense wire changed.
    pub fn ignition_wire(&mut self, on: bool, mono_ms: u64, out: &mut Vec<RuleEvent>) {
        self.wire = Some(on);
        self.update_ignition(mono_ms, out);
    }

    fn update_ignition(&mut self, mono_ms: u64, out: &mut Vec<RuleEvent>) {
        let inferred = if self.last_rpm_ms.is_some() {
            self.engine_on
        } else {
            self.bus_on.unwrap_or(false)
        };
        let on = match (self.cfg.ignition.source, self.wire) {
            (IgnitionSource::Wire, w) => w.unwrap_or(false),
            (IgnitionSource::Auto, Some(w)) => w,
            (IgnitionSource::Auto, None) => inferred,
            (IgnitionSource::EngineSpeed, _) => self.engine_on,
        };
        if on == self.ignition {
            return;
        }
        self.ignition = on;
        self.thinner.set_parked(!on);
        if on && !self.engine_on {
            // Key turned: the starter is about to turn.
            self.power.cranking(mono_ms);
        }
        if !on {
            self.end_idle(mono_ms, out);
            if self.cfg.trips.use_ignition && self.in_trip() {
                self.end_trip(mono_ms, out);
            } else if matches!(self.trip, TripState::Starting { .. }) {
                self.trip = TripState::Parked;
                self.starting.clear();
            }
        }
        let mut data = Map::new();
        put_place(&mut data, self.place());
        if !on {
            if let Some(v) = self.value(Signal::OdometerKm) {
                data.insert("odometer_km".into(), json!(v));
            }
            if let Some(v) = self.value(Signal::EngineHoursH) {
                data.insert("engine_hours_h".into(), json!(v));
            }
        }
        out.push(json_event(
            if on {
                kinds::IGNITION_ON
            } else {
                kinds::IGNITION_OFF
            },
            Priority::Critical,
            mono_ms,
            data,
        ));
    }

    /// A GNSS fix.
    pub fn fix(&mut self, mono_ms: u64, pos: Position, out: &mut Vec<RuleEvent>) {
        if pos.fix == 0 || pos.invalid_reason().is_some() {
            return;
        }
        self.harsh.fix(mono_ms, pos, &mut self.scratch_harsh);
        self.emit_harsh(out);
        self.geofences
            .fix(mono_ms, pos.lat(), pos.lon(), &mut self.scratch_fences);
        for c in self.scratch_fences.drain(..) {
            let mut data = Map::new();
            data.insert("geofence_id".into(), json!(c.id));
            if let Some(name) = c.name {
                data.insert("name".into(), json!(name));
            }
            if let Some(ms) = c.inside_ms {
                data.insert("inside_s".into(), json!(ms as f64 / 1000.0));
            }
            put_place(&mut data, Some((pos.lat(), pos.lon())));
            let kind = if c.entered {
                rule_kinds::GEOFENCE_ENTER
            } else {
                rule_kinds::GEOFENCE_EXIT
            };
            out.push(json_event(kind, Priority::Normal, mono_ms, data));
        }
        self.thinner.push(mono_ms, pos, &mut self.kept);
        for (t, p) in self.kept.drain(..) {
            out.push(RuleEvent {
                kind: kinds::POSITION,
                priority: Priority::Telemetry,
                mono_ms: t,
                data: EventData::Position(p),
            });
        }
        self.sample(mono_ms, Some(pos), out);
        self.last_fix = Some((mono_ms, pos));
    }

    /// One observation of the vehicle's motion: from a fix, or from wheel speed
    /// when there is no GPS.
    fn sample(&mut self, mono_ms: u64, pos: Option<Position>, out: &mut Vec<RuleEvent>) {
        let span = self
            .last_sample_ms
            .map_or(1_000, |t| mono_ms.saturating_sub(t).min(MAX_SPAN_MS));
        self.last_sample_ms = Some(mono_ms);
        let kmh = match pos {
            Some(p) => self
                .fresh(Signal::WheelSpeedKmh, mono_ms, WHEEL_SPEED_FRESH_MS)
                .or_else(|| p.speed_cms.map(|s| f64::from(s) * 0.036))
                .unwrap_or(0.0),
            None => self.speed_kmh(mono_ms),
        };
        let at = pos.map(|p| (p.lat(), p.lon())).or_else(|| self.place());
        let idle = self.engine_running() && kmh <= self.cfg.idle.max_speed_kmh;
        if kmh > self.cfg.idle.max_speed_kmh {
            self.fuel.moving();
        }
        if let Some(e) = self.speeding.speed(mono_ms, kmh, at) {
            self.emit_speeding(e, out);
        }
        let sample = TripSample {
            mono_ms,
            span_ms: span as u32,
            speed_cms: (kmh / 0.036).round() as u32,
            lat_e7: pos.map(|p| p.lat_e7),
            lon_e7: pos.map(|p| p.lon_e7),
            idle,
            odometer_m: self
                .value(Signal::OdometerKm)
                .map(|km| (km * 1000.0).round() as u64),
            fuel_total_ml: self
                .value(Signal::FuelUsedL)
                .map(|l| (l * 1000.0).round() as u64),
            fuel_rate_mlph: self
                .fresh(Signal::FuelRateLph, mono_ms, MAX_SPAN_MS)
                .map(|l| (l * 1000.0).round() as u32),
        };
        self.update_trip(sample, kmh, out);
        self.update_idle(idle, mono_ms, out);
    }

    fn emit_harsh(&mut self, out: &mut Vec<RuleEvent>) {
        let in_trip = self.in_trip();
        for e in self.scratch_harsh.drain(..) {
            let kind = match e.kind {
                HarshKind::Acceleration => rule_kinds::HARSH_ACCELERATION,
                HarshKind::Braking => rule_kinds::HARSH_BRAKING,
                HarshKind::Cornering => rule_kinds::HARSH_CORNERING,
            };
            let mut data = Map::new();
            data.insert("peak_mps2".into(), json!(round2(e.peak_mps2)));
            data.insert("duration_s".into(), json!(e.duration_s()));
            data.insert("speed_kmh".into(), json!(round2(e.speed_kmh)));
            data.insert("source".into(), json!(e.source));
            data.insert("start_mono_ms".into(), json!(e.start_ms));
            put_place(&mut data, e.at);
            if in_trip {
                self.acc.add_event();
            }
            out.push(json_event(kind, Priority::Normal, e.end_ms, data));
        }
    }

    fn emit_speeding(&mut self, e: SpeedingEpisode, out: &mut Vec<RuleEvent>) {
        let mut data = Map::new();
        data.insert("limit_kmh".into(), json!(e.limit_kmh));
        data.insert("max_speed_kmh".into(), json!(round2(e.max_speed_kmh)));
        data.insert("mean_speed_kmh".into(), json!(round2(e.mean_speed_kmh)));
        data.insert("duration_s".into(), json!(e.duration_s()));
        data.insert("start_mono_ms".into(), json!(e.start_ms));
        put_place(&mut data, e.start_at);
        if let Some((lat, lon)) = e.max_at {
            data.insert("max_lat".into(), json!(lat));
            data.insert("max_lon".into(), json!(lon));
        }
        if self.in_trip() {
            self.acc.add_event();
        }
        out.push(json_event(
            rule_kinds::SPEEDING,
            Priority::Normal,
            e.end_ms,
            data,
        ));
    }

    fn emit_power(&mut self, e: Option<PowerEvent>, out: &mut Vec<RuleEvent>) {
        let Some(e) = e else { return };
        let mut data = Map::new();
        let (kind, at) = match e {
            PowerEvent::Low {
                since_ms,
                at_ms,
                min_v,
                threshold_v,
            } => {
                data.insert("voltage_v".into(), json!(round2(min_v)));
                data.insert("threshold_v".into(), json!(round2(threshold_v)));
                data.insert(
                    "duration_s".into(),
                    json!((at_ms - since_ms) as f64 / 1000.0),
                );
                (rule_kinds::BATTERY_LOW, at_ms)
            }
            PowerEvent::CrankingWeak {
                start_ms,
                end_ms,
                min_v,
                threshold_v,
                started,
            } => {
                data.insert("min_voltage_v".into(), json!(round2(min_v)));
                data.insert("threshold_v".into(), json!(round2(threshold_v)));
                data.insert(
                    "duration_s".into(),
                    json!(end_ms.saturating_sub(start_ms) as f64 / 1000.0),
                );
                data.insert("started".into(), json!(started));
                (rule_kinds::CRANKING_WEAK, end_ms)
            }
        };
        put_place(&mut data, self.place());
        out.push(json_event(kind, Priority::Normal, at, data));
    }

    fn meter_event(
        &mut self,
        s: Signal,
        value: f64,
        previous: Option<f64>,
        reason: &str,
        mono_ms: u64,
        out: &mut Vec<RuleEvent>,
    ) {
        let (kind, key) = match s {
            Signal::OdometerKm => (rule_kinds::ODOMETER, "odometer_km"),
            Signal::EngineHoursH => (rule_kinds::ENGINE_HOURS, "engine_hours_h"),
            _ => return,
        };
        let mut data = Map::new();
        data.insert(key.into(), json!((value * 1000.0).round() / 1000.0));
        data.insert("reason".into(), json!(reason));
        if let Some(p) = previous {
            data.insert("previous".into(), json!(p));
        }
        out.push(json_event(kind, Priority::Normal, mono_ms, data));
    }

    /// Record both meters (trip end, and at least every `every_h`).
    fn record_meters(&mut self, reason: &str, mono_ms: u64, out: &mut Vec<RuleEvent>) {
        let mut any = false;
        for s in [Signal::OdometerKm, Signal::EngineHoursH] {
            if let Some(v) = self.value(s) {
                self.meter_event(s, v, None, reason, mono_ms, out);
                any = true;
            }
        }
        if any {
            self.meters_recorded_ms = Some(mono_ms);
        }
    }

    fn meters_if_due(&mut self, mono_ms: u64, out: &mut Vec<RuleEvent>) {
        let every_ms = (self.cfg.meters.every_h * 3_600_000.0) as u64;
        let due = self
            .meters_recorded_ms
            .is_none_or(|t| mono_ms.saturating_sub(t) >= every_ms);
        // Both meters usually arrive within a second; wait a little for the second.
        let seen = *self.meters_seen_ms.get_or_insert(mono_ms);
        let both_or_late = self.value(Signal::OdometerKm).is_some()
            && self.value(Signal::EngineHoursH).is_some()
            || mono_ms >= seen + 5_000;
        if due && both_or_late {
            self.record_meters("periodic", mono_ms, out);
        }
    }

    fn update_trip(&mut self, sample: TripSample, kmh: f64, out: &mut Vec<RuleEvent>) {
        let t = &self.cfg.trips;
        let now = sample.mono_ms;
        let may_move = !t.use_ignition || self.wire.is_none() || self.ignition;
        match self.trip {
            TripState::Parked => {
                if kmh >= t.start_speed_kmh && may_move {
                    self.trip = TripState::Starting { since_ms: now };
                    self.starting.clear();
                    self.starting.push(sample);
                }
            }
            TripState::Starting { since_ms } => {
                if kmh < t.start_speed_kmh {
                    self.trip = TripState::Parked;
                    self.starting.clear();
                } else {
                    self.starting.push(sample);
                    if (now - since_ms) as f64 / 1000.0 >= t.start_after_s {
                        self.start_trip(since_ms, out);
                    }
                }
            }
            TripState::Driving { slow_since } => {
                self.acc.add(&sample);
                if kmh < t.stop_speed_kmh {
                    let since = slow_since.unwrap_or(now);
                    self.trip = TripState::Driving {
                        slow_since: Some(since),
                    };
                    if (now - since) as f64 / 1000.0 >= t.stop_after_s {
                        self.end_trip(now, out);
                    }
                } else {
                    self.trip = TripState::Driving { slow_since: None };
                }
            }
        }
    }

    fn start_trip(&mut self, since_ms: u64, out: &mut Vec<RuleEvent>) {
        self.acc = TripAccumulator::default();
        for s in self.starting.drain(..) {
            self.acc.add(&s);
        }
        self.trip = TripState::Driving { slow_since: None };
        let mut data = Map::new();
        if let Some(start) = self.acc.summary().start {
            data.insert("lat".into(), json!(start.lat));
            data.insert("lon".into(), json!(start.lon));
        }
        if let Some(v) = self.value(Signal::OdometerKm) {
            data.insert("odometer_km".into(), json!(v));
        }
        out.push(RuleEvent {
            kind: kinds::TRIP_START,
            priority: Priority::Critical,
            mono_ms: since_ms,
            data: EventData::Json(Value::Object(data)),
        });
    }

    /// Episodes still open belong to the trip that is ending.
    fn close_episodes(&mut self, out: &mut Vec<RuleEvent>) {
        self.harsh.close_all(&mut self.scratch_harsh);
        self.emit_harsh(out);
        if let Some(e) = self.speeding.close() {
            self.emit_speeding(e, out);
        }
    }

    fn end_trip(&mut self, mono_ms: u64, out: &mut Vec<RuleEvent>) {
        self.close_episodes(out);
        self.trip = TripState::Parked;
        if self.acc.is_empty() {
            return;
        }
        let summary = self.acc.summary();
        self.acc = TripAccumulator::default();
        let end_ms = mono_ms.max(summary.end_mono_ms);
        out.push(RuleEvent {
            kind: kinds::TRIP_END,
            priority: Priority::Critical,
            mono_ms: end_ms,
            data: EventData::Json(serde_json::to_value(&summary).unwrap_or_default()),
        });
        self.record_meters("trip_end", end_ms, out);
    }

    fn update_idle(&mut self, idle: bool, mono_ms: u64, out: &mut Vec<RuleEvent>) {
        match (idle, self.idle_since) {
            (true, None) => self.idle_since = Some(mono_ms),
            (false, Some(_)) => self.end_idle(mono_ms, out),
            _ => {}
        }
    }

    fn end_idle(&mut self, mono_ms: u64, out: &mut Vec<RuleEvent>) {
        let Some(since) = self.idle_since.take() else {
            return;
        };
        let secs = mono_ms.saturating_sub(since) as f64 / 1000.0;
        if secs < self.cfg.idle.after_s {
            return;
        }
        let mut data = Map::new();
        data.insert("duration_s".into(), json!(secs));
        data.insert("start_mono_ms".into(), json!(since));
        if let Some((_, p)) = self.last_fix {
            data.insert("lat".into(), json!(p.lat()));
            data.insert("lon".into(), json!(p.lon()));
        }
        out.push(RuleEvent {
            kind: kinds::IDLE,
            priority: Priority::Normal,
            mono_ms,
            data: EventData::Json(Value::Object(data)),
        });
    }

    /// The active trouble codes one ECU reports now (a DM1).
    pub fn dtcs(
        &mut self,
        source: u8,
        lamps: u8,
        active: &[ActiveDtc],
        mono_ms: u64,
        out: &mut Vec<RuleEvent>,
    ) {
        let key = |d: &ActiveDtc| (d.source, d.spn, d.fmi);
        let mut cleared = Vec::new();
        self.dtcs.retain(|old| {
            let keep = old.source != source || active.iter().any(|d| key(d) == key(old));
            if !keep {
                cleared.push(*old);
            }
            keep
        });
        for d in cleared {
            out.push(dtc_event(kinds::DTC_CLEAR, &d, lamps, mono_ms));
        }
        for d in active {
            if !self.dtcs.iter().any(|old| key(old) == key(d)) {
                self.dtcs.push(*d);
                out.push(dtc_event(kinds::DTC_SET, d, lamps, mono_ms));
            }
        }
    }

    /// Time passes: timers that need no new input (engine silence, signal flush).
    pub fn tick(&mut self, mono_ms: u64, out: &mut Vec<RuleEvent>) {
        if let Some(t) = self.last_rpm_ms {
            // A slowly polled adapter is not silent between its polls; until a
            // second reading shows the interval, assume a slow one.
            let period = if self.rpm_period_ms == 0 {
                UNKNOWN_RPM_PERIOD_MS
            } else {
                self.rpm_period_ms
            };
            let silence_ms = ((self.cfg.ignition.silence_off_s * 1000.0) as u64).max(3 * period);
            if self.engine_on && mono_ms.saturating_sub(t) >= silence_ms {
                self.engine_on = false;
                self.update_ignition(t, out);
            }
        }
        let e = self.power.tick(mono_ms);
        self.emit_power(e, out);
        if !self.pending_signals.is_empty() {
            out.push(RuleEvent {
                kind: kinds::SIGNAL,
                priority: Priority::Telemetry,
                mono_ms: self.pending_signals_ms,
                data: EventData::Json(Value::Object(std::mem::take(&mut self.pending_signals))),
            });
        }
    }

    /// The agent is stopping: close what is open so it is not lost.
    pub fn finish(&mut self, mono_ms: u64, out: &mut Vec<RuleEvent>) {
        self.tick(mono_ms, out);
        self.thinner.flush(&mut self.kept);
        for (t, p) in self.kept.drain(..) {
            out.push(RuleEvent {
                kind: kinds::POSITION,
                priority: Priority::Telemetry,
                mono_ms: t,
                data: EventData::Position(p),
            });
        }
        self.end_idle(mono_ms, out);
        if self.in_trip() {
            self.end_trip(mono_ms, out);
        } else {
            self.close_episodes(out);
        }
    }
}

fn dtc_event(kind: Kind, d: &ActiveDtc, lamps: u8, mono_ms: u64) -> RuleEvent {
    RuleEvent {
        kind,
        priority: Priority::Critical,
        mono_ms,
        data: EventData::Json(json!({
            "source": d.source,
            "spn": d.spn,
            "fmi": d.fmi,
            "oc": d.oc,
            "lamps": lamps,
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: f64 = 1.0 / 111_320.0;

    fn pos(north_m: f64, speed_mps: f64) -> Position {
        Position {
            lat_e7: ((51.9 + north_m * M) * 1e7) as i32,
            lon_e7: 44_000_000,
            alt_dm: None,
            speed_cms: Some((speed_mps * 100.0) as u32),
            heading_cdeg: None,
            hdop_d: None,
            sats: Some(8),
            fix: 2,
        }
    }

    fn kinds_of(out: &[RuleEvent]) -> Vec<&str> {
        out.iter()
            .map(|e| e.kind.as_str())
            .filter(|k| *k != "position" && *k != "signal")
            .collect()
    }

    /// Ignition on, idle `idle_s`, drive `drive_s` at 10 m/s, stop, ignition off.
    fn drive(engine: &mut Engine, idle_s: u64, drive_s: u64, out: &mut Vec<RuleEvent>) -> u64 {
        let mut t = 1_000;
        let mut north = 0.0;
        engine.ignition_wire(true, t, out);
        for _ in 0..idle_s {
            t += 1000;
            engine.signal(Signal::EngineSpeedRpm, 650.0, t, out);
            engine.fix(t, pos(north, 0.0), out);
        }
        for _ in 0..drive_s {
            t += 1000;
            north += 10.0;
            engine.signal(Signal::EngineSpeedRpm, 1400.0, t, out);
            engine.signal(Signal::OdometerKm, 1000.0 + north / 1000.0, t, out);
            engine.fix(t, pos(north, 10.0), out);
            engine.tick(t, out);
        }
        for _ in 0..10 {
            t += 1000;
            engine.signal(Signal::EngineSpeedRpm, 650.0, t, out);
            engine.fix(t, pos(north, 0.0), out);
        }
        engine.ignition_wire(false, t, out);
        t
    }

    #[test]
    fn ignition_trip_and_idle_events_come_in_order() {
        let mut e = Engine::new(RulesConfig::default());
        let mut out = Vec::new();
        drive(&mut e, 240, 600, &mut out);
        assert_eq!(
            kinds_of(&out),
            vec![
                "ignition_on",
                "idle",
                "odometer",
                "trip_start",
                "trip_end",
                "odometer",
                "ignition_off"
            ],
            "the odometer is recorded when first read and at the trip's end"
        );
        assert_eq!(
            out.iter()
                .filter(|e| e.kind == rule_kinds::ODOMETER)
                .map(|e| e.data.to_json()["reason"].clone())
                .collect::<Vec<_>>(),
            vec![json!("periodic"), json!("trip_end")]
        );
        let end = out
            .iter()
            .find(|e| e.kind == kinds::TRIP_END)
            .expect("trip end");
        let EventData::Json(s) = &end.data else {
            panic!("json")
        };
        let dist = s["distance_m"].as_f64().expect("distance");
        assert!((dist - 6_000.0).abs() < 20.0, "distance {dist}");
        assert_eq!(s["distance_source"], "odometer");
        assert!((s["max_speed_kmh"].as_f64().expect("max") - 36.0).abs() < 0.1);
        assert!(s["idle_s"].as_f64().expect("idle") <= 11.0);
        let idle = out.iter().find(|e| e.kind == kinds::IDLE).expect("idle");
        let EventData::Json(i) = &idle.data else {
            panic!("json")
        };
        assert!(i["duration_s"].as_f64().expect("duration") >= 239.0);
        assert!(out
            .iter()
            .filter(|e| e.kind == kinds::IGNITION_ON || e.kind == kinds::TRIP_END)
            .all(|e| e.priority == Priority::Critical));
    }

    #[test]
    fn short_idle_is_not_an_event() {
        let mut e = Engine::new(RulesConfig::default());
        let mut out = Vec::new();
        drive(&mut e, 30, 60, &mut out);
        assert!(!kinds_of(&out).contains(&"idle"));
    }

    #[test]
    fn trips_work_without_an_ignition_wire() {
        let mut e = Engine::new(RulesConfig::default());
        let mut out = Vec::new();
        let mut t = 0;
        for s in 0..400u64 {
            t = s * 1000;
            let moving = (50..250).contains(&s);
            e.signal(Signal::EngineSpeedRpm, 900.0, t, &mut out);
            e.fix(t, pos(s as f64, if moving { 10.0 } else { 0.0 }), &mut out);
        }
        e.tick(t + 10_000, &mut out);
        assert_eq!(
            kinds_of(&out),
            vec!["ignition_on", "trip_start", "trip_end", "ignition_off"],
            "engine speed stands in for the wire, and a long stop ends the trip"
        );
    }

    #[test]
    fn dtcs_set_once_and_clear_when_gone() {
        let mut e = Engine::new(RulesConfig::default());
        let mut out = Vec::new();
        let a = ActiveDtc {
            source: 0,
            spn: 110,
            fmi: 16,
            oc: 1,
        };
        let b = ActiveDtc {
            source: 0,
            spn: 609,
            fmi: 9,
            oc: 2,
        };
        e.dtcs(0, 0x04, &[a], 1_000, &mut out);
        e.dtcs(0, 0x04, &[a, b], 2_000, &mut out);
        e.dtcs(0, 0x04, &[a, b], 3_000, &mut out);
        e.dtcs(0x17, 0x00, &[], 3_500, &mut out);
        e.dtcs(0, 0x04, &[b], 4_000, &mut out);
        assert_eq!(kinds_of(&out), vec!["dtc_set", "dtc_set", "dtc_clear"]);
        let EventData::Json(c) = &out[2].data else {
            panic!("json")
        };
        assert_eq!(c["spn"], 110);
    }

    #[test]
    fn signals_follow_their_policies_and_batch_per_tick() {
        let mut e = Engine::new(RulesConfig::default());
        let mut out = Vec::new();
        for s in 0..120u64 {
            e.signal(
                Signal::CoolantTempC,
                80.0 + s as f64 * 0.01,
                s * 1000,
                &mut out,
            );
            e.signal(Signal::WheelSpeedKmh, 50.0, s * 1000, &mut out);
            e.tick(s * 1000, &mut out);
        }
        let signals: Vec<&RuleEvent> = out.iter().filter(|e| e.kind == kinds::SIGNAL).collect();
        assert_eq!(signals.len(), 1, "coolant within deadband, wheel speed off");
        let EventData::Json(v) = &signals[0].data else {
            panic!("json")
        };
        assert_eq!(v["coolant_temp_c"], 80.0);
        assert!(v.get("wheel_speed_kmh").is_none());
    }

    #[test]
    fn bus_activity_stands_in_for_ignition_only_without_wire_or_engine_speed() {
        let mut e = Engine::new(RulesConfig::default());
        let mut out = Vec::new();
        e.bus_activity(120.0, 1_000, &mut out);
        e.bus_activity(118.0, 2_000, &mut out);
        e.bus_activity(0.0, 9_000, &mut out);
        assert_eq!(kinds_of(&out), vec!["ignition_on", "ignition_off"]);
        // A powered ECU answering with the engine stopped: engine speed decides.
        let mut e = Engine::new(RulesConfig::default());
        out.clear();
        e.signal(Signal::EngineSpeedRpm, 0.0, 500, &mut out);
        e.bus_activity(300.0, 1_000, &mut out);
        assert!(kinds_of(&out).is_empty(), "{:?}", kinds_of(&out));
        e.signal(Signal::EngineSpeedRpm, 700.0, 2_000, &mut out);
        assert_eq!(kinds_of(&out), vec!["ignition_on"]);
    }

    #[test]
    fn slowly_polled_engine_speed_is_not_silence() {
        let mut e = Engine::new(RulesConfig::default());
        let mut out = Vec::new();
        // An OBD adapter polling every 7 s; ticks every 250 ms in between.
        for poll in 0..10u64 {
            e.signal(Signal::EngineSpeedRpm, 800.0, poll * 7_000, &mut out);
            for q in 1..28 {
                e.tick(poll * 7_000 + q * 250, &mut out);
            }
        }
        assert_eq!(kinds_of(&out), vec!["ignition_on"]);
        e.tick(63_000 + 21_000, &mut out);
        assert_eq!(kinds_of(&out), vec!["ignition_on", "ignition_off"]);
    }

    #[test]
    fn odometer_glitches_never_reach_the_trip_distance() {
        let mut e = Engine::new(RulesConfig::default());
        let mut out = Vec::new();
        e.ignition_wire(true, 0, &mut out);
        let mut north = 0.0;
        for s in 1..=300u64 {
            let t = s * 1000;
            north += 10.0;
            let odo = match s {
                100 => 0.0,
                200 => 16_777.0,
                _ => 1_000.0 + north / 1000.0,
            };
            e.signal(Signal::OdometerKm, odo, t, &mut out);
            e.fix(t, pos(north, 10.0), &mut out);
        }
        e.ignition_wire(false, 301_000, &mut out);
        let end = out
            .iter()
            .find(|e| e.kind == kinds::TRIP_END)
            .expect("trip");
        let d = end.data.to_json()["distance_m"].as_f64().expect("distance");
        // From the first fix of the trip (1 s) to the last (300 s) at 10 m/s.
        assert!((d - 2_990.0).abs() < 5.0, "{d}");
        assert_eq!(e.meter_glitches(), 2);
    }
}
