//! The device side of the HTTP device API: one signed request at a time, with
//! the request timestamp corrected by what the server said the time was.
//!
//! The client only moves bytes and remembers the server's clock; what to send and
//! what a reply means is decided by the sync loop.

use crate::clock::SharedClock;
use crate::identity::Identity;
use crate::sync::tls::{self, Fingerprint, Pin, PinningVerifier};
use ed25519_dalek::SigningKey;
use fleet_protocol::api::{self, BatchAck, ErrorBody, TimeResponse};
use fleet_protocol::{TimeAnchor, TimeSource};
use reqwest::{Method, StatusCode, Url};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use thiserror::Error;
use uuid::Uuid;

#[derive(Debug, Error)]
pub enum UrlError {
    #[error("server URL {0:?} is not a valid URL")]
    Invalid(String),
    #[error(
        "server URL {0:?} must use https:// (plain http:// is only allowed to loopback addresses)"
    )]
    PlainHttpToRemote(String),
    #[error("server URL {0:?} must use https:// or http://")]
    Scheme(String),
}

/// Parse a server URL and refuse plain HTTP to anything but this machine: request
/// signatures stop replay and forgery but not eavesdropping.
pub fn check_server_url(url: &str) -> Result<Url, UrlError> {
    let parsed = Url::parse(url.trim()).map_err(|_| UrlError::Invalid(url.to_owned()))?;
    match parsed.scheme() {
        "https" => {}
        "http" if is_loopback(&parsed) => {}
        "http" => return Err(UrlError::PlainHttpToRemote(url.to_owned())),
        _ => return Err(UrlError::Scheme(url.to_owned())),
    }
    if parsed.host().is_none() {
        return Err(UrlError::Invalid(url.to_owned()));
    }
    Ok(parsed)
}

fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

