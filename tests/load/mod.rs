//! The load generator: thousands of simulated devices syncing concurrently
//! against one `fleet-sync serve` on loopback, live-stream subscribers timing
//! fan-out, and a soak that watches the server's memory. `fleet-load` (main.rs)
//! runs it from the command line; `tests/tests/load_smoke.rs` runs a small
//! profile in CI.

pub mod device;
pub mod proc;
pub mod server;
pub mod stats;
pub mod subscriber;

use anyhow::{bail, ensure, Context, Result};
use bytes::Bytes;
use device::{now_ms, Shape, SimDevice};
use serde_json::{json, Value};
use server::LoadServer;
use stats::Latencies;
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use subscriber::{Progress, Watch};
use tokio::sync::{watch, Semaphore};
use uuid::Uuid;

/// Connections opened at once while setting up (enrolling, subscribing).
const SETUP_CONCURRENCY: usize = 64;
/// `fleet-agent`'s request timeout (`SyncOptions::request_timeout`).
const AGENT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Most devices one enrollment token admits (the server's cap).
const TOKEN_USES: usize = 10_000;

/// Where the server keeps its data.
#[derive(Debug, Clone)]
pub enum Backend {
    Sqlite,
    Postgres { url: String },
}

impl Backend {
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres { .. } => "postgres",
        }
    }
}

/// One fan-out measurement: this many subscribers while probes publish.
#[derive(Debug, Clone)]
pub struct FanoutPlan {
    pub subscribers: usize,
    /// Subscribers watch every vehicle, or only the probes.
    pub watch_all: bool,
    /// Every other device sends one more one-minute batch during the window.
    pub with_ingest: bool,
}

/// A whole run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub backend: Backend,
    pub devices: usize,
    /// Batches each device sends in the sync phase, back to back.
    pub batches: usize,
    /// Devices start over this long, evenly.
    pub ramp: Duration,
    /// Loopback source addresses, 127.0.0.2 onwards, so ports never run out.
    pub sources: u8,
    pub fanouts: Vec<FanoutPlan>,
    /// Devices whose small batches time the stream.
    pub probe_devices: usize,
    /// Batches per second from all probes together.
    pub probe_rate: f64,
    pub fanout_window: Duration,
    /// After the window, how long the probes' last positions may take to arrive.
    pub settle: Duration,
    /// Zero for no soak.
    pub soak: Duration,
    pub soak_subscribers: usize,
    /// Each device sends a one-minute batch this often during the soak.
    pub soak_period: Duration,
}

impl Plan {
    /// The CI profile: small, well under a minute on two cores with debug binaries.
    pub fn smoke(backend: Backend) -> Plan {
        Plan {
            backend,
            devices: 300,
            batches: 1,
            ramp: Duration::from_secs(1),
            sources: 4,
            fanouts: vec![
                FanoutPlan {
                    subscribers: 1,
                    watch_all: true,
                    with_ingest: false,
                },
                FanoutPlan {
                    subscribers: 100,
                    watch_all: true,
                    with_ingest: false,
                },
                FanoutPlan {
                    subscribers: 100,
                    watch_all: false,
                    with_ingest: true,
                },
            ],
            probe_devices: 4,
            probe_rate: 8.0,
            fanout_window: Duration::from_secs(3),
            settle: Duration::from_secs(10),
            soak: Duration::ZERO,
            soak_subscribers: 0,
            soak_period: Duration::from_secs(10),
        }
    }

    /// Issue 8's load: 10,000 devices, then 1,000 and 5,000 subscribers.
    pub fn full(backend: Backend) -> Plan {
        Plan {
            backend,
            devices: 10_000,
            batches: 2,
            ramp: Duration::from_secs(10),
            sources: 8,
            fanouts: vec![
                FanoutPlan {
                    subscribers: 1,
                    watch_all: true,
                    with_ingest: false,
                },
                FanoutPlan {
                    subscribers: 1_000,
                    watch_all: true,
                    with_ingest: false,
                },
                FanoutPlan {
                    subscribers: 5_000,
                    watch_all: false,
                    with_ingest: true,
                },
            ],
            probe_devices: 10,
            probe_rate: 10.0,
            fanout_window: Duration::from_secs(20),
            settle: Duration::from_secs(10),
            soak: Duration::ZERO,
            soak_subscribers: 0,
            soak_period: Duration::from_secs(60),
        }
    }

