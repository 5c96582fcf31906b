//! automerge document sync through the real client and store against a fake
//! server that runs automerge's sync protocol, one round per request.

use automerge::sync::{Message, State, SyncDoc};
use automerge::AutoCommit;
use axum::body::Bytes;
use axum::extract::{Path, State as AxState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use ed25519_dalek::SigningKey;
use fleet_agent::clock::SystemClock;
use fleet_agent::identity::Identity;
use fleet_agent::store::{Store, StoreOptions};
use fleet_agent::sync::client::SyncClient;
use fleet_agent::sync::docs;
use fleet_protocol::BootId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use uuid::Uuid;

#[derive(Default)]
struct DocServer {
    docs: HashMap<String, AutoCommit>,
    states: HashMap<(String, Uuid), State>,
    /// Per device: how many messages it sent that carried changes.
    messages_with_changes: HashMap<Uuid, usize>,
    rounds: HashMap<Uuid, usize>,
}

type Shared = Arc<Mutex<DocServer>>;

async fn doc_sync(
    AxState(server): AxState<Shared>,
    Path(rest): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(doc_id) = rest.strip_suffix("/sync") else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let header = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Ok(auth) = fleet_protocol::auth::parse_header(header) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let Ok(message) = Message::decode(&body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let mut s = server.lock().unwrap();
    *s.rounds.entry(auth.device_id).or_default() += 1;
    if !message.changes.is_empty() {
        *s.messages_with_changes.entry(auth.device_id).or_default() += 1;
    }
    let key = (doc_id.to_owned(), auth.device_id);
    let mut state = s.states.remove(&key).unwrap_or_default();
    let doc = s.docs.entry(doc_id.to_owned()).or_default();
    doc.sync()
        .receive_sync_message(&mut state, message)
        .unwrap();
    let reply = doc.sync().generate_sync_message(&mut state);
    s.states.insert(key, state);
    match reply {
        Some(m) => m.encode().into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    }
}

async fn start_server() -> (Shared, String) {
    let shared: Shared = Arc::default();
    let app = Router::new()
        .route("/sync/v1/docs/{*rest}", post(doc_sync))
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (shared, url)
}

struct Device {
    identity: Identity,
    dir: tempfile::TempDir,
}

impl Device {
    fn new(url: &str, tenant: Uuid) -> Self {
        let identity = Identity::new(
            Uuid::new_v4(),
            tenant,
            "dev".into(),
            url.to_owned(),
            SigningKey::generate(&mut rand::rngs::OsRng),
            None,
        );
        Device {
            identity,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn open(&self) -> Store {
        Store::open(self.dir.path(), BootId::random(), StoreOptions::default()).unwrap()
    }

    fn client(&self) -> SyncClient {
        SyncClient::new(
            &self.identity,
            Arc::new(SystemClock::new()),
            Duration::from_secs(5),
        )
        .unwrap()
    }

    async fn set_note(&self, vehicle: Uuid, text: &str) {
        let store = self.open();
        let (id, mut doc) = docs::load_note(&store, vehicle).await.unwrap();
        docs::set_note_text(&id, &mut doc, text).unwrap();
        store.doc_save(&id, &mut doc).await.unwrap();
        store.close().await.unwrap();
    }

    async fn note(&self, vehicle: Uuid) -> Option<String> {
        let store = self.open();
        let doc = store
            .doc_load(&docs::vehicle_note_id(vehicle))
            .await
            .unwrap();
        store.close().await.unwrap();
        doc.as_ref().and_then(docs::note_text)
    }

    async fn sync(&self) -> docs::DocsReport {
        let store = self.open();
        let report = docs::sync_all(&store, &self.client(), self.identity.device_id)
            .await
            .unwrap();
        store.close().await.unwrap();
        report
    }
}

fn server_note(server: &Shared, vehicle: Uuid) -> Option<String> {
    let s = server.lock().unwrap();
    s.docs
        .get(&docs::vehicle_note_id(vehicle))
        .and_then(docs::note_text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_devices_editing_one_note_offline_converge_with_the_server() {
    let (server, url) = start_server().await;
    let tenant = Uuid::new_v4();
    let truck = Device::new(&url, tenant);
    let kiosk = Device::new(&url, tenant);
    let vehicle = truck.identity.device_id;

    truck.set_note(vehicle, "brakes squeak").await;
    kiosk.set_note(vehicle, "service booked friday").await;

    truck.sync().await;
    kiosk.sync().await;
    truck.sync().await;

    let on_truck = truck.note(vehicle).await.expect("truck has the note");
    let on_kiosk = kiosk.note(vehicle).await.expect("kiosk has the note");
    let on_server = server_note(&server, vehicle).expect("server has the note");
    assert_eq!(on_truck, on_kiosk);
    assert_eq!(on_truck, on_server);
    assert!(on_truck.contains("brakes squeak"), "{on_truck}");
    assert!(on_truck.contains("service booked friday"), "{on_truck}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_note_the_office_wrote_reaches_the_device_that_never_had_it() {
    let (server, url) = start_server().await;
    let truck = Device::new(&url, Uuid::new_v4());
    let vehicle = truck.identity.device_id;
    {
        let mut office = docs::new_note();
        docs::set_note_text("n", &mut office, "check the tail lift").unwrap();
        server
            .lock()
            .unwrap()
            .docs
            .insert(docs::vehicle_note_id(vehicle), office);
    }
    assert_eq!(truck.note(vehicle).await, None);
    truck.sync().await;
    assert_eq!(
        truck.note(vehicle).await.as_deref(),
        Some("check the tail lift")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sync_state_survives_a_restart_so_nothing_is_sent_again() {
    let (server, url) = start_server().await;
    let truck = Device::new(&url, Uuid::new_v4());
    let vehicle = truck.identity.device_id;
    let id = truck.identity.device_id;
    truck.set_note(vehicle, "spare tyre missing").await;
    truck.sync().await;
    let with_changes = server.lock().unwrap().messages_with_changes[&id];
    assert!(with_changes >= 1);

    // A restart: the store is reopened and a new client made.
    let report = truck.sync().await;
    assert_eq!(report.changed, 0);
    let s = server.lock().unwrap();
    assert_eq!(
        s.messages_with_changes[&id], with_changes,
        "changes were sent again after the restart"
    );
    assert_eq!(
        server_note_locked(&s, vehicle).as_deref(),
        Some("spare tyre missing")
    );
}

fn server_note_locked(s: &DocServer, vehicle: Uuid) -> Option<String> {
    s.docs
        .get(&docs::vehicle_note_id(vehicle))
        .and_then(docs::note_text)
}
