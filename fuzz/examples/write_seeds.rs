//! Writes the seed corpora: for `batch_decode` a few valid frames that between them
//! reach every part of the format, so the fuzzer starts past the checksum; for
//! `batch_body` the same batches as bare, uncompressed bodies.
//!
//! `cargo run --example write_seeds` (from `fuzz/`) rewrites `corpus/batch_decode/`
//! and `corpus/batch_body/`.

use fleet_protocol::batch::FRAME_HEADER_LEN;
use fleet_protocol::{
    encode_batch, BatchHeader, BootId, Event, EventData, EventTime, Hlc, Kind, Position, Priority,
    TimeAnchor, TimeSource,
};
use std::path::Path;
use uuid::Uuid;

const T0: i64 = 1_717_000_000_000;

fn event(seq: u64, boot: BootId, mono_ms: u64, kind: Kind, data: EventData) -> Event {
    let wall_ms = T0 + mono_ms as i64;
    Event {
        seq,
        kind,
        priority: if matches!(data, EventData::Position(_)) {
            Priority::Telemetry
        } else {
            Priority::Critical
        },
        time: EventTime {
            boot_id: boot,
            mono_ms,
            wall_ms,
            hlc: Hlc::new(wall_ms as u64, (seq % 3) as u16),
        },
        config_version: 3,
        data,
    }
}

fn fix(i: i32) -> Position {
    Position {
        lat_e7: 523_000_000 + i * 1_370 + (i * 7919) % 23,
        lon_e7: 134_000_000 + i * 2_110 - (i * 104_729) % 31,
        alt_dm: Some(340 + i % 5),
        speed_cms: Some(1_390 + (i % 9) as u32 * 10),
        heading_cdeg: Some(4_500 + (i % 11) as u16),
        hdop_d: Some(9),
        sats: Some(11),
        fix: 2,
    }
}

fn header(first_seq: u64, last_seq: u64, anchors: Vec<TimeAnchor>) -> BatchHeader {
    BatchHeader {
        tenant_id: Uuid::from_u128(0x5eed_0001),
        device_id: Uuid::from_u128(0x5eed_0002),
        first_seq,
        last_seq,
        anchors,
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let (frames, bodies) = (corpus.join("batch_decode"), corpus.join("batch_body"));
    std::fs::create_dir_all(&frames)?;
    std::fs::create_dir_all(&bodies)?;
    let boot_a = BootId([0xa1; 16]);
    let boot_b = BootId([0xb2; 16]);

    let mut drive = vec![event(
        1,
        boot_a,
        1_000,
        Kind::known("ignition_on"),
        EventData::None,
    )];
    for i in 0..60 {
        drive.push(event(
            2 + i as u64,
            boot_a,
            2_000 + i as u64 * 1_000,
            Kind::known("position"),
            EventData::Position(fix(i)),
        ));
    }
    drive.push(event(
        62,
        boot_a,
        62_000,
        Kind::known("signal"),
        EventData::Json(serde_json::json!({"spn": 190, "rpm": 812.5, "src": "j1939"})),
    ));
    drive.push(event(
        63,
        boot_a,
        63_000,
        Kind::new("door.rear"),
        EventData::None,
    ));

    // Two boots, holes where the device evicted, and what it learned about time.
    let anchors = vec![
        TimeAnchor {
            boot_id: boot_a,
            mono_ms: 5_000,
            true_ms: T0 + 3_600_000,
            source: TimeSource::Server,
            uncertainty_ms: 40,
        },
        TimeAnchor {
            boot_id: boot_b,
            mono_ms: 900,
            true_ms: T0 + 7_200_000,
            source: TimeSource::Gps,
            uncertainty_ms: 1,
        },
    ];
    let reboot = vec![
        event(
            100,
            boot_a,
            9_000,
            Kind::known("ignition_off"),
            EventData::None,
        ),
        event(
            104,
            boot_b,
            800,
            Kind::known("ignition_on"),
            EventData::None,
        ),
        event(
            105,
            boot_b,
            1_800,
            Kind::known("position"),
            EventData::Position(fix(3)),
        ),
        event(
            109,
            boot_b,
            2_800,
            Kind::known("eviction"),
            EventData::Json(serde_json::json!({"evicted": 5})),
        ),
    ];

    // The encoder doesn't judge content, so this frame carries an event the decoder rejects.
    let mut bad = fix(0);
    bad.lat_e7 = 2_000_000_000;
    let with_reject = vec![
        event(
            7,
            boot_a,
            100,
            Kind::known("position"),
            EventData::Position(bad),
        ),
        event(
            8,
            boot_a,
            200,
            Kind::known("position"),
            EventData::Position(fix(1)),
        ),
    ];

    let seeds: [(&str, Vec<u8>); 6] = [
        (
            "empty_range_zstd",
            encode_batch(&header(1, 4, Vec::new()), &[], 3)?,
        ),
        (
            "drive_zstd",
            encode_batch(&header(1, 63, Vec::new()), &drive, 3)?,
        ),
        (
            "drive_stored",
            encode_batch(&header(1, 63, Vec::new()), &drive[..12], 0)?,
        ),
        (
            "two_boots_holes_anchors_stored",
            encode_batch(&header(100, 110, anchors.clone()), &reboot, 0)?,
        ),
        (
            "two_boots_holes_anchors_zstd",
            encode_batch(&header(100, 110, anchors), &reboot, 3)?,
        ),
        (
            "reject_inside_stored",
            encode_batch(&header(7, 8, Vec::new()), &with_reject, 0)?,
        ),
    ];
    for (name, frame) in seeds {
        std::fs::write(frames.join(name), &frame)?;
        let payload = &frame[FRAME_HEADER_LEN..];
        let body = if frame[4] == 0 {
            payload.to_vec()
        } else {
            zstd::bulk::decompress(payload, 1 << 20)?
        };
        std::fs::write(bodies.join(name), &body)?;
        println!(
            "{name}: {} bytes framed, {} bytes of body",
            frame.len(),
            body.len()
        );
    }
    Ok(())
}
