//! The PostgreSQL backend: production, shared by several `fleet-sync` replicas.
//!
//! Every statement runs in a transaction opened by [`PgStorage::tenant_tx`], which
//! sets `app.tenant_id` for row-level security, or by [`PgStorage::lookup_tx`] for
//! the few reads that find a row before its tenant is known. The reads on every
//! API call's path (the key, the settings, availability) use
//! [`PgStorage::read`], the same transaction sent in one round trip. The queries
//! filter by tenant as well; the policies are there for the one that forgets.

pub(crate) mod access;
mod analytics;
mod assets;
mod control;
mod ingest;
mod inspections;
mod kiosk;
mod lease;
mod mail;
pub mod migrate;
pub mod partitions;
mod reservations;
mod sessions;
mod stream;
pub mod testing;
#[cfg(test)]
mod tests;
pub mod tls;

pub use migrate::MIGRATIONS;

use crate::storage::{
    now_ms, random_secret, rfc3339_ms, sha256, DeviceRecord, DeviceSummary, DocBytes, DocWrite,
    EnrollDevice, IngestOutcome, LastPosition, NewTenant, NewToken, QuarantinedEvent, Storage,
    StorageError, StoredEvent, VehicleSummary,
};
use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use fleet_protocol::{BootId, Priority};
use futures_util::future::try_join_all;
use std::ops::Deref;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;
pub use tls::{PgTarget, PgTls, SslMode};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;
use uuid::Uuid;

/// How often at most a tenant's nonces are pruned.
const NONCE_PRUNE_EVERY_MS: i64 = 60_000;
/// Connections per replica.
const POOL_SIZE: usize = 16;
/// Months of event partitions kept ready beyond the current one.
pub const PARTITIONS_AHEAD: u32 = 2;
/// How often `serve` checks partitions and retention.
pub const MAINTENANCE_EVERY: Duration = Duration::from_secs(3600);

pub(crate) fn pg(e: tokio_postgres::Error) -> StorageError {
    match e.as_db_error() {
        Some(db) => StorageError::Backend(format!("{}: {}", db.code().code(), db.message())),
        None => StorageError::Backend(e.to_string()),
    }
}

fn pool_err(e: deadpool_postgres::PoolError) -> StorageError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => pg(e),
        deadpool_postgres::PoolError::Closed => StorageError::Closed,
        e => StorageError::Backend(e.to_string()),
    }
}

pub(crate) fn is_unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
}

pub struct PgStorage {
    pool: Pool,
    target: PgTarget,
    connector: tls::MakeRustlsConnect,
    last_nonce_prune_ms: Arc<AtomicI64>,
}

/// Whose rows a [`PgStorage::read`] sees.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ReadScope {
    /// One tenant's, under row-level security.
    Tenant(Uuid),
    /// API keys, enrollment tokens and devices of any tenant, found by their
    /// key before the tenant is known (as [`PgStorage::lookup_tx`]).
    Lookup,
}

/// An open transaction on a pooled connection, with `app.tenant_id` (or
/// `app.lookup`) set for its length. Dropped without [`PgTx::commit`], it is
/// rolled back before the connection is reused.
pub struct PgTx {
    conn: Option<Object>,
}

impl Deref for PgTx {
    type Target = deadpool_postgres::ClientWrapper;
    fn deref(&self) -> &Self::Target {
        self.conn
            .as_ref()
            .expect("a PgTx holds its connection until commit or drop")
    }
}

impl PgTx {
    pub async fn commit(mut self) -> Result<(), StorageError> {
        let conn = self.conn.take().expect("commit runs once");
        match conn.batch_execute("COMMIT").await {
            Ok(()) => Ok(()),
            Err(e) => {
                // The server has ended the transaction either way, but the
                // connection's state is unknown: do not reuse it.
                drop(Object::take(conn));
                Err(pg(e))
            }
        }
    }
}

impl Drop for PgTx {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    if conn.batch_execute("ROLLBACK").await.is_err() {
                        drop(Object::take(conn));
                    }
                });
            }
            Err(_) => drop(Object::take(conn)),
        }
    }
}

