//! Delivery to the sync server: signed requests, batches with acks, backoff,
//! time anchors and automerge document sync.
//!
//! The loop holds one batch at a time: read the events after the durable ack,
//! encode, send, and record the server's ack durably before reading on. A
//! restart resumes from the stored ack; the server deduplicates by (device, seq),
//! so a batch sent twice is stored once.

pub mod anchors;
pub mod backfill;
pub mod backoff;
pub mod blobs;
pub mod client;
pub mod control;
pub mod docs;
pub mod progress;
pub mod snapshot;
pub mod tls;

use crate::clock::SharedClock;
use crate::identity::Identity;
use crate::store::{Store, StoreError};
use backoff::Backoff;
use client::{RequestError, SyncClient};
use fleet_protocol::{encode_batch, BatchHeader, TimeAnchor};
use progress::{AckOutcome, Retry};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::future::Future;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Meta key: JSON `{"acked_seq", "at_ms"}` of the last ack, for `fleet-agent status`.
pub const META_LAST_SYNC: &str = "sync.last_ack";
/// Meta key: JSON `{"at_ms", "what", "code", "message"}` of the last failed request.
pub const META_LAST_SYNC_ERROR: &str = "sync.last_error";

#[derive(Debug, Clone)]
pub struct SyncOptions {
    pub batch_max_events: usize,
    pub zstd_level: i32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// How often to look for new events when the outbox is empty.
    pub idle_poll: Duration,
    /// When `Some`, the link is up only while the value is true (the demo and
    /// tests simulate coverage loss with it).
    pub online: Option<watch::Receiver<bool>>,
    pub request_timeout: Duration,
    /// How often to sync automerge documents.
    pub docs_interval: Duration,
    /// Seed for the backoff jitter; `None` seeds from the OS.
    pub jitter_seed: Option<u64>,
    /// How often to pull the desired config and report status, when `control` is set.
    pub control_interval: Duration,
    pub control: Option<control::ControlLink>,
    /// A kiosk's yard: its signed snapshot is pulled at most every
    /// `snapshot_interval`, with the document rounds.
    pub kiosk_yard: Option<String>,
    pub snapshot_interval: Duration,
}

impl Default for SyncOptions {
    fn default() -> Self {
        Self {
            batch_max_events: 5_000,
            zstd_level: 3,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            idle_poll: Duration::from_secs(2),
            online: None,
            request_timeout: Duration::from_secs(30),
            docs_interval: Duration::from_secs(30),
            jitter_seed: None,
            control_interval: Duration::from_secs(300),
            control: None,
            kiosk_yard: None,
            snapshot_interval: Duration::from_secs(300),
        }
    }
}

/// Deliver the outbox and sync documents until `shutdown` turns true.
/// Returns an error only if the client can't be set up at all; everything after
/// that is retried.
pub async fn run_sync(
    store: Store,
    identity: Identity,
    clock: SharedClock,
    opts: SyncOptions,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let client = SyncClient::new(&identity, clock.clone(), opts.request_timeout)?;
    let rng = match opts.jitter_seed {
        Some(seed) => StdRng::seed_from_u64(seed),
        None => StdRng::from_entropy(),
    };
    let mut worker = Worker {
        backoff: Backoff::new(opts.backoff_base, opts.backoff_max),
        gate: Gate {
            online: opts.online.clone(),
            shutdown,
        },
        store,
        identity,
        clock,
        client,
        opts,
        rng,
        skew_retries: 0,
        best_anchor: None,
        docs_due: Instant::now(),
        snapshot_due: Instant::now(),
        time_unavailable: false,
        failing: false,
        backfill: backfill::Backfill::new(backfill::REPORT_EVERY),
        last_error: None,
        control_due: Instant::now(),
        control_unavailable: false,
        config_error: None,
    };
    worker.run().await;
    Ok(())
}

/// Watches the online gate and the shutdown signal.
struct Gate {
    online: Option<watch::Receiver<bool>>,
    shutdown: watch::Receiver<bool>,
}

enum Interrupt {
    Shutdown,
    Offline,
}

impl Gate {
    fn is_shutdown(&self) -> bool {
        *self.shutdown.borrow()
    }

