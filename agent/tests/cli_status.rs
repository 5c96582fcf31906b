//! `fleet-agent status` after an enrolled device recorded while its server was
//! unreachable: queue depth and the oldest unsynced event, the failing last
//! sync with its error, and the config version, as text and as JSON.

use fleet_agent::identity::Identity;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn agent() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fleet-agent"));
    c.env_remove("RUST_LOG");
    c
}

#[test]
fn status_shows_the_backlog_and_a_failing_sync_with_its_error_and_the_config_version() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    // Enrolled with a server at a port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    Identity::new(
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4(),
        "truck-status".into(),
        format!("http://127.0.0.1:{port}"),
        ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng),
        None,
    )
    .save(&data)
    .unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "version = 1\n[sync]\nbackoff_base_ms = 50\nbackoff_max_ms = 200\n[metrics]\nenabled = false\n",
    )
    .unwrap();

    let mut child = agent()
        .arg("run")
        .arg("--config")
        .arg(&config)
        .arg("--data")
        .arg(&data)
        .args(["--simulate", "--seed", "3", "--speed", "100"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let status = |json: bool| {
        let mut c = agent();
        c.arg("status")
            .arg("--data")
            .arg(&data)
            .arg("--config")
            .arg(&config);
        if json {
            c.arg("--json");
        }
        let out = c.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let started = Instant::now();
    let report: serde_json::Value = loop {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no failing sync noted within 30 s"
        );
        std::thread::sleep(Duration::from_millis(300));
        if !data.join("agent.db").exists() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(status(true).trim()).unwrap();
        if v["queue_depth"].as_u64().unwrap_or(0) > 0 && v["last_sync_result"] == "failing" {
            break v;
        }
    };
    let _ = child.kill();
    let _ = child.wait();

    assert_eq!(report["config_version"], 1);
    assert_eq!(report["acked_seq"], 0);
    assert!(report["oldest_unsynced"].is_string(), "{report}");
    assert_eq!(report["last_sync"], serde_json::Value::Null);
    assert_eq!(report["last_sync_error"]["code"], "transport", "{report}");

    let text = status(false);
    assert!(text.contains("(failing)"), "{text}");
    assert!(text.contains("last failure:"), "{text}");
    assert!(text.contains("(version 1)"), "{text}");
    assert!(text.contains("queue depth:"), "{text}");
}