fn device_row(r: &Row) -> DeviceRecord {
    DeviceRecord {
        tenant_id: r.get(0),
        device_id: r.get(1),
        name: r.get(2),
        public_key: r.get(3),
        revoked: r.get::<_, Option<i64>>(4).is_some(),
    }
}

const DEVICE_COLUMNS: &str = "tenant_id, device_id, name, public_key, revoked_at_ms";

fn stored_event(r: &Row) -> Result<StoredEvent, StorageError> {
    let prio: i16 = r.get(2);
    let boot: Vec<u8> = r.get(5);
    Ok(StoredEvent {
        seq: r.get::<_, i64>(0) as u64,
        kind: r.get(1),
        priority: u8::try_from(prio)
            .ok()
            .and_then(Priority::from_u8)
            .ok_or_else(|| StorageError::Corrupt(format!("priority {prio}")))?,
        time_ms: r.get(3),
        time_source: r.get(4),
        boot_id: BootId(
            boot.as_slice()
                .try_into()
                .map_err(|_| StorageError::Corrupt("boot id length".into()))?,
        )
        .to_string(),
        mono_ms: r.get::<_, i64>(6) as u64,
        wall_ms: r.get(7),
        hlc: r.get::<_, i64>(8) as u64,
        config_version: u32::try_from(r.get::<_, i64>(9))
            .map_err(|_| StorageError::Corrupt("config version".into()))?,
        data: serde_json::from_str(r.get::<_, &str>(10))
            .map_err(|e| StorageError::Corrupt(format!("event data: {e}")))?,
    })
}

impl PgStorage {
    /// Connects to `url` (`postgres://user:pass@host/db`, with libpq's `sslmode`
    /// and `sslrootcert` if wanted: see [`tls`]), migrates the schema and creates
    /// the coming months' event partitions.
    pub async fn connect(url: &str) -> Result<Self, StorageError> {
        Self::connect_target(PgTarget::parse(url)?).await
    }

    /// [`PgStorage::connect`] with a parsed configuration; TLS as its `ssl_mode`
    /// says, without certificate checks.
    pub async fn connect_with(config: tokio_postgres::Config) -> Result<Self, StorageError> {
        Self::connect_target(PgTarget::from_config(config)).await
    }

