//! Reading typed values out of rows, and telling a key clash from other
//! failures: the same for every SQLite store.

use rusqlite::Row;
use uuid::Uuid;

/// A column whose stored text or bytes do not decode.
pub(super) fn conversion(
    i: usize,
    e: impl std::error::Error + Send + Sync + 'static,
) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
}

pub(super) fn opt_uuid_at(r: &Row<'_>, i: usize) -> rusqlite::Result<Option<Uuid>> {
    match r.get::<_, Option<Vec<u8>>>(i)? {
        Some(b) => Uuid::from_slice(&b).map(Some).map_err(|e| conversion(i, e)),
        None => Ok(None),
    }
}

/// A JSON text column.
pub(super) fn json_at<T: serde::de::DeserializeOwned>(
    r: &Row<'_>,
    i: usize,
) -> rusqlite::Result<T> {
    let s: String = r.get(i)?;
    serde_json::from_str(&s).map_err(|e| conversion(i, e))
}

/// Whether `e` is a unique or primary key constraint failing.
pub(super) fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
    )
}
