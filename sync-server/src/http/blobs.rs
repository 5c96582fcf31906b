//! Content-addressed blobs (check-in photos, signatures): resumable uploads from
//! devices and downloads for operators.
//!
//! A device `PUT`s `/sync/v1/blobs/{sha256}?offset=N&total=T` (or sends
//! `Content-Range: bytes N-M/T`) with the bytes from `N`; a cut upload keeps what
//! arrived, `HEAD` answers how much that is (`Upload-Offset`), and the device
//! resumes there. Once `T` bytes are in, the server checks the digest: a match
//! moves the file into place and indexes it for the tenant, a mismatch discards
//! it (422 `blob_digest_mismatch`).
//!
//! The request signature covers the method, path and query but an empty body:
//! the bytes are checked against the digest that names them, and a partial
//! upload can be kept before the whole body is seen.
//!
//! Files live under the blob directory: `<dir>/<tenant>/aa/bb/<sha256>` once
//! complete, `<dir>/<tenant>/partial/<sha256>` while uploading.

use super::auth::{Caller, Capability};
use super::device::authenticate;
use super::error::ApiError;
use crate::storage::kiosk::BlobRecord;
use crate::storage::{now_ms, StorageError};
use crate::AppState;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::path::{Path as FsPath, PathBuf};
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

pub const UPLOAD_OFFSET: &str = "upload-offset";
pub const UPLOAD_COMPLETE: &str = "upload-complete";
const MAX_CONTENT_TYPE: usize = 100;

fn check_digest(raw: &str) -> Result<String, ApiError> {
    if raw.len() == 64 && raw.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(raw.to_ascii_lowercase())
    } else {
        Err(ApiError::bad_request(
            "bad_blob_digest",
            "a blob is named by the 64 hex digits of its SHA-256",
        ))
    }
}

fn path_digest(p: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(raw) = p.map_err(|e| ApiError::bad_request("bad_path", e.body_text()))?;
    check_digest(&raw)
}

fn blob_dir(state: &AppState) -> Result<&FsPath, ApiError> {
    state.settings.blob_dir.as_deref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "blobs_disabled",
            "this server keeps no blobs (no blob directory is configured)",
        )
    })
}

pub fn complete_path(dir: &FsPath, tenant: Uuid, sha: &str) -> PathBuf {
    dir.join(tenant.to_string())
        .join(&sha[..2])
        .join(&sha[2..4])
        .join(sha)
}

fn partial_path(dir: &FsPath, tenant: Uuid, sha: &str) -> PathBuf {
    dir.join(tenant.to_string()).join("partial").join(sha)
}

fn io_err(what: &str, e: std::io::Error) -> ApiError {
    StorageError::Backend(format!("blob {what}: {e}")).into()
}

