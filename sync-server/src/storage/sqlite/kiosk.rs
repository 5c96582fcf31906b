//! [`KioskStore`] on SQLite.

use super::conn::backend;
use super::row::{conversion, is_unique_violation, json_at, opt_uuid_at};
use super::{blob, uuid_at, SqliteStorage};
use crate::storage::access::AuditEntry;
use crate::storage::kiosk::{
    gateway_readings_sql, parse_walk_up, walk_up_str, BlobRecord, ConflictRecord,
    ConflictResolution, CustodyHolder, GatewayReadings, KioskStore, LabelRecord, StoredSigningKey,
};
use crate::storage::StorageError;
use async_trait::async_trait;
use fleet_protocol::custody::{CustodyConflict, CustodyOp};
use fleet_protocol::label::LabelKind;
use fleet_protocol::snapshot::KioskPolicy;
use rusqlite::{params, Connection, OptionalExtension, Row};
use uuid::Uuid;

const LABEL_COLUMNS: &str = "label_id, kind, name, asset_id, slot, short_code, text, expires_at_s, created_at_ms, revoked_at_ms";

fn label_row(r: &Row<'_>) -> rusqlite::Result<LabelRecord> {
    let kind: String = r.get(1)?;
    Ok(LabelRecord {
        id: uuid_at(r, 0)?,
        kind: LabelKind::parse(&kind).ok_or_else(|| {
            conversion(
                1,
                std::io::Error::new(std::io::ErrorKind::InvalidData, "label kind"),
            )
        })?,
        name: r.get(2)?,
        asset_id: opt_uuid_at(r, 3)?,
        slot: r
            .get::<_, Option<i64>>(4)?
            .map(|v| u32::try_from(v).unwrap_or(u32::MAX)),
        short_code: r.get(5)?,
        text: r.get(6)?,
        expires_at_s: r
            .get::<_, Option<i64>>(7)?
            .map(|v| u32::try_from(v).unwrap_or(u32::MAX)),
        created_at_ms: r.get(8)?,
        revoked_at_ms: r.get(9)?,
    })
}

fn label_by_id(
    c: &Connection,
    tenant: &Uuid,
    id: &Uuid,
) -> Result<Option<LabelRecord>, StorageError> {
    c.query_row(
        &format!("SELECT {LABEL_COLUMNS} FROM labels WHERE tenant_id = ?1 AND label_id = ?2"),
        params![blob(tenant), blob(id)],
        label_row,
    )
    .optional()
    .map_err(backend)
}

const CONFLICT_COLUMNS: &str = "conflict_id, asset_id, first_op, second_op, detected_at_ms, resolved_at_ms, resolved_by, holder_badge, note";

fn conflict_row(r: &Row<'_>) -> rusqlite::Result<ConflictRecord> {
    let resolved_at_ms: Option<i64> = r.get(5)?;
    Ok(ConflictRecord {
        id: uuid_at(r, 0)?,
        asset_id: uuid_at(r, 1)?,
        first: json_at(r, 2)?,
        second: json_at(r, 3)?,
        detected_at_ms: r.get(4)?,
        resolution: match resolved_at_ms {
            Some(at) => Some(ConflictResolution {
                holder_badge: opt_uuid_at(r, 7)?,
                note: r.get::<_, Option<String>>(8)?.unwrap_or_default(),
                resolved_by: opt_uuid_at(r, 6)?,
                resolved_at_ms: at,
            }),
            None => None,
        },
    })
}

#[async_trait]
impl KioskStore for SqliteStorage {
    async fn tenant_signing_key(
        &self,
        tenant: Uuid,
        candidate: StoredSigningKey,
    ) -> Result<StoredSigningKey, StorageError> {
        self.pool
            .write(move |c| {
                let tx = c.transaction().map_err(backend)?;
                tx.execute(
                    "INSERT INTO tenant_signing_keys (tenant_id, secret, public_key, created_at_ms) VALUES (?1, ?2, ?3, ?4) ON CONFLICT (tenant_id) DO NOTHING",
                    params![blob(&tenant), candidate.secret, candidate.public_key, candidate.created_at_ms],
                )
                .map_err(backend)?;
                let key = tx
                    .query_row(
                        "SELECT secret, public_key, created_at_ms FROM tenant_signing_keys WHERE tenant_id = ?1",
                        params![blob(&tenant)],
                        |r| {
                            Ok(StoredSigningKey {
                                secret: r.get(0)?,
                                public_key: r.get(1)?,
                                created_at_ms: r.get(2)?,
                            })
                        },
                    )
                    .map_err(backend)?;
                tx.commit().map_err(backend)?;
                Ok(key)
            })
            .await
    }

