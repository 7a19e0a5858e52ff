//! Retention by time and size, and dropping the index below the log start.
//!
//! Kafka's rules at batch granularity (a cluster partition has no segments; a batch is the
//! unit the index knows), for topics whose `cleanup.policy` includes `delete`:
//!
//! - **time** (`retention.ms`, default 7 days, `-1` = forever): batches are deleted from the
//!   start of the log while their largest timestamp is older than `now - retention.ms`; the
//!   first batch that is not stops it (Kafka's `deleteRetentionMsBreachedSegments`, segment by
//!   segment from the oldest). `now` is the database's clock.
//! - **size** (`retention.bytes`, default `-1` = unlimited): while the partition's bytes minus
//!   the oldest batch's still reach `retention.bytes`, that batch goes (Kafka's
//!   `deleteRetentionSizeBreachedSegments`).
//!
//! Either moves `log_start_offset` forward in PostgreSQL (never back, never past the high
//! watermark; fenced by the job's lease). Then, for every partition whatever its policy, index
//! rows entirely below the log start are dropped: those retention just passed, and those
//! DeleteRecords left (it only moves the log start), and aborted-transaction rows whose marker
//! is below it. The objects they were in are reclaimed
//! once no row refers to them ([`super::reclaim`]); a deleted topic's rows went with it
//! (cascade), so its objects follow the same way.

use crate::db::Db;
use crate::error::{DbOp, Error, Result};
use crate::lease::{HELD, Lease};
use crate::metadata::TopicPartition;

/// Kafka's default `retention.ms`: 7 days.
pub const DEFAULT_RETENTION_MS: i64 = 7 * 24 * 60 * 60 * 1000;

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionStats {
    /// Partitions whose log start moved.
    pub partitions_advanced: u64,
    /// Index rows dropped (below the log start).
    pub rows_dropped: u64,
}

impl RetentionStats {
    /// As JSON, for the job record.
    pub fn to_json(self) -> serde_json::Value {
        serde_json::json!({
            "partitions_advanced": self.partitions_advanced,
            "rows_dropped": self.rows_dropped,
        })
    }
}

/// The retention settings of one topic, from its configs (Kafka's defaults when unset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// `cleanup.policy` includes `delete`.
    pub delete: bool,
    /// `cleanup.policy` includes `compact`.
    pub compact: bool,
    /// `retention.ms`; negative = unlimited.
    pub retention_ms: i64,
    /// `retention.bytes`; negative = unlimited.
    pub retention_bytes: i64,
}

impl RetentionPolicy {
    /// Reads the policy from a topic's `configs` column (string values, Kafka's names).
    pub fn from_configs(configs: &serde_json::Value) -> RetentionPolicy {
        let get = |k: &str| configs.get(k).and_then(serde_json::Value::as_str);
        let policy = get("cleanup.policy").unwrap_or("delete");
        let parts = || policy.split(',').map(str::trim);
        let num = |k: &str, default: i64| {
            get(k)
                .and_then(|v| v.trim().parse::<i64>().ok())
                .unwrap_or(default)
        };
        RetentionPolicy {
            delete: parts().any(|p| p == "delete"),
            compact: parts().any(|p| p == "compact"),
            retention_ms: num("retention.ms", DEFAULT_RETENTION_MS),
            retention_bytes: num("retention.bytes", -1),
        }
    }
}

/// Every partition with its topic's configs.
pub(crate) async fn partitions_with_configs(
    db: &Db,
) -> Result<Vec<(TopicPartition, serde_json::Value)>> {
    let conn = db.conn().await?;
    let rows = conn
        .query(
            "SELECT p.topic, p.partition, t.configs
             FROM strom_partitions p JOIN strom_topics t ON t.name = p.topic
             ORDER BY p.topic, p.partition",
            &[],
        )
        .await
        .map_err(Error::pg(DbOp::Lifecycle))?;
    rows.iter()
        .map(|r| {
            Ok((
                TopicPartition::new(r.try_get::<_, String>(0)?, r.try_get(1)?),
                r.try_get(2)?,
            ))
        })
        .collect::<Result<_, tokio_postgres::Error>>()
        .map_err(Error::pg(DbOp::Lifecycle))
}

/// One pass over every partition (see the module docs).
pub async fn apply_retention(db: &Db, lease: &Lease) -> Result<RetentionStats> {
    let mut stats = RetentionStats::default();
    for (tp, configs) in partitions_with_configs(db).await? {
        let policy = RetentionPolicy::from_configs(&configs);
        if !policy.delete || (policy.retention_ms < 0 && policy.retention_bytes < 0) {
            continue;
        }
        if let Some(start) = retention_start(db, &tp, policy).await?
            && advance_log_start(db, lease, &tp, start).await?
        {
            stats.partitions_advanced += 1;
        }
    }
    stats.rows_dropped = drop_rows_below_log_start(db, lease).await?;
    Ok(stats)
}

