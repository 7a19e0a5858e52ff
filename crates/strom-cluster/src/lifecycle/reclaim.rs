//! Reclaiming objects no index row refers to any more.
//!
//! An object holds batches of many partitions; it can go once none of its batches is indexed
//! (retention and DeleteRecords dropped their rows, their topic was deleted, or a merge or
//! compaction moved them to a new object). Reference counting is the index itself: the
//! `strom_batches_object` index answers "does any row name this object" at once, and a
//! committed object never gains rows again (only a flush's or a rewrite's own `pending` object
//! does, in the transaction that commits it), so "committed and unreferenced" is final.
//!
//! A pass (job `reclaim`, fenced by its lease) does two steps:
//! 1. **retire**: committed objects with no row become `retired` (time noted);
//! 2. **delete**: objects retired longer ago than the delete delay are claimed (`deleting`),
//!    deleted from the store, then their rows. The delay lets a fetch that read an index row
//!    just before the change still read the bytes (as Kafka keeps a deleted segment for
//!    `file.delete.delay.ms`); a fetch later than that finds the object gone, drops its
//!    cached index and reads the index again (see [`crate::reader::Reader::fetch`]).

use std::sync::Arc;
use std::time::Duration;

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::db::Db;
use crate::error::{DbOp, Error, Result, StoreOp};
use crate::lease::{HELD, Lease};

/// Objects handled per statement.
const BATCH: i64 = 1000;

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReclaimStats {
    /// Committed objects found unreferenced and retired.
    pub retired: u64,
    /// Retired objects deleted (object and row).
    pub deleted: u64,
    /// Their bytes.
    pub deleted_bytes: u64,
}

impl ReclaimStats {
    /// As JSON, for the job record.
    pub fn to_json(self) -> serde_json::Value {
        serde_json::json!({
            "retired": self.retired,
            "deleted": self.deleted,
            "deleted_bytes": self.deleted_bytes,
        })
    }
}

/// One pass: retire unreferenced objects, delete those retired more than `delete_delay` ago.
pub async fn reclaim(
    db: &Db,
    store: &Arc<dyn ObjectStore>,
    lease: &Lease,
    delete_delay: Duration,
) -> Result<ReclaimStats> {
    let pg = || Error::pg(DbOp::Lifecycle);
    let mut stats = ReclaimStats::default();
    loop {
        let conn = db.conn().await?;
        let n = conn
            .execute(
                &format!(
                    "UPDATE strom_objects SET state = 'retired', retired_at = now()
                     WHERE key IN (SELECT o.key FROM strom_objects o
                                   WHERE o.state = 'committed'
                                     AND NOT EXISTS (SELECT 1 FROM strom_batches b
                                                     WHERE b.object_key = o.key)
                                   LIMIT $4)
                       AND state = 'committed' AND {HELD}"
                ),
                &[&lease.name, &lease.holder, &lease.epoch, &BATCH],
            )
            .await
            .map_err(pg())?;
        stats.retired += n;
        if n < BATCH as u64 {
            break;
        }
    }
    loop {
        let claimed: Vec<(String, i64)> = {
            let conn = db.conn().await?;
            let rows = conn
                .query(
                    &format!(
                        "UPDATE strom_objects SET state = 'deleting'
                         WHERE key IN (SELECT key FROM strom_objects
                                       WHERE state = 'retired'
                                         AND retired_at <= now() - make_interval(secs => $4)
                                       ORDER BY retired_at LIMIT $5)
                           AND state = 'retired' AND {HELD}
                         RETURNING key, size"
                    ),
                    &[
                        &lease.name,
                        &lease.holder,
                        &lease.epoch,
                        &delete_delay.as_secs_f64(),
                        &BATCH,
                    ],
                )
                .await
                .map_err(pg())?;
            rows.iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect::<Result<_, tokio_postgres::Error>>()
                .map_err(pg())?
        };
        let done = (claimed.len() as i64) < BATCH;
        for (key, size) in claimed {
            delete_object(store, &key).await?;
            let conn = db.conn().await?;
            conn.execute(
                "DELETE FROM strom_objects WHERE key = $1 AND state = 'deleting'",
                &[&key],
            )
            .await
            .map_err(pg())?;
            stats.deleted += 1;
            stats.deleted_bytes += u64::try_from(size).unwrap_or(0);
        }
        if done {
            break;
        }
    }
    Ok(stats)
}

/// Deletes one object; a missing one is already gone.
pub(crate) async fn delete_object(store: &Arc<dyn ObjectStore>, key: &str) -> Result<()> {
    match store.delete(&Path::from(key)).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(Error::store(StoreOp::Delete, Some(key))(e)),
    }
}
