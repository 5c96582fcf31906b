//! automerge documents: a full snapshot per document plus incremental chunks
//! appended by each save, folded into a new snapshot as they grow.
//!
//! The store remembers the heads of what it holds, so a save appends exactly the
//! changes the store lacks (`save_after(stored heads)`), whichever `AutoCommit`
//! instance it comes from. Chunks are always safe to append: loading applies
//! changes idempotently and merges concurrent histories.

use super::StoreError;
use automerge::{AutoCommit, ChangeHash};
use rusqlite::{Connection, OptionalExtension};

/// Fold chunks into the snapshot once there are this many...
const COMPACT_CHUNKS: u64 = 32;
/// ...or once they outweigh the snapshot and this floor.
const COMPACT_MIN_BYTES: u64 = 64 << 10;
const MAX_DOC_ID_BYTES: usize = 256;

pub(crate) fn validate_id(doc_id: &str) -> Result<(), StoreError> {
    if doc_id.is_empty() || doc_id.len() > MAX_DOC_ID_BYTES || doc_id.chars().any(char::is_control)
    {
        return Err(StoreError::Invalid(format!(
            "document id {doc_id:?} must be 1..={MAX_DOC_ID_BYTES} bytes without control characters"
        )));
    }
    Ok(())
}

fn automerge_err(doc_id: &str) -> impl Fn(automerge::AutomergeError) -> StoreError + '_ {
    move |e| StoreError::Automerge(format!("document {doc_id}: {e}"))
}

pub(crate) struct StoredDoc {
    doc_id: String,
    snapshot: Vec<u8>,
    chunks: Vec<Vec<u8>>,
}

impl StoredDoc {
    pub fn load(&self) -> Result<AutoCommit, StoreError> {
        let err = automerge_err(&self.doc_id);
        let mut doc = AutoCommit::load(&self.snapshot).map_err(&err)?;
        for chunk in &self.chunks {
            doc.load_incremental(chunk).map_err(&err)?;
        }
        // Mark everything loaded as saved, so the caller's own save_incremental
        // calls (if any) start from here.
        doc.save_incremental();
        Ok(doc)
    }
}

pub(crate) fn read(c: &Connection, doc_id: &str) -> Result<Option<StoredDoc>, StoreError> {
    c.execute_batch("BEGIN DEFERRED")?;
    let out = read_in_tx(c, doc_id);
    c.execute_batch("COMMIT")?;
    out
}

fn read_in_tx(c: &Connection, doc_id: &str) -> Result<Option<StoredDoc>, StoreError> {
    let snapshot: Option<Vec<u8>> = c
        .prepare_cached("SELECT snapshot FROM docs WHERE doc_id = ?1")?
        .query_row([doc_id], |r| r.get(0))
        .optional()?;
    let Some(snapshot) = snapshot else {
        return Ok(None);
    };
    let mut stmt = c.prepare_cached("SELECT data FROM doc_chunks WHERE doc_id = ?1 ORDER BY n")?;
    let chunks = stmt
        .query_map([doc_id], |r| r.get(0))?
        .collect::<Result<Vec<Vec<u8>>, _>>()?;
    Ok(Some(StoredDoc {
        doc_id: doc_id.to_owned(),
        snapshot,
        chunks,
    }))
}

pub(crate) fn heads(c: &Connection, doc_id: &str) -> Result<Option<Vec<ChangeHash>>, StoreError> {
    let raw: Option<Vec<u8>> = c
        .prepare_cached("SELECT heads FROM docs WHERE doc_id = ?1")?
        .query_row([doc_id], |r| r.get(0))
        .optional()?;
    raw.map(|b| decode_heads(doc_id, &b)).transpose()
}

fn encode_heads(heads: &[ChangeHash]) -> Vec<u8> {
    heads.iter().flat_map(|h| h.0).collect()
}

fn decode_heads(doc_id: &str, bytes: &[u8]) -> Result<Vec<ChangeHash>, StoreError> {
    if bytes.len() % 32 != 0 {
        return Err(StoreError::Corrupt(format!(
            "document {doc_id}: heads are not 32-byte hashes"
        )));
    }
    Ok(bytes
        .chunks_exact(32)
        .map(|h| ChangeHash(h.try_into().expect("32-byte chunk")))
        .collect())
}

pub(crate) fn ids(c: &Connection) -> Result<Vec<String>, StoreError> {
    let mut stmt = c.prepare_cached("SELECT doc_id FROM docs ORDER BY doc_id")?;
    let ids = stmt
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(ids)
}

pub(crate) fn sync_state(
    c: &Connection,
    doc_id: &str,
    peer: &str,
) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(
        c.prepare_cached("SELECT state FROM doc_sync_states WHERE doc_id = ?1 AND peer = ?2")?
            .query_row([doc_id, peer], |r| r.get(0))
            .optional()?,
    )
}

