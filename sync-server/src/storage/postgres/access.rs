//! [`AccessStore`] on PostgreSQL. Everything runs in a tenant transaction except
//! finding a presented key and the operator's list of tenants, which use the
//! read-only lookup transaction.

use super::{is_unique_violation, pg, PgStorage, PgTx, ReadScope};
use crate::http::auth::{Capability, Role};
use crate::storage::access::{
    AccessStore, ActorKind, ApiKey, AuditEntry, AuditQuery, CostProfile, KeyAuth, NewKey, NewUser,
    SettingsPatch, TenantInfo, TenantSettings, User, UserPatch,
};
use crate::storage::StorageError;
use async_trait::async_trait;
use serde_json::Value;
use std::collections::BTreeMap;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;
use uuid::Uuid;

fn corrupt(what: &str, e: impl std::fmt::Display) -> StorageError {
    StorageError::Corrupt(format!("{what}: {e}"))
}

fn role(s: &str) -> Result<Role, StorageError> {
    Role::parse(s).ok_or_else(|| corrupt("role", s))
}

fn scopes_value(scopes: &Option<Vec<Capability>>) -> Option<Value> {
    scopes
        .as_ref()
        .map(|s| serde_json::to_value(s).expect("capabilities serialise"))
}

const KEY_COLUMNS: &str = "tenant_id, key_id, prefix, name, role, scopes, user_id, created_by, created_at_ms, expires_at_ms, revoked_at_ms, last_used_ms";

fn key_row(r: &Row) -> Result<ApiKey, StorageError> {
    let scopes: Option<Value> = r.get(5);
    Ok(ApiKey {
        tenant_id: r.get(0),
        key_id: r.get(1),
        prefix: r.get(2),
        name: r.get(3),
        role: role(r.get(4))?,
        scopes: scopes
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| corrupt("key scopes", e))?,
        user_id: r.get(6),
        created_by: r.get(7),
        created_at_ms: r.get(8),
        expires_at_ms: r.get(9),
        revoked_at_ms: r.get(10),
        last_used_ms: r.get(11),
    })
}

const USER_COLUMNS: &str = "tenant_id, user_id, email, name, role, disabled, created_at_ms";

fn user_row(r: &Row) -> Result<User, StorageError> {
    Ok(User {
        tenant_id: r.get(0),
        user_id: r.get(1),
        email: r.get(2),
        name: r.get(3),
        role: role(r.get(4))?,
        disabled: r.get(5),
        created_at_ms: r.get(6),
    })
}

/// Settings columns from `i`: features, max_vehicles, max_users, api_rate_per_min.
fn settings_at(r: &Row, i: usize) -> Result<TenantSettings, StorageError> {
    let features: Option<Value> = r.get(i);
    let limit = |j: usize| r.get::<_, Option<i64>>(j).map(|v| v.max(0) as u64);
    Ok(TenantSettings {
        features: match features {
            None => BTreeMap::new(),
            Some(f) => serde_json::from_value(f).map_err(|e| corrupt("features", e))?,
        },
        max_vehicles: limit(i + 1),
        max_users: limit(i + 2),
        api_rate_per_min: r
            .get::<_, Option<i64>>(i + 3)
            .map(|v| v.clamp(0, i64::from(u32::MAX)) as u32),
    })
}

const SETTINGS_SELECT: &str =
    "SELECT features, max_vehicles, max_users, api_rate_per_min FROM tenant_settings WHERE tenant_id = $1";

async fn tenant_settings(tx: &PgTx, tenant: Uuid) -> Result<TenantSettings, StorageError> {
    match tx
        .query_opt(SETTINGS_SELECT, &[&tenant])
        .await
        .map_err(pg)?
    {
        Some(r) => settings_at(&r, 0),
        None => Ok(TenantSettings::default()),
    }
}

async fn tenant_exists(tx: &PgTx, tenant: Uuid) -> Result<bool, StorageError> {
    Ok(tx
        .query_opt("SELECT 1 FROM tenants WHERE tenant_id = $1", &[&tenant])
        .await
        .map_err(pg)?
        .is_some())
}

async fn user_by_id(tx: &PgTx, tenant: Uuid, user: Uuid) -> Result<Option<User>, StorageError> {
    tx.query_opt(
        &format!("SELECT {USER_COLUMNS} FROM users WHERE tenant_id = $1 AND user_id = $2"),
        &[&tenant, &user],
    )
    .await
    .map_err(pg)?
    .map(|r| user_row(&r))
    .transpose()
}

