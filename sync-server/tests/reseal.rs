//! `fleet-sync admin signing-key reseal` through the real binary, on SQLite and
//! (with `FLEET_TEST_PG_URL`) PostgreSQL: after a key-encryption key rotation
//! every tenant's signing key opens with the new key and still signs as before;
//! a wrong old key is refused by its id and changes nothing; a second run
//! changes nothing; each tenant gets one audit entry.

use fleet_protocol::label::{verify_at, TenantTrust};
use fleet_sync::sealing::Sealing;
use fleet_sync::storage::access::AuditQuery;
use fleet_sync::storage::postgres::testing::empty_database;
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use uuid::Uuid;

const KEY_A: &str = "a1";
const KEY_B: &str = "b2";
const KEY_WRONG: &str = "c3";

/// `fleet-sync admin ARGS` with `kek` as the server's key-encryption key:
/// success, the parsed stdout (null if none) and stderr.
fn admin(data: &Path, db: Option<&str>, kek: Option<&str>, args: &[&str]) -> (bool, Value, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fleet-sync"));
    cmd.arg("admin").arg("--data").arg(data);
    if let Some(url) = db {
        cmd.arg("--database-url").arg(url);
    }
    cmd.args(args)
        .env_remove("FLEET_DATABASE_URL")
        .env_remove("FLEET_KEY_ENCRYPTION_KEY")
        .env("RUST_LOG", "warn");
    if let Some(k) = kek {
        cmd.env("FLEET_KEY_ENCRYPTION_KEY", k.repeat(32));
    }
    let out = cmd.output().expect("running fleet-sync");
    let stdout = String::from_utf8_lossy(&out.stdout);
    (
        out.status.success(),
        serde_json::from_str(stdout.trim()).unwrap_or(Value::Null),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(data: &Path, db: Option<&str>, kek: Option<&str>, args: &[&str]) -> Value {
    let (success, v, err) = admin(data, db, kek, args);
    assert!(success, "admin {args:?} failed: {err}");
    v
}

fn key_id(byte_hex: &str) -> String {
    fleet_sync::sealing::KeyEncryptionKey::parse(&byte_hex.repeat(32))
        .unwrap()
        .id_hex()
}

/// A badge label for `tenant`, signed with its key as the server opens it with `kek`.
fn issue_badge(data: &Path, db: Option<&str>, kek: &str, tenant: &str) -> Value {
    ok(
        data,
        db,
        Some(kek),
        &[
            "label", "issue", "--tenant", tenant, "--kind", "badge", "--name", "Dana",
        ],
    )
}

async fn a_rotated_key_encryption_key_reseals_every_tenant_once(db: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let keys = dir.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let file = |name: &str, byte_hex: &str| {
        let p = keys.join(name);
        std::fs::write(&p, format!("{}\n", byte_hex.repeat(32))).unwrap();
        p.display().to_string()
    };
    let (a, b, wrong) = (file("a", KEY_A), file("b", KEY_B), file("c", KEY_WRONG));

    // Two tenants whose keys are sealed under A, and one from before sealing.
    let mut tenants = Vec::new();
    for name in ["north", "south"] {
        let t = ok(data, db, None, &["tenant", "create", "--name", name]);
        let t = t["tenant_id"].as_str().unwrap().to_owned();
        issue_badge(data, db, KEY_A, &t);
        tenants.push(t);
    }
    let plain = ok(data, db, None, &["tenant", "create", "--name", "old"]);
    let plain: Uuid = plain["tenant_id"].as_str().unwrap().parse().unwrap();
    let storage = fleet_sync::open_backend(db, data).await.unwrap().storage();
    fleet_sync::http::kiosk::tenant_signing_key_with(&*storage, &Sealing::Plain, plain)
        .await
        .unwrap();
    let ids: Vec<Uuid> = tenants
        .iter()
        .map(|t| t.parse().unwrap())
        .chain([plain])
        .collect();
    let stored = || async {
        let mut v = Vec::new();
        for t in &ids {
            v.push(storage.stored_signing_key(*t).await.unwrap().unwrap());
        }
        v
    };
    let before = stored().await;

    // A wrong old key: refused, naming the key the secrets are sealed with.
    let (success, _, err) = admin(
        data,
        db,
        None,
        &[
            "signing-key",
            "reseal",
            "--old-key-file",
            &wrong,
            "--new-key-file",
            &b,
        ],
    );
    assert!(!success, "a wrong old key is refused");
    assert!(err.contains(&key_id(KEY_A)), "names the sealing key: {err}");
    assert!(err.contains(&key_id(KEY_WRONG)), "names the old key: {err}");
    assert!(err.contains("nothing was changed"), "{err}");
    assert_eq!(stored().await, before, "a refused run writes nothing");
    let (success, _, err) = admin(
        data,
        db,
        None,
        &[
            "signing-key",
            "reseal",
            "--old-key-file",
            &a,
            "--new-key-file",
            &a,
        ],
    );
    assert!(!success && err.contains("the same key"), "{err}");

    let report = ok(
        data,
        db,
        None,
        &[
            "signing-key",
            "reseal",
            "--old-key-file",
            &a,
            "--new-key-file",
            &b,
        ],
    );
    assert_eq!(report["tenants"], 3, "{report}");
    assert_eq!(report["resealed"], 2, "{report}");
    assert_eq!(report["sealed_plain"], 1, "{report}");
    assert_eq!(report["unchanged"], 0, "{report}");
    assert_eq!(report["new_key_id"], key_id(KEY_B), "{report}");
    let after = stored().await;
    for (x, y) in before.iter().zip(&after) {
        assert_ne!(x.secret, y.secret, "every secret is re-sealed");
        assert_eq!(x.public_key, y.public_key, "the signing key is the same");
    }

    // The server now opens the keys with B, not A, and signs as before.
    for (t, k) in tenants.iter().zip(&after) {
        let label = issue_badge(data, db, KEY_B, t);
        let trust = TenantTrust::from_b64(t.parse().unwrap(), &k.public_key).unwrap();
        let now_s = fleet_sync::storage::now_ms() / 1000;
        verify_at(label["text"].as_str().unwrap(), &trust, now_s)
            .expect("a label signed after re-sealing verifies with the old public key");
        let (success, _, err) = admin(
            data,
            db,
            Some(KEY_A),
            &[
                "label", "issue", "--tenant", t, "--kind", "badge", "--name", "Eve",
            ],
        );
        assert!(!success, "the old key no longer opens it");
        assert!(err.contains(&key_id(KEY_B)), "{err}");
    }

    // Twice is harmless.
    let again = ok(
        data,
        db,
        None,
        &[
            "signing-key",
            "reseal",
            "--old-key-file",
            &a,
            "--new-key-file",
            &b,
        ],
    );
    assert_eq!(again["unchanged"], 3, "{again}");
    assert_eq!(again["resealed"], 0, "{again}");
    assert_eq!(stored().await, after, "a second run writes nothing");

    for t in &ids {
        let audit = storage
            .query_audit(
                *t,
                AuditQuery {
                    action: Some("signing_key.reseal".into()),
                    limit: 10,
                    ..AuditQuery::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(audit.len(), 1, "one audit entry for tenant {t}");
        assert_eq!(audit[0].actor_kind.as_str(), "cli");
        assert_eq!(audit[0].detail["to_key_id"], key_id(KEY_B));
    }
}

#[tokio::test]
async fn a_rotated_key_encryption_key_reseals_every_tenant_once_on_sqlite() {
    a_rotated_key_encryption_key_reseals_every_tenant_once(None).await;
}

#[tokio::test]
async fn a_rotated_key_encryption_key_reseals_every_tenant_once_on_postgres() {
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
    a_rotated_key_encryption_key_reseals_every_tenant_once(Some(&url)).await;
}
