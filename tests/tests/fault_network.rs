//! A bad network between devices and the server. Real agents sync through the
//! fault proxy (tests/faults/proxy.rs) while it adds latency, cuts requests and
//! responses, swallows traffic, truncates and corrupts answers and refuses
//! connections; once it heals every agent converges with the server, each
//! committed event stored exactly once. A second test measures the retry rate
//! after a 1,000-device outage ends, with the agent's own backoff code.

use anyhow::{ensure, Context, Result};
use fleet_agent::sync::backoff::Backoff;
use fleet_agent::sync::SyncOptions;
use fleet_tests::faults::proxy::{Fault, FaultProxy};
use fleet_tests::faults::Profile;
use fleet_tests::process::wait_for;
use fleet_tests::services::{AgentDir, ServerProcess};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rusqlite::{Connection, OpenFlags};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const AGENTS: usize = 3;

/// An event's identity: kind, monotonic time and HLC.
type Recorded = (String, u64, u64);

/// `seq -> event` and the acked seq of an agent's store, after an integrity check.
fn read_store(db: &Path) -> Result<(BTreeMap<u64, Recorded>, u64)> {
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    ensure!(check == "ok", "integrity_check: {check}");
    let mut out = BTreeMap::new();
    let mut stmt = conn.prepare("SELECT seq, kind, mono_ms, hlc FROM events")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        out.insert(
            r.get::<_, i64>(0)? as u64,
            (
                r.get(1)?,
                r.get::<_, i64>(2)? as u64,
                r.get::<_, i64>(3)? as u64,
            ),
        );
    }
    let acked: i64 = conn.query_row("SELECT acked_seq FROM outbox", [], |r| r.get(0))?;
    Ok((out, acked as u64))
}

#[test]
fn agents_behind_a_faulty_network_converge_once_it_heals() -> Result<()> {
    let profile = Profile::from_env();
    let rounds: usize = profile.pick(1, 5);
    let started = Instant::now();
    let tmp = tempfile::tempdir()?;
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs)?;
    let mut server = ServerProcess::new(&tmp.path().join("server"), &logs)?;
    let (tenant_id, api_key) = server.create_tenant("bad network")?;
    let token = server.create_token(&tenant_id, AGENTS as u32)?;
    server.start()?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let upstream = server.url().trim_start_matches("http://").parse()?;
    let proxy = rt.block_on(FaultProxy::start(upstream))?;

    for (k, v) in [
        ("FLEET_METRICS__ENABLED", "false"),
        ("FLEET_STORE__GROUP_COMMIT_MS", "50"),
        ("FLEET_SYNC__IDLE_POLL_MS", "100"),
        ("FLEET_SYNC__BATCH_MAX_EVENTS", "40"),
        ("FLEET_SYNC__BACKOFF_BASE_MS", "50"),
        ("FLEET_SYNC__BACKOFF_MAX_MS", "800"),
        ("FLEET_SYNC__REQUEST_TIMEOUT_MS", "700"),
    ] {
        std::env::set_var(k, v);
    }
    let mut agents = Vec::new();
    for i in 0..AGENTS {
        let dir = tmp.path().join(format!("agent-{i}"));
        let agent = AgentDir::new(&dir, &logs)?;
        agent.enroll(&proxy.url(), &token, &format!("truck-{i}"))?;
        let id = agent.device_id()?;
        agents.push((agent, dir.join("agent.db"), id));
    }
    let mut runs = Vec::new();
    for (i, (agent, _, _)) in agents.iter_mut().enumerate() {
        let seed = (i + 1).to_string();
        runs.push(agent.run(&["--simulate", "--seed", &seed, "--speed", "3000"])?);
    }

    let faults = [
        Fault::Latency(Duration::from_millis(250)),
        Fault::CutRequest(300),
        Fault::CutResponse(40),
        Fault::Blackhole,
        Fault::TruncateResponse(60),
        Fault::CorruptResponse(0),
        Fault::CorruptResponse(200),
        Fault::Refuse,
    ];
    let mut injected = 0;
    for _ in 0..rounds {
        for fault in faults {
            proxy.set(fault);
            std::thread::sleep(Duration::from_millis(1_500));
            proxy.set(Fault::Pass);
            std::thread::sleep(Duration::from_millis(300));
            injected += 1;
            for run in runs.iter_mut() {
                ensure!(
                    run.exited()?.is_none(),
                    "an agent stopped under {fault:?}:\n{}",
                    run.log_tail(30)
                );
            }
        }
    }
    let faults_seen = proxy.stats().faults.load(Ordering::Relaxed);
    let heal = Instant::now();

    // Healed: each agent's backlog as of now reaches the server and is acked.
    let mut targets = Vec::new();
    for (_, db, _) in &agents {
        let (events, _) = read_store(db)?;
        targets.push(*events.keys().last().context("an agent recorded nothing")?);
    }
    for ((_, db, _), target) in agents.iter().zip(&targets) {
        wait_for(
            "an agent's backlog to be acknowledged after the network healed",
            Duration::from_secs(60),
            Duration::from_millis(100),
            || Ok((read_store(db)?.1 >= *target).then_some(())),
        )?;
    }
    let converged_in = heal.elapsed();
    for run in runs.iter_mut() {
        run.kill()?;
    }

    let mut checked = 0;
    for (_, db, device) in &agents {
        let (local, acked) = read_store(db)?;
        let stored = server.all_device_events(&api_key, device)?;
        let mut on_server = BTreeMap::new();
        for e in &stored {
            let seq = e["seq"].as_u64().context("no seq")?;
            let rec = (
                e["kind"].as_str().context("no kind")?.to_owned(),
                e["mono_ms"].as_u64().context("no mono_ms")?,
                e["hlc"].as_u64().context("no hlc")?,
            );
            ensure!(
                on_server.insert(seq, rec).is_none(),
                "{device}: seq {seq} stored twice"
            );
        }
        for (seq, rec) in local.range(..=acked) {
            let s = on_server
                .get(seq)
                .with_context(|| format!("{device}: acked seq {seq} missing at the server"))?;
            ensure!(
                s == rec,
                "{device}: seq {seq}: device {rec:?}, server {s:?}"
            );
            checked += 1;
        }
        for (seq, rec) in &on_server {
            ensure!(
                local.get(seq) == Some(rec),
                "{device}: the server holds seq {seq} {rec:?}, the device {:?}",
                local.get(seq)
            );
        }
    }
    eprintln!(
        "bad network: {injected} fault windows ({faults_seen} faulty chunks or connections), \
         {checked} acked events checked at the server, 0 lost, 0 duplicated; converged \
         {converged_in:?} after healing; all {:?}",
        started.elapsed()
    );
    drop(proxy);
    Ok(())
}

