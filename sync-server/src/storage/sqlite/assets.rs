//! [`AssetStore`] on SQLite.

use super::conn::backend;
use super::{blob, uuid_at, SqliteStorage};
use crate::storage::assets::{
    Asset, AssetFilter, AssetKind, AssetStore, AssetUpsert, ImportCounts, RecordedRequest,
};
use crate::storage::StorageError;
use async_trait::async_trait;
use rusqlite::types::Value as Sql;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row};
use uuid::Uuid;

const ASSET_COLUMNS: &str = "asset_id, kind, name, make, model, vin, plate, vehicle_group, home_yard, department, cost_center, purchase_price_cents, purchase_date, device_id, odometer_km, engine_hours, meter_at_ms, created_at_ms, updated_at_ms, retired_at_ms";

fn conversion(i: usize, msg: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, msg.into())
}

fn asset_row(r: &Row<'_>) -> rusqlite::Result<Asset> {
    let kind: String = r.get(1)?;
    let device: Option<Vec<u8>> = r.get(13)?;
    Ok(Asset {
        id: uuid_at(r, 0)?,
        kind: AssetKind::parse(&kind).ok_or_else(|| conversion(1, format!("asset kind {kind}")))?,
        name: r.get(2)?,
        make: r.get(3)?,
        model: r.get(4)?,
        vin: r.get(5)?,
        plate: r.get(6)?,
        vehicle_group: r.get(7)?,
        home_yard: r.get(8)?,
        department: r.get(9)?,
        cost_center: r.get(10)?,
        purchase_price_cents: r.get(11)?,
        purchase_date: r.get(12)?,
        device_id: device
            .map(|b| Uuid::from_slice(&b).map_err(|e| conversion(13, e.to_string())))
            .transpose()?,
        odometer_km: r.get(14)?,
        engine_hours: r.get(15)?,
        meter_at_ms: r.get(16)?,
        created_at_ms: r.get(17)?,
        updated_at_ms: r.get(18)?,
        retired_at_ms: r.get(19)?,
    })
}

fn constraint(e: rusqlite::Error) -> StorageError {
    let unique = matches!(
        &e,
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
    );
    if !unique {
        return backend(e);
    }
    let msg = e.to_string();
    StorageError::Conflict(if msg.contains("vin") {
        "another asset has this VIN".into()
    } else if msg.contains("device_id") {
        "this gateway is fitted to another asset".into()
    } else {
        "an asset with this id already exists".into()
    })
}

fn asset_by_id(c: &Connection, tenant: &Uuid, id: &Uuid) -> Result<Option<Asset>, StorageError> {
    c.prepare_cached(&format!(
        "SELECT {ASSET_COLUMNS} FROM assets WHERE tenant_id = ?1 AND asset_id = ?2"
    ))
    .map_err(backend)?
    .query_row(params![blob(tenant), blob(id)], asset_row)
    .optional()
    .map_err(backend)
}

/// Refuses one more live vehicle when the tenant is at `max_vehicles`.
fn check_vehicle_limit(c: &Connection, tenant: &Uuid, except: &Uuid) -> Result<(), StorageError> {
    let max: Option<i64> = c
        .query_row(
            "SELECT max_vehicles FROM tenant_settings WHERE tenant_id = ?1",
            params![blob(tenant)],
            |r| r.get(0),
        )
        .optional()
        .map_err(backend)?
        .flatten();
    let Some(max) = max else { return Ok(()) };
    let live: i64 = c
        .query_row(
            "SELECT count(*) FROM assets WHERE tenant_id = ?1 AND kind = 'vehicle' AND retired_at_ms IS NULL AND asset_id <> ?2",
            params![blob(tenant), blob(except)],
            |r| r.get(0),
        )
        .map_err(backend)?;
    if live >= max {
        return Err(StorageError::LimitReached {
            limit: "max_vehicles",
            max: max.max(0) as u64,
        });
    }
    Ok(())
}

fn insert(c: &Connection, tenant: &Uuid, a: &Asset) -> Result<(), StorageError> {
    if a.kind == AssetKind::Vehicle && a.retired_at_ms.is_none() {
        check_vehicle_limit(c, tenant, &a.id)?;
    }
    c.prepare_cached(&format!(
        "INSERT INTO assets (tenant_id, {ASSET_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)"
    ))
    .map_err(backend)?
    .execute(params![
        blob(tenant),
        blob(&a.id),
        a.kind.as_str(),
        a.name,
        a.make,
        a.model,
        a.vin,
        a.plate,
        a.vehicle_group,
        a.home_yard,
        a.department,
        a.cost_center,
        a.purchase_price_cents,
        a.purchase_date,
        a.device_id.as_ref().map(blob),
        a.odometer_km,
        a.engine_hours,
        a.meter_at_ms,
        a.created_at_ms,
        a.updated_at_ms,
        a.retired_at_ms,
    ])
    .map_err(constraint)?;
    Ok(())
}

