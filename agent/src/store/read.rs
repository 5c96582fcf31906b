//! Queries on the read connection. Each runs inside one read transaction so the
//! counters and the rows it returns come from the same snapshot.

use super::{outbox, reserve, rows, schema, PendingBatch, StoreError, StoreStats};
use fleet_protocol::{BootId, Event, EventTime, Hlc, Kind, Priority, TimeAnchor, TimeSource};
use rusqlite::{Connection, OptionalExtension, Row};
use std::path::Path;

/// The columns of `events` joined with its boot, in the order [`event_from_row`] reads.
pub(crate) const EVENT_COLUMNS: &str = "e.seq, b.boot_id, e.kind, e.priority, e.mono_ms, \
     e.wall_ms, e.hlc, e.config_version, e.data FROM events e JOIN boots b ON b.id = e.boot";

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct OutboxRow {
    pub last_seq: u64,
    pub last_hlc: u64,
    pub acked_seq: u64,
    pub evicted_telemetry: u64,
    pub evicted_normal: u64,
    pub evicted_critical: u64,
    pub pruned_acked: u64,
}

pub(crate) fn outbox_row(c: &Connection) -> Result<OutboxRow, StoreError> {
    let row = c
        .prepare_cached(
            "SELECT last_seq, last_hlc, acked_seq, evicted_telemetry, evicted_normal, \
             evicted_critical, pruned_acked FROM outbox WHERE id = 1",
        )?
        .query_row([], |r| {
            Ok(OutboxRow {
                last_seq: r.get::<_, i64>(0)? as u64,
                last_hlc: r.get::<_, i64>(1)? as u64,
                acked_seq: r.get::<_, i64>(2)? as u64,
                evicted_telemetry: r.get::<_, i64>(3)? as u64,
                evicted_normal: r.get::<_, i64>(4)? as u64,
                evicted_critical: r.get::<_, i64>(5)? as u64,
                pruned_acked: r.get::<_, i64>(6)? as u64,
            })
        })?;
    Ok(row)
}

/// Runs `f` in a read transaction: one consistent snapshot of the database.
fn snapshot<T>(
    c: &Connection,
    f: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    c.execute_batch("BEGIN DEFERRED")?;
    let out = f(c);
    c.execute_batch("COMMIT")?;
    out
}

pub(crate) fn batch(
    c: &Connection,
    after_seq: u64,
    max_events: usize,
) -> Result<Option<PendingBatch>, StoreError> {
    // A zero limit would read nothing and then claim every later seq as evicted.
    let max_events = max_events.max(1);
    snapshot(c, |c| {
        let last_committed = outbox_row(c)?.last_seq;
        if after_seq >= last_committed {
            return Ok(None);
        }
        let events = events_after(c, after_seq, max_events, |_, e| e)?;
        let range = outbox::batch_range(
            after_seq,
            last_committed,
            events.last().map(|e| e.seq),
            events.len() == max_events,
        );
        Ok(range.map(|(first_seq, last_seq)| PendingBatch {
            first_seq,
            last_seq,
            events,
        }))
    })
}

pub(crate) fn list_events(
    c: &Connection,
    after_seq: u64,
    limit: usize,
) -> Result<Vec<(Event, bool)>, StoreError> {
    snapshot(c, |c| {
        let acked = outbox_row(c)?.acked_seq;
        events_after(c, after_seq, limit, |seq, e| (e, seq <= acked))
    })
}

fn events_after<T>(
    c: &Connection,
    after_seq: u64,
    limit: usize,
    mut map: impl FnMut(u64, Event) -> T,
) -> Result<Vec<T>, StoreError> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {EVENT_COLUMNS} WHERE e.seq > ?1 ORDER BY e.seq LIMIT ?2"
    ))?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut rows = stmt.query(rusqlite::params![after_seq as i64, limit])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let ev = event_from_row(row)?;
        out.push(map(ev.seq, ev));
    }
    Ok(out)
}

pub(crate) fn event_from_row(r: &Row<'_>) -> Result<Event, StoreError> {
    let seq = r.get::<_, i64>(0)? as u64;
    let corrupt = |reason: String| StoreError::Corrupt(format!("event {seq}: {reason}"));
    let boot: [u8; 16] = r
        .get_ref(1)?
        .as_blob()
        .map_err(|e| corrupt(e.to_string()))?
        .try_into()
        .map_err(|_| corrupt("boot id is not 16 bytes".into()))?;
    let kind: String = r.get(2)?;
    let priority_code: i64 = r.get(3)?;
    let priority = u8::try_from(priority_code)
        .ok()
        .and_then(Priority::from_u8)
        .ok_or_else(|| corrupt(format!("unknown priority {priority_code}")))?;
    let blob = r
        .get_ref(8)?
        .as_blob()
        .map_err(|e| corrupt(e.to_string()))?;
    let data = rows::decode_data(blob).map_err(corrupt)?;
    Ok(Event {
        seq,
        kind: known_or_owned(kind),
        priority,
        time: EventTime {
            boot_id: BootId(boot),
            mono_ms: r.get::<_, i64>(4)? as u64,
            wall_ms: r.get(5)?,
            hlc: Hlc(r.get::<_, i64>(6)? as u64),
        },
        config_version: r.get::<_, i64>(7)? as u32,
        data,
    })
}

