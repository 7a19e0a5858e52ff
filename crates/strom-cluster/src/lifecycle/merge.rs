//! Merging small objects: the live batches of a run of small objects are copied, unchanged,
//! into one bigger object, so the number of objects stays proportional to live data rather
//! than to the number of flushes.
//!
//! A pass (job `merge`) picks committed objects older than `min_age` whose live bytes (the sum
//! of their indexed batches) are under `small_object_bytes`, oldest first, until their live
//! bytes reach `target_bytes`; at least two are needed. It downloads them, writes their live
//! batches grouped by partition and in offset order into a new object
//! ([`super::rewrite::upload`]), then one transaction (fenced by the lease) re-points each
//! index row still naming the old object at the same place to the new one: offsets,
//! timestamps and producer fields are untouched, so readers see the same batches. A row that
//! changed meanwhile (retention dropped it, compaction replaced it) is left alone. The old
//! objects, now unreferenced, are retired and deleted after the delete delay by
//! [`super::reclaim`], so a fetch that read the old rows still finds their bytes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use object_store::ObjectStore;

use crate::db::Db;
use crate::error::{DbOp, Error, Result};
use crate::lease::Lease;
use crate::lifecycle::rewrite;

/// Settings of merging.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MergeConfig {
    /// An object whose live bytes are below this is small (a merge candidate).
    pub small_object_bytes: u64,
    /// A merged object is at most about this big.
    pub target_bytes: u64,
    /// Objects younger than this are left alone (their flush's readers are still at the tail).
    pub min_age: Duration,
}

