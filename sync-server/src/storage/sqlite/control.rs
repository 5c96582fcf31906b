//! [`ControlStore`] on SQLite.

use super::conn::backend;
use super::{blob, uuid_at, SqliteStorage};
use crate::rollout::{Plan, RolloutState};
use crate::storage::control::{
    AttemptOutcome, ControlStore, DeliveryRecord, DeviceGroup, DeviceRegistry, DueDelivery,
    IssuedToken, MemberHealth, RolloutRecord, RolloutStep, SilentDevice, StoredStatus, TokenInfo,
    Webhook,
};
use crate::storage::{random_secret, sha256, StorageError};
use async_trait::async_trait;
use fleet_protocol::control::{ConfigApplyError, HardwareStatus, StatusReport};
use rusqlite::{params, Connection, OptionalExtension, Row};
use std::time::Duration;
use uuid::Uuid;

fn json_col<T: serde::de::DeserializeOwned>(r: &Row<'_>, i: usize) -> rusqlite::Result<T> {
    let s: String = r.get(i)?;
    serde_json::from_str(&s).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn u32_col(r: &Row<'_>, i: usize) -> rusqlite::Result<u32> {
    let v: i64 = r.get(i)?;
    u32::try_from(v).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Integer, Box::new(e))
    })
}

fn opt_bool(r: &Row<'_>, i: usize) -> rusqlite::Result<Option<bool>> {
    Ok(r.get::<_, Option<i64>>(i)?.map(|v| v != 0))
}

const TOKEN_COLUMNS: &str = "token_hash, uses_left, uses_total, expires_at_ms, created_at_ms";

fn token_row(r: &Row<'_>) -> rusqlite::Result<TokenInfo> {
    let hash: Vec<u8> = r.get(0)?;
    Ok(TokenInfo {
        id: hex::encode(hash),
        uses_left: u32_col(r, 1)?,
        uses_total: r
            .get::<_, Option<i64>>(2)?
            .map(|v| u32::try_from(v).unwrap_or(0)),
        expires_at_ms: r.get(3)?,
        created_at_ms: r.get(4)?,
    })
}

const STATUS_COLUMNS: &str = "reported_at_ms, agent_version, queue_depth, oldest_unsynced_ms, \
     disk_used_bytes, disk_budget_bytes, clock_offset_ms, evictions, config_version, \
     config_error_version, config_error, can_up, gps_fix, camera";

/// A status row from column `at` on.
fn status_at(r: &Row<'_>, at: usize) -> rusqlite::Result<StoredStatus> {
    let u = |i: usize| -> rusqlite::Result<u64> { Ok(r.get::<_, i64>(at + i)?.max(0) as u64) };
    let error_version: Option<i64> = r.get(at + 9)?;
    let error: Option<String> = r.get(at + 10)?;
    Ok(StoredStatus {
        reported_at_ms: r.get(at)?,
        report: StatusReport {
            agent_version: r.get(at + 1)?,
            queue_depth: u(2)?,
            oldest_unsynced_ms: r.get(at + 3)?,
            disk_used_bytes: u(4)?,
            disk_budget_bytes: u(5)?,
            clock_offset_ms: r.get(at + 6)?,
            evictions: u(7)?,
            config_version: u32_col(r, at + 8)?,
            config_error: match (error_version, error) {
                (Some(v), Some(message)) => Some(ConfigApplyError {
                    version: u32::try_from(v).unwrap_or(0),
                    message,
                }),
                _ => None,
            },
            hardware: HardwareStatus {
                can_up: opt_bool(r, at + 11)?,
                gps_fix: opt_bool(r, at + 12)?,
                camera: opt_bool(r, at + 13)?,
            },
        },
    })
}

fn group_members(c: &Connection, tenant: Uuid, group: Uuid) -> Result<Vec<Uuid>, StorageError> {
    let mut stmt = c
        .prepare_cached(
            "SELECT device_id FROM device_group_members WHERE tenant_id = ?1 AND group_id = ?2 ORDER BY device_id",
        )
        .map_err(backend)?;
    let rows = stmt
        .query_map(params![blob(&tenant), blob(&group)], |r| uuid_at(r, 0))
        .map_err(backend)?;
    rows.collect::<rusqlite::Result<Vec<_>>>().map_err(backend)
}

