//! Users' passwords and dashboard sessions. One trait, one implementation per
//! backend, checked by `conformance_sessions.rs`.
//!
//! A password is kept as an argon2id PHC string (hashing is the HTTP layer's
//! business; storage never sees a password). A session is kept as the SHA-256
//! of its secret, so a database dump holds nothing a browser could present.

use super::StorageError;
use async_trait::async_trait;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub tenant_id: Uuid,
    /// Names the session in audit entries and as the author of what it changes.
    pub session_id: Uuid,
    pub user_id: Uuid,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
}

#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Sets or replaces the user's password and ends every session of theirs.
    /// `UnknownUser` when the tenant has no such user.
    async fn set_password(
        &self,
        tenant: Uuid,
        user_id: Uuid,
        phc: &str,
        now_ms: i64,
    ) -> Result<(), StorageError>;

    /// The user with this (lower-cased) email and their password, if they have
    /// one: `None` when the tenant has no such user.
    async fn login_user(
        &self,
        tenant: Uuid,
        email: &str,
    ) -> Result<Option<(Uuid, Option<String>)>, StorageError>;

    /// Stores a new session under the hash of its secret, dropping the user's
    /// sessions that have expired by `now_ms`. `UnknownUser` when the tenant has
    /// no such user.
    async fn create_session(
        &self,
        session_sha256: [u8; 32],
        session: &Session,
        now_ms: i64,
    ) -> Result<(), StorageError>;

    /// The session with this hash in `tenant`, whatever its expiry (the caller
    /// decides what an expired one means).
    async fn session_by_hash(
        &self,
        tenant: Uuid,
        session_sha256: [u8; 32],
    ) -> Result<Option<Session>, StorageError>;

    /// Ends the session; `false` when there was none.
    async fn delete_session(
        &self,
        tenant: Uuid,
        session_sha256: [u8; 32],
    ) -> Result<bool, StorageError>;
}
