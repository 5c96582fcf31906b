//! `fleet-agent run`: open the store, run the pipeline and the sync loop side by
//! side, and stop them in order on shutdown or SIGTERM/SIGINT — pipeline first,
//! then sync, then a final flush — each within a bounded time.

use crate::clock::{wall_now_ms, Clock, SharedClock, SimClock, SystemClock};
use crate::config::{AgentConfig, EnrollmentConfig};
use crate::identity::{self, EnrollError, EnrollOptions, Identity, IdentityError};
use crate::metrics;
use crate::pipeline::{self, SimOptions};
use crate::power;
use crate::store::Store;
use crate::sync;
use crate::sync::backoff::Backoff;
use crate::systemd;
use anyhow::Context;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long each part may take to stop before it is abandoned.
const STOP_GRACE: Duration = Duration::from_secs(5);

#[derive(Default)]
pub struct RunOptions {
    pub data_dir: PathBuf,
    /// Run on simulated sources instead of the configured hardware.
    pub simulate: Option<SimOptions>,
    /// The clock to use; by default the system clock, or a clock running
    /// `simulate.speed` times real time.
    pub clock: Option<SharedClock>,
    /// When set, the sync link is up only while it holds true.
    pub online: Option<watch::Receiver<bool>>,
    /// Stops the daemon when it turns true (SIGTERM and SIGINT do too).
    pub shutdown: Option<watch::Receiver<bool>>,
}

