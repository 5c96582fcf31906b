//! What the live-stream and two-replica tests share: `fleet-sync serve` processes
//! with the stream's timings shortened, devices that enroll and sign their
//! batches as the agent does, and a WebSocket stream client.

#![allow(dead_code)]

use anyhow::{bail, ensure, Context, Result};
use ed25519_dalek::SigningKey;
use fleet_protocol::api::{EnrollRequest, EnrollResponse};
use fleet_protocol::event::Position;
use fleet_protocol::{
    encode_batch, BatchHeader, BootId, Event, EventData, EventTime, Hlc, Kind, Priority,
};
use fleet_tests::process::{bin, free_port, run_output, Guarded};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use uuid::Uuid;

/// Where a server keeps its data: a directory (SQLite) or a PostgreSQL URL.
#[derive(Clone)]
pub enum Db<'a> {
    Sqlite(&'a Path),
    Postgres(&'a str),
}

fn db_args(cmd: &mut Command, db: &Db<'_>, scratch: &Path) {
    match db {
        Db::Sqlite(dir) => {
            cmd.arg("--data").arg(dir);
        }
        Db::Postgres(url) => {
            cmd.arg("--data")
                .arg(scratch)
                .arg("--database-url")
                .arg(url);
        }
    }
    cmd.env_remove("FLEET_DATABASE_URL");
}

/// `fleet-sync admin … tenant create`: `(tenant_id, api_key)`.
pub fn create_tenant(db: &Db<'_>, scratch: &Path, name: &str) -> Result<(Uuid, String)> {
    let mut cmd = Command::new(bin("fleet-sync")?);
    cmd.arg("admin");
    db_args(&mut cmd, db, scratch);
    cmd.args(["tenant", "create", "--name", name]);
    let out = run_output(cmd, Duration::from_secs(30))?;
    let v: Value = serde_json::from_str(out.trim())?;
    Ok((
        v["tenant_id"].as_str().context("tenant_id")?.parse()?,
        v["api_key"].as_str().context("api_key")?.to_owned(),
    ))
}

/// A running `fleet-sync serve`, killed when dropped.
pub struct Serve {
    pub url: String,
    pub addr: String,
    proc: Guarded,
}

impl Serve {
    /// Starts a server with one-second heartbeats and a `client_queue`-event
    /// queue per stream client, and waits for `/readyz`.
    pub async fn start(
        db: &Db<'_>,
        scratch: &Path,
        name: &str,
        client_queue: usize,
    ) -> Result<Serve> {
        let port = free_port()?;
        let addr = format!("127.0.0.1:{port}");
        let mut cmd = Command::new(bin("fleet-sync")?);
        cmd.arg("serve").arg("--listen").arg(&addr);
        db_args(&mut cmd, db, scratch);
        cmd.args(["--stream-heartbeat-secs", "1", "--stream-client-queue"])
            .arg(client_queue.to_string())
            .env("RUST_LOG", "info");
        let mut proc = Guarded::spawn(name, cmd, &scratch.join(format!("{name}.log")))?;
        let url = format!("http://{addr}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = proc.exited()? {
                bail!("{name} exited with {status}:\n{}", proc.log_tail(30));
            }
            if let Ok(r) = http.get(format!("{url}/readyz")).send().await {
                if r.status().is_success() {
                    break;
                }
            }
            ensure!(
                Instant::now() < deadline,
                "{name} not ready:\n{}",
                proc.log_tail(30)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Serve { url, addr, proc })
    }

    pub fn kill(&mut self) -> Result<()> {
        self.proc.kill()
    }

    pub fn log_tail(&self) -> String {
        self.proc.log_tail(40)
    }

    /// A GET on the operator API that must answer 200.
    pub async fn get(&self, api_key: &str, path: &str) -> Result<Value> {
        let r = reqwest::Client::new()
            .get(format!("{}{path}", self.url))
            .bearer_auth(api_key)
            .send()
            .await?;
        let status = r.status();
        let body = r.text().await?;
        ensure!(status.is_success(), "GET {path}: {status} {body}");
        Ok(serde_json::from_str(&body)?)
    }

    pub async fn token(&self, api_key: &str, uses: u32) -> Result<String> {
        let r = reqwest::Client::new()
            .post(format!("{}/api/v1/enrollment-tokens", self.url))
            .bearer_auth(api_key)
            .header("content-type", "application/json")
            .body(json!({ "ttl_s": 600, "uses": uses }).to_string())
            .send()
            .await?;
        let status = r.status();
        let v: Value = serde_json::from_str(&r.text().await?)?;
        ensure!(status.as_u16() == 201, "token: {status} {v}");
        Ok(v["token"].as_str().context("token")?.to_owned())
    }
}

/// A device as the agent is one: its own key, signed requests.
pub struct Device {
    pub id: Uuid,
    pub tenant: Uuid,
    key: SigningKey,
    boot: BootId,
    http: reqwest::Client,
    next_seq: u64,
}

impl Device {
    pub async fn enroll(server_url: &str, token: &str, name: &str) -> Result<Device> {
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        let public_key = fleet_protocol::auth::encode_public_key(&key.verifying_key());
        let proof = fleet_protocol::auth::sign_b64(
            &key,
            &fleet_protocol::auth::enroll_message(token, &public_key),
        );
        let req = EnrollRequest {
            token: token.to_owned(),
            public_key,
            name: Some(name.to_owned()),
            proof,
            agent_version: Some("e2e".into()),
            kind: Default::default(),
        };
        let http = reqwest::Client::new();
        let resp = http
            .post(format!("{server_url}{}", fleet_protocol::api::PATH_ENROLL))
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&req)?)
            .send()
            .await?;
        ensure!(resp.status().is_success(), "enroll: {}", resp.status());
        let r: EnrollResponse = serde_json::from_slice(&resp.bytes().await?)?;
        Ok(Device {
            id: r.device_id,
            tenant: r.tenant_id,
            key,
            boot: BootId::random(),
            http,
            next_seq: 1,
        })
    }

    fn event(&mut self, kind: &'static str, data: EventData) -> Event {
        let seq = self.next_seq;
        self.next_seq += 1;
        let now = fleet_sync::storage::now_ms();
        Event {
            seq,
            kind: Kind::known(kind),
            priority: Priority::Critical,
            time: EventTime {
                boot_id: self.boot,
                mono_ms: seq * 1000,
                wall_ms: now,
                hlc: Hlc::new(now as u64, seq as u16),
            },
            config_version: 0,
            data,
        }
    }

    pub fn position(&mut self, lat: f64, lon: f64) -> Event {
        self.event(
            "position",
            EventData::Position(Position {
                lat_e7: (lat * 1e7) as i32,
                lon_e7: (lon * 1e7) as i32,
                alt_dm: None,
                speed_cms: Some(1000),
                heading_cdeg: None,
                hdop_d: Some(9),
                sats: Some(9),
                fix: 2,
            }),
        )
    }

    pub fn fault(&mut self, code: &str, padding: usize) -> Event {
        self.event(
            "dtc_set",
            EventData::Json(json!({ "code": code, "note": "x".repeat(padding) })),
        )
    }

    /// Sends `events` as one batch to `server_url`; it must be stored (200).
    pub async fn send(&self, server_url: &str, events: Vec<Event>) -> Result<()> {
        let header = BatchHeader {
            tenant_id: self.tenant,
            device_id: self.id,
            first_seq: events.first().map_or(1, |e| e.seq),
            last_seq: events.last().map_or(0, |e| e.seq),
            anchors: Vec::new(),
        };
        let frame = encode_batch(&header, &events, 1)?;
        let path = fleet_protocol::api::PATH_BATCHES;
        let auth = fleet_protocol::auth::sign_request(
            &self.key,
            self.id,
            "POST",
            path,
            fleet_sync::storage::now_ms(),
            &frame,
        );
        let resp = self
            .http
            .post(format!("{server_url}{path}"))
            .header("authorization", auth)
            .header("content-type", fleet_protocol::api::CONTENT_TYPE_BATCH)
            .body(frame)
            .send()
            .await?;
        let status = resp.status();
        ensure!(
            status.as_u16() == 200,
            "batch: {status} {}",
            resp.text().await.unwrap_or_default()
        );
        Ok(())
    }
}

