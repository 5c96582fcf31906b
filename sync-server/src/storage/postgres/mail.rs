//! [`MailStore`] and [`ReportStore`] on PostgreSQL. Several replicas run the
//! mail sender and the report pass at once: work is found across tenants in a
//! read-only worker transaction, then claimed per tenant with
//! `FOR UPDATE SKIP LOCKED` and a lease, so no two replicas take one row at
//! the same time and a replica that dies mid-send leaves it due again once
//! its lease ends.

use super::lease::Claim;
use super::{pg, pool_err, PgStorage, PgTx};
use crate::storage::mail::{Attachment, DueMail, MailOutcome, MailRecord, MailStore, NewMail};
use crate::storage::reports::{ReportRun, ReportSchedule, ReportStore, ScheduleSpec};
use crate::storage::StorageError;
use async_trait::async_trait;
use tokio_postgres::Row;
use uuid::Uuid;

fn corrupt(what: &str, e: impl std::fmt::Display) -> StorageError {
    StorageError::Corrupt(format!("{what}: {e}"))
}

fn to_u32(v: i64) -> u32 {
    u32::try_from(v.max(0)).unwrap_or(u32::MAX)
}

impl PgStorage {
    /// A read-only transaction that sees due rows of every tenant (the
    /// `mail_worker` and `analytics_worker` policies), for finding work.
    async fn mail_worker_tx(&self) -> Result<PgTx, StorageError> {
        let conn = self.pool.get().await.map_err(pool_err)?;
        conn.batch_execute(
            "BEGIN READ ONLY; SET LOCAL app.mail_worker = 'on'; SET LOCAL app.analytics_worker = 'on'",
        )
        .await
        .map_err(pg)?;
        Ok(PgTx { conn: Some(conn) })
    }
}

pub(super) async fn insert_mail(
    tx: &PgTx,
    tenant: Uuid,
    m: &NewMail,
    now_ms: i64,
) -> Result<u32, StorageError> {
    let (name, kind, bytes) = match &m.attachment {
        Some(a) => (Some(&a.name), Some(&a.content_type), Some(&a.bytes)),
        None => (None, None, None),
    };
    let n = tx
        .execute(
            "INSERT INTO mail_outbox (tenant_id, message_id, source, to_addr, to_name, subject, body, \
             attachment_name, attachment_type, attachment, state, attempts, next_attempt_at_ms, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'pending', 0, $11, $11) \
             ON CONFLICT (tenant_id, message_id) DO NOTHING",
            &[&tenant, &m.message_id, &m.source, &m.to_addr, &m.to_name, &m.subject, &m.body, &name, &kind, &bytes, &now_ms],
        )
        .await
        .map_err(pg)?;
    Ok(n as u32)
}

const MAIL_COLUMNS: &str = "message_id, source, to_addr, subject, state, attempts, last_error, \
     attachment_name, created_at_ms, next_attempt_at_ms, sent_at_ms";

fn mail_row(r: &Row) -> MailRecord {
    MailRecord {
        message_id: r.get(0),
        source: r.get(1),
        to: r.get(2),
        subject: r.get(3),
        state: r.get(4),
        attempts: to_u32(r.get(5)),
        last_error: r.get(6),
        attachment_name: r.get(7),
        created_at_ms: r.get(8),
        next_attempt_at_ms: r.get(9),
        sent_at_ms: r.get(10),
    }
}