async fn partial_len(path: &FsPath) -> Result<u64, ApiError> {
    match tokio::fs::metadata(path).await {
        Ok(m) => Ok(m.len()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(io_err("stat", e)),
    }
}

fn offset_headers(offset: u64, complete: bool) -> [(header::HeaderName, HeaderValue); 2] {
    [
        (
            header::HeaderName::from_static(UPLOAD_OFFSET),
            HeaderValue::from(offset),
        ),
        (
            header::HeaderName::from_static(UPLOAD_COMPLETE),
            HeaderValue::from_static(if complete { "?1" } else { "?0" }),
        ),
    ]
}

/// `HEAD /sync/v1/blobs/{sha256}`: how many bytes the server has.
pub async fn head(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    sha: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let sha = path_digest(sha)?;
    let device = authenticate(&state, &method, &uri, &headers, b"").await?;
    let dir = blob_dir(&state)?;
    let tenant = device.tenant_id;
    if let Some(b) = state.storage.blob(tenant, &sha).await? {
        return Ok((StatusCode::OK, offset_headers(b.size, true)).into_response());
    }
    let have = partial_len(&partial_path(dir, tenant, &sha)).await?;
    Ok((StatusCode::OK, offset_headers(have, false)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutQuery {
    offset: Option<u64>,
    total: Option<u64>,
}

/// `bytes N-M/T` (or `bytes N-M/*`): (N, T).
fn parse_content_range(v: &str) -> Option<(u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, end) = range.split_once('-')?;
    let start: u64 = start.trim().parse().ok()?;
    let end: u64 = end.trim().parse().ok()?;
    if end < start {
        return None;
    }
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    Some((start, total))
}

fn sha256_file(path: &FsPath) -> std::io::Result<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// `PUT /sync/v1/blobs/{sha256}`: appends the body at `offset`.
pub async fn put(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    sha: Result<Path<String>, PathRejection>,
    super::error::ApiQuery(q): super::error::ApiQuery<PutQuery>,
    body: Body,
) -> Result<Response, ApiError> {
    let sha = path_digest(sha)?;
    let device = authenticate(&state, &method, &uri, &headers, b"").await?;
    let dir = blob_dir(&state)?.to_owned();
    let tenant = device.tenant_id;
    let cap = state.settings.max_blob_bytes as u64;

    let range = match headers.get(header::CONTENT_RANGE) {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(parse_content_range)
                .ok_or_else(|| {
                    ApiError::bad_request("bad_content_range", "Content-Range must be bytes N-M/T")
                })?,
        ),
        None => None,
    };
    let offset = q.offset.or(range.map(|r| r.0)).unwrap_or(0);
    let total = q.total.or(range.and_then(|r| r.1)).ok_or_else(|| {
        ApiError::bad_request(
            "blob_total_missing",
            "say the blob's whole size: ?total=T or Content-Range: bytes N-M/T",
        )
    })?;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "blob_too_large",
            format!("a blob may be at most {cap} bytes"),
        )
    };
    if total > cap {
        return Err(too_large());
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or("application/octet-stream");
    if content_type.len() > MAX_CONTENT_TYPE || content_type.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "bad_content_type",
            "content type is too long or not printable",
        ));
    }
    let content_type = content_type.to_owned();

    let lock = state.docs.lock_for(tenant, &format!("blob:{sha}"));
    let _guard = lock.lock().await;
    if let Some(b) = state.storage.blob(tenant, &sha).await? {
        let out = json!({ "sha256": b.sha256, "size": b.size, "complete": true });
        return Ok((StatusCode::OK, offset_headers(b.size, true), Json(out)).into_response());
    }
    let partial = partial_path(&dir, tenant, &sha);
    let have = partial_len(&partial).await?;
    if offset != have {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "blob_offset_mismatch",
            format!("the upload resumes at byte {have}, not {offset}"),
        ));
    }
    if let Some(parent) = partial.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| io_err("directory", e))?;
    }
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&partial)
        .await
        .map_err(|e| io_err("open", e))?;
    let mut received = have;
    let mut stream = body.into_data_stream();
    let mut cut = None;
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                cut = Some(e.to_string());
                break;
            }
        };
        if received + chunk.len() as u64 > total {
            drop(file);
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(if received + chunk.len() as u64 > cap {
                too_large()
            } else {
                ApiError::bad_request(
                    "blob_length_mismatch",
                    format!("the body runs past the declared total of {total} bytes"),
                )
            });
        }
        file.write_all(&chunk)
            .await
            .map_err(|e| io_err("write", e))?;
        received += chunk.len() as u64;
    }
    file.sync_data().await.map_err(|e| io_err("sync", e))?;
    drop(file);
    if let Some(reason) = cut {
        tracing::debug!(%tenant, device = %device.device_id, sha, received, "blob upload cut short, kept for resume: {reason}");
        return Err(ApiError::bad_request(
            "body_unreadable",
            format!("upload stopped at byte {received}; resume from there"),
        ));
    }
    if received < total {
        let out = json!({ "sha256": sha, "received": received, "total": total, "complete": false });
        return Ok((
            StatusCode::ACCEPTED,
            offset_headers(received, false),
            Json(out),
        )
            .into_response());
    }

    let check_path = partial.clone();
    let digest = tokio::task::spawn_blocking(move || sha256_file(&check_path))
        .await
        .map_err(|e| StorageError::Backend(format!("digest task failed: {e}")))?
        .map_err(|e| io_err("read", e))?;
    if digest != sha {
        let _ = tokio::fs::remove_file(&partial).await;
        tracing::warn!(%tenant, device = %device.device_id, sha, got = %digest, "blob digest mismatch; upload discarded");
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "blob_digest_mismatch",
            "the uploaded bytes do not have the SHA-256 that names them; the upload was discarded",
        ));
    }
    let done = complete_path(&dir, tenant, &sha);
    if let Some(parent) = done.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| io_err("directory", e))?;
    }
    tokio::fs::rename(&partial, &done)
        .await
        .map_err(|e| io_err("rename", e))?;
    let record = BlobRecord {
        sha256: sha.clone(),
        size: received,
        content_type,
        device_id: Some(device.device_id),
        stored_at_ms: now_ms(),
    };
    state.storage.index_blob(tenant, &record).await?;
    let out = json!({ "sha256": sha, "size": received, "complete": true });
    Ok((
        StatusCode::CREATED,
        offset_headers(received, true),
        Json(out),
    )
        .into_response())
}

