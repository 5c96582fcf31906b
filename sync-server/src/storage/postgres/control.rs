//! [`ControlStore`] on PostgreSQL. Everything a tenant asks for runs in its
//! tenant transaction. The background work that spans tenants (due webhook
//! deliveries, rollouts in progress, silent devices) first finds candidates in
//! a read-only worker or lookup transaction, then acts per tenant.
//!
//! Several replicas run the webhook worker at once: a delivery is claimed with
//! `FOR UPDATE SKIP LOCKED` and leased by moving its `next_attempt_at_ms` ahead
//! by [`DELIVERY_LEASE_MS`], so no two replicas send one row at the same time,
//! and a replica that dies mid-send leaves the row due again once its lease ends.

use super::lease::Claim;
use super::{pg, pool_err, PgStorage, PgTx};
use crate::rollout::{Plan, RolloutState};
use crate::storage::control::{
    AttemptOutcome, ControlStore, DeliveryRecord, DeviceGroup, DeviceRegistry, DueDelivery,
    IssuedToken, MemberHealth, RolloutRecord, RolloutStep, SilentDevice, StoredStatus, TokenInfo,
    Webhook,
};
use crate::storage::{random_secret, sha256, StorageError};
use async_trait::async_trait;
use fleet_protocol::control::{ConfigApplyError, HardwareStatus, StatusReport};
use std::time::Duration;
use tokio_postgres::Row;
use uuid::Uuid;

/// How long a claimed delivery is kept from other replicas while it is sent.
/// Longer than the worker's request timeout, so a slow send is not sent twice.
pub const DELIVERY_LEASE_MS: i64 = 120_000;

fn corrupt(what: &str, e: impl std::fmt::Display) -> StorageError {
    StorageError::Corrupt(format!("{what}: {e}"))
}

fn to_u32(v: i64, what: &str) -> Result<u32, StorageError> {
    u32::try_from(v).map_err(|e| corrupt(what, e))
}