#[async_trait]
impl MailStore for PgStorage {
    async fn enqueue_mail(
        &self,
        tenant: Uuid,
        mails: &[NewMail],
        now_ms: i64,
    ) -> Result<u32, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let mut queued = 0;
        for m in mails {
            queued += insert_mail(&tx, tenant, m, now_ms).await?;
        }
        tx.commit().await?;
        Ok(queued)
    }

    async fn claim_mail(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<DueMail>, StorageError> {
        let claim = Claim {
            tenants_due: "SELECT tenant_id FROM mail_outbox WHERE state = 'pending' AND next_attempt_at_ms <= $1 \
                          GROUP BY tenant_id ORDER BY min(next_attempt_at_ms) LIMIT $2",
            claim: "WITH claimed AS ( \
                        SELECT message_id FROM mail_outbox \
                        WHERE tenant_id = $1 AND state = 'pending' AND next_attempt_at_ms <= $2 \
                        ORDER BY next_attempt_at_ms LIMIT $3 FOR UPDATE SKIP LOCKED) \
                    UPDATE mail_outbox m SET next_attempt_at_ms = $4 FROM claimed c \
                    WHERE m.tenant_id = $1 AND m.message_id = c.message_id \
                    RETURNING m.message_id, m.source, m.to_addr, m.to_name, m.subject, m.body, \
                        m.attachment_name, m.attachment_type, m.attachment, m.attempts",
        };
        let finder = self.mail_worker_tx().await?;
        let lease_until = now_ms.saturating_add(lease_ms);
        self.claim_leased(finder, &claim, now_ms, lease_until, limit, |tenant, r| {
            let attachment = r.get::<_, Option<String>>(6).map(|name| Attachment {
                name,
                content_type: r.get::<_, Option<String>>(7).unwrap_or_default(),
                bytes: r.get::<_, Option<Vec<u8>>>(8).unwrap_or_default(),
            });
            Ok(DueMail {
                tenant_id: tenant,
                mail: NewMail {
                    message_id: r.get(0),
                    source: r.get(1),
                    to_addr: r.get(2),
                    to_name: r.get(3),
                    subject: r.get(4),
                    body: r.get(5),
                    attachment,
                },
                attempts: to_u32(r.get(9)),
            })
        })
        .await
    }

    async fn record_mail_attempt(
        &self,
        tenant: Uuid,
        message_id: &str,
        outcome: &MailOutcome,
        now_ms: i64,
    ) -> Result<(), StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        match outcome {
            MailOutcome::Sent => {
                tx.execute(
                    "UPDATE mail_outbox SET state = 'sent', attempts = attempts + 1, sent_at_ms = $3 \
                     WHERE tenant_id = $1 AND message_id = $2 AND state = 'pending'",
                    &[&tenant, &message_id, &now_ms],
                )
                .await
            }
            MailOutcome::Failed { error, retry_at_ms } => {
                let state = if retry_at_ms.is_some() { "pending" } else { "dead" };
                tx.execute(
                    "UPDATE mail_outbox SET state = $3, attempts = attempts + 1, last_error = $4, \
                     next_attempt_at_ms = COALESCE($5, next_attempt_at_ms) \
                     WHERE tenant_id = $1 AND message_id = $2 AND state = 'pending'",
                    &[&tenant, &message_id, &state, error, retry_at_ms],
                )
                .await
            }
        }
        .map_err(pg)?;
        tx.commit().await
    }

    async fn list_mail(
        &self,
        tenant: Uuid,
        state: Option<&str>,
        limit: u32,
    ) -> Result<Vec<MailRecord>, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let rows = tx
            .query(
                &format!(
                    "SELECT {MAIL_COLUMNS} FROM mail_outbox WHERE tenant_id = $1 AND ($2::text IS NULL OR state = $2) \
                     ORDER BY created_at_ms DESC, message_id LIMIT $3"
                ),
                &[&tenant, &state, &i64::from(limit)],
            )
            .await
            .map_err(pg)?;
        tx.commit().await?;
        Ok(rows.iter().map(mail_row).collect())
    }

    async fn retry_dead_mail(
        &self,
        tenant: Uuid,
        message_id: &str,
        now_ms: i64,
    ) -> Result<bool, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let n = tx
            .execute(
                "UPDATE mail_outbox SET state = 'pending', attempts = 0, next_attempt_at_ms = $3 \
                 WHERE tenant_id = $1 AND message_id = $2 AND state = 'dead'",
                &[&tenant, &message_id, &now_ms],
            )
            .await
            .map_err(pg)?;
        tx.commit().await?;
        Ok(n == 1)
    }
}

const SCHEDULE_COLUMNS: &str = "schedule_id, name, report, format, period, hour, weekday, month_day, \
     time_zone, recipients, filters, role, created_by, next_run_ms, last_run_ms, created_at_ms, updated_at_ms";

fn schedule_row(r: &Row) -> Result<ReportSchedule, StorageError> {
    let small = |i: usize| {
        r.get::<_, Option<i64>>(i)
            .and_then(|v| u8::try_from(v).ok())
    };
    let recipients: String = r.get(9);
    let filters: String = r.get(10);
    Ok(ReportSchedule {
        id: r.get(0),
        spec: ScheduleSpec {
            name: r.get(1),
            kind: r.get(2),
            format: r.get(3),
            period: r.get(4),
            hour: small(5).unwrap_or(0),
            weekday: small(6),
            month_day: small(7),
            time_zone: r.get(8),
            recipients: serde_json::from_str(&recipients).map_err(|e| corrupt("recipients", e))?,
            filters: serde_json::from_str(&filters).map_err(|e| corrupt("filters", e))?,
        },
        role: r.get(11),
        created_by: r.get(12),
        next_run_ms: r.get(13),
        last_run_ms: r.get(14),
        created_at_ms: r.get(15),
        updated_at_ms: r.get(16),
    })
}

