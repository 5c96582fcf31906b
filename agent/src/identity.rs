//! Who this device is to the server: its ids, its own Ed25519 key (generated here,
//! never sent anywhere) and the server certificate it pinned at enrollment.
//! Kept in `DIR/identity.json`, readable by the agent's user only.

use crate::sync::client::{self, RequestError};
use crate::sync::tls::{self, Fingerprint, Pin};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::SigningKey;
use fleet_protocol::api::{self, EnrollRequest, EnrollResponse};
use fleet_protocol::auth;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;
use uuid::Uuid;

pub const IDENTITY_FILE: &str = "identity.json";
const FORMAT_VERSION: u32 = 1;
const ENROLL_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Error)]
pub enum IdentityError {
    #[error("{0} does not exist: this device is not enrolled (run `fleet-agent enroll`)")]
    NotEnrolled(PathBuf),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is damaged: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("{path} was written by a newer agent (identity format {found}, this agent reads {FORMAT_VERSION})")]
    TooNew { path: PathBuf, found: u32 },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The enrolled identity of this device.
#[derive(Clone)]
pub struct Identity {
    pub device_id: Uuid,
    pub tenant_id: Uuid,
    pub name: String,
    pub server_url: String,
    signing_key: SigningKey,
    server_cert_sha256: Option<Fingerprint>,
    /// The tenant's label and snapshot key, from the enroll answer.
    tenant_trust: Option<fleet_protocol::label::TenantTrust>,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("device_id", &self.device_id)
            .field("tenant_id", &self.tenant_id)
            .field("name", &self.name)
            .field("server_url", &self.server_url)
            .field("signing_key", &"<redacted>")
            .field(
                "server_cert_sha256",
                &self.server_cert_sha256.map(hex::encode),
            )
            .finish()
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentityFile {
    version: u32,
    device_id: Uuid,
    tenant_id: Uuid,
    name: String,
    server_url: String,
    /// The Ed25519 secret key, base64.
    signing_key: String,
    /// SHA-256 of the server's certificate, hex; absent for loopback http.
    server_cert_sha256: Option<String>,
    /// The tenant's Ed25519 label and snapshot key, base64; absent when the
    /// server that enrolled the device did not send one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tenant_public_key: Option<String>,
}

impl Identity {
    pub fn new(
        device_id: Uuid,
        tenant_id: Uuid,
        name: String,
        server_url: String,
        signing_key: SigningKey,
        server_cert_sha256: Option<Fingerprint>,
    ) -> Self {
        Self {
            device_id,
            tenant_id,
            name,
            server_url,
            signing_key,
            server_cert_sha256,
            tenant_trust: None,
        }
    }

    /// The tenant key labels and snapshots are checked against.
    pub fn tenant_trust(&self) -> Option<&fleet_protocol::label::TenantTrust> {
        self.tenant_trust.as_ref()
    }

    pub fn with_tenant_key(mut self, public_key_b64: &str) -> Result<Self, IdentityError> {
        self.tenant_trust = Some(
            fleet_protocol::label::TenantTrust::from_b64(self.tenant_id, public_key_b64).map_err(
                |_| IdentityError::Corrupt {
                    path: PathBuf::from(IDENTITY_FILE),
                    reason: "tenant public key is not an Ed25519 key in base64".into(),
                },
            )?,
        );
        Ok(self)
    }

    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(IDENTITY_FILE)
    }

    pub fn exists(data_dir: &Path) -> bool {
        Self::path(data_dir).exists()
    }

