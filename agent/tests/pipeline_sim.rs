//! A simulated truck, run hours ahead of real time through the real pipeline into
//! a real store, produces the events a fleet expects, with plausible values.

use fleet_agent::clock::{SharedClock, SimClock};
use fleet_agent::pipeline::{self, SimOptions, SourcesConfig};
use fleet_agent::rules::RulesConfig;
use fleet_agent::store::{Store, StoreOptions};
use fleet_protocol::{BootId, Event, EventData};
use std::sync::Arc;
use std::time::Duration;

const SPEED: f64 = 4_000.0;

async fn run_sim(seed: u64, real: Duration) -> (Vec<Event>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let boot = BootId::random();
    let store = Store::open(dir.path(), boot, StoreOptions::default()).expect("store");
    let clock: SharedClock = Arc::new(SimClock::new(boot, 10_000, 1_700_000_000_000, SPEED));
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(pipeline::run(
        store.clone(),
        clock.clone(),
        SourcesConfig::default(),
        RulesConfig::default(),
        Some(SimOptions { seed, speed: SPEED }),
        7,
        shutdown,
    ));
    tokio::time::sleep(real).await;
    stop.send(true).expect("pipeline listening");
    task.await.expect("joined").expect("pipeline ran");
    assert!(clock.mono_ms() > 3 * 3_600_000, "simulated hours");
    let mut events = Vec::new();
    let mut after = 0;
    while let Some(b) = store.read_batch(after, 1000).await.expect("read") {
        after = b.last_seq;
        events.extend(b.events);
    }
    (events, dir)
}

fn of<'a>(events: &'a [Event], kind: &str) -> Vec<&'a Event> {
    events.iter().filter(|e| e.kind.as_str() == kind).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_truck_yields_positions_ignition_and_trips() {
    let (events, _dir) = run_sim(11, Duration::from_secs(4)).await;
    let positions = of(&events, "position");
    assert!(positions.len() > 100, "{} positions", positions.len());
    for e in &positions {
        let EventData::Position(p) = &e.data else {
            panic!("position without a position: {e:?}")
        };
        assert!(
            (p.lat() - 51.9225).abs() < 0.15 && (p.lon() - 4.4792).abs() < 0.25,
            "far from Rotterdam: {p:?}"
        );
        assert!(
            p.speed_cms.unwrap_or(0) <= 3_611,
            "faster than 130 km/h: {p:?}"
        );
        assert_eq!(e.config_version, 7);
    }
    assert!(!of(&events, "ignition_on").is_empty());
    assert!(!of(&events, "ignition_off").is_empty());
    assert!(!of(&events, "trip_start").is_empty());
    let ends = of(&events, "trip_end");
    assert!(!ends.is_empty());
    for e in ends {
        let EventData::Json(s) = &e.data else {
            panic!("json")
        };
        let km = s["distance_m"].as_f64().expect("distance") / 1000.0;
        let max = s["max_speed_kmh"].as_f64().expect("max speed");
        let minutes = s["duration_s"].as_f64().expect("duration") / 60.0;
        assert!(km > 0.0 && km < 200.0, "trip of {km} km");
        assert!(max > 10.0 && max <= 130.0, "max speed {max}");
        assert!(
            minutes > 0.0 && km / (minutes / 60.0) < 100.0,
            "{km} km in {minutes} min"
        );
        assert_eq!(s["distance_source"], "odometer");
        assert!(s["start"]["lat"].is_number() && s["end"]["lon"].is_number());
    }
    // Times come from the clock: monotonic, and the wall clock it was given.
    assert!(events.iter().all(|e| e.time.wall_ms >= 1_700_000_000_000));
    assert!(events.windows(2).all(|w| w[0].time.hlc < w[1].time.hlc));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_truck_reports_a_position_at_least_every_ten_seconds() {
    let (events, _dir) = run_sim(5, Duration::from_secs(3)).await;
    let moving: Vec<(u64, u32)> = of(&events, "position")
        .iter()
        .filter_map(|e| match &e.data {
            EventData::Position(p) => Some((e.time.mono_ms, p.speed_cms.unwrap_or(0))),
            _ => None,
        })
        .collect();
    let gaps_while_moving = moving
        .windows(2)
        .filter(|w| w[0].1 > 300 && w[1].1 > 300)
        .map(|w| w[1].0 - w[0].0)
        .max()
        .expect("some driving");
    // Fixes fall due on whole seconds of the wall clock. At 4000x the pipeline's
    // separate reads of the monotonic and wall clocks can be simulated seconds
    // apart on a busy machine, which delays one fix by up to a fix period.
    assert!(
        gaps_while_moving <= 11_500,
        "gap {gaps_while_moving} ms while moving"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standing_truck_heartbeats_with_ignition_on_and_is_quiet_with_it_off() {
    let (events, _dir) = run_sim(8, Duration::from_secs(4)).await;
    let mut positions: Vec<u64> = of(&events, "position")
        .iter()
        .map(|e| e.time.mono_ms)
        .collect();
    positions.sort_unstable();
    let first_event = events.iter().map(|e| e.time.mono_ms).min().expect("events");
    assert!(
        positions[0] <= first_event + 1_500,
        "first position {} ms after the first event: a map shows every truck at once",
        positions[0] - first_event
    );
    // Ignition spans from the edges, in time order; the truck may start either way.
    let mut edges: Vec<(u64, bool)> = events
        .iter()
        .filter_map(|e| match e.kind.as_str() {
            "ignition_on" => Some((e.time.mono_ms, true)),
            "ignition_off" => Some((e.time.mono_ms, false)),
            _ => None,
        })
        .collect();
    edges.sort_unstable();
    assert!(edges.iter().any(|e| !e.1), "the truck parked at least once");
    let ignition_at = |t: u64| {
        edges
            .iter()
            .take_while(|(at, _)| *at <= t)
            .last()
            .map(|e| e.1)
    };
    let mut quiet_spans = 0;
    // Stopping the agent keeps the latest fix whatever the ignition: leave it out.
    positions.pop();
    for w in positions.windows(2) {
        let (a, b) = (w[0], w[1]);
        match (ignition_at(a), ignition_at(b)) {
            (Some(true), Some(true)) if !edges.iter().any(|(t, _)| a < *t && *t <= b) => assert!(
                b - a <= 31_500,
                "{} s without a position while the ignition was on",
                (b - a) / 1000
            ),
            (_, Some(false)) => {
                let off_at = edges
                    .iter()
                    .rev()
                    .find(|(at, on)| !on && *at <= b)
                    .map(|e| e.0)
                    .expect("an off edge before b");
                assert!(
                    b <= off_at + 2_000,
                    "a position {} s after the ignition went off",
                    (b - off_at) / 1000
                );
                quiet_spans += 1;
            }
            _ => {}
        }
    }
    assert!(
        quiet_spans > 0,
        "no position was checked against a parked span"
    );
}
