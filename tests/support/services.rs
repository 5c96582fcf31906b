//! The two programs as a test drives them: a `fleet-sync` server process with its
//! admin commands and operator API, and a `fleet-agent` data directory with the
//! agent's commands.

use crate::process::{bin, free_port, run_output, wait_for, Guarded};
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// A `fleet-sync serve` on a fixed loopback port and data directory (or a
/// PostgreSQL database), which can be stopped and started again at the same
/// address.
pub struct ServerProcess {
    bin: PathBuf,
    data: PathBuf,
    database_url: Option<String>,
    logs: PathBuf,
    port: u16,
    starts: u32,
    running: Option<Guarded>,
    http: Http,
}

impl ServerProcess {
    pub fn new(data: &Path, logs: &Path) -> Result<ServerProcess> {
        Ok(ServerProcess {
            bin: bin("fleet-sync")?,
            data: data.to_owned(),
            database_url: None,
            logs: logs.to_owned(),
            port: free_port()?,
            starts: 0,
            running: None,
            http: Http::new()?,
        })
    }

    /// Keeps the server's data in this PostgreSQL database (`--database-url`)
    /// instead of SQLite under the data directory.
    pub fn with_database_url(mut self, url: &str) -> ServerProcess {
        self.database_url = Some(url.to_owned());
        self
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn database_args(&self, cmd: &mut Command) {
        cmd.arg("--data").arg(&self.data);
        if let Some(url) = &self.database_url {
            cmd.arg("--database-url").arg(url);
        }
        cmd.env_remove("FLEET_DATABASE_URL");
    }

    /// `fleet-sync admin --data DIR ARGS…`, whose stdout is one JSON object.
    pub fn admin(&self, args: &[&str]) -> Result<Value> {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("admin");
        self.database_args(&mut cmd);
        cmd.args(args);
        let out = run_output(cmd, COMMAND_TIMEOUT)?;
        serde_json::from_str(out.trim()).with_context(|| format!("admin {args:?} printed {out:?}"))
    }

    /// A new tenant: `(tenant_id, api_key)`.
    pub fn create_tenant(&self, name: &str) -> Result<(String, String)> {
        let v = self.admin(&["tenant", "create", "--name", name])?;
        Ok((string(&v, "tenant_id")?, string(&v, "api_key")?))
    }

    pub fn create_token(&self, tenant_id: &str, uses: u32) -> Result<String> {
        let uses = uses.to_string();
        let v = self.admin(&[
            "enrollment-token",
            "create",
            "--tenant",
            tenant_id,
            "--uses",
            &uses,
        ])?;
        string(&v, "token")
    }

    /// Starts the server and waits until `/healthz` answers.
    pub fn start(&mut self) -> Result<()> {
        if self.running.is_some() {
            bail!("server already running");
        }
        self.starts += 1;
        let mut cmd = Command::new(&self.bin);
        cmd.arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port));
        self.database_args(&mut cmd);
        cmd
            // Tenant signing keys are sealed with it; the same key on every restart.
            .env("FLEET_KEY_ENCRYPTION_KEY", "6b".repeat(32))
            .env("RUST_LOG", "info");
        let log = self.logs.join(format!("server-{}.log", self.starts));
        let mut proc = Guarded::spawn("fleet-sync serve", cmd, &log)?;
        let url = format!("{}/healthz", self.url());
        let ready = wait_for(
            "the server to answer /healthz",
            Duration::from_secs(30),
            Duration::from_millis(50),
            || {
                if let Some(status) = proc.exited()? {
                    bail!(
                        "fleet-sync serve exited with {status}:\n{}",
                        proc.log_tail(30)
                    );
                }
                Ok(self
                    .http
                    .get(&url, None)
                    .ok()
                    .filter(|(s, _)| *s == 200)
                    .map(|_| ()))
            },
        );
        if let Err(e) = ready {
            bail!("{e:#}\nserver log:\n{}", proc.log_tail(30));
        }
        self.running = Some(proc);
        Ok(())
    }

    /// A power cut for the server: SIGKILL.
    pub fn kill(&mut self) -> Result<()> {
        match self.running.take() {
            Some(mut p) => p.kill(),
            None => bail!("server is not running"),
        }
    }

    /// GET on the operator API with the tenant's key; the parsed JSON body.
    pub fn api_get(&self, api_key: &str, path_and_query: &str) -> Result<Value> {
        let (status, body) = self
            .http
            .get(&format!("{}{path_and_query}", self.url()), Some(api_key))?;
        if status != 200 {
            bail!("GET {path_and_query} answered {status}: {body}");
        }
        serde_json::from_str(&body)
            .with_context(|| format!("GET {path_and_query} answered {body:?}"))
    }

    /// Every event the server holds for a device, in the order the API pages them.
    pub fn all_device_events(&self, api_key: &str, device_id: &str) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        let mut after = 0u64;
        loop {
            let page = self.api_get(
                api_key,
                &format!("/api/v1/devices/{device_id}/events?after_seq={after}&limit=1000"),
            )?;
            let events = page["events"]
                .as_array()
                .context("events page without events")?;
            out.extend(events.iter().cloned());
            match page["next_after_seq"].as_u64() {
                Some(n) if n > after => after = n,
                Some(n) => bail!("next_after_seq {n} does not move past {after}"),
                None => return Ok(out),
            }
        }
    }
}

