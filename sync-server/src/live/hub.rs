//! The hub: publishing, the stream log, and fan-out to the local subscribers.
//!
//! Publishing is a `try_send` onto a bounded queue. One task (the recorder)
//! drains it in groups, appends each group to the log in one transaction and,
//! when this process is the only writer (SQLite), hands the appended rows to the
//! subscribers. On a shared database (PostgreSQL) a second task follows the
//! log's notices instead and fans out what any replica appended, reading it back
//! by id from a per-tenant cursor, so nothing is delivered twice or skipped.
//!
//! A subscriber has a filter and a bounded queue. The hub applies the filter
//! before queueing, so a client's queue holds only what it will be sent (a
//! dispatcher watching ten vehicles is not woken for the other ten thousand);
//! every client is handed the same rendered frame. A full queue means the
//! client is not keeping up, and the hub drops it (and says so) instead of
//! waiting.

use super::messages::Filter;
use super::{LiveEvent, LiveKind, StreamSettings};
use crate::storage::stream::{NewStreamEvent, StreamNotice, StreamRow, StreamStore};
use crate::storage::{now_ms, Storage};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, Notify};
use uuid::Uuid;

/// Events logged in one transaction at most.
const APPEND_GROUP: usize = 512;
/// Events read back from the log per query.
const READ_PAGE: u32 = 500;

/// An event as subscribers get it: logged, with its id, and rendered once as the
/// server message every client of the tenant is sent.
#[derive(Debug)]
pub struct Delivered {
    pub id: u64,
    pub kind: String,
    /// `kind` parsed once, for the subscribers' filters.
    pub live_kind: Option<LiveKind>,
    pub vehicle: Option<Uuid>,
    /// `{"type":"event",…}`, shared by every client that gets it.
    pub text: axum::extract::ws::Utf8Bytes,
}

impl Delivered {
    pub fn from_row(row: &StreamRow) -> Self {
        Delivered {
            id: row.id,
            kind: row.kind.clone(),
            live_kind: LiveKind::parse(&row.kind),
            vehicle: row.vehicle,
            text: super::messages::event_text(row).into(),
        }
    }
}

/// Counters since start.
#[derive(Debug, Default)]
pub struct HubStats {
    pub published: AtomicU64,
    /// Published events dropped because the log queue was full.
    pub publish_dropped: AtomicU64,
    /// Events that could not be logged (the storage failed).
    pub log_failed: AtomicU64,
    pub delivered: AtomicU64,
    /// Events a subscriber's filter left out before they were queued.
    pub filtered: AtomicU64,
    /// Clients dropped for not keeping up.
    pub slow_clients: AtomicU64,
}

struct Pending {
    event: NewStreamEvent,
}

struct Slot {
    id: u64,
    filter: Filter,
    tx: mpsc::Sender<Arc<Delivered>>,
    kicked: Arc<Kick>,
}

/// Set once when the hub drops a subscriber for being slow.
#[derive(Default)]
pub struct Kick {
    flag: AtomicBool,
    notify: Notify,
}

impl Kick {
    fn fire(&self) {
        self.flag.store(true, Ordering::SeqCst);
        self.notify.notify_one();
    }

    pub fn fired(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// Resolves once the subscriber has been dropped for being slow.
    pub async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            if self.fired() {
                return;
            }
            notified.await;
        }
    }
}

struct Inner {
    storage: Arc<dyn Storage>,
    settings: StreamSettings,
    queue: mpsc::Sender<Pending>,
    queue_rx: Mutex<Option<mpsc::Receiver<Pending>>>,
    started: AtomicBool,
    subscribers: Mutex<HashMap<Uuid, Vec<Slot>>>,
    /// Per tenant, the last id handed to local subscribers (shared database only).
    cursors: tokio::sync::Mutex<HashMap<Uuid, u64>>,
    shared: AtomicBool,
    next_slot: AtomicU64,
    stats: HubStats,
}

/// Cheap to clone; every clone is the same hub.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

/// One client's feed. Dropping it unsubscribes.
pub struct Subscription {
    pub events: mpsc::Receiver<Arc<Delivered>>,
    pub kicked: Arc<Kick>,
    tenant: Uuid,
    slot: u64,
    hub: Hub,
}

