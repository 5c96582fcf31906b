//! One batch, one transaction: anchors, events, quarantine, evicted holes, the
//! device's high-water mark and its vehicle's last position; the same outcome as
//! the SQLite backend's for every batch.
//!
//! `events` is partitioned by time, so its unique key holds `time_ms` and cannot
//! by itself keep a seq stored once. The device's row lock, taken first, makes a
//! device's batches take turns; under it the batch looks up the seqs it carries
//! and inserts only the new ones, in one multi-row statement.
//!
//! Statements whose results do not feed each other are sent together without
//! waiting (tokio-postgres pipelines the requests of one connection), and the
//! server runs them in the order sent. A common batch takes four round trips:
//! (1) begin with the tenant set, the row lock, the boots' anchors, the stored
//! seqs in the batch's range and the analytics settings; (2) the events, boot
//! spans, last position, device counters and the rollup rows to merge into;
//! (3) the merged rollups; (4) commit. Under the row lock the reads sent
//! behind it see every earlier batch of the device, since each statement takes
//! its own snapshot when it starts.

use super::{pg, pool_err, PgStorage, PgTx};
use crate::storage::sqlite::ingest::holes;
use crate::storage::{DeviceRecord, IngestOutcome, StorageError};
use crate::timebase::{event_time, is_better};
use fleet_protocol::batch::RejectedEvent;
use fleet_protocol::{Batch, BootId, Event, EventData, TimeAnchor, TimeSource};
use futures_util::future::try_join_all;
use futures_util::try_join;
use std::collections::HashMap;
use tokio_postgres::Row;
use uuid::Uuid;

/// Largest seq a bigint holds.
const MAX_SEQ: u64 = i64::MAX as u64;

const LOCK_DEVICE: &str =
    "SELECT acked_seq, revoked_at_ms FROM devices WHERE tenant_id = $1 AND device_id = $2 FOR UPDATE";

const SELECT_ANCHORS: &str =
    "SELECT boot_id, mono_ms, true_ms, source, uncertainty_ms FROM time_anchors
     WHERE tenant_id = $1 AND device_id = $2 AND boot_id = ANY($3)";

/// Stored events in the batch's seq range: one primary-key range scan per
/// partition, where `seq = ANY(…)` probed every partition once per seq.
const SELECT_STORED: &str =
    "SELECT seq, kind, priority, boot_id, mono_ms, wall_ms, hlc, config_version, data FROM events
     WHERE tenant_id = $1 AND device_id = $2 AND seq BETWEEN $3 AND $4";

/// The arrays are unnested in the select list, where they advance in step one
/// row at a time; `FROM unnest(a, b, …)` first copied every array into a
/// tuplestore of its own, and cost a fifth more than this form.
const INSERT_EVENTS: &str = "INSERT INTO events (tenant_id, device_id, seq, kind, priority, boot_id, mono_ms, wall_ms, hlc,
         config_version, time_ms, time_source, data, received_at_ms)
     SELECT $1, $2, unnest($3::bigint[]), unnest($4::text[]), unnest($5::smallint[]), unnest($6::bytea[]),
         unnest($7::bigint[]), unnest($8::bigint[]), unnest($9::bigint[]), unnest($10::bigint[]),
         unnest($11::bigint[]), unnest($12::text[]), unnest($13::text[]), $14";

const UPSERT_SPAN: &str = "INSERT INTO boot_spans (tenant_id, device_id, boot_id, first_seq, last_seq) VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (tenant_id, device_id, boot_id) DO UPDATE
     SET first_seq = least(boot_spans.first_seq, excluded.first_seq),
         last_seq = greatest(boot_spans.last_seq, excluded.last_seq)";

const UPSERT_LAST_POSITION: &str = "INSERT INTO vehicle_positions (tenant_id, device_id, seq, boot_id, mono_ms, time_ms, time_source, lat_e7, lon_e7, speed_cms, heading_cdeg)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
     ON CONFLICT (tenant_id, device_id) DO UPDATE SET seq = excluded.seq, boot_id = excluded.boot_id, mono_ms = excluded.mono_ms,
         time_ms = excluded.time_ms, time_source = excluded.time_source, lat_e7 = excluded.lat_e7, lon_e7 = excluded.lon_e7,
         speed_cms = excluded.speed_cms, heading_cdeg = excluded.heading_cdeg
     WHERE excluded.seq > vehicle_positions.seq";

