//! The read path: find batches in the index, fetch their bytes through the cache, set their
//! offsets; and ListOffsets from the index.
//!
//! A fetch reads the partition's offsets (one primary-key lookup), then index rows from a
//! per-partition cache of contiguous index entries (offsets are gapless, so a cached run that
//! reaches the high watermark is complete; beyond it the reader asks PostgreSQL for the rows after
//! the run), then the bytes of each batch from the [`ObjectCache`], downloading runs of adjacent
//! batches of one object with one ranged GET. Batches are stored as the producer sent them; on the
//! way out their 8-byte `baseOffset` (outside the CRC) is set to the committed offset, and the
//! cache keeps them in that served form.
//!
//! **Faults.** A ranged GET that fails (after the object-store client's own retries) or does
//! not answer is tried again with backoff until [`ReaderConfig::get_timeout`] has passed, each
//! attempt bounded by what is left; then the fetch fails with a retriable error (the Kafka
//! front end answers `KAFKA_STORAGE_ERROR`, which consumers retry). PostgreSQL calls are
//! bounded by [`Db::bounded`]: a database that stopped answering makes the fetch fail, not
//! hang, and the reader's connections reopen once it is back.
//!
//! Index entries are immutable while their object exists. The lifecycle jobs
//! ([`crate::lifecycle`]) move `log_start_offset`, drop rows, and re-point rows at merged or
//! compacted objects (compaction leaves offset gaps between rows); the old objects stay readable
//! for the delete delay, and a fetch that still finds one gone drops the partition's cached run
//! ([`Reader::forget`]) and reads the index again. Compaction changes what the rows hold (the
//! rewritten batches have fewer records), so it also increments the partition's
//! `index_version`, which every fetch reads with the offsets: a run cached at another version
//! is dropped, and a reader never serves records a committed clean removed for longer than
//! one fetch.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use strom_record::{BatchHeader, DecodeLimits};

use crate::cache::{ObjectCache, RangeKey};
use crate::db::Db;
use crate::error::{DbOp, Error, Result, StoreOp};
use crate::metadata::{PartitionOffsets, TopicPartition, partition_offsets};

/// Index rows fetched from PostgreSQL per query.
const INDEX_PAGE: i64 = 500;

/// One row of the batch index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    /// First offset of the batch.
    pub base_offset: i64,
    /// Last offset of the batch.
    pub last_offset: i64,
    /// Object holding it.
    pub object_key: String,
    /// Byte offset in the object.
    pub byte_offset: u64,
    /// Length in bytes.
    pub byte_length: u64,
    /// Largest timestamp in the batch.
    pub max_timestamp: i64,
}

impl IndexEntry {
    pub(crate) fn range_key(&self) -> RangeKey {
        RangeKey {
            object: self.object_key.clone(),
            offset: self.byte_offset,
            len: self.byte_length,
        }
    }
}

/// What a fetch returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchResult {
    /// Record batches with their committed base offsets, in offset order. The first one may
    /// start before the fetch offset (a fetch inside a batch returns the whole batch, as Kafka).
    pub batches: Vec<Bytes>,
    /// The partition's high watermark (next offset) when the fetch ran.
    pub high_watermark: i64,
    /// The partition's last stable offset when the fetch ran (at most the high watermark).
    pub last_stable_offset: i64,
    /// The partition's log start offset.
    pub log_start_offset: i64,
}

/// Which offset ListOffsets asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start offset.
    Earliest,
    /// The high watermark.
    Latest,
    /// The first record with a timestamp at or after this one (milliseconds).
    Timestamp(i64),
    /// The record with the largest timestamp (the first one of equals).
    MaxTimestamp,
}

/// A ListOffsets answer; `offset` is -1 when no record matches (Kafka's convention).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListedOffset {
    /// The offset.
    pub offset: i64,
    /// The record's timestamp, -1 for earliest/latest and when none matched.
    pub timestamp: i64,
}

/// A cached contiguous run of index entries of one partition.
#[derive(Debug, Default)]
struct Run {
    entries: BTreeMap<i64, IndexEntry>,
    /// The partition's `index_version` read before the entries were: a fetch that reads a
    /// different one drops the run (compaction rewrote rows since).
    version: i64,
}

impl Run {
    /// First offset after the run.
    fn end(&self) -> Option<i64> {
        self.entries
            .last_key_value()
            .map(|(_, e)| e.last_offset + 1)
    }