impl Subscription {
    /// Replaces the filter; events logged from now on are queued only if it
    /// takes them.
    pub fn set_filter(&self, filter: Filter) {
        let mut subs = self.hub.lock_subscribers();
        if let Some(slot) = subs
            .get_mut(&self.tenant)
            .and_then(|slots| slots.iter_mut().find(|s| s.id == self.slot))
        {
            slot.filter = filter;
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut subs = self.hub.lock_subscribers();
        if let Some(slots) = subs.get_mut(&self.tenant) {
            slots.retain(|s| s.id != self.slot);
            if slots.is_empty() {
                subs.remove(&self.tenant);
            }
        }
    }
}

impl Hub {
    pub fn new(storage: Arc<dyn Storage>, settings: StreamSettings) -> Self {
        let (tx, rx) = mpsc::channel(settings.publish_queue.max(1));
        Hub {
            inner: Arc::new(Inner {
                storage,
                settings,
                queue: tx,
                queue_rx: Mutex::new(Some(rx)),
                started: AtomicBool::new(false),
                subscribers: Mutex::new(HashMap::new()),
                cursors: tokio::sync::Mutex::new(HashMap::new()),
                shared: AtomicBool::new(false),
                next_slot: AtomicU64::new(1),
                stats: HubStats::default(),
            }),
        }
    }

    pub fn settings(&self) -> &StreamSettings {
        &self.inner.settings
    }

    pub fn stats(&self) -> &HubStats {
        &self.inner.stats
    }

    fn store(&self) -> Option<&dyn StreamStore> {
        self.inner.storage.stream_store()
    }

