//! [`AccessStore`] on SQLite.

use super::conn::backend;
use super::{blob, uuid_at, SqliteStorage};
use crate::http::auth::{Capability, Role};
use crate::storage::access::{
    AccessStore, ActorKind, ApiKey, AuditEntry, AuditQuery, CostProfile, KeyAuth, NewKey, NewUser,
    SettingsPatch, TenantInfo, TenantSettings, User, UserPatch,
};
use crate::storage::StorageError;
use async_trait::async_trait;
use rusqlite::types::Value as Sql;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row};
use std::collections::BTreeMap;
use uuid::Uuid;

fn conversion(i: usize, msg: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, msg.into())
}

fn role_at(r: &Row<'_>, i: usize) -> rusqlite::Result<Role> {
    let s: String = r.get(i)?;
    Role::parse(&s).ok_or_else(|| conversion(i, format!("unknown role {s:?}")))
}

fn opt_uuid_at(r: &Row<'_>, i: usize) -> rusqlite::Result<Option<Uuid>> {
    match r.get::<_, Option<Vec<u8>>>(i)? {
        None => Ok(None),
        Some(b) => Uuid::from_slice(&b)
            .map(Some)
            .map_err(|e| conversion(i, e.to_string())),
    }
}

pub(crate) fn scopes_json(scopes: &Option<Vec<Capability>>) -> Option<String> {
    scopes
        .as_ref()
        .map(|s| serde_json::to_string(s).expect("capabilities serialise"))
}

fn scopes_at(r: &Row<'_>, i: usize) -> rusqlite::Result<Option<Vec<Capability>>> {
    match r.get::<_, Option<String>>(i)? {
        None => Ok(None),
        Some(s) => serde_json::from_str(&s)
            .map(Some)
            .map_err(|e| conversion(i, e.to_string())),
    }
}

const KEY_COLUMNS: &str = "tenant_id, key_id, prefix, name, role, scopes, user_id, created_by, created_at_ms, expires_at_ms, revoked_at_ms, last_used_ms";

fn key_row(r: &Row<'_>) -> rusqlite::Result<ApiKey> {
    Ok(ApiKey {
        tenant_id: uuid_at(r, 0)?,
        key_id: uuid_at(r, 1)?,
        prefix: r.get(2)?,
        name: r.get(3)?,
        role: role_at(r, 4)?,
        scopes: scopes_at(r, 5)?,
        user_id: opt_uuid_at(r, 6)?,
        created_by: opt_uuid_at(r, 7)?,
        created_at_ms: r.get(8)?,
        expires_at_ms: r.get(9)?,
        revoked_at_ms: r.get(10)?,
        last_used_ms: r.get(11)?,
    })
}

const USER_COLUMNS: &str = "tenant_id, user_id, email, name, role, disabled, created_at_ms";

fn user_row(r: &Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        tenant_id: uuid_at(r, 0)?,
        user_id: uuid_at(r, 1)?,
        email: r.get(2)?,
        name: r.get(3)?,
        role: role_at(r, 4)?,
        disabled: r.get(5)?,
        created_at_ms: r.get(6)?,
    })
}

fn limit_at(r: &Row<'_>, i: usize) -> rusqlite::Result<Option<u64>> {
    Ok(r.get::<_, Option<i64>>(i)?.map(|v| v.max(0) as u64))
}

/// Settings columns: features, max_vehicles, max_users, api_rate_per_min.
fn settings_at(r: &Row<'_>, i: usize) -> rusqlite::Result<TenantSettings> {
    let features: Option<String> = r.get(i)?;
    Ok(TenantSettings {
        features: match features {
            None => BTreeMap::new(),
            Some(f) => serde_json::from_str(&f).map_err(|e| conversion(i, e.to_string()))?,
        },
        max_vehicles: limit_at(r, i + 1)?,
        max_users: limit_at(r, i + 2)?,
        api_rate_per_min: r
            .get::<_, Option<i64>>(i + 3)?
            .map(|v| v.clamp(0, i64::from(u32::MAX)) as u32),
    })
}

