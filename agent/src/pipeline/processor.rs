//! The pure middle of the pipeline: decoders feeding the rules engine.

use crate::decode::j1939::{Decoded, J1939Decoder, SpnReading, SpnValue};
use crate::decode::nmea::FixAssembler;
use crate::decode::obd::{Dtc, Reading};
use crate::rules::{ActiveDtc, Engine, RuleEvent, RulesConfig, Signal};
use fleet_hal::{CanFrame, GnssFix};
use fleet_protocol::{event::kinds, EventData, Position, Priority};
use serde_json::json;

/// What the decoders saw and skipped, for health reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ProcessorStats {
    pub can_frames: u64,
    pub nmea_lines: u64,
    pub nmea_bad: u64,
    pub fixes: u64,
    pub tp_completed: u64,
    pub tp_dropped: u64,
    /// Fixes from gpsd (already decoded there).
    pub gpsd_fixes: u64,
    /// OBD-II PID readings taken from an adapter.
    pub obd_readings: u64,
    /// CAN frames in the last whole second; 0 once the bus falls silent.
    pub bus_frames_per_s: u32,
    /// The ignition as the rules see it: the wire, or inferred from the engine.
    pub ignition_on: bool,
}

/// Bus activity is measured over windows this long.
const BUS_WINDOW_MS: u64 = 1_000;

/// A GPS fix that carried a date and time: at `mono_ms`, UTC was `utc_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GpsTime {
    pub mono_ms: u64,
    pub utc_ms: i64,
}

pub struct Processor {
    engine: Engine,
    j1939: J1939Decoder,
    nmea: FixAssembler,
    /// Once the high-resolution odometer (SPN 917) reports, the coarse one (245)
    /// is ignored so the two never alternate.
    hires_odometer: bool,
    can_frames: u64,
    fixes: u64,
    gpsd_fixes: u64,
    obd_readings: u64,
    /// Frames counted in the current bus window and when it began; `None` until
    /// the first frame, so an agent without CAN never reports a silent bus.
    bus_window: Option<(u64, u32)>,
    bus_fps: u32,
    gps_time: Option<GpsTime>,
    /// Active OBD-II codes per ECU and mode, to report appearances and clears.
    obd_dtcs: Vec<(u32, u8, Dtc)>,
    /// A user's DBC file (`[sources.can] dbc`): its signals with an `SPN`
    /// attribute feed the rules, for frames the built-in J1939 decoder doesn't read.
    dbc: Option<Box<crate::decode::dbc::Database>>,
    dbc_stats: crate::decode::dbc::DecodeStats,
}

fn signal_for(spn: u32) -> Option<(Signal, f64)> {
    Some(match spn {
        190 => (Signal::EngineSpeedRpm, 1.0),
        84 => (Signal::WheelSpeedKmh, 1.0),
        110 => (Signal::CoolantTempC, 1.0),
        96 => (Signal::FuelLevelPct, 1.0),
        247 => (Signal::EngineHoursH, 1.0),
        245 => (Signal::OdometerKm, 1.0),
        917 => (Signal::OdometerKm, 0.001),
        183 => (Signal::FuelRateLph, 1.0),
        250 => (Signal::FuelUsedL, 1.0),
        168 => (Signal::BatteryV, 1.0),
        91 => (Signal::AccelPedalPct, 1.0),
        92 => (Signal::EngineLoadPct, 1.0),
        _ => return None,
    })
}

/// A fix in the event schema's integer units.
pub fn position_of(f: &GnssFix) -> Position {
    Position {
        lat_e7: (f.lat * 1e7).round() as i32,
        lon_e7: (f.lon * 1e7).round() as i32,
        alt_dm: f.alt_m.map(|a| (a * 10.0).round() as i32),
        speed_cms: f.speed_mps.map(|s| (s.max(0.0) * 100.0).round() as u32),
        heading_cdeg: f
            .course_deg
            .map(|c| ((c.rem_euclid(360.0) * 100.0).round() as u16).min(35_999)),
        hdop_d: f
            .hdop
            .map(|h| (h * 10.0).round().clamp(0.0, 65_535.0) as u16),
        sats: f.sats,
        fix: f.quality,
    }
}