pub async fn run(cfg: AgentConfig, opts: RunOptions) -> anyhow::Result<()> {
    cfg.validate()?;
    let clock = opts
        .clock
        .clone()
        .unwrap_or_else(|| default_clock(opts.simulate.as_ref()));
    let store = Store::open(&opts.data_dir, clock.boot_id(), cfg.store_options())
        .with_context(|| format!("cannot open the store in {}", opts.data_dir.display()))?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let watcher = tokio::spawn(watch_for_stop(opts.shutdown.clone(), stop_tx.clone()));

    let identity = match Identity::load(&opts.data_dir) {
        Ok(id) => Some(id),
        Err(IdentityError::NotEnrolled(path)) => {
            if cfg.enrollment.is_none() {
                tracing::warn!(path = %path.display(), "not enrolled; recording locally only until `fleet-agent enroll` is run and the agent restarted");
            }
            None
        }
        Err(e) => {
            watcher.abort();
            store.close().await?;
            return Err(e.into());
        }
    };
    metrics::agent().set_enrolled(identity.is_some());
    let device_id = identity.as_ref().map(|id| id.device_id);
    let pipeline_stats = pipeline::StatsHandle::default();
    let (rules, applied_version) = sync::control::effective_rules(&cfg.rules, &opts.data_dir);
    let (applied_tx, applied_rx) = watch::channel(applied_version.unwrap_or(0));
    let control = control_link(&cfg, &opts, applied_tx, pipeline_stats.clone());
    let sync_task: Option<JoinHandle<anyhow::Result<()>>> = match (identity, &cfg.enrollment) {
        (Some(id), _) => start_sync(
            &cfg,
            &opts,
            &store,
            &clock,
            id,
            stop_rx.clone(),
            Some(control.clone()),
        ),
        (None, Some(enrollment)) => {
            let first_boot = FirstBoot {
                enrollment: enrollment.clone(),
                data_dir: opts.data_dir.clone(),
                kind: match cfg.device.role {
                    crate::config::Role::Kiosk => fleet_protocol::api::DeviceKind::Kiosk,
                    crate::config::Role::Vehicle => fleet_protocol::api::DeviceKind::Vehicle,
                },
                backoff: Backoff::new(
                    Duration::from_millis(cfg.sync.backoff_base_ms),
                    Duration::from_millis(cfg.sync.backoff_max_ms),
                ),
                online: opts.online.clone(),
                stop: stop_rx.clone(),
            };
            let (cfg, opts_online, store, clock, stop) = (
                cfg.clone(),
                opts.online.clone(),
                store.clone(),
                clock.clone(),
                stop_rx.clone(),
            );
            Some(tokio::spawn(async move {
                let Some(id) = first_boot.enroll().await else {
                    return Ok(());
                };
                metrics::agent().set_enrolled(true);
                let opts = RunOptions {
                    online: opts_online,
                    ..RunOptions::default()
                };
                match start_sync(&cfg, &opts, &store, &clock, id, stop, Some(control)) {
                    Some(task) => flatten(task.await, "sync"),
                    None => Ok(()),
                }
            }))
        }
        (None, None) => None,
    };
    let pipeline_stats = pipeline::StatsHandle::default();
    let metrics_task = start_metrics(
        &cfg,
        &store,
        &clock,
        pipeline_stats.clone(),
        stop_rx.clone(),
    )
    .await;

    let hold_up = start_hold_up(&cfg, &clock, pipeline_stats.clone(), stop_tx.clone());
    let mut pipeline_task = tokio::spawn(run_pipeline(
        PipelineRun {
            store: store.clone(),
            clock: clock.clone(),
            sources: cfg.sources.clone(),
            base_rules: cfg.rules.clone(),
            sim: opts.simulate.clone(),
            local_version: cfg.version,
            data_dir: opts.data_dir.clone(),
            stats: pipeline_stats,
        },
        (rules, applied_version),
        stop_rx.clone(),
        applied_rx,
    ));
    let mut kiosk_task = (cfg.device.role == crate::config::Role::Kiosk).then(|| {
        tokio::spawn(crate::kiosk::run(crate::kiosk::KioskRun {
            cfg: cfg.kiosk.clone(),
            store: store.clone(),
            clock: clock.clone(),
            data_dir: opts.data_dir.clone(),
            device_id,
            config_version: cfg.version,
            stop: stop_rx.clone(),
        }))
    });
    let notifier = systemd::Notifier::from_env();
    notifier.ready("recording");
    let watchdog = tokio::spawn(systemd::keep_alive(notifier.clone(), store.clone()));

    let mut stopping = stop_rx.clone();
    let kiosk_ended = async {
        match kiosk_task.as_mut() {
            Some(t) => t.await,
            None => std::future::pending().await,
        }
    };
    let mut kiosk_result = None;
    let pipeline_result = tokio::select! {
        r = &mut pipeline_task => Some(r),
        r = kiosk_ended => {
            // A kiosk that cannot run (its UI port taken, its lines unusable)
            // stops the agent rather than leave a dead screen.
            kiosk_result = Some(flatten(r, "kiosk"));
            None
        }
        _ = stopping.wait_for(|s| *s) => None,
    };
    let _ = stop_tx.send(true);
    watcher.abort();
    watchdog.abort();
    let ignition_stop = hold_up.is_some_and(|(task, fired)| {
        task.abort();
        fired.load(Ordering::SeqCst)
    });
    if let Some(t) = metrics_task {
        t.abort();
    }
    notifier.stopping();

    let pipeline_result = match pipeline_result {
        Some(r) => flatten(r, "pipeline"),
        None => stop_within(pipeline_task, "pipeline").await,
    };
    let sync_result = match sync_task {
        Some(t) => stop_within(t, "sync").await,
        None => Ok(()),
    };
    let kiosk_result = match (kiosk_result, kiosk_task) {
        (Some(r), _) => r,
        (None, Some(t)) => stop_within(t, "kiosk").await,
        (None, None) => Ok(()),
    };
    let flushed = store.flush().await;
    let closed = store.close().await;
    match &flushed {
        Ok(seq) => tracing::info!(last_seq = seq, "store flushed; stopped"),
        Err(e) => {
            tracing::error!(error = %e, "final flush failed: events queued in the last group-commit window may be lost")
        }
    }
    pipeline_result?;
    sync_result?;
    kiosk_result?;
    flushed?;
    closed?;
    if ignition_stop {
        power::power_off(&cfg.power.poweroff_command).await;
    }
    Ok(())
}

