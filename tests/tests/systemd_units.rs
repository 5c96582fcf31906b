//! The unit files in `systemd/` against the real `systemd-analyze`, and the agent
//! binary against a fake service manager's notify socket.
//!
//! `systemd-analyze verify` insists that every `ExecStart=` program exists, so
//! the units are checked through copies that point at the freshly built
//! binaries; a third-party program missing on this machine (cage) is replaced by
//! /bin/true and said so. Without `systemd-analyze` (install Debian's `systemd`;
//! tests/run does) the unit checks are skipped with a message.

use anyhow::{bail, Context, Result};
use fleet_tests::process::{bin, run_output, Guarded};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The agent unit's `systemd-analyze security` exposure must stay "OK".
const MAX_AGENT_EXPOSURE: f64 = 2.5;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_path_buf()
}

fn units() -> Vec<PathBuf> {
    let mut units: Vec<PathBuf> = std::fs::read_dir(repo().join("systemd"))
        .expect("systemd/ exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "service"))
        .collect();
    units.sort();
    units
}

fn systemd_analyze() -> Option<PathBuf> {
    let found = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file());
    if found.is_none() {
        eprintln!(
            "SKIPPED: systemd-analyze is not installed (apt-get install systemd); \
             the unit files were not verified"
        );
    }
    found
}

/// A copy of `unit` in `dir` whose commands exist on this machine.
fn runnable_copy(unit: &Path, dir: &Path) -> Result<PathBuf> {
    let text = std::fs::read_to_string(unit)?;
    let agent = bin("fleet-agent")?;
    let sync = bin("fleet-sync")?;
    let mut out = String::new();
    for line in text.lines() {
        let line = line
            .replace("/usr/bin/fleet-agent", &agent.to_string_lossy())
            .replace("/usr/bin/fleet-sync", &sync.to_string_lossy());
        out.push_str(&substitute_missing_program(&line, unit));
        out.push('\n');
    }
    let copy = dir.join(unit.file_name().context("unit has a name")?);
    std::fs::write(&copy, out)?;
    Ok(copy)
}

fn substitute_missing_program(line: &str, unit: &Path) -> String {
    let Some((key, command)) = line.split_once('=') else {
        return line.to_owned();
    };
    if !key.starts_with("Exec") {
        return line.to_owned();
    }
    // Exec lines may start with prefixes such as "-" or "+" before the path.
    let program = command
        .trim_start_matches(['-', '+', '!', '@', ':'])
        .split_whitespace()
        .next()
        .unwrap_or("");
    if program.starts_with('/') && !Path::new(program).exists() {
        eprintln!(
            "{}: {program} is not installed here; verifying with /bin/true in its place",
            unit.display()
        );
        return line.replacen(program, "/bin/true", 1);
    }
    line.to_owned()
}

/// `systemd-analyze verify` output; any message, even a warning, is a failure.
fn verify(analyze: &Path, units: &[PathBuf]) -> Result<String> {
    let out = Command::new(analyze)
        .arg("verify")
        .args(units)
        .output()
        .context("running systemd-analyze verify")?;
    let messages = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() && messages.trim().is_empty() {
        bail!(
            "systemd-analyze verify failed ({}) with no output",
            out.status
        );
    }
    Ok(messages)
}

#[test]
fn every_unit_passes_systemd_analyze_verify() {
    let Some(analyze) = systemd_analyze() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let units = units();
    let names: Vec<_> = units.iter().filter_map(|u| u.file_name()).collect();
    for expected in [
        "fleet-agent.service",
        "fleet-sync.service",
        "fleet-can0.service",
        "fleet-kiosk-browser.service",
    ] {
        assert!(names.iter().any(|n| *n == expected), "missing {expected}");
    }
    let copies: Vec<PathBuf> = units
        .iter()
        .map(|u| runnable_copy(u, dir.path()).unwrap())
        .collect();
    for copy in &copies {
        let messages = verify(&analyze, std::slice::from_ref(copy)).unwrap();
        assert!(
            messages.trim().is_empty(),
            "{} does not verify cleanly:\n{messages}",
            copy.display()
        );
    }
}

#[test]
fn verify_reports_a_misspelt_directive() {
    let Some(analyze) = systemd_analyze() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let agent = runnable_copy(&repo().join("systemd/fleet-agent.service"), dir.path()).unwrap();
    let text = std::fs::read_to_string(&agent).unwrap();
    std::fs::write(
        &agent,
        text.replace("ProtectSystem=strict", "ProtectSytem=strict"),
    )
    .unwrap();
    let messages = verify(&analyze, &[agent]).unwrap();
    assert!(messages.contains("ProtectSytem"), "{messages}");
}