const RUN_COLUMNS: &str = "schedule_id, due_ms, ran_at_ms, window_from, window_to, status, error, \
     message_ids, attachment_name, attachment_bytes";

fn run_row(r: &Row) -> Result<ReportRun, StorageError> {
    let ids: String = r.get(7);
    Ok(ReportRun {
        schedule_id: r.get(0),
        due_ms: r.get(1),
        ran_at_ms: r.get(2),
        window_from: r.get(3),
        window_to: r.get(4),
        status: r.get(5),
        error: r.get(6),
        message_ids: serde_json::from_str(&ids).map_err(|e| corrupt("message_ids", e))?,
        attachment_name: r.get(8),
        attachment_bytes: r.get::<_, i64>(9).max(0) as u64,
    })
}

async fn get_schedule(
    tx: &PgTx,
    tenant: Uuid,
    id: Uuid,
) -> Result<Option<ReportSchedule>, StorageError> {
    tx.query_opt(
        &format!(
            "SELECT {SCHEDULE_COLUMNS} FROM report_schedules WHERE tenant_id = $1 AND schedule_id = $2"
        ),
        &[&tenant, &id],
    )
    .await
    .map_err(pg)?
    .as_ref()
    .map(schedule_row)
    .transpose()
}

fn small(v: Option<u8>) -> Option<i64> {
    v.map(i64::from)
}

#[async_trait]
impl ReportStore for PgStorage {
    async fn create_report_schedule(
        &self,
        tenant: Uuid,
        spec: &ScheduleSpec,
        role: &str,
        created_by: Option<Uuid>,
        next_run_ms: i64,
        now_ms: i64,
    ) -> Result<ReportSchedule, StorageError> {
        let id = Uuid::new_v4();
        let recipients = serde_json::to_string(&spec.recipients).unwrap_or_default();
        let filters = spec.filters.to_string();
        let tx = self.tenant_tx(tenant).await?;
        tx.execute(
            "INSERT INTO report_schedules (tenant_id, schedule_id, name, report, format, period, hour, weekday, \
             month_day, time_zone, recipients, filters, role, created_by, next_run_ms, created_at_ms, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $16)",
            &[
                &tenant, &id, &spec.name, &spec.kind, &spec.format, &spec.period, &i64::from(spec.hour),
                &small(spec.weekday), &small(spec.month_day), &spec.time_zone, &recipients, &filters,
                &role, &created_by, &next_run_ms, &now_ms,
            ],
        )
        .await
        .map_err(pg)?;
        let s = get_schedule(&tx, tenant, id)
            .await?
            .ok_or_else(|| StorageError::Backend("schedule vanished".into()))?;
        tx.commit().await?;
        Ok(s)
    }