/// What a save hands the writer. Computed on the caller's task, since it needs
/// the caller's document.
#[derive(Debug, Clone)]
pub(crate) struct DocSave {
    doc_id: String,
    /// The stored heads `bytes` was computed against (None: nothing was stored).
    base: Option<Vec<ChangeHash>>,
    bytes: Vec<u8>,
    /// Heads of stored + `bytes`, when known without loading.
    new_heads: Option<Vec<ChangeHash>>,
}

/// The bytes that bring the store up to `doc`, or None when it has nothing new.
pub(crate) fn prepare_save(
    doc_id: &str,
    stored: Option<Vec<ChangeHash>>,
    doc: &mut AutoCommit,
) -> Option<DocSave> {
    let doc_id = doc_id.to_owned();
    match stored {
        None => Some(DocSave {
            doc_id,
            base: None,
            bytes: doc.save(),
            new_heads: Some(doc.get_heads()),
        }),
        Some(heads) if heads.iter().all(|h| doc.get_change_by_hash(h).is_some()) => {
            let bytes = doc.save_after(&heads);
            if bytes.is_empty() {
                return None;
            }
            Some(DocSave {
                doc_id,
                base: Some(heads),
                bytes,
                new_heads: Some(doc.get_heads()),
            })
        }
        // The store has changes this document lacks: send everything and let
        // the writer merge.
        Some(heads) => Some(DocSave {
            doc_id,
            base: Some(heads),
            bytes: doc.save(),
            new_heads: None,
        }),
    }
}

/// Applies a save inside the writer's transaction.
pub(crate) fn apply_save(c: &Connection, save: DocSave) -> Result<(), StoreError> {
    let id = save.doc_id.as_str();
    let current = heads(c, id)?;
    match (&current, &save.base, save.new_heads) {
        (None, None, Some(new_heads)) => {
            c.prepare_cached(
                "INSERT INTO docs (doc_id, snapshot, heads, chunk_count, chunk_bytes) VALUES (?1, ?2, ?3, 0, 0)",
            )?
            .execute(rusqlite::params![id, save.bytes, encode_heads(&new_heads)])?;
            Ok(())
        }
        (Some(cur), Some(base), Some(new_heads)) if cur == base => {
            let (count, bytes, snapshot_len): (i64, i64, i64) = c
                .prepare_cached(
                    "SELECT chunk_count, chunk_bytes, length(snapshot) FROM docs WHERE doc_id = ?1",
                )?
                .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            c.prepare_cached("INSERT INTO doc_chunks (doc_id, n, data) VALUES (?1, ?2, ?3)")?
                .execute(rusqlite::params![id, count, save.bytes])?;
            let (count, bytes) = (count as u64 + 1, bytes as u64 + save.bytes.len() as u64);
            c.prepare_cached(
                "UPDATE docs SET heads = ?2, chunk_count = ?3, chunk_bytes = ?4 WHERE doc_id = ?1",
            )?
            .execute(rusqlite::params![
                id,
                encode_heads(&new_heads),
                count as i64,
                bytes as i64
            ])?;
            if count >= COMPACT_CHUNKS || bytes > (snapshot_len as u64).max(COMPACT_MIN_BYTES) {
                let stored = read_in_tx(c, id)?
                    .ok_or_else(|| StoreError::Corrupt(format!("document {id} vanished")))?;
                write_snapshot(c, id, stored.load()?)?;
            }
            Ok(())
        }
        _ => {
            let mut doc = match read_in_tx(c, id)? {
                Some(stored) => stored.load()?,
                None => AutoCommit::new(),
            };
            doc.load_incremental(&save.bytes)
                .map_err(automerge_err(id))?;
            write_snapshot(c, id, doc)
        }
    }
}

/// Replaces the snapshot with a full save of `doc` and drops the chunks.
fn write_snapshot(c: &Connection, doc_id: &str, mut doc: AutoCommit) -> Result<(), StoreError> {
    let snapshot = doc.save();
    let heads = encode_heads(&doc.get_heads());
    c.prepare_cached(
        "INSERT INTO docs (doc_id, snapshot, heads, chunk_count, chunk_bytes) VALUES (?1, ?2, ?3, 0, 0) \
         ON CONFLICT (doc_id) DO UPDATE SET snapshot = excluded.snapshot, heads = excluded.heads, \
         chunk_count = 0, chunk_bytes = 0",
    )?
    .execute(rusqlite::params![doc_id, snapshot, heads])?;
    c.prepare_cached("DELETE FROM doc_chunks WHERE doc_id = ?1")?
        .execute([doc_id])?;
    Ok(())
}

pub(crate) fn apply_sync_state(
    c: &Connection,
    doc_id: &str,
    peer: &str,
    state: &[u8],
) -> Result<(), StoreError> {
    c.prepare_cached(
        "INSERT INTO doc_sync_states (doc_id, peer, state) VALUES (?1, ?2, ?3) \
         ON CONFLICT (doc_id, peer) DO UPDATE SET state = excluded.state",
    )?
    .execute(rusqlite::params![doc_id, peer, state])?;
    Ok(())
}