#[derive(Debug, Error)]
pub enum ClientError {
    #[error(transparent)]
    Url(#[from] UrlError),
    #[error("cannot set up TLS: {0}")]
    Tls(#[from] rustls::Error),
    #[error("cannot build the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("identity for {0} has no pinned server certificate; enroll again over https")]
    NoPin(String),
}

/// A reqwest client for `url`: for https, one that trusts only what `pin` allows.
pub fn http_client(
    url: &Url,
    pin: Option<Pin>,
    timeout: Duration,
) -> Result<(reqwest::Client, Option<Arc<PinningVerifier>>), ClientError> {
    let builder = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .user_agent(concat!("fleet-agent/", env!("CARGO_PKG_VERSION")));
    if url.scheme() != "https" {
        return Ok((builder.build()?, None));
    }
    let pin = pin.ok_or_else(|| ClientError::NoPin(url.to_string()))?;
    let verifier = Arc::new(PinningVerifier::new(pin));
    let config = tls::client_config(verifier.clone())?;
    Ok((
        builder.use_preconfigured_tls(config).build()?,
        Some(verifier),
    ))
}

#[derive(Debug, Error)]
pub enum RequestError {
    #[error("request failed: {0}")]
    Transport(#[source] reqwest::Error),
    #[error("server answered {status} {code}: {message}")]
    Status {
        status: u16,
        code: String,
        message: String,
        server_time_ms: Option<i64>,
        acked_seq: Option<u64>,
    },
    #[error("unexpected response from the server: {0}")]
    BadResponse(String),
}

impl RequestError {
    /// Worth retrying soon: the network, an overloaded or failing server, or a
    /// garbled answer from something in between.
    pub fn is_transient(&self) -> bool {
        match self {
            RequestError::Transport(_) | RequestError::BadResponse(_) => true,
            RequestError::Status { status, code, .. } => {
                *status >= 500 || *status == 429 || *status == 408 || code == "replayed_request"
            }
        }
    }

    pub fn code(&self) -> &str {
        match self {
            RequestError::Transport(e) if e.is_timeout() => "timeout",
            RequestError::Transport(_) => "transport",
            RequestError::BadResponse(_) => "bad_response",
            RequestError::Status { code, .. } => code,
        }
    }
}

/// What the server's clock said, and when (on this process's monotonic clock).
#[derive(Debug, Clone, Copy)]
struct ServerTimeFix {
    at: Instant,
    true_ms: i64,
}

/// An authenticated connection to the sync server.
pub struct SyncClient {
    http: reqwest::Client,
    base: Url,
    device_id: Uuid,
    key: SigningKey,
    clock: SharedClock,
    fix: Mutex<Option<ServerTimeFix>>,
    anchor: Mutex<Option<TimeAnchor>>,
}

impl SyncClient {
    pub fn new(
        identity: &Identity,
        clock: SharedClock,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        let base = check_server_url(&identity.server_url)?;
        let pin = identity.server_pin().map(Pin::Exactly);
        let (http, _) = http_client(&base, pin, timeout)?;
        Ok(Self {
            http,
            base,
            device_id: identity.device_id,
            key: identity.signing_key().clone(),
            clock,
            fix: Mutex::new(None),
            anchor: Mutex::new(None),
        })
    }

    /// The time to put in a request signature: the server's clock carried forward,
    /// or the local wall clock until the server has told us its time.
    pub fn request_time_ms(&self) -> i64 {
        match *self.fix.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(f) => f.true_ms + i64::try_from(f.at.elapsed().as_millis()).unwrap_or(i64::MAX),
            None => self.clock.wall_ms(),
        }
    }

    pub fn knows_server_time(&self) -> bool {
        self.fix.lock().unwrap_or_else(|e| e.into_inner()).is_some()
    }

    /// The anchor learned from the latest reply that carried the server's time.
    pub fn take_anchor(&self) -> Option<TimeAnchor> {
        self.anchor.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    pub async fn post_batch(&self, frame: Vec<u8>) -> Result<BatchAck, RequestError> {
        let (status, bytes) = self
            .send(
                Method::POST,
                api::PATH_BATCHES,
                api::CONTENT_TYPE_BATCH,
                frame,
            )
            .await?;
        let ack: BatchAck = parse_json(status, &bytes)?;
        Ok(ack)
    }

    /// The config version meant for this device, or `None` when it runs it already.
    pub async fn desired_config(
        &self,
        have: u32,
    ) -> Result<Option<fleet_protocol::control::ConfigOffer>, RequestError> {
        let path = format!("{}?have={have}", fleet_protocol::control::PATH_CONFIG);
        let (status, bytes) = self
            .send(Method::GET, &path, "application/json", Vec::new())
            .await?;
        if status == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        parse_json(status, &bytes).map(Some)
    }

    pub async fn post_status(
        &self,
        report: &fleet_protocol::control::StatusReport,
    ) -> Result<fleet_protocol::control::StatusAck, RequestError> {
        let body = serde_json::to_vec(report)
            .map_err(|e| RequestError::BadResponse(format!("cannot encode the status: {e}")))?;
        let (status, bytes) = self
            .send(
                Method::POST,
                fleet_protocol::control::PATH_STATUS,
                "application/json",
                body,
            )
            .await?;
        parse_json(status, &bytes)
    }

    pub async fn server_time(&self) -> Result<TimeResponse, RequestError> {
        let (status, bytes) = self
            .send(Method::GET, api::PATH_TIME, "application/json", Vec::new())
            .await?;
        parse_json(status, &bytes)
    }

    /// One round of automerge's sync protocol; `None` when the server has nothing to say.
    pub async fn doc_sync(
        &self,
        doc_id: &str,
        message: Vec<u8>,
    ) -> Result<Option<Vec<u8>>, RequestError> {
        let path = doc_sync_path(doc_id);
        let (status, bytes) = self
            .send(
                Method::POST,
                &path,
                api::CONTENT_TYPE_AUTOMERGE_SYNC,
                message,
            )
            .await?;
        Ok((status != StatusCode::NO_CONTENT && !bytes.is_empty()).then_some(bytes))
    }

    /// A request to `path_and_query` signed over `signed_body`, for callers that
    /// read the response themselves (snapshot pulls, resumable blob uploads,
    /// which sign an empty body because their bytes carry their own digest).
    pub fn signed_request(
        &self,
        method: Method,
        path_and_query: &str,
        signed_body: &[u8],
    ) -> reqwest::RequestBuilder {
        let mut url = self.base.clone();
        let base_path = url.path().trim_end_matches('/').to_owned();
        let (path, query) = match path_and_query.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path_and_query, None),
        };
        url.set_path(&format!("{base_path}{path}"));
        url.set_query(query);
        let signed_path = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        };
        let authorization = fleet_protocol::auth::sign_request(
            &self.key,
            self.device_id,
            method.as_str(),
            &signed_path,
            self.request_time_ms(),
            signed_body,
        );
        self.http
            .request(method, url)
            .header(reqwest::header::AUTHORIZATION, authorization)
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<(StatusCode, Vec<u8>), RequestError> {
        let mut url = self.base.clone();
        let base_path = url.path().trim_end_matches('/').to_owned();
        let (path, query) = match path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path, None),
        };
        url.set_path(&format!("{base_path}{path}"));
        url.set_query(query);
        let signed_path = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        };
        let authorization = fleet_protocol::auth::sign_request(
            &self.key,
            self.device_id,
            method.as_str(),
            &signed_path,
            self.request_time_ms(),
            &body,
        );
        let mono_sent = self.clock.mono_ms();
        let started = Instant::now();
        let mut request = self
            .http
            .request(method, url)
            .header(reqwest::header::AUTHORIZATION, authorization);
        if !body.is_empty() {
            request = request
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(body);
        }
        let response = request.send().await.map_err(RequestError::Transport)?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(RequestError::Transport)?
            .to_vec();
        let rtt = started.elapsed();
        let mono_received = self.clock.mono_ms().max(mono_sent);
        if status.is_success() {
            if let Some(t) = server_time_in(&bytes) {
                self.observe_server_time(t, rtt, mono_received);
            }
            return Ok((status, bytes));
        }
        let err = error_from(status, &bytes);
        if let RequestError::Status {
            server_time_ms: Some(t),
            ..
        } = &err
        {
            self.observe_server_time(*t, rtt, mono_received);
        }
        Err(err)
    }

    fn observe_server_time(&self, server_time_ms: i64, rtt: Duration, mono_received: u64) {
        let half_rtt = rtt / 2;
        let true_ms =
            server_time_ms.saturating_add(i64::try_from(half_rtt.as_millis()).unwrap_or(i64::MAX));
        *self.fix.lock().unwrap_or_else(|e| e.into_inner()) = Some(ServerTimeFix {
            at: Instant::now(),
            true_ms,
        });
        *self.anchor.lock().unwrap_or_else(|e| e.into_inner()) = Some(TimeAnchor {
            boot_id: self.clock.boot_id(),
            mono_ms: mono_received,
            true_ms,
            source: TimeSource::Server,
            uncertainty_ms: u32::try_from(half_rtt.as_millis())
                .unwrap_or(u32::MAX)
                .max(1),
        });
    }
}

