//! The pipeline run on a real store in a test's folder: started, watched through
//! its stats, stopped as on SIGTERM, its events read back (`mod pipeline_run;`).
#![allow(dead_code)] // each test binary uses its own part of it

use fleet_agent::clock::{SharedClock, SimClock};
use fleet_agent::pipeline::{self, PipelineStats, SourcesConfig, StatsHandle};
use fleet_agent::rules::RulesConfig;
use fleet_agent::store::{Store, StoreOptions};
use fleet_protocol::{BootId, Event};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64
}

/// A pipeline running on its own task.
pub struct Running {
    pub store: Store,
    pub stats: StatsHandle,
    pub stop: watch::Sender<bool>,
    pub task: JoinHandle<anyhow::Result<()>>,
}

/// Starts the pipeline on `sources` with default rules, its store in `dir`, on a
/// simulated clock whose wall time starts at `wall_start_ms`.
pub fn start(
    dir: &Path,
    sources: SourcesConfig,
    wall_start_ms: i64,
    config_version: u32,
) -> Running {
    let boot = BootId::random();
    let store = Store::open(dir, boot, StoreOptions::default()).expect("store");
    let clock: SharedClock = Arc::new(SimClock::new(boot, 5_000, wall_start_ms, 1.0));
    let (stop, shutdown) = watch::channel(false);
    let stats = StatsHandle::default();
    let task = tokio::spawn(pipeline::run_observed(
        store.clone(),
        clock,
        sources,
        RulesConfig::default(),
        None,
        config_version,
        shutdown,
        stats.clone(),
    ));
    Running {
        store,
        stats,
        stop,
        task,
    }
}

impl Running {
    /// Waits at most `limit` for the pipeline to end by itself.
    pub async fn finish_within(self, limit: Duration) -> (Vec<Event>, Store, PipelineStats) {
        tokio::time::timeout(limit, self.task)
            .await
            .expect("the pipeline ends by itself within its bound")
            .expect("joined")
            .expect("pipeline ran");
        let events = read_all(&self.store).await;
        (events, self.store, self.stats.get())
    }

    /// Stops it as on SIGTERM, failing if that takes longer than `within`.
    pub async fn stop_within(self, within: Duration) -> (Vec<Event>, Store, PipelineStats) {
        self.stop.send(true).expect("pipeline listening");
        self.finish_within(within).await
    }
}

/// Every event in `store`, in seq order.
pub async fn read_all(store: &Store) -> Vec<Event> {
    let mut events = Vec::new();
    let mut after = 0;
    while let Some(b) = store.read_batch(after, 1000).await.expect("read") {
        after = b.last_seq;
        events.extend(b.events);
    }
    events
}

/// Runs the pipeline on `sources`, its store in `dir`, until `done` holds for its
/// stats (failing past `limit`), stops it as on SIGTERM (failing if that takes
/// longer than `stop_within`) and returns the final stats and every stored event.
pub async fn run_until(
    dir: &Path,
    sources: SourcesConfig,
    limit: Duration,
    stop_within: Duration,
    done: impl Fn(&PipelineStats) -> bool,
) -> (PipelineStats, Vec<Event>) {
    let running = start(dir, sources, now_ms(), 1);
    let t0 = Instant::now();
    while !done(&running.stats.get()) {
        assert!(t0.elapsed() < limit, "{:?}", running.stats.get());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (events, _store, stats) = running.stop_within(stop_within).await;
    (stats, events)
}
