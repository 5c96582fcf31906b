//! TLS to PostgreSQL on rustls (the ring provider the rest of the server uses),
//! with libpq's `sslmode`, `sslrootcert`, `sslcert` and `sslkey` read from the
//! database URL.
//!
//! | `sslmode`     | TLS                         | certificate checked                   |
//! | ------------- | --------------------------- | ------------------------------------- |
//! | `disable`     | never                       | —                                     |
//! | `prefer`      | if the server offers it     | chain, only when `sslrootcert` is set |
//! | `require`     | always                      | chain, only when `sslrootcert` is set |
//! | `verify-ca`   | always                      | chain against `sslrootcert`           |
//! | `verify-full` | always                      | chain and host name                   |
//!
//! Without `sslmode`, a loopback host or Unix socket gets `disable` (nothing
//! crosses a network) and any other host `prefer`, libpq's own default.
//!
//! `sslcert` and `sslkey` name PEM files of a client certificate (its chain,
//! leaf first) and its unencrypted private key (PKCS#8, or RSA or EC in their
//! own PEM forms), for a server whose pg_hba.conf asks for `cert`. Unlike
//! libpq, nothing is read from `~/.postgresql/` unless named, and both must be
//! named together.

use crate::storage::StorageError;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    AlertDescription, CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore,
    SignatureScheme,
};
use std::fmt;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::config::{Host, SslMode as PgSslMode};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};
use tokio_postgres::Socket;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<Self, StorageError> {
        Ok(match value {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(StorageError::Invalid(format!(
                    "database URL: sslmode={other} is not one of disable, prefer, require, verify-ca, verify-full"
                )))
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a connection to PostgreSQL uses TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgTls {
    pub mode: SslMode,
    /// PEM file of the CA certificates the server's certificate must chain to.
    pub root_cert: Option<PathBuf>,
    /// PEM files of the client certificate chain and its private key, sent
    /// when the server asks for a certificate.
    pub client_cert: Option<ClientCert>,
}

/// `sslcert` and `sslkey`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl PgTls {
    /// The TLS a hand-built `tokio_postgres::Config` asks for: its `ssl_mode`,
    /// with no certificate checks (it cannot name a CA file).
    pub fn from_config(config: &tokio_postgres::Config) -> Self {
        let mode = match config.get_ssl_mode() {
            PgSslMode::Disable => SslMode::Disable,
            PgSslMode::Require => SslMode::Require,
            _ => SslMode::Prefer,
        };
        PgTls {
            mode,
            root_cert: None,
            client_cert: None,
        }
    }

    fn verification(&self) -> Verification {
        match (self.mode, &self.root_cert) {
            (SslMode::VerifyFull, _) => Verification::Full,
            (SslMode::VerifyCa, _) => Verification::Chain,
            // As libpq: a CA file given with prefer or require is used.
            (SslMode::Prefer | SslMode::Require, Some(_)) => Verification::Chain,
            _ => Verification::None,
        }
    }

    /// The connector for tokio-postgres and the pool; reads `root_cert` and the
    /// client certificate now, so a missing, unreadable or mismatched file is
    /// reported at start, not per connection.
    pub fn connector(&self) -> Result<MakeRustlsConnect, StorageError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let algs = provider.signature_verification_algorithms;
        let verification = self.verification();
        let roots = match (&verification, &self.root_cert) {
            (Verification::None, _) => None,
            (_, Some(path)) => Some(Arc::new(load_roots(path)?)),
            (_, None) => {
                return Err(StorageError::Invalid(format!(
                    "database URL: sslmode={} needs sslrootcert=<PEM file of the CA that signed the server's certificate>",
                    self.mode
                )))
            }
        };
        let client = match (&self.client_cert, self.mode) {
            (Some(c), mode) if mode != SslMode::Disable => Some(load_client_cert(c)?),
            _ => None,
        };
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| StorageError::Backend(format!("TLS settings: {e}")))?;
        let builder = match (verification, roots) {
            (Verification::Full, Some(roots)) => builder.with_root_certificates(roots),
            (Verification::Chain, Some(roots)) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ChainOnly { roots, algs })),
            _ => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(EncryptOnly { algs })),
        };
        let config = match (client, &self.client_cert) {
            (Some((chain, key)), Some(paths)) => {
                builder.with_client_auth_cert(chain, key).map_err(|e| {
                    StorageError::Invalid(match e {
                        rustls::Error::InconsistentKeys(_) => format!(
                            "sslkey {} is not the private key of the certificate in sslcert {}",
                            paths.key.display(),
                            paths.cert.display()
                        ),
                        e => format!(
                            "sslcert {} / sslkey {}: not a usable client certificate and key: {e}",
                            paths.cert.display(),
                            paths.key.display()
                        ),
                    })
                })?
            }
            _ => builder.with_no_client_auth(),
        };
        Ok(MakeRustlsConnect {
            config: Arc::new(config),
            describe: Arc::new(Describe {
                mode: self.mode,
                root_cert: self.root_cert.clone(),
                client_cert: self.client_cert.clone(),
            }),
        })
    }
}