fn tenant_settings(c: &Connection, tenant: &Uuid) -> Result<TenantSettings, StorageError> {
    Ok(c
        .prepare_cached(
            "SELECT features, max_vehicles, max_users, api_rate_per_min FROM tenant_settings WHERE tenant_id = ?1",
        )
        .map_err(backend)?
        .query_row(params![blob(tenant)], |r| settings_at(r, 0))
        .optional()
        .map_err(backend)?
        .unwrap_or_default())
}

fn tenant_exists(c: &Connection, tenant: &Uuid) -> Result<bool, StorageError> {
    Ok(
        c.prepare_cached("SELECT 1 FROM tenants WHERE tenant_id = ?1")
            .map_err(backend)?
            .query_row(params![blob(tenant)], |_| Ok(()))
            .optional()
            .map_err(backend)?
            .is_some(),
    )
}

fn count_vehicles(c: &Connection, tenant: &Uuid) -> Result<u64, StorageError> {
    c.prepare_cached("SELECT count(*) FROM devices WHERE tenant_id = ?1 AND revoked_at_ms IS NULL")
        .map_err(backend)?
        .query_row(params![blob(tenant)], |r| r.get::<_, i64>(0))
        .map(|n| n as u64)
        .map_err(backend)
}

/// Refuses a new device when the tenant is at its `max_vehicles`; called inside
/// the enrollment transaction so two enrollments can't both take the last place.
pub(crate) fn check_vehicle_limit(c: &Connection, tenant: &Uuid) -> Result<(), StorageError> {
    if let Some(max) = tenant_settings(c, tenant)?.max_vehicles {
        if count_vehicles(c, tenant)? >= max {
            return Err(StorageError::LimitReached {
                limit: "max_vehicles",
                max,
            });
        }
    }
    Ok(())
}

fn user_by_id(c: &Connection, tenant: &Uuid, user: &Uuid) -> Result<Option<User>, StorageError> {
    c.prepare_cached(&format!(
        "SELECT {USER_COLUMNS} FROM users WHERE tenant_id = ?1 AND user_id = ?2"
    ))
    .map_err(backend)?
    .query_row(params![blob(tenant), blob(user)], user_row)
    .optional()
    .map_err(backend)
}

fn audit_row(r: &Row<'_>) -> rusqlite::Result<AuditEntry> {
    let kind: String = r.get(3)?;
    let detail: String = r.get(8)?;
    Ok(AuditEntry {
        tenant_id: uuid_at(r, 0)?,
        audit_id: uuid_at(r, 1)?,
        at_ms: r.get(2)?,
        actor_kind: ActorKind::parse(&kind)
            .ok_or_else(|| conversion(3, format!("actor kind {kind:?}")))?,
        actor_key_id: opt_uuid_at(r, 4)?,
        actor_user_id: opt_uuid_at(r, 5)?,
        action: r.get(6)?,
        target: r.get(7)?,
        detail: serde_json::from_str(&detail).map_err(|e| conversion(8, e.to_string()))?,
        request_id: r.get(9)?,
    })
}

fn tenant_info_row(r: &Row<'_>) -> rusqlite::Result<TenantInfo> {
    Ok(TenantInfo {
        tenant_id: uuid_at(r, 0)?,
        name: r.get(1)?,
        created_at_ms: r.get(2)?,
        settings: settings_at(r, 3)?,
    })
}

const TENANT_INFO: &str = "SELECT t.tenant_id, t.name, t.created_at_ms, s.features, s.max_vehicles, s.max_users, s.api_rate_per_min
     FROM tenants t LEFT JOIN tenant_settings s ON s.tenant_id = t.tenant_id";

fn opt_i64(v: Option<u64>) -> Option<i64> {
    v.map(|v| i64::try_from(v).unwrap_or(i64::MAX))
}

