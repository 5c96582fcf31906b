//! The agent's log lines: under systemd (`JOURNAL_STREAM` set) plain text with
//! the level and no timestamp or colour codes; with `--log-format json` one JSON
//! object per line.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The first `n` stderr lines of a short simulated run, then the agent is killed.
fn first_lines(extra: &[&str], env: &[(&str, &str)], n: usize) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fleet-agent"));
    cmd.arg("run")
        .arg("--data")
        .arg(dir.path())
        .args(["--simulate", "--speed", "50"])
        .args(extra)
        .env("RUST_LOG", "info")
        .env("FLEET_METRICS__ENABLED", "false")
        .env_remove("JOURNAL_STREAM")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    while lines.len() < n {
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(l) => lines.push(l),
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(!lines.is_empty(), "the agent logged nothing");
    lines
}

#[test]
fn under_systemd_text_lines_start_with_the_level_and_carry_no_timestamp_or_colour() {
    let lines = first_lines(&[], &[("JOURNAL_STREAM", "8:12345")], 2);
    for l in &lines {
        assert!(!l.contains('\u{1b}'), "colour codes in {l:?}");
        let first = l.split_whitespace().next().unwrap_or("");
        assert!(
            ["ERROR", "WARN", "INFO", "DEBUG", "TRACE"].contains(&first),
            "a journal line should start with its level: {l:?}"
        );
    }
}

#[test]
fn outside_systemd_text_lines_carry_a_timestamp() {
    let lines = first_lines(&[], &[], 1);
    let first = lines[0].split_whitespace().next().unwrap_or("");
    assert!(
        first.len() >= 20 && first.contains('T'),
        "expected an RFC 3339 timestamp first: {:?}",
        lines[0]
    );
}

#[test]
fn log_format_json_writes_one_object_per_line_with_level_and_message() {
    let lines = first_lines(&["--log-format", "json"], &[("JOURNAL_STREAM", "8:1")], 2);
    for l in &lines {
        let v: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?} is not JSON: {e}"));
        assert!(v["level"].is_string(), "{l}");
        assert!(v["fields"]["message"].is_string(), "{l}");
    }
}