/// The log start retention asks for, `None` when it keeps everything.
async fn retention_start(
    db: &Db,
    tp: &TopicPartition,
    policy: RetentionPolicy,
) -> Result<Option<i64>> {
    let pg = || Error::pg(DbOp::Lifecycle);
    let conn = db.conn().await?;
    let row = conn
        .query_one(
            "SELECT log_start_offset, next_offset FROM strom_partitions
             WHERE topic = $1 AND partition = $2",
            &[&tp.topic, &tp.partition],
        )
        .await
        .map_err(pg())?;
    let log_start: i64 = row.try_get(0).map_err(pg())?;
    let next: i64 = row.try_get(1).map_err(pg())?;
    let mut start = log_start;
    if policy.retention_ms >= 0 {
        let row = conn
            .query_one(
                "SELECT min(base_offset) FROM strom_batches
                 WHERE topic = $1 AND partition = $2 AND last_offset >= $3
                   AND max_timestamp >= (EXTRACT(EPOCH FROM now()) * 1000)::bigint - $4",
                &[&tp.topic, &tp.partition, &log_start, &policy.retention_ms],
            )
            .await
            .map_err(pg())?;
        let kept: Option<i64> = row.try_get(0).map_err(pg())?;
        start = start.max(kept.unwrap_or(next));
    }
    if policy.retention_bytes >= 0 {
        let row = conn
            .query_one(
                "SELECT coalesce(sum(byte_length), 0)::bigint FROM strom_batches
                 WHERE topic = $1 AND partition = $2 AND last_offset >= $3",
                &[&tp.topic, &tp.partition, &log_start],
            )
            .await
            .map_err(pg())?;
        let total: i64 = row.try_get(0).map_err(pg())?;
        let excess = total - policy.retention_bytes;
        if excess > 0 {
            let row = conn
                .query_opt(
                    "SELECT base_offset FROM (
                         SELECT base_offset,
                                sum(byte_length) OVER (ORDER BY base_offset) AS cum
                         FROM strom_batches
                         WHERE topic = $1 AND partition = $2 AND last_offset >= $3) s
                     WHERE cum > $4 ORDER BY base_offset LIMIT 1",
                    &[&tp.topic, &tp.partition, &log_start, &excess],
                )
                .await
                .map_err(pg())?;
            let kept = match row {
                Some(r) => r.try_get(0).map_err(pg())?,
                None => next,
            };
            start = start.max(kept);
        }
    }
    Ok((start > log_start).then_some(start))
}

/// Moves the log start of `tp` to `start` (never back, never past the high watermark), under
/// the lease. Whether it moved.
pub(crate) async fn advance_log_start(
    db: &Db,
    lease: &Lease,
    tp: &TopicPartition,
    start: i64,
) -> Result<bool> {
    let conn = db.conn().await?;
    let n = conn
        .execute(
            &format!(
                "UPDATE strom_partitions SET log_start_offset = $6
                 WHERE topic = $4 AND partition = $5 AND log_start_offset < $6
                   AND $6 <= next_offset AND {HELD}"
            ),
            &[
                &lease.name,
                &lease.holder,
                &lease.epoch,
                &tp.topic,
                &tp.partition,
                &start,
            ],
        )
        .await
        .map_err(Error::pg(DbOp::Lifecycle))?;
    Ok(n == 1)
}

/// Drops every index row that lies entirely below its partition's log start, and with them
/// the aborted-transaction rows whose ABORT marker is below it (a `read_committed` fetch never
/// reads below the log start, and a transaction whose marker is below it lies wholly below it;
/// one straddling the log start stays listed). Returns the batch rows dropped.
pub async fn drop_rows_below_log_start(db: &Db, lease: &Lease) -> Result<u64> {
    let conn = db.conn().await?;
    conn.execute(
        &format!(
            "WITH aborted AS (
                 DELETE FROM strom_aborted_txns a USING strom_partitions p
                 WHERE a.topic = p.topic AND a.partition = p.partition
                   AND a.last_offset < p.log_start_offset AND {HELD})
             DELETE FROM strom_batches b USING strom_partitions p
             WHERE b.topic = p.topic AND b.partition = p.partition
               AND b.last_offset < p.log_start_offset AND {HELD}"
        ),
        &[&lease.name, &lease.holder, &lease.epoch],
    )
    .await
    .map_err(Error::pg(DbOp::Lifecycle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_defaults_and_overrides() {
        let p = RetentionPolicy::from_configs(&serde_json::json!({}));
        assert_eq!(
            p,
            RetentionPolicy {
                delete: true,
                compact: false,
                retention_ms: DEFAULT_RETENTION_MS,
                retention_bytes: -1
            }
        );
        let p = RetentionPolicy::from_configs(&serde_json::json!({
            "cleanup.policy": "compact, delete",
            "retention.ms": "1000",
            "retention.bytes": "oops",
        }));
        assert!(p.delete && p.compact);
        assert_eq!((p.retention_ms, p.retention_bytes), (1000, -1));
        let p = RetentionPolicy::from_configs(&serde_json::json!({"cleanup.policy": "compact"}));
        assert!(!p.delete && p.compact);
    }
}
