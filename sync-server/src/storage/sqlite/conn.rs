//! SQLite connections kept off the async workers: one writer thread that owns the
//! only write connection, fed through a bounded queue, and a small pool of read
//! connections used from `spawn_blocking`.

use crate::storage::migration::{pending, Migration};
use crate::storage::StorageError;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot, Semaphore};

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// Jobs waiting for the writer; senders wait when it is full.
const WRITE_QUEUE: usize = 64;
const READERS: usize = 4;

/// Embedded schema migrations; the database records which numbers it has applied
/// in `schema_migrations`. Released files are never edited: a change is a new file.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../../../../migrations/server-sqlite/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "access",
        sql: include_str!("../../../../migrations/server-sqlite/0002_access.sql"),
    },
    Migration {
        version: 3,
        name: "control",
        sql: include_str!("../../../../migrations/server-sqlite/0003_control.sql"),
    },
    Migration {
        version: 4,
        name: "stream",
        sql: include_str!("../../../../migrations/server-sqlite/0004_stream.sql"),
    },
    Migration {
        version: 5,
        name: "kiosk",
        sql: include_str!("../../../../migrations/server-sqlite/0005_kiosk.sql"),
    },
    Migration {
        version: 6,
        name: "reservations",
        sql: include_str!("../../../../migrations/server-sqlite/0006_reservations.sql"),
    },
    Migration {
        version: 7,
        name: "assets",
        sql: include_str!("../../../../migrations/server-sqlite/0007_assets.sql"),
    },
    Migration {
        version: 8,
        name: "analytics",
        sql: include_str!("../../../../migrations/server-sqlite/0008_analytics.sql"),
    },
    Migration {
        version: 9,
        name: "inspections",
        sql: include_str!("../../../../migrations/server-sqlite/0009_inspections.sql"),
    },
    Migration {
        version: 10,
        name: "report_index",
        sql: include_str!("../../../../migrations/server-sqlite/0010_report_index.sql"),
    },
    Migration {
        version: 11,
        name: "sessions",
        sql: include_str!("../../../../migrations/server-sqlite/0011_sessions.sql"),
    },
    Migration {
        version: 12,
        name: "mail_reports",
        sql: include_str!("../../../../migrations/server-sqlite/0012_mail_reports.sql"),
    },
    Migration {
        version: 13,
        name: "device_kind",
        sql: include_str!("../../../../migrations/server-sqlite/0013_device_kind.sql"),
    },
    Migration {
        version: 14,
        name: "availability_index",
        sql: include_str!("../../../../migrations/server-sqlite/0014_availability_index.sql"),
    },
    Migration {
        version: 15,
        name: "availability_scan",
        sql: include_str!("../../../../migrations/server-sqlite/0015_availability_scan.sql"),
    },
];

pub struct Pool {
    writer: mpsc::Sender<Job>,
    readers: Arc<Mutex<Vec<Connection>>>,
    read_permits: Arc<Semaphore>,
    path: PathBuf,
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: a commit is on disk before we answer, so an ack is durable.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

pub(crate) fn backend(e: rusqlite::Error) -> StorageError {
    StorageError::Backend(e.to_string())
}

/// Brings the schema up to date; refuses a database written by a newer binary.
///
/// Databases made before `schema_migrations` existed counted applied migrations in
/// `user_version`; 1 there means 0001 is applied, and more means a binary that this
/// one cannot know about.
pub fn migrate(conn: &mut Connection) -> Result<(), StorageError> {
    let tx = conn.transaction().map_err(backend)?;
    let has_table: bool = tx
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'",
            [],
            |_| Ok(()),
        )
        .optional()
        .map_err(backend)?
        .is_some();
    if !has_table {
        let legacy: u32 = tx
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(backend)?;
        if legacy > 1 {
            return Err(StorageError::SchemaTooNew {
                found: legacy,
                supported: MIGRATIONS.iter().map(|m| m.version).max().unwrap_or(0),
            });
        }
        tx.execute_batch(
            "CREATE TABLE schema_migrations (
                 version        INTEGER NOT NULL PRIMARY KEY,
                 name           TEXT    NOT NULL,
                 applied_at_ms  INTEGER NOT NULL
             )",
        )
        .map_err(backend)?;
        if legacy == 1 {
            tx.execute(
                "INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES (1, 'init', ?1)",
                [crate::storage::now_ms()],
            )
            .map_err(backend)?;
        }
    }
    tx.commit().map_err(backend)?;

    let applied: BTreeSet<u32> = {
        let mut q = conn
            .prepare("SELECT version FROM schema_migrations")
            .map_err(backend)?;
        let rows = q.query_map([], |r| r.get(0)).map_err(backend)?;
        rows.collect::<Result<_, _>>().map_err(backend)?
    };
    for m in pending(MIGRATIONS, &applied)? {
        let tx = conn.transaction().map_err(backend)?;
        tx.execute_batch(m.sql).map_err(|e| {
            StorageError::Backend(format!("migration {:04}_{}: {e}", m.version, m.name))
        })?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES (?1, ?2, ?3)",
            rusqlite::params![m.version, m.name, crate::storage::now_ms()],
        )
        .map_err(backend)?;
        tx.commit().map_err(backend)?;
        tracing::info!(
            version = m.version,
            name = m.name,
            "applied server schema migration"
        );
    }
    Ok(())
}

impl Pool {
    pub fn open(path: &Path) -> Result<Self, StorageError> {
        let mut conn = Connection::open(path).map_err(backend)?;
        configure(&conn).map_err(backend)?;
        migrate(&mut conn)?;
        let (tx, mut rx) = mpsc::channel::<Job>(WRITE_QUEUE);
        std::thread::Builder::new()
            .name("fleet-sqlite-writer".into())
            .spawn(move || {
                while let Some(job) = rx.blocking_recv() {
                    // A panicking job drops its transaction (rolled back) and its
                    // reply channel; the writer keeps serving the others.
                    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&mut conn)))
                        .is_err()
                    {
                        tracing::error!(
                            "storage write job panicked; its transaction was rolled back"
                        );
                    }
                }
            })
            .map_err(|e| StorageError::Backend(e.to_string()))?;
        Ok(Pool {
            writer: tx,
            readers: Arc::new(Mutex::new(Vec::new())),
            read_permits: Arc::new(Semaphore::new(READERS)),
            path: path.to_owned(),
        })
    }

    /// Runs `f` on the writer thread.
    pub async fn write<T, F>(&self, f: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StorageError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let _ = reply.send(f(conn));
        });
        self.writer
            .send(job)
            .await
            .map_err(|_| StorageError::Closed)?;
        answer
            .await
            .map_err(|_| StorageError::Backend("write job failed".into()))?
    }

    /// Runs `f` on a read connection on the blocking pool.
    pub async fn read<T, F>(&self, f: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StorageError> + Send + 'static,
    {
        let permit = self
            .read_permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StorageError::Closed)?;
        let readers = self.readers.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let pooled = readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let conn = match pooled {
                Some(c) => c,
                None => {
                    let c = Connection::open_with_flags(
                        &path,
                        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                    )
                    .map_err(backend)?;
                    c.busy_timeout(std::time::Duration::from_secs(5))
                        .map_err(backend)?;
                    c.set_prepared_statement_cache_capacity(32);
                    c
                }
            };
            let out = f(&conn);
            readers.lock().unwrap_or_else(|p| p.into_inner()).push(conn);
            out
        })
        .await
        .map_err(|e| StorageError::Backend(format!("read task failed: {e}")))?
    }
}
