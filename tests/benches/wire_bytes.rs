//! Bytes on the wire per 1 Hz GPS position, after compression: an hour of a
//! believable drive (`fleet_tests::drive`) encoded with the real batch codec at the
//! level the sync client uses, cut into batches the way a device that syncs every
//! N seconds would cut it. Target: 12 bytes or fewer per position.
//!
//! Baseline, measured in the same run: the same fixes as the NMEA a plain tracker
//! forwards (RMC + GGA per fix), compressed with zstd at the same level.
//!
//! Then the whole vehicle: an hour of highway and an hour of city driving by a
//! simulated truck (`fleet_hal::sim`), its J1939 frames, NMEA sentences and
//! ignition line run through the real decoders and rules with the default
//! policies, and everything the rules keep (positions, signal samples, trips,
//! idling, harsh driving, meters, faults) encoded the same way. Target: under
//! 20 KB per vehicle-hour. Baseline in the same run: the same drive's fixes as
//! RMC + GGA compressed with zstd, what a plain tracker would forward.
//!
//! `cargo bench -p fleet-tests --bench wire_bytes`

use fleet_agent::pipeline::Processor;
use fleet_agent::rules::{RuleEvent, RulesConfig};
use fleet_agent::sync::SyncOptions;
use fleet_hal::sim::script::{Manoeuvre, ScriptStart, ScriptedVehicle};
use fleet_hal::sim::{FramePeriods, RoadNetwork, SimOutput, Vehicle, VehicleSpec, ROTTERDAM};
use fleet_protocol::event::kinds;
use fleet_protocol::{
    encode_batch, BatchHeader, BootId, Event, EventData, EventTime, Hlc, Priority, TimeAnchor,
    TimeSource,
};
use fleet_tests::drive::{distance_m, drive, Fix};
use rand::SeedableRng;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;
use uuid::Uuid;

const TARGET_BYTES_PER_POSITION: f64 = 12.0;
const TARGET_BYTES_PER_VEHICLE_HOUR: f64 = 20.0 * 1024.0;
const SECONDS: u32 = 3_600;
/// Wall clock = monotonic + this (the device booted with a sane clock).
const WALL_OFFSET_MS: i64 = 1_717_000_000_000;

fn events(fixes: &[Fix], boot: BootId) -> Vec<Event> {
    let time = |mono_ms: u64| EventTime {
        boot_id: boot,
        mono_ms,
        wall_ms: WALL_OFFSET_MS + mono_ms as i64,
        hlc: Hlc::new((WALL_OFFSET_MS + mono_ms as i64) as u64, 0),
    };
    let mut out = Vec::with_capacity(fixes.len() + 2);
    let first = fixes.first().map_or(0, |f| f.mono_ms);
    out.push(Event {
        seq: 1,
        kind: kinds::IGNITION_ON,
        priority: Priority::Critical,
        time: time(first.saturating_sub(400)),
        config_version: 4,
        data: EventData::None,
    });
    for f in fixes {
        out.push(Event {
            seq: out.len() as u64 + 1,
            kind: kinds::POSITION,
            priority: Priority::Telemetry,
            time: time(f.mono_ms),
            config_version: 4,
            data: EventData::Position(f.position),
        });
    }
    let last = fixes.last().map_or(0, |f| f.mono_ms);
    out.push(Event {
        seq: out.len() as u64 + 1,
        kind: kinds::IGNITION_OFF,
        priority: Priority::Critical,
        time: time(last + 700),
        config_version: 4,
        data: EventData::None,
    });
    out
}

/// Frames for `events` cut into batches spanning `span_s` seconds each.
fn wire_bytes(events: &[Event], boot: BootId, span_s: u64, level: i32) -> (usize, usize) {
    let anchor = TimeAnchor {
        boot_id: boot,
        mono_ms: 30_000,
        true_ms: WALL_OFFSET_MS + 30_120,
        source: TimeSource::Server,
        uncertainty_ms: 35,
    };
    let (mut bytes, mut frames) = (0, 0);
    let mut start = 0;
    while start < events.len() {
        let t0 = events[start].time.mono_ms;
        let end = events[start..]
            .iter()
            .position(|e| e.time.mono_ms >= t0 + span_s * 1_000)
            .map_or(events.len(), |n| start + n);
        let chunk = &events[start..end];
        let header = BatchHeader {
            tenant_id: Uuid::from_u128(0x7e4a_0001),
            device_id: Uuid::from_u128(0xde71_ce01),
            first_seq: chunk[0].seq,
            last_seq: chunk[chunk.len() - 1].seq,
            anchors: vec![anchor],
        };
        bytes += encode_batch(&header, chunk, level).expect("encodes").len();
        frames += 1;
        start = end;
    }
    (bytes, frames)
}

