//! Power cuts on a device that records fast and syncs meanwhile: the agent is
//! SIGKILLed at random moments (200 times in the fast profile, 1,000 in the long
//! one) and restarted at once. After every cut the local database passes
//! `PRAGMA integrity_check` and still holds every event an earlier cut found
//! committed; at the end the server holds each committed event exactly once.
//!
//! "Committed" is what the database holds after the cut: the store commits with
//! `synchronous=FULL` and only ever sends committed rows, so everything the
//! server acknowledges was in some snapshot, and everything in a snapshot must
//! reach the server.

use anyhow::{bail, ensure, Context, Result};
use fleet_tests::faults::Profile;
use fleet_tests::process::wait_for;
use fleet_tests::services::{AgentDir, ServerProcess};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rusqlite::{Connection, OpenFlags};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// What identifies one recorded event: a re-recorded or altered event differs.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Recorded {
    kind: String,
    mono_ms: u64,
    hlc: u64,
}

/// The local store as a cut left it.
struct Snapshot {
    events: BTreeMap<u64, Recorded>,
    acked_seq: u64,
    /// Seq ranges evicted to stay within the disk budget (never critical events).
    evicted: Vec<(u64, u64)>,
}

impl Snapshot {
    fn evicted(&self, seq: u64) -> bool {
        self.evicted.iter().any(|(a, b)| (*a..=*b).contains(&seq))
    }
}

/// Opens the agent's database read-only, checks its integrity and reads it.
fn read_store(db: &Path) -> Result<Snapshot> {
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("opening {}", db.display()))?;
    conn.busy_timeout(Duration::from_secs(5))?;
    let check: Vec<String> = conn
        .prepare("PRAGMA integrity_check")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    ensure!(check == ["ok"], "integrity_check: {check:?}");
    let mut events = BTreeMap::new();
    let mut stmt = conn.prepare("SELECT seq, kind, mono_ms, hlc FROM events ORDER BY seq")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let seq: i64 = r.get(0)?;
        let hlc: i64 = r.get(3)?;
        events.insert(
            seq as u64,
            Recorded {
                kind: r.get(1)?,
                mono_ms: r.get::<_, i64>(2)? as u64,
                hlc: hlc as u64,
            },
        );
    }
    let acked_seq: i64 = conn.query_row("SELECT acked_seq FROM outbox", [], |r| r.get(0))?;
    let evicted = conn
        .prepare("SELECT first_seq, last_seq FROM evicted_ranges")?
        .query_map([], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64))
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(Snapshot {
        events,
        acked_seq: acked_seq as u64,
        evicted,
    })
}

