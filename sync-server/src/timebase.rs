//! Which time the server gives an event. Pure: values in, values out.
//!
//! Of all anchors a device reports for one boot the server keeps the best by a
//! total order, so the stored times are the same whatever order batches arrive in.

use fleet_protocol::{EventTime, TimeAnchor};
use std::cmp::Ordering;

/// Total order on anchors of one boot; `Greater` means `a` is the better one.
/// A better source wins, then a smaller uncertainty; the remaining ties are broken
/// by the anchor's own values so that every replica picks the same one.
pub fn compare_anchors(a: &TimeAnchor, b: &TimeAnchor) -> Ordering {
    a.source
        .rank()
        .cmp(&b.source.rank())
        .then_with(|| b.uncertainty_ms.cmp(&a.uncertainty_ms))
        .then_with(|| b.mono_ms.cmp(&a.mono_ms))
        .then_with(|| b.true_ms.cmp(&a.true_ms))
}

pub fn is_better(candidate: &TimeAnchor, current: Option<&TimeAnchor>) -> bool {
    match current {
        None => true,
        Some(c) => compare_anchors(candidate, c) == Ordering::Greater,
    }
}

/// The stored time of an event and where it came from. Without an anchor the
/// device's wall clock is all there is: `device`, or `device_implausible` when it
/// reads before any device existed or more than a day after `received_ms`.
pub fn event_time(
    time: &EventTime,
    anchor: Option<&TimeAnchor>,
    received_ms: i64,
) -> (i64, &'static str) {
    match anchor {
        Some(a) => (a.rebase(time.mono_ms), a.source.as_str()),
        None if fleet_protocol::event::wall_plausible(time.wall_ms, received_ms) => {
            (time.wall_ms, "device")
        }
        None => (time.wall_ms, "device_implausible"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleet_protocol::{BootId, Hlc, TimeSource};

    fn anchor(source: TimeSource, uncertainty_ms: u32, mono_ms: u64, true_ms: i64) -> TimeAnchor {
        TimeAnchor {
            boot_id: BootId::default(),
            mono_ms,
            true_ms,
            source,
            uncertainty_ms,
        }
    }

    #[test]
    fn gps_beats_a_server_anchor_however_tight() {
        let gps = anchor(TimeSource::Gps, 500, 10, 1_000);
        let server = anchor(TimeSource::Server, 1, 10, 2_000);
        assert!(is_better(&gps, Some(&server)));
        assert!(!is_better(&server, Some(&gps)));
    }

    #[test]
    fn the_choice_among_equal_rank_anchors_does_not_depend_on_order() {
        let a = anchor(TimeSource::Server, 20, 100, 5_000);
        let b = anchor(TimeSource::Server, 20, 200, 5_050);
        let pick = |xs: &[TimeAnchor]| {
            xs.iter().fold(None::<TimeAnchor>, |best, x| {
                if is_better(x, best.as_ref()) {
                    Some(*x)
                } else {
                    best
                }
            })
        };
        assert_eq!(pick(&[a, b]), pick(&[b, a]));
        assert!(!is_better(&a, Some(&a)));
    }

    #[test]
    fn events_without_an_anchor_keep_the_device_wall_estimate() {
        let t = EventTime {
            boot_id: BootId::default(),
            mono_ms: 7_000,
            wall_ms: 42,
            hlc: Hlc::default(),
        };
        let now = 1_760_000_000_000;
        let t = EventTime {
            wall_ms: now - 60_000,
            ..t
        };
        assert_eq!(event_time(&t, None, now), (now - 60_000, "device"));
        let a = anchor(TimeSource::Gps, 5, 5_000, 1_700_000_000_000);
        assert_eq!(event_time(&t, Some(&a), now), (1_700_000_002_000, "gps"));
    }

    #[test]
    fn an_anchorless_wall_clock_from_1970_or_days_ahead_is_flagged_not_trusted() {
        let now = 1_760_000_000_000;
        let at = |wall_ms| EventTime {
            boot_id: BootId::default(),
            mono_ms: 7_000,
            wall_ms,
            hlc: Hlc::default(),
        };
        assert_eq!(event_time(&at(42), None, now), (42, "device_implausible"));
        let ahead = now + 2 * 86_400_000;
        assert_eq!(
            event_time(&at(ahead), None, now),
            (ahead, "device_implausible")
        );
        assert_eq!(event_time(&at(now + 3_600_000), None, now).1, "device");
        let a = anchor(TimeSource::Server, 5, 5_000, now);
        assert_eq!(event_time(&at(42), Some(&a), now), (now + 2_000, "server"));
    }
}