fn nmea_checksum(body: &str) -> u8 {
    body.bytes().fold(0, |a, b| a ^ b)
}

fn ddmm(deg: f64, width: usize) -> String {
    let d = deg.abs().trunc();
    let m = (deg.abs() - d) * 60.0;
    format!("{:0width$}{:07.4}", d as u32, m)
}

/// RMC + GGA per fix, as a receiver prints them and a plain tracker forwards them.
fn nmea(fixes: &[Fix]) -> String {
    let mut out = String::new();
    for f in fixes {
        let p = &f.position;
        let secs = (WALL_OFFSET_MS as u64 + f.mono_ms) / 1_000 % 86_400;
        let hms = format!("{:02}{:02}{:02}.00", secs / 3600, secs / 60 % 60, secs % 60);
        let (lat, lon) = (ddmm(p.lat(), 2), ddmm(p.lon(), 3));
        let knots = f64::from(p.speed_cms.unwrap_or(0)) / 100.0 * 1.943_844;
        let course = f64::from(p.heading_cdeg.unwrap_or(0)) / 100.0;
        let rmc = format!("GPRMC,{hms},A,{lat},N,{lon},E,{knots:.2},{course:.2},290524,,,A");
        let hdop = f64::from(p.hdop_d.unwrap_or(0)) / 10.0;
        let alt = f64::from(p.alt_dm.unwrap_or(0)) / 10.0;
        let sats = p.sats.unwrap_or(0);
        let gga = format!("GPGGA,{hms},{lat},N,{lon},E,1,{sats:02},{hdop:.1},{alt:.1},M,44.6,M,,");
        for s in [rmc, gga] {
            let _ = write!(out, "${s}*{:02X}\r\n", nmea_checksum(&s));
        }
    }
    out
}

/// What a vehicle's hardware produced, in time order per source.
trait Hardware {
    fn advance_to(&mut self, t_ms: u64, wall_offset_ms: i64, out: &mut Vec<SimOutput>);
}

impl Hardware for Vehicle {
    fn advance_to(&mut self, t_ms: u64, wall_offset_ms: i64, out: &mut Vec<SimOutput>) {
        Vehicle::advance_to(self, t_ms, wall_offset_ms, out);
    }
}

impl Hardware for ScriptedVehicle {
    fn advance_to(&mut self, t_ms: u64, wall_offset_ms: i64, out: &mut Vec<SimOutput>) {
        ScriptedVehicle::advance_to(self, t_ms, wall_offset_ms, out);
    }
}

/// An hour on a motorway: start, join at 85 km/h, long gentle curves, slowing
/// for traffic now and then, and a short stop at the end.
fn highway_script() -> Vec<Manoeuvre> {
    let kmh = |v: f64| v / 3.6;
    let mut s = vec![
        Manoeuvre::Start {
            secs: 1.2,
            battery_v: 21.0,
        },
        Manoeuvre::Hold { secs: 60.0 },
        Manoeuvre::Speed {
            to_mps: kmh(85.0),
            rate_mps2: 0.6,
        },
    ];
    for i in 0..6 {
        let bend = if i % 2 == 0 { 18.0 } else { -25.0 };
        s.extend([
            Manoeuvre::Hold { secs: 240.0 },
            Manoeuvre::Turn {
                deg: bend,
                deg_per_s: 0.4,
            },
            Manoeuvre::Hold { secs: 120.0 },
            Manoeuvre::Speed {
                to_mps: kmh(60.0),
                rate_mps2: 0.5,
            },
            Manoeuvre::Hold { secs: 45.0 },
            Manoeuvre::Speed {
                to_mps: kmh(85.0),
                rate_mps2: 0.4,
            },
            Manoeuvre::Turn {
                deg: -bend / 2.0,
                deg_per_s: 0.3,
            },
        ]);
    }
    s.extend([
        Manoeuvre::Speed {
            to_mps: 0.0,
            rate_mps2: 0.8,
        },
        Manoeuvre::Hold { secs: 60.0 },
        Manoeuvre::Park {
            secs: 3_600.0,
            drain_l: 0.0,
            battery_v: 24.6,
        },
    ]);
    s
}

