//! [`ReservationStore`] on SQLite. Writes run on the one writer connection in
//! `BEGIN IMMEDIATE` transactions, so the overlap check and the write that
//! depends on it see the same database, even with another process on the file.

use super::conn::backend;
use super::{blob, uuid_at, SqliteStorage};
use crate::storage::reservations::{
    AvailabilityQuery, Blocking, Change, FeedSubject, Notices, Reservable, Reservation,
    ReservationFilter, ReservationSettings, ReservationStore, Status, Write, YardBooking,
    BUSY_SCAN_BEFORE_MS, BUSY_SCAN_INTO_MS, BUSY_SCAN_ROWS_PER_VEHICLE, HOLDING_SQL,
};
use crate::storage::StorageError;
use async_trait::async_trait;
use rusqlite::types::Value as SqlValue;
use rusqlite::{
    params, params_from_iter, Connection, OptionalExtension, Row, Transaction, TransactionBehavior,
};
use uuid::Uuid;

const COLUMNS: &str = "reservation_id, vehicle_id, user_id, start_ms, end_ms, buffer_ms, status, purpose, department, cost_center, reason, created_by, approved_by, version, created_at_ms, updated_at_ms, reminded_at_ms, overdue_at_ms";

fn opt_uuid_at(r: &Row<'_>, i: usize) -> rusqlite::Result<Option<Uuid>> {
    match r.get::<_, Option<Vec<u8>>>(i)? {
        Some(_) => uuid_at(r, i).map(Some),
        None => Ok(None),
    }
}

fn row(r: &Row<'_>) -> rusqlite::Result<Reservation> {
    let status: String = r.get(6)?;
    Ok(Reservation {
        id: uuid_at(r, 0)?,
        vehicle_id: uuid_at(r, 1)?,
        user_id: uuid_at(r, 2)?,
        start_ms: r.get(3)?,
        end_ms: r.get(4)?,
        buffer_ms: r.get(5)?,
        status: Status::parse(&status).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                6,
                rusqlite::types::Type::Text,
                format!("reservation status {status:?}").into(),
            )
        })?,
        purpose: r.get(7)?,
        department: r.get(8)?,
        cost_center: r.get(9)?,
        reason: r.get(10)?,
        created_by: opt_uuid_at(r, 11)?,
        approved_by: opt_uuid_at(r, 12)?,
        version: r.get(13)?,
        created_at_ms: r.get(14)?,
        updated_at_ms: r.get(15)?,
        reminded_at_ms: r.get(16)?,
        overdue_at_ms: r.get(17)?,
    })
}

fn by_id(c: &Connection, tenant: &Uuid, id: &Uuid) -> Result<Option<Reservation>, StorageError> {
    c.query_row(
        &format!("SELECT {COLUMNS} FROM reservations WHERE tenant_id = ?1 AND reservation_id = ?2"),
        params![blob(tenant), blob(id)],
        row,
    )
    .optional()
    .map_err(backend)
}

/// The holding reservation of `vehicle`, other than `except`, that overlaps
/// `[start, end + buffer)` with its own buffer.
fn blocking(
    c: &Connection,
    tenant: &Uuid,
    vehicle: &Uuid,
    start: i64,
    end: i64,
    buffer: i64,
    except: &Uuid,
) -> Result<Option<Blocking>, StorageError> {
    c.query_row(
        &format!(
            "SELECT reservation_id, user_id, start_ms, end_ms, buffer_ms FROM reservations
             WHERE tenant_id = ?1 AND vehicle_id = ?2 AND status IN {HOLDING_SQL}
               AND start_ms < ?4 AND ?3 < end_ms + buffer_ms AND reservation_id <> ?5
             ORDER BY start_ms LIMIT 1"
        ),
        params![
            blob(tenant),
            blob(vehicle),
            start,
            end + buffer,
            blob(except)
        ],
        |r| {
            Ok(Blocking {
                reservation_id: uuid_at(r, 0)?,
                user_id: uuid_at(r, 1)?,
                start_ms: r.get(2)?,
                end_ms: r.get(3)?,
                buffer_ms: r.get(4)?,
            })
        },
    )
    .optional()
    .map_err(backend)
}

