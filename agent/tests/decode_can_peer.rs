//! `fleet-agent decode candump --dbc` and `decode j1939` against cantools
//! (tests/peers/cantools_peer.py): the same logs with the same DBC files give the
//! same signal values; frames cantools encodes from random valid values decode to
//! those values; J1939 groups and 14-code DM1s sent as BAM and as RTS/CTS decode
//! to what encoded them; and the real truck capture gives the values its README
//! lists.
//!
//! The cantools tests skip, with a message, when python3 with cantools is
//! missing, except under `CI=true`, where they fail. `tests/run` installs
//! cantools from `tests/requirements.txt` and sets `FLEET_TEST_PYTHON`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

mod python_peer;

const STEP_LIMIT: Duration = Duration::from_secs(60);

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures")
        .join(rel)
}

fn peer_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/peers/cantools_peer.py")
}

fn fleet_dbc() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/peers/j1939-fleet.dbc")
}

/// python3 with cantools, or `None` (a skip) outside CI.
fn cantools(test: &str) -> Option<String> {
    python_peer::with("cantools", "cantools", test)
}

/// Runs `cmd` to completion within [`STEP_LIMIT`], killing it otherwise.
fn run_bounded(cmd: &mut Command) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // Drain both pipes while waiting so a chatty child never blocks on a full pipe.
    let drain = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("stderr")));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > STEP_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} ran longer than {STEP_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

fn lines(out: &Output, what: &str) -> Vec<Json> {
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone())
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{what}: {e}: {l}")))
        .collect()
}

fn peer(py: &str, args: &[&dyn AsRef<std::ffi::OsStr>]) -> Vec<Json> {
    let mut cmd = Command::new(py);
    cmd.arg(peer_script());
    for a in args {
        cmd.arg(a);
    }
    lines(&run_bounded(&mut cmd), "cantools")
}

fn ours(args: &[&dyn AsRef<std::ffi::OsStr>]) -> (Vec<Json>, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fleet-agent"));
    cmd.arg("decode");
    for a in args {
        cmd.arg(a);
    }
    let out = run_bounded(&mut cmd);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (lines(&out, "fleet-agent decode"), stderr)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1.0)
}

/// Our JSON line and cantools' agree on the message and every signal: the value
/// within float tolerance, and the value-table name where cantools gives one.
fn assert_same_message(ours: &Json, theirs: &Json, ctx: &str) {
    assert_eq!(ours["id"], theirs["id"], "{ctx}");
    assert_eq!(ours["message"], theirs["message"], "{ctx}");
    let (o, t) = (
        ours["signals"].as_object().expect("signals"),
        theirs["signals"].as_object().expect("signals"),
    );
    let mut on: Vec<_> = o.keys().collect();
    let mut tn: Vec<_> = t.keys().collect();
    on.sort();
    tn.sort();
    assert_eq!(on, tn, "{ctx}: signal sets differ");
    for (name, tv) in t {
        let ov = &o[name];
        let (a, b) = (
            ov["value"].as_f64().expect("our value"),
            tv["value"].as_f64().expect("their value"),
        );
        assert!(close(a, b), "{ctx} {name}: ours {a}, cantools {b}");
        if let Some(c) = tv.get("choice") {
            assert_eq!(ov.get("choice"), Some(c), "{ctx} {name}");
        }
    }
}

#[test]
fn truck_capture_decodes_like_cantools_with_the_css_j1939_dbc() {
    let Some(py) = cantools("truck_capture_decodes_like_cantools") else {
        return;
    };
    let log = fixture("j1939/canedge-j1939-truck-idle-10s.log");
    let dbc = fixture("j1939/CSS-Electronics-SAE-J1939-DEMO.dbc");
    let theirs = peer(&py, &[&"decode", &dbc, &log]);
    let (mine, stderr) = ours(&[&"candump", &log, &"--dbc", &dbc]);
    assert!(
        theirs.len() > 900,
        "EEC1 at 100 Hz and CCVS1: {}",
        theirs.len()
    );
    assert_eq!(mine.len(), theirs.len(), "{stderr}");
    for (i, (o, t)) in mine.iter().zip(&theirs).enumerate() {
        assert_same_message(o, t, &format!("frame {i}"));
    }
    // Matched by PGN: the capture's SA 0x00 and priority 3 differ from the DBC's.
    assert_eq!(mine[0]["source"], 0);
    assert!(mine[0]["time"]
        .as_str()
        .is_some_and(|t| t.starts_with("2021-10-25T19:00:5")));
    assert!(stderr.contains("0 bad lines"), "{stderr}");
}

