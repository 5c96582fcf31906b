//! [`MailStore`] and [`ReportStore`] on SQLite: one process, so a claim is a
//! plain update on the writer thread.

use super::conn::backend;
use super::lease::{claim_due, Claim};
use super::{blob, uuid_at, SqliteStorage};
use crate::storage::mail::{Attachment, DueMail, MailOutcome, MailRecord, MailStore, NewMail};
use crate::storage::reports::{ReportRun, ReportSchedule, ReportStore, ScheduleSpec};
use crate::storage::StorageError;
use async_trait::async_trait;
use rusqlite::{params, OptionalExtension, Row, Transaction};
use uuid::Uuid;

fn corrupt(i: usize, e: impl std::error::Error + Send + Sync + 'static) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
}

fn u32_at(r: &Row<'_>, i: usize) -> rusqlite::Result<u32> {
    let v: i64 = r.get(i)?;
    Ok(u32::try_from(v.max(0)).unwrap_or(u32::MAX))
}

pub(super) fn insert_mail(
    tx: &Transaction<'_>,
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
            "INSERT OR IGNORE INTO mail_outbox (tenant_id, message_id, source, to_addr, to_name, subject, body, \
             attachment_name, attachment_type, attachment, state, attempts, next_attempt_at_ms, created_at_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'pending', 0, ?11, ?11)",
            params![blob(&tenant), m.message_id, m.source, m.to_addr, m.to_name, m.subject, m.body, name, kind, bytes, now_ms],
        )
        .map_err(backend)?;
    Ok(n as u32)
}

const MAIL_COLUMNS: &str = "message_id, source, to_addr, subject, state, attempts, last_error, \
     attachment_name, created_at_ms, next_attempt_at_ms, sent_at_ms";

fn mail_row(r: &Row<'_>) -> rusqlite::Result<MailRecord> {
    Ok(MailRecord {
        message_id: r.get(0)?,
        source: r.get(1)?,
        to: r.get(2)?,
        subject: r.get(3)?,
        state: r.get(4)?,
        attempts: u32_at(r, 5)?,
        last_error: r.get(6)?,
        attachment_name: r.get(7)?,
        created_at_ms: r.get(8)?,
        next_attempt_at_ms: r.get(9)?,
        sent_at_ms: r.get(10)?,
    })
}

#[async_trait]
impl MailStore for SqliteStorage {
    async fn enqueue_mail(
        &self,
        tenant: Uuid,
        mails: &[NewMail],
        now_ms: i64,
    ) -> Result<u32, StorageError> {
        let mails = mails.to_vec();
        self.pool
            .write(move |c| {
                let tx = c.transaction().map_err(backend)?;
                let mut queued = 0;
                for m in &mails {
                    queued += insert_mail(&tx, tenant, m, now_ms)?;
                }
                tx.commit().map_err(backend)?;
                Ok(queued)
            })
            .await
    }

