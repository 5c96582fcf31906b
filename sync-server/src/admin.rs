//! `fleet-sync admin user …` and `admin key …`: a tenant's users and API keys from
//! the command line, for the first admin of a tenant and for recovery when no
//! admin key is at hand. The checks are the HTTP API's, the answers print the
//! same JSON, and every change is in the audit log with the actor `cli`.
//! `admin signing-key reseal` moves every tenant's sealed signing key to a new
//! key-encryption key.

use crate::http::auth::{mint_key, Role};
use crate::http::error::ApiError;
use crate::http::keys::{check_text, key_json, parse_time, time_json};
use crate::http::users::{check_email, user_json};
use crate::storage::access::{ActorKind, AuditEntry, NewKey, NewUser, UserPatch};
use crate::storage::{now_ms, Storage};
use serde_json::{json, Value};
use uuid::Uuid;

fn role(s: &str) -> Result<Role, ApiError> {
    Role::parse(s).ok_or_else(|| {
        ApiError::bad_request(
            "bad_role",
            format!(
                "{s:?} is not a role; use one of {}",
                Role::ALL.map(Role::as_str).join(", ")
            ),
        )
    })
}

async fn known_tenant(storage: &dyn Storage, tenant: Uuid) -> Result<(), ApiError> {
    match storage.tenant_info(tenant).await? {
        Some(_) => Ok(()),
        None => Err(ApiError::not_found("tenant_not_found", "no such tenant")),
    }
}

async fn audit(
    storage: &dyn Storage,
    tenant: Uuid,
    action: &str,
    target: String,
    detail: Value,
) -> Result<(), ApiError> {
    storage
        .record_audit(AuditEntry {
            tenant_id: tenant,
            audit_id: Uuid::new_v4(),
            at_ms: now_ms(),
            actor_kind: ActorKind::Cli,
            actor_key_id: None,
            actor_user_id: None,
            action: action.to_owned(),
            target,
            detail,
            request_id: None,
        })
        .await?;
    Ok(())
}

/// Creates a user; answers the user as `GET /api/v1/users/{id}` shows it.
pub async fn create_user(
    storage: &dyn Storage,
    tenant: Uuid,
    email: &str,
    name: &str,
    role_name: &str,
    default_max_users: Option<u64>,
) -> Result<Value, ApiError> {
    let email = check_email(email)?;
    let name = check_text("name", name, 100)?;
    let role = role(role_name)?;
    known_tenant(storage, tenant).await?;
    let user = storage
        .create_user(
            tenant,
            NewUser { email, name, role },
            default_max_users,
            now_ms(),
        )
        .await?;
    audit(
        storage,
        tenant,
        "user.create",
        format!("user:{}", user.user_id),
        json!({ "email": user.email, "role": user.role }),
    )
    .await?;
    Ok(user_json(&user))
}

pub async fn list_users(storage: &dyn Storage, tenant: Uuid) -> Result<Value, ApiError> {
    known_tenant(storage, tenant).await?;
    let users: Vec<Value> = storage
        .list_users(tenant)
        .await?
        .iter()
        .map(user_json)
        .collect();
    Ok(json!({ "users": users }))
}

/// Disables a user, which stops every key made for them.
pub async fn disable_user(
    storage: &dyn Storage,
    tenant: Uuid,
    user: Uuid,
) -> Result<Value, ApiError> {
    known_tenant(storage, tenant).await?;
    if storage.user(tenant, user).await?.is_none() {
        return Err(ApiError::not_found("user_not_found", "no such user"));
    }
    let user = storage
        .update_user(
            tenant,
            user,
            UserPatch {
                disabled: Some(true),
                ..UserPatch::default()
            },
        )
        .await?;
    audit(
        storage,
        tenant,
        "user.update",
        format!("user:{}", user.user_id),
        json!({ "disabled": true }),
    )
    .await?;
    Ok(user_json(&user))
}

