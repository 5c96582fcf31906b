//! The agent's `/metrics` page: Prometheus text on a loopback-only listener.
//!
//! Totals that the store keeps durably (events recorded, evicted, synced) are
//! read from it at scrape time, so they survive restarts and never disagree with
//! `fleet-agent status`. What the pipeline saw (frames read, decode errors,
//! sources up or down) comes from its [`StatsHandle`]; what else only this
//! process sees (sync attempts, watchdog pets, enrollment) lives in
//! [`AgentMetrics`], one set of atomics per process that the sync loop, the
//! watchdog and first-boot enrollment bump.

use crate::clock::SharedClock;
use crate::pipeline::{PipelineStats, StatsHandle};
use crate::store::{Store, StoreStats};
use fleet_protocol::prometheus::{MetricType, Page, CONTENT_TYPE};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub const CAN_FRAMES: &str = "fleet_agent_can_frames_read_total";
pub const NMEA_SENTENCES: &str = "fleet_agent_nmea_sentences_read_total";
pub const GNSS_FIXES: &str = "fleet_agent_gnss_fixes_total";
pub const OBD_READINGS: &str = "fleet_agent_obd_readings_total";
pub const CAN_BUS_RATE: &str = "fleet_agent_can_bus_frames_per_second";
pub const SOURCE_UP: &str = "fleet_agent_source_up";
pub const DECODE_ERRORS: &str = "fleet_agent_decode_errors_total";
pub const EVENTS_RECORDED: &str = "fleet_agent_events_recorded_total";
pub const EVENTS_EVICTED: &str = "fleet_agent_events_evicted_total";
pub const EVENTS_PRUNED: &str = "fleet_agent_acked_events_pruned_total";
pub const EVENTS_SYNCED: &str = "fleet_agent_events_synced_total";
pub const SYNC_BATCHES: &str = "fleet_agent_sync_batches_total";
pub const SYNC_FAILURES: &str = "fleet_agent_sync_failures_total";
pub const QUEUE_DEPTH: &str = "fleet_agent_queue_depth";
pub const OLDEST_UNSYNCED_AGE: &str = "fleet_agent_oldest_unsynced_age_seconds";
pub const STORE_BYTES: &str = "fleet_agent_store_bytes";
pub const STORE_BUDGET: &str = "fleet_agent_store_budget_bytes";
pub const DISK_FULL: &str = "fleet_agent_disk_full";
pub const DISK_FULL_WRITES: &str = "fleet_agent_disk_full_writes_total";
pub const DISK_FREE: &str = "fleet_agent_disk_free_bytes";
pub const WATCHDOG_PETS: &str = "fleet_agent_watchdog_pets_total";
pub const WATCHDOG_LAST_PET_AGE: &str = "fleet_agent_watchdog_last_pet_age_seconds";
pub const ENROLLED: &str = "fleet_agent_enrolled";
pub const ENROLL_ATTEMPTS: &str = "fleet_agent_enrollment_attempts_total";

/// Counters only this process knows.
#[derive(Debug, Default)]
pub struct AgentMetrics {
    sync_batches: AtomicU64,
    sync_failures: AtomicU64,
    watchdog_pets: AtomicU64,
    /// [`process_ms`] of the last pet + 1 (0: never), so the struct can be static.
    last_pet_mono_ms: AtomicU64,
    enrolled: AtomicBool,
    enroll_attempts: AtomicU64,
}

static METRICS: AgentMetrics = AgentMetrics {
    sync_batches: AtomicU64::new(0),
    sync_failures: AtomicU64::new(0),
    watchdog_pets: AtomicU64::new(0),
    last_pet_mono_ms: AtomicU64::new(0),
    enrolled: AtomicBool::new(false),
    enroll_attempts: AtomicU64::new(0),
};

/// Milliseconds since this process first asked: the clock of watchdog ages.
pub fn process_ms() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    u64::try_from(
        START
            .get_or_init(std::time::Instant::now)
            .elapsed()
            .as_millis(),
    )
    .unwrap_or(u64::MAX)
}

