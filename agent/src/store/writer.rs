//! The writer thread: the only code that writes the database. It keeps one
//! transaction open while events arrive and commits it on the group-commit
//! deadline, when enough events are pending, for a critical event, or for any
//! other command (acks, meta, documents), which must be durable on return.

use super::docs::{self, DocSave};
use super::outbox::{self, EvictionClass};
use super::read::{self, OutboxRow};
use super::reserve::{is_disk_full, Reserve, RESERVE_BYTES};
use super::{rows, schema, EvictionReport, NewEvent, StoreError, StoreOptions};
use fleet_protocol::{BootId, Hlc, HlcClock, Priority, TimeAnchor};
use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// Most commands the writer takes off the queue at once.
const RECV_BATCH: usize = 512;

/// How many times a transaction the file system refused is written again, each
/// after evicting more, before its events are reported as not stored.
const FULL_RETRIES: u32 = 3;

/// Most row bytes one eviction step deletes in its transaction: its WAL frames
/// must fit the reserve ([`RESERVE_BYTES`]) on a full disk.
const EVICT_STEP_BYTES: u64 = 128 << 10;

/// Most free pages one incremental vacuum moves, for the same reason.
const VACUUM_STEP_PAGES: u32 = 64;

/// The meta key counting the writes a full file system refused.
pub(crate) const META_DISK_FULL_TOTAL: &str = "store.disk_full_total";

/// The meta key holding whether the disk is full, as the writer last found it:
/// `1` from a write the file system refused (or a budget taken by critical
/// events alone) until the file system has room for the store again, else `0`.
pub(crate) const META_DISK_FULL: &str = "store.disk_full";

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

pub(crate) enum Command {
    Append {
        ev: NewEvent,
        reply: Option<Reply<u64>>,
    },
    Flush(Reply<u64>),
    SetAcked {
        seq: u64,
        reply: Reply<()>,
    },
    SetBudget {
        bytes: u64,
        reply: Reply<EvictionReport>,
    },
    PutAnchor {
        anchor: TimeAnchor,
        reply: Reply<()>,
    },
    SetMeta {
        key: String,
        value: Vec<u8>,
        reply: Reply<()>,
    },
    DocSave {
        save: DocSave,
        reply: Reply<()>,
    },
    SetDocSyncState {
        doc_id: String,
        peer: String,
        state: Vec<u8>,
        reply: Reply<()>,
    },
    Close(Reply<()>),
}

pub(crate) fn spawn(
    conn: Connection,
    reserve: Reserve,
    rx: mpsc::Receiver<Command>,
    boot_id: BootId,
    opts: StoreOptions,
) -> Result<std::thread::JoinHandle<()>, StoreError> {
    let writer = Writer::new(conn, reserve, boot_id, opts)?;
    // A private single-thread runtime gives the thread a timed wait on the async
    // queue, whatever runtime (if any) the caller uses.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    let handle = std::thread::Builder::new()
        .name("store-writer".into())
        .spawn(move || writer.run(&rt, rx))?;
    Ok(handle)
}

struct Writer {
    conn: Connection,
    boot: i64,
    opts: StoreOptions,
    hlc: HlcClock,
    /// The highest seq and HLC on disk; the open transaction builds past them.
    committed_seq: u64,
    committed_hlc: Hlc,
    next_seq: u64,
    in_tx: bool,
    /// Events in the open transaction, and the callers waiting for it.
    pending: usize,
    waiting: Vec<(u64, Reply<u64>)>,
    /// The open transaction's events, kept so that a transaction the file system
    /// refuses can be written again once eviction has made room.
    tx_events: Vec<NewEvent>,
    deadline: Option<Instant>,
    payload: Vec<u8>,
    reserve: Reserve,
    disk_full_total: u64,
    /// What [`META_DISK_FULL`] says, or is about to.
    disk_full: bool,
}

