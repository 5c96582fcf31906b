//! First boot of a provisioned device, end to end with real processes over
//! loopback: the device has a config naming a one-time token file and no
//! identity. It boots with the server unreachable, records locally, keeps
//! trying to enroll, enrolls once the server appears, deletes the token, and
//! its backlog reaches the server. A refused token is retried rarely, not in a
//! loop. Both are watched through the agent's `/metrics` page.

use anyhow::{bail, ensure, Context, Result};
use fleet_protocol::prometheus::{parse, Sample};
use fleet_tests::process::{free_port, wait_for, Guarded};
use fleet_tests::services::{AgentDir, ServerProcess};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

/// GET /metrics from the agent's loopback listener.
fn scrape(port: u16) -> Result<Vec<Sample>> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let (head, body) = text.split_once("\r\n\r\n").context("no header end")?;
    ensure!(head.starts_with("HTTP/1.1 200"), "metrics answered {head}");
    ensure!(head.contains("text/plain; version=0.0.4"), "{head}");
    Ok(parse(body)?)
}

fn metric(samples: &[Sample], name: &str) -> Result<f64> {
    samples
        .iter()
        .find(|s| s.name == name)
        .map(|s| s.value)
        .with_context(|| format!("{name} missing from the metrics page"))
}

fn write_config(path: &Path, server_url: &str, token_file: &Path, metrics_port: u16) -> Result<()> {
    let text = format!(
        "version = 1\n\
         [enrollment]\n\
         server_url = \"{server_url}\"\n\
         token_file = \"{}\"\n\
         name = \"truck-first-boot\"\n\
         [sync]\n\
         backoff_base_ms = 200\n\
         backoff_max_ms = 1000\n\
         idle_poll_ms = 200\n\
         [metrics]\n\
         listen = \"127.0.0.1:{metrics_port}\"\n",
        token_file.display()
    );
    std::fs::write(path, text)?;
    Ok(())
}

