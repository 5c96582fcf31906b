//! Logging in to the operator API with a user's password: the session cookie,
//! its CSRF token, logout, expiry, disabled users, other tenants, uniform
//! failures and the login limit. SQLite, through the router as a browser calls it.

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use fleet_sync::http::auth::AccessState;
use fleet_sync::http::session::PasswordCost;
use fleet_sync::{router, AppState};
use serde_json::{json, Value};
use std::sync::Arc;
use tower::ServiceExt;
use uuid::Uuid;

const PASSWORD: &str = "a long enough password";

#[derive(Debug)]
struct Reply {
    status: StatusCode,
    cookies: Vec<String>,
    body: Value,
}

impl Reply {
    fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

/// How a request authenticates.
enum As<'a> {
    Key(&'a str),
    Cookie(&'a str, Option<&'a str>),
    Nobody,
}

async fn call(app: &Router, method: Method, uri: &str, who: As<'_>, body: Option<Value>) -> Reply {
    let mut req = Request::builder().method(method).uri(uri);
    match who {
        As::Key(k) => req = req.header(header::AUTHORIZATION, format!("Bearer {k}")),
        As::Cookie(c, csrf) => {
            req = req.header(header::COOKIE, c);
            if let Some(t) = csrf {
                req = req.header("x-csrf-token", t);
            }
        }
        As::Nobody => {}
    }
    let body = match body {
        Some(v) => {
            req = req.header(header::CONTENT_TYPE, "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    let resp = app.clone().oneshot(req.body(body).unwrap()).await.unwrap();
    let status = resp.status();
    let cookies = resp
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    Reply {
        status,
        cookies,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

struct World {
    app: Router,
    storage: Arc<dyn fleet_sync::storage::Storage>,
    tenant: Uuid,
    admin_key: String,
    _dir: tempfile::TempDir,
}

async fn world(session_ttl_ms: i64) -> World {
    let dir = tempfile::tempdir().unwrap();
    let storage: Arc<dyn fleet_sync::storage::Storage> = Arc::new(
        fleet_sync::storage::sqlite::SqliteStorage::open(&dir.path().join("fleet.db")).unwrap(),
    );
    let made = storage.create_tenant("acme").await.unwrap();
    let mut state = AppState::new(storage.clone());
    let mut access = AccessState::new(None);
    access.session_ttl_ms = session_ttl_ms;
    // Real cost is for real servers; the checks here are about behaviour.
    access.password_cost = PasswordCost {
        memory_kib: 64,
        iterations: 1,
    };
    state.access = Arc::new(access);
    World {
        app: router(state),
        storage,
        tenant: made.tenant_id,
        admin_key: made.api_key,
        _dir: dir,
    }
}

/// A user of `w`'s tenant with `role` and [`PASSWORD`].
async fn user(w: &World, email: &str, role: &str) -> Uuid {
    let r = call(
        &w.app,
        Method::POST,
        "/api/v1/users",
        As::Key(&w.admin_key),
        Some(json!({ "email": email, "name": email, "role": role })),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let id: Uuid = r.body["id"].as_str().unwrap().parse().unwrap();
    let r = call(
        &w.app,
        Method::PUT,
        &format!("/api/v1/users/{id}/password"),
        As::Key(&w.admin_key),
        Some(json!({ "password": PASSWORD })),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    id
}

/// The `Cookie` header a browser would send after this login, and the CSRF token.
#[derive(Debug)]
struct Login {
    cookie: String,
    csrf: String,
}

async fn login(w: &World, tenant: &str, email: &str, password: &str) -> Result<Login, Reply> {
    let r = call(
        &w.app,
        Method::POST,
        "/api/v1/session",
        As::Nobody,
        Some(json!({ "tenant": tenant, "email": email, "password": password })),
    )
    .await;
    if r.status != StatusCode::OK {
        return Err(r);
    }
    let pairs: Vec<&str> = r
        .cookies
        .iter()
        .map(|c| c.split(';').next().unwrap())
        .collect();
    Ok(Login {
        cookie: pairs.join("; "),
        csrf: r.body["csrf_token"].as_str().unwrap().to_owned(),
    })
}

#[tokio::test]
async fn a_user_logs_in_acts_with_their_role_and_is_out_after_logout() {
    let w = world(3_600_000).await;
    let ann = user(&w, "ann@example.com", "dispatcher").await;
    let r = call(
        &w.app,
        Method::POST,
        "/api/v1/session",
        As::Nobody,
        Some(json!({ "tenant": w.tenant, "email": "Ann@Example.com", "password": PASSWORD })),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let session = r
        .cookies
        .iter()
        .find(|c| c.starts_with("fleet_session="))
        .unwrap();
    assert!(session.contains("HttpOnly") && session.contains("SameSite=Strict"));
    assert!(!session.contains("Secure"), "plain http here: {session}");
    assert!(!session.contains(&r.body["csrf_token"].as_str().unwrap().to_string()));
    // Logging in by the tenant's name works too.
    let s = login(&w, "acme", "ann@example.com", PASSWORD)
        .await
        .unwrap();

    let me = call(
        &w.app,
        Method::GET,
        "/api/v1/me",
        As::Cookie(&s.cookie, None),
        None,
    )
    .await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.body);
    assert_eq!(me.body["role"], "dispatcher");
    assert_eq!(me.body["session"], true);
    assert_eq!(me.body["user"]["id"], ann.to_string());
    // A dispatcher's session may not do what a dispatcher may not.
    let users = call(
        &w.app,
        Method::GET,
        "/api/v1/users",
        As::Cookie(&s.cookie, None),
        None,
    )
    .await;
    assert_eq!(users.status, StatusCode::FORBIDDEN);
    assert_eq!(users.code(), "forbidden");

    let out = call(
        &w.app,
        Method::DELETE,
        "/api/v1/session",
        As::Cookie(&s.cookie, Some(&s.csrf)),
        None,
    )
    .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT, "{}", out.body);
    assert!(out
        .cookies
        .iter()
        .any(|c| c.starts_with("fleet_session=;") && c.contains("Max-Age=0")));
    let after = call(
        &w.app,
        Method::GET,
        "/api/v1/me",
        As::Cookie(&s.cookie, None),
        None,
    )
    .await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);
    assert_eq!(after.code(), "session_invalid");

    let audit = call(
        &w.app,
        Method::GET,
        "/api/v1/audit?limit=50",
        As::Key(&w.admin_key),
        None,
    )
    .await;
    let actions: Vec<&str> = audit.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions.iter().filter(|a| **a == "session.login").count(),
        2,
        "{actions:?}"
    );
    assert!(actions.contains(&"session.logout"), "{actions:?}");
}

#[tokio::test]
async fn wrong_password_unknown_user_no_password_and_disabled_user_fail_alike() {
    let w = world(3_600_000).await;
    let ann = user(&w, "ann@example.com", "driver").await;
    let r = call(
        &w.app,
        Method::POST,
        "/api/v1/users",
        As::Key(&w.admin_key),
        Some(json!({ "email": "nopass@example.com", "name": "n", "role": "driver" })),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let s = login(&w, &w.tenant.to_string(), "ann@example.com", PASSWORD)
        .await
        .unwrap();
    let tenant = w.tenant.to_string();
    let attempts = [
        (tenant.as_str(), "ann@example.com", "a long enough passworD"),
        (tenant.as_str(), "bob@example.com", PASSWORD),
        (tenant.as_str(), "nopass@example.com", PASSWORD),
        ("no such tenant", "ann@example.com", PASSWORD),
        (tenant.as_str(), "not an email", PASSWORD),
    ];
    let mut bodies = Vec::new();
    for (t, email, password) in attempts {
        let r = login(&w, t, email, password).await.err().unwrap();
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{email}: {}", r.body);
        bodies.push(r.body);
    }
    let r = call(
        &w.app,
        Method::PATCH,
        &format!("/api/v1/users/{ann}"),
        As::Key(&w.admin_key),
        Some(json!({ "disabled": true })),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = login(&w, &tenant, "ann@example.com", PASSWORD)
        .await
        .err()
        .unwrap();
    bodies.push(r.body);
    assert!(
        bodies.iter().all(|b| *b == bodies[0]),
        "failures differ: {bodies:?}"
    );
    assert_eq!(bodies[0]["error"]["code"], "invalid_credentials");
    // The session made before she was disabled stops too.
    let me = call(
        &w.app,
        Method::GET,
        "/api/v1/me",
        As::Cookie(&s.cookie, None),
        None,
    )
    .await;
    assert_eq!(me.status, StatusCode::UNAUTHORIZED);
    assert_eq!(me.code(), "user_disabled");
}

#[tokio::test]
async fn a_change_made_with_the_cookie_needs_the_sessions_csrf_token() {
    let w = world(3_600_000).await;
    user(&w, "ann@example.com", "admin").await;
    let s = login(&w, "acme", "ann@example.com", PASSWORD)
        .await
        .unwrap();
    let other = login(&w, "acme", "ann@example.com", PASSWORD)
        .await
        .unwrap();
    let body = json!({ "email": "new@example.com", "name": "New", "role": "driver" });
    for csrf in [None, Some("0".repeat(64)), Some(other.csrf.clone())] {
        let r = call(
            &w.app,
            Method::POST,
            "/api/v1/users",
            As::Cookie(&s.cookie, csrf.as_deref()),
            Some(body.clone()),
        )
        .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{csrf:?}: {}", r.body);
        assert_eq!(r.code(), "csrf_failed");
    }
    let users = w.storage.list_users(w.tenant).await.unwrap();
    assert!(users.iter().all(|u| u.email != "new@example.com"));
    let r = call(
        &w.app,
        Method::POST,
        "/api/v1/users",
        As::Cookie(&s.cookie, Some(&s.csrf)),
        Some(body),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    // The user made by a session is in the audit log as the session's user's.
    let audit = call(
        &w.app,
        Method::GET,
        "/api/v1/audit?action=user.create",
        As::Key(&w.admin_key),
        None,
    )
    .await;
    let e = &audit.body["entries"][0];
    assert_eq!(e["actor"]["kind"], "session", "{}", audit.body);
}

#[tokio::test]
async fn an_expired_session_is_refused() {
    let w = world(0).await;
    user(&w, "ann@example.com", "admin").await;
    let s = login(&w, "acme", "ann@example.com", PASSWORD)
        .await
        .unwrap();
    let r = call(
        &w.app,
        Method::GET,
        "/api/v1/me",
        As::Cookie(&s.cookie, None),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.code(), "session_expired");
}

#[tokio::test]
async fn a_session_never_reaches_another_tenant() {
    let w = world(3_600_000).await;
    user(&w, "ann@example.com", "admin").await;
    let s = login(&w, "acme", "ann@example.com", PASSWORD)
        .await
        .unwrap();
    let other = w.storage.create_tenant("globex").await.unwrap();
    // The same secret under the other tenant's id names no session there.
    let forged = s
        .cookie
        .replace(&w.tenant.to_string(), &other.tenant_id.to_string());
    let r = call(
        &w.app,
        Method::GET,
        "/api/v1/me",
        As::Cookie(&forged, None),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    assert_eq!(r.code(), "session_invalid");
    // The other tenant's users are not this session's to see or change.
    let r = call(
        &w.app,
        Method::POST,
        "/api/v1/users",
        As::Key(&other.api_key),
        Some(json!({ "email": "gus@example.com", "name": "Gus", "role": "driver" })),
    )
    .await;
    let gus = r.body["id"].as_str().unwrap().to_owned();
    let r = call(
        &w.app,
        Method::GET,
        &format!("/api/v1/users/{gus}"),
        As::Cookie(&s.cookie, None),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    let r = call(
        &w.app,
        Method::PUT,
        &format!("/api/v1/users/{gus}/password"),
        As::Cookie(&s.cookie, Some(&s.csrf)),
        Some(json!({ "password": "taken over by acme" })),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    // Nor can anyone log in to globex with acme's user.
    let r = login(&w, "globex", "ann@example.com", PASSWORD)
        .await
        .err()
        .unwrap();
    assert_eq!(r.code(), "invalid_credentials");
}

#[tokio::test]
async fn passwords_are_set_by_admins_only_and_a_new_one_ends_the_sessions() {
    let w = world(3_600_000).await;
    let ann = user(&w, "ann@example.com", "manager").await;
    let s = login(&w, "acme", "ann@example.com", PASSWORD)
        .await
        .unwrap();
    // A manager may not set passwords, even their own.
    let r = call(
        &w.app,
        Method::PUT,
        &format!("/api/v1/users/{ann}/password"),
        As::Cookie(&s.cookie, Some(&s.csrf)),
        Some(json!({ "password": "my own new password" })),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let r = call(
        &w.app,
        Method::PUT,
        &format!("/api/v1/users/{ann}/password"),
        As::Key(&w.admin_key),
        Some(json!({ "password": "short" })),
    )
    .await;
    assert_eq!(r.code(), "bad_password");
    // The short one was not stored: the old password still works.
    login(&w, "acme", "ann@example.com", PASSWORD)
        .await
        .unwrap();
    let r = call(
        &w.app,
        Method::PUT,
        &format!("/api/v1/users/{ann}/password"),
        As::Key(&w.admin_key),
        Some(json!({ "password": "a brand new passphrase" })),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let me = call(
        &w.app,
        Method::GET,
        "/api/v1/me",
        As::Cookie(&s.cookie, None),
        None,
    )
    .await;
    assert_eq!(me.code(), "session_invalid");
    assert!(login(&w, "acme", "ann@example.com", PASSWORD)
        .await
        .is_err());
    login(&w, "acme", "ann@example.com", "a brand new passphrase")
        .await
        .unwrap();
}

#[tokio::test]
async fn login_attempts_are_limited_per_user() {
    let w = world(3_600_000).await;
    user(&w, "ann@example.com", "driver").await;
    let mut codes = Vec::new();
    for _ in 0..fleet_sync::http::session::LOGINS_PER_MIN_PER_USER + 1 {
        let r = login(&w, "acme", "ann@example.com", "guessing wrong")
            .await
            .err()
            .unwrap();
        codes.push(r.code().to_owned());
    }
    assert_eq!(codes.last().unwrap(), "rate_limited", "{codes:?}");
    // Even the right password waits now.
    let r = login(&w, "acme", "ann@example.com", PASSWORD)
        .await
        .err()
        .unwrap();
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    // Another user is not held up.
    user(&w, "bob@example.com", "driver").await;
    login(&w, "acme", "bob@example.com", PASSWORD)
        .await
        .unwrap();
}

#[tokio::test]
async fn login_attempts_are_limited_per_client_address_over_a_real_socket() {
    let w = world(3_600_000).await;
    let mut state = AppState::new(w.storage.clone());
    let mut access = AccessState::new(None);
    access.password_cost = PasswordCost {
        memory_kib: 64,
        iterations: 1,
    };
    state.access = Arc::new(access);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(fleet_sync::serve(listener, state, async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    // A different user each time, so only the address limit can stop them.
    for i in 0..=fleet_sync::http::session::LOGINS_PER_MIN_PER_ADDRESS {
        let r = client
            .post(format!("http://{addr}/api/v1/session"))
            .json(&json!({ "tenant": "acme", "email": format!("u{i}@example.com"), "password": PASSWORD }))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    let _ = stop.send(());
    server.await.unwrap().unwrap();
    assert!(
        statuses[..statuses.len() - 1].iter().all(|s| *s == 401),
        "{statuses:?}"
    );
    assert_eq!(*statuses.last().unwrap(), 429, "{statuses:?}");
}

/// A browser's WebSocket handshake for `/api/v1/stream` with only the `fleet.v1`
/// subprotocol and the session cookie; the status line, headers and any body.
async fn stream_handshake(addr: std::net::SocketAddr, origin: &str, cookie: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET /api/v1/stream HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: fleet.v1\r\nOrigin: {origin}\r\nCookie: {cookie}\r\n\r\n"
    );
    sock.write_all(req.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            let n = sock.read(&mut buf).await.unwrap();
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got);
            let Some(end) = text.find("\r\n\r\n") else {
                if n == 0 {
                    break;
                }
                continue;
            };
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if n == 0 || got.len() >= end + 4 + length {
                break;
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), read)
        .await
        .expect("the server answers the handshake");
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test]
async fn the_live_stream_opens_on_a_session_cookie_from_the_servers_own_pages_only() {
    let w = world(3_600_000).await;
    user(&w, "ann@example.com", "dispatcher").await;
    let s = login(&w, "acme", "ann@example.com", PASSWORD)
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(fleet_sync::serve(
        listener,
        AppState::new(w.storage.clone()),
        async {
            let _ = stopped.await;
        },
    ));

    let own = stream_handshake(addr, &format!("http://{addr}"), &s.cookie).await;
    assert!(own.starts_with("HTTP/1.1 101"), "{own}");
    assert!(
        own.to_ascii_lowercase()
            .contains("sec-websocket-protocol: fleet.v1"),
        "{own}"
    );
    // Another site's page cannot ride on the user's cookie.
    let other = stream_handshake(addr, "http://attacker.example", &s.cookie).await;
    assert!(other.starts_with("HTTP/1.1 403"), "{other}");
    assert!(other.contains("\"cross_origin\""), "{other}");

    let out = call(
        &w.app,
        Method::DELETE,
        "/api/v1/session",
        As::Cookie(&s.cookie, Some(&s.csrf)),
        None,
    )
    .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT, "{}", out.body);
    let after = stream_handshake(addr, &format!("http://{addr}"), &s.cookie).await;
    assert!(after.starts_with("HTTP/1.1 401"), "{after}");
    assert!(after.contains("\"session_invalid\""), "{after}");
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
