//! `fleet-sync admin user …` and `admin key …` through the real binary, on SQLite
//! and (with `FLEET_TEST_PG_URL`) PostgreSQL: what they print, that a key made
//! there signs in, and that disabling and revoking take effect.

use fleet_sync::http::auth::hash_key;
use fleet_sync::storage::postgres::testing::empty_database;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// Runs `fleet-sync admin ARGS` against `db` (a URL) or the data directory;
/// answers the exit success, the parsed stdout (null if none) and stderr.
fn admin(data: &Path, db: Option<&str>, args: &[&str]) -> (bool, Value, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fleet-sync"));
    cmd.arg("admin").arg("--data").arg(data);
    if let Some(url) = db {
        cmd.arg("--database-url").arg(url);
    }
    cmd.args(args)
        .env_remove("FLEET_DATABASE_URL")
        .env("RUST_LOG", "warn");
    let out = cmd.output().expect("running fleet-sync");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v = serde_json::from_str(stdout.trim()).unwrap_or(Value::Null);
    (
        out.status.success(),
        v,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(data: &Path, db: Option<&str>, args: &[&str]) -> Value {
    let (success, v, err) = admin(data, db, args);
    assert!(success, "admin {args:?} failed: {err}");
    v
}

fn refused(data: &Path, db: Option<&str>, args: &[&str], code: &str) {
    let (success, v, err) = admin(data, db, args);
    assert!(!success, "admin {args:?} should fail, printed {v}");
    assert!(
        err.contains(&format!("({code})")),
        "admin {args:?}: expected {code}, got {err}"
    );
}

async fn users_and_keys_are_managed_from_the_command_line(db: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let tenant = ok(data, db, &["tenant", "create", "--name", "acme"]);
    let t = tenant["tenant_id"].as_str().unwrap().to_owned();

    let user = ok(
        data,
        db,
        &[
            "user",
            "create",
            "--tenant",
            &t,
            "--email",
            "Dana@Example.com",
            "--name",
            "Dana",
            "--role",
            "dispatcher",
        ],
    );
    assert_eq!(user["email"], "dana@example.com");
    assert_eq!(user["role"], "dispatcher");
    assert_eq!(user["disabled"], false);
    let uid = user["id"].as_str().unwrap().to_owned();
    refused(
        data,
        db,
        &[
            "user",
            "create",
            "--tenant",
            &t,
            "--email",
            "dana@example.com",
            "--name",
            "Again",
            "--role",
            "driver",
        ],
        "conflict",
    );
    refused(
        data,
        db,
        &[
            "user",
            "create",
            "--tenant",
            &t,
            "--email",
            "not-an-email",
            "--name",
            "X",
            "--role",
            "driver",
        ],
        "bad_email",
    );
    refused(
        data,
        db,
        &[
            "user",
            "create",
            "--tenant",
            &t,
            "--email",
            "x@example.com",
            "--name",
            "X",
            "--role",
            "emperor",
        ],
        "bad_role",
    );
    let other_tenant = uuid::Uuid::new_v4().to_string();
    refused(
        data,
        db,
        &["user", "list", "--tenant", &other_tenant],
        "tenant_not_found",
    );
    let users = ok(data, db, &["user", "list", "--tenant", &t]);
    assert_eq!(users["users"].as_array().unwrap().len(), 1);

    // A key above the user's role is refused; one within it is made.
    refused(
        data,
        db,
        &[
            "key", "create", "--tenant", &t, "--name", "too much", "--role", "admin", "--user",
            &uid,
        ],
        "role_exceeds_user",
    );
    let key = ok(
        data,
        db,
        &[
            "key",
            "create",
            "--tenant",
            &t,
            "--name",
            "dana laptop",
            "--role",
            "driver",
            "--user",
            &uid,
        ],
    );
    let secret = key["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("fk_"));
    assert_eq!(key["state"], "active");
    let key_id = key["id"].as_str().unwrap().to_owned();
    let listed = ok(data, db, &["key", "list", "--tenant", &t]);
    let keys = listed["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "the tenant admin key and the new one");
    assert!(
        !listed.to_string().contains(&secret),
        "a listing never shows a secret"
    );

    // The key signs in until its user is disabled.
    let backend = fleet_sync::open_backend(db, data).await.unwrap();
    let storage = backend.storage();
    let auth = storage
        .key_by_hash(hash_key(&secret))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(auth.key.key_id.to_string(), key_id);
    assert!(!auth.user_disabled);
    let disabled = ok(
        data,
        db,
        &["user", "disable", "--tenant", &t, "--user", &uid],
    );
    assert_eq!(disabled["disabled"], true);
    let auth = storage
        .key_by_hash(hash_key(&secret))
        .await
        .unwrap()
        .unwrap();
    assert!(auth.user_disabled, "a disabled user's key stops working");

    let admin_key = ok(
        data,
        db,
        &[
            "key", "create", "--tenant", &t, "--name", "ops", "--role", "admin",
        ],
    );
    let admin_id = admin_key["id"].as_str().unwrap().to_owned();
    let revoked = ok(
        data,
        db,
        &["key", "revoke", "--tenant", &t, "--key", &admin_id],
    );
    assert_eq!(revoked["state"], "revoked");
    let auth = storage
        .key_by_hash(hash_key(admin_key["secret"].as_str().unwrap()))
        .await
        .unwrap()
        .unwrap();
    assert!(auth.key.revoked_at_ms.is_some());
    refused(
        data,
        db,
        &[
            "key",
            "revoke",
            "--tenant",
            &other_tenant,
            "--key",
            &admin_id,
        ],
        "tenant_not_found",
    );

    // Every change is in the audit log, as done from the command line.
    let tenant_id = t.parse().unwrap();
    let audit = storage
        .query_audit(
            tenant_id,
            fleet_sync::storage::access::AuditQuery {
                limit: 50,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let actions: Vec<(&str, &str)> = audit
        .iter()
        .map(|e| (e.action.as_str(), e.actor_kind.as_str()))
        .collect();
    for action in ["user.create", "user.update", "key.create", "key.revoke"] {
        assert!(
            actions.contains(&(action, "cli")),
            "{action} missing from {actions:?}"
        );
    }
}

#[tokio::test]
async fn users_and_keys_are_managed_from_the_command_line_on_sqlite() {
    users_and_keys_are_managed_from_the_command_line(None).await;
}

#[tokio::test]
async fn users_and_keys_are_managed_from_the_command_line_on_postgres() {
    let Some(guard) = empty_database().await else {
        return;
    };
    let c = guard.app_config();
    let host = match &c.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
    };
    let url = format!(
        "postgres://{}:{}@{host}:{}/{}",
        c.get_user().unwrap(),
        String::from_utf8_lossy(c.get_password().unwrap()),
        c.get_ports().first().copied().unwrap_or(5432),
        c.get_dbname().unwrap()
    );
    users_and_keys_are_managed_from_the_command_line(Some(&url)).await;
}
