//! One batch, one transaction: anchors, events, quarantine, evicted holes, the
//! device's high-water mark and its vehicle's last position.

use super::blob;
use super::conn::backend;
use crate::storage::{DeviceRecord, IngestOutcome, StorageError};
use crate::timebase::{event_time, is_better};
use fleet_protocol::batch::RejectedEvent;
use fleet_protocol::{Batch, BootId, Event, EventData, TimeAnchor, TimeSource};
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use std::collections::HashMap;

const INSERT_EVENT: &str = "INSERT INTO events (tenant_id, device_id, seq, kind, priority, boot_id, mono_ms, wall_ms, hlc, config_version, time_ms, time_source, data, received_at_ms)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
     ON CONFLICT (tenant_id, device_id, seq) DO NOTHING";

const INSERT_QUARANTINE: &str = "INSERT OR IGNORE INTO quarantine (tenant_id, device_id, seq, digest, kind, reason_code, reason, raw, received_at_ms)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";

/// Largest seq SQLite's signed integers can hold.
const MAX_SEQ: u64 = i64::MAX as u64;

pub(super) fn ingest(
    conn: &mut Connection,
    device: &DeviceRecord,
    batch: Batch,
    now_ms: i64,
) -> Result<IngestOutcome, StorageError> {
    let h = &batch.header;
    if h.tenant_id != device.tenant_id || h.device_id != device.device_id {
        return Err(StorageError::Invalid(
            "batch header names another device".into(),
        ));
    }
    if h.last_seq > MAX_SEQ {
        return Err(StorageError::Invalid(format!(
            "seq {} is too large",
            h.last_seq
        )));
    }
    let t = blob(&device.tenant_id);
    let d = blob(&device.device_id);
    let tx = conn.transaction().map_err(backend)?;

    let (acked, revoked): (i64, Option<i64>) = tx
        .query_row(
            "SELECT acked_seq, revoked_at_ms FROM devices WHERE tenant_id = ?1 AND device_id = ?2",
            params![t, d],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(backend)?
        .ok_or(StorageError::UnknownDevice)?;
    if revoked.is_some() {
        return Err(StorageError::DeviceRevoked);
    }
    let acked = acked as u64;

    let mut anchors: HashMap<BootId, Option<TimeAnchor>> = HashMap::new();
    for a in &h.anchors {
        let current = cached_anchor(&tx, &mut anchors, t, d, a.boot_id)?;
        if is_better(a, current.as_ref()) {
            store_anchor(&tx, t, d, a)?;
            anchors.insert(a.boot_id, Some(*a));
        }
    }

    let mut out = IngestOutcome {
        acked_seq: acked,
        stored: 0,
        duplicates: 0,
        quarantined: 0,
        evicted: 0,
    };
    let mut last_position: Option<&Event> = None;
    let mut folded: Vec<(&Event, i64)> = Vec::new();
    let mut spans: HashMap<BootId, (u64, u64)> = HashMap::new();
    {
        let mut insert = tx.prepare_cached(INSERT_EVENT).map_err(backend)?;
        for e in &batch.events {
            let anchor = cached_anchor(&tx, &mut anchors, t, d, e.time.boot_id)?;
            let (time_ms, source) = event_time(&e.time, anchor.as_ref(), now_ms);
            let data = data_text(&e.data)?;
            let n = insert
                .execute(params![
                    t,
                    d,
                    e.seq as i64,
                    e.kind.as_str(),
                    e.priority as u8,
                    e.time.boot_id.0.as_slice(),
                    e.time.mono_ms as i64,
                    e.time.wall_ms,
                    e.time.hlc.0 as i64,
                    e.config_version,
                    time_ms,
                    source,
                    data,
                    now_ms
                ])
                .map_err(backend)?;
            if n == 1 {
                out.stored += 1;
                folded.push((e, time_ms));
                let span = spans.entry(e.time.boot_id).or_insert((e.seq, e.seq));
                span.1 = e.seq;
                if matches!(e.data, EventData::Position(_)) {
                    last_position = Some(e);
                }
            } else if same_as_stored(&tx, t, d, e, &data)? {
                out.duplicates += 1;
            } else {
                let raw =
                    serde_json::to_value(e).map_err(|e| StorageError::Backend(e.to_string()))?;
                let reason = format!("seq {} was already stored with different content", e.seq);
                if quarantine(
                    &tx,
                    t,
                    d,
                    e.seq,
                    Some(e.kind.as_str()),
                    "seq_conflict",
                    &reason,
                    &raw,
                    now_ms,
                )? {
                    out.quarantined += 1;
                }
                tracing::warn!(device = %device.device_id, seq = e.seq, "quarantined a conflicting resend");
            }
        }
    }
    for r in &batch.rejects {
        if quarantine_reject(&tx, t, d, r, now_ms)? {
            out.quarantined += 1;
        }
    }

    for (boot, (first, last)) in spans {
        tx.prepare_cached(
            "INSERT INTO boot_spans (tenant_id, device_id, boot_id, first_seq, last_seq) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (tenant_id, device_id, boot_id) DO UPDATE
             SET first_seq = min(first_seq, excluded.first_seq), last_seq = max(last_seq, excluded.last_seq)",
        )
        .map_err(backend)?
        .execute(params![t, d, boot.0.as_slice(), first as i64, last as i64])
        .map_err(backend)?;
    }
    if let Some(e) = last_position {
        store_last_position(
            &tx,
            t,
            d,
            e,
            anchors.get(&e.time.boot_id).copied().flatten().as_ref(),
            now_ms,
        )?;
    }

    let present = present_seqs(&batch);
    for (a, b) in holes(h.first_seq, h.last_seq, &present) {
        for (x, y) in uncovered(&tx, t, d, a, b)? {
            tx.prepare_cached("INSERT INTO evicted_ranges (tenant_id, device_id, first_seq, last_seq, recorded_at_ms) VALUES (?1, ?2, ?3, ?4, ?5)")
                .map_err(backend)?
                .execute(params![t, d, x as i64, y as i64, now_ms])
                .map_err(backend)?;
            out.evicted += y - x + 1;
        }
    }

    // The ack only moves when this batch joins up with what is already stored; an
    // out-of-order batch is kept, and acknowledged once the gap before it is filled.
    if h.first_seq <= acked.saturating_add(1) {
        out.acked_seq = acked.max(h.last_seq);
    }
    tx.prepare_cached(
        "UPDATE devices SET acked_seq = ?3, event_count = event_count + ?4, evicted_count = evicted_count + ?5,
             quarantined_count = quarantined_count + ?6, last_seen_ms = max(coalesce(last_seen_ms, 0), ?7)
         WHERE tenant_id = ?1 AND device_id = ?2",
    )
    .map_err(backend)?
    .execute(params![t, d, out.acked_seq as i64, out.stored, out.evicted as i64, out.quarantined, now_ms])
    .map_err(backend)?;
    super::analytics::fold_ingested(&tx, t, d, &folded, now_ms)?;
    tx.commit().map_err(backend)?;
    Ok(out)
}

fn data_text(data: &EventData) -> Result<String, StorageError> {
    data.json_text()
        .map_err(|e| StorageError::Backend(e.to_string()))
}

fn cached_anchor(
    tx: &Transaction<'_>,
    cache: &mut HashMap<BootId, Option<TimeAnchor>>,
    t: &[u8],
    d: &[u8],
    boot: BootId,
) -> Result<Option<TimeAnchor>, StorageError> {
    if let Some(a) = cache.get(&boot) {
        return Ok(*a);
    }
    let a = tx
        .prepare_cached("SELECT mono_ms, true_ms, source, uncertainty_ms FROM time_anchors WHERE tenant_id = ?1 AND device_id = ?2 AND boot_id = ?3")
        .map_err(backend)?
        .query_row(params![t, d, boot.0.as_slice()], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, u8>(2)?, r.get::<_, u32>(3)?))
        })
        .optional()
        .map_err(backend)?
        .map(|(mono, true_ms, source, unc)| {
            let source = TimeSource::from_u8(source).ok_or_else(|| StorageError::Corrupt(format!("time source {source}")))?;
            Ok::<_, StorageError>(TimeAnchor { boot_id: boot, mono_ms: mono as u64, true_ms, source, uncertainty_ms: unc })
        })
        .transpose()?;
    cache.insert(boot, a);
    Ok(a)
}