    async fn stored_signing_key(
        &self,
        tenant: Uuid,
    ) -> Result<Option<StoredSigningKey>, StorageError> {
        self.pool
            .read(move |c| {
                c.query_row(
                    "SELECT secret, public_key, created_at_ms FROM tenant_signing_keys WHERE tenant_id = ?1",
                    params![blob(&tenant)],
                    |r| {
                        Ok(StoredSigningKey {
                            secret: r.get(0)?,
                            public_key: r.get(1)?,
                            created_at_ms: r.get(2)?,
                        })
                    },
                )
                .optional()
                .map_err(backend)
            })
            .await
    }

    async fn replace_signing_secret(
        &self,
        tenant: Uuid,
        old: &[u8],
        new: &[u8],
    ) -> Result<bool, StorageError> {
        let (old, new) = (old.to_vec(), new.to_vec());
        self.pool
            .write(move |c| {
                c.execute(
                    "UPDATE tenant_signing_keys SET secret = ?3 WHERE tenant_id = ?1 AND secret = ?2",
                    params![blob(&tenant), old, new],
                )
                .map(|n| n == 1)
                .map_err(backend)
            })
            .await
    }

    async fn reseal_signing_secret(
        &self,
        tenant: Uuid,
        old: &[u8],
        new: &[u8],
        audit: AuditEntry,
    ) -> Result<bool, StorageError> {
        let (old, new) = (old.to_vec(), new.to_vec());
        self.pool
            .write(move |c| {
                let tx = c.transaction().map_err(backend)?;
                let n = tx
                    .execute(
                        "UPDATE tenant_signing_keys SET secret = ?3 WHERE tenant_id = ?1 AND secret = ?2",
                        params![blob(&tenant), old, new],
                    )
                    .map_err(backend)?;
                if n != 1 {
                    return Ok(false);
                }
                super::access::insert_audit(&tx, &audit)?;
                tx.commit().map_err(backend)?;
                Ok(true)
            })
            .await
    }

    async fn insert_label(&self, tenant: Uuid, label: &LabelRecord) -> Result<(), StorageError> {
        let l = label.clone();
        self.pool
            .write(move |c| {
                c.execute(
                    &format!("INSERT INTO labels (tenant_id, {LABEL_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"),
                    params![
                        blob(&tenant),
                        blob(&l.id),
                        l.kind.as_str(),
                        l.name,
                        l.asset_id.as_ref().map(blob),
                        l.slot,
                        l.short_code,
                        l.text,
                        l.expires_at_s,
                        l.created_at_ms,
                        l.revoked_at_ms,
                    ],
                )
                .map_err(|e| {
                    if is_unique_violation(&e) {
                        StorageError::Conflict(
                            "a label with this id or short code already exists".into(),
                        )
                    } else {
                        backend(e)
                    }
                })?;
                Ok(())
            })
            .await
    }

    async fn label(&self, tenant: Uuid, id: Uuid) -> Result<Option<LabelRecord>, StorageError> {
        self.pool.read(move |c| label_by_id(c, &tenant, &id)).await
    }

    async fn list_labels(&self, tenant: Uuid) -> Result<Vec<LabelRecord>, StorageError> {
        self.pool
            .read(move |c| {
                let mut q = c
                    .prepare(&format!(
                        "SELECT {LABEL_COLUMNS} FROM labels WHERE tenant_id = ?1 ORDER BY kind, created_at_ms, label_id"
                    ))
                    .map_err(backend)?;
                let rows = q
                    .query_map(params![blob(&tenant)], label_row)
                    .map_err(backend)?;
                rows.collect::<Result<_, _>>().map_err(backend)
            })
            .await
    }

    async fn revoke_label(
        &self,
        tenant: Uuid,
        id: Uuid,
        now_ms: i64,
    ) -> Result<Option<LabelRecord>, StorageError> {
        self.pool
            .write(move |c| {
                let tx = c.transaction().map_err(backend)?;
                tx.execute(
                    "UPDATE labels SET revoked_at_ms = ?3 WHERE tenant_id = ?1 AND label_id = ?2 AND revoked_at_ms IS NULL",
                    params![blob(&tenant), blob(&id), now_ms],
                )
                .map_err(backend)?;
                let out = label_by_id(&tx, &tenant, &id)?;
                tx.commit().map_err(backend)?;
                Ok(out)
            })
            .await
    }

