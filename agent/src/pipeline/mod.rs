//! The pipeline: sources -> decoders -> rules -> store.
//!
//! [`Processor`] is the pure part: frames, sentences and ignition edges in, events
//! out. [`run`] is the thin async loop that feeds it from the configured sources
//! and hands its events to the store: critical ones durably (`record`), the rest
//! through the group commit (`submit`).

mod processor;

pub use processor::{position_of, Processor, ProcessorStats};

use crate::clock::SharedClock;
use crate::rules::RulesConfig;
use crate::store::{NewEvent, Store};
use fleet_hal::sim::{self, FramePeriods, RoadNetwork, SimOutput, Vehicle, VehicleSpec};
use fleet_protocol::Priority;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The `[sources]` section. Only the simulator is implemented so far; real CAN,
/// serial GNSS and ELM327 sources arrive with the vehicle-gateway work and will be
/// accepted here once they exist.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourcesConfig {
    pub simulator: SimulatorConfig,
}

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

/// How often the loop wakes, in real time.
const TICK: Duration = Duration::from_millis(250);

/// Run the pipeline until `shutdown` turns true.
pub async fn run(
    store: Store,
    clock: SharedClock,
    sources: SourcesConfig,
    rules: RulesConfig,
    sim: Option<SimOptions>,
    config_version: u32,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let Some(sim) = sim else {
        tracing::info!("no hardware sources are configured; the pipeline is idle");
        while !*shutdown.borrow() {
            if shutdown.changed().await.is_err() {
                break;
            }
        }
        return Ok(());
    };
    let cfg = &sources.simulator;
    let net = Arc::new(RoadNetwork::generate(cfg.city.city(), cfg.network_seed));
    let periods = match cfg.frame_rates {
        FrameRates::Standard => FramePeriods::STANDARD,
        FrameRates::Thinned => FramePeriods::THINNED,
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(sim.seed);
    let spec = VehicleSpec::truck(&mut rng, periods);
    let mut vehicle = Vehicle::new(net, spec, sim.seed, clock.mono_ms());
    let mut processor = Processor::new(rules);
    let mut outputs = Vec::new();
    let mut events = Vec::new();
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tracing::info!(seed = sim.seed, speed = sim.speed, city = ?cfg.city, "simulated vehicle started");
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            r = shutdown.changed() => {
                if r.is_err() || *shutdown.borrow() {
                    break;
                }
            }
        }
        if *shutdown.borrow() {
            break;
        }
        let now = clock.mono_ms();
        let wall_offset = clock.wall_ms() - now as i64;
        outputs.clear();
        vehicle.advance_to(now, wall_offset, &mut outputs);
        for o in outputs.drain(..) {
            match o {
                SimOutput::Can(frame) => {
                    processor.on_can(&frame, frame.timestamp_us / 1000, &mut events)
                }
                SimOutput::Nmea(line, t_us) => processor.on_nmea(&line, t_us / 1000, &mut events),
                SimOutput::Ignition(on, t_us) => {
                    processor.on_ignition(on, t_us / 1000, &mut events)
                }
            }
        }
        processor.on_tick(now, &mut events);
        for ev in events.drain(..) {
            let ev = NewEvent {
                kind: ev.kind,
                priority: ev.priority,
                mono_ms: ev.mono_ms,
                wall_ms: ev.mono_ms as i64 + wall_offset,
                config_version,
                data: ev.data,
            };
            if ev.priority == Priority::Critical {
                store.record(ev).await?;
            } else {
                store.submit(ev).await?;
            }
        }
    }
    // Whatever is open (a trip, an idle period) ends here, so nothing is lost when
    // the agent stops mid-drive.
    let now = clock.mono_ms();
    let wall_offset = clock.wall_ms() - now as i64;
    processor.finish(now, &mut events);
    for ev in events.drain(..) {
        store
            .record(NewEvent {
                kind: ev.kind,
                priority: ev.priority,
                mono_ms: ev.mono_ms,
                wall_ms: ev.mono_ms as i64 + wall_offset,
                config_version,
                data: ev.data,
            })
            .await?;
    }
    store.flush().await?;
    Ok(())
}