fn to_u64(v: i64) -> u64 {
    v.max(0) as u64
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn json_text<T: serde::de::DeserializeOwned>(s: &str, what: &str) -> Result<T, StorageError> {
    serde_json::from_str(s).map_err(|e| corrupt(what, e))
}

impl PgStorage {
    /// A read-only transaction that sees the control tables' rows of every
    /// tenant (the `control_worker` policy), for finding background work.
    async fn worker_tx(&self) -> Result<PgTx, StorageError> {
        let conn = self.pool.get().await.map_err(pool_err)?;
        conn.batch_execute("BEGIN READ ONLY; SET LOCAL app.control_worker = 'on'")
            .await
            .map_err(pg)?;
        Ok(PgTx { conn: Some(conn) })
    }
}

const TOKEN_COLUMNS: &str = "token_hash, uses_left, uses_total, expires_at_ms, created_at_ms";

fn token_row(r: &Row) -> Result<TokenInfo, StorageError> {
    let hash: Vec<u8> = r.get(0);
    Ok(TokenInfo {
        id: hex::encode(hash),
        uses_left: to_u32(i64::from(r.get::<_, i32>(1)), "uses_left")?,
        uses_total: r
            .get::<_, Option<i64>>(2)
            .map(|v| u32::try_from(v).unwrap_or(0)),
        expires_at_ms: r.get(3),
        created_at_ms: r.get(4),
    })
}

const STATUS_COLUMNS: [&str; 14] = [
    "reported_at_ms",
    "agent_version",
    "queue_depth",
    "oldest_unsynced_ms",
    "disk_used_bytes",
    "disk_budget_bytes",
    "clock_offset_ms",
    "evictions",
    "config_version",
    "config_error_version",
    "config_error",
    "can_up",
    "gps_fix",
    "camera",
];

fn status_columns(prefix: &str) -> String {
    STATUS_COLUMNS
        .iter()
        .map(|c| format!("{prefix}{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A status row from column `at` on.
fn status_at(r: &Row, at: usize) -> Result<StoredStatus, StorageError> {
    let error_version: Option<i64> = r.get(at + 9);
    let error: Option<String> = r.get(at + 10);
    Ok(StoredStatus {
        reported_at_ms: r.get(at),
        report: StatusReport {
            agent_version: r.get(at + 1),
            queue_depth: to_u64(r.get(at + 2)),
            oldest_unsynced_ms: r.get(at + 3),
            disk_used_bytes: to_u64(r.get(at + 4)),
            disk_budget_bytes: to_u64(r.get(at + 5)),
            clock_offset_ms: r.get(at + 6),
            evictions: to_u64(r.get(at + 7)),
            config_version: to_u32(r.get(at + 8), "config_version")?,
            config_error: match (error_version, error) {
                (Some(v), Some(message)) => Some(ConfigApplyError {
                    version: u32::try_from(v).unwrap_or(0),
                    message,
                }),
                _ => None,
            },
            hardware: HardwareStatus {
                can_up: r.get(at + 11),
                gps_fix: r.get(at + 12),
                camera: r.get(at + 13),
            },
        },
    })
}

async fn load_group(
    tx: &PgTx,
    tenant: Uuid,
    group: Uuid,
) -> Result<Option<DeviceGroup>, StorageError> {
    let Some(head) = tx
        .query_opt(
            "SELECT name, created_at_ms FROM device_groups WHERE tenant_id = $1 AND group_id = $2",
            &[&tenant, &group],
        )
        .await
        .map_err(pg)?
    else {
        return Ok(None);
    };
    let devices = tx
        .query(
            "SELECT device_id FROM device_group_members WHERE tenant_id = $1 AND group_id = $2 ORDER BY device_id",
            &[&tenant, &group],
        )
        .await
        .map_err(pg)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    Ok(Some(DeviceGroup {
        id: group,
        name: head.get(0),
        created_at_ms: head.get(1),
        devices,
    }))
}

const ROLLOUT_COLUMNS: &str = "group_id, version, previous_version, stages, min_soak_ms, \
     failure_threshold, state, stage, stage_started_at_ms, reason, updated_at_ms, silent_after_ms";

fn rollout_row(r: &Row) -> Result<RolloutRecord, StorageError> {
    let state = match r.get::<_, &str>(6) {
        "rolling" => RolloutState::Rolling {
            stage: r.get::<_, i64>(7).max(0) as usize,
            stage_started_ms: r.get(8),
        },
        "completed" => RolloutState::Completed,
        "aborted" => RolloutState::Aborted,
        _ => RolloutState::Superseded,
    };
    Ok(RolloutRecord {
        group_id: r.get(0),
        version: to_u32(r.get(1), "version")?,
        previous_version: to_u32(r.get(2), "previous_version")?,
        plan: Plan {
            stages: json_text(r.get(3), "rollout stages")?,
            min_soak_ms: r.get(4),
            failure_threshold: r.get(5),
            silent_after_ms: r.get(11),
        },
        state,
        reason: r.get(9),
        updated_at_ms: r.get(10),
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

async fn latest_rollout(
    tx: &PgTx,
    tenant: Uuid,
    group: Uuid,
) -> Result<Option<RolloutRecord>, StorageError> {
    tx.query_opt(
        &format!("SELECT {ROLLOUT_COLUMNS} FROM config_rollouts WHERE tenant_id = $1 AND group_id = $2 ORDER BY version DESC LIMIT 1"),
        &[&tenant, &group],
    )
    .await
    .map_err(pg)?
    .map(|r| rollout_row(&r))
    .transpose()
}

const WEBHOOK_COLUMNS: &str = "webhook_id, url, kinds, format, created_at_ms";

fn webhook_row(r: &Row) -> Result<Webhook, StorageError> {
    Ok(Webhook {
        id: r.get(0),
        url: r.get(1),
        kinds: json_text(r.get(2), "webhook kinds")?,
        format: r.get(3),
        created_at_ms: r.get(4),
    })
}

#[async_trait]
impl ControlStore for PgStorage {
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
        let uses_left = i32::try_from(uses)
            .map_err(|_| StorageError::Invalid("too many uses for one token".into()))?;
        let expires_at_ms = i64::try_from(ttl.as_millis())
            .ok()
            .and_then(|ms| now_ms.checked_add(ms))
            .ok_or_else(|| StorageError::Invalid("ttl is too long".into()))?;
        let token = random_secret("fe_");
        let hash = sha256(token.as_bytes()).to_vec();
        let tx = self.tenant_tx(tenant).await?;
        let known = tx
            .query_opt("SELECT 1 FROM tenants WHERE tenant_id = $1", &[&tenant])
            .await
            .map_err(pg)?
            .is_some();
        if !known {
            return Err(StorageError::UnknownTenant);
        }
        tx.execute(
            "INSERT INTO enrollment_tokens (tenant_id, token_hash, expires_at_ms, uses_left, uses_total, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6)",
            &[&tenant, &hash, &expires_at_ms, &uses_left, &i64::from(uses), &now_ms],
        )
        .await
        .map_err(pg)?;
        tx.commit().await?;
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
        let tx = self.tenant_tx(tenant).await?;
        let rows = tx
            .query(
                &format!("SELECT {TOKEN_COLUMNS} FROM enrollment_tokens WHERE tenant_id = $1 ORDER BY created_at_ms, token_hash"),
                &[&tenant],
            )
            .await
            .map_err(pg)?;
        tx.commit().await?;
        rows.iter().map(token_row).collect()
    }

    async fn revoke_token(&self, tenant: Uuid, id: &str) -> Result<bool, StorageError> {
        let Ok(hash) = hex::decode(id) else {
            return Ok(false);
        };
        let tx = self.tenant_tx(tenant).await?;
        let n = tx
            .execute(
                "DELETE FROM enrollment_tokens WHERE tenant_id = $1 AND token_hash = $2",
                &[&tenant, &hash],
            )
            .await
            .map_err(pg)?;
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn device_registry(
        &self,
        tenant: Uuid,
        device: Uuid,
    ) -> Result<Option<DeviceRegistry>, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let row = tx
            .query_opt(
                &format!(
                    "SELECT d.device_id, d.name, d.enrolled_at_ms, d.revoked_at_ms, d.last_seen_ms, d.agent_version, \
                     m.group_id, s.reported_at_ms IS NOT NULL, {} \
                     FROM devices d \
                     LEFT JOIN device_group_members m ON m.tenant_id = d.tenant_id AND m.device_id = d.device_id \
                     LEFT JOIN device_status s ON s.tenant_id = d.tenant_id AND s.device_id = d.device_id \
                     WHERE d.tenant_id = $1 AND d.device_id = $2",
                    status_columns("s.")
                ),
                &[&tenant, &device],
            )
            .await
            .map_err(pg)?;
        tx.commit().await?;
        let Some(r) = row else { return Ok(None) };
        let has_status: bool = r.get(7);
        Ok(Some(DeviceRegistry {
            id: r.get(0),
            name: r.get(1),
            enrolled_at_ms: r.get(2),
            revoked_at_ms: r.get(3),
            last_seen_ms: r.get(4),
            enrolled_agent_version: r.get(5),
            group_id: r.get(6),
            status: if has_status {
                Some(status_at(&r, 8)?)
            } else {
                None
            },
        }))
    }

    async fn put_status(
        &self,
        tenant: Uuid,
        device: Uuid,
        report: &StatusReport,
        now_ms: i64,
    ) -> Result<bool, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        // The row lock makes two replicas' reports for one device take turns, so
        // each compares against the one stored before it.
        let before = tx
            .query_opt(
                &format!(
                    "SELECT {} FROM device_status WHERE tenant_id = $1 AND device_id = $2 FOR UPDATE",
                    status_columns("")
                ),
                &[&tenant, &device],
            )
            .await
            .map_err(pg)?
            .map(|r| status_at(&r, 0))
            .transpose()?;
        let hw = report.hardware;
        let error_version = report.config_error.as_ref().map(|e| i64::from(e.version));
        let error = report.config_error.as_ref().map(|e| e.message.as_str());
        let placeholders = (3..=16).map(|i| format!("${i}")).collect::<Vec<_>>();
        let updates = STATUS_COLUMNS
            .iter()
            .map(|c| format!("{c} = EXCLUDED.{c}"))
            .collect::<Vec<_>>();
        tx.execute(
            &format!(
                "INSERT INTO device_status (tenant_id, device_id, {}) VALUES ($1, $2, {}) \
                 ON CONFLICT (tenant_id, device_id) DO UPDATE SET {}",
                status_columns(""),
                placeholders.join(", "),
                updates.join(", ")
            ),
            &[
                &tenant,
                &device,
                &now_ms,
                &report.agent_version,
                &clamp(report.queue_depth),
                &report.oldest_unsynced_ms,
                &clamp(report.disk_used_bytes),
                &clamp(report.disk_budget_bytes),
                &report.clock_offset_ms,
                &clamp(report.evictions),
                &i64::from(report.config_version),
                &error_version,
                &error,
                &hw.can_up,
                &hw.gps_fix,
                &hw.camera,
            ],
        )
        .await
        .map_err(pg)?;
        tx.commit().await?;
        Ok(before.is_none_or(|s| s.report != *report))
    }

    async fn create_group(
        &self,
        tenant: Uuid,
        name: &str,
        now_ms: i64,
    ) -> Result<DeviceGroup, StorageError> {
        let id = Uuid::new_v4();
        let tx = self.tenant_tx(tenant).await?;
        let inserted = tx
            .execute(
                "INSERT INTO device_groups (tenant_id, group_id, name, created_at_ms) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (tenant_id, name) DO NOTHING",
                &[&tenant, &id, &name, &now_ms],
            )
            .await
            .map_err(pg)?;
        if inserted == 0 {
            return Err(StorageError::Invalid(format!(
                "a device group named {name:?} already exists"
            )));
        }
        tx.commit().await?;
        Ok(DeviceGroup {
            id,
            name: name.to_owned(),
            created_at_ms: now_ms,
            devices: Vec::new(),
        })
    }

    async fn list_groups(&self, tenant: Uuid) -> Result<Vec<DeviceGroup>, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let ids: Vec<Uuid> = tx
            .query(
                "SELECT group_id FROM device_groups WHERE tenant_id = $1 ORDER BY name",
                &[&tenant],
            )
            .await
            .map_err(pg)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.extend(load_group(&tx, tenant, id).await?);
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn group(&self, tenant: Uuid, group: Uuid) -> Result<Option<DeviceGroup>, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let out = load_group(&tx, tenant, group).await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn assign_devices(
        &self,
        tenant: Uuid,
        group: Uuid,
        devices: &[Uuid],
    ) -> Result<DeviceGroup, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        if load_group(&tx, tenant, group).await?.is_none() {
            return Err(StorageError::Invalid("no such device group".into()));
        }
        let known: i64 = tx
            .query_one(
                "SELECT count(*) FROM devices WHERE tenant_id = $1 AND device_id = ANY($2)",
                &[&tenant, &devices],
            )
            .await
            .map_err(pg)?
            .get(0);
        let mut distinct = devices.to_vec();
        distinct.sort_unstable();
        distinct.dedup();
        if known != distinct.len() as i64 {
            // Dropped unfinished: nothing changes.
            return Err(StorageError::UnknownDevice);
        }
        tx.execute(
            "INSERT INTO device_group_members (tenant_id, device_id, group_id) \
             SELECT $1, d, $2 FROM unnest($3::uuid[]) AS d \
             ON CONFLICT (tenant_id, device_id) DO UPDATE SET group_id = EXCLUDED.group_id",
            &[&tenant, &group, &distinct],
        )
        .await
        .map_err(pg)?;
        let out = load_group(&tx, tenant, group)
            .await?
            .ok_or_else(|| StorageError::Backend("group vanished".into()))?;
        tx.commit().await?;
        Ok(out)
    }

    async fn device_group(&self, tenant: Uuid, device: Uuid) -> Result<Option<Uuid>, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let row = tx
            .query_opt(
                "SELECT group_id FROM device_group_members WHERE tenant_id = $1 AND device_id = $2",
                &[&tenant, &device],
            )
            .await
            .map_err(pg)?;
        tx.commit().await?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn create_config(
        &self,
        tenant: Uuid,
        group: Uuid,
        document: &serde_json::Value,
        plan: &Plan,
        now_ms: i64,
    ) -> Result<RolloutRecord, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        // Locking the group row makes two replicas' new versions take turns.
        let exists = tx
            .query_opt(
                "SELECT 1 FROM device_groups WHERE tenant_id = $1 AND group_id = $2 FOR UPDATE",
                &[&tenant, &group],
            )
            .await
            .map_err(pg)?
            .is_some();
        if !exists {
            return Err(StorageError::Invalid("no such device group".into()));
        }
        let latest = latest_rollout(&tx, tenant, group).await?;
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
                    "UPDATE config_rollouts SET state = 'superseded', reason = $4, updated_at_ms = $5 WHERE tenant_id = $1 AND group_id = $2 AND version = $3",
                    &[&tenant, &group, &i64::from(r.version), &format!("replaced by version {version}"), &now_ms],
                )
                .await
                .map_err(pg)?;
            }
        }
        tx.execute(
            "INSERT INTO config_versions (tenant_id, group_id, version, document, created_at_ms) VALUES ($1, $2, $3, $4, $5)",
            &[&tenant, &group, &i64::from(version), &document.to_string(), &now_ms],
        )
        .await
        .map_err(pg)?;
        let stages = serde_json::to_string(&plan.stages)
            .map_err(|e| StorageError::Backend(e.to_string()))?;
        tx.execute(
            "INSERT INTO config_rollouts (tenant_id, group_id, version, previous_version, stages, min_soak_ms, failure_threshold, silent_after_ms, state, stage, stage_started_at_ms, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'rolling', 0, $9, $9)",
            &[&tenant, &group, &i64::from(version), &i64::from(previous), &stages, &plan.min_soak_ms, &plan.failure_threshold, &plan.silent_after_ms, &now_ms],
        )
        .await
        .map_err(pg)?;
        tx.commit().await?;
        Ok(RolloutRecord {
            group_id: group,
            version,
            previous_version: previous,
            plan: plan.clone(),
            state: RolloutState::Rolling {
                stage: 0,
                stage_started_ms: now_ms,
            },
            reason: None,
            updated_at_ms: now_ms,
        })
    }

    async fn config_document(
        &self,
        tenant: Uuid,
        group: Uuid,
        version: u32,
    ) -> Result<Option<serde_json::Value>, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let row = tx
            .query_opt(
                "SELECT document FROM config_versions WHERE tenant_id = $1 AND group_id = $2 AND version = $3",
                &[&tenant, &group, &i64::from(version)],
            )
            .await
            .map_err(pg)?;
        tx.commit().await?;
        row.map(|r| json_text(r.get(0), "config document"))
            .transpose()
    }

    async fn current_rollout(
        &self,
        tenant: Uuid,
        group: Uuid,
    ) -> Result<Option<RolloutRecord>, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let out = latest_rollout(&tx, tenant, group).await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn list_rollouts(
        &self,
        tenant: Uuid,
        group: Uuid,
    ) -> Result<Vec<RolloutRecord>, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let rows = tx
            .query(
                &format!("SELECT {ROLLOUT_COLUMNS} FROM config_rollouts WHERE tenant_id = $1 AND group_id = $2 ORDER BY version DESC"),
                &[&tenant, &group],
            )
            .await
            .map_err(pg)?;
        tx.commit().await?;
        rows.iter().map(rollout_row).collect()
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
        let tx = self.tenant_tx(tenant).await?;
        let n = tx
            .execute(
                "UPDATE config_rollouts SET state = $6, stage = $7, stage_started_at_ms = COALESCE($8, stage_started_at_ms), reason = COALESCE($9, reason), updated_at_ms = $10 \
                 WHERE tenant_id = $1 AND group_id = $2 AND version = $3 AND state = $4 AND stage = $5",
                &[&tenant, &group, &i64::from(step.version), &from_state, &from_stage, &to_state, &to_stage, &to_started, &step.reason, &now_ms],
            )
            .await
            .map_err(pg)?;
        tx.commit().await?;
        Ok(n == 1)
    }

    async fn group_health(
        &self,
        tenant: Uuid,
        group: Uuid,
    ) -> Result<Vec<MemberHealth>, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let rows = tx
            .query(
                "SELECT m.device_id, d.last_seen_ms, COALESCE(s.config_version, 0), s.config_error_version \
                 FROM device_group_members m \
                 JOIN devices d ON d.tenant_id = m.tenant_id AND d.device_id = m.device_id \
                 LEFT JOIN device_status s ON s.tenant_id = m.tenant_id AND s.device_id = m.device_id \
                 WHERE m.tenant_id = $1 AND m.group_id = $2 AND d.revoked_at_ms IS NULL \
                 ORDER BY m.device_id",
                &[&tenant, &group],
            )
            .await
            .map_err(pg)?;
        tx.commit().await?;
        rows.iter()
            .map(|r| {
                Ok(MemberHealth {
                    device_id: r.get(0),
                    last_seen_ms: r.get(1),
                    applied_version: to_u32(r.get(2), "config_version")?,
                    failed_version: r
                        .get::<_, Option<i64>>(3)
                        .map(|v| u32::try_from(v).unwrap_or(0)),
                })
            })
            .collect()
    }

    async fn rolling_groups(&self) -> Result<Vec<(Uuid, Uuid)>, StorageError> {
        let tx = self.worker_tx().await?;
        let rows = tx
            .query(
                "SELECT tenant_id, group_id FROM config_rollouts WHERE state = 'rolling'",
                &[],
            )
            .await
            .map_err(pg)?;
        tx.commit().await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
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
        let kinds_json =
            serde_json::to_string(kinds).map_err(|e| StorageError::Backend(e.to_string()))?;
        let tx = self.tenant_tx(tenant).await?;
        tx.execute(
            "INSERT INTO webhooks (tenant_id, webhook_id, url, kinds, format, secret, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[&tenant, &hook.id, &hook.url, &kinds_json, &hook.format, &secret, &now_ms],
        )
        .await
        .map_err(pg)?;
        tx.commit().await?;
        Ok(hook)
    }

    async fn list_webhooks(&self, tenant: Uuid) -> Result<Vec<Webhook>, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let rows = tx
            .query(
                &format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE tenant_id = $1 ORDER BY created_at_ms, webhook_id"),
                &[&tenant],
            )
            .await
            .map_err(pg)?;
        tx.commit().await?;
        rows.iter().map(webhook_row).collect()
    }

    async fn delete_webhook(&self, tenant: Uuid, id: Uuid) -> Result<bool, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let n = tx
            .execute(
                "DELETE FROM webhooks WHERE tenant_id = $1 AND webhook_id = $2",
                &[&tenant, &id],
            )
            .await
            .map_err(pg)?;
        tx.execute(
            "DELETE FROM webhook_deliveries WHERE tenant_id = $1 AND webhook_id = $2",
            &[&tenant, &id],
        )
        .await
        .map_err(pg)?;
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn enqueue_webhook_event(
        &self,
        tenant: Uuid,
        kind: &str,
        event_id: &str,
        payload: &serde_json::Value,
        now_ms: i64,
    ) -> Result<u32, StorageError> {
        let payload = payload.to_string();
        let tx = self.tenant_tx(tenant).await?;
        let hooks = tx
            .query(
                &format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE tenant_id = $1"),
                &[&tenant],
            )
            .await
            .map_err(pg)?
            .iter()
            .map(webhook_row)
            .collect::<Result<Vec<_>, _>>()?;
        let mut queued = 0;
        for hook in hooks.iter().filter(|h| h.kinds.iter().any(|k| k == kind)) {
            queued += tx
                .execute(
                    "INSERT INTO webhook_deliveries (tenant_id, delivery_id, webhook_id, event_id, kind, payload, state, next_attempt_at_ms, created_at_ms) \
                     VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $7) \
                     ON CONFLICT (tenant_id, webhook_id, event_id) DO NOTHING",
                    &[&tenant, &Uuid::new_v4(), &hook.id, &event_id, &kind, &payload, &now_ms],
                )
                .await
                .map_err(pg)? as u32;
        }
        tx.commit().await?;
        Ok(queued)
    }

    async fn due_deliveries(
        &self,
        now_ms: i64,
        limit: u32,
    ) -> Result<Vec<DueDelivery>, StorageError> {
        let claim = Claim {
            tenants_due: "SELECT tenant_id FROM webhook_deliveries WHERE state = 'pending' AND next_attempt_at_ms <= $1 \
                          GROUP BY tenant_id ORDER BY min(next_attempt_at_ms) LIMIT $2",
            claim: "WITH claimed AS ( \
                        SELECT delivery_id FROM webhook_deliveries \
                        WHERE tenant_id = $1 AND state = 'pending' AND next_attempt_at_ms <= $2 \
                        ORDER BY next_attempt_at_ms LIMIT $3 FOR UPDATE SKIP LOCKED) \
                    UPDATE webhook_deliveries d SET next_attempt_at_ms = $4 \
                    FROM claimed c, webhooks w \
                    WHERE d.tenant_id = $1 AND d.delivery_id = c.delivery_id \
                      AND w.tenant_id = d.tenant_id AND w.webhook_id = d.webhook_id \
                    RETURNING d.delivery_id, d.webhook_id, w.url, w.format, w.secret, d.event_id, d.kind, d.payload, d.attempts",
        };
        let finder = self.worker_tx().await?;
        let lease_until = now_ms.saturating_add(DELIVERY_LEASE_MS);
        self.claim_leased(finder, &claim, now_ms, lease_until, limit, |tenant, r| {
            Ok(DueDelivery {
                tenant_id: tenant,
                delivery_id: r.get(0),
                webhook_id: r.get(1),
                url: r.get(2),
                format: r.get(3),
                secret: r.get(4),
                event_id: r.get(5),
                kind: r.get(6),
                payload: json_text(r.get(7), "webhook payload")?,
                attempts: to_u32(r.get(8), "attempts")?,
            })
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
        let tx = self.tenant_tx(tenant).await?;
        match outcome {
            AttemptOutcome::Delivered { status } => {
                tx.execute(
                    "UPDATE webhook_deliveries SET state = 'delivered', attempts = attempts + 1, last_status = $3, last_error = NULL, delivered_at_ms = $4 \
                     WHERE tenant_id = $1 AND delivery_id = $2",
                    &[&tenant, &delivery, &i64::from(*status), &now_ms],
                )
                .await
            }
            AttemptOutcome::Failed {
                status,
                error,
                retry_at_ms,
            } => {
                let state = if retry_at_ms.is_some() { "pending" } else { "failed" };
                let status = status.map(i64::from);
                tx.execute(
                    "UPDATE webhook_deliveries SET state = $3, attempts = attempts + 1, last_status = $4, last_error = $5, next_attempt_at_ms = COALESCE($6, next_attempt_at_ms) \
                     WHERE tenant_id = $1 AND delivery_id = $2",
                    &[&tenant, &delivery, &state, &status, error, retry_at_ms],
                )
                .await
            }
        }
        .map_err(pg)?;
        tx.commit().await
    }

    async fn list_deliveries(
        &self,
        tenant: Uuid,
        webhook: Uuid,
        limit: u32,
    ) -> Result<Option<Vec<DeliveryRecord>>, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let known = tx
            .query_opt(
                "SELECT 1 FROM webhooks WHERE tenant_id = $1 AND webhook_id = $2",
                &[&tenant, &webhook],
            )
            .await
            .map_err(pg)?
            .is_some();
        if !known {
            return Ok(None);
        }
        let rows = tx
            .query(
                "SELECT delivery_id, event_id, kind, state, attempts, last_status, last_error, created_at_ms, next_attempt_at_ms, delivered_at_ms \
                 FROM webhook_deliveries WHERE tenant_id = $1 AND webhook_id = $2 \
                 ORDER BY created_at_ms DESC, delivery_id LIMIT $3",
                &[&tenant, &webhook, &i64::from(limit)],
            )
            .await
            .map_err(pg)?;
        tx.commit().await?;
        rows.iter()
            .map(|r| {
                Ok(DeliveryRecord {
                    id: r.get(0),
                    event_id: r.get(1),
                    kind: r.get(2),
                    state: r.get(3),
                    attempts: to_u32(r.get(4), "attempts")?,
                    last_status: r
                        .get::<_, Option<i64>>(5)
                        .and_then(|s| u16::try_from(s).ok()),
                    last_error: r.get(6),
                    created_at_ms: r.get(7),
                    next_attempt_at_ms: r.get(8),
                    delivered_at_ms: r.get(9),
                })
            })
            .collect::<Result<Vec<_>, StorageError>>()
            .map(Some)
    }

    async fn silent_devices(
        &self,
        since_ms: i64,
        before_ms: i64,
        limit: u32,
    ) -> Result<Vec<SilentDevice>, StorageError> {
        let tx = self.lookup_tx().await?;
        let rows = tx
            .query(
                "SELECT tenant_id, device_id, name, last_seen_ms FROM devices \
                 WHERE revoked_at_ms IS NULL AND last_seen_ms >= $1 AND last_seen_ms < $2 \
                 ORDER BY last_seen_ms LIMIT $3",
                &[&since_ms, &before_ms, &i64::from(limit)],
            )
            .await
            .map_err(pg)?;
        tx.commit().await?;
        Ok(rows
            .iter()
            .map(|r| SilentDevice {
                tenant_id: r.get(0),
                device_id: r.get(1),
                name: r.get(2),
                last_seen_ms: r.get(3),
            })
            .collect())
    }
}
