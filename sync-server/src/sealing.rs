//! Tenant signing keys at rest. Each tenant's Ed25519 seed is sealed with the
//! server's key-encryption key (XChaCha20-Poly1305, the tenant id as associated
//! data) before it reaches the database, so a dump or a backup cannot sign
//! labels. A sealed secret names the key that sealed it, so after a rotation
//! the server can tell "sealed under another key" from "damaged".
//!
//! Sealed form: `FKS1` ‖ key id (8 bytes) ‖ nonce (24) ‖ ciphertext and tag (48).
//! A stored secret of exactly 32 bytes is a seed from before sealing; it is
//! sealed the first time the server with a key reads it.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use std::path::Path;
use thiserror::Error;
use uuid::Uuid;

const MAGIC: &[u8; 4] = b"FKS1";
const ID_LEN: usize = 8;
const NONCE_LEN: usize = 24;
pub const SEED_LEN: usize = 32;
const SEALED_LEN: usize = MAGIC.len() + ID_LEN + NONCE_LEN + SEED_LEN + 16;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SealError {
    #[error("the key-encryption key must be 32 bytes, written as 64 hex digits or base64")]
    BadKey,
    #[error("tenant {tenant}'s signing key was sealed with key-encryption key {stored}, but this server has key {ours}: start it with the key that sealed the database")]
    WrongKey {
        tenant: Uuid,
        stored: String,
        ours: String,
    },
    #[error("tenant {tenant}'s sealed signing key does not open with key-encryption key {ours}: the key or the stored secret is wrong")]
    NotOpened { tenant: Uuid, ours: String },
    #[error("tenant {tenant}'s stored signing key is neither a seed nor a sealed seed")]
    Damaged { tenant: Uuid },
    #[error("tenant {tenant}'s signing key is sealed, and this server has no key-encryption key (--key-encryption-key-file or FLEET_KEY_ENCRYPTION_KEY)")]
    NoKey { tenant: Uuid },
    #[error("this server has no key-encryption key, so it makes no new signing keys: give --key-encryption-key-file or FLEET_KEY_ENCRYPTION_KEY")]
    RefusedWithoutKey,
}

/// The server's key-encryption key.
#[derive(Clone)]
pub struct KeyEncryptionKey {
    key: [u8; 32],
    id: [u8; ID_LEN],
}

impl std::fmt::Debug for KeyEncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyEncryptionKey")
            .field("id", &self.id_hex())
            .field("key", &"<redacted>")
            .finish()
    }
}

impl KeyEncryptionKey {
    pub fn from_bytes(key: [u8; 32]) -> Self {
        let digest = crate::storage::sha256(&[b"fleet-kek-id:".as_slice(), &key].concat());
        let mut id = [0u8; ID_LEN];
        id.copy_from_slice(&digest[..ID_LEN]);
        KeyEncryptionKey { key, id }
    }

    /// 64 hex digits or base64 of 32 bytes, surrounding whitespace ignored.
    pub fn parse(text: &str) -> Result<Self, SealError> {
        use base64::Engine;
        let t = text.trim();
        let bytes = if t.len() == 64 {
            hex::decode(t).map_err(|_| SealError::BadKey)?
        } else {
            base64::engine::general_purpose::STANDARD
                .decode(t)
                .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(t))
                .map_err(|_| SealError::BadKey)?
        };
        let key: [u8; 32] = bytes.try_into().map_err(|_| SealError::BadKey)?;
        Ok(Self::from_bytes(key))
    }

    pub fn generate() -> Self {
        Self::from_bytes(rand::random())
    }

    /// Reads the key at `path`, first writing a new one there (owner-only)
    /// when there is none: what the demo does in its data directory.
    pub fn load_or_create(path: &Path) -> std::io::Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let k = Self::generate();
                let mut opts = std::fs::OpenOptions::new();
                opts.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
                let mut f = opts.open(path)?;
                std::io::Write::write_all(&mut f, format!("{}\n", hex::encode(k.key)).as_bytes())?;
                f.sync_all()?;
                Ok(k)
            }
            Err(e) => Err(e),
        }
    }

    pub fn id_hex(&self) -> String {
        hex::encode(self.id)
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&self.key).into())
    }

    pub fn seal(&self, tenant: Uuid, seed: &[u8; SEED_LEN]) -> Vec<u8> {
        let nonce: [u8; NONCE_LEN] = rand::random();
        let ct = self
            .cipher()
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: seed,
                    aad: tenant.as_bytes(),
                },
            )
            .expect("sealing 32 bytes cannot fail");
        let mut out = Vec::with_capacity(SEALED_LEN);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    pub fn open(&self, tenant: Uuid, sealed: &[u8]) -> Result<[u8; SEED_LEN], SealError> {
        if sealed.len() != SEALED_LEN || &sealed[..4] != MAGIC {
            return Err(SealError::Damaged { tenant });
        }
        let (id, rest) = sealed[4..].split_at(ID_LEN);
        if id != self.id {
            return Err(SealError::WrongKey {
                tenant,
                stored: hex::encode(id),
                ours: self.id_hex(),
            });
        }
        let (nonce, ct) = rest.split_at(NONCE_LEN);
        let seed = self
            .cipher()
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: tenant.as_bytes(),
                },
            )
            .map_err(|_| SealError::NotOpened {
                tenant,
                ours: self.id_hex(),
            })?;
        seed.try_into().map_err(|_| SealError::Damaged { tenant })
    }
}

