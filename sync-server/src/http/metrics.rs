//! `/metrics`: Prometheus text for the operator, behind a bearer token of its
//! own (`--metrics-token` / `FLEET_METRICS_TOKEN`).
//!
//! Why a token and not an open page: the server faces the internet (devices
//! reach it over cellular), and the page shows traffic and device counts across
//! all tenants, which no tenant's API key may see. A token on the same listener
//! needs no second port opened through the firewall; Prometheus sends it with
//! `authorization: { credentials_file: … }`. Without a token set the page is
//! off (404).

use super::error::ApiError;
use crate::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use fleet_protocol::prometheus::{MetricType, Page, CONTENT_TYPE};
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use uuid::Uuid;

pub const REQUESTS: &str = "fleet_sync_http_requests_total";
pub const REJECTS: &str = "fleet_sync_rejects_total";
pub const BATCHES: &str = "fleet_sync_batches_ingested_total";
pub const EVENTS: &str = "fleet_sync_events_ingested_total";
pub const DUPLICATES: &str = "fleet_sync_duplicate_events_total";
pub const QUARANTINED: &str = "fleet_sync_quarantined_events_total";
pub const DEVICES_SEEN: &str = "fleet_sync_devices_seen";

/// The stable error code of an answer, put on the response by
/// [`ApiError`]'s `IntoResponse` so [`track`] can count rejects by code.
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);

/// Counters since the process started.
#[derive(Debug, Default)]
pub struct ServerMetrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    rejects: Mutex<BTreeMap<&'static str, u64>>,
    batches: AtomicU64,
    events: AtomicU64,
    duplicates: AtomicU64,
    quarantined: AtomicU64,
    devices: Mutex<HashSet<Uuid>>,
}

impl ServerMetrics {
    pub fn request(&self, route: &str, status: u16) {
        let mut m = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry((route.to_owned(), status)).or_default() += 1;
    }

    pub fn reject(&self, code: &'static str) {
        let mut m = self.rejects.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry(code).or_default() += 1;
    }

    /// A batch stored: events new to the server, resent ones, set-aside ones.
    pub fn batch(&self, stored: u64, duplicates: u64, quarantined: u64) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.events.fetch_add(stored, Ordering::Relaxed);
        self.duplicates.fetch_add(duplicates, Ordering::Relaxed);
        self.quarantined.fetch_add(quarantined, Ordering::Relaxed);
    }

    /// A device made an authenticated request.
    pub fn device_seen(&self, device: Uuid) {
        self.devices
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(device);
    }

    /// The page. Pure apart from reading the counters.
    pub fn render(&self) -> String {
        use MetricType::{Counter, Gauge};
        let mut p = Page::new();
        let requests = self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let labels: Vec<(String, String, u64)> = requests
            .into_iter()
            .map(|((route, status), n)| (route, status.to_string(), n))
            .collect();
        let series: Vec<[(&str, &str); 2]> = labels
            .iter()
            .map(|(r, s, _)| [("route", r.as_str()), ("status", s.as_str())])
            .collect();
        p.family(
            REQUESTS,
            Counter,
            "HTTP requests by route and status.",
            series
                .iter()
                .zip(&labels)
                .map(|(l, (_, _, n))| (&l[..], *n as f64)),
        );
        let rejects = self
            .rejects
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let codes: Vec<[(&str, &str); 1]> = rejects.keys().map(|c| [("code", *c)]).collect();
        p.family(
            REJECTS,
            Counter,
            "Requests refused, by error code.",
            codes
                .iter()
                .zip(rejects.values())
                .map(|(l, n)| (&l[..], *n as f64)),
        );
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
        p.single(BATCHES, Counter, "Batches ingested.", get(&self.batches));
        p.single(
            EVENTS,
            Counter,
            "Events stored for the first time.",
            get(&self.events),
        );
        p.single(
            DUPLICATES,
            Counter,
            "Events received again and deduplicated.",
            get(&self.duplicates),
        );
        p.single(
            QUARANTINED,
            Counter,
            "Events set aside because a resend differed.",
            get(&self.quarantined),
        );
        let devices = self.devices.lock().unwrap_or_else(|e| e.into_inner()).len();
        p.single(
            DEVICES_SEEN,
            Gauge,
            "Distinct devices that made an authenticated request since the server started.",
            devices as f64,
        );
        p.finish()
    }
}