/// `GET /api/v1/blobs/{sha256}`: the bytes of one of the tenant's blobs.
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    sha: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    caller.require(Capability::ReadFleet)?;
    let sha = path_digest(sha)?;
    let dir = blob_dir(&state)?;
    let not_found = || ApiError::not_found("blob_not_found", "no such blob");
    let record = state
        .storage
        .blob(caller.tenant, &sha)
        .await?
        .ok_or_else(not_found)?;
    let bytes = match tokio::fs::read(complete_path(dir, caller.tenant, &sha)).await {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::error!(tenant = %caller.tenant, sha, "indexed blob is missing from the blob directory");
            return Err(StorageError::Corrupt(format!("blob {sha} is missing")).into());
        }
        Err(e) => return Err(io_err("read", e)),
    };
    let content_type = HeaderValue::from_str(&record.content_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, max-age=31536000, immutable"),
            ),
        ],
        bytes,
    )
        .into_response())
}

/// The OpenAPI fragment of the operator blob endpoint.
pub fn openapi() -> Value {
    json!({
        "paths": {
            "/api/v1/blobs/{sha256}": {
                "get": {
                    "operationId": "getBlob",
                    "summary": "A photo or signature a kiosk uploaded, by its SHA-256",
                    "x-capability": "read_fleet",
                    "tags": ["kiosk"],
                    "parameters": [{"name": "sha256", "in": "path", "required": true, "schema": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"}}],
                    "responses": {
                        "200": {"description": "the bytes, with the content type they were uploaded with", "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
                        "400": {"description": "bad_blob_digest", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
                        "404": {"description": "blob_not_found", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
                        "503": {"description": "blobs_disabled", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges_give_the_start_and_the_total() {
        assert_eq!(parse_content_range("bytes 0-99/200"), Some((0, Some(200))));
        assert_eq!(parse_content_range("bytes 100-199/*"), Some((100, None)));
        assert_eq!(parse_content_range("bytes 9-1/10"), None);
        assert_eq!(parse_content_range("items 0-1/2"), None);
    }

    #[test]
    fn digests_are_64_hex_digits_in_lower_case() {
        assert_eq!(check_digest(&"AB".repeat(32)).unwrap(), "ab".repeat(32));
        assert!(check_digest("abc").is_err());
        assert!(check_digest(&"zz".repeat(32)).is_err());
        assert!(check_digest(&format!("../{}", "a".repeat(61))).is_err());
    }
}
