//! The background task: sends due webhook deliveries, notices devices that went
//! silent, and moves rolling configs on when no device report does.

use super::{format, payload, retry_delay, sign, WebhookSettings, KIND_DEVICE_OFFLINE};
use crate::storage::control::{AttemptOutcome, DueDelivery};
use crate::storage::{now_ms, rfc3339_ms};
use crate::AppState;
use rand::Rng;
use tokio::sync::watch;

/// Deliveries sent per pass.
const BATCH: u32 = 50;
/// A device silent for longer than this before the server started is not reported.
const OFFLINE_LOOKBACK_MS: i64 = 7 * 86_400_000;

/// Runs until `shutdown` turns true.
pub async fn run(state: AppState, settings: WebhookSettings, mut shutdown: watch::Receiver<bool>) {
    let client = match reqwest::Client::builder()
        .timeout(settings.request_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("fleet-sync/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "webhook client cannot be built; webhooks will not be sent");
            return;
        }
    };
    let mut next_check = tokio::time::Instant::now();
    loop {
        if *shutdown.borrow() {
            return;
        }
        if tokio::time::Instant::now() >= next_check {
            next_check = tokio::time::Instant::now() + settings.check_every;
            check_silent_devices(&state).await;
            crate::http::control::check_rolling_groups(&state).await;
        }
        let sent = deliver_due(&state, &client, &settings).await;
        if sent < BATCH as usize {
            tokio::select! {
                _ = tokio::time::sleep(settings.poll) => {}
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// Sends what is due; answers how many were tried.
pub async fn deliver_due(
    state: &AppState,
    client: &reqwest::Client,
    settings: &WebhookSettings,
) -> usize {
    let due = match state.storage.due_deliveries(now_ms(), BATCH).await {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the webhook outbox");
            return 0;
        }
    };
    let n = due.len();
    for d in due {
        let outcome = attempt(client, settings, &d).await;
        match &outcome {
            AttemptOutcome::Delivered { status } => {
                tracing::debug!(webhook = %d.webhook_id, event = %d.event_id, status, "webhook delivered")
            }
            AttemptOutcome::Failed {
                error, retry_at_ms, ..
            } => match retry_at_ms {
                Some(_) => {
                    tracing::debug!(webhook = %d.webhook_id, event = %d.event_id, attempt = d.attempts + 1, "webhook attempt failed: {error}")
                }
                None => {
                    tracing::warn!(webhook = %d.webhook_id, event = %d.event_id, attempts = d.attempts + 1, "webhook delivery given up: {error}")
                }
            },
        }
        if let Err(e) = state
            .storage
            .record_attempt(d.tenant_id, d.delivery_id, &outcome, now_ms())
            .await
        {
            tracing::warn!(delivery = %d.delivery_id, error = %e, "cannot record a webhook attempt");
        }
    }
    n
}

async fn attempt(
    client: &reqwest::Client,
    settings: &WebhookSettings,
    d: &DueDelivery,
) -> AttemptOutcome {
    let attempts = d.attempts + 1;
    let failed = |status: Option<u16>, error: String| {
        let retry_at_ms = (attempts < settings.max_attempts).then(|| {
            let jitter = rand::thread_rng().gen_range(0.5..=1.0);
            let delay = retry_delay(attempts, settings.retry_base, settings.retry_max, jitter);
            now_ms() + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 2)
        });
        AttemptOutcome::Failed {
            status,
            error,
            retry_at_ms,
        }
    };
    if let Err(e) = super::check_url(&d.url, settings.allow_private) {
        return failed(None, e.to_string());
    }
    if !settings.allow_private {
        if let Err(e) = resolves_public(&d.url).await {
            return failed(None, e);
        }
    }
    let body = format::render(&d.format, &d.payload).to_string();
    let signature = sign::signature_header(&d.secret, now_ms() / 1000, body.as_bytes());
    let sent = client
        .post(&d.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("X-Fleet-Signature", signature)
        .header("X-Fleet-Event-Id", &d.event_id)
        .header("Idempotency-Key", &d.event_id)
        .header("X-Fleet-Delivery", d.delivery_id.to_string())
        .header("X-Fleet-Attempt", attempts.to_string())
        .body(body)
        .send()
        .await;
    match sent {
        Ok(r) if r.status().is_success() => AttemptOutcome::Delivered {
            status: r.status().as_u16(),
        },
        Ok(r) => failed(
            Some(r.status().as_u16()),
            format!("answered {}", r.status()),
        ),
        Err(e) => failed(None, format!("request failed: {e}")),
    }
}

/// Refuses a host name that resolves to a private address at send time.
async fn resolves_public(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| e.to_string())?;
    let host = parsed.host_str().ok_or("no host")?.to_owned();
    let port = parsed.port_or_known_default().unwrap_or(443);
    let addrs = tokio::net::lookup_host((host.trim_matches(['[', ']']), port))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?;
    for a in addrs {
        if super::is_private(a.ip()) {
            return Err(format!("{host} resolves to a private address"));
        }
    }
    Ok(())
}

/// Queues a `device_offline` delivery for every device that went quiet for
/// longer than the offline threshold, once per silence.
pub async fn check_silent_devices(state: &AppState) {
    let now = now_ms();
    let before = now - state.settings.offline_after_ms;
    let silent = match state
        .storage
        .silent_devices(before - OFFLINE_LOOKBACK_MS, before, 1000)
        .await
    {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot look for silent devices");
            return;
        }
    };
    for d in silent {
        let event_id = format!("offline:{}:{}", d.device_id, d.last_seen_ms);
        let body = payload(
            &event_id,
            KIND_DEVICE_OFFLINE,
            KIND_DEVICE_OFFLINE,
            d.tenant_id,
            Some((d.device_id, &d.name)),
            d.last_seen_ms + state.settings.offline_after_ms,
            serde_json::json!({ "last_seen": rfc3339_ms(d.last_seen_ms) }),
        );
        if let Err(e) =
            super::enqueue(state, d.tenant_id, KIND_DEVICE_OFFLINE, &event_id, &body).await
        {
            tracing::warn!(device = %d.device_id, error = %e, "cannot queue a device-offline webhook");
        }
    }
}

/// Spawns [`run`] for a server, stopping when the returned sender is dropped.
pub fn spawn(state: AppState, settings: WebhookSettings) -> watch::Sender<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(run(state, settings, rx));
    tx
}
