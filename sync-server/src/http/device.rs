//! The device API: enrollment, time, batches and document sync. Every request but
//! enrollment and time is signed by the device (`fleet_protocol::auth`).

use super::error::ApiError;
use super::read_body;
use crate::docs;
use crate::storage::{now_ms, DeviceRecord, EnrollDevice, StorageError};
use crate::AppState;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use fleet_protocol::api::{self, BatchAck, EnrollRequest, EnrollResponse, TimeResponse};
use fleet_protocol::auth::{self, MAX_SKEW_MS};

const MAX_ENROLL_BYTES: usize = 16 << 10;
const MAX_DEVICE_NAME: usize = 64;

pub async fn time() -> Json<TimeResponse> {
    Json(TimeResponse {
        server_time_ms: now_ms(),
    })
}

pub async fn enroll(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<EnrollResponse>, ApiError> {
    let bytes = read_body(&headers, body, MAX_ENROLL_BYTES, "request_too_large").await?;
    let req: EnrollRequest = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request("bad_json", format!("enrollment request is not valid: {e}"))
    })?;
    let key = auth::decode_public_key(&req.public_key).map_err(|_| {
        ApiError::bad_request(
            "bad_public_key",
            "public_key must be a base64 Ed25519 public key",
        )
    })?;
    let proof = auth::decode_signature(&req.proof).map_err(|_| {
        ApiError::bad_request("bad_proof", "proof must be a base64 Ed25519 signature")
    })?;
    auth::verify(
        &key,
        &auth::enroll_message(&req.token, &req.public_key),
        &proof,
    )
    .map_err(|_| {
        ApiError::unauthorized(
            "bad_proof",
            "proof is not a signature of the enrollment message by this key",
        )
    })?;
    let name = match req.name.as_deref().map(str::trim) {
        Some(n)
            if n.is_empty()
                || n.chars().count() > MAX_DEVICE_NAME
                || n.chars().any(char::is_control) =>
        {
            return Err(ApiError::bad_request(
                "bad_device_name",
                format!("name must be 1 to {MAX_DEVICE_NAME} printable characters"),
            ));
        }
        other => other.map(str::to_owned),
    };
    let now = now_ms();
    let device = state
        .storage
        .enroll_device(EnrollDevice {
            token: req.token,
            // Stored in canonical form so that one key can't enroll twice under two spellings.
            public_key: auth::encode_public_key(&key),
            name,
            agent_version: req.agent_version,
            now_ms: now,
        })
        .await?;
    // Vehicles need no write: the column defaults to vehicle. A retried kiosk
    // enrollment (same key) lands here again and sets the same kind.
    if req.kind != fleet_protocol::api::DeviceKind::Vehicle {
        state
            .storage
            .set_device_kind(device.tenant_id, device.device_id, req.kind)
            .await?;
    }
    tracing::info!(tenant = %device.tenant_id, device = %device.device_id, name = %device.name, kind = req.kind.as_str(), "device enrolled");
    // Kiosks verify labels and snapshots with it; a device that misses it here
    // can fetch it from /sync/v1/tenant-key.
    let tenant_public_key = match super::kiosk::tenant_signing_key(
        &*state.storage,
        device.tenant_id,
    )
    .await
    {
        Ok(key) => Some(auth::encode_public_key(&key.verifying_key())),
        Err(e) => {
            tracing::warn!(tenant = %device.tenant_id, "tenant signing key unavailable at enrollment: {e}");
            None
        }
    };
    Ok(Json(EnrollResponse {
        device_id: device.device_id,
        tenant_id: device.tenant_id,
        name: device.name,
        server_time_ms: now,
        tenant_public_key,
    }))
}

