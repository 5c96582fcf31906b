//! [`SessionStore`] on SQLite.

use super::conn::backend;
use super::{blob, uuid_at, SqliteStorage};
use crate::storage::sessions::{Session, SessionStore};
use crate::storage::StorageError;
use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};
use uuid::Uuid;

fn user_exists(c: &Connection, tenant: &Uuid, user: &Uuid) -> Result<bool, StorageError> {
    c.query_row(
        "SELECT 1 FROM users WHERE tenant_id = ?1 AND user_id = ?2",
        params![blob(tenant), blob(user)],
        |_| Ok(()),
    )
    .optional()
    .map(|r| r.is_some())
    .map_err(backend)
}

#[async_trait]
impl SessionStore for SqliteStorage {
    async fn set_password(
        &self,
        tenant: Uuid,
        user_id: Uuid,
        phc: &str,
        now_ms: i64,
    ) -> Result<(), StorageError> {
        let phc = phc.to_owned();
        self.pool
            .write(move |c| {
                let tx = c.transaction().map_err(backend)?;
                if !user_exists(&tx, &tenant, &user_id)? {
                    return Err(StorageError::UnknownUser);
                }
                tx.execute(
                    "INSERT INTO user_passwords (tenant_id, user_id, phc, updated_at_ms) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (tenant_id, user_id) DO UPDATE SET phc = excluded.phc, updated_at_ms = excluded.updated_at_ms",
                    params![blob(&tenant), blob(&user_id), phc, now_ms],
                )
                .map_err(backend)?;
                tx.execute(
                    "DELETE FROM user_sessions WHERE tenant_id = ?1 AND user_id = ?2",
                    params![blob(&tenant), blob(&user_id)],
                )
                .map_err(backend)?;
                tx.commit().map_err(backend)
            })
            .await
    }

    async fn login_user(
        &self,
        tenant: Uuid,
        email: &str,
    ) -> Result<Option<(Uuid, Option<String>)>, StorageError> {
        let email = email.to_owned();
        self.pool
            .read(move |c| {
                c.query_row(
                    "SELECT u.user_id, p.phc FROM users u
                     LEFT JOIN user_passwords p ON p.tenant_id = u.tenant_id AND p.user_id = u.user_id
                     WHERE u.tenant_id = ?1 AND u.email = ?2",
                    params![blob(&tenant), email],
                    |r| Ok((uuid_at(r, 0)?, r.get(1)?)),
                )
                .optional()
                .map_err(backend)
            })
            .await
    }

    async fn create_session(
        &self,
        session_sha256: [u8; 32],
        s: &Session,
        now_ms: i64,
    ) -> Result<(), StorageError> {
        let s = s.clone();
        self.pool
            .write(move |c| {
                let tx = c.transaction().map_err(backend)?;
                if !user_exists(&tx, &s.tenant_id, &s.user_id)? {
                    return Err(StorageError::UnknownUser);
                }
                tx.execute(
                    "DELETE FROM user_sessions WHERE tenant_id = ?1 AND user_id = ?2 AND expires_at_ms <= ?3",
                    params![blob(&s.tenant_id), blob(&s.user_id), now_ms],
                )
                .map_err(backend)?;
                tx.execute(
                    "INSERT INTO user_sessions (tenant_id, session_sha256, session_id, user_id, created_at_ms, expires_at_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        blob(&s.tenant_id),
                        session_sha256.as_slice(),
                        blob(&s.session_id),
                        blob(&s.user_id),
                        s.created_at_ms,
                        s.expires_at_ms
                    ],
                )
                .map_err(backend)?;
                tx.commit().map_err(backend)
            })
            .await
    }

    async fn session_by_hash(
        &self,
        tenant: Uuid,
        session_sha256: [u8; 32],
    ) -> Result<Option<Session>, StorageError> {
        self.pool
            .read(move |c| {
                c.prepare_cached(
                    "SELECT session_id, user_id, created_at_ms, expires_at_ms FROM user_sessions
                     WHERE tenant_id = ?1 AND session_sha256 = ?2",
                )
                .map_err(backend)?
                .query_row(params![blob(&tenant), session_sha256.as_slice()], |r| {
                    Ok(Session {
                        tenant_id: tenant,
                        session_id: uuid_at(r, 0)?,
                        user_id: uuid_at(r, 1)?,
                        created_at_ms: r.get(2)?,
                        expires_at_ms: r.get(3)?,
                    })
                })
                .optional()
                .map_err(backend)
            })
            .await
    }

    async fn delete_session(
        &self,
        tenant: Uuid,
        session_sha256: [u8; 32],
    ) -> Result<bool, StorageError> {
        self.pool
            .write(move |c| {
                c.execute(
                    "DELETE FROM user_sessions WHERE tenant_id = ?1 AND session_sha256 = ?2",
                    params![blob(&tenant), session_sha256.as_slice()],
                )
                .map(|n| n > 0)
                .map_err(backend)
            })
            .await
    }
}