    fn start(&self) -> Option<i64> {
        self.entries.first_key_value().map(|(k, _)| *k)
    }

    fn covers(&self, offset: i64) -> bool {
        matches!((self.start(), self.end()), (Some(s), Some(e)) if s <= offset && offset < e)
    }

    /// Adds `page` (contiguous rows from PostgreSQL), replacing the run when they do not touch,
    /// then trims the run to `max` entries from its ends, older entries before the page first,
    /// then entries after the page's start: the run stays contiguous and keeps what was just
    /// fetched (the start of it when the page alone exceeds `max`). A page read at another
    /// index `version` replaces the run.
    fn remember(&mut self, page: &[IndexEntry], max: usize, version: i64) {
        let (Some(first), Some(last)) = (page.first(), page.last()) else {
            return;
        };
        if version != self.version {
            self.entries.clear();
            self.version = version;
        }
        let touches = matches!(
            (self.start(), self.end()),
            (Some(s), Some(e)) if first.base_offset <= e && last.last_offset + 1 >= s
        );
        if !touches {
            self.entries.clear();
        }
        for entry in page {
            self.entries.insert(entry.base_offset, entry.clone());
        }
        while self.entries.len() > max {
            match self.start() {
                Some(start) if start < first.base_offset => self.entries.pop_first(),
                _ => self.entries.pop_last(),
            };
        }
    }
}

/// Reader settings.
#[derive(Debug, Clone, Copy)]
pub struct ReaderConfig {
    /// Index entries kept per partition; older ones are dropped first.
    pub index_entries_per_partition: usize,
    /// Limits for decoding batches (ListOffsets by timestamp).
    pub decode_limits: DecodeLimits,
    /// How long one ranged GET may take, retries included, before the read fails with a
    /// retriable error.
    pub get_timeout: Duration,
    /// Wait before the first retry of a failed GET; doubled for each further one (up to 1 s).
    pub get_backoff: Duration,
}

impl Default for ReaderConfig {
    fn default() -> Self {
        ReaderConfig {
            index_entries_per_partition: 10_000,
            decode_limits: DecodeLimits::default(),
            get_timeout: Duration::from_secs(10),
            get_backoff: Duration::from_millis(100),
        }
    }
}

/// Serves fetches and ListOffsets of any partition.
#[derive(Debug)]
pub struct Reader {
    db: Db,
    store: Arc<dyn ObjectStore>,
    cache: Arc<ObjectCache>,
    config: ReaderConfig,
    index: Mutex<HashMap<TopicPartition, Run>>,
}

impl Reader {
    /// A reader over `db` and `store`, sharing `cache` (with the writer, usually).
    pub fn new(
        db: Db,
        store: Arc<dyn ObjectStore>,
        cache: Arc<ObjectCache>,
        config: ReaderConfig,
    ) -> Self {
        Reader {
            db,
            store,
            cache,
            config,
            index: Mutex::new(HashMap::new()),
        }
    }

    fn index(&self) -> std::sync::MutexGuard<'_, HashMap<TopicPartition, Run>> {
        self.index
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Drops the cached index of `tp` (after retention, truncation or compaction changed it).
    pub fn forget(&self, tp: &TopicPartition) {
        self.index().remove(tp);
    }

    /// The partition's offsets.
    pub async fn offsets(&self, tp: &TopicPartition) -> Result<PartitionOffsets> {
        self.db.bounded(partition_offsets(&self.db, tp)).await
    }

    /// Batches from `fetch_offset` on, up to about `max_bytes` (at least one batch when there is
    /// one, as Kafka does since KIP-74).
    pub async fn fetch(
        &self,
        tp: &TopicPartition,
        fetch_offset: i64,
        max_bytes: usize,
    ) -> Result<FetchResult> {
        self.fetch_below(tp, fetch_offset, max_bytes, false).await
    }

    /// A `read_committed` fetch: as [`fetch`](Self::fetch), but only batches below the last
    /// stable offset (an offset between it and the high watermark reads nothing).
    pub async fn fetch_committed(
        &self,
        tp: &TopicPartition,
        fetch_offset: i64,
        max_bytes: usize,
    ) -> Result<FetchResult> {
        self.fetch_below(tp, fetch_offset, max_bytes, true).await
    }

