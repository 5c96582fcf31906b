//! [`ReservationStore`] on PostgreSQL; every statement runs in a tenant
//! transaction. The exclusion constraint `reservations_no_overlap` is what
//! keeps two holding bookings of a vehicle apart: a write that would overlap
//! fails with `exclusion_violation`, and only then is the blocking booking
//! looked up for the answer.

use super::{pg, PgStorage, PgTx, ReadScope};
use crate::storage::reservations::{
    AvailabilityQuery, Blocking, Change, FeedSubject, Notices, Reservable, Reservation,
    ReservationFilter, ReservationSettings, ReservationStore, Status, Write, YardBooking,
    BUSY_SCAN_BEFORE_MS, BUSY_SCAN_INTO_MS, BUSY_SCAN_ROWS_PER_VEHICLE, HOLDING_SQL,
};
use crate::storage::StorageError;
use async_trait::async_trait;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;
use uuid::Uuid;

const COLUMNS: &str = "reservation_id, vehicle_id, user_id, start_ms, end_ms, buffer_ms, status, purpose, department, cost_center, reason, created_by, approved_by, version, created_at_ms, updated_at_ms, reminded_at_ms, overdue_at_ms";

fn row(r: &Row) -> Result<Reservation, StorageError> {
    let status: String = r.get(6);
    Ok(Reservation {
        id: r.get(0),
        vehicle_id: r.get(1),
        user_id: r.get(2),
        start_ms: r.get(3),
        end_ms: r.get(4),
        buffer_ms: r.get(5),
        status: Status::parse(&status)
            .ok_or_else(|| StorageError::Corrupt(format!("reservation status {status:?}")))?,
        purpose: r.get(7),
        department: r.get(8),
        cost_center: r.get(9),
        reason: r.get(10),
        created_by: r.get(11),
        approved_by: r.get(12),
        version: r.get(13),
        created_at_ms: r.get(14),
        updated_at_ms: r.get(15),
        reminded_at_ms: r.get(16),
        overdue_at_ms: r.get(17),
    })
}

fn is_exclusion_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&tokio_postgres::error::SqlState::EXCLUSION_VIOLATION)
}

fn reservable_row(r: &Row) -> Reservable {
    Reservable {
        id: r.get(0),
        kind: r.get(1),
        name: r.get(2),
        plate: r.get(3),
        vehicle_group: r.get(4),
        home_yard: r.get(5),
        retired: r.get::<_, Option<i64>>(6).is_some(),
    }
}

impl PgStorage {
    /// The holding booking in the way of `r`, looked up after the constraint
    /// refused it. It may be gone by now; then the answer names `r`'s own window.
    async fn blocking_for(&self, tenant: Uuid, r: &Reservation) -> Result<Blocking, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let found = tx
            .query_opt(
                &format!(
                    "SELECT reservation_id, user_id, start_ms, end_ms, buffer_ms FROM reservations
                     WHERE vehicle_id = $1 AND status IN {HOLDING_SQL}
                       AND start_ms < $3 AND $2 < end_ms + buffer_ms AND reservation_id <> $4
                     ORDER BY start_ms LIMIT 1"
                ),
                &[&r.vehicle_id, &r.start_ms, &(r.end_ms + r.buffer_ms), &r.id],
            )
            .await
            .map_err(pg)?;
        Ok(match found {
            Some(b) => Blocking {
                reservation_id: b.get(0),
                user_id: b.get(1),
                start_ms: b.get(2),
                end_ms: b.get(3),
                buffer_ms: b.get(4),
            },
            None => Blocking {
                reservation_id: Uuid::nil(),
                user_id: Uuid::nil(),
                start_ms: r.start_ms,
                end_ms: r.end_ms,
                buffer_ms: r.buffer_ms,
            },
        })
    }
}