fn write_token(path: &Path, token: &str) -> Result<()> {
    std::fs::write(path, format!("{token}\n"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(())
}

/// A provisioned device's first `run`: a token file, a config naming it and a
/// metrics port; returns the running agent, the token file and the port.
fn first_boot(
    dir: &Path,
    agent: &mut AgentDir,
    server_url: &str,
    token: &str,
    seed: &str,
) -> Result<(Guarded, std::path::PathBuf, u16)> {
    let token_file = dir.join("enroll.token");
    write_token(&token_file, token)?;
    let config = dir.join("config.toml");
    let port = free_port()?;
    write_config(&config, server_url, &token_file, port)?;
    let config_arg = config.to_str().context("utf-8 path")?;
    let run = agent.run(&[
        "--config",
        config_arg,
        "--simulate",
        "--seed",
        seed,
        "--speed",
        "200",
    ])?;
    Ok((run, token_file, port))
}

#[test]
fn offline_first_boot_records_then_enrolls_deletes_the_token_and_syncs_the_backlog() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs)?;
    let mut server = ServerProcess::new(&tmp.path().join("server"), &logs)?;
    let mut agent = AgentDir::new(&tmp.path().join("agent"), &logs)?;
    let (tenant_id, api_key) = server.create_tenant("first boot")?;
    let token = server.create_token(&tenant_id, 1)?;

    // First boot with no server: the agent must stay up and record.
    let (mut run, token_file, port) =
        first_boot(tmp.path(), &mut agent, &server.url(), &token, "5")?;
    let offline = wait_for(
        "events recorded and enrollment retried while offline",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            if let Some(status) = run.exited()? {
                bail!("agent exited offline with {status}:\n{}", run.log_tail(30));
            }
            let m = scrape(port)?;
            let recorded = metric(&m, "fleet_agent_events_recorded_total")?;
            let attempts = metric(&m, "fleet_agent_enrollment_attempts_total")?;
            Ok((recorded >= 20.0 && attempts >= 2.0).then_some(m))
        },
    )
    .with_context(|| run.log_tail(30))?;
    ensure!(metric(&offline, "fleet_agent_enrolled")? == 0.0);
    ensure!(metric(&offline, "fleet_agent_events_synced_total")? == 0.0);
    ensure!(
        token_file.exists(),
        "the token must survive failed attempts"
    );
    ensure!(!tmp.path().join("agent/identity.json").exists());
    let recorded_offline = metric(&offline, "fleet_agent_events_recorded_total")? as u64;

    // The server appears: enrollment, token deleted, backlog delivered.
    server.start()?;
    wait_for(
        "the device to enroll and delete its token",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || Ok((!token_file.exists() && agent.device_id().is_ok()).then_some(())),
    )
    .with_context(|| run.log_tail(30))?;
    let device_id = agent.device_id()?;
    wait_for(
        "the offline backlog on the server",
        Duration::from_secs(60),
        Duration::from_millis(250),
        || {
            let devices = server.api_get(&api_key, "/api/v1/devices")?;
            let last = devices
                .as_array()
                .and_then(|ds| ds.iter().find(|d| d["id"] == device_id.as_str()))
                .and_then(|d| d["last_seq"].as_u64())
                .unwrap_or(0);
            Ok((last >= recorded_offline).then_some(()))
        },
    )
    .with_context(|| run.log_tail(30))?;
    let m = scrape(port)?;
    ensure!(metric(&m, "fleet_agent_enrolled")? == 1.0);
    ensure!(metric(&m, "fleet_agent_events_synced_total")? >= recorded_offline as f64);
    ensure!(metric(&m, "fleet_agent_sync_batches_total")? >= 1.0);
    run.kill()?;

    // Every event recorded offline is on the server exactly once.
    let on_server = server.all_device_events(&api_key, &device_id)?;
    let mut seqs: Vec<u64> = on_server.iter().filter_map(|e| e["seq"].as_u64()).collect();
    seqs.sort_unstable();
    let before = seqs.len();
    seqs.dedup();
    ensure!(seqs.len() == before, "duplicate seqs on the server");
    for seq in 1..=recorded_offline {
        ensure!(
            seqs.binary_search(&seq).is_ok(),
            "seq {seq} recorded offline is missing on the server"
        );
    }
    Ok(())
}

#[test]
fn a_refused_token_is_kept_and_retried_rarely_while_the_device_records() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs)?;
    let mut server = ServerProcess::new(&tmp.path().join("server"), &logs)?;
    let mut agent = AgentDir::new(&tmp.path().join("agent"), &logs)?;
    server.create_tenant("refused")?;
    server.start()?;

    let (mut run, token_file, port) = first_boot(
        tmp.path(),
        &mut agent,
        &server.url(),
        "not-a-token-the-server-issued",
        "6",
    )?;
    wait_for(
        "events recorded after the refusal",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            let m = scrape(port)?;
            Ok((metric(&m, "fleet_agent_events_recorded_total")? >= 20.0).then_some(()))
        },
    )
    .with_context(|| run.log_tail(30))?;
    // Several backoff periods of the transient path pass without a second try.
    std::thread::sleep(Duration::from_secs(3));
    ensure!(
        run.exited()?.is_none(),
        "agent exited:\n{}",
        run.log_tail(30)
    );
    let m = scrape(port)?;
    ensure!(
        metric(&m, "fleet_agent_enrollment_attempts_total")? == 1.0,
        "a refused token was retried at once:\n{}",
        run.log_tail(30)
    );
    ensure!(metric(&m, "fleet_agent_enrolled")? == 0.0);
    ensure!(
        token_file.exists(),
        "a refused token is left for the technician to see"
    );
    let log = std::fs::read_to_string(logs.join("agent-1.log"))?;
    ensure!(
        log.contains("enrollment refused") && log.contains("enrollment_token_invalid"),
        "the refusal must be logged clearly:\n{log}"
    );
    run.kill()?;
    Ok(())
}