const UPDATE_DEVICE: &str = "UPDATE devices SET acked_seq = $3, event_count = event_count + $4, evicted_count = evicted_count + $5,
         quarantined_count = quarantined_count + $6, last_seen_ms = greatest(coalesce(last_seen_ms, 0), $7)
     WHERE tenant_id = $1 AND device_id = $2";

const INSERT_QUARANTINE: &str = "INSERT INTO quarantine (tenant_id, device_id, seq, digest, kind, reason_code, reason, raw, received_at_ms)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING";

/// What decides whether a resent seq is the same event.
#[derive(Debug, PartialEq, Eq)]
struct Content {
    kind: String,
    priority: i16,
    boot_id: Vec<u8>,
    mono_ms: i64,
    wall_ms: i64,
    hlc: i64,
    config_version: i64,
    data: String,
}

impl Content {
    /// Whether `e`, whose data is the JSON text `data`, is this stored event;
    /// compared field by field, so a fresh event costs no copies.
    fn is(&self, e: &Event, data: &str) -> bool {
        self.kind == e.kind.as_str()
            && self.priority == i16::from(e.priority as u8)
            && self.boot_id == e.time.boot_id.0
            && self.mono_ms == e.time.mono_ms as i64
            && self.wall_ms == e.time.wall_ms
            && self.hlc == e.time.hlc.0 as i64
            && self.config_version == i64::from(e.config_version)
            && self.data == data
    }
}

/// Whether two events of one batch with the same seq are the same event.
fn same_event(a: &Event, a_data: &str, b: &Event, b_data: &str) -> bool {
    a.kind == b.kind
        && a.priority as u8 == b.priority as u8
        && a.time.boot_id == b.time.boot_id
        && a.time.mono_ms == b.time.mono_ms
        && a.time.wall_ms == b.time.wall_ms
        && a.time.hlc.0 == b.time.hlc.0
        && a.config_version == b.config_version
        && a_data == b_data
}

/// Column arrays for one `INSERT_EVENTS`, borrowing from the batch.
#[derive(Default)]
struct NewRows<'a> {
    seq: Vec<i64>,
    kind: Vec<&'a str>,
    priority: Vec<i16>,
    boot_id: Vec<&'a [u8]>,
    mono_ms: Vec<i64>,
    wall_ms: Vec<i64>,
    hlc: Vec<i64>,
    config_version: Vec<i64>,
    time_ms: Vec<i64>,
    time_source: Vec<&'static str>,
    data: Vec<String>,
}

