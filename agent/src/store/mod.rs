//! The agent's local store: an append-only outbox of events, time anchors, small
//! key/value state and automerge documents, in one SQLite database `DIR/agent.db`.
//!
//! # Durability policy
//!
//! - The database runs in WAL mode with `synchronous=FULL`: a transaction is on
//!   stable storage when its COMMIT returns. Nothing committed is lost by a
//!   SIGKILL or a power cut.
//! - Telemetry and normal events are *group committed*: the writer keeps one
//!   transaction open and commits it at most [`StoreOptions::group_commit`]
//!   (default 1 s) after the first event in it, or earlier once
//!   [`StoreOptions::group_commit_max_events`] are pending. A power cut loses at
//!   most that window of such events; [`Store::record`] returns only after the
//!   commit that includes its event, [`Store::submit`] returns at once.
//! - A critical event commits immediately, together with everything queued before
//!   it, and [`Store::record`] returns once it is durable.
//! - Acks, anchors, meta values and documents commit immediately.
//!
//! # Disk budget
//!
//! After each commit the writer compares the pages in use with
//! [`StoreOptions::disk_budget_bytes`]. Over budget, it deletes down to 90 % of it,
//! oldest first within each class: acknowledged events, then unacknowledged
//! telemetry, then unacknowledged normal events. Unacknowledged critical events
//! are never evicted. Evictions are counted per priority and their seq ranges
//! recorded, in the same transaction as the delete; a batch read across them
//! covers the holes, which is how the server learns of them. The database uses
//! incremental auto-vacuum so freed pages go back to the file system and the
//! file really shrinks.
//!
//! # A full disk
//!
//! The file system may fill before the budget does (other files, a small card).
//! When SQLite answers SQLITE_FULL, the writer rolls the transaction back, gives
//! up the room it keeps in reserve (`agent.db-reserve`, [`reserve`]) so that the
//! delete can be written, evicts in the same order as for the budget (a tenth
//! of the store at least, more on each retry), and writes the transaction's
//! events again under the same seqs; acks, anchors and meta values are retried
//! the same way. Eviction goes in steps small enough for the reserve, each
//! committed and checkpointed. On a full disk the pages it frees stay in the
//! store's free list and the WAL keeps its size, since anything handed back to
//! the file system is taken by whatever filled it; with room, they are
//! vacuumed back. The reserve is taken back once there is room. From the first refused write
//! (or a budget that only unacknowledged critical events fill) `status` and
//! `/metrics` report the disk full, until the file system has room for the
//! reserve and for the store to grow to its budget; the flag is kept in the
//! database, so it outlives a power cut.
//!
//! # Threads
//!
//! One writer thread owns the write connection and takes commands from a bounded
//! queue (so a fast producer waits rather than growing memory); it assigns seqs
//! (dense from 1) and HLC timestamps in commit order, resuming both from the
//! database. Queries run on a separate read connection through `spawn_blocking`,
//! so SQLite never blocks an async worker.

mod docs;
pub mod outbox;
mod read;
pub mod reserve;
pub mod rows;
pub mod schema;
mod writer;

pub use fleet_protocol::{BootId, Event, EventData, Kind, Priority, TimeAnchor};

use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use writer::Command;

/// The database file inside the data directory.
pub const DB_FILE: &str = "agent.db";

/// How many commands may wait for the writer before producers wait too.
const QUEUE_CAPACITY: usize = 4_096;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "{path}: database schema version {found} is newer than this fleet-agent \
         supports (version {supported}); run a newer fleet-agent, or move the \
         file aside to start empty"
    )]
    SchemaTooNew {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("the store is closed")]
    Closed,
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("automerge: {0}")]
    Automerge(String),
    /// Stored bytes that do not decode: reported, never taken for "not found".
    #[error("stored data cannot be read: {0}")]
    Corrupt(String),
    #[error("invalid input: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub disk_budget_bytes: u64,
    /// The most telemetry a power cut may lose.
    pub group_commit: Duration,
    /// Commit earlier when this many events are pending.
    pub group_commit_max_events: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            disk_budget_bytes: 256 << 20,
            group_commit: Duration::from_secs(1),
            group_commit_max_events: 10_000,
        }
    }
}

/// An event before the store gives it a seq and an HLC timestamp.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub kind: Kind,
    pub priority: Priority,
    pub mono_ms: u64,
    pub wall_ms: i64,
    pub config_version: u32,
    pub data: EventData,
}