/// Watch the ignition and stop the agent once it has been off for the hold-up
/// time (`[power] ignition_off_stop_s`). The flag says whether it did.
fn start_hold_up(
    cfg: &AgentConfig,
    clock: &SharedClock,
    stats: pipeline::StatsHandle,
    stop: watch::Sender<bool>,
) -> Option<(JoinHandle<()>, Arc<AtomicBool>)> {
    let after_s = cfg.power.ignition_off_stop_s;
    if after_s == 0 {
        return None;
    }
    let clock = clock.clone();
    let fired = Arc::new(AtomicBool::new(false));
    let flag = fired.clone();
    let task = tokio::spawn(async move {
        let mut hold_up = power::HoldUp::new(after_s);
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tick.tick().await;
            if hold_up.observe(stats.get().processor.ignition_on, clock.mono_ms()) {
                tracing::info!(after_s, "ignition off for the hold-up time; stopping");
                flag.store(true, Ordering::SeqCst);
                let _ = stop.send(true);
                return;
            }
        }
    });
    Some((task, fired))
}

fn default_clock(simulate: Option<&SimOptions>) -> SharedClock {
    let system = SystemClock::new();
    match simulate {
        Some(sim) if (sim.speed - 1.0).abs() > f64::EPSILON => Arc::new(SimClock::new(
            system.boot_id(),
            system.mono_ms(),
            wall_now_ms(),
            sim.speed,
        )),
        _ => Arc::new(system),
    }
}

struct PipelineRun {
    store: Store,
    clock: SharedClock,
    sources: pipeline::SourcesConfig,
    base_rules: crate::rules::RulesConfig,
    sim: Option<SimOptions>,
    /// Stamped on events while no desired config from the server applies.
    local_version: u32,
    data_dir: PathBuf,
    stats: pipeline::StatsHandle,
}

/// Runs the pipeline on the effective rules, and restarts it on the new rules
/// whenever the sync loop keeps a new desired config, so events from then on
/// carry that config's version.
async fn run_pipeline(
    p: PipelineRun,
    mut current: (crate::rules::RulesConfig, Option<u32>),
    stop: watch::Receiver<bool>,
    mut applied: watch::Receiver<u32>,
) -> anyhow::Result<()> {
    loop {
        let (rules, version) = current;
        let version = version.unwrap_or(p.local_version);
        let (inner_tx, inner_rx) = watch::channel(false);
        let mut task = tokio::spawn(pipeline::run_observed(
            p.store.clone(),
            p.clock.clone(),
            p.sources.clone(),
            rules,
            p.sim.clone(),
            version,
            inner_rx,
            p.stats.clone(),
        ));
        let mut stopping = stop.clone();
        tokio::select! {
            r = &mut task => return flatten(r, "pipeline"),
            _ = async { let _ = stopping.wait_for(|s| *s).await; } => {
                let _ = inner_tx.send(true);
                return flatten(task.await, "pipeline");
            }
            changed = applied.changed() => {
                let _ = inner_tx.send(true);
                flatten(task.await, "pipeline")?;
                if changed.is_err() {
                    // The sync loop is gone: run on as configured until stopped.
                    applied = watch::channel(0).1;
                }
            }
        }
        current = sync::control::effective_rules(&p.base_rules, &p.data_dir);
        tracing::info!(version = ?current.1, "pipeline restarted on the new desired config");
    }
}

/// What the sync loop needs for the control plane: where the applied config
/// lives, and what the hardware looks like from the pipeline's side.
fn control_link(
    cfg: &AgentConfig,
    opts: &RunOptions,
    applied: watch::Sender<u32>,
    stats: pipeline::StatsHandle,
) -> sync::control::ControlLink {
    let sources = cfg.sources.clone();
    let camera = cfg.device.camera.clone();
    sync::control::ControlLink {
        data_dir: opts.data_dir.clone(),
        base_rules: cfg.rules.clone(),
        applied,
        hardware: Arc::new(move || {
            let s = stats.get();
            let up = |name: &str| s.sources.iter().any(|x| x.name == name && x.state == "up");
            fleet_protocol::control::HardwareStatus {
                can_up: sources
                    .can
                    .as_ref()
                    .map(|_| up("can") || s.processor.bus_frames_per_s > 0),
                gps_fix: (sources.gnss.is_some() || sources.nmea_file.is_some())
                    .then(|| s.processor.fixes + s.processor.gpsd_fixes > 0),
                camera: camera.as_ref().map(|p| p.exists()),
            }
        }),
    }
}