/// How this server keeps tenant signing keys.
#[derive(Debug, Clone)]
pub enum Sealing {
    /// Sealed with this key; older plain seeds are sealed when read.
    Sealed(KeyEncryptionKey),
    /// Production without a key: existing plain seeds are used, new keys are
    /// refused, sealed ones cannot be opened.
    RefuseNew,
    /// Plain seeds, as before sealing existed: tests and embedders that keep
    /// their database private.
    Plain,
}

static PROCESS: std::sync::OnceLock<Sealing> = std::sync::OnceLock::new();

/// Sets how this process keeps signing keys, once, before serving (`serve`,
/// `demo`, `admin`); later calls are ignored and answer `false`. A process
/// that never sets it keeps plain seeds, as library users and tests did before.
pub fn set_process_sealing(s: Sealing) -> bool {
    PROCESS.set(s).is_ok()
}

pub fn process_sealing() -> &'static Sealing {
    PROCESS.get_or_init(|| Sealing::Plain)
}

/// What to do with a stored secret.
#[derive(Debug, PartialEq, Eq)]
pub enum Opened {
    /// The seed; `reseal` holds the sealed form to store in place of a plain one.
    Seed {
        seed: [u8; SEED_LEN],
        reseal: Option<Vec<u8>>,
    },
}

impl Sealing {
    /// The stored form of a new seed; `RefusedWithoutKey` in production
    /// without a key.
    pub fn seal_new(&self, tenant: Uuid, seed: &[u8; SEED_LEN]) -> Result<Vec<u8>, SealError> {
        match self {
            Sealing::Sealed(k) => Ok(k.seal(tenant, seed)),
            Sealing::RefuseNew => Err(SealError::RefusedWithoutKey),
            Sealing::Plain => Ok(seed.to_vec()),
        }
    }

    /// The seed in a stored secret, and its sealed form when it should be
    /// stored sealed from now on.
    pub fn open(&self, tenant: Uuid, stored: &[u8]) -> Result<Opened, SealError> {
        if let Ok(seed) = <[u8; SEED_LEN]>::try_from(stored) {
            let reseal = match self {
                Sealing::Sealed(k) => Some(k.seal(tenant, &seed)),
                Sealing::RefuseNew | Sealing::Plain => None,
            };
            return Ok(Opened::Seed { seed, reseal });
        }
        match self {
            Sealing::Sealed(k) => Ok(Opened::Seed {
                seed: k.open(tenant, stored)?,
                reseal: None,
            }),
            Sealing::RefuseNew | Sealing::Plain if stored.starts_with(MAGIC) => {
                Err(SealError::NoKey { tenant })
            }
            Sealing::RefuseNew | Sealing::Plain => Err(SealError::Damaged { tenant }),
        }
    }
}

