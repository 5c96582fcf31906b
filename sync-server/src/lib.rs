//! The fleet sync server: device sync endpoints, the operator API, the dashboard
//! and the storage behind them.
//!
//! Tests drive [`router`] directly with `tower::ServiceExt::oneshot`, or bind
//! `127.0.0.1:0` and call [`serve`].

pub mod admin;
pub mod analytics;
pub mod custody;
pub mod docs;
pub mod http;
pub mod labels;
pub mod live;
pub mod mail;
mod pdf;
pub mod reservations;
pub mod rollout;
pub mod sealing;
pub mod storage;
pub mod timebase;
pub mod tls;
pub mod webhooks;

#[cfg(feature = "demo")]
pub mod demo;

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex};
use uuid::Uuid;

pub use http::router;

/// Knobs of the HTTP layer.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Largest batch body accepted, in bytes.
    pub max_batch_bytes: usize,
    /// Largest automerge sync message accepted, in bytes.
    pub max_doc_message_bytes: usize,
    /// A vehicle not heard from for this long shows as offline.
    pub offline_after_ms: i64,
    /// The bearer token `/metrics` asks for; without one the page is off.
    pub metrics_token: Option<String>,
    /// Largest request body of any route without a larger limit of its own
    /// (`http::limits::body_limit_for`).
    pub max_body_bytes: usize,
    /// Requests a minute per API key for tenants without a limit of their own.
    pub default_api_rate_per_min: u32,
    /// Requests a minute per device on `/sync/v1/*`.
    pub device_rate_per_min: u32,
    /// Users a tenant may have when the operator set no limit for it.
    pub default_max_users: Option<u64>,
    /// Where uploaded blobs are kept (`--blob-dir`); `None` turns blobs off.
    pub blob_dir: Option<std::path::PathBuf>,
    /// Largest blob a device may upload, in bytes.
    pub max_blob_bytes: usize,
    /// Accept webhook URLs on loopback and private networks (`--allow-private-webhooks`).
    pub allow_private_webhooks: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_batch_bytes: 8 << 20,
            max_doc_message_bytes: 4 << 20,
            offline_after_ms: 120_000,
            metrics_token: None,
            max_body_bytes: 1 << 20,
            default_api_rate_per_min: 600,
            device_rate_per_min: 600,
            default_max_users: None,
            blob_dir: None,
            max_blob_bytes: 2 << 20,
            allow_private_webhooks: false,
        }
    }
}

type DocKey = (Uuid, String);

/// Serialises the rounds on one document and keeps each device's live sync state
/// between requests (the stored, encoded form is the fallback after a restart).
#[derive(Default)]
pub struct DocHub {
    locks: Mutex<HashMap<DocKey, Arc<tokio::sync::Mutex<()>>>>,
    states: Mutex<HashMap<(Uuid, String, Uuid), automerge::sync::State>>,
}

impl DocHub {
    pub fn lock_for(&self, tenant: Uuid, doc_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks
            .entry((tenant, doc_id.to_owned()))
            .or_default()
            .clone()
    }

    pub fn take_state(
        &self,
        tenant: Uuid,
        doc_id: &str,
        device: Uuid,
    ) -> Option<automerge::sync::State> {
        self.states
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(tenant, doc_id.to_owned(), device))
    }

    pub fn put_state(
        &self,
        tenant: Uuid,
        doc_id: &str,
        device: Uuid,
        state: automerge::sync::State,
    ) {
        self.states
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((tenant, doc_id.to_owned(), device), state);
    }
}

#[derive(Clone)]
pub struct AppState {
    pub storage: Arc<dyn storage::Storage>,
    pub settings: Arc<Settings>,
    pub docs: Arc<DocHub>,
    pub metrics: Arc<http::metrics::ServerMetrics>,
    pub access: Arc<http::auth::AccessState>,
    /// The live stream: `state.live.publish(tenant, event)`.
    pub live: live::Hub,
}

impl AppState {
    pub fn new(storage: Arc<dyn storage::Storage>) -> Self {
        AppState {
            storage: storage.clone(),
            settings: Arc::new(Settings::default()),
            docs: Arc::new(DocHub::default()),
            metrics: Arc::default(),
            access: Arc::default(),
            live: live::Hub::new(storage, live::StreamSettings::default()),
        }
    }

    /// Replaces the live stream's settings (before the server starts).
    pub fn with_stream_settings(mut self, settings: live::StreamSettings) -> Self {
        self.live = live::Hub::new(self.storage.clone(), settings);
        self
    }

    pub fn with_settings(mut self, settings: Settings) -> Self {
        self.settings = Arc::new(settings);
        self
    }

    /// Accepts `key` as the operator's: it creates and configures tenants.
    pub fn with_operator_key(mut self, key: &str) -> Self {
        self.access = Arc::new(http::auth::AccessState::new(Some(key)));
        self
    }
}

/// Serves the API on `listener` until `shutdown` resolves, then finishes the
/// requests in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Handlers see the client's address (login attempts are limited per address).
    let app = router(state).into_make_service_with_connect_info::<http::session::ClientAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Opens the database `database_url` names (PostgreSQL or a SQLite file), or
/// without one the SQLite database `data_dir/fleet.db`.
pub async fn open_backend(
    database_url: Option<&str>,
    data_dir: &Path,
) -> anyhow::Result<storage::Backend> {
    use anyhow::Context;
    match database_url.map(str::trim).filter(|u| !u.is_empty()) {
        Some(url) => storage::open(url)
            .await
            .with_context(|| format!("opening the database at {}", redact_url(url))),
        None => {
            tokio::fs::create_dir_all(data_dir)
                .await
                .with_context(|| format!("creating data directory {}", data_dir.display()))?;
            let path = data_dir.join("fleet.db");
            storage::open(&path.to_string_lossy())
                .await
                .with_context(|| format!("opening {}", path.display()))
        }
    }
}

/// `url` with any password replaced, for messages and logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Opens (creating and migrating) the SQLite database `data_dir/fleet.db`.
pub async fn open_sqlite(data_dir: &Path) -> anyhow::Result<Arc<dyn storage::Storage>> {
    use anyhow::Context;
    tokio::fs::create_dir_all(data_dir)
        .await
        .with_context(|| format!("creating data directory {}", data_dir.display()))?;
    let path = data_dir.join("fleet.db");
    let db = tokio::task::spawn_blocking(move || {
        storage::sqlite::SqliteStorage::open(&path)
            .with_context(|| format!("opening {}", path.display()))
    })
    .await??;
    Ok(Arc::new(db))
}