fn load_group(
    c: &Connection,
    tenant: Uuid,
    group: Uuid,
) -> Result<Option<DeviceGroup>, StorageError> {
    let head = c
        .query_row(
            "SELECT name, created_at_ms FROM device_groups WHERE tenant_id = ?1 AND group_id = ?2",
            params![blob(&tenant), blob(&group)],
            |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)),
        )
        .optional()
        .map_err(backend)?;
    let Some((name, created_at_ms)) = head else {
        return Ok(None);
    };
    Ok(Some(DeviceGroup {
        id: group,
        name,
        created_at_ms,
        devices: group_members(c, tenant, group)?,
    }))
}

const ROLLOUT_COLUMNS: &str = "group_id, version, previous_version, stages, min_soak_ms, \
     failure_threshold, state, stage, stage_started_at_ms, reason, updated_at_ms, silent_after_ms";

fn rollout_row(r: &Row<'_>) -> rusqlite::Result<RolloutRecord> {
    let state: String = r.get(6)?;
    let state = match state.as_str() {
        "rolling" => RolloutState::Rolling {
            stage: r.get::<_, i64>(7)?.max(0) as usize,
            stage_started_ms: r.get(8)?,
        },
        "completed" => RolloutState::Completed,
        "aborted" => RolloutState::Aborted,
        _ => RolloutState::Superseded,
    };
    Ok(RolloutRecord {
        group_id: uuid_at(r, 0)?,
        version: u32_col(r, 1)?,
        previous_version: u32_col(r, 2)?,
        plan: Plan {
            stages: json_col(r, 3)?,
            min_soak_ms: r.get(4)?,
            failure_threshold: r.get(5)?,
            silent_after_ms: r.get(11)?,
        },
        state,
        reason: r.get(9)?,
        updated_at_ms: r.get(10)?,
    })
}

fn state_columns(s: &RolloutState) -> (&'static str, i64, Option<i64>) {
    match s {
        RolloutState::Rolling {
            stage,
            stage_started_ms,
        } => ("rolling", *stage as i64, Some(*stage_started_ms)),
        other => (other.name(), 0, None),
    }
}

const WEBHOOK_COLUMNS: &str = "webhook_id, url, kinds, format, created_at_ms";

fn webhook_row(r: &Row<'_>) -> rusqlite::Result<Webhook> {
    Ok(Webhook {
        id: uuid_at(r, 0)?,
        url: r.get(1)?,
        kinds: json_col(r, 2)?,
        format: r.get(3)?,
        created_at_ms: r.get(4)?,
    })
}

#[async_trait]
impl ControlStore for SqliteStorage {
    async fn issue_token(
        &self,
        tenant: Uuid,
        ttl: Duration,
        uses: u32,
        now_ms: i64,
    ) -> Result<IssuedToken, StorageError> {
        if uses == 0 {
            return Err(StorageError::Invalid(
                "a token needs at least one use".into(),
            ));
        }
        let expires_at_ms = i64::try_from(ttl.as_millis())
            .ok()
            .and_then(|ms| now_ms.checked_add(ms))
            .ok_or_else(|| StorageError::Invalid("ttl is too long".into()))?;
        let token = random_secret("fe_");
        let hash = sha256(token.as_bytes());
        self.pool
            .write(move |c| {
                let tx = c.transaction().map_err(backend)?;
                let known = tx
                    .query_row(
                        "SELECT 1 FROM tenants WHERE tenant_id = ?1",
                        params![blob(&tenant)],
                        |_| Ok(()),
                    )
                    .optional()
                    .map_err(backend)?
                    .is_some();
                if !known {
                    return Err(StorageError::UnknownTenant);
                }
                tx.execute(
                    "INSERT INTO enrollment_tokens (tenant_id, token_hash, expires_at_ms, uses_left, uses_total, created_at_ms) VALUES (?1, ?2, ?3, ?4, ?4, ?5)",
                    params![blob(&tenant), hash.as_slice(), expires_at_ms, uses, now_ms],
                )
                .map_err(backend)?;
                tx.commit().map_err(backend)
            })
            .await?;
        Ok(IssuedToken {
            token,
            info: TokenInfo {
                id: hex::encode(hash),
                uses_left: uses,
                uses_total: Some(uses),
                expires_at_ms,
                created_at_ms: now_ms,
            },
        })
    }

