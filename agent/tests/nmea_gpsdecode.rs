//! `fleet-agent decode nmea` against gpsd on real receiver logs
//! (`../shared/fixtures/nmea`): every TPV that gpsd's `gpsdecode -j` prints for a
//! log, and every TPV in the log's committed `.chk` (gpsd's regression output), has
//! a report of ours at the same time with the same fix mode, position, speed and
//! altitude, within the precision gpsd prints.
//!
//! Deliberate differences, asserted rather than ignored:
//! - gpsd 3.22 moves any date before the last GPS week-number wrap (2019-04-06)
//!   forward by a 1024-week era (the 2010 u-blox log comes out in 2030). By default
//!   we keep the receiver's date, so a replayed log stays when it was recorded, and
//!   our times differ from gpsdecode's by whole eras and never otherwise; with
//!   `--rollover-floor 2019-04-06` ours are gpsd's to the millisecond.
//! - gpsd estimates a speed from successive positions when an epoch has no RMC or
//!   VTG; we report only the receiver's own speed.
//!
//! `gpsdecode` comes from Debian's `gpsd-clients`, which `tests/run` installs.
//! Without it the test says so and passes, except under `CI=true`, where it fails.

mod bounded;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use bounded::run_bounded;
use fleet_agent::cli::decode::nmea::decode_nmea_file;
use fleet_agent::decode::nmea::{Date, LAST_WEEK_ROLLOVER};
use serde_json::Value as Json;

const LOGS: &[&str] = &[
    "april6_2019.log",
    "bu353-glonass.log",
    "bu353s4.log",
    "garmin15x.log",
    "gp-320fw-2019-04-07-coldboot.log",
    "mt3339.log",
    "nmea-fuzzy-cases.log",
    "quectel-eg25-g-2.log",
    "triton400.log",
    "ublox-lea-5h.log",
];

/// One GPS era: the 10-bit week counter wraps every 1024 weeks.
const ERA_MS: i64 = 1024 * 7 * 86_400_000;
/// gpsd prints lat/lon with 9 decimals, speed with 3, altitude with 4.
const DEG_TOLERANCE: f64 = 1e-8;
const SPEED_TOLERANCE: f64 = 0.0015;
const ALT_TOLERANCE: f64 = 0.001;
const GPSDECODE_LIMIT: Duration = Duration::from_secs(20);

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/nmea")
}

fn gpsdecode() -> Option<&'static str> {
    let ok = Command::new("gpsdecode")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return Some("gpsdecode");
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "gpsdecode is missing under CI=true: tests/run installs Debian's gpsd-clients"
    );
    eprintln!("SKIPPED nmea peer test: gpsdecode not found (apt-get install gpsd-clients)");
    None
}

fn json_lines(text: &str) -> Vec<Json> {
    text.lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// `gpsdecode -j < log`.
fn run_gpsdecode(exe: &str, log: &Path) -> Vec<Json> {
    let input = std::fs::File::open(log).expect("fixture");
    json_lines(&run_bounded(
        Command::new(exe).arg("-j").stdin(input),
        GPSDECODE_LIMIT,
    ))
}

fn ours(log: &Path) -> Vec<Json> {
    ours_with_floor(log, None)
}

fn ours_with_floor(log: &Path, floor: Option<Date>) -> Vec<Json> {
    let mut out = Vec::new();
    decode_nmea_file(log, floor, &mut out).expect("decodes");
    json_lines(&String::from_utf8(out).expect("utf-8"))
}

fn tpvs(reports: &[Json]) -> impl Iterator<Item = &Json> {
    reports.iter().filter(|r| r["class"] == "TPV")
}

fn unix_ms(rfc3339: &str) -> i64 {
    let t = time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("{rfc3339}: {e}"));
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

fn close(a: &Json, b: &Json, tolerance: f64) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => (x - y).abs() <= tolerance,
        _ => false,
    }
}