fn insert(c: &Connection, tenant: &Uuid, r: &Reservation) -> Result<(), StorageError> {
    c.execute(
        &format!("INSERT INTO reservations (tenant_id, {COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)"),
        params![
            blob(tenant),
            blob(&r.id),
            blob(&r.vehicle_id),
            blob(&r.user_id),
            r.start_ms,
            r.end_ms,
            r.buffer_ms,
            r.status.as_str(),
            r.purpose,
            r.department,
            r.cost_center,
            r.reason,
            r.created_by.as_ref().map(blob),
            r.approved_by.as_ref().map(blob),
            r.version,
            r.created_at_ms,
            r.updated_at_ms,
            r.reminded_at_ms,
            r.overdue_at_ms,
        ],
    )
    .map_err(|e| match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
        {
            StorageError::Conflict("a reservation with this id already exists".into())
        }
        _ => backend(e),
    })?;
    Ok(())
}

/// Queues `notices` in the writing transaction: a delivery for each webhook of
/// the tenant that wants an event's kind (an event id it already has is
/// skipped), and the mail. An error here rolls the reservation write back.
fn queue_notices(
    tx: &Transaction<'_>,
    tenant: &Uuid,
    notices: &Notices,
    now_ms: i64,
) -> Result<(), StorageError> {
    if !notices.webhooks.is_empty() {
        let hooks: Vec<(Vec<u8>, String)> = {
            let mut st = tx
                .prepare_cached("SELECT webhook_id, kinds FROM webhooks WHERE tenant_id = ?1")
                .map_err(backend)?;
            let rows = st
                .query_map(params![blob(tenant)], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(backend)?;
            rows.collect::<rusqlite::Result<_>>().map_err(backend)?
        };
        for (hook, kinds) in &hooks {
            let kinds: Vec<String> = serde_json::from_str(kinds)
                .map_err(|e| StorageError::Corrupt(format!("webhook kinds: {e}")))?;
            for ev in notices
                .webhooks
                .iter()
                .filter(|ev| kinds.contains(&ev.kind))
            {
                tx.execute(
                    "INSERT OR IGNORE INTO webhook_deliveries (tenant_id, delivery_id, webhook_id, event_id, kind, payload, state, next_attempt_at_ms, created_at_ms) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?7)",
                    params![blob(tenant), blob(&Uuid::new_v4()), hook, ev.event_id, ev.kind, ev.payload.to_string(), now_ms],
                )
                .map_err(backend)?;
            }
        }
    }
    for m in &notices.mail {
        super::mail::insert_mail(tx, *tenant, m, now_ms)?;
    }
    if let Some(e) = &notices.audit {
        super::access::insert_audit(tx, e)?;
    }
    Ok(())
}

/// Availability in two steps (see `BUSY_SCAN_BEFORE_MS`): the materialized
/// CTEs keep the order, so the scan proves vehicles busy before any is probed.
fn availability_sql() -> String {
    format!(
        "WITH fleet AS MATERIALIZED (
             SELECT a.tenant_id, a.asset_id, a.kind, a.name, a.plate, a.vehicle_group, a.home_yard, a.retired_at_ms
             FROM assets a
             WHERE a.tenant_id = ?1 AND a.kind = ?2 AND a.retired_at_ms IS NULL
               AND (?3 IS NULL OR a.vehicle_group = ?3)
               AND (?4 IS NULL OR COALESCE(a.home_yard, 'default') = ?4)),
         busy AS MATERIALIZED (
             SELECT s.vehicle_id FROM (
                 SELECT r.vehicle_id, r.end_ms, r.buffer_ms FROM reservations r
                 WHERE r.tenant_id = ?1 AND r.status IN {HOLDING_SQL}
                   AND r.start_ms >= ?5 - {BUSY_SCAN_BEFORE_MS}
                   AND r.start_ms < min(?6, ?5 + {BUSY_SCAN_INTO_MS})
                 ORDER BY r.start_ms DESC
                 LIMIT (SELECT {BUSY_SCAN_ROWS_PER_VEHICLE} * count(*) FROM assets
                        WHERE tenant_id = ?1 AND kind = ?2)) s
             WHERE s.end_ms + s.buffer_ms > ?5),
         unproven AS MATERIALIZED (
             SELECT * FROM fleet WHERE asset_id NOT IN (SELECT vehicle_id FROM busy))
         SELECT a.asset_id, a.kind, a.name, a.plate, a.vehicle_group, a.home_yard, a.retired_at_ms
         FROM unproven a
         WHERE COALESCE((SELECT r.end_ms + r.buffer_ms FROM reservations r
                         WHERE r.tenant_id = a.tenant_id AND r.vehicle_id = a.asset_id
                           AND r.status IN {HOLDING_SQL} AND r.start_ms < ?6
                         ORDER BY r.start_ms DESC LIMIT 1), ?5) <= ?5
         ORDER BY a.name, a.asset_id LIMIT ?7"
    )
}