    async fn claim_mail(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<DueMail>, StorageError> {
        const CLAIM: Claim<'static> = Claim {
            due: "SELECT tenant_id, message_id, source, to_addr, to_name, subject, body, \
                  attachment_name, attachment_type, attachment, attempts FROM mail_outbox \
                  WHERE state = 'pending' AND next_attempt_at_ms <= ?1 \
                  ORDER BY next_attempt_at_ms LIMIT ?2",
            mark: "UPDATE mail_outbox SET next_attempt_at_ms = ?3 WHERE tenant_id = ?1 AND message_id = ?2",
        };
        let lease_until = now_ms.saturating_add(lease_ms);
        self.pool
            .write(move |c| {
                claim_due(
                    c,
                    &CLAIM,
                    now_ms,
                    lease_until,
                    limit,
                    |r| {
                        let name: Option<String> = r.get(7)?;
                        let attachment = match name {
                            Some(name) => Some(Attachment {
                                name,
                                content_type: r.get::<_, Option<String>>(8)?.unwrap_or_default(),
                                bytes: r.get::<_, Option<Vec<u8>>>(9)?.unwrap_or_default(),
                            }),
                            None => None,
                        };
                        Ok(DueMail {
                            tenant_id: uuid_at(r, 0)?,
                            mail: NewMail {
                                message_id: r.get(1)?,
                                source: r.get(2)?,
                                to_addr: r.get(3)?,
                                to_name: r.get(4)?,
                                subject: r.get(5)?,
                                body: r.get(6)?,
                                attachment,
                            },
                            attempts: u32_at(r, 10)?,
                        })
                    },
                    |d| (d.tenant_id, d.mail.message_id.clone()),
                )
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
        let id = message_id.to_owned();
        let outcome = outcome.clone();
        self.pool
            .write(move |c| {
                match outcome {
                    MailOutcome::Sent => c.execute(
                        "UPDATE mail_outbox SET state = 'sent', attempts = attempts + 1, sent_at_ms = ?3 \
                         WHERE tenant_id = ?1 AND message_id = ?2 AND state = 'pending'",
                        params![blob(&tenant), id, now_ms],
                    ),
                    MailOutcome::Failed { error, retry_at_ms } => c.execute(
                        "UPDATE mail_outbox SET state = CASE WHEN ?4 IS NULL THEN 'dead' ELSE 'pending' END, \
                         attempts = attempts + 1, last_error = ?3, next_attempt_at_ms = COALESCE(?4, next_attempt_at_ms) \
                         WHERE tenant_id = ?1 AND message_id = ?2 AND state = 'pending'",
                        params![blob(&tenant), id, error, retry_at_ms],
                    ),
                }
                .map_err(backend)?;
                Ok(())
            })
            .await
    }

    async fn list_mail(
        &self,
        tenant: Uuid,
        state: Option<&str>,
        limit: u32,
    ) -> Result<Vec<MailRecord>, StorageError> {
        let state = state.map(str::to_owned);
        self.pool
            .read(move |c| {
                let mut stmt = c
                    .prepare_cached(&format!(
                        "SELECT {MAIL_COLUMNS} FROM mail_outbox WHERE tenant_id = ?1 AND (?2 IS NULL OR state = ?2) \
                         ORDER BY created_at_ms DESC, message_id LIMIT ?3"
                    ))
                    .map_err(backend)?;
                let rows = stmt
                    .query_map(params![blob(&tenant), state, limit], mail_row)
                    .map_err(backend)?;
                rows.collect::<rusqlite::Result<_>>().map_err(backend)
            })
            .await
    }

    async fn retry_dead_mail(
        &self,
        tenant: Uuid,
        message_id: &str,
        now_ms: i64,
    ) -> Result<bool, StorageError> {
        let id = message_id.to_owned();
        self.pool
            .write(move |c| {
                let n = c
                    .execute(
                        "UPDATE mail_outbox SET state = 'pending', attempts = 0, next_attempt_at_ms = ?3 \
                         WHERE tenant_id = ?1 AND message_id = ?2 AND state = 'dead'",
                        params![blob(&tenant), id, now_ms],
                    )
                    .map_err(backend)?;
                Ok(n == 1)
            })
            .await
    }
}

const SCHEDULE_COLUMNS: &str = "schedule_id, name, report, format, period, hour, weekday, month_day, \
     time_zone, recipients, filters, role, created_by, next_run_ms, last_run_ms, created_at_ms, updated_at_ms";

fn schedule_row(r: &Row<'_>) -> rusqlite::Result<ReportSchedule> {
    schedule_row_from(r, 0)
}

/// A schedule from column `at` on, in [`SCHEDULE_COLUMNS`] order.
fn schedule_row_from(r: &Row<'_>, at: usize) -> rusqlite::Result<ReportSchedule> {
    let small = |i: usize| -> rusqlite::Result<Option<u8>> {
        Ok(r.get::<_, Option<i64>>(at + i)?
            .and_then(|v| u8::try_from(v).ok()))
    };
    let recipients: String = r.get(at + 9)?;
    let filters: String = r.get(at + 10)?;
    let created_by: Option<Vec<u8>> = r.get(at + 12)?;
    Ok(ReportSchedule {
        id: uuid_at(r, at)?,
        spec: ScheduleSpec {
            name: r.get(at + 1)?,
            kind: r.get(at + 2)?,
            format: r.get(at + 3)?,
            period: r.get(at + 4)?,
            hour: small(5)?.unwrap_or(0),
            weekday: small(6)?,
            month_day: small(7)?,
            time_zone: r.get(at + 8)?,
            recipients: serde_json::from_str(&recipients).map_err(|e| corrupt(at + 9, e))?,
            filters: serde_json::from_str(&filters).map_err(|e| corrupt(at + 10, e))?,
        },
        role: r.get(at + 11)?,
        created_by: created_by
            .map(|b| Uuid::from_slice(&b).map_err(|e| corrupt(at + 12, e)))
            .transpose()?,
        next_run_ms: r.get(at + 13)?,
        last_run_ms: r.get(at + 14)?,
        created_at_ms: r.get(at + 15)?,
        updated_at_ms: r.get(at + 16)?,
    })
}

const RUN_COLUMNS: &str = "schedule_id, due_ms, ran_at_ms, window_from, window_to, status, error, \
     message_ids, attachment_name, attachment_bytes";

fn run_row(r: &Row<'_>) -> rusqlite::Result<ReportRun> {
    let ids: String = r.get(7)?;
    Ok(ReportRun {
        schedule_id: uuid_at(r, 0)?,
        due_ms: r.get(1)?,
        ran_at_ms: r.get(2)?,
        window_from: r.get(3)?,
        window_to: r.get(4)?,
        status: r.get(5)?,
        error: r.get(6)?,
        message_ids: serde_json::from_str(&ids).map_err(|e| corrupt(7, e))?,
        attachment_name: r.get(8)?,
        attachment_bytes: r.get::<_, i64>(9)?.max(0) as u64,
    })
}

fn get_schedule(
    c: &rusqlite::Connection,
    tenant: Uuid,
    id: Uuid,
) -> Result<Option<ReportSchedule>, StorageError> {
    c.query_row(
        &format!("SELECT {SCHEDULE_COLUMNS} FROM report_schedules WHERE tenant_id = ?1 AND schedule_id = ?2"),
        params![blob(&tenant), blob(&id)],
        schedule_row,
    )
    .optional()
    .map_err(backend)
}

#[async_trait]
impl ReportStore for SqliteStorage {
    async fn create_report_schedule(
        &self,
        tenant: Uuid,
        spec: &ScheduleSpec,
        role: &str,
        created_by: Option<Uuid>,
        next_run_ms: i64,
        now_ms: i64,
    ) -> Result<ReportSchedule, StorageError> {
        let spec = spec.clone();
        let role = role.to_owned();
        self.pool
            .write(move |c| {
                let id = Uuid::new_v4();
                c.execute(
                    "INSERT INTO report_schedules (tenant_id, schedule_id, name, report, format, period, hour, weekday, \
                     month_day, time_zone, recipients, filters, role, created_by, next_run_ms, created_at_ms, updated_at_ms) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?16)",
                    params![
                        blob(&tenant), blob(&id), spec.name, spec.kind, spec.format, spec.period, spec.hour,
                        spec.weekday, spec.month_day, spec.time_zone,
                        serde_json::to_string(&spec.recipients).unwrap_or_default(),
                        spec.filters.to_string(), role, created_by.as_ref().map(blob), next_run_ms, now_ms
                    ],
                )
                .map_err(backend)?;
                get_schedule(c, tenant, id)?
                    .ok_or_else(|| StorageError::Backend("schedule vanished".into()))
            })
            .await
    }

    async fn list_report_schedules(
        &self,
        tenant: Uuid,
    ) -> Result<Vec<ReportSchedule>, StorageError> {
        self.pool
            .read(move |c| {
                let mut stmt = c
                    .prepare_cached(&format!(
                        "SELECT {SCHEDULE_COLUMNS} FROM report_schedules WHERE tenant_id = ?1 ORDER BY created_at_ms, schedule_id"
                    ))
                    .map_err(backend)?;
                let rows = stmt.query_map(params![blob(&tenant)], schedule_row).map_err(backend)?;
                rows.collect::<rusqlite::Result<_>>().map_err(backend)
            })
            .await
    }

    async fn report_schedule(
        &self,
        tenant: Uuid,
        id: Uuid,
    ) -> Result<Option<ReportSchedule>, StorageError> {
        self.pool.read(move |c| get_schedule(c, tenant, id)).await
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
        let spec = spec.clone();
        let role = role.to_owned();
        self.pool
            .write(move |c| {
                let n = c
                    .execute(
                        "UPDATE report_schedules SET name = ?3, report = ?4, format = ?5, period = ?6, hour = ?7, weekday = ?8, \
                         month_day = ?9, time_zone = ?10, recipients = ?11, filters = ?12, role = ?13, next_run_ms = ?14, \
                         lease_until_ms = NULL, updated_at_ms = ?15 WHERE tenant_id = ?1 AND schedule_id = ?2",
                        params![
                            blob(&tenant), blob(&id), spec.name, spec.kind, spec.format, spec.period, spec.hour,
                            spec.weekday, spec.month_day, spec.time_zone,
                            serde_json::to_string(&spec.recipients).unwrap_or_default(),
                            spec.filters.to_string(), role, next_run_ms, now_ms
                        ],
                    )
                    .map_err(backend)?;
                if n == 0 {
                    return Ok(None);
                }
                get_schedule(c, tenant, id)
            })
            .await
    }

    async fn delete_report_schedule(&self, tenant: Uuid, id: Uuid) -> Result<bool, StorageError> {
        self.pool
            .write(move |c| {
                let tx = c.transaction().map_err(backend)?;
                tx.execute(
                    "DELETE FROM report_runs WHERE tenant_id = ?1 AND schedule_id = ?2",
                    params![blob(&tenant), blob(&id)],
                )
                .map_err(backend)?;
                let n = tx
                    .execute(
                        "DELETE FROM report_schedules WHERE tenant_id = ?1 AND schedule_id = ?2",
                        params![blob(&tenant), blob(&id)],
                    )
                    .map_err(backend)?;
                tx.commit().map_err(backend)?;
                Ok(n == 1)
            })
            .await
    }

    async fn claim_due_reports(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<(Uuid, ReportSchedule)>, StorageError> {
        let lease_until = now_ms.saturating_add(lease_ms);
        self.pool
            .write(move |c| {
                let due = format!(
                    "SELECT tenant_id, {SCHEDULE_COLUMNS} FROM report_schedules \
                     WHERE next_run_ms <= ?1 AND (lease_until_ms IS NULL OR lease_until_ms <= ?1) \
                     ORDER BY next_run_ms LIMIT ?2"
                );
                let claim = Claim {
                    due: &due,
                    mark: "UPDATE report_schedules SET lease_until_ms = ?3 WHERE tenant_id = ?1 AND schedule_id = ?2",
                };
                claim_due(
                    c,
                    &claim,
                    now_ms,
                    lease_until,
                    limit,
                    // The schedule's columns start at 1.
                    |r| Ok((uuid_at(r, 0)?, schedule_row_from(r, 1)?)),
                    |(tenant, s)| (*tenant, *s.id.as_bytes()),
                )
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
        let run = run.clone();
        let mails = mails.to_vec();
        self.pool
            .write(move |c| {
                let tx = c.transaction().map_err(backend)?;
                let moved = tx
                    .execute(
                        "UPDATE report_schedules SET next_run_ms = ?4, last_run_ms = ?3, lease_until_ms = NULL \
                         WHERE tenant_id = ?1 AND schedule_id = ?2 AND next_run_ms = ?3",
                        params![blob(&tenant), blob(&run.schedule_id), run.due_ms, next_run_ms],
                    )
                    .map_err(backend)?;
                if moved == 0 {
                    return Ok(false);
                }
                let recorded = tx
                    .execute(
                        "INSERT OR IGNORE INTO report_runs (tenant_id, schedule_id, due_ms, ran_at_ms, window_from, window_to, \
                         status, error, message_ids, attachment_name, attachment_bytes) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                        params![
                            blob(&tenant), blob(&run.schedule_id), run.due_ms, run.ran_at_ms, run.window_from,
                            run.window_to, run.status, run.error,
                            serde_json::to_string(&run.message_ids).unwrap_or_default(),
                            run.attachment_name, i64::try_from(run.attachment_bytes).unwrap_or(i64::MAX)
                        ],
                    )
                    .map_err(backend)?;
                if recorded == 0 {
                    return Ok(false);
                }
                for m in &mails {
                    insert_mail(&tx, tenant, m, run.ran_at_ms)?;
                }
                tx.commit().map_err(backend)?;
                Ok(true)
            })
            .await
    }

    async fn list_report_runs(
        &self,
        tenant: Uuid,
        schedule: Uuid,
        limit: u32,
    ) -> Result<Option<Vec<ReportRun>>, StorageError> {
        self.pool
            .read(move |c| {
                if get_schedule(c, tenant, schedule)?.is_none() {
                    return Ok(None);
                }
                let mut stmt = c
                    .prepare_cached(&format!(
                        "SELECT {RUN_COLUMNS} FROM report_runs WHERE tenant_id = ?1 AND schedule_id = ?2 \
                         ORDER BY due_ms DESC LIMIT ?3"
                    ))
                    .map_err(backend)?;
                let rows = stmt
                    .query_map(params![blob(&tenant), blob(&schedule), limit], run_row)
                    .map_err(backend)?;
                Ok(Some(rows.collect::<rusqlite::Result<_>>().map_err(backend)?))
            })
            .await
    }
}