    pub async fn connect_target(target: PgTarget) -> Result<Self, StorageError> {
        let connector = target.tls.connector()?;
        let mut client = dedicated_via(&target, connector.clone()).await?;
        migrate::migrate(&mut client).await?;
        partitions::ensure_ahead(&mut client, now_ms(), PARTITIONS_AHEAD).await?;
        let manager = Manager::from_config(
            target.config.clone(),
            connector.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .build()
            .map_err(|e| StorageError::Backend(e.to_string()))?;
        Ok(PgStorage {
            pool,
            target,
            connector,
            last_nonce_prune_ms: Arc::new(AtomicI64::new(0)),
        })
    }

    /// A connection outside the pool (migrations, partition maintenance); it
    /// closes when dropped. TLS as the config's `ssl_mode` says.
    pub async fn dedicated(
        config: &tokio_postgres::Config,
    ) -> Result<tokio_postgres::Client, StorageError> {
        PgTarget::from_config(config.clone()).connect().await
    }

    /// A connection outside the pool, made as the pool makes its own.
    async fn own_dedicated(&self) -> Result<tokio_postgres::Client, StorageError> {
        dedicated_via(&self.target, self.connector.clone()).await
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub fn config(&self) -> &tokio_postgres::Config {
        &self.target.config
    }

    pub fn target(&self) -> &PgTarget {
        &self.target
    }

    /// A transaction in which row-level security shows only `tenant`'s rows.
    pub async fn tenant_tx(&self, tenant: Uuid) -> Result<PgTx, StorageError> {
        let conn = self.pool.get().await.map_err(pool_err)?;
        // A uuid's text form is hex and dashes, safe to splice; one round trip.
        conn.batch_execute(&format!(
            "BEGIN; SELECT set_config('app.tenant_id', '{tenant}', true)"
        ))
        .await
        .map_err(pg)?;
        Ok(PgTx { conn: Some(conn) })
    }

    /// A read-only transaction that may find API keys, enrollment tokens and
    /// devices of any tenant by their key, and nothing else.
    pub async fn lookup_tx(&self) -> Result<PgTx, StorageError> {
        let conn = self.pool.get().await.map_err(pool_err)?;
        conn.batch_execute("BEGIN READ ONLY; SET LOCAL app.lookup = 'on'")
            .await
            .map_err(pg)?;
        Ok(PgTx { conn: Some(conn) })
    }

    /// Runs read-only statements in one transaction and one round trip: the
    /// begin (with the tenant or the lookup set), the statements (each
    /// prepared once per connection) and the commit are sent together, since
    /// tokio-postgres pipelines the requests of one connection and the server
    /// runs them in the order sent. The rows come back per statement.
    pub(crate) async fn read(
        &self,
        scope: ReadScope,
        statements: &[(&str, &[&(dyn ToSql + Sync)])],
    ) -> Result<Vec<Vec<Row>>, StorageError> {
        let conn = self.pool.get().await.map_err(pool_err)?;
        let prepared = try_join_all(statements.iter().map(|(sql, _)| conn.prepare_cached(sql)))
            .await
            .map_err(pg)?;
        let begin = match scope {
            // A uuid's text form is hex and dashes, safe to splice.
            ReadScope::Tenant(t) => {
                format!("BEGIN READ ONLY; SELECT set_config('app.tenant_id', '{t}', true)")
            }
            ReadScope::Lookup => "BEGIN READ ONLY; SET LOCAL app.lookup = 'on'".to_owned(),
        };
        let (began, rows, ended) = futures_util::join!(
            conn.batch_execute(&begin),
            try_join_all(
                prepared
                    .iter()
                    .zip(statements)
                    .map(|(st, (_, params))| conn.query(st, params))
            ),
            conn.batch_execute("COMMIT"),
        );
        match (began, rows, ended) {
            (Ok(()), Ok(rows), Ok(())) => Ok(rows),
            (began, rows, ended) => {
                // A statement sent without its transaction, or a transaction
                // left in an unknown state: do not reuse the connection.
                drop(Object::take(conn));
                let e = began.err().or(rows.err()).or(ended.err());
                Err(pg(e.expect("one of the three failed")))
            }
        }
    }

    /// Creates missing partitions for this month and the next [`PARTITIONS_AHEAD`].
    pub async fn ensure_partitions(&self, now_ms: i64) -> Result<Vec<String>, StorageError> {
        let mut c = self.own_dedicated().await?;
        partitions::ensure_ahead(&mut c, now_ms, PARTITIONS_AHEAD).await
    }

    pub async fn list_partitions(&self) -> Result<Vec<partitions::PartitionInfo>, StorageError> {
        let c = self.own_dedicated().await?;
        partitions::list(&c).await
    }

    /// Detaches (keeps, outside `events`) the months before `now`'s month minus
    /// `older_than_months`.
    pub async fn detach_partitions(
        &self,
        now_ms: i64,
        older_than_months: u32,
    ) -> Result<Vec<String>, StorageError> {
        let mut c = self.own_dedicated().await?;
        partitions::detach_older_than(&mut c, now_ms, older_than_months).await
    }

    /// Keeps partitions ready ahead and, with `retention_months`, detaches the
    /// expired ones, once now and then every [`MAINTENANCE_EVERY`]; runs until the
    /// task is dropped. Replicas may all run it: the steps take a lock and are
    /// no-ops when already done.
    pub async fn maintain(self: Arc<Self>, retention_months: Option<u32>) {
        let mut tick = tokio::time::interval(MAINTENANCE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = now_ms();
            if let Err(e) = self.ensure_partitions(now).await {
                tracing::warn!("creating event partitions ahead failed: {e}");
            }
            if let Some(months) = retention_months {
                if let Err(e) = self.detach_partitions(now, months).await {
                    tracing::warn!("detaching expired event partitions failed: {e}");
                }
            }
        }
    }

    async fn device_tenant(&self, device_id: Uuid) -> Result<Option<Uuid>, StorageError> {
        let tx = self.lookup_tx().await?;
        let row = tx
            .query_opt(
                "SELECT tenant_id FROM devices WHERE device_id = $1",
                &[&device_id],
            )
            .await
            .map_err(pg)?;
        tx.commit().await?;
        Ok(row.map(|r| r.get(0)))
    }
}

impl PgTarget {
    /// One connection, outside any pool; it closes when dropped.
    pub async fn connect(&self) -> Result<tokio_postgres::Client, StorageError> {
        dedicated_via(self, self.tls.connector()?).await
    }
}

async fn dedicated_via(
    target: &PgTarget,
    connector: tls::MakeRustlsConnect,
) -> Result<tokio_postgres::Client, StorageError> {
    let (client, connection) = target.config.connect(connector).await.map_err(|e| {
        if e.as_db_error().is_some() {
            pg(e)
        } else {
            // tokio-postgres keeps the reason (the TLS one, say) in the source.
            let mut reason = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                reason = format!("{reason}: {s}");
                source = s.source();
            }
            StorageError::Backend(format!(
                "cannot connect to PostgreSQL at {}: {reason}",
                target.describe()
            ))
        }
    })?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!("postgres connection ended: {e}");
        }
    });
    Ok(client)
}