    fn is_online(&self) -> bool {
        self.online.as_ref().is_none_or(|o| *o.borrow())
    }

    /// Wait until the link is up; false if shutdown came first.
    async fn wait_online(&mut self) -> bool {
        loop {
            if self.is_shutdown() {
                return false;
            }
            if self.is_online() {
                return true;
            }
            let Some(online) = self.online.as_mut() else {
                return true;
            };
            tokio::select! {
                changed = online.changed() => {
                    if changed.is_err() {
                        // Nobody can bring the link back: wait for shutdown only.
                        wait_shutdown(&mut self.shutdown).await;
                        return false;
                    }
                }
                _ = wait_shutdown(&mut self.shutdown) => return false,
            }
        }
    }

    /// Resolves when the link goes down or shutdown is asked for.
    async fn interrupted(&mut self) -> Interrupt {
        let online = async {
            match self.online.as_mut() {
                Some(o) => loop {
                    if !*o.borrow_and_update() {
                        return;
                    }
                    if o.changed().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                },
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = online => Interrupt::Offline,
            _ = wait_shutdown(&mut self.shutdown) => Interrupt::Shutdown,
        }
    }

    /// Sleep unless interrupted; true if the full time passed.
    async fn sleep(&mut self, d: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => true,
            _ = self.interrupted() => false,
        }
    }

    /// Run `fut` unless the link drops or shutdown comes first.
    async fn guard<T>(&mut self, fut: impl Future<Output = T>) -> Option<T> {
        tokio::select! {
            v = fut => Some(v),
            _ = self.interrupted() => None,
        }
    }
}