    pub fn load(data_dir: &Path) -> Result<Identity, IdentityError> {
        let path = Self::path(data_dir);
        let text = std::fs::read_to_string(&path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                IdentityError::NotEnrolled(path.clone())
            } else {
                IdentityError::Read {
                    path: path.clone(),
                    source,
                }
            }
        })?;
        if let Ok(meta) = std::fs::metadata(&path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "identity file is readable by other users; chmod 600 it");
            }
        }
        let corrupt = |reason: String| IdentityError::Corrupt {
            path: path.clone(),
            reason,
        };
        let version = serde_json::from_str::<serde_json::Value>(&text)
            .map_err(|e| corrupt(e.to_string()))?
            .get("version")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| corrupt("no format version".into()))?;
        if version > u64::from(FORMAT_VERSION) {
            return Err(IdentityError::TooNew {
                path: path.clone(),
                found: u32::try_from(version).unwrap_or(u32::MAX),
            });
        }
        let file: IdentityFile = serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
        let key_bytes: [u8; 32] = B64
            .decode(file.signing_key.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| corrupt("signing key is not 32 bytes of base64".into()))?;
        let pin = file
            .server_cert_sha256
            .as_deref()
            .map(tls::parse_fingerprint)
            .transpose()
            .map_err(|e| corrupt(e.to_string()))?;
        let tenant_trust = file
            .tenant_public_key
            .as_deref()
            .map(|k| fleet_protocol::label::TenantTrust::from_b64(file.tenant_id, k))
            .transpose()
            .map_err(|_| corrupt("tenant public key is not an Ed25519 key in base64".into()))?;
        Ok(Identity {
            device_id: file.device_id,
            tenant_id: file.tenant_id,
            name: file.name,
            server_url: file.server_url,
            signing_key: SigningKey::from_bytes(&key_bytes),
            server_cert_sha256: pin,
            tenant_trust,
        })
    }

    /// Write `DIR/identity.json` atomically with mode 0600.
    pub fn save(&self, data_dir: &Path) -> Result<(), IdentityError> {
        let path = Self::path(data_dir);
        let write_err = |source| IdentityError::Write {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(data_dir).map_err(write_err)?;
        let file = IdentityFile {
            version: FORMAT_VERSION,
            device_id: self.device_id,
            tenant_id: self.tenant_id,
            name: self.name.clone(),
            server_url: self.server_url.clone(),
            signing_key: B64.encode(self.signing_key.to_bytes()),
            server_cert_sha256: self.server_cert_sha256.map(hex::encode),
            tenant_public_key: self.tenant_trust.as_ref().map(|t| t.public_key_b64()),
        };
        let json = serde_json::to_vec_pretty(&file).expect("identity serializes");
        let tmp = data_dir.join(format!(".{IDENTITY_FILE}.tmp"));
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(write_err)?;
        f.write_all(&json).map_err(write_err)?;
        f.sync_all().map_err(write_err)?;
        drop(f);
        std::fs::rename(&tmp, &path).map_err(write_err)?;
        // The rename is durable only once the directory entry is.
        std::fs::File::open(data_dir)
            .and_then(|d| d.sync_all())
            .map_err(write_err)?;
        Ok(())
    }

    pub fn signing_key(&self) -> &SigningKey {
        &self.signing_key
    }

    pub fn public_key_b64(&self) -> String {
        auth::encode_public_key(&self.signing_key.verifying_key())
    }

    /// The server certificate this device accepts, if it talks https.
    pub fn server_pin(&self) -> Option<Fingerprint> {
        self.server_cert_sha256
    }
}

/// How to enroll: the server, the one-time token, and optionally the server
/// certificate's fingerprint (otherwise the first certificate seen is trusted).
#[derive(Clone)]
pub struct EnrollOptions<'a> {
    pub server_url: &'a str,
    pub token: &'a str,
    pub data_dir: &'a Path,
    pub name: Option<&'a str>,
    pub server_fingerprint: Option<Fingerprint>,
    /// A kiosk says so, to stay out of the server's vehicle lists and reports.
    pub kind: api::DeviceKind,
}

/// Enroll this device with a one-time token, trusting the server's certificate on
/// first use. See [`enroll_with`].
pub async fn enroll(
    server_url: &str,
    token: &str,
    data_dir: &Path,
    name: Option<&str>,
) -> anyhow::Result<Identity> {
    Ok(enroll_with(EnrollOptions {
        server_url,
        token,
        data_dir,
        name,
        server_fingerprint: None,
        kind: api::DeviceKind::Vehicle,
    })
    .await?)
}

