//! Outbound webhooks: per tenant, for chosen kinds of event (`fault`, `geofence`,
//! `device_offline`, `custody_conflict`), in our JSON or a chat channel's format.
//!
//! An event is written to the durable outbox (`webhook_deliveries`) right after
//! the request that caused it is stored, keyed by an event id so the same event
//! is queued once per webhook however often its batch is resent. A background
//! task ([`worker::run`]) sends due deliveries, signed ([`sign`]), with
//! exponential backoff and jitter up to an attempt cap; every attempt is logged
//! where `/api/v1/webhooks/{id}/deliveries` shows it.

pub mod format;
pub mod sign;
pub mod worker;

use crate::storage::{rfc3339_ms, StorageError};
use crate::AppState;
use serde_json::{json, Value};
use std::net::IpAddr;
use std::time::Duration;
use uuid::Uuid;

pub const KIND_FAULT: &str = "fault";
pub const KIND_GEOFENCE: &str = "geofence";
pub const KIND_DEVICE_OFFLINE: &str = "device_offline";
pub const KIND_CUSTODY_CONFLICT: &str = "custody_conflict";
/// Reservation notices (`event_kind` says which: created, approved, rejected,
/// cancelled, reminder, overdue, no_show).
pub const KIND_RESERVATION: &str = "reservation";
/// A maintenance alert was raised (`http/maintenance.rs`).
pub const KIND_MAINTENANCE_ALERT: &str = "maintenance_alert";
pub const KINDS: &[&str] = &[
    KIND_FAULT,
    KIND_GEOFENCE,
    KIND_DEVICE_OFFLINE,
    KIND_CUSTODY_CONFLICT,
    KIND_RESERVATION,
    KIND_MAINTENANCE_ALERT,
];

/// How deliveries are sent.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Accept loopback, private and link-local targets (tests, closed networks).
    pub allow_private: bool,
    /// The first retry waits about this long; each later one twice as long.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// Attempts before a delivery is given up as `failed`.
    pub max_attempts: u32,
    pub request_timeout: Duration,
    /// How often the outbox is looked at.
    pub poll: Duration,
    /// How often silent devices and rolling configs are checked.
    pub check_every: Duration,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            allow_private: false,
            retry_base: Duration::from_secs(10),
            retry_max: Duration::from_secs(3600),
            max_attempts: 8,
            request_timeout: Duration::from_secs(10),
            poll: Duration::from_secs(2),
            check_every: Duration::from_secs(30),
        }
    }
}

/// Why a webhook URL is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UrlProblem {
    #[error("url is not a valid absolute URL")]
    Invalid,
    #[error("url must be http:// or https://")]
    Scheme,
    #[error("url points at a loopback, private or link-local address; the server refuses those unless started with --allow-private-webhooks")]
    Private,
}

/// Scheme and host of `url`, without resolving names.
pub fn check_url(url: &str, allow_private: bool) -> Result<(), UrlProblem> {
    let (scheme, rest) = url.split_once("://").ok_or(UrlProblem::Invalid)?;
    if !matches!(scheme, "http" | "https") {
        return Err(UrlProblem::Scheme);
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit('@').next().unwrap_or("");
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        host_port.split(':').next().unwrap_or("")
    };
    if host.is_empty() || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(UrlProblem::Invalid);
    }
    if allow_private {
        return Ok(());
    }
    let lower = host.to_ascii_lowercase();
    if lower == "localhost" || lower.ends_with(".localhost") {
        return Err(UrlProblem::Private);
    }
    match host.parse::<IpAddr>() {
        Ok(ip) if is_private(ip) => Err(UrlProblem::Private),
        _ => Ok(()),
    }
}

/// Addresses a webhook must not reach unless allowed: this machine, private
/// networks, link-local (cloud metadata), unspecified.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                // 100.64.0.0/10, carrier-grade NAT.
                || (v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private(IpAddr::V4(v4));
            }
            v6.is_loopback()
                || v6.is_unspecified()
                // fc00::/7 unique local, fe80::/10 link-local.
                || (v6.segments()[0] & 0xfe00) == 0xfc00
                || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

/// The delay before attempt `attempt + 1` after `attempt` failures: `base ·
/// 2^(attempt-1)`, capped at `max`, then scaled by `jitter` in [0.5, 1].
pub fn retry_delay(attempt: u32, base: Duration, max: Duration, jitter: f64) -> Duration {
    let exp = attempt.saturating_sub(1).min(30);
    let full = base.saturating_mul(1u32 << exp).min(max);
    full.mul_f64(jitter.clamp(0.5, 1.0))
}

