//! Server certificate pinning against a real rustls server with generated
//! certificates: the certificate seen at enrollment is the only one accepted later.

use fleet_agent::clock::SystemClock;
use fleet_agent::identity::{enroll, enroll_with, EnrollOptions, Identity};
use fleet_agent::sync::client::SyncClient;
use fleet_agent::sync::tls::fingerprint;
use fleet_protocol::api::{EnrollResponse, TimeResponse};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsAcceptor;
use uuid::Uuid;

struct Cert {
    der: CertificateDer<'static>,
    key: Vec<u8>,
}

fn new_cert() -> Cert {
    let c = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("certificate");
    Cert {
        der: c.cert.der().clone(),
        key: c.key_pair.serialize_der(),
    }
}

fn server_config(cert: &Cert) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der.clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key.clone())),
        )
        .expect("server certificate");
    Arc::new(config)
}

/// A tiny HTTPS server answering enrollment and time requests, one request per
/// connection, with whichever certificate is current.
struct TlsServer {
    url: String,
    config: Arc<Mutex<Arc<rustls::ServerConfig>>>,
}

async fn start_server(cert: &Cert) -> TlsServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let config = Arc::new(Mutex::new(server_config(cert)));
    let current = config.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = TlsAcceptor::from(current.lock().expect("lock").clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                let head_end = loop {
                    let Ok(n) = tls.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buf[..n]);
                    if let Some(i) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                };
                let head = String::from_utf8_lossy(&request[..head_end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                while request.len() < head_end + length {
                    let Ok(n) = tls.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buf[..n]);
                }
                let now = fleet_agent::clock::wall_now_ms();
                let body = if head.starts_with("post /sync/v1/enroll") {
                    serde_json::to_string(&EnrollResponse {
                        device_id: Uuid::new_v4(),
                        tenant_id: Uuid::new_v4(),
                        name: "gw-1".into(),
                        server_time_ms: now,
                        tenant_public_key: None,
                    })
                } else {
                    serde_json::to_string(&TimeResponse {
                        server_time_ms: now,
                    })
                }
                .expect("json");
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(response.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    TlsServer {
        url: format!("https://localhost:{port}"),
        config,
    }
}

fn client(identity: &Identity) -> SyncClient {
    SyncClient::new(
        identity,
        Arc::new(SystemClock::new()),
        Duration::from_secs(5),
    )
    .expect("client")
}

#[tokio::test]
async fn the_certificate_pinned_at_enrollment_is_accepted_and_any_other_refused() {
    let first = new_cert();
    let server = start_server(&first).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let identity = enroll(&server.url, "token-1", dir.path(), Some("gw-1"))
        .await
        .expect("enrollment over https");
    assert_eq!(identity.server_pin(), Some(fingerprint(first.der.as_ref())));
    let reloaded = Identity::load(dir.path()).expect("identity stored");
    assert_eq!(reloaded.server_pin(), identity.server_pin());

    client(&reloaded)
        .server_time()
        .await
        .expect("pinned certificate accepted");

    // Someone else answers at the same address with another certificate.
    let other = new_cert();
    *server.config.lock().expect("lock") = server_config(&other);
    let err = client(&reloaded)
        .server_time()
        .await
        .expect_err("other certificate refused");
    assert_eq!(err.code(), "transport", "{err}");

    *server.config.lock().expect("lock") = server_config(&first);
    client(&reloaded)
        .server_time()
        .await
        .expect("pinned certificate accepted again");
}

#[tokio::test]
async fn enrollment_with_a_fingerprint_refuses_a_server_presenting_another_certificate() {
    let presented = new_cert();
    let expected = new_cert();
    let server = start_server(&presented).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let err = enroll_with(EnrollOptions {
        server_url: &server.url,
        token: "token-2",
        data_dir: dir.path(),
        name: None,
        server_fingerprint: Some(fingerprint(expected.der.as_ref())),
        kind: Default::default(),
    })
    .await
    .expect_err("wrong certificate");
    assert!(err.to_string().contains("cannot reach"), "{err}");
    assert!(
        !Identity::exists(dir.path()),
        "no identity written after a refused enrollment"
    );

    let id = enroll_with(EnrollOptions {
        server_url: &server.url,
        token: "token-2",
        data_dir: dir.path(),
        name: None,
        server_fingerprint: Some(fingerprint(presented.der.as_ref())),
        kind: Default::default(),
    })
    .await
    .expect("matching fingerprint");
    assert_eq!(id.server_pin(), Some(fingerprint(presented.der.as_ref())));
}