    async fn fetch_below(
        &self,
        tp: &TopicPartition,
        fetch_offset: i64,
        max_bytes: usize,
        committed: bool,
    ) -> Result<FetchResult> {
        let offsets = self.offsets(tp).await?;
        let last_stable_offset = offsets.last_stable_offset();
        let bound = if committed {
            last_stable_offset
        } else {
            offsets.next_offset
        };
        if fetch_offset < offsets.log_start_offset || fetch_offset > offsets.next_offset {
            return Err(Error::OffsetOutOfRange {
                topic: tp.topic.clone(),
                partition: tp.partition,
                offset: fetch_offset,
                log_start_offset: offsets.log_start_offset,
                high_watermark: offsets.next_offset,
            });
        }
        let version = offsets.index_version;
        let entries = self
            .entries(tp, fetch_offset, bound, max_bytes, version)
            .await?;
        let batches = match self.load(tp, &entries).await {
            // The cached index named an object a lifecycle job has since replaced and deleted
            // (merging, compaction, retention): read the index afresh, once.
            Err(e) if e.is_object_missing() => {
                self.forget(tp);
                let entries = self
                    .entries(tp, fetch_offset, bound, max_bytes, version)
                    .await?;
                self.load(tp, &entries).await?
            }
            loaded => loaded?,
        };
        Ok(FetchResult {
            batches,
            high_watermark: offsets.next_offset,
            last_stable_offset,
            log_start_offset: offsets.log_start_offset,
        })
    }

    /// Index entries from the one holding `from` until `max_bytes` or `hw`, from the cached
    /// run only if it was read at the partition's current index `version`.
    async fn entries(
        &self,
        tp: &TopicPartition,
        from: i64,
        hw: i64,
        max_bytes: usize,
        version: i64,
    ) -> Result<Vec<IndexEntry>> {
        let mut out: Vec<IndexEntry> = Vec::new();
        let mut bytes = 0usize;
        let mut at = from;
        while at < hw && (out.is_empty() || bytes < max_bytes) {
            let cached: Vec<IndexEntry> = {
                let index = self.index();
                match index.get(tp) {
                    Some(run) if run.version == version && run.covers(at) => {
                        let first = run
                            .entries
                            .range(..=at)
                            .next_back()
                            .map(|(k, _)| *k)
                            .unwrap_or(at);
                        run.entries
                            .range(first..)
                            .map(|(_, e)| e.clone())
                            // Compaction leaves gaps: skip a batch that ends before `at`.
                            .skip_while(|e| e.last_offset < at)
                            .take_while(|e| e.base_offset < hw)
                            .take(INDEX_PAGE as usize)
                            .collect()
                    }
                    _ => Vec::new(),
                }
            };
            let page = if cached.is_empty() {
                let page = self.query_index(tp, at, hw).await?;
                if page.is_empty() {
                    // Rows below `hw` must exist; none means the range was deleted under us.
                    break;
                }
                self.remember(tp, &page, version);
                page
            } else {
                cached
            };
            for entry in page {
                if !out.is_empty() && bytes >= max_bytes {
                    break;
                }
                at = entry.last_offset + 1;
                bytes += entry.byte_length as usize;
                out.push(entry);
            }
        }
        Ok(out)
    }

    async fn query_index(
        &self,
        tp: &TopicPartition,
        from: i64,
        hw: i64,
    ) -> Result<Vec<IndexEntry>> {
        let rows = self
            .db
            .bounded(async {
                let conn = self.db.conn().await?;
                conn.query(
                    "SELECT base_offset, last_offset, object_key, byte_offset, byte_length,
                            max_timestamp
                     FROM strom_batches
                     WHERE topic = $1 AND partition = $2 AND last_offset >= $3
                       AND base_offset < $4
                     ORDER BY base_offset LIMIT $5",
                    &[&tp.topic, &tp.partition, &from, &hw, &INDEX_PAGE],
                )
                .await
                .map_err(Error::pg(DbOp::ReadIndex))
            })
            .await?;
        rows.iter().map(entry_of_row).collect()
    }

