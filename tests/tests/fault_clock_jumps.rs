//! The wall clock jumps under a recording agent, and a device boots in 1970.
//!
//! Three devices replay the same recorded drive (`fleet-agent run
//! --replay-nmea`) into one real `fleet-sync`, each on a wall clock faked by
//! libfaketime (only the wall clock: the monotonic and boot-time clocks run
//! true, as on a device):
//! - `steady`: the true time throughout, the reference;
//! - `jumps`: three hours back a quarter into the drive, then eight hours
//!   forward, then back to the true time;
//! - `1970`: the clock of a board without an RTC, starting at the epoch and
//!   never corrected, so everything before the receiver's first fix (which
//!   comes a while into the log) is recorded with no trustworthy time.
//!
//! At the server every event of every device must be rebased onto the drive's
//! GPS time (within the anchor's uncertainty of the fix it came from), keep
//! its order by (boot, monotonic time) in time and in HLC, and the trip
//! summaries must be the same as the reference's. The wall clocks each device
//! recorded prove the jumps happened mid-recording. Skipped with a message
//! when libfaketime is missing, failing under `CI=true`.

use anyhow::{bail, ensure, Context, Result};
use fleet_hal::sim::nmea::{gga, rmc, sentence, GnssFix};
use fleet_tests::drive::drive;
use fleet_tests::faults::fake_clock::FakeClock;
use fleet_tests::faults::{must_not_skip, Profile};
use fleet_tests::process::{bin, wait_for, Guarded};
use fleet_tests::services::{AgentDir, ServerProcess};
use rusqlite::{Connection, OpenFlags};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const HOUR_MS: i64 = 3_600_000;
/// Seconds of the log before the receiver's first fix: time of day, no date.
const NO_FIX_S: u32 = 20;
/// Seconds parked at the end, past the trip's stop time below.
const PARKED_S: u32 = 45;
const STOP_AFTER_S: u32 = 30;
/// A rebased time may be off by the first GPS anchor's uncertainty.
const TOLERANCE_MS: i64 = 2_000;

struct Device {
    name: &'static str,
    data: PathBuf,
    clock: FakeClock,
    id: String,
}

/// The drive as a receiver logs it, and when each fix was taken (UTC ms).
struct Log {
    path: PathBuf,
    first_ms: i64,
    /// (UTC ms, lat, lon) of each fix with a position.
    fixes: Vec<(i64, f64, f64)>,
}

fn write_log(path: &Path, start_ms: i64, drive_s: u32) -> Result<Log> {
    let mut text = String::new();
    let mut fixes = Vec::new();
    let hhmmss = |ms: i64| {
        let s = ms.div_euclid(1000).rem_euclid(86_400);
        format!("{:02}{:02}{:02}.00", s / 3600, (s / 60) % 60, s % 60)
    };
    for i in 0..NO_FIX_S {
        let t = start_ms + i64::from(i) * 1000;
        text += &sentence(&format!("GPGGA,{},,,,,0,00,99.9,,M,,M,,", hhmmss(t)));
        text += "\r\n";
        text += &sentence(&format!("GPRMC,{},V,,,,,,,,,,N", hhmmss(t)));
        text += "\r\n";
    }
    let drive = drive(20_261_122, drive_s);
    let last = *drive.last().context("an empty drive")?;
    let parked = (0..PARKED_S).map(|_| {
        let mut f = last;
        f.position.speed_cms = Some(0);
        f
    });
    for (i, f) in drive.iter().copied().chain(parked).enumerate() {
        let t = start_ms + i64::from(NO_FIX_S) * 1000 + i as i64 * 1000;
        let p = f.position;
        let fix = GnssFix {
            time_ms: t,
            lat: f64::from(p.lat_e7) / 1e7,
            lon: f64::from(p.lon_e7) / 1e7,
            alt_m: f64::from(p.alt_dm.unwrap_or(0)) / 10.0,
            speed_mps: f64::from(p.speed_cms.unwrap_or(0)) / 100.0,
            course_deg: f64::from(p.heading_cdeg.unwrap_or(0)) / 100.0,
            sats: p.sats.unwrap_or(8),
            hdop: f64::from(p.hdop_d.unwrap_or(10)) / 10.0,
        };
        text += &rmc(&fix);
        text += "\r\n";
        text += &gga(&fix);
        text += "\r\n";
        fixes.push((t, fix.lat, fix.lon));
    }
    std::fs::write(path, text)?;
    Ok(Log {
        path: path.to_owned(),
        first_ms: start_ms,
        fixes,
    })
}