impl Writer {
    fn new(
        conn: Connection,
        reserve: Reserve,
        boot_id: BootId,
        opts: StoreOptions,
    ) -> Result<Self, StoreError> {
        register_boot(&conn, &reserve, boot_id)?;
        let boot: i64 = conn.query_row(
            "SELECT id FROM boots WHERE boot_id = ?1",
            [&boot_id.0[..]],
            |r| r.get(0),
        )?;
        let o = read::outbox_row(&conn)?;
        // The counters and the rows commit together, so these agree; taking the
        // larger anyway means a seq is never issued twice.
        let max_row: Option<i64> =
            conn.query_row("SELECT max(seq) FROM events", [], |r| r.get(0))?;
        let committed_seq = o.last_seq.max(max_row.unwrap_or(0) as u64);
        let committed_hlc = Hlc(o.last_hlc);
        let disk_full_total = read::meta_u64(&conn, META_DISK_FULL_TOTAL)?;
        let mut disk_full = read::meta_u64(&conn, META_DISK_FULL)? != 0;
        if !reserve.restore() {
            tracing::warn!("the disk is full: no room to reserve for eviction");
            disk_full = true;
        }
        Ok(Self {
            conn,
            boot,
            opts,
            hlc: HlcClock::resume(committed_hlc),
            committed_seq,
            committed_hlc,
            next_seq: committed_seq + 1,
            in_tx: false,
            pending: 0,
            waiting: Vec::new(),
            tx_events: Vec::new(),
            deadline: None,
            payload: Vec::with_capacity(256),
            reserve,
            disk_full_total,
            disk_full,
        })
    }

    fn run(mut self, rt: &tokio::runtime::Runtime, mut rx: mpsc::Receiver<Command>) {
        let mut close_reply = None;
        // Taking commands in runs keeps the per-event cost of waking up and
        // arming the timer off the hot path.
        let mut batch = Vec::with_capacity(RECV_BATCH);
        loop {
            let received = match self.deadline {
                // The timer must be created inside the runtime that drives it.
                Some(deadline) => match rt.block_on(async {
                    tokio::time::timeout_at(deadline, rx.recv_many(&mut batch, RECV_BATCH)).await
                }) {
                    Ok(n) => n,
                    Err(_elapsed) => {
                        let _ = self.commit();
                        continue;
                    }
                },
                None => rx.blocking_recv_many(&mut batch, RECV_BATCH),
            };
            if received == 0 {
                break;
            }
            for cmd in batch.drain(..) {
                match cmd {
                    Command::Close(reply) => {
                        // Accept nothing new, but finish what is already queued.
                        rx.close();
                        close_reply = Some(reply);
                    }
                    cmd => self.handle(cmd),
                }
            }
            // A steady stream never lets the timed wait run out, so the window
            // is also checked here.
            if self.deadline.is_some_and(|d| d <= Instant::now()) {
                let _ = self.commit();
            }
        }
        let result = self.commit().map(|_| ());
        if let Some(reply) = close_reply {
            let _ = reply.send(result);
        }
    }

    fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::Append { ev, reply } => self.append(ev, reply),
            Command::Flush(reply) => {
                let _ = reply.send(self.commit());
            }
            Command::SetAcked { seq, reply } => {
                let result = self.durably(|w| w.set_acked(seq));
                let _ = reply.send(result);
            }
            Command::SetBudget { bytes, reply } => {
                self.opts.disk_budget_bytes = bytes;
                let result = self.commit().and_then(|_| self.enforce_budget());
                let _ = reply.send(result);
            }
            Command::PutAnchor { anchor, reply } => {
                let result = self.durably(|w| {
                    let current = read::anchor_for(&w.conn, anchor.boot_id)?;
                    if outbox::anchor_replaces(current.as_ref(), &anchor) {
                        w.conn
                            .prepare_cached(
                                "INSERT OR REPLACE INTO time_anchors \
                                 (boot_id, mono_ms, true_ms, source, uncertainty_ms) \
                                 VALUES (?1, ?2, ?3, ?4, ?5)",
                            )?
                            .execute(params![
                                &anchor.boot_id.0[..],
                                anchor.mono_ms as i64,
                                anchor.true_ms,
                                anchor.source as u8,
                                anchor.uncertainty_ms
                            ])?;
                    }
                    Ok(())
                });
                let _ = reply.send(result);
            }
            Command::SetMeta { key, value, reply } => {
                let result = self.durably(|w| {
                    w.conn
                        .prepare_cached("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)")?
                        .execute(params![key, value])?;
                    Ok(())
                });
                let _ = reply.send(result);
            }
            Command::DocSave { save, reply } => {
                let result = self.durably(|w| docs::apply_save(&w.conn, save.clone()));
                let _ = reply.send(result);
            }
            Command::SetDocSyncState {
                doc_id,
                peer,
                state,
                reply,
            } => {
                let result =
                    self.durably(|w| docs::apply_sync_state(&w.conn, &doc_id, &peer, &state));
                let _ = reply.send(result);
            }
            Command::Close(_) => unreachable!("handled by the run loop"),
        }
    }

    fn append(&mut self, ev: NewEvent, reply: Option<Reply<u64>>) {
        let critical = ev.priority == Priority::Critical;
        match self.insert(&ev) {
            Ok(seq) => {
                if let Some(reply) = reply {
                    self.waiting.push((seq, reply));
                }
                self.tx_events.push(ev);
            }
            Err(e) if is_disk_full(&e) && self.in_tx => {
                // The event joins the refused transaction, under the seq it would
                // have had; the commit writes them all again after evicting.
                if let Some(reply) = reply {
                    self.waiting.push((self.next_seq, reply));
                }
                self.tx_events.push(ev);
                self.next_seq += 1;
                self.pending += 1;
                let _ = self.commit();
                return;
            }
            Err(e) => {
                tracing::error!(kind = %ev.kind, error = %e, "event not stored");
                if let Some(reply) = reply {
                    let _ = reply.send(Err(e));
                }
                return;
            }
        }
        if critical || self.pending >= self.opts.group_commit_max_events {
            let _ = self.commit();
        } else if self.deadline.is_none() {
            self.deadline = Some(Instant::now() + self.opts.group_commit);
        }
    }

    fn begin(&mut self) -> Result<(), StoreError> {
        if !self.in_tx {
            self.conn.execute_batch("BEGIN IMMEDIATE")?;
            self.in_tx = true;
        }
        Ok(())
    }

    fn insert(&mut self, ev: &NewEvent) -> Result<u64, StoreError> {
        self.begin()?;
        let seq = self.next_seq;
        let hlc = self.hlc.tick(ev.wall_ms);
        self.payload.clear();
        rows::encode_data(&ev.data, &mut self.payload);
        self.conn
            .prepare_cached(
                "INSERT INTO events (seq, boot, kind, priority, mono_ms, wall_ms, hlc, config_version, data) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                seq as i64,
                self.boot,
                ev.kind.as_str(),
                ev.priority as u8,
                ev.mono_ms as i64,
                ev.wall_ms,
                hlc.0 as i64,
                ev.config_version,
                self.payload
            ])?;
        self.next_seq += 1;
        self.pending += 1;
        Ok(seq)
    }

    /// Commits the queued events, then runs `op` in a transaction of its own and
    /// commits it, so the change is durable when the caller hears back. If the
    /// file system refuses it, room is made and `op` runs once more.
    fn durably<T>(
        &mut self,
        mut op: impl FnMut(&mut Self) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        // Alone in its transaction, the change can be retried without the
        // events, which `commit` writes again by itself.
        self.commit()?;
        match self.op_transaction(&mut op) {
            Err(e) if is_disk_full(&e) => {
                if let Err(evict) = self.make_room(1) {
                    tracing::error!(error = %evict, "eviction to make room on a full disk failed");
                }
                let result = self.op_transaction(&mut op);
                if result.is_ok() {
                    self.reserve.restore();
                }
                result
            }
            r => r,
        }
    }

    fn op_transaction<T>(
        &mut self,
        op: &mut impl FnMut(&mut Self) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        let result = op(self).and_then(|v| {
            self.conn.execute_batch("COMMIT")?;
            Ok(v)
        });
        if result.is_err() && !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        result
    }

    fn set_acked(&mut self, seq: u64) -> Result<(), StoreError> {
        let highest = self.next_seq - 1;
        if seq > highest {
            tracing::warn!(seq, highest, "ack beyond the last recorded event, clamped");
        }
        self.conn
            .prepare_cached("UPDATE outbox SET acked_seq = max(acked_seq, ?1) WHERE id = 1")?
            .execute([seq.min(highest) as i64])?;
        Ok(())
    }

    /// Commits the open transaction (if any) and answers the callers waiting on
    /// it. Returns the highest committed seq. A transaction the file system
    /// refuses is rolled back, room is made by eviction, and it is written again.
    fn commit(&mut self) -> Result<u64, StoreError> {
        self.deadline = None;
        if !self.in_tx {
            return Ok(self.committed_seq);
        }
        let result = match self.try_commit() {
            Err(e) if is_disk_full(&e) => self.write_again_after_full(e),
            r => r,
        };
        self.in_tx = false;
        self.tx_events.clear();
        let waiting = std::mem::take(&mut self.waiting);
        let pending = std::mem::replace(&mut self.pending, 0);
        match result {
            Ok(()) => {
                self.committed_seq = self.next_seq - 1;
                self.committed_hlc = self.hlc.last();
                for (seq, reply) in waiting {
                    let _ = reply.send(Ok(seq));
                }
                let over_budget = match self.enforce_budget() {
                    Ok(report) => report.over_budget,
                    Err(e) => {
                        tracing::error!(error = %e, "eviction failed; the store may exceed its disk budget");
                        false
                    }
                };
                self.review_disk_full(over_budget);
                Ok(self.committed_seq)
            }
            Err(e) => {
                if !self.conn.is_autocommit() {
                    let _ = self.conn.execute_batch("ROLLBACK");
                }
                self.next_seq = self.committed_seq + 1;
                self.hlc = HlcClock::resume(self.committed_hlc);
                let unanswered = pending.saturating_sub(waiting.len());
                tracing::error!(
                    lost = unanswered,
                    failed = waiting.len(),
                    error = %e,
                    "commit failed; queued events were not stored"
                );
                for (_, reply) in waiting {
                    let _ = reply.send(Err(StoreError::Io(std::io::Error::other(format!(
                        "commit failed: {e}"
                    )))));
                }
                Err(e)
            }
        }
    }

    /// The file system refused the open transaction (SQLITE_FULL), which SQLite
    /// may already have rolled back. Roll back, evict by priority to make room
    /// (releasing the reserve so the eviction itself can be written), and write
    /// the transaction's events again under the same seqs. A full disk costs
    /// old low-priority events, never the ones being recorded.
    fn write_again_after_full(&mut self, mut err: StoreError) -> Result<(), StoreError> {
        for attempt in 1..=FULL_RETRIES {
            if !self.conn.is_autocommit() {
                let _ = self.conn.execute_batch("ROLLBACK");
            }
            self.next_seq = self.committed_seq + 1;
            self.hlc = HlcClock::resume(self.committed_hlc);
            self.pending = 0;
            tracing::warn!(
                attempt,
                events = self.tx_events.len(),
                error = %err,
                "the disk is full; evicting to make room and writing again"
            );
            if let Err(e) = self.make_room(attempt) {
                tracing::error!(error = %e, "eviction to make room on a full disk failed");
            }
            match self.write_tx_events() {
                Ok(()) => {
                    self.reserve.restore();
                    return Ok(());
                }
                Err(e) if is_disk_full(&e) => err = e,
                Err(e) => return Err(e),
            }
        }
        Err(err)
    }

    /// Writes the kept events of a refused transaction again, and commits.
    fn write_tx_events(&mut self) -> Result<(), StoreError> {
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        let events = std::mem::take(&mut self.tx_events);
        let mut result = Ok(());
        for ev in &events {
            if let Err(e) = self.insert(ev) {
                result = Err(e);
                break;
            }
        }
        self.tx_events = events;
        result?;
        self.try_commit()
    }

    /// Frees room on a full disk: gives up the reserve and evicts, by priority,
    /// a tenth of the store (at least [`outbox::FULL_DISK_MIN_EVICT_BYTES`]) per
    /// attempt, more on each retry; the count of refused writes is kept with it.
    fn make_room(&mut self, attempt: u32) -> Result<EvictionReport, StoreError> {
        self.disk_full_total += 1;
        self.disk_full = true;
        // The WAL may hold megabytes already committed: carried into the
        // database and rewound, its room takes the next writes. It is not cut
        // off: bytes handed back to a full file system are taken by whatever
        // filled it, and then the WAL could not grow again.
        self.reserve.release();
        rewind_wal(&self.conn);
        let used = schema::used_bytes(&self.conn)?;
        let target = outbox::full_disk_target(used, self.opts.disk_budget_bytes, attempt);
        let report = self.evict_to(target)?;
        tracing::warn!(
            telemetry = report.evicted_telemetry,
            normal = report.evicted_normal,
            pruned_acked = report.pruned_acked,
            used_before = report.used_bytes_before,
            used_after = report.used_bytes_after,
            "disk full: evicted to make room"
        );
        Ok(report)
    }

    /// After a commit: the disk is full while the budget is taken by critical
    /// events alone, and, once the file system has refused a write, until it
    /// has room again for the reserve and for the store to grow to its budget.
    /// A change is written down so that `status` sees it after a restart too.
    fn review_disk_full(&mut self, over_budget: bool) {
        let full = over_budget || (self.disk_full && !self.room_is_back());
        if full == self.disk_full {
            return;
        }
        let result = self.op_transaction(&mut |w: &mut Self| {
            w.conn
                .prepare_cached("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)")?
                .execute(params![META_DISK_FULL, disk_full_value(full)])?;
            Ok(())
        });
        match result {
            Ok(()) => {
                self.disk_full = full;
                if full {
                    tracing::warn!("the disk budget is taken by unacknowledged critical events: the disk is full");
                } else {
                    tracing::warn!("the disk has room again");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot record whether the disk is full"),
        }
    }

    /// Whether the file system holding the store has room again: the reserve is
    /// back and what is left would take the store up to its budget (pages kept
    /// in the database's free list count as room the store already has).
    fn room_is_back(&self) -> bool {
        let Ok(used) = schema::allocated_bytes(&self.conn) else {
            return false;
        };
        let mut wanted = self
            .opts
            .disk_budget_bytes
            .saturating_sub(used)
            .max(RESERVE_BYTES);
        if !self.reserve.held() {
            wanted += RESERVE_BYTES;
        }
        // Checked first, so a full disk is not written to on every commit.
        let room = self.reserve.free_bytes().is_some_and(|free| free >= wanted);
        room && self.reserve.restore()
    }

    fn try_commit(&mut self) -> Result<(), StoreError> {
        if self.pending > 0 {
            self.conn
                .prepare_cached("UPDATE outbox SET last_seq = ?1, last_hlc = ?2 WHERE id = 1")?
                .execute(params![
                    (self.next_seq - 1) as i64,
                    self.hlc.last().0 as i64
                ])?;
        }
        self.conn.execute_batch("COMMIT")?;
        Ok(())
    }

    /// Deletes events, in [`outbox::EVICTION_ORDER`], until the pages in use fit
    /// 90 % of the budget; then gives the freed pages back to the file system.
    fn enforce_budget(&mut self) -> Result<EvictionReport, StoreError> {
        let budget = self.opts.disk_budget_bytes;
        let before = schema::used_bytes(&self.conn)?;
        if before <= budget {
            return Ok(EvictionReport {
                used_bytes_before: before,
                used_bytes_after: before,
                ..Default::default()
            });
        }
        let target = outbox::eviction_target(budget);
        let report = match self.evict_to(target) {
            // Deleting needs room too: with the reserve given up it has some.
            Err(e) if is_disk_full(&e) => {
                self.disk_full_total += 1;
                self.disk_full = true;
                self.reserve.release();
                rewind_wal(&self.conn);
                let report = self.evict_to(target)?;
                self.reserve.restore();
                report
            }
            r => r?,
        };
        let evicted = report.evicted_telemetry + report.evicted_normal;
        if report.over_budget {
            tracing::error!(
                used = report.used_bytes_after,
                budget,
                "disk budget exceeded by unacknowledged critical events, which are never evicted"
            );
        }
        if evicted > 0 {
            tracing::warn!(
                telemetry = report.evicted_telemetry,
                normal = report.evicted_normal,
                pruned_acked = report.pruned_acked,
                "evicted unacknowledged events to stay within the disk budget"
            );
        } else {
            tracing::debug!(
                pruned_acked = report.pruned_acked,
                "pruned acknowledged events"
            );
        }
        Ok(report)
    }

    /// Deletes events in [`outbox::EVICTION_ORDER`] until the pages in use fit
    /// `target` (or only unacknowledged critical events are left), and gives the
    /// freed pages back to the file system. It goes in small steps, each a
    /// transaction of its own followed by a checkpoint and an incremental
    /// vacuum: on a full disk every write must fit the room the reserve left,
    /// and each step hands the next one what it freed.
    fn evict_to(&mut self, target: u64) -> Result<EvictionReport, StoreError> {
        let before = schema::used_bytes(&self.conn)?;
        let mut report = EvictionReport {
            used_bytes_before: before,
            used_bytes_after: before,
            ..Default::default()
        };
        let (total, full) = (self.disk_full_total, self.disk_full);
        self.op_transaction(&mut |w: &mut Self| {
            w.conn
                .prepare_cached(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2), (?3, ?4)",
                )?
                .execute(params![
                    META_DISK_FULL_TOTAL,
                    total.to_string().into_bytes(),
                    META_DISK_FULL,
                    disk_full_value(full)
                ])?;
            Ok(())
        })?;
        let o: OutboxRow = read::outbox_row(&self.conn)?;
        let rows_estimate = o
            .last_seq
            .saturating_sub(o.pruned_acked + o.evicted_telemetry + o.evicted_normal)
            .max(1);
        let avg_row = (before / rows_estimate).max(1);
        let step_rows = (EVICT_STEP_BYTES / avg_row).max(16) as usize;
        let mut used = before;
        for class in outbox::EVICTION_ORDER {
            let mut cursor = 0u64;
            while used > target {
                let n = outbox::eviction_step(used - target, avg_row).min(step_rows);
                let seqs = self.select_victims(class, o.acked_seq, cursor, n)?;
                let Some(&last) = seqs.last() else { break };
                cursor = last;
                self.op_transaction(&mut |w: &mut Self| w.delete_events(class, &seqs))?;
                report.count(class, seqs.len() as u64);
                self.settle_freed_pages()?;
                used = schema::used_bytes(&self.conn)?;
            }
        }
        self.settle_freed_pages()?;
        report.used_bytes_after = schema::used_bytes(&self.conn)?;
        report.over_budget = report.used_bytes_after > self.opts.disk_budget_bytes;
        Ok(report)
    }

    /// What becomes of the pages an eviction step freed. With room on the disk
    /// they go back to the file system. On a full disk they stay in the store's
    /// own free list, and the WAL is rewound rather than cut off: whatever the
    /// store hands back, whoever else fills the disk takes, and then not even
    /// the next eviction could be written. Kept, they take the next events.
    fn settle_freed_pages(&self) -> Result<(), StoreError> {
        if !self.disk_full {
            return self.give_back_pages();
        }
        rewind_wal(&self.conn);
        Ok(())
    }

    /// Hands free pages back to the file system: a checkpoint empties the WAL,
    /// then incremental vacuums move free pages to the end of the file and cut
    /// them off, a few at a time so each fits the room there is.
    fn give_back_pages(&self) -> Result<(), StoreError> {
        let checkpoint = || {
            self.conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        };
        checkpoint()?;
        loop {
            let free: i64 = self
                .conn
                .pragma_query_value(None, "freelist_count", |r| r.get(0))?;
            if free == 0 {
                return Ok(());
            }
            self.conn
                .execute_batch(&format!("PRAGMA incremental_vacuum({VACUUM_STEP_PAGES})"))?;
            checkpoint()?;
            let left: i64 = self
                .conn
                .pragma_query_value(None, "freelist_count", |r| r.get(0))?;
            if left >= free {
                // Nothing moved (a reader holds the WAL): try again next time.
                return Ok(());
            }
        }
    }

    fn select_victims(
        &self,
        class: EvictionClass,
        acked: u64,
        after: u64,
        n: usize,
    ) -> Result<Vec<u64>, StoreError> {
        let (after, acked, n) = (after as i64, acked as i64, n as i64);
        let seqs = match class {
            EvictionClass::Acked => self
                .conn
                .prepare_cached(
                    "SELECT seq FROM events WHERE seq > ?1 AND seq <= ?2 ORDER BY seq LIMIT ?3",
                )?
                .query_map([after, acked, n], |r| r.get::<_, i64>(0))?
                .collect::<Result<Vec<_>, _>>()?,
            EvictionClass::Unacked(p) => {
                debug_assert!(
                    p != Priority::Critical,
                    "unacked critical events are never evicted"
                );
                self.conn
                    .prepare_cached(
                        "SELECT seq FROM events WHERE seq > max(?1, ?2) AND priority = ?4 ORDER BY seq LIMIT ?3",
                    )?
                    .query_map([after, acked, n, p as i64], |r| r.get::<_, i64>(0))?
                    .collect::<Result<Vec<_>, _>>()?
            }
        };
        Ok(seqs.into_iter().map(|s| s as u64).collect())
    }

    fn delete_events(&self, class: EvictionClass, seqs: &[u64]) -> Result<(), StoreError> {
        let mut del = self
            .conn
            .prepare_cached("DELETE FROM events WHERE seq = ?1")?;
        for &s in seqs {
            del.execute([s as i64])?;
        }
        let column = match class {
            EvictionClass::Acked => "pruned_acked",
            EvictionClass::Unacked(Priority::Telemetry) => "evicted_telemetry",
            EvictionClass::Unacked(_) => "evicted_normal",
        };
        self.conn
            .prepare_cached(&format!(
                "UPDATE outbox SET {column} = {column} + ?1 WHERE id = 1"
            ))?
            .execute([seqs.len() as i64])?;
        if matches!(class, EvictionClass::Unacked(_)) {
            for (first, last) in outbox::runs(seqs) {
                self.record_evicted_range(first, last)?;
            }
        }
        Ok(())
    }

    /// Adds `first..=last` to `evicted_ranges`, joining ranges it touches.
    fn record_evicted_range(&self, mut first: u64, mut last: u64) -> Result<(), StoreError> {
        let before: Option<(i64, i64)> = self
            .conn
            .prepare_cached(
                "SELECT first_seq, last_seq FROM evicted_ranges WHERE first_seq < ?1 ORDER BY first_seq DESC LIMIT 1",
            )?
            .query_row([first as i64], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        if let Some((f, l)) = before {
            if l as u64 + 1 >= first {
                first = f as u64;
                last = last.max(l as u64);
                self.conn
                    .execute("DELETE FROM evicted_ranges WHERE first_seq = ?1", [f])?;
            }
        }
        let next_first = last as i64 + 1;
        let after: Option<i64> = self
            .conn
            .prepare_cached("SELECT last_seq FROM evicted_ranges WHERE first_seq = ?1")?
            .query_row([next_first], |r| r.get(0))
            .optional()?;
        if let Some(l) = after {
            last = l as u64;
            self.conn.execute(
                "DELETE FROM evicted_ranges WHERE first_seq = ?1",
                [next_first],
            )?;
        }
        self.conn
            .prepare_cached("INSERT INTO evicted_ranges (first_seq, last_seq) VALUES (?1, ?2)")?
            .execute([first as i64, last as i64])?;
        Ok(())
    }
}

/// Carries the WAL into the database and has the next write start at its
/// beginning, keeping the file's size: on a full disk, room handed back to the
/// file system is room lost.
fn rewind_wal(conn: &Connection) {
    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(())) {
        tracing::warn!(error = %e, "checkpoint on a full disk failed");
    }
}