    async fn kiosk_policy(&self, tenant: Uuid) -> Result<KioskPolicy, StorageError> {
        self.pool
            .read(move |c| {
                let row: Option<(String, i64, i64)> = c
                    .query_row(
                        "SELECT walk_up, grace_minutes, max_checkout_hours FROM kiosk_policies WHERE tenant_id = ?1",
                        params![blob(&tenant)],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                    )
                    .optional()
                    .map_err(backend)?;
                let Some((walk_up, grace, max_hours)) = row else {
                    return Ok(KioskPolicy::default());
                };
                Ok(KioskPolicy {
                    walk_up: parse_walk_up(&walk_up)
                        .ok_or_else(|| StorageError::Corrupt(format!("walk-up policy {walk_up}")))?,
                    grace_minutes: u32::try_from(grace)
                        .map_err(|_| StorageError::Corrupt("grace minutes".into()))?,
                    max_checkout_hours: u32::try_from(max_hours)
                        .map_err(|_| StorageError::Corrupt("max checkout hours".into()))?,
                })
            })
            .await
    }

    async fn set_kiosk_policy(
        &self,
        tenant: Uuid,
        policy: KioskPolicy,
        now_ms: i64,
    ) -> Result<(), StorageError> {
        self.pool
            .write(move |c| {
                c.execute(
                    "INSERT INTO kiosk_policies (tenant_id, walk_up, grace_minutes, max_checkout_hours, updated_at_ms) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (tenant_id) DO UPDATE SET walk_up = excluded.walk_up, grace_minutes = excluded.grace_minutes,
                         max_checkout_hours = excluded.max_checkout_hours, updated_at_ms = excluded.updated_at_ms",
                    params![
                        blob(&tenant),
                        walk_up_str(policy.walk_up),
                        policy.grace_minutes,
                        policy.max_checkout_hours,
                        now_ms
                    ],
                )
                .map_err(backend)?;
                Ok(())
            })
            .await
    }

    async fn record_custody(
        &self,
        tenant: Uuid,
        asset: Uuid,
        holder: Option<CustodyOp>,
        ops: u32,
        conflicts: &[CustodyConflict],
        now_ms: i64,
    ) -> Result<Vec<ConflictRecord>, StorageError> {
        let conflicts = conflicts.to_vec();
        self.pool
            .write(move |c| {
                let tx = c.transaction().map_err(backend)?;
                let holder_json = holder
                    .as_ref()
                    .map(|h| serde_json::to_string(h).expect("ops serialise"));
                tx.execute(
                    "INSERT INTO custody_holders (tenant_id, asset_id, holder, ops, updated_at_ms) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (tenant_id, asset_id) DO UPDATE SET holder = excluded.holder, ops = excluded.ops, updated_at_ms = excluded.updated_at_ms",
                    params![blob(&tenant), blob(&asset), holder_json, ops, now_ms],
                )
                .map_err(backend)?;
                let mut new = Vec::new();
                for conflict in conflicts {
                    let id = Uuid::new_v4();
                    let n = tx
                        .execute(
                            "INSERT INTO custody_conflicts (tenant_id, conflict_id, asset_id, first_event_id, second_event_id, first_op, second_op, detected_at_ms)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                             ON CONFLICT (tenant_id, asset_id, first_event_id, second_event_id) DO NOTHING",
                            params![
                                blob(&tenant),
                                blob(&id),
                                blob(&asset),
                                blob(&conflict.first.event_id),
                                blob(&conflict.second.event_id),
                                serde_json::to_string(&conflict.first).expect("ops serialise"),
                                serde_json::to_string(&conflict.second).expect("ops serialise"),
                                now_ms
                            ],
                        )
                        .map_err(backend)?;
                    if n == 1 {
                        new.push(ConflictRecord {
                            id,
                            asset_id: asset,
                            first: conflict.first,
                            second: conflict.second,
                            detected_at_ms: now_ms,
                            resolution: None,
                        });
                    }
                }
                tx.commit().map_err(backend)?;
                Ok(new)
            })
            .await
    }

    async fn custody_holders(&self, tenant: Uuid) -> Result<Vec<CustodyHolder>, StorageError> {
        self.pool
            .read(move |c| {
                let mut q = c
                    .prepare(
                        "SELECT asset_id, holder, ops, updated_at_ms FROM custody_holders WHERE tenant_id = ?1 ORDER BY asset_id",
                    )
                    .map_err(backend)?;
                let rows = q
                    .query_map(params![blob(&tenant)], |r| {
                        let holder: Option<String> = r.get(1)?;
                        Ok(CustodyHolder {
                            asset_id: uuid_at(r, 0)?,
                            holder: match holder {
                                Some(s) => Some(serde_json::from_str(&s).map_err(|e| conversion(1, e))?),
                                None => None,
                            },
                            ops: u32::try_from(r.get::<_, i64>(2)?).unwrap_or(u32::MAX),
                            updated_at_ms: r.get(3)?,
                        })
                    })
                    .map_err(backend)?;
                rows.collect::<Result<_, _>>().map_err(backend)
            })
            .await
    }