enum Verification {
    None,
    Chain,
    Full,
}

/// Where and how to reach PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgTarget {
    pub config: tokio_postgres::Config,
    pub tls: PgTls,
}

impl PgTarget {
    /// Parses a `postgres://` URL, taking out `sslmode`, `sslrootcert`, `sslcert`
    /// and `sslkey` (which tokio-postgres does not know in full) and setting the
    /// TLS defaults.
    pub fn parse(url: &str) -> Result<Self, StorageError> {
        let (base, query) = match url.split_once('?') {
            Some((base, query)) => (base, query),
            None => (url, ""),
        };
        let mut mode = None;
        let mut root_cert = None;
        let (mut cert, mut cert_key) = (None, None);
        let mut rest = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "sslmode" => mode = Some(SslMode::parse(&percent_decode(value)?)?),
                "sslrootcert" => root_cert = Some(PathBuf::from(percent_decode(value)?)),
                "sslcert" => cert = Some(PathBuf::from(percent_decode(value)?)),
                "sslkey" => cert_key = Some(PathBuf::from(percent_decode(value)?)),
                "sslpassword" => {
                    return Err(StorageError::Invalid(
                        "database URL: sslpassword: encrypted client keys are not supported; \
                         give sslkey an unencrypted key file readable only by this user"
                            .into(),
                    ))
                }
                _ => rest.push(pair),
            }
        }
        let client_cert = match (cert, cert_key) {
            (Some(cert), Some(key)) => Some(ClientCert { cert, key }),
            (None, None) => None,
            (Some(_), None) => return Err(StorageError::Invalid(
                "database URL: sslcert needs sslkey=<PEM file of the certificate's private key>"
                    .into(),
            )),
            (None, Some(_)) => {
                return Err(StorageError::Invalid(
                    "database URL: sslkey needs sslcert=<PEM file of the client certificate>"
                        .into(),
                ))
            }
        };
        let remaining = if rest.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", rest.join("&"))
        };
        let mut config: tokio_postgres::Config = remaining
            .parse()
            .map_err(|e| StorageError::Invalid(format!("database URL: {e}")))?;
        let mode = mode.unwrap_or(if is_local(&config) {
            SslMode::Disable
        } else {
            SslMode::Prefer
        });
        config.ssl_mode(match mode {
            SslMode::Disable => PgSslMode::Disable,
            SslMode::Prefer => PgSslMode::Prefer,
            _ => PgSslMode::Require,
        });
        Ok(PgTarget {
            config,
            tls: PgTls {
                mode,
                root_cert,
                client_cert,
            },
        })
    }

    pub fn from_config(config: tokio_postgres::Config) -> Self {
        let tls = PgTls::from_config(&config);
        PgTarget { config, tls }
    }

    /// Where the connection goes, for error messages (no credentials).
    pub fn describe(&self) -> String {
        let hosts: Vec<String> = self
            .config
            .get_hosts()
            .iter()
            .map(|h| match h {
                Host::Tcp(name) => name.clone(),
                Host::Unix(path) => path.display().to_string(),
            })
            .collect();
        let ports: Vec<String> = self.config.get_ports().iter().map(u16::to_string).collect();
        format!(
            "{} port {} (sslmode={})",
            hosts.join(","),
            if ports.is_empty() {
                "5432".to_owned()
            } else {
                ports.join(",")
            },
            self.tls.mode
        )
    }
}

