//! Decode + rules throughput on a J1939 bus at full 1 Mbit/s load, against
//! cantools decoding the same log in the same run.
//!
//! The log: the real truck capture (`canedge-j1939-truck-idle-10s.log`, 358
//! frames/s) laid over itself 22 times with a different source address per copy
//! and timestamps offset by a few hundred microseconds, so 10 s of bus carry
//! about 8,000 frames/s, as a saturated 1 Mbit/s J1939 bus does. Every frame goes
//! through `Processor::on_can` (J1939 decode, transport reassembly, DM1, the
//! rules engine); a second figure is the DBC decoder alone (`tests/peers/
//! j1939-fleet.dbc`, every frame looked up, known ones decoded). cantools
//! (`tests/peers/cantools_peer.py bench`) times `db.decode_message` with the same
//! DBC over every frame of the same log it knows, looking up the rest.
//!
//! `cargo bench -p fleet-agent --bench decode_throughput`. Target: ≥ 20× cantools
//! with the rules included. Needs `FLEET_TEST_PYTHON` (or python3) with
//! cantools for the ratio; without it the rates are printed alone.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use fleet_agent::decode::candump;
use fleet_agent::decode::dbc::{Database, DecodeStats};
use fleet_agent::pipeline::Processor;
use fleet_agent::rules::RulesConfig;
use fleet_hal::CanFrame;

const COPIES: u32 = 22;
const ROUNDS: usize = 5;

fn manifest(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// The truck capture at full bus load: `COPIES` trucks' worth of frames.
fn full_load_log() -> Vec<CanFrame> {
    let text = std::fs::read_to_string(manifest(
        "../../shared/fixtures/j1939/canedge-j1939-truck-idle-10s.log",
    ))
    .expect("truck capture");
    let one: Vec<CanFrame> = text
        .lines()
        .map(|l| candump::parse_line(l).expect("capture line").frame)
        .collect();
    let mut all = Vec::with_capacity(one.len() * COPIES as usize);
    for copy in 0..COPIES {
        for f in &one {
            let mut f = *f;
            f.id = (f.id & !0xFF) | ((f.id & 0xFF) + copy * 3) & 0xFF;
            f.timestamp_us += u64::from(copy) * 450;
            all.push(f);
        }
    }
    all.sort_by_key(|f| f.timestamp_us);
    all
}

fn write_log(frames: &[CanFrame], path: &Path) {
    let mut text = String::with_capacity(frames.len() * 48);
    for f in frames {
        candump::format_line("can0", f, &mut text);
        text.push('\n');
    }
    std::fs::write(path, text).expect("write log");
}

fn best_rate(frames: usize, mut run: impl FnMut() -> Duration) -> f64 {
    (0..ROUNDS)
        .map(|_| frames as f64 / run().as_secs_f64())
        .fold(0.0, f64::max)
}

fn cantools_rate(dbc: &Path, log: &Path) -> Option<(f64, u64)> {
    let py = std::env::var("FLEET_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(py)
        .arg(manifest("../tests/peers/cantools_peer.py"))
        .args(["bench"])
        .arg(dbc)
        .arg(log)
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "cantools baseline unavailable: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        );
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    Some((v["log_frames_per_s"].as_f64()?, v["decoded"].as_u64()?))
}

fn main() {
    let frames = full_load_log();
    let span_s =
        (frames.last().expect("frames").timestamp_us - frames[0].timestamp_us) as f64 / 1e6;
    println!(
        "log: {} frames over {span_s:.1} s = {:.0} frames/s of bus traffic",
        frames.len(),
        frames.len() as f64 / span_s
    );
    let t0 = frames[0].timestamp_us;

    let mut events = 0;
    let pipeline = best_rate(frames.len(), || {
        let mut p = Processor::new(RulesConfig::default());
        let mut out = Vec::new();
        let start = Instant::now();
        for f in &frames {
            p.on_can(f, (f.timestamp_us - t0) / 1000, &mut out);
        }
        let took = start.elapsed();
        events = out.len();
        std::hint::black_box(&out);
        took
    });
    println!("decode + rules (Processor::on_can): {pipeline:.0} frames/s, {events} rule events");

    let dbc_path = manifest("../tests/peers/j1939-fleet.dbc");
    let db = Database::load(&dbc_path).expect("j1939-fleet.dbc");
    let mut decoded = 0;
    let dbc_rate = best_rate(frames.len(), || {
        let mut stats = DecodeStats::default();
        let mut sum = 0.0;
        let start = Instant::now();
        for f in &frames {
            db.decode(f, &mut stats, |v| sum += v.value);
        }
        let took = start.elapsed();
        decoded = stats.decoded;
        std::hint::black_box(sum);
        took
    });
    println!("DBC decode alone: {dbc_rate:.0} frames/s ({decoded} of the frames known to the DBC)");

    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("full-load.log");
    write_log(&frames, &log);
    match cantools_rate(&dbc_path, &log) {
        Some((rate, theirs)) => {
            println!("cantools decode_message, same log and DBC: {rate:.0} frames/s ({theirs} frames decoded)");
            println!(
                "ratio decode + rules / cantools: {:.1}x (target >= 20x); DBC decode / cantools: {:.1}x",
                pipeline / rate,
                dbc_rate / rate
            );
            println!(
                "at 8,000 frames/s the pipeline needs {:.2} % of one core",
                8000.0 / pipeline * 100.0
            );
        }
        None => println!("no cantools (set FLEET_TEST_PYTHON): ratio not measured"),
    }
}
