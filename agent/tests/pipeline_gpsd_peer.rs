//! The pipeline's gpsd source against a real gpsd: `gpsfake` (gpsd-clients)
//! starts gpsd on a loopback port and feeds it a u-blox receiver's log through a
//! pseudo-terminal; the agent's positions are that receiver's.
//!
//! Skipped, with a message, when gpsfake or gpsd is missing, except under
//! `CI=true`; `tests/run` installs both.

use fleet_agent::pipeline::{GnssConfig, SourcesConfig};
use fleet_protocol::EventData;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod pipeline_run;

const LIMIT: Duration = Duration::from_secs(30);
const UBLOX_LOG: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/fixtures/nmea/ublox-lea-5h.log"
);

/// gpsfake and the gpsd it started, in their own process group, stopped together.
struct GpsFake(Child);

impl Drop for GpsFake {
    fn drop(&mut self) {
        let group = format!("-{}", self.0.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let t0 = Instant::now();
        while matches!(self.0.try_wait(), Ok(None)) && t0.elapsed() < Duration::from_secs(2) {
            std::thread::sleep(Duration::from_millis(20));
        }
        // gpsfake may sit out SIGTERM; nothing of the group outlives the test.
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.0.wait();
    }
}

fn present(tool: &str) -> bool {
    ["/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin"]
        .iter()
        .any(|d| std::path::Path::new(d).join(tool).exists())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixes_from_a_real_gpsd_fed_a_ublox_log_are_that_receivers_positions() {
    if !(present("gpsfake") && present("gpsd")) {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but gpsfake/gpsd are missing (apt-get install gpsd gpsd-clients)"
        );
        eprintln!("SKIPPED gpsd peer test: gpsfake and gpsd not found (apt-get install gpsd gpsd-clients)");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let _gpsd = GpsFake(
        Command::new("gpsfake")
            .args(["-1", "-q", "-c", "0.02", "-P", &port.to_string(), UBLOX_LOG])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start gpsfake"),
    );

    let sources = SourcesConfig {
        gnss: Some(GnssConfig {
            serial: None,
            baud: 9_600,
            gpsd: Some(format!("127.0.0.1:{port}")),
        }),
        ..SourcesConfig::default()
    };
    let (_, events) =
        pipeline_run::run_until(dir.path(), sources, LIMIT, Duration::from_secs(5), |s| {
            s.processor.gpsd_fixes >= 10
        })
        .await;
    let positions: Vec<_> = events
        .into_iter()
        .filter_map(|e| match e.data {
            EventData::Position(p) => Some(p),
            _ => None,
        })
        .collect();
    assert!(!positions.is_empty());
    // The receiver stood in Rotterdam (the fixture's first RMC: 51.925907 N,
    // 4.5776455 E) with a few metres of noise.
    for p in &positions {
        assert!(
            (p.lat() - 51.925907).abs() < 0.0005 && (p.lon() - 4.5776455).abs() < 0.0005,
            "{p:?}"
        );
        assert!(p.fix >= 1, "{p:?}");
    }
}
