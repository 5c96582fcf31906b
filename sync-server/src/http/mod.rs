//! Routes: the device API (`/sync/v1/…`), the operator API (`/api/v1/…`),
//! health checks and the dashboard.

pub mod analytics;
pub mod assets;
pub mod audit;
pub mod auth;
pub mod blobs;
pub mod control;
mod dashboard;
mod device;
mod device_control;
pub mod error;
pub mod inspections;
pub mod keys;
pub mod kiosk;
pub mod limits;
pub mod maintenance;
pub mod metrics;
pub mod openapi;
mod operator;
pub mod reports;
pub mod reservations;
pub mod session;
pub mod snapshot;
pub mod stream;
pub mod tenants;
pub mod users;

use crate::AppState;
use axum::body::Body;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::Router;
use error::ApiError;
use fleet_protocol::api;
use futures_util::StreamExt;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(dashboard::page))
        .route("/dashboard/{name}", get(dashboard::asset))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::scrape))
        .route(api::PATH_ENROLL, post(device::enroll))
        .route(api::PATH_TIME, get(device::time))
        .route(api::PATH_BATCHES, post(device::batches))
        .route("/sync/v1/docs/{*rest}", post(device::doc_sync))
        .route(
            fleet_protocol::control::PATH_STATUS,
            post(device_control::status),
        )
        .route(
            fleet_protocol::control::PATH_CONFIG,
            get(device_control::config),
        )
        .route(
            "/api/v1/enrollment-tokens",
            get(control::list_tokens).post(control::create_token),
        )
        .route(
            "/api/v1/enrollment-tokens/{id}",
            delete(control::revoke_token),
        )
        .route("/api/v1/devices/{id}", get(control::device))
        .route("/api/v1/devices/{id}/revoke", post(control::revoke_device))
        .route(
            "/api/v1/device-groups",
            get(control::list_groups).post(control::create_group),
        )
        .route("/api/v1/device-groups/{id}", get(control::get_group))
        .route(
            "/api/v1/device-groups/{id}/devices",
            post(control::assign_devices),
        )
        .route(
            "/api/v1/device-groups/{id}/config",
            post(control::create_config),
        )
        .route(
            "/api/v1/device-groups/{id}/config/{version}",
            get(control::get_config),
        )
        .route(
            "/api/v1/webhooks",
            get(control::list_webhooks).post(control::create_webhook),
        )
        .route("/api/v1/webhooks/{id}", delete(control::delete_webhook))
        .route(
            "/api/v1/webhooks/{id}/deliveries",
            get(control::webhook_deliveries),
        )
        .route("/api/v1/devices", get(operator::devices))
        .route("/api/v1/devices/{id}/events", get(operator::device_events))
        .route("/api/v1/vehicles", get(operator::vehicles))
        .route(
            "/api/v1/vehicles/{id}/note",
            get(operator::get_note).put(operator::put_note),
        )
        .route("/api/v1/quarantine", get(operator::quarantine))
        .route(
            "/api/v1/vehicles/{id}",
            get(operator::vehicle).patch(operator::update_vehicle),
        )
        .route("/api/v1/openapi.json", get(openapi::document))
        .route("/api/v1/me", get(keys::me))
        .route("/api/v1/keys", get(keys::list).post(keys::create))
        .route("/api/v1/keys/{id}", delete(keys::revoke))
        .route(
            "/api/v1/session",
            post(session::login).delete(session::logout),
        )
        .route("/api/v1/users", get(users::list).post(users::create))
        .route(
            "/api/v1/users/{id}/password",
            axum::routing::put(session::set_password),
        )
        .route(
            "/api/v1/users/{id}",
            get(users::get).patch(users::update).delete(users::delete),
        )
        .route("/api/v1/audit", get(audit::query))
        .route("/api/v1/tenants", get(tenants::list).post(tenants::create))
        .route(
            "/api/v1/tenants/{id}",
            axum::routing::patch(tenants::update),
        )
        .route("/api/v1/stream", get(stream::stream))
        .route(
            fleet_protocol::snapshot::PATH_TENANT_KEY,
            get(snapshot::tenant_key),
        )
        .route(
            fleet_protocol::snapshot::PATH_SNAPSHOT,
            get(snapshot::snapshot),
        )
        .route(
            "/sync/v1/blobs/{sha256}",
            axum::routing::put(blobs::put).head(blobs::head),
        )
        .route("/api/v1/blobs/{sha256}", get(blobs::get))
        .route(
            "/api/v1/labels",
            get(kiosk::list_labels).post(kiosk::create_label),
        )
        .route("/api/v1/labels/{id}/revoke", post(kiosk::revoke_label))
        .route(
            "/api/v1/kiosk-policy",
            get(kiosk::get_policy).put(kiosk::put_policy),
        )
        .route("/api/v1/custody", get(kiosk::custody))
        .route(
            "/api/v1/reservations",
            get(reservations::list).post(reservations::create),
        )
        .route(
            "/api/v1/reservations/availability",
            post(reservations::availability),
        )
        .route(
            "/api/v1/reservations/{id}",
            get(reservations::get).patch(reservations::modify),
        )
        .route(
            "/api/v1/reservations/{id}/approve",
            post(reservations::approve),
        )
        .route(
            "/api/v1/reservations/{id}/reject",
            post(reservations::reject),
        )
        .route(
            "/api/v1/reservations/{id}/cancel",
            post(reservations::cancel),
        )
        .route(
            "/api/v1/reservation-settings",
            get(reservations::get_settings).put(reservations::put_settings),
        )
        .route(
            "/api/v1/calendar/tokens",
            post(reservations::create_feed_token),
        )
        .route(
            "/api/v1/calendar/vehicles/{file}",
            get(reservations::vehicle_feed),
        )
        .route(
            "/api/v1/calendar/users/{file}",
            get(reservations::user_feed),
        )
        .route("/api/v1/assets", get(assets::list).post(assets::create))
        .route("/api/v1/assets/export.csv", get(assets::export_csv))
        .route("/api/v1/assets/import", post(assets::import_csv))
        .route("/api/v1/assets/{id}", get(assets::get).put(assets::put))
        .route("/api/v1/assets/{id}/retire", post(assets::retire))
        .route(
            "/api/v1/assets/{id}/meters",
            axum::routing::put(assets::put_meters),
        )
        .route("/api/v1/assets/{id}/qr-code", get(assets::asset_qr))
        .route("/api/v1/badges/{id}/qr-code", get(assets::badge_qr))
        .route(
            "/api/v1/users/{id}/badges",
            get(assets::list_badges).post(assets::issue_badge),
        )
        .route("/api/v1/labels/sheet", post(assets::label_sheet))
        .route("/api/v1/custody/check-out", post(assets::check_out))
        .route("/api/v1/custody/check-in", post(assets::check_in))
        .route("/api/v1/custody/board", get(assets::board))
        .route("/api/v1/vehicles/{id}/overview", get(assets::overview))
        .route("/api/v1/custody/conflicts", get(kiosk::conflicts))
        .route(
            "/api/v1/custody/conflicts/{id}/resolve",
            post(kiosk::resolve_conflict),
        )
        .route(
            "/api/v1/inspections",
            get(inspections::list).post(inspections::submit),
        )
        .route("/api/v1/inspections/{id}", get(inspections::get))
        .route(
            "/api/v1/inspections/forms",
            get(inspections::list_forms).post(inspections::create_form),
        )
        .route(
            "/api/v1/inspections/defects",
            get(inspections::open_defects),
        )
        .route(
            "/api/v1/inspections/defects/{id}/repair",
            post(inspections::repair),
        )
        .route("/api/v1/analytics/utilization", get(analytics::utilization))
        .route("/api/v1/analytics/idle", get(analytics::idle))
        .route("/api/v1/analytics/trips", get(analytics::trips))
        .route("/api/v1/analytics/costs", get(analytics::costs))
        .route("/api/v1/analytics/heatmap", get(analytics::heatmap))
        .route("/api/v1/analytics/summary", get(analytics::summary))
        .route(
            "/api/v1/analytics/settings",
            get(analytics::get_settings).put(analytics::put_settings),
        )
        .route(
            "/api/v1/report-schedules",
            get(reports::list_schedules).post(reports::create_schedule),
        )
        .route(
            "/api/v1/report-schedules/{id}",
            get(reports::get_schedule)
                .put(reports::update_schedule)
                .delete(reports::delete_schedule),
        )
        .route(
            "/api/v1/report-schedules/{id}/runs",
            get(reports::list_runs),
        )
        .route("/api/v1/mail", get(reports::list_mail))
        .route("/api/v1/mail/{message_id}/retry", post(reports::retry_mail))
        .route(
            "/api/v1/maintenance/schedules",
            get(maintenance::list_schedules).post(maintenance::create_schedule),
        )
        .route(
            "/api/v1/maintenance/schedules/{id}",
            delete(maintenance::delete_schedule),
        )
        .route("/api/v1/maintenance/due", get(maintenance::due))
        .route(
            "/api/v1/maintenance/services",
            post(maintenance::record_service),
        )
        .route(
            "/api/v1/maintenance/work-orders",
            get(maintenance::list_work_orders).post(maintenance::create_work_order),
        )
        .route(
            "/api/v1/maintenance/work-orders/{id}",
            get(maintenance::get_work_order).patch(maintenance::update_work_order),
        )
        .route("/api/v1/maintenance/alerts", get(maintenance::list_alerts))
        .route(
            "/api/v1/maintenance/alerts/{id}/acknowledge",
            post(maintenance::acknowledge_alert),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Bodies are limited per route by `limits::body_limit`.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            limits::body_limit,
        ))
        .layer(axum::middleware::from_fn(error::uniform_errors))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .with_state(state)
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> Result<&'static str, ApiError> {
    state.storage.ping().await?;
    Ok("ready")
}

