//! A full disk under a recording agent. The agent's data directory sits on a
//! 16 MB tmpfs (a private mount namespace, so root only: skipped elsewhere,
//! failing under `CI=true`). It holds a week offline: a backlog just under the
//! 8 MB disk budget. A real `fleet-agent run` on simulated sources, with no
//! server to sync to, records past the budget, and then the test fills the
//! file system around it with a ballast file, again and again, so that SQLite
//! meets ENOSPC (SQLITE_FULL) on its own writes.
//!
//! The agent must keep running and recording: every write the file system
//! refuses is followed by eviction, telemetry before normal events and never a
//! critical one, and written again. After a power cut on the full disk the
//! database passes `PRAGMA integrity_check`, `fleet-agent status` and
//! `/metrics` say the disk is full and count the evictions, and once the
//! server is back every critical event is there exactly once and every other
//! seq is either there or recorded as evicted.

use anyhow::{bail, ensure, Context, Result};
use fleet_agent::store::{BootId, EventData, Kind, NewEvent, Priority, Store, StoreOptions};
use fleet_tests::faults::small_fs::SmallFs;
use fleet_tests::faults::{must_not_skip, Profile};
use fleet_tests::process::{bin, free_port, run_output, Guarded};
use fleet_tests::services::{AgentDir, ServerProcess};
use rusqlite::{Connection, OpenFlags};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const MB: u64 = 1 << 20;
/// Room for the budget, the WAL the store lets grow (4 MB) and its 1 MB
/// reserve: the store alone never fills the file system, the ballast does.
const FS_BYTES: u64 = 16 * MB;
/// The smallest budget the agent accepts.
const BUDGET_MB: u64 = 8;
/// The backlog stops this far short of the budget, so the live recording
/// crosses it within a second or two.
const BACKLOG_SHORT_OF_BUDGET: u64 = 96 << 10;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Recorded {
    kind: String,
    priority: u8,
    mono_ms: u64,
    hlc: u64,
}

/// The agent's database as a cut left it, read from a copy taken out of the
/// namespace (db and WAL together).
struct Snapshot {
    events: BTreeMap<u64, Recorded>,
    acked_seq: u64,
    last_seq: u64,
    evicted: Vec<(u64, u64)>,
}

impl Snapshot {
    fn evicted(&self, seq: u64) -> bool {
        self.evicted.iter().any(|(a, b)| (*a..=*b).contains(&seq))
    }
}

fn copy_out(fs: &SmallFs, data: &Path, to: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(to)?;
    let _ = std::fs::remove_file(to.join("agent.db-wal"));
    for name in ["agent.db", "agent.db-wal"] {
        let from = fs.outside(&data.join(name))?;
        if from.exists() {
            std::fs::copy(&from, to.join(name))
                .with_context(|| format!("copying {}", from.display()))?;
        }
    }
    Ok(to.join("agent.db"))
}

fn read_store(db: &Path) -> Result<Snapshot> {
    // Read-write on the copy, so SQLite may replay the WAL into it.
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    let check: Vec<String> = conn
        .prepare("PRAGMA integrity_check")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    ensure!(check == ["ok"], "integrity_check: {check:?}");
    let mut events = BTreeMap::new();
    let mut stmt = conn.prepare("SELECT seq, kind, priority, mono_ms, hlc FROM events")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        events.insert(
            r.get::<_, i64>(0)? as u64,
            Recorded {
                kind: r.get(1)?,
                priority: r.get(2)?,
                mono_ms: r.get::<_, i64>(3)? as u64,
                hlc: r.get::<_, i64>(4)? as u64,
            },
        );
    }
    let (acked_seq, last_seq): (i64, i64) =
        conn.query_row("SELECT acked_seq, last_seq FROM outbox", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    let evicted = conn
        .prepare("SELECT first_seq, last_seq FROM evicted_ranges")?
        .query_map([], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64))
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(Snapshot {
        events,
        acked_seq: acked_seq as u64,
        last_seq: last_seq as u64,
        evicted,
    })
}