/// Checks a device request's signature, clock and nonce; answers who sent it.
pub(crate) async fn authenticate(
    state: &AppState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<DeviceRecord, ApiError> {
    let value = headers.get(header::AUTHORIZATION).ok_or_else(|| {
        ApiError::unauthorized(
            "missing_authorization",
            "device requests must carry a FleetDevice authorization header",
        )
    })?;
    let value = value.to_str().map_err(|_| {
        ApiError::unauthorized("bad_authorization", "authorization header is not text")
    })?;
    let signed = auth::parse_header(value)
        .map_err(|e| ApiError::unauthorized("bad_authorization", e.to_string()))?;
    let device = state
        .storage
        .device(signed.device_id)
        .await?
        .ok_or_else(|| {
            ApiError::unauthorized("unknown_device", "no device is enrolled with this id")
        })?;
    let key = auth::decode_public_key(&device.public_key)
        .map_err(|_| StorageError::Corrupt(format!("public key of device {}", device.device_id)))?;
    let path = uri.path_and_query().map_or(uri.path(), |pq| pq.as_str());
    let message = auth::signing_message(method.as_str(), path, signed.ts_ms, &signed.nonce, body);
    auth::verify(&key, &message, &signed.signature).map_err(|_| {
        ApiError::unauthorized("bad_signature", "request signature does not verify")
    })?;
    if device.revoked {
        return Err(StorageError::DeviceRevoked.into());
    }
    super::limits::check_device_rate(state, device.device_id)?;
    state.metrics.device_seen(device.device_id);
    let now = now_ms();
    if signed.ts_ms.saturating_sub(now).saturating_abs() > MAX_SKEW_MS {
        return Err(ApiError::unauthorized(
            "clock_skew",
            format!("request time is more than {MAX_SKEW_MS} ms from the server's clock"),
        )
        .with_server_time(now));
    }
    // Nonces are kept while their timestamp could still pass the skew check.
    state
        .storage
        .accept_nonce(
            &device,
            &signed.nonce,
            signed.ts_ms,
            now,
            now - MAX_SKEW_MS - 1,
        )
        .await?;
    Ok(device)
}

pub async fn batches(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<BatchAck>, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type.split(';').next().map(str::trim) != Some(api::CONTENT_TYPE_BATCH) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("batches must be sent as {}", api::CONTENT_TYPE_BATCH),
        ));
    }
    let bytes = read_body(
        &headers,
        body,
        state.settings.max_batch_bytes,
        "batch_too_large",
    )
    .await?;
    let device = authenticate(&state, &method, &uri, &headers, &bytes).await?;
    let batch = tokio::task::spawn_blocking(move || fleet_protocol::decode_batch(&bytes))
        .await
        .map_err(|e| StorageError::Backend(format!("decode task failed: {e}")))?
        .inspect_err(
            |e| tracing::warn!(device = %device.device_id, code = e.code(), "batch refused: {e}"),
        )?;
    let h = &batch.header;
    if h.tenant_id != device.tenant_id || h.device_id != device.device_id {
        tracing::warn!(device = %device.device_id, header_tenant = %h.tenant_id, header_device = %h.device_id, "batch names another device");
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "tenant_mismatch",
            "the batch header names a tenant or device other than the signer",
        ));
    }
    if h.last_seq > i64::MAX as u64 {
        return Err(ApiError::bad_request(
            "batch_malformed",
            "sequence numbers above 2^63-1 are not accepted",
        ));
    }
    let (first, last) = (h.first_seq, h.last_seq);
    let triggers = crate::webhooks::triggers_in(&batch);
    let received_ms = now_ms();
    let live = crate::live::ingest::live_events(&batch, received_ms);
    let inspections = super::inspections::inspections_in(device.device_id, &batch, received_ms);
    let out = state
        .storage
        .ingest_batch(&device, batch, received_ms)
        .await?;
    // After the commit, never waiting: a resend stores nothing and announces nothing.
    if out.stored > 0 {
        for e in live {
            state
                .live
                .publish_at(device.tenant_id, e.event, e.at_ms, Some(e.source));
        }
    }
    crate::webhooks::enqueue_triggers(&state, &device, triggers).await;
    super::inspections::record_from_device(&state, &device, inspections).await;
    state.metrics.batch(
        out.stored.into(),
        out.duplicates.into(),
        out.quarantined.into(),
    );
    tracing::debug!(device = %device.device_id, first, last, stored = out.stored, duplicates = out.duplicates, quarantined = out.quarantined, acked = out.acked_seq, "batch stored");
    Ok(Json(BatchAck {
        acked_seq: out.acked_seq,
        server_time_ms: now_ms(),
        stored: out.stored,
        duplicates: out.duplicates,
        quarantined: out.quarantined,
    }))
}