/// The committed and acknowledged seqs of an agent's store, read beside the
/// running agent.
fn outbox(data: &Path) -> Result<(u64, u64)> {
    let c = Connection::open_with_flags(
        data.join("agent.db"),
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    let (last, acked): (i64, i64) =
        c.query_row("SELECT last_seq, acked_seq FROM outbox", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    Ok((last as u64, acked as u64))
}

fn num(e: &Value, key: &str) -> Result<i64> {
    e[key].as_i64().with_context(|| format!("no {key} in {e}"))
}

/// What a trip summary must not change with the wall clock: the summary
/// without its monotonic stamps (each boot has its own), and its GPS time.
fn trip_key(e: &Value) -> Result<(String, i64)> {
    let mut d = e["data"].clone();
    let m = d
        .as_object_mut()
        .context("trip_end data is not an object")?;
    m.remove("start_mono_ms");
    m.remove("end_mono_ms");
    for place in ["start", "end"] {
        if let Some(p) = m.get_mut(place).and_then(Value::as_object_mut) {
            p.remove("mono_ms");
        }
    }
    Ok((d.to_string(), num(e, "time_ms")?))
}

#[test]
fn wall_clock_jumps_of_hours_and_a_1970_boot_leave_order_trips_and_rebased_times_true() -> Result<()>
{
    if let Some(why) = FakeClock::unavailable() {
        if must_not_skip() {
            bail!("CI=true and the wall clock cannot be faked: {why}");
        }
        eprintln!("skipped: {why}");
        return Ok(());
    }
    let profile = Profile::from_env();
    let drive_s: u32 = profile.pick(240, 1_200);
    let speed: u32 = profile.pick(30, 60);
    let started = Instant::now();
    let tmp = tempfile::tempdir()?;
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs)?;

    let mut server = ServerProcess::new(&tmp.path().join("server"), &logs)?;
    let (tenant_id, api_key) = server.create_tenant("clock jumps")?;
    let token = server.create_token(&tenant_id, 3)?;
    server.start()?;

    // The drive happens now, as the replay runs: its GPS time is the truth.
    let now_ms = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis(),
    )?;
    let log = write_log(&tmp.path().join("drive.nmea"), now_ms + 1_000, drive_s)?;

    let mut devices = Vec::new();
    for (name, start) in [
        ("steady", "+0"),
        ("jumps", "+0"),
        ("1970", "@1970-01-01 00:00:00"),
    ] {
        let data = tmp.path().join(name);
        let dir = AgentDir::new(&data, &logs)?;
        dir.enroll(&server.url(), &token, &format!("truck-{name}"))?;
        let id = dir.device_id()?;
        let clock = FakeClock::new(&tmp.path().join(format!("{name}.faketime")), start)?;
        devices.push(Device {
            name,
            data,
            clock,
            id,
        });
    }
    let agent_bin = bin("fleet-agent")?;
    let mut running: Vec<Guarded> = Vec::new();
    for d in &devices {
        let mut cmd = Command::new(&agent_bin);
        cmd.arg("run")
            .arg("--data")
            .arg(&d.data)
            .arg("--replay-nmea")
            .arg(&log.path)
            .args(["--speed", &speed.to_string()])
            .env("RUST_LOG", "info")
            .env("FLEET_METRICS__ENABLED", "false")
            .env("FLEET_STORE__GROUP_COMMIT_MS", "100")
            .env("FLEET_SYNC__IDLE_POLL_MS", "100")
            .env("FLEET_SYNC__BACKOFF_BASE_MS", "50")
            .env("FLEET_SYNC__BACKOFF_MAX_MS", "300")
            .env("FLEET_RULES__TRIPS__STOP_AFTER_S", STOP_AFTER_S.to_string());
        d.clock.apply(&mut cmd);
        running.push(Guarded::spawn(
            &format!("fleet-agent run ({})", d.name),
            cmd,
            &logs.join(format!("agent-{}.log", d.name)),
        )?);
    }

    // The jumps, a quarter, half and three quarters into the drive.
    let log_s = f64::from(NO_FIX_S + drive_s + PARKED_S);
    let drive_real = |share: f64| {
        Duration::from_secs_f64(
            (f64::from(NO_FIX_S) + share * f64::from(drive_s)) / f64::from(speed),
        )
    };
    let t0 = Instant::now();
    let jumps = [(0.25, "-3h"), (0.5, "+5h"), (0.75, "+0")];
    for (share, spec) in jumps {
        let at = drive_real(share);
        if let Some(wait) = at.checked_sub(t0.elapsed()) {
            std::thread::sleep(wait);
        }
        devices[1].clock.set(spec)?;
    }

    // Each replay ends, and everything it recorded is acknowledged.
    let bound = Duration::from_secs_f64(log_s / f64::from(speed) * 3.0 + 30.0);
    for (d, agent) in devices.iter().zip(running.iter_mut()) {
        let log_file = logs.join(format!("agent-{}.log", d.name));
        wait_for(
            &format!("the {} replay to end and be acknowledged", d.name),
            bound,
            Duration::from_millis(200),
            || {
                if let Some(status) = agent.exited()? {
                    bail!("{} exited ({status}):\n{}", d.name, agent.log_tail(30));
                }
                let ended = std::fs::read_to_string(&log_file)?.contains("replay ended");
                let (last, acked) = outbox(&d.data)?;
                Ok((ended && last > 0 && acked == last).then_some(()))
            },
        )
        .with_context(|| agent.log_tail(20))?;
    }
    // A second look after a group commit, so nothing was still in flight.
    std::thread::sleep(Duration::from_millis(500));
    for (d, agent) in devices.iter().zip(running.iter_mut()) {
        wait_for(
            &format!("the {} backlog to be acknowledged", d.name),
            Duration::from_secs(20),
            Duration::from_millis(100),
            || {
                let (last, acked) = outbox(&d.data)?;
                Ok((acked == last).then_some(()))
            },
        )?;
        agent.kill()?;
    }

    let mut trips: Vec<Vec<(String, i64)>> = Vec::new();
    let mut checked = 0usize;
    let mut wall_offsets: Vec<Vec<i64>> = Vec::new();
    for d in &devices {
        let events = server.all_device_events(&api_key, &d.id)?;
        let (last, _) = outbox(&d.data)?;
        ensure!(
            events.len() as u64 == last,
            "{}: {} events at the server, {last} recorded",
            d.name,
            events.len()
        );
        // Order: seqs once each; HLC grows with seq however the wall clock
        // moved; rebased time grows with monotonic time within the boot.
        let mut by_mono: Vec<&Value> = events.iter().collect();
        by_mono.sort_by_key(|e| (e["boot_id"].to_string(), e["mono_ms"].as_u64()));
        for (i, e) in events.iter().enumerate() {
            ensure!(
                num(e, "seq")? == i as i64 + 1,
                "{}: seq {} at place {}",
                d.name,
                e["seq"],
                i + 1
            );
            ensure!(
                e["time_source"] == "gps",
                "{}: seq {} was not rebased onto GPS time: {e}",
                d.name,
                e["seq"]
            );
        }
        for w in events.windows(2) {
            ensure!(
                w[0]["hlc"].as_u64() < w[1]["hlc"].as_u64(),
                "{}: HLC goes back from seq {} to {}",
                d.name,
                w[0]["seq"],
                w[1]["seq"]
            );
        }
        for w in by_mono.windows(2) {
            if w[0]["boot_id"] == w[1]["boot_id"] {
                ensure!(
                    num(w[0], "time_ms")? <= num(w[1], "time_ms")?,
                    "{}: seq {} comes before seq {} in monotonic time but not in rebased time",
                    d.name,
                    w[0]["seq"],
                    w[1]["seq"]
                );
            }
        }
        // Rebased times: each position at the time of the fix it came from.
        for e in events.iter().filter(|e| e["kind"] == "position") {
            let (lat, lon) = (
                e["data"]["lat"].as_f64().context("lat")?,
                e["data"]["lon"].as_f64().context("lon")?,
            );
            let near: Vec<i64> = log
                .fixes
                .iter()
                .filter(|(_, a, b)| (a - lat).abs() < 2e-6 && (b - lon).abs() < 2e-6)
                .map(|(t, _, _)| *t)
                .collect();
            let time = num(e, "time_ms")?;
            ensure!(
                near.iter().any(|t| (t - time).abs() <= TOLERANCE_MS),
                "{}: position seq {} rebased to {time}, fixes at that place were taken at {near:?}",
                d.name,
                e["seq"]
            );
            checked += 1;
        }
        // Before the first fix: the 1970 boot's `clock_implausible`, recorded
        // as the replay started, lands at the log's first second.
        if d.name == "1970" {
            let flagged = events
                .iter()
                .find(|e| e["kind"] == "clock_implausible")
                .context("the 1970 boot was not flagged clock_implausible")?;
            let time = num(flagged, "time_ms")?;
            ensure!(
                (time - log.first_ms).abs() <= TOLERANCE_MS + 1_000,
                "clock_implausible rebased to {time}, the log starts at {}",
                log.first_ms
            );
            checked += 1;
        } else {
            ensure!(
                !events.iter().any(|e| e["kind"] == "clock_implausible"),
                "{}: a plausible clock was flagged",
                d.name
            );
        }
        wall_offsets.push(
            events
                .iter()
                .map(|e| Ok(num(e, "wall_ms")? - num(e, "time_ms")?))
                .collect::<Result<_>>()?,
        );
        trips.push(
            events
                .iter()
                .filter(|e| e["kind"] == "trip_end")
                .map(trip_key)
                .collect::<Result<_>>()?,
        );
    }

    // The faults were real: the jumping device recorded wall times three hours
    // behind and five hours ahead; the 1970 one recorded 1970.
    let near = |offsets: &[i64], target: i64| {
        offsets
            .iter()
            .filter(|o| (**o - target).abs() < 120_000)
            .count()
    };
    let jumped = &wall_offsets[1];
    let (behind, ahead, true_again) = (
        near(jumped, -3 * HOUR_MS),
        near(jumped, 5 * HOUR_MS),
        near(jumped, 0),
    );
    ensure!(
        behind > 0 && ahead > 0 && true_again > 0,
        "the jumps missed the recording: {behind} events 3 h behind, {ahead} 5 h ahead, \
         {true_again} on time"
    );
    ensure!(
        wall_offsets[2]
            .iter()
            .all(|o| *o < -HOUR_MS * 24 * 365 * 50),
        "the 1970 boot recorded a wall time after 1970"
    );

    // Trips: the same summaries, at the same GPS times, on every clock.
    ensure!(!trips[0].is_empty(), "the reference drive made no trip");
    for (d, t) in devices.iter().zip(&trips).skip(1) {
        ensure!(
            t.len() == trips[0].len(),
            "{}: {} trips, the reference {}",
            d.name,
            t.len(),
            trips[0].len()
        );
        for (a, b) in t.iter().zip(&trips[0]) {
            ensure!(a.0 == b.0, "{}: trip {} differs from {}", d.name, a.0, b.0);
            ensure!(
                (a.1 - b.1).abs() <= TOLERANCE_MS,
                "{}: trip ended at {}, the reference at {}",
                d.name,
                a.1,
                b.1
            );
        }
    }
    eprintln!(
        "clock jumps: 3 jumps (-3 h, +8 h, -5 h) and one 1970 boot; {} events at the server \
         ({checked} rebased times checked against the fixes, {} trips compared), 0 lost, \
         0 duplicated; {behind} events recorded 3 h behind, {ahead} 5 h ahead; {:?}",
        wall_offsets.iter().map(Vec::len).sum::<usize>(),
        trips[0].len(),
        started.elapsed()
    );
    Ok(())
}