impl Processor {
    pub fn new(rules: RulesConfig) -> Self {
        Self {
            engine: Engine::new(rules),
            j1939: J1939Decoder::new(),
            nmea: FixAssembler::new(),
            hires_odometer: false,
            can_frames: 0,
            fixes: 0,
            gpsd_fixes: 0,
            obd_readings: 0,
            bus_window: None,
            bus_fps: 0,
            gps_time: None,
            obd_dtcs: Vec::new(),
            dbc: None,
            dbc_stats: Default::default(),
        }
    }

    /// Decode CAN frames with this DBC file too (see the `dbc` field).
    pub fn set_dbc(&mut self, db: crate::decode::dbc::Database) {
        self.dbc = Some(Box::new(db));
    }

    /// What the DBC decoder met: decoded frames, unknown ids, truncated signals.
    pub fn dbc_stats(&self) -> crate::decode::dbc::DecodeStats {
        self.dbc_stats
    }

    pub fn stats(&self) -> ProcessorStats {
        let tp = self.j1939.transport.stats;
        ProcessorStats {
            can_frames: self.can_frames,
            nmea_lines: self.nmea.sentences + self.nmea.bad,
            nmea_bad: self.nmea.bad,
            fixes: self.fixes,
            tp_completed: tp.completed,
            tp_dropped: tp.timed_out + tp.aborted + tp.errors,
            gpsd_fixes: self.gpsd_fixes,
            obd_readings: self.obd_readings,
            bus_frames_per_s: self.bus_fps,
            ignition_on: self.engine.ignition(),
        }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The geofences the rules watch, replacing those named in the config.
    pub fn set_geofences(&mut self, set: crate::rules::GeofenceSet) {
        self.engine.set_geofences(set);
    }

    /// A CAN frame received at `mono_ms`.
    pub fn on_can(&mut self, frame: &CanFrame, mono_ms: u64, out: &mut Vec<RuleEvent>) {
        self.can_frames += 1;
        match &mut self.bus_window {
            Some((_, n)) => *n += 1,
            None => self.bus_window = Some((mono_ms, 1)),
        }
        let Self {
            engine,
            j1939,
            hires_odometer,
            ..
        } = self;
        j1939.decode(frame, |d| match d {
            Decoded::Spn {
                reading:
                    SpnReading {
                        spn,
                        value: SpnValue::Value(v),
                    },
                ..
            } => {
                if spn == 917 {
                    *hires_odometer = true;
                } else if spn == 245 && *hires_odometer {
                    return;
                }
                if let Some((signal, scale)) = signal_for(spn) {
                    engine.signal(signal, v * scale, mono_ms, out);
                }
            }
            Decoded::Dm1 { source, dm1 } => {
                let active: Vec<ActiveDtc> = dm1
                    .codes
                    .iter()
                    .map(|c| ActiveDtc {
                        source,
                        spn: c.spn,
                        fmi: c.fmi,
                        oc: c.oc,
                    })
                    .collect();
                engine.dtcs(source, dm1.lamps, &active, mono_ms, out);
            }
            _ => {}
        });
        if let Some(db) = &self.dbc {
            if !crate::decode::j1939::reads_frame(frame) {
                let engine = &mut self.engine;
                db.decode(frame, &mut self.dbc_stats, |v| {
                    if let Some((signal, scale)) = v.signal.spn.and_then(signal_for) {
                        engine.signal(signal, v.value * scale, mono_ms, out);
                    }
                });
            }
        }
    }

    /// An NMEA line received at `mono_ms`.
    pub fn on_nmea(&mut self, line: &str, mono_ms: u64, out: &mut Vec<RuleEvent>) {
        if let Some(fix) = self.nmea.push_line(line) {
            self.fixes += 1;
            if let Some(utc_ms) = fix.utc_ms {
                self.gps_time = Some(GpsTime { mono_ms, utc_ms });
            }
            self.engine.fix(mono_ms, position_of(&fix.gnss()), out);
        }
    }

    /// A fix decoded elsewhere (gpsd) received at `mono_ms`.
    pub fn on_fix(&mut self, fix: &GnssFix, mono_ms: u64, out: &mut Vec<RuleEvent>) {
        self.fixes += 1;
        self.gpsd_fixes += 1;
        if let Some(utc_ms) = fix.utc_ms {
            self.gps_time = Some(GpsTime { mono_ms, utc_ms });
        }
        self.engine.fix(mono_ms, position_of(fix), out);
    }

    /// The latest fix with a date and time, taken: the pipeline decides whether
    /// it is worth a time anchor.
    pub fn take_gps_time(&mut self) -> Option<GpsTime> {
        self.gps_time.take()
    }

    /// Mode 01 readings from an OBD-II adapter, received at `mono_ms`.
    pub fn on_obd_readings(
        &mut self,
        readings: &[Reading],
        mono_ms: u64,
        out: &mut Vec<RuleEvent>,
    ) {
        for r in readings {
            self.obd_readings += 1;
            if let (Some(signal), Some(v)) = (Signal::for_obd_pid(r.pid), r.value.as_f64()) {
                self.engine.signal(signal, v, mono_ms, out);
            }
        }
    }

    /// The complete list of `mode` (0x03 stored, 0x07 pending) codes `ecu` reports
    /// now: codes new since the last read are set, missing ones cleared.
    pub fn on_obd_dtcs(
        &mut self,
        ecu: u32,
        mode: u8,
        codes: &[Dtc],
        mono_ms: u64,
        out: &mut Vec<RuleEvent>,
    ) {
        let event = |kind, d: Dtc| RuleEvent {
            kind,
            priority: Priority::Critical,
            mono_ms,
            data: EventData::Json(json!({
                "code": d.to_string(),
                "ecu": format!("{ecu:X}"),
                "pending": mode == 0x07,
            })),
        };
        let this_ecu = |e: u32| ecu == super::ALL_ECUS || e == ecu;
        self.obd_dtcs.retain(|&(e, m, d)| {
            let keep = !this_ecu(e) || m != mode || codes.contains(&d);
            if !keep {
                out.push(event(kinds::DTC_CLEAR, d));
            }
            keep
        });
        for &d in codes {
            if !self.obd_dtcs.contains(&(ecu, mode, d)) {
                self.obd_dtcs.push((ecu, mode, d));
                out.push(event(kinds::DTC_SET, d));
            }
        }
    }

    /// The ignition wire changed at `mono_ms`.
    pub fn on_ignition(&mut self, on: bool, mono_ms: u64, out: &mut Vec<RuleEvent>) {
        self.engine.ignition_wire(on, mono_ms, out);
    }

    pub fn on_tick(&mut self, mono_ms: u64, out: &mut Vec<RuleEvent>) {
        self.j1939.transport.expire(mono_ms * 1000);
        if let Some((start, n)) = self.bus_window {
            let elapsed = mono_ms.saturating_sub(start);
            if elapsed >= BUS_WINDOW_MS {
                let fps = f64::from(n) * 1000.0 / elapsed as f64;
                self.bus_fps = fps.round() as u32;
                self.bus_window = Some((mono_ms, 0));
                self.engine.bus_activity(fps, mono_ms, out);
            }
        }
        self.engine.tick(mono_ms, out);
    }

    /// The pipeline is stopping: emit what is still open.
    pub fn finish(&mut self, mono_ms: u64, out: &mut Vec<RuleEvent>) {
        if let Some(fix) = self.nmea.flush() {
            self.engine.fix(mono_ms, position_of(&fix.gnss()), out);
        }
        self.engine.finish(mono_ms, out);
    }
}