async fn enroll(storage: &PgStorage, req: EnrollDevice) -> Result<DeviceRecord, StorageError> {
    let hash = sha256(req.token.as_bytes()).to_vec();
    let lookup = storage.lookup_tx().await?;
    let tenant: Option<Uuid> = lookup
        .query_opt(
            "SELECT tenant_id FROM enrollment_tokens WHERE token_hash = $1",
            &[&hash],
        )
        .await
        .map_err(pg)?
        .map(|r| r.get(0));
    let Some(tenant) = tenant else {
        return Err(StorageError::TokenInvalid);
    };
    let existing = lookup
        .query_opt(
            &format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE public_key = $1"),
            &[&req.public_key],
        )
        .await
        .map_err(pg)?
        .map(|r| device_row(&r));
    lookup.commit().await?;
    if let Some(dev) = existing {
        return if dev.tenant_id == tenant {
            Ok(dev)
        } else {
            Err(StorageError::KeyInUse)
        };
    }

    let tx = storage.tenant_tx(tenant).await?;
    // The row lock makes concurrent enrollments with one token take turns.
    let (expires_at_ms, uses_left): (i64, i32) = tx
        .query_opt(
            "SELECT expires_at_ms, uses_left FROM enrollment_tokens WHERE tenant_id = $1 AND token_hash = $2 FOR UPDATE",
            &[&tenant, &hash],
        )
        .await
        .map_err(pg)?
        .map(|r| (r.get(0), r.get(1)))
        .ok_or(StorageError::TokenInvalid)?;
    if let Some(dev) = tx
        .query_opt(
            &format!(
                "SELECT {DEVICE_COLUMNS} FROM devices WHERE tenant_id = $1 AND public_key = $2"
            ),
            &[&tenant, &req.public_key],
        )
        .await
        .map_err(pg)?
    {
        return Ok(device_row(&dev));
    }
    if req.now_ms >= expires_at_ms {
        return Err(StorageError::TokenExpired);
    }
    if uses_left <= 0 {
        return Err(StorageError::TokenUsedUp);
    }
    access::check_vehicle_limit(&tx, tenant).await?;
    tx.execute(
        "UPDATE enrollment_tokens SET uses_left = uses_left - 1 WHERE tenant_id = $1 AND token_hash = $2",
        &[&tenant, &hash],
    )
    .await
    .map_err(pg)?;
    let device_id = Uuid::new_v4();
    let name = req
        .name
        .unwrap_or_else(|| format!("device-{}", &device_id.simple().to_string()[..8]));
    tx.execute(
        "INSERT INTO devices (tenant_id, device_id, name, public_key, agent_version, enrolled_at_ms, last_seen_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $6)",
        &[&tenant, &device_id, &name, &req.public_key, &req.agent_version, &req.now_ms],
    )
    .await
    .map_err(|e| {
        // Another tenant enrolled the same key in the meantime: the unique index
        // on public_key sees every tenant.
        if is_unique_violation(&e) {
            StorageError::KeyInUse
        } else {
            pg(e)
        }
    })?;
    tx.commit().await?;
    Ok(DeviceRecord {
        tenant_id: tenant,
        device_id,
        name,
        public_key: req.public_key,
        revoked: false,
    })
}

