//! The asset catalog over real HTTP: an asset's QR code decodes (with the
//! agent's own decoder and with zbar) to a label the kiosk accepts; a PDF label
//! sheet carries every short code as text and, rasterised, every QR scannable;
//! the CSV export imports back unchanged while a file with one bad row writes
//! nothing; office check-out is idempotent by key and lands in the custody board.
//!
//! Peers: zbarimg (zbar-tools) and pdftotext/pdftoppm (poppler-utils). Without
//! them the peer checks are skipped with a message, except under `CI=true`,
//! where they fail: `tests/run` installs both.

use fleet_protocol::label::{self, LabelKind, TenantTrust};
use fleet_tests::api_server::ApiServer;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Stdio};
use uuid::Uuid;

async fn asset(server: &ApiServer, key: &str, body: Value) -> Value {
    let (s, v) = server
        .json(key, reqwest::Method::POST, "/api/v1/assets", Some(body))
        .await;
    assert_eq!(s, 201, "{v}");
    v
}

async fn trust(server: &ApiServer, tenant: Uuid) -> TenantTrust {
    let key = fleet_sync::http::kiosk::tenant_signing_key(&*server.storage, tenant)
        .await
        .unwrap();
    TenantTrust::new(tenant, key.verifying_key())
}

fn under_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// Runs a peer tool; `None` (skip) when it is not installed, outside CI.
fn peer(program: &str, args: &[&str], package: &str) -> Option<String> {
    match Command::new(program)
        .args(args)
        .stderr(Stdio::null())
        .output()
    {
        Ok(o) => Some(String::from_utf8_lossy(&o.stdout).into_owned()),
        Err(e) => {
            assert!(
                !under_ci(),
                "{program} is required under CI=true (tests/run installs {package}): {e}"
            );
            eprintln!("SKIPPED {program} check: not found ({e}); apt-get install {package}");
            None
        }
    }
}

fn zbar(files: &[&Path]) -> Option<Vec<String>> {
    let mut args = vec!["-q", "--raw"];
    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    args.extend(names.iter().map(String::as_str));
    peer("zbarimg", &args, "zbar-tools").map(|out| out.lines().map(str::to_owned).collect())
}

