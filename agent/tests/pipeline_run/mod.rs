//! The pipeline run on a store in a test's folder until its stats say enough, for
//! the tests against real peers (`mod pipeline_run;`).

use fleet_agent::clock::{SharedClock, SimClock};
use fleet_agent::pipeline::{self, PipelineStats, SourcesConfig, StatsHandle};
use fleet_agent::rules::RulesConfig;
use fleet_agent::store::{Store, StoreOptions};
use fleet_protocol::{BootId, Event};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    let boot = BootId::random();
    let store = Store::open(dir, boot, StoreOptions::default()).expect("store");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64;
    let clock: SharedClock = Arc::new(SimClock::new(boot, 5_000, now, 1.0));
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let stats = StatsHandle::default();
    let task = tokio::spawn(pipeline::run_observed(
        store.clone(),
        clock,
        sources,
        RulesConfig::default(),
        None,
        1,
        shutdown,
        stats.clone(),
    ));
    let t0 = Instant::now();
    while !done(&stats.get()) {
        assert!(t0.elapsed() < limit, "{:?}", stats.get());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.send(true).expect("pipeline listening");
    tokio::time::timeout(stop_within, task)
        .await
        .expect("stops within its bound")
        .expect("joined")
        .expect("pipeline ran");

    let mut events = Vec::new();
    let mut after = 0;
    while let Some(b) = store.read_batch(after, 1000).await.expect("read") {
        after = b.last_seq;
        events.extend(b.events);
    }
    (stats.get(), events)
}
