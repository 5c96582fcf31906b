//! Bytes on the wire per 1 Hz GPS position, after compression: an hour of a
//! believable drive (`fleet_tests::drive`) encoded with the real batch codec at the
//! level the sync client uses, cut into batches the way a device that syncs every
//! N seconds would cut it. Target: 12 bytes or fewer per position.
//!
//! Baseline, measured in the same run: the same fixes as the NMEA a plain tracker
//! forwards (RMC + GGA per fix), compressed with zstd at the same level.
//!
//! `cargo bench -p fleet-tests --bench wire_bytes`

use fleet_agent::sync::SyncOptions;
use fleet_protocol::event::kinds;
use fleet_protocol::{
    encode_batch, BatchHeader, BootId, Event, EventData, EventTime, Hlc, Priority, TimeAnchor,
    TimeSource,
};
use fleet_tests::drive::{distance_m, drive, Fix};
use std::fmt::Write;
use uuid::Uuid;

const TARGET_BYTES_PER_POSITION: f64 = 12.0;
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
}
