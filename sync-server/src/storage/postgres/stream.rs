//! The live stream's log on PostgreSQL, shared by every replica. Appends lock
//! the tenant's head row until commit and announce themselves with
//! `NOTIFY fleet_live`; each replica listens on a connection of its own and
//! reconnects with backoff, saying so, so that its hub catches up by id.

use super::{pg, pool_err, PgStorage, PgTx};
use crate::storage::stream::{
    NewStreamEvent, StreamBounds, StreamNotice, StreamRow, StreamStore, NOTIFY_CHANNEL,
};
use crate::storage::StorageError;
use async_trait::async_trait;
use futures_util::StreamExt;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Row};
use uuid::Uuid;

const NOTICE_QUEUE: usize = 4096;
const BACKOFF_FIRST: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

fn stream_row(r: &Row) -> StreamRow {
    StreamRow {
        tenant: r.get(0),
        id: r.get::<_, i64>(1) as u64,
        kind: r.get(2),
        vehicle: r.get(3),
        data: r.get(4),
        at_ms: r.get(5),
    }
}

/// Parses a `fleet_live` payload, `<tenant>:<first id>`.
pub(crate) fn parse_payload(payload: &str) -> Option<(Uuid, u64)> {
    let (tenant, id) = payload.split_once(':')?;
    Some((Uuid::parse_str(tenant).ok()?, id.parse().ok()?))
}

impl PgStorage {
    /// A transaction that may see and prune every tenant's stream log.
    async fn maintenance_tx(&self) -> Result<PgTx, StorageError> {
        let conn = self.pool.get().await.map_err(pool_err)?;
        conn.batch_execute("BEGIN; SET LOCAL app.maintenance = 'on'")
            .await
            .map_err(pg)?;
        Ok(PgTx { conn: Some(conn) })
    }

    async fn append_tenant(
        &self,
        tenant: Uuid,
        events: Vec<NewStreamEvent>,
        now_ms: i64,
    ) -> Result<Vec<StreamRow>, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        tx.execute(
            "INSERT INTO stream_heads (tenant_id, last_id) VALUES ($1, 0) ON CONFLICT (tenant_id) DO NOTHING",
            &[&tenant],
        )
        .await
        .map_err(pg)?;
        // Held until commit: appends of one tenant take turns, across replicas.
        let mut head: i64 = tx
            .query_one(
                "SELECT last_id FROM stream_heads WHERE tenant_id = $1 FOR UPDATE",
                &[&tenant],
            )
            .await
            .map_err(pg)?
            .get(0);
        let insert = tx
            .prepare(
                "INSERT INTO stream_events (tenant_id, id, kind, vehicle_id, data, at_ms, source, created_at_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (tenant_id, source) WHERE source IS NOT NULL DO NOTHING",
            )
            .await
            .map_err(pg)?;
        let mut out = Vec::with_capacity(events.len());
        for e in events {
            let id = head + 1;
            let n = tx
                .execute(
                    &insert,
                    &[
                        &tenant, &id, &e.kind, &e.vehicle, &e.data, &e.at_ms, &e.source, &now_ms,
                    ],
                )
                .await
                .map_err(pg)?;
            if n == 1 {
                head = id;
                out.push(StreamRow {
                    tenant,
                    id: id as u64,
                    kind: e.kind,
                    vehicle: e.vehicle,
                    data: e.data,
                    at_ms: e.at_ms,
                });
            }
        }
        if let Some(first) = out.first() {
            tx.execute(
                "UPDATE stream_heads SET last_id = $2 WHERE tenant_id = $1",
                &[&tenant, &head],
            )
            .await
            .map_err(pg)?;
            // Delivered on commit only: a rolled-back append announces nothing.
            tx.execute(
                "SELECT pg_notify($1, $2)",
                &[&NOTIFY_CHANNEL, &format!("{tenant}:{}", first.id)],
            )
            .await
            .map_err(pg)?;
        }
        tx.commit().await?;
        Ok(out)
    }
}

#[async_trait]
impl StreamStore for PgStorage {
    async fn append_stream_events(
        &self,
        events: Vec<NewStreamEvent>,
        now_ms: i64,
    ) -> Result<Vec<StreamRow>, StorageError> {
        let mut groups: Vec<(Uuid, Vec<NewStreamEvent>)> = Vec::new();
        for e in events {
            match groups.iter_mut().find(|(t, _)| *t == e.tenant) {
                Some((_, v)) => v.push(e),
                None => groups.push((e.tenant, vec![e])),
            }
        }
        let mut out = Vec::new();
        for (tenant, events) in groups {
            out.extend(self.append_tenant(tenant, events, now_ms).await?);
        }
        Ok(out)
    }