/// `Overall exposure level for NAME: 1.7 OK` → (1.7, "OK").
fn exposure(report: &str) -> Option<(f64, String)> {
    let line = report
        .lines()
        .find(|l| l.contains("Overall exposure level"))?;
    let mut words = line.rsplit(": ").next()?.split_whitespace();
    let score = words.next()?.parse().ok()?;
    Some((score, words.next()?.to_owned()))
}

#[test]
fn agent_unit_security_exposure_is_ok() {
    let Some(analyze) = systemd_analyze() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let agent = runnable_copy(&repo().join("systemd/fleet-agent.service"), dir.path()).unwrap();
    let out = Command::new(&analyze)
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&agent)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    let (score, verdict) = exposure(&report).unwrap_or_else(|| {
        panic!(
            "no exposure level in:\n{report}{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    // Recorded for the release notes and for comparing against later changes.
    let record = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fleet-agent-security.txt");
    std::fs::write(&record, report.as_bytes()).unwrap();
    println!(
        "fleet-agent.service exposure {score} {verdict} (full report: {})",
        record.display()
    );
    assert!(
        score <= MAX_AGENT_EXPOSURE && verdict == "OK",
        "exposure {score} {verdict} is above {MAX_AGENT_EXPOSURE}:\n{report}"
    );
}

#[test]
fn packaged_default_config_validates() {
    let example = repo().join("agent/fleet-agent.example.toml");
    let mut cmd = Command::new(bin("fleet-agent").unwrap());
    cmd.args(["validate", "--config"]).arg(&example);
    let out = run_output(cmd, Duration::from_secs(30)).unwrap();
    assert!(out.contains("valid"), "{out}");
}

/// Next datagram on `rx`, or an error after `timeout`.
fn next_notification(rx: &UnixDatagram, timeout: Duration) -> Result<String> {
    rx.set_read_timeout(Some(timeout))?;
    let mut buf = [0u8; 1024];
    let n = rx.recv(&mut buf).context("no notification in time")?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

fn sigterm(pid: u32) -> Result<()> {
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()?;
    if !status.success() {
        bail!("kill -TERM {pid} failed: {status}");
    }
    Ok(())
}

#[test]
fn agent_tells_systemd_ready_pets_the_watchdog_and_reports_stopping() {
    // A socket path must fit in 108 bytes; TMPDIR may be deep in a checkout.
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    let socket = dir.path().join("notify");
    let rx = UnixDatagram::bind(&socket).unwrap();
    let mut cmd = Command::new(bin("fleet-agent").unwrap());
    cmd.args(["run", "--simulate", "--speed", "5", "--data"])
        .arg(dir.path().join("data"))
        .env("NOTIFY_SOCKET", &socket)
        // A 2 s watchdog: a pet every second.
        .env("WATCHDOG_USEC", "2000000")
        .env_remove("WATCHDOG_PID");
    let mut agent = Guarded::spawn("fleet-agent", cmd, &dir.path().join("agent.log")).unwrap();

    let ready = next_notification(&rx, Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e:#}\n{}", agent.log_tail(30)));
    assert!(ready.starts_with("READY=1\n"), "{ready:?}");

    let started = Instant::now();
    for _ in 0..2 {
        let pet = next_notification(&rx, Duration::from_secs(5)).unwrap();
        assert_eq!(pet, "WATCHDOG=1");
    }
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "pets come once per half timeout, not in a burst"
    );

    sigterm(agent.id()).unwrap();
    let stopping = loop {
        let msg = next_notification(&rx, Duration::from_secs(10)).unwrap();
        if msg != "WATCHDOG=1" {
            break msg;
        }
    };
    assert!(stopping.starts_with("STOPPING=1"), "{stopping:?}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = agent.exited().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "agent did not stop within 30 s");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}\n{}", agent.log_tail(30));
}

#[test]
fn exposure_line_is_parsed() {
    let report = "✓ UMask= ...\n\n→ Overall exposure level for fleet-agent.service: 1.7 OK 🙂\n";
    assert_eq!(exposure(report), Some((1.7, "OK".to_owned())));
    assert_eq!(exposure("nothing here"), None);
}