/// Every host is this machine: a loopback address, `localhost` or a Unix socket.
fn is_local(config: &tokio_postgres::Config) -> bool {
    let host_local = |h: &Host| match h {
        Host::Unix(_) => true,
        Host::Tcp(name) => {
            name.eq_ignore_ascii_case("localhost")
                || name
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
    };
    let addrs = config.get_hostaddrs();
    if !addrs.is_empty() {
        return addrs.iter().all(|ip| ip.is_loopback());
    }
    config.get_hosts().iter().all(host_local)
}

fn percent_decode(value: &str) -> Result<String, StorageError> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| {
                    StorageError::Invalid(format!("database URL: bad %-escape in {value:?}"))
                })?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map_err(|_| StorageError::Invalid(format!("database URL: {value:?} is not UTF-8")))
}

fn load_roots(path: &PathBuf) -> Result<RootCertStore, StorageError> {
    let pem = std::fs::read(path).map_err(|e| {
        StorageError::Invalid(format!("sslrootcert: cannot read {}: {e}", path.display()))
    })?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| {
            StorageError::Invalid(format!(
                "sslrootcert {}: not valid PEM: {e}",
                path.display()
            ))
        })?;
        roots.add(cert).map_err(|e| {
            StorageError::Invalid(format!(
                "sslrootcert {}: not a usable CA certificate: {e}",
                path.display()
            ))
        })?;
    }
    if roots.is_empty() {
        return Err(StorageError::Invalid(format!(
            "sslrootcert {} holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)",
            path.display()
        )));
    }
    Ok(roots)
}

/// The client certificate chain and key of `c`, with errors that name the file.
fn load_client_cert(
    c: &ClientCert,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), StorageError> {
    let pem = std::fs::read(&c.cert).map_err(|e| {
        StorageError::Invalid(format!("sslcert: cannot read {}: {e}", c.cert.display()))
    })?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            StorageError::Invalid(format!("sslcert {}: not valid PEM: {e}", c.cert.display()))
        })?;
    if chain.is_empty() {
        return Err(StorageError::Invalid(format!(
            "sslcert {} holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)",
            c.cert.display()
        )));
    }
    let pem = std::fs::read(&c.key).map_err(|e| {
        StorageError::Invalid(format!("sslkey: cannot read {}: {e}", c.key.display()))
    })?;
    if String::from_utf8_lossy(&pem).contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
        return Err(StorageError::Invalid(format!(
            "sslkey {} is encrypted; give an unencrypted key (openssl pkcs8 -nocrypt)",
            c.key.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        StorageError::Invalid(format!(
            "sslkey {}: no PKCS#8, RSA or EC private key in PEM form: {e}",
            c.key.display()
        ))
    })?;
    Ok((chain, key))
}

/// `require` or `prefer` without a CA: encrypted, but any certificate is taken
/// (as libpq does); the handshake signatures are still checked.
#[derive(Debug)]
struct EncryptOnly {
    algs: WebPkiSupportedAlgorithms,
}

/// `verify-ca`: the certificate must chain to a CA in `sslrootcert`, whatever
/// host name it names.
#[derive(Debug)]
struct ChainOnly {
    roots: Arc<RootCertStore>,
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.algs.all,
        )?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

#[derive(Debug)]
struct Describe {
    mode: SslMode,
    root_cert: Option<PathBuf>,
    client_cert: Option<ClientCert>,
}

impl Describe {
    /// A handshake failure in the operator's terms.
    fn explain(&self, host: &str, e: io::Error) -> io::Error {
        let ca = || {
            self.root_cert
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        };
        let cert_error = e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .and_then(|r| match r {
                rustls::Error::InvalidCertificate(c) => Some(c.clone()),
                _ => None,
            });
        let message = match cert_error {
            Some(CertificateError::UnknownIssuer | CertificateError::BadSignature) => format!(
                "the PostgreSQL server's certificate is not signed by a CA in sslrootcert {} (sslmode={}): {e}",
                ca(),
                self.mode
            ),
            Some(CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }) => {
                format!(
                    "the PostgreSQL server's certificate does not name the host {host:?} (sslmode=verify-full): {e}"
                )
            }
            Some(_) => format!(
                "the PostgreSQL server's certificate was refused (sslmode={}): {e}",
                self.mode
            ),
            None => format!(
                "TLS handshake with PostgreSQL failed (sslmode={}): {e}",
                self.mode
            ),
        };
        io::Error::new(e.kind(), message)
    }

    /// An alert from the server about our certificate, in the operator's terms.
    /// Under TLS 1.3 the server checks the client certificate after the
    /// client's side of the handshake is done, so the alert arrives on a read.
    fn explain_read(&self, e: io::Error) -> io::Error {
        let Some(c) = &self.client_cert else {
            return e;
        };
        let refused = e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .is_some_and(|r| {
                matches!(
                    r,
                    rustls::Error::AlertReceived(
                        AlertDescription::BadCertificate
                            | AlertDescription::UnknownCA
                            | AlertDescription::CertificateUnknown
                            | AlertDescription::CertificateRequired
                            | AlertDescription::CertificateExpired
                            | AlertDescription::CertificateRevoked
                            | AlertDescription::UnsupportedCertificate
                            | AlertDescription::DecryptError
                            | AlertDescription::AccessDenied
                    )
                )
            });
        if !refused {
            return e;
        }
        io::Error::new(
            e.kind(),
            format!(
                "the PostgreSQL server refused the client certificate in sslcert {} (is it signed by the CA in the server's ssl_ca_file?): {e}",
                c.cert.display()
            ),
        )
    }
}

