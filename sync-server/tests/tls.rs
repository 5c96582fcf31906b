//! The HTTPS listener on 127.0.0.1:0 with a self-signed certificate: real TLS
//! clients, misbehaving ones, shutdown, and certificate files that are wrong.

use fleet_sync::tls::{load_server_config, self_signed, serve_tls, SelfSigned, TlsConfigError};
use fleet_sync::AppState;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

struct Server {
    addr: SocketAddr,
    cert: SelfSigned,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }
}

fn write_pair(dir: &Path, name: &str, cert: &SelfSigned) -> (PathBuf, PathBuf) {
    let cert_path = dir.join(format!("{name}-cert.pem"));
    let key_path = dir.join(format!("{name}-key.pem"));
    std::fs::write(&cert_path, &cert.cert_pem).unwrap();
    std::fs::write(&key_path, &cert.key_pem).unwrap();
    (cert_path, key_path)
}

async fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let cert = self_signed(&["localhost".into(), "127.0.0.1".into()]).unwrap();
    let (cert_path, key_path) = write_pair(dir.path(), "server", &cert);
    let tls = load_server_config(&cert_path, &key_path).unwrap();
    assert_eq!(tls.fingerprint, cert.fingerprint);
    let storage = fleet_sync::open_sqlite(&dir.path().join("data"))
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve_tls(
        listener,
        AppState::new(storage),
        tls.config,
        async move {
            let _ = stopped.await;
        },
    ));
    Server {
        addr,
        cert,
        stop: Some(stop),
        task,
        _dir: dir,
    }
}

fn client_config(trusted: &SelfSigned) -> ClientConfig {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(trusted.cert_pem.as_bytes()).unwrap())
        .unwrap();
    ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

fn https_client(trusted: &SelfSigned) -> reqwest::Client {
    reqwest::Client::builder()
        .use_preconfigured_tls(client_config(trusted))
        .resolve("localhost", "127.0.0.1:0".parse().unwrap())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn healthz(server: &Server) -> (u16, String) {
    let resp = https_client(&server.cert)
        .get(server.url("/healthz"))
        .send()
        .await
        .expect("https request to /healthz");
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test]
async fn a_client_trusting_the_certificate_reaches_healthz_over_https() {
    let server = start().await;
    let (status, body) = healthz(&server).await;
    assert_eq!(status, 200, "{body}");

    // By IP address too: the certificate names 127.0.0.1.
    let by_ip = https_client(&server.cert)
        .get(format!("https://127.0.0.1:{}/healthz", server.addr.port()))
        .send()
        .await
        .expect("https by IP address");
    assert_eq!(by_ip.status().as_u16(), 200);
}

#[tokio::test]
async fn a_client_trusting_another_certificate_is_refused_in_the_handshake() {
    let server = start().await;
    let other = self_signed(&["localhost".into()]).unwrap();
    let err = https_client(&other)
        .get(server.url("/healthz"))
        .send()
        .await
        .expect_err("a certificate the client does not trust");
    assert!(err.is_connect(), "{err:?}");
    assert_eq!(healthz(&server).await.0, 200);
}

#[tokio::test]
async fn the_printed_fingerprint_is_the_sha256_of_the_certificate_the_server_presents() {
    let server = start().await;
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(&server.cert)));
    let tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("handshake");
    let presented = tls.get_ref().1.peer_certificates().expect("a certificate")[0].clone();
    assert_eq!(
        fleet_sync::tls::fingerprint_hex(presented.as_ref()),
        server.cert.fingerprint
    );
    assert_eq!(server.cert.fingerprint.len(), 64);
}

/// Reads until the server closes the connection, or fails the test after 15 s.
async fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(15), stream.read_to_end(&mut got))
        .await
        .expect("the server closes a connection that is not TLS")
        .ok();
    got
}

