//! [`InspectionStore`] on PostgreSQL; every statement runs in a tenant transaction.

use super::{is_unique_violation, pg, PgStorage, PgTx};
use crate::storage::inspections::{
    DefectRecord, DefectRepair, FormItem, InspectionForm, InspectionRecord, InspectionSource,
    InspectionStore, ItemResult, Severity,
};
use crate::storage::StorageError;
use async_trait::async_trait;
use tokio_postgres::Row;
use uuid::Uuid;

fn corrupt(what: &str, e: impl std::fmt::Display) -> StorageError {
    StorageError::Corrupt(format!("{what}: {e}"))
}

const FORM_COLUMNS: &str = "form_id, vehicle_type, name, items, created_at_ms";

fn form_row(r: &Row) -> Result<InspectionForm, StorageError> {
    let items: String = r.get(3);
    Ok(InspectionForm {
        id: r.get(0),
        vehicle_type: r.get(1),
        name: r.get(2),
        items: serde_json::from_str::<Vec<FormItem>>(&items)
            .map_err(|e| corrupt("form items", e))?,
        created_at_ms: r.get(4),
    })
}

const INSPECTION_COLUMNS: &str = "inspection_id, asset_id, form_id, source, device_id, driver, signature_sha256, odometer_km, notes, results, inspected_at_ms, created_at_ms";

fn inspection_row(r: &Row) -> Result<InspectionRecord, StorageError> {
    let source: String = r.get(3);
    let results: String = r.get(9);
    Ok(InspectionRecord {
        id: r.get(0),
        asset_id: r.get(1),
        form_id: r.get(2),
        source: InspectionSource::parse(&source)
            .ok_or_else(|| corrupt("inspection source", &source))?,
        device_id: r.get(4),
        driver: r.get(5),
        signature_sha256: r.get(6),
        odometer_km: r.get(7),
        notes: r.get(8),
        results: serde_json::from_str::<Vec<ItemResult>>(&results)
            .map_err(|e| corrupt("inspection results", e))?,
        inspected_at_ms: r.get(10),
        created_at_ms: r.get(11),
        defects: Vec::new(),
    })
}

const DEFECT_COLUMNS: &str = "defect_id, inspection_id, asset_id, item, description, severity, created_at_ms, repaired_at_ms, mechanic, repair_note, repair_signature_sha256";

fn defect_row(r: &Row) -> Result<DefectRecord, StorageError> {
    let severity: String = r.get(5);
    let repaired_at_ms: Option<i64> = r.get(7);
    Ok(DefectRecord {
        id: r.get(0),
        inspection_id: r.get(1),
        asset_id: r.get(2),
        item: r.get(3),
        description: r.get(4),
        severity: Severity::parse(&severity).ok_or_else(|| corrupt("severity", &severity))?,
        created_at_ms: r.get(6),
        repair: repaired_at_ms.map(|at| DefectRepair {
            mechanic: r.get::<_, Option<String>>(8).unwrap_or_default(),
            note: r.get::<_, Option<String>>(9).unwrap_or_default(),
            signature_sha256: r.get(10),
            repaired_at_ms: at,
        }),
    })
}

async fn defects_of(
    tx: &PgTx,
    tenant: Uuid,
    inspection: Uuid,
) -> Result<Vec<DefectRecord>, StorageError> {
    tx.query(
        &format!("SELECT {DEFECT_COLUMNS} FROM inspection_defects WHERE tenant_id = $1 AND inspection_id = $2 ORDER BY created_at_ms, defect_id"),
        &[&tenant, &inspection],
    )
    .await
    .map_err(pg)?
    .iter()
    .map(defect_row)
    .collect()
}

async fn inspection_by_id(
    tx: &PgTx,
    tenant: Uuid,
    id: Uuid,
) -> Result<Option<InspectionRecord>, StorageError> {
    let Some(row) = tx
        .query_opt(
            &format!("SELECT {INSPECTION_COLUMNS} FROM inspections WHERE tenant_id = $1 AND inspection_id = $2"),
            &[&tenant, &id],
        )
        .await
        .map_err(pg)?
    else {
        return Ok(None);
    };
    let mut i = inspection_row(&row)?;
    i.defects = defects_of(tx, tenant, id).await?;
    Ok(Some(i))
}

async fn defect_by_id(
    tx: &PgTx,
    tenant: Uuid,
    id: Uuid,
) -> Result<Option<DefectRecord>, StorageError> {
    tx.query_opt(
        &format!(
            "SELECT {DEFECT_COLUMNS} FROM inspection_defects WHERE tenant_id = $1 AND defect_id = $2"
        ),
        &[&tenant, &id],
    )
    .await
    .map_err(pg)?
    .map(|r| defect_row(&r))
    .transpose()
}