    fn lock_subscribers(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Vec<Slot>>> {
        self.inner
            .subscribers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Tells the tenant's live clients about `event`. Never waits: when the log
    /// cannot keep up the event is dropped from the stream (and counted); the
    /// data it describes is stored regardless.
    pub fn publish(&self, tenant: Uuid, event: LiveEvent) {
        self.publish_at(tenant, event, now_ms(), None);
    }

    /// [`Hub::publish`] with the time the event happened and, for events from
    /// ingest, its source (`<device>:<seq>`), which the log announces once only.
    pub fn publish_at(&self, tenant: Uuid, event: LiveEvent, at_ms: i64, source: Option<String>) {
        self.start();
        let pending = Pending {
            event: NewStreamEvent {
                tenant,
                kind: event.kind.as_str().to_owned(),
                vehicle: event.vehicle,
                data: event.data,
                at_ms,
                source,
            },
        };
        match self.inner.queue.try_send(pending) {
            Ok(()) => {
                self.inner.stats.published.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                let n = self
                    .inner
                    .stats
                    .publish_dropped
                    .fetch_add(1, Ordering::Relaxed);
                if n.is_power_of_two() {
                    tracing::warn!(tenant = %tenant, dropped = n + 1, "live stream queue is full; events are left off the stream");
                }
            }
        }
    }

    /// Registers a subscriber for `tenant`. Events appended from now on that
    /// `filter` takes reach its queue in id order; the caller replays older ones
    /// from the log.
    pub async fn subscribe(&self, tenant: Uuid, filter: Filter) -> Subscription {
        self.start();
        let (tx, rx) = mpsc::channel(self.inner.settings.client_queue.max(1));
        let kicked = Arc::new(Kick::default());
        let slot = self.inner.next_slot.fetch_add(1, Ordering::Relaxed);
        self.lock_subscribers()
            .entry(tenant)
            .or_default()
            .push(Slot {
                id: slot,
                filter,
                tx,
                kicked: kicked.clone(),
            });
        if self.inner.shared.load(Ordering::SeqCst) {
            // Follow the tenant's log from its head: anything appended after this
            // point is fanned out to the new subscriber.
            let mut cursors = self.inner.cursors.lock().await;
            if let (std::collections::hash_map::Entry::Vacant(slot), Some(store)) =
                (cursors.entry(tenant), self.store())
            {
                match store.stream_bounds(tenant).await {
                    Ok(b) => {
                        slot.insert(b.head);
                    }
                    Err(e) => {
                        tracing::warn!(tenant = %tenant, "live stream: reading the log head failed: {e}")
                    }
                }
            }
        }
        Subscription {
            events: rx,
            kicked,
            tenant,
            slot,
            hub: self.clone(),
        }
    }

    /// How many clients are subscribed, over all tenants.
    pub fn subscriber_count(&self) -> usize {
        self.lock_subscribers().values().map(Vec::len).sum()
    }

    /// Hands `rows` (one tenant's, ascending ids) to that tenant's subscribers
    /// whose filters take them.
    fn deliver(&self, tenant: Uuid, rows: &[StreamRow]) {
        if rows.is_empty() {
            return;
        }
        let mut subs = self.lock_subscribers();
        let Some(slots) = subs.get_mut(&tenant) else {
            return;
        };
        let rendered: Vec<Arc<Delivered>> = rows
            .iter()
            .map(|r| Arc::new(Delivered::from_row(r)))
            .collect();
        let stats = &self.inner.stats;
        let mut filtered = 0u64;
        slots.retain(|slot| {
            for d in &rendered {
                if !slot.filter.matches_live(d.live_kind, d.vehicle) {
                    filtered += 1;
                    continue;
                }
                match slot.tx.try_send(d.clone()) {
                    Ok(()) => {
                        stats.delivered.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        stats.slow_clients.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(tenant = %tenant, "live stream client is too slow; dropping it");
                        slot.kicked.fire();
                        return false;
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return false,
                }
            }
            true
        });
        stats.filtered.fetch_add(filtered, Ordering::Relaxed);
        if slots.is_empty() {
            subs.remove(&tenant);
        }
    }

    fn has_subscribers(&self, tenant: Uuid) -> bool {
        self.lock_subscribers().contains_key(&tenant)
    }

    /// Starts the background tasks on first use inside a runtime.
    fn start(&self) {
        if self.inner.started.load(Ordering::Acquire) {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self
            .inner
            .started
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        let Some(queue) = self
            .inner
            .queue_rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        else {
            return;
        };
        let notices = self.store().and_then(|s| s.stream_notices());
        self.inner.shared.store(notices.is_some(), Ordering::SeqCst);
        // The tasks hold a weak reference: they end once every hub clone is gone.
        let weak = Arc::downgrade(&self.inner);
        rt.spawn(record(weak.clone(), queue));
        if let Some(notices) = notices {
            rt.spawn(follow(weak, notices));
        }
    }

    fn upgrade(weak: &std::sync::Weak<Inner>) -> Option<Hub> {
        weak.upgrade().map(|inner| Hub { inner })
    }

    /// Reads the tenant's log after its cursor and fans it out (shared database).
    async fn catch_up(&self, tenant: Uuid, hint_first_id: Option<u64>) {
        let Some(store) = self.store() else { return };
        let mut cursors = self.inner.cursors.lock().await;
        let cursor = match (cursors.get(&tenant), hint_first_id) {
            (Some(c), _) => *c,
            (None, Some(first)) if self.has_subscribers(tenant) => first.saturating_sub(1),
            _ => return,
        };
        let mut after = cursor;
        loop {
            match store.stream_events_after(tenant, after, READ_PAGE).await {
                Ok(rows) => {
                    let Some(last) = rows.last() else { break };
                    after = last.id;
                    let full = rows.len() as u32 == READ_PAGE;
                    self.deliver(tenant, &rows);
                    if !full {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(tenant = %tenant, "live stream: reading the log failed, will retry: {e}");
                    break;
                }
            }
        }
        if self.has_subscribers(tenant) {
            cursors.insert(tenant, after);
        } else {
            cursors.remove(&tenant);
        }
    }
}

/// The recorder: logs published events in groups and, when this process is the
/// only writer, fans them out.
async fn record(weak: std::sync::Weak<Inner>, mut queue: mpsc::Receiver<Pending>) {
    let mut last_prune = tokio::time::Instant::now();
    while let Some(first) = queue.recv().await {
        let Some(hub) = Hub::upgrade(&weak) else {
            return;
        };
        let mut group = vec![first.event];
        while group.len() < APPEND_GROUP {
            match queue.try_recv() {
                Ok(p) => group.push(p.event),
                Err(_) => break,
            }
        }
        let Some(store) = hub.store() else {
            hub.inner
                .stats
                .log_failed
                .fetch_add(group.len() as u64, Ordering::Relaxed);
            continue;
        };
        let n = group.len() as u64;
        match store.append_stream_events(group, now_ms()).await {
            Ok(rows) if !hub.inner.shared.load(Ordering::SeqCst) => {
                for (tenant, rows) in by_tenant(rows) {
                    hub.deliver(tenant, &rows);
                }
            }
            Ok(_) => {}
            Err(e) => {
                hub.inner.stats.log_failed.fetch_add(n, Ordering::Relaxed);
                tracing::warn!(
                    events = n,
                    "live stream: logging events failed; they are left off the stream: {e}"
                );
            }
        }
        let settings = &hub.inner.settings;
        if last_prune.elapsed() >= settings.prune_every {
            last_prune = tokio::time::Instant::now();
            let before =
                now_ms() - i64::try_from(settings.retention.as_millis()).unwrap_or(i64::MAX);
            match store
                .prune_stream_events(before, settings.retention_count)
                .await
            {
                Ok(n) => tracing::debug!(pruned = n, "pruned the live stream log"),
                Err(e) => tracing::warn!("live stream: pruning the log failed: {e}"),
            }
        }
    }
}

/// Groups rows by tenant, keeping their order.
fn by_tenant(rows: Vec<StreamRow>) -> Vec<(Uuid, Vec<StreamRow>)> {
    let mut out: Vec<(Uuid, Vec<StreamRow>)> = Vec::new();
    for r in rows {
        match out.iter_mut().find(|(t, _)| *t == r.tenant) {
            Some((_, v)) => v.push(r),
            None => out.push((r.tenant, vec![r])),
        }
    }
    out
}

/// Follows the shared log's notices (and, as a safety net, polls it) and fans
/// out what any replica appended.
///
/// Every append sends a notice, but one read of a tenant's log after its cursor
/// covers all of them: the notices already waiting are folded into one read per
/// tenant, so under heavy ingest the stream does not fall behind by spending a
/// pooled connection on each notice.
async fn follow(weak: std::sync::Weak<Inner>, mut notices: mpsc::Receiver<StreamNotice>) {
    let every = match Hub::upgrade(&weak) {
        Some(h) => h.inner.settings.catch_up_every,
        None => return,
    };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let first = tokio::select! {
            n = notices.recv() => match n {
                Some(n) => Some(n),
                None => return,
            },
            _ = tick.tick() => None,
        };
        let Some(hub) = Hub::upgrade(&weak) else {
            return;
        };
        let mut work = NoticeWork::default();
        work.add(first);
        while let Ok(n) = notices.try_recv() {
            work.add(Some(n));
        }
        if work.everyone {
            let tenants: Vec<Uuid> = hub.inner.cursors.lock().await.keys().copied().collect();
            for t in tenants {
                work.tenants.entry(t).or_insert(None);
            }
        }
        for (tenant, first_id) in work.tenants {
            hub.catch_up(tenant, first_id).await;
        }
    }
}

/// The notices waiting at one moment, folded: each tenant once, with the
/// smallest first id among its appends.
#[derive(Default)]
struct NoticeWork {
    tenants: std::collections::BTreeMap<Uuid, Option<u64>>,
    /// A reconnect or a poll: every followed tenant is read.
    everyone: bool,
}

impl NoticeWork {
    fn add(&mut self, notice: Option<StreamNotice>) {
        match notice {
            Some(StreamNotice::Appended { tenant, first_id }) => {
                let hint = self.tenants.entry(tenant).or_insert(Some(first_id));
                *hint = Some(hint.map_or(first_id, |h| h.min(first_id)));
            }
            Some(StreamNotice::Reconnected) | None => self.everyone = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::LiveKind;
    use serde_json::json;
    use std::time::Duration;

    async fn hub(settings: StreamSettings) -> (Hub, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let storage =
            crate::storage::sqlite::SqliteStorage::open(&dir.path().join("fleet.db")).unwrap();
        (Hub::new(Arc::new(storage), settings), dir)
    }

    fn position(vehicle: Uuid, n: u32) -> LiveEvent {
        LiveEvent {
            kind: LiveKind::Position,
            vehicle: Some(vehicle),
            data: json!({ "n": n }),
        }
    }

    async fn next(sub: &mut Subscription) -> Arc<Delivered> {
        tokio::time::timeout(Duration::from_secs(5), sub.events.recv())
            .await
            .expect("an event arrives")
            .expect("the subscription is open")
    }

    #[test]
    fn waiting_notices_fold_into_one_read_per_tenant_from_the_smallest_first_id() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let mut work = NoticeWork::default();
        for (tenant, first_id) in [(a, 7), (b, 3), (a, 5), (a, 9)] {
            work.add(Some(StreamNotice::Appended { tenant, first_id }));
        }
        assert!(!work.everyone);
        assert_eq!(work.tenants.len(), 2);
        assert_eq!(work.tenants[&a], Some(5));
        assert_eq!(work.tenants[&b], Some(3));
        work.add(Some(StreamNotice::Reconnected));
        assert!(work.everyone, "a reconnect reads every followed tenant");
        let mut polled = NoticeWork::default();
        polled.add(None);
        assert!(polled.everyone, "a poll reads every followed tenant");
    }

    #[tokio::test]
    async fn subscribers_of_a_tenant_get_its_events_in_id_order_and_no_one_elses() {
        let (hub, _dir) = hub(StreamSettings::default()).await;
        let (a, b, v) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let mut sub_a = hub.subscribe(a, Filter::default()).await;
        let mut sub_b = hub.subscribe(b, Filter::default()).await;
        for n in 1..=5 {
            hub.publish(a, position(v, n));
        }
        hub.publish(b, position(v, 99));
        let mut got = Vec::new();
        for _ in 0..5 {
            let d = next(&mut sub_a).await;
            assert_eq!(d.kind, "position");
            assert_eq!(d.vehicle, Some(v));
            got.push(d.id);
        }
        assert_eq!(got, vec![1, 2, 3, 4, 5]);
        let other = next(&mut sub_b).await;
        assert_eq!(other.id, 1);
        assert!(other.text.as_str().contains("\"n\":99"));
        assert!(sub_a.events.try_recv().is_err(), "nothing of tenant b");
    }

    #[tokio::test]
    async fn a_subscriber_that_does_not_keep_up_is_dropped_and_publishing_never_waits() {
        let settings = StreamSettings {
            client_queue: 64,
            ..StreamSettings::default()
        };
        let (hub, _dir) = hub(settings).await;
        let (t, v) = (Uuid::new_v4(), Uuid::new_v4());
        let slow = hub.subscribe(t, Filter::default()).await;
        let mut fast = hub.subscribe(t, Filter::default()).await;
        // Two rounds of 40: the one that reads keeps up, the one that does not
        // has 80 waiting for a queue of 64.
        for round in 0..2 {
            let started = std::time::Instant::now();
            for n in 1..=40 {
                hub.publish(t, position(v, round * 40 + n));
            }
            assert!(
                started.elapsed() < Duration::from_millis(250),
                "publishing waited {:?}",
                started.elapsed()
            );
            for _ in 0..40 {
                next(&mut fast).await;
            }
        }
        tokio::time::timeout(Duration::from_secs(5), slow.kicked.wait())
            .await
            .expect("the slow subscriber is dropped");
        assert!(slow.kicked.fired());
        assert_eq!(hub.stats().slow_clients.load(Ordering::Relaxed), 1);
        assert_eq!(hub.subscriber_count(), 1, "only the one that kept up");
    }

    #[tokio::test]
    async fn a_filtered_subscriber_is_queued_only_its_vehicles_and_outlasts_a_flood_of_others() {
        let settings = StreamSettings {
            client_queue: 8,
            ..StreamSettings::default()
        };
        let (hub, _dir) = hub(settings).await;
        let (t, mine, other) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let only_mine = Filter {
            vehicles: [mine].into_iter().collect(),
            kinds: [LiveKind::Position].into_iter().collect(),
        };
        // It reads nothing while 2,000 events of another vehicle go by: with
        // filtering after queueing its queue of 8 would overflow at once.
        let mut sub = hub.subscribe(t, only_mine).await;
        for n in 0..2_000 {
            hub.publish(t, position(other, n));
        }
        hub.publish(t, position(mine, 7));
        let d = next(&mut sub).await;
        assert_eq!(d.vehicle, Some(mine));
        assert!(d.text.as_str().contains("\"n\":7"));
        assert!(!sub.kicked.fired(), "not dropped for others' events");
        assert!(sub.events.try_recv().is_err(), "nothing else was queued");
        assert_eq!(hub.stats().filtered.load(Ordering::Relaxed), 2_000);

        // A new filter takes effect for what is logged next.
        sub.set_filter(Filter {
            vehicles: [other].into_iter().collect(),
            kinds: Default::default(),
        });
        hub.publish(t, position(mine, 8));
        hub.publish(t, position(other, 9));
        let d = next(&mut sub).await;
        assert_eq!(d.vehicle, Some(other));
        assert!(d.text.as_str().contains("\"n\":9"));
    }
}
