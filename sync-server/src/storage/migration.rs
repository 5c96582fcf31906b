//! Which embedded migrations a database still needs, the same rule for both
//! backends: each database records the numbers it has applied (not a count), so
//! migrations may land on main in any order, and a number this binary does not
//! know means a newer binary wrote the database.

use super::StorageError;
use std::collections::BTreeSet;

/// One embedded schema migration. Released files are never edited: a change is a
/// new file with the next free number.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// The migrations of `known` not yet in `applied`, by ascending number; refuses
/// a database that has applied a number this binary does not know.
pub fn pending<'a>(
    known: &'a [Migration],
    applied: &BTreeSet<u32>,
) -> Result<Vec<&'a Migration>, StorageError> {
    let supported = known.iter().map(|m| m.version).max().unwrap_or(0);
    if let Some(&found) = applied
        .iter()
        .rev()
        .find(|v| !known.iter().any(|m| m.version == **v))
    {
        return Err(StorageError::SchemaTooNew { found, supported });
    }
    let mut out: Vec<&Migration> = known
        .iter()
        .filter(|m| !applied.contains(&m.version))
        .collect();
    out.sort_by_key(|m| m.version);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN: &[Migration] = &[
        Migration {
            version: 1,
            name: "init",
            sql: "",
        },
        Migration {
            version: 3,
            name: "control",
            sql: "",
        },
        Migration {
            version: 2,
            name: "access",
            sql: "",
        },
    ];

    fn versions(v: Vec<&Migration>) -> Vec<u32> {
        v.into_iter().map(|m| m.version).collect()
    }

    #[test]
    fn a_fresh_database_gets_every_migration_in_number_order() {
        let todo = pending(KNOWN, &BTreeSet::new()).unwrap();
        assert_eq!(versions(todo), vec![1, 2, 3]);
    }

    #[test]
    fn a_number_that_landed_later_but_is_lower_is_still_applied() {
        let todo = pending(KNOWN, &BTreeSet::from([1, 3])).unwrap();
        assert_eq!(versions(todo), vec![2]);
    }

    #[test]
    fn an_unknown_number_means_a_newer_binary_wrote_the_database() {
        let err = pending(KNOWN, &BTreeSet::from([1, 2, 3, 7])).unwrap_err();
        assert!(
            matches!(
                err,
                StorageError::SchemaTooNew {
                    found: 7,
                    supported: 3
                }
            ),
            "{err}"
        );
    }
}

#[cfg(test)]
mod forward {
    use crate::storage::sqlite::{SqliteStorage, MIGRATIONS};
    use crate::storage::Storage;
    use rusqlite::{params, Connection};
    use uuid::Uuid;

    /// A database as the first release left it: 0001 applied and counted in
    /// `user_version`, with a tenant, a device and its events.
    #[tokio::test]
    async fn a_released_sqlite_database_is_migrated_forward_with_its_data_served() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fleet.db");
        let (tenant, device) = (Uuid::new_v4(), Uuid::new_v4());
        {
            let c = Connection::open(&path).unwrap();
            let first = MIGRATIONS.iter().find(|m| m.version == 1).unwrap();
            c.execute_batch(first.sql).unwrap();
            c.pragma_update(None, "user_version", 1).unwrap();
            c.execute(
                "INSERT INTO tenants (tenant_id, name, created_at_ms) VALUES (?1, 'acme', 1)",
                params![tenant.as_bytes().as_slice()],
            )
            .unwrap();
            c.execute(
                "INSERT INTO devices (tenant_id, device_id, name, public_key, enrolled_at_ms, acked_seq, event_count)
                 VALUES (?1, ?2, 'truck-1', 'key', 1, 2, 2)",
                params![tenant.as_bytes().as_slice(), device.as_bytes().as_slice()],
            )
            .unwrap();
            for seq in 1..=2i64 {
                c.execute(
                    "INSERT INTO events (tenant_id, device_id, seq, kind, priority, boot_id, mono_ms, wall_ms, hlc,
                         config_version, time_ms, time_source, data, received_at_ms)
                     VALUES (?1, ?2, ?3, 'ignition', 1, ?4, ?3, 1700000000000, 1, 1, 1700000000000, 'device', '{\"on\":true}', 1)",
                    params![tenant.as_bytes().as_slice(), device.as_bytes().as_slice(), seq, [7u8; 16].as_slice()],
                )
                .unwrap();
            }
        }

        let storage = SqliteStorage::open(&path).unwrap();
        let devices = storage.list_devices(tenant).await.unwrap();
        assert_eq!(devices.len(), 1);
        assert_eq!(
            (devices[0].name.as_str(), devices[0].last_seq),
            ("truck-1", 2)
        );
        let events = storage
            .device_events(tenant, device, 0, 10)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(events[0].data, serde_json::json!({"on": true}));
        drop(storage);

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
        assert_eq!(applied, known, "every newer migration is applied once");
    }
}