#[async_trait]
impl Storage for PgStorage {
    async fn ping(&self) -> Result<(), StorageError> {
        let c = self.pool.get().await.map_err(pool_err)?;
        c.simple_query("SELECT 1").await.map_err(pg)?;
        Ok(())
    }

    fn stream_store(&self) -> Option<&dyn crate::storage::stream::StreamStore> {
        Some(self)
    }

    async fn create_tenant(&self, name: &str) -> Result<NewTenant, StorageError> {
        let name = name.trim().to_owned();
        if name.is_empty() || name.len() > 200 {
            return Err(StorageError::Invalid(
                "tenant name must be 1 to 200 characters".into(),
            ));
        }
        let tenant_id = Uuid::new_v4();
        let api_key = random_secret("fk_");
        let hash = sha256(api_key.as_bytes()).to_vec();
        let now = now_ms();
        let tx = self.tenant_tx(tenant_id).await?;
        tx.execute(
            "INSERT INTO tenants (tenant_id, name, created_at_ms) VALUES ($1, $2, $3)",
            &[&tenant_id, &name, &now],
        )
        .await
        .map_err(pg)?;
        tx.execute(
            "INSERT INTO access_keys (tenant_id, key_id, key_hash, prefix, name, role, created_at_ms)
             VALUES ($1, $2, $3, $4, 'tenant admin key', 'admin', $5)",
            &[&tenant_id, &Uuid::new_v4(), &hash, &&api_key[..11], &now],
        )
        .await
        .map_err(pg)?;
        tx.commit().await?;
        Ok(NewTenant { tenant_id, api_key })
    }