async fn count_vehicles(tx: &PgTx, tenant: Uuid) -> Result<u64, StorageError> {
    let n: i64 = tx
        .query_one(
            "SELECT count(*) FROM devices WHERE tenant_id = $1 AND revoked_at_ms IS NULL",
            &[&tenant],
        )
        .await
        .map_err(pg)?
        .get(0);
    Ok(n as u64)
}

/// Refuses a new device when the tenant is at its `max_vehicles`; called inside
/// the enrollment transaction after the token's row lock, so concurrent
/// enrollments with one token can't both take the last place.
pub(crate) async fn check_vehicle_limit(tx: &PgTx, tenant: Uuid) -> Result<(), StorageError> {
    if let Some(max) = tenant_settings(tx, tenant).await?.max_vehicles {
        if count_vehicles(tx, tenant).await? >= max {
            return Err(StorageError::LimitReached {
                limit: "max_vehicles",
                max,
            });
        }
    }
    Ok(())
}

fn audit_row(r: &Row) -> Result<AuditEntry, StorageError> {
    let kind: &str = r.get(3);
    Ok(AuditEntry {
        tenant_id: r.get(0),
        audit_id: r.get(1),
        at_ms: r.get(2),
        actor_kind: ActorKind::parse(kind).ok_or_else(|| corrupt("actor kind", kind))?,
        actor_key_id: r.get(4),
        actor_user_id: r.get(5),
        action: r.get(6),
        target: r.get(7),
        detail: r.get(8),
        request_id: r.get(9),
    })
}

const TENANT_INFO: &str = "SELECT t.tenant_id, t.name, t.created_at_ms, s.features, s.max_vehicles, s.max_users, s.api_rate_per_min
     FROM tenants t LEFT JOIN tenant_settings s ON s.tenant_id = t.tenant_id";

fn tenant_info_row(r: &Row) -> Result<TenantInfo, StorageError> {
    Ok(TenantInfo {
        tenant_id: r.get(0),
        name: r.get(1),
        created_at_ms: r.get(2),
        settings: settings_at(r, 3)?,
    })
}

fn opt_i64(v: Option<u64>) -> Option<i64> {
    v.map(|v| i64::try_from(v).unwrap_or(i64::MAX))
}

/// Adds `e` to the audit log, in the caller's transaction.
pub(super) async fn insert_audit(tx: &PgTx, e: &AuditEntry) -> Result<(), StorageError> {
    tx.execute(
        "INSERT INTO audit_log (tenant_id, at_ms, audit_id, actor_kind, actor_key_id, actor_user_id, action, target, detail, request_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        &[
            &e.tenant_id,
            &e.at_ms,
            &e.audit_id,
            &e.actor_kind.as_str(),
            &e.actor_key_id,
            &e.actor_user_id,
            &e.action,
            &e.target,
            &e.detail,
            &e.request_id,
        ],
    )
    .await
    .map_err(pg)?;
    Ok(())
}

#[async_trait]
impl AccessStore for PgStorage {
    async fn key_by_hash(&self, key_hash: [u8; 32]) -> Result<Option<KeyAuth>, StorageError> {
        // Asked on every API call: two single-round-trip reads, the key
        // found by its hash, then its user and its tenant's settings.
        let found = self
            .read(
                ReadScope::Lookup,
                &[(
                    &format!("SELECT {KEY_COLUMNS} FROM access_keys WHERE key_hash = $1"),
                    &[&key_hash.as_slice()],
                )],
            )
            .await?;
        let Some(row) = found.first().and_then(|rows| rows.first()) else {
            return Ok(None);
        };
        let key = key_row(row)?;
        let (t, user) = (key.tenant_id, key.user_id.unwrap_or(Uuid::nil()));
        let user_sql =
            format!("SELECT {USER_COLUMNS} FROM users WHERE tenant_id = $1 AND user_id = $2");
        let settings_params: [&(dyn ToSql + Sync); 1] = [&t];
        let user_params: [&(dyn ToSql + Sync); 2] = [&t, &user];
        let mut reads: Vec<(&str, &[&(dyn ToSql + Sync)])> =
            vec![(SETTINGS_SELECT, &settings_params)];
        if key.user_id.is_some() {
            reads.push((&user_sql, &user_params));
        }
        let rows = self.read(ReadScope::Tenant(t), &reads).await?;
        let settings = match rows[0].first() {
            Some(r) => settings_at(r, 0)?,
            None => TenantSettings::default(),
        };
        // A key whose user was deleted is as good as disabled.
        let user_disabled = match rows.get(1) {
            Some(users) => users
                .first()
                .map(user_row)
                .transpose()?
                .is_none_or(|u| u.disabled),
            None => false,
        };
        Ok(Some(KeyAuth {
            key,
            user_disabled,
            settings,
        }))
    }

