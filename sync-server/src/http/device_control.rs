//! The device side of the control plane: signed status reports and the config
//! pull (`/sync/v1/status`, `/sync/v1/config`).

use super::device::authenticate;
use super::error::ApiError;
use super::read_body;
use crate::live::{LiveEvent, LiveKind};
use crate::rollout;
use crate::storage::now_ms;
use crate::AppState;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use fleet_protocol::control::{ConfigOffer, DesiredConfig, StatusAck, StatusReport};
use serde_json::json;

const MAX_STATUS_BYTES: usize = 16 << 10;
const MAX_TEXT: usize = 500;

pub async fn status(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<StatusAck>, ApiError> {
    let bytes = read_body(&headers, body, MAX_STATUS_BYTES, "request_too_large").await?;
    let device = authenticate(&state, &method, &uri, &headers, &bytes).await?;
    let report: StatusReport = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request("bad_status", format!("status report is not valid: {e}"))
    })?;
    if report.agent_version.is_empty()
        || report.agent_version.len() > 64
        || report
            .config_error
            .as_ref()
            .is_some_and(|e| e.message.len() > MAX_TEXT)
    {
        return Err(ApiError::bad_request(
            "bad_status",
            format!(
                "agent_version must be 1 to 64 bytes and config_error.message at most {MAX_TEXT}"
            ),
        ));
    }
    let tenant = device.tenant_id;
    let changed = state
        .storage
        .put_status(tenant, device.device_id, &report, now_ms())
        .await?;
    if changed {
        state.live.publish(
            tenant,
            LiveEvent {
                kind: LiveKind::DeviceStatus,
                vehicle: Some(device.device_id),
                data: json!({
                    "agent_version": report.agent_version,
                    "queue_depth": report.queue_depth,
                    "config_version": report.config_version,
                    "config_error": report.config_error,
                    "hardware": report.hardware,
                }),
            },
        );
    }
    if let Some(group) = state.storage.device_group(tenant, device.device_id).await? {
        // A failed check must not fail the report; the periodic check retries.
        if let Err(e) = super::control::check_rollout(&state, tenant, group).await {
            tracing::warn!(%tenant, %group, code = e.code, "rollout check failed: {}", e.message);
        }
    }
    Ok(Json(StatusAck {
        server_time_ms: now_ms(),
    }))
}

pub async fn config(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let device = authenticate(&state, &method, &uri, &headers, &[]).await?;
    let have = match uri.query().and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("have="))
            .map(str::to_owned)
    }) {
        None => 0,
        Some(v) => v.parse::<u32>().map_err(|_| {
            ApiError::bad_request(
                "bad_query",
                "have must be the config version the device runs",
            )
        })?,
    };
    let tenant = device.tenant_id;
    let Some(group) = state.storage.device_group(tenant, device.device_id).await? else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let Some(r) = state.storage.current_rollout(tenant, group).await? else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let version = rollout::offered_version(
        r.version,
        r.previous_version,
        &r.plan,
        &r.state,
        device.device_id,
    );
    if version == 0 || version == have {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let doc = state
        .storage
        .config_document(tenant, group, version)
        .await?
        .ok_or_else(|| {
            crate::storage::StorageError::Corrupt(format!(
                "config version {version} of group {group} is missing"
            ))
        })?;
    let config: DesiredConfig = serde_json::from_value(doc).map_err(|e| {
        crate::storage::StorageError::Corrupt(format!("config version {version}: {e}"))
    })?;
    Ok(Json(ConfigOffer {
        group_id: group,
        version,
        config,
        server_time_ms: now_ms(),
    })
    .into_response())
}
