//! OBD-II over raw CAN on a real car's capture (CANedge, ISO 15765-4 11-bit), see
//! `shared/fixtures/README.md`: VIN `TMBJP7NX5NY084923`, MIL off, no DTCs, engine
//! start near 275 s and the car moving from about 282 s.

use std::path::PathBuf;

use fleet_agent::decode::obd::{Response, Value};
use fleet_agent::decode::obd_can::{ObdCanDecoder, ObdCanItem};
use fleet_hal::CanFrame;

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures/obd/canedge-obd2-car-engine-start.log")
}

/// `(1725694999.687450) can0 7E0#0201015555555555`
fn parse_candump_line(line: &str) -> CanFrame {
    let mut parts = line.split_whitespace();
    let time = parts.next().expect("time");
    let time = time.trim_start_matches('(').trim_end_matches(')');
    let (secs, micros) = time.split_once('.').expect("fractional time");
    let at_us = secs.parse::<u64>().expect("secs") * 1_000_000 + micros.parse::<u64>().expect("us");
    let _iface = parts.next().expect("interface");
    let (id, data) = parts.next().expect("frame").split_once('#').expect("#");
    let bytes = hex::decode(data).expect("hex data");
    CanFrame::new(
        u32::from_str_radix(id, 16).expect("id"),
        id.len() > 3,
        &bytes,
        at_us,
    )
    .expect("frame")
}

fn decode_capture() -> (Vec<ObdCanItem>, ObdCanDecoder) {
    let text = std::fs::read_to_string(fixture()).expect("fixture present");
    let mut decoder = ObdCanDecoder::new();
    let mut items = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match decoder.push(&parse_candump_line(line)) {
            Ok(Some(item)) => items.push(item),
            Ok(None) => {}
            Err(e) => panic!("real capture should decode cleanly: {e}"),
        }
    }
    (items, decoder)
}

fn responses(items: &[ObdCanItem]) -> impl Iterator<Item = (u64, &Response)> {
    items.iter().filter_map(|i| match i {
        ObdCanItem::Response {
            at_us, response, ..
        } => Some((*at_us, response)),
        _ => None,
    })
}

fn pid_values(items: &[ObdCanItem], pid: u8) -> Vec<(u64, f64)> {
    responses(items)
        .filter_map(|(t, r)| match r {
            Response::Current(rs) => rs
                .iter()
                .find(|r| r.pid == pid)
                .and_then(|r| r.value.as_f64())
                .map(|v| (t, v)),
            _ => None,
        })
        .collect()
}

#[test]
fn real_capture_yields_vin_from_segmented_reply() {
    let (items, decoder) = decode_capture();
    let vins: Vec<_> = responses(&items)
        .filter_map(|(_, r)| match r {
            Response::Vin(v) => Some(v.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(vins, vec!["TMBJP7NX5NY084923".to_string()]);
    let stats = decoder.stats();
    assert_eq!(stats.isotp_errors, 0);
    assert_eq!(stats.decode_errors, 0);
    // Two flow controls from the tester: one for the VIN, one stray after a single frame.
    assert_eq!(stats.flow_control, 2);
    assert_eq!(stats.frames, 2758);
    assert_eq!(stats.requests, stats.responses);
}

#[test]
fn real_capture_reports_mil_off_and_no_stored_dtcs() {
    let (items, _) = decode_capture();
    let status = responses(&items)
        .find_map(|(_, r)| match r {
            Response::Current(rs) => rs.iter().find(|r| r.pid == 0x01).cloned(),
            _ => None,
        })
        .expect("0101 answered");
    let Value::Status(s) = status.value else {
        panic!("0101 is a status")
    };
    assert!(!s.mil);
    assert_eq!(s.dtc_count, 0);
    let dtcs: Vec<_> = responses(&items)
        .filter_map(|(_, r)| match r {
            Response::Dtcs { mode: 3, codes } => Some(codes.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(dtcs, vec![vec![]]);
    let compliance = responses(&items)
        .find_map(|(_, r)| match r {
            Response::Current(rs) => rs.iter().find(|r| r.pid == 0x1C).cloned(),
            _ => None,
        })
        .expect("011C answered");
    assert_eq!(compliance.value, Value::Text("EOBD (Europe)"));
}

#[test]
fn real_capture_shows_engine_start_then_driving() {
    let (items, _) = decode_capture();
    let start = items
        .first()
        .map(|i| match i {
            ObdCanItem::Request { at_us, .. } | ObdCanItem::Response { at_us, .. } => *at_us,
        })
        .expect("items");
    let secs = |t: u64| (t - start) as f64 / 1e6;
    let rpm = pid_values(&items, 0x0C);
    let speed = pid_values(&items, 0x0D);
    assert!(rpm.len() > 30 && speed.len() > 30);
    let first_running = rpm.iter().find(|(_, v)| *v > 0.0).expect("engine starts");
    assert!(
        (265.0..285.0).contains(&secs(first_running.0)),
        "engine start at {} s",
        secs(first_running.0)
    );
    assert!(rpm
        .iter()
        .filter(|(t, _)| *t < first_running.0)
        .all(|(_, v)| *v == 0.0));
    let first_moving = speed.iter().find(|(_, v)| *v > 0.0).expect("car moves");
    assert!(
        (275.0..290.0).contains(&secs(first_moving.0)),
        "moving at {} s",
        secs(first_moving.0)
    );
    assert_eq!(speed.last().map(|(_, v)| *v), Some(35.0));
    let coolant = pid_values(&items, 0x05);
    assert!(coolant.iter().all(|(_, v)| (-40.0..=215.0).contains(v)));
}