/// Replaces the user-set fields and meters; keeps id, creation and retirement.
fn update(c: &Connection, tenant: &Uuid, a: &Asset) -> Result<Option<Asset>, StorageError> {
    let Some(old) = asset_by_id(c, tenant, &a.id)? else {
        return Ok(None);
    };
    if a.kind == AssetKind::Vehicle && old.retired_at_ms.is_none() && old.kind != AssetKind::Vehicle
    {
        check_vehicle_limit(c, tenant, &a.id)?;
    }
    c.prepare_cached(
        "UPDATE assets SET kind = ?3, name = ?4, make = ?5, model = ?6, vin = ?7, plate = ?8, vehicle_group = ?9, home_yard = ?10, department = ?11, cost_center = ?12, purchase_price_cents = ?13, purchase_date = ?14, device_id = ?15, odometer_km = ?16, engine_hours = ?17, meter_at_ms = ?18, updated_at_ms = ?19 WHERE tenant_id = ?1 AND asset_id = ?2",
    )
    .map_err(backend)?
    .execute(params![
        blob(tenant),
        blob(&a.id),
        a.kind.as_str(),
        a.name,
        a.make,
        a.model,
        a.vin,
        a.plate,
        a.vehicle_group,
        a.home_yard,
        a.department,
        a.cost_center,
        a.purchase_price_cents,
        a.purchase_date,
        a.device_id.as_ref().map(blob),
        a.odometer_km,
        a.engine_hours,
        a.meter_at_ms,
        a.updated_at_ms,
    ])
    .map_err(constraint)?;
    asset_by_id(c, tenant, &a.id)
}