    async fn custody_conflicts(
        &self,
        tenant: Uuid,
        include_resolved: bool,
    ) -> Result<Vec<ConflictRecord>, StorageError> {
        self.pool
            .read(move |c| {
                let mut q = c
                    .prepare(&format!(
                        "SELECT {CONFLICT_COLUMNS} FROM custody_conflicts WHERE tenant_id = ?1 AND (?2 OR resolved_at_ms IS NULL) ORDER BY detected_at_ms, conflict_id"
                    ))
                    .map_err(backend)?;
                let rows = q
                    .query_map(params![blob(&tenant), include_resolved], conflict_row)
                    .map_err(backend)?;
                rows.collect::<Result<_, _>>().map_err(backend)
            })
            .await
    }

    async fn resolve_custody_conflict(
        &self,
        tenant: Uuid,
        id: Uuid,
        resolution: ConflictResolution,
    ) -> Result<Option<ConflictRecord>, StorageError> {
        self.pool
            .write(move |c| {
                let tx = c.transaction().map_err(backend)?;
                let get = |tx: &Connection| {
                    tx.query_row(
                        &format!("SELECT {CONFLICT_COLUMNS} FROM custody_conflicts WHERE tenant_id = ?1 AND conflict_id = ?2"),
                        params![blob(&tenant), blob(&id)],
                        conflict_row,
                    )
                    .optional()
                    .map_err(backend)
                };
                let Some(existing) = get(&tx)? else {
                    return Ok(None);
                };
                if existing.resolution.is_some() {
                    return Err(StorageError::Conflict(
                        "this custody conflict is already resolved".into(),
                    ));
                }
                tx.execute(
                    "UPDATE custody_conflicts SET resolved_at_ms = ?3, resolved_by = ?4, holder_badge = ?5, note = ?6 WHERE tenant_id = ?1 AND conflict_id = ?2",
                    params![
                        blob(&tenant),
                        blob(&id),
                        resolution.resolved_at_ms,
                        resolution.resolved_by.as_ref().map(blob),
                        resolution.holder_badge.as_ref().map(blob),
                        resolution.note
                    ],
                )
                .map_err(backend)?;
                let out = get(&tx)?;
                tx.commit().map_err(backend)?;
                Ok(out)
            })
            .await
    }

    async fn index_blob(&self, tenant: Uuid, b: &BlobRecord) -> Result<(), StorageError> {
        let b = b.clone();
        self.pool
            .write(move |c| {
                c.execute(
                    "INSERT INTO blobs (tenant_id, sha256, size, content_type, device_id, stored_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (tenant_id, sha256) DO NOTHING",
                    params![
                        blob(&tenant),
                        b.sha256,
                        i64::try_from(b.size).map_err(|_| StorageError::Invalid("blob size".into()))?,
                        b.content_type,
                        b.device_id.as_ref().map(blob),
                        b.stored_at_ms
                    ],
                )
                .map_err(backend)?;
                Ok(())
            })
            .await
    }

    async fn blob(&self, tenant: Uuid, sha256: &str) -> Result<Option<BlobRecord>, StorageError> {
        let sha = sha256.to_owned();
        self.pool
            .read(move |c| {
                c.query_row(
                    "SELECT sha256, size, content_type, device_id, stored_at_ms FROM blobs WHERE tenant_id = ?1 AND sha256 = ?2",
                    params![blob(&tenant), sha],
                    |r| {
                        Ok(BlobRecord {
                            sha256: r.get(0)?,
                            size: r.get::<_, i64>(1)?.max(0) as u64,
                            content_type: r.get(2)?,
                            device_id: opt_uuid_at(r, 3)?,
                            stored_at_ms: r.get(4)?,
                        })
                    },
                )
                .optional()
                .map_err(backend)
            })
            .await
    }

    async fn gateway_readings(&self, tenant: Uuid) -> Result<Vec<GatewayReadings>, StorageError> {
        self.pool
            .read(move |c| {
                let mut q = c
                    .prepare_cached(&gateway_readings_sql("?1"))
                    .map_err(backend)?;
                let rows = q
                    .query_map(params![blob(&tenant)], |r| {
                        Ok(GatewayReadings {
                            asset_id: uuid_at(r, 0)?,
                            odometer_km: r.get(1)?,
                            odometer_at_ms: r.get(2)?,
                            fuel_pct: r.get(3)?,
                            fuel_at_ms: r.get(4)?,
                        })
                    })
                    .map_err(backend)?;
                rows.collect::<Result<_, _>>().map_err(backend)
            })
            .await
    }
}