/// At start: opens every tenant's stored signing key with `sealing`, sealing
/// the plain ones when there is a key. Fails on the first key that does not
/// open, with the reason, so a wrong key-encryption key stops the server
/// before it serves. Answers how many tenants have a key.
pub async fn check_stored_keys(
    storage: &dyn crate::storage::Storage,
    sealing: &Sealing,
) -> Result<usize, crate::storage::StorageError> {
    let mut n = 0;
    for t in storage.list_tenants().await? {
        if storage.stored_signing_key(t.tenant_id).await?.is_some() {
            crate::http::kiosk::tenant_signing_key_with(storage, sealing, t.tenant_id).await?;
            n += 1;
        }
    }
    Ok(n)
}

#[derive(Debug, Error)]
pub enum SetupError {
    #[error("reading the key-encryption key file {0}: {1}")]
    Read(String, std::io::Error),
    #[error("the key-encryption key: {0}")]
    Key(#[from] SealError),
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
}

/// Sets this process's sealing from `--key-encryption-key-file` or the key
/// itself (`FLEET_KEY_ENCRYPTION_KEY`): sealed with it, or no new keys without
/// one. With `check`, opens (and seals) every stored key now.
pub async fn install(
    file: Option<&Path>,
    key: Option<&str>,
    storage: &dyn crate::storage::Storage,
    check: bool,
) -> Result<(), SetupError> {
    let text = match file {
        Some(p) => Some(
            std::fs::read_to_string(p).map_err(|e| SetupError::Read(p.display().to_string(), e))?,
        ),
        None => key.filter(|k| !k.trim().is_empty()).map(str::to_owned),
    };
    let sealing = match text {
        Some(t) => Sealing::Sealed(KeyEncryptionKey::parse(&t)?),
        None => {
            tracing::warn!("no key-encryption key: tenant signing keys are not sealed and no new ones are made");
            Sealing::RefuseNew
        }
    };
    set_and_check(sealing, storage, check).await
}

/// The demo keeps its key-encryption key in its data directory, made on first run.
pub async fn install_demo(
    data_dir: &Path,
    storage: &dyn crate::storage::Storage,
) -> Result<(), SetupError> {
    let path = data_dir.join("key-encryption.key");
    let key = KeyEncryptionKey::load_or_create(&path)
        .map_err(|e| SetupError::Read(path.display().to_string(), e))?;
    set_and_check(Sealing::Sealed(key), storage, true).await
}

async fn set_and_check(
    sealing: Sealing,
    storage: &dyn crate::storage::Storage,
    check: bool,
) -> Result<(), SetupError> {
    if check {
        let n = check_stored_keys(storage, &sealing).await?;
        tracing::debug!(tenants = n, "stored signing keys open");
    }
    set_process_sealing(sealing);
    Ok(())
}

// ---- re-sealing after a key-encryption key rotation ----------------------

/// Why `admin signing-key reseal` changed nothing.
#[derive(Debug, Error)]
pub enum ResealError {
    #[error("reading {flag} {path}: {source}")]
    Read {
        flag: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("{flag} {path}: {source}")]
    Key {
        flag: &'static str,
        path: String,
        source: SealError,
    },
    #[error("the old and the new key-encryption key are the same key ({0}): nothing to re-seal")]
    SameKey(String),
    #[error("tenant {tenant}'s signing key is sealed with key-encryption key {stored}, which is neither the old key {old} (--old-key-file) nor the new key {new}; nothing was changed")]
    WrongOldKey {
        tenant: Uuid,
        stored: String,
        old: String,
        new: String,
    },
    #[error("tenant {tenant}'s signing key does not open with the old key {old} (--old-key-file): the key or the stored secret is wrong; nothing was changed")]
    NotOpened { tenant: Uuid, old: String },
    #[error("tenant {tenant}'s stored signing key is neither a seed nor a sealed seed; nothing was changed")]
    Damaged { tenant: Uuid },
    #[error("tenant {tenant}'s signing key changed while it was being re-sealed (a server still running with the old key?); run the command again")]
    Raced { tenant: Uuid },
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
}

/// Reads a key-encryption key file for `flag` (`--old-key-file`, `--new-key-file`).
pub fn read_key_file(flag: &'static str, path: &Path) -> Result<KeyEncryptionKey, ResealError> {
    let text = std::fs::read_to_string(path).map_err(|source| ResealError::Read {
        flag,
        path: path.display().to_string(),
        source,
    })?;
    KeyEncryptionKey::parse(&text).map_err(|source| ResealError::Key {
        flag,
        path: path.display().to_string(),
        source,
    })
}

/// What re-sealing does with one tenant's stored secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResealStep {
    /// Sealed under the old key: store this, sealed under the new one.
    Reseal(Vec<u8>),
    /// A plain seed from before sealing: store this, sealed under the new key.
    SealPlain(Vec<u8>),
    /// Already sealed under the new key (a second run): leave it.
    AlreadyNew,
}

