//! The SQLite backend: the embedded default (`DIR/fleet.db`).

mod access;
mod analytics;
mod assets;
mod conn;
mod control;
pub(crate) mod ingest;
mod inspections;
mod kiosk;
mod lease;
mod mail;
mod reservations;
mod row;
mod sessions;
mod stream;

pub use conn::MIGRATIONS;

use crate::storage::{
    now_ms, random_secret, rfc3339_ms, sha256, DeviceRecord, DeviceSummary, DocBytes, DocWrite,
    EnrollDevice, IngestOutcome, LastPosition, NewTenant, NewToken, QuarantinedEvent, Storage,
    StorageError, StoredEvent, VehicleSummary,
};
use async_trait::async_trait;
use conn::{backend, Pool};
use fleet_protocol::{BootId, Priority};
use rusqlite::{params, Connection, OptionalExtension, Row};
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// How often at most the nonce table is pruned.
const NONCE_PRUNE_EVERY_MS: i64 = 60_000;

pub struct SqliteStorage {
    pool: Pool,
    last_nonce_prune_ms: Arc<AtomicI64>,
}

pub(crate) fn blob(id: &Uuid) -> &[u8] {
    id.as_bytes().as_slice()
}

fn uuid_at(r: &Row<'_>, i: usize) -> rusqlite::Result<Uuid> {
    let b: Vec<u8> = r.get(i)?;
    Uuid::from_slice(&b).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Blob, Box::new(e))
    })
}

fn device_row(r: &Row<'_>) -> rusqlite::Result<DeviceRecord> {
    Ok(DeviceRecord {
        tenant_id: uuid_at(r, 0)?,
        device_id: uuid_at(r, 1)?,
        name: r.get(2)?,
        public_key: r.get(3)?,
        revoked: r.get::<_, Option<i64>>(4)?.is_some(),
    })
}

const DEVICE_COLUMNS: &str = "tenant_id, device_id, name, public_key, revoked_at_ms";

impl SqliteStorage {
    /// Opens (creating if needed) the database at `path` and migrates it.
    pub fn open(path: &Path) -> Result<Self, StorageError> {
        Ok(SqliteStorage {
            pool: Pool::open(path)?,
            last_nonce_prune_ms: Arc::new(AtomicI64::new(0)),
        })
    }
}

