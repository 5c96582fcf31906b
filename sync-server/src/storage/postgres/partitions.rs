//! Monthly partitions of `events`: created ahead of time, and detached (never
//! dropped) once older than a retention period.

use super::pg;
use crate::storage::StorageError;
use serde::Serialize;
use tokio_postgres::Client;

/// Key of the transaction advisory lock that serialises partition maintenance
/// between replicas ("fleetprt").
const PARTITION_LOCK: i64 = 0x666c_6565_7470_7274;

/// A calendar month in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Month {
    pub year: i32,
    /// 1 to 12.
    pub month: u8,
}

impl Month {
    pub fn of_ms(ms: i64) -> Month {
        let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        Month {
            year: t.year(),
            month: u8::from(t.month()),
        }
    }

    /// This month plus `n` (negative goes back).
    pub fn offset(self, n: i32) -> Month {
        let index = self.year * 12 + i32::from(self.month) - 1 + n;
        Month {
            year: index.div_euclid(12),
            month: (index.rem_euclid(12) + 1) as u8,
        }
    }

    /// Unix milliseconds at 00:00 UTC on the first day.
    pub fn start_ms(self) -> i64 {
        let month = time::Month::try_from(self.month).unwrap_or(time::Month::January);
        time::Date::from_calendar_date(self.year, month, 1)
            .map(|d| d.midnight().assume_utc().unix_timestamp() * 1000)
            .unwrap_or(0)
    }

    pub fn table(self) -> String {
        format!("events_{:04}_{:02}", self.year, self.month)
    }

    /// The month a partition table is named after, if it is one.
    pub fn from_table(name: &str) -> Option<Month> {
        let rest = name.strip_prefix("events_")?;
        let (y, m) = rest.split_once('_')?;
        if y.len() != 4 || m.len() != 2 {
            return None;
        }
        let month = Month {
            year: y.parse().ok()?,
            month: m.parse().ok()?,
        };
        (1..=12).contains(&month.month).then_some(month)
    }
}

/// The partitions retention would detach: every month before
/// `now`'s month minus `older_than_months`.
pub fn expired(partitions: &[Month], now_ms: i64, older_than_months: u32) -> Vec<Month> {
    let cutoff = Month::of_ms(now_ms).offset(-(older_than_months.min(100_000) as i32));
    partitions.iter().copied().filter(|m| *m < cutoff).collect()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionInfo {
    pub table: String,
    /// Inclusive lower bound of `time_ms`; `None` for the default partition.
    pub from_ms: Option<i64>,
    /// Exclusive upper bound.
    pub to_ms: Option<i64>,
    pub attached: bool,
    /// The planner's estimate (`pg_class.reltuples`), -1 before the first ANALYZE.
    pub rows_estimate: i64,
}

/// Creates the partitions for `now`'s month and the `ahead` months after it
/// where missing; returns the tables it created. Rows of those months already in
/// the default partition move into the new one.
pub async fn ensure_ahead(
    client: &mut Client,
    now_ms: i64,
    ahead: u32,
) -> Result<Vec<String>, StorageError> {
    let first = Month::of_ms(now_ms);
    let mut created = Vec::new();
    for i in 0..=ahead.min(24) {
        let m = first.offset(i as i32);
        if create_month(client, m).await? {
            tracing::info!(table = %m.table(), "created events partition");
            created.push(m.table());
        }
    }
    Ok(created)
}

async fn create_month(client: &mut Client, m: Month) -> Result<bool, StorageError> {
    let table = m.table();
    let (from, to) = (m.start_ms(), m.offset(1).start_ms());
    let tx = client.transaction().await.map_err(pg)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&PARTITION_LOCK])
        .await
        .map_err(pg)?;
    let exists = tx
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
        .await
        .map_err(pg)?
        .get::<_, bool>(0);
    if exists {
        // Attached, or detached by retention: either way the month is settled.
        return Ok(false);
    }
    tx.batch_execute(&format!(
        "CREATE TABLE {table} (LIKE events INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
         SET LOCAL app.maintenance = 'on';
         WITH moved AS (DELETE FROM events_default WHERE time_ms >= {from} AND time_ms < {to} RETURNING *)
             INSERT INTO {table} SELECT * FROM moved;
         ALTER TABLE events ATTACH PARTITION {table} FOR VALUES FROM ({from}) TO ({to});
         ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;
         ALTER TABLE {table} FORCE ROW LEVEL SECURITY;
         CREATE POLICY tenant_isolation ON {table}
             USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid)
             WITH CHECK (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid);"
    ))
    .await
    .map_err(pg)?;
    tx.commit().await.map_err(pg)?;
    Ok(true)
}