/// A WebSocket client of `/api/v1/stream`.
pub struct StreamClient {
    ws: WebSocketStream<TcpStream>,
}

/// What a client read: a JSON message, or the close frame's code.
#[derive(Debug)]
pub enum Read {
    Json(Value),
    Closed(Option<u16>),
}

impl StreamClient {
    pub async fn connect(addr: &str, api_key: &str) -> Result<StreamClient> {
        let stream = TcpStream::connect(addr).await?;
        let mut req = format!("ws://{addr}/api/v1/stream").into_client_request()?;
        req.headers_mut()
            .insert("authorization", format!("Bearer {api_key}").parse()?);
        let (ws, _) = tokio_tungstenite::client_async(req, stream)
            .await
            .context("stream handshake")?;
        Ok(StreamClient { ws })
    }

    /// Sends a subscribe message and waits for its answer (`subscribed`,
    /// `resumed` or `gap`), which it returns.
    pub async fn subscribe(&mut self, message: Value) -> Result<Value> {
        self.ws.send(Message::text(message.to_string())).await?;
        loop {
            match self.read(Duration::from_secs(5)).await? {
                Read::Json(v) if v["type"] == "heartbeat" => continue,
                Read::Json(v) => return Ok(v),
                Read::Closed(code) => bail!("closed ({code:?}) before answering a subscribe"),
            }
        }
    }