async fn not_found() -> ApiError {
    ApiError::not_found("not_found", "no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not accept that method",
    )
}

/// The UUID in a path segment; a missing segment or a malformed id is a 400
/// with a code that says which.
pub(crate) fn path_uuid(
    p: Result<axum::extract::Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<uuid::Uuid, ApiError> {
    let axum::extract::Path(raw) =
        p.map_err(|e| ApiError::bad_request("bad_path", e.body_text()))?;
    uuid::Uuid::parse_str(&raw)
        .map_err(|_| ApiError::bad_request("bad_id", format!("{raw:?} is not a UUID")))
}

/// The answer to a removal by id: 204, audited as `action` on `target`, when
/// something was removed; `missing` when there was nothing to remove.
pub(crate) async fn audited_removal(
    state: &AppState,
    caller: &auth::Caller,
    removed: bool,
    missing: ApiError,
    action: &str,
    target: String,
) -> Result<StatusCode, ApiError> {
    if !removed {
        return Err(missing);
    }
    state
        .audit(caller, action, target, serde_json::json!({}))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Reads a request body of at most `limit` bytes; larger bodies are refused with
/// 413 and `too_large_code` before they are buffered.
pub(crate) async fn read_body(
    headers: &axum::http::HeaderMap,
    body: Body,
    limit: usize,
    too_large_code: &'static str,
) -> Result<Vec<u8>, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            too_large_code,
            format!("request body is larger than {limit} bytes"),
        )
    };
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut out = Vec::with_capacity(declared.map_or(0, |n| n as usize));
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            if limits::is_length_limit(&e) {
                return too_large();
            }
            ApiError::bad_request(
                "body_unreadable",
                format!("request body could not be read: {e}"),
            )
        })?;
        if out.len() + chunk.len() > limit {
            return Err(too_large());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}