/// `/sync/v1/docs/{doc_id}/sync`, with the id percent-encoded as one path segment.
pub fn doc_sync_path(doc_id: &str) -> String {
    let mut encoded = String::with_capacity(doc_id.len());
    for b in doc_id.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("{}{encoded}/sync", api::PATH_DOCS_PREFIX)
}

fn parse_json<T: serde::de::DeserializeOwned>(
    status: StatusCode,
    bytes: &[u8],
) -> Result<T, RequestError> {
    serde_json::from_slice(bytes)
        .map_err(|e| RequestError::BadResponse(format!("{status} with an unreadable body: {e}")))
}

fn server_time_in(bytes: &[u8]) -> Option<i64> {
    #[derive(serde::Deserialize)]
    struct HasTime {
        server_time_ms: i64,
    }
    serde_json::from_slice::<HasTime>(bytes)
        .ok()
        .map(|t| t.server_time_ms)
}

pub(crate) fn error_from(status: StatusCode, bytes: &[u8]) -> RequestError {
    match serde_json::from_slice::<ErrorBody>(bytes) {
        Ok(body) => RequestError::Status {
            status: status.as_u16(),
            code: body.error.code,
            message: body.error.message,
            server_time_ms: body.error.server_time_ms,
            acked_seq: body.error.acked_seq,
        },
        Err(_) => RequestError::Status {
            status: status.as_u16(),
            code: format!("http_{}", status.as_u16()),
            message: String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned(),
            server_time_ms: None,
            acked_seq: None,
        },
    }
}

/// The fingerprint a TLS client saw, hex-encoded for files and logs.
pub fn fingerprint_hex(fp: &Fingerprint) -> String {
    hex::encode(fp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_is_only_for_loopback() {
        for ok in [
            "http://127.0.0.1:8080",
            "http://127.3.2.1",
            "http://localhost:9000/",
            "http://[::1]:80",
            "https://fleet.example.com",
        ] {
            check_server_url(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "http://10.0.0.1",
            "http://fleet.example.com",
            "http://[::2]",
            "http://localhost.evil.com",
        ] {
            assert!(
                matches!(check_server_url(bad), Err(UrlError::PlainHttpToRemote(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            check_server_url("ftp://x"),
            Err(UrlError::Scheme(_))
        ));
        assert!(matches!(
            check_server_url("not a url"),
            Err(UrlError::Invalid(_))
        ));
    }

    #[test]
    fn doc_ids_become_one_path_segment() {
        assert_eq!(
            doc_sync_path("vehicle-note/0b9c"),
            "/sync/v1/docs/vehicle-note%2F0b9c/sync"
        );
    }

    #[test]
    fn error_bodies_keep_their_code_and_server_time() {
        let body = br#"{"error":{"code":"clock_skew","message":"too far","server_time_ms":42}}"#;
        match error_from(StatusCode::UNAUTHORIZED, body) {
            RequestError::Status {
                status,
                code,
                server_time_ms,
                ..
            } => {
                assert_eq!(status, 401);
                assert_eq!(code, "clock_skew");
                assert_eq!(server_time_ms, Some(42));
            }
            other => panic!("unexpected {other:?}"),
        }
        let garbled = error_from(StatusCode::BAD_GATEWAY, b"<html>");
        assert_eq!(garbled.code(), "http_502");
        assert!(garbled.is_transient());
    }
}
