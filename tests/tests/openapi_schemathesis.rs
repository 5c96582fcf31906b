//! `/api/v1/openapi.json` checked against what a real `fleet-sync serve` (SQLite)
//! does, by schemathesis (pinned in tests/requirements.txt): generated requests
//! for every operation, and for each answer no 5xx, a documented status code, a
//! documented content type and a body that fits the documented schema.
//!
//! Three passes, so one does not spoil the next: the tenant admin over every
//! operation but key revocation (which would revoke its own key mid-run) and
//! the WebSocket stream; then key revocation; then the operator over the
//! tenant endpoints (which may lower the tenant's limits). Skipped when the
//! Python peer is missing; under `CI=true` it fails instead.

use fleet_tests::process::{bin, free_port, log_tail, wait_for, Guarded};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const OPERATOR_KEY: &str = "op-schemathesis-0123456789abcdef";
const CHECKS: &str =
    "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance";
/// Generated cases per operation and phase; with ~100 operations the admin
/// pass takes about half a minute on two cores.
const MAX_EXAMPLES: &str = "3";
const SEED: &str = "20261122";
const PASS_LIMIT: Duration = Duration::from_secs(150);

fn python() -> String {
    std::env::var("FLEET_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

fn schemathesis_installed() -> bool {
    let ok = Command::new(python())
        .args(["-c", "import schemathesis"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "python3 with schemathesis is required under CI=true (tests/requirements.txt)"
        );
        eprintln!("skipped: python3 with schemathesis is not installed");
    }
    ok
}

fn admin(data: &Path, args: &[&str]) -> Value {
    let out = Command::new(bin("fleet-sync").unwrap())
        .arg("admin")
        .arg("--data")
        .arg(data)
        .args(args)
        .env_remove("FLEET_DATABASE_URL")
        .env("FLEET_KEY_ENCRYPTION_KEY", "6b".repeat(32))
        .output()
        .unwrap();
    assert!(out.status.success(), "admin {args:?}: {out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// One schemathesis run; panics with its report when it finds anything.
fn schemathesis(scratch: &Path, base: &str, key: &str, name: &str, filters: &[&str]) {
    let log = scratch.join(format!("schemathesis-{name}.log"));
    let out = std::fs::File::create(&log).unwrap();
    let mut cmd = Command::new(python());
    cmd.args(["-m", "schemathesis.cli", "run"])
        .arg(format!("{base}/api/v1/openapi.json"))
        .args(["--header", &format!("Authorization: Bearer {key}")])
        .args(["--checks", CHECKS])
        .args(["--max-examples", MAX_EXAMPLES, "--seed", SEED])
        .args(["--workers", "2", "--no-color", "--continue-on-failure"])
        .args(["--request-timeout", "10", "--generation-database", "none"])
        .args(filters)
        .current_dir(scratch)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out);
    let started = Instant::now();
    let mut child = cmd.spawn().expect("starting schemathesis");
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > PASS_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "schemathesis {name} pass ran over {PASS_LIMIT:?}:\n{}",
                log_tail(&log, 60)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let report = std::fs::read_to_string(&log).unwrap_or_default();
    eprintln!(
        "schemathesis {name} pass: {status} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        status.success(),
        "schemathesis {name} pass found problems ({status}):\n{report}"
    );
    assert!(
        report.contains("generated") && report.contains("passed"),
        "schemathesis {name} pass ran no test cases:\n{report}"
    );
}

#[tokio::test]
async fn the_openapi_document_matches_what_the_server_answers_to_generated_requests() {
    if !schemathesis_installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let tenant = admin(&data, &["tenant", "create", "--name", "acme"]);
    let tenant_id = tenant["tenant_id"].as_str().unwrap().to_owned();
    let key = tenant["api_key"].as_str().unwrap().to_owned();

    let port = free_port().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let mut cmd = Command::new(bin("fleet-sync").unwrap());
    cmd.arg("serve")
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data")
        .arg(&data)
        .env_remove("FLEET_DATABASE_URL")
        .env("FLEET_KEY_ENCRYPTION_KEY", "6b".repeat(32))
        .env("FLEET_OPERATOR_KEY", OPERATOR_KEY)
        .env("RUST_LOG", "warn");
    let log = dir.path().join("serve.log");
    let mut server = Guarded::spawn("fleet-sync serve", cmd, &log).unwrap();
    wait_for(
        "the server to listen",
        Duration::from_secs(30),
        Duration::from_millis(50),
        || {
            if let Some(status) = server.exited()? {
                anyhow::bail!("fleet-sync serve exited with {status}");
            }
            Ok(std::net::TcpStream::connect(("127.0.0.1", port))
                .ok()
                .map(|_| ()))
        },
    )
    .unwrap();

    // Generated requests come fast: lift the tenant's API rate so they reach
    // the handlers instead of the rate limiter.
    let http = reqwest::Client::new();
    let lifted = http
        .patch(format!("{base}/api/v1/tenants/{tenant_id}"))
        .bearer_auth(OPERATOR_KEY)
        .header("content-type", "application/json")
        .body(r#"{"limits": {"api_rate_per_min": 1000000}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(lifted.status(), 200, "{}", lifted.text().await.unwrap());

    let scratch = dir.path().to_owned();
    let server_base = base.clone();
    tokio::task::spawn_blocking(move || {
        schemathesis(
            &scratch,
            &server_base,
            &key,
            "tenant-admin",
            &[
                "--exclude-path",
                "/api/v1/stream",
                "--exclude-path-regex",
                "^/api/v1/keys/",
            ],
        );
        schemathesis(
            &scratch,
            &server_base,
            &key,
            "key-revocation",
            &["--include-path-regex", "^/api/v1/keys"],
        );
        schemathesis(
            &scratch,
            &server_base,
            OPERATOR_KEY,
            "operator",
            &["--include-path-regex", "^/api/v1/tenants"],
        );
    })
    .await
    .unwrap();

    assert!(
        server.exited().unwrap().is_none(),
        "the server died under generated requests:\n{}",
        log_tail(&log, 40)
    );
    let health = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
}