fn string(v: &Value, key: &str) -> Result<String> {
    v[key]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("{key} missing in {v}"))
}

/// A blocking HTTP client for tests that drive processes from plain threads.
struct Http {
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
}

impl Http {
    fn new() -> Result<Http> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(Http { rt, client })
    }

    fn get(&self, url: &str, bearer: Option<&str>) -> Result<(u16, String)> {
        self.rt.block_on(async {
            let mut req = self.client.get(url);
            if let Some(key) = bearer {
                req = req.bearer_auth(key);
            }
            let resp = req.send().await?;
            let status = resp.status().as_u16();
            Ok((status, resp.text().await?))
        })
    }
}

/// One event as `fleet-agent events --json` prints it.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalEvent {
    pub seq: u64,
    pub kind: String,
    pub acked: bool,
}

/// A `fleet-agent` data directory and the commands that work on it.
pub struct AgentDir {
    bin: PathBuf,
    data: PathBuf,
    logs: PathBuf,
    runs: u32,
}

impl AgentDir {
    pub fn new(data: &Path, logs: &Path) -> Result<AgentDir> {
        Ok(AgentDir {
            bin: bin("fleet-agent")?,
            data: data.to_owned(),
            logs: logs.to_owned(),
            runs: 0,
        })
    }

    fn command(&self, sub: &str) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.arg(sub).arg("--data").arg(&self.data);
        cmd
    }

    pub fn enroll(&self, server_url: &str, token: &str, name: &str) -> Result<String> {
        let mut cmd = self.command("enroll");
        cmd.args(["--server", server_url, "--token", token, "--name", name]);
        run_output(cmd, COMMAND_TIMEOUT)
    }

    /// The device id enrollment stored in the data directory.
    pub fn device_id(&self) -> Result<String> {
        let id = fleet_agent::identity::Identity::load(&self.data)
            .with_context(|| format!("loading the identity in {}", self.data.display()))?;
        Ok(id.device_id.to_string())
    }

    /// `fleet-agent run --data DIR ARGS…`, killed when the guard drops.
    pub fn run(&mut self, args: &[&str]) -> Result<Guarded> {
        self.runs += 1;
        let mut cmd = self.command("run");
        cmd.args(args).env("RUST_LOG", "info");
        Guarded::spawn(
            "fleet-agent run",
            cmd,
            &self.logs.join(format!("agent-{}.log", self.runs)),
        )
    }

    /// The events in the local store: what the agent has committed.
    pub fn events(&self) -> Result<Vec<LocalEvent>> {
        let mut cmd = self.command("events");
        cmd.arg("--json");
        let out = run_output(cmd, COMMAND_TIMEOUT)?;
        out.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let v: Value =
                    serde_json::from_str(l).with_context(|| format!("events printed {l:?}"))?;
                Ok(LocalEvent {
                    seq: v["seq"]
                        .as_u64()
                        .with_context(|| format!("no seq in {l}"))?,
                    kind: v["kind"]
                        .as_str()
                        .with_context(|| format!("no kind in {l}"))?
                        .to_owned(),
                    acked: v["acked"]
                        .as_bool()
                        .with_context(|| format!("no acked in {l}"))?,
                })
            })
            .collect()
    }

    /// `fleet-agent status --json`.
    pub fn status(&self) -> Result<Value> {
        let mut cmd = self.command("status");
        cmd.arg("--json");
        let out = run_output(cmd, COMMAND_TIMEOUT)?;
        serde_json::from_str(out.trim()).with_context(|| format!("status printed {out:?}"))
    }
}
