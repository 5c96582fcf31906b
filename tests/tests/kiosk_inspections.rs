//! Inspections (DVIR) over real HTTP: an unsafe defect reported through the API
//! flags its vehicle in the kiosk's signed snapshot until a mechanic signs the
//! repair; bad submissions are refused with their own codes and write nothing;
//! the driver's role cannot sign a repair, and every step is audited.

use fleet_sync::storage::kiosk::BlobRecord;
use fleet_tests::api_server::ApiServer;
use serde_json::{json, Value};
use uuid::Uuid;

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

async fn signature_blob(s: &ApiServer, tenant: Uuid, seed: u8) -> String {
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
    let s = ApiServer::start_sqlite().await;
    let (tenant, key) = s.tenant("yard").await;
    let kiosk = s.enroll_over_http(tenant, "yard kiosk").await;
    let (st, van) = s
        .json(
            &key,
            M::POST,
            "/api/v1/labels",
            Some(json!({"kind": "vehicle", "name": "Van 7"})),
        )
        .await;
    assert_eq!(st, 201, "{van}");
    let van_id = van["id"].as_str().unwrap().to_owned();
    let (st, form) = s
        .json(
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
            .json(&key, M::POST, "/api/v1/inspections", Some(body))
            .await;
        assert_eq!((st, code(&v)), (400, want), "{v}");
    }
    let (_, list) = s.json(&key, M::GET, "/api/v1/inspections", None).await;
    assert_eq!(
        list["inspections"],
        json!([]),
        "a refused submission writes nothing"
    );
    assert!(!s.snapshot(&kiosk).await.assets[0].unsafe_defect);

    // The report: stored once, and the kiosk's next snapshot refuses the van.
    let (st, stored) = s
        .json(&key, M::POST, "/api/v1/inspections", Some(good.clone()))
        .await;
    assert_eq!(st, 201, "{stored}");
    let (st, again) = s
        .json(&key, M::POST, "/api/v1/inspections", Some(good.clone()))
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
        .json(
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
        .json(&driver_key, M::POST, &repair_path, Some(repair.clone()))
        .await;
    assert_eq!(st, 403, "{v}");
    let (st, v) = s
        .json(
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
        .json(&key, M::POST, &repair_path, Some(repair.clone()))
        .await;
    assert_eq!(st, 200, "{fixed}");
    assert_eq!(fixed["repair"]["mechanic"], "Mo");
    let (st, v) = s.json(&key, M::POST, &repair_path, Some(repair)).await;
    assert_eq!((st, code(&v)), (409, "already_repaired"), "{v}");
    assert!(
        !s.snapshot(&kiosk).await.assets[0].unsafe_defect,
        "handout allowed again"
    );

    let (_, open) = s
        .json(&key, M::GET, "/api/v1/inspections/defects", None)
        .await;
    assert_eq!(open["defects"], json!([]));
    let (_, audit) = s.json(&key, M::GET, "/api/v1/audit", None).await;
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
