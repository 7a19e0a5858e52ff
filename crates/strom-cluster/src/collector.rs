//! The orphan collector: deletes objects whose flush never committed.
//!
//! A flush records its object as `pending` before uploading it and flips it to `committed` in
//! its commit transaction. An object still `pending` after the grace period belongs to a flush
//! that failed (upload or commit error, broker killed): [`collect_orphans`] claims such rows by
//! setting them to `deleting` (the writer's commit only flips `pending` rows, so a flush that
//! wakes up late fails with [`Error::ObjectCollected`] instead of indexing a deleted object),
//! deletes the objects, then the rows. It also lists the data prefix and deletes objects older
//! than the grace period that have no row at all. Exactly one broker collects at a time: the
//! claim runs only while the caller's `job/orphans` lease is held at its epoch. Objects
//! `retired` by the lifecycle jobs (no index row left) are not orphans: their deletion waits
//! for the delete delay (see [`crate::lifecycle::reclaim`]).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio::task::JoinHandle;

use crate::db::Db;
use crate::error::{DbOp, Error, Result, StoreOp};
use crate::lease::{self, HELD, Lease};

/// The lease name of the orphan collector job.
pub const LEASE: &str = "job/orphans";

/// Rows claimed per pass.
const CLAIM_LIMIT: i64 = 1000;

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CollectStats {
    /// Pending objects deleted with their rows.
    pub pending_deleted: u64,
    /// Objects found by listing with no row at all, deleted.
    pub unknown_deleted: u64,
}

/// One collection pass under `lease`; see the module docs.
pub async fn collect_orphans(
    db: &Db,
    store: &Arc<dyn ObjectStore>,
    prefix: &str,
    lease: &Lease,
    grace: Duration,
) -> Result<CollectStats> {
    let mut stats = CollectStats::default();
    let keys: Vec<String> = {
        let conn = db.conn().await?;
        let rows = conn
            .query(
                &format!(
                    "UPDATE strom_objects SET state = 'deleting'
                     WHERE key IN (SELECT key FROM strom_objects
                                   WHERE state IN ('pending', 'deleting')
                                     AND created_at < now() - make_interval(secs => $4)
                                   ORDER BY created_at LIMIT $5)
                       AND state IN ('pending', 'deleting') AND {HELD}
                     RETURNING key"
                ),
                &[
                    &lease.name,
                    &lease.holder,
                    &lease.epoch,
                    &grace.as_secs_f64(),
                    &CLAIM_LIMIT,
                ],
            )
            .await
            .map_err(Error::pg(DbOp::CollectOrphans))?;
        rows.iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()
            .map_err(Error::pg(DbOp::CollectOrphans))?
    };
    for key in &keys {
        delete_object(store, key).await?;
        let conn = db.conn().await?;
        conn.execute(
            "DELETE FROM strom_objects WHERE key = $1 AND state = 'deleting'",
            &[key],
        )
        .await
        .map_err(Error::pg(DbOp::CollectOrphans))?;
        stats.pending_deleted += 1;
    }
    stats.unknown_deleted = sweep_unknown(db, store, prefix, lease, grace).await?;
    Ok(stats)
}

async fn delete_object(store: &Arc<dyn ObjectStore>, key: &str) -> Result<()> {
    match store.delete(&Path::from(key)).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(Error::store(StoreOp::Delete, Some(key))(e)),
    }
}

/// Deletes listed objects older than `grace` that have no `strom_objects` row.
async fn sweep_unknown(
    db: &Db,
    store: &Arc<dyn ObjectStore>,
    prefix: &str,
    lease: &Lease,
    grace: Duration,
) -> Result<u64> {
    let data = if prefix.is_empty() {
        Path::from("data")
    } else {
        Path::from(format!("{prefix}/data"))
    };
    let cutoff = SystemTime::now()
        .checked_sub(grace)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let mut old = Vec::new();
    let mut listing = store.list(Some(&data));
    while let Some(meta) = listing.next().await {
        let meta = meta.map_err(Error::store(StoreOp::List, Some(data.as_ref())))?;
        if SystemTime::from(meta.last_modified) < cutoff {
            old.push(meta.location.to_string());
        }
    }
    let mut deleted = 0;
    for chunk in old.chunks(CLAIM_LIMIT as usize) {
        let known: HashSet<String> = {
            let conn = db.conn().await?;
            let held: bool = conn
                .query_one(
                    &format!("SELECT {HELD}"),
                    &[&lease.name, &lease.holder, &lease.epoch],
                )
                .await
                .and_then(|r| r.try_get(0))
                .map_err(Error::pg(DbOp::CollectOrphans))?;
            if !held {
                return Err(lease::lost(lease));
            }
            let rows = conn
                .query(
                    "SELECT key FROM strom_objects WHERE key = ANY($1)",
                    &[&chunk],
                )
                .await
                .map_err(Error::pg(DbOp::CollectOrphans))?;
            rows.iter()
                .map(|r| r.try_get(0))
                .collect::<Result<_, _>>()
                .map_err(Error::pg(DbOp::CollectOrphans))?
        };
        for key in chunk.iter().filter(|k| !known.contains(*k)) {
            delete_object(store, key).await?;
            deleted += 1;
        }
    }
    Ok(deleted)
}

/// Settings of the background collector.
#[derive(Debug, Clone)]
pub struct CollectorConfig {
    /// Object key prefix (objects are under `PREFIX/data/`).
    pub prefix: String,
    /// This broker's lease holder name.
    pub holder: String,
    /// Lease time to live.
    pub lease_ttl: Duration,
    /// Age after which a pending object is an orphan.
    pub grace: Duration,
    /// Time between passes.
    pub interval: Duration,
}

/// Runs the collector every `interval` on whichever broker holds its lease.
pub fn spawn(db: Db, store: Arc<dyn ObjectStore>, config: CollectorConfig) -> JoinHandle<()> {
    let CollectorConfig {
        prefix,
        holder,
        lease_ttl: ttl,
        grace,
        interval,
    } = config;
    tokio::spawn(async move {
        let mut held: Option<Lease> = None;
        loop {
            tokio::time::sleep(interval).await;
            held = match held.take() {
                Some(l) => match lease::renew(&db, &l).await {
                    Ok(()) => Some(l),
                    Err(_) => None,
                },
                None => lease::acquire(&db, LEASE, &holder, ttl)
                    .await
                    .ok()
                    .flatten(),
            };
            if let Some(l) = &held {
                match collect_orphans(&db, &store, &prefix, l, grace).await {
                    Ok(stats) if stats != CollectStats::default() => {
                        tracing::info!(?stats, "collected orphan objects");
                    }
                    Ok(_) => {}
                    Err(error) => tracing::warn!(%error, "orphan collection failed"),
                }
            }
        }
    })
}