fn escape_like(s: &str) -> String {
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

#[async_trait]
impl AssetStore for SqliteStorage {
    async fn create_asset(&self, tenant: Uuid, asset: &Asset) -> Result<(), StorageError> {
        let asset = asset.clone();
        self.pool
            .write(move |c| {
                let tx = c.transaction().map_err(backend)?;
                insert(&tx, &tenant, &asset)?;
                tx.commit().map_err(backend)
            })
            .await
    }

    async fn asset(&self, tenant: Uuid, id: Uuid) -> Result<Option<Asset>, StorageError> {
        self.pool.read(move |c| asset_by_id(c, &tenant, &id)).await
    }

    async fn asset_for_device(
        &self,
        tenant: Uuid,
        device: Uuid,
    ) -> Result<Option<Asset>, StorageError> {
        self.pool
            .read(move |c| {
                c.prepare_cached(&format!(
                    "SELECT {ASSET_COLUMNS} FROM assets WHERE tenant_id = ?1 AND device_id = ?2"
                ))
                .map_err(backend)?
                .query_row(params![blob(&tenant), blob(&device)], asset_row)
                .optional()
                .map_err(backend)
            })
            .await
    }

    async fn list_assets(
        &self,
        tenant: Uuid,
        filter: &AssetFilter,
    ) -> Result<Vec<Asset>, StorageError> {
        let f = filter.clone();
        self.pool
            .read(move |c| {
                let mut sql = format!("SELECT {ASSET_COLUMNS} FROM assets WHERE tenant_id = ?");
                let mut args: Vec<Sql> = vec![Sql::Blob(tenant.as_bytes().to_vec())];
                if let Some(k) = f.kind {
                    sql.push_str(" AND kind = ?");
                    args.push(Sql::Text(k.as_str().into()));
                }
                if let Some(g) = f.vehicle_group {
                    sql.push_str(" AND vehicle_group = ?");
                    args.push(Sql::Text(g));
                }
                if let Some(y) = f.home_yard {
                    sql.push_str(" AND home_yard = ?");
                    args.push(Sql::Text(y));
                }
                if let Some(q) = f.q.filter(|q| !q.is_empty()) {
                    sql.push_str(
                        " AND (lower(name) LIKE ? ESCAPE '\\' OR lower(coalesce(vin, '')) LIKE ? ESCAPE '\\' OR lower(coalesce(plate, '')) LIKE ? ESCAPE '\\' OR lower(coalesce(make, '')) LIKE ? ESCAPE '\\' OR lower(coalesce(model, '')) LIKE ? ESCAPE '\\')",
                    );
                    let pattern = escape_like(&q);
                    for _ in 0..5 {
                        args.push(Sql::Text(pattern.clone()));
                    }
                }
                if !f.include_retired {
                    sql.push_str(" AND retired_at_ms IS NULL");
                }
                if let Some((name, id)) = f.after {
                    sql.push_str(" AND (name > ? OR (name = ? AND asset_id > ?))");
                    args.push(Sql::Text(name.clone()));
                    args.push(Sql::Text(name));
                    args.push(Sql::Blob(id.as_bytes().to_vec()));
                }
                sql.push_str(" ORDER BY name, asset_id LIMIT ?");
                args.push(Sql::Integer(i64::from(f.limit)));
                let mut q = c.prepare(&sql).map_err(backend)?;
                let rows = q
                    .query_map(params_from_iter(args), asset_row)
                    .map_err(backend)?;
                rows.collect::<Result<_, _>>().map_err(backend)
            })
            .await
    }

    async fn update_asset(
        &self,
        tenant: Uuid,
        asset: &Asset,
    ) -> Result<Option<Asset>, StorageError> {
        let asset = asset.clone();
        self.pool
            .write(move |c| {
                let tx = c.transaction().map_err(backend)?;
                let out = update(&tx, &tenant, &asset)?;
                tx.commit().map_err(backend)?;
                Ok(out)
            })
            .await
    }

    async fn retire_asset(
        &self,
        tenant: Uuid,
        id: Uuid,
        now_ms: i64,
    ) -> Result<Option<Asset>, StorageError> {
        self.pool
            .write(move |c| {
                let tx = c.transaction().map_err(backend)?;
                tx.execute(
                    "UPDATE assets SET retired_at_ms = ?3, updated_at_ms = ?3, device_id = NULL WHERE tenant_id = ?1 AND asset_id = ?2 AND retired_at_ms IS NULL",
                    params![blob(&tenant), blob(&id), now_ms],
                )
                .map_err(backend)?;
                let out = asset_by_id(&tx, &tenant, &id)?;
                tx.commit().map_err(backend)?;
                Ok(out)
            })
            .await
    }

    async fn set_meters(
        &self,
        tenant: Uuid,
        id: Uuid,
        odometer_km: Option<f64>,
        engine_hours: Option<f64>,
        at_ms: i64,
    ) -> Result<Option<Asset>, StorageError> {
        self.pool
            .write(move |c| {
                let tx = c.transaction().map_err(backend)?;
                tx.execute(
                    "UPDATE assets SET odometer_km = coalesce(?3, odometer_km), engine_hours = coalesce(?4, engine_hours), meter_at_ms = ?5, updated_at_ms = max(updated_at_ms, ?5) WHERE tenant_id = ?1 AND asset_id = ?2 AND (meter_at_ms IS NULL OR meter_at_ms <= ?5)",
                    params![blob(&tenant), blob(&id), odometer_km, engine_hours, at_ms],
                )
                .map_err(backend)?;
                let out = asset_by_id(&tx, &tenant, &id)?;
                tx.commit().map_err(backend)?;
                Ok(out)
            })
            .await
    }

    async fn import_assets(
        &self,
        tenant: Uuid,
        rows: Vec<AssetUpsert>,
    ) -> Result<ImportCounts, StorageError> {
        self.pool
            .write(move |c| {
                let tx = c.transaction().map_err(backend)?;
                let mut counts = ImportCounts::default();
                // VINs move between rows in one file (a swap): clear the
                // updated rows' VINs and gateways first, so only the final
                // state has to be unique.
                for row in &rows {
                    tx.execute(
                        "UPDATE assets SET vin = NULL, device_id = NULL WHERE tenant_id = ?1 AND asset_id = ?2",
                        params![blob(&tenant), blob(&row.asset.id)],
                    )
                    .map_err(backend)?;
                }
                for row in &rows {
                    if update(&tx, &tenant, &row.asset)?.is_some() {
                        counts.updated += 1;
                    } else {
                        insert(&tx, &tenant, &row.asset)?;
                        counts.created += 1;
                    }
                }
                tx.commit().map_err(backend)?;
                Ok(counts)
            })
            .await
    }

    async fn asset_ids_by_vin(&self, tenant: Uuid) -> Result<Vec<(String, Uuid)>, StorageError> {
        self.pool
            .read(move |c| {
                let mut q = c
                    .prepare(
                        "SELECT vin, asset_id FROM assets WHERE tenant_id = ?1 AND vin IS NOT NULL",
                    )
                    .map_err(backend)?;
                let rows = q
                    .query_map(params![blob(&tenant)], |r| Ok((r.get(0)?, uuid_at(r, 1)?)))
                    .map_err(backend)?;
                rows.collect::<Result<_, _>>().map_err(backend)
            })
            .await
    }

    async fn link_badge(&self, tenant: Uuid, user: Uuid, badge: Uuid) -> Result<(), StorageError> {
        self.pool
            .write(move |c| {
                let tx = c.transaction().map_err(backend)?;
                let owner: Option<Uuid> = tx
                    .query_row(
                        "SELECT user_id FROM user_badges WHERE tenant_id = ?1 AND badge_id = ?2",
                        params![blob(&tenant), blob(&badge)],
                        |r| uuid_at(r, 0),
                    )
                    .optional()
                    .map_err(backend)?;
                match owner {
                    Some(u) if u == user => return Ok(()),
                    Some(_) => {
                        return Err(StorageError::Conflict(
                            "this badge belongs to another user".into(),
                        ))
                    }
                    None => {}
                }
                tx.execute(
                    "INSERT INTO user_badges (tenant_id, user_id, badge_id) VALUES (?1, ?2, ?3)",
                    params![blob(&tenant), blob(&user), blob(&badge)],
                )
                .map_err(backend)?;
                tx.commit().map_err(backend)
            })
            .await
    }

    async fn unlink_badge(
        &self,
        tenant: Uuid,
        user: Uuid,
        badge: Uuid,
    ) -> Result<bool, StorageError> {
        self.pool
            .write(move |c| {
                let n = c
                    .execute(
                        "DELETE FROM user_badges WHERE tenant_id = ?1 AND user_id = ?2 AND badge_id = ?3",
                        params![blob(&tenant), blob(&user), blob(&badge)],
                    )
                    .map_err(backend)?;
                Ok(n > 0)
            })
            .await
    }

    async fn badge_user(&self, tenant: Uuid, badge: Uuid) -> Result<Option<Uuid>, StorageError> {
        self.pool
            .read(move |c| {
                c.query_row(
                    "SELECT user_id FROM user_badges WHERE tenant_id = ?1 AND badge_id = ?2",
                    params![blob(&tenant), blob(&badge)],
                    |r| uuid_at(r, 0),
                )
                .optional()
                .map_err(backend)
            })
            .await
    }

    async fn user_badges(&self, tenant: Uuid) -> Result<Vec<(Uuid, Uuid)>, StorageError> {
        self.pool
            .read(move |c| {
                let mut q = c
                    .prepare("SELECT user_id, badge_id FROM user_badges WHERE tenant_id = ?1 ORDER BY user_id, badge_id")
                    .map_err(backend)?;
                let rows = q
                    .query_map(params![blob(&tenant)], |r| Ok((uuid_at(r, 0)?, uuid_at(r, 1)?)))
                    .map_err(backend)?;
                rows.collect::<Result<_, _>>().map_err(backend)
            })
            .await
    }

    async fn recorded_request(
        &self,
        tenant: Uuid,
        key: &str,
    ) -> Result<Option<RecordedRequest>, StorageError> {
        let key = key.to_owned();
        self.pool.read(move |c| recorded(c, &tenant, &key)).await
    }

    async fn record_request(
        &self,
        tenant: Uuid,
        key: &str,
        request: RecordedRequest,
        now_ms: i64,
    ) -> Result<RecordedRequest, StorageError> {
        let key = key.to_owned();
        self.pool
            .write(move |c| {
                let tx = c.transaction().map_err(backend)?;
                if let Some(first) = recorded(&tx, &tenant, &key)? {
                    return Ok(first);
                }
                tx.execute(
                    "INSERT INTO office_custody_requests (tenant_id, idempotency_key, request_sha256, status, response, created_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        blob(&tenant),
                        key,
                        request.request_sha256.as_slice(),
                        i64::from(request.status),
                        request.response,
                        now_ms
                    ],
                )
                .map_err(backend)?;
                tx.commit().map_err(backend)?;
                Ok(request)
            })
            .await
    }
}

fn recorded(
    c: &Connection,
    tenant: &Uuid,
    key: &str,
) -> Result<Option<RecordedRequest>, StorageError> {
    let row: Option<(Vec<u8>, i64, String)> = c
        .query_row(
            "SELECT request_sha256, status, response FROM office_custody_requests WHERE tenant_id = ?1 AND idempotency_key = ?2",
            params![blob(tenant), key],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .map_err(backend)?;
    row.map(|(hash, status, response)| {
        Ok(RecordedRequest {
            request_sha256: hash
                .try_into()
                .map_err(|_| StorageError::Corrupt("request digest length".into()))?,
            status: u16::try_from(status)
                .map_err(|_| StorageError::Corrupt(format!("status {status}")))?,
            response,
        })
    })
    .transpose()
}