/// Known kinds borrow their static name instead of allocating one per event.
fn known_or_owned(name: String) -> Kind {
    match fleet_protocol::event::KNOWN_KINDS
        .iter()
        .find(|k| **k == name)
    {
        Some(k) => Kind::known(k),
        None => Kind::new(name),
    }
}

pub(crate) fn stats(c: &Connection, path: &Path, budget: u64) -> Result<StoreStats, StoreError> {
    snapshot(c, |c| {
        let o = outbox_row(c)?;
        let (unacked, oldest): (i64, Option<i64>) = c
            .prepare_cached(
                "SELECT count(*), (SELECT wall_ms FROM events WHERE seq > ?1 ORDER BY seq LIMIT 1) \
                 FROM events WHERE seq > ?1",
            )?
            .query_row([o.acked_seq as i64], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(StoreStats {
            last_seq: o.last_seq,
            acked_seq: o.acked_seq,
            unacked_events: unacked as u64,
            oldest_unacked_wall_ms: oldest,
            evicted_events: o.evicted_telemetry + o.evicted_normal + o.evicted_critical,
            evicted_telemetry: o.evicted_telemetry,
            evicted_normal: o.evicted_normal,
            evicted_critical: o.evicted_critical,
            pruned_acked: o.pruned_acked,
            db_bytes: schema::file_bytes(path),
            disk_budget_bytes: budget,
            disk_full: meta_u64(c, super::writer::META_DISK_FULL)? != 0,
            disk_full_total: meta_u64(c, super::writer::META_DISK_FULL_TOTAL)?,
            disk_free_bytes: path.parent().and_then(reserve::free_bytes),
        })
    })
}

pub(crate) fn evicted_ranges(
    c: &Connection,
    after_seq: u64,
) -> Result<Vec<(u64, u64)>, StoreError> {
    let mut stmt = c.prepare_cached(
        "SELECT first_seq, last_seq FROM evicted_ranges WHERE last_seq > ?1 ORDER BY first_seq",
    )?;
    let rows = stmt.query_map([after_seq as i64], |r| {
        Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(crate) fn anchor_for(c: &Connection, boot: BootId) -> Result<Option<TimeAnchor>, StoreError> {
    let mut stmt = c.prepare_cached(
        "SELECT boot_id, mono_ms, true_ms, source, uncertainty_ms FROM time_anchors WHERE boot_id = ?1",
    )?;
    let row = stmt.query_row([&boot.0[..]], anchor_from_row).optional()?;
    row.transpose()
}

pub(crate) fn anchors(c: &Connection) -> Result<Vec<TimeAnchor>, StoreError> {
    let mut stmt = c.prepare_cached(
        "SELECT boot_id, mono_ms, true_ms, source, uncertainty_ms FROM time_anchors ORDER BY boot_id",
    )?;
    let rows = stmt.query_map([], anchor_from_row)?;
    rows.map(|r| r?).collect()
}

fn anchor_from_row(r: &Row<'_>) -> rusqlite::Result<Result<TimeAnchor, StoreError>> {
    let boot: Vec<u8> = r.get(0)?;
    let source: i64 = r.get(3)?;
    let parsed = (|| {
        let boot_id = BootId(boot.try_into().map_err(|_| "boot id is not 16 bytes")?);
        let source = u8::try_from(source)
            .ok()
            .and_then(TimeSource::from_u8)
            .ok_or("unknown time source")?;
        Ok::<_, &str>((boot_id, source))
    })();
    let (mono_ms, true_ms, uncertainty): (i64, i64, i64) = (r.get(1)?, r.get(2)?, r.get(4)?);
    Ok(parsed
        .map(|(boot_id, source)| TimeAnchor {
            boot_id,
            mono_ms: mono_ms as u64,
            true_ms,
            source,
            uncertainty_ms: uncertainty as u32,
        })
        .map_err(|e| StoreError::Corrupt(format!("time anchor: {e}"))))
}

pub(crate) fn meta(c: &Connection, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(c.prepare_cached("SELECT value FROM meta WHERE key = ?1")?
        .query_row([key], |r| r.get(0))
        .optional()?)
}

/// A counter kept in `meta` as decimal text; 0 when absent.
pub(crate) fn meta_u64(c: &Connection, key: &str) -> Result<u64, StoreError> {
    match meta(c, key)? {
        None => Ok(0),
        Some(v) => std::str::from_utf8(&v)
            .ok()
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| StoreError::Corrupt(format!("meta {key} is not a number"))),
    }
}
