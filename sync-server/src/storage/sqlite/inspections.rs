//! [`InspectionStore`] on SQLite.

use super::conn::backend;
use super::row::{conversion, is_unique_violation, json_at, opt_uuid_at};
use super::{blob, uuid_at, SqliteStorage};
use crate::storage::inspections::{
    DefectRecord, DefectRepair, FormItem, InspectionForm, InspectionRecord, InspectionSource,
    InspectionStore, ItemResult, Severity,
};
use crate::storage::StorageError;
use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, Row};
use uuid::Uuid;

fn invalid(i: usize, what: &str) -> rusqlite::Error {
    conversion(
        i,
        std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned()),
    )
}

const FORM_COLUMNS: &str = "form_id, vehicle_type, name, items, created_at_ms";

fn form_row(r: &Row<'_>) -> rusqlite::Result<InspectionForm> {
    Ok(InspectionForm {
        id: uuid_at(r, 0)?,
        vehicle_type: r.get(1)?,
        name: r.get(2)?,
        items: json_at::<Vec<FormItem>>(r, 3)?,
        created_at_ms: r.get(4)?,
    })
}

const INSPECTION_COLUMNS: &str = "inspection_id, asset_id, form_id, source, device_id, driver, signature_sha256, odometer_km, notes, results, inspected_at_ms, created_at_ms";

fn inspection_row(r: &Row<'_>) -> rusqlite::Result<InspectionRecord> {
    let source: String = r.get(3)?;
    Ok(InspectionRecord {
        id: uuid_at(r, 0)?,
        asset_id: uuid_at(r, 1)?,
        form_id: opt_uuid_at(r, 2)?,
        source: InspectionSource::parse(&source).ok_or_else(|| invalid(3, "source"))?,
        device_id: opt_uuid_at(r, 4)?,
        driver: r.get(5)?,
        signature_sha256: r.get(6)?,
        odometer_km: r.get(7)?,
        notes: r.get(8)?,
        results: json_at::<Vec<ItemResult>>(r, 9)?,
        inspected_at_ms: r.get(10)?,
        created_at_ms: r.get(11)?,
        defects: Vec::new(),
    })
}

const DEFECT_COLUMNS: &str = "defect_id, inspection_id, asset_id, item, description, severity, created_at_ms, repaired_at_ms, mechanic, repair_note, repair_signature_sha256";

fn defect_row(r: &Row<'_>) -> rusqlite::Result<DefectRecord> {
    let severity: String = r.get(5)?;
    let repaired_at_ms: Option<i64> = r.get(7)?;
    Ok(DefectRecord {
        id: uuid_at(r, 0)?,
        inspection_id: uuid_at(r, 1)?,
        asset_id: uuid_at(r, 2)?,
        item: r.get(3)?,
        description: r.get(4)?,
        severity: Severity::parse(&severity).ok_or_else(|| invalid(5, "severity"))?,
        created_at_ms: r.get(6)?,
        repair: match repaired_at_ms {
            Some(at) => Some(DefectRepair {
                mechanic: r.get::<_, Option<String>>(8)?.unwrap_or_default(),
                note: r.get::<_, Option<String>>(9)?.unwrap_or_default(),
                signature_sha256: r.get(10)?,
                repaired_at_ms: at,
            }),
            None => None,
        },
    })
}

fn defects_of(
    c: &Connection,
    tenant: &Uuid,
    inspection: &Uuid,
) -> Result<Vec<DefectRecord>, StorageError> {
    let mut q = c
        .prepare_cached(&format!(
            "SELECT {DEFECT_COLUMNS} FROM inspection_defects WHERE tenant_id = ?1 AND inspection_id = ?2 ORDER BY created_at_ms, defect_id"
        ))
        .map_err(backend)?;
    let rows = q
        .query_map(params![blob(tenant), blob(inspection)], defect_row)
        .map_err(backend)?;
    rows.collect::<Result<_, _>>().map_err(backend)
}