/// The payload every format is rendered from.
pub fn payload(
    event_id: &str,
    kind: &str,
    event_kind: &str,
    tenant: Uuid,
    device: Option<(Uuid, &str)>,
    occurred_at_ms: i64,
    data: Value,
) -> Value {
    json!({
        "id": event_id,
        "kind": kind,
        "event_kind": event_kind,
        "tenant_id": tenant,
        "device": device.map(|(id, name)| json!({ "id": id, "name": name })),
        "occurred_at": rfc3339_ms(occurred_at_ms),
        "data": data,
    })
}

/// Queues an event for the tenant's webhooks that want `kind`. The custody
/// conflict check calls this with [`KIND_CUSTODY_CONFLICT`]; `event_id` must be
/// stable for one event, so that reporting it twice queues it once.
pub async fn enqueue(
    state: &AppState,
    tenant: Uuid,
    kind: &str,
    event_id: &str,
    payload: &Value,
) -> Result<u32, StorageError> {
    let n = state
        .storage
        .enqueue_webhook_event(tenant, kind, event_id, payload, crate::storage::now_ms())
        .await?;
    if n > 0 {
        tracing::debug!(%tenant, kind, event_id, queued = n, "webhook deliveries queued");
    }
    Ok(n)
}

/// An ingested event some webhook may want.
#[derive(Debug, Clone, PartialEq)]
pub struct Trigger {
    pub seq: u64,
    pub kind: &'static str,
    pub event_kind: String,
    pub wall_ms: i64,
    pub data: Value,
}

/// The events of a batch that webhooks are about: faults (`dtc_set`) and
/// geofence crossings.
pub fn triggers_in(batch: &fleet_protocol::Batch) -> Vec<Trigger> {
    batch
        .events
        .iter()
        .filter_map(|e| {
            let kind = match e.kind.as_str() {
                "dtc_set" => KIND_FAULT,
                "geofence_enter" | "geofence_exit" => KIND_GEOFENCE,
                _ => return None,
            };
            Some(Trigger {
                seq: e.seq,
                kind,
                event_kind: e.kind.as_str().to_owned(),
                wall_ms: e.time.wall_ms,
                data: e.data.to_json(),
            })
        })
        .collect()
}

/// Queues the triggers of a stored batch. Failures are logged, not returned: the
/// batch is stored and acknowledged either way.
pub async fn enqueue_triggers(
    state: &AppState,
    device: &crate::storage::DeviceRecord,
    triggers: Vec<Trigger>,
) {
    for t in triggers {
        let event_id = format!("{}:{}", device.device_id, t.seq);
        let body = payload(
            &event_id,
            t.kind,
            &t.event_kind,
            device.tenant_id,
            Some((device.device_id, &device.name)),
            t.wall_ms,
            t.data,
        );
        if let Err(e) = enqueue(state, device.tenant_id, t.kind, &event_id, &body).await {
            tracing::error!(device = %device.device_id, seq = t.seq, error = %e, "webhook delivery could not be queued");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_http_targets_pass_unless_private_ones_are_allowed() {
        for ok in [
            "https://hooks.slack.com/services/T/B/X",
            "http://example.com:8080/x?y=1",
            "https://[2001:db8::1]/hook",
        ] {
            assert_eq!(check_url(ok, false), Ok(()), "{ok}");
        }
        for private in [
            "http://127.0.0.1:9/x",
            "http://localhost/x",
            "http://10.1.2.3/",
            "http://192.168.0.1/",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]:80/",
            "http://[fd00::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://user@127.0.0.1/",
            "http://100.64.0.1/",
        ] {
            assert_eq!(
                check_url(private, false),
                Err(UrlProblem::Private),
                "{private}"
            );
            assert_eq!(check_url(private, true), Ok(()), "{private}");
        }
        assert_eq!(
            check_url("ftp://example.com", true),
            Err(UrlProblem::Scheme)
        );
        assert_eq!(check_url("example.com/x", true), Err(UrlProblem::Invalid));
        assert_eq!(check_url("http:///x", true), Err(UrlProblem::Invalid));
        assert_eq!(check_url("http://a b/", true), Err(UrlProblem::Invalid));
    }

    #[test]
    fn retries_back_off_exponentially_with_jitter_and_a_cap() {
        let base = Duration::from_secs(10);
        let max = Duration::from_secs(300);
        assert_eq!(retry_delay(1, base, max, 1.0), Duration::from_secs(10));
        assert_eq!(retry_delay(2, base, max, 1.0), Duration::from_secs(20));
        assert_eq!(retry_delay(4, base, max, 1.0), Duration::from_secs(80));
        assert_eq!(retry_delay(9, base, max, 1.0), max);
        assert_eq!(retry_delay(40, base, max, 1.0), max);
        assert_eq!(retry_delay(2, base, max, 0.5), Duration::from_secs(10));
        assert_eq!(retry_delay(2, base, max, 0.0), Duration::from_secs(10));
    }
}
