//! A whole scripted drive, recorded from the simulated truck (`fleet_hal::sim::
//! script`: J1939 frames, NMEA sentences, the ignition wire) and replayed through
//! the real decoders and rules. Every expectation below is worked out by hand
//! from the script, not read back from the rules.

use fleet_agent::pipeline::Processor;
use fleet_agent::rules::{GeofenceSet, RuleEvent, RulesConfig, RULES_VERSION};
use fleet_hal::sim::script::{Manoeuvre, ScriptStart, ScriptedVehicle};
use fleet_hal::sim::{SimOutput, Truth};
use serde_json::Value;

const WALL: i64 = 1_717_000_000_000;
const KMH: f64 = 1.0 / 3.6;

fn start() -> ScriptStart {
    ScriptStart {
        lat: 51.90,
        lon: 4.40,
        heading_deg: 90.0,
        odometer_km: 250_000.0,
        engine_hours: 9_000.0,
        fuel_l: 240.0,
        tank_l: 400.0,
        gps_noise_m: 1.0,
    }
}

fn speed(to_kmh: f64, rate_mps2: f64) -> Manoeuvre {
    Manoeuvre::Speed {
        to_mps: to_kmh * KMH,
        rate_mps2,
    }
}

fn hold(secs: f64) -> Manoeuvre {
    Manoeuvre::Hold { secs }
}

/// Distances (m) and durations (s) of the moving part, by hand:
///
/// | step | s | m |
/// | 0 → 50 km/h at 1.5 m/s² | 9.26 | 64.3 |
/// | 50 km/h for 60 s, a 90° right turn at 6°/s (15 s), 30 s | 105 | 1 458.3 |
/// | 50 → 100 km/h at 1 m/s² | 13.89 | 289.4 |
/// | 100 km/h for 120 s (speeding, with a fault raised and cleared) | 120 | 3 333.3 |
/// | 100 → 80 km/h at 1 m/s² | 5.56 | 138.9 |
/// | 80 km/h for 60 s | 60 | 1 333.3 |
/// | hard stop 80 → 18 km/h at 5 m/s² | 3.44 | 46.9 |
/// | 18 km/h for 20 s, up to 43.2 km/h at 1 m/s² | 27 | 159.5 |
/// | a 90° right turn at 25°/s at 12 m/s (5.2 m/s² sideways) | 3.6 | 43.2 |
/// | 43.2 km/h for 30 s, up to 72 km/h at 3.5 m/s² | 32.29 | 396.6 |
/// | 72 km/h for 60 s through the fenced yard | 60 | 1 200 |
/// | 72 → 0 km/h at 1 m/s² | 20 | 200 |
///
/// 8 663.7 m and 459.0 s in all, then 150 s standing with the engine on.
const EXPECTED_DISTANCE_M: f64 = 8_663.7;
/// From the first fix at 8 km/h (1.48 s into the first acceleration) to the
/// ignition going off.
const EXPECTED_DURATION_S: f64 = 459.0 - 1.48 + 150.0;
/// When the 72 km/h stretch through the yard is half done, from the script start.
const YARD_MIDDLE_S: f64 =
    1.5 + 240.0 + 9.26 + 105.0 + 13.89 + 120.0 + 5.56 + 60.0 + 3.44 + 27.0 + 3.6 + 32.29 + 30.0;

fn script() -> Vec<Manoeuvre> {
    vec![
        // A tired battery: the 24 V system sags to 17 V while cranking.
        Manoeuvre::Start {
            secs: 1.5,
            battery_v: 17.0,
        },
        // Warming up at the depot for four minutes: an idle event.
        hold(240.0),
        speed(50.0, 1.5),
        hold(60.0),
        Manoeuvre::Turn {
            deg: 90.0,
            deg_per_s: 6.0,
        },
        hold(30.0),
        speed(100.0, 1.0),
        Manoeuvre::Fault { spn: 110, fmi: 16 },
        hold(120.0),
        Manoeuvre::ClearFaults,
        speed(80.0, 1.0),
        hold(60.0),
        speed(18.0, 5.0),
        hold(20.0),
        speed(43.2, 1.0),
        Manoeuvre::Turn {
            deg: 90.0,
            deg_per_s: 25.0,
        },
        hold(30.0),
        speed(72.0, 3.5),
        hold(60.0),
        speed(0.0, 1.0),
        // At the customer, under the idle threshold.
        hold(150.0),
        // Ten minutes parked while 30 L (7.5 % of the tank) are siphoned off.
        Manoeuvre::Park {
            secs: 600.0,
            drain_l: 30.0,
            battery_v: 24.6,
        },
        Manoeuvre::Start {
            secs: 1.2,
            battery_v: 21.0,
        },
        hold(90.0),
        Manoeuvre::Park {
            secs: 30.0,
            drain_l: 0.0,
            battery_v: 24.6,
        },
    ]
}

