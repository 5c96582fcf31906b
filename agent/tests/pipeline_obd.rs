//! An emulated car (`elm327-emulator` from PyPI on a pseudo-terminal) polled by
//! the pipeline's ELM327 source: its engine speed turns the ignition on, its
//! trouble codes become events, and its readings reach the rules.
//!
//! Skipped, with a message, when python3 with `elm327-emulator` is missing, except
//! under `CI=true`; `tests/run` installs it and sets `FLEET_TEST_PYTHON`.

use fleet_agent::pipeline::{Elm327SourceConfig, SourcesConfig};
use fleet_protocol::{Event, EventData};
use std::time::Duration;

mod elm327;
mod pipeline_run;
mod python_peer;

const LIMIT: Duration = Duration::from_secs(40);

/// The car: 1726 rpm, 55 km/h, 83 °C coolant, fuel 36 %; three stored codes
/// (with the count byte a real ECU sends first) and one pending.
const SETUP: &str = "\
emulator.answer['RPM'] = '<header>7E8</header><size>04</size><data>41 0C 1A F8</data>'
emulator.answer['SPEED'] = '<header>7E8</header><size>03</size><data>41 0D 37</data>'
emulator.answer['COOLANT_TEMP'] = '<header>7E8</header><size>03</size><data>41 05 7B</data>'
emulator.answer['FUEL_LEVEL'] = '<header>7E8</header><size>03</size><data>41 2F 5C</data>'
import elm.obd_message as m; m.DTC_STORED[:] = ['03', '0133', 'C196', '0234']; m.DTC_PENDING[:] = ['01', '0300']
";

fn codes(events: &[Event], kind: &str, pending: bool) -> Vec<String> {
    let mut out: Vec<String> = events
        .iter()
        .filter(|e| e.kind.as_str() == kind)
        .filter_map(|e| match &e.data {
            EventData::Json(j) if j["pending"] == pending => j["code"].as_str().map(str::to_owned),
            _ => None,
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emulated_car_turns_the_ignition_on_and_reports_its_trouble_codes() {
    let Some(py) = python_peer::with("elm", "`elm327-emulator`", "pipeline obd test") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let emulator = elm327::start(&py, dir.path(), SETUP, LIMIT);

    let sources = SourcesConfig {
        elm327: Some(Elm327SourceConfig {
            port: emulator.pty.clone(),
            baud: 38_400,
            pids: Vec::new(),
            interval_ms: 250,
            dtc_interval_s: 1,
        }),
        ..SourcesConfig::default()
    };
    // Two rounds of trouble codes and a few of readings.
    let (s, events) =
        pipeline_run::run_until(dir.path(), sources, LIMIT, Duration::from_secs(10), |s| {
            s.processor.obd_readings >= 12
        })
        .await;
    assert_eq!(s.sources[0].state, "up", "{s:?}");
    assert!(
        events.iter().any(|e| e.kind.as_str() == "ignition_on"),
        "1726 rpm means the engine runs: {:?}",
        events.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>()
    );
    assert_eq!(
        codes(&events, "dtc_set", false),
        ["P0133", "P0234", "U0196"]
    );
    assert_eq!(codes(&events, "dtc_set", true), ["P0300"]);
    assert!(
        codes(&events, "dtc_clear", false).is_empty(),
        "codes read twice stay set"
    );
}
