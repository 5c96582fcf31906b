//! Fresh PostgreSQL databases for tests.
//!
//! `FLEET_TEST_PG_URL` names a superuser connection (`tests/run` starts a
//! throwaway cluster and sets it). Each [`fresh`] database belongs to a new
//! role that is neither superuser nor `BYPASSRLS`, and the storage connects as
//! that role, so row-level security applies to everything a test does.

use super::{PgStorage, PgTarget, PgTls};
use crate::storage::Storage;
use std::sync::Arc;
use uuid::Uuid;

pub const URL_VAR: &str = "FLEET_TEST_PG_URL";

/// Drops the test database and its role when the test ends.
pub struct Guard {
    admin: tokio_postgres::Config,
    tls: PgTls,
    db: String,
    role: String,
    app: tokio_postgres::Config,
}

impl Guard {
    /// How the test's own (non-superuser) role connects to its database.
    pub fn app_config(&self) -> &tokio_postgres::Config {
        &self.app
    }

    /// How the superuser connects to the test's database.
    pub fn admin_config(&self) -> tokio_postgres::Config {
        let mut c = self.admin.clone();
        c.dbname(&self.db);
        c
    }

    /// The TLS settings of `FLEET_TEST_PG_URL`, which both configs share.
    pub fn tls(&self) -> &PgTls {
        &self.tls
    }

    pub fn database(&self) -> &str {
        &self.db
    }
}

/// The admin URL, or `None` (with a note on stderr) when it is unset. Under
/// `CI=true` a missing URL fails the test: `tests/run` provides one there.
pub fn admin_url() -> Option<String> {
    match std::env::var(URL_VAR) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{URL_VAR} is required under CI=true (tests/run starts a PostgreSQL)"
            );
            eprintln!("skipped: {URL_VAR} is not set, so no PostgreSQL to test against");
            None
        }
    }
}

/// An empty database owned by a new unprivileged role, with no schema yet.
/// `None` when `FLEET_TEST_PG_URL` is unset (a panic if `CI=true`).
pub async fn empty_database() -> Option<Guard> {
    let url = admin_url()?;
    let PgTarget { config: admin, tls } =
        PgTarget::parse(&url).expect("FLEET_TEST_PG_URL is a postgres URL");
    let id = Uuid::new_v4().simple().to_string();
    let db = format!("fleet_test_{id}");
    let role = format!("fleet_app_{}", &id[..16]);
    let password = format!("pw{id}");
    let client = PgTarget {
        config: admin.clone(),
        tls: tls.clone(),
    }
    .connect()
    .await
    .expect("connecting to FLEET_TEST_PG_URL");
    client
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE PASSWORD '{password}'"
        ))
        .await
        .expect("creating the test role");
    client
        .batch_execute(&format!("CREATE DATABASE {db} OWNER {role}"))
        .await
        .expect("creating the test database");
    let mut app = admin.clone();
    app.user(&role).password(password.as_str()).dbname(&db);
    Some(Guard {
        admin,
        tls,
        db,
        role,
        app,
    })
}

/// A migrated, empty storage in its own database, reached through a role that
/// row-level security binds. `None` when `FLEET_TEST_PG_URL` is unset (a panic
/// if `CI=true`).
pub async fn fresh() -> Option<(Arc<dyn Storage>, Guard)> {
    let (pg, guard) = fresh_pg().await?;
    Some((Arc::new(pg), guard))
}

/// [`fresh`], keeping the concrete type for tests of PostgreSQL's own parts.
pub async fn fresh_pg() -> Option<(PgStorage, Guard)> {
    let guard = empty_database().await?;
    let pg = PgStorage::connect_target(PgTarget {
        config: guard.app.clone(),
        tls: guard.tls.clone(),
    })
    .await
    .expect("opening the test database");
    Some((pg, guard))
}

impl Drop for Guard {
    fn drop(&mut self) {
        let admin = PgTarget {
            config: self.admin.clone(),
            tls: self.tls.clone(),
        };
        let (db, role) = (self.db.clone(), self.role.clone());
        // Drop runs inside the test's runtime, which cannot be blocked on; a
        // thread with its own small runtime does the cleanup.
        let cleanup = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async move {
                let client = admin.connect().await?;
                // Two statements: DROP DATABASE refuses to share a transaction.
                client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
                    .await
                    .map_err(super::pg)?;
                client
                    .batch_execute(&format!("DROP ROLE IF EXISTS {role}"))
                    .await
                    .map_err(super::pg)
            })
            .map_err(std::io::Error::other)
        });
        match cleanup.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("leaving test database {} behind: {e}", self.db),
            Err(_) => eprintln!("leaving test database {} behind", self.db),
        }
    }
}