fn enroll(conn: &mut Connection, req: EnrollDevice) -> Result<DeviceRecord, StorageError> {
    let hash = sha256(req.token.as_bytes());
    let tx = conn.transaction().map_err(backend)?;
    let token: Option<(Uuid, i64, i64)> = tx
        .query_row(
            "SELECT tenant_id, expires_at_ms, uses_left FROM enrollment_tokens WHERE token_hash = ?1",
            params![hash.as_slice()],
            |r| Ok((uuid_at(r, 0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .map_err(backend)?;
    let Some((tenant, expires_at_ms, uses_left)) = token else {
        return Err(StorageError::TokenInvalid);
    };
    let existing = tx
        .query_row(
            &format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE public_key = ?1"),
            params![req.public_key],
            device_row,
        )
        .optional()
        .map_err(backend)?;
    if let Some(dev) = existing {
        return if dev.tenant_id == tenant {
            Ok(dev)
        } else {
            Err(StorageError::KeyInUse)
        };
    }
    if req.now_ms >= expires_at_ms {
        return Err(StorageError::TokenExpired);
    }
    if uses_left <= 0 {
        return Err(StorageError::TokenUsedUp);
    }
    access::check_vehicle_limit(&tx, &tenant)?;
    tx.execute(
        "UPDATE enrollment_tokens SET uses_left = uses_left - 1 WHERE tenant_id = ?1 AND token_hash = ?2",
        params![blob(&tenant), hash.as_slice()],
    )
    .map_err(backend)?;
    let device_id = Uuid::new_v4();
    let name = req
        .name
        .unwrap_or_else(|| format!("device-{}", &device_id.simple().to_string()[..8]));
    tx.execute(
        "INSERT INTO devices (tenant_id, device_id, name, public_key, agent_version, enrolled_at_ms, last_seen_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
        params![blob(&tenant), blob(&device_id), name, req.public_key, req.agent_version, req.now_ms],
    )
    .map_err(backend)?;
    tx.commit().map_err(backend)?;
    Ok(DeviceRecord {
        tenant_id: tenant,
        device_id,
        name,
        public_key: req.public_key,
        revoked: false,
    })
}

fn stored_event(r: &Row<'_>) -> rusqlite::Result<StoredEvent> {
    let prio: u8 = r.get(2)?;
    let boot: Vec<u8> = r.get(5)?;
    let data: String = r.get(10)?;
    let bad = |i: usize, msg: String| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, msg.into())
    };
    Ok(StoredEvent {
        seq: r.get::<_, i64>(0)? as u64,
        kind: r.get(1)?,
        priority: Priority::from_u8(prio).ok_or_else(|| bad(2, format!("priority {prio}")))?,
        time_ms: r.get(3)?,
        time_source: r.get(4)?,
        boot_id: BootId(
            boot.as_slice()
                .try_into()
                .map_err(|_| bad(5, "boot id length".into()))?,
        )
        .to_string(),
        mono_ms: r.get::<_, i64>(6)? as u64,
        wall_ms: r.get(7)?,
        hlc: r.get::<_, i64>(8)? as u64,
        config_version: r.get(9)?,
        data: serde_json::from_str(&data).map_err(|e| bad(10, e.to_string()))?,
    })
}

#[async_trait]
impl Storage for SqliteStorage {
    async fn ping(&self) -> Result<(), StorageError> {
        self.pool
            .read(|c| c.query_row("SELECT 1", [], |_| Ok(())).map_err(backend))
            .await
    }

    fn stream_store(&self) -> Option<&dyn crate::storage::stream::StreamStore> {
        Some(self)
    }

    async fn create_tenant(&self, name: &str) -> Result<NewTenant, StorageError> {
        let name = name.trim().to_owned();
        if name.is_empty() || name.len() > 200 {
            return Err(StorageError::Invalid(
                "tenant name must be 1 to 200 characters".into(),
            ));
        }
        let tenant_id = Uuid::new_v4();
        let api_key = random_secret("fk_");
        let hash = sha256(api_key.as_bytes());
        let prefix = api_key[..11].to_owned();
        self.pool
            .write(move |c| {
                let tx = c.transaction().map_err(backend)?;
                let now = now_ms();
                tx.execute(
                    "INSERT INTO tenants (tenant_id, name, created_at_ms) VALUES (?1, ?2, ?3)",
                    params![blob(&tenant_id), name, now],
                )
                .map_err(backend)?;
                tx.execute(
                    "INSERT INTO access_keys (tenant_id, key_id, key_hash, prefix, name, role, created_at_ms)
                     VALUES (?1, ?2, ?3, ?4, 'tenant admin key', 'admin', ?5)",
                    params![blob(&tenant_id), blob(&Uuid::new_v4()), hash.as_slice(), prefix, now],
                )
                .map_err(backend)?;
                tx.commit().map_err(backend)
            })
            .await?;
        Ok(NewTenant { tenant_id, api_key })
    }

    async fn tenant_for_api_key(&self, api_key: &str) -> Result<Option<Uuid>, StorageError> {
        let hash = sha256(api_key.as_bytes());
        self.pool
            .read(move |c| {
                c.prepare_cached("SELECT tenant_id FROM access_keys WHERE key_hash = ?1 AND revoked_at_ms IS NULL")
                    .map_err(backend)?
                    .query_row(params![hash.as_slice()], |r| uuid_at(r, 0))
                    .optional()
                    .map_err(backend)
            })
            .await
    }

    async fn create_enrollment_token(
        &self,
        tenant: Uuid,
        ttl: Duration,
        uses: u32,
    ) -> Result<NewToken, StorageError> {
        if uses == 0 {
            return Err(StorageError::Invalid(
                "a token needs at least one use".into(),
            ));
        }
        let ttl_ms = i64::try_from(ttl.as_millis())
            .map_err(|_| StorageError::Invalid("ttl is too long".into()))?;
        let token = random_secret("fe_");
        let hash = sha256(token.as_bytes());
        let now = now_ms();
        let expires_at_ms = now
            .checked_add(ttl_ms)
            .ok_or_else(|| StorageError::Invalid("ttl is too long".into()))?;
        self.pool
            .write(move |c| {
                let tx = c.transaction().map_err(backend)?;
                let known: bool = tx
                    .query_row("SELECT 1 FROM tenants WHERE tenant_id = ?1", params![blob(&tenant)], |_| Ok(()))
                    .optional()
                    .map_err(backend)?
                    .is_some();
                if !known {
                    return Err(StorageError::UnknownTenant);
                }
                tx.execute(
                    "INSERT INTO enrollment_tokens (tenant_id, token_hash, expires_at_ms, uses_left, created_at_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![blob(&tenant), hash.as_slice(), expires_at_ms, uses, now],
                )
                .map_err(backend)?;
                tx.commit().map_err(backend)
            })
            .await?;
        Ok(NewToken {
            token,
            expires_at: rfc3339_ms(expires_at_ms),
        })
    }

    async fn enroll_device(&self, req: EnrollDevice) -> Result<DeviceRecord, StorageError> {
        self.pool.write(move |c| enroll(c, req)).await
    }

    async fn device(&self, device_id: Uuid) -> Result<Option<DeviceRecord>, StorageError> {
        self.pool
            .read(move |c| {
                c.prepare_cached(&format!(
                    "SELECT {DEVICE_COLUMNS} FROM devices WHERE device_id = ?1"
                ))
                .map_err(backend)?
                .query_row(params![blob(&device_id)], device_row)
                .optional()
                .map_err(backend)
            })
            .await
    }

    async fn revoke_device(
        &self,
        device_id: Uuid,
        now_ms: i64,
    ) -> Result<DeviceRecord, StorageError> {
        self.pool
            .write(move |c| {
                let tx = c.transaction().map_err(backend)?;
                tx.execute(
                    "UPDATE devices SET revoked_at_ms = coalesce(revoked_at_ms, ?2) WHERE device_id = ?1",
                    params![blob(&device_id), now_ms],
                )
                .map_err(backend)?;
                let dev = tx
                    .query_row(&format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE device_id = ?1"), params![blob(&device_id)], device_row)
                    .optional()
                    .map_err(backend)?
                    .ok_or(StorageError::UnknownDevice)?;
                tx.commit().map_err(backend)?;
                Ok(dev)
            })
            .await
    }

    async fn accept_nonce(
        &self,
        device: &DeviceRecord,
        nonce: &str,
        ts_ms: i64,
        now_ms: i64,
        keep_after_ms: i64,
    ) -> Result<(), StorageError> {
        let (t, d, nonce) = (device.tenant_id, device.device_id, nonce.to_owned());
        let last = self.last_nonce_prune_ms.load(Ordering::Relaxed);
        let prune = now_ms - last >= NONCE_PRUNE_EVERY_MS;
        if prune {
            self.last_nonce_prune_ms.store(now_ms, Ordering::Relaxed);
        }
        self.pool
            .write(move |c| {
                let tx = c.transaction().map_err(backend)?;
                if prune {
                    let n = tx.execute("DELETE FROM request_nonces WHERE ts_ms < ?1", params![keep_after_ms]).map_err(backend)?;
                    tracing::debug!(pruned = n, "pruned request nonces");
                }
                let revoked: Option<Option<i64>> = tx
                    .prepare_cached("SELECT revoked_at_ms FROM devices WHERE tenant_id = ?1 AND device_id = ?2")
                    .map_err(backend)?
                    .query_row(params![blob(&t), blob(&d)], |r| r.get(0))
                    .optional()
                    .map_err(backend)?;
                match revoked {
                    None => return Err(StorageError::UnknownDevice),
                    Some(Some(_)) => return Err(StorageError::DeviceRevoked),
                    Some(None) => {}
                }
                let n = tx
                    .prepare_cached("INSERT OR IGNORE INTO request_nonces (tenant_id, device_id, nonce, ts_ms) VALUES (?1, ?2, ?3, ?4)")
                    .map_err(backend)?
                    .execute(params![blob(&t), blob(&d), nonce, ts_ms])
                    .map_err(backend)?;
                if n == 0 {
                    return Err(StorageError::Replayed);
                }
                tx.prepare_cached("UPDATE devices SET last_seen_ms = max(coalesce(last_seen_ms, 0), ?3) WHERE tenant_id = ?1 AND device_id = ?2")
                    .map_err(backend)?
                    .execute(params![blob(&t), blob(&d), now_ms])
                    .map_err(backend)?;
                tx.commit().map_err(backend)
            })
            .await
    }

    async fn ingest_batch(
        &self,
        device: &DeviceRecord,
        batch: fleet_protocol::Batch,
        now_ms: i64,
    ) -> Result<IngestOutcome, StorageError> {
        let device = device.clone();
        self.pool
            .write(move |c| ingest::ingest(c, &device, batch, now_ms))
            .await
    }

    async fn set_device_kind(
        &self,
        tenant: Uuid,
        device_id: Uuid,
        kind: fleet_protocol::api::DeviceKind,
    ) -> Result<(), StorageError> {
        self.pool
            .write(move |c| {
                let n = c
                    .prepare_cached(
                        "UPDATE devices SET kind = ?3 WHERE tenant_id = ?1 AND device_id = ?2",
                    )
                    .map_err(backend)?
                    .execute(params![blob(&tenant), blob(&device_id), kind.as_str()])
                    .map_err(backend)?;
                if n == 0 {
                    return Err(StorageError::UnknownDevice);
                }
                Ok(())
            })
            .await
    }

    async fn list_devices(&self, tenant: Uuid) -> Result<Vec<DeviceSummary>, StorageError> {
        self.pool
            .read(move |c| {
                let mut q = c
                    .prepare_cached(
                        "SELECT device_id, name, enrolled_at_ms, last_seen_ms, acked_seq, event_count, evicted_count, quarantined_count, revoked_at_ms, kind
                         FROM devices WHERE tenant_id = ?1 ORDER BY name, device_id",
                    )
                    .map_err(backend)?;
                let rows = q
                    .query_map(params![blob(&tenant)], |r| {
                        Ok(DeviceSummary {
                            id: uuid_at(r, 0)?,
                            name: r.get(1)?,
                            enrolled_at_ms: r.get(2)?,
                            last_seen_ms: r.get(3)?,
                            last_seq: r.get::<_, i64>(4)? as u64,
                            event_count: r.get::<_, i64>(5)? as u64,
                            evicted_count: r.get::<_, i64>(6)? as u64,
                            quarantined_count: r.get::<_, i64>(7)? as u64,
                            revoked: r.get::<_, Option<i64>>(8)?.is_some(),
                            kind: device_kind(&r.get::<_, String>(9)?),
                        })
                    })
                    .map_err(backend)?;
                rows.collect::<Result<Vec<_>, _>>().map_err(backend)
            })
            .await
    }

    async fn device_events(
        &self,
        tenant: Uuid,
        device: Uuid,
        after_seq: u64,
        limit: u32,
    ) -> Result<Option<Vec<StoredEvent>>, StorageError> {
        let after = i64::try_from(after_seq).unwrap_or(i64::MAX);
        self.pool
            .read(move |c| {
                let known = c
                    .prepare_cached("SELECT 1 FROM devices WHERE tenant_id = ?1 AND device_id = ?2")
                    .map_err(backend)?
                    .query_row(params![blob(&tenant), blob(&device)], |_| Ok(()))
                    .optional()
                    .map_err(backend)?
                    .is_some();
                if !known {
                    return Ok(None);
                }
                let mut q = c
                    .prepare_cached(
                        "SELECT seq, kind, priority, time_ms, time_source, boot_id, mono_ms, wall_ms, hlc, config_version, data
                         FROM events WHERE tenant_id = ?1 AND device_id = ?2 AND seq > ?3 ORDER BY seq LIMIT ?4",
                    )
                    .map_err(backend)?;
                let rows = q.query_map(params![blob(&tenant), blob(&device), after, limit], stored_event).map_err(backend)?;
                rows.collect::<Result<Vec<_>, _>>().map(Some).map_err(|e| StorageError::Corrupt(e.to_string()))
            })
            .await
    }

    async fn list_vehicles(&self, tenant: Uuid) -> Result<Vec<VehicleSummary>, StorageError> {
        self.pool
            .read(move |c| {
                let mut q = c
                    .prepare_cached(
                        "SELECT d.device_id, d.name, d.last_seen_ms, d.revoked_at_ms,
                                p.seq, p.lat_e7, p.lon_e7, p.speed_cms, p.heading_cdeg, p.time_ms, p.time_source
                         FROM devices d LEFT JOIN vehicle_positions p ON p.tenant_id = d.tenant_id AND p.device_id = d.device_id
                         WHERE d.tenant_id = ?1 AND d.kind = 'vehicle' ORDER BY d.name, d.device_id",
                    )
                    .map_err(backend)?;
                let rows = q
                    .query_map(params![blob(&tenant)], |r| {
                        let position = match r.get::<_, Option<i64>>(4)? {
                            None => None,
                            Some(seq) => Some(LastPosition {
                                seq: seq as u64,
                                lat: f64::from(r.get::<_, i32>(5)?) / 1e7,
                                lon: f64::from(r.get::<_, i32>(6)?) / 1e7,
                                speed_mps: r.get::<_, Option<u32>>(7)?.map(|s| f64::from(s) / 100.0),
                                heading_deg: r.get::<_, Option<u16>>(8)?.map(|h| f64::from(h) / 100.0),
                                time_ms: r.get(9)?,
                                time_source: r.get(10)?,
                            }),
                        };
                        Ok(VehicleSummary {
                            id: uuid_at(r, 0)?,
                            name: r.get(1)?,
                            last_seen_ms: r.get(2)?,
                            revoked: r.get::<_, Option<i64>>(3)?.is_some(),
                            position,
                        })
                    })
                    .map_err(backend)?;
                rows.collect::<Result<Vec<_>, _>>().map_err(backend)
            })
            .await
    }

    async fn list_quarantine(
        &self,
        tenant: Uuid,
        limit: u32,
    ) -> Result<Vec<QuarantinedEvent>, StorageError> {
        self.pool
            .read(move |c| {
                let mut q = c
                    .prepare_cached(
                        "SELECT device_id, seq, kind, reason_code, reason, raw, received_at_ms FROM quarantine
                         WHERE tenant_id = ?1 ORDER BY received_at_ms DESC, device_id, seq LIMIT ?2",
                    )
                    .map_err(backend)?;
                let rows = q
                    .query_map(params![blob(&tenant), limit], |r| {
                        let raw: String = r.get(5)?;
                        Ok(QuarantinedEvent {
                            device_id: uuid_at(r, 0)?,
                            seq: r.get::<_, i64>(1)? as u64,
                            kind: r.get(2)?,
                            reason_code: r.get(3)?,
                            reason: r.get(4)?,
                            raw: serde_json::from_str(&raw).unwrap_or(serde_json::Value::String(raw)),
                            received_at_ms: r.get(6)?,
                        })
                    })
                    .map_err(backend)?;
                rows.collect::<Result<Vec<_>, _>>().map_err(backend)
            })
            .await
    }

    async fn load_doc(&self, tenant: Uuid, doc_id: &str) -> Result<Option<DocBytes>, StorageError> {
        let doc_id = doc_id.to_owned();
        self.pool
            .read(move |c| {
                let mut q = c
                    .prepare_cached("SELECT bytes FROM doc_chunks WHERE tenant_id = ?1 AND doc_id = ?2 ORDER BY chunk_no")
                    .map_err(backend)?;
                let mut rows = q.query(params![blob(&tenant), doc_id]).map_err(backend)?;
                let mut doc = DocBytes { bytes: Vec::new(), chunks: 0 };
                while let Some(r) = rows.next().map_err(backend)? {
                    let b: Vec<u8> = r.get(0).map_err(backend)?;
                    doc.bytes.extend_from_slice(&b);
                    doc.chunks += 1;
                }
                Ok((doc.chunks > 0).then_some(doc))
            })
            .await
    }

    async fn doc_sync_state(
        &self,
        tenant: Uuid,
        doc_id: &str,
        device: Uuid,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        let doc_id = doc_id.to_owned();
        self.pool
            .read(move |c| {
                c.prepare_cached("SELECT state FROM doc_sync_states WHERE tenant_id = ?1 AND doc_id = ?2 AND device_id = ?3")
                    .map_err(backend)?
                    .query_row(params![blob(&tenant), doc_id, blob(&device)], |r| r.get(0))
                    .optional()
                    .map_err(backend)
            })
            .await
    }

    async fn save_doc(
        &self,
        tenant: Uuid,
        doc_id: &str,
        write: Option<DocWrite>,
        sync_state: Option<(Uuid, Vec<u8>)>,
        now_ms: i64,
    ) -> Result<(), StorageError> {
        let doc_id = doc_id.to_owned();
        self.pool
            .write(move |c| {
                let tx = c.transaction().map_err(backend)?;
                let t = blob(&tenant);
                match write {
                    Some(DocWrite::Append(bytes)) if !bytes.is_empty() => {
                        tx.execute(
                            "INSERT INTO doc_chunks (tenant_id, doc_id, chunk_no, bytes)
                             VALUES (?1, ?2, (SELECT coalesce(max(chunk_no), 0) + 1 FROM doc_chunks WHERE tenant_id = ?1 AND doc_id = ?2), ?3)",
                            params![t, doc_id, bytes],
                        )
                        .map_err(backend)?;
                    }
                    Some(DocWrite::Replace(bytes)) => {
                        tx.execute("DELETE FROM doc_chunks WHERE tenant_id = ?1 AND doc_id = ?2", params![t, doc_id]).map_err(backend)?;
                        tx.execute("INSERT INTO doc_chunks (tenant_id, doc_id, chunk_no, bytes) VALUES (?1, ?2, 1, ?3)", params![t, doc_id, bytes])
                            .map_err(backend)?;
                    }
                    _ => {}
                }
                if let Some((device, state)) = sync_state {
                    tx.execute(
                        "INSERT INTO doc_sync_states (tenant_id, doc_id, device_id, state, updated_at_ms) VALUES (?1, ?2, ?3, ?4, ?5)
                         ON CONFLICT (tenant_id, doc_id, device_id) DO UPDATE SET state = excluded.state, updated_at_ms = excluded.updated_at_ms",
                        params![t, doc_id, blob(&device), state, now_ms],
                    )
                    .map_err(backend)?;
                }
                tx.commit().map_err(backend)
            })
            .await
    }
}

#[cfg(test)]
mod conformance {
    async fn fresh() -> (
        std::sync::Arc<dyn crate::storage::Storage>,
        tempfile::TempDir,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let storage = super::SqliteStorage::open(&dir.path().join("fleet.db")).unwrap();
        (std::sync::Arc::new(storage), dir)
    }

    crate::conformance_suite!(fresh());
    crate::conformance_access_suite!(fresh());
    crate::conformance_stream_suite!(fresh());
    crate::conformance_control_suite!(fresh());
    crate::conformance_kiosk_suite!(fresh());
    crate::conformance_reservations_suite!(fresh());
    crate::conformance_analytics_suite!(fresh());
    crate::conformance_inspections_suite!(fresh());
    crate::conformance_assets_suite!(fresh());
    crate::conformance_sessions_suite!(fresh());
    crate::conformance_mail_suite!(fresh());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_from_a_newer_binary_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fleet.db");
        drop(SqliteStorage::open(&path).unwrap());
        let c = Connection::open(&path).unwrap();
        c.execute(
            "INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES (9999, 'future', 0)",
            [],
        )
        .unwrap();
        drop(c);
        let err = SqliteStorage::open(&path).err().unwrap();
        assert!(
            matches!(err, StorageError::SchemaTooNew { found: 9999, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("newer than this binary"));
    }

    #[test]
    fn a_counted_schema_beyond_the_first_release_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fleet.db");
        let c = Connection::open(&path).unwrap();
        c.pragma_update(None, "user_version", 2).unwrap();
        drop(c);
        let err = SqliteStorage::open(&path).err().unwrap();
        assert!(
            matches!(err, StorageError::SchemaTooNew { found: 2, .. }),
            "{err}"
        );
    }

    #[test]
    fn reopening_a_migrated_database_records_every_migration_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fleet.db");
        drop(SqliteStorage::open(&path).unwrap());
        drop(SqliteStorage::open(&path).unwrap());
        let c = Connection::open(&path).unwrap();
        let mut q = c
            .prepare("SELECT version FROM schema_migrations ORDER BY version")
            .unwrap();
        let applied: Vec<u32> = q
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let mut known: Vec<u32> = MIGRATIONS.iter().map(|m| m.version).collect();
        known.sort_unstable();
        assert_eq!(applied, known);
    }
}

/// A stored device kind; the CHECK of migration 0013 allows nothing else, so
/// anything unreadable counts as a vehicle.
fn device_kind(s: &str) -> fleet_protocol::api::DeviceKind {
    fleet_protocol::api::DeviceKind::parse(s).unwrap_or_default()
}
