//! Report schedules and their runs. A background pass claims due schedules
//! (leased, so a second replica skips them), renders each report, and then,
//! in one transaction, records the run under its scheduled time (the key
//! refuses a second run of the same time), queues its emails in the mail
//! outbox, and moves the schedule to its next time. Every backend implements
//! [`ReportStore`] and passes `conformance_mail.rs`.

use super::mail::NewMail;
use super::StorageError;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What a schedule asks for, as the API takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleSpec {
    pub name: String,
    /// `utilization`, `idle`, `trips`, `costs` or `summary`.
    pub kind: String,
    /// `csv`, or `pdf` (summary only).
    pub format: String,
    /// `daily`, `weekly` or `monthly`.
    pub period: String,
    /// Local hour 0..=23 at which it runs.
    pub hour: u8,
    /// Weekly: 1 (Monday) ..= 7.
    pub weekday: Option<u8>,
    /// Monthly: 1 ..= 28.
    pub month_day: Option<u8>,
    /// IANA name, e.g. `Europe/Berlin`.
    pub time_zone: String,
    pub recipients: Vec<String>,
    /// `{"vehicle": uuid, "days": n}`, both optional.
    pub filters: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportSchedule {
    pub id: Uuid,
    #[serde(flatten)]
    pub spec: ScheduleSpec,
    /// The role the report is rendered as: its creator's.
    pub role: String,
    pub created_by: Option<Uuid>,
    pub next_run_ms: i64,
    pub last_run_ms: Option<i64>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// One run of a schedule, under the time it was due.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportRun {
    pub schedule_id: Uuid,
    pub due_ms: i64,
    pub ran_at_ms: i64,
    /// Local days `YYYY-MM-DD`, inclusive.
    pub window_from: String,
    pub window_to: String,
    /// `sent` (queued in the outbox) or `failed` (nothing queued).
    pub status: String,
    pub error: Option<String>,
    pub message_ids: Vec<String>,
    pub attachment_name: Option<String>,
    pub attachment_bytes: u64,
}

#[async_trait]
pub trait ReportStore: Send + Sync + 'static {
    async fn create_report_schedule(
        &self,
        tenant: Uuid,
        spec: &ScheduleSpec,
        role: &str,
        created_by: Option<Uuid>,
        next_run_ms: i64,
        now_ms: i64,
    ) -> Result<ReportSchedule, StorageError>;
    async fn list_report_schedules(
        &self,
        tenant: Uuid,
    ) -> Result<Vec<ReportSchedule>, StorageError>;
    async fn report_schedule(
        &self,
        tenant: Uuid,
        id: Uuid,
    ) -> Result<Option<ReportSchedule>, StorageError>;
    /// Replaces the spec, the role and the next time (and drops any lease).
    /// `None` when the tenant has no such schedule.
    async fn update_report_schedule(
        &self,
        tenant: Uuid,
        id: Uuid,
        spec: &ScheduleSpec,
        role: &str,
        next_run_ms: i64,
        now_ms: i64,
    ) -> Result<Option<ReportSchedule>, StorageError>;
    /// False when the tenant has no such schedule. Its runs go with it.
    async fn delete_report_schedule(&self, tenant: Uuid, id: Uuid) -> Result<bool, StorageError>;
    /// Schedules due by `now_ms` across tenants, not leased by another claim;
    /// each is leased until `now_ms + lease_ms`.
    async fn claim_due_reports(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<(Uuid, ReportSchedule)>, StorageError>;
    /// In one transaction: records `run`, queues `mails`, and moves the
    /// schedule from `run.due_ms` to `next_run_ms`. False, with nothing
    /// written, when the schedule is gone, no longer due at `run.due_ms`, or
    /// that run is already recorded.
    async fn finish_report_run(
        &self,
        tenant: Uuid,
        run: &ReportRun,
        next_run_ms: i64,
        mails: &[NewMail],
    ) -> Result<bool, StorageError>;
    /// Newest first; `None` when the tenant has no such schedule.
    async fn list_report_runs(
        &self,
        tenant: Uuid,
        schedule: Uuid,
        limit: u32,
    ) -> Result<Option<Vec<ReportRun>>, StorageError>;
}