impl Default for MergeConfig {
    fn default() -> Self {
        MergeConfig {
            small_object_bytes: 4 << 20,
            target_bytes: 32 << 20,
            min_age: Duration::from_secs(60),
        }
    }
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MergeStats {
    /// Objects whose batches were copied.
    pub objects_merged: u64,
    /// Objects written.
    pub objects_written: u64,
    /// Index rows re-pointed.
    pub rows_moved: u64,
    /// Bytes written.
    pub bytes_written: u64,
}

impl MergeStats {
    /// As JSON, for the job record.
    pub fn to_json(self) -> serde_json::Value {
        serde_json::json!({
            "objects_merged": self.objects_merged,
            "objects_written": self.objects_written,
            "rows_moved": self.rows_moved,
            "bytes_written": self.bytes_written,
        })
    }
}

/// One live batch of an object being merged.
#[derive(Debug, Clone)]
struct LiveBatch {
    topic: String,
    partition: i32,
    base_offset: i64,
    object_key: String,
    byte_offset: i64,
    byte_length: i32,
}

/// One pass: merges one run of small objects (see the module docs).
pub async fn merge_small_objects(
    db: &Db,
    store: &Arc<dyn ObjectStore>,
    prefix: &str,
    lease: &Lease,
    config: MergeConfig,
) -> Result<MergeStats> {
    let pg = || Error::pg(DbOp::Lifecycle);
    let mut stats = MergeStats::default();
    let candidates: Vec<(String, i64)> = {
        let conn = db.conn().await?;
        let rows = conn
            .query(
                "SELECT o.key, sum(b.byte_length)::bigint
                 FROM strom_objects o JOIN strom_batches b ON b.object_key = o.key
                 WHERE o.state = 'committed'
                   AND o.created_at < now() - make_interval(secs => $1)
                 GROUP BY o.key, o.created_at
                 HAVING sum(b.byte_length) < $2
                 ORDER BY o.created_at, o.key
                 LIMIT 10000",
                &[
                    &config.min_age.as_secs_f64(),
                    &i64::try_from(config.small_object_bytes).unwrap_or(i64::MAX),
                ],
            )
            .await
            .map_err(pg())?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_, tokio_postgres::Error>>()
            .map_err(pg())?
    };
    let mut run = Vec::new();
    let mut live = 0u64;
    for (key, bytes) in candidates {
        let bytes = u64::try_from(bytes).unwrap_or(0);
        if !run.is_empty() && live + bytes > config.target_bytes {
            break;
        }
        live += bytes;
        run.push(key);
    }
    if run.len() < 2 {
        return Ok(stats);
    }
    let batches: Vec<LiveBatch> = {
        let conn = db.conn().await?;
        let rows = conn
            .query(
                "SELECT topic, partition, base_offset, object_key, byte_offset, byte_length
                 FROM strom_batches WHERE object_key = ANY($1)
                 ORDER BY topic, partition, base_offset",
                &[&run],
            )
            .await
            .map_err(pg())?;
        rows.iter()
            .map(|r| {
                Ok(LiveBatch {
                    topic: r.try_get(0)?,
                    partition: r.try_get(1)?,
                    base_offset: r.try_get(2)?,
                    object_key: r.try_get(3)?,
                    byte_offset: r.try_get(4)?,
                    byte_length: r.try_get(5)?,
                })
            })
            .collect::<Result<_, tokio_postgres::Error>>()
            .map_err(pg())?
    };
    let mut objects: HashMap<&str, Bytes> = HashMap::new();
    for key in &run {
        objects.insert(key.as_str(), rewrite::get_object(store, key).await?);
    }
    let mut out = BytesMut::with_capacity(usize::try_from(live).unwrap_or(0));
    let mut new_offsets = Vec::with_capacity(batches.len());
    for b in &batches {
        let range = usize::try_from(b.byte_offset)
            .ok()
            .zip(usize::try_from(b.byte_length).ok())
            .map(|(start, len)| start..start + len);
        let bytes = objects
            .get(b.object_key.as_str())
            .zip(range)
            .and_then(|(object, range)| object.get(range));
        let Some(bytes) = bytes else {
            return Err(Error::CorruptIndex {
                topic: b.topic.clone(),
                partition: b.partition,
                base_offset: b.base_offset,
                key: b.object_key.clone(),
            });
        };
        new_offsets.push(out.len() as i64);
        out.extend_from_slice(bytes);
    }
    let new_key = rewrite::new_object_key(prefix);
    let written = out.len() as u64;
    rewrite::upload(db, store, &lease.holder, &new_key, out.freeze()).await?;

    let topics: Vec<&str> = batches.iter().map(|b| b.topic.as_str()).collect();
    let partitions: Vec<i32> = batches.iter().map(|b| b.partition).collect();
    let bases: Vec<i64> = batches.iter().map(|b| b.base_offset).collect();
    let old_keys: Vec<&str> = batches.iter().map(|b| b.object_key.as_str()).collect();
    let old_offsets: Vec<i64> = batches.iter().map(|b| b.byte_offset).collect();
    let mut conn = db.conn().await?;
    let tx = conn.transaction().await.map_err(pg())?;
    rewrite::hold_lease(&tx, lease).await?;
    let moved = tx
        .execute(
            "UPDATE strom_batches b SET object_key = $1, byte_offset = u.new_offset
             FROM unnest($2::text[], $3::int[], $4::bigint[], $5::text[], $6::bigint[],
                         $7::bigint[])
                  AS u(topic, partition, base_offset, old_key, old_offset, new_offset)
             WHERE b.topic = u.topic AND b.partition = u.partition
               AND b.base_offset = u.base_offset AND b.object_key = u.old_key
               AND b.byte_offset = u.old_offset",
            &[
                &new_key,
                &topics,
                &partitions,
                &bases,
                &old_keys,
                &old_offsets,
                &new_offsets,
            ],
        )
        .await
        .map_err(pg())?;
    rewrite::commit_object(&tx, &new_key).await?;
    tx.commit().await.map_err(pg())?;
    stats.objects_merged = run.len() as u64;
    stats.objects_written = 1;
    stats.rows_moved = moved;
    stats.bytes_written = written;
    Ok(stats)
}