#[async_trait]
impl InspectionStore for PgStorage {
    async fn insert_inspection_form(
        &self,
        tenant: Uuid,
        f: &InspectionForm,
    ) -> Result<(), StorageError> {
        let items =
            serde_json::to_string(&f.items).map_err(|e| StorageError::Invalid(e.to_string()))?;
        let tx = self.tenant_tx(tenant).await?;
        tx.execute(
            &format!("INSERT INTO inspection_forms (tenant_id, {FORM_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"),
            &[&tenant, &f.id, &f.vehicle_type, &f.name, &items, &f.created_at_ms],
        )
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StorageError::Conflict(format!("form {} already exists", f.id))
            } else {
                pg(e)
            }
        })?;
        tx.commit().await
    }

    async fn inspection_form(
        &self,
        tenant: Uuid,
        id: Uuid,
    ) -> Result<Option<InspectionForm>, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let form = tx
            .query_opt(
                &format!("SELECT {FORM_COLUMNS} FROM inspection_forms WHERE tenant_id = $1 AND form_id = $2"),
                &[&tenant, &id],
            )
            .await
            .map_err(pg)?
            .map(|r| form_row(&r))
            .transpose()?;
        tx.commit().await?;
        Ok(form)
    }

    async fn inspection_forms(&self, tenant: Uuid) -> Result<Vec<InspectionForm>, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let forms = tx
            .query(
                &format!("SELECT {FORM_COLUMNS} FROM inspection_forms WHERE tenant_id = $1 ORDER BY vehicle_type, created_at_ms DESC, form_id"),
                &[&tenant],
            )
            .await
            .map_err(pg)?
            .iter()
            .map(form_row)
            .collect::<Result<Vec<_>, _>>()?;
        tx.commit().await?;
        Ok(forms)
    }

    async fn record_inspection(
        &self,
        tenant: Uuid,
        i: &InspectionRecord,
    ) -> Result<(InspectionRecord, bool), StorageError> {
        let results =
            serde_json::to_string(&i.results).map_err(|e| StorageError::Invalid(e.to_string()))?;
        let tx = self.tenant_tx(tenant).await?;
        let inserted = tx
            .execute(
                &format!("INSERT INTO inspections (tenant_id, {INSPECTION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) ON CONFLICT (tenant_id, inspection_id) DO NOTHING"),
                &[
                    &tenant,
                    &i.id,
                    &i.asset_id,
                    &i.form_id,
                    &i.source.as_str(),
                    &i.device_id,
                    &i.driver,
                    &i.signature_sha256,
                    &i.odometer_km,
                    &i.notes,
                    &results,
                    &i.inspected_at_ms,
                    &i.created_at_ms,
                ],
            )
            .await
            .map_err(pg)?;
        if inserted == 1 {
            for d in &i.defects {
                tx.execute(
                    &format!("INSERT INTO inspection_defects (tenant_id, {DEFECT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, NULL, NULL, NULL)"),
                    &[
                        &tenant,
                        &d.id,
                        &i.id,
                        &i.asset_id,
                        &d.item,
                        &d.description,
                        &d.severity.as_str(),
                        &d.created_at_ms,
                    ],
                )
                .await
                .map_err(|e| {
                    if is_unique_violation(&e) {
                        StorageError::Conflict(format!("defect {} already exists", d.id))
                    } else {
                        pg(e)
                    }
                })?;
            }
        }
        let stored = inspection_by_id(&tx, tenant, i.id)
            .await?
            .ok_or_else(|| StorageError::Backend("inspection vanished".into()))?;
        tx.commit().await?;
        Ok((stored, inserted == 1))
    }

    async fn inspection(
        &self,
        tenant: Uuid,
        id: Uuid,
    ) -> Result<Option<InspectionRecord>, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let found = inspection_by_id(&tx, tenant, id).await?;
        tx.commit().await?;
        Ok(found)
    }

    async fn list_inspections(
        &self,
        tenant: Uuid,
        asset: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<InspectionRecord>, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let rows = tx
            .query(
                &format!("SELECT {INSPECTION_COLUMNS} FROM inspections WHERE tenant_id = $1 AND ($2::uuid IS NULL OR asset_id = $2) ORDER BY inspected_at_ms DESC, inspection_id LIMIT $3"),
                &[&tenant, &asset, &i64::from(limit)],
            )
            .await
            .map_err(pg)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let mut i = inspection_row(r)?;
            i.defects = defects_of(&tx, tenant, i.id).await?;
            out.push(i);
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn open_defects(
        &self,
        tenant: Uuid,
        asset: Option<Uuid>,
    ) -> Result<Vec<DefectRecord>, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let out = tx
            .query(
                &format!("SELECT {DEFECT_COLUMNS} FROM inspection_defects WHERE tenant_id = $1 AND repaired_at_ms IS NULL AND ($2::uuid IS NULL OR asset_id = $2) ORDER BY created_at_ms, defect_id"),
                &[&tenant, &asset],
            )
            .await
            .map_err(pg)?
            .iter()
            .map(defect_row)
            .collect::<Result<Vec<_>, _>>()?;
        tx.commit().await?;
        Ok(out)
    }

    async fn repair_defect(
        &self,
        tenant: Uuid,
        defect: Uuid,
        r: &DefectRepair,
    ) -> Result<Option<DefectRecord>, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let Some(found) = tx
            .query_opt(
                &format!("SELECT {DEFECT_COLUMNS} FROM inspection_defects WHERE tenant_id = $1 AND defect_id = $2 FOR UPDATE"),
                &[&tenant, &defect],
            )
            .await
            .map_err(pg)?
            .map(|row| defect_row(&row))
            .transpose()?
        else {
            return Ok(None);
        };
        if found.repair.is_some() {
            return Err(StorageError::Conflict(format!(
                "defect {defect} was already repaired"
            )));
        }
        tx.execute(
            "UPDATE inspection_defects SET repaired_at_ms = $3, mechanic = $4, repair_note = $5, repair_signature_sha256 = $6 WHERE tenant_id = $1 AND defect_id = $2",
            &[&tenant, &defect, &r.repaired_at_ms, &r.mechanic, &r.note, &r.signature_sha256],
        )
        .await
        .map_err(pg)?;
        let updated = defect_by_id(&tx, tenant, defect).await?;
        tx.commit().await?;
        Ok(updated)
    }
}