    async fn list_tokens(&self, tenant: Uuid) -> Result<Vec<TokenInfo>, StorageError> {
        self.pool
            .read(move |c| {
                let mut stmt = c
                    .prepare_cached(&format!(
                        "SELECT {TOKEN_COLUMNS} FROM enrollment_tokens WHERE tenant_id = ?1 ORDER BY created_at_ms, token_hash"
                    ))
                    .map_err(backend)?;
                let rows = stmt
                    .query_map(params![blob(&tenant)], token_row)
                    .map_err(backend)?;
                rows.collect::<rusqlite::Result<Vec<_>>>().map_err(backend)
            })
            .await
    }

    async fn revoke_token(&self, tenant: Uuid, id: &str) -> Result<bool, StorageError> {
        let Ok(hash) = hex::decode(id) else {
            return Ok(false);
        };
        self.pool
            .write(move |c| {
                let n = c
                    .execute(
                        "DELETE FROM enrollment_tokens WHERE tenant_id = ?1 AND token_hash = ?2",
                        params![blob(&tenant), hash],
                    )
                    .map_err(backend)?;
                Ok(n > 0)
            })
            .await
    }

    async fn device_registry(
        &self,
        tenant: Uuid,
        device: Uuid,
    ) -> Result<Option<DeviceRegistry>, StorageError> {
        self.pool
            .read(move |c| {
                let sql = format!(
                    "SELECT d.device_id, d.name, d.enrolled_at_ms, d.revoked_at_ms, d.last_seen_ms, d.agent_version, \
                     m.group_id, s.reported_at_ms IS NOT NULL, {} \
                     FROM devices d \
                     LEFT JOIN device_group_members m ON m.tenant_id = d.tenant_id AND m.device_id = d.device_id \
                     LEFT JOIN device_status s ON s.tenant_id = d.tenant_id AND s.device_id = d.device_id \
                     WHERE d.tenant_id = ?1 AND d.device_id = ?2",
                    STATUS_COLUMNS
                        .split(", ")
                        .map(|col| format!("s.{}", col.trim()))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                c.query_row(&sql, params![blob(&tenant), blob(&device)], |r| {
                    let group: Option<Vec<u8>> = r.get(6)?;
                    let has_status: bool = r.get(7)?;
                    Ok(DeviceRegistry {
                        id: uuid_at(r, 0)?,
                        name: r.get(1)?,
                        enrolled_at_ms: r.get(2)?,
                        revoked_at_ms: r.get(3)?,
                        last_seen_ms: r.get(4)?,
                        enrolled_agent_version: r.get(5)?,
                        group_id: group.and_then(|b| Uuid::from_slice(&b).ok()),
                        status: if has_status {
                            Some(status_at(r, 8)?)
                        } else {
                            None
                        },
                    })
                })
                .optional()
                .map_err(backend)
            })
            .await
    }

    async fn put_status(
        &self,
        tenant: Uuid,
        device: Uuid,
        report: &StatusReport,
        now_ms: i64,
    ) -> Result<bool, StorageError> {
        let report = report.clone();
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.pool
            .write(move |c| {
                let tx = c.transaction().map_err(backend)?;
                let before = tx
                    .query_row(
                        &format!("SELECT {STATUS_COLUMNS} FROM device_status WHERE tenant_id = ?1 AND device_id = ?2"),
                        params![blob(&tenant), blob(&device)],
                        |r| status_at(r, 0),
                    )
                    .optional()
                    .map_err(backend)?;
                let hw = report.hardware;
                let b = |v: Option<bool>| v.map(i64::from);
                tx.execute(
                    &format!(
                        "INSERT OR REPLACE INTO device_status (tenant_id, device_id, {STATUS_COLUMNS}) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"
                    ),
                    params![
                        blob(&tenant),
                        blob(&device),
                        now_ms,
                        report.agent_version,
                        clamp(report.queue_depth),
                        report.oldest_unsynced_ms,
                        clamp(report.disk_used_bytes),
                        clamp(report.disk_budget_bytes),
                        report.clock_offset_ms,
                        clamp(report.evictions),
                        report.config_version,
                        report.config_error.as_ref().map(|e| e.version),
                        report.config_error.as_ref().map(|e| e.message.clone()),
                        b(hw.can_up),
                        b(hw.gps_fix),
                        b(hw.camera),
                    ],
                )
                .map_err(backend)?;
                tx.commit().map_err(backend)?;
                Ok(before.is_none_or(|s| s.report != report))
            })
            .await
    }

    async fn create_group(
        &self,
        tenant: Uuid,
        name: &str,
        now_ms: i64,
    ) -> Result<DeviceGroup, StorageError> {
        let name = name.to_owned();
        let id = Uuid::new_v4();
        self.pool
            .write(move |c| {
                let taken = c
                    .query_row(
                        "SELECT 1 FROM device_groups WHERE tenant_id = ?1 AND name = ?2",
                        params![blob(&tenant), name],
                        |_| Ok(()),
                    )
                    .optional()
                    .map_err(backend)?
                    .is_some();
                if taken {
                    return Err(StorageError::Invalid(format!(
                        "a device group named {name:?} already exists"
                    )));
                }
                c.execute(
                    "INSERT INTO device_groups (tenant_id, group_id, name, created_at_ms) VALUES (?1, ?2, ?3, ?4)",
                    params![blob(&tenant), blob(&id), name, now_ms],
                )
                .map_err(backend)?;
                Ok(DeviceGroup {
                    id,
                    name,
                    created_at_ms: now_ms,
                    devices: Vec::new(),
                })
            })
            .await
    }

    async fn list_groups(&self, tenant: Uuid) -> Result<Vec<DeviceGroup>, StorageError> {
        self.pool
            .read(move |c| {
                let ids: Vec<Uuid> = {
                    let mut stmt = c
                        .prepare_cached(
                            "SELECT group_id FROM device_groups WHERE tenant_id = ?1 ORDER BY name",
                        )
                        .map_err(backend)?;
                    let rows = stmt
                        .query_map(params![blob(&tenant)], |r| uuid_at(r, 0))
                        .map_err(backend)?;
                    rows.collect::<rusqlite::Result<_>>().map_err(backend)?
                };
                let mut out = Vec::with_capacity(ids.len());
                for id in ids {
                    out.extend(load_group(c, tenant, id)?);
                }
                Ok(out)
            })
            .await
    }

    async fn group(&self, tenant: Uuid, group: Uuid) -> Result<Option<DeviceGroup>, StorageError> {
        self.pool.read(move |c| load_group(c, tenant, group)).await
    }

    async fn assign_devices(
        &self,
        tenant: Uuid,
        group: Uuid,
        devices: &[Uuid],
    ) -> Result<DeviceGroup, StorageError> {
        let devices = devices.to_vec();
        self.pool
            .write(move |c| {
                let tx = c.transaction().map_err(backend)?;
                if load_group(&tx, tenant, group)?.is_none() {
                    return Err(StorageError::Invalid("no such device group".into()));
                }
                for d in &devices {
                    let known = tx
                        .query_row(
                            "SELECT 1 FROM devices WHERE tenant_id = ?1 AND device_id = ?2",
                            params![blob(&tenant), blob(d)],
                            |_| Ok(()),
                        )
                        .optional()
                        .map_err(backend)?
                        .is_some();
                    if !known {
                        return Err(StorageError::UnknownDevice);
                    }
                    tx.execute(
                        "INSERT OR REPLACE INTO device_group_members (tenant_id, device_id, group_id) VALUES (?1, ?2, ?3)",
                        params![blob(&tenant), blob(d), blob(&group)],
                    )
                    .map_err(backend)?;
                }
                let out = load_group(&tx, tenant, group)?
                    .ok_or_else(|| StorageError::Backend("group vanished".into()))?;
                tx.commit().map_err(backend)?;
                Ok(out)
            })
            .await
    }

    async fn device_group(&self, tenant: Uuid, device: Uuid) -> Result<Option<Uuid>, StorageError> {
        self.pool
            .read(move |c| {
                c.query_row(
                    "SELECT group_id FROM device_group_members WHERE tenant_id = ?1 AND device_id = ?2",
                    params![blob(&tenant), blob(&device)],
                    |r| uuid_at(r, 0),
                )
                .optional()
                .map_err(backend)
            })
            .await
    }

    async fn create_config(
        &self,
        tenant: Uuid,
        group: Uuid,
        document: &serde_json::Value,
        plan: &Plan,
        now_ms: i64,
    ) -> Result<RolloutRecord, StorageError> {
        let document = document.to_string();
        let plan = plan.clone();
        self.pool
            .write(move |c| {
                let tx = c.transaction().map_err(backend)?;
                if load_group(&tx, tenant, group)?.is_none() {
                    return Err(StorageError::Invalid("no such device group".into()));
                }
                let latest: Option<RolloutRecord> = tx
                    .query_row(
                        &format!("SELECT {ROLLOUT_COLUMNS} FROM config_rollouts WHERE tenant_id = ?1 AND group_id = ?2 ORDER BY version DESC LIMIT 1"),
                        params![blob(&tenant), blob(&group)],
                        rollout_row,
                    )
                    .optional()
                    .map_err(backend)?;
                // What everyone not yet offered the new version keeps running.
                let previous = match &latest {
                    None => 0,
                    Some(r) => match r.state {
                        RolloutState::Completed | RolloutState::Superseded => r.version,
                        RolloutState::Aborted | RolloutState::Rolling { .. } => r.previous_version,
                    },
                };
                let version = latest.as_ref().map_or(0, |r| r.version) + 1;
                if let Some(r) = &latest {
                    if matches!(r.state, RolloutState::Rolling { .. }) {
                        tx.execute(
                            "UPDATE config_rollouts SET state = 'superseded', reason = ?4, updated_at_ms = ?5 WHERE tenant_id = ?1 AND group_id = ?2 AND version = ?3",
                            params![blob(&tenant), blob(&group), r.version, format!("replaced by version {version}"), now_ms],
                        )
                        .map_err(backend)?;
                    }
                }
                tx.execute(
                    "INSERT INTO config_versions (tenant_id, group_id, version, document, created_at_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![blob(&tenant), blob(&group), version, document, now_ms],
                )
                .map_err(backend)?;
                let stages = serde_json::to_string(&plan.stages)
                    .map_err(|e| StorageError::Backend(e.to_string()))?;
                tx.execute(
                    "INSERT INTO config_rollouts (tenant_id, group_id, version, previous_version, stages, min_soak_ms, failure_threshold, silent_after_ms, state, stage, stage_started_at_ms, updated_at_ms) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'rolling', 0, ?9, ?9)",
                    params![blob(&tenant), blob(&group), version, previous, stages, plan.min_soak_ms, plan.failure_threshold, plan.silent_after_ms, now_ms],
                )
                .map_err(backend)?;
                tx.commit().map_err(backend)?;
                Ok(RolloutRecord {
                    group_id: group,
                    version,
                    previous_version: previous,
                    plan,
                    state: RolloutState::Rolling {
                        stage: 0,
                        stage_started_ms: now_ms,
                    },
                    reason: None,
                    updated_at_ms: now_ms,
                })
            })
            .await
    }

    async fn config_document(
        &self,
        tenant: Uuid,
        group: Uuid,
        version: u32,
    ) -> Result<Option<serde_json::Value>, StorageError> {
        self.pool
            .read(move |c| {
                c.query_row(
                    "SELECT document FROM config_versions WHERE tenant_id = ?1 AND group_id = ?2 AND version = ?3",
                    params![blob(&tenant), blob(&group), version],
                    |r| json_col(r, 0),
                )
                .optional()
                .map_err(backend)
            })
            .await
    }

    async fn current_rollout(
        &self,
        tenant: Uuid,
        group: Uuid,
    ) -> Result<Option<RolloutRecord>, StorageError> {
        self.pool
            .read(move |c| {
                c.query_row(
                    &format!("SELECT {ROLLOUT_COLUMNS} FROM config_rollouts WHERE tenant_id = ?1 AND group_id = ?2 ORDER BY version DESC LIMIT 1"),
                    params![blob(&tenant), blob(&group)],
                    rollout_row,
                )
                .optional()
                .map_err(backend)
            })
            .await
    }

    async fn list_rollouts(
        &self,
        tenant: Uuid,
        group: Uuid,
    ) -> Result<Vec<RolloutRecord>, StorageError> {
        self.pool
            .read(move |c| {
                let mut stmt = c
                    .prepare_cached(&format!("SELECT {ROLLOUT_COLUMNS} FROM config_rollouts WHERE tenant_id = ?1 AND group_id = ?2 ORDER BY version DESC"))
                    .map_err(backend)?;
                let rows = stmt
                    .query_map(params![blob(&tenant), blob(&group)], rollout_row)
                    .map_err(backend)?;
                rows.collect::<rusqlite::Result<Vec<_>>>().map_err(backend)
            })
            .await
    }

    async fn transition_rollout(
        &self,
        tenant: Uuid,
        group: Uuid,
        step: &RolloutStep<'_>,
        now_ms: i64,
    ) -> Result<bool, StorageError> {
        let (from_state, from_stage, _) = state_columns(step.from);
        let (to_state, to_stage, to_started) = state_columns(step.to);
        let reason = step.reason.map(str::to_owned);
        let version = step.version;
        self.pool
            .write(move |c| {
                let n = c
                    .execute(
                        "UPDATE config_rollouts SET state = ?6, stage = ?7, stage_started_at_ms = COALESCE(?8, stage_started_at_ms), reason = COALESCE(?9, reason), updated_at_ms = ?10 \
                         WHERE tenant_id = ?1 AND group_id = ?2 AND version = ?3 AND state = ?4 AND stage = ?5",
                        params![blob(&tenant), blob(&group), version, from_state, from_stage, to_state, to_stage, to_started, reason, now_ms],
                    )
                    .map_err(backend)?;
                Ok(n == 1)
            })
            .await
    }

    async fn group_health(
        &self,
        tenant: Uuid,
        group: Uuid,
    ) -> Result<Vec<MemberHealth>, StorageError> {
        self.pool
            .read(move |c| {
                let mut stmt = c
                    .prepare_cached(
                        "SELECT m.device_id, d.last_seen_ms, COALESCE(s.config_version, 0), s.config_error_version \
                         FROM device_group_members m \
                         JOIN devices d ON d.tenant_id = m.tenant_id AND d.device_id = m.device_id \
                         LEFT JOIN device_status s ON s.tenant_id = m.tenant_id AND s.device_id = m.device_id \
                         WHERE m.tenant_id = ?1 AND m.group_id = ?2 AND d.revoked_at_ms IS NULL \
                         ORDER BY m.device_id",
                    )
                    .map_err(backend)?;
                let rows = stmt
                    .query_map(params![blob(&tenant), blob(&group)], |r| {
                        Ok(MemberHealth {
                            device_id: uuid_at(r, 0)?,
                            last_seen_ms: r.get(1)?,
                            applied_version: u32_col(r, 2)?,
                            failed_version: r
                                .get::<_, Option<i64>>(3)?
                                .map(|v| u32::try_from(v).unwrap_or(0)),
                        })
                    })
                    .map_err(backend)?;
                rows.collect::<rusqlite::Result<Vec<_>>>().map_err(backend)
            })
            .await
    }

    async fn rolling_groups(&self) -> Result<Vec<(Uuid, Uuid)>, StorageError> {
        self.pool
            .read(move |c| {
                let mut stmt = c
                    .prepare_cached(
                        "SELECT tenant_id, group_id FROM config_rollouts WHERE state = 'rolling'",
                    )
                    .map_err(backend)?;
                let rows = stmt
                    .query_map([], |r| Ok((uuid_at(r, 0)?, uuid_at(r, 1)?)))
                    .map_err(backend)?;
                rows.collect::<rusqlite::Result<Vec<_>>>().map_err(backend)
            })
            .await
    }

    async fn create_webhook(
        &self,
        tenant: Uuid,
        url: &str,
        kinds: &[String],
        format: &str,
        secret: &str,
        now_ms: i64,
    ) -> Result<Webhook, StorageError> {
        let hook = Webhook {
            id: Uuid::new_v4(),
            url: url.to_owned(),
            kinds: kinds.to_vec(),
            format: format.to_owned(),
            created_at_ms: now_ms,
        };
        let secret = secret.to_owned();
        let kinds_json =
            serde_json::to_string(kinds).map_err(|e| StorageError::Backend(e.to_string()))?;
        let row = hook.clone();
        self.pool
            .write(move |c| {
                c.execute(
                    "INSERT INTO webhooks (tenant_id, webhook_id, url, kinds, format, secret, created_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![blob(&tenant), blob(&row.id), row.url, kinds_json, row.format, secret, now_ms],
                )
                .map_err(backend)?;
                Ok(())
            })
            .await?;
        Ok(hook)
    }

    async fn list_webhooks(&self, tenant: Uuid) -> Result<Vec<Webhook>, StorageError> {
        self.pool
            .read(move |c| {
                let mut stmt = c
                    .prepare_cached(&format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE tenant_id = ?1 ORDER BY created_at_ms, webhook_id"))
                    .map_err(backend)?;
                let rows = stmt
                    .query_map(params![blob(&tenant)], webhook_row)
                    .map_err(backend)?;
                rows.collect::<rusqlite::Result<Vec<_>>>().map_err(backend)
            })
            .await
    }

    async fn delete_webhook(&self, tenant: Uuid, id: Uuid) -> Result<bool, StorageError> {
        self.pool
            .write(move |c| {
                let tx = c.transaction().map_err(backend)?;
                let n = tx
                    .execute(
                        "DELETE FROM webhooks WHERE tenant_id = ?1 AND webhook_id = ?2",
                        params![blob(&tenant), blob(&id)],
                    )
                    .map_err(backend)?;
                tx.execute(
                    "DELETE FROM webhook_deliveries WHERE tenant_id = ?1 AND webhook_id = ?2",
                    params![blob(&tenant), blob(&id)],
                )
                .map_err(backend)?;
                tx.commit().map_err(backend)?;
                Ok(n > 0)
            })
            .await
    }

    async fn enqueue_webhook_event(
        &self,
        tenant: Uuid,
        kind: &str,
        event_id: &str,
        payload: &serde_json::Value,
        now_ms: i64,
    ) -> Result<u32, StorageError> {
        let kind = kind.to_owned();
        let event_id = event_id.to_owned();
        let payload = payload.to_string();
        self.pool
            .write(move |c| {
                let tx = c.transaction().map_err(backend)?;
                let hooks: Vec<Webhook> = {
                    let mut stmt = tx
                        .prepare_cached(&format!(
                            "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE tenant_id = ?1"
                        ))
                        .map_err(backend)?;
                    let rows = stmt
                        .query_map(params![blob(&tenant)], webhook_row)
                        .map_err(backend)?;
                    rows.collect::<rusqlite::Result<_>>().map_err(backend)?
                };
                let mut queued = 0;
                for hook in hooks.iter().filter(|h| h.kinds.contains(&kind)) {
                    queued += tx
                        .execute(
                            "INSERT OR IGNORE INTO webhook_deliveries (tenant_id, delivery_id, webhook_id, event_id, kind, payload, state, next_attempt_at_ms, created_at_ms) \
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?7)",
                            params![blob(&tenant), blob(&Uuid::new_v4()), blob(&hook.id), event_id, kind, payload, now_ms],
                        )
                        .map_err(backend)? as u32;
                }
                tx.commit().map_err(backend)?;
                Ok(queued)
            })
            .await
    }

    async fn due_deliveries(
        &self,
        now_ms: i64,
        limit: u32,
    ) -> Result<Vec<DueDelivery>, StorageError> {
        self.pool
            .read(move |c| {
                let mut stmt = c
                    .prepare_cached(
                        "SELECT d.tenant_id, d.delivery_id, d.webhook_id, w.url, w.format, w.secret, d.event_id, d.kind, d.payload, d.attempts \
                         FROM webhook_deliveries d JOIN webhooks w ON w.tenant_id = d.tenant_id AND w.webhook_id = d.webhook_id \
                         WHERE d.state = 'pending' AND d.next_attempt_at_ms <= ?1 \
                         ORDER BY d.next_attempt_at_ms LIMIT ?2",
                    )
                    .map_err(backend)?;
                let rows = stmt
                    .query_map(params![now_ms, limit], |r| {
                        Ok(DueDelivery {
                            tenant_id: uuid_at(r, 0)?,
                            delivery_id: uuid_at(r, 1)?,
                            webhook_id: uuid_at(r, 2)?,
                            url: r.get(3)?,
                            format: r.get(4)?,
                            secret: r.get(5)?,
                            event_id: r.get(6)?,
                            kind: r.get(7)?,
                            payload: json_col(r, 8)?,
                            attempts: u32_col(r, 9)?,
                        })
                    })
                    .map_err(backend)?;
                rows.collect::<rusqlite::Result<Vec<_>>>().map_err(backend)
            })
            .await
    }

    async fn record_attempt(
        &self,
        tenant: Uuid,
        delivery: Uuid,
        outcome: &AttemptOutcome,
        now_ms: i64,
    ) -> Result<(), StorageError> {
        let outcome = outcome.clone();
        self.pool
            .write(move |c| {
                match outcome {
                    AttemptOutcome::Delivered { status } => c.execute(
                        "UPDATE webhook_deliveries SET state = 'delivered', attempts = attempts + 1, last_status = ?3, last_error = NULL, delivered_at_ms = ?4 \
                         WHERE tenant_id = ?1 AND delivery_id = ?2",
                        params![blob(&tenant), blob(&delivery), status, now_ms],
                    ),
                    AttemptOutcome::Failed { status, error, retry_at_ms } => c.execute(
                        "UPDATE webhook_deliveries SET state = ?3, attempts = attempts + 1, last_status = ?4, last_error = ?5, next_attempt_at_ms = COALESCE(?6, next_attempt_at_ms) \
                         WHERE tenant_id = ?1 AND delivery_id = ?2",
                        params![
                            blob(&tenant),
                            blob(&delivery),
                            if retry_at_ms.is_some() { "pending" } else { "failed" },
                            status,
                            error,
                            retry_at_ms
                        ],
                    ),
                }
                .map_err(backend)?;
                Ok(())
            })
            .await
    }

    async fn list_deliveries(
        &self,
        tenant: Uuid,
        webhook: Uuid,
        limit: u32,
    ) -> Result<Option<Vec<DeliveryRecord>>, StorageError> {
        self.pool
            .read(move |c| {
                let known = c
                    .query_row(
                        "SELECT 1 FROM webhooks WHERE tenant_id = ?1 AND webhook_id = ?2",
                        params![blob(&tenant), blob(&webhook)],
                        |_| Ok(()),
                    )
                    .optional()
                    .map_err(backend)?
                    .is_some();
                if !known {
                    return Ok(None);
                }
                let mut stmt = c
                    .prepare_cached(
                        "SELECT delivery_id, event_id, kind, state, attempts, last_status, last_error, created_at_ms, next_attempt_at_ms, delivered_at_ms \
                         FROM webhook_deliveries WHERE tenant_id = ?1 AND webhook_id = ?2 \
                         ORDER BY created_at_ms DESC, delivery_id LIMIT ?3",
                    )
                    .map_err(backend)?;
                let rows = stmt
                    .query_map(params![blob(&tenant), blob(&webhook), limit], |r| {
                        Ok(DeliveryRecord {
                            id: uuid_at(r, 0)?,
                            event_id: r.get(1)?,
                            kind: r.get(2)?,
                            state: r.get(3)?,
                            attempts: u32_col(r, 4)?,
                            last_status: r
                                .get::<_, Option<i64>>(5)?
                                .and_then(|s| u16::try_from(s).ok()),
                            last_error: r.get(6)?,
                            created_at_ms: r.get(7)?,
                            next_attempt_at_ms: r.get(8)?,
                            delivered_at_ms: r.get(9)?,
                        })
                    })
                    .map_err(backend)?;
                Ok(Some(
                    rows.collect::<rusqlite::Result<Vec<_>>>()
                        .map_err(backend)?,
                ))
            })
            .await
    }

    async fn silent_devices(
        &self,
        since_ms: i64,
        before_ms: i64,
        limit: u32,
    ) -> Result<Vec<SilentDevice>, StorageError> {
        self.pool
            .read(move |c| {
                let mut stmt = c
                    .prepare_cached(
                        "SELECT tenant_id, device_id, name, last_seen_ms FROM devices \
                         WHERE revoked_at_ms IS NULL AND last_seen_ms >= ?1 AND last_seen_ms < ?2 \
                         ORDER BY last_seen_ms LIMIT ?3",
                    )
                    .map_err(backend)?;
                let rows = stmt
                    .query_map(params![since_ms, before_ms, limit], |r| {
                        Ok(SilentDevice {
                            tenant_id: uuid_at(r, 0)?,
                            device_id: uuid_at(r, 1)?,
                            name: r.get(2)?,
                            last_seen_ms: r.get(3)?,
                        })
                    })
                    .map_err(backend)?;
                rows.collect::<rusqlite::Result<Vec<_>>>().map_err(backend)
            })
            .await
    }
}
