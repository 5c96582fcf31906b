//! `fleet-agent run`: open the store, run the pipeline and the sync loop side by
//! side, and stop them in order on shutdown or SIGTERM/SIGINT — pipeline first,
//! then sync, then a final flush — each within a bounded time.

use crate::clock::{wall_now_ms, Clock, SharedClock, SimClock, SystemClock};
use crate::config::AgentConfig;
use crate::identity::{self, EnrollOptions, Identity, IdentityError};
use crate::pipeline::{self, SimOptions};
use crate::store::Store;
use crate::sync;
use crate::systemd;
use anyhow::Context;
use std::path::PathBuf;
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

    let identity = match identity_for(&cfg, &opts).await {
        Ok(id) => id,
        Err(e) => {
            watcher.abort();
            store.close().await?;
            return Err(e);
        }
    };
    let sync_task: Option<JoinHandle<anyhow::Result<()>>> = match identity {
        Some(id) if cfg.sync.enabled => {
            tracing::info!(device = %id.device_id, server = %id.server_url, "syncing");
            Some(tokio::spawn(sync::run_sync(
                store.clone(),
                id,
                clock.clone(),
                cfg.sync_options(opts.online.clone()),
                stop_rx.clone(),
            )))
        }
        Some(_) => {
            tracing::warn!("sync is disabled in the config; recording locally only");
            None
        }
        None => None,
    };

    let mut pipeline_task = tokio::spawn(pipeline::run(
        store.clone(),
        clock.clone(),
        cfg.sources.clone(),
        cfg.rules.clone(),
        opts.simulate.clone(),
        cfg.version,
        stop_rx.clone(),
    ));
    let notifier = systemd::Notifier::from_env();
    notifier.ready("recording");
    let watchdog = tokio::spawn(systemd::keep_alive(notifier.clone(), store.clone()));

    let mut stopping = stop_rx.clone();
    let pipeline_result = tokio::select! {
        r = &mut pipeline_task => Some(r),
        _ = stopping.wait_for(|s| *s) => None,
    };
    let _ = stop_tx.send(true);
    watcher.abort();
    watchdog.abort();
    notifier.stopping();

    let pipeline_result = match pipeline_result {
        Some(r) => flatten(r, "pipeline"),
        None => stop_within(pipeline_task, "pipeline").await,
    };
    let sync_result = match sync_task {
        Some(t) => stop_within(t, "sync").await,
        None => Ok(()),
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
    flushed?;
    closed?;
    Ok(())
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

/// The stored identity; or enrollment with the token from the config; or none,
/// in which case the agent records locally until it is enrolled.
async fn identity_for(cfg: &AgentConfig, opts: &RunOptions) -> anyhow::Result<Option<Identity>> {
    match Identity::load(&opts.data_dir) {
        Ok(id) => Ok(Some(id)),
        Err(IdentityError::NotEnrolled(path)) => match &cfg.enrollment {
            Some(e) => {
                let fingerprint = e
                    .server_fingerprint
                    .as_deref()
                    .map(crate::sync::tls::parse_fingerprint)
                    .transpose()?;
                let id = identity::enroll_with(EnrollOptions {
                    server_url: &e.server_url,
                    token: e.token.expose(),
                    data_dir: &opts.data_dir,
                    name: e.name.as_deref(),
                    server_fingerprint: fingerprint,
                })
                .await
                .context("enrollment from the config failed")?;
                Ok(Some(id))
            }
            None => {
                tracing::warn!(path = %path.display(), "not enrolled; recording locally only until `fleet-agent enroll` is run and the agent restarted");
                Ok(None)
            }
        },
        Err(e) => Err(e.into()),
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
