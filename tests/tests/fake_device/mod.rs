//! An in-process `fleet-sync` on a loopback port, its operator API, and fake
//! devices that enroll and sign their requests exactly as the agent does, for
//! the control-plane and webhook tests.

#![allow(dead_code)]

use anyhow::{ensure, Context, Result};
use ed25519_dalek::SigningKey;
use fleet_protocol::api::{EnrollRequest, EnrollResponse};
use fleet_protocol::control::{ConfigApplyError, ConfigOffer, StatusReport};
use fleet_protocol::{
    encode_batch, BatchHeader, BootId, Event, EventData, EventTime, Hlc, Kind, Priority,
};
use fleet_sync::storage::sqlite::SqliteStorage;
use fleet_sync::{AppState, Settings};
use serde_json::Value;
use std::sync::Arc;
use tokio::sync::oneshot;
use uuid::Uuid;

pub struct Server {
    pub url: String,
    pub state: AppState,
    pub api_key: String,
    pub tenant: Uuid,
    http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub async fn start_server(settings: Settings) -> Result<Server> {
    let dir = tempfile::tempdir()?;
    let storage = SqliteStorage::open(&dir.path().join("fleet.db"))?;
    let storage: Arc<dyn fleet_sync::storage::Storage> = Arc::new(storage);
    let tenant = storage.create_tenant("acme").await?;
    let state = AppState::new(storage).with_settings(settings);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(fleet_sync::serve(listener, state.clone(), async move {
        let _ = stopped.await;
    }));
    Ok(Server {
        url,
        state,
        api_key: tenant.api_key,
        tenant: tenant.tenant_id,
        http: reqwest::Client::new(),
        stop: Some(stop),
        _dir: dir,
    })
}

impl Server {
    /// An operator API call; answers the status and the JSON body (null if none).
    pub async fn api(&self, method: &str, path: &str, body: Option<Value>) -> Result<(u16, Value)> {
        let method = reqwest::Method::from_bytes(method.as_bytes())?;
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.api_key);
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await?;
        let v = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .with_context(|| format!("{path} answered {}", String::from_utf8_lossy(&bytes)))?
        };
        Ok((status, v))
    }

    /// An API call that must answer `want`.
    pub async fn expect(
        &self,
        want: u16,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let (status, v) = self.api(method, path, body).await?;
        ensure!(
            status == want,
            "{method} {path}: {status} {v}, expected {want}"
        );
        Ok(v)
    }

    pub async fn token(&self, uses: u32) -> Result<String> {
        let v = self
            .expect(
                201,
                "POST",
                "/api/v1/enrollment-tokens",
                Some(serde_json::json!({ "ttl_s": 600, "uses": uses })),
            )
            .await?;
        Ok(v["token"].as_str().context("no token")?.to_owned())
    }
}

pub struct FakeDevice {
    pub id: Uuid,
    pub tenant: Uuid,
    key: SigningKey,
    url: String,
    http: reqwest::Client,
    boot: BootId,
}

impl FakeDevice {
    pub async fn enroll(server: &Server, token: &str, name: &str) -> Result<FakeDevice> {
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
            agent_version: Some("fake".into()),
            kind: Default::default(),
        };
        let http = reqwest::Client::new();
        let resp = http
            .post(format!(
                "{}{}",
                server.url,
                fleet_protocol::api::PATH_ENROLL
            ))
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&req)?)
            .send()
            .await?;
        ensure!(resp.status().is_success(), "enroll: {}", resp.status());
        let r: EnrollResponse = serde_json::from_slice(&resp.bytes().await?)?;
        Ok(FakeDevice {
            id: r.device_id,
            tenant: r.tenant_id,
            key,
            url: server.url.clone(),
            http,
            boot: BootId::random(),
        })
    }

    /// A request signed as the agent signs it; answers the status and body.
    pub async fn signed(
        &self,
        method: &str,
        path_and_query: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<(u16, Vec<u8>)> {
        let auth = fleet_protocol::auth::sign_request(
            &self.key,
            self.id,
            method,
            path_and_query,
            fleet_sync::storage::now_ms(),
            &body,
        );
        let mut req = self
            .http
            .request(
                reqwest::Method::from_bytes(method.as_bytes())?,
                format!("{}{path_and_query}", self.url),
            )
            .header("authorization", auth);
        if !body.is_empty() {
            req = req.header("content-type", content_type).body(body);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        Ok((status, resp.bytes().await?.to_vec()))
    }

    /// The config the server means for this device; `None` on 204.
    pub async fn pull_config(&self, have: u32) -> Result<Option<ConfigOffer>> {
        let path = format!("{}?have={have}", fleet_protocol::control::PATH_CONFIG);
        let (status, body) = self.signed("GET", &path, "", Vec::new()).await?;
        match status {
            204 => Ok(None),
            200 => Ok(Some(serde_json::from_slice(&body)?)),
            other => anyhow::bail!("config pull: {other} {}", String::from_utf8_lossy(&body)),
        }
    }

    /// Reports running `version`, or having failed to apply `failed`.
    pub async fn report(&self, version: u32, failed: Option<u32>) -> Result<u16> {
        let report = StatusReport {
            agent_version: "fake-1".into(),
            config_version: version,
            config_error: failed.map(|v| ConfigApplyError {
                version: v,
                message: "threshold out of range".into(),
            }),
            ..StatusReport::default()
        };
        let (status, _) = self
            .signed(
                "POST",
                fleet_protocol::control::PATH_STATUS,
                "application/json",
                serde_json::to_vec(&report)?,
            )
            .await?;
        Ok(status)
    }

    /// Sends events `(seq, kind, data)` as one batch; answers the HTTP status.
    pub async fn send_batch(&self, events: &[(u64, &'static str, Value)]) -> Result<u16> {
        let now = fleet_sync::storage::now_ms();
        let events: Vec<Event> = events
            .iter()
            .map(|(seq, kind, data)| Event {
                seq: *seq,
                kind: Kind::known(kind),
                priority: Priority::Critical,
                time: EventTime {
                    boot_id: self.boot,
                    mono_ms: *seq * 1000,
                    wall_ms: now,
                    hlc: Hlc::new(now as u64, *seq as u16),
                },
                config_version: 0,
                data: EventData::Json(data.clone()),
            })
            .collect();
        let header = BatchHeader {
            tenant_id: self.tenant,
            device_id: self.id,
            first_seq: events.first().map_or(1, |e| e.seq),
            last_seq: events.last().map_or(0, |e| e.seq),
            anchors: Vec::new(),
        };
        let frame = encode_batch(&header, &events, 1)?;
        let (status, body) = self
            .signed(
                "POST",
                fleet_protocol::api::PATH_BATCHES,
                fleet_protocol::api::CONTENT_TYPE_BATCH,
                frame,
            )
            .await?;
        ensure!(
            status == 200,
            "batch: {status} {}",
            String::from_utf8_lossy(&body)
        );
        Ok(status)
    }
}