#[test]
fn fixture_dbcs_decode_frames_cantools_encoded_from_random_values() {
    let Some(py) = cantools("fixture_dbcs_decode_frames_cantools_encoded") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    for (i, dbc) in [
        "can/cantools-motohawk.dbc",
        "can/cantools-multiplex.dbc",
        "can/cantools-issue_184_extended_mux_cascaded.dbc",
        "can/cantools-signed.dbc",
        "can/cantools-choices.dbc",
        "can/opendbc-toyota_prius_2010_pt.dbc",
        "can/opendbc-hyundai_santafe_2007.dbc",
        "j1939/CSS-Electronics-SAE-J1939-DEMO.dbc",
        "j1939/cantools-j1939.dbc",
    ]
    .into_iter()
    .enumerate()
    {
        let dbc = fixture(dbc);
        let log = dir.path().join(format!("{i}.log"));
        let encoded = peer(&py, &[&"generate", &dbc, &log, &"42", &"25"]);
        let decoded = peer(&py, &[&"decode", &dbc, &log]);
        let (mine, stderr) = ours(&[&"candump", &log, &"--dbc", &dbc]);
        let ctx = dbc.display().to_string();
        assert!(!encoded.is_empty(), "{ctx}");
        assert_eq!(mine.len(), encoded.len(), "{ctx}: {stderr}");
        for (n, ((o, e), t)) in mine.iter().zip(&encoded).zip(&decoded).enumerate() {
            // The values that encoded the frame (numbers, choices as raw values)…
            let as_values: serde_json::Map<String, Json> = e["signals"]
                .as_object()
                .expect("signals")
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::json!({ "value": v })))
                .collect();
            let expected =
                serde_json::json!({"id": e["id"], "message": e["message"], "signals": as_values});
            assert_same_message(o, &expected, &format!("{ctx} frame {n}"));
            // …and cantools' own decode, value-table names included.
            assert_same_message(o, t, &format!("{ctx} frame {n} (cantools decode)"));
        }
        // The same frames in candump's default text format decode the same.
        let text = std::fs::read_to_string(&log).expect("log");
        let default_format: String = text
            .lines()
            .map(|l| {
                let (_, rest) = l.split_once(") ").expect("timestamp");
                let (iface, frame) = rest.split_once(' ').expect("iface");
                let (id, data) = frame.split_once('#').expect("frame");
                let bytes: Vec<String> = data
                    .as_bytes()
                    .chunks(2)
                    .map(|c| String::from_utf8_lossy(c).into_owned())
                    .collect();
                format!(
                    "  {iface}  {id:>8}   [{}]  {}\n",
                    bytes.len(),
                    bytes.join(" ")
                )
            })
            .collect();
        let text_log = dir.path().join(format!("{i}.txt"));
        std::fs::write(&text_log, default_format).expect("write");
        let (again, _) = ours(&[&"candump", &text_log, &"--dbc", &dbc]);
        assert_eq!(again.len(), mine.len(), "{ctx} default format");
        for (a, m) in again.iter().zip(&mine) {
            assert_eq!(a["signals"], m["signals"], "{ctx} default format");
            assert!(a.get("time").is_none(), "no timestamps in that format");
        }
    }
}

#[test]
fn j1939_groups_and_14_code_dm1s_over_bam_and_rts_cts_decode_to_what_cantools_encoded() {
    let Some(py) = cantools("j1939_groups_and_dm1s_decode_to_what_cantools_encoded") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("j1939.log");
    let expected = peer(&py, &[&"j1939", &fleet_dbc(), &log, &"7"]);
    let (mine, stderr) = ours(&[&"j1939", &log]);
    assert!(
        stderr.contains("transport 2 completed, 0 dropped"),
        "{stderr}"
    );
    let groups: Vec<&Json> = mine.iter().filter(|l| l.get("spns").is_some()).collect();
    let dm1s: Vec<&Json> = mine.iter().filter(|l| l.get("dm1").is_some()).collect();
    let want_groups: Vec<&Json> = expected
        .iter()
        .filter(|e| e.get("spns").is_some())
        .collect();
    let want_dm1s: Vec<&Json> = expected.iter().filter(|e| e.get("dm1").is_some()).collect();
    assert_eq!(groups.len(), want_groups.len(), "{stderr}");
    let mut spns_seen = std::collections::BTreeSet::new();
    for (g, w) in groups.iter().zip(&want_groups) {
        assert_eq!((&g["pgn"], &g["source"]), (&w["pgn"], &w["source"]));
        for (spn, v) in w["spns"].as_object().expect("spns") {
            let got = g["spns"][spn]["value"]
                .as_f64()
                .unwrap_or_else(|| panic!("SPN {spn} of PGN {}: {}", w["pgn"], g["spns"][spn]));
            let want = v.as_f64().expect("number");
            assert!(
                (got - want).abs() < 1e-6 * want.abs().max(1.0),
                "SPN {spn}: ours {got}, encoded {want}"
            );
            spns_seen.insert(spn.parse::<u32>().expect("spn"));
        }
    }
    assert_eq!(
        spns_seen.into_iter().collect::<Vec<_>>(),
        vec![84, 91, 92, 96, 110, 168, 183, 190, 245, 247, 250, 917]
    );
    assert_eq!(dm1s.len(), 2, "one over BAM, one over RTS/CTS");
    for (d, w) in dm1s.iter().zip(&want_dm1s) {
        assert_eq!(d["source"], w["source"]);
        assert_eq!(d["dm1"], w["dm1"]);
        assert_eq!(d["dm1"].as_array().map(Vec::len), Some(14));
        assert_eq!(d["lamps"]["malfunction"], "on");
        assert_eq!(d["lamps"]["amber_warning"], "on");
        assert_eq!(d["lamps"]["red_stop"], "off");
        assert_eq!(d["lamps"]["amber_warning_flash"], "fast");
    }
}