#[tokio::test]
async fn an_asset_qr_code_decodes_to_a_label_the_kiosk_accepts() {
    let server = ApiServer::start_sqlite().await;
    let (tenant, key) = server.tenant("yard").await;
    let van = asset(
        &server,
        &key,
        json!({ "kind": "vehicle", "name": "Van 7", "vin": "WF0XXXTTGXKA12345" }),
    )
    .await;
    let id: Uuid = van["id"].as_str().unwrap().parse().unwrap();

    let resp = server
        .request(
            &key,
            reqwest::Method::GET,
            &format!("/api/v1/assets/{id}/qr-code?format=png"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "image/png");
    let png = resp.bytes().await.unwrap();
    let img = image::load_from_memory(&png).unwrap().to_luma8();
    let codes = fleet_agent::decode::qr::decode_gray(
        img.width() as usize,
        img.height() as usize,
        img.as_raw(),
    );
    assert_eq!(codes.len(), 1, "one QR in the image");
    let trust = trust(&server, tenant).await;
    let verified = label::verify(&codes[0].text, &trust).unwrap();
    assert_eq!((verified.kind, verified.id), (LabelKind::Vehicle, id));

    // The same label again, not a second one.
    let svg = server
        .request(
            &key,
            reqwest::Method::GET,
            &format!("/api/v1/assets/{id}/qr-code"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(svg.headers()["content-type"], "image/svg+xml");
    assert!(svg.text().await.unwrap().starts_with("<svg"));
    let labels = server.storage.list_labels(tenant).await.unwrap();
    assert_eq!(labels.len(), 1);
    assert_eq!(labels[0].text, codes[0].text);

    let path = server.dir().join("qr.png");
    std::fs::write(&path, &png).unwrap();
    if let Some(texts) = zbar(&[&path]) {
        assert_eq!(
            texts,
            vec![codes[0].text.clone()],
            "zbar reads the same label"
        );
    }

    let (s, v) = server
        .json(
            &key,
            reqwest::Method::GET,
            &format!("/api/v1/assets/{id}/qr-code?format=gif"),
            None,
        )
        .await;
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("bad_format")));
}

#[tokio::test]
async fn a_label_sheet_prints_every_short_code_and_every_qr_scans() {
    let server = ApiServer::start_sqlite().await;
    let (tenant, key) = server.tenant("yard").await;
    let mut ids = Vec::new();
    for i in 0..13 {
        let a = asset(&server, &key, json!({ "kind": if i % 2 == 0 { "vehicle" } else { "trailer" }, "name": format!("Unit {i}") }))
            .await;
        ids.push(a["id"].as_str().unwrap().to_owned());
    }
    let resp = server
        .request(&key, reqwest::Method::POST, "/api/v1/labels/sheet")
        .header("content-type", "application/json")
        .body(json!({ "asset_ids": ids, "paper": "letter" }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/pdf");
    let pdf = resp.bytes().await.unwrap();
    let pdf_path = server.dir().join("sheet.pdf");
    std::fs::write(&pdf_path, &pdf).unwrap();

    let labels = server.storage.list_labels(tenant).await.unwrap();
    assert_eq!(labels.len(), 13, "each asset got its label");
    let pdf_arg = pdf_path.display().to_string();
    let Some(text) = peer("pdftotext", &[&pdf_arg, "-"], "poppler-utils") else {
        return;
    };
    for l in &labels {
        assert!(
            text.contains(&l.short_code),
            "short code {} on the sheet",
            l.short_code
        );
        assert!(text.contains(&l.name), "name {} on the sheet", l.name);
    }

    let prefix = server.dir().join("page");
    let prefix_arg = prefix.display().to_string();
    peer(
        "pdftoppm",
        &["-r", "150", "-gray", "-png", &pdf_arg, &prefix_arg],
        "poppler-utils",
    )
    .unwrap();
    let mut pages: Vec<_> = std::fs::read_dir(server.dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("page"))
        .collect();
    pages.sort();
    assert_eq!(pages.len(), 2, "13 labels at 12 a page");
    let page_refs: Vec<&Path> = pages.iter().map(|p| p.as_path()).collect();
    if let Some(read) = zbar(&page_refs) {
        let read: HashSet<String> = read.into_iter().collect();
        let want: HashSet<String> = labels.iter().map(|l| l.text.clone()).collect();
        assert_eq!(read, want, "every printed QR scans to its label");
    }

    let (s, v) = server
        .json(
            &key,
            reqwest::Method::POST,
            "/api/v1/labels/sheet",
            Some(json!({ "asset_ids": [Uuid::new_v4()] })),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (404, Some("asset_not_found"))
    );
    let (s, _) = server
        .json(
            &key,
            reqwest::Method::POST,
            "/api/v1/labels/sheet",
            Some(json!({ "asset_ids": [] })),
        )
        .await;
    assert_eq!(s, 400);
}

async fn export(server: &ApiServer, key: &str) -> String {
    let resp = server
        .request(key, reqwest::Method::GET, "/api/v1/assets/export.csv")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    resp.text().await.unwrap()
}

async fn import(server: &ApiServer, key: &str, csv: &str) -> (u16, Value) {
    let resp = server
        .request(key, reqwest::Method::POST, "/api/v1/assets/import")
        .header("content-type", "text/csv")
        .body(csv.to_owned())
        .send()
        .await
        .unwrap();
    let s = resp.status().as_u16();
    (
        s,
        resp.text()
            .await
            .map(|t| serde_json::from_str::<Value>(&t).unwrap())
            .unwrap(),
    )
}

#[tokio::test]
async fn a_csv_export_imports_back_unchanged_and_a_bad_row_writes_nothing() {
    let server = ApiServer::start_sqlite().await;
    let (_tenant, key) = server.tenant("yard").await;
    asset(&server, &key, json!({ "name": "Van, \"the big one\"", "vin": "VIN0001", "purchase_price_cents": 4200000, "purchase_date": "2023-05-01", "odometer_km": 1234.5 }))
        .await;
    asset(
        &server,
        &key,
        json!({ "kind": "equipment", "name": "Forklift", "home_yard": "north" }),
    )
    .await;
    let first = export(&server, &key).await;
    assert_eq!(first.lines().count(), 3, "{first}");
    assert!(first.contains("4200000"));

    let (s, v) = import(&server, &key, &first).await;
    assert_eq!((s, &v), (200, &json!({ "created": 0, "updated": 2 })));
    let again = export(&server, &key).await;
    let strip_updated = |csv: &str| {
        csv.lines()
            .map(|l| {
                let mut cols: Vec<String> = csv::ReaderBuilder::new()
                    .has_headers(false)
                    .from_reader(l.as_bytes())
                    .records()
                    .next()
                    .unwrap()
                    .unwrap()
                    .iter()
                    .map(str::to_owned)
                    .collect();
                cols[18] = String::new(); // updated_at_ms
                cols
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(strip_updated(&first), strip_updated(&again), "round trip");

    // A new row matched by VIN, one by nothing (created), and a bad one: nothing lands.
    let bad = "name,vin,kind,odometer_km\nRenamed,VIN0001,vehicle,10\nNew van,,vehicle,\nBroken,,spaceship,\n";
    let (s, v) = import(&server, &key, bad).await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(v["error"]["code"], "invalid_rows");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("line 4"),
        "{v}"
    );
    assert_eq!(export(&server, &key).await, again, "nothing was written");

    let good = "name,vin,kind,odometer_km\nRenamed,VIN0001,vehicle,10\nNew van,,vehicle,\n";
    let (s, v) = import(&server, &key, good).await;
    assert_eq!((s, &v), (200, &json!({ "created": 1, "updated": 1 })));
    let (_, list) = server
        .json(&key, reqwest::Method::GET, "/api/v1/assets?q=renamed", None)
        .await;
    assert_eq!(list["assets"][0]["vin"], "VIN0001");
    assert_eq!(list["assets"][0]["odometer_km"], 10.0);
}

#[tokio::test]
async fn office_check_out_is_idempotent_by_key_and_shows_on_the_board() {
    let server = ApiServer::start_sqlite().await;
    let (_tenant, key) = server.tenant("yard").await;
    let van = asset(&server, &key, json!({ "name": "Van 1" })).await;
    let (s, user) = server
        .json(
            &key,
            reqwest::Method::POST,
            "/api/v1/users",
            Some(json!({ "email": "d@example.com", "name": "Dana Driver", "role": "driver" })),
        )
        .await;
    assert_eq!(s, 201, "{user}");
    let user_id = user["id"].as_str().unwrap();
    let (s, badge) = server
        .json(
            &key,
            reqwest::Method::POST,
            &format!("/api/v1/users/{user_id}/badges"),
            None,
        )
        .await;
    assert_eq!(s, 201, "{badge}");

    let body = json!({ "asset_id": van["id"], "user_id": user_id });
    let send = |k: &'static str, b: Value| {
        server
            .request(&key, reqwest::Method::POST, "/api/v1/custody/check-out")
            .header("idempotency-key", k)
            .header("content-type", "application/json")
            .body(b.to_string())
            .send()
    };
    let first = send("k1", body.clone()).await.unwrap();
    assert_eq!(first.status(), 201);
    let first: Value = first
        .text()
        .await
        .map(|t| serde_json::from_str::<Value>(&t).unwrap())
        .unwrap();
    assert_eq!(first["badge_id"], badge["id"]);
    let retry: Value = send("k1", body.clone())
        .await
        .unwrap()
        .text()
        .await
        .map(|t| serde_json::from_str::<Value>(&t).unwrap())
        .unwrap();
    assert_eq!(retry, first, "a retry gets the first answer");
    let other = send(
        "k1",
        json!({ "asset_id": Uuid::new_v4(), "user_id": user_id }),
    )
    .await
    .unwrap();
    assert_eq!(other.status(), 422);
    let other: Value = other
        .text()
        .await
        .map(|t| serde_json::from_str::<Value>(&t).unwrap())
        .unwrap();
    assert_eq!(other["error"]["code"], "idempotency_key_reused");
    let twice = send("k2", body.clone()).await.unwrap();
    assert_eq!(twice.status(), 409);
    let twice: Value = twice
        .text()
        .await
        .map(|t| serde_json::from_str::<Value>(&t).unwrap())
        .unwrap();
    assert_eq!(twice["error"]["code"], "already_checked_out");

    let (s, board) = server
        .json(&key, reqwest::Method::GET, "/api/v1/custody/board", None)
        .await;
    assert_eq!(s, 200);
    let out = board["out"].as_array().unwrap();
    assert_eq!(out.len(), 1, "{board}");
    assert_eq!(out[0]["asset_id"], van["id"]);
    assert_eq!(out[0]["holder_name"], "Dana Driver");
    assert_eq!(out[0]["user_id"], user["id"]);
    assert_eq!(out[0]["via"], "office");
    assert_eq!(out[0]["overdue"], false);
    assert!(out[0]["due_back_ms"].as_i64().unwrap() > out[0]["since_ms"].as_i64().unwrap());

    let (s, v) = server
        .json(
            &key,
            reqwest::Method::POST,
            "/api/v1/custody/check-in",
            Some(json!({ "asset_id": van["id"], "badge_id": badge["id"] })),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let (_, board) = server
        .json(&key, reqwest::Method::GET, "/api/v1/custody/board", None)
        .await;
    assert!(board["out"].as_array().unwrap().is_empty(), "{board}");
    let (s, v) = server
        .json(
            &key,
            reqwest::Method::POST,
            "/api/v1/custody/check-in",
            Some(json!({ "asset_id": van["id"], "badge_id": badge["id"] })),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("not_checked_out"))
    );

    let (s, page) = server
        .json(
            &key,
            reqwest::Method::GET,
            &format!("/api/v1/vehicles/{}/overview", van["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(s, 200, "{page}");
    assert_eq!(page["name"], "Van 1");
    assert_eq!(page["custody"], Value::Null);
}
