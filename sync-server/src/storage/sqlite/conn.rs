//! SQLite connections kept off the async workers: one writer thread that owns the
//! only write connection, fed through a bounded queue, and a small pool of read
//! connections used from `spawn_blocking`.

use crate::storage::StorageError;
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot, Semaphore};

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// Jobs waiting for the writer; senders wait when it is full.
const WRITE_QUEUE: usize = 64;
const READERS: usize = 4;

/// Schema migrations in order; the database's `user_version` counts those applied.
/// Released files are never edited: a change is a new file.
pub const MIGRATIONS: &[&str] = &[
    include_str!("../../../../migrations/server-sqlite/0001_init.sql"),
    include_str!("../../../../migrations/server-sqlite/0002_access.sql"),
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
pub fn migrate(conn: &mut Connection) -> Result<(), StorageError> {
    let found: u32 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(backend)?;
    let supported = MIGRATIONS.len() as u32;
    if found > supported {
        return Err(StorageError::SchemaTooNew { found, supported });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction().map_err(backend)?;
        tx.execute_batch(sql).map_err(backend)?;
        tx.pragma_update(None, "user_version", (i + 1) as u32)
            .map_err(backend)?;
        tx.commit().map_err(backend)?;
        tracing::info!(version = i + 1, "applied server schema migration");
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