pub async fn doc_sync(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let rest = uri.path().strip_prefix(api::PATH_DOCS_PREFIX).unwrap_or("");
    let Some(doc_id) = rest.strip_suffix("/sync") else {
        return Err(ApiError::not_found(
            "not_found",
            "document endpoints end in /sync",
        ));
    };
    let doc_id = percent_decode(doc_id).ok_or_else(|| {
        ApiError::bad_request("bad_doc_id", "doc id is not valid percent-encoded UTF-8")
    })?;
    docs::validate_doc_id(&doc_id)?;
    let bytes = read_body(
        &headers,
        body,
        state.settings.max_doc_message_bytes,
        "request_too_large",
    )
    .await?;
    let device = authenticate(&state, &method, &uri, &headers, &bytes).await?;
    let tenant = device.tenant_id;

    let lock = state.docs.lock_for(tenant, &doc_id);
    let _guard = lock.lock().await;
    let stored = state.storage.load_doc(tenant, &doc_id).await?;
    let mut sync_state = match state.docs.take_state(tenant, &doc_id, device.device_id) {
        Some(s) => s,
        None => match state.storage.doc_sync_state(tenant, &doc_id, device.device_id).await? {
            Some(b) => automerge::sync::State::decode(&b).unwrap_or_else(|e| {
                tracing::warn!(device = %device.device_id, doc = %doc_id, "stored sync state does not decode, starting afresh: {e}");
                automerge::sync::State::new()
            }),
            None => automerge::sync::State::new(),
        },
    };
    let message = (!bytes.is_empty()).then_some(bytes);
    let round = tokio::task::spawn_blocking(move || {
        let r = docs::sync_round(
            stored.as_ref().map(|d| d.bytes.as_slice()),
            stored.as_ref().map_or(0, |d| d.chunks),
            &mut sync_state,
            message.as_deref(),
        );
        (r, sync_state)
    })
    .await
    .map_err(|e| StorageError::Backend(format!("sync task failed: {e}")))?;
    let (round, sync_state) = round;
    let round = round?;
    let encoded = sync_state.encode();
    let changed = round.write.is_some();
    state
        .storage
        .save_doc(
            tenant,
            &doc_id,
            round.write,
            Some((device.device_id, encoded)),
            now_ms(),
        )
        .await?;
    state
        .docs
        .put_state(tenant, &doc_id, device.device_id, sync_state);
    if changed {
        // Still under the document's lock, so merges are folded in order.
        crate::custody::after_merge(&state, tenant, &doc_id).await?;
    }
    Ok(match round.reply {
        Some(reply) => (
            [(header::CONTENT_TYPE, api::CONTENT_TYPE_AUTOMERGE_SYNC)],
            reply,
        )
            .into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    })
}

/// Decodes `%XX` escapes (a device may send the `/` inside a doc id as `%2F`).
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn escaped_slashes_in_doc_ids_decode() {
        assert_eq!(
            percent_decode("vehicle-note%2Fabc").as_deref(),
            Some("vehicle-note/abc")
        );
        assert_eq!(percent_decode("plain/id").as_deref(), Some("plain/id"));
        assert_eq!(percent_decode("bad%zz"), None);
        assert_eq!(percent_decode("cut%2"), None);
    }
}