/// Creates an API key; the answer carries its `secret`, shown this once.
pub async fn create_key(
    storage: &dyn Storage,
    tenant: Uuid,
    name: &str,
    role_name: &str,
    user_id: Option<Uuid>,
    expires_at: Option<&str>,
) -> Result<Value, ApiError> {
    let name = check_text("name", name, 100)?;
    let role = role(role_name)?;
    let now = now_ms();
    let expires_at_ms = match expires_at {
        None => None,
        Some(s) => {
            let at = parse_time("expires_at", s)?;
            if at <= now {
                return Err(ApiError::bad_request(
                    "bad_time",
                    "expires_at must be in the future",
                ));
            }
            Some(at)
        }
    };
    known_tenant(storage, tenant).await?;
    if let Some(u) = user_id {
        let user = storage
            .user(tenant, u)
            .await?
            .ok_or_else(|| ApiError::not_found("user_not_found", "no such user"))?;
        if !role.is_within(user.role) {
            return Err(ApiError::bad_request(
                "role_exceeds_user",
                format!(
                    "{} is a {}; their keys may not be {}",
                    user.email, user.role, role
                ),
            ));
        }
    }
    let minted = mint_key();
    let key = storage
        .create_key(
            tenant,
            NewKey {
                key_hash: minted.hash,
                prefix: minted.prefix,
                name,
                role,
                scopes: None,
                user_id,
                created_by: None,
                expires_at_ms,
            },
            now,
        )
        .await?;
    audit(
        storage,
        tenant,
        "key.create",
        format!("key:{}", key.key_id),
        json!({ "name": key.name, "role": key.role, "user_id": key.user_id, "expires_at": time_json(key.expires_at_ms) }),
    )
    .await?;
    let mut body = key_json(&key, now);
    body["secret"] = Value::String(minted.secret);
    Ok(body)
}

pub async fn list_keys(storage: &dyn Storage, tenant: Uuid) -> Result<Value, ApiError> {
    known_tenant(storage, tenant).await?;
    let now = now_ms();
    let keys: Vec<Value> = storage
        .list_keys(tenant)
        .await?
        .iter()
        .map(|k| key_json(k, now))
        .collect();
    Ok(json!({ "keys": keys }))
}

/// Revokes a key; its next request is refused.
pub async fn revoke_key(storage: &dyn Storage, tenant: Uuid, key: Uuid) -> Result<Value, ApiError> {
    known_tenant(storage, tenant).await?;
    let key = storage.revoke_key(tenant, key, now_ms()).await?;
    audit(
        storage,
        tenant,
        "key.revoke",
        format!("key:{}", key.key_id),
        json!({ "name": key.name, "prefix": key.prefix }),
    )
    .await?;
    Ok(key_json(&key, now_ms()))
}

/// `admin signing-key reseal --old-key-file A --new-key-file B`: re-seals every
/// tenant's signing key from the key in A to the key in B (see
/// [`crate::sealing::reseal_all`]); answers what it did.
pub async fn reseal_signing_keys(
    storage: &dyn Storage,
    old_key_file: &std::path::Path,
    new_key_file: &std::path::Path,
) -> Result<Value, crate::sealing::ResealError> {
    use crate::sealing::{read_key_file, reseal_all};
    let old = read_key_file("--old-key-file", old_key_file)?;
    let new = read_key_file("--new-key-file", new_key_file)?;
    let report = reseal_all(storage, &old, &new).await?;
    Ok(serde_json::to_value(report).expect("a report serialises"))
}

/// `admin user set-password` (and `user create --password-stdin`): sets the
/// user's dashboard password, ending their sessions.
pub async fn set_password(
    storage: &dyn Storage,
    tenant: Uuid,
    user: Uuid,
    password: String,
) -> Result<Value, ApiError> {
    use crate::http::session::{check_password, hash_password, PasswordCost};
    check_password(&password)?;
    known_tenant(storage, tenant).await?;
    if storage.user(tenant, user).await?.is_none() {
        return Err(ApiError::not_found("user_not_found", "no such user"));
    }
    let phc = tokio::task::spawn_blocking(move || hash_password(PasswordCost::DEFAULT, &password))
        .await
        .expect("password hashing does not panic");
    storage.set_password(tenant, user, &phc, now_ms()).await?;
    audit(
        storage,
        tenant,
        "user.set_password",
        format!("user:{user}"),
        json!({}),
    )
    .await?;
    Ok(json!({ "id": user, "password_set": true }))
}

/// The first line of standard input, without its line ending.
pub fn read_password_line(mut input: impl std::io::BufRead) -> std::io::Result<String> {
    let mut line = String::new();
    input.read_line(&mut line)?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}