    /// The next message within `wait`, answering pings on the way.
    pub async fn read(&mut self, wait: Duration) -> Result<Read> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .context("nothing arrived in time")?;
            match msg {
                None => return Ok(Read::Closed(None)),
                Some(Err(e)) => bail!("stream error: {e}"),
                Some(Ok(Message::Text(t))) => {
                    return Ok(Read::Json(serde_json::from_str(t.as_str())?))
                }
                Some(Ok(Message::Close(frame))) => {
                    return Ok(Read::Closed(frame.map(|f| u16::from(f.code))))
                }
                Some(Ok(_)) => continue,
            }
        }
    }

    /// The next `event` message within `wait`, skipping heartbeats.
    pub async fn next_event(&mut self, wait: Duration) -> Result<Value> {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.read(left).await? {
                Read::Json(v) if v["type"] == "event" => return Ok(v),
                Read::Json(v) if v["type"] == "heartbeat" => continue,
                Read::Json(v) => bail!("expected an event, got {v}"),
                Read::Closed(code) => bail!("closed ({code:?}) while waiting for an event"),
            }
        }
    }

    /// Events until none has come for `quiet` (heartbeats do not count).
    pub async fn drain_events(&mut self, quiet: Duration) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        let mut until = Instant::now() + quiet;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(out);
            }
            match self.read(left).await {
                Err(_) => return Ok(out),
                Ok(Read::Json(v)) if v["type"] == "event" => {
                    out.push(v);
                    until = Instant::now() + quiet;
                }
                Ok(Read::Json(_)) => {}
                Ok(Read::Closed(code)) => bail!("closed ({code:?}) while draining"),
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// A connection URL for a test database's own (row-level-security bound) role.
pub fn postgres_url(c: &tokio_postgres::Config) -> String {
    let host = match &c.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
    };
    format!(
        "postgres://{}:{}@{host}:{}/{}",
        c.get_user().unwrap_or_default(),
        String::from_utf8_lossy(c.get_password().unwrap_or_default()),
        c.get_ports().first().copied().unwrap_or(5432),
        c.get_dbname().unwrap_or_default()
    )
}
