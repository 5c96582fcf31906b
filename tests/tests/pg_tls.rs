//! TLS to PostgreSQL through `--database-url`'s `sslmode` and `sslrootcert`.
//!
//! Against the real cluster (`FLEET_TEST_PG_URL`, which `tests/run` starts with
//! `ssl=on` and a certificate signed by a CA it makes, `FLEET_TEST_PG_CA`):
//! `require` really encrypts (pg_stat_ssl for the backend), `verify-full` takes
//! the right CA and refuses another. Against fake servers: one without TLS (it
//! answers `N` to the SSL request, as PostgreSQL with `ssl=off` does) and one
//! that says yes and then talks nonsense. Skipped without `FLEET_TEST_PG_URL` /
//! `FLEET_TEST_PG_CA`; under `CI=true` they fail instead.
//!
//! Client certificates (`sslcert`, `sslkey`): `tests/run` issues certificates
//! for the role `fleet_cert` from the same CA (`FLEET_TEST_PG_CLIENT_CERTS`,
//! one per key form) and lets that role into its database only with `cert`
//! in pg_hba.conf. Skipped without them (a cluster with no client CA, such as
//! a development one); under `CI=true` that fails instead.

use fleet_sync::storage::postgres::testing::{admin_url, empty_database};
use fleet_sync::storage::postgres::{PgStorage, PgTarget};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const CA_VAR: &str = "FLEET_TEST_PG_CA";
const CLIENT_CERTS_VAR: &str = "FLEET_TEST_PG_CLIENT_CERTS";
const BOUND: Duration = Duration::from_secs(20);

/// The CA that signed the test cluster's certificate, or `None` (a panic under CI).
fn cluster_ca() -> Option<String> {
    match std::env::var(CA_VAR) {
        Ok(path) if !path.trim().is_empty() => Some(path),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{CA_VAR} is required under CI=true (tests/run makes the cluster's CA)"
            );
            eprintln!("skipped: {CA_VAR} is not set (the CA of FLEET_TEST_PG_URL's certificate)");
            None
        }
    }
}

/// `url` with more query parameters.
fn with_params(url: &str, params: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{params}")
}

/// The URL of `config` with its host name replaced by `host` and the address
/// kept as `hostaddr`, so a certificate can be checked against `host`.
fn url_named(config: &tokio_postgres::Config, host: &str) -> String {
    let addr = match &config.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        tokio_postgres::config::Host::Unix(p) => panic!("a TCP host is needed, not {p:?}"),
    };
    let addr = if addr == "localhost" {
        "127.0.0.1".to_owned()
    } else {
        addr
    };
    format!(
        "postgres://{}:{}@{host}:{}/{}?hostaddr={addr}",
        config.get_user().unwrap_or_default(),
        String::from_utf8_lossy(config.get_password().unwrap_or_default()),
        config.get_ports().first().copied().unwrap_or(5432),
        config.get_dbname().unwrap_or_default()
    )
}

async fn connect(url: &str) -> Result<tokio_postgres::Client, String> {
    let target = PgTarget::parse(url).map_err(|e| e.to_string())?;
    tokio::time::timeout(BOUND, target.connect())
        .await
        .map_err(|_| format!("connecting to {url} did not finish in {BOUND:?}"))?
        .map_err(|e| e.to_string())
}

/// Whether this backend's connection is encrypted, from the server's side.
async fn backend_ssl(client: &tokio_postgres::Client) -> bool {
    client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .expect("pg_stat_ssl")
        .get(0)
}

/// Whether the cluster has TLS on; under CI it must (tests/run turns it on).
async fn cluster_has_ssl(admin: &str) -> bool {
    let client = connect(admin)
        .await
        .expect("connecting to FLEET_TEST_PG_URL");
    let on: String = client
        .query_one("SHOW ssl", &[])
        .await
        .expect("SHOW ssl")
        .get(0);
    let on = on == "on";
    if !on {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "the test cluster has ssl=off under CI=true (tests/run turns it on)"
        );
        eprintln!("skipped: the PostgreSQL at FLEET_TEST_PG_URL has ssl=off");
    }
    on
}

#[tokio::test]
async fn sslmode_require_encrypts_dedicated_and_pooled_connections() {
    let Some(admin) = admin_url() else { return };
    if !cluster_has_ssl(&admin).await {
        return;
    }
    let plain = connect(&with_params(&admin, "sslmode=disable"))
        .await
        .unwrap();
    assert!(!backend_ssl(&plain).await, "sslmode=disable stays plain");

    let client = connect(&with_params(&admin, "sslmode=require"))
        .await
        .unwrap();
    assert!(backend_ssl(&client).await, "sslmode=require is encrypted");

    // The storage itself, as `serve --database-url …?sslmode=require` opens it:
    // its pool's connections are encrypted too.
    let guard = empty_database().await.expect("a test database");
    let app = fleet_sync_url(guard.app_config());
    let storage = tokio::time::timeout(
        BOUND,
        PgStorage::connect(&with_params(&app, "sslmode=require")),
    )
    .await
    .expect("opening the storage in time")
    .expect("opening the storage over TLS");
    let pooled = storage.pool().get().await.expect("a pooled connection");
    assert!(
        backend_ssl(&pooled).await,
        "pooled connections are encrypted"
    );
}

