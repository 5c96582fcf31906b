//! `fleet-sync`'s router served inside the test process on loopback, over a
//! storage the test holds too, and the calls tests make of it: the operator
//! API with a bearer key, a tenant with its admin key, a device enrolled
//! straight into storage or over the enrollment endpoint, and a kiosk's signed
//! snapshot.

use ed25519_dalek::SigningKey;
use fleet_protocol::api::EnrollResponse;
use fleet_protocol::auth::{self, sign_request};
use fleet_protocol::label::TenantTrust;
use fleet_protocol::snapshot::{SignedSnapshot, Snapshot};
use fleet_sync::storage::{now_ms, DeviceRecord, EnrollDevice, Storage};
use fleet_sync::{AppState, Settings};
use reqwest::Method;
use serde_json::{json, Value};
use std::fmt::Debug;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// A served API; it stops when dropped.
pub struct ApiServer {
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub url: String,
    /// The address `url` names, for raw TCP.
    pub addr: SocketAddr,
    /// The state the server runs on, for driving its background passes.
    pub state: AppState,
    pub storage: Arc<dyn Storage>,
    pub http: reqwest::Client,
    dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// A device enrolled over `/sync/v1/enroll`, with the key it signs with.
pub struct EnrolledDevice {
    pub id: Uuid,
    pub key: SigningKey,
    pub enrolled: EnrollResponse,
}

impl EnrolledDevice {
    /// The tenant key enrollment handed over, as a kiosk trusts it.
    pub fn trust(&self) -> TenantTrust {
        TenantTrust::from_b64(
            self.enrolled.tenant_id,
            self.enrolled
                .tenant_public_key
                .as_deref()
                .expect("enrollment hands over the tenant key"),
        )
        .expect("the tenant key decodes")
    }
}

impl ApiServer {
    /// Serves `storage` on a free loopback port.
    pub async fn start(storage: Arc<dyn Storage>) -> ApiServer {
        let dir = tempfile::tempdir().expect("a temporary folder");
        ApiServer::serve(AppState::new(storage), dir).await
    }

    /// Serves a fresh SQLite database in a temporary folder.
    pub async fn start_sqlite() -> ApiServer {
        ApiServer::start_sqlite_with(|_| Settings::default()).await
    }

    /// As [`ApiServer::start_sqlite`], with the settings `settings` gives for
    /// the temporary folder.
    pub async fn start_sqlite_with(settings: impl FnOnce(&Path) -> Settings) -> ApiServer {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let storage = fleet_sync::open_sqlite(dir.path())
            .await
            .expect("SQLite opens");
        let state = AppState::new(storage.clone()).with_settings(settings(dir.path()));
        ApiServer::serve(state, dir).await
    }

    async fn serve(state: AppState, dir: tempfile::TempDir) -> ApiServer {
        let storage = state.storage.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let addr = listener.local_addr().expect("a bound address");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(fleet_sync::serve(listener, state.clone(), async {
            let _ = stopped.await;
        }));
        ApiServer {
            url: format!("http://{addr}"),
            addr,
            state,
            storage,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("an HTTP client"),
            dir,
            _stop: stop,
        }
    }

    /// A folder that lasts as long as the server (with `start_sqlite`, the
    /// database's folder).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A new tenant: its id and admin API key.
    pub async fn tenant(&self, name: &str) -> (Uuid, String) {
        let t = self
            .storage
            .create_tenant(name)
            .await
            .expect("tenant created");
        (t.tenant_id, t.api_key)
    }

    /// A one-use enrollment token of `tenant`, good for ten minutes.
    pub async fn enrollment_token(&self, tenant: Uuid) -> String {
        self.storage
            .create_enrollment_token(tenant, Duration::from_secs(600), 1)
            .await
            .expect("enrollment token")
            .token
    }

    /// A device enrolled straight into storage, as enrollment would; its key
    /// is thrown away, so it suits devices whose events are ingested directly.
    pub async fn enroll_in_storage(&self, tenant: Uuid, name: &str) -> DeviceRecord {
        let token = self.enrollment_token(tenant).await;
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        self.storage
            .enroll_device(EnrollDevice {
                token,
                public_key: auth::encode_public_key(&key.verifying_key()),
                name: Some(name.into()),
                agent_version: None,
                now_ms: now_ms(),
            })
            .await
            .expect("device enrolled")
    }

    /// A device enrolled through `/sync/v1/enroll` with a fresh key, as an
    /// agent enrolls.
    pub async fn enroll_over_http(&self, tenant: Uuid, name: &str) -> EnrolledDevice {
        let token = self.enrollment_token(tenant).await;
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        let public_key = auth::encode_public_key(&key.verifying_key());
        let proof = auth::sign_b64(&key, &auth::enroll_message(&token, &public_key));
        let body = json!({ "token": token, "public_key": public_key, "name": name, "proof": proof, "agent_version": null });
        let r = self
            .http
            .post(format!("{}/sync/v1/enroll", self.url))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("enroll request");
        assert_eq!(r.status(), 200, "enrollment");
        let enrolled: EnrollResponse =
            serde_json::from_slice(&r.bytes().await.expect("enroll answer"))
                .expect("an enrollment answer");
        EnrolledDevice {
            id: enrolled.device_id,
            key,
            enrolled,
        }
    }

    /// The device's signed snapshot from `/sync/v1/snapshot`, verified with
    /// the tenant key enrollment handed over.
    pub async fn snapshot(&self, device: &EnrolledDevice) -> Snapshot {
        let path = "/sync/v1/snapshot";
        let authz = sign_request(&device.key, device.id, "GET", path, now_ms(), b"");
        let r = self
            .http
            .get(format!("{}{path}", self.url))
            .header("authorization", authz)
            .send()
            .await
            .expect("snapshot request");
        assert_eq!(r.status(), 200, "snapshot");
        let signed = SignedSnapshot::from_json(&r.bytes().await.expect("snapshot body"))
            .expect("a signed snapshot");
        signed
            .verify(&device.trust(), now_ms())
            .expect("the snapshot verifies")
    }

    /// A request to `path` with `key` as its bearer token.
    pub fn request<M>(&self, key: &str, method: M, path: &str) -> reqwest::RequestBuilder
    where
        M: TryInto<Method>,
        M::Error: Debug,
    {
        self.http
            .request(
                method.try_into().expect("an HTTP method"),
                format!("{}{path}", self.url),
            )
            .header("authorization", format!("Bearer {key}"))
    }

    /// Sends `body` (as JSON, when there is one); the status and the body.
    pub async fn raw<M>(
        &self,
        key: &str,
        method: M,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Vec<u8>)
    where
        M: TryInto<Method>,
        M::Error: Debug,
    {
        let mut req = self.request(key, method, path);
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status().as_u16();
        (status, resp.bytes().await.expect("answer body").to_vec())
    }

    /// As [`ApiServer::raw`], the body read as JSON (`null` when it is not).
    pub async fn json<M>(
        &self,
        key: &str,
        method: M,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value)
    where
        M: TryInto<Method>,
        M::Error: Debug,
    {
        let (status, bytes) = self.raw(key, method, path, body).await;
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }
}