    async fn list_report_schedules(
        &self,
        tenant: Uuid,
    ) -> Result<Vec<ReportSchedule>, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let rows = tx
            .query(
                &format!(
                    "SELECT {SCHEDULE_COLUMNS} FROM report_schedules WHERE tenant_id = $1 ORDER BY created_at_ms, schedule_id"
                ),
                &[&tenant],
            )
            .await
            .map_err(pg)?;
        tx.commit().await?;
        rows.iter().map(schedule_row).collect()
    }

    async fn report_schedule(
        &self,
        tenant: Uuid,
        id: Uuid,
    ) -> Result<Option<ReportSchedule>, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let s = get_schedule(&tx, tenant, id).await?;
        tx.commit().await?;
        Ok(s)
    }

    async fn update_report_schedule(
        &self,
        tenant: Uuid,
        id: Uuid,
        spec: &ScheduleSpec,
        role: &str,
        next_run_ms: i64,
        now_ms: i64,
    ) -> Result<Option<ReportSchedule>, StorageError> {
        let recipients = serde_json::to_string(&spec.recipients).unwrap_or_default();
        let filters = spec.filters.to_string();
        let tx = self.tenant_tx(tenant).await?;
        let n = tx
            .execute(
                "UPDATE report_schedules SET name = $3, report = $4, format = $5, period = $6, hour = $7, weekday = $8, \
                 month_day = $9, time_zone = $10, recipients = $11, filters = $12, role = $13, next_run_ms = $14, \
                 lease_until_ms = NULL, updated_at_ms = $15 WHERE tenant_id = $1 AND schedule_id = $2",
                &[
                    &tenant, &id, &spec.name, &spec.kind, &spec.format, &spec.period, &i64::from(spec.hour),
                    &small(spec.weekday), &small(spec.month_day), &spec.time_zone, &recipients, &filters,
                    &role, &next_run_ms, &now_ms,
                ],
            )
            .await
            .map_err(pg)?;
        if n == 0 {
            return Ok(None);
        }
        let s = get_schedule(&tx, tenant, id).await?;
        tx.commit().await?;
        Ok(s)
    }

    async fn delete_report_schedule(&self, tenant: Uuid, id: Uuid) -> Result<bool, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        tx.execute(
            "DELETE FROM report_runs WHERE tenant_id = $1 AND schedule_id = $2",
            &[&tenant, &id],
        )
        .await
        .map_err(pg)?;
        let n = tx
            .execute(
                "DELETE FROM report_schedules WHERE tenant_id = $1 AND schedule_id = $2",
                &[&tenant, &id],
            )
            .await
            .map_err(pg)?;
        tx.commit().await?;
        Ok(n == 1)
    }

    async fn claim_due_reports(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<(Uuid, ReportSchedule)>, StorageError> {
        let returning: String = SCHEDULE_COLUMNS
            .split(", ")
            .map(|c| format!("s.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        let claim_sql = format!(
            "WITH claimed AS ( \
                 SELECT schedule_id FROM report_schedules \
                 WHERE tenant_id = $1 AND next_run_ms <= $2 AND (lease_until_ms IS NULL OR lease_until_ms <= $2) \
                 ORDER BY next_run_ms LIMIT $3 FOR UPDATE SKIP LOCKED) \
             UPDATE report_schedules s SET lease_until_ms = $4 FROM claimed c \
             WHERE s.tenant_id = $1 AND s.schedule_id = c.schedule_id RETURNING {returning}"
        );
        let claim = Claim {
            tenants_due: "SELECT tenant_id FROM report_schedules \
                          WHERE next_run_ms <= $1 AND (lease_until_ms IS NULL OR lease_until_ms <= $1) \
                          GROUP BY tenant_id ORDER BY min(next_run_ms) LIMIT $2",
            claim: &claim_sql,
        };
        let finder = self.mail_worker_tx().await?;
        let lease_until = now_ms.saturating_add(lease_ms);
        self.claim_leased(finder, &claim, now_ms, lease_until, limit, |tenant, r| {
            Ok((tenant, schedule_row(r)?))
        })
        .await
    }

    async fn finish_report_run(
        &self,
        tenant: Uuid,
        run: &ReportRun,
        next_run_ms: i64,
        mails: &[NewMail],
    ) -> Result<bool, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let moved = tx
            .execute(
                "UPDATE report_schedules SET next_run_ms = $4, last_run_ms = $3, lease_until_ms = NULL \
                 WHERE tenant_id = $1 AND schedule_id = $2 AND next_run_ms = $3",
                &[&tenant, &run.schedule_id, &run.due_ms, &next_run_ms],
            )
            .await
            .map_err(pg)?;
        if moved == 0 {
            return Ok(false);
        }
        let ids = serde_json::to_string(&run.message_ids).unwrap_or_default();
        let bytes = i64::try_from(run.attachment_bytes).unwrap_or(i64::MAX);
        let recorded = tx
            .execute(
                "INSERT INTO report_runs (tenant_id, schedule_id, due_ms, ran_at_ms, window_from, window_to, \
                 status, error, message_ids, attachment_name, attachment_bytes) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                 ON CONFLICT (tenant_id, schedule_id, due_ms) DO NOTHING",
                &[
                    &tenant, &run.schedule_id, &run.due_ms, &run.ran_at_ms, &run.window_from, &run.window_to,
                    &run.status, &run.error, &ids, &run.attachment_name, &bytes,
                ],
            )
            .await
            .map_err(pg)?;
        if recorded == 0 {
            return Ok(false);
        }
        for m in mails {
            insert_mail(&tx, tenant, m, run.ran_at_ms).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn list_report_runs(
        &self,
        tenant: Uuid,
        schedule: Uuid,
        limit: u32,
    ) -> Result<Option<Vec<ReportRun>>, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        if get_schedule(&tx, tenant, schedule).await?.is_none() {
            return Ok(None);
        }
        let rows = tx
            .query(
                &format!(
                    "SELECT {RUN_COLUMNS} FROM report_runs WHERE tenant_id = $1 AND schedule_id = $2 \
                     ORDER BY due_ms DESC LIMIT $3"
                ),
                &[&tenant, &schedule, &i64::from(limit)],
            )
            .await
            .map_err(pg)?;
        tx.commit().await?;
        rows.iter()
            .map(run_row)
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
}