/// What the sync client sends next: the seqs `first_seq..=last_seq`; a seq in
/// that range with no event was evicted.
#[derive(Debug, Clone)]
pub struct PendingBatch {
    pub first_seq: u64,
    pub last_seq: u64,
    pub events: Vec<Event>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct StoreStats {
    pub last_seq: u64,
    pub acked_seq: u64,
    pub unacked_events: u64,
    pub oldest_unacked_wall_ms: Option<i64>,
    /// Unacknowledged events deleted to stay within the budget.
    pub evicted_events: u64,
    pub evicted_telemetry: u64,
    pub evicted_normal: u64,
    /// Always 0 by design, kept as a check.
    pub evicted_critical: u64,
    /// Acknowledged events deleted to make room (nothing lost).
    pub pruned_acked: u64,
    pub db_bytes: u64,
    pub disk_budget_bytes: u64,
    /// The disk is full: the file system refused a write and has not had room
    /// for the store's budget since, or unacknowledged critical events alone
    /// fill the budget.
    pub disk_full: bool,
    /// Writes the file system refused for lack of room, each followed by
    /// eviction and a retry.
    pub disk_full_total: u64,
    /// Room left on the file system holding the store.
    pub disk_free_bytes: Option<u64>,
}

/// What one eviction pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct EvictionReport {
    pub pruned_acked: u64,
    pub evicted_telemetry: u64,
    pub evicted_normal: u64,
    pub used_bytes_before: u64,
    pub used_bytes_after: u64,
    /// Still over budget: only unacknowledged critical events remain.
    pub over_budget: bool,
}

/// The store. Cheap to clone; every clone talks to the same writer thread.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    commands: mpsc::Sender<Command>,
    reader: Arc<Mutex<Connection>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    closed: AtomicBool,
    budget: std::sync::atomic::AtomicU64,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The writer commits what is queued when its queue closes. Waiting for it
        // here means a store reopened right after being dropped never runs two
        // writers that would both number events.
        let (closed_tx, _) = mpsc::channel(1);
        drop(std::mem::replace(&mut self.commands, closed_tx));
        if let Some(handle) = self.writer.lock().ok().and_then(|mut w| w.take()) {
            let _ = handle.join();
        }
    }
}

fn validate(ev: &NewEvent) -> Result<(), StoreError> {
    match outbox::invalid_reason(ev) {
        Some(reason) => Err(StoreError::Invalid(reason)),
        None => Ok(()),
    }
}