/// Queues `notices` in the writing transaction: a delivery for each webhook of
/// the tenant that wants an event's kind (an event id it already has is
/// skipped), and the mail. An error here rolls the reservation write back.
async fn queue_notices(
    tx: &PgTx,
    tenant: Uuid,
    notices: &Notices,
    now_ms: i64,
) -> Result<(), StorageError> {
    if !notices.webhooks.is_empty() {
        let hooks = tx
            .query(
                "SELECT webhook_id, kinds FROM webhooks WHERE tenant_id = $1",
                &[&tenant],
            )
            .await
            .map_err(pg)?;
        for hook in &hooks {
            let id: Uuid = hook.get(0);
            let kinds: Vec<String> = serde_json::from_str(hook.get::<_, &str>(1))
                .map_err(|e| StorageError::Corrupt(format!("webhook kinds: {e}")))?;
            for ev in notices
                .webhooks
                .iter()
                .filter(|ev| kinds.contains(&ev.kind))
            {
                tx.execute(
                    "INSERT INTO webhook_deliveries (tenant_id, delivery_id, webhook_id, event_id, kind, payload, state, next_attempt_at_ms, created_at_ms) \
                     VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $7) \
                     ON CONFLICT (tenant_id, webhook_id, event_id) DO NOTHING",
                    &[&tenant, &Uuid::new_v4(), &id, &ev.event_id, &ev.kind, &ev.payload.to_string(), &now_ms],
                )
                .await
                .map_err(pg)?;
            }
        }
    }
    for m in &notices.mail {
        super::mail::insert_mail(tx, tenant, m, now_ms).await?;
    }
    if let Some(e) = &notices.audit {
        super::access::insert_audit(tx, e).await?;
    }
    Ok(())
}

async fn by_id(tx: &PgTx, id: Uuid, for_update: bool) -> Result<Option<Reservation>, StorageError> {
    let lock = if for_update { " FOR UPDATE" } else { "" };
    tx.query_opt(
        &format!("SELECT {COLUMNS} FROM reservations WHERE reservation_id = $1{lock}"),
        &[&id],
    )
    .await
    .map_err(pg)?
    .map(|r| row(&r))
    .transpose()
}

#[async_trait]
impl ReservationStore for PgStorage {
    async fn reservation_settings(
        &self,
        tenant: Uuid,
    ) -> Result<ReservationSettings, StorageError> {
        let rows = self
            .read(
                ReadScope::Tenant(tenant),
                &[(
                    "SELECT settings FROM reservation_settings WHERE tenant_id = $1",
                    &[&tenant],
                )],
            )
            .await?;
        let v: Option<serde_json::Value> = rows[0].first().map(|r| r.get(0));
        match v {
            None => Ok(ReservationSettings::default()),
            Some(v) => serde_json::from_value(v)
                .map_err(|e| StorageError::Corrupt(format!("reservation settings: {e}"))),
        }
    }

    async fn set_reservation_settings(
        &self,
        tenant: Uuid,
        settings: &ReservationSettings,
        now_ms: i64,
    ) -> Result<(), StorageError> {
        let json = serde_json::to_value(settings).expect("settings serialise");
        let tx = self.tenant_tx(tenant).await?;
        tx.execute(
            "INSERT INTO reservation_settings (tenant_id, settings, updated_at_ms) VALUES ($1, $2, $3)
             ON CONFLICT (tenant_id) DO UPDATE SET settings = excluded.settings, updated_at_ms = excluded.updated_at_ms",
            &[&tenant, &json, &now_ms],
        )
        .await
        .map_err(pg)?;
        tx.commit().await
    }

