//! [`AssetStore`] on PostgreSQL; every statement runs in a tenant transaction.

use super::{is_unique_violation, pg, PgStorage, PgTx};
use crate::storage::assets::{
    Asset, AssetFilter, AssetKind, AssetStore, AssetUpsert, ImportCounts, RecordedRequest,
};
use crate::storage::StorageError;
use async_trait::async_trait;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;
use uuid::Uuid;

const ASSET_COLUMNS: &str = "asset_id, kind, name, make, model, vin, plate, vehicle_group, home_yard, department, cost_center, purchase_price_cents, purchase_date, device_id, odometer_km, engine_hours, meter_at_ms, created_at_ms, updated_at_ms, retired_at_ms";

fn asset_row(r: &Row) -> Result<Asset, StorageError> {
    let kind: String = r.get(1);
    Ok(Asset {
        id: r.get(0),
        kind: AssetKind::parse(&kind)
            .ok_or_else(|| StorageError::Corrupt(format!("asset kind {kind}")))?,
        name: r.get(2),
        make: r.get(3),
        model: r.get(4),
        vin: r.get(5),
        plate: r.get(6),
        vehicle_group: r.get(7),
        home_yard: r.get(8),
        department: r.get(9),
        cost_center: r.get(10),
        purchase_price_cents: r.get(11),
        purchase_date: r.get(12),
        device_id: r.get(13),
        odometer_km: r.get(14),
        engine_hours: r.get(15),
        meter_at_ms: r.get(16),
        created_at_ms: r.get(17),
        updated_at_ms: r.get(18),
        retired_at_ms: r.get(19),
    })
}

fn constraint(e: tokio_postgres::Error) -> StorageError {
    if !is_unique_violation(&e) {
        return pg(e);
    }
    let which = e
        .as_db_error()
        .and_then(|d| d.constraint())
        .unwrap_or_default()
        .to_owned();
    StorageError::Conflict(match which.as_str() {
        "assets_by_vin" => "another asset has this VIN".into(),
        "assets_by_device" => "this gateway is fitted to another asset".into(),
        _ => "an asset with this id already exists".into(),
    })
}

async fn asset_by_id(tx: &PgTx, tenant: Uuid, id: Uuid) -> Result<Option<Asset>, StorageError> {
    tx.query_opt(
        &format!("SELECT {ASSET_COLUMNS} FROM assets WHERE tenant_id = $1 AND asset_id = $2"),
        &[&tenant, &id],
    )
    .await
    .map_err(pg)?
    .map(|r| asset_row(&r))
    .transpose()
}

/// Refuses one more live vehicle when the tenant is at `max_vehicles`. The
/// tenant's settings row is locked so two creations can't both take the last
/// place.
async fn check_vehicle_limit(tx: &PgTx, tenant: Uuid, except: Uuid) -> Result<(), StorageError> {
    let max: Option<i64> = tx
        .query_opt(
            "SELECT max_vehicles FROM tenant_settings WHERE tenant_id = $1 FOR UPDATE",
            &[&tenant],
        )
        .await
        .map_err(pg)?
        .and_then(|r| r.get(0));
    let Some(max) = max else { return Ok(()) };
    let live: i64 = tx
        .query_one(
            "SELECT count(*) FROM assets WHERE tenant_id = $1 AND kind = 'vehicle' AND retired_at_ms IS NULL AND asset_id <> $2",
            &[&tenant, &except],
        )
        .await
        .map_err(pg)?
        .get(0);
    if live >= max {
        return Err(StorageError::LimitReached {
            limit: "max_vehicles",
            max: max.max(0) as u64,
        });
    }
    Ok(())
}