/// Where the truck is at `at_s` into the script (to draw the yard around it).
fn truth_at(at_s: f64) -> Truth {
    let mut v = ScriptedVehicle::new(start(), script(), 7, 0);
    let mut out = Vec::new();
    v.advance_to((at_s * 1000.0) as u64, WALL, &mut out);
    v.truth()
}

/// A 300 m square around a point, as GeoJSON.
fn yard_around(lat: f64, lon: f64) -> GeofenceSet {
    let dlat = 150.0 / 111_320.0;
    let dlon = dlat / lat.to_radians().cos();
    let (s, n, w, e) = (lat - dlat, lat + dlat, lon - dlon, lon + dlon);
    GeofenceSet::parse(&format!(
        r#"{{"type":"FeatureCollection","features":[{{"type":"Feature","id":"yard-3",
        "properties":{{"name":"Customer yard"}},"geometry":{{"type":"Polygon",
        "coordinates":[[[{w},{s}],[{e},{s}],[{e},{n}],[{w},{n}],[{w},{s}]]]}}}}]}}"#
    ))
    .expect("valid yard")
}

struct Replay {
    events: Vec<RuleEvent>,
    end: Truth,
    /// The truth when the trip started and ended (by the rules' times).
    truth: Vec<Truth>,
}

fn replay() -> Replay {
    let yard = truth_at(YARD_MIDDLE_S);
    let mut vehicle = ScriptedVehicle::new(start(), script(), 7, 0);
    let mut processor = Processor::new(RulesConfig::default());
    processor.set_geofences(yard_around(yard.lat, yard.lon));
    let mut events = Vec::new();
    let mut outputs = Vec::new();
    let mut truth = Vec::new();
    let mut t = 0;
    while !vehicle.done() {
        t += 250;
        outputs.clear();
        vehicle.advance_to(t, WALL, &mut outputs);
        for o in outputs.drain(..) {
            match o {
                SimOutput::Can(f) => processor.on_can(&f, f.timestamp_us / 1000, &mut events),
                SimOutput::Nmea(line, us) => processor.on_nmea(&line, us / 1000, &mut events),
                SimOutput::Ignition(on, us) => processor.on_ignition(on, us / 1000, &mut events),
            }
        }
        processor.on_tick(t, &mut events);
        if t % 1000 == 0 {
            truth.push(vehicle.truth());
        }
    }
    processor.finish(t, &mut events);
    Replay {
        events,
        end: vehicle.truth(),
        truth,
    }
}

fn of(r: &Replay, kind: &str) -> Vec<(u64, Value)> {
    r.events
        .iter()
        .filter(|e| e.kind.as_str() == kind)
        .map(|e| (e.mono_ms, e.data.to_json()))
        .collect()
}

