//! Compaction of `cleanup.policy=compact` partitions, with the single-node cleaner's rules
//! (`strom-log`'s `PartitionLog::clean`, itself Kafka's), at batch granularity.
//!
//! For each compacted partition a pass (job `compaction`):
//!
//! 1. **Plans.** The dirty range starts at the partition's checkpoint (`strom_compaction`,
//!    else the log start) and ends at the first uncleanable batch: the partition's last batch
//!    (as Kafka never cleans the active segment: a consumer at the end always finds a batch
//!    there, never a trailing gap) or the first one younger than `min.compaction.lag.ms`. It
//!    cleans when the dirty bytes are at least `min.cleanable.dirty.ratio` (default 0.5) of
//!    the cleanable bytes, when the oldest dirty batch is older than `max.compaction.lag.ms`,
//!    or when a tombstone kept by the last clean has passed `delete.retention.ms`.
//! 2. **Maps** key → latest offset ([`strom_record::compact::OffsetMap`], shared with the
//!    single-node cleaner) over the dirty range (up to [`MAX_MAP_KEYS`] keys; the
//!    range stops after the batch that fills it, and the next pass goes on from there).
//! 3. **Rewrites** every batch from the log start to the end of the map. A record is kept iff
//!    it has a key, no later record of its key is in the map, and it is not a tombstone whose
//!    batch's max timestamp is `delete.retention.ms` or more in the past (the shared
//!    [`strom_record::compact::CompactionRules`]). A batch that keeps
//!    everything is left where it is; one that loses records is rewritten with
//!    [`strom_record::retain_records`] (same offset range and producer fields, offsets get
//!    gaps but never move) into one new object per pass; one left with nothing is dropped from
//!    the index, except a producer's last [`PRODUCER_BATCHES_KEPT`] batches, kept empty so
//!    duplicate detection of a retry (which looks the original up in the index) survives.
//!    Transactions as the single-node cleaner treats them: nothing at or past the partition's
//!    last stable offset is cleaned (the end of the dirty range stops at the first open
//!    transaction, as Kafka's first unstable offset does); records of aborted transactions
//!    (`strom_aborted_txns`) are neither mapped nor kept; a transaction marker is kept while
//!    any batch of its transaction before it is kept, then until `delete.retention.ms` after
//!    its timestamp, and an ABORT marker's aborted-transaction row goes with it. Control
//!    batches of unknown types are kept as they are.
//! 4. **Commits** in one transaction fenced by the lease: each rewritten row is re-pointed at
//!    the new object (byte range and max timestamp updated), each dropped row deleted, the new
//!    object committed, the checkpoint advanced and the partition's `index_version` incremented
//!    (readers drop index runs they cached before). Every row must still be as the pass read it
//!    (a merge or retention may have changed it meanwhile); otherwise the transaction is rolled
//!    back, the new object is left to the orphan collector, and the next pass starts over.
//!
//! The old objects are reclaimed once unreferenced, after the delete delay ([`super::reclaim`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use object_store::ObjectStore;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use strom_record::compact::{CompactionRules, OffsetMap, Verdict};
use strom_record::{DecodeLimits, RecordView};

use crate::db::Db;
use crate::error::{DbOp, Error, Result, StoreOp};
use crate::lease::{HELD, Lease};
use crate::lifecycle::retention::partitions_with_configs;
use crate::lifecycle::rewrite;
use crate::metadata::TopicPartition;
use crate::reader::{IndexEntry, served};

/// Most keys one clean's offset map holds.
pub const MAX_MAP_KEYS: usize = 1 << 20;

/// Batches of each producer kept indexed even when emptied (Kafka's producer state keeps the
/// metadata of this many batches per producer for duplicate detection).
pub const PRODUCER_BATCHES_KEPT: usize = 5;

/// Batches downloaded per round while mapping or rewriting.
const CHUNK: usize = 256;

/// Kafka's default `delete.retention.ms`: one day.
pub const DEFAULT_DELETE_RETENTION_MS: i64 = 24 * 60 * 60 * 1000;

