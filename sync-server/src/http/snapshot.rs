//! Device endpoints for kiosks: the tenant's public key
//! (`GET /sync/v1/tenant-key`) and the signed offline snapshot of a yard
//! (`GET /sync/v1/snapshot?yard=…`). Both are signed device requests.

use super::device::authenticate;
use super::error::ApiError;
use super::kiosk::tenant_signing_key;
use crate::storage::kiosk::LabelRecord;
use crate::storage::{now_ms, StorageError};
use crate::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::Json;
use fleet_protocol::label::{KeyId, LabelKind};
use fleet_protocol::snapshot::{
    SignedSnapshot, Snapshot, SnapshotAsset, SnapshotBadge, SnapshotKey, SnapshotReservation,
};
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

/// How long a kiosk may go on using a snapshot with no newer one.
pub const SNAPSHOT_VALID_MS: i64 = 24 * 3600 * 1000;
const MAX_YARD: usize = 64;
pub const DEFAULT_YARD: &str = "default";

pub async fn tenant_key(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let device = authenticate(&state, &method, &uri, &headers, b"").await?;
    let key = tenant_signing_key(&*state.storage, device.tenant_id).await?;
    let public = key.verifying_key();
    Ok(Json(json!({
        "tenant_id": device.tenant_id,
        "public_key": fleet_protocol::auth::encode_public_key(&public),
        "key_id": KeyId::of(&public).to_hex(),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotQuery {
    yard: Option<String>,
}

fn check_yard(yard: Option<&str>) -> Result<String, ApiError> {
    let yard = yard.unwrap_or(DEFAULT_YARD);
    if yard.is_empty()
        || yard.len() > MAX_YARD
        || !yard
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(ApiError::bad_request(
            "bad_yard",
            format!("yard must be 1 to {MAX_YARD} of A-Z a-z 0-9 - _ ."),
        ));
    }
    Ok(yard.to_owned())
}

/// Approved reservations a yard's kiosks honour offline: those of vehicles
/// whose home yard is `yard` (no home yard: `default`) that have not ended and
/// start within the tenant's `snapshot_days`, once per badge of the driver (a
/// driver with no badge cannot be matched at a kiosk, so is left out).
pub async fn reservations_for_snapshot(
    state: &AppState,
    tenant: Uuid,
    yard: &str,
    now_ms: i64,
) -> Result<Vec<SnapshotReservation>, StorageError> {
    let days = state
        .storage
        .reservation_settings(tenant)
        .await?
        .snapshot_days;
    let horizon = now_ms + i64::from(days) * 86_400_000;
    Ok(state
        .storage
        .yard_bookings(tenant, yard, now_ms, horizon)
        .await?
        .into_iter()
        .map(|b| SnapshotReservation {
            id: b.reservation_id,
            vehicle: b.vehicle_id,
            badge: b.badge_id,
            start_ms: b.start_ms,
            end_ms: b.end_ms,
        })
        .collect())
}

/// The snapshot body: policy, labels (assets, keys with slots, badges with
/// revocations, short codes) and reservations.
pub async fn build_snapshot(
    state: &AppState,
    tenant: Uuid,
    yard: &str,
    now_ms: i64,
) -> Result<Snapshot, StorageError> {
    let mut snap = Snapshot::empty(tenant, yard, now_ms, now_ms + SNAPSHOT_VALID_MS);
    snap.policy = state.storage.kiosk_policy(tenant).await?;
    let labels = state.storage.list_labels(tenant).await?;
    fill_labels(&mut snap, &labels);
    let blocked = state.storage.open_unsafe_defects(tenant).await?;
    mark_unsafe(&mut snap, &blocked);
    snap.reservations = reservations_for_snapshot(state, tenant, yard, now_ms).await?;
    Ok(snap)
}

fn fill_labels(snap: &mut Snapshot, labels: &[LabelRecord]) {
    for l in labels {
        let revoked = l.revoked_at_ms.is_some();
        match l.kind {
            LabelKind::Badge => snap.badges.push(SnapshotBadge {
                id: l.id,
                driver_name: l.name.clone(),
                revoked,
            }),
            LabelKind::Key => snap.keys.push(SnapshotKey {
                id: l.id,
                asset: l.asset_id.unwrap_or(Uuid::nil()),
                slot: l.slot.unwrap_or(0),
                revoked,
            }),
            // Defects are marked by `mark_unsafe`; readings are not known to
            // the server yet: the kiosk shows none rather than stale ones.
            LabelKind::Asset | LabelKind::Vehicle => snap.assets.push(SnapshotAsset {
                id: l.id,
                kind: l.kind,
                name: l.name.clone(),
                short_code: l.short_code.clone(),
                unsafe_defect: false,
                odometer_km: None,
                odometer_at_ms: None,
                fuel_pct: None,
                fuel_at_ms: None,
            }),
        }
        if !revoked {
            snap.short_codes.insert(l.short_code.clone(), l.id);
        }
    }
}

/// Flags the assets with an open unsafe defect: kiosks refuse to hand them out.
fn mark_unsafe(snap: &mut Snapshot, blocked: &[(Uuid, String)]) {
    for a in &mut snap.assets {
        a.unsafe_defect = blocked.iter().any(|(id, _)| *id == a.id);
    }
}

pub async fn snapshot(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    super::error::ApiQuery(q): super::error::ApiQuery<SnapshotQuery>,
) -> Result<Json<SignedSnapshot>, ApiError> {
    let device = authenticate(&state, &method, &uri, &headers, b"").await?;
    let yard = check_yard(q.yard.as_deref())?;
    let tenant = device.tenant_id;
    let key = tenant_signing_key(&*state.storage, tenant).await?;
    let snap = build_snapshot(&state, tenant, &yard, now_ms()).await?;
    tracing::debug!(%tenant, device = %device.device_id, yard, badges = snap.badges.len(), assets = snap.assets.len(), "snapshot served");
    Ok(Json(snap.sign(&key)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yards_are_short_plain_names() {
        assert_eq!(check_yard(None).unwrap(), "default");
        assert_eq!(check_yard(Some("north-2")).unwrap(), "north-2");
        assert!(check_yard(Some("")).is_err());
        assert!(check_yard(Some("a/b")).is_err());
        assert!(check_yard(Some(&"y".repeat(65))).is_err());
    }
}
