//! The background sender: claims due messages from the outbox, sends each
//! through its tenant's SMTP server, and records the attempt: sent, retried
//! later with backoff, or dead after the last allowed attempt (or at once on
//! a permanent refusal). Safe on several replicas: claims are leased.

use super::{build, retry_at, send, MailSettings};
use crate::storage::mail::{DueMail, MailOutcome};
use crate::storage::now_ms;
use crate::storage::reservations::SmtpSettings;
use crate::AppState;
use rand::Rng;
use std::collections::hash_map::{Entry, HashMap};
use tokio::sync::watch;
use uuid::Uuid;

/// Messages claimed per pass.
const BATCH: u32 = 50;

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SendReport {
    pub sent: u32,
    pub retried: u32,
    pub dead: u32,
}

impl SendReport {
    pub fn tried(&self) -> u32 {
        self.sent + self.retried + self.dead
    }
}

/// Claims and sends what is due at `now_ms` (one batch).
pub async fn send_due(state: &AppState, settings: &MailSettings, now_ms: i64) -> SendReport {
    let mut report = SendReport::default();
    let lease_ms = i64::try_from(settings.lease.as_millis()).unwrap_or(i64::MAX / 4);
    let due = match state.storage.claim_mail(now_ms, lease_ms, BATCH).await {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the mail outbox");
            return report;
        }
    };
    let mut smtp: HashMap<Uuid, Option<SmtpSettings>> = HashMap::new();
    for d in due {
        let tenant_smtp = match smtp.entry(d.tenant_id) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(v) => match state.storage.reservation_settings(d.tenant_id).await {
                Ok(s) => v.insert(s.smtp),
                Err(e) => {
                    // Left leased: it is due again when the lease ends.
                    tracing::warn!(tenant = %d.tenant_id, error = %e, "cannot read the SMTP settings");
                    continue;
                }
            },
        };
        let outcome = attempt(tenant_smtp.as_ref(), settings, &d, now_ms).await;
        match &outcome {
            MailOutcome::Sent => {
                report.sent += 1;
                tracing::debug!(tenant = %d.tenant_id, message = %d.mail.message_id, "email sent");
            }
            MailOutcome::Failed {
                error,
                retry_at_ms: Some(_),
            } => {
                report.retried += 1;
                tracing::debug!(tenant = %d.tenant_id, message = %d.mail.message_id, attempt = d.attempts + 1, "email attempt failed: {error}");
            }
            MailOutcome::Failed {
                error,
                retry_at_ms: None,
            } => {
                report.dead += 1;
                tracing::warn!(tenant = %d.tenant_id, message = %d.mail.message_id, attempts = d.attempts + 1, "email given up: {error}");
            }
        }
        if let Err(e) = state
            .storage
            .record_mail_attempt(d.tenant_id, &d.mail.message_id, &outcome, now_ms)
            .await
        {
            tracing::warn!(message = %d.mail.message_id, error = %e, "cannot record an email attempt");
        }
    }
    report
}

async fn attempt(
    smtp: Option<&SmtpSettings>,
    settings: &MailSettings,
    d: &DueMail,
    now_ms: i64,
) -> MailOutcome {
    let attempts = d.attempts + 1;
    let failed = |error: String, permanent: bool| MailOutcome::Failed {
        error,
        retry_at_ms: if permanent {
            None
        } else {
            retry_at(
                settings,
                attempts,
                now_ms,
                rand::thread_rng().gen_range(0.5..=1.0),
            )
        },
    };
    let Some(smtp) = smtp else {
        return failed("the tenant has no SMTP server configured".into(), false);
    };
    let message = match build(&smtp.from, &d.mail) {
        Ok(m) => m,
        Err(e) => return failed(e.to_string(), e.is_permanent()),
    };
    match send(smtp, message, settings.smtp_timeout).await {
        Ok(()) => MailOutcome::Sent,
        Err(e) => failed(e.to_string(), e.is_permanent()),
    }
}

/// Sends due mail until the returned sender says stop (or is dropped).
pub fn spawn(state: AppState, settings: MailSettings) -> watch::Sender<bool> {
    let (tx, mut rx) = watch::channel(false);
    tokio::spawn(async move {
        loop {
            let report = send_due(&state, &settings, now_ms()).await;
            if report.tried() >= BATCH {
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(settings.poll) => {}
                changed = rx.changed() => {
                    if changed.is_err() || *rx.borrow() {
                        return;
                    }
                }
            }
        }
    });
    tx
}
