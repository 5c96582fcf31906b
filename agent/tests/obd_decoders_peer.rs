//! Mode 01 completeness against python-OBD 0.7.3's own decoders: for every PID
//! python-OBD decodes in 0x00-0x5F (and 0xA6, odometer, from the SAE J1979 formula
//! since python-OBD has none), `tests/peers/obd_decoders.py` runs its decoder on
//! seeded random payloads, and ours must give the same value in the same unit.
//!
//! Deliberate differences, asserted rather than skipped:
//! - PID 02 (freeze-frame DTC) `0000` means "no DTC stored"; python-OBD prints it
//!   as `P0000`, we report none. Codes are compared ignoring case: python-OBD
//!   prints the hex digits in lower case (`C2d13`), we print them as J2012 does.
//! - PIDs 4F and 5F have no decoding in python-OBD (it drops the bytes); we keep
//!   them as raw hex so nothing a vehicle says is lost.
//! - A fuel system (PID 03) in no valid state is `""` in python-OBD, null here.
//! - Where python-OBD raises (PID 12 with one of the reserved bits 4-7 set: it
//!   indexes past its table), we report no value.
//!
//! Skipped, with a message, when python3 with `obd` is missing, except under
//! `CI=true`; `tests/run` installs it from `tests/requirements.txt`.

mod bounded;
mod python_peer;

use std::process::Command;
use std::time::Duration;

use bounded::run_bounded;
use fleet_agent::decode::obd::{decode_pid, pid_def, Value};
use serde_json::Value as Json;

const SEED: &str = "20260601";
const CASES_PER_PID: usize = 64;
const LIMIT: Duration = Duration::from_secs(60);

fn python_obd_cases(py: &str) -> Vec<Json> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/peers/obd_decoders.py"
    );
    run_bounded(
        Command::new(py).args([script, SEED, &CASES_PER_PID.to_string()]),
        LIMIT,
    )
    .lines()
    .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
    .collect()
}

/// python-OBD's (pint's) unit names and ours.
fn our_unit(pint: &str) -> &'static str {
    match pint {
        "percent" => "percent",
        "degree_Celsius" => "degC",
        "kilopascal" => "kPa",
        "pascal" => "Pa",
        "revolutions_per_minute" => "rpm",
        "kilometer_per_hour" => "km/h",
        "degree" => "degree",
        "gps" => "g/s",
        "volt" => "V",
        "milliampere" => "mA",
        "second" => "s",
        "minute" => "min",
        "kilometer" => "km",
        "count" => "count",
        "ratio" => "ratio",
        "lph" => "L/h",
        other => panic!("python-OBD unit {other:?} has no counterpart here"),
    }
}

fn check_case(case: &Json) {
    let pid = u8::from_str_radix(case["pid"].as_str().expect("pid"), 16).expect("hex pid");
    let data = hex::decode(case["data"].as_str().expect("data")).expect("hex data");
    let theirs = &case["value"];
    let def = pid_def(pid).unwrap_or_else(|| panic!("PID {pid:02X} is not in our table"));
    assert_eq!(def.name, case["name"], "PID {pid:02X} name");
    let mut data = data;
    if matches!(pid, 0x13 | 0x1D) {
        data[0] = data[0].reverse_bits();
    }
    let ours = decode_pid(pid, &data).unwrap_or_else(|e| panic!("PID {pid:02X} {data:02X?}: {e}"));
    let ctx = format!("PID {pid:02X} {} data {}", def.name, case["data"]);
    if let Some(err) = theirs.get("python_error") {
        assert_eq!(ours, Value::Absent, "{ctx}: python-OBD raised {err}");
        return;
    }
    match (&ours, theirs) {
        (Value::Quantity { value, unit }, Json::Object(q)) => {
            let v = q["value"].as_f64().expect("magnitude");
            assert_eq!(*unit, our_unit(q["unit"].as_str().expect("unit")), "{ctx}");
            assert!(
                (value - v).abs() <= 1e-9 * v.abs().max(1.0),
                "{ctx}: ours {value}, python-OBD {v}"
            );
        }
        (Value::Status(s), Json::Object(p)) => {
            assert_eq!(Json::from(s.mil), p["mil"], "{ctx}");
            assert_eq!(Json::from(s.dtc_count), p["dtc_count"], "{ctx}");
            assert_eq!(Json::from(s.ignition), p["ignition"], "{ctx}");
            let tests = p["tests"].as_object().expect("tests");
            for t in &s.tests {
                assert_eq!(
                    tests.get(t.name),
                    Some(&serde_json::json!([t.available, t.complete])),
                    "{ctx}: monitor {}",
                    t.name
                );
            }
            // Monitors of the other ignition type stay at python-OBD's default.
            for (name, v) in tests {
                if !s.tests.iter().any(|t| t.name == name) {
                    assert_eq!(v, &serde_json::json!([false, false]), "{ctx}: {name}");
                }
            }
        }
        (Value::Dtc(None), Json::String(p)) => {
            assert_eq!((p.as_str(), &data[..]), ("P0000", &[0u8, 0][..]), "{ctx}")
        }
        (Value::Dtc(Some(d)), Json::String(p)) => {
            assert!(d.to_string().eq_ignore_ascii_case(p), "{ctx}: {d} vs {p}")
        }
        (Value::Raw(raw), Json::Null) => {
            assert!(
                matches!(pid, 0x4F | 0x5F),
                "{ctx}: python-OBD decodes nothing"
            );
            assert_eq!(raw, &data, "{ctx}");
        }
        (Value::FuelStatus(_), Json::Array(p)) => {
            // python-OBD writes "" for a fuel system in no valid state, we null.
            let p: Vec<Json> = p
                .iter()
                .map(|s| if s == "" { Json::Null } else { s.clone() })
                .collect();
            assert_eq!(ours.to_json(), Json::Array(p), "{ctx}");
        }
        _ => assert_eq!(&ours.to_json(), theirs, "{ctx}"),
    }
}

#[test]
fn every_mode_01_pid_decodes_like_python_obd_on_random_payloads() {
    let Some(py) = python_peer::with("obd", "`obd==0.7.3`", "obd decoder peer test") else {
        return;
    };
    let cases = python_obd_cases(&py);
    let mut pids: Vec<&str> = cases.iter().filter_map(|c| c["pid"].as_str()).collect();
    pids.dedup();
    // python-OBD 0.7.3 defines all 96 PIDs 00-5F; plus A6.
    assert_eq!(pids.len(), 97, "{pids:?}");
    assert_eq!(cases.len(), 97 * CASES_PER_PID);
    for case in &cases {
        check_case(case);
    }
}