    /// Mixed load for `minutes`: devices on a cadence, subscribers, API reads.
    pub fn soak(backend: Backend, minutes: f64) -> Plan {
        Plan {
            backend,
            devices: 1_000,
            batches: 1,
            ramp: Duration::from_secs(5),
            sources: 4,
            fanouts: vec![],
            probe_devices: 5,
            probe_rate: 5.0,
            fanout_window: Duration::from_secs(5),
            settle: Duration::from_secs(10),
            soak: Duration::from_secs_f64(minutes * 60.0),
            soak_subscribers: 200,
            soak_period: Duration::from_secs(30),
        }
    }

    fn source(&self, i: usize) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(
            127,
            0,
            0,
            2 + (i % usize::from(self.sources.max(1))) as u8,
        ))
    }
}

/// Server memory and CPU over a phase.
#[derive(Debug, Clone, Default)]
pub struct ServerCost {
    pub rss_end_mib: f64,
    pub rss_peak_mib: f64,
    pub cpu_s: f64,
    /// CPU seconds per wall second (1.0 = one core busy).
    pub cores: f64,
}

#[derive(Debug, Clone)]
pub struct SyncReport {
    pub devices: usize,
    pub batches: u64,
    pub events: u64,
    pub seconds: f64,
    pub events_per_s: f64,
    pub batches_per_s: f64,
    pub ack_p50_ms: f64,
    pub ack_p99_ms: f64,
    pub ack_max_ms: f64,
    /// Acks slower than the agent's request timeout (30 s), which it would retry.
    pub acks_over_agent_timeout: usize,
    pub server: ServerCost,
    /// Devices whose stored count differs from what they sent (must be 0).
    pub devices_short: usize,
    pub events_missing: u64,
    pub reconnects: u32,
}

#[derive(Debug, Clone)]
pub struct FanoutReport {
    pub subscribers: usize,
    pub watch_all: bool,
    pub with_ingest: bool,
    pub probe_batches: u64,
    pub background_batches: u64,
    /// Ack latency of the background batches (paced over the window).
    pub background_ack_p50_ms: f64,
    pub background_ack_p99_ms: f64,
    pub expected: u64,
    pub delivered: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub closed: usize,
    /// Why the server ended streams: `(close code and reason, subscribers)`.
    pub close_reasons: Vec<(String, usize)>,
    pub connect_seconds: f64,
    pub server: ServerCost,
}

#[derive(Debug, Clone)]
pub struct SoakReport {
    pub minutes: f64,
    /// `(minutes since start, RSS MiB)`.
    pub rss: Vec<(f64, f64)>,
    pub first_third_slope_mib_per_min: f64,
    pub last_third_slope_mib_per_min: f64,
    pub levels_off: bool,
    pub batches: u64,
    pub api_reads: u64,
    pub probe_p99_ms: f64,
    pub devices_short: usize,
}

#[derive(Debug, Clone)]
pub struct Report {
    pub backend: &'static str,
    pub enroll_seconds: f64,
    pub sync: SyncReport,
    pub fanouts: Vec<FanoutReport>,
    pub soak: Option<SoakReport>,
    pub nofile_limit: u64,
}

/// Samples the server's RSS every 250 ms until dropped; the peak seen.
struct RssWatch {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<f64>,
}

impl RssWatch {
    fn start(pid: u32) -> RssWatch {
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut peak = 0f64;
            loop {
                if let Ok(s) = proc::sample(pid) {
                    peak = peak.max(s.rss_kib as f64 / 1024.0);
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                    _ = stopped.wait_for(|s| *s) => return peak,
                }
            }
        });
        RssWatch { stop, task }
    }

    async fn finish(self, pid: u32, cpu_before: f64, wall: f64) -> Result<ServerCost> {
        let _ = self.stop.send(true);
        let peak = self.task.await?;
        let now = proc::sample(pid)?;
        let cpu_s = now.cpu_s - cpu_before;
        Ok(ServerCost {
            rss_end_mib: now.rss_kib as f64 / 1024.0,
            rss_peak_mib: peak.max(now.rss_kib as f64 / 1024.0),
            cpu_s,
            cores: cpu_s / wall.max(1e-9),
        })
    }
}