    async fn reservable(&self, tenant: Uuid, id: Uuid) -> Result<Option<Reservable>, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let r = tx
            .query_opt(
                "SELECT asset_id, kind, name, plate, vehicle_group, home_yard, retired_at_ms
                 FROM assets WHERE tenant_id = $1 AND asset_id = $2",
                &[&tenant, &id],
            )
            .await
            .map_err(pg)?
            .map(|r| reservable_row(&r));
        tx.commit().await?;
        Ok(r)
    }

    async fn create_reservation(
        &self,
        tenant: Uuid,
        r: &Reservation,
        notices: &Notices,
    ) -> Result<Write, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let res = tx
            .execute(
                &format!("INSERT INTO reservations (tenant_id, {COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)"),
                &[
                    &tenant,
                    &r.id,
                    &r.vehicle_id,
                    &r.user_id,
                    &r.start_ms,
                    &r.end_ms,
                    &r.buffer_ms,
                    &r.status.as_str(),
                    &r.purpose,
                    &r.department,
                    &r.cost_center,
                    &r.reason,
                    &r.created_by,
                    &r.approved_by,
                    &r.version,
                    &r.created_at_ms,
                    &r.updated_at_ms,
                    &r.reminded_at_ms,
                    &r.overdue_at_ms,
                ],
            )
            .await;
        match res {
            Ok(_) => {
                queue_notices(&tx, tenant, notices, r.updated_at_ms).await?;
                tx.commit().await?;
                Ok(Write::Done(r.clone()))
            }
            Err(e) if is_exclusion_violation(&e) => {
                drop(tx);
                Ok(Write::Conflict(self.blocking_for(tenant, r).await?))
            }
            Err(e) if super::is_unique_violation(&e) => Err(StorageError::Conflict(
                "a reservation with this id already exists".into(),
            )),
            Err(e) => Err(pg(e)),
        }
    }

    async fn reservation(
        &self,
        tenant: Uuid,
        id: Uuid,
    ) -> Result<Option<Reservation>, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let r = by_id(&tx, id, false).await?;
        tx.commit().await?;
        Ok(r)
    }

    async fn list_reservations(
        &self,
        tenant: Uuid,
        f: &ReservationFilter,
    ) -> Result<Vec<Reservation>, StorageError> {
        let mut sql = format!("SELECT {COLUMNS} FROM reservations WHERE tenant_id = $1");
        let mut args: Vec<Box<dyn ToSql + Sync + Send>> = vec![Box::new(tenant)];
        fn push(
            sql: &mut String,
            args: &mut Vec<Box<dyn ToSql + Sync + Send>>,
            cond: &str,
            v: Box<dyn ToSql + Sync + Send>,
        ) {
            args.push(v);
            sql.push_str(&cond.replace('?', &format!("${}", args.len())));
        }
        if let Some(v) = f.vehicle_id {
            push(&mut sql, &mut args, " AND vehicle_id = ?", Box::new(v));
        }
        if let Some(u) = f.user_id {
            push(&mut sql, &mut args, " AND user_id = ?", Box::new(u));
        }
        if let Some(from) = f.from_ms {
            push(&mut sql, &mut args, " AND end_ms > ?", Box::new(from));
        }
        if let Some(to) = f.to_ms {
            push(&mut sql, &mut args, " AND start_ms < ?", Box::new(to));
        }
        if let Some(d) = &f.department {
            push(
                &mut sql,
                &mut args,
                " AND department = ?",
                Box::new(d.clone()),
            );
        }
        if let Some(cc) = &f.cost_center {
            push(
                &mut sql,
                &mut args,
                " AND cost_center = ?",
                Box::new(cc.clone()),
            );
        }
        if !f.statuses.is_empty() {
            let list: Vec<String> = f.statuses.iter().map(|s| s.as_str().to_owned()).collect();
            push(&mut sql, &mut args, " AND status = ANY(?)", Box::new(list));
        }
        if let Some((start, id)) = f.after {
            push(
                &mut sql,
                &mut args,
                " AND (start_ms, reservation_id) > (?",
                Box::new(start),
            );
            push(&mut sql, &mut args, ", ?)", Box::new(id));
        }
        sql.push_str(&format!(
            " ORDER BY start_ms, reservation_id LIMIT {}",
            f.limit.max(1)
        ));
        let refs: Vec<&(dyn ToSql + Sync)> = args
            .iter()
            .map(|a| a.as_ref() as &(dyn ToSql + Sync))
            .collect();
        let tx = self.tenant_tx(tenant).await?;
        let rows = tx.query(&sql, &refs).await.map_err(pg)?;
        tx.commit().await?;
        rows.iter().map(row).collect()
    }

    async fn update_reservation(
        &self,
        tenant: Uuid,
        id: Uuid,
        change: &Change,
        notices: &Notices,
    ) -> Result<Write, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let Some(mut r) = by_id(&tx, id, true).await? else {
            return Ok(Write::NotFound);
        };
        if !change.admits(&r) {
            return Ok(Write::Stale(r));
        }
        change.apply(&mut r);
        let res = tx
            .execute(
                "UPDATE reservations SET vehicle_id = $2, start_ms = $3, end_ms = $4, buffer_ms = $5,
                     status = $6, purpose = $7, department = $8, cost_center = $9, reason = $10,
                     approved_by = $11, version = $12, updated_at_ms = $13, reminded_at_ms = $14,
                     overdue_at_ms = $15
                 WHERE reservation_id = $1",
                &[
                    &id,
                    &r.vehicle_id,
                    &r.start_ms,
                    &r.end_ms,
                    &r.buffer_ms,
                    &r.status.as_str(),
                    &r.purpose,
                    &r.department,
                    &r.cost_center,
                    &r.reason,
                    &r.approved_by,
                    &r.version,
                    &r.updated_at_ms,
                    &r.reminded_at_ms,
                    &r.overdue_at_ms,
                ],
            )
            .await;
        match res {
            Ok(_) => {
                queue_notices(&tx, tenant, notices, change.now_ms).await?;
                tx.commit().await?;
                Ok(Write::Done(r))
            }
            Err(e) if is_exclusion_violation(&e) => {
                drop(tx);
                Ok(Write::Conflict(self.blocking_for(tenant, &r).await?))
            }
            Err(e) => Err(pg(e)),
        }
    }

    async fn available_vehicles(
        &self,
        tenant: Uuid,
        q: &AvailabilityQuery,
    ) -> Result<Vec<Reservable>, StorageError> {
        // Two steps (see `BUSY_SCAN_BEFORE_MS`): the materialized CTEs keep
        // the order, so the scan proves vehicles busy before any is probed,
        // and `NOT IN` runs as one hashed subplan whatever the estimates.
        let sql = format!(
            "WITH fleet AS MATERIALIZED (
                 SELECT a.tenant_id, a.asset_id, a.kind, a.name, a.plate, a.vehicle_group, a.home_yard, a.retired_at_ms
                 FROM assets a
                 WHERE a.tenant_id = $1 AND a.kind = $2 AND a.retired_at_ms IS NULL
                   AND ($3::text IS NULL OR a.vehicle_group = $3)
                   AND ($4::text IS NULL OR COALESCE(a.home_yard, 'default') = $4)),
             busy AS MATERIALIZED (
                 SELECT s.vehicle_id FROM (
                     SELECT r.vehicle_id, r.end_ms, r.buffer_ms FROM reservations r
                     WHERE r.tenant_id = $1 AND r.status IN {HOLDING_SQL}
                       AND r.start_ms >= $5::bigint - {BUSY_SCAN_BEFORE_MS}
                       AND r.start_ms < least($6::bigint, $5::bigint + {BUSY_SCAN_INTO_MS})
                     ORDER BY r.start_ms DESC
                     LIMIT (SELECT {BUSY_SCAN_ROWS_PER_VEHICLE} * count(*) FROM assets
                            WHERE tenant_id = $1 AND kind = $2)) s
                 WHERE s.end_ms + s.buffer_ms > $5),
             unproven AS MATERIALIZED (
                 SELECT * FROM fleet WHERE asset_id NOT IN (SELECT vehicle_id FROM busy))
             SELECT a.asset_id, a.kind, a.name, a.plate, a.vehicle_group, a.home_yard, a.retired_at_ms
             FROM unproven a
             WHERE COALESCE((SELECT r.end_ms + r.buffer_ms FROM reservations r
                             WHERE r.tenant_id = a.tenant_id AND r.vehicle_id = a.asset_id
                               AND r.status IN {HOLDING_SQL} AND r.start_ms < $6
                             ORDER BY r.start_ms DESC LIMIT 1), $5) <= $5
             ORDER BY a.name, a.asset_id LIMIT $7"
        );
        let limit = i64::from(q.limit);
        let rows = self
            .read(
                ReadScope::Tenant(tenant),
                &[(
                    &sql,
                    &[
                        &tenant,
                        &q.kind,
                        &q.vehicle_group,
                        &q.home_yard,
                        &q.from_ms,
                        &(q.to_ms + q.buffer_ms),
                        &limit,
                    ],
                )],
            )
            .await?;
        Ok(rows[0].iter().map(reservable_row).collect())
    }

    async fn yard_bookings(
        &self,
        tenant: Uuid,
        yard: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<YardBooking>, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let rows = tx
            .query(
                "SELECT r.reservation_id, r.vehicle_id, b.badge_id, r.start_ms, r.end_ms
                 FROM reservations r
                 JOIN assets a ON a.tenant_id = r.tenant_id AND a.asset_id = r.vehicle_id
                 JOIN user_badges b ON b.tenant_id = r.tenant_id AND b.user_id = r.user_id
                 WHERE r.tenant_id = $1 AND r.status = 'approved'
                   AND COALESCE(a.home_yard, 'default') = $2
                   AND r.end_ms > $3 AND r.start_ms < $4
                 ORDER BY r.start_ms, r.reservation_id, b.badge_id",
                &[&tenant, &yard, &from_ms, &to_ms],
            )
            .await
            .map_err(pg)?;
        tx.commit().await?;
        Ok(rows
            .iter()
            .map(|r| YardBooking {
                reservation_id: r.get(0),
                vehicle_id: r.get(1),
                badge_id: r.get(2),
                start_ms: r.get(3),
                end_ms: r.get(4),
            })
            .collect())
    }

    async fn set_calendar_token(
        &self,
        tenant: Uuid,
        subject: FeedSubject,
        id: Uuid,
        token_sha256: [u8; 32],
        now_ms: i64,
    ) -> Result<(), StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        tx.execute(
            "INSERT INTO calendar_tokens (tenant_id, subject_kind, subject_id, token_sha256, created_at_ms)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (tenant_id, subject_kind, subject_id)
             DO UPDATE SET token_sha256 = excluded.token_sha256, created_at_ms = excluded.created_at_ms",
            &[&tenant, &subject.as_str(), &id, &token_sha256.as_slice(), &now_ms],
        )
        .await
        .map_err(pg)?;
        tx.commit().await
    }

    async fn calendar_token(
        &self,
        tenant: Uuid,
        subject: FeedSubject,
        id: Uuid,
    ) -> Result<Option<[u8; 32]>, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let h: Option<Vec<u8>> = tx
            .query_opt(
                "SELECT token_sha256 FROM calendar_tokens WHERE tenant_id = $1 AND subject_kind = $2 AND subject_id = $3",
                &[&tenant, &subject.as_str(), &id],
            )
            .await
            .map_err(pg)?
            .map(|r| r.get(0));
        tx.commit().await?;
        h.map(|h| {
            h.try_into()
                .map_err(|_| StorageError::Corrupt("calendar token hash".into()))
        })
        .transpose()
    }
}

/// The conformance suite's fault: a trigger that refuses every insert into the
/// mail outbox of the test database.
#[cfg(test)]
impl crate::storage::conformance_reservations::OutboxFault for super::testing::Guard {
    async fn break_mail_outbox(&self) {
        let admin = super::PgTarget {
            config: self.admin_config(),
            tls: self.tls().clone(),
        }
        .connect()
        .await
        .unwrap();
        admin
            .batch_execute(
                "CREATE FUNCTION mail_outbox_refuses() RETURNS trigger LANGUAGE plpgsql AS
                 $$ BEGIN RAISE EXCEPTION 'the mail outbox refuses every message'; END $$;
                 CREATE TRIGGER mail_outbox_refuses BEFORE INSERT ON mail_outbox
                 FOR EACH ROW EXECUTE FUNCTION mail_outbox_refuses();",
            )
            .await
            .unwrap();
    }
}
