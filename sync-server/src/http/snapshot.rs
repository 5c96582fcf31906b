//! Device endpoints for kiosks: the tenant's public key
//! (`GET /sync/v1/tenant-key`) and the signed offline snapshot of a yard
//! (`GET /sync/v1/snapshot?yard=…`). Both are signed device requests.

use super::device::authenticate;
use super::error::ApiError;
use super::kiosk::tenant_signing_key;
use crate::storage::inspections::{DefectRecord, Severity};
use crate::storage::kiosk::{GatewayReadings, LabelRecord};
use crate::storage::{now_ms, StorageError};
use crate::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::Json;
use fleet_protocol::label::{KeyId, LabelKind};
use fleet_protocol::snapshot::{
    SignedSnapshot, Snapshot, SnapshotAsset, SnapshotBadge, SnapshotDefect, SnapshotKey,
    SnapshotReservation, MAX_DEFECTS_PER_ASSET,
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
/// revocations, short codes), the gateways' last odometer and fuel readings,
/// open defects and reservations.
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
    fill_readings(&mut snap, &state.storage.gateway_readings(tenant).await?);
    fill_defects(&mut snap, &state.storage.open_defects(tenant, None).await?);
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
            // Readings and defects are filled in by `fill_readings` and `fill_defects`.
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

/// Each asset's gateway readings, as stored; the kiosk decides what is recent.
fn fill_readings(snap: &mut Snapshot, readings: &[GatewayReadings]) {
    for a in &mut snap.assets {
        if let Some(r) = readings.iter().find(|r| r.asset_id == a.id) {
            a.odometer_km = r.odometer_km;
            a.odometer_at_ms = r.odometer_at_ms;
            a.fuel_pct = r.fuel_pct;
            a.fuel_at_ms = r.fuel_at_ms;
        }
    }
}

/// Flags the assets with an open unsafe defect (kiosks refuse to hand them
/// out) and lists each asset's open defects, unsafe ones first, at most
/// [`MAX_DEFECTS_PER_ASSET`] each, texts bounded.
fn fill_defects(snap: &mut Snapshot, open: &[DefectRecord]) {
    let assets: Vec<Uuid> = snap.assets.iter().map(|a| a.id).collect();
    for a in &mut snap.assets {
        a.unsafe_defect = open
            .iter()
            .any(|d| d.asset_id == a.id && d.severity == Severity::Unsafe);
    }
    for id in assets {
        let mut mine: Vec<&DefectRecord> = open.iter().filter(|d| d.asset_id == id).collect();
        // Stable: oldest first within each severity, as stored.
        mine.sort_by_key(|d| d.severity != Severity::Unsafe);
        snap.defects
            .extend(mine.into_iter().take(MAX_DEFECTS_PER_ASSET).map(|d| {
                SnapshotDefect::new(
                    id,
                    d.item.as_deref(),
                    &d.description,
                    d.severity == Severity::Unsafe,
                )
            }));
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

    fn defect(asset: Uuid, n: u128, severity: Severity, text: &str) -> DefectRecord {
        DefectRecord {
            id: Uuid::from_u128(n),
            inspection_id: Uuid::from_u128(1000 + n),
            asset_id: asset,
            item: Some("item".into()),
            description: text.into(),
            severity,
            created_at_ms: n as i64,
            repair: None,
        }
    }

    #[test]
    fn defects_are_listed_unsafe_first_and_bounded_per_asset() {
        let (van, car) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let mut snap = Snapshot::empty(Uuid::nil(), "main", 0, 1);
        for (id, name) in [(van, "Van"), (car, "Car")] {
            fill_labels(
                &mut snap,
                &[LabelRecord {
                    id,
                    kind: LabelKind::Vehicle,
                    name: name.into(),
                    asset_id: None,
                    slot: None,
                    short_code: format!("C{id}"),
                    text: String::new(),
                    expires_at_s: None,
                    created_at_ms: 0,
                    revoked_at_ms: None,
                }],
            );
        }
        let mut open: Vec<DefectRecord> = (0..8)
            .map(|n| defect(van, n, Severity::Safe, &format!("scratch {n}")))
            .collect();
        open.push(defect(
            van,
            9,
            Severity::Unsafe,
            &"brake pedal soft ".repeat(20),
        ));
        open.push(defect(car, 10, Severity::Safe, "mirror loose"));
        fill_defects(&mut snap, &open);
        assert!(snap.asset(van).unwrap().unsafe_defect);
        assert!(
            !snap.asset(car).unwrap().unsafe_defect,
            "a safe defect does not block"
        );
        let vans: Vec<_> = snap.defects_of(van).collect();
        assert_eq!(vans.len(), MAX_DEFECTS_PER_ASSET);
        assert!(vans[0].is_unsafe && vans[0].note.starts_with("brake pedal soft"));
        assert!(vans[0].note.chars().count() <= fleet_protocol::snapshot::MAX_DEFECT_TEXT);
        assert_eq!(vans[1].note, "scratch 0", "then the oldest");
        assert_eq!(
            snap.defects_of(car).next().unwrap().summary(),
            "item: mirror loose"
        );
    }

    #[test]
    fn yards_are_short_plain_names() {
        assert_eq!(check_yard(None).unwrap(), "default");
        assert_eq!(check_yard(Some("north-2")).unwrap(), "north-2");
        assert!(check_yard(Some("")).is_err());
        assert!(check_yard(Some("a/b")).is_err());
        assert!(check_yard(Some(&"y".repeat(65))).is_err());
    }
}