fn start_sync(
    cfg: &AgentConfig,
    opts: &RunOptions,
    store: &Store,
    clock: &SharedClock,
    id: Identity,
    stop: watch::Receiver<bool>,
    control: Option<sync::control::ControlLink>,
) -> Option<JoinHandle<anyhow::Result<()>>> {
    if !cfg.sync.enabled {
        tracing::warn!("sync is disabled in the config; recording locally only");
        return None;
    }
    tracing::info!(device = %id.device_id, server = %id.server_url, "syncing");
    let mut sync_opts = cfg.sync_options(opts.online.clone());
    sync_opts.control = control;
    Some(tokio::spawn(sync::run_sync(
        store.clone(),
        id,
        clock.clone(),
        sync_opts,
        stop,
    )))
}

/// Bind the loopback metrics listener. A port already taken costs the metrics,
/// never the recording.
async fn start_metrics(
    cfg: &AgentConfig,
    store: &Store,
    clock: &SharedClock,
    pipeline: pipeline::StatsHandle,
    stop: watch::Receiver<bool>,
) -> Option<JoinHandle<()>> {
    if !cfg.metrics.enabled {
        return None;
    }
    let addr = match cfg.metrics.listen_addr() {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!("metrics are off: {e}");
            return None;
        }
    };
    match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => {
            tracing::debug!(%addr, "serving /metrics");
            Some(tokio::spawn(metrics::serve(
                listener,
                store.clone(),
                clock.clone(),
                pipeline,
                stop,
            )))
        }
        Err(e) => {
            tracing::warn!(%addr, error = %e, "cannot serve /metrics; recording goes on without it");
            None
        }
    }
}

/// A device provisioned with a one-time token and no identity yet: enroll,
/// retrying as long as it takes, while the pipeline records locally.
struct FirstBoot {
    enrollment: EnrollmentConfig,
    data_dir: PathBuf,
    kind: fleet_protocol::api::DeviceKind,
    backoff: Backoff,
    online: Option<watch::Receiver<bool>>,
    stop: watch::Receiver<bool>,
}

impl FirstBoot {
    /// The identity, or `None` if the agent is stopping first.
    async fn enroll(mut self) -> Option<Identity> {
        let e = self.enrollment.clone();
        let fingerprint = match e
            .server_fingerprint
            .as_deref()
            .map(crate::sync::tls::parse_fingerprint)
            .transpose()
        {
            Ok(fp) => fp,
            Err(err) => {
                // `validate` refuses this config; reached only through the library.
                tracing::error!(error = %err, "enrollment.server_fingerprint is invalid; not enrolling");
                return None;
            }
        };
        let mut rng = StdRng::from_entropy();
        loop {
            if !self.wait_online().await {
                return None;
            }
            let outcome = match read_token(&e) {
                Ok(token) => {
                    metrics::agent().enroll_attempt();
                    let attempt = identity::enroll_with(EnrollOptions {
                        server_url: &e.server_url,
                        token: &token,
                        data_dir: &self.data_dir,
                        name: e.name.as_deref(),
                        server_fingerprint: fingerprint,
                        kind: self.kind,
                    });
                    tokio::select! {
                        r = attempt => Some(r),
                        _ = self.stop.wait_for(|s| *s) => return None,
                    }
                }
                Err(err) => {
                    tracing::error!(error = %err, retry_in = ?FirstBootRetry::RARE, "no enrollment token to enroll with; recording locally");
                    None
                }
            };
            let delay = match outcome {
                Some(Ok(id)) => {
                    self.token_used();
                    return Some(id);
                }
                Some(Err(err)) => {
                    let delay = FirstBootRetry::after(&err, &mut self.backoff, &mut rng);
                    if err.is_transient() {
                        tracing::warn!(error = %err, attempt = self.backoff.attempt(), retry_in = ?delay, "enrollment failed; recording locally and retrying");
                    } else {
                        tracing::error!(error = %err, retry_in = ?delay, "enrollment refused; a new token is needed (replace the token file); recording locally");
                    }
                    delay
                }
                None => FirstBootRetry::RARE,
            };
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = self.stop.wait_for(|s| *s) => return None,
            }
        }
    }

    /// The identity is durable now: the token has done its job.
    fn token_used(&self) {
        match &self.enrollment.token_file {
            Some(path) => match identity::remove_token_file(path) {
                Ok(()) => tracing::info!(path = %path.display(), "enrollment token used and deleted"),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot delete the used enrollment token; it is spent, delete it by hand"),
            },
            None => tracing::warn!("enrolled with the token in the config file; it is spent, remove [enrollment] token from the config"),
        }
    }

    async fn wait_online(&mut self) -> bool {
        loop {
            if *self.stop.borrow() {
                return false;
            }
            let Some(online) = self.online.as_mut() else {
                return true;
            };
            if *online.borrow_and_update() {
                return true;
            }
            tokio::select! {
                r = online.changed() => if r.is_err() { self.online = None; },
                _ = self.stop.wait_for(|s| *s) => return false,
            }
        }
    }
}