/// Runs `plan` against a new server; the figures. Fails if anything sent was
/// not stored exactly once.
pub async fn run(plan: &Plan, dir: &std::path::Path) -> Result<Report> {
    let db_url = match &plan.backend {
        Backend::Sqlite => None,
        Backend::Postgres { url } => Some(url.as_str()),
    };
    // The server starts with the open-file limit this program was given, as a
    // service would; only then does the generator raise its own.
    let server = LoadServer::start(dir, db_url).await?;
    let nofile_limit = proc::raise_nofile_limit()?;
    let need = (plan.devices
        + plan
            .fanouts
            .iter()
            .map(|f| f.subscribers)
            .max()
            .unwrap_or(0)) as u64
        + 256;
    ensure!(
        nofile_limit >= need,
        "the open-file limit is {nofile_limit}, and this plan needs about {need}; raise the hard limit (ulimit -Hn)"
    );
    let result = run_on(plan, &server, nofile_limit).await;
    if result.is_err() {
        eprintln!("server log:\n{}", server.log_tail());
    }
    result
}

async fn run_on(plan: &Plan, server: &LoadServer, nofile_limit: u64) -> Result<Report> {
    let started = Instant::now();
    let mut devices = enroll_all(plan, server).await?;
    let enroll_seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "fleet-load: {} devices enrolled in {enroll_seconds:.1} s",
        devices.len()
    );

    let sync = sync_phase(plan, server, &mut devices).await?;
    eprintln!(
        "fleet-load: sync {:.0} events/s, ack p50 {:.1} ms p99 {:.1} ms",
        sync.events_per_s, sync.ack_p50_ms, sync.ack_p99_ms
    );
    let mut fanouts = Vec::new();
    for f in &plan.fanouts {
        let r = fanout_phase(plan, f, server, &mut devices).await?;
        eprintln!(
            "fleet-load: {} subscribers: {}/{} delivered, p50 {:.1} ms p99 {:.1} ms",
            r.subscribers, r.delivered, r.expected, r.p50_ms, r.p99_ms
        );
        fanouts.push(r);
    }
    let soak = if plan.soak > Duration::ZERO {
        Some(soak_phase(plan, server, &mut devices).await?)
    } else {
        None
    };
    verify_counts(server, &devices)
        .await
        .map(|(short, missing)| {
            if short > 0 {
                eprintln!("fleet-load: {short} devices are {missing} events short at the end");
            }
        })?;
    Ok(Report {
        backend: plan.backend.name(),
        enroll_seconds,
        sync,
        fanouts,
        soak,
        nofile_limit,
    })
}

async fn enroll_all(plan: &Plan, server: &LoadServer) -> Result<Vec<SimDevice>> {
    let mut tokens = Vec::new();
    for chunk in 0..plan.devices.div_ceil(TOKEN_USES) {
        let uses = (plan.devices - chunk * TOKEN_USES).min(TOKEN_USES);
        tokens.push(server.token(uses as u32).await?);
    }
    let gate = Arc::new(Semaphore::new(SETUP_CONCURRENCY));
    let mut tasks = Vec::with_capacity(plan.devices);
    for i in 0..plan.devices {
        let gate = gate.clone();
        let token = tokens[i / TOKEN_USES].clone();
        let (addr, source) = (server.addr, plan.source(i));
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire().await?;
            SimDevice::enroll(addr, source, &token, i as u32).await
        }));
    }
    let mut out = Vec::with_capacity(plan.devices);
    for (i, t) in tasks.into_iter().enumerate() {
        out.push(t.await?.with_context(|| format!("enrolling device {i}"))?);
    }
    Ok(out)
}