    async fn tenant_for_api_key(&self, api_key: &str) -> Result<Option<Uuid>, StorageError> {
        let hash = sha256(api_key.as_bytes()).to_vec();
        let tx = self.lookup_tx().await?;
        let q = tx
            .prepare_cached(
                "SELECT tenant_id FROM access_keys WHERE key_hash = $1 AND revoked_at_ms IS NULL",
            )
            .await
            .map_err(pg)?;
        let row = tx.query_opt(&q, &[&hash]).await.map_err(pg)?;
        tx.commit().await?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn create_enrollment_token(
        &self,
        tenant: Uuid,
        ttl: Duration,
        uses: u32,
    ) -> Result<NewToken, StorageError> {
        if uses == 0 {
            return Err(StorageError::Invalid(
                "a token needs at least one use".into(),
            ));
        }
        let uses = i32::try_from(uses)
            .map_err(|_| StorageError::Invalid("too many uses for one token".into()))?;
        let ttl_ms = i64::try_from(ttl.as_millis())
            .map_err(|_| StorageError::Invalid("ttl is too long".into()))?;
        let token = random_secret("fe_");
        let hash = sha256(token.as_bytes()).to_vec();
        let now = now_ms();
        let expires_at_ms = now
            .checked_add(ttl_ms)
            .ok_or_else(|| StorageError::Invalid("ttl is too long".into()))?;
        let tx = self.tenant_tx(tenant).await?;
        let known = tx
            .query_opt("SELECT 1 FROM tenants WHERE tenant_id = $1", &[&tenant])
            .await
            .map_err(pg)?
            .is_some();
        if !known {
            return Err(StorageError::UnknownTenant);
        }
        tx.execute(
            "INSERT INTO enrollment_tokens (tenant_id, token_hash, expires_at_ms, uses_left, created_at_ms) VALUES ($1, $2, $3, $4, $5)",
            &[&tenant, &hash, &expires_at_ms, &uses, &now],
        )
        .await
        .map_err(pg)?;
        tx.commit().await?;
        Ok(NewToken {
            token,
            expires_at: rfc3339_ms(expires_at_ms),
        })
    }

    async fn enroll_device(&self, req: EnrollDevice) -> Result<DeviceRecord, StorageError> {
        enroll(self, req).await
    }

    async fn device(&self, device_id: Uuid) -> Result<Option<DeviceRecord>, StorageError> {
        let tx = self.lookup_tx().await?;
        let q = tx
            .prepare_cached(&format!(
                "SELECT {DEVICE_COLUMNS} FROM devices WHERE device_id = $1"
            ))
            .await
            .map_err(pg)?;
        let row = tx.query_opt(&q, &[&device_id]).await.map_err(pg)?;
        tx.commit().await?;
        Ok(row.map(|r| device_row(&r)))
    }

    async fn revoke_device(
        &self,
        device_id: Uuid,
        now_ms: i64,
    ) -> Result<DeviceRecord, StorageError> {
        let tenant = self
            .device_tenant(device_id)
            .await?
            .ok_or(StorageError::UnknownDevice)?;
        let tx = self.tenant_tx(tenant).await?;
        let row = tx
            .query_opt(
                &format!(
                    "UPDATE devices SET revoked_at_ms = coalesce(revoked_at_ms, $3)
                     WHERE tenant_id = $1 AND device_id = $2 RETURNING {DEVICE_COLUMNS}"
                ),
                &[&tenant, &device_id, &now_ms],
            )
            .await
            .map_err(pg)?
            .ok_or(StorageError::UnknownDevice)?;
        tx.commit().await?;
        Ok(device_row(&row))
    }

    async fn accept_nonce(
        &self,
        device: &DeviceRecord,
        nonce: &str,
        ts_ms: i64,
        now_ms: i64,
        keep_after_ms: i64,
    ) -> Result<(), StorageError> {
        let (t, d) = (device.tenant_id, device.device_id);
        let last = self.last_nonce_prune_ms.load(Ordering::Relaxed);
        let prune = now_ms - last >= NONCE_PRUNE_EVERY_MS;
        if prune {
            self.last_nonce_prune_ms.store(now_ms, Ordering::Relaxed);
        }
        let tx = self.tenant_tx(t).await?;
        if prune {
            let n = tx
                .execute(
                    "DELETE FROM request_nonces WHERE tenant_id = $1 AND ts_ms < $2",
                    &[&t, &keep_after_ms],
                )
                .await
                .map_err(pg)?;
            tracing::debug!(pruned = n, "pruned request nonces");
        }
        let q = tx
            .prepare_cached(
                "SELECT revoked_at_ms FROM devices WHERE tenant_id = $1 AND device_id = $2",
            )
            .await
            .map_err(pg)?;
        match tx.query_opt(&q, &[&t, &d]).await.map_err(pg)? {
            None => return Err(StorageError::UnknownDevice),
            Some(r) if r.get::<_, Option<i64>>(0).is_some() => {
                return Err(StorageError::DeviceRevoked)
            }
            Some(_) => {}
        }
        let q = tx
            .prepare_cached(
                "INSERT INTO request_nonces (tenant_id, device_id, nonce, ts_ms) VALUES ($1, $2, $3, $4)
                 ON CONFLICT DO NOTHING",
            )
            .await
            .map_err(pg)?;
        if tx
            .execute(&q, &[&t, &d, &nonce, &ts_ms])
            .await
            .map_err(pg)?
            == 0
        {
            return Err(StorageError::Replayed);
        }
        let q = tx
            .prepare_cached(
                "UPDATE devices SET last_seen_ms = greatest(coalesce(last_seen_ms, 0), $3)
                 WHERE tenant_id = $1 AND device_id = $2",
            )
            .await
            .map_err(pg)?;
        tx.execute(&q, &[&t, &d, &now_ms]).await.map_err(pg)?;
        tx.commit().await
    }

    async fn ingest_batch(
        &self,
        device: &DeviceRecord,
        batch: fleet_protocol::Batch,
        now_ms: i64,
    ) -> Result<IngestOutcome, StorageError> {
        ingest::ingest(self, device, batch, now_ms).await
    }

    async fn set_device_kind(
        &self,
        tenant: Uuid,
        device_id: Uuid,
        kind: fleet_protocol::api::DeviceKind,
    ) -> Result<(), StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let n = tx
            .execute(
                "UPDATE devices SET kind = $3 WHERE tenant_id = $1 AND device_id = $2",
                &[&tenant, &device_id, &kind.as_str()],
            )
            .await
            .map_err(pg)?;
        if n == 0 {
            return Err(StorageError::UnknownDevice);
        }
        tx.commit().await
    }