/// This process's counters.
pub fn agent() -> &'static AgentMetrics {
    &METRICS
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub sync_batches: u64,
    pub sync_failures: u64,
    pub watchdog_pets: u64,
    pub last_pet_mono_ms: Option<u64>,
    pub enrolled: bool,
    pub enroll_attempts: u64,
}

impl AgentMetrics {
    pub fn sync_batch_acked(&self) {
        self.sync_batches.fetch_add(1, Ordering::Relaxed);
    }

    pub fn sync_failed(&self) {
        self.sync_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub fn watchdog_pet(&self) {
        self.watchdog_pets.fetch_add(1, Ordering::Relaxed);
        self.last_pet_mono_ms
            .store(process_ms().saturating_add(1), Ordering::Relaxed);
    }

    pub fn enroll_attempt(&self) {
        self.enroll_attempts.fetch_add(1, Ordering::Relaxed);
    }

    pub fn set_enrolled(&self, enrolled: bool) {
        self.enrolled.store(enrolled, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> Counters {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Counters {
            sync_batches: get(&self.sync_batches),
            sync_failures: get(&self.sync_failures),
            watchdog_pets: get(&self.watchdog_pets),
            last_pet_mono_ms: get(&self.last_pet_mono_ms).checked_sub(1),
            enrolled: self.enrolled.load(Ordering::Relaxed),
            enroll_attempts: get(&self.enroll_attempts),
        }
    }
}

/// The page for these counters and store figures, `now_wall_ms` and
/// `now_process_ms` being the clocks at scrape time. Pure.
pub fn render(
    c: &Counters,
    pipeline: &PipelineStats,
    s: &StoreStats,
    now_wall_ms: i64,
    now_process_ms: u64,
) -> String {
    use MetricType::{Counter, Gauge};
    let mut p = Page::new();
    let ps = &pipeline.processor;
    p.single(
        CAN_FRAMES,
        Counter,
        "CAN frames read by the pipeline since the agent started.",
        ps.can_frames as f64,
    );
    p.single(
        CAN_BUS_RATE,
        Gauge,
        "CAN frames in the last whole second; 0 once the bus falls silent.",
        f64::from(ps.bus_frames_per_s),
    );
    p.single(
        NMEA_SENTENCES,
        Counter,
        "NMEA sentences read since the agent started.",
        ps.nmea_lines as f64,
    );
    p.single(
        GNSS_FIXES,
        Counter,
        "GNSS fixes decoded or taken from gpsd since the agent started.",
        (ps.fixes + ps.gpsd_fixes) as f64,
    );
    p.single(
        OBD_READINGS,
        Counter,
        "OBD-II PID readings taken from the adapter since the agent started.",
        ps.obd_readings as f64,
    );
    p.family(
        DECODE_ERRORS,
        Counter,
        "Input that could not be decoded, by decoder, since the agent started.",
        [
            (&[("decoder", "nmea")][..], ps.nmea_bad as f64),
            (&[("decoder", "j1939_transport")][..], ps.tp_dropped as f64),
        ],
    );
    let sources: Vec<[(&str, &str); 1]> = pipeline
        .sources
        .iter()
        .map(|src| [("source", src.name)])
        .collect();
    p.family(
        SOURCE_UP,
        Gauge,
        "1 for each configured source that is up, 0 while it is starting, down or ended.",
        sources
            .iter()
            .zip(&pipeline.sources)
            .map(|(l, src)| (&l[..], f64::from(u8::from(src.state == "up")))),
    );
    p.single(
        EVENTS_RECORDED,
        Counter,
        "Events committed to the local store (its last seq).",
        s.last_seq as f64,
    );
    p.family(
        EVENTS_EVICTED,
        Counter,
        "Unsynced events deleted to stay within the disk budget, by priority.",
        [
            (&[("priority", "telemetry")][..], s.evicted_telemetry as f64),
            (&[("priority", "normal")][..], s.evicted_normal as f64),
            (&[("priority", "critical")][..], s.evicted_critical as f64),
        ],
    );
    p.single(
        EVENTS_PRUNED,
        Counter,
        "Acknowledged events deleted to make room (nothing lost).",
        s.pruned_acked as f64,
    );
    p.single(
        EVENTS_SYNCED,
        Counter,
        "Events the server has acknowledged (the durable ack).",
        s.acked_seq as f64,
    );
    p.single(
        SYNC_BATCHES,
        Counter,
        "Batches acknowledged since the agent started.",
        c.sync_batches as f64,
    );
    p.single(
        SYNC_FAILURES,
        Counter,
        "Failed sync requests since the agent started.",
        c.sync_failures as f64,
    );
    p.single(
        QUEUE_DEPTH,
        Gauge,
        "Events recorded but not yet acknowledged by the server.",
        s.unacked_events as f64,
    );
    let oldest_age = s
        .oldest_unacked_wall_ms
        .map_or(0.0, |t| (now_wall_ms - t).max(0) as f64 / 1000.0);
    p.single(
        OLDEST_UNSYNCED_AGE,
        Gauge,
        "Age of the oldest unsynced event by its wall clock, 0 when none.",
        oldest_age,
    );
    p.single(
        STORE_BYTES,
        Gauge,
        "Bytes the local store uses.",
        s.db_bytes as f64,
    );
    p.single(
        STORE_BUDGET,
        Gauge,
        "The store's disk budget in bytes.",
        s.disk_budget_bytes as f64,
    );
    p.single(
        DISK_FULL,
        Gauge,
        "1 from a write the full file system refused until it has room for the store's budget again, or while critical events alone fill the budget.",
        f64::from(u8::from(s.disk_full)),
    );
    p.single(
        DISK_FULL_WRITES,
        Counter,
        "Store writes the file system refused for lack of room, each followed by eviction and a retry.",
        s.disk_full_total as f64,
    );
    if let Some(free) = s.disk_free_bytes {
        p.single(
            DISK_FREE,
            Gauge,
            "Bytes left on the file system holding the store.",
            free as f64,
        );
    }
    p.single(
        WATCHDOG_PETS,
        Counter,
        "systemd watchdog pets since the agent started.",
        c.watchdog_pets as f64,
    );
    if let Some(at) = c.last_pet_mono_ms {
        p.single(
            WATCHDOG_LAST_PET_AGE,
            Gauge,
            "Seconds since the last watchdog pet.",
            now_process_ms.saturating_sub(at) as f64 / 1000.0,
        );
    }
    p.single(
        ENROLLED,
        Gauge,
        "1 once the device has an identity to sync with.",
        f64::from(u8::from(c.enrolled)),
    );
    p.single(
        ENROLL_ATTEMPTS,
        Counter,
        "First-boot enrollment attempts since the agent started.",
        c.enroll_attempts as f64,
    );
    p.finish()
}

/// Largest request head read; the page takes no body.
const MAX_REQUEST: usize = 8 << 10;
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Answer `GET /metrics` on `listener` until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    store: Store,
    clock: SharedClock,
    pipeline: StatsHandle,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let conn = tokio::select! {
            c = listener.accept() => c,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        let (stream, _) = match conn {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "metrics accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let store = store.clone();
        let clock = clock.clone();
        let pipeline = pipeline.clone();
        tokio::spawn(async move {
            let answered = answer(stream, &store, &clock, &pipeline);
            if let Err(e) = tokio::time::timeout(IO_TIMEOUT, answered).await {
                tracing::debug!(error = %e, "metrics request timed out");
            }
        });
    }
}

async fn answer(mut stream: TcpStream, store: &Store, clock: &SharedClock, pipeline: &StatsHandle) {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > MAX_REQUEST {
            let _ = respond(
                &mut stream,
                "431 Request Header Fields Too Large",
                "text/plain",
                "request too large\n",
            )
            .await;
            return;
        }
    }
    let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, ctype, body) = match (method, path) {
        ("GET", "/metrics") => match store.stats().await {
            Ok(stats) => (
                "200 OK",
                CONTENT_TYPE,
                render(
                    &agent().snapshot(),
                    &pipeline.get(),
                    &stats,
                    clock.wall_ms(),
                    clock.mono_ms(),
                ),
            ),
            Err(e) => (
                "503 Service Unavailable",
                "text/plain",
                format!("store unavailable: {e}\n"),
            ),
        },
        (_, "/metrics") => ("405 Method Not Allowed", "text/plain", "GET only\n".into()),
        _ => (
            "404 Not Found",
            "text/plain",
            "only /metrics is served here\n".into(),
        ),
    };
    let _ = respond(&mut stream, status, ctype, &body).await;
}

async fn respond(
    stream: &mut TcpStream,
    status: &str,
    ctype: &str,
    body: &str,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleet_protocol::prometheus::parse;

    fn stats() -> StoreStats {
        StoreStats {
            last_seq: 120,
            acked_seq: 100,
            unacked_events: 18,
            oldest_unacked_wall_ms: Some(1_000_000),
            evicted_events: 2,
            evicted_telemetry: 2,
            evicted_normal: 0,
            evicted_critical: 0,
            pruned_acked: 7,
            db_bytes: 4096,
            disk_budget_bytes: 8 << 20,
            disk_full: true,
            disk_full_total: 3,
            disk_free_bytes: Some(12_288),
        }
    }

    fn value(page: &str, name: &str, label: Option<(&str, &str)>) -> f64 {
        parse(page)
            .expect("page parses")
            .into_iter()
            .find(|s| s.name == name && label.is_none_or(|(k, v)| s.label(k) == Some(v)))
            .unwrap_or_else(|| panic!("{name} missing from\n{page}"))
            .value
    }

    #[test]
    fn the_page_reports_store_totals_and_the_age_of_the_oldest_unsynced_event() {
        let mut pipeline = PipelineStats::default();
        pipeline.processor.can_frames = 5000;
        pipeline.processor.nmea_bad = 3;
        pipeline.sources.push(crate::pipeline::SourceState {
            name: "can",
            state: "down",
            error: Some("can0 does not exist".into()),
            replayed: None,
            bad_lines: None,
        });
        let counters = Counters {
            sync_failures: 4,
            watchdog_pets: 9,
            last_pet_mono_ms: Some(10_000),
            enrolled: true,
            ..Counters::default()
        };
        let page = render(&counters, &pipeline, &stats(), 1_090_000, 25_000);
        assert_eq!(value(&page, EVENTS_RECORDED, None), 120.0);
        assert_eq!(value(&page, EVENTS_SYNCED, None), 100.0);
        assert_eq!(value(&page, QUEUE_DEPTH, None), 18.0);
        assert_eq!(value(&page, OLDEST_UNSYNCED_AGE, None), 90.0);
        assert_eq!(
            value(&page, EVENTS_EVICTED, Some(("priority", "telemetry"))),
            2.0
        );
        assert_eq!(value(&page, CAN_FRAMES, None), 5000.0);
        assert_eq!(value(&page, DECODE_ERRORS, Some(("decoder", "nmea"))), 3.0);
        assert_eq!(value(&page, SYNC_FAILURES, None), 4.0);
        assert_eq!(value(&page, WATCHDOG_LAST_PET_AGE, None), 15.0);
        assert_eq!(value(&page, ENROLLED, None), 1.0);
        assert_eq!(value(&page, SOURCE_UP, Some(("source", "can"))), 0.0);
        assert_eq!(value(&page, DISK_FULL, None), 1.0);
        assert_eq!(value(&page, DISK_FULL_WRITES, None), 3.0);
        assert_eq!(value(&page, DISK_FREE, None), 12_288.0);
    }

    #[test]
    fn a_watchdog_never_petted_has_no_age_and_an_empty_queue_has_age_zero() {
        let mut s = stats();
        s.oldest_unacked_wall_ms = None;
        let page = render(&Counters::default(), &PipelineStats::default(), &s, 5, 5);
        assert!(!page.contains(WATCHDOG_LAST_PET_AGE), "{page}");
        assert_eq!(value(&page, OLDEST_UNSYNCED_AGE, None), 0.0);
    }
}
