//! Which time anchors to keep and which to send. Pure.
//!
//! An anchor ties a boot's monotonic clock to true time. The best one for a boot
//! comes from the best source (GPS over NTP over a server round trip) and, within
//! a source, the one with the smallest uncertainty.

use fleet_protocol::{BootId, Event, TimeAnchor};

/// A server anchor older than this (on the monotonic clock) is replaced even by a
/// slightly less precise one: monotonic clocks drift tens of ppm.
pub const REFRESH_AFTER_MS: u64 = 15 * 60 * 1000;

/// `a` is a better anchor than `b` for the same boot.
pub fn better(a: &TimeAnchor, b: &TimeAnchor) -> bool {
    (a.source.rank(), std::cmp::Reverse(a.uncertainty_ms))
        > (b.source.rank(), std::cmp::Reverse(b.uncertainty_ms))
}

/// The best anchor known for `boot`.
pub fn best_for(anchors: &[TimeAnchor], boot: BootId) -> Option<TimeAnchor> {
    anchors.iter().filter(|a| a.boot_id == boot).fold(
        None,
        |best: Option<TimeAnchor>, a| match best {
            Some(b) if !better(a, &b) => Some(b),
            _ => Some(*a),
        },
    )
}

/// Whether a freshly measured anchor is worth storing next to `current`, the best
/// one stored for the same boot. Never lets a server round trip displace a better
/// source; otherwise takes a more precise one, or a fresh one when the stored one
/// has aged and the new one is not much worse.
pub fn worth_storing(current: Option<&TimeAnchor>, candidate: &TimeAnchor) -> bool {
    let Some(cur) = current else {
        return true;
    };
    if candidate.source.rank() != cur.source.rank() {
        return candidate.source.rank() > cur.source.rank();
    }
    if candidate.uncertainty_ms < cur.uncertainty_ms {
        return true;
    }
    let aged = candidate.mono_ms.saturating_sub(cur.mono_ms) >= REFRESH_AFTER_MS;
    aged && candidate.uncertainty_ms <= cur.uncertainty_ms.saturating_mul(2).max(50)
}

/// For a batch header: the best anchor of each boot that appears in `events`.
pub fn for_batch(anchors: &[TimeAnchor], events: &[Event]) -> Vec<TimeAnchor> {
    let mut boots: Vec<BootId> = Vec::new();
    for e in events {
        if !boots.contains(&e.time.boot_id) {
            boots.push(e.time.boot_id);
        }
    }
    boots
        .into_iter()
        .filter_map(|b| best_for(anchors, b))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleet_protocol::{EventData, EventTime, Hlc, Kind, Priority, TimeSource};

    fn anchor(boot: BootId, mono_ms: u64, source: TimeSource, uncertainty_ms: u32) -> TimeAnchor {
        TimeAnchor {
            boot_id: boot,
            mono_ms,
            true_ms: 1_700_000_000_000,
            source,
            uncertainty_ms,
        }
    }

    fn event(seq: u64, boot: BootId) -> Event {
        Event {
            seq,
            kind: Kind::known("position"),
            priority: Priority::Telemetry,
            time: EventTime {
                boot_id: boot,
                mono_ms: seq,
                wall_ms: 0,
                hlc: Hlc(0),
            },
            config_version: 1,
            data: EventData::None,
        }
    }

    #[test]
    fn a_server_anchor_never_displaces_gps() {
        let boot = BootId::random();
        let gps = anchor(boot, 1_000, TimeSource::Gps, 500);
        let server = anchor(boot, 9_000_000, TimeSource::Server, 1);
        assert!(!worth_storing(Some(&gps), &server));
        assert!(worth_storing(Some(&server), &gps));
        assert_eq!(best_for(&[server, gps], boot), Some(gps));
    }

    #[test]
    fn a_more_precise_or_refreshed_server_anchor_is_kept() {
        let boot = BootId::random();
        let cur = anchor(boot, 1_000, TimeSource::Server, 40);
        assert!(worth_storing(None, &cur));
        assert!(worth_storing(
            Some(&cur),
            &anchor(boot, 2_000, TimeSource::Server, 10)
        ));
        assert!(!worth_storing(
            Some(&cur),
            &anchor(boot, 2_000, TimeSource::Server, 60)
        ));
        let later = 1_000 + REFRESH_AFTER_MS;
        assert!(worth_storing(
            Some(&cur),
            &anchor(boot, later, TimeSource::Server, 60)
        ));
        assert!(!worth_storing(
            Some(&cur),
            &anchor(boot, later, TimeSource::Server, 5_000)
        ));
    }

    #[test]
    fn a_batch_carries_the_best_anchor_of_each_boot_in_it() {
        let (b1, b2, b3) = (BootId::random(), BootId::random(), BootId::random());
        let anchors = [
            anchor(b1, 10, TimeSource::Server, 30),
            anchor(b1, 20, TimeSource::Server, 5),
            anchor(b2, 10, TimeSource::Server, 5),
            anchor(b3, 10, TimeSource::Gps, 100),
        ];
        let events = [
            event(1, b1),
            event(2, b1),
            event(3, b3),
            event(4, BootId::random()),
        ];
        let chosen = for_batch(&anchors, &events);
        assert_eq!(chosen, vec![anchors[1], anchors[3]]);
    }
}
