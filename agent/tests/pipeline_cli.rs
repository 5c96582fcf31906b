//! `fleet-agent run --replay-can …`: a user replays a recorded drive through the
//! real daemon, unpaced to the end or stopped by SIGTERM half way.

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const TRUCK_LOG: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/fixtures/j1939/canedge-j1939-truck-idle-10s.log"
);

fn agent() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fleet-agent"));
    c.env_remove("RUST_LOG");
    c
}

/// `fleet-agent run`, its stderr kept for the assertions.
fn run() -> Command {
    let mut c = agent();
    c.arg("run").stdout(Stdio::null()).stderr(Stdio::piped());
    c
}

/// Asks `child` to stop as systemd does.
fn sigterm(child: &Child) {
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
}

/// Waits for `child` at most `limit`; kills it and fails past that.
fn wait_within(mut child: Child, limit: Duration) -> Output {
    let t0 = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if t0.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "still running after {limit:?}; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

fn kinds(data: &str) -> Vec<String> {
    let out = agent()
        .args(["events", "--data", data, "--json"])
        .output()
        .expect("events");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("JSON line");
            v["kind"].as_str().expect("kind").to_owned()
        })
        .collect()
}

#[test]
fn an_unpaced_replay_runs_to_the_end_of_the_log_and_exits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_str().expect("utf-8");
    let child = run()
        .args([
            "--data",
            data,
            "--replay-can",
            TRUCK_LOG,
            "--speed",
            "0",
            "--exit-at-end",
        ])
        .spawn()
        .expect("spawn");
    let out = wait_within(child, Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("candump: replay ended (3582 items, 0 bad lines skipped)"),
        "{stderr}"
    );
    let kinds = kinds(data);
    assert_eq!(
        kinds.iter().filter(|k| *k == "dtc_set").count(),
        4,
        "{kinds:?}"
    );
    assert!(kinds.iter().any(|k| k == "ignition_on"), "{kinds:?}");
}

#[test]
fn sigterm_mid_replay_stops_within_the_bound_with_what_was_seen_committed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_str().expect("utf-8");
    let child = run()
        .args(["--data", data, "--replay-can", TRUCK_LOG, "--speed", "1"])
        .spawn()
        .expect("spawn");
    // The DM1 codes come with the first second of the 10 s log.
    std::thread::sleep(Duration::from_secs(3));
    sigterm(&child);
    let stopping = Instant::now();
    let out = wait_within(child, Duration::from_secs(10));
    assert!(
        stopping.elapsed() < Duration::from_secs(6),
        "took {:?} to stop",
        stopping.elapsed()
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        !stderr.contains("replay ended"),
        "stopped mid-replay: {stderr}"
    );
    let kinds = kinds(data);
    assert_eq!(
        kinds.iter().filter(|k| *k == "dtc_set").count(),
        4,
        "{kinds:?}"
    );
}

#[test]
fn a_speed_without_a_replay_or_a_simulation_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = agent()
        .args([
            "run",
            "--data",
            dir.path().to_str().expect("utf-8"),
            "--speed",
            "3",
        ])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--speed needs"), "{stderr}");
}

#[test]
fn ignition_off_for_the_hold_up_time_stops_the_agent_and_powers_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let marker = dir.path().join("powered-off");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "version = 1\n\
             [metrics]\nenabled = false\n\
             [power]\nignition_off_stop_s = 2\n\
             poweroff_command = [\"/bin/sh\", \"-c\", \"echo off > '{}'\"]\n",
            marker.display()
        ),
    )
    .expect("config");
    // The truck idles for the 10 s of the log (ignition inferred from its engine
    // speed); after the log the bus is silent, as when the key is turned.
    let child = run()
        .arg("--config")
        .arg(&config)
        .arg("--data")
        .arg(&data)
        .args(["--replay-can", TRUCK_LOG, "--speed", "4"])
        .spawn()
        .expect("spawn");
    let out = wait_within(child, Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("ignition off for the hold-up time"),
        "{stderr}"
    );
    let flushed = stderr.find("store flushed").expect("flushed");
    let powered = stderr.find("powering off").expect("powered off");
    assert!(flushed < powered, "powered off before the flush: {stderr}");
    assert_eq!(
        std::fs::read_to_string(&marker).expect("the command ran"),
        "off\n"
    );
    let kinds = kinds(data.to_str().expect("utf-8"));
    let on = kinds.iter().position(|k| k == "ignition_on");
    let off = kinds.iter().position(|k| k == "ignition_off");
    assert!(on.is_some() && on < off, "{kinds:?}");
    assert_eq!(
        kinds.iter().filter(|k| *k == "dtc_set").count(),
        4,
        "{kinds:?}"
    );
}

#[test]
fn a_box_that_boots_with_the_ignition_off_keeps_running() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "version = 1\n[metrics]\nenabled = false\n[power]\nignition_off_stop_s = 1\n",
    )
    .expect("config");
    let mut child = run()
        .arg("--config")
        .arg(&config)
        .arg("--data")
        .arg(dir.path().join("data"))
        .spawn()
        .expect("spawn");
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        child.try_wait().expect("wait").is_none(),
        "stopped although the ignition was never seen on"
    );
    sigterm(&child);
    let out = wait_within(child, Duration::from_secs(10));
    assert!(out.status.success());
}
