//! Pure rules of the outbox: which seqs a batch accounts for, how evicted seqs
//! group into ranges, which class of event eviction takes next, which time anchor
//! wins. No I/O; the writer and the queries apply these to the database.

use super::NewEvent;
use fleet_protocol::{EventData, Kind, Priority, TimeAnchor};

/// Why an event can't be recorded, if it can't: the same checks the server
/// applies, made before the event takes a seq.
pub fn invalid_reason(ev: &NewEvent) -> Option<String> {
    if !Kind::is_valid_name(ev.kind.as_str()) {
        return Some(format!("invalid kind name {:?}", ev.kind.as_str()));
    }
    match &ev.data {
        EventData::Position(p) => p.invalid_reason(),
        EventData::Json(v) if !v.is_object() => Some("json payload is not an object".into()),
        _ => None,
    }
}

/// The seq range a batch read after `after_seq` accounts for.
///
/// `returned` is the highest seq among the events read (if any) and `full` says
/// whether the read hit its limit. A full read ends at its last event: later seqs
/// may still hold events. A short read covers everything up to `last_committed`,
/// because every committed seq past the last row read was evicted.
pub fn batch_range(
    after_seq: u64,
    last_committed: u64,
    returned: Option<u64>,
    full: bool,
) -> Option<(u64, u64)> {
    if after_seq >= last_committed {
        return None;
    }
    let last = match returned {
        Some(seq) if full => seq,
        _ => last_committed,
    };
    Some((after_seq + 1, last))
}

/// Groups ascending seqs into inclusive runs of consecutive numbers.
pub fn runs(seqs: &[u64]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &s in seqs {
        match out.last_mut() {
            Some((_, last)) if *last + 1 == s => *last = s,
            _ => out.push((s, s)),
        }
    }
    out
}

/// What eviction deletes, in the order it deletes it. Unacknowledged critical
/// events are not in the list: they are never evicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvictionClass {
    /// Already on the server: deleting loses nothing.
    Acked,
    Unacked(Priority),
}

pub const EVICTION_ORDER: [EvictionClass; 3] = [
    EvictionClass::Acked,
    EvictionClass::Unacked(Priority::Telemetry),
    EvictionClass::Unacked(Priority::Normal),
];

/// Eviction brings the database down to this many bytes once it passes the
/// budget, so that it does not run again at the very next commit.
pub fn eviction_target(budget_bytes: u64) -> u64 {
    budget_bytes / 10 * 9
}

/// The least a full disk makes eviction free per attempt.
pub const FULL_DISK_MIN_EVICT_BYTES: u64 = 2 << 20;

/// Where eviction brings a store of `used` bytes when the file system refused a
/// write: a tenth of it, at least [`FULL_DISK_MIN_EVICT_BYTES`], twice as much
/// on each further attempt, and never above the budget's own target.
pub fn full_disk_target(used: u64, budget_bytes: u64, attempt: u32) -> u64 {
    let room = (used / 10)
        .max(FULL_DISK_MIN_EVICT_BYTES)
        .saturating_mul(1 << attempt.saturating_sub(1).min(8));
    used.saturating_sub(room).min(eviction_target(budget_bytes))
}

/// How many rows to delete next to free about `excess` bytes, given the average
/// row size seen so far. At least a few pages' worth so progress is certain.
pub fn eviction_step(excess: u64, avg_row_bytes: u64) -> usize {
    let rows = excess / avg_row_bytes.max(1) + 1;
    rows.clamp(64, 50_000) as usize
}

