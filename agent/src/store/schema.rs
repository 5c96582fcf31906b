//! Opening the database: pragmas, embedded migrations, the schema version check.

use super::StoreError;
use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::time::Duration;

/// Embedded migrations, applied in order; `PRAGMA user_version` is how many ran.
pub const MIGRATIONS: &[&str] = &[include_str!("../../../migrations/agent/0001_outbox.sql")];

/// The schema version this binary writes and understands.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// How long a connection waits for another connection's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// After a checkpoint the WAL file is truncated back to this size, so a burst of
/// writes (an eviction pass) does not leave a large file behind.
const JOURNAL_SIZE_LIMIT: u64 = 4 << 20;

/// Opens the write connection, creating the file, and migrates it to
/// [`SCHEMA_VERSION`]. Refuses a database written by a newer schema.
pub(crate) fn open_writer(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // Must precede the first table: afterwards auto_vacuum can only change via a
    // full VACUUM. Incremental mode lets eviction hand pages back to the file
    // system in small steps, without the second copy of the file a VACUUM needs
    // (which a nearly full SD card may not have).
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
    set_common_pragmas(&conn)?;
    conn.pragma_update(None, "journal_size_limit", JOURNAL_SIZE_LIMIT as i64)?;
    migrate(&conn, path)?;
    Ok(conn)
}

/// Opens a connection for queries; the writer has already migrated the file.
pub(crate) fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    set_common_pragmas(&conn)?;
    conn.pragma_update(None, "query_only", true)?;
    check_version(&conn, path)?;
    Ok(conn)
}

fn set_common_pragmas(conn: &Connection) -> Result<(), StoreError> {
    // WAL: readers never block the writer, and a commit is one sequential append.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // FULL, not NORMAL: in WAL mode NORMAL skips the fsync at commit, so a power
    // cut may roll back transactions that had already returned. With FULL a
    // commit is on stable storage when COMMIT returns, which is what `record`
    // promises its callers.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    Ok(())
}

fn user_version(conn: &Connection) -> Result<u32, StoreError> {
    let v: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    Ok(u32::try_from(v).unwrap_or(u32::MAX))
}

fn check_version(conn: &Connection, path: &Path) -> Result<u32, StoreError> {
    let found = user_version(conn)?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            path: path.to_path_buf(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(found)
}

fn migrate(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    if check_version(conn, path)? == SCHEMA_VERSION {
        return Ok(());
    }
    // IMMEDIATE takes the write lock before reading the version again, so two
    // processes opening a fresh store at once cannot both apply a migration.
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = (|| {
        let from = check_version(conn, path)?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(from as usize) {
            conn.execute_batch(sql)?;
            conn.pragma_update(None, "user_version", i as i64 + 1)?;
            tracing::info!(version = i + 1, "applied agent store migration");
        }
        Ok::<_, StoreError>(())
    })();
    match result {
        Ok(()) => conn.execute_batch("COMMIT")?,
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(e);
        }
    }
    Ok(())
}

/// Bytes of pages that hold data (the file size minus reusable free pages).
pub(crate) fn used_bytes(conn: &Connection) -> Result<u64, StoreError> {
    let page_size: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
    let pages: i64 = conn.pragma_query_value(None, "page_count", |r| r.get(0))?;
    let free: i64 = conn.pragma_query_value(None, "freelist_count", |r| r.get(0))?;
    Ok((pages - free).max(0) as u64 * page_size as u64)
}

/// Bytes the database file holds, pages in its free list included: room the
/// store already owns.
pub(crate) fn allocated_bytes(conn: &Connection) -> Result<u64, StoreError> {
    let page_size: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
    let pages: i64 = conn.pragma_query_value(None, "page_count", |r| r.get(0))?;
    Ok(pages.max(0) as u64 * page_size as u64)
}

/// The database and its WAL on disk, in bytes.
pub(crate) fn file_bytes(path: &Path) -> u64 {
    let wal = path.with_extension("db-wal");
    [path, wal.as_path()]
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}
