//! End to end with real processes over loopback: a device records while the server
//! is down, loses power (SIGKILL) several times mid-write, and once the server is
//! back every event it had committed reaches the server exactly once.

use anyhow::{ensure, Context, Result};
use fleet_tests::process::wait_for;
use fleet_tests::services::{AgentDir, LocalEvent, ServerProcess};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const POWER_CUTS: usize = 5;
/// Simulated seconds per real second: a few hundred events in all, so the cuts land
/// among writes rather than in an idle store.
const SPEED: &str = "400";

#[test]
fn events_committed_while_the_server_was_down_arrive_exactly_once_despite_power_cuts() -> Result<()>
{
    let started = Instant::now();
    let tmp = tempfile::tempdir()?;
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs)?;
    let mut server = ServerProcess::new(&tmp.path().join("server"), &logs)?;
    let mut agent = AgentDir::new(&tmp.path().join("agent"), &logs)?;
    let mut rng = StdRng::seed_from_u64(0x5eed);

    let (tenant_id, api_key) = server.create_tenant("e2e power cuts")?;
    let token = server.create_token(&tenant_id, 1)?;
    server.start()?;
    agent.enroll(&server.url(), &token, "truck-e2e")?;
    let device_id = agent.device_id()?;
    server.kill()?;

    // Record with the server down; cut the power at a random moment each time.
    let mut committed: BTreeMap<u64, String> = BTreeMap::new();
    let mut grew = 0;
    for cut in 0..POWER_CUTS {
        let mut run = agent.run(&["--simulate", "--seed", "11", "--speed", SPEED])?;
        let up_for = Duration::from_millis(rng.gen_range(1_500..3_500));
        std::thread::sleep(up_for);
        ensure!(
            run.exited()?.is_none(),
            "agent exited on its own before power cut {cut}:\n{}",
            run.log_tail(40)
        );
        run.kill()?;

        let snapshot = agent.events()?;
        check_snapshot(&snapshot, &committed, cut)?;
        ensure!(
            snapshot.iter().all(|e| !e.acked),
            "nothing can be acked while the server is down"
        );
        let before = committed.len();
        committed.extend(snapshot.into_iter().map(|e| (e.seq, e.kind)));
        if committed.len() > before {
            grew += 1;
        }
    }
    ensure!(
        grew >= POWER_CUTS - 1,
        "the agent committed new events in only {grew} of {POWER_CUTS} runs"
    );
    let last_committed = *committed
        .keys()
        .last()
        .context("the agent committed no events at all")?;

    // Power and network back: the backlog drains.
    server.start()?;
    let mut run = agent.run(&["--simulate", "--seed", "11", "--speed", SPEED])?;
    wait_for(
        "the server to hold the backlog",
        Duration::from_secs(60),
        Duration::from_millis(250),
        || {
            let devices = server.api_get(&api_key, "/api/v1/devices")?;
            let last_seq = devices
                .as_array()
                .and_then(|ds| ds.iter().find(|d| d["id"] == device_id.as_str()))
                .and_then(|d| d["last_seq"].as_u64())
                .unwrap_or(0);
            Ok((last_seq >= last_committed).then_some(()))
        },
    )?;
    wait_for(
        "the agent to record the acks",
        Duration::from_secs(30),
        Duration::from_millis(250),
        || {
            let acked = agent.status()?["acked_seq"].as_u64().unwrap_or(0);
            Ok((acked >= last_committed).then_some(()))
        },
    )?;
    run.kill()?;

    let final_snapshot = agent.events()?;
    check_snapshot(&final_snapshot, &committed, POWER_CUTS)?;
    let status = agent.status()?;
    let device_acked = status["acked_seq"]
        .as_u64()
        .context("status has no acked_seq")?;
    let evicted = status["evicted_events"].as_u64().unwrap_or(0);
    let mut known = committed.clone();
    known.extend(final_snapshot.iter().map(|e| (e.seq, e.kind.clone())));
    for e in &final_snapshot {
        ensure!(
            e.seq > device_acked || e.acked,
            "seq {} is below the ack ({device_acked}) but not marked acked",
            e.seq
        );
    }

    // What the server holds: each committed event once, nothing invented, no holes.
    let stored = server.all_device_events(&api_key, &device_id)?;
    let mut on_server: BTreeMap<u64, String> = BTreeMap::new();
    for e in &stored {
        let seq = e["seq"]
            .as_u64()
            .with_context(|| format!("server event without seq: {e}"))?;
        let kind = e["kind"]
            .as_str()
            .with_context(|| format!("server event without kind: {e}"))?;
        ensure!(
            on_server.insert(seq, kind.to_owned()).is_none(),
            "seq {seq} is stored twice"
        );
    }
    for (seq, kind) in &committed {
        match on_server.get(seq) {
            Some(k) => ensure!(
                k == kind,
                "seq {seq}: the device committed {kind:?}, the server has {k:?}"
            ),
            None => anyhow::bail!(
                "seq {seq} ({kind}) was committed on the device but never reached the server"
            ),
        }
    }
    for (seq, kind) in &on_server {
        match known.get(seq) {
            Some(k) => ensure!(
                k == kind,
                "seq {seq}: the server has {kind:?}, the device {k:?}"
            ),
            None => anyhow::bail!(
                "the server has seq {seq} ({kind}) that the device never showed as committed"
            ),
        }
    }
    let holes = (1..=device_acked)
        .filter(|s| !on_server.contains_key(s))
        .count() as u64;
    ensure!(holes <= evicted, "{holes} seqs up to the ack are missing on the server, the device reports {evicted} evicted");

    let devices = server.api_get(&api_key, "/api/v1/devices")?;
    let summary = devices
        .as_array()
        .and_then(|ds| ds.iter().find(|d| d["id"] == device_id.as_str()))
        .context("device missing from /api/v1/devices")?;
    ensure!(
        summary["event_count"].as_u64() == Some(on_server.len() as u64),
        "event_count {} but {} events listed",
        summary["event_count"],
        on_server.len()
    );
    ensure!(
        started.elapsed() < Duration::from_secs(120),
        "the test took {:?}",
        started.elapsed()
    );
    eprintln!(
        "{} events committed across {POWER_CUTS} power cuts, {} stored on the server, acked to seq {device_acked}, {evicted} evicted, in {:?}",
        committed.len(),
        on_server.len(),
        started.elapsed()
    );
    Ok(())
}

/// The local store after a power cut: seqs strictly increasing, and every event an
/// earlier snapshot showed is still there unchanged (a commit is never undone).
fn check_snapshot(
    snapshot: &[LocalEvent],
    earlier: &BTreeMap<u64, String>,
    cut: usize,
) -> Result<()> {
    for w in snapshot.windows(2) {
        ensure!(
            w[0].seq < w[1].seq,
            "after cut {cut}: seq {} listed before {}",
            w[0].seq,
            w[1].seq
        );
    }
    let now: BTreeMap<u64, &str> = snapshot.iter().map(|e| (e.seq, e.kind.as_str())).collect();
    for (seq, kind) in earlier {
        match now.get(seq) {
            Some(k) => ensure!(
                k == kind,
                "after cut {cut}: committed seq {seq} changed from {kind:?} to {k:?}"
            ),
            None => anyhow::bail!("after cut {cut}: committed seq {seq} ({kind}) is gone"),
        }
    }
    Ok(())
}
