//! Inspections (DVIR) over real HTTP: an unsafe defect reported through the API
//! flags its vehicle in the kiosk's signed snapshot until a mechanic signs the
//! repair; bad submissions are refused with their own codes and write nothing;
//! the driver's role cannot sign a repair, and every step is audited.

use ed25519_dalek::SigningKey;
use fleet_protocol::api::EnrollResponse;
use fleet_protocol::auth::{self, sign_request};
use fleet_protocol::label::TenantTrust;
use fleet_protocol::snapshot::{SignedSnapshot, Snapshot};
use fleet_sync::storage::kiosk::BlobRecord;
use fleet_sync::storage::Storage;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

struct Server {
    url: String,
    storage: Arc<dyn Storage>,
    http: reqwest::Client,
    _stop: tokio::sync::oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

struct Kiosk {
    id: Uuid,
    key: SigningKey,
    enrolled: EnrollResponse,
}

impl Server {
    async fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let storage = fleet_sync::open_sqlite(dir.path()).await.unwrap();
        let state = fleet_sync::AppState::new(storage.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(fleet_sync::serve(listener, state, async {
            let _ = stopped.await;
        }));
        Server {
            url: format!("http://{addr}"),
            storage,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap(),
            _stop: stop,
            _dir: dir,
        }
    }

    async fn enroll(&self, tenant: Uuid) -> Kiosk {
        let token = self
            .storage
            .create_enrollment_token(tenant, Duration::from_secs(600), 1)
            .await
            .unwrap()
            .token;
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        let public_key = auth::encode_public_key(&key.verifying_key());
        let proof = auth::sign_b64(&key, &auth::enroll_message(&token, &public_key));
        let body = json!({ "token": token, "public_key": public_key, "name": "yard kiosk", "proof": proof, "agent_version": null });
        let r = self
            .http
            .post(format!("{}/sync/v1/enroll", self.url))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let enrolled: EnrollResponse = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        Kiosk {
            id: enrolled.device_id,
            key,
            enrolled,
        }
    }

