//! The kiosk's offline snapshot: pulled from `GET /sync/v1/snapshot`, checked
//! against the tenant key held with the identity, and kept — only if it is newer
//! than the one on disk — as `DIR/snapshot.json`, written atomically. [`load`]
//! gives the kiosk the last verified one, checked again on every read so a file
//! edited on disk is never trusted.

use super::client::{error_from, RequestError, SyncClient};
use fleet_protocol::label::TenantTrust;
use fleet_protocol::snapshot::{SignedSnapshot, Snapshot, SnapshotError, PATH_SNAPSHOT};
use reqwest::Method;
use std::io::Write;
use std::path::{Path, PathBuf};
use thiserror::Error;

pub const SNAPSHOT_FILE: &str = "snapshot.json";
/// Where the kiosk reads the tenant key (`{"tenant_id", "public_key"}`); the
/// sync loop writes it from the identity's key when it is missing.
pub const TRUST_FILE: &str = "tenant-key.json";

#[derive(Debug, Error)]
pub enum SnapshotPullError {
    #[error("no tenant key is held with the identity; re-enroll to get one")]
    NoTenantKey,
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error("the server's snapshot was refused: {0}")]
    Refused(#[from] SnapshotError),
    #[error("snapshot file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(SNAPSHOT_FILE)
}

/// The signed snapshot on disk, unverified; `None` when there is none or it
/// does not parse.
fn load_signed(data_dir: &Path) -> Option<SignedSnapshot> {
    let bytes = std::fs::read(path(data_dir)).ok()?;
    SignedSnapshot::from_json(&bytes).ok()
}

/// The last verified snapshot, verified again against `trust` at `now_ms`;
/// `None` when there is none, or it no longer verifies (expired, another key).
pub fn load(data_dir: &Path, trust: &TenantTrust, now_ms: i64) -> Option<Snapshot> {
    match load_signed(data_dir)?.verify(trust, now_ms) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(path = %path(data_dir).display(), code = e.code(), "held snapshot is not usable: {e}");
            None
        }
    }
}

/// Keeps `signed` as the held snapshot: a temporary file, synced, renamed over
/// the old one, and the directory synced.
pub fn store(data_dir: &Path, signed: &SignedSnapshot) -> Result<(), SnapshotPullError> {
    let target = path(data_dir);
    let io = |source| SnapshotPullError::Io {
        path: target.clone(),
        source,
    };
    let tmp = data_dir.join(format!(".{SNAPSHOT_FILE}.tmp"));
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(&signed.to_json()).map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    std::fs::rename(&tmp, &target).map_err(io)?;
    std::fs::File::open(data_dir)
        .and_then(|d| d.sync_all())
        .map_err(io)?;
    Ok(())
}

/// What one pull did.
#[derive(Debug, Clone, PartialEq)]
pub enum Pulled {
    /// A newer snapshot is now held.
    Stored { generated_at_ms: i64 },
    /// The server's is not newer than the one held.
    NotNewer,
}

/// Decides whether `offered` replaces what is held in `data_dir`. Pure but for
/// reading the held file.
pub fn accept(
    data_dir: &Path,
    offered: &SignedSnapshot,
    trust: &TenantTrust,
    now_ms: i64,
) -> Result<Option<Snapshot>, SnapshotError> {
    // The held one counts even if it expired since: time never runs backwards
    // for what a kiosk accepts.
    let held = load_signed(data_dir)
        .and_then(|s| s.verify(trust, i64::MIN).ok())
        .map(|s| s.generated_at_ms);
    match offered.verify_replacing(trust, now_ms, held) {
        Ok(s) => Ok(Some(s)),
        Err(SnapshotError::Rollback { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Pulls the yard's snapshot and keeps it if it verifies and is newer.
pub async fn pull(
    client: &SyncClient,
    trust: Option<&TenantTrust>,
    data_dir: &Path,
    yard: &str,
    now_ms: i64,
) -> Result<Pulled, SnapshotPullError> {
    let trust = trust.ok_or(SnapshotPullError::NoTenantKey)?;
    let path_and_query = format!("{PATH_SNAPSHOT}?yard={yard}");
    let response = client
        .signed_request(Method::GET, &path_and_query, b"")
        .send()
        .await
        .map_err(RequestError::Transport)?;
    let status = response.status();
    let bytes = response.bytes().await.map_err(RequestError::Transport)?;
    if !status.is_success() {
        return Err(error_from(status, &bytes).into());
    }
    let offered = SignedSnapshot::from_json(&bytes)?;
    match accept(data_dir, &offered, trust, now_ms)? {
        Some(s) => {
            store(data_dir, &offered)?;
            tracing::debug!(
                yard,
                generated_at_ms = s.generated_at_ms,
                badges = s.badges.len(),
                "snapshot updated"
            );
            Ok(Pulled::Stored {
                generated_at_ms: s.generated_at_ms,
            })
        }
        None => Ok(Pulled::NotNewer),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;
    use uuid::Uuid;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[3; 32])
    }

    fn trust() -> TenantTrust {
        TenantTrust::new(Uuid::from_u128(3), key().verifying_key())
    }

    fn snap(generated_at_ms: i64) -> SignedSnapshot {
        Snapshot::empty(
            trust().tenant_id,
            "north",
            generated_at_ms,
            generated_at_ms + 1000,
        )
        .sign(&key())
    }

    #[test]
    fn only_a_newer_verified_snapshot_replaces_the_held_one() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path(), &trust(), 0).is_none());
        let first = snap(100);
        assert!(accept(dir.path(), &first, &trust(), 150).unwrap().is_some());
        store(dir.path(), &first).unwrap();
        assert_eq!(
            load(dir.path(), &trust(), 150).unwrap().generated_at_ms,
            100
        );

        assert_eq!(accept(dir.path(), &snap(100), &trust(), 150).unwrap(), None);
        assert_eq!(accept(dir.path(), &snap(50), &trust(), 150).unwrap(), None);
        assert!(accept(dir.path(), &snap(200), &trust(), 250)
            .unwrap()
            .is_some());

        let foreign = Snapshot::empty(trust().tenant_id, "north", 300, 1300)
            .sign(&SigningKey::from_bytes(&[4; 32]));
        assert_eq!(
            accept(dir.path(), &foreign, &trust(), 350),
            Err(SnapshotError::ForeignTenant)
        );
        // Past its validity the held one is not used, and says why in the log.
        assert!(load(dir.path(), &trust(), 5_000).is_none());
    }

    #[test]
    fn a_snapshot_edited_on_disk_is_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        store(dir.path(), &snap(100)).unwrap();
        let p = path(dir.path());
        let text = std::fs::read_to_string(&p).unwrap();
        std::fs::write(&p, text.replace("north", "south")).unwrap();
        assert!(load(dir.path(), &trust(), 150).is_none());
    }
}