    async fn touch_key(&self, tenant: Uuid, key_id: Uuid, now_ms: i64) -> Result<(), StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        tx.execute(
            "UPDATE access_keys SET last_used_ms = greatest(coalesce(last_used_ms, 0), $3) WHERE tenant_id = $1 AND key_id = $2",
            &[&tenant, &key_id, &now_ms],
        )
        .await
        .map_err(pg)?;
        tx.commit().await
    }

    async fn create_key(
        &self,
        tenant: Uuid,
        key: NewKey,
        now_ms: i64,
    ) -> Result<ApiKey, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        if !tenant_exists(&tx, tenant).await? {
            return Err(StorageError::UnknownTenant);
        }
        if let Some(u) = key.user_id {
            if user_by_id(&tx, tenant, u).await?.is_none() {
                return Err(StorageError::UnknownUser);
            }
        }
        let key_id = Uuid::new_v4();
        tx.execute(
            "INSERT INTO access_keys (tenant_id, key_id, key_hash, prefix, name, role, scopes, user_id, created_by, created_at_ms, expires_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            &[
                &tenant,
                &key_id,
                &key.key_hash.as_slice(),
                &key.prefix,
                &key.name,
                &key.role.as_str(),
                &scopes_value(&key.scopes),
                &key.user_id,
                &key.created_by,
                &now_ms,
                &key.expires_at_ms,
            ],
        )
        .await
        .map_err(pg)?;
        tx.commit().await?;
        Ok(ApiKey {
            tenant_id: tenant,
            key_id,
            prefix: key.prefix,
            name: key.name,
            role: key.role,
            scopes: key.scopes,
            user_id: key.user_id,
            created_by: key.created_by,
            created_at_ms: now_ms,
            expires_at_ms: key.expires_at_ms,
            revoked_at_ms: None,
            last_used_ms: None,
        })
    }

    async fn list_keys(&self, tenant: Uuid) -> Result<Vec<ApiKey>, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let rows = tx
            .query(
                &format!("SELECT {KEY_COLUMNS} FROM access_keys WHERE tenant_id = $1 ORDER BY created_at_ms, key_id"),
                &[&tenant],
            )
            .await
            .map_err(pg)?;
        tx.commit().await?;
        rows.iter().map(key_row).collect()
    }

    async fn revoke_key(
        &self,
        tenant: Uuid,
        key_id: Uuid,
        now_ms: i64,
    ) -> Result<ApiKey, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let row = tx
            .query_opt(
                &format!(
                    "UPDATE access_keys SET revoked_at_ms = coalesce(revoked_at_ms, $3) WHERE tenant_id = $1 AND key_id = $2 RETURNING {KEY_COLUMNS}"
                ),
                &[&tenant, &key_id, &now_ms],
            )
            .await
            .map_err(pg)?
            .ok_or(StorageError::UnknownKey)?;
        tx.commit().await?;
        key_row(&row)
    }

    async fn create_user(
        &self,
        tenant: Uuid,
        user: NewUser,
        default_max_users: Option<u64>,
        now_ms: i64,
    ) -> Result<User, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        // The tenant's row lock makes concurrent creations count in turn.
        if tx
            .query_opt(
                "SELECT 1 FROM tenants WHERE tenant_id = $1 FOR UPDATE",
                &[&tenant],
            )
            .await
            .map_err(pg)?
            .is_none()
        {
            return Err(StorageError::UnknownTenant);
        }
        if let Some(max) = tenant_settings(&tx, tenant)
            .await?
            .max_users
            .or(default_max_users)
        {
            let n: i64 = tx
                .query_one(
                    "SELECT count(*) FROM users WHERE tenant_id = $1",
                    &[&tenant],
                )
                .await
                .map_err(pg)?
                .get(0);
            if n as u64 >= max {
                return Err(StorageError::LimitReached {
                    limit: "max_users",
                    max,
                });
            }
        }
        let email = user.email.trim().to_lowercase();
        let user_id = Uuid::new_v4();
        tx.execute(
            "INSERT INTO users (tenant_id, user_id, email, name, role, disabled, created_at_ms) VALUES ($1, $2, $3, $4, $5, false, $6)",
            &[&tenant, &user_id, &email, &user.name, &user.role.as_str(), &now_ms],
        )
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StorageError::Conflict(format!("a user with email {email} already exists"))
            } else {
                pg(e)
            }
        })?;
        tx.commit().await?;
        Ok(User {
            tenant_id: tenant,
            user_id,
            email,
            name: user.name,
            role: user.role,
            disabled: false,
            created_at_ms: now_ms,
        })
    }

    async fn list_users(&self, tenant: Uuid) -> Result<Vec<User>, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let rows = tx
            .query(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE tenant_id = $1 ORDER BY email"),
                &[&tenant],
            )
            .await
            .map_err(pg)?;
        tx.commit().await?;
        rows.iter().map(user_row).collect()
    }

    async fn user(&self, tenant: Uuid, user_id: Uuid) -> Result<Option<User>, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let u = user_by_id(&tx, tenant, user_id).await?;
        tx.commit().await?;
        Ok(u)
    }

    async fn update_user(
        &self,
        tenant: Uuid,
        user_id: Uuid,
        patch: UserPatch,
    ) -> Result<User, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let row = tx
            .query_opt(
                &format!(
                    "UPDATE users SET name = coalesce($3, name), role = coalesce($4, role), disabled = coalesce($5, disabled)
                     WHERE tenant_id = $1 AND user_id = $2 RETURNING {USER_COLUMNS}"
                ),
                &[
                    &tenant,
                    &user_id,
                    &patch.name,
                    &patch.role.map(Role::as_str),
                    &patch.disabled,
                ],
            )
            .await
            .map_err(pg)?
            .ok_or(StorageError::UnknownUser)?;
        tx.commit().await?;
        user_row(&row)
    }

    async fn delete_user(
        &self,
        tenant: Uuid,
        user_id: Uuid,
        now_ms: i64,
    ) -> Result<(), StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let n = tx
            .execute(
                "DELETE FROM users WHERE tenant_id = $1 AND user_id = $2",
                &[&tenant, &user_id],
            )
            .await
            .map_err(pg)?;
        if n == 0 {
            return Err(StorageError::UnknownUser);
        }
        tx.execute(
            "UPDATE access_keys SET revoked_at_ms = coalesce(revoked_at_ms, $3) WHERE tenant_id = $1 AND user_id = $2",
            &[&tenant, &user_id, &now_ms],
        )
        .await
        .map_err(pg)?;
        tx.commit().await
    }

    async fn list_tenants(&self) -> Result<Vec<TenantInfo>, StorageError> {
        let lookup = self.lookup_tx().await?;
        let rows = lookup
            .query(&format!("{TENANT_INFO} ORDER BY t.name, t.tenant_id"), &[])
            .await
            .map_err(pg)?;
        lookup.commit().await?;
        rows.iter().map(tenant_info_row).collect()
    }

    async fn tenant_info(&self, tenant: Uuid) -> Result<Option<TenantInfo>, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let row = tx
            .query_opt(&format!("{TENANT_INFO} WHERE t.tenant_id = $1"), &[&tenant])
            .await
            .map_err(pg)?;
        tx.commit().await?;
        row.map(|r| tenant_info_row(&r)).transpose()
    }

    async fn update_tenant_settings(
        &self,
        tenant: Uuid,
        patch: SettingsPatch,
        now_ms: i64,
    ) -> Result<TenantSettings, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        if tx
            .query_opt(
                "SELECT 1 FROM tenants WHERE tenant_id = $1 FOR UPDATE",
                &[&tenant],
            )
            .await
            .map_err(pg)?
            .is_none()
        {
            return Err(StorageError::UnknownTenant);
        }
        let mut s = tenant_settings(&tx, tenant).await?;
        s.features.extend(patch.features);
        if let Some(v) = patch.max_vehicles {
            s.max_vehicles = v;
        }
        if let Some(v) = patch.max_users {
            s.max_users = v;
        }
        if let Some(v) = patch.api_rate_per_min {
            s.api_rate_per_min = v;
        }
        let features = serde_json::to_value(&s.features).expect("flags serialise");
        tx.execute(
            "INSERT INTO tenant_settings (tenant_id, features, max_vehicles, max_users, api_rate_per_min, updated_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (tenant_id) DO UPDATE SET features = excluded.features, max_vehicles = excluded.max_vehicles,
                max_users = excluded.max_users, api_rate_per_min = excluded.api_rate_per_min, updated_at_ms = excluded.updated_at_ms",
            &[
                &tenant,
                &features,
                &opt_i64(s.max_vehicles),
                &opt_i64(s.max_users),
                &s.api_rate_per_min.map(i64::from),
                &now_ms,
            ],
        )
        .await
        .map_err(pg)?;
        tx.commit().await?;
        Ok(s)
    }

    async fn count_vehicles(&self, tenant: Uuid) -> Result<u64, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let n = count_vehicles(&tx, tenant).await?;
        tx.commit().await?;
        Ok(n)
    }

    async fn record_audit(&self, e: AuditEntry) -> Result<(), StorageError> {
        let tx = self.tenant_tx(e.tenant_id).await?;
        insert_audit(&tx, &e).await?;
        tx.commit().await
    }

    async fn query_audit(
        &self,
        tenant: Uuid,
        q: AuditQuery,
    ) -> Result<Vec<AuditEntry>, StorageError> {
        let mut sql = String::from(
            "SELECT tenant_id, audit_id, at_ms, actor_kind, actor_key_id, actor_user_id, action, target, detail, request_id
             FROM audit_log WHERE tenant_id = $1",
        );
        let mut args: Vec<Box<dyn ToSql + Sync + Send>> = vec![Box::new(tenant)];
        let mut push = |sql: &mut String, cond: &str, v: Box<dyn ToSql + Sync + Send>| {
            args.push(v);
            sql.push_str(&cond.replace('?', &format!("${}", args.len())));
        };
        if let Some(a) = q.action {
            push(&mut sql, " AND action = ?", Box::new(a));
        }
        if let Some(k) = q.actor_key_id {
            push(&mut sql, " AND actor_key_id = ?", Box::new(k));
        }
        if let Some(u) = q.actor_user_id {
            push(&mut sql, " AND actor_user_id = ?", Box::new(u));
        }
        if let Some(t) = q.target {
            push(&mut sql, " AND target = ?", Box::new(t));
        }
        if let Some(s) = q.since_ms {
            push(&mut sql, " AND at_ms >= ?", Box::new(s));
        }
        if let Some(u) = q.until_ms {
            push(&mut sql, " AND at_ms < ?", Box::new(u));
        }
        if let Some((at, id)) = q.before {
            push(&mut sql, " AND (at_ms, audit_id) < (?", Box::new(at));
            push(&mut sql, ", ?)", Box::new(id));
        }
        push(
            &mut sql,
            " ORDER BY at_ms DESC, audit_id DESC LIMIT ?",
            Box::new(i64::from(q.limit)),
        );
        let params: Vec<&(dyn ToSql + Sync)> = args
            .iter()
            .map(|a| a.as_ref() as &(dyn ToSql + Sync))
            .collect();
        let tx = self.tenant_tx(tenant).await?;
        let rows = tx.query(&sql, &params).await.map_err(pg)?;
        tx.commit().await?;
        rows.iter().map(audit_row).collect()
    }

    async fn set_vehicle_costs(
        &self,
        tenant: Uuid,
        device: Uuid,
        costs: CostProfile,
        now_ms: i64,
    ) -> Result<CostProfile, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        if tx
            .query_opt(
                "SELECT 1 FROM devices WHERE tenant_id = $1 AND device_id = $2",
                &[&tenant, &device],
            )
            .await
            .map_err(pg)?
            .is_none()
        {
            return Err(StorageError::UnknownDevice);
        }
        tx.execute(
            "INSERT INTO vehicle_costs (tenant_id, device_id, purchase_price_cents, purchase_date, fuel_cost_cents, maintenance_cost_cents, currency, updated_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (tenant_id, device_id) DO UPDATE SET purchase_price_cents = excluded.purchase_price_cents,
                purchase_date = excluded.purchase_date, fuel_cost_cents = excluded.fuel_cost_cents,
                maintenance_cost_cents = excluded.maintenance_cost_cents, currency = excluded.currency,
                updated_at_ms = excluded.updated_at_ms",
            &[
                &tenant,
                &device,
                &costs.purchase_price_cents,
                &costs.purchase_date,
                &costs.fuel_cost_cents,
                &costs.maintenance_cost_cents,
                &costs.currency,
                &now_ms,
            ],
        )
        .await
        .map_err(pg)?;
        tx.commit().await?;
        Ok(costs)
    }

    async fn vehicle_costs(
        &self,
        tenant: Uuid,
    ) -> Result<BTreeMap<Uuid, CostProfile>, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let rows = tx
            .query(
                "SELECT device_id, purchase_price_cents, purchase_date, fuel_cost_cents, maintenance_cost_cents, currency
                 FROM vehicle_costs WHERE tenant_id = $1",
                &[&tenant],
            )
            .await
            .map_err(pg)?;
        tx.commit().await?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    r.get(0),
                    CostProfile {
                        purchase_price_cents: r.get(1),
                        purchase_date: r.get(2),
                        fuel_cost_cents: r.get(3),
                        maintenance_cost_cents: r.get(4),
                        currency: r.get(5),
                    },
                )
            })
            .collect())
    }
}