struct VehicleHour {
    name: &'static str,
    events: Vec<RuleEvent>,
    /// The fixes as the receiver printed them (RMC and GGA lines).
    nmea: String,
    km: f64,
    frames: u64,
}

fn run_vehicle(name: &'static str, hw: &mut dyn Hardware, seconds: u64) -> VehicleHour {
    let wall_offset = WALL_OFFSET_MS;
    let mut p = Processor::new(RulesConfig::default());
    let mut events = Vec::new();
    let mut outputs = Vec::new();
    let mut nmea = String::new();
    let mut frames = 0;
    let mut t = 0;
    let mut last_fix: Option<(f64, f64)> = None;
    let mut km = 0.0;
    while t < seconds * 1_000 {
        t += 250;
        outputs.clear();
        hw.advance_to(t, wall_offset, &mut outputs);
        for o in outputs.drain(..) {
            match o {
                SimOutput::Can(f) => {
                    frames += 1;
                    p.on_can(&f, f.timestamp_us / 1000, &mut events);
                }
                SimOutput::Nmea(line, us) => {
                    nmea.push_str(&line);
                    nmea.push_str("\r\n");
                    p.on_nmea(&line, us / 1000, &mut events);
                }
                SimOutput::Ignition(on, us) => p.on_ignition(on, us / 1000, &mut events),
            }
        }
        p.on_tick(t, &mut events);
    }
    p.finish(t, &mut events);
    for e in &events {
        if let EventData::Position(pos) = &e.data {
            if let Some((lat, lon)) = last_fix {
                let prev = fleet_protocol::Position {
                    lat_e7: (lat * 1e7) as i32,
                    lon_e7: (lon * 1e7) as i32,
                    ..*pos
                };
                km += distance_m(&prev, pos) / 1000.0;
            }
            last_fix = Some((pos.lat(), pos.lon()));
        }
    }
    VehicleHour {
        name,
        events,
        nmea,
        km,
        frames,
    }
}

fn to_events(rule_events: &[RuleEvent], boot: BootId) -> Vec<Event> {
    let mut evs: Vec<&RuleEvent> = rule_events.iter().collect();
    // The store numbers events as they are recorded; order them by time as a batch would.
    evs.sort_by_key(|e| e.mono_ms);
    evs.iter()
        .enumerate()
        .map(|(i, e)| Event {
            seq: i as u64 + 1,
            kind: e.kind.clone(),
            priority: e.priority,
            time: EventTime {
                boot_id: boot,
                mono_ms: e.mono_ms,
                wall_ms: WALL_OFFSET_MS + e.mono_ms as i64,
                hlc: Hlc::new((WALL_OFFSET_MS + e.mono_ms as i64) as u64, 0),
            },
            config_version: 4,
            data: e.data.clone(),
        })
        .collect()
}

