//! Rate limits (a token bucket per API key and per device) and request body size
//! limits (one global limit, larger ones for the routes that need them).

use super::error::ApiError;
use crate::AppState;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;
use uuid::Uuid;

/// A bucket that holds up to a minute's worth of requests and refills evenly.
#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    pub fn full(per_min: u32, now: Instant) -> Self {
        Bucket {
            tokens: f64::from(per_min),
            at: now,
        }
    }

    /// Takes one request's token, or says how long until one is there.
    pub fn take(&mut self, per_min: u32, now: Instant) -> Result<(), Duration> {
        let cap = f64::from(per_min.max(1));
        let per_sec = cap / 60.0;
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * per_sec).min(cap);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / per_sec))
        }
    }

    fn is_full(&self, per_min: u32, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens + elapsed * f64::from(per_min) / 60.0 >= f64::from(per_min)
    }
}

/// Buckets by id (an API key or a device), in this replica's memory.
#[derive(Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<Uuid, (Bucket, u32)>>,
}

/// Above this many buckets, full ones are dropped (they would refill anyway).
const PRUNE_ABOVE: usize = 10_000;

impl RateLimiter {
    /// `Err(wait)` when `id` has used up `per_min` requests a minute.
    pub fn check(&self, id: Uuid, per_min: u32) -> Result<(), Duration> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() > PRUNE_ABOVE {
            buckets.retain(|_, (b, rate)| !b.is_full(*rate, now));
        }
        let (bucket, rate) = buckets
            .entry(id)
            .or_insert_with(|| (Bucket::full(per_min, now), per_min));
        *rate = per_min;
        bucket.take(per_min, now)
    }
}

/// The largest body a route takes, and the code a larger one is refused with.
/// Routes that need more than `max_body_bytes` are listed here.
pub fn body_limit_for(path: &str, settings: &crate::Settings) -> (usize, &'static str) {
    if path == fleet_protocol::api::PATH_BATCHES {
        (settings.max_batch_bytes, "batch_too_large")
    } else if path.starts_with("/sync/v1/docs/") {
        (settings.max_doc_message_bytes, "request_too_large")
    } else if path.starts_with("/sync/v1/blobs/") {
        (settings.max_blob_bytes, "blob_too_large")
    } else {
        (settings.max_body_bytes, "body_too_large")
    }
}

fn too_large(limit: usize, code: &'static str) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        code,
        format!("request body is larger than {limit} bytes"),
    )
}

/// Refuses a declared body over the route's limit before reading it, and caps
/// the bytes an undeclared (chunked) body may deliver.
pub async fn body_limit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    use axum::response::IntoResponse;
    let (limit, code) = body_limit_for(req.uri().path(), &state.settings);
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return too_large(limit, code).into_response();
    }
    let (parts, body) = req.into_parts();
    let body = Body::new(http_body_util::Limited::new(body, limit));
    next.run(Request::from_parts(parts, body)).await
}

/// Whether a body read failed because it ran past the limit above.
pub fn is_length_limit(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = err.source();
    }
    false
}

/// Per-device limit on `/sync/v1/*`, called once the device is authenticated.
pub fn check_device_rate(state: &AppState, device: Uuid) -> Result<(), ApiError> {
    let per_min = state.settings.device_rate_per_min;
    state
        .access
        .device_limiter
        .check(device, per_min)
        .map_err(|wait| {
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("a device may make {per_min} requests a minute"),
            )
            .with_retry_after(wait)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_a_minutes_worth_then_refills_evenly() {
        let t0 = Instant::now();
        let mut b = Bucket::full(60, t0);
        for _ in 0..60 {
            assert!(b.take(60, t0).is_ok());
        }
        let wait = b.take(60, t0).unwrap_err();
        assert!(
            (wait.as_secs_f64() - 1.0).abs() < 1e-6,
            "one token a second: {wait:?}"
        );
        assert!(b.take(60, t0 + Duration::from_millis(500)).is_err());
        assert!(b.take(60, t0 + Duration::from_millis(1500)).is_ok());
        assert!(b.take(60, t0 + Duration::from_millis(1500)).is_err());
        // A long pause refills to the cap and no further.
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..60 {
            assert!(b.take(60, later).is_ok());
        }
        assert!(b.take(60, later).is_err());
    }

    #[test]
    fn limiters_keep_one_bucket_per_id() {
        let l = RateLimiter::default();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        assert!(l.check(a, 2).is_ok());
        assert!(l.check(a, 2).is_ok());
        assert!(l.check(a, 2).is_err());
        assert!(l.check(b, 2).is_ok());
    }

    #[test]
    fn the_batch_route_has_its_own_larger_limit() {
        let s = crate::Settings::default();
        assert_eq!(
            body_limit_for("/sync/v1/batches", &s),
            (s.max_batch_bytes, "batch_too_large")
        );
        assert_eq!(
            body_limit_for("/api/v1/users", &s),
            (s.max_body_bytes, "body_too_large")
        );
        assert!(s.max_body_bytes < s.max_batch_bytes);
    }
}