    /// Bytes `range` of object `key`, retried with backoff within
    /// [`ReaderConfig::get_timeout`] (see the module docs).
    async fn get_range(&self, key: &str, range: std::ops::Range<u64>) -> Result<Bytes> {
        let deadline = Instant::now() + self.config.get_timeout;
        let mut backoff = self.config.get_backoff;
        let path = Path::from(key);
        let mut failed: Option<Error> = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let error = match tokio::time::timeout(left, self.store.get_range(&path, range.clone()))
                .await
            {
                Ok(Ok(data)) => return Ok(data),
                Ok(Err(e)) => Error::store(StoreOp::GetRange, Some(key))(e),
                // Cut by the bound: the store's own error if an earlier attempt got one (the
                // store answers, with errors), else the timeout (it does not answer).
                Err(_) => failed.take().unwrap_or(Error::Timeout {
                    waited: self.config.get_timeout,
                }),
            };
            let left = deadline.saturating_duration_since(Instant::now());
            if left <= backoff * 2 || !matches!(error, Error::ObjectStore { .. }) {
                // Not enough time for another attempt to finish: report this failure.
                tracing::debug!(%error, key, "object read failed");
                return Err(error);
            }
            tracing::debug!(%error, key, ?backoff, "object read failed; retrying");
            failed = Some(error);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }

    fn remember(&self, tp: &TopicPartition, page: &[IndexEntry], version: i64) {
        let max = self.config.index_entries_per_partition;
        self.index()
            .entry(tp.clone())
            .or_default()
            .remember(page, max, version);
    }

    /// The bytes of each entry, with base offsets set; downloads what the cache lacks, one
    /// ranged GET per run of adjacent batches in the same object.
    async fn load(&self, tp: &TopicPartition, entries: &[IndexEntry]) -> Result<Vec<Bytes>> {
        let mut out: Vec<Option<Bytes>> = entries
            .iter()
            .map(|e| self.cache.get(&e.range_key()))
            .collect();
        let mut i = 0;
        while i < entries.len() {
            if out.get(i).is_some_and(Option::is_some) {
                i += 1;
                continue;
            }
            // A run of missing entries, adjacent in one object.
            let mut j = i + 1;
            while j < entries.len()
                && out.get(j).is_some_and(Option::is_none)
                && entries[j].object_key == entries[j - 1].object_key
                && entries[j].byte_offset == entries[j - 1].byte_offset + entries[j - 1].byte_length
            {
                j += 1;
            }
            let first = &entries[i];
            let start = first.byte_offset;
            let end = entries[j - 1].byte_offset + entries[j - 1].byte_length;
            let key = first.object_key.as_str();
            let data = self.get_range(key, start..end).await?;
            if data.len() as u64 != end - start {
                return Err(corrupt(tp, first));
            }
            for k in i..j {
                let entry = &entries[k];
                let from = (entry.byte_offset - start) as usize;
                let raw = data.slice(from..from + entry.byte_length as usize);
                let batch = served(tp, entry, &raw)?;
                self.cache.insert(entry.range_key(), batch.clone());
                out[k] = Some(batch);
            }
            i = j;
        }
        Ok(out.into_iter().flatten().collect())
    }

    /// ListOffsets for one partition.
    pub async fn list_offset(&self, tp: &TopicPartition, spec: OffsetSpec) -> Result<ListedOffset> {
        let offsets = self.offsets(tp).await?;
        let none = ListedOffset {
            offset: -1,
            timestamp: -1,
        };
        let (order, ts) = match spec {
            OffsetSpec::Earliest => {
                return Ok(ListedOffset {
                    offset: offsets.log_start_offset,
                    timestamp: -1,
                });
            }
            OffsetSpec::Latest => {
                return Ok(ListedOffset {
                    offset: offsets.next_offset,
                    timestamp: -1,
                });
            }
            OffsetSpec::Timestamp(ts) => ("base_offset", ts),
            OffsetSpec::MaxTimestamp => ("max_timestamp DESC, base_offset", i64::MIN),
        };
        let row = self
            .db
            .bounded(async {
                let conn = self.db.conn().await?;
                conn.query_opt(
                    &format!(
                        "SELECT base_offset, last_offset, object_key, byte_offset, byte_length,
                                max_timestamp
                         FROM strom_batches
                         WHERE topic = $1 AND partition = $2 AND last_offset >= $3
                           AND base_offset < $4 AND max_timestamp >= $5 AND NOT is_control
                         ORDER BY {order} LIMIT 1"
                    ),
                    &[
                        &tp.topic,
                        &tp.partition,
                        &offsets.log_start_offset,
                        &offsets.next_offset,
                        &ts,
                    ],
                )
                .await
                .map_err(Error::pg(DbOp::ReadIndex))
            })
            .await?;
        let Some(row) = row else { return Ok(none) };
        let entry = entry_of_row(&row)?;
        let batch = self
            .load(tp, std::slice::from_ref(&entry))
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| corrupt(tp, &entry))?;
        let limits = self.config.decode_limits;
        let bad = |_| corrupt(tp, &entry);
        let found = match spec {
            OffsetSpec::Timestamp(ts) => strom_record::find_by_timestamp(&batch, ts, limits)
                .map_err(bad)?
                .filter(|r| r.offset >= offsets.log_start_offset),
            _ => strom_record::record_offsets_and_timestamps(&batch, limits)
                .map_err(bad)?
                .into_iter()
                .filter(|r| r.offset >= offsets.log_start_offset)
                .reduce(|best, r| {
                    if r.timestamp > best.timestamp {
                        r
                    } else {
                        best
                    }
                }),
        };
        Ok(found.map_or(none, |r| ListedOffset {
            offset: r.offset,
            timestamp: r.timestamp,
        }))
    }
}