async fn insert(tx: &PgTx, tenant: Uuid, a: &Asset) -> Result<(), StorageError> {
    if a.kind == AssetKind::Vehicle && a.retired_at_ms.is_none() {
        check_vehicle_limit(tx, tenant, a.id).await?;
    }
    tx.execute(
        &format!("INSERT INTO assets (tenant_id, {ASSET_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)"),
        &[
            &tenant,
            &a.id,
            &a.kind.as_str(),
            &a.name,
            &a.make,
            &a.model,
            &a.vin,
            &a.plate,
            &a.vehicle_group,
            &a.home_yard,
            &a.department,
            &a.cost_center,
            &a.purchase_price_cents,
            &a.purchase_date,
            &a.device_id,
            &a.odometer_km,
            &a.engine_hours,
            &a.meter_at_ms,
            &a.created_at_ms,
            &a.updated_at_ms,
            &a.retired_at_ms,
        ],
    )
    .await
    .map_err(constraint)?;
    Ok(())
}

async fn update(tx: &PgTx, tenant: Uuid, a: &Asset) -> Result<Option<Asset>, StorageError> {
    let Some(old) = asset_by_id(tx, tenant, a.id).await? else {
        return Ok(None);
    };
    if a.kind == AssetKind::Vehicle && old.retired_at_ms.is_none() && old.kind != AssetKind::Vehicle
    {
        check_vehicle_limit(tx, tenant, a.id).await?;
    }
    tx.execute(
        "UPDATE assets SET kind = $3, name = $4, make = $5, model = $6, vin = $7, plate = $8, vehicle_group = $9, home_yard = $10, department = $11, cost_center = $12, purchase_price_cents = $13, purchase_date = $14, device_id = $15, odometer_km = $16, engine_hours = $17, meter_at_ms = $18, updated_at_ms = $19 WHERE tenant_id = $1 AND asset_id = $2",
        &[
            &tenant,
            &a.id,
            &a.kind.as_str(),
            &a.name,
            &a.make,
            &a.model,
            &a.vin,
            &a.plate,
            &a.vehicle_group,
            &a.home_yard,
            &a.department,
            &a.cost_center,
            &a.purchase_price_cents,
            &a.purchase_date,
            &a.device_id,
            &a.odometer_km,
            &a.engine_hours,
            &a.meter_at_ms,
            &a.updated_at_ms,
        ],
    )
    .await
    .map_err(constraint)?;
    asset_by_id(tx, tenant, a.id).await
}

