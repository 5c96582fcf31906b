//! `fleet-agent run`: a simulated vehicle records into the store, and SIGTERM
//! stops the daemon cleanly with everything committed.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn agent() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fleet-agent"));
    c.env_remove("RUST_LOG");
    c
}

#[test]
fn sigterm_stops_a_simulated_run_cleanly_with_its_events_committed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let mut child = agent()
        .args([
            "run",
            "--data",
            data,
            "--simulate",
            "--seed",
            "7",
            "--speed",
            "60",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let started = Instant::now();
    let db = dir.path().join("agent.db");
    let recorded = loop {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no events within 30 s"
        );
        std::thread::sleep(Duration::from_millis(250));
        if !db.exists() {
            continue;
        }
        let out = agent()
            .args(["events", "--data", data, "--json"])
            .output()
            .unwrap();
        let lines = String::from_utf8_lossy(&out.stdout).lines().count();
        if lines >= 3 {
            break lines;
        }
    };

    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let stopping = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            stopping.elapsed() < Duration::from_secs(15),
            "daemon did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "exit {status:?}: {stderr}");
    assert!(stderr.contains("not enrolled"), "{stderr}");

    let out = agent()
        .args(["events", "--data", data, "--json"])
        .output()
        .unwrap();
    let after: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(after.len() >= recorded, "events were lost at shutdown");
    for (i, e) in after.iter().enumerate() {
        assert_eq!(e["seq"], i as u64 + 1, "seqs are dense");
        assert_eq!(e["acked"], false, "nothing acked without a server");
    }
}

#[test]
fn run_refuses_a_config_with_unknown_keys_before_touching_the_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("agent.toml");
    std::fs::write(&cfg, "version = 1\n[sync]\nenabled = true\nturbo = true\n").unwrap();
    let data = dir.path().join("data");
    let out = agent()
        .args([
            "run",
            "--config",
            cfg.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("turbo"));
    assert!(!data.exists());
}