/// Keeps `a` as the boot's anchor and moves every stored event of that boot (and
/// the vehicle's last position, if it is from that boot) onto it.
fn store_anchor(
    tx: &Transaction<'_>,
    t: &[u8],
    d: &[u8],
    a: &TimeAnchor,
) -> Result<(), StorageError> {
    let boot = a.boot_id.0.as_slice();
    tx.execute(
        "INSERT INTO time_anchors (tenant_id, device_id, boot_id, mono_ms, true_ms, source, uncertainty_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (tenant_id, device_id, boot_id) DO UPDATE SET mono_ms = excluded.mono_ms, true_ms = excluded.true_ms,
             source = excluded.source, uncertainty_ms = excluded.uncertainty_ms",
        params![t, d, boot, a.mono_ms as i64, a.true_ms, a.source as u8, a.uncertainty_ms],
    )
    .map_err(backend)?;
    let offset = a.true_ms - a.mono_ms as i64;
    let span: Option<(i64, i64)> = tx
        .prepare_cached("SELECT first_seq, last_seq FROM boot_spans WHERE tenant_id = ?1 AND device_id = ?2 AND boot_id = ?3")
        .map_err(backend)?
        .query_row(params![t, d, boot], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .map_err(backend)?;
    if let Some((first, last)) = span {
        tx.prepare_cached(
            "UPDATE events SET time_ms = ?6 + mono_ms, time_source = ?7
             WHERE tenant_id = ?1 AND device_id = ?2 AND seq BETWEEN ?3 AND ?4 AND boot_id = ?5",
        )
        .map_err(backend)?
        .execute(params![t, d, first, last, boot, offset, a.source.as_str()])
        .map_err(backend)?;
    }
    tx.prepare_cached("UPDATE vehicle_positions SET time_ms = ?4 + mono_ms, time_source = ?5 WHERE tenant_id = ?1 AND device_id = ?2 AND boot_id = ?3")
        .map_err(backend)?
        .execute(params![t, d, boot, offset, a.source.as_str()])
        .map_err(backend)?;
    Ok(())
}

fn same_as_stored(
    tx: &Transaction<'_>,
    t: &[u8],
    d: &[u8],
    e: &Event,
    data: &str,
) -> Result<bool, StorageError> {
    type Row = (String, u8, Vec<u8>, i64, i64, i64, u32, String);
    let row: Option<Row> = tx
        .prepare_cached(
            "SELECT kind, priority, boot_id, mono_ms, wall_ms, hlc, config_version, data FROM events WHERE tenant_id = ?1 AND device_id = ?2 AND seq = ?3",
        )
        .map_err(backend)?
        .query_row(params![t, d, e.seq as i64], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?))
        })
        .optional()
        .map_err(backend)?;
    Ok(match row {
        Some((kind, prio, boot, mono, wall, hlc, config, stored_data)) => {
            kind == e.kind.as_str()
                && prio == e.priority as u8
                && boot == e.time.boot_id.0
                && mono == e.time.mono_ms as i64
                && wall == e.time.wall_ms
                && hlc == e.time.hlc.0 as i64
                && config == e.config_version
                && stored_data == data
        }
        None => false,
    })
}

