//! A process killed with SIGKILL keeps every critical event whose `record` had
//! returned. The test re-runs its own binary as the child that gets killed.

use fleet_agent::store::{BootId, EventData, Kind, NewEvent, Priority, Store, StoreOptions};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

const CHILD_ENV: &str = "FLEET_STORE_CRASH_CHILD_DIR";
const TEST_NAME: &str = "critical_events_survive_sigkill_right_after_record_returns";

fn event(priority: Priority, n: u64) -> NewEvent {
    NewEvent {
        kind: Kind::known(if priority == Priority::Critical {
            "ignition_off"
        } else {
            "signal"
        }),
        priority,
        mono_ms: n,
        wall_ms: 1_700_000_000_000 + n as i64,
        config_version: 1,
        data: EventData::Json(serde_json::json!({ "n": n })),
    }
}

/// The child: telemetry streams in while critical events are recorded, each
/// reported on stdout the moment `record` returns. It runs until killed.
fn child(dir: &Path, boot: u8) -> ! {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = Store::open(dir, BootId([boot; 16]), StoreOptions::default()).unwrap();
        for n in 0.. {
            for i in 0..20 {
                store
                    .submit(event(Priority::Telemetry, n * 100 + i))
                    .await
                    .unwrap();
            }
            let seq = store.record(event(Priority::Critical, n)).await.unwrap();
            println!("critical {seq}");
        }
    });
    unreachable!("the child loops until it is killed")
}

/// Runs a child, kills it after it reported `count` critical events, and
/// returns the seqs it reported.
fn run_and_kill(dir: &Path, boot: u8, count: usize) -> Vec<u64> {
    let mut proc = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, format!("{}:{boot}", dir.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut reported = Vec::new();
    let mut lines = BufReader::new(proc.stdout.take().unwrap()).lines();
    while reported.len() < count {
        let line = lines.next().expect("child exited early").unwrap();
        if let Some(seq) = line.strip_prefix("critical ") {
            reported.push(seq.parse().unwrap());
        }
    }
    // Child::kill sends SIGKILL: no destructor, no flush, no clean close.
    proc.kill().unwrap();
    proc.wait().unwrap();
    reported
}

#[test]
fn critical_events_survive_sigkill_right_after_record_returns() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        let (dir, boot) = spec.rsplit_once(':').unwrap();
        child(Path::new(dir), boot.parse().unwrap());
    }
    let dir = tempfile::tempdir().unwrap();
    let mut reported = Vec::new();
    for boot in 1..=3 {
        reported.extend(run_and_kill(dir.path(), boot, 15));
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = Store::open(dir.path(), BootId([9; 16]), StoreOptions::default()).unwrap();
        let events = store.list_events(0, usize::MAX).await.unwrap();
        let seqs: Vec<u64> = events.iter().map(|(e, _)| e.seq).collect();
        // Nothing was evicted, so what survived is dense from 1.
        assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
        for seq in &reported {
            let (e, _) = &events[*seq as usize - 1];
            assert_eq!(e.priority, Priority::Critical, "seq {seq} lost or changed");
        }
        // Numbering resumed after each kill without reusing a seq.
        let boots: Vec<u8> = events.iter().map(|(e, _)| e.time.boot_id.0[0]).collect();
        assert!(boots.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(store.stats().await.unwrap().last_seq, seqs.len() as u64);
    });
}