/// Decides, without touching storage, what becomes of `stored` when moving
/// from `old` to `new`. Any secret that neither key opens is an error naming
/// the key that sealed it.
pub fn plan_reseal(
    tenant: Uuid,
    stored: &[u8],
    old: &KeyEncryptionKey,
    new: &KeyEncryptionKey,
) -> Result<ResealStep, ResealError> {
    if let Ok(seed) = <[u8; SEED_LEN]>::try_from(stored) {
        return Ok(ResealStep::SealPlain(new.seal(tenant, &seed)));
    }
    if new.open(tenant, stored).is_ok() {
        return Ok(ResealStep::AlreadyNew);
    }
    match old.open(tenant, stored) {
        Ok(seed) => Ok(ResealStep::Reseal(new.seal(tenant, &seed))),
        Err(SealError::WrongKey { stored, .. }) => Err(ResealError::WrongOldKey {
            tenant,
            stored,
            old: old.id_hex(),
            new: new.id_hex(),
        }),
        Err(SealError::NotOpened { .. }) => Err(ResealError::NotOpened {
            tenant,
            old: old.id_hex(),
        }),
        Err(_) => Err(ResealError::Damaged { tenant }),
    }
}

/// What [`reseal_all`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ResealReport {
    pub old_key_id: String,
    pub new_key_id: String,
    /// Tenants with a stored signing key.
    pub tenants: usize,
    /// Moved from the old key to the new one.
    pub resealed: usize,
    /// Plain seeds from before sealing, now sealed under the new key.
    pub sealed_plain: usize,
    /// Already under the new key; left alone.
    pub unchanged: usize,
}