/// The compaction settings of one topic, from its configs (Kafka's defaults when unset).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CompactionPolicy {
    /// `cleanup.policy` includes `compact`.
    pub compact: bool,
    /// `delete.retention.ms`.
    pub delete_retention_ms: i64,
    /// `min.compaction.lag.ms`.
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`.
    pub max_compaction_lag_ms: i64,
    /// `min.cleanable.dirty.ratio`.
    pub min_cleanable_dirty_ratio: f64,
}

impl CompactionPolicy {
    /// Reads the policy from a topic's `configs` column.
    pub fn from_configs(configs: &serde_json::Value) -> CompactionPolicy {
        let get = |k: &str| configs.get(k).and_then(serde_json::Value::as_str);
        let num = |k: &str, default: i64| {
            get(k)
                .and_then(|v| v.trim().parse::<i64>().ok())
                .unwrap_or(default)
        };
        CompactionPolicy {
            compact: get("cleanup.policy")
                .unwrap_or("delete")
                .split(',')
                .any(|p| p.trim() == "compact"),
            delete_retention_ms: num("delete.retention.ms", DEFAULT_DELETE_RETENTION_MS),
            min_compaction_lag_ms: num("min.compaction.lag.ms", 0),
            max_compaction_lag_ms: num("max.compaction.lag.ms", i64::MAX),
            min_cleanable_dirty_ratio: get("min.cleanable.dirty.ratio")
                .and_then(|v| v.trim().parse::<f64>().ok())
                .unwrap_or(0.5),
        }
    }
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactionStats {
    /// Partitions cleaned (their checkpoint advanced).
    pub partitions_cleaned: u64,
    /// Batches rewritten with fewer records.
    pub batches_rewritten: u64,
    /// Batches dropped from the index (no record left).
    pub batches_removed: u64,
    /// Records removed.
    pub records_removed: u64,
    /// Bytes written to new objects.
    pub bytes_written: u64,
    /// Cleans rolled back because the index changed under them.
    pub conflicts: u64,
}

impl CompactionStats {
    /// As JSON, for the job record.
    pub fn to_json(self) -> serde_json::Value {
        serde_json::json!({
            "partitions_cleaned": self.partitions_cleaned,
            "batches_rewritten": self.batches_rewritten,
            "batches_removed": self.batches_removed,
            "records_removed": self.records_removed,
            "bytes_written": self.bytes_written,
            "conflicts": self.conflicts,
        })
    }
}

/// One index row as compaction sees it.
#[derive(Debug, Clone)]
struct Row {
    entry: IndexEntry,
    producer_id: i64,
    is_transactional: bool,
    is_control: bool,
}

/// The aborted transactions of a partition, by producer: `(first_offset, marker_offset)`.
#[derive(Debug, Default)]
struct Aborted {
    by_producer: HashMap<i64, Vec<(i64, i64)>>,
}

impl Aborted {
    /// Whether `row` is transactional data of an aborted transaction.
    fn contains(&self, row: &Row) -> bool {
        row.is_transactional
            && !row.is_control
            && self
                .by_producer
                .get(&row.producer_id)
                .is_some_and(|ranges| {
                    ranges.iter().any(|&(first, marker)| {
                        row.entry.base_offset >= first && row.entry.base_offset < marker
                    })
                })
    }
}

async fn aborted(db: &Db, tp: &TopicPartition) -> Result<Aborted> {
    let pg = || Error::pg(DbOp::Lifecycle);
    let conn = db.conn().await?;
    let rows = conn
        .query(
            "SELECT producer_id, first_offset, last_offset FROM strom_aborted_txns
             WHERE topic = $1 AND partition = $2",
            &[&tp.topic, &tp.partition],
        )
        .await
        .map_err(pg())?;
    let mut out = Aborted::default();
    for r in &rows {
        out.by_producer
            .entry(r.try_get(0).map_err(pg())?)
            .or_default()
            .push((r.try_get(1).map_err(pg())?, r.try_get(2).map_err(pg())?));
    }
    Ok(out)
}

/// What happens to a row.
#[derive(Debug)]
enum Change {
    /// Re-pointed at `byte_offset` in the new object.
    Rewrite {
        row: usize,
        byte_offset: i64,
        byte_length: i32,
        max_timestamp: i64,
    },
    /// Dropped from the index.
    Remove { row: usize },
}

/// One pass over every compacted partition (see the module docs).
pub async fn compact(
    db: &Db,
    store: &Arc<dyn ObjectStore>,
    prefix: &str,
    lease: &Lease,
) -> Result<CompactionStats> {
    let mut stats = CompactionStats::default();
    for (tp, configs) in partitions_with_configs(db).await? {
        let policy = CompactionPolicy::from_configs(&configs);
        if policy.compact {
            compact_partition(db, store, prefix, lease, &tp, policy, &mut stats).await?;
        }
    }
    Ok(stats)
}

/// The partition's state for planning: offsets, checkpoint and the database's clock.
struct State {
    log_start: i64,
    next: i64,
    cleaned: Option<i64>,
    tombstones_due_ms: Option<i64>,
    now_ms: i64,
    /// First offset of the earliest open transaction (nothing from there on is cleaned).
    first_open_txn: Option<i64>,
}

async fn state(db: &Db, tp: &TopicPartition) -> Result<State> {
    let pg = || Error::pg(DbOp::Lifecycle);
    let conn = db.conn().await?;
    let row = conn
        .query_one(
            "SELECT p.log_start_offset, p.next_offset, c.cleaned_offset, c.tombstones_due_ms,
                    (EXTRACT(EPOCH FROM now()) * 1000)::bigint,
                    (SELECT min(s.txn_first_offset) FROM strom_producer_states s
                     WHERE s.topic = p.topic AND s.partition = p.partition
                       AND s.txn_first_offset IS NOT NULL)
             FROM strom_partitions p LEFT JOIN strom_compaction c
                  ON c.topic = p.topic AND c.partition = p.partition
             WHERE p.topic = $1 AND p.partition = $2",
            &[&tp.topic, &tp.partition],
        )
        .await
        .map_err(pg())?;
    Ok(State {
        log_start: row.try_get(0).map_err(pg())?,
        next: row.try_get(1).map_err(pg())?,
        cleaned: row.try_get(2).map_err(pg())?,
        tombstones_due_ms: row.try_get(3).map_err(pg())?,
        now_ms: row.try_get(4).map_err(pg())?,
        first_open_txn: row.try_get(5).map_err(pg())?,
    })
}

/// How many batches of `tp` end at or after `from`.
async fn dirty_batches(db: &Db, tp: &TopicPartition, from: i64) -> Result<i64> {
    let conn = db.conn().await?;
    conn.query_one(
        "SELECT count(*) FROM strom_batches
         WHERE topic = $1 AND partition = $2 AND last_offset >= $3",
        &[&tp.topic, &tp.partition, &from],
    )
    .await
    .and_then(|r| r.try_get(0))
    .map_err(Error::pg(DbOp::Lifecycle))
}

async fn rows(db: &Db, tp: &TopicPartition, from: i64, to: i64) -> Result<Vec<Row>> {
    let pg = || Error::pg(DbOp::Lifecycle);
    let conn = db.conn().await?;
    let rows = conn
        .query(
            "SELECT base_offset, last_offset, object_key, byte_offset, byte_length,
                    max_timestamp, producer_id, is_transactional, is_control
             FROM strom_batches
             WHERE topic = $1 AND partition = $2 AND last_offset >= $3 AND base_offset < $4
             ORDER BY base_offset",
            &[&tp.topic, &tp.partition, &from, &to],
        )
        .await
        .map_err(pg())?;
    rows.iter()
        .map(|r| {
            let byte_offset: i64 = r.try_get(3)?;
            let byte_length: i32 = r.try_get(4)?;
            Ok(Row {
                entry: IndexEntry {
                    base_offset: r.try_get(0)?,
                    last_offset: r.try_get(1)?,
                    object_key: r.try_get(2)?,
                    byte_offset: u64::try_from(byte_offset).unwrap_or(0),
                    byte_length: u64::try_from(byte_length).unwrap_or(0),
                    max_timestamp: r.try_get(5)?,
                },
                producer_id: r.try_get(6)?,
                is_transactional: r.try_get(7)?,
                is_control: r.try_get(8)?,
            })
        })
        .collect::<Result<_, tokio_postgres::Error>>()
        .map_err(pg())
}

/// The batches of `rows` as served (base offset set), one ranged GET per run of adjacent
/// batches in one object.
async fn load(
    store: &Arc<dyn ObjectStore>,
    tp: &TopicPartition,
    rows: &[Row],
) -> Result<Vec<Bytes>> {
    let mut out = Vec::with_capacity(rows.len());
    let mut i = 0;
    while i < rows.len() {
        let mut j = i + 1;
        while j < rows.len()
            && rows[j].entry.object_key == rows[j - 1].entry.object_key
            && rows[j].entry.byte_offset
                == rows[j - 1].entry.byte_offset + rows[j - 1].entry.byte_length
        {
            j += 1;
        }
        let first = &rows[i].entry;
        let start = first.byte_offset;
        let end = rows[j - 1].entry.byte_offset + rows[j - 1].entry.byte_length;
        let key = first.object_key.as_str();
        let data = store
            .get_range(&Path::from(key), start..end)
            .await
            .map_err(Error::store(StoreOp::GetRange, Some(key)))?;
        for row in &rows[i..j] {
            let from = usize::try_from(row.entry.byte_offset - start).unwrap_or(usize::MAX);
            let len = usize::try_from(row.entry.byte_length).unwrap_or(usize::MAX);
            let raw =
                data.get(from..from.saturating_add(len))
                    .ok_or_else(|| Error::CorruptIndex {
                        topic: tp.topic.clone(),
                        partition: tp.partition,
                        base_offset: row.entry.base_offset,
                        key: row.entry.object_key.clone(),
                    })?;
            out.push(served(tp, &row.entry, raw)?);
        }
        i = j;
    }
    Ok(out)
}

fn corrupt(tp: &TopicPartition, row: &Row) -> Error {
    Error::CorruptIndex {
        topic: tp.topic.clone(),
        partition: tp.partition,
        base_offset: row.entry.base_offset,
        key: row.entry.object_key.clone(),
    }
}

/// Cleans one partition if it is due (see the module docs).
async fn compact_partition(
    db: &Db,
    store: &Arc<dyn ObjectStore>,
    prefix: &str,
    lease: &Lease,
    tp: &TopicPartition,
    policy: CompactionPolicy,
    stats: &mut CompactionStats,
) -> Result<()> {
    let st = state(db, tp).await?;
    let checkpoint = match st.cleaned {
        Some(c) if c <= st.next => c.max(st.log_start),
        _ => st.log_start,
    };
    let tombstones_due = st.tombstones_due_ms.is_some_and(|d| d <= st.now_ms);
    // The idle case without reading the index: nothing dirty but the last batch (never
    // cleaned), and no kept tombstone due.
    if !tombstones_due && dirty_batches(db, tp, checkpoint).await? <= 1 {
        return Ok(());
    }
    let all = rows(db, tp, st.log_start, st.next).await?;
    // The last batch is never cleaned (Kafka's active segment).
    let Some(last) = all.last() else {
        return Ok(());
    };
    let last_base = last.entry.base_offset;
    let first_dirty = checkpoint;
    let too_young = |r: &Row| {
        policy.min_compaction_lag_ms > 0
            && r.entry.max_timestamp >= 0
            && st.now_ms.saturating_sub(r.entry.max_timestamp) < policy.min_compaction_lag_ms
    };
    // Nor is anything at or past the last stable offset (an open transaction may still abort).
    let unstable = st.first_open_txn.unwrap_or(i64::MAX);
    let mut end_idx = all
        .iter()
        .position(|r| {
            r.entry.base_offset >= last_base || r.entry.last_offset >= unstable || too_young(r)
        })
        .unwrap_or(all.len());
    let dirty_idx = all
        .iter()
        .position(|r| r.entry.last_offset >= first_dirty)
        .unwrap_or(all.len())
        .min(end_idx);
    let bytes = |rows: &[Row]| rows.iter().map(|r| r.entry.byte_length).sum::<u64>();
    let clean_bytes = bytes(&all[..dirty_idx]);
    let dirty_bytes = bytes(&all[dirty_idx..end_idx]);
    let ratio = if clean_bytes + dirty_bytes == 0 {
        0.0
    } else {
        dirty_bytes as f64 / (clean_bytes + dirty_bytes) as f64
    };
    let lag_exceeded = dirty_bytes > 0
        && policy.max_compaction_lag_ms < i64::MAX
        && all.get(dirty_idx).is_some_and(|r| {
            st.now_ms.saturating_sub(r.entry.max_timestamp) > policy.max_compaction_lag_ms
        });
    let due = (dirty_bytes > 0 && (ratio >= policy.min_cleanable_dirty_ratio || lag_exceeded))
        || tombstones_due;
    if !due {
        return Ok(());
    }
    let limits = DecodeLimits {
        max_batch_bytes: usize::MAX,
        ..DecodeLimits::default()
    };

    let aborted = aborted(db, tp).await?;

    // 2. The offset map over the dirty range (not from markers or aborted transactions).
    let mut map = OffsetMap::default();
    let mut at = dirty_idx;
    'map: while at < end_idx {
        let chunk_end = (at + CHUNK).min(end_idx);
        let chunk = &all[at..chunk_end];
        let loaded = load(store, tp, chunk).await?;
        for (k, (row, batch)) in chunk.iter().zip(&loaded).enumerate() {
            if row.is_control || aborted.contains(row) {
                continue;
            }
            let decoded =
                strom_record::decode_records(batch, limits).map_err(|_| corrupt(tp, row))?;
            for r in decoded.records {
                if let Some(key) = &r.key {
                    map.put(key, r.offset);
                }
            }
            if map.len() >= MAX_MAP_KEYS {
                end_idx = at + k + 1;
                break 'map;
            }
        }
        at = chunk_end;
    }
    let end = all.get(end_idx).map_or(last_base, |r| r.entry.base_offset);

    // 3. Rewrite from the log start to the end of the map.
    // A producer's most recent batches stay indexed (emptied, if need be): the index is where
    // the commit transaction finds the original of a retried batch, as Kafka's producer state
    // keeps the metadata of the last few batches of each producer whatever the cleaner does.
    let mut recent_of_producer: HashSet<i64> = HashSet::new();
    let mut per_producer: HashMap<i64, usize> = HashMap::new();
    for row in all
        .iter()
        .rev()
        .filter(|r| r.producer_id >= 0 && !r.is_control)
    {
        let n = per_producer.entry(row.producer_id).or_insert(0);
        if *n < PRODUCER_BATCHES_KEPT {
            recent_of_producer.insert(row.entry.base_offset);
            *n += 1;
        }
    }
    let rules = CompactionRules {
        now_ms: st.now_ms,
        delete_retention_ms: policy.delete_retention_ms,
    };
    let mut out = BytesMut::new();
    let mut changes = Vec::new();
    let mut next_due: Option<i64> = None;
    let mut records_removed = 0u64;
    // Producers whose transaction (ended by a marker not yet reached) has data kept so far.
    let mut open_txns: HashMap<i64, bool> = HashMap::new();
    // ABORT markers dropped: their aborted-transaction rows go with them.
    let mut dropped_markers: Vec<i64> = Vec::new();
    let mut at = 0;
    while at < end_idx {
        let chunk_end = (at + CHUNK).min(end_idx);
        let chunk = &all[at..chunk_end];
        let loaded = load(store, tp, chunk).await?;
        for (k, (row, batch)) in chunk.iter().zip(&loaded).enumerate() {
            let batch_ts = row.entry.max_timestamp;
            if row.is_control {
                let is_marker = row.producer_id >= 0 && strom_record::parse_marker(batch).is_ok();
                if !is_marker {
                    // Control records of unknown types are kept as they are.
                    continue;
                }
                // A marker goes once no batch of its transaction is left and the tombstone
                // retention has passed (consumers that read the data see the marker too).
                let has_data = open_txns.remove(&row.producer_id).unwrap_or(false);
                if has_data || !rules.tombstone_expired(batch_ts) {
                    if !has_data {
                        let due = batch_ts.saturating_add(policy.delete_retention_ms);
                        next_due = Some(next_due.map_or(due, |d| d.min(due)));
                    }
                    continue;
                }
                records_removed += 1;
                dropped_markers.push(row.entry.base_offset);
                changes.push(Change::Remove { row: at + k });
                continue;
            }
            let is_aborted = aborted.contains(row);
            let mut kept_tombstone = false;
            let retained = strom_record::retain_records(batch, limits, |r: &RecordView<'_>| {
                if is_aborted {
                    return false;
                }
                match rules.verdict(&map, r.key, r.offset, r.value_is_null, batch_ts) {
                    Verdict::Remove => false,
                    Verdict::Keep => true,
                    Verdict::KeepTombstone => {
                        kept_tombstone = true;
                        true
                    }
                }
            })
            .map_err(|_| corrupt(tp, row))?;
            if kept_tombstone {
                let due = batch_ts.saturating_add(policy.delete_retention_ms);
                next_due = Some(next_due.map_or(due, |d| d.min(due)));
            }
            let keep = retained.kept > 0 || recent_of_producer.contains(&row.entry.base_offset);
            if row.is_transactional && row.producer_id >= 0 {
                *open_txns.entry(row.producer_id).or_insert(false) |= keep;
            }
            if retained.removed == 0 {
                continue;
            }
            records_removed += retained.removed as u64;
            if !keep {
                changes.push(Change::Remove { row: at + k });
            } else {
                changes.push(Change::Rewrite {
                    row: at + k,
                    byte_offset: out.len() as i64,
                    byte_length: i32::try_from(retained.bytes.len()).unwrap_or(i32::MAX),
                    max_timestamp: retained.header.max_timestamp,
                });
                out.extend_from_slice(&retained.bytes);
            }
        }
        at = chunk_end;
    }

    // 4. Commit.
    let new_key = (!out.is_empty()).then(|| rewrite::new_object_key(prefix));
    let written = out.len() as u64;
    if let Some(key) = &new_key {
        rewrite::upload(db, store, &lease.holder, key, out.freeze()).await?;
    }
    let pg = || Error::pg(DbOp::Lifecycle);
    let mut conn = db.conn().await?;
    let tx = conn.transaction().await.map_err(pg())?;
    rewrite::hold_lease(&tx, lease).await?;
    // First, so the partition row is locked before any batch row, as a commit locks them.
    tx.execute(
        "UPDATE strom_partitions SET index_version = index_version + 1
         WHERE topic = $1 AND partition = $2",
        &[&tp.topic, &tp.partition],
    )
    .await
    .map_err(pg())?;
    let (mut rw, mut rm) = (Vec::new(), Vec::new());
    for change in &changes {
        match change {
            Change::Rewrite { row, .. } => rw.push((change, &all[*row])),
            Change::Remove { row } => rm.push(&all[*row]),
        }
    }
    let mut expected = 0u64;
    let mut matched = 0u64;
    if let Some(key) = &new_key {
        let bases: Vec<i64> = rw.iter().map(|(_, r)| r.entry.base_offset).collect();
        let old_keys: Vec<&str> = rw
            .iter()
            .map(|(_, r)| r.entry.object_key.as_str())
            .collect();
        let old_offsets: Vec<i64> = rw
            .iter()
            .map(|(_, r)| i64::try_from(r.entry.byte_offset).unwrap_or(-1))
            .collect();
        let (mut new_offsets, mut new_lengths, mut new_ts) = (Vec::new(), Vec::new(), Vec::new());
        for (change, _) in &rw {
            if let Change::Rewrite {
                byte_offset,
                byte_length,
                max_timestamp,
                ..
            } = change
            {
                new_offsets.push(*byte_offset);
                new_lengths.push(*byte_length);
                new_ts.push(*max_timestamp);
            }
        }
        expected += rw.len() as u64;
        matched += tx
            .execute(
                "UPDATE strom_batches b SET object_key = $3, byte_offset = u.new_offset,
                        byte_length = u.new_length, max_timestamp = u.new_ts
                 FROM unnest($4::bigint[], $5::text[], $6::bigint[], $7::bigint[], $8::int[],
                             $9::bigint[])
                      AS u(base_offset, old_key, old_offset, new_offset, new_length, new_ts)
                 WHERE b.topic = $1 AND b.partition = $2 AND b.base_offset = u.base_offset
                   AND b.object_key = u.old_key AND b.byte_offset = u.old_offset",
                &[
                    &tp.topic,
                    &tp.partition,
                    key,
                    &bases,
                    &old_keys,
                    &old_offsets,
                    &new_offsets,
                    &new_lengths,
                    &new_ts,
                ],
            )
            .await
            .map_err(pg())?;
        rewrite::commit_object(&tx, key).await?;
    }
    if !rm.is_empty() {
        let bases: Vec<i64> = rm.iter().map(|r| r.entry.base_offset).collect();
        let old_keys: Vec<&str> = rm.iter().map(|r| r.entry.object_key.as_str()).collect();
        let old_offsets: Vec<i64> = rm
            .iter()
            .map(|r| i64::try_from(r.entry.byte_offset).unwrap_or(-1))
            .collect();
        expected += rm.len() as u64;
        matched += tx
            .execute(
                "DELETE FROM strom_batches b
                 USING unnest($3::bigint[], $4::text[], $5::bigint[])
                       AS u(base_offset, old_key, old_offset)
                 WHERE b.topic = $1 AND b.partition = $2 AND b.base_offset = u.base_offset
                   AND b.object_key = u.old_key AND b.byte_offset = u.old_offset",
                &[&tp.topic, &tp.partition, &bases, &old_keys, &old_offsets],
            )
            .await
            .map_err(pg())?;
    }
    if !dropped_markers.is_empty() {
        tx.execute(
            "DELETE FROM strom_aborted_txns
             WHERE topic = $1 AND partition = $2 AND last_offset = ANY($3)",
            &[&tp.topic, &tp.partition, &dropped_markers],
        )
        .await
        .map_err(pg())?;
    }
    if matched != expected {
        tx.rollback().await.map_err(pg())?;
        tracing::info!(partition = %tp, expected, matched, "index changed during compaction; retrying later");
        stats.conflicts += 1;
        return Ok(());
    }
    let checkpoint = tx
        .execute(
            &format!(
                "INSERT INTO strom_compaction (topic, partition, cleaned_offset, tombstones_due_ms)
                 SELECT $4, $5, $6, $7 WHERE {HELD}
                 ON CONFLICT (topic, partition) DO UPDATE
                 SET cleaned_offset = EXCLUDED.cleaned_offset,
                     tombstones_due_ms = EXCLUDED.tombstones_due_ms"
            ),
            &[
                &lease.name,
                &lease.holder,
                &lease.epoch,
                &tp.topic,
                &tp.partition,
                &end,
                &next_due,
            ],
        )
        .await
        .map_err(pg())?;
    if checkpoint != 1 {
        tx.rollback().await.map_err(pg())?;
        return Err(crate::lease::lost(lease));
    }
    tx.commit().await.map_err(pg())?;
    stats.partitions_cleaned += 1;
    stats.batches_rewritten += rw.len() as u64;
    stats.batches_removed += rm.len() as u64;
    stats.records_removed += records_removed;
    stats.bytes_written += written;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_defaults_and_overrides() {
        let p = CompactionPolicy::from_configs(&serde_json::json!({}));
        assert!(!p.compact);
        assert_eq!(p.delete_retention_ms, DEFAULT_DELETE_RETENTION_MS);
        assert_eq!(p.min_cleanable_dirty_ratio, 0.5);
        let p = CompactionPolicy::from_configs(&serde_json::json!({
            "cleanup.policy": "compact",
            "delete.retention.ms": "0",
            "min.cleanable.dirty.ratio": "0.01",
            "min.compaction.lag.ms": "5",
        }));
        assert!(p.compact);
        assert_eq!(p.delete_retention_ms, 0);
        assert_eq!(p.min_cleanable_dirty_ratio, 0.01);
        assert_eq!(p.min_compaction_lag_ms, 5);
    }
}
