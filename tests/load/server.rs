//! The server under load: one `fleet-sync serve` process on loopback, on SQLite
//! in a temporary directory or on a fresh PostgreSQL database, with one tenant
//! whose API rate limit is lifted (thousands of stream subscribers share its key).

use crate::process::{bin, free_port, wait_for, Guarded};
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const OPERATOR_KEY: &str = "fleet-load-operator-key-0123456789abcdef";

pub struct LoadServer {
    pub addr: SocketAddr,
    pub process: Guarded,
    http: reqwest::Client,
    pub tenant: String,
    pub api_key: String,
}

impl LoadServer {
    /// Starts `fleet-sync serve` (on `database_url`, else SQLite under `dir`) and
    /// makes the tenant.
    pub async fn start(dir: &Path, database_url: Option<&str>) -> Result<LoadServer> {
        let port = free_port()?;
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let mut cmd = Command::new(bin("fleet-sync")?);
        cmd.arg("serve")
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--data")
            .arg(dir.join("server"))
            .env("FLEET_OPERATOR_KEY", OPERATOR_KEY)
            .env("RUST_LOG", "warn");
        if let Some(url) = database_url {
            cmd.arg("--database-url").arg(url);
        }
        let mut process = Guarded::spawn("fleet-sync serve", cmd, &dir.join("server.log"))?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()?;
        let health = format!("http://{addr}/healthz");
        let probe = http.clone();
        let up = tokio::task::spawn_blocking(move || -> Result<()> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            wait_for(
                "the server to answer /healthz",
                Duration::from_secs(60),
                Duration::from_millis(50),
                || {
                    Ok(rt
                        .block_on(probe.get(&health).send())
                        .ok()
                        .filter(|r| r.status().is_success())
                        .map(|_| ()))
                },
            )
        })
        .await?;
        if let Err(e) = up {
            let exited = process.exited()?;
            bail!("{e:#} (exited: {exited:?})\n{}", process.log_tail(30));
        }
        let mut server = LoadServer {
            addr,
            process,
            http,
            tenant: String::new(),
            api_key: String::new(),
        };
        let made = server
            .call(
                "POST",
                "/api/v1/tenants",
                OPERATOR_KEY,
                Some(json!({"name": "load", "limits": {"api_rate_per_min": 100_000_000}})),
            )
            .await?;
        server.tenant = made["tenant"]["id"]
            .as_str()
            .context("tenant id")?
            .to_owned();
        server.api_key = made["admin_key"]["secret"]
            .as_str()
            .context("admin key")?
            .to_owned();
        Ok(server)
    }

    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// One operator-API call; the JSON answer of a 2xx.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        key: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let url = format!("{}{path}", self.url());
        let mut req = match method {
            "POST" => self.http.post(&url),
            _ => self.http.get(&url),
        }
        .bearer_auth(key);
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(serde_json::to_vec(&b)?);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = resp.status();
        let text = resp.text().await?;
        if !status.is_success() {
            bail!("{method} {path} answered {status}: {text}");
        }
        serde_json::from_str(&text).with_context(|| format!("{method} {path} answered {text:?}"))
    }

    /// An enrollment token for `uses` devices.
    pub async fn token(&self, uses: u32) -> Result<String> {
        let v = self
            .call(
                "POST",
                "/api/v1/enrollment-tokens",
                &self.api_key,
                Some(json!({"ttl_s": 3_600, "uses": uses})),
            )
            .await?;
        Ok(v["token"].as_str().context("token")?.to_owned())
    }

    /// `device id -> event_count` as `/api/v1/devices` reports it.
    pub async fn event_counts(&self) -> Result<std::collections::HashMap<String, u64>> {
        let v = self
            .call("GET", "/api/v1/devices", &self.api_key, None)
            .await?;
        v.as_array()
            .context("devices is not a list")?
            .iter()
            .map(|d| {
                Ok((
                    d["id"].as_str().context("device id")?.to_owned(),
                    d["event_count"].as_u64().context("event_count")?,
                ))
            })
            .collect()
    }

    /// The server's log so far (its last lines), for failure messages.
    pub fn log_tail(&self) -> String {
        self.process.log_tail(30)
    }
}