/// Whether `new` should replace `current` as the anchor of its boot: a better
/// source wins; between equal sources the later measurement wins, since it has
/// had the least time to drift.
pub fn anchor_replaces(current: Option<&TimeAnchor>, new: &TimeAnchor) -> bool {
    match current {
        None => true,
        Some(cur) => {
            let (c, n) = (cur.source.rank(), new.source.rank());
            n > c || (n == c && new.mono_ms >= cur.mono_ms)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleet_protocol::{BootId, TimeSource};

    fn new_event(kind: &str, data: EventData) -> NewEvent {
        NewEvent {
            kind: Kind::new(kind),
            priority: Priority::Normal,
            mono_ms: 0,
            wall_ms: 0,
            config_version: 1,
            data,
        }
    }

    #[test]
    fn events_with_bad_kinds_or_payloads_are_refused() {
        assert!(invalid_reason(&new_event("Bad Kind", EventData::None)).is_some());
        assert!(
            invalid_reason(&new_event("note", EventData::Json(serde_json::json!([1])))).is_some()
        );
        assert!(invalid_reason(&new_event(
            "note",
            EventData::Json(serde_json::json!({"a": 1}))
        ))
        .is_none());
    }

    #[test]
    fn nothing_past_the_last_committed_seq_means_no_batch() {
        assert_eq!(batch_range(10, 10, None, false), None);
        assert_eq!(batch_range(12, 10, None, false), None);
    }

    #[test]
    fn a_full_read_ends_at_its_last_event() {
        assert_eq!(batch_range(0, 100, Some(7), true), Some((1, 7)));
    }

    #[test]
    fn a_short_read_covers_evicted_seqs_up_to_the_last_committed() {
        assert_eq!(batch_range(5, 100, Some(40), false), Some((6, 100)));
        assert_eq!(batch_range(5, 100, None, false), Some((6, 100)));
    }

    #[test]
    fn runs_split_at_gaps() {
        assert_eq!(runs(&[1, 2, 3, 5, 7, 8]), vec![(1, 3), (5, 5), (7, 8)]);
        assert!(runs(&[]).is_empty());
    }

    #[test]
    fn eviction_never_lists_unacked_critical() {
        assert!(!EVICTION_ORDER.contains(&EvictionClass::Unacked(Priority::Critical)));
        assert_eq!(EVICTION_ORDER[0], EvictionClass::Acked);
    }

    #[test]
    fn a_full_disk_frees_a_tenth_or_two_megabytes_and_more_each_attempt() {
        let mb = 1 << 20;
        assert_eq!(full_disk_target(100 * mb, 256 * mb, 1), 90 * mb);
        assert_eq!(full_disk_target(100 * mb, 256 * mb, 2), 80 * mb);
        assert_eq!(full_disk_target(10 * mb, 256 * mb, 1), 8 * mb);
        assert_eq!(full_disk_target(mb, 256 * mb, 1), 0);
        // Over the budget already: the budget's target is lower still.
        assert_eq!(full_disk_target(100 * mb, 50 * mb, 1), 45 * mb);
    }

    #[test]
    fn eviction_steps_are_bounded_both_ways() {
        assert_eq!(eviction_step(0, 100), 64);
        assert_eq!(eviction_step(1 << 40, 1), 50_000);
        assert_eq!(eviction_step(100_000, 100), 1_001);
    }

    fn anchor(source: TimeSource, mono_ms: u64) -> TimeAnchor {
        TimeAnchor {
            boot_id: BootId::default(),
            mono_ms,
            true_ms: 0,
            source,
            uncertainty_ms: 0,
        }
    }

    #[test]
    fn a_better_time_source_wins_even_when_older() {
        let gps = anchor(TimeSource::Gps, 10);
        let server = anchor(TimeSource::Server, 500);
        assert!(anchor_replaces(Some(&server), &gps));
        assert!(!anchor_replaces(Some(&gps), &server));
    }

    #[test]
    fn between_equal_sources_the_newer_anchor_wins() {
        let old = anchor(TimeSource::Server, 10);
        let new = anchor(TimeSource::Server, 20);
        assert!(anchor_replaces(Some(&old), &new));
        assert!(!anchor_replaces(Some(&new), &old));
        assert!(anchor_replaces(None, &old));
    }
}