fn reservable_row(r: &Row<'_>) -> rusqlite::Result<Reservable> {
    Ok(Reservable {
        id: uuid_at(r, 0)?,
        kind: r.get(1)?,
        name: r.get(2)?,
        plate: r.get(3)?,
        vehicle_group: r.get(4)?,
        home_yard: r.get(5)?,
        retired: r.get::<_, Option<i64>>(6)?.is_some(),
    })
}

#[async_trait]
impl ReservationStore for SqliteStorage {
    async fn reservation_settings(
        &self,
        tenant: Uuid,
    ) -> Result<ReservationSettings, StorageError> {
        self.pool
            .read(move |c| {
                let s: Option<String> = c
                    .query_row(
                        "SELECT settings FROM reservation_settings WHERE tenant_id = ?1",
                        params![blob(&tenant)],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(backend)?;
                match s {
                    None => Ok(ReservationSettings::default()),
                    Some(s) => serde_json::from_str(&s)
                        .map_err(|e| StorageError::Corrupt(format!("reservation settings: {e}"))),
                }
            })
            .await
    }

    async fn set_reservation_settings(
        &self,
        tenant: Uuid,
        settings: &ReservationSettings,
        now_ms: i64,
    ) -> Result<(), StorageError> {
        let json = serde_json::to_string(settings).expect("settings serialise");
        self.pool
            .write(move |c| {
                c.execute(
                    "INSERT INTO reservation_settings (tenant_id, settings, updated_at_ms) VALUES (?1, ?2, ?3)
                     ON CONFLICT (tenant_id) DO UPDATE SET settings = excluded.settings, updated_at_ms = excluded.updated_at_ms",
                    params![blob(&tenant), json, now_ms],
                )
                .map_err(backend)?;
                Ok(())
            })
            .await
    }

    async fn reservable(&self, tenant: Uuid, id: Uuid) -> Result<Option<Reservable>, StorageError> {
        self.pool
            .read(move |c| {
                c.query_row(
                    "SELECT asset_id, kind, name, plate, vehicle_group, home_yard, retired_at_ms
                     FROM assets WHERE tenant_id = ?1 AND asset_id = ?2",
                    params![blob(&tenant), blob(&id)],
                    reservable_row,
                )
                .optional()
                .map_err(backend)
            })
            .await
    }

    async fn create_reservation(
        &self,
        tenant: Uuid,
        r: &Reservation,
        notices: &Notices,
    ) -> Result<Write, StorageError> {
        let r = r.clone();
        let notices = notices.clone();
        self.pool
            .write(move |c| {
                let tx = c
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(backend)?;
                if r.status.holds() {
                    if let Some(b) = blocking(
                        &tx,
                        &tenant,
                        &r.vehicle_id,
                        r.start_ms,
                        r.end_ms,
                        r.buffer_ms,
                        &r.id,
                    )? {
                        return Ok(Write::Conflict(b));
                    }
                }
                insert(&tx, &tenant, &r)?;
                queue_notices(&tx, &tenant, &notices, r.updated_at_ms)?;
                tx.commit().map_err(backend)?;
                Ok(Write::Done(r))
            })
            .await
    }

    async fn reservation(
        &self,
        tenant: Uuid,
        id: Uuid,
    ) -> Result<Option<Reservation>, StorageError> {
        self.pool.read(move |c| by_id(c, &tenant, &id)).await
    }

    async fn list_reservations(
        &self,
        tenant: Uuid,
        f: &ReservationFilter,
    ) -> Result<Vec<Reservation>, StorageError> {
        let f = f.clone();
        self.pool
            .read(move |c| {
                let mut sql = format!("SELECT {COLUMNS} FROM reservations WHERE tenant_id = ?1");
                let mut args: Vec<SqlValue> = vec![SqlValue::Blob(tenant.as_bytes().to_vec())];
                let mut push = |sql: &mut String, cond: &str, v: SqlValue| {
                    args.push(v);
                    sql.push_str(&cond.replace('?', &format!("?{}", args.len())));
                };
                if let Some(v) = f.vehicle_id {
                    push(
                        &mut sql,
                        " AND vehicle_id = ?",
                        SqlValue::Blob(v.as_bytes().to_vec()),
                    );
                }
                if let Some(u) = f.user_id {
                    push(
                        &mut sql,
                        " AND user_id = ?",
                        SqlValue::Blob(u.as_bytes().to_vec()),
                    );
                }
                if let Some(from) = f.from_ms {
                    push(&mut sql, " AND end_ms > ?", SqlValue::Integer(from));
                }
                if let Some(to) = f.to_ms {
                    push(&mut sql, " AND start_ms < ?", SqlValue::Integer(to));
                }
                if let Some(d) = &f.department {
                    push(&mut sql, " AND department = ?", SqlValue::Text(d.clone()));
                }
                if let Some(cc) = &f.cost_center {
                    push(&mut sql, " AND cost_center = ?", SqlValue::Text(cc.clone()));
                }
                if !f.statuses.is_empty() {
                    let list: Vec<String> = f
                        .statuses
                        .iter()
                        .map(|s| format!("'{}'", s.as_str()))
                        .collect();
                    sql.push_str(&format!(" AND status IN ({})", list.join(", ")));
                }
                if let Some((start, id)) = f.after {
                    push(&mut sql, " AND (start_ms > ?", SqlValue::Integer(start));
                    push(&mut sql, " OR (start_ms = ?", SqlValue::Integer(start));
                    push(
                        &mut sql,
                        " AND reservation_id > ?))",
                        SqlValue::Blob(id.as_bytes().to_vec()),
                    );
                }
                sql.push_str(&format!(
                    " ORDER BY start_ms, reservation_id LIMIT {}",
                    f.limit.max(1)
                ));
                let mut q = c.prepare(&sql).map_err(backend)?;
                let rows = q.query_map(params_from_iter(args), row).map_err(backend)?;
                rows.collect::<Result<_, _>>().map_err(backend)
            })
            .await
    }

    async fn update_reservation(
        &self,
        tenant: Uuid,
        id: Uuid,
        change: &Change,
        notices: &Notices,
    ) -> Result<Write, StorageError> {
        let change = change.clone();
        let notices = notices.clone();
        self.pool
            .write(move |c| {
                let tx = c
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(backend)?;
                let Some(mut r) = by_id(&tx, &tenant, &id)? else {
                    return Ok(Write::NotFound);
                };
                if !change.admits(&r) {
                    return Ok(Write::Stale(r));
                }
                let was_holding = r.status.holds();
                let before = (r.vehicle_id, r.start_ms, r.end_ms, r.buffer_ms);
                change.apply(&mut r);
                let moved = before != (r.vehicle_id, r.start_ms, r.end_ms, r.buffer_ms);
                if r.status.holds() && (moved || !was_holding) {
                    if let Some(b) = blocking(
                        &tx,
                        &tenant,
                        &r.vehicle_id,
                        r.start_ms,
                        r.end_ms,
                        r.buffer_ms,
                        &r.id,
                    )? {
                        return Ok(Write::Conflict(b));
                    }
                }
                tx.execute(
                    "UPDATE reservations SET vehicle_id = ?3, start_ms = ?4, end_ms = ?5, buffer_ms = ?6,
                         status = ?7, purpose = ?8, department = ?9, cost_center = ?10, reason = ?11,
                         approved_by = ?12, version = ?13, updated_at_ms = ?14, reminded_at_ms = ?15,
                         overdue_at_ms = ?16
                     WHERE tenant_id = ?1 AND reservation_id = ?2",
                    params![
                        blob(&tenant),
                        blob(&id),
                        blob(&r.vehicle_id),
                        r.start_ms,
                        r.end_ms,
                        r.buffer_ms,
                        r.status.as_str(),
                        r.purpose,
                        r.department,
                        r.cost_center,
                        r.reason,
                        r.approved_by.as_ref().map(blob),
                        r.version,
                        r.updated_at_ms,
                        r.reminded_at_ms,
                        r.overdue_at_ms,
                    ],
                )
                .map_err(backend)?;
                queue_notices(&tx, &tenant, &notices, change.now_ms)?;
                tx.commit().map_err(backend)?;
                Ok(Write::Done(r))
            })
            .await
    }

    async fn available_vehicles(
        &self,
        tenant: Uuid,
        q: &AvailabilityQuery,
    ) -> Result<Vec<Reservable>, StorageError> {
        let q = q.clone();
        self.pool
            .read(move |c| {
                let sql = availability_sql();
                let mut st = c.prepare_cached(&sql).map_err(backend)?;
                let rows = st
                    .query_map(
                        params![
                            blob(&tenant),
                            q.kind,
                            q.vehicle_group,
                            q.home_yard,
                            q.from_ms,
                            q.to_ms + q.buffer_ms,
                            q.limit,
                        ],
                        reservable_row,
                    )
                    .map_err(backend)?;
                rows.collect::<Result<_, _>>().map_err(backend)
            })
            .await
    }

    async fn yard_bookings(
        &self,
        tenant: Uuid,
        yard: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<YardBooking>, StorageError> {
        let yard = yard.to_owned();
        self.pool
            .read(move |c| {
                let mut st = c
                    .prepare(
                        "SELECT r.reservation_id, r.vehicle_id, b.badge_id, r.start_ms, r.end_ms
                         FROM reservations r
                         JOIN assets a ON a.tenant_id = r.tenant_id AND a.asset_id = r.vehicle_id
                         JOIN user_badges b ON b.tenant_id = r.tenant_id AND b.user_id = r.user_id
                         WHERE r.tenant_id = ?1 AND r.status = 'approved'
                           AND COALESCE(a.home_yard, 'default') = ?2
                           AND r.end_ms > ?3 AND r.start_ms < ?4
                         ORDER BY r.start_ms, r.reservation_id, b.badge_id",
                    )
                    .map_err(backend)?;
                let rows = st
                    .query_map(params![blob(&tenant), yard, from_ms, to_ms], |r| {
                        Ok(YardBooking {
                            reservation_id: uuid_at(r, 0)?,
                            vehicle_id: uuid_at(r, 1)?,
                            badge_id: uuid_at(r, 2)?,
                            start_ms: r.get(3)?,
                            end_ms: r.get(4)?,
                        })
                    })
                    .map_err(backend)?;
                rows.collect::<Result<_, _>>().map_err(backend)
            })
            .await
    }

    async fn set_calendar_token(
        &self,
        tenant: Uuid,
        subject: FeedSubject,
        id: Uuid,
        token_sha256: [u8; 32],
        now_ms: i64,
    ) -> Result<(), StorageError> {
        self.pool
            .write(move |c| {
                c.execute(
                    "INSERT INTO calendar_tokens (tenant_id, subject_kind, subject_id, token_sha256, created_at_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (tenant_id, subject_kind, subject_id)
                     DO UPDATE SET token_sha256 = excluded.token_sha256, created_at_ms = excluded.created_at_ms",
                    params![blob(&tenant), subject.as_str(), blob(&id), token_sha256.as_slice(), now_ms],
                )
                .map_err(backend)?;
                Ok(())
            })
            .await
    }

    async fn calendar_token(
        &self,
        tenant: Uuid,
        subject: FeedSubject,
        id: Uuid,
    ) -> Result<Option<[u8; 32]>, StorageError> {
        self.pool
            .read(move |c| {
                let h: Option<Vec<u8>> = c
                    .query_row(
                        "SELECT token_sha256 FROM calendar_tokens WHERE tenant_id = ?1 AND subject_kind = ?2 AND subject_id = ?3",
                        params![blob(&tenant), subject.as_str(), blob(&id)],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(backend)?;
                h.map(|h| {
                    h.try_into()
                        .map_err(|_| StorageError::Corrupt("calendar token hash".into()))
                })
                .transpose()
            })
            .await
    }
}

/// The conformance suite's fault: a trigger that refuses every insert into the
/// mail outbox of the test database.
#[cfg(test)]
impl crate::storage::conformance_reservations::OutboxFault for tempfile::TempDir {
    async fn break_mail_outbox(&self) {
        let c = Connection::open(self.path().join("fleet.db")).unwrap();
        c.execute_batch(
            "CREATE TRIGGER mail_outbox_refuses BEFORE INSERT ON mail_outbox
             BEGIN SELECT RAISE(ABORT, 'the mail outbox refuses every message'); END;",
        )
        .unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_availability_scan_and_probe_read_only_covering_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fleet.db");
        drop(SqliteStorage::open(&path).unwrap());
        let c = Connection::open(&path).unwrap();
        let mut st = c
            .prepare(&format!("EXPLAIN QUERY PLAN {}", availability_sql()))
            .unwrap();
        let plan: Vec<String> = st
            .query_map(
                params![
                    [0u8; 16].as_slice(),
                    "vehicle",
                    None::<String>,
                    None::<String>,
                    0,
                    1,
                    10
                ],
                |r| r.get::<_, String>(3),
            )
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        // The busy scan reads bookings in start order, and the probe of each
        // remaining vehicle its last booking, each from an index alone.
        for index in ["reservations_holding_by_start", "reservations_holding "] {
            assert!(
                plan.iter()
                    .any(|l| l.contains(&format!("USING COVERING INDEX {index}"))),
                "{index}: {plan:#?}"
            );
        }
    }
}
