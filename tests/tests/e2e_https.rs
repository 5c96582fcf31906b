//! End to end over HTTPS with real processes on loopback: a device enrolls with a
//! `fleet-sync serve --tls-cert --tls-key` server, trusting its certificate on
//! first use, and syncs a simulated drive. When the server comes back with a
//! different certificate, the device refuses to talk to it and says why.

use anyhow::{bail, ensure, Context, Result};
use fleet_tests::process::{bin, free_port, log_tail, run_output, wait_for, Guarded};
use fleet_tests::services::{AgentDir, ServerProcess};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const PIN_MISMATCH_LOG: &str = "server certificate does not match the pinned one";

/// A certificate and key that `fleet-sync admin tls-cert` wrote.
struct CertFiles {
    cert: PathBuf,
    key: PathBuf,
    sha256: String,
}

fn make_cert(dir: &Path) -> Result<CertFiles> {
    let mut cmd = Command::new(bin("fleet-sync")?);
    cmd.arg("admin").arg("--data").arg(dir).args([
        "tls-cert",
        "--hostname",
        "localhost",
        "--hostname",
        "127.0.0.1",
    ]);
    let out = run_output(cmd, Duration::from_secs(30))?;
    let v: Value =
        serde_json::from_str(out.trim()).with_context(|| format!("tls-cert printed {out:?}"))?;
    let field = |k: &str| {
        v[k].as_str()
            .map(str::to_owned)
            .with_context(|| format!("{k} missing in {v}"))
    };
    Ok(CertFiles {
        cert: field("cert")?.into(),
        key: field("key")?.into(),
        sha256: field("sha256")?,
    })
}

/// A blocking HTTPS client that trusts exactly one certificate.
struct Https {
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
    base: String,
}

impl Https {
    fn new(port: u16, trusted: &CertFiles) -> Result<Https> {
        let pem = std::fs::read(&trusted.cert)?;
        let client = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&pem)?)
            .timeout(Duration::from_secs(10))
            .build()?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(Https {
            rt,
            client,
            base: format!("https://127.0.0.1:{port}"),
        })
    }

    fn get(&self, path: &str, bearer: Option<&str>) -> Result<Value> {
        self.rt.block_on(async {
            let mut req = self.client.get(format!("{}{path}", self.base));
            if let Some(key) = bearer {
                req = req.bearer_auth(key);
            }
            let resp = req.send().await?;
            let status = resp.status();
            let body = resp.text().await?;
            ensure!(status.is_success(), "GET {path} answered {status}: {body}");
            if path == "/healthz" {
                return Ok(Value::String(body));
            }
            serde_json::from_str(&body).with_context(|| format!("GET {path} answered {body:?}"))
        })
    }

    /// The seqs the server holds for a device, paging the operator API.
    fn device_seqs(&self, api_key: &str, device_id: &str) -> Result<Vec<u64>> {
        let mut seqs = Vec::new();
        let mut after = 0u64;
        loop {
            let page = self.get(
                &format!("/api/v1/devices/{device_id}/events?after_seq={after}&limit=1000"),
                Some(api_key),
            )?;
            let events = page["events"].as_array().context("page without events")?;
            for e in events {
                seqs.push(
                    e["seq"]
                        .as_u64()
                        .with_context(|| format!("no seq in {e}"))?,
                );
            }
            match page["next_after_seq"].as_u64() {
                Some(n) if n > after => after = n,
                Some(n) => bail!("next_after_seq {n} does not move past {after}"),
                None => return Ok(seqs),
            }
        }
    }
}

/// `fleet-sync serve` over HTTPS on `port`, waited for until `/healthz` answers.
fn serve_https(data: &Path, port: u16, cert: &CertFiles, log: &Path) -> Result<(Guarded, Https)> {
    let mut cmd = Command::new(bin("fleet-sync")?);
    cmd.arg("serve")
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data")
        .arg(data)
        .arg("--tls-cert")
        .arg(&cert.cert)
        .arg("--tls-key")
        .arg(&cert.key)
        .env("RUST_LOG", "info,fleet_sync::tls=debug");
    let mut proc = Guarded::spawn("fleet-sync serve (https)", cmd, log)?;
    let https = Https::new(port, cert)?;
    let ready = wait_for(
        "the HTTPS server to answer /healthz",
        Duration::from_secs(20),
        Duration::from_millis(50),
        || {
            if let Some(status) = proc.exited()? {
                bail!("fleet-sync serve exited with {status}");
            }
            Ok(https.get("/healthz", None).ok().map(|_| ()))
        },
    );
    if let Err(e) = ready {
        bail!("{e:#}\nserver log:\n{}", proc.log_tail(30));
    }
    Ok((proc, https))
}

