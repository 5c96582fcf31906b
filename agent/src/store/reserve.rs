//! Room kept back for a full disk. SQLite needs free space to delete: a DELETE
//! writes new versions of its pages to the WAL before a checkpoint hands pages
//! back. On a file system with no room left, eviction itself would fail and the
//! store would stay wedged. So the store holds a file of [`RESERVE_BYTES`] next to
//! the database, gives it up when SQLite reports the disk full, evicts into the
//! room it frees, and takes it back once there is room again.

use super::StoreError;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The reserve, next to `agent.db` in the data directory.
pub const RESERVE_FILE: &str = "agent.db-reserve";

/// Enough for an eviction pass's WAL frames and the page moves of an
/// incremental vacuum on a store of hundreds of megabytes.
pub const RESERVE_BYTES: u64 = 1 << 20;

/// Whether SQLite failed because the file system had no room (SQLITE_FULL).
pub(crate) fn is_disk_full(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::Sqlite(rusqlite::Error::SqliteFailure(f, _))
            if f.code == rusqlite::ErrorCode::DiskFull
    )
}

/// Bytes an unprivileged process may still write on the file system holding `dir`.
pub fn free_bytes(dir: &Path) -> Option<u64> {
    let s = rustix::fs::statvfs(dir).ok()?;
    Some(s.f_bavail.saturating_mul(s.f_frsize))
}

pub(crate) struct Reserve {
    path: PathBuf,
}

impl Reserve {
    pub(crate) fn beside(db: &Path) -> Reserve {
        Reserve {
            path: db.with_file_name(RESERVE_FILE),
        }
    }

    /// Bytes still free on the file system holding the reserve and the store.
    pub(crate) fn free_bytes(&self) -> Option<u64> {
        free_bytes(self.path.parent()?)
    }

    /// Whether the whole reserve is on disk.
    pub(crate) fn held(&self) -> bool {
        held(&self.path)
    }

    /// Frees the reserve's room for the store.
    pub(crate) fn release(&self) {
        match std::fs::remove_file(&self.path) {
            Ok(()) => tracing::warn!("disk full: released the store's reserved space"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::error!(error = %e, path = %self.path.display(), "cannot release the store's reserved space")
            }
        }
    }

    /// Takes the room back if the file system has it; `false` (and nothing
    /// left behind) when it does not.
    pub(crate) fn restore(&self) -> bool {
        if self.held() {
            return true;
        }
        match write_reserve(&self.path) {
            Ok(()) => true,
            Err(e) => {
                let _ = std::fs::remove_file(&self.path);
                tracing::debug!(error = %e, "no room yet to take back the store's reserved space");
                false
            }
        }
    }
}

pub(crate) fn held(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.len() == RESERVE_BYTES)
}

fn write_reserve(path: &Path) -> std::io::Result<()> {
    // Real bytes, not a sparse file: the blocks must be allocated to be of use.
    let mut f = std::fs::File::create(path)?;
    let chunk = vec![0u8; 64 << 10];
    let mut left = RESERVE_BYTES;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        f.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    f.sync_all()
}