/// Every device sends `plan.batches` batches back to back, starting over the ramp.
async fn sync_phase(
    plan: &Plan,
    server: &LoadServer,
    devices: &mut Vec<SimDevice>,
) -> Result<SyncReport> {
    // Frames are made before the clock starts, so the generator's codec work
    // does not compete with the server for the CPU being measured.
    let now = now_ms();
    let mut frames: Vec<Vec<(Bytes, u64, u64)>> = Vec::with_capacity(devices.len());
    let mut events = 0u64;
    for (i, d) in devices.iter_mut().enumerate() {
        let mut mine = Vec::with_capacity(plan.batches);
        for b in 0..plan.batches {
            let shape = Shape::of_device(i);
            let first = d.recording.next_seq;
            let (frame, last) = d.next_frame(shape, now - ((plan.batches - b) as i64) * 1_000)?;
            let n = last - first + 1;
            events += n;
            mine.push((frame, last, n));
        }
        frames.push(mine);
    }
    let pid = server.pid();
    let cpu_before = proc::sample(pid)?.cpu_s;
    let rss = RssWatch::start(pid);
    let n = devices.len();
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for (i, (mut d, mine)) in std::mem::take(devices).into_iter().zip(frames).enumerate() {
        let delay = plan.ramp.mul_f64(i as f64 / n.max(1) as f64);
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(tokio::time::Instant::from_std(started + delay)).await;
            let mut lat = Latencies::default();
            for (frame, last, _) in mine {
                match d.send(frame, last).await {
                    Ok(took) => lat.push(took),
                    Err(e) => return (d, lat, Err(e)),
                }
            }
            (d, lat, Ok(()))
        }));
    }
    let mut lat = Latencies::default();
    let mut first_err = None;
    for t in tasks {
        let (d, l, r) = t.await?;
        if let (Err(e), None) = (r, &first_err) {
            first_err = Some(e.context(format!("device {}", d.device)));
        }
        lat.extend(l);
        devices.push(d);
    }
    let seconds = started.elapsed().as_secs_f64();
    let server_cost = rss.finish(pid, cpu_before, seconds).await?;
    if let Some(e) = first_err {
        return Err(e);
    }
    let (devices_short, events_missing) = verify_counts(server, devices).await?;
    let batches = lat.len() as u64;
    Ok(SyncReport {
        devices: n,
        batches,
        events,
        seconds,
        events_per_s: events as f64 / seconds,
        batches_per_s: batches as f64 / seconds,
        ack_p50_ms: lat.percentile_ms(50.0),
        ack_p99_ms: lat.percentile_ms(99.0),
        ack_max_ms: lat.max_ms(),
        acks_over_agent_timeout: lat.over(AGENT_REQUEST_TIMEOUT),
        server: server_cost,
        devices_short,
        events_missing,
        reconnects: devices.iter().map(|d| d.reconnects).sum(),
    })
}

/// Devices whose server-side count differs from what they had acknowledged as
/// stored, and how many events are missing in all.
async fn verify_counts(server: &LoadServer, devices: &[SimDevice]) -> Result<(usize, u64)> {
    let counts = server.event_counts().await?;
    let mut short = 0;
    let mut missing = 0u64;
    for d in devices {
        let sent = d.recording.next_seq - 1;
        let stored = counts.get(&d.device.to_string()).copied().unwrap_or(0);
        if stored != sent || d.stored != sent {
            short += 1;
            missing += sent.saturating_sub(stored);
        }
    }
    Ok((short, missing))
}