pub(super) async fn ingest(
    storage: &PgStorage,
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
    let (t, d) = (device.tenant_id, device.device_id);
    let mut boots: Vec<BootId> = h
        .anchors
        .iter()
        .map(|a| a.boot_id)
        .chain(batch.events.iter().map(|e| e.time.boot_id))
        .collect();
    boots.sort_unstable_by_key(|b| b.0);
    boots.dedup();
    let boot_keys: Vec<&[u8]> = boots.iter().map(|b| b.0.as_slice()).collect();
    let seqs = || batch.events.iter().map(|e| e.seq as i64);
    let seq_range = seqs().min().zip(seqs().max());

    // The transaction is rolled back if anything below fails, even the BEGIN.
    let tx = PgTx {
        conn: Some(storage.pool.get().await.map_err(pool_err)?),
    };
    let (lock_q, anchors_q, stored_q) = try_join!(
        tx.prepare_cached(LOCK_DEVICE),
        tx.prepare_cached(SELECT_ANCHORS),
        tx.prepare_cached(SELECT_STORED),
    )
    .map_err(pg)?;
    // A uuid's text form is hex and dashes, safe to splice.
    let begin = format!("BEGIN; SELECT set_config('app.tenant_id', '{t}', true)");
    let (_, lock, anchor_rows, stored_rows, settings) = try_join!(
        async { tx.batch_execute(&begin).await.map_err(pg) },
        async { tx.query_opt(&lock_q, &[&t, &d]).await.map_err(pg) },
        async {
            tx.query(&anchors_q, &[&t, &d, &boot_keys])
                .await
                .map_err(pg)
        },
        async {
            match seq_range {
                Some((lo, hi)) => tx.query(&stored_q, &[&t, &d, &lo, &hi]).await.map_err(pg),
                None => Ok(Vec::new()),
            }
        },
        super::analytics::settings_in(&tx, t),
    )?;
    let row = lock.ok_or(StorageError::UnknownDevice)?;
    if row.get::<_, Option<i64>>(1).is_some() {
        return Err(StorageError::DeviceRevoked);
    }
    let acked = row.get::<_, i64>(0) as u64;

    let mut anchors = anchors_of(&boots, &anchor_rows)?;
    for a in &h.anchors {
        let current = anchors.get(&a.boot_id).copied().flatten();
        if is_better(a, current.as_ref()) {
            store_anchor(&tx, t, d, a).await?;
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
    let known = stored_content(&stored_rows);
    // Seqs this batch inserts, with their event and index in `rows`: a seq
    // sent twice in one batch is compared with its first copy.
    let mut fresh: HashMap<u64, (&Event, usize)> = HashMap::with_capacity(batch.events.len());
    let mut rows = NewRows::default();
    // Resent seqs whose content differs from the stored event's.
    let mut conflicts: Vec<&Event> = Vec::new();
    let mut last_position: Option<&Event> = None;
    let mut folded: Vec<(&Event, i64)> = Vec::new();
    let mut spans: HashMap<BootId, (u64, u64)> = HashMap::new();
    for e in &batch.events {
        let data = e
            .data
            .json_text()
            .map_err(|e| StorageError::Backend(e.to_string()))?;
        if let Some(stored) = known.get(&e.seq) {
            if stored.is(e, &data) {
                out.duplicates += 1;
            } else {
                conflicts.push(e);
            }
            continue;
        }
        match fresh.get(&e.seq) {
            Some((first, i)) if same_event(first, &rows.data[*i], e, &data) => out.duplicates += 1,
            Some(_) => conflicts.push(e),
            None => {
                let anchor = anchors.get(&e.time.boot_id).copied().flatten();
                let (time_ms, source) = event_time(&e.time, anchor.as_ref(), now_ms);
                fresh.insert(e.seq, (e, rows.seq.len()));
                rows.seq.push(e.seq as i64);
                rows.kind.push(e.kind.as_str());
                rows.priority.push(i16::from(e.priority as u8));
                rows.boot_id.push(e.time.boot_id.0.as_slice());
                rows.mono_ms.push(e.time.mono_ms as i64);
                rows.wall_ms.push(e.time.wall_ms);
                rows.hlc.push(e.time.hlc.0 as i64);
                rows.config_version.push(i64::from(e.config_version));
                rows.time_ms.push(time_ms);
                rows.time_source.push(source);
                rows.data.push(data);
                out.stored += 1;
                folded.push((e, time_ms));
                let span = spans.entry(e.time.boot_id).or_insert((e.seq, e.seq));
                span.1 = e.seq;
                if matches!(e.data, EventData::Position(_)) {
                    last_position = Some(e);
                }
            }
        }
    }

    // Rare paths, one statement at a time: their counts go into the device row.
    for e in conflicts {
        let raw = serde_json::to_value(e).map_err(|e| StorageError::Backend(e.to_string()))?;
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
        )
        .await?
        {
            out.quarantined += 1;
        }
        tracing::warn!(device = %d, seq = e.seq, "quarantined a conflicting resend");
    }
    for r in &batch.rejects {
        if quarantine_reject(&tx, t, d, r, now_ms).await? {
            out.quarantined += 1;
        }
    }
    // A hole holds no seq of this batch, so what the batch inserts cannot
    // cover it: holes are settled before the insert.
    let present = present_seqs(&batch);
    for (a, b) in holes(h.first_seq, h.last_seq, &present) {
        for (x, y) in uncovered(&tx, t, d, a, b).await? {
            tx.execute(
                "INSERT INTO evicted_ranges (tenant_id, device_id, first_seq, last_seq, recorded_at_ms) VALUES ($1, $2, $3, $4, $5)",
                &[&t, &d, &(x as i64), &(y as i64), &now_ms],
            )
            .await
            .map_err(pg)?;
            out.evicted += y - x + 1;
        }
    }

    // The ack only moves when this batch joins up with what is already stored; an
    // out-of-order batch is kept, and acknowledged once the gap before it is filled.
    if h.first_seq <= acked.saturating_add(1) {
        out.acked_seq = acked.max(h.last_seq);
    }

    let folding = super::analytics::fold_new(&folded, settings);
    let (insert_q, span_q, position_q, device_q) = try_join!(
        tx.prepare_cached(INSERT_EVENTS),
        tx.prepare_cached(UPSERT_SPAN),
        tx.prepare_cached(UPSERT_LAST_POSITION),
        tx.prepare_cached(UPDATE_DEVICE),
    )
    .map_err(pg)?;
    let (txr, span_q) = (&tx, &span_q);
    let spans: Vec<(&[u8], i64, i64)> = spans
        .iter()
        .map(|(boot, (first, last))| (boot.0.as_slice(), *first as i64, *last as i64))
        .collect();
    let position = last_position.and_then(|e| {
        let EventData::Position(p) = &e.data else {
            return None;
        };
        let anchor = anchors.get(&e.time.boot_id).copied().flatten();
        let (time_ms, source) = event_time(&e.time, anchor.as_ref(), now_ms);
        Some((e, p, time_ms, source))
    });
    let counters = (
        out.acked_seq as i64,
        i64::from(out.stored),
        out.evicted as i64,
        i64::from(out.quarantined),
    );
    let (_, _, _, _, stored) = try_join!(
        async {
            if rows.seq.is_empty() {
                return Ok(0);
            }
            tx.execute(
                &insert_q,
                &[
                    &t,
                    &d,
                    &rows.seq,
                    &rows.kind,
                    &rows.priority,
                    &rows.boot_id,
                    &rows.mono_ms,
                    &rows.wall_ms,
                    &rows.hlc,
                    &rows.config_version,
                    &rows.time_ms,
                    &rows.time_source,
                    &rows.data,
                    &now_ms,
                ],
            )
            .await
            .map_err(pg)
        },
        async {
            try_join_all(spans.iter().map(|(boot, first, last)| async move {
                txr.execute(span_q, &[&t, &d, boot, first, last]).await
            }))
            .await
            .map_err(pg)
        },
        async {
            let Some((e, p, time_ms, source)) = position else {
                return Ok(0);
            };
            tx.execute(
                &position_q,
                &[
                    &t,
                    &d,
                    &(e.seq as i64),
                    &e.time.boot_id.0.as_slice(),
                    &(e.time.mono_ms as i64),
                    &time_ms,
                    &source,
                    &p.lat_e7,
                    &p.lon_e7,
                    &p.speed_cms.map(i64::from),
                    &p.heading_cdeg.map(i32::from),
                ],
            )
            .await
            .map_err(pg)
        },
        async {
            tx.execute(
                &device_q,
                &[
                    &t,
                    &d,
                    &counters.0,
                    &counters.1,
                    &counters.2,
                    &counters.3,
                    &now_ms,
                ],
            )
            .await
            .map_err(pg)
        },
        async {
            match &folding {
                Some(f) => super::analytics::load_stored(&tx, t, d, f).await.map(Some),
                None => Ok(None),
            }
        },
    )?;
    if let (Some(folding), Some(stored)) = (folding, stored) {
        super::analytics::write_folded(&tx, t, d, folding, stored, now_ms).await?;
    }
    tx.commit().await?;
    Ok(out)
}

/// The stored anchor (or its absence) of each of `boots`, from `SELECT_ANCHORS`.
fn anchors_of(
    boots: &[BootId],
    rows: &[Row],
) -> Result<HashMap<BootId, Option<TimeAnchor>>, StorageError> {
    let mut out: HashMap<BootId, Option<TimeAnchor>> = boots.iter().map(|b| (*b, None)).collect();
    for r in rows {
        let boot = BootId(
            r.get::<_, &[u8]>(0)
                .try_into()
                .map_err(|_| StorageError::Corrupt("boot id length".into()))?,
        );
        let source: i16 = r.get(3);
        let source = u8::try_from(source)
            .ok()
            .and_then(TimeSource::from_u8)
            .ok_or_else(|| StorageError::Corrupt(format!("time source {source}")))?;
        let anchor = TimeAnchor {
            boot_id: boot,
            mono_ms: r.get::<_, i64>(1) as u64,
            true_ms: r.get(2),
            source,
            uncertainty_ms: u32::try_from(r.get::<_, i64>(4))
                .map_err(|_| StorageError::Corrupt("anchor uncertainty".into()))?,
        };
        out.insert(boot, Some(anchor));
    }
    Ok(out)
}

/// The stored content of each seq in `rows` (from `SELECT_STORED`).
fn stored_content(rows: &[Row]) -> HashMap<u64, Content> {
    rows.iter()
        .map(|r| {
            (
                r.get::<_, i64>(0) as u64,
                Content {
                    kind: r.get(1),
                    priority: r.get(2),
                    boot_id: r.get(3),
                    mono_ms: r.get(4),
                    wall_ms: r.get(5),
                    hlc: r.get(6),
                    config_version: r.get(7),
                    data: r.get(8),
                },
            )
        })
        .collect()
}

/// Keeps `a` as the boot's anchor and moves every stored event of that boot (and
/// the vehicle's last position, if it is from that boot) onto it.
async fn store_anchor(tx: &PgTx, t: Uuid, d: Uuid, a: &TimeAnchor) -> Result<(), StorageError> {
    let boot = a.boot_id.0.as_slice();
    tx.execute(
        "INSERT INTO time_anchors (tenant_id, device_id, boot_id, mono_ms, true_ms, source, uncertainty_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (tenant_id, device_id, boot_id) DO UPDATE SET mono_ms = excluded.mono_ms, true_ms = excluded.true_ms,
             source = excluded.source, uncertainty_ms = excluded.uncertainty_ms",
        &[&t, &d, &boot, &(a.mono_ms as i64), &a.true_ms, &i16::from(a.source as u8), &i64::from(a.uncertainty_ms)],
    )
    .await
    .map_err(pg)?;
    let offset = a.true_ms - a.mono_ms as i64;
    let span = tx
        .query_opt(
            "SELECT first_seq, last_seq FROM boot_spans WHERE tenant_id = $1 AND device_id = $2 AND boot_id = $3",
            &[&t, &d, &boot],
        )
        .await
        .map_err(pg)?;
    if let Some(span) = span {
        let (first, last): (i64, i64) = (span.get(0), span.get(1));
        // Moving time_ms moves a row to the partition of its new month.
        tx.execute(
            "UPDATE events SET time_ms = $6 + mono_ms, time_source = $7
             WHERE tenant_id = $1 AND device_id = $2 AND seq BETWEEN $3 AND $4 AND boot_id = $5",
            &[&t, &d, &first, &last, &boot, &offset, &a.source.as_str()],
        )
        .await
        .map_err(pg)?;
    }
    tx.execute(
        "UPDATE vehicle_positions SET time_ms = $4 + mono_ms, time_source = $5
         WHERE tenant_id = $1 AND device_id = $2 AND boot_id = $3",
        &[&t, &d, &boot, &offset, &a.source.as_str()],
    )
    .await
    .map_err(pg)?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn quarantine(
    tx: &PgTx,
    t: Uuid,
    d: Uuid,
    seq: u64,
    kind: Option<&str>,
    code: &str,
    reason: &str,
    raw: &serde_json::Value,
    now_ms: i64,
) -> Result<bool, StorageError> {
    let raw = raw.to_string();
    let digest = crate::storage::sha256(format!("{code}\n{raw}").as_bytes());
    let q = tx.prepare_cached(INSERT_QUARANTINE).await.map_err(pg)?;
    let n = tx
        .execute(
            &q,
            &[
                &t,
                &d,
                &(seq as i64),
                &digest.as_slice(),
                &kind,
                &code,
                &reason,
                &raw,
                &now_ms,
            ],
        )
        .await
        .map_err(pg)?;
    Ok(n == 1)
}

async fn quarantine_reject(
    tx: &PgTx,
    t: Uuid,
    d: Uuid,
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
    .await
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

/// The parts of `a..=b` not already accounted for by stored events, quarantined
/// events or earlier evicted ranges, so that a resent batch counts nothing twice.
async fn uncovered(
    tx: &PgTx,
    t: Uuid,
    d: Uuid,
    a: u64,
    b: u64,
) -> Result<Vec<(u64, u64)>, StorageError> {
    let (ai, bi) = (a as i64, b as i64);
    let mut taken: Vec<(u64, u64)> = tx
        .query(
            "SELECT first_seq, last_seq FROM evicted_ranges
             WHERE tenant_id = $1 AND device_id = $2 AND first_seq <= $4 AND last_seq >= $3",
            &[&t, &d, &ai, &bi],
        )
        .await
        .map_err(pg)?
        .iter()
        .map(|r| (r.get::<_, i64>(0) as u64, r.get::<_, i64>(1) as u64))
        .collect();
    for sql in [
        "SELECT seq FROM events WHERE tenant_id = $1 AND device_id = $2 AND seq BETWEEN $3 AND $4",
        "SELECT DISTINCT seq FROM quarantine WHERE tenant_id = $1 AND device_id = $2 AND seq BETWEEN $3 AND $4",
    ] {
        for r in tx.query(sql, &[&t, &d, &ai, &bi]).await.map_err(pg)? {
            let s = r.get::<_, i64>(0) as u64;
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
