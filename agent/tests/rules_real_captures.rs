//! The rules on real vehicles' captures (`shared/fixtures/README.md`): a heavy
//! truck idling while parked with four active faults, and a passenger car whose
//! engine starts at about 275 s and which drives off at about 282 s, read by a
//! tester polling OBD-II every 7 s. Neither has GPS or an ignition wire, so the
//! rules must infer the ignition and track motion from the bus alone.

use fleet_agent::decode::candump::parse_line;
use fleet_agent::decode::obd::Response;
use fleet_agent::decode::obd_can::{ObdCanDecoder, ObdCanItem};
use fleet_agent::pipeline::Processor;
use fleet_agent::rules::{Engine, RuleEvent, RulesConfig, Signal};
use fleet_hal::CanFrame;
use serde_json::Value;

fn fixture(rel: &str) -> Vec<CanFrame> {
    let path = format!("{}/../../shared/fixtures/{rel}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("fixture present");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| parse_line(l).expect("real capture parses").frame)
        .collect()
}

fn kinds(events: &[RuleEvent]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e.kind.as_str())
        .filter(|k| !["position", "signal", "odometer", "engine_hours"].contains(k))
        .collect()
}

fn of(events: &[RuleEvent], kind: &str) -> Vec<(u64, Value)> {
    events
        .iter()
        .filter(|e| e.kind.as_str() == kind)
        .map(|e| (e.mono_ms, e.data.to_json()))
        .collect()
}

#[test]
fn idling_truck_capture_gives_ignition_its_faults_and_an_idle_but_no_trip() {
    let frames = fixture("j1939/canedge-j1939-truck-idle-10s.log");
    let t0 = frames[0].timestamp_us;
    // The capture is ten seconds long: idle counts from 5 s here.
    let mut cfg = RulesConfig::default();
    cfg.idle.after_s = 5.0;
    let mut p = Processor::new(cfg);
    let mut events = Vec::new();
    let mut next_tick = 250;
    let mut now = 0;
    for f in &frames {
        now = (f.timestamp_us - t0) / 1000;
        while next_tick <= now {
            p.on_tick(next_tick, &mut events);
            next_tick += 250;
        }
        p.on_can(f, now, &mut events);
    }
    p.finish(now, &mut events);
    assert_eq!(
        kinds(&events),
        vec![
            "ignition_on",
            "dtc_set",
            "dtc_set",
            "dtc_set",
            "dtc_set",
            "idle"
        ],
        "engine speed stands in for the ignition wire; standing still is not a trip"
    );
    let mut codes: Vec<(u64, u64)> = of(&events, "dtc_set")
        .iter()
        .map(|(_, d)| {
            (
                d["spn"].as_u64().unwrap_or(0),
                d["fmi"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    codes.sort_unstable();
    assert_eq!(codes, vec![(609, 9), (609, 12), (980, 9), (3216, 20)]);
    assert!(of(&events, "dtc_set")
        .iter()
        .all(|(_, d)| d["lamps"] == 0x43));
    let idle = of(&events, "idle");
    let secs = idle[0].1["duration_s"].as_f64().expect("duration");
    assert!((8.0..=10.0).contains(&secs), "idled {secs} s of 10");
    assert!(kinds(&events)
        .iter()
        .all(|k| !k.starts_with("harsh") && *k != "speeding"));
}

#[test]
fn car_capture_infers_the_engine_start_and_starts_a_trip_from_obd_speed() {
    let frames = fixture("obd/canedge-obd2-car-engine-start.log");
    let t0 = frames[0].timestamp_us;
    let mut decoder = ObdCanDecoder::new();
    let mut engine = Engine::new(RulesConfig::default());
    let mut events = Vec::new();
    let mut next_tick = 250;
    let mut now = 0;
    let mut speeds = Vec::new();
    for f in &frames {
        now = (f.timestamp_us - t0) / 1000;
        while next_tick <= now {
            engine.tick(next_tick, &mut events);
            next_tick += 250;
        }
        let Ok(Some(ObdCanItem::Response {
            response: Response::Current(readings),
            ..
        })) = decoder.push(f)
        else {
            continue;
        };
        for r in readings {
            if let (Some(s), Some(v)) = (Signal::for_obd_pid(r.pid), r.value.as_f64()) {
                if s == Signal::WheelSpeedKmh {
                    speeds.push((now, v));
                }
                engine.signal(s, v, now, &mut events);
            }
        }
    }
    engine.finish(now, &mut events);
    assert_eq!(
        kinds(&events),
        vec!["ignition_on", "trip_start", "trip_end"],
        "one engine start, not one per 7 s poll; a trip once the car moves"
    );
    let on_s = of(&events, "ignition_on")[0].0 as f64 / 1000.0;
    assert!((265.0..285.0).contains(&on_s), "engine on at {on_s} s");
    let start_s = of(&events, "trip_start")[0].0 as f64 / 1000.0;
    assert!(
        (280.0..295.0).contains(&start_s),
        "trip starts at {start_s} s"
    );
    let (_, trip) = &of(&events, "trip_end")[0];
    assert_eq!(trip["distance_source"], "speed");
    let top = speeds.iter().map(|(_, v)| *v).fold(0.0, f64::max);
    assert_eq!(
        trip["max_speed_kmh"].as_f64(),
        Some((top / 0.036).round() * 0.036)
    );
    // The distance is the polled speeds held for the poll interval (at most 10 s each).
    let by_hand: f64 = speeds
        .windows(2)
        .filter(|w| w[1].0 as f64 / 1000.0 >= start_s)
        .map(|w| w[1].1 / 3.6 * ((w[1].0 - w[0].0).min(10_000) as f64 / 1000.0))
        .sum();
    let d = trip["distance_m"].as_f64().expect("distance");
    assert!(
        d > 100.0 && (d - by_hand).abs() < by_hand * 0.25,
        "{d} m vs {by_hand} m"
    );
    assert!(trip["start"].is_null(), "no GPS, no place");
}