fn inspection_by_id(
    c: &Connection,
    tenant: &Uuid,
    id: &Uuid,
) -> Result<Option<InspectionRecord>, StorageError> {
    let found = c
        .query_row(
            &format!("SELECT {INSPECTION_COLUMNS} FROM inspections WHERE tenant_id = ?1 AND inspection_id = ?2"),
            params![blob(tenant), blob(id)],
            inspection_row,
        )
        .optional()
        .map_err(backend)?;
    match found {
        Some(mut i) => {
            i.defects = defects_of(c, tenant, id)?;
            Ok(Some(i))
        }
        None => Ok(None),
    }
}

fn defect_by_id(
    c: &Connection,
    tenant: &Uuid,
    id: &Uuid,
) -> Result<Option<DefectRecord>, StorageError> {
    c.query_row(
        &format!(
            "SELECT {DEFECT_COLUMNS} FROM inspection_defects WHERE tenant_id = ?1 AND defect_id = ?2"
        ),
        params![blob(tenant), blob(id)],
        defect_row,
    )
    .optional()
    .map_err(backend)
}

#[async_trait]
impl InspectionStore for SqliteStorage {
    async fn insert_inspection_form(
        &self,
        tenant: Uuid,
        form: &InspectionForm,
    ) -> Result<(), StorageError> {
        let f = form.clone();
        let items =
            serde_json::to_string(&f.items).map_err(|e| StorageError::Invalid(e.to_string()))?;
        self.pool
            .write(move |c| {
                c.execute(
                    &format!("INSERT INTO inspection_forms (tenant_id, {FORM_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"),
                    params![blob(&tenant), blob(&f.id), f.vehicle_type, f.name, items, f.created_at_ms],
                )
                .map_err(|e| {
                    if is_unique_violation(&e) {
                        StorageError::Conflict(format!("form {} already exists", f.id))
                    } else {
                        backend(e)
                    }
                })?;
                Ok(())
            })
            .await
    }

    async fn inspection_form(
        &self,
        tenant: Uuid,
        id: Uuid,
    ) -> Result<Option<InspectionForm>, StorageError> {
        self.pool
            .read(move |c| {
                c.query_row(
                    &format!("SELECT {FORM_COLUMNS} FROM inspection_forms WHERE tenant_id = ?1 AND form_id = ?2"),
                    params![blob(&tenant), blob(&id)],
                    form_row,
                )
                .optional()
                .map_err(backend)
            })
            .await
    }

    async fn inspection_forms(&self, tenant: Uuid) -> Result<Vec<InspectionForm>, StorageError> {
        self.pool
            .read(move |c| {
                let mut q = c
                    .prepare(&format!("SELECT {FORM_COLUMNS} FROM inspection_forms WHERE tenant_id = ?1 ORDER BY vehicle_type, created_at_ms DESC, form_id"))
                    .map_err(backend)?;
                let rows = q.query_map(params![blob(&tenant)], form_row).map_err(backend)?;
                rows.collect::<Result<_, _>>().map_err(backend)
            })
            .await
    }

    async fn record_inspection(
        &self,
        tenant: Uuid,
        inspection: &InspectionRecord,
    ) -> Result<(InspectionRecord, bool), StorageError> {
        let i = inspection.clone();
        let results =
            serde_json::to_string(&i.results).map_err(|e| StorageError::Invalid(e.to_string()))?;
        self.pool
            .write(move |c| {
                let tx = c.transaction().map_err(backend)?;
                if let Some(existing) = inspection_by_id(&tx, &tenant, &i.id)? {
                    return Ok((existing, false));
                }
                tx.execute(
                    &format!("INSERT INTO inspections (tenant_id, {INSPECTION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"),
                    params![
                        blob(&tenant),
                        blob(&i.id),
                        blob(&i.asset_id),
                        i.form_id.as_ref().map(blob),
                        i.source.as_str(),
                        i.device_id.as_ref().map(blob),
                        i.driver,
                        i.signature_sha256,
                        i.odometer_km,
                        i.notes,
                        results,
                        i.inspected_at_ms,
                        i.created_at_ms,
                    ],
                )
                .map_err(backend)?;
                for d in &i.defects {
                    tx.execute(
                        &format!("INSERT INTO inspection_defects (tenant_id, {DEFECT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, NULL, NULL, NULL, NULL)"),
                        params![
                            blob(&tenant),
                            blob(&d.id),
                            blob(&i.id),
                            blob(&i.asset_id),
                            d.item,
                            d.description,
                            d.severity.as_str(),
                            d.created_at_ms,
                        ],
                    )
                    .map_err(|e| {
                        if is_unique_violation(&e) {
                            StorageError::Conflict(format!("defect {} already exists", d.id))
                        } else {
                            backend(e)
                        }
                    })?;
                }
                let stored = inspection_by_id(&tx, &tenant, &i.id)?
                    .ok_or_else(|| StorageError::Backend("inspection vanished".into()))?;
                tx.commit().map_err(backend)?;
                Ok((stored, true))
            })
            .await
    }