impl Store {
    /// Opens (creating) `DIR/agent.db`, applies embedded migrations, and starts
    /// the writer. All events recorded through this handle get `boot_id`.
    pub fn open(dir: &Path, boot_id: BootId, opts: StoreOptions) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(DB_FILE);
        let conn = schema::open_writer(&path)?;
        let reader = schema::open_reader(&path)?;
        let budget = opts.disk_budget_bytes;
        let (commands, rx) = mpsc::channel(QUEUE_CAPACITY);
        let handle = writer::spawn(conn, reserve::Reserve::beside(&path), rx, boot_id, opts)?;
        Ok(Store {
            inner: Arc::new(Inner {
                path,
                commands,
                reader: Arc::new(Mutex::new(reader)),
                writer: Mutex::new(Some(handle)),
                closed: AtomicBool::new(false),
                budget: budget.into(),
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Record and wait until durable: a critical event commits at once; other
    /// priorities return after the group commit that includes them. Returns the seq.
    pub async fn record(&self, ev: NewEvent) -> Result<u64, StoreError> {
        validate(&ev)?;
        let (reply, rx) = oneshot::channel();
        self.send(Command::Append {
            ev,
            reply: Some(reply),
        })
        .await?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Queue for the next group commit without waiting for it (the telemetry hot
    /// path). Waits only while the writer's queue is full.
    pub async fn submit(&self, ev: NewEvent) -> Result<(), StoreError> {
        validate(&ev)?;
        self.send(Command::Append { ev, reply: None }).await
    }

    /// Commit everything queued; returns the last committed seq.
    pub async fn flush(&self) -> Result<u64, StoreError> {
        self.ask(Command::Flush).await
    }

    /// Up to `max_events` committed events with seq > `after_seq`, in seq order.
    /// The range also spans evicted holes, so a batch may hold no events yet
    /// advance the range. `None` when nothing lies past `after_seq`.
    pub async fn read_batch(
        &self,
        after_seq: u64,
        max_events: usize,
    ) -> Result<Option<PendingBatch>, StoreError> {
        self.read(move |c| read::batch(c, after_seq, max_events))
            .await
    }

    pub async fn acked_seq(&self) -> Result<u64, StoreError> {
        self.read(|c| read::outbox_row(c).map(|o| o.acked_seq))
            .await
    }

    /// Durably record the server's ack. It never moves backwards, nor past the
    /// last committed seq.
    pub async fn set_acked(&self, seq: u64) -> Result<(), StoreError> {
        self.ask(|reply| Command::SetAcked { seq, reply }).await
    }

    pub async fn stats(&self) -> Result<StoreStats, StoreError> {
        let path = self.inner.path.clone();
        let budget = self.inner.budget.load(Ordering::Relaxed);
        self.read(move |c| read::stats(c, &path, budget)).await
    }

    /// Local events for `fleet-agent events`: (event, acked) with seq > `after_seq`.
    pub async fn list_events(
        &self,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<(Event, bool)>, StoreError> {
        self.read(move |c| read::list_events(c, after_seq, limit))
            .await
    }

    /// Ranges of unacknowledged seqs evicted to stay within the budget, past `after_seq`.
    pub async fn evicted_ranges(&self, after_seq: u64) -> Result<Vec<(u64, u64)>, StoreError> {
        self.read(move |c| read::evicted_ranges(c, after_seq)).await
    }

    /// Change the disk budget and evict at once if the store is now over it.
    pub async fn set_disk_budget(&self, bytes: u64) -> Result<EvictionReport, StoreError> {
        let report = self
            .ask(|reply| Command::SetBudget { bytes, reply })
            .await?;
        self.inner.budget.store(bytes, Ordering::Relaxed);
        Ok(report)
    }

    /// Keep the best anchor per boot (better `TimeSource::rank`, then newer).
    pub async fn put_anchor(&self, a: TimeAnchor) -> Result<(), StoreError> {
        self.ask(|reply| Command::PutAnchor { anchor: a, reply })
            .await
    }

    pub async fn anchors(&self) -> Result<Vec<TimeAnchor>, StoreError> {
        self.read(read::anchors).await
    }

    /// Small durable key/value state for other modules (sync state, counters).
    pub async fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let key = key.to_owned();
        self.read(move |c| read::meta(c, &key)).await
    }

    pub async fn set_meta(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let (key, value) = (key.to_owned(), value.to_vec());
        self.ask(|reply| Command::SetMeta { key, value, reply })
            .await
    }

    /// The document as stored (snapshot plus incremental chunks), if any.
    pub async fn doc_load(
        &self,
        doc_id: &str,
    ) -> Result<Option<automerge::AutoCommit>, StoreError> {
        let doc_id = doc_id.to_owned();
        let stored = self.read(move |c| docs::read(c, &doc_id)).await?;
        stored.map(|s| s.load()).transpose()
    }

    /// Persist the changes `doc` has that the store lacks, as an appended chunk;
    /// the writer compacts chunks into a new snapshot as they grow. Saving a
    /// document that was not loaded from the store merges it with the stored one.
    pub async fn doc_save(
        &self,
        doc_id: &str,
        doc: &mut automerge::AutoCommit,
    ) -> Result<(), StoreError> {
        docs::validate_id(doc_id)?;
        let id = doc_id.to_owned();
        let stored_heads = self.read(move |c| docs::heads(c, &id)).await?;
        let save = docs::prepare_save(doc_id, stored_heads, doc);
        match save {
            Some(save) => self.ask(|reply| Command::DocSave { save, reply }).await,
            None => Ok(()),
        }
    }

    pub async fn doc_ids(&self) -> Result<Vec<String>, StoreError> {
        self.read(docs::ids).await
    }

    /// The encoded `automerge::sync::State` kept for (document, peer).
    pub async fn doc_sync_state(
        &self,
        doc_id: &str,
        peer: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let (doc_id, peer) = (doc_id.to_owned(), peer.to_owned());
        self.read(move |c| docs::sync_state(c, &doc_id, &peer))
            .await
    }

    pub async fn set_doc_sync_state(
        &self,
        doc_id: &str,
        peer: &str,
        state: &[u8],
    ) -> Result<(), StoreError> {
        docs::validate_id(doc_id)?;
        let (doc_id, peer, state) = (doc_id.to_owned(), peer.to_owned(), state.to_vec());
        self.ask(|reply| Command::SetDocSyncState {
            doc_id,
            peer,
            state,
            reply,
        })
        .await
    }

    /// Flush and stop the writer thread. Later calls fail with [`StoreError::Closed`].
    pub async fn close(&self) -> Result<(), StoreError> {
        if self.inner.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let (reply, rx) = oneshot::channel();
        if self
            .inner
            .commands
            .send(Command::Close(reply))
            .await
            .is_err()
        {
            return Err(StoreError::Closed);
        }
        let result = rx.await.map_err(|_| StoreError::Closed)?;
        let handle = self.inner.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(handle) = handle {
            tokio::task::spawn_blocking(move || handle.join())
                .await
                .map_err(|e| StoreError::Io(std::io::Error::other(e)))?
                .map_err(|_| StoreError::Io(std::io::Error::other("store writer panicked")))?;
        }
        result
    }

    async fn send(&self, cmd: Command) -> Result<(), StoreError> {
        if self.inner.closed.load(Ordering::SeqCst) {
            return Err(StoreError::Closed);
        }
        self.inner
            .commands
            .send(cmd)
            .await
            .map_err(|_| StoreError::Closed)
    }

    async fn ask<T>(
        &self,
        cmd: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Command,
    ) -> Result<T, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.send(cmd(reply)).await?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        if self.inner.closed.load(Ordering::SeqCst) {
            return Err(StoreError::Closed);
        }
        let reader = Arc::clone(&self.inner.reader);
        tokio::task::spawn_blocking(move || {
            let conn = reader.lock().unwrap_or_else(|p| p.into_inner());
            f(&conn)
        })
        .await
        .map_err(|e| StoreError::Io(std::io::Error::other(e)))?
    }
}

#[cfg(test)]
mod tests;
