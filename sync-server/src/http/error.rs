//! The one place where domain errors become HTTP answers. Clients get a status,
//! a stable code and a clear message; logs get the detail.

use crate::docs::DocError;
use crate::storage::StorageError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use fleet_protocol::api::{ErrorBody, ErrorDetail};
use fleet_protocol::BatchError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub server_time_ms: Option<i64>,
    pub acked_seq: Option<u64>,
    /// Sent as `Retry-After` (whole seconds, rounded up).
    pub retry_after: Option<std::time::Duration>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            server_time_ms: None,
            acked_seq: None,
            retry_after: None,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn with_server_time(mut self, ms: i64) -> Self {
        self.server_time_ms = Some(ms);
        self
    }

    pub fn with_retry_after(mut self, wait: std::time::Duration) -> Self {
        self.retry_after = Some(wait);
        self
    }

    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let retry_after = self
            .retry_after
            .map(|d| d.as_secs_f64().ceil().max(1.0) as u64);
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
                server_time_ms: self.server_time_ms,
                acked_seq: self.acked_seq,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        response
            .extensions_mut()
            .insert(super::metrics::ErrorCode(self.code));
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        response
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        use StatusCode as S;
        let (status, code) = match &e {
            StorageError::UnknownTenant => (S::NOT_FOUND, "tenant_not_found"),
            StorageError::UnknownDevice => (S::NOT_FOUND, "device_not_found"),
            StorageError::TokenInvalid => (S::UNAUTHORIZED, "enrollment_token_invalid"),
            StorageError::TokenExpired => (S::UNAUTHORIZED, "enrollment_token_expired"),
            StorageError::TokenUsedUp => (S::FORBIDDEN, "enrollment_token_used_up"),
            StorageError::KeyInUse => (S::CONFLICT, "public_key_in_use"),
            StorageError::DeviceRevoked => (S::UNAUTHORIZED, "device_revoked"),
            StorageError::Replayed => (S::UNAUTHORIZED, "replayed_request"),
            StorageError::Invalid(_) => (S::BAD_REQUEST, "invalid_request"),
            StorageError::Unsupported(_) => (S::NOT_IMPLEMENTED, "not_implemented"),
            StorageError::UnknownUser => (S::NOT_FOUND, "user_not_found"),
            StorageError::UnknownKey => (S::NOT_FOUND, "key_not_found"),
            StorageError::Conflict(_) => (S::CONFLICT, "conflict"),
            StorageError::LimitReached { .. } => (S::FORBIDDEN, "limit_reached"),
            StorageError::SchemaTooNew { .. } | StorageError::Closed => {
                (S::SERVICE_UNAVAILABLE, "storage_unavailable")
            }
            StorageError::Corrupt(_) | StorageError::Backend(_) => {
                (S::INTERNAL_SERVER_ERROR, "internal_error")
            }
        };
        if status.is_server_error() {
            tracing::error!(error = %e, "storage failed");
            return ApiError::new(
                status,
                code,
                "the server could not complete the request; it has been logged",
            );
        }
        ApiError::new(status, code, e.to_string())
    }
}

impl From<BatchError> for ApiError {
    fn from(e: BatchError) -> Self {
        let status = if matches!(e, BatchError::TooLarge(_)) {
            StatusCode::PAYLOAD_TOO_LARGE
        } else {
            StatusCode::BAD_REQUEST
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

impl From<DocError> for ApiError {
    fn from(e: DocError) -> Self {
        match e {
            DocError::BadId(_) => ApiError::bad_request("bad_doc_id", e.to_string()),
            DocError::BadMessage(_) => ApiError::bad_request("bad_sync_message", e.to_string()),
            DocError::Corrupt(_) | DocError::Apply(_) => {
                tracing::error!(error = %e, "document operation failed");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    "the server could not complete the request; it has been logged",
                )
            }
        }
    }
}

/// `Json<T>` whose rejections (no JSON content type, bad syntax, wrong shape, too
/// large) come out as [`ApiError`]s.
pub struct ApiJson<T>(pub T);

impl<S, T> axum::extract::FromRequest<S> for ApiJson<T>
where
    axum::Json<T>:
        axum::extract::FromRequest<S, Rejection = axum::extract::rejection::JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        use axum::extract::rejection::JsonRejection as R;
        let (parts, body) = req.into_parts();
        let bytes = axum::body::Bytes::from_request(
            axum::extract::Request::from_parts(parts.clone(), body),
            state,
        )
        .await
        .map_err(|e| match e.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                e.body_text(),
            ),
            _ => ApiError::bad_request("bad_body", e.body_text()),
        })?;
        // Every body is an object: serde would otherwise fill a struct from a
        // JSON array by position, so `[1, 2, 3]` could set three settings.
        let is_object = bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
        let req = axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes));
        match Json::<T>::from_request(req, state).await {
            Ok(Json(_)) if !is_object => Err(ApiError::bad_request(
                "bad_json",
                "the request body must be a JSON object",
            )),
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(R::MissingJsonContentType(e)) => Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                e.body_text(),
            )),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                e.body_text(),
            )),
            Err(e) => Err(ApiError::bad_request("bad_json", e.body_text())),
        }
    }
}

/// `Query<T>` whose rejection is a 400 `bad_query`.
pub struct ApiQuery<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for ApiQuery<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|e| ApiError::bad_request("bad_query", e.body_text()))
    }
}

/// `Path<T>` whose rejection is a 400 `bad_path` (for a UUID: `bad_id`).
pub struct ApiPath<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for ApiPath<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        use axum::extract::rejection::PathRejection as R;
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(p) => Ok(ApiPath(p.0)),
            Err(R::FailedToDeserializePathParams(e)) => {
                Err(ApiError::bad_request("bad_id", e.body_text()))
            }
            Err(e) => Err(ApiError::bad_request("bad_path", e.body_text())),
        }
    }
}

/// The code an error response gets when it was not made by an [`ApiError`].
fn code_for_status(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        406 => "not_acceptable",
        408 => "request_timeout",
        409 => "conflict",
        411 => "length_required",
        413 => "body_too_large",
        415 => "unsupported_media_type",
        422 => "bad_json",
        429 => "rate_limited",
        501 => "not_implemented",
        503 => "unavailable",
        s if s >= 500 => "internal_error",
        _ => "bad_request",
    }
}

/// Rewrites any error response that did not come from an [`ApiError`] (axum's own
/// rejections, a layer's refusal) into the one JSON shape, keeping its status and
/// its `Allow` and `Retry-After` headers.
pub async fn uniform_errors(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let res = next.run(req).await;
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error())
        || res
            .extensions()
            .get::<super::metrics::ErrorCode>()
            .is_some()
    {
        return res;
    }
    let (parts, body) = res.into_parts();
    let text = axum::body::to_bytes(body, 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let message = if text.is_empty() || status.is_server_error() {
        status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_owned()
    } else {
        text
    };
    let mut out = ApiError::new(status, code_for_status(status), message).into_response();
    for name in [axum::http::header::ALLOW, axum::http::header::RETRY_AFTER] {
        if let Some(v) = parts.headers.get(&name) {
            out.headers_mut().insert(name, v.clone());
        }
    }
    out
}
