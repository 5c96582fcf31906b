//! Work taken by a background task (mail, report runs, alert notices) is
//! claimed the same way on SQLite: one process and one writer thread, so a
//! claim is a select of the due rows and an update of each in one
//! transaction, with no other caller in between.

use super::blob;
use super::conn::backend;
use crate::storage::StorageError;
use rusqlite::{params, Connection, Row, ToSql};
use uuid::Uuid;

/// One kind of claimed work, as two statements.
pub(super) struct Claim<'a> {
    /// The due rows of every tenant, in the order they are taken:
    /// `?1` now (ms), `?2` how many rows at most. A statement need not use both.
    pub due: &'a str,
    /// Marks one taken row: `?1` the tenant, `?2` the row's id, `?3` what the
    /// claim writes (a lease's end, or the time of a mark).
    pub mark: &'a str,
}

/// Claims up to `limit` rows as [`Claim`] describes: `row` reads a due row,
/// `key` names its tenant and id for the mark.
pub(super) fn claim_due<T, K: ToSql>(
    c: &mut Connection,
    claim: &Claim<'_>,
    now_ms: i64,
    writes_ms: i64,
    limit: u32,
    row: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
    key: impl Fn(&T) -> (Uuid, K),
) -> Result<Vec<T>, StorageError> {
    let tx = c.transaction().map_err(backend)?;
    let due: Vec<T> = {
        let mut stmt = tx.prepare_cached(claim.due).map_err(backend)?;
        let rows = stmt
            .query_map(params![now_ms, limit], row)
            .map_err(backend)?;
        rows.collect::<rusqlite::Result<_>>().map_err(backend)?
    };
    {
        let mut mark = tx.prepare_cached(claim.mark).map_err(backend)?;
        for taken in &due {
            let (tenant, id) = key(taken);
            mark.execute(params![blob(&tenant), id, writes_ms])
                .map_err(backend)?;
        }
    }
    tx.commit().map_err(backend)?;
    Ok(due)
}
