//! The live stream's log on SQLite. One process owns the database, so the hub
//! learns of appends from its own calls and there are no notices.

use super::conn::backend;
use super::{blob, uuid_at, SqliteStorage};
use crate::storage::stream::{NewStreamEvent, StreamBounds, StreamRow, StreamStore};
use crate::storage::StorageError;
use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, Row};
use std::collections::HashMap;
use uuid::Uuid;

fn stream_row(r: &Row<'_>) -> rusqlite::Result<StreamRow> {
    let vehicle: Option<Vec<u8>> = r.get(3)?;
    let data: String = r.get(4)?;
    let bad = |i: usize, msg: String| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, msg.into())
    };
    Ok(StreamRow {
        tenant: uuid_at(r, 0)?,
        id: r.get::<_, i64>(1)? as u64,
        kind: r.get(2)?,
        vehicle: vehicle
            .map(|b| Uuid::from_slice(&b).map_err(|e| bad(3, e.to_string())))
            .transpose()?,
        data: serde_json::from_str(&data).map_err(|e| bad(4, e.to_string()))?,
        at_ms: r.get(5)?,
    })
}

fn append(
    c: &mut Connection,
    events: Vec<NewStreamEvent>,
    now_ms: i64,
) -> Result<Vec<StreamRow>, StorageError> {
    let tx = c.transaction().map_err(backend)?;
    let mut heads: HashMap<Uuid, i64> = HashMap::new();
    let mut out = Vec::with_capacity(events.len());
    {
        let mut head_q = tx
            .prepare_cached("SELECT last_id FROM stream_heads WHERE tenant_id = ?1")
            .map_err(backend)?;
        let mut insert = tx
            .prepare_cached(
                "INSERT OR IGNORE INTO stream_events (tenant_id, id, kind, vehicle_id, data, at_ms, source, created_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .map_err(backend)?;
        for e in events {
            let head = match heads.get(&e.tenant) {
                Some(h) => *h,
                None => head_q
                    .query_row(params![blob(&e.tenant)], |r| r.get(0))
                    .optional()
                    .map_err(backend)?
                    .unwrap_or(0),
            };
            let id = head + 1;
            let data = e.data.to_string();
            let n = insert
                .execute(params![
                    blob(&e.tenant),
                    id,
                    e.kind,
                    e.vehicle.as_ref().map(blob),
                    data,
                    e.at_ms,
                    e.source,
                    now_ms
                ])
                .map_err(backend)?;
            heads.insert(e.tenant, if n == 1 { id } else { head });
            if n == 1 {
                out.push(StreamRow {
                    tenant: e.tenant,
                    id: id as u64,
                    kind: e.kind,
                    vehicle: e.vehicle,
                    data: e.data,
                    at_ms: e.at_ms,
                });
            }
        }
    }
    for (tenant, last) in heads {
        tx.prepare_cached(
            "INSERT INTO stream_heads (tenant_id, last_id) VALUES (?1, ?2)
             ON CONFLICT (tenant_id) DO UPDATE SET last_id = max(last_id, excluded.last_id)",
        )
        .map_err(backend)?
        .execute(params![blob(&tenant), last])
        .map_err(backend)?;
    }
    tx.commit().map_err(backend)?;
    Ok(out)
}

#[async_trait]
impl StreamStore for SqliteStorage {
    async fn append_stream_events(
        &self,
        events: Vec<NewStreamEvent>,
        now_ms: i64,
    ) -> Result<Vec<StreamRow>, StorageError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        self.pool.write(move |c| append(c, events, now_ms)).await
    }

    async fn stream_events_after(
        &self,
        tenant: Uuid,
        after: u64,
        limit: u32,
    ) -> Result<Vec<StreamRow>, StorageError> {
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        self.pool
            .read(move |c| {
                let mut q = c
                    .prepare_cached(
                        "SELECT tenant_id, id, kind, vehicle_id, data, at_ms FROM stream_events
                         WHERE tenant_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
                    )
                    .map_err(backend)?;
                let rows = q
                    .query_map(params![blob(&tenant), after, limit], stream_row)
                    .map_err(backend)?;
                rows.collect::<Result<Vec<_>, _>>()
                    .map_err(|e| StorageError::Corrupt(e.to_string()))
            })
            .await
    }

    async fn stream_bounds(&self, tenant: Uuid) -> Result<StreamBounds, StorageError> {
        self.pool
            .read(move |c| {
                let head: i64 = c
                    .prepare_cached("SELECT last_id FROM stream_heads WHERE tenant_id = ?1")
                    .map_err(backend)?
                    .query_row(params![blob(&tenant)], |r| r.get(0))
                    .optional()
                    .map_err(backend)?
                    .unwrap_or(0);
                let oldest: Option<i64> = c
                    .prepare_cached("SELECT min(id) FROM stream_events WHERE tenant_id = ?1")
                    .map_err(backend)?
                    .query_row(params![blob(&tenant)], |r| r.get(0))
                    .map_err(backend)?;
                Ok(StreamBounds {
                    oldest: oldest.unwrap_or(head + 1) as u64,
                    head: head as u64,
                })
            })
            .await
    }

    async fn prune_stream_events(
        &self,
        before_ms: i64,
        keep_per_tenant: u64,
    ) -> Result<u64, StorageError> {
        let keep = i64::try_from(keep_per_tenant).unwrap_or(i64::MAX);
        self.pool
            .write(move |c| {
                let tx = c.transaction().map_err(backend)?;
                let by_age = tx
                    .execute(
                        "DELETE FROM stream_events WHERE created_at_ms < ?1",
                        params![before_ms],
                    )
                    .map_err(backend)?;
                // Ids are dense per tenant, so the newest `keep` are those above head - keep.
                let by_count = tx
                    .execute(
                        "DELETE FROM stream_events WHERE id <= (SELECT h.last_id FROM stream_heads h
                             WHERE h.tenant_id = stream_events.tenant_id) - ?1",
                        params![keep],
                    )
                    .map_err(backend)?;
                tx.commit().map_err(backend)?;
                Ok((by_age + by_count) as u64)
            })
            .await
    }
}