fn num(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

fn truth_near(r: &Replay, mono_ms: u64) -> Truth {
    *r.truth
        .iter()
        .min_by_key(|t| t.t_ms.abs_diff(mono_ms))
        .expect("truth")
}

#[test]
fn scripted_drive_gives_the_trip_summary_worked_out_by_hand() {
    let r = replay();
    let trips = of(&r, "trip_end");
    assert_eq!(trips.len(), 1, "one trip: {trips:?}");
    let (end_ms, s) = &trips[0];
    assert_eq!(s["rules_version"], RULES_VERSION);
    assert_eq!(s["distance_source"], "odometer");
    let distance = num(s, "distance_m");
    assert!(
        (distance - EXPECTED_DISTANCE_M).abs() < 40.0,
        "{distance} m, expected {EXPECTED_DISTANCE_M}"
    );
    let duration = num(s, "duration_s");
    assert!(
        (duration - EXPECTED_DURATION_S).abs() < 3.0,
        "{duration} s, expected {EXPECTED_DURATION_S}"
    );
    let max = num(s, "max_speed_kmh");
    assert!((max - 100.0).abs() < 0.5, "max {max}");
    let idle = num(s, "idle_s");
    assert!((idle - 150.0).abs() < 3.0, "idle {idle}");
    // Fuel: the simulated engine's own counter over the same span, within 10 %.
    let start_ms = num(s, "start_mono_ms") as u64;
    let burnt = truth_near(&r, *end_ms).fuel_used_l - truth_near(&r, start_ms).fuel_used_l;
    let fuel = num(s, "fuel_used_l");
    assert!(
        (fuel - burnt).abs() < burnt * 0.1,
        "{fuel} L, engine {burnt} L"
    );
    // The start is the depot, the end the customer 150 m west of the yard.
    let depot = start();
    let start_place = &s["start"];
    assert!((num(start_place, "lat") - depot.lat).abs() < 3e-5);
    assert!((num(start_place, "lon") - depot.lon).abs() < 3e-4);
    let stop = truth_near(&r, *end_ms);
    assert!((num(&s["end"], "lat") - stop.lat).abs() < 3e-5);
    assert!((num(&s["end"], "lon") - stop.lon).abs() < 5e-5);
    assert!((num(s, "odometer_end_km") - stop.odometer_m / 1000.0).abs() < 0.01);
    // Harsh braking, cornering and acceleration, and one speeding episode.
    assert_eq!(num(s, "driving_events"), 4.0);
    assert!((r.end.odometer_m / 1000.0 - 250_000.0 - EXPECTED_DISTANCE_M / 1000.0).abs() < 0.05);
}

#[test]
fn scripted_drive_gives_its_idle_harsh_and_speeding_events() {
    let r = replay();
    let idle = of(&r, "idle");
    assert_eq!(
        idle.len(),
        1,
        "only the depot warm-up is long enough: {idle:?}"
    );
    let d = num(&idle[0].1, "duration_s");
    assert!((240.0..245.0).contains(&d), "idled {d} s");

    let braking = of(&r, "harsh_braking");
    assert_eq!(braking.len(), 1, "{braking:?}");
    let b = &braking[0].1;
    assert!((num(b, "peak_mps2") - 5.0).abs() < 0.3, "{b}");
    assert!((num(b, "speed_kmh") - 80.0).abs() < 3.0, "{b}");
    assert_eq!(b["source"], "wheel");
    assert!(b["lat"].is_number());

    let cornering = of(&r, "harsh_cornering");
    assert_eq!(cornering.len(), 1, "{cornering:?}");
    let peak = num(&cornering[0].1, "peak_mps2");
    let by_hand = 12.0 * 25f64.to_radians();
    assert!((peak - by_hand).abs() < 0.5, "{peak} vs {by_hand}");

    let accel = of(&r, "harsh_acceleration");
    assert_eq!(accel.len(), 1, "{accel:?}");
    assert!((num(&accel[0].1, "peak_mps2") - 3.5).abs() < 0.3);

    let speeding = of(&r, "speeding");
    assert_eq!(speeding.len(), 1, "{speeding:?}");
    let sp = &speeding[0].1;
    assert!((num(sp, "max_speed_kmh") - 100.0).abs() < 0.5);
    // Above 95 km/h from 1.4 s before reaching 100 until 2.8 s into slowing to
    // below 90: 124.2 s, give or take a fix.
    let d = num(sp, "duration_s");
    assert!((d - 124.2).abs() < 1.5, "speeding for {d} s");
    assert_eq!(num(sp, "limit_kmh"), 90.0);
}

#[test]
fn scripted_drive_gives_geofence_fuel_power_fault_and_meter_events() {
    let r = replay();
    let enter = of(&r, "geofence_enter");
    let exit = of(&r, "geofence_exit");
    assert_eq!((enter.len(), exit.len()), (1, 1), "{enter:?} {exit:?}");
    assert_eq!(enter[0].1["geofence_id"], "yard-3");
    assert_eq!(enter[0].1["name"], "Customer yard");
    // 300 m at 20 m/s, entered and left 15 m past each border: 15 s inside.
    let inside = num(&exit[0].1, "inside_s");
    assert!((inside - 15.0).abs() < 1.5, "{inside} s inside");
    let middle_ms = (YARD_MIDDLE_S * 1000.0) as u64;
    assert!(enter[0].0.abs_diff(middle_ms) < 9_000 && exit[0].0.abs_diff(middle_ms) < 9_000);

    let drops = of(&r, "fuel_drop");
    assert_eq!(drops.len(), 1, "{drops:?}");
    let d = &drops[0].1;
    assert!((num(d, "drop_pct") - 7.5).abs() < 0.6, "{d}");
    assert_eq!(d["ignition"], true, "seen when the bus wakes up again");

    let weak = of(&r, "cranking_weak");
    assert_eq!(weak.len(), 1, "only the first start sagged: {weak:?}");
    assert_eq!(num(&weak[0].1, "min_voltage_v"), 17.0);
    assert_eq!(num(&weak[0].1, "threshold_v"), 19.2);
    assert!(of(&r, "battery_low").is_empty());

    let set = of(&r, "dtc_set");
    let clear = of(&r, "dtc_clear");
    assert_eq!((set.len(), clear.len()), (1, 1));
    assert_eq!(set[0].1["spn"], 110);
    assert!(clear[0].0 - set[0].0 >= 119_000);

    let on = of(&r, "ignition_on").len();
    let off = of(&r, "ignition_off").len();
    assert_eq!((on, off), (2, 2));

    // Odometer: when first read, and at the trip's end, matching the vehicle.
    let odo = of(&r, "odometer");
    let reasons: Vec<&str> = odo
        .iter()
        .map(|(_, v)| v["reason"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(reasons, vec!["periodic", "trip_end"]);
    let at_end = truth_near(&r, odo[1].0).odometer_m / 1000.0;
    assert!((num(&odo[1].1, "odometer_km") - at_end).abs() < 0.01);
    let hours = of(&r, "engine_hours");
    assert_eq!(hours.len(), 2);
    assert!(num(&hours[1].1, "engine_hours_h") > 9_000.1);
}
