//! The reservation background task in `serve`: reminders before the start,
//! pick-ups (approved → active) and returns (active → completed) seen through
//! custody, no-show release, and overdue alerts. Each pass is idempotent, and
//! safe on several replicas: every change is a conditional update at the
//! version read, and its notices (webhook events and email) are queued in
//! that update's transaction, so only the replica whose update lands queues
//! them, and a queued notice always belongs to a committed change.

use super::notify::Notice;
use super::schedule::{change_for, decide, Action};
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
        let notice = match action {
            Action::Activate | Action::Complete => None,
            Action::NoShow => Some(Notice::NoShow),
            Action::Remind => Some(Notice::Reminder),
            Action::Overdue => Some(Notice::Overdue),
        };
        // The change is pinned to the version read, so this is the booking as
        // the update leaves it, and its notices go in the update's transaction:
        // only the replica whose update lands queues them.
        let mut next = r.clone();
        change.apply(&mut next);
        let notices =
            crate::http::reservations::notices_for(state, tenant, notice.as_slice(), &next).await?;
        let Write::Done(r) = state
            .storage
            .update_reservation(tenant, r.id, &change, &notices)
            .await?
        else {
            // Another replica (or a request) got there first.
            continue;
        };
        match action {
            Action::Activate => report.activated += 1,
            Action::Complete => report.completed += 1,
            Action::NoShow => report.no_shows += 1,
            Action::Remind => report.reminders += 1,
            Action::Overdue => report.overdue += 1,
        }
        tracing::debug!(%tenant, reservation = %r.id, ?action, "reservation moved on");
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
