//! [`KioskStore`] on PostgreSQL; every statement runs in a tenant transaction.

use super::{is_unique_violation, pg, PgStorage, PgTx};
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
use serde_json::Value;
use tokio_postgres::Row;
use uuid::Uuid;

fn corrupt(what: &str, e: impl std::fmt::Display) -> StorageError {
    StorageError::Corrupt(format!("{what}: {e}"))
}

fn op_json(op: &CustodyOp) -> Value {
    serde_json::to_value(op).expect("ops serialise")
}

fn op_from(v: Value) -> Result<CustodyOp, StorageError> {
    serde_json::from_value(v).map_err(|e| corrupt("custody op", e))
}

const LABEL_COLUMNS: &str = "label_id, kind, name, asset_id, slot, short_code, text, expires_at_s, created_at_ms, revoked_at_ms";

fn label_row(r: &Row) -> Result<LabelRecord, StorageError> {
    let kind: String = r.get(1);
    Ok(LabelRecord {
        id: r.get(0),
        kind: LabelKind::parse(&kind).ok_or_else(|| corrupt("label kind", &kind))?,
        name: r.get(2),
        asset_id: r.get(3),
        slot: r
            .get::<_, Option<i64>>(4)
            .map(|v| u32::try_from(v).unwrap_or(u32::MAX)),
        short_code: r.get(5),
        text: r.get(6),
        expires_at_s: r
            .get::<_, Option<i64>>(7)
            .map(|v| u32::try_from(v).unwrap_or(u32::MAX)),
        created_at_ms: r.get(8),
        revoked_at_ms: r.get(9),
    })
}

async fn label_by_id(
    tx: &PgTx,
    tenant: Uuid,
    id: Uuid,
) -> Result<Option<LabelRecord>, StorageError> {
    tx.query_opt(
        &format!("SELECT {LABEL_COLUMNS} FROM labels WHERE tenant_id = $1 AND label_id = $2"),
        &[&tenant, &id],
    )
    .await
    .map_err(pg)?
    .map(|r| label_row(&r))
    .transpose()
}

const CONFLICT_COLUMNS: &str = "conflict_id, asset_id, first_op, second_op, detected_at_ms, resolved_at_ms, resolved_by, holder_badge, note";

fn conflict_row(r: &Row) -> Result<ConflictRecord, StorageError> {
    let resolved_at_ms: Option<i64> = r.get(5);
    Ok(ConflictRecord {
        id: r.get(0),
        asset_id: r.get(1),
        first: op_from(r.get(2))?,
        second: op_from(r.get(3))?,
        detected_at_ms: r.get(4),
        resolution: resolved_at_ms.map(|at| ConflictResolution {
            holder_badge: r.get(7),
            note: r.get::<_, Option<String>>(8).unwrap_or_default(),
            resolved_by: r.get(6),
            resolved_at_ms: at,
        }),
    })
}

async fn conflict_by_id(
    tx: &PgTx,
    tenant: Uuid,
    id: Uuid,
) -> Result<Option<ConflictRecord>, StorageError> {
    tx.query_opt(
        &format!(
            "SELECT {CONFLICT_COLUMNS} FROM custody_conflicts WHERE tenant_id = $1 AND conflict_id = $2"
        ),
        &[&tenant, &id],
    )
    .await
    .map_err(pg)?
    .map(|r| conflict_row(&r))
    .transpose()
}