/// Counts every request by its route pattern (never the raw path, so ids don't
/// explode the label set) and status, and refusals by code.
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let response = next.run(req).await;
    state.metrics.request(&route, response.status().as_u16());
    if let Some(ErrorCode(code)) = response.extensions().get::<ErrorCode>() {
        state.metrics.reject(code);
    }
    response
}

pub async fn scrape(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Some(expected) = state.settings.metrics_token.as_deref() else {
        return Err(ApiError::not_found(
            "metrics_disabled",
            "metrics are off: start fleet-sync with --metrics-token or FLEET_METRICS_TOKEN",
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !constant_time_eq(given.as_bytes(), expected.as_bytes()) {
        return Err(ApiError::unauthorized(
            "metrics_unauthorized",
            "metrics need Authorization: Bearer <metrics token>",
        ));
    }
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        state.metrics.render(),
    )
        .into_response())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleet_protocol::prometheus::parse;

    #[test]
    fn the_page_counts_routes_rejects_batches_and_devices() {
        let m = ServerMetrics::default();
        m.request("/sync/v1/batches", 200);
        m.request("/sync/v1/batches", 200);
        m.request("/sync/v1/batches", 401);
        m.reject("clock_skew");
        m.batch(10, 2, 1);
        let d = Uuid::new_v4();
        m.device_seen(d);
        m.device_seen(d);
        let samples = parse(&m.render()).expect("parses");
        let find = |name: &str, label: Option<(&str, &str)>| {
            samples
                .iter()
                .find(|s| s.name == name && label.is_none_or(|(k, v)| s.label(k) == Some(v)))
                .map(|s| s.value)
        };
        assert_eq!(find(REQUESTS, Some(("status", "200"))), Some(2.0));
        assert_eq!(find(REQUESTS, Some(("status", "401"))), Some(1.0));
        assert_eq!(find(REJECTS, Some(("code", "clock_skew"))), Some(1.0));
        assert_eq!(find(EVENTS, None), Some(10.0));
        assert_eq!(find(DUPLICATES, None), Some(2.0));
        assert_eq!(find(DEVICES_SEEN, None), Some(1.0));
    }

    async fn get(app: &axum::Router, path: &str, bearer: Option<&str>) -> (u16, String) {
        use tower::ServiceExt;
        let mut req = axum::http::Request::get(path);
        if let Some(t) = bearer {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let resp = app
            .clone()
            .oneshot(req.body(axum::body::Body::empty()).expect("request"))
            .await
            .expect("answer");
        let status = resp.status().as_u16();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .expect("body");
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn metrics_are_off_without_a_token_and_need_it_when_set() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = crate::open_sqlite(dir.path()).await.expect("storage");
        let off = crate::router(AppState::new(storage.clone()));
        let (status, body) = get(&off, "/metrics", None).await;
        assert_eq!(status, 404);
        assert!(body.contains("metrics_disabled"), "{body}");

        let app = crate::router(AppState::new(storage).with_settings(crate::Settings {
            metrics_token: Some("s3cret".into()),
            ..crate::Settings::default()
        }));
        assert_eq!(get(&app, "/metrics", None).await.0, 401);
        assert_eq!(get(&app, "/metrics", Some("wrong")).await.0, 401);
        assert_eq!(get(&app, "/healthz", None).await.0, 200);
        assert_eq!(get(&app, "/api/v1/devices", None).await.0, 401);
        let (status, page) = get(&app, "/metrics", Some("s3cret")).await;
        assert_eq!(status, 200, "{page}");
        let samples = parse(&page).expect("a valid page");
        let value = |name: &str, k: &str, v: &str| {
            samples
                .iter()
                .find(|s| s.name == name && s.label(k) == Some(v))
                .map(|s| s.value)
        };
        assert_eq!(value(REQUESTS, "route", "/healthz"), Some(1.0), "{page}");
        assert_eq!(
            value(REJECTS, "code", "metrics_unauthorized"),
            Some(2.0),
            "{page}"
        );
        assert!(
            samples.iter().any(|s| s.name == REQUESTS
                && s.label("route") == Some("/api/v1/devices")
                && s.label("status") == Some("401")),
            "{page}"
        );
    }

    #[test]
    fn token_comparison_needs_the_whole_token() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"ab", b"abc"));
    }
}