    async fn inspection(
        &self,
        tenant: Uuid,
        id: Uuid,
    ) -> Result<Option<InspectionRecord>, StorageError> {
        self.pool
            .read(move |c| inspection_by_id(c, &tenant, &id))
            .await
    }

    async fn list_inspections(
        &self,
        tenant: Uuid,
        asset: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<InspectionRecord>, StorageError> {
        self.pool
            .read(move |c| {
                let mut q = c
                    .prepare(&format!(
                        "SELECT {INSPECTION_COLUMNS} FROM inspections WHERE tenant_id = ?1 AND (?2 IS NULL OR asset_id = ?2) ORDER BY inspected_at_ms DESC, inspection_id LIMIT ?3"
                    ))
                    .map_err(backend)?;
                let rows = q
                    .query_map(
                        params![blob(&tenant), asset.as_ref().map(blob), i64::from(limit)],
                        inspection_row,
                    )
                    .map_err(backend)?;
                let mut out: Vec<InspectionRecord> =
                    rows.collect::<Result<_, _>>().map_err(backend)?;
                for i in &mut out {
                    i.defects = defects_of(c, &tenant, &i.id)?;
                }
                Ok(out)
            })
            .await
    }

    async fn open_defects(
        &self,
        tenant: Uuid,
        asset: Option<Uuid>,
    ) -> Result<Vec<DefectRecord>, StorageError> {
        self.pool
            .read(move |c| {
                let mut q = c
                    .prepare(&format!(
                        "SELECT {DEFECT_COLUMNS} FROM inspection_defects WHERE tenant_id = ?1 AND repaired_at_ms IS NULL AND (?2 IS NULL OR asset_id = ?2) ORDER BY created_at_ms, defect_id"
                    ))
                    .map_err(backend)?;
                let rows = q
                    .query_map(params![blob(&tenant), asset.as_ref().map(blob)], defect_row)
                    .map_err(backend)?;
                rows.collect::<Result<_, _>>().map_err(backend)
            })
            .await
    }

    async fn repair_defect(
        &self,
        tenant: Uuid,
        defect: Uuid,
        repair: &DefectRepair,
    ) -> Result<Option<DefectRecord>, StorageError> {
        let r = repair.clone();
        self.pool
            .write(move |c| {
                let tx = c.transaction().map_err(backend)?;
                let Some(found) = defect_by_id(&tx, &tenant, &defect)? else {
                    return Ok(None);
                };
                if found.repair.is_some() {
                    return Err(StorageError::Conflict(format!(
                        "defect {defect} was already repaired"
                    )));
                }
                tx.execute(
                    "UPDATE inspection_defects SET repaired_at_ms = ?3, mechanic = ?4, repair_note = ?5, repair_signature_sha256 = ?6 WHERE tenant_id = ?1 AND defect_id = ?2",
                    params![blob(&tenant), blob(&defect), r.repaired_at_ms, r.mechanic, r.note, r.signature_sha256],
                )
                .map_err(backend)?;
                let updated = defect_by_id(&tx, &tenant, &defect)?;
                tx.commit().map_err(backend)?;
                Ok(updated)
            })
            .await
    }
}