#[test]
fn every_event_committed_across_hundreds_of_power_cuts_reaches_the_server_once() -> Result<()> {
    let profile = Profile::from_env();
    let cuts: usize = profile.pick(200, 1_000);
    let started = Instant::now();
    let tmp = tempfile::tempdir()?;
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs)?;
    let mut server = ServerProcess::new(&tmp.path().join("server"), &logs)?;
    let mut agent = AgentDir::new(&tmp.path().join("agent"), &logs)?;
    let db = tmp.path().join("agent").join("agent.db");
    let mut rng = StdRng::seed_from_u64(0xc0ffee);

    let (tenant_id, api_key) = server.create_tenant("power cuts")?;
    let token = server.create_token(&tenant_id, 1)?;
    server.start()?;
    agent.enroll(&server.url(), &token, "truck-cuts")?;
    let device_id = agent.device_id()?;

    // Commit and sync often so the cuts land inside group commits, batch posts
    // and ack writes rather than in idle waits. The agent inherits these.
    for (k, v) in [
        ("FLEET_METRICS__ENABLED", "false"),
        ("FLEET_STORE__GROUP_COMMIT_MS", "10"),
        ("FLEET_SYNC__IDLE_POLL_MS", "20"),
        ("FLEET_SYNC__BATCH_MAX_EVENTS", "50"),
        ("FLEET_SYNC__BACKOFF_BASE_MS", "20"),
        ("FLEET_SYNC__BACKOFF_MAX_MS", "200"),
    ] {
        std::env::set_var(k, v);
    }
    let args = ["--simulate", "--seed", "5", "--speed", "10000"];

    let mut committed: BTreeMap<u64, Recorded> = BTreeMap::new();
    let mut lost_locally = Vec::new();
    let mut runs_that_committed = 0;
    for cut in 0..cuts {
        let mut run = agent.run(&args)?;
        std::thread::sleep(Duration::from_millis(rng.gen_range(15..120)));
        if let Some(status) = run.exited()? {
            bail!(
                "the agent exited on its own ({status}) before cut {cut}:\n{}",
                run.log_tail(40)
            );
        }
        run.kill()?;

        let snap = read_store(&db).with_context(|| format!("after cut {cut}"))?;
        for w in snap.events.keys().collect::<Vec<_>>().windows(2) {
            ensure!(w[0] < w[1], "after cut {cut}: seqs out of order");
        }
        // A commit is never undone: an earlier event is still there unchanged,
        // unless the server acknowledged it and the store pruned it.
        for (seq, rec) in &committed {
            match snap.events.get(seq) {
                Some(now) => ensure!(
                    now == rec,
                    "after cut {cut}: committed seq {seq} changed from {rec:?} to {now:?}"
                ),
                None if *seq <= snap.acked_seq || snap.evicted(*seq) => {}
                None => lost_locally.push((cut, *seq)),
            }
        }
        let before = committed.len();
        for (seq, rec) in snap.events {
            committed.entry(seq).or_insert(rec);
        }
        if committed.len() > before {
            runs_that_committed += 1;
        }
    }
    ensure!(
        lost_locally.is_empty(),
        "committed events vanished from the store: {:?}",
        &lost_locally[..lost_locally.len().min(20)]
    );
    ensure!(
        runs_that_committed * 2 >= cuts,
        "only {runs_that_committed} of {cuts} runs committed anything: the cuts hit idle agents"
    );
    let last = *committed.keys().last().context("nothing committed")?;
    let cut_phase = started.elapsed();

    // The power stays on: the backlog drains.
    let mut run = agent.run(&args)?;
    wait_for(
        "the agent to see its backlog acknowledged",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || Ok((read_store(&db)?.acked_seq >= last).then_some(())),
    )?;
    run.kill()?;
    let fin = read_store(&db)?;
    for (seq, rec) in &fin.events {
        committed.entry(*seq).or_insert_with(|| rec.clone());
    }

    let stored = server.all_device_events(&api_key, &device_id)?;
    let mut on_server: BTreeMap<u64, Recorded> = BTreeMap::new();
    for e in &stored {
        let seq = e["seq"].as_u64().with_context(|| format!("no seq: {e}"))?;
        let rec = Recorded {
            kind: e["kind"].as_str().context("no kind")?.to_owned(),
            mono_ms: e["mono_ms"].as_u64().context("no mono_ms")?,
            hlc: e["hlc"].as_u64().context("no hlc")?,
        };
        ensure!(
            on_server.insert(seq, rec).is_none(),
            "seq {seq} is stored twice"
        );
    }
    let mut missing = Vec::new();
    for (seq, rec) in &committed {
        match on_server.get(seq) {
            Some(s) => ensure!(s == rec, "seq {seq}: device {rec:?}, server {s:?}"),
            None if fin.evicted(*seq) => {}
            None => missing.push(*seq),
        }
    }
    ensure!(
        missing.is_empty(),
        "{} committed events never reached the server, first {:?}",
        missing.len(),
        &missing[..missing.len().min(20)]
    );
    for seq in on_server.keys() {
        ensure!(
            committed.contains_key(seq),
            "the server has seq {seq}, which no cut found committed"
        );
    }
    eprintln!(
        "power cuts: {cuts} SIGKILLs, {} events committed and checked, {} on the server, \
         0 lost, 0 duplicated, integrity ok {} times; cuts took {cut_phase:?}, all {:?}",
        committed.len(),
        on_server.len(),
        cuts + 1,
        started.elapsed()
    );
    Ok(())
}
