//! The pipeline: sources -> decoders -> rules -> store.
//!
//! [`Processor`] is the pure part: frames, sentences, fixes, OBD readings and
//! ignition edges in, events out. [`run`] starts one task per configured source
//! ([`sources`]), all feeding one bounded channel, and hands the processor's
//! events to the store: critical ones durably (`record`), the rest through the
//! group commit (`submit`). GPS time becomes a time anchor for this boot
//! ([`gps_time`]).

pub mod gps_time;
#[cfg(feature = "serial")]
mod obd_source;
mod processor;
pub mod sources;
mod sources_config;

/// ECU id meaning "every ECU": a `NO DATA` answer to a DTC request.
pub const ALL_ECUS: u32 = u32::MAX;

pub use processor::{position_of, GpsTime, Processor, ProcessorStats};
pub use sources_config::{
    CanConfig, Elm327SourceConfig, GnssConfig, IgnitionConfig, ReplayConfig, SourcesConfig,
};

use crate::clock::SharedClock;
use crate::rules::{RuleEvent, RulesConfig};
use crate::store::{NewEvent, Store};
use fleet_hal::candump::{Pace, ReplayProgress};
use fleet_hal::sim::{self, FramePeriods, RoadNetwork, SimOutput, Vehicle, VehicleSpec};
use fleet_protocol::Priority;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use sources::{Input, SourceCtx, SourceStatus, Stamped};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