/// Resolves once `rx` holds true. A dropped sender never resolves it.
async fn wait_shutdown(rx: &mut watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

enum Step {
    /// A batch went through; send the next at once.
    Progress,
    /// Nothing to send.
    Idle,
    /// Cancelled by the gate or shutdown.
    Interrupted,
    Failed(Retry),
}

struct Worker {
    store: Store,
    identity: Identity,
    clock: SharedClock,
    client: SyncClient,
    opts: SyncOptions,
    gate: Gate,
    backoff: Backoff,
    rng: StdRng,
    skew_retries: u32,
    /// The best stored anchor for the current boot.
    best_anchor: Option<TimeAnchor>,
    docs_due: Instant,
    snapshot_due: Instant,
    /// The server has no time endpoint; don't ask again.
    time_unavailable: bool,
    /// The last request failed (to log recovery once).
    failing: bool,
    backfill: backfill::Backfill,
    /// The last failure, to note in the store for `fleet-agent status`.
    last_error: Option<serde_json::Value>,
    /// When to next pull the desired config and report status.
    control_due: Instant,
    /// The server has no control endpoints; don't ask again.
    control_unavailable: bool,
    /// The last offered config this device could not apply.
    config_error: Option<fleet_protocol::control::ConfigApplyError>,
}

impl Worker {
    async fn run(&mut self) {
        match self.store.anchors().await {
            Ok(all) => self.best_anchor = anchors::best_for(&all, self.clock.boot_id()),
            Err(e) => tracing::warn!(error = %e, "cannot read time anchors"),
        }
        loop {
            if !self.gate.wait_online().await {
                return;
            }
            let step = if self.needs_time() {
                self.fetch_time().await
            } else if Instant::now() >= self.docs_due {
                self.sync_docs().await
            } else if self.control_is_due() {
                self.control_round().await
            } else {
                self.send_batch().await
            };
            match step {
                Step::Progress => {}
                Step::Idle => {
                    self.gate.sleep(self.opts.idle_poll).await;
                }
                Step::Interrupted => {}
                Step::Failed(retry) => {
                    if let Some(note) = self.last_error.take() {
                        if let Err(e) = self
                            .store
                            .set_meta(META_LAST_SYNC_ERROR, note.to_string().as_bytes())
                            .await
                        {
                            tracing::debug!(error = %e, "cannot note the sync failure");
                        }
                    }
                    let delay = match retry {
                        Retry::Now => Duration::ZERO,
                        Retry::Backoff => self.backoff.next_delay(&mut self.rng),
                        Retry::Stuck => self.backoff.give_up_delay(),
                    };
                    if !delay.is_zero() {
                        tracing::debug!(
                            ?delay,
                            attempt = self.backoff.attempt(),
                            "sync backing off"
                        );
                        self.gate.sleep(delay).await;
                    }
                }
            }
            if self.gate.is_shutdown() {
                return;
            }
        }
    }

    /// Learn the true time before the first batch of this boot, so even that
    /// batch carries an anchor for its events.
    fn needs_time(&self) -> bool {
        self.best_anchor.is_none() && !self.client.knows_server_time() && !self.time_unavailable
    }

    async fn fetch_time(&mut self) -> Step {
        let result = match self.gate.guard(self.client.server_time()).await {
            None => return Step::Interrupted,
            Some(r) => r,
        };
        self.keep_anchor().await;
        match result {
            Ok(_) => {
                self.succeeded();
                Step::Progress
            }
            Err(e) if e.is_transient() || e.code() == "clock_skew" => self.failed(&e, "time"),
            Err(e) => {
                // Batches don't depend on it: the anchor follows from their acks.
                tracing::warn!(code = e.code(), error = %e, "server time unavailable");
                self.time_unavailable = true;
                Step::Progress
            }
        }
    }

    async fn sync_docs(&mut self) -> Step {
        self.docs_due = Instant::now() + self.opts.docs_interval;
        let result = self
            .gate
            .guard(docs::sync_all(
                &self.store,
                &self.client,
                self.identity.device_id,
            ))
            .await;
        self.kiosk_round().await;
        self.keep_anchor().await;
        match result {
            None => Step::Interrupted,
            Some(Ok(report)) => {
                tracing::debug!(
                    synced = report.synced,
                    changed = report.changed,
                    "documents synced"
                );
                Step::Progress
            }
            Some(Err(docs::DocError::Request(e))) if e.is_transient() => {
                self.failed(&e, "documents")
            }
            Some(Err(e)) => {
                // A bad document must not hold up the event outbox; it is tried
                // again at the next interval.
                tracing::warn!(error = %e, "document sync failed");
                Step::Progress
            }
        }
    }

    /// Uploads queued blobs and, on a kiosk, refreshes the yard snapshot. A
    /// failure here waits for the next round; it never holds up the outbox.
    async fn kiosk_round(&mut self) {
        let Some(data_dir) = self.store.path().parent().map(std::path::Path::to_owned) else {
            return;
        };
        match self
            .gate
            .guard(blobs::upload_pending(&self.client, &data_dir))
            .await
        {
            Some(Ok(0)) | None => {}
            Some(Ok(n)) => tracing::debug!(uploaded = n, "blobs uploaded"),
            Some(Err(e)) => tracing::warn!(error = %e, "blob upload stopped; resuming next round"),
        }
        let Some(yard) = self.opts.kiosk_yard.clone() else {
            return;
        };
        if Instant::now() < self.snapshot_due {
            return;
        }
        self.snapshot_due = Instant::now() + self.opts.snapshot_interval;
        let trust = self.identity.tenant_trust().cloned();
        if let Some(t) = &trust {
            keep_trust_file(&data_dir, t);
        }
        let now = self.client.request_time_ms();
        match self
            .gate
            .guard(snapshot::pull(
                &self.client,
                trust.as_ref(),
                &data_dir,
                &yard,
                now,
            ))
            .await
        {
            None | Some(Ok(snapshot::Pulled::NotNewer)) => {}
            Some(Ok(snapshot::Pulled::Stored { generated_at_ms })) => {
                tracing::debug!(yard, generated_at_ms, "kiosk snapshot refreshed")
            }
            Some(Err(e)) => tracing::warn!(yard, error = %e, "kiosk snapshot not refreshed"),
        }
    }

    async fn send_batch(&mut self) -> Step {
        match self.try_send_batch().await {
            Ok(step) => step,
            Err(e) => {
                tracing::warn!(error = %e, "sync cannot read the local store");
                Step::Failed(Retry::Backoff)
            }
        }
    }

    async fn try_send_batch(&mut self) -> Result<Step, StoreError> {
        let acked = self.store.acked_seq().await?;
        let Some(batch) = self
            .store
            .read_batch(acked, self.opts.batch_max_events)
            .await?
        else {
            return Ok(Step::Idle);
        };
        let all_anchors = self.store.anchors().await?;
        self.best_anchor = anchors::best_for(&all_anchors, self.clock.boot_id());
        let header = BatchHeader {
            tenant_id: self.identity.tenant_id,
            device_id: self.identity.device_id,
            first_seq: batch.first_seq,
            last_seq: batch.last_seq,
            anchors: anchors::for_batch(&all_anchors, &batch.events),
        };
        let (first, last, count) = (batch.first_seq, batch.last_seq, batch.events.len());
        let frame = match encode_batch(&header, &batch.events, self.opts.zstd_level) {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(first, last, error = %e, "cannot encode stored events; sync is stuck until the agent is fixed");
                return Ok(Step::Failed(Retry::Stuck));
            }
        };
        drop(batch);
        let bytes = frame.len();
        let result = match self.gate.guard(self.client.post_batch(frame)).await {
            None => return Ok(Step::Interrupted),
            Some(r) => r,
        };
        self.keep_anchor().await;
        let ack = match result {
            Ok(ack) => ack,
            Err(e) => {
                if let RequestError::Status {
                    acked_seq: Some(server_acked),
                    ..
                } = &e
                {
                    if let AckOutcome::Advance(seq) =
                        progress::apply_ack(acked, last, *server_acked)
                    {
                        self.store.set_acked(seq).await?;
                    }
                }
                return Ok(self.failed(&e, "batch"));
            }
        };
        tracing::debug!(
            first,
            last,
            events = count,
            bytes,
            acked = ack.acked_seq,
            stored = ack.stored,
            duplicates = ack.duplicates,
            quarantined = ack.quarantined,
            "batch acked"
        );
        if ack.quarantined > 0 {
            tracing::warn!(
                first,
                last,
                quarantined = ack.quarantined,
                "server quarantined events of a batch"
            );
        }
        match progress::apply_ack(acked, last, ack.acked_seq) {
            AckOutcome::Advance(seq) => {
                self.store.set_acked(seq).await?;
                let note =
                    serde_json::json!({ "acked_seq": seq, "at_ms": self.client.request_time_ms() });
                self.store
                    .set_meta(META_LAST_SYNC, note.to_string().as_bytes())
                    .await?;
                self.succeeded();
                crate::metrics::agent().sync_batch_acked();
                let now = std::time::Instant::now();
                if self
                    .backfill
                    .on_ack(now, acked, count >= self.opts.batch_max_events)
                {
                    let recorded = self.store.stats().await?.last_seq;
                    if let Some(r) = self.backfill.report(now, seq, recorded) {
                        tracing::info!(
                            acked = r.acked,
                            remaining = r.remaining,
                            events_per_s = r.events_per_s.round(),
                            eta = ?r.eta.map(|d| Duration::from_secs(d.as_secs())),
                            "{}",
                            if r.done { "backfill done" } else { "backfill in progress" }
                        );
                    }
                }
                Ok(Step::Progress)
            }
            AckOutcome::NoProgress => {
                tracing::debug!(acked, first, last, "server acked nothing new; resending");
                Ok(Step::Failed(Retry::Backoff))
            }
            AckOutcome::Behind { server_acked } => {
                tracing::error!(
                    device_acked = acked,
                    server_acked,
                    "server acknowledges less than it did before: it lost events this device no longer resends"
                );
                Ok(Step::Failed(Retry::Stuck))
            }
        }
    }

    fn succeeded(&mut self) {
        if self.failing {
            tracing::info!(
                attempts = self.backoff.attempt(),
                "sync server reachable again"
            );
        }
        self.failing = false;
        self.skew_retries = 0;
        self.backoff.reset();
    }

    fn failed(&mut self, e: &RequestError, what: &'static str) -> Step {
        crate::metrics::agent().sync_failed();
        self.last_error = Some(serde_json::json!({
            "at_ms": self.client.request_time_ms(),
            "what": what,
            "code": e.code(),
            "message": e.to_string(),
        }));
        let retry = progress::after_error(e, self.skew_retries);
        match retry {
            Retry::Now => {
                self.skew_retries += 1;
                tracing::debug!(
                    what,
                    code = e.code(),
                    "clock corrected from the server; retrying"
                );
            }
            Retry::Backoff => {
                if !self.failing {
                    tracing::warn!(what, code = e.code(), error = %e, "sync request failed; retrying with backoff");
                }
            }
            Retry::Stuck => {
                tracing::error!(what, code = e.code(), error = %e, "sync refused by the server; events are kept and retried at the longest interval");
            }
        }
        self.failing = retry != Retry::Now;
        Step::Failed(retry)
    }

    fn control_is_due(&self) -> bool {
        self.opts.control.is_some()
            && !self.control_unavailable
            && Instant::now() >= self.control_due
    }

    /// Pull the desired config (applying a new one) and report status.
    async fn control_round(&mut self) -> Step {
        self.control_due = Instant::now() + self.opts.control_interval;
        let Some(link) = self.opts.control.clone() else {
            return Step::Progress;
        };
        let have = *link.applied.borrow();
        let offer = match self.gate.guard(self.client.desired_config(have)).await {
            None => return Step::Interrupted,
            Some(r) => r,
        };
        match offer {
            Ok(Some(offer)) => match control::apply(&link, &offer) {
                Ok(()) => {
                    tracing::info!(version = offer.version, "desired config applied");
                    self.config_error = None;
                }
                Err(e) => {
                    tracing::warn!(version = offer.version, error = %e, "desired config refused");
                    self.config_error = Some(fleet_protocol::control::ConfigApplyError {
                        version: offer.version,
                        message: e.to_string().chars().take(400).collect(),
                    });
                }
            },
            Ok(None) => {}
            Err(e) if e.is_transient() || e.code() == "clock_skew" => {
                return self.failed(&e, "config")
            }
            Err(e) => {
                tracing::warn!(code = e.code(), error = %e, "the server has no device control plane; not asking again");
                self.control_unavailable = true;
                return Step::Progress;
            }
        }
        let stats = match self.store.stats().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read store stats for the status report");
                return Step::Progress;
            }
        };
        let offset = self
            .client
            .knows_server_time()
            .then(|| self.client.request_time_ms() - self.clock.wall_ms());
        let report = control::status_report(
            &stats,
            *link.applied.borrow(),
            self.config_error.clone(),
            offset,
            (link.hardware)(),
        );
        let result = match self.gate.guard(self.client.post_status(&report)).await {
            None => return Step::Interrupted,
            Some(r) => r,
        };
        self.keep_anchor().await;
        match result {
            Ok(_) => {
                self.succeeded();
                Step::Progress
            }
            Err(e) if e.is_transient() || e.code() == "clock_skew" => self.failed(&e, "status"),
            Err(e) => {
                tracing::warn!(code = e.code(), error = %e, "status report refused");
                Step::Progress
            }
        }
    }

    /// Store what the last reply taught us about true time, when it improves on
    /// what the store has for this boot.
    async fn keep_anchor(&mut self) {
        let Some(candidate) = self.client.take_anchor() else {
            return;
        };
        if !anchors::worth_storing(self.best_anchor.as_ref(), &candidate) {
            return;
        }
        match self.store.put_anchor(candidate).await {
            Ok(()) => {
                tracing::debug!(boot = %candidate.boot_id, uncertainty_ms = candidate.uncertainty_ms, "time anchor from the server");
                self.best_anchor = Some(candidate);
            }
            Err(e) => tracing::warn!(error = %e, "cannot store time anchor"),
        }
    }
}

/// Writes the tenant key where the kiosk reads it (`tenant-key.json`) when it
/// is not there yet, from the key enrollment handed over.
fn keep_trust_file(data_dir: &std::path::Path, trust: &fleet_protocol::label::TenantTrust) {
    let path = data_dir.join(snapshot::TRUST_FILE);
    if path.exists() {
        return;
    }
    let tmp = data_dir.join(format!(".{}.tmp", snapshot::TRUST_FILE));
    let json = serde_json::to_vec(trust).expect("a tenant key serializes");
    let written = std::fs::write(&tmp, json)
        .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
        .and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(e) = written {
        tracing::warn!(path = %path.display(), error = %e, "cannot write the tenant key file");
    }
}