/// Re-seals every tenant's signing key from `old` to `new`. Every stored key
/// is checked first, so a wrong old key (or a damaged secret) changes nothing;
/// then each tenant's secret is replaced with an audit entry (actor `cli`) in
/// one transaction of its own. Running it again finds everything under the new
/// key and changes nothing.
pub async fn reseal_all(
    storage: &dyn crate::storage::Storage,
    old: &KeyEncryptionKey,
    new: &KeyEncryptionKey,
) -> Result<ResealReport, ResealError> {
    use crate::storage::access::{ActorKind, AuditEntry};
    if old.id == new.id {
        return Err(ResealError::SameKey(old.id_hex()));
    }
    let mut planned = Vec::new();
    for t in storage.list_tenants().await? {
        if let Some(k) = storage.stored_signing_key(t.tenant_id).await? {
            let step = plan_reseal(t.tenant_id, &k.secret, old, new)?;
            planned.push((t.tenant_id, k.secret, step));
        }
    }
    let mut report = ResealReport {
        old_key_id: old.id_hex(),
        new_key_id: new.id_hex(),
        tenants: planned.len(),
        ..ResealReport::default()
    };
    for (tenant, stored, step) in planned {
        let (sealed, from) = match step {
            ResealStep::AlreadyNew => {
                report.unchanged += 1;
                continue;
            }
            ResealStep::Reseal(s) => (s, old.id_hex()),
            ResealStep::SealPlain(s) => (s, "plain".to_owned()),
        };
        let audit = AuditEntry {
            tenant_id: tenant,
            audit_id: Uuid::new_v4(),
            at_ms: crate::storage::now_ms(),
            actor_kind: ActorKind::Cli,
            actor_key_id: None,
            actor_user_id: None,
            action: "signing_key.reseal".into(),
            target: format!("tenant:{tenant}"),
            detail: serde_json::json!({ "from_key_id": from, "to_key_id": new.id_hex() }),
            request_id: None,
        };
        if !storage
            .reseal_signing_secret(tenant, &stored, &sealed, audit)
            .await?
        {
            return Err(ResealError::Raced { tenant });
        }
        if from == "plain" {
            report.sealed_plain += 1;
        } else {
            report.resealed += 1;
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_seed_opens_only_with_its_key_and_its_tenant() {
        let k = KeyEncryptionKey::generate();
        let tenant = Uuid::new_v4();
        let seed = [7u8; 32];
        let sealed = k.seal(tenant, &seed);
        assert_eq!(sealed.len(), SEALED_LEN);
        assert!(
            !sealed.windows(32).any(|w| w == seed),
            "the seed does not appear in the sealed form"
        );
        assert_eq!(k.open(tenant, &sealed).unwrap(), seed);

        let other = KeyEncryptionKey::generate();
        let err = other.open(tenant, &sealed).unwrap_err();
        assert!(matches!(err, SealError::WrongKey { .. }), "{err}");
        assert!(err.to_string().contains(&k.id_hex()), "{err}");

        assert!(matches!(
            k.open(Uuid::new_v4(), &sealed).unwrap_err(),
            SealError::NotOpened { .. }
        ));
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(matches!(
            k.open(tenant, &flipped).unwrap_err(),
            SealError::NotOpened { .. }
        ));
    }

    #[test]
    fn keys_parse_from_hex_or_base64_and_nothing_else() {
        let hex_text = "11".repeat(32);
        let a = KeyEncryptionKey::parse(&format!(" {hex_text}\n")).unwrap();
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode([0x11u8; 32]);
        assert_eq!(KeyEncryptionKey::parse(&b64).unwrap().id_hex(), a.id_hex());
        assert_eq!(
            KeyEncryptionKey::parse("short").unwrap_err(),
            SealError::BadKey
        );
        assert_eq!(
            KeyEncryptionKey::parse(&"zz".repeat(32)).unwrap_err(),
            SealError::BadKey
        );
        assert!(
            !format!("{a:?}").contains(&hex_text),
            "Debug redacts the key"
        );
    }

    #[test]
    fn a_plain_seed_is_resealed_and_production_without_a_key_makes_none() {
        let tenant = Uuid::new_v4();
        let k = KeyEncryptionKey::generate();
        let sealed = Sealing::Sealed(k.clone());
        let Opened::Seed { seed, reseal } = sealed.open(tenant, &[3u8; 32]).unwrap();
        assert_eq!(seed, [3u8; 32]);
        let reseal = reseal.expect("a plain seed is sealed when read");
        assert_eq!(k.open(tenant, &reseal).unwrap(), [3u8; 32]);
        assert_eq!(
            sealed.open(tenant, &reseal).unwrap(),
            Opened::Seed {
                seed: [3u8; 32],
                reseal: None
            }
        );

        assert_eq!(
            Sealing::RefuseNew.seal_new(tenant, &[1; 32]).unwrap_err(),
            SealError::RefusedWithoutKey
        );
        assert!(matches!(
            Sealing::RefuseNew.open(tenant, &reseal).unwrap_err(),
            SealError::NoKey { .. }
        ));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kek");
        let made = KeyEncryptionKey::load_or_create(&path).unwrap();
        let read = KeyEncryptionKey::load_or_create(&path).unwrap();
        assert_eq!(made.id_hex(), read.id_hex(), "the demo keeps its key");
    }

    #[test]
    fn a_reseal_plan_moves_old_and_plain_secrets_and_names_any_it_cannot_open() {
        let tenant = Uuid::new_v4();
        let (old, new) = (KeyEncryptionKey::generate(), KeyEncryptionKey::generate());
        let under_old = old.seal(tenant, &[5; 32]);
        let ResealStep::Reseal(moved) = plan_reseal(tenant, &under_old, &old, &new).unwrap() else {
            panic!("a secret under the old key is re-sealed");
        };
        assert_eq!(new.open(tenant, &moved).unwrap(), [5; 32]);
        assert_eq!(
            plan_reseal(tenant, &moved, &old, &new).unwrap(),
            ResealStep::AlreadyNew
        );
        let ResealStep::SealPlain(sealed) = plan_reseal(tenant, &[6; 32], &old, &new).unwrap()
        else {
            panic!("a plain seed is sealed under the new key");
        };
        assert_eq!(new.open(tenant, &sealed).unwrap(), [6; 32]);

        let third = KeyEncryptionKey::generate();
        let err = plan_reseal(tenant, &third.seal(tenant, &[7; 32]), &old, &new).unwrap_err();
        assert!(
            err.to_string().contains(&third.id_hex()) && err.to_string().contains(&old.id_hex()),
            "{err}"
        );
        let mut flipped = under_old.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(matches!(
            plan_reseal(tenant, &flipped, &old, &new).unwrap_err(),
            ResealError::NotOpened { .. }
        ));
        assert!(matches!(
            plan_reseal(tenant, b"garbage", &old, &new).unwrap_err(),
            ResealError::Damaged { .. }
        ));
    }

    async fn sqlite() -> (
        std::sync::Arc<dyn crate::storage::Storage>,
        tempfile::TempDir,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::storage::sqlite::SqliteStorage::open(&dir.path().join("fleet.db")).unwrap();
        (std::sync::Arc::new(db), dir)
    }

    #[tokio::test]
    async fn a_database_dump_holds_no_signing_seed_and_a_wrong_key_is_named() {
        let (storage, dir) = sqlite().await;
        let tenant = storage.create_tenant("yard").await.unwrap().tenant_id;
        let k = KeyEncryptionKey::generate();
        let sealed = Sealing::Sealed(k.clone());
        let signing = crate::http::kiosk::tenant_signing_key_with(&*storage, &sealed, tenant)
            .await
            .unwrap();
        let again = crate::http::kiosk::tenant_signing_key_with(&*storage, &sealed, tenant)
            .await
            .unwrap();
        assert_eq!(signing.to_bytes(), again.to_bytes(), "one key per tenant");
        let stored = storage.stored_signing_key(tenant).await.unwrap().unwrap();
        assert_eq!(stored.secret.len(), SEALED_LEN);

        // Every byte the database wrote: main file and write-ahead log.
        let mut dump = Vec::new();
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            dump.extend(std::fs::read(entry.unwrap().path()).unwrap());
        }
        let seed = signing.to_bytes();
        assert!(
            !dump.windows(32).any(|w| w == seed),
            "the seed is on disk in the clear"
        );

        let wrong = Sealing::Sealed(KeyEncryptionKey::generate());
        let err = check_stored_keys(&*storage, &wrong)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&k.id_hex()),
            "names the key that sealed it: {err}"
        );
        assert!(err.contains("start it with the key"), "{err}");
        let err = check_stored_keys(&*storage, &Sealing::RefuseNew)
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("FLEET_KEY_ENCRYPTION_KEY"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn plain_seeds_are_sealed_at_start_and_keep_signing_the_same() {
        let (storage, _dir) = sqlite().await;
        let tenant = storage.create_tenant("old").await.unwrap().tenant_id;
        let before =
            crate::http::kiosk::tenant_signing_key_with(&*storage, &Sealing::Plain, tenant)
                .await
                .unwrap();
        assert_eq!(
            storage
                .stored_signing_key(tenant)
                .await
                .unwrap()
                .unwrap()
                .secret,
            before.to_bytes().to_vec()
        );
        let k = Sealing::Sealed(KeyEncryptionKey::generate());
        assert_eq!(check_stored_keys(&*storage, &k).await.unwrap(), 1);
        let stored = storage.stored_signing_key(tenant).await.unwrap().unwrap();
        assert_eq!(stored.secret.len(), SEALED_LEN, "sealed in place");
        let after = crate::http::kiosk::tenant_signing_key_with(&*storage, &k, tenant)
            .await
            .unwrap();
        assert_eq!(after.to_bytes(), before.to_bytes());

        let fresh = storage.create_tenant("new").await.unwrap().tenant_id;
        let err =
            crate::http::kiosk::tenant_signing_key_with(&*storage, &Sealing::RefuseNew, fresh)
                .await
                .unwrap_err();
        assert!(
            err.to_string().contains("makes no new signing keys"),
            "{err}"
        );
        assert!(storage.stored_signing_key(fresh).await.unwrap().is_none());
    }
}