/// One device's next attempt in the simulated outage.
struct Attempt {
    at: Duration,
    device: usize,
}

/// The request rate the fleet sends once a long outage ends, simulated with
/// the agent's own backoff and default options, in virtual time.
/// Returns the busiest `window` after the outage ends, counted in requests.
fn peak_after_outage(
    devices: usize,
    outage: Duration,
    window: Duration,
    jitter: bool,
    seed: u64,
) -> u64 {
    let opts = SyncOptions::default();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut backoffs: Vec<Backoff> = (0..devices)
        .map(|_| Backoff::new(opts.backoff_base, opts.backoff_max))
        .collect();
    // Devices poll at their idle interval until the outage begins at 0.
    let mut queue: BinaryHeap<Reverse<(Duration, usize)>> = (0..devices)
        .map(|d| {
            let at = Duration::from_nanos(rng.gen_range(0..opts.idle_poll.as_nanos() as u64));
            Reverse((at, d))
        })
        .collect();
    let mut per_window: BTreeMap<u64, u64> = BTreeMap::new();
    while let Some(Reverse((at, device))) = queue.pop() {
        let a = Attempt { at, device };
        if a.at >= outage {
            // The server answers: this device is through.
            let w = ((a.at - outage).as_nanos() / window.as_nanos()) as u64;
            *per_window.entry(w).or_default() += 1;
            continue;
        }
        // Connection refused at once: the worst case, no timeout to spread it.
        let b = &mut backoffs[a.device];
        let delay = if jitter {
            b.next_delay(&mut rng)
        } else {
            let c = b.ceiling();
            b.next_delay(&mut rng);
            c
        };
        queue.push(Reverse((a.at + delay, a.device)));
    }
    per_window.values().copied().max().unwrap_or(0)
}

#[test]
fn the_end_of_a_thousand_device_outage_brings_no_retry_storm() {
    let devices = 1_000;
    let outage = Duration::from_secs(30 * 60);
    let window = Duration::from_secs(1);
    let max = SyncOptions::default().backoff_max;
    // After half an hour every device retries after a full-jitter delay uniform
    // over [0, max], a renewal process with mean gap max/2. The time left to a
    // device's next retry when the server returns then has density at most
    // 2/max, so no second can expect more than 2·devices/max returns. Allow six
    // standard deviations of that (Poisson) count on top.
    let mean = 2.0 * devices as f64 * window.as_secs_f64() / max.as_secs_f64();
    let bound = (mean + 6.0 * mean.sqrt()).ceil() as u64 + 1;
    let mut peaks = Vec::new();
    for seed in 0..5 {
        let peak = peak_after_outage(devices, outage, window, true, seed);
        assert!(
            peak <= bound,
            "seed {seed}: {peak} requests in one second after the outage, bound {bound}"
        );
        peaks.push(peak);
    }
    let lockstep = peak_after_outage(devices, outage, window, false, 0);
    assert!(
        lockstep > 4 * bound,
        "without jitter the fleet should return in waves ({lockstep} in the busiest second)"
    );
    eprintln!(
        "retry storm: {devices} devices after a {outage:?} outage: busiest second {:?} requests \
         (bound {bound}, mean {mean:.1}/s); without jitter {lockstep}",
        peaks
    );
}