#[tokio::test]
async fn plain_http_garbage_and_stalled_handshakes_do_not_stop_the_server() {
    let server = start().await;

    let mut plain = TcpStream::connect(server.addr).await.unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let answer = read_to_close(&mut plain).await;
    assert!(
        !answer.starts_with(b"HTTP/"),
        "plain HTTP must not be served on the TLS port: {:?}",
        String::from_utf8_lossy(&answer)
    );

    let mut garbage = TcpStream::connect(server.addr).await.unwrap();
    garbage
        .write_all(&[0x16, 0x03, 0x01, 0xff, 0xff, 0, 1, 2, 3])
        .await
        .unwrap();
    garbage.shutdown().await.unwrap();
    read_to_close(&mut garbage).await;

    drop(TcpStream::connect(server.addr).await.unwrap());

    // A client that connects and says nothing holds only its own handshake task.
    let _stalled = TcpStream::connect(server.addr).await.unwrap();
    let (status, _) = healthz(&server).await;
    assert_eq!(status, 200);
    assert!(!server.task.is_finished(), "the server stopped");
}

#[tokio::test]
async fn shutdown_stops_accepting_even_with_a_keep_alive_connection_open() {
    let mut server = start().await;
    let client = https_client(&server.cert);
    let resp = client.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    resp.text().await.unwrap();

    server.stop.take().unwrap().send(()).unwrap();
    let finished = tokio::time::timeout(
        fleet_sync::tls::SHUTDOWN_GRACE + Duration::from_secs(5),
        &mut server.task,
    )
    .await
    .expect("serve_tls returns after the shutdown signal")
    .unwrap();
    finished.expect("a clean shutdown");
    assert!(
        TcpStream::connect(server.addr).await.is_err(),
        "the port still accepts connections after shutdown"
    );
}

fn load_err(cert: &Path, key: &Path) -> TlsConfigError {
    load_server_config(cert, key).expect_err("a bad certificate or key")
}

#[test]
fn a_missing_file_is_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let pair = self_signed(&["localhost".into()]).unwrap();
    let (cert, _) = write_pair(dir.path(), "a", &pair);
    let missing = dir.path().join("nope.pem");
    let err = load_err(&cert, &missing);
    assert!(matches!(err, TlsConfigError::Read { .. }), "{err:?}");
    assert!(err.to_string().contains("nope.pem"), "{err}");
}

#[test]
fn swapped_certificate_and_key_files_say_what_each_lacks() {
    let dir = tempfile::tempdir().unwrap();
    let pair = self_signed(&["localhost".into()]).unwrap();
    let (cert, key) = write_pair(dir.path(), "a", &pair);

    let err = load_err(&key, &key);
    assert!(
        matches!(err, TlsConfigError::NoCertificate { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("a-key.pem"), "{err}");

    let err = load_err(&cert, &cert);
    assert!(matches!(err, TlsConfigError::NoKey { .. }), "{err:?}");
    assert!(err.to_string().contains("a-cert.pem"), "{err}");
}

#[test]
fn a_key_from_another_certificate_is_refused_naming_both_files() {
    let dir = tempfile::tempdir().unwrap();
    let (cert_a, _) = write_pair(
        dir.path(),
        "a",
        &self_signed(&["localhost".into()]).unwrap(),
    );
    let (_, key_b) = write_pair(
        dir.path(),
        "b",
        &self_signed(&["localhost".into()]).unwrap(),
    );
    let err = load_err(&cert_a, &key_b);
    assert!(matches!(err, TlsConfigError::KeyMismatch { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("a-cert.pem") && msg.contains("b-key.pem"),
        "{msg}"
    );
}

#[test]
fn a_truncated_certificate_is_a_pem_error_not_a_missing_one() {
    let dir = tempfile::tempdir().unwrap();
    let pair = self_signed(&["localhost".into()]).unwrap();
    let (cert, key) = write_pair(dir.path(), "a", &pair);
    let text = std::fs::read_to_string(&cert).unwrap();
    std::fs::write(&cert, &text[..text.len() / 2]).unwrap();
    let err = load_err(&cert, &key);
    assert!(matches!(err, TlsConfigError::Pem { .. }), "{err:?}");
    assert!(err.to_string().contains("a-cert.pem"), "{err}");
}