fn entry_of_row(row: &tokio_postgres::Row) -> Result<IndexEntry> {
    let pg = || Error::pg(DbOp::ReadIndex);
    let byte_offset: i64 = row.try_get(3).map_err(pg())?;
    let byte_length: i32 = row.try_get(4).map_err(pg())?;
    Ok(IndexEntry {
        base_offset: row.try_get(0).map_err(pg())?,
        last_offset: row.try_get(1).map_err(pg())?,
        object_key: row.try_get(2).map_err(pg())?,
        byte_offset: u64::try_from(byte_offset).unwrap_or(0),
        byte_length: u64::try_from(byte_length).unwrap_or(0),
        max_timestamp: row.try_get(5).map_err(pg())?,
    })
}

fn corrupt(tp: &TopicPartition, entry: &IndexEntry) -> Error {
    Error::CorruptIndex {
        topic: tp.topic.clone(),
        partition: tp.partition,
        base_offset: entry.base_offset,
        key: entry.object_key.clone(),
    }
}

/// The batch as served: checked against its index row, base offset set.
pub(crate) fn served(tp: &TopicPartition, entry: &IndexEntry, raw: &[u8]) -> Result<Bytes> {
    let header = BatchHeader::parse(raw).map_err(|_| corrupt(tp, entry))?;
    if header.total_len() as u64 != entry.byte_length
        || i64::from(header.last_offset_delta) != entry.last_offset - entry.base_offset
    {
        return Err(corrupt(tp, entry));
    }
    let mut batch = BytesMut::from(raw);
    strom_record::set_base_offset(&mut batch, entry.base_offset).map_err(|_| corrupt(tp, entry))?;
    Ok(batch.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A partition whose batch `i` holds offsets `bounds[i]..bounds[i + 1]`.
    fn page(bounds: &[i64], from: usize, len: usize) -> Vec<IndexEntry> {
        (from..(from + len).min(bounds.len() - 1))
            .map(|i| IndexEntry {
                base_offset: bounds[i],
                last_offset: bounds[i + 1] - 1,
                object_key: format!("o{i}"),
                byte_offset: 0,
                byte_length: 100,
                max_timestamp: 0,
            })
            .collect()
    }

    proptest! {
        #[test]
        fn cached_run_stays_contiguous_bounded_and_covers_the_last_page(
            sizes in proptest::collection::vec(1i64..5, 2..60),
            pages in proptest::collection::vec((0usize..60, 1usize..10), 1..30),
            max in 1usize..20,
        ) {
            let mut bounds = vec![0i64];
            for s in &sizes {
                bounds.push(bounds[bounds.len() - 1] + s);
            }
            let mut run = Run::default();
            for (from, len) in pages {
                let from = from % sizes.len();
                let p = page(&bounds, from, len);
                run.remember(&p, max, 0);
                prop_assert!(run.entries.len() <= max);
                let mut prev: Option<&IndexEntry> = None;
                for e in run.entries.values() {
                    if let Some(p) = prev {
                        prop_assert_eq!(p.last_offset + 1, e.base_offset, "contiguous");
                    }
                    prev = Some(e);
                }
                // What was just fetched is cached (its start, if it alone exceeds the bound).
                let first = p.first().expect("non-empty page");
                prop_assert!(run.covers(first.base_offset));
                if p.len() <= max {
                    let last = p.last().expect("non-empty page");
                    prop_assert!(run.covers(last.last_offset));
                }
            }
        }
    }
}
