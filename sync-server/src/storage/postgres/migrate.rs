//! The PostgreSQL migration runner. Replicas starting together take turns on a
//! session advisory lock; each migration and its record commit together.

use super::pg;
use crate::storage::migration::{pending, Migration};
use crate::storage::StorageError;
use std::collections::BTreeSet;
use tokio_postgres::Client;

/// Embedded schema migrations; `schema_migrations` records the numbers applied.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../../../../migrations/server-postgres/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "access",
        sql: include_str!("../../../../migrations/server-postgres/0002_access.sql"),
    },
    Migration {
        version: 3,
        name: "control",
        sql: include_str!("../../../../migrations/server-postgres/0003_control.sql"),
    },
    Migration {
        version: 4,
        name: "stream",
        sql: include_str!("../../../../migrations/server-postgres/0004_stream.sql"),
    },
    Migration {
        version: 5,
        name: "kiosk",
        sql: include_str!("../../../../migrations/server-postgres/0005_kiosk.sql"),
    },
    Migration {
        version: 6,
        name: "reservations",
        sql: include_str!("../../../../migrations/server-postgres/0006_reservations.sql"),
    },
    Migration {
        version: 7,
        name: "assets",
        sql: include_str!("../../../../migrations/server-postgres/0007_assets.sql"),
    },
    Migration {
        version: 8,
        name: "analytics",
        sql: include_str!("../../../../migrations/server-postgres/0008_analytics.sql"),
    },
    Migration {
        version: 9,
        name: "inspections",
        sql: include_str!("../../../../migrations/server-postgres/0009_inspections.sql"),
    },
    Migration {
        version: 10,
        name: "report_index",
        sql: include_str!("../../../../migrations/server-postgres/0010_report_index.sql"),
    },
    Migration {
        version: 11,
        name: "sessions",
        sql: include_str!("../../../../migrations/server-postgres/0011_sessions.sql"),
    },
    Migration {
        version: 12,
        name: "mail_reports",
        sql: include_str!("../../../../migrations/server-postgres/0012_mail_reports.sql"),
    },
    Migration {
        version: 13,
        name: "device_kind",
        sql: include_str!("../../../../migrations/server-postgres/0013_device_kind.sql"),
    },
    Migration {
        version: 14,
        name: "availability_scan",
        sql: include_str!("../../../../migrations/server-postgres/0014_availability_scan.sql"),
    },
    Migration {
        version: 15,
        name: "events_policy",
        sql: include_str!("../../../../migrations/server-postgres/0015_events_policy.sql"),
    },
];

/// Key of the advisory lock held while migrating ("fleetmig").
const MIGRATION_LOCK: i64 = 0x666c_6565_746d_6967;

/// Brings the schema up to date; refuses a database written by a newer binary.
/// `client` should be a connection of its own: the lock is released when it
/// closes, whatever happened.
pub async fn migrate(client: &mut Client) -> Result<(), StorageError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg)?;
    let out = migrate_locked(client).await;
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg);
    out.and(unlocked.map(|_| ()))
}

async fn migrate_locked(client: &mut Client) -> Result<(), StorageError> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version     integer     NOT NULL PRIMARY KEY,
                 name        text        NOT NULL,
                 applied_at  timestamptz NOT NULL DEFAULT now()
             )",
        )
        .await
        .map_err(pg)?;
    let applied: BTreeSet<u32> = client
        .query("SELECT version FROM schema_migrations", &[])
        .await
        .map_err(pg)?
        .iter()
        .map(|r| r.get::<_, i32>(0) as u32)
        .collect();
    for m in pending(MIGRATIONS, &applied)? {
        let tx = client.transaction().await.map_err(pg)?;
        tx.batch_execute(m.sql).await.map_err(|e| {
            let e = pg(e).to_string();
            // 0006 needs btree_gist for its exclusion constraint.
            let hint = if e.contains("btree_gist") {
                "; reservations need the btree_gist extension: install PostgreSQL's contrib package, or have a superuser run CREATE EXTENSION btree_gist in this database"
            } else {
                ""
            };
            StorageError::Backend(format!("migration {:04}_{}: {e}{hint}", m.version, m.name))
        })?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            &[&(m.version as i32), &m.name],
        )
        .await
        .map_err(pg)?;
        tx.commit().await.map_err(pg)?;
        tracing::info!(
            version = m.version,
            name = m.name,
            "applied server schema migration"
        );
    }
    Ok(())
}