/// Checks one gpsd TPV against ours at the same time, give or take (with `eras`)
/// the 1024-week eras gpsd adds to early dates. `epoch_final` says gpsd reported
/// it after the whole epoch (the `.chk`); `gpsdecode` may report before the
/// epoch's RMC. Returns whether a speed was compared.
fn check_tpv(name: &str, gpsd: &Json, mine: &[Json], epoch_final: bool, eras: bool) -> bool {
    let t = unix_ms(gpsd["time"].as_str().expect("time"));
    let same_time = |o: &&Json| {
        o["time"].as_str().is_some_and(|s| {
            let d = t - unix_ms(s);
            d == 0 || (eras && d > 0 && d % ERA_MS == 0)
        })
    };
    let candidates: Vec<&Json> = tpvs(mine).filter(same_time).collect();
    assert!(
        !candidates.is_empty(),
        "{name}: gpsd reports {gpsd} and we have no TPV at that time"
    );
    // A receiver may send two position sentences in one second (GLL after RMC
    // with a moved position); gpsd reports the last, so any of ours may match.
    let matching = candidates.iter().find(|o| {
        o["mode"] == gpsd["mode"]
            && (gpsd["lat"].is_null()
                || (close(&o["lat"], &gpsd["lat"], DEG_TOLERANCE)
                    && close(&o["lon"], &gpsd["lon"], DEG_TOLERANCE)))
    });
    let Some(o) = matching else {
        panic!("{name}: gpsd {gpsd}\n ours {candidates:?}");
    };
    if gpsd["mode"].as_u64() < Some(2) {
        assert!(o["lat"].is_null(), "{name}: no fix but a position: {o}");
        return false;
    }
    if !gpsd["altMSL"].is_null() && !o["altMSL"].is_null() {
        assert!(
            close(&o["altMSL"], &gpsd["altMSL"], ALT_TOLERANCE),
            "{name}: altitude {o} vs {gpsd}"
        );
    }
    if let Some(s) = gpsd.get("status") {
        assert_eq!(o.get("status"), Some(s), "{name}: status {o} vs {gpsd}");
    }
    // Without RMC or VTG in its cycle gpsd has no track and estimates the speed
    // from positions; with them, the speed is the receiver's, as ours is.
    if o["speed"].is_null() || !(epoch_final || gpsd.get("track").is_some()) {
        return false;
    }
    assert!(
        close(&o["speed"], &gpsd["speed"], SPEED_TOLERANCE),
        "{name}: speed {o} vs {gpsd}"
    );
    true
}

#[test]
fn fixes_match_gpsdecode_on_every_fixture_log() {
    let Some(exe) = gpsdecode() else {
        return;
    };
    let (mut compared, mut fixes, mut speeds, mut shifted) = (0, 0, 0, 0);
    for name in LOGS {
        let log = fixtures().join(name);
        let mine = ours(&log);
        let like_gpsd = ours_with_floor(&log, Some(LAST_WEEK_ROLLOVER));
        let theirs = run_gpsdecode(exe, &log);
        let mut untimed = 0;
        for gpsd in tpvs(&theirs) {
            if gpsd["time"].is_null() {
                untimed += 1;
                continue;
            }
            speeds += usize::from(check_tpv(name, gpsd, &like_gpsd, false, false));
            check_tpv(name, gpsd, &mine, false, true);
            compared += 1;
            fixes += usize::from(gpsd["mode"].as_u64() >= Some(2));
            let t = unix_ms(gpsd["time"].as_str().expect("time"));
            shifted +=
                usize::from(!tpvs(&mine).any(|o| o["time"].as_str().map(unix_ms) == Some(t)));
        }
        let our_untimed = tpvs(&mine).filter(|o| o["time"].is_null()).count();
        assert!(
            our_untimed >= untimed,
            "{name}: gpsd has {untimed} TPVs without a time, we have {our_untimed}"
        );
    }
    eprintln!(
        "compared {compared} gpsdecode TPVs ({fixes} fixes, {speeds} speeds), \
         {shifted} moved by gpsd into a later GPS era"
    );
    assert!(
        compared > 100 && fixes > 100 && speeds > 50,
        "too little compared"
    );
    assert!(shifted > 0, "gpsd 3.22 is expected to shift pre-2019 dates");
}

#[test]
fn fixes_match_the_committed_gpsd_regression_output() {
    let mut compared = 0;
    for name in LOGS {
        let log = fixtures().join(name);
        let chk = std::fs::read(fixtures().join(format!("{name}.chk"))).expect("chk");
        let chk = String::from_utf8_lossy(&chk);
        let mine = ours(&log);
        // gpsd's regression output has a TPV after every sentence; the last one
        // of each epoch holds the whole epoch, as ours does. A TPV after a
        // sentence of another time is gpsd keeping its last good time when a
        // receiver restarts (the cold-boot log): no epoch of the receiver's.
        let mut epoch_tpvs: Vec<Json> = Vec::new();
        let mut sentence_time = String::new();
        for line in chk.lines() {
            if line.starts_with('$') {
                sentence_time = nmea_time(line);
                continue;
            }
            let Ok(t) = serde_json::from_str::<Json>(line) else {
                continue;
            };
            let Some(time) = t["time"].as_str() else {
                continue;
            };
            if t["class"] != "TPV" || !same_time_of_day(time, &sentence_time) {
                continue;
            }
            if epoch_tpvs.last().is_some_and(|l| l["time"] == t["time"]) {
                epoch_tpvs.pop();
            }
            epoch_tpvs.push(t);
        }
        for gpsd in &epoch_tpvs {
            // gpsd's regression runs used an older floor: 1999 moved, 2010 not.
            check_tpv(name, gpsd, &mine, true, true);
            compared += 1;
        }
    }
    assert!(compared > 120, "only {compared} compared");
}

