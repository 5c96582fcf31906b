//! Work that several replicas take at once (mail, report runs, webhook
//! deliveries, alert notices) is claimed the same way: a read-only worker
//! transaction finds the tenants with something due, most overdue first, then
//! each tenant's rows are claimed in its own tenant transaction with
//! `FOR UPDATE SKIP LOCKED`, so rows another replica is claiming right now are
//! skipped, and the claim writes a lease (or a mark) that keeps them from the
//! next finder.

use super::{pg, PgStorage, PgTx};
use crate::storage::StorageError;
use tokio_postgres::types::Type;
use tokio_postgres::Row;
use uuid::Uuid;

/// One kind of leased work, as two statements.
pub(super) struct Claim<'a> {
    /// Finds tenants with due rows, one `tenant_id` a row:
    /// `$1` now (ms), `$2` how many tenants at most.
    pub tenants_due: &'a str,
    /// Claims one tenant's due rows and returns them:
    /// `$1` the tenant, `$2` now (ms), `$3` how many rows at most,
    /// `$4` what the claim writes (a lease's end, or the time of a mark).
    /// A statement need not use every parameter.
    pub claim: &'a str,
}

impl PgStorage {
    /// Claims up to `limit` rows across tenants, as [`Claim`] describes.
    /// `finder` is the worker transaction whose policy sees due rows of every
    /// tenant; `row` turns a claimed row of a tenant into a result.
    pub(super) async fn claim_leased<T>(
        &self,
        finder: PgTx,
        claim: &Claim<'_>,
        now_ms: i64,
        writes_ms: i64,
        limit: u32,
        mut row: impl FnMut(Uuid, &Row) -> Result<T, StorageError>,
    ) -> Result<Vec<T>, StorageError> {
        // Typed, so that a statement may leave a parameter out.
        let finding = finder
            .prepare_typed(claim.tenants_due, &[Type::INT8, Type::INT8])
            .await
            .map_err(pg)?;
        let tenants: Vec<Uuid> = finder
            .query(&finding, &[&now_ms, &i64::from(limit)])
            .await
            .map_err(pg)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        finder.commit().await?;
        let mut out = Vec::new();
        for tenant in tenants {
            let room = i64::from(limit) - out.len() as i64;
            if room <= 0 {
                break;
            }
            let tx = self.tenant_tx(tenant).await?;
            let claiming = tx
                .prepare_typed(
                    claim.claim,
                    &[Type::UUID, Type::INT8, Type::INT8, Type::INT8],
                )
                .await
                .map_err(pg)?;
            let rows = tx
                .query(&claiming, &[&tenant, &now_ms, &room, &writes_ms])
                .await
                .map_err(pg)?;
            tx.commit().await?;
            for r in &rows {
                out.push(row(tenant, r)?);
            }
        }
        Ok(out)
    }
}