fn acked_seq(agent: &AgentDir) -> Result<u64> {
    agent.status()?["acked_seq"]
        .as_u64()
        .context("status has no acked_seq")
}

#[test]
fn a_device_syncs_over_https_and_refuses_a_server_with_another_certificate() -> Result<()> {
    let started = Instant::now();
    let tmp = tempfile::tempdir()?;
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs)?;
    let server_data = tmp.path().join("server");
    let first = make_cert(&tmp.path().join("cert-first"))?;
    let second = make_cert(&tmp.path().join("cert-second"))?;
    ensure!(
        first.sha256 != second.sha256,
        "two certificates, one fingerprint"
    );

    let admin = ServerProcess::new(&server_data, &logs)?;
    let (tenant_id, api_key) = admin.create_tenant("e2e https")?;
    let token = admin.create_token(&tenant_id, 1)?;
    let port = free_port()?;
    let (mut server, https) = serve_https(&server_data, port, &first, &logs.join("server-1.log"))?;

    let mut agent = AgentDir::new(&tmp.path().join("agent"), &logs)?;
    agent.enroll(&format!("https://127.0.0.1:{port}"), &token, "truck-tls")?;
    let device_id = agent.device_id()?;
    let identity = fleet_agent::identity::Identity::load(&tmp.path().join("agent"))?;
    let pinned: String = identity
        .server_pin()
        .context("an https enrollment pins the server certificate")?
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    ensure!(
        pinned == first.sha256,
        "the device pinned {pinned}, the server presents {}",
        first.sha256
    );

    // A simulated drive syncs over HTTPS.
    let mut run = agent.run(&["--simulate", "--seed", "5", "--speed", "20"])?;
    let synced = wait_for(
        "the device to get acks over HTTPS",
        Duration::from_secs(25),
        Duration::from_millis(250),
        || {
            if let Some(status) = run.exited()? {
                bail!("fleet-agent run exited with {status}");
            }
            let acked = acked_seq(&agent)?;
            Ok((acked >= 5).then_some(acked))
        },
    )
    .with_context(|| format!("agent log:\n{}", run.log_tail(30)))?;
    let on_server = https.device_seqs(&api_key, &device_id)?;
    for seq in 1..=synced {
        ensure!(
            on_server.contains(&seq),
            "seq {seq} is acked on the device but not listed by the server"
        );
    }

    // The server comes back at the same address with another certificate.
    server.kill()?;
    let (mut impostor, impostor_https) =
        serve_https(&server_data, port, &second, &logs.join("server-2.log"))?;
    let stored_at_switch = impostor_https.device_seqs(&api_key, &device_id)?;
    let agent_log = logs.join("agent-1.log");
    wait_for(
        "the device to log the certificate mismatch",
        Duration::from_secs(20),
        Duration::from_millis(250),
        || {
            Ok(log_tail(&agent_log, 400)
                .contains(PIN_MISMATCH_LOG)
                .then_some(()))
        },
    )
    .with_context(|| format!("agent log:\n{}", run.log_tail(30)))?;
    // Any ack from the first server was taken before the agent dialled again.
    let acked_before = acked_seq(&agent)?;
    // A little longer, so that any request that could get through would have.
    std::thread::sleep(Duration::from_secs(2));
    ensure!(
        run.exited()?.is_none(),
        "the agent stopped:\n{}",
        run.log_tail(30)
    );
    run.kill()?;

    let events = agent.events()?;
    let newest = events.last().map_or(0, |e| e.seq);
    ensure!(
        newest > acked_before,
        "the device recorded nothing after the switch, so the refusal proves nothing"
    );
    ensure!(
        acked_seq(&agent)? == acked_before,
        "the device took acks from a server with another certificate"
    );
    for e in &events {
        ensure!(
            e.acked == (e.seq <= acked_before),
            "seq {} acked={} after the switch (acked up to {acked_before})",
            e.seq,
            e.acked
        );
    }
    ensure!(
        impostor_https.device_seqs(&api_key, &device_id)? == stored_at_switch,
        "the server received events after the certificate changed"
    );
    ensure!(
        impostor.exited()?.is_none(),
        "the server stopped after refused handshakes:\n{}",
        impostor.log_tail(30)
    );
    ensure!(
        impostor.log_tail(400).contains("TLS handshake failed"),
        "the server did not log the refused handshakes:\n{}",
        impostor.log_tail(30)
    );
    impostor.kill()?;
    ensure!(
        started.elapsed() < Duration::from_secs(60),
        "the test took {:?}",
        started.elapsed()
    );
    eprintln!(
        "synced to seq {acked_before} over https; {} events recorded, none acked after the certificate changed; {:?}",
        events.len(),
        started.elapsed()
    );
    Ok(())
}