/// `hhmmss` of an RMC, GGA, GLL or ZDA line, empty for other sentences.
fn nmea_time(line: &str) -> String {
    let fields: Vec<&str> = line.split(',').collect();
    let field = match line.get(3..6) {
        Some("RMC" | "GGA" | "ZDA") => 1,
        Some("GLL") => 5,
        _ => return String::new(),
    };
    fields
        .get(field)
        .and_then(|f| f.get(..6))
        .unwrap_or("")
        .to_string()
}

fn same_time_of_day(rfc3339: &str, hhmmss: &str) -> bool {
    let t = rfc3339.get(11..19).unwrap_or("").replace(':', "");
    !hhmmss.is_empty() && t == hhmmss
}

#[test]
fn void_rmc_gives_time_but_no_position() {
    let mine = ours(&fixtures().join("bu353-glonass.log"));
    let void = tpvs(&mine)
        .find(|o| o["time"] == "2014-05-26T08:14:20.000Z")
        .expect("TPV of the void RMC epoch");
    assert_eq!(void["mode"], 1, "{void}");
    assert!(void["lat"].is_null() && void["speed"].is_null(), "{void}");
}

#[test]
fn rollover_garbage_date_gives_a_fix_without_a_time() {
    let mine = ours(&fixtures().join("april6_2019.log"));
    let t: Vec<&Json> = tpvs(&mine).collect();
    // `$GPRMC,,V,...`: nothing at all; then the date `2208-1`: a position but no
    // time; then `220899`, read as the receiver says, 1999-08-22.
    assert_eq!(t.len(), 3, "{t:?}");
    assert_eq!(t[0]["mode"], 1);
    assert!(t[0]["time"].is_null());
    assert_eq!(t[1]["mode"], 2);
    assert!(t[1]["time"].is_null() && !t[1]["lat"].is_null(), "{}", t[1]);
    assert_eq!(t[2]["time"], "1999-08-22T00:02:31.420Z");
}

#[test]
fn sky_reports_dops_and_counts_each_used_satellite_once() {
    let mine = ours(&fixtures().join("quectel-eg25-g-2.log"));
    let sky = mine
        .iter()
        .find(|r| r["class"] == "SKY")
        .expect("a SKY report");
    // GPGSA and GNGSA system 1 list the same five GPS satellites; GNGSA system 2
    // adds four GLONASS ones: nine used, as the receiver's GNGNS says.
    assert_eq!(sky["uSat"], 9, "{sky}");
    assert_eq!(sky["hdop"], 0.9);
    assert_eq!(sky["pdop"], 1.2);
    assert_eq!(sky["vdop"], 0.9);
    // 8 GLONASS, 3 Galileo, 12 GPS in view (the vendor $PQGSV is not NMEA).
    assert_eq!(sky["nSat"], 23, "{sky}");
}

#[test]
fn cli_prints_one_json_line_per_report_and_a_summary() {
    let log = fixtures().join("triton400.log");
    let out = Command::new(env!("CARGO_BIN_EXE_fleet-agent"))
        .args(["decode", "nmea"])
        .arg(&log)
        .output()
        .expect("run fleet-agent");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = json_lines(&String::from_utf8(out.stdout).expect("utf-8"));
    assert_eq!(lines, ours(&log));
    let first_fix = tpvs(&lines).find(|o| o["mode"] == 3).expect("a 3D fix");
    assert_eq!(first_fix["time"], "2013-04-01T03:01:29.000Z", "{first_fix}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("1 bad"), "{stderr}");

    let floored = Command::new(env!("CARGO_BIN_EXE_fleet-agent"))
        .args(["decode", "nmea", "--rollover-floor", "2019-04-06"])
        .arg(&log)
        .output()
        .expect("run fleet-agent");
    let floored = json_lines(&String::from_utf8(floored.stdout).expect("utf-8"));
    let first = tpvs(&floored).find(|o| o["mode"] == 3).expect("a 3D fix");
    assert_eq!(
        first["time"], "2032-11-15T03:01:29.000Z",
        "as gpsdecode says"
    );

    let bad = Command::new(env!("CARGO_BIN_EXE_fleet-agent"))
        .args(["decode", "nmea", "--rollover-floor", "2019-13-01"])
        .arg(&log)
        .output()
        .expect("run fleet-agent");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("2019-13-01"));

    let missing = Command::new(env!("CARGO_BIN_EXE_fleet-agent"))
        .args(["decode", "nmea", "/nonexistent/drive.nmea"])
        .output()
        .expect("run fleet-agent");
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/drive.nmea"));
}
