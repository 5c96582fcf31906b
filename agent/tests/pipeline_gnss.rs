//! Live GNSS sources through the real pipeline: a fake gpsd on loopback that
//! splits lines, babbles and restarts, and a receiver on a pseudo-terminal that
//! sends garbled sentences and then disappears.

mod pipeline_run;

use fleet_agent::pipeline::{GnssConfig, PipelineStats, SourcesConfig};
use fleet_agent::store::Store;
use fleet_protocol::{Event, TimeSource};
use pipeline_run::now_ms;
use std::io::Write;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

const LIMIT: Duration = Duration::from_secs(20);

fn rfc3339(ms: i64) -> String {
    let t =
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).expect("time");
    t.format(&time::format_description::well_known::Rfc3339)
        .expect("format")
}

/// A pipeline on its own store; the folder lives as long as it does.
struct Agent {
    running: pipeline_run::Running,
    _dir: tempfile::TempDir,
}

fn start(sources: SourcesConfig) -> Agent {
    let dir = tempfile::tempdir().expect("tempdir");
    let running = pipeline_run::start(dir.path(), sources, now_ms(), 1);
    Agent { running, _dir: dir }
}

impl Agent {
    async fn wait_for(&self, what: &str, f: impl Fn(&PipelineStats) -> bool) {
        let t0 = std::time::Instant::now();
        while !f(&self.running.stats.get()) {
            assert!(
                t0.elapsed() < LIMIT,
                "{what}: {:?}",
                self.running.stats.get()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop(self) -> (Vec<Event>, Store, PipelineStats) {
        self.running.stop_within(Duration::from_secs(5)).await
    }
}

fn tpv(ms: i64, north_m: f64) -> String {
    format!(
        r#"{{"class":"TPV","device":"/dev/ttyACM0","mode":3,"time":"{}","lat":{},"lon":4.4792,"altMSL":3.5,"speed":10.0,"track":0.0}}"#,
        rfc3339(ms),
        51.9225 + north_m / 111_320.0
    ) + "\n"
}

/// gpsd as it misbehaves: the first session splits a report across writes,
/// sends garbage and a no-fix report, then drops the client (a restart); the
/// second session is well behaved.
async fn fake_gpsd(listener: TcpListener, first_fix: tokio::sync::oneshot::Sender<i64>) -> usize {
    let mut first_fix = Some(first_fix);
    let mut sessions = 0;
    loop {
        let Ok((sock, _)) = listener.accept().await else {
            return sessions;
        };
        sessions += 1;
        let (rd, mut wr) = sock.into_split();
        wr.write_all(
            b"{\"class\":\"VERSION\",\"release\":\"3.25\",\"proto_major\":3,\"proto_minor\":15}\n",
        )
        .await
        .expect("banner");
        let mut watch = String::new();
        BufReader::new(rd)
            .read_line(&mut watch)
            .await
            .expect("watch");
        assert_eq!(watch.trim(), r#"?WATCH={"enable":true,"json":true}"#);
        if sessions == 1 {
            let t0 = now_ms();
            if let Some(tx) = first_fix.take() {
                let _ = tx.send(t0);
            }
            let first = tpv(t0, 0.0);
            let (a, b) = first.split_at(40);
            wr.write_all(a.as_bytes()).await.expect("half");
            tokio::time::sleep(Duration::from_millis(100)).await;
            wr.write_all(b.as_bytes()).await.expect("rest");
            wr.write_all(b"not json at all\n\x00\xff\xfe{\"class\":\n")
                .await
                .expect("junk");
            wr.write_all(br#"{"class":"TPV","mode":1}"#)
                .await
                .expect("no fix");
            wr.write_all(b"\n").await.expect("nl");
            // gpsd restarts: the connection drops mid-line.
            wr.write_all(b"{\"class\":\"TPV\",\"mo").await.expect("cut");
            drop(wr);
            continue;
        }
        wr.write_all(b"{\"class\":\"SKY\",\"hdop\":0.8,\"uSat\":9}\n")
            .await
            .expect("sky");
        for i in 1..=3 {
            wr.write_all(tpv(now_ms(), f64::from(i) * 10.0).as_bytes())
                .await
                .expect("tpv");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Stay connected, as gpsd does, until the test ends.
        tokio::time::sleep(LIMIT).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpsd_reports_survive_split_lines_garbage_and_a_restart() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let (first_tx, first_rx) = tokio::sync::oneshot::channel();
    let peer = tokio::spawn(fake_gpsd(listener, first_tx));
    let agent = start(SourcesConfig {
        gnss: Some(GnssConfig {
            serial: None,
            baud: 9_600,
            gpsd: Some(addr),
        }),
        ..SourcesConfig::default()
    });
    agent
        .wait_for("four fixes over two sessions", |s| {
            s.processor.gpsd_fixes >= 4
        })
        .await;
    let (events, store, stats) = agent.stop().await;
    peer.abort();
    let t0 = first_rx.await.expect("a first fix was sent");
    assert_eq!(stats.processor.gpsd_fixes, 4);
    assert_eq!(stats.sources[0].state, "up", "{stats:?}");
    let positions: Vec<_> = events
        .iter()
        .filter(|e| e.kind.as_str() == "position")
        .collect();
    assert!(!positions.is_empty());
    let anchors = store.anchors().await.expect("anchors");
    assert_eq!(anchors.len(), 1, "{anchors:?}");
    assert_eq!(anchors[0].source, TimeSource::Gps);
    // The first fix anchors the boot; later ones agree with it.
    assert_eq!(anchors[0].true_ms, t0);
}

/// A pseudo-terminal pair: the test writes to the master, the agent opens the
/// slave as its serial port.
fn pty() -> (std::fs::File, String) {
    use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).expect("openpt");
    grantpt(&master).expect("grantpt");
    unlockpt(&master).expect("unlockpt");
    let name = ptsname(&master, Vec::new()).expect("ptsname");
    (
        std::fs::File::from(master),
        name.into_string().expect("utf-8 path"),
    )
}

fn sentence(body: &str) -> String {
    let sum = body.bytes().fold(0u8, |a, b| a ^ b);
    format!("${body}*{sum:02X}\r\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serial_receiver_gives_fixes_skips_bad_sentences_and_its_loss_is_survived() {
    let (mut master, slave) = pty();
    let agent = start(SourcesConfig {
        gnss: Some(GnssConfig {
            serial: Some(slave.clone()),
            baud: 4_800,
            gpsd: None,
        }),
        ..SourcesConfig::default()
    });
    agent
        .wait_for("the port open", |s| {
            s.sources.first().is_some_and(|s| s.state == "up")
        })
        .await;
    let writer = std::thread::spawn(move || {
        for s in 0..5u32 {
            let hms = format!("1200{s:02}.00");
            let lat = format!("5155.{:05}", 35_000 + s * 5);
            let lines = [
                sentence(&format!(
                    "GPRMC,{hms},A,{lat},N,00428.7520,E,19.4,0.0,220826,,,A"
                )),
                sentence(&format!(
                    "GPGGA,{hms},{lat},N,00428.7520,E,1,08,1.1,4.0,M,47.0,M,,"
                )),
                // A bad checksum, and line noise with no sentence in it.
                format!("$GPGGA,{hms},5155.0,N,00428.7,E,1,08,1.1,4.0,M,47.0,M,,*00\r\n"),
                "\u{1}\u{2}garbage\r\n".to_owned(),
            ];
            for l in lines {
                // Half a sentence per write, as a slow UART delivers it.
                let (a, b) = l.as_bytes().split_at(l.len() / 2);
                master.write_all(a).expect("write");
                std::thread::sleep(Duration::from_millis(5));
                master.write_all(b).expect("write");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        master
    });
    agent
        .wait_for("five fixes", |s| s.processor.fixes >= 4)
        .await;
    let master = writer.join().expect("writer");
    agent
        .wait_for("every sentence read", |s| s.processor.nmea_lines >= 20)
        .await;
    // The receiver is unplugged: the agent notes it and keeps running.
    drop(master);
    agent
        .wait_for("the outage noticed", |s| {
            s.sources.first().is_some_and(|s| s.state == "down")
        })
        .await;
    assert!(
        !agent.running.task.is_finished(),
        "a lost receiver never stops the agent"
    );
    let (events, _, stats) = agent.stop().await;
    assert!(stats.processor.fixes >= 4, "{stats:?}");
    assert_eq!(stats.processor.nmea_bad, 10, "{stats:?}");
    assert!(stats.sources[0]
        .error
        .as_deref()
        .is_some_and(|e| e.contains(&slave)));
    assert!(events.iter().any(|e| e.kind.as_str() == "position"));
}