fn fleet_sync_url(config: &tokio_postgres::Config) -> String {
    let host = match &config.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
    };
    format!(
        "postgres://{}:{}@{host}:{}/{}",
        config.get_user().unwrap_or_default(),
        String::from_utf8_lossy(config.get_password().unwrap_or_default()),
        config.get_ports().first().copied().unwrap_or(5432),
        config.get_dbname().unwrap_or_default()
    )
}

#[tokio::test]
async fn verify_full_takes_the_clusters_ca_and_refuses_another_ca_or_host() {
    let Some(admin) = admin_url() else { return };
    let Some(ca) = cluster_ca() else { return };
    if !cluster_has_ssl(&admin).await {
        return;
    }
    let config: tokio_postgres::Config = admin.parse().unwrap();
    let good = url_named(&config, "localhost");

    let client = connect(&with_params(
        &good,
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ))
    .await
    .unwrap();
    assert!(backend_ssl(&client).await);

    // A CA that did not sign the server's certificate.
    let dir = tempfile::tempdir().unwrap();
    let other_ca = dir.path().join("other-ca.pem");
    let other = fleet_sync::tls::self_signed(&["localhost".to_owned()]).unwrap();
    std::fs::write(&other_ca, other.cert_pem).unwrap();
    let e = connect(&with_params(
        &good,
        &format!("sslmode=verify-full&sslrootcert={}", other_ca.display()),
    ))
    .await
    .unwrap_err();
    assert!(
        e.contains("not signed by a CA in sslrootcert") && e.contains("other-ca.pem"),
        "{e}"
    );

    // The right CA, but a host name the certificate does not carry: verify-full
    // refuses it, verify-ca (the chain only) takes it.
    let renamed = url_named(&config, "db.fleet.invalid");
    let e = connect(&with_params(
        &renamed,
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ))
    .await
    .unwrap_err();
    assert!(
        e.contains("does not name the host \"db.fleet.invalid\""),
        "{e}"
    );
    let client = connect(&with_params(
        &renamed,
        &format!("sslmode=verify-ca&sslrootcert={ca}"),
    ))
    .await
    .unwrap();
    assert!(backend_ssl(&client).await);
}

/// A server that answers the SSL request with `reply`, then (after `N`) ends
/// the plain-text startup with an error, or (after `S`) sends `after_yes`.
/// Returns its port; it serves `connections` clients and stops.
async fn fake_server(reply: u8, after_yes: &'static [u8], connections: usize) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        for _ in 0..connections {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let mut request = [0u8; 8];
            if s.read_exact(&mut request).await.is_err() {
                continue;
            }
            // Length 8, code 80877103: SSLRequest.
            assert_eq!(
                request,
                [0, 0, 0, 8, 4, 210, 22, 47],
                "an SSL request first"
            );
            s.write_all(&[reply]).await.unwrap();
            if reply == b'S' {
                let _ = s.write_all(after_yes).await;
                let mut sink = [0u8; 512];
                let _ = tokio::time::timeout(Duration::from_secs(2), s.read(&mut sink)).await;
                continue;
            }
            // Plain-text startup message: length, protocol 3.0, parameters.
            let mut len = [0u8; 4];
            if s.read_exact(&mut len).await.is_err() {
                continue;
            }
            let mut body = vec![0u8; u32::from_be_bytes(len) as usize - 4];
            s.read_exact(&mut body).await.unwrap();
            assert_eq!(&body[..4], &[0, 3, 0, 0], "protocol 3.0 startup");
            let text = b"SFATAL\0C28000\0Mfake server saw a plain-text startup\0\0";
            let mut error = vec![b'E'];
            error.extend_from_slice(&(text.len() as u32 + 4).to_be_bytes());
            error.extend_from_slice(text);
            let _ = s.write_all(&error).await;
        }
    });
    port
}

