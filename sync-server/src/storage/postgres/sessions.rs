//! [`SessionStore`] on PostgreSQL; every statement runs in a tenant transaction.

use super::{pg, PgStorage, PgTx};
use crate::storage::sessions::{Session, SessionStore};
use crate::storage::StorageError;
use async_trait::async_trait;
use uuid::Uuid;

async fn user_exists(tx: &PgTx, tenant: Uuid, user: Uuid) -> Result<bool, StorageError> {
    Ok(tx
        .query_opt(
            "SELECT 1 FROM users WHERE tenant_id = $1 AND user_id = $2",
            &[&tenant, &user],
        )
        .await
        .map_err(pg)?
        .is_some())
}

#[async_trait]
impl SessionStore for PgStorage {
    async fn set_password(
        &self,
        tenant: Uuid,
        user_id: Uuid,
        phc: &str,
        now_ms: i64,
    ) -> Result<(), StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        if !user_exists(&tx, tenant, user_id).await? {
            return Err(StorageError::UnknownUser);
        }
        tx.execute(
            "INSERT INTO user_passwords (tenant_id, user_id, phc, updated_at_ms) VALUES ($1, $2, $3, $4)
             ON CONFLICT (tenant_id, user_id) DO UPDATE SET phc = excluded.phc, updated_at_ms = excluded.updated_at_ms",
            &[&tenant, &user_id, &phc, &now_ms],
        )
        .await
        .map_err(pg)?;
        tx.execute(
            "DELETE FROM user_sessions WHERE tenant_id = $1 AND user_id = $2",
            &[&tenant, &user_id],
        )
        .await
        .map_err(pg)?;
        tx.commit().await
    }

    async fn login_user(
        &self,
        tenant: Uuid,
        email: &str,
    ) -> Result<Option<(Uuid, Option<String>)>, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let row = tx
            .query_opt(
                "SELECT u.user_id, p.phc FROM users u
                 LEFT JOIN user_passwords p ON p.tenant_id = u.tenant_id AND p.user_id = u.user_id
                 WHERE u.tenant_id = $1 AND u.email = $2",
                &[&tenant, &email],
            )
            .await
            .map_err(pg)?
            .map(|r| (r.get(0), r.get(1)));
        tx.commit().await?;
        Ok(row)
    }

    async fn create_session(
        &self,
        session_sha256: [u8; 32],
        s: &Session,
        now_ms: i64,
    ) -> Result<(), StorageError> {
        let tx = self.tenant_tx(s.tenant_id).await?;
        if !user_exists(&tx, s.tenant_id, s.user_id).await? {
            return Err(StorageError::UnknownUser);
        }
        tx.execute(
            "DELETE FROM user_sessions WHERE tenant_id = $1 AND user_id = $2 AND expires_at_ms <= $3",
            &[&s.tenant_id, &s.user_id, &now_ms],
        )
        .await
        .map_err(pg)?;
        tx.execute(
            "INSERT INTO user_sessions (tenant_id, session_sha256, session_id, user_id, created_at_ms, expires_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &s.tenant_id,
                &session_sha256.as_slice(),
                &s.session_id,
                &s.user_id,
                &s.created_at_ms,
                &s.expires_at_ms,
            ],
        )
        .await
        .map_err(pg)?;
        tx.commit().await
    }

    async fn session_by_hash(
        &self,
        tenant: Uuid,
        session_sha256: [u8; 32],
    ) -> Result<Option<Session>, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let row = tx
            .query_opt(
                "SELECT session_id, user_id, created_at_ms, expires_at_ms FROM user_sessions
                 WHERE tenant_id = $1 AND session_sha256 = $2",
                &[&tenant, &session_sha256.as_slice()],
            )
            .await
            .map_err(pg)?
            .map(|r| Session {
                tenant_id: tenant,
                session_id: r.get(0),
                user_id: r.get(1),
                created_at_ms: r.get(2),
                expires_at_ms: r.get(3),
            });
        tx.commit().await?;
        Ok(row)
    }

    async fn delete_session(
        &self,
        tenant: Uuid,
        session_sha256: [u8; 32],
    ) -> Result<bool, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let n = tx
            .execute(
                "DELETE FROM user_sessions WHERE tenant_id = $1 AND session_sha256 = $2",
                &[&tenant, &session_sha256.as_slice()],
            )
            .await
            .map_err(pg)?;
        tx.commit().await?;
        Ok(n > 0)
    }
}