/// Adds `e` to the audit log, in the caller's transaction (or on its own).
pub(super) fn insert_audit(c: &Connection, e: &AuditEntry) -> Result<(), StorageError> {
    c.prepare_cached(
        "INSERT INTO audit_log (tenant_id, at_ms, audit_id, actor_kind, actor_key_id, actor_user_id, action, target, detail, request_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )
    .map_err(backend)?
    .execute(params![
        blob(&e.tenant_id),
        e.at_ms,
        blob(&e.audit_id),
        e.actor_kind.as_str(),
        e.actor_key_id.as_ref().map(blob),
        e.actor_user_id.as_ref().map(blob),
        e.action,
        e.target,
        e.detail.to_string(),
        e.request_id,
    ])
    .map_err(backend)?;
    Ok(())
}

#[async_trait]
impl AccessStore for SqliteStorage {
    async fn key_by_hash(&self, key_hash: [u8; 32]) -> Result<Option<KeyAuth>, StorageError> {
        self.pool
            .read(move |c| {
                let found = c
                    .prepare_cached(&format!(
                        "SELECT {KEY_COLUMNS} FROM access_keys WHERE key_hash = ?1"
                    ))
                    .map_err(backend)?
                    .query_row(params![key_hash.as_slice()], key_row)
                    .optional()
                    .map_err(|e| StorageError::Corrupt(e.to_string()))?;
                let Some(key) = found else { return Ok(None) };
                let user_disabled = match key.user_id {
                    // A key whose user was deleted is as good as disabled.
                    Some(u) => user_by_id(c, &key.tenant_id, &u)?.is_none_or(|u| u.disabled),
                    None => false,
                };
                let settings = tenant_settings(c, &key.tenant_id)?;
                Ok(Some(KeyAuth {
                    key,
                    user_disabled,
                    settings,
                }))
            })
            .await
    }

    async fn touch_key(&self, tenant: Uuid, key_id: Uuid, now_ms: i64) -> Result<(), StorageError> {
        self.pool
            .write(move |c| {
                c.prepare_cached(
                    "UPDATE access_keys SET last_used_ms = max(coalesce(last_used_ms, 0), ?3) WHERE tenant_id = ?1 AND key_id = ?2",
                )
                .map_err(backend)?
                .execute(params![blob(&tenant), blob(&key_id), now_ms])
                .map_err(backend)?;
                Ok(())
            })
            .await
    }

    async fn create_key(
        &self,
        tenant: Uuid,
        key: NewKey,
        now_ms: i64,
    ) -> Result<ApiKey, StorageError> {
        self.pool
            .write(move |c| {
                let tx = c.transaction().map_err(backend)?;
                if !tenant_exists(&tx, &tenant)? {
                    return Err(StorageError::UnknownTenant);
                }
                if let Some(u) = key.user_id {
                    if user_by_id(&tx, &tenant, &u)?.is_none() {
                        return Err(StorageError::UnknownUser);
                    }
                }
                let key_id = Uuid::new_v4();
                tx.execute(
                    "INSERT INTO access_keys (tenant_id, key_id, key_hash, prefix, name, role, scopes, user_id, created_by, created_at_ms, expires_at_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                    params![
                        blob(&tenant),
                        blob(&key_id),
                        key.key_hash.as_slice(),
                        key.prefix,
                        key.name,
                        key.role.as_str(),
                        scopes_json(&key.scopes),
                        key.user_id.as_ref().map(blob),
                        key.created_by.as_ref().map(blob),
                        now_ms,
                        key.expires_at_ms,
                    ],
                )
                .map_err(backend)?;
                tx.commit().map_err(backend)?;
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
            })
            .await
    }

    async fn list_keys(&self, tenant: Uuid) -> Result<Vec<ApiKey>, StorageError> {
        self.pool
            .read(move |c| {
                let mut q = c
                    .prepare_cached(&format!(
                        "SELECT {KEY_COLUMNS} FROM access_keys WHERE tenant_id = ?1 ORDER BY created_at_ms, key_id"
                    ))
                    .map_err(backend)?;
                let rows = q.query_map(params![blob(&tenant)], key_row).map_err(backend)?;
                rows.collect::<Result<Vec<_>, _>>()
                    .map_err(|e| StorageError::Corrupt(e.to_string()))
            })
            .await
    }

    async fn revoke_key(
        &self,
        tenant: Uuid,
        key_id: Uuid,
        now_ms: i64,
    ) -> Result<ApiKey, StorageError> {
        self.pool
            .write(move |c| {
                let tx = c.transaction().map_err(backend)?;
                tx.execute(
                    "UPDATE access_keys SET revoked_at_ms = coalesce(revoked_at_ms, ?3) WHERE tenant_id = ?1 AND key_id = ?2",
                    params![blob(&tenant), blob(&key_id), now_ms],
                )
                .map_err(backend)?;
                let key = tx
                    .query_row(
                        &format!("SELECT {KEY_COLUMNS} FROM access_keys WHERE tenant_id = ?1 AND key_id = ?2"),
                        params![blob(&tenant), blob(&key_id)],
                        key_row,
                    )
                    .optional()
                    .map_err(backend)?
                    .ok_or(StorageError::UnknownKey)?;
                tx.commit().map_err(backend)?;
                Ok(key)
            })
            .await
    }

    async fn create_user(
        &self,
        tenant: Uuid,
        user: NewUser,
        default_max_users: Option<u64>,
        now_ms: i64,
    ) -> Result<User, StorageError> {
        self.pool
            .write(move |c| {
                let tx = c.transaction().map_err(backend)?;
                if !tenant_exists(&tx, &tenant)? {
                    return Err(StorageError::UnknownTenant);
                }
                if let Some(max) = tenant_settings(&tx, &tenant)?.max_users.or(default_max_users) {
                    let n: i64 = tx
                        .query_row("SELECT count(*) FROM users WHERE tenant_id = ?1", params![blob(&tenant)], |r| r.get(0))
                        .map_err(backend)?;
                    if n as u64 >= max {
                        return Err(StorageError::LimitReached { limit: "max_users", max });
                    }
                }
                let email = user.email.trim().to_lowercase();
                let taken = tx
                    .query_row(
                        "SELECT 1 FROM users WHERE tenant_id = ?1 AND email = ?2",
                        params![blob(&tenant), email],
                        |_| Ok(()),
                    )
                    .optional()
                    .map_err(backend)?
                    .is_some();
                if taken {
                    return Err(StorageError::Conflict(format!("a user with email {email} already exists")));
                }
                let user_id = Uuid::new_v4();
                tx.execute(
                    "INSERT INTO users (tenant_id, user_id, email, name, role, disabled, created_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6)",
                    params![blob(&tenant), blob(&user_id), email, user.name, user.role.as_str(), now_ms],
                )
                .map_err(backend)?;
                tx.commit().map_err(backend)?;
                Ok(User {
                    tenant_id: tenant,
                    user_id,
                    email,
                    name: user.name,
                    role: user.role,
                    disabled: false,
                    created_at_ms: now_ms,
                })
            })
            .await
    }

    async fn list_users(&self, tenant: Uuid) -> Result<Vec<User>, StorageError> {
        self.pool
            .read(move |c| {
                let mut q = c
                    .prepare_cached(&format!(
                        "SELECT {USER_COLUMNS} FROM users WHERE tenant_id = ?1 ORDER BY email"
                    ))
                    .map_err(backend)?;
                let rows = q
                    .query_map(params![blob(&tenant)], user_row)
                    .map_err(backend)?;
                rows.collect::<Result<Vec<_>, _>>()
                    .map_err(|e| StorageError::Corrupt(e.to_string()))
            })
            .await
    }

    async fn user(&self, tenant: Uuid, user_id: Uuid) -> Result<Option<User>, StorageError> {
        self.pool
            .read(move |c| user_by_id(c, &tenant, &user_id))
            .await
    }

    async fn update_user(
        &self,
        tenant: Uuid,
        user_id: Uuid,
        patch: UserPatch,
    ) -> Result<User, StorageError> {
        self.pool
            .write(move |c| {
                let tx = c.transaction().map_err(backend)?;
                let mut user =
                    user_by_id(&tx, &tenant, &user_id)?.ok_or(StorageError::UnknownUser)?;
                if let Some(name) = patch.name {
                    user.name = name;
                }
                if let Some(role) = patch.role {
                    user.role = role;
                }
                if let Some(disabled) = patch.disabled {
                    user.disabled = disabled;
                }
                tx.execute(
                    "UPDATE users SET name = ?3, role = ?4, disabled = ?5 WHERE tenant_id = ?1 AND user_id = ?2",
                    params![
                        blob(&tenant),
                        blob(&user_id),
                        user.name,
                        user.role.as_str(),
                        user.disabled
                    ],
                )
                .map_err(backend)?;
                tx.commit().map_err(backend)?;
                Ok(user)
            })
            .await
    }

    async fn delete_user(
        &self,
        tenant: Uuid,
        user_id: Uuid,
        now_ms: i64,
    ) -> Result<(), StorageError> {
        self.pool
            .write(move |c| {
                let tx = c.transaction().map_err(backend)?;
                let n = tx
                    .execute(
                        "DELETE FROM users WHERE tenant_id = ?1 AND user_id = ?2",
                        params![blob(&tenant), blob(&user_id)],
                    )
                    .map_err(backend)?;
                if n == 0 {
                    return Err(StorageError::UnknownUser);
                }
                tx.execute(
                    "UPDATE access_keys SET revoked_at_ms = coalesce(revoked_at_ms, ?3) WHERE tenant_id = ?1 AND user_id = ?2",
                    params![blob(&tenant), blob(&user_id), now_ms],
                )
                .map_err(backend)?;
                tx.commit().map_err(backend)
            })
            .await
    }

    async fn list_tenants(&self) -> Result<Vec<TenantInfo>, StorageError> {
        self.pool
            .read(move |c| {
                let mut q = c
                    .prepare_cached(&format!("{TENANT_INFO} ORDER BY t.name, t.tenant_id"))
                    .map_err(backend)?;
                let rows = q.query_map([], tenant_info_row).map_err(backend)?;
                rows.collect::<Result<Vec<_>, _>>()
                    .map_err(|e| StorageError::Corrupt(e.to_string()))
            })
            .await
    }

    async fn tenant_info(&self, tenant: Uuid) -> Result<Option<TenantInfo>, StorageError> {
        self.pool
            .read(move |c| {
                c.prepare_cached(&format!("{TENANT_INFO} WHERE t.tenant_id = ?1"))
                    .map_err(backend)?
                    .query_row(params![blob(&tenant)], tenant_info_row)
                    .optional()
                    .map_err(|e| StorageError::Corrupt(e.to_string()))
            })
            .await
    }

    async fn update_tenant_settings(
        &self,
        tenant: Uuid,
        patch: SettingsPatch,
        now_ms: i64,
    ) -> Result<TenantSettings, StorageError> {
        self.pool
            .write(move |c| {
                let tx = c.transaction().map_err(backend)?;
                if !tenant_exists(&tx, &tenant)? {
                    return Err(StorageError::UnknownTenant);
                }
                let mut s = tenant_settings(&tx, &tenant)?;
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
                tx.execute(
                    "INSERT INTO tenant_settings (tenant_id, features, max_vehicles, max_users, api_rate_per_min, updated_at_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (tenant_id) DO UPDATE SET features = excluded.features, max_vehicles = excluded.max_vehicles,
                        max_users = excluded.max_users, api_rate_per_min = excluded.api_rate_per_min, updated_at_ms = excluded.updated_at_ms",
                    params![
                        blob(&tenant),
                        serde_json::to_string(&s.features).expect("flags serialise"),
                        opt_i64(s.max_vehicles),
                        opt_i64(s.max_users),
                        s.api_rate_per_min,
                        now_ms
                    ],
                )
                .map_err(backend)?;
                tx.commit().map_err(backend)?;
                Ok(s)
            })
            .await
    }

    async fn count_vehicles(&self, tenant: Uuid) -> Result<u64, StorageError> {
        self.pool.read(move |c| count_vehicles(c, &tenant)).await
    }

    async fn record_audit(&self, e: AuditEntry) -> Result<(), StorageError> {
        self.pool.write(move |c| insert_audit(c, &e)).await
    }

    async fn query_audit(
        &self,
        tenant: Uuid,
        q: AuditQuery,
    ) -> Result<Vec<AuditEntry>, StorageError> {
        self.pool
            .read(move |c| {
                let mut sql = String::from(
                    "SELECT tenant_id, audit_id, at_ms, actor_kind, actor_key_id, actor_user_id, action, target, detail, request_id
                     FROM audit_log WHERE tenant_id = ?",
                );
                let mut args: Vec<Sql> = vec![Sql::Blob(tenant.as_bytes().to_vec())];
                if let Some(a) = q.action {
                    sql.push_str(" AND action = ?");
                    args.push(Sql::Text(a));
                }
                if let Some(k) = q.actor_key_id {
                    sql.push_str(" AND actor_key_id = ?");
                    args.push(Sql::Blob(k.as_bytes().to_vec()));
                }
                if let Some(u) = q.actor_user_id {
                    sql.push_str(" AND actor_user_id = ?");
                    args.push(Sql::Blob(u.as_bytes().to_vec()));
                }
                if let Some(t) = q.target {
                    sql.push_str(" AND target = ?");
                    args.push(Sql::Text(t));
                }
                if let Some(s) = q.since_ms {
                    sql.push_str(" AND at_ms >= ?");
                    args.push(Sql::Integer(s));
                }
                if let Some(u) = q.until_ms {
                    sql.push_str(" AND at_ms < ?");
                    args.push(Sql::Integer(u));
                }
                if let Some((at, id)) = q.before {
                    sql.push_str(" AND (at_ms < ? OR (at_ms = ? AND audit_id < ?))");
                    args.push(Sql::Integer(at));
                    args.push(Sql::Integer(at));
                    args.push(Sql::Blob(id.as_bytes().to_vec()));
                }
                sql.push_str(" ORDER BY at_ms DESC, audit_id DESC LIMIT ?");
                args.push(Sql::Integer(i64::from(q.limit)));
                let mut stmt = c.prepare(&sql).map_err(backend)?;
                let rows = stmt
                    .query_map(params_from_iter(args), audit_row)
                    .map_err(backend)?;
                rows.collect::<Result<Vec<_>, _>>()
                    .map_err(|e| StorageError::Corrupt(e.to_string()))
            })
            .await
    }

    async fn set_vehicle_costs(
        &self,
        tenant: Uuid,
        device: Uuid,
        costs: CostProfile,
        now_ms: i64,
    ) -> Result<CostProfile, StorageError> {
        self.pool
            .write(move |c| {
                let tx = c.transaction().map_err(backend)?;
                let known = tx
                    .query_row(
                        "SELECT 1 FROM devices WHERE tenant_id = ?1 AND device_id = ?2",
                        params![blob(&tenant), blob(&device)],
                        |_| Ok(()),
                    )
                    .optional()
                    .map_err(backend)?
                    .is_some();
                if !known {
                    return Err(StorageError::UnknownDevice);
                }
                tx.execute(
                    "INSERT INTO vehicle_costs (tenant_id, device_id, purchase_price_cents, purchase_date, fuel_cost_cents, maintenance_cost_cents, currency, updated_at_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     ON CONFLICT (tenant_id, device_id) DO UPDATE SET purchase_price_cents = excluded.purchase_price_cents,
                        purchase_date = excluded.purchase_date, fuel_cost_cents = excluded.fuel_cost_cents,
                        maintenance_cost_cents = excluded.maintenance_cost_cents, currency = excluded.currency,
                        updated_at_ms = excluded.updated_at_ms",
                    params![
                        blob(&tenant),
                        blob(&device),
                        costs.purchase_price_cents,
                        costs.purchase_date,
                        costs.fuel_cost_cents,
                        costs.maintenance_cost_cents,
                        costs.currency,
                        now_ms
                    ],
                )
                .map_err(backend)?;
                tx.commit().map_err(backend)?;
                Ok(costs)
            })
            .await
    }

    async fn vehicle_costs(
        &self,
        tenant: Uuid,
    ) -> Result<BTreeMap<Uuid, CostProfile>, StorageError> {
        self.pool
            .read(move |c| {
                let mut q = c
                    .prepare_cached(
                        "SELECT device_id, purchase_price_cents, purchase_date, fuel_cost_cents, maintenance_cost_cents, currency
                         FROM vehicle_costs WHERE tenant_id = ?1",
                    )
                    .map_err(backend)?;
                let rows = q
                    .query_map(params![blob(&tenant)], |r| {
                        Ok((
                            uuid_at(r, 0)?,
                            CostProfile {
                                purchase_price_cents: r.get(1)?,
                                purchase_date: r.get(2)?,
                                fuel_cost_cents: r.get(3)?,
                                maintenance_cost_cents: r.get(4)?,
                                currency: r.get(5)?,
                            },
                        ))
                    })
                    .map_err(backend)?;
                rows.collect::<Result<BTreeMap<_, _>, _>>().map_err(backend)
            })
            .await
    }
}