/// Every monthly partition, attached or detached, and the default one.
pub async fn list(client: &Client) -> Result<Vec<PartitionInfo>, StorageError> {
    let rows = client
        .query(
            "SELECT c.relname::text, c.reltuples::bigint,
                    EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = c.oid AND i.inhparent = 'events'::regclass)
             FROM pg_class c
             WHERE c.relkind = 'r' AND c.relnamespace = current_schema()::regnamespace
               AND c.relname ~ '^events_([0-9]{4}_[0-9]{2}|default)$'
             ORDER BY c.relname",
            &[],
        )
        .await
        .map_err(pg)?;
    Ok(rows
        .iter()
        .map(|r| {
            let table: String = r.get(0);
            let month = Month::from_table(&table);
            PartitionInfo {
                from_ms: month.map(Month::start_ms),
                to_ms: month.map(|m| m.offset(1).start_ms()),
                rows_estimate: r.get(1),
                attached: r.get(2),
                table,
            }
        })
        .collect())
}

/// Detaches the attached monthly partitions older than `older_than_months` before
/// `now`'s month; the tables stay, outside `events`, for an operator to archive
/// or drop. Returns the tables detached.
pub async fn detach_older_than(
    client: &mut Client,
    now_ms: i64,
    older_than_months: u32,
) -> Result<Vec<String>, StorageError> {
    let attached: Vec<Month> = list(client)
        .await?
        .iter()
        .filter(|p| p.attached)
        .filter_map(|p| Month::from_table(&p.table))
        .collect();
    let mut out = Vec::new();
    for m in expired(&attached, now_ms, older_than_months) {
        let tx = client.transaction().await.map_err(pg)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&PARTITION_LOCK])
            .await
            .map_err(pg)?;
        tx.batch_execute(&format!(
            "ALTER TABLE events DETACH PARTITION {}",
            m.table()
        ))
        .await
        .map_err(pg)?;
        tx.commit().await.map_err(pg)?;
        tracing::info!(table = %m.table(), "detached events partition past retention");
        out.push(m.table());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_step_across_year_ends() {
        let dec = Month {
            year: 2025,
            month: 12,
        };
        assert_eq!(
            dec.offset(1),
            Month {
                year: 2026,
                month: 1
            }
        );
        assert_eq!(
            dec.offset(-12),
            Month {
                year: 2024,
                month: 12
            }
        );
        assert_eq!(dec.offset(-11).table(), "events_2025_01");
        assert_eq!(Month::from_table("events_2025_01"), Some(dec.offset(-11)));
        assert_eq!(Month::from_table("events_default"), None);
        assert_eq!(Month::from_table("events_2025_13"), None);
    }

    #[test]
    fn a_month_starts_at_utc_midnight_on_its_first_day() {
        let m = Month::of_ms(1_750_000_000_000); // 2025-06-15
        assert_eq!(
            m,
            Month {
                year: 2025,
                month: 6
            }
        );
        assert_eq!(m.start_ms(), 1_748_736_000_000);
        assert_eq!(Month::of_ms(m.start_ms()), m);
        assert_eq!(Month::of_ms(m.start_ms() - 1), m.offset(-1));
    }

    #[test]
    fn retention_keeps_the_current_month_and_the_n_before_it() {
        let now = Month {
            year: 2026,
            month: 3,
        };
        let all: Vec<Month> = (-6..=2).map(|i| now.offset(i)).collect();
        let gone = expired(&all, now.start_ms() + 5, 2);
        assert_eq!(gone, (-6..=-3).map(|i| now.offset(i)).collect::<Vec<_>>());
        assert!(expired(&all, now.start_ms(), 12).is_empty());
    }
}