#[allow(clippy::too_many_arguments)]
fn quarantine(
    tx: &Transaction<'_>,
    t: &[u8],
    d: &[u8],
    seq: u64,
    kind: Option<&str>,
    code: &str,
    reason: &str,
    raw: &serde_json::Value,
    now_ms: i64,
) -> Result<bool, StorageError> {
    let raw = raw.to_string();
    let digest = crate::storage::sha256(format!("{code}\n{raw}").as_bytes());
    let n = tx
        .prepare_cached(INSERT_QUARANTINE)
        .map_err(backend)?
        .execute(params![
            t,
            d,
            seq as i64,
            digest.as_slice(),
            kind,
            code,
            reason,
            raw,
            now_ms
        ])
        .map_err(backend)?;
    Ok(n == 1)
}

fn quarantine_reject(
    tx: &Transaction<'_>,
    t: &[u8],
    d: &[u8],
    r: &RejectedEvent,
    now_ms: i64,
) -> Result<bool, StorageError> {
    quarantine(
        tx,
        t,
        d,
        r.seq,
        r.kind.as_deref(),
        "invalid_event",
        &r.reason,
        &r.raw,
        now_ms,
    )
}

fn store_last_position(
    tx: &Transaction<'_>,
    t: &[u8],
    d: &[u8],
    e: &Event,
    anchor: Option<&TimeAnchor>,
    received_ms: i64,
) -> Result<(), StorageError> {
    let EventData::Position(p) = &e.data else {
        return Ok(());
    };
    let (time_ms, source) = event_time(&e.time, anchor, received_ms);
    tx.prepare_cached(
        "INSERT INTO vehicle_positions (tenant_id, device_id, seq, boot_id, mono_ms, time_ms, time_source, lat_e7, lon_e7, speed_cms, heading_cdeg)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
         ON CONFLICT (tenant_id, device_id) DO UPDATE SET seq = excluded.seq, boot_id = excluded.boot_id, mono_ms = excluded.mono_ms,
             time_ms = excluded.time_ms, time_source = excluded.time_source, lat_e7 = excluded.lat_e7, lon_e7 = excluded.lon_e7,
             speed_cms = excluded.speed_cms, heading_cdeg = excluded.heading_cdeg
         WHERE excluded.seq > vehicle_positions.seq",
    )
    .map_err(backend)?
    .execute(params![
        t,
        d,
        e.seq as i64,
        e.time.boot_id.0.as_slice(),
        e.time.mono_ms as i64,
        time_ms,
        source,
        p.lat_e7,
        p.lon_e7,
        p.speed_cms,
        p.heading_cdeg
    ])
    .map_err(backend)?;
    Ok(())
}