/// tokio-postgres's `MakeTlsConnect` on rustls.
#[derive(Clone)]
pub struct MakeRustlsConnect {
    config: Arc<ClientConfig>,
    describe: Arc<Describe>,
}

impl fmt::Debug for MakeRustlsConnect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MakeRustlsConnect")
            .field("mode", &self.describe.mode)
            .finish()
    }
}

impl MakeTlsConnect<Socket> for MakeRustlsConnect {
    type Stream = RustlsStream<Socket>;
    type TlsConnect = RustlsConnect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsConnect, io::Error> {
        // Called for Unix sockets too (with an empty name), where the server
        // never offers TLS; a name that cannot be one is reported only if a
        // handshake is attempted.
        Ok(RustlsConnect {
            host: domain.to_owned(),
            name: ServerName::try_from(domain.to_owned()).ok(),
            config: self.config.clone(),
            describe: self.describe.clone(),
        })
    }
}

pub struct RustlsConnect {
    host: String,
    name: Option<ServerName<'static>>,
    config: Arc<ClientConfig>,
    describe: Arc<Describe>,
}

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let name = self.name.ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{:?} is not a host name TLS can check", self.host),
                )
            })?;
            tokio_rustls::TlsConnector::from(self.config)
                .connect(name, stream)
                .await
                .map(|stream| RustlsStream {
                    stream,
                    describe: self.describe.clone(),
                })
                .map_err(|e| self.describe.explain(&self.host, e))
        })
    }
}