/// Notes this boot in the store, the one write an open makes. After a power
/// cut on a full disk the WAL may have no room to grow: the WAL is rewound so
/// the write reuses its space, and then the reserve is given up, so that the
/// agent (and `status`) still start.
fn register_boot(conn: &Connection, reserve: &Reserve, boot_id: BootId) -> Result<(), StoreError> {
    let insert = || -> Result<(), StoreError> {
        conn.execute(
            "INSERT OR IGNORE INTO boots (boot_id) VALUES (?1)",
            [&boot_id.0[..]],
        )?;
        Ok(())
    };
    let mut result = insert();
    // First the WAL alone, then with the reserve given up as well.
    for give_up_reserve in [false, true] {
        match &result {
            Err(e) if is_disk_full(e) => {}
            _ => break,
        }
        tracing::warn!("the disk is full at start: making room to note this boot");
        if give_up_reserve {
            reserve.release();
        }
        rewind_wal(conn);
        result = insert();
    }
    result
}

fn disk_full_value(full: bool) -> &'static [u8] {
    if full {
        b"1"
    } else {
        b"0"
    }
}

impl EvictionReport {
    fn count(&mut self, class: EvictionClass, n: u64) {
        match class {
            EvictionClass::Acked => self.pruned_acked += n,
            EvictionClass::Unacked(Priority::Telemetry) => self.evicted_telemetry += n,
            EvictionClass::Unacked(_) => self.evicted_normal += n,
        }
    }
}