    async fn api(
        &self,
        key: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .header("authorization", format!("Bearer {key}"));
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let bytes = r.bytes().await.unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// The kiosk's view: its signed snapshot, verified with the enrolled key.
    async fn snapshot(&self, k: &Kiosk) -> Snapshot {
        let path = "/sync/v1/snapshot";
        let authz = sign_request(
            &k.key,
            k.id,
            "GET",
            path,
            fleet_sync::storage::now_ms(),
            b"",
        );
        let r = self
            .http
            .get(format!("{}{path}", self.url))
            .header("authorization", authz)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let signed = SignedSnapshot::from_json(&r.bytes().await.unwrap()).unwrap();
        let trust = TenantTrust::from_b64(
            k.enrolled.tenant_id,
            k.enrolled.tenant_public_key.as_deref().unwrap(),
        )
        .unwrap();
        signed
            .verify(&trust, fleet_sync::storage::now_ms())
            .unwrap()
    }
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

async fn signature_blob(s: &Server, tenant: Uuid, seed: u8) -> String {
    let sha = format!("{seed:02x}").repeat(32);
    s.storage
        .index_blob(
            tenant,
            &BlobRecord {
                sha256: sha.clone(),
                size: 100,
                content_type: "image/png".into(),
                device_id: None,
                stored_at_ms: fleet_sync::storage::now_ms(),
            },
        )
        .await
        .unwrap();
    sha
}

#[tokio::test]
async fn an_unsafe_defect_flags_the_vehicle_in_the_kiosk_snapshot_until_a_mechanic_signs_the_repair(
) {
    use reqwest::Method as M;
    let s = Server::start().await;
    let t = s.storage.create_tenant("yard").await.unwrap();
    let (tenant, key) = (t.tenant_id, t.api_key);
    let kiosk = s.enroll(tenant).await;
    let (st, van) = s
        .api(
            &key,
            M::POST,
            "/api/v1/labels",
            Some(json!({"kind": "vehicle", "name": "Van 7"})),
        )
        .await;
    assert_eq!(st, 201, "{van}");
    let van_id = van["id"].as_str().unwrap().to_owned();
    let (st, form) = s
        .api(
            &key,
            M::POST,
            "/api/v1/inspections/forms",
            Some(
                json!({"vehicle_type": "van", "name": "Van pre-trip", "items": [
                {"id": "brakes", "label": "Brakes"}, {"id": "lights", "label": "Lights"}]}),
            ),
        )
        .await;
    assert_eq!(st, 201, "{form}");
    let driver_sig = signature_blob(&s, tenant, 0xab).await;

    // Refused submissions write nothing.
    let good = json!({
        "id": Uuid::new_v4(), "asset_id": van_id, "form_id": form["id"], "driver": "Dana",
        "signature_sha256": driver_sig, "odometer_km": 48_210.5,
        "results": [{"item": "brakes", "ok": false}, {"item": "lights", "ok": true}],
        "defects": [{"item": "brakes", "description": "brake pedal soft", "severity": "unsafe"}],
    });
    let mut missing_item = good.clone();
    missing_item["results"] = json!([{"item": "brakes", "ok": false}]);
    let mut unknown_sig = good.clone();
    unknown_sig["signature_sha256"] = json!("cd".repeat(32));
    let mut unknown_form = good.clone();
    unknown_form["form_id"] = json!(Uuid::new_v4());
    let mut bad_severity = good.clone();
    bad_severity["defects"][0]["severity"] = json!("scary");
    for (body, want) in [
        (missing_item, "incomplete_inspection"),
        (unknown_sig, "unknown_blob"),
        (unknown_form, "unknown_form"),
        (bad_severity, "bad_json"),
    ] {
        let (st, v) = s
            .api(&key, M::POST, "/api/v1/inspections", Some(body))
            .await;
        assert_eq!((st, code(&v)), (400, want), "{v}");
    }
    let (_, list) = s.api(&key, M::GET, "/api/v1/inspections", None).await;
    assert_eq!(
        list["inspections"],
        json!([]),
        "a refused submission writes nothing"
    );
    assert!(!s.snapshot(&kiosk).await.assets[0].unsafe_defect);

    // The report: stored once, and the kiosk's next snapshot refuses the van.
    let (st, stored) = s
        .api(&key, M::POST, "/api/v1/inspections", Some(good.clone()))
        .await;
    assert_eq!(st, 201, "{stored}");
    let (st, again) = s
        .api(&key, M::POST, "/api/v1/inspections", Some(good.clone()))
        .await;
    assert_eq!(st, 200, "a resend answers the stored inspection");
    assert_eq!(again["id"], stored["id"]);
    let snap = s.snapshot(&kiosk).await;
    assert_eq!(snap.assets.len(), 1);
    assert!(
        snap.assets[0].unsafe_defect,
        "the kiosk must not hand the van out"
    );

    // The driver cannot sign the repair; a mechanic can, once, with a signature.
    let defect = stored["defects"][0]["id"].as_str().unwrap().to_owned();
    let repair_path = format!("/api/v1/inspections/defects/{defect}/repair");
    let (_, driver) = s
        .api(
            &key,
            M::POST,
            "/api/v1/keys",
            Some(json!({"name": "driver", "role": "driver"})),
        )
        .await;
    let driver_key = driver["secret"].as_str().unwrap().to_owned();
    let mechanic_sig = signature_blob(&s, tenant, 0xef).await;
    let repair =
        json!({"mechanic": "Mo", "note": "pads replaced", "signature_sha256": mechanic_sig});
    let (st, v) = s
        .api(&driver_key, M::POST, &repair_path, Some(repair.clone()))
        .await;
    assert_eq!(st, 403, "{v}");
    let (st, v) = s
        .api(
            &key,
            M::POST,
            &repair_path,
            Some(json!({"mechanic": "Mo", "signature_sha256": "00".repeat(32)})),
        )
        .await;
    assert_eq!((st, code(&v)), (400, "unknown_blob"), "{v}");
    assert!(
        s.snapshot(&kiosk).await.assets[0].unsafe_defect,
        "still blocked"
    );
    let (st, fixed) = s
        .api(&key, M::POST, &repair_path, Some(repair.clone()))
        .await;
    assert_eq!(st, 200, "{fixed}");
    assert_eq!(fixed["repair"]["mechanic"], "Mo");
    let (st, v) = s.api(&key, M::POST, &repair_path, Some(repair)).await;
    assert_eq!((st, code(&v)), (409, "already_repaired"), "{v}");
    assert!(
        !s.snapshot(&kiosk).await.assets[0].unsafe_defect,
        "handout allowed again"
    );

    let (_, open) = s
        .api(&key, M::GET, "/api/v1/inspections/defects", None)
        .await;
    assert_eq!(open["defects"], json!([]));
    let (_, audit) = s.api(&key, M::GET, "/api/v1/audit", None).await;
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["action"].as_str()).collect())
        .unwrap_or_default();
    for a in [
        "inspection_form.create",
        "inspection.submit",
        "defect.repair",
    ] {
        assert!(actions.contains(&a), "audit lacks {a}: {audit}");
    }
}
