//! The HTTPS listener: the same router as [`crate::serve`], behind rustls.
//!
//! Devices pin the server's end-entity certificate at enrollment (SHA-256 of its
//! DER), so a self-signed certificate is as good as a CA-issued one for them;
//! [`self_signed`] makes one for a test yard.
//!
//! Handshakes run on their own tasks, apart from the accept loop, so a client that
//! connects and stalls — or talks plain HTTP to this port — costs one bounded task,
//! never the listener.

use crate::{router, AppState};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use sha2::{Digest, Sha256};
use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// A client that has not finished its handshake by then is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// After the shutdown signal, requests in flight get this long to finish.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Connections still handshaking at once; past this the accept loop waits.
const MAX_PENDING_HANDSHAKES: usize = 512;

#[derive(Debug, Error)]
pub enum TlsConfigError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{} holds no PEM private key (expected PKCS#8, PKCS#1 or SEC1: -----BEGIN … PRIVATE KEY-----)", path.display())]
    NoKey { path: PathBuf },
    #[error("{} is not valid PEM: {reason}", path.display())]
    Pem { path: PathBuf, reason: String },
    #[error("{} is not the private key of the certificate in {}", key.display(), cert.display())]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("certificate {} and key {} do not make a usable pair: {source}", cert.display(), key.display())]
    Rejected {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("cannot make a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// The parts of a loaded certificate an operator wants to see.
#[derive(Debug, Clone)]
pub struct LoadedTls {
    pub config: Arc<ServerConfig>,
    /// SHA-256 of the end-entity certificate, hex: what `fleet-agent enroll
    /// --server-fingerprint` takes.
    pub fingerprint: String,
}

/// SHA-256 of a DER certificate as 64 lowercase hex digits.
pub fn fingerprint_hex(cert_der: &[u8]) -> String {
    hex::encode(Sha256::digest(cert_der))
}

/// Reads a PEM certificate chain (end-entity first) and its PEM private key, and
/// builds a rustls server configuration on the ring provider speaking HTTP/1.1.
pub fn load_server_config(cert_path: &Path, key_path: &Path) -> Result<LoadedTls, TlsConfigError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| TlsConfigError::Read {
            path: path.to_owned(),
            source,
        })
    };
    let cert_pem = read(cert_path)?;
    let key_pem = read(key_path)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsConfigError::Pem {
            path: cert_path.to_owned(),
            reason: e.to_string(),
        })?;
    let Some(end_entity) = chain.first() else {
        return Err(TlsConfigError::NoCertificate {
            path: cert_path.to_owned(),
        });
    };
    let fingerprint = fingerprint_hex(end_entity.as_ref());
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsConfigError::NoKey {
            path: key_path.to_owned(),
        },
        other => TlsConfigError::Pem {
            path: key_path.to_owned(),
            reason: other.to_string(),
        },
    })?;
    let config = server_config(chain, key).map_err(|source| match source {
        rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
            TlsConfigError::KeyMismatch {
                cert: cert_path.to_owned(),
                key: key_path.to_owned(),
            }
        }
        source => TlsConfigError::Rejected {
            cert: cert_path.to_owned(),
            key: key_path.to_owned(),
            source,
        },
    })?;
    Ok(LoadedTls {
        config,
        fingerprint,
    })
}

/// A rustls server configuration (ring provider, TLS 1.2 and 1.3, HTTP/1.1 by
/// ALPN) presenting `chain` with `key`. Fails if the key is not the certificate's.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A self-signed certificate and its key, both PEM.
#[derive(Debug, Clone)]
pub struct SelfSigned {
    pub cert_pem: String,
    pub key_pem: String,
    pub fingerprint: String,
}

/// A self-signed certificate valid for `hostnames` (DNS names or IP addresses).
pub fn self_signed(hostnames: &[String]) -> Result<SelfSigned, TlsConfigError> {
    let made = rcgen::generate_simple_self_signed(hostnames.to_vec())?;
    Ok(SelfSigned {
        cert_pem: made.cert.pem(),
        key_pem: made.key_pair.serialize_pem(),
        fingerprint: fingerprint_hex(made.cert.der()),
    })
}

/// Serves the API over HTTPS on `listener` until `shutdown` resolves; then stops
/// accepting and gives requests in flight [`SHUTDOWN_GRACE`] to finish.
pub async fn serve_tls(
    listener: TcpListener,
    state: AppState,
    tls: Arc<ServerConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let local = listener.local_addr()?;
    let (conn_tx, conn_rx) = mpsc::channel(64);
    let accept_loop = AbortOnDrop(tokio::spawn(accept_loop(
        listener,
        TlsAcceptor::from(tls),
        conn_tx,
    )));
    let tls_listener = TlsListener {
        conns: conn_rx,
        local,
        _accept_loop: accept_loop,
    };

    let (stop_tx, stop_rx) = watch::channel(false);
    let signal = AbortOnDrop(tokio::spawn(async move {
        shutdown.await;
        stop_tx.send_replace(true);
    }));
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        // An Err means the sender is gone, which only happens once we return.
        let _ = rx.wait_for(|stop| *stop).await;
    };

    // Session cookies are `Secure` from now on.
    state
        .access
        .tls
        .store(true, std::sync::atomic::Ordering::Relaxed);
    // Handlers see the client's address (login attempts are limited per address).
    let app =
        router(state).into_make_service_with_connect_info::<crate::http::session::ClientAddr>();
    let server = axum::serve(tls_listener, app)
        .with_graceful_shutdown(stopped(stop_rx.clone()))
        .into_future();
    tokio::pin!(server);
    let result = tokio::select! {
        done = &mut server => done,
        () = stopped(stop_rx) => match tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await {
            Ok(done) => done,
            Err(_) => {
                tracing::warn!(grace_s = SHUTDOWN_GRACE.as_secs(), "requests still in flight after the shutdown grace period; closing them");
                Ok(())
            }
        },
    };
    drop(signal);
    result
}

/// Accepts TCP connections and hands each finished TLS handshake to `conns`, until
/// the receiving side is gone.
async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    conns: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let mut handshakes = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept(), if handshakes.len() < MAX_PENDING_HANDSHAKES => {
                match accepted {
                    Ok((stream, peer)) => {
                        handshakes.spawn(handshake(acceptor.clone(), stream, peer, conns.clone()));
                    }
                    Err(e) if is_connection_error(&e) => {
                        tracing::debug!(error = %e, "accept failed for one connection");
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: give the system a moment
                        // instead of spinning.
                        tracing::warn!(error = %e, "accept failed; retrying in 1 s");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
            Some(_) = handshakes.join_next(), if !handshakes.is_empty() => {}
            () = conns.closed() => return,
        }
    }
}

async fn handshake(
    acceptor: TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    conns: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let _ = stream.set_nodelay(true);
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => {
            // Fails only when the server is shutting down; the connection just closes.
            let _ = conns.send((tls, peer)).await;
        }
        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
    }
}

fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

/// Connections that finished their handshake, as axum's server takes them.
pub(crate) struct TlsListener {
    conns: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    _accept_loop: AbortOnDrop,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.conns.recv().await {
            Some(conn) => conn,
            // The accept loop holds the sender until this listener is dropped, so
            // this is reached only if it panicked: accept nothing more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