fn like_pattern(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('%');
    for ch in s.to_lowercase().chars() {
        if matches!(ch, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(ch);
    }
    out.push('%');
    out
}

async fn recorded(
    tx: &PgTx,
    tenant: Uuid,
    key: &str,
) -> Result<Option<RecordedRequest>, StorageError> {
    let row = tx
        .query_opt(
            "SELECT request_sha256, status, response FROM office_custody_requests WHERE tenant_id = $1 AND idempotency_key = $2",
            &[&tenant, &key],
        )
        .await
        .map_err(pg)?;
    row.map(|r| {
        let hash: Vec<u8> = r.get(0);
        let status: i64 = r.get(1);
        Ok(RecordedRequest {
            request_sha256: hash
                .try_into()
                .map_err(|_| StorageError::Corrupt("request digest length".into()))?,
            status: u16::try_from(status)
                .map_err(|_| StorageError::Corrupt(format!("status {status}")))?,
            response: r.get(2),
        })
    })
    .transpose()
}

#[async_trait]
impl AssetStore for PgStorage {
    async fn create_asset(&self, tenant: Uuid, asset: &Asset) -> Result<(), StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        insert(&tx, tenant, asset).await?;
        tx.commit().await
    }

    async fn asset(&self, tenant: Uuid, id: Uuid) -> Result<Option<Asset>, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let out = asset_by_id(&tx, tenant, id).await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn asset_for_device(
        &self,
        tenant: Uuid,
        device: Uuid,
    ) -> Result<Option<Asset>, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let out = tx
            .query_opt(
                &format!(
                    "SELECT {ASSET_COLUMNS} FROM assets WHERE tenant_id = $1 AND device_id = $2"
                ),
                &[&tenant, &device],
            )
            .await
            .map_err(pg)?
            .map(|r| asset_row(&r))
            .transpose()?;
        tx.commit().await?;
        Ok(out)
    }

    async fn list_assets(&self, tenant: Uuid, f: &AssetFilter) -> Result<Vec<Asset>, StorageError> {
        let kind = f.kind.map(|k| k.as_str());
        let q = f.q.as_deref().filter(|q| !q.is_empty()).map(like_pattern);
        let after_name = f.after.as_ref().map(|(n, _)| n.clone());
        let after_id = f.after.as_ref().map(|(_, id)| *id);
        let limit = i64::from(f.limit);
        let args: [&(dyn ToSql + Sync); 8] = [
            &tenant,
            &kind,
            &f.vehicle_group,
            &f.home_yard,
            &q,
            &f.include_retired,
            &after_name,
            &after_id,
        ];
        let mut all: Vec<&(dyn ToSql + Sync)> = args.to_vec();
        all.push(&limit);
        let tx = self.tenant_tx(tenant).await?;
        // Text sorts byte-wise, as on SQLite, so pages follow one order.
        let rows = tx
            .query(
                &format!(
                    "SELECT {ASSET_COLUMNS} FROM assets WHERE tenant_id = $1
                       AND ($2::text IS NULL OR kind = $2)
                       AND ($3::text IS NULL OR vehicle_group = $3)
                       AND ($4::text IS NULL OR home_yard = $4)
                       AND ($5::text IS NULL OR lower(name) LIKE $5 OR lower(coalesce(vin, '')) LIKE $5
                            OR lower(coalesce(plate, '')) LIKE $5 OR lower(coalesce(make, '')) LIKE $5
                            OR lower(coalesce(model, '')) LIKE $5)
                       AND ($6 OR retired_at_ms IS NULL)
                       AND ($7::text IS NULL OR name COLLATE \"C\" > $7 OR (name = $7 AND asset_id > $8))
                     ORDER BY name COLLATE \"C\", asset_id LIMIT $9"
                ),
                &all,
            )
            .await
            .map_err(pg)?;
        tx.commit().await?;
        rows.iter().map(asset_row).collect()
    }

    async fn update_asset(
        &self,
        tenant: Uuid,
        asset: &Asset,
    ) -> Result<Option<Asset>, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let out = update(&tx, tenant, asset).await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn retire_asset(
        &self,
        tenant: Uuid,
        id: Uuid,
        now_ms: i64,
    ) -> Result<Option<Asset>, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        tx.execute(
            "UPDATE assets SET retired_at_ms = $3, updated_at_ms = $3, device_id = NULL WHERE tenant_id = $1 AND asset_id = $2 AND retired_at_ms IS NULL",
            &[&tenant, &id, &now_ms],
        )
        .await
        .map_err(pg)?;
        let out = asset_by_id(&tx, tenant, id).await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn set_meters(
        &self,
        tenant: Uuid,
        id: Uuid,
        odometer_km: Option<f64>,
        engine_hours: Option<f64>,
        at_ms: i64,
    ) -> Result<Option<Asset>, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        tx.execute(
            "UPDATE assets SET odometer_km = coalesce($3, odometer_km), engine_hours = coalesce($4, engine_hours), meter_at_ms = $5, updated_at_ms = greatest(updated_at_ms, $5) WHERE tenant_id = $1 AND asset_id = $2 AND (meter_at_ms IS NULL OR meter_at_ms <= $5)",
            &[&tenant, &id, &odometer_km, &engine_hours, &at_ms],
        )
        .await
        .map_err(pg)?;
        let out = asset_by_id(&tx, tenant, id).await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn import_assets(
        &self,
        tenant: Uuid,
        rows: Vec<AssetUpsert>,
    ) -> Result<ImportCounts, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let mut counts = ImportCounts::default();
        // VINs may move between rows of one file (a swap): clear the updated
        // rows' VINs and gateways first, so only the final state must be unique.
        let ids: Vec<Uuid> = rows.iter().map(|r| r.asset.id).collect();
        tx.execute(
            "UPDATE assets SET vin = NULL, device_id = NULL WHERE tenant_id = $1 AND asset_id = ANY($2)",
            &[&tenant, &ids],
        )
        .await
        .map_err(pg)?;
        for row in &rows {
            if update(&tx, tenant, &row.asset).await?.is_some() {
                counts.updated += 1;
            } else {
                insert(&tx, tenant, &row.asset).await?;
                counts.created += 1;
            }
        }
        tx.commit().await?;
        Ok(counts)
    }

    async fn asset_ids_by_vin(&self, tenant: Uuid) -> Result<Vec<(String, Uuid)>, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let rows = tx
            .query(
                "SELECT vin, asset_id FROM assets WHERE tenant_id = $1 AND vin IS NOT NULL",
                &[&tenant],
            )
            .await
            .map_err(pg)?;
        tx.commit().await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn link_badge(&self, tenant: Uuid, user: Uuid, badge: Uuid) -> Result<(), StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        tx.execute(
            "INSERT INTO user_badges (tenant_id, user_id, badge_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            &[&tenant, &user, &badge],
        )
        .await
        .map_err(pg)?;
        let owner: Uuid = tx
            .query_one(
                "SELECT user_id FROM user_badges WHERE tenant_id = $1 AND badge_id = $2",
                &[&tenant, &badge],
            )
            .await
            .map_err(pg)?
            .get(0);
        if owner != user {
            return Err(StorageError::Conflict(
                "this badge belongs to another user".into(),
            ));
        }
        tx.commit().await
    }

    async fn unlink_badge(
        &self,
        tenant: Uuid,
        user: Uuid,
        badge: Uuid,
    ) -> Result<bool, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let n = tx
            .execute(
                "DELETE FROM user_badges WHERE tenant_id = $1 AND user_id = $2 AND badge_id = $3",
                &[&tenant, &user, &badge],
            )
            .await
            .map_err(pg)?;
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn badge_user(&self, tenant: Uuid, badge: Uuid) -> Result<Option<Uuid>, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let out = tx
            .query_opt(
                "SELECT user_id FROM user_badges WHERE tenant_id = $1 AND badge_id = $2",
                &[&tenant, &badge],
            )
            .await
            .map_err(pg)?
            .map(|r| r.get(0));
        tx.commit().await?;
        Ok(out)
    }

    async fn user_badges(&self, tenant: Uuid) -> Result<Vec<(Uuid, Uuid)>, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let rows = tx
            .query(
                "SELECT user_id, badge_id FROM user_badges WHERE tenant_id = $1 ORDER BY user_id, badge_id",
                &[&tenant],
            )
            .await
            .map_err(pg)?;
        tx.commit().await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn recorded_request(
        &self,
        tenant: Uuid,
        key: &str,
    ) -> Result<Option<RecordedRequest>, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let out = recorded(&tx, tenant, key).await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn record_request(
        &self,
        tenant: Uuid,
        key: &str,
        request: RecordedRequest,
        now_ms: i64,
    ) -> Result<RecordedRequest, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let status = i64::from(request.status);
        let n = tx
            .execute(
                "INSERT INTO office_custody_requests (tenant_id, idempotency_key, request_sha256, status, response, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                &[&tenant, &key, &request.request_sha256.as_slice(), &status, &request.response, &now_ms],
            )
            .await
            .map_err(pg)?;
        let out = if n == 1 {
            request
        } else {
            recorded(&tx, tenant, key)
                .await?
                .ok_or_else(|| StorageError::Backend("idempotency record vanished".into()))?
        };
        tx.commit().await?;
        Ok(out)
    }
}