/// Why an enrollment did not happen, sorted by what retrying can do about it.
#[derive(Debug, Error)]
pub enum EnrollError {
    /// Nothing to retry: the directory is enrolled, the URL or TLS setup is wrong.
    #[error("{0}")]
    Local(String),
    #[error("cannot reach {url} to enroll: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with an error: a bad, expired or used-up token is a
    /// 4xx and needs a new token; a 5xx is the server's trouble.
    #[error("enrollment refused by the server ({status}, {code}): {message}")]
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    #[error("enrollment failed: {0}")]
    BadAnswer(String),
    #[error(transparent)]
    Identity(#[from] IdentityError),
}

impl EnrollError {
    /// Worth retrying soon: the network or the server, not the token.
    pub fn is_transient(&self) -> bool {
        match self {
            EnrollError::Unreachable { .. } | EnrollError::BadAnswer(_) => true,
            EnrollError::Refused { status, .. } => {
                *status >= 500 || *status == 429 || *status == 408
            }
            EnrollError::Local(_) | EnrollError::Identity(_) => false,
        }
    }
}

/// Generate a key pair, register the public half with the server under the
/// token's tenant, and store the identity in `DIR/identity.json`.
pub async fn enroll_with(opts: EnrollOptions<'_>) -> Result<Identity, EnrollError> {
    if Identity::exists(opts.data_dir) {
        return Err(EnrollError::Local(format!(
            "{} already exists: this data directory is enrolled; remove it to enroll again",
            Identity::path(opts.data_dir).display()
        )));
    }
    let url =
        client::check_server_url(opts.server_url).map_err(|e| EnrollError::Local(e.to_string()))?;
    let pin = match opts.server_fingerprint {
        Some(fp) => Pin::Exactly(fp),
        None => Pin::TrustOnFirstUse,
    };
    let (http, verifier) = client::http_client(&url, Some(pin), ENROLL_TIMEOUT)
        .map_err(|e| EnrollError::Local(e.to_string()))?;

    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let public_key = auth::encode_public_key(&key.verifying_key());
    let request = EnrollRequest {
        token: opts.token.to_owned(),
        proof: auth::sign_b64(&key, &auth::enroll_message(opts.token, &public_key)),
        public_key,
        name: opts.name.map(str::to_owned),
        agent_version: Some(env!("CARGO_PKG_VERSION").to_owned()),
        kind: opts.kind,
    };
    let mut endpoint = url.clone();
    let base_path = endpoint.path().trim_end_matches('/').to_owned();
    endpoint.set_path(&format!("{base_path}{}", api::PATH_ENROLL));
    let unreachable = |source| EnrollError::Unreachable {
        url: url.to_string(),
        source,
    };
    let response = http
        .post(endpoint)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(serde_json::to_vec(&request).expect("enroll request serializes"))
        .send()
        .await
        .map_err(unreachable)?;
    let status = response.status();
    let body = response.bytes().await.map_err(unreachable)?.to_vec();
    if !status.is_success() {
        return Err(match client::error_from(status, &body) {
            RequestError::Status {
                status,
                code,
                message,
                ..
            } => EnrollError::Refused {
                status,
                code,
                message,
            },
            other => EnrollError::BadAnswer(other.to_string()),
        });
    }
    let answer: EnrollResponse = serde_json::from_slice(&body).map_err(|e| {
        EnrollError::BadAnswer(format!("the server's enrollment answer is unreadable: {e}"))
    })?;
    let pinned = match verifier {
        Some(v) => Some(v.seen().ok_or_else(|| {
            EnrollError::BadAnswer("TLS handshake finished without a server certificate".into())
        })?),
        None => None,
    };
    let identity = Identity {
        device_id: answer.device_id,
        tenant_id: answer.tenant_id,
        name: answer.name,
        server_url: url.as_str().trim_end_matches('/').to_owned(),
        signing_key: key,
        server_cert_sha256: pinned,
        tenant_trust: None,
    };
    // A key that does not decode is left out: labels then go unverified until
    // the snapshot pull fetches the key again, which beats failing enrollment.
    let identity = match answer.tenant_public_key.as_deref() {
        Some(k) => identity
            .clone()
            .with_tenant_key(k)
            .inspect_err(|e| tracing::warn!("enroll answer: {e}"))
            .unwrap_or(identity),
        None => identity,
    };
    identity.save(opts.data_dir)?;
    tracing::info!(
        device = %identity.device_id,
        tenant = %identity.tenant_id,
        server = %identity.server_url,
        pinned = ?pinned.map(hex::encode),
        "enrolled"
    );
    Ok(identity)
}

/// Read a one-time token file: its first non-empty line. A token readable by
/// other users is used, with a warning.
pub fn read_token_file(path: &Path) -> Result<String, IdentityError> {
    let text = std::fs::read_to_string(path).map_err(|source| IdentityError::Read {
        path: path.to_owned(),
        source,
    })?;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "enrollment token is readable by other users; chmod 600 it");
        }
    }
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| IdentityError::Corrupt {
            path: path.to_owned(),
            reason: "the token file is empty".into(),
        })
}