/// Seqs the batch carries, as events or as rejects, ascending.
fn present_seqs(batch: &Batch) -> Vec<u64> {
    let mut seqs: Vec<u64> = batch
        .events
        .iter()
        .map(|e| e.seq)
        .chain(batch.rejects.iter().map(|r| r.seq))
        .collect();
    seqs.sort_unstable();
    seqs
}

/// Ranges of `first..=last` not in `present` (ascending).
pub(crate) fn holes(first: u64, last: u64, present: &[u64]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut next = first;
    for &s in present {
        if s > next {
            out.push((next, s - 1));
        }
        next = next.max(s + 1);
    }
    if next <= last {
        out.push((next, last));
    }
    out
}

/// The parts of `a..=b` not already accounted for by stored events, quarantined
/// events or earlier evicted ranges, so that a resent batch counts nothing twice.
fn uncovered(
    tx: &Transaction<'_>,
    t: &[u8],
    d: &[u8],
    a: u64,
    b: u64,
) -> Result<Vec<(u64, u64)>, StorageError> {
    let mut taken: Vec<(u64, u64)> = Vec::new();
    let mut q = tx
        .prepare_cached("SELECT first_seq, last_seq FROM evicted_ranges WHERE tenant_id = ?1 AND device_id = ?2 AND first_seq <= ?4 AND last_seq >= ?3")
        .map_err(backend)?;
    let rows = q
        .query_map(params![t, d, a as i64, b as i64], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64))
        })
        .map_err(backend)?;
    for r in rows {
        taken.push(r.map_err(backend)?);
    }
    for sql in [
        "SELECT seq FROM events WHERE tenant_id = ?1 AND device_id = ?2 AND seq BETWEEN ?3 AND ?4",
        "SELECT DISTINCT seq FROM quarantine WHERE tenant_id = ?1 AND device_id = ?2 AND seq BETWEEN ?3 AND ?4",
    ] {
        let mut q = tx.prepare_cached(sql).map_err(backend)?;
        let rows = q.query_map(params![t, d, a as i64, b as i64], |r| r.get::<_, i64>(0)).map_err(backend)?;
        for r in rows {
            let s = r.map_err(backend)? as u64;
            taken.push((s, s));
        }
    }
    taken.sort_unstable();
    let mut out = Vec::new();
    let mut next = a;
    for (x, y) in taken {
        if x > next {
            out.push((next, (x - 1).min(b)));
        }
        next = next.max(y.saturating_add(1));
        if next > b {
            break;
        }
    }
    if next <= b {
        out.push((next, b));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::holes;

    #[test]
    fn holes_are_the_covered_range_minus_present_seqs() {
        assert_eq!(holes(1, 10, &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]), vec![]);
        assert_eq!(holes(1, 10, &[]), vec![(1, 10)]);
        assert_eq!(holes(5, 12, &[6, 7, 10]), vec![(5, 5), (8, 9), (11, 12)]);
    }
}