#[async_trait]
impl KioskStore for PgStorage {
    async fn tenant_signing_key(
        &self,
        tenant: Uuid,
        candidate: StoredSigningKey,
    ) -> Result<StoredSigningKey, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        tx.execute(
            "INSERT INTO tenant_signing_keys (tenant_id, secret, public_key, created_at_ms) VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id) DO NOTHING",
            &[&tenant, &candidate.secret, &candidate.public_key, &candidate.created_at_ms],
        )
        .await
        .map_err(pg)?;
        let r = tx
            .query_one(
                "SELECT secret, public_key, created_at_ms FROM tenant_signing_keys WHERE tenant_id = $1",
                &[&tenant],
            )
            .await
            .map_err(pg)?;
        let key = StoredSigningKey {
            secret: r.get(0),
            public_key: r.get(1),
            created_at_ms: r.get(2),
        };
        tx.commit().await?;
        Ok(key)
    }

    async fn stored_signing_key(
        &self,
        tenant: Uuid,
    ) -> Result<Option<StoredSigningKey>, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let key = tx
            .query_opt(
                "SELECT secret, public_key, created_at_ms FROM tenant_signing_keys WHERE tenant_id = $1",
                &[&tenant],
            )
            .await
            .map_err(pg)?
            .map(|r| StoredSigningKey {
                secret: r.get(0),
                public_key: r.get(1),
                created_at_ms: r.get(2),
            });
        tx.commit().await?;
        Ok(key)
    }

    async fn replace_signing_secret(
        &self,
        tenant: Uuid,
        old: &[u8],
        new: &[u8],
    ) -> Result<bool, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let n = tx
            .execute(
                "UPDATE tenant_signing_keys SET secret = $3 WHERE tenant_id = $1 AND secret = $2",
                &[&tenant, &old, &new],
            )
            .await
            .map_err(pg)?;
        tx.commit().await?;
        Ok(n == 1)
    }

    async fn reseal_signing_secret(
        &self,
        tenant: Uuid,
        old: &[u8],
        new: &[u8],
        audit: AuditEntry,
    ) -> Result<bool, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let n = tx
            .execute(
                "UPDATE tenant_signing_keys SET secret = $3 WHERE tenant_id = $1 AND secret = $2",
                &[&tenant, &old, &new],
            )
            .await
            .map_err(pg)?;
        if n != 1 {
            return Ok(false);
        }
        super::access::insert_audit(&tx, &audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn insert_label(&self, tenant: Uuid, l: &LabelRecord) -> Result<(), StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let slot = l.slot.map(i64::from);
        let expires = l.expires_at_s.map(i64::from);
        tx.execute(
            &format!("INSERT INTO labels (tenant_id, {LABEL_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"),
            &[
                &tenant,
                &l.id,
                &l.kind.as_str(),
                &l.name,
                &l.asset_id,
                &slot,
                &l.short_code,
                &l.text,
                &expires,
                &l.created_at_ms,
                &l.revoked_at_ms,
            ],
        )
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StorageError::Conflict("a label with this id or short code already exists".into())
            } else {
                pg(e)
            }
        })?;
        tx.commit().await
    }

    async fn label(&self, tenant: Uuid, id: Uuid) -> Result<Option<LabelRecord>, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let out = label_by_id(&tx, tenant, id).await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn list_labels(&self, tenant: Uuid) -> Result<Vec<LabelRecord>, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let rows = tx
            .query(
                &format!("SELECT {LABEL_COLUMNS} FROM labels WHERE tenant_id = $1 ORDER BY kind, created_at_ms, label_id"),
                &[&tenant],
            )
            .await
            .map_err(pg)?;
        tx.commit().await?;
        rows.iter().map(label_row).collect()
    }

    async fn revoke_label(
        &self,
        tenant: Uuid,
        id: Uuid,
        now_ms: i64,
    ) -> Result<Option<LabelRecord>, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        tx.execute(
            "UPDATE labels SET revoked_at_ms = $3 WHERE tenant_id = $1 AND label_id = $2 AND revoked_at_ms IS NULL",
            &[&tenant, &id, &now_ms],
        )
        .await
        .map_err(pg)?;
        let out = label_by_id(&tx, tenant, id).await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn kiosk_policy(&self, tenant: Uuid) -> Result<KioskPolicy, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let row = tx
            .query_opt(
                "SELECT walk_up, grace_minutes, max_checkout_hours FROM kiosk_policies WHERE tenant_id = $1",
                &[&tenant],
            )
            .await
            .map_err(pg)?;
        tx.commit().await?;
        let Some(r) = row else {
            return Ok(KioskPolicy::default());
        };
        let walk_up: String = r.get(0);
        Ok(KioskPolicy {
            walk_up: parse_walk_up(&walk_up).ok_or_else(|| corrupt("walk-up policy", &walk_up))?,
            grace_minutes: u32::try_from(r.get::<_, i64>(1))
                .map_err(|e| corrupt("grace minutes", e))?,
            max_checkout_hours: u32::try_from(r.get::<_, i64>(2))
                .map_err(|e| corrupt("max checkout hours", e))?,
        })
    }

    async fn set_kiosk_policy(
        &self,
        tenant: Uuid,
        policy: KioskPolicy,
        now_ms: i64,
    ) -> Result<(), StorageError> {
        let walk_up = walk_up_str(policy.walk_up);
        let tx = self.tenant_tx(tenant).await?;
        tx.execute(
            "INSERT INTO kiosk_policies (tenant_id, walk_up, grace_minutes, max_checkout_hours, updated_at_ms) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (tenant_id) DO UPDATE SET walk_up = excluded.walk_up, grace_minutes = excluded.grace_minutes,
                 max_checkout_hours = excluded.max_checkout_hours, updated_at_ms = excluded.updated_at_ms",
            &[
                &tenant,
                &walk_up,
                &i64::from(policy.grace_minutes),
                &i64::from(policy.max_checkout_hours),
                &now_ms,
            ],
        )
        .await
        .map_err(pg)?;
        tx.commit().await
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
        let tx = self.tenant_tx(tenant).await?;
        let holder_json = holder.as_ref().map(op_json);
        tx.execute(
            "INSERT INTO custody_holders (tenant_id, asset_id, holder, ops, updated_at_ms) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (tenant_id, asset_id) DO UPDATE SET holder = excluded.holder, ops = excluded.ops, updated_at_ms = excluded.updated_at_ms",
            &[&tenant, &asset, &holder_json, &i64::from(ops), &now_ms],
        )
        .await
        .map_err(pg)?;
        let mut new = Vec::new();
        for c in conflicts {
            let id = Uuid::new_v4();
            let n = tx
                .execute(
                    "INSERT INTO custody_conflicts (tenant_id, conflict_id, asset_id, first_event_id, second_event_id, first_op, second_op, detected_at_ms)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                     ON CONFLICT (tenant_id, asset_id, first_event_id, second_event_id) DO NOTHING",
                    &[
                        &tenant,
                        &id,
                        &asset,
                        &c.first.event_id,
                        &c.second.event_id,
                        &op_json(&c.first),
                        &op_json(&c.second),
                        &now_ms,
                    ],
                )
                .await
                .map_err(pg)?;
            if n == 1 {
                new.push(ConflictRecord {
                    id,
                    asset_id: asset,
                    first: c.first.clone(),
                    second: c.second.clone(),
                    detected_at_ms: now_ms,
                    resolution: None,
                });
            }
        }
        tx.commit().await?;
        Ok(new)
    }

    async fn custody_holders(&self, tenant: Uuid) -> Result<Vec<CustodyHolder>, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let rows = tx
            .query(
                "SELECT asset_id, holder, ops, updated_at_ms FROM custody_holders WHERE tenant_id = $1 ORDER BY asset_id",
                &[&tenant],
            )
            .await
            .map_err(pg)?;
        tx.commit().await?;
        rows.iter()
            .map(|r| {
                Ok(CustodyHolder {
                    asset_id: r.get(0),
                    holder: r.get::<_, Option<Value>>(1).map(op_from).transpose()?,
                    ops: u32::try_from(r.get::<_, i64>(2)).unwrap_or(u32::MAX),
                    updated_at_ms: r.get(3),
                })
            })
            .collect()
    }

    async fn custody_conflicts(
        &self,
        tenant: Uuid,
        include_resolved: bool,
    ) -> Result<Vec<ConflictRecord>, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let rows = tx
            .query(
                &format!("SELECT {CONFLICT_COLUMNS} FROM custody_conflicts WHERE tenant_id = $1 AND ($2 OR resolved_at_ms IS NULL) ORDER BY detected_at_ms, conflict_id"),
                &[&tenant, &include_resolved],
            )
            .await
            .map_err(pg)?;
        tx.commit().await?;
        rows.iter().map(conflict_row).collect()
    }

    async fn resolve_custody_conflict(
        &self,
        tenant: Uuid,
        id: Uuid,
        resolution: ConflictResolution,
    ) -> Result<Option<ConflictRecord>, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        // The row lock makes two resolutions of one conflict take turns.
        let Some(existing) = tx
            .query_opt(
                &format!("SELECT {CONFLICT_COLUMNS} FROM custody_conflicts WHERE tenant_id = $1 AND conflict_id = $2 FOR UPDATE"),
                &[&tenant, &id],
            )
            .await
            .map_err(pg)?
            .map(|r| conflict_row(&r))
            .transpose()?
        else {
            return Ok(None);
        };
        if existing.resolution.is_some() {
            return Err(StorageError::Conflict(
                "this custody conflict is already resolved".into(),
            ));
        }
        tx.execute(
            "UPDATE custody_conflicts SET resolved_at_ms = $3, resolved_by = $4, holder_badge = $5, note = $6 WHERE tenant_id = $1 AND conflict_id = $2",
            &[
                &tenant,
                &id,
                &resolution.resolved_at_ms,
                &resolution.resolved_by,
                &resolution.holder_badge,
                &resolution.note,
            ],
        )
        .await
        .map_err(pg)?;
        let out = conflict_by_id(&tx, tenant, id).await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn index_blob(&self, tenant: Uuid, b: &BlobRecord) -> Result<(), StorageError> {
        let size = i64::try_from(b.size).map_err(|_| StorageError::Invalid("blob size".into()))?;
        let tx = self.tenant_tx(tenant).await?;
        tx.execute(
            "INSERT INTO blobs (tenant_id, sha256, size, content_type, device_id, stored_at_ms) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (tenant_id, sha256) DO NOTHING",
            &[&tenant, &b.sha256, &size, &b.content_type, &b.device_id, &b.stored_at_ms],
        )
        .await
        .map_err(pg)?;
        tx.commit().await
    }

    async fn blob(&self, tenant: Uuid, sha256: &str) -> Result<Option<BlobRecord>, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let row = tx
            .query_opt(
                "SELECT sha256, size, content_type, device_id, stored_at_ms FROM blobs WHERE tenant_id = $1 AND sha256 = $2",
                &[&tenant, &sha256],
            )
            .await
            .map_err(pg)?;
        tx.commit().await?;
        Ok(row.map(|r| BlobRecord {
            sha256: r.get(0),
            size: r.get::<_, i64>(1).max(0) as u64,
            content_type: r.get(2),
            device_id: r.get(3),
            stored_at_ms: r.get(4),
        }))
    }

    async fn gateway_readings(&self, tenant: Uuid) -> Result<Vec<GatewayReadings>, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let rows = tx
            .query(&gateway_readings_sql("$1"), &[&tenant])
            .await
            .map_err(pg)?;
        tx.commit().await?;
        Ok(rows
            .iter()
            .map(|r| GatewayReadings {
                asset_id: r.get(0),
                odometer_km: r.get(1),
                odometer_at_ms: r.get(2),
                fuel_pct: r.get(3),
                fuel_at_ms: r.get(4),
            })
            .collect())
    }
}
