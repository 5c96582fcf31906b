//! The scheduled-report pass in `serve`: claims due schedules (leased, so two
//! replicas never run one at the same time), renders each report with the
//! same code the analytics endpoints use, as the schedule's owner (so a cost
//! report needs a role that may see costs at run time too), and then, in one
//! transaction, records the run, queues one email per recipient with the
//! report attached in the mail outbox, and moves the schedule on. A missed
//! run (the server was down) runs once, late, and the schedule moves to its
//! next time after now.

use super::schedule::{validate, Cadence};
use crate::http::auth::{Caller, Role};
use crate::http::error::{ApiError, ApiQuery};
use crate::storage::mail::{Attachment, NewMail};
use crate::storage::reports::{ReportRun, ReportSchedule};
use crate::storage::StorageError;
use crate::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::sync::watch;
use uuid::Uuid;

/// Schedules claimed per pass.
const PASS_LIMIT: u32 = 20;
/// How long a claimed schedule is kept from other replicas while it renders.
pub const LEASE_MS: i64 = 10 * 60_000;
/// The largest attachment a run sends.
const MAX_ATTACHMENT: usize = 16 << 20;

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PassReport {
    /// Runs recorded with their emails queued.
    pub sent: u32,
    /// Runs recorded as failed (nothing queued).
    pub failed: u32,
    /// Claimed but already run elsewhere, or changed meanwhile.
    pub skipped: u32,
}

/// One pass at `now_ms`.
pub async fn run_once(state: &AppState, now_ms: i64) -> Result<PassReport, StorageError> {
    let mut report = PassReport::default();
    for (tenant, s) in state
        .storage
        .claim_due_reports(now_ms, LEASE_MS, PASS_LIMIT)
        .await?
    {
        match run_schedule(state, tenant, &s, now_ms).await {
            Ok(Some(true)) => report.sent += 1,
            Ok(Some(false)) => report.failed += 1,
            Ok(None) => report.skipped += 1,
            Err(e) => {
                // Left leased: due again once the lease ends.
                tracing::warn!(%tenant, schedule = %s.id, "scheduled report failed: {e}");
            }
        }
    }
    Ok(report)
}

/// `Some(true)`: sent; `Some(false)`: recorded as failed; `None`: not ours to record.
async fn run_schedule(
    state: &AppState,
    tenant: Uuid,
    s: &ReportSchedule,
    now_ms: i64,
) -> Result<Option<bool>, StorageError> {
    let due = s.next_run_ms;
    let cadence = validate(&s.spec).map_err(|e| StorageError::Corrupt(e.message))?;
    let next = cadence
        .next_after(now_ms.max(due))
        .ok_or_else(|| StorageError::Corrupt("a schedule with no next run".into()))?;
    let (from, to) = cadence.window(due);
    let rendered = render(state, tenant, s, &cadence, due).await?;
    let mut run = ReportRun {
        schedule_id: s.id,
        due_ms: due,
        ran_at_ms: now_ms,
        window_from: from.clone(),
        window_to: to.clone(),
        status: "sent".into(),
        error: None,
        message_ids: Vec::new(),
        attachment_name: None,
        attachment_bytes: 0,
    };
    let mut mails = Vec::new();
    match rendered {
        Ok(a) => {
            run.attachment_name = Some(a.name.clone());
            run.attachment_bytes = a.bytes.len() as u64;
            for (i, to_addr) in s.spec.recipients.iter().enumerate() {
                let m = NewMail {
                    message_id: crate::mail::message_id(&format!("report.{}.{due}.{i}", s.id)),
                    source: "report".into(),
                    to_addr: to_addr.clone(),
                    to_name: None,
                    subject: format!("{} ({from} to {to})", s.spec.name),
                    body: format!(
                        "The scheduled {} report \"{}\" for {from} to {to} is attached.\n",
                        s.spec.kind, s.spec.name
                    ),
                    attachment: Some(a.clone()),
                };
                run.message_ids.push(m.message_id.clone());
                mails.push(m);
            }
        }
        Err(reason) => {
            tracing::warn!(%tenant, schedule = %s.id, "scheduled report not rendered: {reason}");
            run.status = "failed".into();
            run.error = Some(reason);
        }
    }
    let ok = run.status == "sent";
    if state
        .storage
        .finish_report_run(tenant, &run, next, &mails)
        .await?
    {
        Ok(Some(ok))
    } else {
        Ok(None)
    }
}

