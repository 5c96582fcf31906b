//! The reservation background task in `serve`: reminders before the start,
//! pick-ups (approved → active) and returns (active → completed) seen through
//! custody, no-show release, and overdue alerts. Each pass is idempotent, and
//! safe on several replicas: every change is a conditional update at the
//! version read, so only the replica whose update lands sends the notice.
//!
//! Also the email side of notifications: queued in the mail outbox.

use super::notify::{self, Notice};
use super::schedule::{change_for, decide, Action};
use crate::storage::mail::NewMail;
use crate::storage::reservations::{ReservationFilter, Status, Write};
use crate::storage::StorageError;
use crate::AppState;
use std::collections::HashSet;
use std::time::Duration;
use tokio::sync::watch;
use uuid::Uuid;

/// Bookings looked at per tenant, per status, per pass.
const PASS_LIMIT: u32 = 500;

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PassReport {
    pub activated: u32,
    pub completed: u32,
    pub no_shows: u32,
    pub reminders: u32,
    pub overdue: u32,
}

/// One pass over every tenant at `now_ms`.
pub async fn run_once(state: &AppState, now_ms: i64) -> Result<PassReport, StorageError> {
    let mut report = PassReport::default();
    for t in state.storage.list_tenants().await? {
        if let Err(e) = tenant_pass(state, t.tenant_id, now_ms, &mut report).await {
            tracing::warn!(tenant = %t.tenant_id, "reservation pass failed: {e}");
        }
    }
    Ok(report)
}

async fn tenant_pass(
    state: &AppState,
    tenant: Uuid,
    now_ms: i64,
    report: &mut PassReport,
) -> Result<(), StorageError> {
    let settings = state.storage.reservation_settings(tenant).await?;
    let held: HashSet<Uuid> = state
        .storage
        .custody_holders(tenant)
        .await?
        .into_iter()
        .filter(|h| h.holder.is_some())
        .map(|h| h.asset_id)
        .collect();
    let lead_ms = i64::from(settings.reminder_minutes.max(30)) * 60_000;
    let mut candidates = state
        .storage
        .list_reservations(
            tenant,
            &ReservationFilter {
                statuses: vec![Status::Approved],
                to_ms: Some(now_ms + lead_ms + 1),
                limit: PASS_LIMIT,
                ..Default::default()
            },
        )
        .await?;
    candidates.extend(
        state
            .storage
            .list_reservations(
                tenant,
                &ReservationFilter {
                    statuses: vec![Status::Active],
                    limit: PASS_LIMIT,
                    ..Default::default()
                },
            )
            .await?,
    );
    for r in candidates {
        let Some(action) = decide(&r, held.contains(&r.vehicle_id), now_ms, &settings) else {
            continue;
        };
        let change = change_for(action, &r, now_ms, &settings);
        let Write::Done(r) = state
            .storage
            .update_reservation(tenant, r.id, &change)
            .await?
        else {
            // Another replica (or a request) got there first.
            continue;
        };
        let notice = match action {
            Action::Activate => {
                report.activated += 1;
                None
            }
            Action::Complete => {
                report.completed += 1;
                None
            }
            Action::NoShow => {
                report.no_shows += 1;
                Some(Notice::NoShow)
            }
            Action::Remind => {
                report.reminders += 1;
                Some(Notice::Reminder)
            }
            Action::Overdue => {
                report.overdue += 1;
                Some(Notice::Overdue)
            }
        };
        tracing::debug!(%tenant, reservation = %r.id, ?action, "reservation moved on");
        if let Some(n) = notice {
            crate::http::reservations::announce(state, tenant, n, &r).await;
        }
    }
    Ok(())
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
                tracing::warn!("reservation pass failed: {e}");
            }
        }
    });
    tx
}

/// Queues the notice to the driver in the mail outbox when the tenant
/// configured SMTP and the driver has an address; the mail sender
/// (`mail::sender`) delivers it with retries. The message id comes from the
/// notice's event id, so a second replica or a retry queues it once.
pub async fn email(
    state: &AppState,
    tenant: Uuid,
    notice: Notice,
    r: &crate::storage::reservations::Reservation,
    vehicle: &str,
) {
    let settings = match state.storage.reservation_settings(tenant).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(%tenant, "cannot read reservation settings for email: {e}");
            return;
        }
    };
    if settings.smtp.is_none() {
        return;
    }
    let user = match state.storage.user(tenant, r.user_id).await {
        Ok(Some(u)) if !u.disabled => u,
        Ok(_) => return,
        Err(e) => {
            tracing::warn!(%tenant, "cannot read the driver for email: {e}");
            return;
        }
    };
    let (subject, body) = notify::email(notice, r, vehicle, &user.name);
    let mail = NewMail {
        message_id: crate::mail::message_id(&notice.event_id(r)),
        source: "reservation".into(),
        to_addr: user.email,
        to_name: Some(user.name),
        subject,
        body,
        attachment: None,
    };
    if let Err(e) = state
        .storage
        .enqueue_mail(tenant, &[mail], crate::storage::now_ms())
        .await
    {
        tracing::warn!(%tenant, reservation = %r.id, "could not queue the reservation email: {e}");
    }
}