/// The bytes the store's pages hold, as its disk budget counts them (not the
/// file sizes: the WAL comes and goes).
fn used_bytes(db: &Path) -> Result<u64> {
    let c = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let pragma = |name: &str| -> Result<u64> {
        Ok(c.pragma_query_value(None, name, |r| r.get::<_, i64>(0))? as u64)
    };
    Ok((pragma("page_count")? - pragma("freelist_count")?) * pragma("page_size")?)
}

/// One scrape of the agent's `/metrics`, as name{labels} -> value.
fn scrape(port: u16) -> Result<BTreeMap<String, f64>> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .context("no body")?;
    let mut out = BTreeMap::new();
    for sample in fleet_protocol::prometheus::parse(body).map_err(|e| anyhow::anyhow!("{e:?}"))? {
        let labels: Vec<String> = sample
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let key = if labels.is_empty() {
            sample.name.clone()
        } else {
            format!("{}{{{}}}", sample.name, labels.join(","))
        };
        out.insert(key, sample.value);
    }
    Ok(out)
}

fn metric(m: &BTreeMap<String, f64>, key: &str) -> f64 {
    m.get(key).copied().unwrap_or(f64::NAN)
}

/// Scrapes the running agent until `done` holds for a scrape, and returns that
/// scrape. Fails when the agent exits, or on timeout with the last scrape (or
/// the last scrape error) and the agent's log, so a metric that never moves is
/// told apart from a listener that never answers.
fn wait_metrics(
    what: &str,
    timeout: Duration,
    port: u16,
    agent: &mut Guarded,
    done: impl Fn(&BTreeMap<String, f64>) -> bool,
) -> Result<BTreeMap<String, f64>> {
    let deadline = Instant::now() + timeout;
    let mut last: Result<BTreeMap<String, f64>>;
    loop {
        if let Some(status) = agent.exited()? {
            bail!(
                "the agent exited ({status}) while waiting for {what}:\n{}",
                agent.log_tail(40)
            );
        }
        last = match scrape(port) {
            Ok(m) if done(&m) => return Ok(m),
            Ok(m) => Ok(m),
            // A scrape that once answered and now fails says more than the
            // answer before it; one that never answered keeps its error.
            Err(e) => Err(e),
        };
        if Instant::now() > deadline {
            let seen = match &last {
                Ok(m) => m
                    .iter()
                    .filter(|(k, _)| {
                        k.contains("evicted")
                            || k.contains("disk")
                            || k.contains("recorded")
                            || k.contains("synced")
                            || k.contains("store")
                    })
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join("\n"),
                Err(e) => format!("no answer: {e:#}"),
            };
            bail!(
                "timed out after {timeout:?} waiting for {what}; last scrape:\n{seen}\nagent log:\n{}",
                agent.log_tail(20)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One in ten backlog events is critical, three normal, six telemetry.
fn backlog_priority(i: u64) -> Priority {
    match i % 10 {
        0 => Priority::Critical,
        1..=3 => Priority::Normal,
        _ => Priority::Telemetry,
    }
}

/// Fills the backlog of an agent that has been offline for a week: mostly
/// telemetry, some normal and a few critical events with ~600-byte payloads,
/// up to just short of the budget. Returns the critical events' seqs and each
/// seq's priority.
async fn write_backlog(dir: &Path) -> Result<BTreeMap<u64, Priority>> {
    let store = Store::open(
        dir,
        BootId::random(),
        StoreOptions {
            disk_budget_bytes: BUDGET_MB * MB,
            ..StoreOptions::default()
        },
    )?;
    let pad = "p".repeat(600);
    let mut priorities = BTreeMap::new();
    let mut i = 0u64;
    loop {
        let used = used_bytes(&dir.join(fleet_agent::store::DB_FILE))?;
        let left = (BUDGET_MB * MB).saturating_sub(BACKLOG_SHORT_OF_BUDGET + used);
        if left == 0 {
            break;
        }
        let n = (left / 900).clamp(1, 2_000);
        for _ in 0..n {
            i += 1;
            let priority = backlog_priority(i);
            store
                .submit(NewEvent {
                    kind: Kind::new("backlog"),
                    priority,
                    mono_ms: i * 1_000,
                    wall_ms: 1_767_225_600_000 + (i * 1_000) as i64,
                    config_version: 1,
                    data: EventData::Json(serde_json::json!({ "i": i, "pad": pad })),
                })
                .await?;
        }
        let last = store.flush().await?;
        ensure!(last == i, "the backlog's seqs are its event numbers");
        priorities.extend((last - n + 1..=last).map(|seq| (seq, backlog_priority(seq))));
    }
    store.close().await?;
    Ok(priorities)
}

#[test]
fn a_full_disk_costs_low_priority_history_never_critical_events_nor_the_database() -> Result<()> {
    if let Some(why) = SmallFs::unavailable() {
        if must_not_skip() {
            bail!("CI=true and no small file system can be made: {why}");
        }
        eprintln!("skipped: {why}");
        return Ok(());
    }
    let profile = Profile::from_env();
    let fills: u32 = profile.pick(3, 12);
    let started = Instant::now();
    let tmp = tempfile::tempdir()?;
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs)?;

    // Enroll, leave a week's backlog, and lose the server.
    let mut server = ServerProcess::new(&tmp.path().join("server"), &logs)?;
    let (tenant_id, api_key) = server.create_tenant("full disk")?;
    let token = server.create_token(&tenant_id, 1)?;
    server.start()?;
    let seed_dir = tmp.path().join("seed");
    let seed = AgentDir::new(&seed_dir, &logs)?;
    seed.enroll(&server.url(), &token, "truck-full-disk")?;
    let device_id = seed.device_id()?;
    server.kill()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let backlog = rt.block_on(write_backlog(&seed_dir))?;
    let backlog_last = *backlog.keys().last().context("empty backlog")?;

    let fs = SmallFs::mount(
        &tmp.path().join("small"),
        FS_BYTES,
        &logs.join("small-fs.log"),
    )?;
    let data = fs.path().join("agent");
    std::fs::create_dir_all(fs.outside(&data)?)?;
    for entry in std::fs::read_dir(&seed_dir)? {
        let entry = entry?;
        std::fs::copy(entry.path(), fs.outside(&data.join(entry.file_name()))?)?;
    }
    let ballast = fs.path().join("ballast");

    let agent_bin = bin("fleet-agent")?;
    let metrics_port = free_port()?;
    let mut runs = 0;
    let mut run_agent = |fs: &SmallFs| -> Result<Guarded> {
        runs += 1;
        let mut cmd = fs.command(&agent_bin);
        cmd.arg("run")
            .arg("--data")
            .arg(&data)
            .args(["--simulate", "--seed", "11", "--speed", "10000"])
            .env("RUST_LOG", "info")
            .env("FLEET_STORE__DISK_BUDGET_MB", BUDGET_MB.to_string())
            .env("FLEET_STORE__GROUP_COMMIT_MS", "100")
            .env("FLEET_SYNC__IDLE_POLL_MS", "100")
            .env("FLEET_SYNC__BACKOFF_BASE_MS", "50")
            .env("FLEET_SYNC__BACKOFF_MAX_MS", "300")
            .env("FLEET_METRICS__LISTEN", format!("127.0.0.1:{metrics_port}"));
        Guarded::spawn(
            "fleet-agent run",
            cmd,
            &logs.join(format!("agent-{runs}.log")),
        )
    };
    // Past the budget: eviction by priority, the file system still has room.
    let mut agent = run_agent(&fs)?;
    let m = wait_metrics(
        "the agent to record past its disk budget",
        Duration::from_secs(30),
        metrics_port,
        &mut agent,
        |m| metric(m, "fleet_agent_events_evicted_total{priority=telemetry}") > 0.0,
    )?;
    ensure!(
        metric(&m, "fleet_agent_disk_full") == 0.0,
        "full before the ballast: {m:?}"
    );

    // Past the file system: the ballast takes every byte the store frees, again
    // and again, and the agent meets ENOSPC on its own writes each time.
    let mut refused = 0.0;
    let mut ballast_bytes = 0;
    for fill in 0..fills {
        ballast_bytes += fs.fill(&ballast)?;
        let m = wait_metrics(
            &format!("the store to meet a full disk and make room (fill {fill})"),
            Duration::from_secs(20),
            metrics_port,
            &mut agent,
            |m| metric(m, "fleet_agent_disk_full_writes_total") > refused,
        )?;
        refused = metric(&m, "fleet_agent_disk_full_writes_total");
    }
    // Recording goes on: a critical event is committed after the last refusal.
    let before = scrape(metrics_port)?;
    let recorded_then = metric(&before, "fleet_agent_events_recorded_total");
    ballast_bytes += fs.fill(&ballast)?;
    let full = wait_metrics(
        "the agent to record on, on a full disk",
        Duration::from_secs(20),
        metrics_port,
        &mut agent,
        |m| {
            metric(m, "fleet_agent_events_recorded_total") > recorded_then + 50.0
                && metric(m, "fleet_agent_disk_full") == 1.0
        },
    )?;
    // No more room than one eviction pass made, whatever the reserve holds.
    ensure!(
        metric(&full, "fleet_agent_disk_free_bytes") < (3 * MB) as f64,
        "{full:?}"
    );
    ensure!(
        metric(&full, "fleet_agent_events_evicted_total{priority=critical}") == 0.0,
        "{full:?}"
    );

    // A power cut on the full disk.
    agent.kill()?;
    let cut = read_store(&copy_out(&fs, &data, &tmp.path().join("cut"))?)
        .context("after the power cut")?;
    let mut status_cmd = fs.command(&agent_bin);
    status_cmd
        .arg("status")
        .arg("--data")
        .arg(&data)
        .arg("--json");
    let status: Value =
        serde_json::from_str(run_output(status_cmd, Duration::from_secs(30))?.trim())?;
    ensure!(status["disk_full"] == true, "status: {status}");
    ensure!(
        status["disk_full_writes"].as_u64() >= Some(fills as u64),
        "status: {status}"
    );
    ensure!(status["evicted_critical"] == 0, "status: {status}");
    ensure!(
        status["evicted_telemetry"].as_u64() > Some(0),
        "status: {status}"
    );

    // Lower priorities went first: no normal backlog event was evicted while a
    // backlog telemetry event was kept, and every critical one is still there.
    let backlog_kept = |p: Priority| {
        backlog
            .iter()
            .filter(|(s, q)| **q == p && cut.events.contains_key(s))
            .count()
    };
    let normal_evicted = backlog
        .iter()
        .any(|(s, q)| *q == Priority::Normal && !cut.events.contains_key(s));
    if normal_evicted {
        ensure!(
            backlog_kept(Priority::Telemetry) == 0,
            "normal events evicted while {} telemetry events were kept",
            backlog_kept(Priority::Telemetry)
        );
    }
    for (seq, p) in &backlog {
        if *p == Priority::Critical {
            ensure!(
                cut.events.get(seq).is_some_and(|e| e.priority == 2),
                "critical backlog seq {seq} is gone"
            );
        }
    }

    // The server returns; the agent, on the still full disk, drains everything.
    server.start()?;
    let mut agent = run_agent(&fs)?;
    let target = cut.last_seq;
    let drained = wait_metrics(
        "the backlog to be acknowledged",
        Duration::from_secs(60),
        metrics_port,
        &mut agent,
        |m| metric(m, "fleet_agent_events_synced_total") >= target as f64,
    )?;
    ensure!(
        metric(&drained, "fleet_agent_disk_full") == 1.0,
        "the disk is still full, yet the agent says it is not: {drained:?}"
    );

    // Space comes back: the ballast goes, and the agent says the disk is no
    // longer full once it has room for its reserve and its whole budget.
    std::fs::remove_file(fs.outside(&ballast)?)?;
    let roomy = wait_metrics(
        "the agent to see the disk is no longer full",
        Duration::from_secs(20),
        metrics_port,
        &mut agent,
        |m| metric(m, "fleet_agent_disk_full") == 0.0,
    )?;
    ensure!(
        metric(&roomy, "fleet_agent_disk_free_bytes") >= MB as f64,
        "{roomy:?}"
    );
    agent.kill()?;
    let fin = read_store(&copy_out(&fs, &data, &tmp.path().join("fin"))?)?;
    ensure!(fin.acked_seq >= target, "the ack was not kept");
    for run in 1..=runs {
        let log = std::fs::read_to_string(logs.join(format!("agent-{run}.log")))?;
        for bad in ["not stored", "eviction failed", "panicked"] {
            ensure!(
                !log.contains(bad),
                "agent run {run} logged {bad:?}:\n{}",
                log.lines()
                    .filter(|l| l.contains(bad))
                    .take(5)
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    }

    let stored = server.all_device_events(&api_key, &device_id)?;
    let mut on_server: BTreeMap<u64, Recorded> = BTreeMap::new();
    for e in &stored {
        let seq = e["seq"].as_u64().context("seq")?;
        let priority = match e["priority"].as_str() {
            Some("telemetry") => 0,
            Some("normal") => 1,
            Some("critical") => 2,
            _ => e["priority"].as_u64().context("priority")? as u8,
        };
        let rec = Recorded {
            kind: e["kind"].as_str().context("kind")?.to_owned(),
            priority,
            mono_ms: e["mono_ms"].as_u64().context("mono_ms")?,
            hlc: e["hlc"].as_u64().context("hlc")?,
        };
        ensure!(
            on_server.insert(seq, rec).is_none(),
            "seq {seq} stored twice"
        );
    }
    // Every critical event the device held at the power cut, and every one it
    // had acknowledged when it was stopped, is at the server, unchanged (the
    // agent records on while it drains, so the last few may still be queued).
    let mut critical = 0;
    for (snap, upto) in [(&cut, target), (&fin, fin.acked_seq)] {
        for (seq, rec) in snap.events.range(..=upto).filter(|(_, r)| r.priority == 2) {
            critical += 1;
            ensure!(
                on_server.get(seq) == Some(rec),
                "critical seq {seq} {rec:?}: server has {:?}",
                on_server.get(seq)
            );
        }
    }
    // Every seq up to the drained point is at the server or recorded as evicted.
    let mut lost = Vec::new();
    let mut evicted = 0u64;
    for seq in 1..=target {
        if on_server.contains_key(&seq) {
            ensure!(!fin.evicted(seq), "seq {seq} is both evicted and stored");
        } else if fin.evicted(seq) {
            evicted += 1;
        } else {
            lost.push(seq);
        }
    }
    ensure!(
        lost.is_empty(),
        "{} seqs neither stored nor evicted: {:?}",
        lost.len(),
        &lost[..lost.len().min(20)]
    );
    let critical_seqs: BTreeSet<u64> = on_server
        .iter()
        .filter(|(_, r)| r.priority == 2)
        .map(|(s, _)| *s)
        .collect();
    ensure!(
        backlog
            .iter()
            .filter(|(_, p)| **p == Priority::Critical)
            .all(|(s, _)| critical_seqs.contains(s)),
        "a backlog critical event is missing at the server"
    );
    eprintln!(
        "full disk: {} ENOSPC episodes ({refused} refused writes counted, {} MB of ballast), \
         {target} seqs checked ({backlog_last} from the backlog), {} on the server, {evicted} evicted \
         (telemetry {}, normal {}), {critical} critical checks, 0 lost, 0 duplicated, \
         integrity ok twice; {:?}",
        fills + 1,
        ballast_bytes / MB,
        on_server.len(),
        status["evicted_telemetry"],
        status["evicted_normal"],
        started.elapsed()
    );
    Ok(())
}
