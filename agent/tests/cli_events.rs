//! The `fleet-agent` binary: `events --json`, `status`, `note` and `validate`.

use fleet_agent::store::{NewEvent, Store, StoreOptions};
use fleet_protocol::{BootId, EventData, Kind, Position, Priority, TimeAnchor, TimeSource};
use std::path::Path;
use std::process::{Command, Output};

fn agent(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fleet-agent"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run fleet-agent")
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "fleet-agent failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).expect("utf-8")
}

/// Two boots: the first learned the server's time, the second has only its
/// (wrong, 1970) wall clock. The first two events are acknowledged.
async fn seed_store(dir: &Path) -> (BootId, BootId) {
    let (first, second) = (BootId::random(), BootId::random());
    let store = Store::open(dir, first, StoreOptions::default()).unwrap();
    store
        .record(NewEvent {
            kind: Kind::known("ignition_on"),
            priority: Priority::Critical,
            mono_ms: 10_000,
            wall_ms: 5_000,
            config_version: 1,
            data: EventData::None,
        })
        .await
        .unwrap();
    store
        .record(NewEvent {
            kind: Kind::known("position"),
            priority: Priority::Telemetry,
            mono_ms: 11_000,
            wall_ms: 6_000,
            config_version: 1,
            data: EventData::Position(Position {
                lat_e7: 525_200_000,
                lon_e7: 134_050_000,
                alt_dm: None,
                speed_cms: Some(1_250),
                heading_cdeg: None,
                hdop_d: None,
                sats: Some(9),
                fix: 2,
            }),
        })
        .await
        .unwrap();
    store
        .put_anchor(TimeAnchor {
            boot_id: first,
            mono_ms: 10_000,
            true_ms: 1_700_000_000_000,
            source: TimeSource::Server,
            uncertainty_ms: 15,
        })
        .await
        .unwrap();
    store.set_acked(2).await.unwrap();
    store.close().await.unwrap();

    let store = Store::open(dir, second, StoreOptions::default()).unwrap();
    store
        .record(NewEvent {
            kind: Kind::new("custom.thing"),
            priority: Priority::Normal,
            mono_ms: 2_000,
            wall_ms: 1_500,
            config_version: 3,
            data: EventData::Json(serde_json::json!({ "x": 1 })),
        })
        .await
        .unwrap();
    store.close().await.unwrap();
    (first, second)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_json_prints_one_object_per_event_with_times_and_ack_state() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = seed_store(dir.path()).await;
    let data = dir.path().to_str().unwrap();
    let text = stdout(&agent(&["events", "--data", data, "--json"]));
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert_eq!(lines.len(), 3);
    for (i, l) in lines.iter().enumerate() {
        for key in [
            "seq",
            "kind",
            "priority",
            "boot_id",
            "mono_ms",
            "wall_ms",
            "hlc",
            "time",
            "time_source",
            "acked",
            "data",
        ] {
            assert!(l.get(key).is_some(), "line {i} lacks {key}: {l}");
        }
        assert_eq!(l["seq"], i as u64 + 1);
    }
    assert_eq!(lines[0]["kind"], "ignition_on");
    assert_eq!(lines[0]["priority"], "critical");
    assert_eq!(lines[0]["boot_id"], first.to_string());
    assert_eq!(
        lines[0]["time"], "2023-11-14T22:13:20Z",
        "rebased through the anchor"
    );
    assert_eq!(lines[0]["time_source"], "server");
    assert_eq!(lines[0]["acked"], true);
    assert_eq!(lines[1]["time"], "2023-11-14T22:13:21Z");
    assert_eq!(lines[1]["data"]["lat"], 52.52);
    assert_eq!(lines[1]["data"]["speed_mps"], 12.5);
    assert_eq!(lines[2]["boot_id"], second.to_string());
    assert_eq!(
        lines[2]["time"], "1970-01-01T00:00:01.500Z",
        "no anchor: the wall estimate"
    );
    assert_eq!(lines[2]["time_source"], "wall");
    assert_eq!(lines[2]["acked"], false);
    assert_eq!(lines[2]["data"]["x"], 1);
    assert!(lines[1]["hlc"].as_u64().unwrap() > lines[0]["hlc"].as_u64().unwrap());

    let page = stdout(&agent(&[
        "events", "--data", data, "--json", "--after", "1", "--limit", "1",
    ]));
    let only: Vec<&str> = page.lines().collect();
    assert_eq!(only.len(), 1);
    assert!(only[0].contains("\"seq\":2"), "{}", only[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_queue_depth_and_evictions() {
    let dir = tempfile::tempdir().unwrap();
    seed_store(dir.path()).await;
    let text = stdout(&agent(&[
        "status",
        "--data",
        dir.path().to_str().unwrap(),
        "--json",
    ]));
    let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(v["last_seq"], 3);
    assert_eq!(v["acked_seq"], 2);
    assert_eq!(v["queue_depth"], 1);
    assert_eq!(v["evicted_events"], 0);
    assert_eq!(v["device_id"], serde_json::Value::Null, "not enrolled");
}

#[test]
fn events_on_a_directory_without_a_store_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let out = agent(&["events", "--data", dir.path().to_str().unwrap(), "--json"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no agent store"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn note_set_then_show_round_trips_through_the_store() {
    let dir = tempfile::tempdir().unwrap();
    seed_store(dir.path()).await;
    let data = dir.path().to_str().unwrap();
    let vehicle = uuid::Uuid::new_v4().to_string();
    stdout(&agent(&[
        "note",
        "set",
        "--data",
        data,
        "--vehicle",
        &vehicle,
        "left mirror cracked",
    ]));
    let shown = stdout(&agent(&[
        "note",
        "show",
        "--data",
        data,
        "--vehicle",
        &vehicle,
    ]));
    assert_eq!(shown.trim_end(), "left mirror cracked");
}

#[test]
fn validate_accepts_the_example_and_names_the_bad_key() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("fleet-agent.example.toml");
    stdout(&agent(&["validate", "--config", example.to_str().unwrap()]));

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "version = 1\n[sync]\nbatch_size = 10\n").unwrap();
    let out = agent(&["validate", "--config", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("batch_size"));
}