    async fn list_devices(&self, tenant: Uuid) -> Result<Vec<DeviceSummary>, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let rows = tx
            .query(
                "SELECT device_id, name, enrolled_at_ms, last_seen_ms, acked_seq, event_count, evicted_count,
                        quarantined_count, revoked_at_ms, kind
                 FROM devices WHERE tenant_id = $1 ORDER BY name, device_id",
                &[&tenant],
            )
            .await
            .map_err(pg)?;
        tx.commit().await?;
        Ok(rows
            .iter()
            .map(|r| DeviceSummary {
                id: r.get(0),
                name: r.get(1),
                enrolled_at_ms: r.get(2),
                last_seen_ms: r.get(3),
                last_seq: r.get::<_, i64>(4) as u64,
                event_count: r.get::<_, i64>(5) as u64,
                evicted_count: r.get::<_, i64>(6) as u64,
                quarantined_count: r.get::<_, i64>(7) as u64,
                revoked: r.get::<_, Option<i64>>(8).is_some(),
                kind: fleet_protocol::api::DeviceKind::parse(r.get(9)).unwrap_or_default(),
            })
            .collect())
    }

    async fn device_events(
        &self,
        tenant: Uuid,
        device: Uuid,
        after_seq: u64,
        limit: u32,
    ) -> Result<Option<Vec<StoredEvent>>, StorageError> {
        let after = i64::try_from(after_seq).unwrap_or(i64::MAX);
        let tx = self.tenant_tx(tenant).await?;
        let known = tx
            .query_opt(
                "SELECT 1 FROM devices WHERE tenant_id = $1 AND device_id = $2",
                &[&tenant, &device],
            )
            .await
            .map_err(pg)?
            .is_some();
        if !known {
            return Ok(None);
        }
        let rows = tx
            .query(
                "SELECT seq, kind, priority, time_ms, time_source, boot_id, mono_ms, wall_ms, hlc, config_version, data
                 FROM events WHERE tenant_id = $1 AND device_id = $2 AND seq > $3 ORDER BY seq LIMIT $4",
                &[&tenant, &device, &after, &i64::from(limit)],
            )
            .await
            .map_err(pg)?;
        tx.commit().await?;
        rows.iter()
            .map(stored_event)
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    async fn list_vehicles(&self, tenant: Uuid) -> Result<Vec<VehicleSummary>, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let rows = tx
            .query(
                "SELECT d.device_id, d.name, d.last_seen_ms, d.revoked_at_ms,
                        p.seq, p.lat_e7, p.lon_e7, p.speed_cms, p.heading_cdeg, p.time_ms, p.time_source
                 FROM devices d LEFT JOIN vehicle_positions p ON p.tenant_id = d.tenant_id AND p.device_id = d.device_id
                 WHERE d.tenant_id = $1 AND d.kind = 'vehicle' ORDER BY d.name, d.device_id",
                &[&tenant],
            )
            .await
            .map_err(pg)?;
        tx.commit().await?;
        Ok(rows
            .iter()
            .map(|r| VehicleSummary {
                id: r.get(0),
                name: r.get(1),
                last_seen_ms: r.get(2),
                revoked: r.get::<_, Option<i64>>(3).is_some(),
                position: r.get::<_, Option<i64>>(4).map(|seq| LastPosition {
                    seq: seq as u64,
                    lat: f64::from(r.get::<_, i32>(5)) / 1e7,
                    lon: f64::from(r.get::<_, i32>(6)) / 1e7,
                    speed_mps: r.get::<_, Option<i64>>(7).map(|s| s as f64 / 100.0),
                    heading_deg: r.get::<_, Option<i32>>(8).map(|h| f64::from(h) / 100.0),
                    time_ms: r.get(9),
                    time_source: r.get(10),
                }),
            })
            .collect())
    }

    async fn list_quarantine(
        &self,
        tenant: Uuid,
        limit: u32,
    ) -> Result<Vec<QuarantinedEvent>, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let rows = tx
            .query(
                "SELECT device_id, seq, kind, reason_code, reason, raw, received_at_ms FROM quarantine
                 WHERE tenant_id = $1 ORDER BY received_at_ms DESC, device_id, seq LIMIT $2",
                &[&tenant, &i64::from(limit)],
            )
            .await
            .map_err(pg)?;
        tx.commit().await?;
        Ok(rows
            .iter()
            .map(|r| {
                let raw: String = r.get(5);
                QuarantinedEvent {
                    device_id: r.get(0),
                    seq: r.get::<_, i64>(1) as u64,
                    kind: r.get(2),
                    reason_code: r.get(3),
                    reason: r.get(4),
                    raw: serde_json::from_str(&raw).unwrap_or(serde_json::Value::String(raw)),
                    received_at_ms: r.get(6),
                }
            })
            .collect())
    }

    async fn load_doc(&self, tenant: Uuid, doc_id: &str) -> Result<Option<DocBytes>, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let rows = tx
            .query(
                "SELECT bytes FROM doc_chunks WHERE tenant_id = $1 AND doc_id = $2 ORDER BY chunk_no",
                &[&tenant, &doc_id],
            )
            .await
            .map_err(pg)?;
        tx.commit().await?;
        let mut doc = DocBytes {
            bytes: Vec::new(),
            chunks: 0,
        };
        for r in &rows {
            doc.bytes.extend_from_slice(r.get::<_, &[u8]>(0));
            doc.chunks += 1;
        }
        Ok((doc.chunks > 0).then_some(doc))
    }

    async fn doc_sync_state(
        &self,
        tenant: Uuid,
        doc_id: &str,
        device: Uuid,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let row = tx
            .query_opt(
                "SELECT state FROM doc_sync_states WHERE tenant_id = $1 AND doc_id = $2 AND device_id = $3",
                &[&tenant, &doc_id, &device],
            )
            .await
            .map_err(pg)?;
        tx.commit().await?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn save_doc(
        &self,
        tenant: Uuid,
        doc_id: &str,
        write: Option<DocWrite>,
        sync_state: Option<(Uuid, Vec<u8>)>,
        now_ms: i64,
    ) -> Result<(), StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        match write {
            Some(DocWrite::Append(bytes)) if !bytes.is_empty() => {
                // Appends to one document are serialised by the caller (DocHub) on
                // one replica; the primary key refuses a second writer's clash.
                tx.execute(
                    "INSERT INTO doc_chunks (tenant_id, doc_id, chunk_no, bytes)
                     VALUES ($1, $2, (SELECT coalesce(max(chunk_no), 0) + 1 FROM doc_chunks WHERE tenant_id = $1 AND doc_id = $2), $3)",
                    &[&tenant, &doc_id, &bytes],
                )
                .await
                .map_err(pg)?;
            }
            Some(DocWrite::Replace(bytes)) => {
                tx.execute(
                    "DELETE FROM doc_chunks WHERE tenant_id = $1 AND doc_id = $2",
                    &[&tenant, &doc_id],
                )
                .await
                .map_err(pg)?;
                tx.execute(
                    "INSERT INTO doc_chunks (tenant_id, doc_id, chunk_no, bytes) VALUES ($1, $2, 1, $3)",
                    &[&tenant, &doc_id, &bytes],
                )
                .await
                .map_err(pg)?;
            }
            _ => {}
        }
        if let Some((device, state)) = sync_state {
            tx.execute(
                "INSERT INTO doc_sync_states (tenant_id, doc_id, device_id, state, updated_at_ms) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (tenant_id, doc_id, device_id) DO UPDATE SET state = excluded.state, updated_at_ms = excluded.updated_at_ms",
                &[&tenant, &doc_id, &device, &state, &now_ms],
            )
            .await
            .map_err(pg)?;
        }
        tx.commit().await
    }
}

#[cfg(test)]
mod conformance {
    crate::conformance_suite!(optional super::testing::fresh());
    crate::conformance_stream_suite!(optional super::testing::fresh());
    crate::conformance_kiosk_suite!(optional super::testing::fresh());
    crate::conformance_reservations_suite!(optional super::testing::fresh());
    crate::conformance_analytics_suite!(optional super::testing::fresh());
    crate::conformance_inspections_suite!(optional super::testing::fresh());
    crate::conformance_assets_suite!(optional super::testing::fresh());
    crate::conformance_access_suite!(optional super::testing::fresh());
    crate::conformance_control_suite!(optional super::testing::fresh());
    crate::conformance_sessions_suite!(optional super::testing::fresh());
    crate::conformance_mail_suite!(optional super::testing::fresh());
}
