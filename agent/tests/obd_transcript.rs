//! `fleet-agent decode obd`: an ELM327 transcript to JSON lines.

use fleet_agent::cli::decode::obd::decode_obd_file;
use serde_json::Value as Json;

const TRANSCRIPT: &str = "ELM327 v1.5\r\r>ATH1\rOK\r\r>ATDPN\rA6\r\r>010C0D\r7E8 06 41 0C 1A F8 0D 37\r7E9 03 41 0D 36\r\r>03\r7E8 10 0A 43 04 01 33 C1 96\r7E8 21 02 34 43 00 CC CC CC\r\r>0902\r7E8 10 14 49 02 01 54 4D 42\r7E8 21 4A 50 37 4E 58 35 4E\r7E8 22 59 30 38 34 39 32 33\r\r>0105\rNO DATA\r\r>0104\r7E8 04 41 04\r";

#[test]
fn transcript_decodes_to_one_json_line_per_item_with_errors_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.txt");
    std::fs::write(&path, TRANSCRIPT).expect("write transcript");
    let mut out = Vec::new();
    let summary = decode_obd_file(&path, &mut out).expect("decodes");
    let lines: Vec<Json> = String::from_utf8(out)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(summary.exchanges, 7);
    assert_eq!(summary.items, 5);
    assert_eq!(summary.errors, 2);
    assert_eq!(lines[0]["name"], "RPM");
    assert_eq!(lines[0]["value"], 1726.0);
    assert_eq!(lines[0]["unit"], "rpm");
    assert_eq!(lines[0]["ecu"], "7E8");
    assert_eq!(lines[2]["ecu"], "7E9");
    assert_eq!(
        lines[3]["dtcs"],
        serde_json::json!(["P0133", "U0196", "P0234", "C0300"])
    );
    assert_eq!(lines[4]["vin"], "TMBJP7NX5NY084923");
    assert_eq!(lines[5]["adapter_error"], "NO DATA: no ECU answered");
    assert!(
        lines[6]["error"].as_str().unwrap().contains("7E8"),
        "{}",
        lines[6]
    );
}

#[test]
fn missing_transcript_is_a_clear_error() {
    let err = decode_obd_file(
        std::path::Path::new("/nonexistent/obd.txt"),
        &mut Vec::new(),
    )
    .expect_err("no file");
    assert!(err.to_string().contains("/nonexistent/obd.txt"));
}