/// `[sources.simulator]`: used when the agent runs with `--simulate`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimulatorConfig {
    pub city: SimCity,
    /// `standard` J1939 periods (EEC1 at 50 Hz), or `thinned` ones that carry the
    /// same signals in fewer frames when many vehicles share a machine.
    pub frame_rates: FrameRates,
    /// Seeds the road network; vehicles that share it share the streets.
    pub network_seed: u64,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        Self {
            city: SimCity::Rotterdam,
            frame_rates: FrameRates::Standard,
            network_seed: 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SimCity {
    Rotterdam,
    Lyon,
    Denver,
}

impl SimCity {
    pub fn city(self) -> sim::City {
        match self {
            SimCity::Rotterdam => sim::ROTTERDAM,
            SimCity::Lyon => sim::LYON,
            SimCity::Denver => sim::DENVER,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FrameRates {
    Standard,
    Thinned,
}

#[derive(Debug, Clone)]
pub struct SimOptions {
    pub seed: u64,
    /// Simulated seconds per real second; the `clock` passed to [`run`] paces it.
    pub speed: f64,
}

/// How often the loop wakes in real time when no input arrives.
const TICK: Duration = Duration::from_millis(250);
/// The rules' timers run at least this often in source time, whatever the replay
/// speed, so a replay gives the same events fast or slow.
const TICK_MS: u64 = 250;
/// Inputs waiting for the processor; a source that runs ahead waits here.
const CHANNEL_DEPTH: usize = 4_096;
/// The boot's wall clock is checked this often.
const WALL_CHECK_MS: u64 = 60_000;

/// One source as the pipeline reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceState {
    pub name: &'static str,
    /// `starting`, `up`, `down` (being reopened) or `closed` (a replay ended).
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Items a replay has handed out and lines it skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replayed: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bad_lines: Option<u64>,
}

/// What the pipeline has seen, for `status`, `/metrics` and `doctor`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PipelineStats {
    pub processor: ProcessorStats,
    pub sources: Vec<SourceState>,
    pub events: u64,
    pub gps_anchors: u64,
}

/// A live view of [`PipelineStats`], updated as the pipeline runs.
#[derive(Clone, Default)]
pub struct StatsHandle(Arc<std::sync::Mutex<PipelineStats>>);

impl StatsHandle {
    pub fn get(&self) -> PipelineStats {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn update(&self, f: impl FnOnce(&mut PipelineStats)) {
        f(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()));
    }
}

/// Run the pipeline until `shutdown` turns true (or, with `exit_at_end`, until
/// every replay has ended).
pub async fn run(
    store: Store,
    clock: SharedClock,
    sources: SourcesConfig,
    rules: RulesConfig,
    sim: Option<SimOptions>,
    config_version: u32,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    run_observed(
        store,
        clock,
        sources,
        rules,
        sim,
        config_version,
        shutdown,
        StatsHandle::default(),
    )
    .await
}

struct Started {
    names: Vec<&'static str>,
    /// Per source: a replay (its log's time is not this boot's time).
    replay: Vec<bool>,
    tasks: JoinSet<()>,
}

impl Started {
    fn spawn<F>(
        &mut self,
        name: &'static str,
        replay: bool,
        tx: &mpsc::Sender<Stamped>,
        clock: &SharedClock,
        task: impl FnOnce(SourceCtx) -> F,
    ) where
        F: std::future::Future<Output = Result<(), sources::Stopped>> + Send + 'static,
    {
        let ctx = SourceCtx {
            index: self.names.len(),
            name,
            tx: tx.clone(),
            clock: clock.clone(),
        };
        self.names.push(name);
        self.replay.push(replay);
        let fut = task(ctx);
        self.tasks.spawn(async move {
            let _ = fut.await;
        });
    }
}

fn start_sources(
    cfg: &SourcesConfig,
    sim: Option<SimOptions>,
    clock: &SharedClock,
    tx: &mpsc::Sender<Stamped>,
) -> anyhow::Result<Started> {
    let mut s = Started {
        names: Vec::new(),
        replay: Vec::new(),
        tasks: JoinSet::new(),
    };
    if let Some(sim) = sim {
        let sim_cfg = cfg.simulator.clone();
        s.spawn("simulator", false, tx, clock, |ctx| {
            simulator(ctx, sim_cfg, sim)
        });
    }
    if let Some(r) = &cfg.candump {
        let pace = Pace::from_speed(r.speed).map_err(anyhow::Error::msg)?;
        let file = r.file.clone();
        s.spawn("candump", true, tx, clock, |ctx| {
            sources::candump_replay(ctx, file, pace)
        });
    }
    if let Some(r) = &cfg.nmea_file {
        let pace = Pace::from_speed(r.speed).map_err(anyhow::Error::msg)?;
        let file = r.file.clone();
        s.spawn("nmea_file", true, tx, clock, |ctx| {
            sources::nmea_replay(ctx, file, pace)
        });
    }
    if let Some(g) = &cfg.gnss {
        if let Some(addr) = &g.gpsd {
            let addr = addr.clone();
            s.spawn("gpsd", false, tx, clock, |ctx| sources::gpsd(ctx, addr));
        }
        if let Some(path) = &g.serial {
            #[cfg(feature = "serial")]
            {
                let (path, baud) = (path.clone(), g.baud);
                s.spawn("gnss_serial", false, tx, clock, |ctx| {
                    sources::gnss_serial(ctx, path, baud)
                });
            }
            #[cfg(not(feature = "serial"))]
            anyhow::bail!("sources.gnss.serial {path}: built without the `serial` feature");
        }
    }
    if let Some(e) = &cfg.elm327 {
        #[cfg(feature = "serial")]
        {
            let e = e.clone();
            s.spawn("elm327", false, tx, clock, |ctx| obd_source::elm327(ctx, e));
        }
        #[cfg(not(feature = "serial"))]
        anyhow::bail!(
            "sources.elm327 {}: built without the `serial` feature",
            e.port
        );
    }
    if let Some(c) = &cfg.can {
        #[cfg(feature = "socketcan")]
        {
            let source = fleet_hal::socketcan::ReopeningSocketCan::new(&c.interface);
            let recorder = match &c.record_to {
                Some(path) => Some(sources::Recorder::create(path, &c.interface).map_err(|e| {
                    anyhow::anyhow!("sources.can.record_to {}: {e}", path.display())
                })?),
                None => None,
            };
            s.spawn("can", false, tx, clock, |ctx| {
                sources::can_live(ctx, source, recorder)
            });
        }
        #[cfg(not(feature = "socketcan"))]
        anyhow::bail!(
            "sources.can {}: built without the `socketcan` feature",
            c.interface
        );
    }
    if let Some(i) = &cfg.ignition {
        #[cfg(feature = "rpi")]
        {
            let pin = fleet_hal::ignition::open_gpio(i.gpio)?;
            let input = fleet_hal::ignition::DebouncedIgnition::new(
                pin,
                i.active_low,
                Duration::from_millis(i.debounce_ms),
            )?;
            s.spawn("ignition", false, tx, clock, |ctx| {
                sources::ignition(ctx, input)
            });
        }
        #[cfg(not(feature = "rpi"))]
        anyhow::bail!(
            "sources.ignition (GPIO {}): built without the `rpi` feature",
            i.gpio
        );
    }
    Ok(s)
}

/// A simulated truck as a source: its frames, sentences and ignition edges,
/// stamped with the simulation's own monotonic time.
async fn simulator(
    ctx: SourceCtx,
    cfg: SimulatorConfig,
    sim: SimOptions,
) -> Result<(), sources::Stopped> {
    let net = Arc::new(RoadNetwork::generate(cfg.city.city(), cfg.network_seed));
    let periods = match cfg.frame_rates {
        FrameRates::Standard => FramePeriods::STANDARD,
        FrameRates::Thinned => FramePeriods::THINNED,
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(sim.seed);
    let spec = VehicleSpec::truck(&mut rng, periods);
    let mut vehicle = Vehicle::new(net, spec, sim.seed, ctx.clock.mono_ms());
    tracing::info!(seed = sim.seed, speed = sim.speed, city = ?cfg.city, "simulated vehicle started");
    ctx.send_now(Input::Status(SourceStatus::Up)).await?;
    let mut outputs = Vec::new();
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let now = ctx.clock.mono_ms();
        let wall_offset = ctx.clock.wall_ms() - now as i64;
        vehicle.advance_to(now, wall_offset, &mut outputs);
        for o in outputs.drain(..) {
            match o {
                SimOutput::Can(frame) => {
                    ctx.send(frame.timestamp_us / 1000, Input::Can(frame))
                        .await?
                }
                SimOutput::Nmea(line, t_us) => ctx.send(t_us / 1000, Input::Nmea(line)).await?,
                SimOutput::Ignition(on, t_us) => ctx.send(t_us / 1000, Input::Ignition(on)).await?,
            }
        }
    }
}

/// Prints replay progress to stderr, at most every few seconds per source.
struct ProgressLog {
    last: Vec<Option<std::time::Instant>>,
}

const PROGRESS_LOG_EVERY: Duration = Duration::from_secs(5);

impl ProgressLog {
    fn report(&mut self, name: &str, source: usize, p: &ReplayProgress) {
        if self.last.len() <= source {
            self.last.resize(source + 1, None);
        }
        let due = self.last[source].is_none_or(|t| t.elapsed() >= PROGRESS_LOG_EVERY)
            && p.fraction().is_none_or(|f| f < 1.0);
        if !due {
            return;
        }
        self.last[source] = Some(std::time::Instant::now());
        let pct = p
            .fraction()
            .map(|f| format!("{:.0}%", f * 100.0))
            .unwrap_or_else(|| "?".into());
        eprintln!(
            "{name}: replaying, {pct} ({} items, {} bad lines skipped)",
            p.items, p.bad_lines
        );
    }
}

/// [`run`], publishing what it sees through `stats`.
#[allow(clippy::too_many_arguments)]
pub async fn run_observed(
    store: Store,
    clock: SharedClock,
    sources: SourcesConfig,
    rules: RulesConfig,
    sim: Option<SimOptions>,
    config_version: u32,
    mut shutdown: watch::Receiver<bool>,
    stats: StatsHandle,
) -> anyhow::Result<()> {
    let (tx, mut rx) = mpsc::channel::<Stamped>(CHANNEL_DEPTH);
    // A simulation sets its own clock (1970, a jump of hours) on purpose.
    let mut wall = WallWatch {
        flagged: sim.is_some(),
        last_check_ms: None,
    };
    let dbc = match sources.can.as_ref().and_then(|c| c.dbc.as_ref()) {
        Some(path) => Some(
            crate::decode::dbc::Database::load(path)
                .map_err(|e| anyhow::anyhow!("sources.can.dbc {}: {e}", path.display()))?,
        ),
        None => None,
    };
    let mut started = start_sources(&sources, sim, &clock, &tx)?;
    // Unless asked to exit at the end, the channel stays open after every replay
    // has ended, so the rules keep running on time alone (the engine falls
    // silent, the ignition goes off, the hold-up stops the agent) as on a bus.
    let _keep_open = (!sources.exit_at_end).then_some(tx);
    if started.names.is_empty() {
        tracing::info!("no sources are configured; the pipeline is idle");
        while !*shutdown.borrow() {
            if shutdown.changed().await.is_err() {
                break;
            }
        }
        return Ok(());
    }
    stats.update(|s| {
        s.sources = started
            .names
            .iter()
            .map(|name| SourceState {
                name,
                state: "starting",
                error: None,
                replayed: None,
                bad_lines: None,
            })
            .collect()
    });
    let replays = started.replay.iter().filter(|r| **r).count();
    let replay_only = replays == started.names.len();
    let mut closed = 0;

    let mut w = Writer {
        store: &store,
        config_version,
        events: Vec::new(),
        recorded: 0,
    };
    let mut processor = Processor::new(rules);
    if let Some(db) = dbc {
        processor.set_dbc(db);
    }
    let mut anchoring = gps_time::GpsAnchoring::new(clock.boot_id(), gps_time::BUILD_UNIX_MS);
    let mut progress = ProgressLog { last: Vec::new() };
    let mut buf = Vec::with_capacity(1024);
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut high_mono = clock.mono_ms();
    let mut last_tick = high_mono;
    let mut anchors = 0;
    // The wall clock as the agent starts, before any source could correct it.
    let start_mono = clock.mono_ms();
    wall.check(start_mono, clock.wall_ms(), None, &mut w.events);
    loop {
        let mut all_ended = false;
        tokio::select! {
            biased;
            r = shutdown.changed() => {
                if r.is_err() || *shutdown.borrow() {
                    break;
                }
            }
            n = rx.recv_many(&mut buf, 1024) => all_ended = n == 0,
            _ = ticker.tick() => {}
        }
        let wall_offset = clock.wall_ms() - clock.mono_ms() as i64;
        for s in buf.drain(..) {
            if s.mono_ms >= last_tick + TICK_MS {
                processor.on_tick(s.mono_ms, &mut w.events);
                last_tick = s.mono_ms;
            }
            high_mono = high_mono.max(s.mono_ms);
            match s.input {
                Input::Can(frame) => processor.on_can(&frame, s.mono_ms, &mut w.events),
                Input::Nmea(line) => processor.on_nmea(&line, s.mono_ms, &mut w.events),
                Input::Fix(fix) => processor.on_fix(&fix, s.mono_ms, &mut w.events),
                Input::Ignition(on) => processor.on_ignition(on, s.mono_ms, &mut w.events),
                Input::ObdReadings(r) => processor.on_obd_readings(&r, s.mono_ms, &mut w.events),
                Input::ObdDtcs { ecu, mode, codes } => {
                    processor.on_obd_dtcs(ecu, mode, &codes, s.mono_ms, &mut w.events)
                }
                Input::Status(st) => {
                    let name = started.names[s.source];
                    if st == SourceStatus::Closed {
                        closed += 1;
                        tracing::info!(source = name, "source ended");
                    }
                    if let SourceStatus::Progress(p) = &st {
                        progress.report(name, s.source, p);
                    }
                    let is_closed = st == SourceStatus::Closed;
                    stats.update(|all| apply_status(&mut all.sources[s.source], st));
                    if is_closed {
                        if let Some(p) = stats.get().sources[s.source].replayed {
                            let bad = stats.get().sources[s.source].bad_lines.unwrap_or(0);
                            eprintln!("{name}: replay ended ({p} items, {bad} bad lines skipped)");
                        }
                    }
                }
            }
            // A replay's GPS time is the log's, not this boot's, unless the replay
            // is all there is (replaying a recorded drive).
            if let Some(t) = processor.take_gps_time() {
                if !started.replay[s.source] || replay_only {
                    if let Some(a) = anchoring.offer(t.mono_ms, t.utc_ms) {
                        store.put_anchor(a).await?;
                        anchors += 1;
                        tracing::info!(uncertainty_ms = a.uncertainty_ms, "time anchored to GPS");
                    }
                }
            }
        }
        let now = clock.mono_ms().max(high_mono);
        if now >= last_tick + TICK_MS {
            processor.on_tick(now, &mut w.events);
            last_tick = now;
        }
        wall.check(
            now,
            now as i64 + wall_offset,
            anchoring.anchor(),
            &mut w.events,
        );
        w.write(wall_offset).await?;
        stats.update(|s| {
            s.processor = processor.stats();
            s.events = w.recorded;
            s.gps_anchors = anchors;
        });
        if all_ended {
            break;
        }
        if sources.exit_at_end && replays > 0 && closed >= replays && !sources.has_live_sources() {
            tracing::info!("every replay has ended; stopping");
            break;
        }
    }
    started.tasks.abort_all();
    // Whatever is open (a trip, an idle period) ends here, so nothing is lost when
    // the agent stops mid-drive.
    let now = clock.mono_ms().max(high_mono);
    let wall_offset = clock.wall_ms() - clock.mono_ms() as i64;
    processor.finish(now, &mut w.events);
    w.write_all_durably(wall_offset).await?;
    store.flush().await?;
    stats.update(|s| {
        s.processor = processor.stats();
        s.events = w.recorded;
    });
    Ok(())
}

fn apply_status(s: &mut SourceState, st: SourceStatus) {
    match st {
        SourceStatus::Up => {
            s.state = "up";
            s.error = None;
        }
        SourceStatus::Down(e) => {
            s.state = "down";
            s.error = Some(e);
        }
        SourceStatus::Closed => s.state = "closed",
        SourceStatus::Progress(p) => {
            s.replayed = Some(p.items);
            s.bad_lines = Some(p.bad_lines);
        }
    }
}

/// Marks a boot whose wall clock cannot be right, once.
struct WallWatch {
    flagged: bool,
    last_check_ms: Option<u64>,
}

impl WallWatch {
    fn check(
        &mut self,
        mono_ms: u64,
        wall_ms: i64,
        anchor: Option<&fleet_protocol::TimeAnchor>,
        out: &mut Vec<RuleEvent>,
    ) {
        if self.flagged
            || self
                .last_check_ms
                .is_some_and(|t| mono_ms < t + WALL_CHECK_MS)
        {
            return;
        }
        self.last_check_ms = Some(mono_ms);
        let true_ms = anchor.map(|a| a.rebase(mono_ms));
        if let Some(why) = gps_time::check_wall(wall_ms, gps_time::BUILD_UNIX_MS, true_ms) {
            self.flagged = true;
            tracing::warn!(
                wall_ms,
                reason = why.as_str(),
                "the wall clock is wrong; this boot's wall times are marked untrusted"
            );
            out.push(RuleEvent {
                kind: gps_time::CLOCK_IMPLAUSIBLE,
                priority: Priority::Critical,
                mono_ms,
                data: fleet_protocol::EventData::Json(serde_json::json!({
                    "wall_ms": wall_ms,
                    "build_ms": gps_time::BUILD_UNIX_MS,
                    "gps_ms": true_ms,
                    "reason": why.as_str(),
                })),
            });
        }
    }
}

/// Hands the processor's events to the store.
struct Writer<'a> {
    store: &'a Store,
    config_version: u32,
    events: Vec<RuleEvent>,
    recorded: u64,
}

impl Writer<'_> {
    fn to_new(&self, ev: RuleEvent, wall_offset: i64) -> NewEvent {
        NewEvent {
            kind: ev.kind,
            priority: ev.priority,
            mono_ms: ev.mono_ms,
            wall_ms: ev.mono_ms as i64 + wall_offset,
            config_version: self.config_version,
            data: ev.data,
        }
    }

    async fn write(&mut self, wall_offset: i64) -> anyhow::Result<()> {
        for ev in std::mem::take(&mut self.events) {
            let ev = self.to_new(ev, wall_offset);
            if ev.priority == Priority::Critical {
                self.store.record(ev).await?;
            } else {
                self.store.submit(ev).await?;
            }
            self.recorded += 1;
        }
        Ok(())
    }

    async fn write_all_durably(&mut self, wall_offset: i64) -> anyhow::Result<()> {
        for ev in std::mem::take(&mut self.events) {
            let ev = self.to_new(ev, wall_offset);
            self.store.record(ev).await?;
            self.recorded += 1;
        }
        Ok(())
    }
}