/// Delete a used token file durably. Call only once the identity is saved: a
/// crash in between leaves a spent token behind, never a device without one.
pub fn remove_token_file(path: &Path) -> std::io::Result<()> {
    std::fs::remove_file(path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Identity {
        Identity::new(
            Uuid::new_v4(),
            Uuid::new_v4(),
            "truck-7".into(),
            "https://fleet.example".into(),
            SigningKey::generate(&mut rand::rngs::OsRng),
            Some([7; 32]),
        )
    }

    #[test]
    fn identity_round_trips_through_a_private_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let id = sample();
        id.save(dir.path()).expect("save");
        let mode = std::fs::metadata(Identity::path(dir.path()))
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let back = Identity::load(dir.path()).expect("load");
        assert_eq!(back.device_id, id.device_id);
        assert_eq!(back.tenant_id, id.tenant_id);
        assert_eq!(back.public_key_b64(), id.public_key_b64());
        assert_eq!(back.server_pin(), Some([7; 32]));
    }

    #[test]
    fn debug_output_never_shows_the_key() {
        let id = sample();
        let secret = B64.encode(id.signing_key().to_bytes());
        let shown = format!("{id:?}");
        assert!(shown.contains("<redacted>"));
        assert!(!shown.contains(&secret));
    }

    #[test]
    fn a_missing_identity_says_the_device_is_not_enrolled() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(matches!(
            Identity::load(dir.path()),
            Err(IdentityError::NotEnrolled(_))
        ));
    }

    #[test]
    fn a_newer_or_damaged_identity_file_is_refused_clearly() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(Identity::path(dir.path()), r#"{"version": 9}"#).expect("write");
        assert!(matches!(
            Identity::load(dir.path()),
            Err(IdentityError::TooNew { found: 9, .. })
        ));
        std::fs::write(Identity::path(dir.path()), "{").expect("write");
        assert!(matches!(
            Identity::load(dir.path()),
            Err(IdentityError::Corrupt { .. })
        ));
    }

    #[tokio::test]
    async fn enrolling_twice_into_one_directory_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        sample().save(dir.path()).expect("save");
        let err = enroll("http://127.0.0.1:1", "t", dir.path(), None)
            .await
            .expect_err("must refuse");
        assert!(err.to_string().contains("already exists"), "{err}");
    }

    #[tokio::test]
    async fn plain_http_enrollment_to_a_remote_host_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = enroll("http://fleet.example.com", "t", dir.path(), None)
            .await
            .expect_err("must refuse");
        assert!(err.to_string().contains("https://"), "{err}");
        assert!(!Identity::exists(dir.path()));
    }
}