fn read_token(e: &EnrollmentConfig) -> Result<String, IdentityError> {
    match (&e.token, &e.token_file) {
        (_, Some(path)) => identity::read_token_file(path),
        (Some(token), None) => Ok(token.expose().to_owned()),
        (None, None) => Err(IdentityError::Corrupt {
            path: PathBuf::from("[enrollment]"),
            reason: "neither token nor token_file is set".into(),
        }),
    }
}

/// How long to wait after a failed first-boot enrollment. Pure.
pub struct FirstBootRetry;

impl FirstBootRetry {
    /// A token the server refuses (unknown, expired, used up) only works again
    /// once someone replaces it: look again hourly rather than hammer the server.
    pub const RARE: Duration = Duration::from_secs(3600);

    pub fn after(err: &EnrollError, backoff: &mut Backoff, rng: &mut StdRng) -> Duration {
        if err.is_transient() {
            backoff.next_delay(rng)
        } else {
            Self::RARE
        }
    }
}

/// Turn `stop` true when `external` does, or on SIGTERM or SIGINT.
async fn watch_for_stop(external: Option<watch::Receiver<bool>>, stop: watch::Sender<bool>) {
    let external = async {
        match external {
            Some(mut rx) => {
                if rx.wait_for(|s| *s).await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
            None => std::future::pending().await,
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = external => {}
        _ = terminate => tracing::info!("SIGTERM: stopping"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: stopping"),
    }
    let _ = stop.send(true);
}

async fn stop_within(
    task: JoinHandle<anyhow::Result<()>>,
    what: &'static str,
) -> anyhow::Result<()> {
    let abort = task.abort_handle();
    match tokio::time::timeout(STOP_GRACE, task).await {
        Ok(r) => flatten(r, what),
        Err(_) => {
            abort.abort();
            tracing::warn!(what, grace = ?STOP_GRACE, "did not stop in time; abandoned");
            Ok(())
        }
    }
}

fn flatten(
    r: Result<anyhow::Result<()>, tokio::task::JoinError>,
    what: &'static str,
) -> anyhow::Result<()> {
    match r {
        Ok(r) => r.with_context(|| format!("{what} failed")),
        Err(e) if e.is_cancelled() => Ok(()),
        Err(e) => Err(anyhow::anyhow!("{what} panicked: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(status: u16, code: &str) -> EnrollError {
        EnrollError::Refused {
            status,
            code: code.into(),
            message: String::new(),
        }
    }

    #[test]
    fn a_refused_token_waits_an_hour_and_a_server_outage_backs_off() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(300));
        let mut rng = StdRng::seed_from_u64(1);
        for code in ["enrollment_token_invalid", "enrollment_token_expired"] {
            assert_eq!(
                FirstBootRetry::after(&refused(401, code), &mut backoff, &mut rng),
                FirstBootRetry::RARE
            );
        }
        assert_eq!(
            FirstBootRetry::after(
                &refused(403, "enrollment_token_used_up"),
                &mut backoff,
                &mut rng
            ),
            FirstBootRetry::RARE
        );
        assert_eq!(backoff.attempt(), 0, "refusals are not outages");
        for n in 1..=12 {
            let d = FirstBootRetry::after(&refused(503, "http_503"), &mut backoff, &mut rng);
            assert!(d <= Duration::from_secs(300), "attempt {n}: {d:?}");
        }
        assert_eq!(backoff.attempt(), 12);
    }
}