#[tokio::test]
async fn require_fails_clearly_on_a_server_without_tls_and_prefer_goes_plain() {
    let port = fake_server(b'N', b"", 2).await;
    let url = format!("postgres://fleet:pw@127.0.0.1:{port}/fleet");

    let e = connect(&with_params(&url, "sslmode=require"))
        .await
        .unwrap_err();
    assert!(
        e.contains("server does not support TLS") && e.contains("sslmode=require"),
        "{e}"
    );

    let e = connect(&with_params(&url, "sslmode=prefer"))
        .await
        .unwrap_err();
    assert!(e.contains("fake server saw a plain-text startup"), "{e}");
}

#[tokio::test]
async fn a_server_that_accepts_tls_then_sends_garbage_is_a_handshake_error() {
    let port = fake_server(b'S', b"HTTP/1.1 400 Bad Request\r\n\r\n", 1).await;
    let url = format!("postgres://fleet:pw@127.0.0.1:{port}/fleet?sslmode=require");
    let e = connect(&url).await.unwrap_err();
    assert!(e.contains("TLS handshake with PostgreSQL failed"), "{e}");
}

/// The directory of `tests/run`'s client certificates for `fleet_cert`, or
/// `None` (a panic under CI).
fn client_certs() -> Option<std::path::PathBuf> {
    match std::env::var(CLIENT_CERTS_VAR) {
        Ok(dir) if !dir.trim().is_empty() => Some(dir.into()),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{CLIENT_CERTS_VAR} is required under CI=true (tests/run issues the client certificates)"
            );
            eprintln!(
                "skipped: {CLIENT_CERTS_VAR} is not set (client certificates for the role fleet_cert)"
            );
            None
        }
    }
}

/// `fleet_cert`'s URL on the cluster of `admin`, host named `localhost`, no password.
fn cert_role_url(admin: &str) -> String {
    let config: tokio_postgres::Config = admin.parse().unwrap();
    let mut cert: tokio_postgres::Config = config.clone();
    cert.user("fleet_cert").password("").dbname("fleet_cert");
    url_named(&cert, "localhost").replacen("fleet_cert:@", "fleet_cert@", 1)
}

#[tokio::test]
async fn a_client_certificate_logs_in_by_cert_and_without_one_the_server_refuses() {
    let Some(admin) = admin_url() else { return };
    let Some(ca) = cluster_ca() else { return };
    let Some(certs) = client_certs() else { return };
    if !cluster_has_ssl(&admin).await {
        return;
    }
    let url = cert_role_url(&admin);
    let verified = with_params(&url, &format!("sslmode=verify-full&sslrootcert={ca}"));

    // One certificate per key form: EC in PKCS#8 and SEC1, RSA in PKCS#1.
    for (cert, key) in [
        ("ec.crt", "ec.key"),
        ("ec.crt", "ec-sec1.key"),
        ("rsa.crt", "rsa.key"),
    ] {
        let (cert, key) = (certs.join(cert), certs.join(key));
        let client = connect(&with_params(
            &verified,
            &format!("sslcert={}&sslkey={}", cert.display(), key.display()),
        ))
        .await
        .unwrap_or_else(|e| panic!("{} with {}: {e}", cert.display(), key.display()));
        let row = client
            .query_one(
                "SELECT client_dn, current_user::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(
            row.get::<_, Option<String>>(0).as_deref(),
            Some("/CN=fleet_cert")
        );
        assert_eq!(row.get::<_, String>(1), "fleet_cert");
    }

    // No certificate: TLS, but the server refuses the login by name.
    let e = connect(&verified).await.unwrap_err();
    assert!(
        e.contains("connection requires a valid client certificate"),
        "{e}"
    );

    // Plain text never reaches the cert line: pg_hba.conf rejects it.
    let e = connect(&with_params(&url, "sslmode=disable"))
        .await
        .unwrap_err();
    assert!(e.contains("pg_hba.conf rejects connection"), "{e}");

    // A certificate from another CA: the server ends the connection.
    let dir = tempfile::tempdir().unwrap();
    let other = fleet_sync::tls::self_signed(&["fleet_cert".to_owned()]).unwrap();
    let (cert, key) = (dir.path().join("other.crt"), dir.path().join("other.key"));
    std::fs::write(&cert, other.cert_pem).unwrap();
    std::fs::write(&key, other.key_pem).unwrap();
    let e = connect(&with_params(
        &verified,
        &format!("sslcert={}&sslkey={}", cert.display(), key.display()),
    ))
    .await
    .unwrap_err();
    assert!(
        e.contains("refused the client certificate") && e.contains("other.crt"),
        "{e}"
    );

    // A key that is not the certificate's: refused before any connection.
    let e = connect(&with_params(
        &verified,
        &format!(
            "sslcert={}&sslkey={}",
            certs.join("ec.crt").display(),
            certs.join("rsa.key").display()
        ),
    ))
    .await
    .unwrap_err();
    assert!(
        e.contains("is not the private key of the certificate"),
        "{e}"
    );
}