async fn connect_subscribers(
    plan: &Plan,
    server: &LoadServer,
    count: usize,
    watch_spec: Watch,
    probes: Arc<HashSet<Uuid>>,
    stop: &watch::Receiver<bool>,
) -> Result<(
    Vec<tokio::task::JoinHandle<Result<subscriber::Seen>>>,
    Arc<Progress>,
)> {
    let progress = Arc::new(Progress::default());
    let gate = Arc::new(Semaphore::new(SETUP_CONCURRENCY));
    let mut subs = Vec::with_capacity(count);
    for i in 0..count {
        let (gate, key, w, probes, progress, stop) = (
            gate.clone(),
            server.api_key.clone(),
            watch_spec.clone(),
            probes.clone(),
            progress.clone(),
            stop.clone(),
        );
        let (addr, source) = (server.addr, plan.source(i + 1));
        subs.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await?;
            let before = progress.subscribed.load(Ordering::Relaxed);
            let run = subscriber::run(addr, source, key, w, probes, progress.clone(), stop);
            // The permit is held until this subscriber is in (or failed).
            let mut run = Box::pin(run);
            let mut permit = Some(permit);
            loop {
                tokio::select! {
                    r = &mut run => return r,
                    _ = tokio::time::sleep(Duration::from_millis(5)), if permit.is_some() => {
                        if progress.subscribed.load(Ordering::Relaxed) > before {
                            permit = None;
                        }
                    }
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while (progress.subscribed.load(Ordering::Relaxed) as usize) < count {
        if let Some(i) = subs.iter().position(|s| s.is_finished()) {
            let r = subs.swap_remove(i).await?;
            bail!(
                "a subscriber ended while connecting: {:?}",
                r.map(|s| s.closed)
            );
        }
        ensure!(
            Instant::now() < deadline,
            "only {} of {count} subscribers connected in 120 s",
            progress.subscribed.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok((subs, progress))
}

/// Probes publish for the window while `fan.subscribers` listen; with ingest,
/// every other device sends one one-minute batch spread over the window.
async fn fanout_phase(
    plan: &Plan,
    fan: &FanoutPlan,
    server: &LoadServer,
    devices: &mut Vec<SimDevice>,
) -> Result<FanoutReport> {
    let probes_n = plan.probe_devices.min(devices.len());
    let probes: Arc<HashSet<Uuid>> =
        Arc::new(devices[..probes_n].iter().map(|d| d.device).collect());
    let watch_spec = if fan.watch_all {
        Watch::All
    } else {
        Watch::Vehicles(devices[..probes_n].iter().map(|d| d.device).collect())
    };
    let (stop, stopped) = watch::channel(false);
    let t0 = Instant::now();
    let (subs, progress) = connect_subscribers(
        plan,
        server,
        fan.subscribers,
        watch_spec,
        probes.clone(),
        &stopped,
    )
    .await?;
    let connect_seconds = t0.elapsed().as_secs_f64();

    let pid = server.pid();
    let cpu_before = proc::sample(pid)?.cpu_s;
    let rss = RssWatch::start(pid);
    let started = Instant::now();
    let window = plan.fanout_window;
    let mut all = std::mem::take(devices);
    let others: Vec<SimDevice> = all.split_off(probes_n);
    let probe_devs = all;
    // Each probe sends at probe_rate / probes per second, offset so they interleave.
    let period = Duration::from_secs_f64(probes_n as f64 / plan.probe_rate);
    let mut tasks = Vec::new();
    for (i, mut d) in probe_devs.into_iter().enumerate() {
        let offset = period.mul_f64(i as f64 / probes_n as f64);
        tasks.push(tokio::spawn(async move {
            let mut sent = 0u64;
            let mut next = started + offset;
            while next < started + window {
                tokio::time::sleep_until(tokio::time::Instant::from_std(next)).await;
                let r = d.next_frame(Shape::Probe, now_ms());
                let r = match r {
                    Ok((frame, last)) => d.send(frame, last).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = r {
                    return (d, sent, Err(e));
                }
                sent += 1;
                next += period;
            }
            (d, sent, Ok(()))
        }));
    }
    let n_others = others.len();
    let mut background = Vec::new();
    if fan.with_ingest {
        for (i, mut d) in others.into_iter().enumerate() {
            let at = started + window.mul_f64(i as f64 / n_others.max(1) as f64);
            background.push(tokio::spawn(async move {
                tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
                let r = match d.next_frame(Shape::OneMinute, now_ms()) {
                    Ok((frame, last)) => d.send(frame, last).await.map(Some),
                    Err(e) => Err(e),
                };
                (d, r)
            }));
        }
    } else {
        background.extend(
            others
                .into_iter()
                .map(|d| tokio::spawn(async move { (d, Ok(None)) })),
        );
    }
    let mut probe_batches = 0;
    let mut first_err: Option<anyhow::Error> = None;
    for t in tasks {
        let (d, sent, r) = t.await?;
        probe_batches += sent;
        if let Err(e) = r {
            first_err.get_or_insert(e);
        }
        devices.push(d);
    }
    let mut background_batches = 0;
    let mut background_acks = Latencies::default();
    for t in background {
        let (d, r) = t.await?;
        match r {
            Ok(Some(took)) => {
                background_batches += 1;
                background_acks.push(took);
            }
            Ok(None) => {}
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
        devices.push(d);
    }
    // Let the last deliveries arrive (bounded), then stop everyone.
    let expected = probe_batches * fan.subscribers as u64;
    let settle = Instant::now() + plan.settle;
    while progress.probe_events.load(Ordering::Relaxed) < expected && Instant::now() < settle {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let wall = started.elapsed().as_secs_f64();
    let _ = stop.send(true);
    let mut lat = Latencies::default();
    let mut delivered = 0;
    let mut closed = 0;
    let mut reasons: std::collections::BTreeMap<String, usize> = Default::default();
    for s in subs {
        match s.await? {
            Ok(seen) => {
                delivered += seen.probe_events;
                if let Some(why) = seen.closed {
                    closed += 1;
                    *reasons.entry(why).or_default() += 1;
                }
                lat.extend(seen.latencies);
            }
            Err(e) => {
                closed += 1;
                *reasons.entry(format!("{e:#}")).or_default() += 1;
            }
        }
    }
    let server_cost = rss.finish(pid, cpu_before, wall).await?;
    if let Some(e) = first_err {
        return Err(e.context("a device failed during the fan-out window"));
    }
    Ok(FanoutReport {
        subscribers: fan.subscribers,
        watch_all: fan.watch_all,
        with_ingest: fan.with_ingest,
        probe_batches,
        background_batches,
        background_ack_p50_ms: background_acks.percentile_ms(50.0),
        background_ack_p99_ms: background_acks.percentile_ms(99.0),
        expected,
        delivered,
        p50_ms: lat.percentile_ms(50.0),
        p99_ms: lat.percentile_ms(99.0),
        max_ms: lat.max_ms(),
        closed,
        close_reasons: reasons.into_iter().collect(),
        connect_seconds,
        server: server_cost,
    })
}

/// Mixed load for `plan.soak`: every device sends a one-minute batch each
/// `soak_period`, subscribers watch every vehicle, and the API is read twice a
/// second; the server's RSS is sampled every few seconds.
async fn soak_phase(
    plan: &Plan,
    server: &LoadServer,
    devices: &mut Vec<SimDevice>,
) -> Result<SoakReport> {
    let probes: Arc<HashSet<Uuid>> = Arc::new(devices.iter().map(|d| d.device).collect());
    let (stop, stopped) = watch::channel(false);
    let (subs, _progress) = connect_subscribers(
        plan,
        server,
        plan.soak_subscribers,
        Watch::All,
        probes,
        &stopped,
    )
    .await?;
    let started = Instant::now();
    let end = started + plan.soak;
    let n = devices.len();
    let mut tasks = Vec::new();
    for (i, mut d) in std::mem::take(devices).into_iter().enumerate() {
        let period = plan.soak_period;
        let offset = period.mul_f64(i as f64 / n.max(1) as f64);
        tasks.push(tokio::spawn(async move {
            let mut sent = 0u64;
            let mut next = started + offset;
            while next < end {
                tokio::time::sleep_until(tokio::time::Instant::from_std(next)).await;
                let r = match d.next_frame(Shape::OneMinute, now_ms()) {
                    Ok((frame, last)) => d.send(frame, last).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = r {
                    return (d, sent, Err(e));
                }
                sent += 1;
                next += period;
            }
            (d, sent, Ok(()))
        }));
    }
    let pid = server.pid();
    let sample_every = (plan.soak / 60).max(Duration::from_secs(2));
    let mut rss = Vec::new();
    let mut api_reads = 0u64;
    let mut next_sample = started;
    while Instant::now() < end {
        if Instant::now() >= next_sample {
            let s = proc::sample(pid)?;
            rss.push((
                started.elapsed().as_secs_f64() / 60.0,
                s.rss_kib as f64 / 1024.0,
            ));
            next_sample += sample_every;
        }
        let path = if api_reads % 2 == 0 {
            "/api/v1/devices"
        } else {
            "/api/v1/vehicles"
        };
        server.call("GET", path, &server.api_key, None).await?;
        api_reads += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mut batches = 0;
    let mut first_err = None;
    for t in tasks {
        let (d, sent, r) = t.await?;
        batches += sent;
        if let Err(e) = r {
            first_err.get_or_insert(e);
        }
        devices.push(d);
    }
    let _ = stop.send(true);
    let mut lat = Latencies::default();
    for s in subs {
        if let Ok(seen) = s.await? {
            lat.extend(seen.latencies);
        }
    }
    if let Some(e) = first_err {
        return Err(e.context("a device failed during the soak"));
    }
    let (devices_short, _) = verify_counts(server, devices).await?;
    let third = rss.len() / 3;
    let first_third_slope_mib_per_min = stats::slope(&rss[..third.max(2).min(rss.len())]);
    let last_third_slope_mib_per_min =
        stats::slope(&rss[rss.len() - third.max(2).min(rss.len())..]);
    let levels_off = levels_off(first_third_slope_mib_per_min, last_third_slope_mib_per_min);
    Ok(SoakReport {
        minutes: plan.soak.as_secs_f64() / 60.0,
        rss,
        first_third_slope_mib_per_min,
        last_third_slope_mib_per_min,
        levels_off,
        batches,
        api_reads,
        probe_p99_ms: lat.percentile_ms(99.0),
        devices_short,
    })
}

/// Memory levels off when the last third grows by at most 1 MiB a minute, or
/// by at most a fifth of the first third's rate (warm-up: caches, pools).
pub fn levels_off(first_slope: f64, last_slope: f64) -> bool {
    last_slope <= 1.0 || last_slope <= 0.2 * first_slope
}

impl Report {
    pub fn to_json(&self) -> Value {
        let cost = |c: &ServerCost| {
            json!({"rss_end_mib": round1(c.rss_end_mib), "rss_peak_mib": round1(c.rss_peak_mib),
                   "cpu_s": round1(c.cpu_s), "cores": round2(c.cores)})
        };
        let s = &self.sync;
        json!({
            "backend": self.backend,
            "nofile_limit": self.nofile_limit,
            "enroll_seconds": round1(self.enroll_seconds),
            "sync": {
                "devices": s.devices, "batches": s.batches, "events": s.events, "seconds": round2(s.seconds),
                "events_per_s": s.events_per_s.round(), "batches_per_s": round1(s.batches_per_s),
                "ack_p50_ms": round1(s.ack_p50_ms), "ack_p99_ms": round1(s.ack_p99_ms), "ack_max_ms": round1(s.ack_max_ms), "acks_over_agent_timeout": s.acks_over_agent_timeout,
                "server": cost(&s.server), "devices_short": s.devices_short, "events_missing": s.events_missing,
                "reconnects": s.reconnects,
            },
            "fanout": self.fanouts.iter().map(|f| json!({
                "subscribers": f.subscribers, "watch": if f.watch_all { "all" } else { "probes" },
                "with_ingest": f.with_ingest, "probe_batches": f.probe_batches,
                "background_batches": f.background_batches,
                "background_ack_p50_ms": round1(f.background_ack_p50_ms), "background_ack_p99_ms": round1(f.background_ack_p99_ms), "expected": f.expected, "delivered": f.delivered,
                "p50_ms": round1(f.p50_ms), "p99_ms": round1(f.p99_ms), "max_ms": round1(f.max_ms),
                "closed": f.closed, "close_reasons": f.close_reasons.iter().map(|(w, n)| json!({"reason": w, "subscribers": n})).collect::<Vec<_>>(), "connect_seconds": round1(f.connect_seconds), "server": cost(&f.server),
            })).collect::<Vec<_>>(),
            "soak": self.soak.as_ref().map(|k| json!({
                "minutes": round1(k.minutes), "batches": k.batches, "api_reads": k.api_reads,
                "rss_mib": k.rss.iter().map(|(m, r)| json!([round2(*m), round1(*r)])).collect::<Vec<_>>(),
                "first_third_slope_mib_per_min": round2(k.first_third_slope_mib_per_min),
                "last_third_slope_mib_per_min": round2(k.last_third_slope_mib_per_min),
                "levels_off": k.levels_off, "probe_p99_ms": round1(k.probe_p99_ms), "devices_short": k.devices_short,
            })),
        })
    }
}

/// A URL for `fleet-sync --database-url` from a tokio-postgres config.
pub fn postgres_url(c: &tokio_postgres::Config) -> Result<String> {
    let host = match c.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => bail!("FLEET_TEST_PG_URL must name a TCP host"),
    };
    let port = c.get_ports().first().copied().unwrap_or(5432);
    let user = c.get_user().context("no user")?;
    let password = c
        .get_password()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .unwrap_or_default();
    let db = c.get_dbname().context("no database")?;
    Ok(format!("postgres://{user}:{password}@{host}:{port}/{db}"))
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_that_keeps_climbing_does_not_level_off_but_a_warm_up_does() {
        assert!(levels_off(40.0, 0.3));
        assert!(levels_off(40.0, 6.0));
        assert!(!levels_off(5.0, 4.0));
        assert!(!levels_off(0.0, 2.0));
    }

    #[test]
    fn devices_spread_over_the_source_addresses() {
        let plan = Plan::smoke(Backend::Sqlite);
        let sources: HashSet<IpAddr> = (0..100).map(|i| plan.source(i)).collect();
        assert_eq!(sources.len(), 4);
        assert!(sources.contains(&IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))));
    }
}
