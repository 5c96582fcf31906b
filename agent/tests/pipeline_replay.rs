//! Recorded drives replayed through the real pipeline into a real store: a
//! candump log of an idling truck, an NMEA log, and both at once; GPS time
//! anchors a boot whose clock reads 1970.

mod pipeline_run;

use fleet_agent::pipeline::{self, gps_time, ReplayConfig, SourcesConfig};
use fleet_agent::store::Store;
use fleet_protocol::{Event, EventData, TimeSource};
use pipeline_run::now_ms;
use std::path::{Path, PathBuf};
use std::time::Duration;

const TRUCK_LOG: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/fixtures/j1939/canedge-j1939-truck-idle-10s.log"
);

/// Every test's pipeline must end on its own well within this.
const LIMIT: Duration = Duration::from_secs(30);

struct Run {
    events: Vec<Event>,
    store: Store,
    stats: pipeline::PipelineStats,
    _dir: tempfile::TempDir,
}

async fn replay(sources: SourcesConfig, wall_start_ms: i64) -> Run {
    let dir = tempfile::tempdir().expect("tempdir");
    let (events, store, stats) = pipeline_run::start(dir.path(), sources, wall_start_ms, 3)
        .finish_within(LIMIT)
        .await;
    Run {
        events,
        store,
        stats,
        _dir: dir,
    }
}

fn replays(can: Option<&Path>, nmea: Option<&Path>, speed: f64) -> SourcesConfig {
    SourcesConfig {
        candump: can.map(|f| ReplayConfig {
            file: f.to_owned(),
            speed,
        }),
        nmea_file: nmea.map(|f| ReplayConfig {
            file: f.to_owned(),
            speed,
        }),
        exit_at_end: true,
        ..SourcesConfig::default()
    }
}

fn of<'a>(events: &'a [Event], kind: &str) -> Vec<&'a Event> {
    events.iter().filter(|e| e.kind.as_str() == kind).collect()
}

