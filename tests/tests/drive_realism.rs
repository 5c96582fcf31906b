//! The drive the wire-size benchmark encodes must look like real driving, or the
//! bytes-per-position figure means nothing.

use fleet_tests::drive::{distance_m, drive};

#[test]
fn an_hour_of_the_benchmark_drive_looks_like_city_and_motorway_driving() {
    let fixes = drive(20_240_529, 3_600);
    assert_eq!(fixes.len(), 3_600);

    let km: f64 = fixes
        .windows(2)
        .map(|w| distance_m(&w[0].position, &w[1].position))
        .sum::<f64>()
        / 1_000.0;
    assert!((45.0..=110.0).contains(&km), "{km:.1} km in an hour");

    let top = fixes.iter().map(|f| f.true_speed_mps).fold(0.0, f64::max);
    assert!((25.0..=33.4).contains(&top), "top speed {top:.1} m/s");
    for w in fixes.windows(2) {
        let dv = w[1].true_speed_mps - w[0].true_speed_mps;
        assert!((-2.5..=1.5).contains(&dv), "{dv:.2} m/s² is not a truck's");
    }

    // Stops at lights in town: runs of at least 10 s standing still.
    let mut stops = 0;
    let mut still = 0;
    for f in &fixes {
        if f.true_speed_mps < 0.1 {
            still += 1;
        } else {
            if still >= 10 {
                stops += 1;
            }
            still = 0;
        }
    }
    assert!(stops >= 4, "only {stops} stops in town");

    // The reported speed agrees with how far the fixes move, give or take receiver noise.
    let moving: Vec<f64> = fixes
        .windows(2)
        .filter(|w| w[1].true_speed_mps > 5.0)
        .map(|w| {
            distance_m(&w[0].position, &w[1].position)
                - f64::from(w[1].position.speed_cms.unwrap_or(0)) / 100.0
        })
        .collect();
    let mean_err = moving.iter().map(|e| e.abs()).sum::<f64>() / moving.len() as f64;
    assert!(
        mean_err < 3.0,
        "fixes move {mean_err:.2} m/s away from the reported speed on average"
    );

    // Noise is there: a fix never repeats its predecessor exactly while moving.
    let repeats = fixes
        .windows(2)
        .filter(|w| {
            w[1].true_speed_mps > 1.0
                && w[0].position.lat_e7 == w[1].position.lat_e7
                && w[0].position.lon_e7 == w[1].position.lon_e7
        })
        .count();
    assert_eq!(repeats, 0);

    let same_again = drive(20_240_529, 3_600);
    assert!(
        fixes
            .iter()
            .zip(&same_again)
            .all(|(a, b)| a.position == b.position && a.mono_ms == b.mono_ms),
        "a seed gives one drive"
    );
}