pub struct RustlsStream<S> {
    stream: tokio_rustls::client::TlsStream<S>,
    describe: Arc<Describe>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(Err(e)) => Poll::Ready(Err(this.describe.explain_read(e))),
            other => other,
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for RustlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        // SCRAM without channel binding: tls-server-end-point needs the hash of
        // the certificate's own signature algorithm, which this does not parse.
        ChannelBinding::none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_and_sslrootcert_are_taken_from_the_url() {
        let t = PgTarget::parse(
            "postgres://u:p@db.example:6432/fleet?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&application_name=x",
        )
        .unwrap();
        assert_eq!(t.tls.mode, SslMode::VerifyFull);
        assert_eq!(t.tls.root_cert, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(t.config.get_ssl_mode(), PgSslMode::Require);
        assert_eq!(t.config.get_application_name(), Some("x"));
        assert_eq!(t.config.get_dbname(), Some("fleet"));
    }

    #[test]
    fn remote_hosts_default_to_prefer_and_loopback_to_disable() {
        let remote = PgTarget::parse("postgres://u:p@db.example/fleet").unwrap();
        assert_eq!(remote.tls.mode, SslMode::Prefer);
        for local in [
            "postgres://u:p@127.0.0.1:5432/fleet",
            "postgres://u:p@localhost/fleet",
            "postgres://u:p@[::1]:5432/fleet",
        ] {
            let t = PgTarget::parse(local).unwrap();
            assert_eq!(t.tls.mode, SslMode::Disable, "{local}");
            assert_eq!(t.config.get_ssl_mode(), PgSslMode::Disable, "{local}");
        }
        let mixed = PgTarget::parse("postgres://u:p@127.0.0.1,db.example/fleet").unwrap();
        assert_eq!(mixed.tls.mode, SslMode::Prefer);
    }

    #[test]
    fn a_bad_sslmode_or_a_client_certificate_is_refused_by_name() {
        let e = PgTarget::parse("postgres://u@h/db?sslmode=verify").unwrap_err();
        assert!(
            e.to_string().contains("sslmode=verify is not one of"),
            "{e}"
        );
        let e = PgTarget::parse("postgres://u@h/db?sslcert=/c.pem").unwrap_err();
        assert!(e.to_string().contains("sslcert needs sslkey"), "{e}");
        let e = PgTarget::parse("postgres://u@h/db?sslkey=/k.pem").unwrap_err();
        assert!(e.to_string().contains("sslkey needs sslcert"), "{e}");
        let e =
            PgTarget::parse("postgres://u@h/db?sslcert=/c&sslkey=/k&sslpassword=x").unwrap_err();
        assert!(e.to_string().contains("encrypted client keys"), "{e}");
    }

    #[test]
    fn sslcert_and_sslkey_are_taken_from_the_url() {
        let t = PgTarget::parse(
            "postgres://u@db.example/fleet?sslmode=require&sslcert=%2Fetc%2Fc.pem&sslkey=/etc/k.pem",
        )
        .unwrap();
        assert_eq!(
            t.tls.client_cert,
            Some(ClientCert {
                cert: PathBuf::from("/etc/c.pem"),
                key: PathBuf::from("/etc/k.pem"),
            })
        );
    }

    /// `sslmode=require` with this certificate and key.
    fn with_client(dir: &std::path::Path, cert_pem: &str, key_pem: &str) -> PgTls {
        let (cert, key) = (dir.join("client.crt"), dir.join("client.key"));
        std::fs::write(&cert, cert_pem).unwrap();
        std::fs::write(&key, key_pem).unwrap();
        PgTls {
            mode: SslMode::Require,
            root_cert: None,
            client_cert: Some(ClientCert { cert, key }),
        }
    }

    #[test]
    fn a_client_certificate_with_its_own_key_makes_a_connector() {
        let dir = tempfile::tempdir().unwrap();
        let made = crate::tls::self_signed(&["fleet".to_owned()]).unwrap();
        // rcgen writes PKCS#8.
        assert!(made.key_pem.contains("BEGIN PRIVATE KEY"));
        assert!(with_client(dir.path(), &made.cert_pem, &made.key_pem)
            .connector()
            .is_ok());
    }

    #[test]
    fn a_missing_unreadable_or_mismatched_client_certificate_is_refused_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let a = crate::tls::self_signed(&["a".to_owned()]).unwrap();
        let b = crate::tls::self_signed(&["b".to_owned()]).unwrap();

        let e = with_client(dir.path(), &a.cert_pem, &b.key_pem)
            .connector()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("is not the private key of the certificate in sslcert"),
            "{e}"
        );

        let e = with_client(dir.path(), &a.key_pem, &a.key_pem)
            .connector()
            .unwrap_err()
            .to_string();
        assert!(e.contains("holds no PEM certificate"), "{e}");

        let e = with_client(dir.path(), &a.cert_pem, &a.cert_pem)
            .connector()
            .unwrap_err()
            .to_string();
        assert!(e.contains("no PKCS#8, RSA or EC private key"), "{e}");

        let encrypted =
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n";
        let e = with_client(dir.path(), &a.cert_pem, encrypted)
            .connector()
            .unwrap_err()
            .to_string();
        assert!(e.contains("is encrypted"), "{e}");

        let mut tls = with_client(dir.path(), &a.cert_pem, &a.key_pem);
        tls.client_cert.as_mut().unwrap().key = dir.path().join("absent.key");
        let e = tls.connector().unwrap_err().to_string();
        assert!(
            e.contains("sslkey: cannot read") && e.contains("absent.key"),
            "{e}"
        );
        tls.client_cert.as_mut().unwrap().cert = dir.path().join("absent.crt");
        let e = tls.connector().unwrap_err().to_string();
        assert!(
            e.contains("sslcert: cannot read") && e.contains("absent.crt"),
            "{e}"
        );
    }

    #[test]
    fn verification_without_a_ca_file_or_with_a_missing_one_is_refused() {
        let t = PgTarget::parse("postgres://u@h/db?sslmode=verify-ca").unwrap();
        let e = t.tls.connector().unwrap_err();
        assert!(e.to_string().contains("needs sslrootcert"), "{e}");
        let t = PgTarget::parse(
            "postgres://u@h/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
        )
        .unwrap();
        let e = t.tls.connector().unwrap_err();
        assert!(
            e.to_string().contains("cannot read /nonexistent/ca.pem"),
            "{e}"
        );
        let t = PgTarget::parse("postgres://u@h/db?sslmode=require").unwrap();
        assert!(t.tls.connector().is_ok());
    }
}