fn json(e: &Event) -> &serde_json::Value {
    match &e.data {
        EventData::Json(v) => v,
        other => panic!("{} without JSON: {other:?}", e.kind.as_str()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idling_truck_log_gives_its_four_dm1_codes_and_engine_on_unpaced() {
    let r = replay(replays(Some(Path::new(TRUCK_LOG)), None, 0.0), now_ms()).await;
    let mut codes: Vec<(u64, u64)> = of(&r.events, "dtc_set")
        .iter()
        .map(|e| {
            let j = json(e);
            (
                j["spn"].as_u64().expect("spn"),
                j["fmi"].as_u64().expect("fmi"),
            )
        })
        .collect();
    codes.sort_unstable();
    assert_eq!(codes, vec![(609, 9), (609, 12), (980, 9), (3216, 20)]);
    assert_eq!(
        of(&r.events, "ignition_on").len(),
        1,
        "engine running at idle"
    );
    assert_eq!(r.stats.processor.can_frames, 3_582);
    let src = &r.stats.sources[0];
    assert_eq!((src.name, src.state), ("candump", "closed"));
    assert_eq!((src.replayed, src.bad_lines), (Some(3_582), Some(0)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_candump_lines_are_counted_and_the_rest_replays() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("bad.log");
    let good = std::fs::read_to_string(TRUCK_LOG).expect("fixture");
    let mut text = String::new();
    for (i, l) in good.lines().enumerate() {
        text.push_str(l);
        text.push('\n');
        if i % 1000 == 0 {
            text.push_str("(1635188455.0208) can0 18F00E00#82\n# a comment\n\nnot a frame\n");
        }
    }
    std::fs::write(&log, text).expect("write");
    let r = replay(replays(Some(&log), None, 0.0), now_ms()).await;
    assert_eq!(r.stats.processor.can_frames, 3_582);
    assert_eq!(r.stats.sources[0].bad_lines, Some(8), "two per insertion");
    assert_eq!(of(&r.events, "dtc_set").len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_replay_file_is_reported_and_the_pipeline_ends_cleanly() {
    let r = replay(
        replays(Some(Path::new("/nonexistent/drive.log")), None, 1.0),
        now_ms(),
    )
    .await;
    let src = &r.stats.sources[0];
    assert_eq!(src.state, "closed");
    assert!(
        src.error
            .as_deref()
            .is_some_and(|e| e.contains("No such file")),
        "{src:?}"
    );
    assert_eq!(r.stats.processor.can_frames, 0);
}

/// `$GPRMC`/`$GPGGA` pairs once a second from `start_ms`, driving north at
/// 10 m/s from Rotterdam, with a garbled sentence every tenth second.
fn nmea_drive(start_ms: i64, seconds: i64) -> String {
    fn sentence(body: &str) -> String {
        let sum = body.bytes().fold(0u8, |a, b| a ^ b);
        format!("${body}*{sum:02X}\r\n")
    }
    let mut out = String::new();
    for s in 0..seconds {
        let t = time::OffsetDateTime::from_unix_timestamp_nanos(
            i128::from(start_ms + s * 1000) * 1_000_000,
        )
        .expect("time");
        let hms = format!("{:02}{:02}{:02}.00", t.hour(), t.minute(), t.second());
        let date = format!(
            "{:02}{:02}{:02}",
            t.day(),
            u8::from(t.month()),
            t.year() % 100
        );
        let lat_min = 55.0 + s as f64 * 10.0 / 1852.0;
        let lat = format!("51{lat_min:08.5}");
        out.push_str(&sentence(&format!(
            "GPRMC,{hms},A,{lat},N,00428.7520,E,19.438,0.0,{date},,,A"
        )));
        out.push_str(&sentence(&format!(
            "GPGGA,{hms},{lat},N,00428.7520,E,1,09,0.9,5.0,M,47.0,M,,"
        )));
        if s % 10 == 5 {
            out.push_str("$GPRMC,garbled*00\r\n");
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_boot_with_a_1970_clock_is_marked_then_anchored_to_gps_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nmea = dir.path().join("drive.nmea");
    let gps_start = gps_time::BUILD_UNIX_MS + 86_400_000;
    std::fs::write(&nmea, nmea_drive(gps_start, 120)).expect("write");
    // A board without an RTC: its wall clock starts at the epoch.
    let r = replay(replays(None, Some(&nmea), 0.0), 0).await;

    let marks = of(&r.events, "clock_implausible");
    assert_eq!(marks.len(), 1, "marked once");
    assert_eq!(json(marks[0])["reason"], "before_build");

    let anchors = r.store.anchors().await.expect("anchors");
    let gps: Vec<_> = anchors
        .iter()
        .filter(|a| a.source == TimeSource::Gps)
        .collect();
    assert_eq!(gps.len(), 1, "{anchors:?}");
    let first_fix_mono = gps[0].mono_ms;
    assert_eq!(gps[0].rebase(first_fix_mono), gps_start);

    let positions = of(&r.events, "position");
    assert!(!positions.is_empty());
    for p in &positions {
        // Rebased on the anchor, every position falls within the drive.
        let t = gps[0].rebase(p.time.mono_ms);
        assert!(
            (gps_start..=gps_start + 121_000).contains(&t),
            "position at {t}, drive from {gps_start}"
        );
    }
    assert_eq!(r.stats.processor.nmea_bad, 12, "{:?}", r.stats.processor);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gps_time_from_a_receiver_before_the_build_date_never_anchors() {
    let ublox: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "../../shared/fixtures/nmea/ublox-lea-5h.log",
    ]
    .iter()
    .collect();
    let r = replay(replays(None, Some(&ublox), 0.0), now_ms()).await;
    assert!(r.stats.processor.fixes > 0);
    assert!(r.store.anchors().await.expect("anchors").is_empty());
    assert!(of(&r.events, "clock_implausible").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn can_and_nmea_replays_run_together_and_the_run_ends_with_the_last() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nmea = dir.path().join("drive.nmea");
    std::fs::write(&nmea, nmea_drive(now_ms(), 30)).expect("write");
    let r = replay(
        replays(Some(Path::new(TRUCK_LOG)), Some(&nmea), 0.0),
        now_ms(),
    )
    .await;
    assert_eq!(r.stats.processor.can_frames, 3_582);
    assert!(r.stats.processor.fixes >= 29, "{:?}", r.stats.processor);
    assert!(r.stats.sources.iter().all(|s| s.state == "closed"));
    assert!(!of(&r.events, "position").is_empty());
    assert_eq!(of(&r.events, "dtc_set").len(), 4);
}
