//! GPS curve thinning on an hour of believable driving with receiver noise
//! (`fleet_tests::drive`): the motorway costs a few points, and the kept points
//! still draw the road: no fix lies far from the line through the kept ones.

use fleet_agent::rules::{PositionRules, PositionThinner};
use fleet_protocol::Position;
use fleet_tests::drive::{distance_m, drive, Fix};

const M_PER_DEG: f64 = 111_320.0;

fn xy(p: &Position, cos: f64) -> (f64, f64) {
    (p.lon() * M_PER_DEG * cos, p.lat() * M_PER_DEG)
}

fn off_segment(p: (f64, f64), a: (f64, f64), b: (f64, f64)) -> f64 {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let len2 = dx * dx + dy * dy;
    let t = if len2 == 0.0 {
        0.0
    } else {
        (((p.0 - a.0) * dx + (p.1 - a.1) * dy) / len2).clamp(0.0, 1.0)
    };
    (p.0 - a.0 - t * dx).hypot(p.1 - a.1 - t * dy)
}

fn thin(fixes: &[Fix], rules: PositionRules) -> Vec<(u64, Position)> {
    let mut t = PositionThinner::new(rules);
    let mut kept = Vec::new();
    for f in fixes {
        t.push(f.mono_ms, f.position, &mut kept);
    }
    t.flush(&mut kept);
    kept
}

/// The farthest any fix lies from the kept polyline between its neighbours in time.
fn worst_deviation(fixes: &[Fix], kept: &[(u64, Position)]) -> f64 {
    let cos = fixes[0].position.lat().to_radians().cos();
    let mut worst: f64 = 0.0;
    for pair in kept.windows(2) {
        let (a, b) = (xy(&pair[0].1, cos), xy(&pair[1].1, cos));
        for f in fixes
            .iter()
            .filter(|f| f.mono_ms > pair[0].0 && f.mono_ms < pair[1].0)
        {
            worst = worst.max(off_segment(xy(&f.position, cos), a, b));
        }
    }
    worst
}

#[test]
fn motorway_costs_few_points_and_the_kept_ones_still_draw_the_road() {
    let fixes = drive(20_240_529, 3_600);
    let unbounded = PositionRules {
        max_gap_moving_s: 1e9,
        max_gap_stopped_s: 1e9,
        ..PositionRules::default()
    };
    let kept = thin(&fixes, unbounded.clone());
    // The middle two thirds are motorway (see the drive's description).
    let motorway = |t: u64| (41_000 + 700_000..41_000 + 2_900_000).contains(&t);
    let on_motorway = kept.iter().filter(|(t, _)| motorway(*t)).count();
    let motorway_fixes = fixes.iter().filter(|f| motorway(f.mono_ms)).count();
    assert!(
        on_motorway * 20 < motorway_fixes,
        "{on_motorway} of {motorway_fixes} motorway fixes kept"
    );
    let worst = worst_deviation(&fixes, &kept);
    assert!(
        worst <= unbounded.tolerance_m,
        "a dropped fix lies {worst:.1} m off the kept line"
    );
    // Town, with its turns, keeps more points per kilometre than the motorway.
    let km = |in_motorway: bool| {
        fixes
            .windows(2)
            .filter(|w| motorway(w[1].mono_ms) == in_motorway)
            .map(|w| distance_m(&w[0].position, &w[1].position))
            .sum::<f64>()
            / 1000.0
    };
    let town = kept.len() - on_motorway;
    let (town_per_km, motorway_per_km) = (town as f64 / km(false), on_motorway as f64 / km(true));
    assert!(
        town_per_km > 1.5 * motorway_per_km,
        "{town_per_km:.2} points/km in town vs {motorway_per_km:.2} on the motorway"
    );

    // With the default heartbeat the map still gets a point every 10 s on the move
    // (the first fix at least 10 s after the last kept one, so within one more second).
    let kept = thin(&fixes, PositionRules::default());
    let moving_gaps = kept
        .windows(2)
        .filter(|w| motorway(w[1].0))
        .map(|w| w[1].0 - w[0].0)
        .max()
        .unwrap_or(0);
    assert!(moving_gaps <= 11_100, "{moving_gaps} ms between kept fixes");
    assert!(worst_deviation(&fixes, &kept) <= unbounded.tolerance_m);
}