#[test]
fn truck_capture_gives_the_readme_values_through_decode_j1939() {
    let (out, stderr) = ours(&[&"j1939", &fixture("j1939/canedge-j1939-truck-idle-10s.log")]);
    let rpm: Vec<f64> = out
        .iter()
        .filter_map(|l| l["spns"]["190"]["value"].as_f64())
        .collect();
    assert!(rpm.len() > 900, "EEC1 at 100 Hz: {}", rpm.len());
    let lo = rpm.iter().copied().fold(f64::MAX, f64::min);
    let hi = rpm.iter().copied().fold(f64::MIN, f64::max);
    assert_eq!((lo, hi), (646.75, 653.75));
    assert!(out
        .iter()
        .filter_map(|l| l["spns"]["84"]["value"].as_f64())
        .all(|v| v == 0.0));
    let dm1s: Vec<&Json> = out.iter().filter(|l| l.get("dm1").is_some()).collect();
    assert!(dm1s.len() >= 9, "about once a second: {}", dm1s.len());
    assert_eq!(
        dm1s[0]["dm1"],
        serde_json::json!([
            {"spn": 980, "fmi": 9, "oc": 126},
            {"spn": 3216, "fmi": 20, "oc": 2},
            {"spn": 609, "fmi": 9, "oc": 1},
            {"spn": 609, "fmi": 12, "oc": 3}
        ])
    );
    // Lamp byte 0x43: malfunction lamp on, protect lamp "not available".
    assert_eq!(dm1s[0]["lamps"]["malfunction"], "on");
    assert_eq!(dm1s[0]["lamps"]["protect"], "not_available");
    let big: Vec<&Json> = out.iter().filter(|l| l["pgn"] == 65251).collect();
    assert_eq!(big.len(), 2);
    assert!(big.iter().all(|m| m["length"] == 39));
    assert!(stderr.contains("3582 frames, 0 bad lines"), "{stderr}");
}

#[test]
fn bad_lines_are_counted_and_skipped_and_the_rest_decodes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("mixed.log");
    let mut bytes = b"# a comment\n\n(1700000000.000000) can0 1F0#804A0F0000000000\n\
        (1700000000.001000) can0 1F0#80ZZ\ngarbage line\n\
        (1700000000.002000) can0 7FF#00\n  can0  1F0   [8]  80 4A 0F 00 00 00 00 00\n"
        .to_vec();
    bytes.extend_from_slice(b"\xff\xfe not utf-8\n(1700000000.003000) can0 1F0#804A0F00000000\n");
    std::fs::write(&log, bytes).expect("write");
    let (out, stderr) = ours(&[
        &"candump",
        &log,
        &"--dbc",
        &fixture("can/cantools-motohawk.dbc"),
    ]);
    assert_eq!(out.len(), 3, "{stderr}");
    assert_eq!(out[0]["time"], "2023-11-14T22:13:20Z");
    assert_eq!(out[0]["signals"]["Enable"]["choice"], "Enabled");
    assert!(
        (out[0]["signals"]["Temperature"]["value"]
            .as_f64()
            .expect("t")
            - 255.92)
            .abs()
            < 1e-9
    );
    assert_eq!(out[0]["signals"]["Temperature"]["unit"], "degK");
    assert!(stderr.contains("3 bad lines"), "{stderr}");
    assert!(stderr.contains("1 unknown (1 distinct ids)"), "{stderr}");
}

#[test]
fn canboat_default_format_capture_reads_every_frame() {
    let (out, stderr) = ours(&[&"j1939", &fixture("can/canboat-candumpSample2.txt")]);
    assert!(
        stderr.contains("408 lines, 402 frames, 0 bad lines"),
        "{stderr}"
    );
    assert!(out.iter().all(|l| l.get("time").is_none()));
}

#[test]
fn a_missing_or_broken_dbc_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.dbc");
    std::fs::write(&bad, "BO_ this is not a DBC").expect("write");
    let log = fixture("j1939/canedge-j1939-truck-idle-10s.log");
    for (dbc, want) in [
        (bad, "not a DBC file"),
        (dir.path().join("missing.dbc"), "missing.dbc"),
    ] {
        let out = run_bounded(
            Command::new(env!("CARGO_BIN_EXE_fleet-agent"))
                .args(["decode", "candump"])
                .arg(&log)
                .arg("--dbc")
                .arg(&dbc),
        );
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(want), "{stderr}");
    }
}