/// Renders the report as the schedule's owner would get it from the API:
/// the attachment, or why it cannot be made (a refusal, a bad filter).
async fn render(
    state: &AppState,
    tenant: Uuid,
    s: &ReportSchedule,
    cadence: &Cadence,
    due: i64,
) -> Result<Result<Attachment, String>, StorageError> {
    let role = match s.created_by {
        // A user's schedule runs with the user's role now, not at creation.
        Some(user) => match state.storage.user(tenant, user).await? {
            Some(u) if !u.disabled => u.role,
            _ => return Ok(Err("the schedule's owner is disabled or gone".into())),
        },
        None => Role::parse(&s.role).unwrap_or(Role::ReadOnly),
    };
    let features = state
        .storage
        .tenant_info(tenant)
        .await?
        .map(|t| t.settings.features)
        .unwrap_or_default();
    let caller = Caller {
        tenant,
        role,
        key_id: Uuid::nil(),
        user_id: s.created_by,
        session_id: None,
        scopes: None,
        features,
        request_id: format!("report-{}-{due}", s.id),
    };
    let (from, to) = cadence.window(due);
    let mut q = json!({"from": from, "to": to, "format": s.spec.format});
    if let Some(v) = s.spec.filters.get("vehicle") {
        q["vehicle"] = v.clone();
    }
    if s.spec.kind == "idle" {
        // The idle report looks back from today over `days`, not a window.
        q = json!({"format": s.spec.format, "days": s.spec.filters.get("days").cloned().unwrap_or(json!(7))});
    }
    let query = match serde_json::from_value(q) {
        Ok(q) => Ok(ApiQuery(q)),
        Err(e) => return Ok(Err(format!("bad filters: {e}"))),
    };
    use crate::http::analytics as a;
    let st = State(state.clone());
    let answer: Result<Response, ApiError> = match s.spec.kind.as_str() {
        "utilization" => a::utilization(st, caller, query).await,
        "idle" => a::idle(st, caller, query).await,
        "trips" => a::trips(st, caller, query).await,
        "costs" => a::costs(st, caller, query).await,
        "summary" => a::summary(st, caller, query).await,
        k => return Ok(Err(format!("unknown report {k:?}"))),
    };
    let response = answer.unwrap_or_else(IntoResponse::into_response);
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_owned();
    let bytes = axum::body::to_bytes(response.into_body(), MAX_ATTACHMENT)
        .await
        .map_err(|e| StorageError::Backend(format!("reading a rendered report: {e}")))?;
    if status != StatusCode::OK {
        let why = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| status.to_string());
        return Ok(Err(why));
    }
    let (first, last) = cadence.window(due);
    Ok(Ok(Attachment {
        name: format!("{}-{first}-{last}.{}", s.spec.kind, s.spec.format),
        content_type,
        bytes: bytes.to_vec(),
    }))
}

/// Runs a pass every `every` until the returned sender says stop (or is dropped).
pub fn spawn(state: AppState, every: Duration) -> watch::Sender<bool> {
    let (tx, mut rx) = watch::channel(false);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                changed = rx.changed() => {
                    if changed.is_err() || *rx.borrow() {
                        return;
                    }
                }
            }
            if let Err(e) = run_once(&state, crate::storage::now_ms()).await {
                tracing::warn!("scheduled report pass failed: {e}");
            }
        }
    });
    tx
}
