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
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            server_time_ms: None,
            acked_seq: None,
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
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
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