    async fn stream_events_after(
        &self,
        tenant: Uuid,
        after: u64,
        limit: u32,
    ) -> Result<Vec<StreamRow>, StorageError> {
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let tx = self.tenant_tx(tenant).await?;
        let rows = tx
            .query(
                "SELECT tenant_id, id, kind, vehicle_id, data, at_ms FROM stream_events
                 WHERE tenant_id = $1 AND id > $2 ORDER BY id LIMIT $3",
                &[&tenant, &after, &i64::from(limit)],
            )
            .await
            .map_err(pg)?;
        tx.commit().await?;
        Ok(rows.iter().map(stream_row).collect())
    }

    async fn stream_bounds(&self, tenant: Uuid) -> Result<StreamBounds, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let row = tx
            .query_one(
                "SELECT coalesce((SELECT last_id FROM stream_heads WHERE tenant_id = $1), 0),
                        (SELECT min(id) FROM stream_events WHERE tenant_id = $1)",
                &[&tenant],
            )
            .await
            .map_err(pg)?;
        tx.commit().await?;
        let head: i64 = row.get(0);
        let oldest: Option<i64> = row.get(1);
        Ok(StreamBounds {
            oldest: oldest.unwrap_or(head + 1) as u64,
            head: head as u64,
        })
    }

    async fn prune_stream_events(
        &self,
        before_ms: i64,
        keep_per_tenant: u64,
    ) -> Result<u64, StorageError> {
        let keep = i64::try_from(keep_per_tenant).unwrap_or(i64::MAX);
        let tx = self.maintenance_tx().await?;
        let by_age = tx
            .execute(
                "DELETE FROM stream_events WHERE created_at_ms < $1",
                &[&before_ms],
            )
            .await
            .map_err(pg)?;
        // Ids are dense per tenant, so the newest `keep` are those above head - keep.
        let by_count = tx
            .execute(
                "DELETE FROM stream_events e USING stream_heads h
                 WHERE h.tenant_id = e.tenant_id AND e.id <= h.last_id - $1",
                &[&keep],
            )
            .await
            .map_err(pg)?;
        tx.commit().await?;
        Ok(by_age + by_count)
    }

    fn stream_notices(&self) -> Option<mpsc::Receiver<StreamNotice>> {
        let (tx, rx) = mpsc::channel(NOTICE_QUEUE);
        tokio::spawn(listen(self.config().clone(), self.connector.clone(), tx));
        Some(rx)
    }
}

/// Listens on `fleet_live` until the receiver is gone, reconnecting with backoff.
async fn listen(
    config: tokio_postgres::Config,
    tls: super::tls::MakeRustlsConnect,
    out: mpsc::Sender<StreamNotice>,
) {
    let mut backoff = BACKOFF_FIRST;
    loop {
        match listen_once(&config, tls.clone(), &out).await {
            Ok(()) => return,
            Err(e) => {
                if out.is_closed() {
                    return;
                }
                tracing::warn!(
                    retry_in_ms = backoff.as_millis() as u64,
                    "live stream listener lost its database connection: {e}"
                );
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// One connection's worth of listening. `Ok` when the receiver is gone.
async fn listen_once(
    config: &tokio_postgres::Config,
    tls: super::tls::MakeRustlsConnect,
    out: &mpsc::Sender<StreamNotice>,
) -> Result<(), StorageError> {
    let (client, mut connection) = config.connect(tls).await.map_err(pg)?;
    let (ntx, mut nrx) = mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(m) = messages.next().await {
            match m {
                Ok(AsyncMessage::Notification(n)) => {
                    if ntx.send(n.payload().to_owned()).is_err() {
                        return Ok(());
                    }
                }
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    });
    let listening = client
        .batch_execute(&format!("LISTEN {NOTIFY_CHANNEL}"))
        .await
        .map_err(pg);
    if let Err(e) = listening {
        driver.abort();
        return Err(e);
    }
    // Anything appended while no one listened is found by id.
    if out.send(StreamNotice::Reconnected).await.is_err() {
        driver.abort();
        return Ok(());
    }
    while let Some(payload) = nrx.recv().await {
        let Some((tenant, first_id)) = parse_payload(&payload) else {
            tracing::warn!(payload, "ignoring a malformed fleet_live notice");
            continue;
        };
        if out
            .send(StreamNotice::Appended { tenant, first_id })
            .await
            .is_err()
        {
            driver.abort();
            return Ok(());
        }
    }
    drop(client);
    match driver.await {
        Ok(Err(e)) => Err(pg(e)),
        _ => Err(StorageError::Backend("listening connection closed".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_payload;
    use uuid::Uuid;

    #[test]
    fn notice_payloads_name_a_tenant_and_an_id() {
        let t = Uuid::new_v4();
        assert_eq!(parse_payload(&format!("{t}:42")), Some((t, 42)));
        assert_eq!(parse_payload("nope:42"), None);
        assert_eq!(parse_payload(&format!("{t}:x")), None);
        assert_eq!(parse_payload(&t.to_string()), None);
    }
}