fn vehicle_hours(level: i32) {
    const HOUR_S: u64 = 3_600;
    let boot = BootId([0x43; 16]);
    let start = ScriptStart {
        lat: 51.95,
        lon: 4.30,
        heading_deg: 60.0,
        odometer_km: 312_000.0,
        engine_hours: 11_000.0,
        fuel_l: 300.0,
        tank_l: 400.0,
        gps_noise_m: 2.0,
    };
    let mut highway = ScriptedVehicle::new(start, highway_script(), 11, 0);
    let net = Arc::new(RoadNetwork::generate(ROTTERDAM, 1));
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let spec = VehicleSpec::truck(&mut rng, FramePeriods::STANDARD);
    let mut city = Vehicle::new(net, spec, 5, 0);
    let hours = [
        run_vehicle("highway", &mut highway, HOUR_S),
        run_vehicle("city", &mut city, HOUR_S),
    ];
    println!(
        "wire_bytes vehicle-hour: default rules, zstd level {level}, RULES_VERSION {}",
        fleet_agent::rules::RULES_VERSION
    );
    let mut worst = 0.0f64;
    for h in &hours {
        let evs = to_events(&h.events, boot);
        let mut by_kind: BTreeMap<&str, usize> = BTreeMap::new();
        for e in &evs {
            *by_kind.entry(e.kind.as_str()).or_default() += 1;
        }
        let nmea_z = zstd::bulk::compress(h.nmea.as_bytes(), level)
            .expect("zstd")
            .len();
        println!(
            "  {}: {:.1} km, {} CAN frames, {} NMEA bytes in; {} events out: {:?}",
            h.name,
            h.km,
            h.frames,
            h.nmea.len(),
            evs.len(),
            by_kind
        );
        println!(
            "  {:>12} {:>7} {:>12} {:>18}",
            "batch span", "frames", "bytes/hour", "vs NMEA+zstd"
        );
        for span in [60u64, 300, 900, 3_600] {
            let (bytes, frames) = wire_bytes(&evs, boot, span, level);
            println!(
                "  {:>10} s {frames:>7} {bytes:>12} {:>17.1}x",
                span,
                nmea_z as f64 / bytes as f64
            );
            if span == 300 {
                worst = worst.max(bytes as f64);
            }
        }
        println!(
            "  baseline: NMEA RMC+GGA {} bytes raw, {nmea_z} zstd",
            h.nmea.len()
        );
    }
    println!(
        "wire_bytes vehicle-hour: worst profile {:.1} KB/h in 5-minute batches; target < {:.0} KB/h: {} (ratio to target {:.2})",
        worst / 1024.0,
        TARGET_BYTES_PER_VEHICLE_HOUR / 1024.0,
        if worst < TARGET_BYTES_PER_VEHICLE_HOUR { "MET" } else { "MISSED" },
        worst / TARGET_BYTES_PER_VEHICLE_HOUR
    );
}

fn main() {
    let level = SyncOptions::default().zstd_level;
    let fixes = drive(20_240_529, SECONDS);
    let km: f64 = fixes
        .windows(2)
        .map(|w| distance_m(&w[0].position, &w[1].position))
        .sum::<f64>()
        / 1_000.0;
    let stopped = fixes.iter().filter(|f| f.true_speed_mps < 0.5).count();
    let boot = BootId([0x42; 16]);
    let evs = events(&fixes, boot);
    let positions = fixes.len() as f64;

    let nmea = nmea(&fixes);
    let nmea_z = zstd::bulk::compress(nmea.as_bytes(), level)
        .expect("zstd")
        .len();
    let baseline = nmea_z as f64 / positions;

    println!("wire_bytes: {SECONDS} s drive, {km:.1} km, {stopped} s stationary, {} events, zstd level {level}", evs.len());
    println!(
        "  baseline: NMEA RMC+GGA {} bytes raw, {nmea_z} zstd = {baseline:.2} bytes/position",
        nmea.len()
    );
    println!(
        "  {:>12} {:>7} {:>10} {:>16} {:>12}",
        "batch span", "frames", "bytes", "bytes/position", "vs baseline"
    );
    let mut headline = None;
    for span in [10u64, 60, 300, 900, 3_600] {
        let (bytes, frames) = wire_bytes(&evs, boot, span, level);
        let per = bytes as f64 / positions;
        println!(
            "  {:>10} s {frames:>7} {bytes:>10} {per:>16.2} {:>11.1}x",
            span,
            baseline / per
        );
        if span == 3_600 {
            headline = Some(per);
        }
    }
    let (stored, _) = wire_bytes(&evs, boot, 3_600, 0);
    println!(
        "  uncompressed codec, one batch: {:.2} bytes/position",
        stored as f64 / positions
    );
    let per = headline.expect("the hour was measured");
    println!(
        "wire_bytes: {per:.2} bytes/position in a one-hour batch; target <= {TARGET_BYTES_PER_POSITION}: {} (ratio to target {:.2}, {:.1}x smaller than NMEA+zstd)",
        if per <= TARGET_BYTES_PER_POSITION { "MET" } else { "MISSED" },
        per / TARGET_BYTES_PER_POSITION,
        baseline / per
    );
    vehicle_hours(level);
}
