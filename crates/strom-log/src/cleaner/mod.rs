//! Log compaction, as Kafka's log cleaner does it.
//!
//! See [`PartitionLog::clean`] for the algorithm and the crash-safe swap, and
//! [`PartitionLog::cleanable`] for the cheap estimate a scheduler picks logs by.

pub(crate) mod swap;
mod throttler;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use strom_record::compact::{CompactionRules, OffsetMap, Verdict};
use strom_record::{BatchHeader, DecodeLimits, RecordView};
use tracing::{debug, info};

pub use throttler::{Sleeper, Throttler};

use crate::locks::{lock, read_lock, write_lock};
use crate::log::PartitionLog;
use crate::segment::{BatchPosition, Segment};
use crate::txn_index::TxnIndexEntry;
use crate::{Error, Result};

/// Name of the per-partition file holding the cleaner's checkpoint, replaced atomically like
/// `recovery-point`. Three decimal lines: the first dirty offset; when the earliest tombstone
/// the last clean kept passes `delete.retention.ms` (ms since the epoch, or `none`); the offset
/// below which segments may be compacted (their offsets may skip).
pub(crate) const CLEANER_CHECKPOINT_FILE: &str = "cleaner-offset-checkpoint";

/// The cleaner's persisted state of one log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    /// Everything below was cleaned.
    pub(crate) first_dirty: i64,
    /// When the earliest tombstone or marker the last clean kept becomes removable.
    pub(crate) tombstones_due_ms: Option<i64>,
    /// Segments starting below it may have been rewritten by the cleaner: recovery and reads
    /// accept offset gaps there and insist on dense offsets elsewhere. Raised (and persisted)
    /// before a swap, lowered by truncation.
    pub(crate) gaps_below: i64,
}

impl Checkpoint {
    /// Reads the checkpoint of the log in `dir`; `None` if there is none. A malformed file is
    /// read as "everything may be compacted, nothing is clean".
    pub(crate) fn read(dir: &std::path::Path) -> Option<Self> {
        let path = dir.join(CLEANER_CHECKPOINT_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %path.display(), "unreadable cleaner checkpoint: {e}");
                String::new()
            }
        };
        let mut lines = text.lines().map(str::trim);
        let first_dirty = lines.next().and_then(|l| l.parse::<i64>().ok());
        let due = match lines.next() {
            None | Some("none") => Some(None),
            Some(l) => l.parse::<i64>().ok().map(Some),
        };
        let gaps_below = match lines.next() {
            None => first_dirty,
            Some(l) => l.parse::<i64>().ok(),
        };
        match (first_dirty, due, gaps_below) {
            (Some(first_dirty), Some(tombstones_due_ms), Some(gaps_below)) => Some(Checkpoint {
                first_dirty,
                tombstones_due_ms,
                gaps_below,
            }),
            _ => {
                tracing::warn!(path = %path.display(), "malformed cleaner checkpoint: cleaning from the start, accepting offset gaps everywhere");
                Some(Checkpoint {
                    first_dirty: i64::MIN,
                    tombstones_due_ms: None,
                    gaps_below: i64::MAX,
                })
            }
        }
    }

    /// Replaces the file atomically (temp file, sync, rename, sync dir).
    pub(crate) fn write(&self, dir: &std::path::Path) -> Result<()> {
        let due = self
            .tombstones_due_ms
            .map_or_else(|| "none".to_owned(), |d| d.to_string());
        let text = format!("{}\n{due}\n{}\n", self.first_dirty, self.gaps_below);
        crate::fs::write_file_atomic(dir, CLEANER_CHECKPOINT_FILE, text.as_bytes(), true)
    }
}

/// How much of a log is cleanable, from segment sizes and the checkpoint (no scan).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CleanableInfo {
    /// The cleaner's checkpoint (never below the log start): everything below it was cleaned.
    pub first_dirty_offset: i64,
    /// Nothing at or above it is cleaned yet: the base of the active segment, of the segment
    /// holding the last stable offset or the high watermark, or of the first segment younger
    /// than `min.compaction.lag.ms`, whichever is lowest.
    pub first_uncleanable_offset: i64,
    /// Bytes of the segments below the first dirty offset.
    pub clean_bytes: u64,
    /// Bytes of the segments between the first dirty and the first uncleanable offset.
    pub dirty_bytes: u64,
    /// `dirty_bytes / (clean_bytes + dirty_bytes)`, 0 when both are 0.
    pub dirty_ratio: f64,
    /// Clean whatever the ratio: a dirty record is older than `max.compaction.lag.ms`, or a
    /// tombstone (or transaction marker) the last clean kept has passed `delete.retention.ms`.
    pub must_clean: bool,
    /// Timestamp of the first batch at or after the first dirty offset, if any.
    pub oldest_dirty_timestamp: Option<i64>,
}

/// What one [`PartitionLog::clean`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CleanStats {
    /// Bytes of segment read (both passes).
    pub bytes_read: u64,
    /// Bytes of cleaned segment written.
    pub bytes_written: u64,
    /// Records dropped (superseded, tombstones past `delete.retention.ms`, aborted data,
    /// keyless records, transaction markers no longer needed).
    pub records_removed: u64,
    /// Segments replaced by cleaned ones.
    pub segments_cleaned: usize,
    /// The first dirty offset the clean started from.
    pub first_dirty_offset: i64,
    /// The offset the clean covered up to (exclusive): the new checkpoint.
    pub end_offset: i64,
}

/// Most keys the offset map of one clean holds (about 40 MB). When a dirty segment takes it
/// past this, the clean stops after that segment and the next clean goes on from there.
const MAX_OFFSET_MAP_ENTRIES: usize = 1 << 20;

/// The aborted transactions of the log, by producer: `(first_offset, marker_offset)`.
#[derive(Debug, Default)]
struct Aborted {
    by_producer: HashMap<i64, Vec<(i64, i64)>>,
}

impl Aborted {
    fn collect(segments: &[Arc<Segment>]) -> Self {
        let mut by_producer: HashMap<i64, Vec<(i64, i64)>> = HashMap::new();
        for segment in segments {
            for e in read_lock(&segment.txn_index).entries() {
                by_producer
                    .entry(e.producer_id)
                    .or_default()
                    .push((e.first_offset, e.last_offset));
            }
        }
        Aborted { by_producer }
    }

    /// Whether the transactional data batch `h` belongs to an aborted transaction.
    fn contains(&self, h: &BatchHeader) -> bool {
        h.is_transactional()
            && !h.is_control()
            && self.by_producer.get(&h.producer_id).is_some_and(|ranges| {
                ranges
                    .iter()
                    .any(|&(first, marker)| h.base_offset >= first && h.base_offset < marker)
            })
    }
}

/// What one clean works on, decided up front.
#[derive(Debug)]
struct Plan {
    segments: Vec<Arc<Segment>>,
    first_dirty: i64,
    /// Index in `segments` of the first uncleanable segment (at most the active one's).
    uncleanable: usize,
    /// Index in `segments` of the segment holding the first dirty offset.
    first_dirty_segment: usize,
}

impl PartitionLog {
    /// Whether a tombstone or marker kept by the last clean can go now.
    fn tombstones_due(&self, now_ms: i64) -> bool {
        lock(&self.cleaner_checkpoint)
            .tombstones_due_ms
            .is_some_and(|due| due <= now_ms)
    }

    /// Decides the clean and dirty ranges at `now_ms` (segment granularity).
    fn plan(&self, now_ms: i64) -> Plan {
        let config = self.config();
        let segments = self.segments_snapshot();
        let log_start = self.log_start_offset();
        let log_end = self.log_end_offset();
        let checkpoint = lock(&self.cleaner_checkpoint).first_dirty;
        let first_dirty = if checkpoint > log_end {
            log_start
        } else {
            checkpoint.max(log_start)
        };
        let stable = self.last_stable_offset().min(self.high_watermark());
        let active = segments.len().saturating_sub(1);
        let mut uncleanable = active;
        for (i, segment) in segments.iter().enumerate().take(active) {
            let next_base = segments.get(i + 1).map_or(i64::MAX, |s| s.base_offset);
            let ts = segment.max_timestamp();
            let too_young = config.min_compaction_lag_ms > 0
                && ts >= 0
                && now_ms.saturating_sub(ts) < config.min_compaction_lag_ms;
            if next_base > stable || too_young {
                uncleanable = i;
                break;
            }
        }
        let first_dirty_segment = segments
            .iter()
            .enumerate()
            .take(active)
            .find(|(i, _)| {
                segments
                    .get(i + 1)
                    .is_some_and(|next| next.base_offset > first_dirty)
            })
            .map_or(active, |(i, _)| i);
        Plan {
            segments,
            first_dirty,
            uncleanable,
            first_dirty_segment,
        }
    }

    /// How much of the log is cleanable at `now_ms`; cheap (segment sizes, the checkpoint and
    /// at most one batch header).
    ///
    /// `must_clean` is set when the first dirty batch is older than `max.compaction.lag.ms`
    /// and some dirty bytes are cleanable now (a dirty record still in the active segment waits
    /// for the roll, which a compacted log does at `max.compaction.lag.ms` at the latest).
    pub fn cleanable(&self, now_ms: i64) -> Result<CleanableInfo> {
        let config = self.config();
        let plan = self.plan(now_ms);
        let clean_bytes: u64 = plan
            .segments
            .iter()
            .take(plan.first_dirty_segment)
            .map(|s| s.size())
            .sum();
        let dirty_bytes: u64 = plan
            .segments
            .iter()
            .enumerate()
            .filter(|&(i, _)| i >= plan.first_dirty_segment && i < plan.uncleanable)
            .map(|(_, s)| s.size())
            .sum();
        let total = clean_bytes + dirty_bytes;
        let dirty_ratio = if total == 0 {
            0.0
        } else {
            dirty_bytes as f64 / total as f64
        };
        let oldest_dirty_timestamp = match plan.segments.get(plan.first_dirty_segment) {
            Some(segment) => segment
                .find_batch(plan.first_dirty, segment.size())?
                .map(|b| b.header.max_timestamp)
                .filter(|&ts| ts >= 0),
            None => None,
        };
        let lag_exceeded = dirty_bytes > 0
            && config.max_compaction_lag_ms < i64::MAX
            && oldest_dirty_timestamp
                .is_some_and(|ts| now_ms.saturating_sub(ts) > config.max_compaction_lag_ms);
        let must_clean = config.cleanup.compact && (lag_exceeded || self.tombstones_due(now_ms));
        let first_uncleanable_offset = plan
            .segments
            .get(plan.uncleanable)
            .map_or(self.log_end_offset(), |s| s.base_offset);
        Ok(CleanableInfo {
            first_dirty_offset: plan.first_dirty,
            first_uncleanable_offset,
            clean_bytes,
            dirty_bytes,
            dirty_ratio,
            must_clean,
            oldest_dirty_timestamp,
        })
    }

    /// Compacts the log as Kafka's cleaner does, keeping only the latest record of each key
    /// below the first uncleanable offset (see [`CleanableInfo`]). Returns quickly with zero
    /// stats when the log is not `compact` or nothing is dirty; returns what was done so far,
    /// without advancing the checkpoint, when `cancel` is set.
    ///
    /// 1. Builds a map key → latest offset over the dirty segments (from the checkpoint to the
    ///    first uncleanable segment; fewer if the map fills), skipping aborted transactional
    ///    data and control batches.
    /// 2. Rewrites every segment below the end of the map (clean and dirty parts), merging
    ///    adjacent segments up to `segment.bytes`. A record is kept iff it has a key, no later
    ///    record of its key is in the map, it is not in an aborted transaction, and it is not a
    ///    tombstone whose batch's max timestamp is `delete.retention.ms` or more before
    ///    `now_ms`. Kept records are rewritten into a batch with the same offset range and
    ///    producer fields ([`strom_record::retain_records`]; compressed batches are
    ///    re-compressed with their codec). A producer's last batch is kept even when emptied,
    ///    so duplicate detection survives. A transaction marker is kept while any batch of its
    ///    transaction is kept, then until `delete.retention.ms` after its timestamp.
    /// 3. Swaps each cleaned segment in crash-safely (see `cleaner/swap.rs`) and advances the
    ///    checkpoint.
    ///
    /// Runs beside appends and reads: the copy takes no lock; only the swap takes the writer
    /// lock (briefly) and the segment list's write guard (for a moment).
    pub fn clean(
        &self,
        now_ms: i64,
        throttler: &Throttler,
        cancel: &AtomicBool,
    ) -> Result<CleanStats> {
        self.check_writable()?;
        let _one_at_a_time = lock(&self.clean_lock);
        // Closed or abandoned while waiting for the previous clean.
        self.check_writable()?;
        // Stop when asked to, or when the log is closed or abandoned (its directory may be
        // opened again by a new log, see `abandon`).
        let cancel = &StopFlag { cancel, log: self };
        let config = self.config();
        let plan = self.plan(now_ms);
        let mut stats = CleanStats {
            first_dirty_offset: plan.first_dirty,
            end_offset: plan.first_dirty,
            ..CleanStats::default()
        };
        let nothing_dirty = plan.first_dirty_segment >= plan.uncleanable;
        // With nothing dirty, a clean still runs over the clean part when a tombstone it holds
        // has passed `delete.retention.ms` (with an empty map, so it only removes those).
        if !config.cleanup.compact || (nothing_dirty && !self.tombstones_due(now_ms)) {
            return Ok(stats);
        }
        let limits = DecodeLimits {
            max_batch_bytes: usize::MAX,
            ..DecodeLimits::default()
        };
        // A damaged range must stay an error at exactly its offsets: rewriting its segment
        // would turn it into a silent gap. Such a log is not cleaned (Kafka marks a partition
        // whose data the cleaner cannot read uncleanable) while the range is there; damage not
        // located yet fails the clean when it is read, before anything is swapped.
        for segment in plan.segments.get(..plan.uncleanable).unwrap_or_default() {
            if let Some(d) = segment.damaged_ranges().first() {
                return Err(Error::DamagedRange {
                    path: segment.log_path.clone(),
                    first_offset: d.first_offset,
                    end_offset: d.end_offset,
                });
            }
        }
        // 1. The offset map over the dirty segments.
        let aborted = Aborted::collect(&plan.segments);
        let mut map = OffsetMap::default();
        let mut end_index = plan.first_dirty_segment.min(plan.uncleanable);
        let dirty = if nothing_dirty {
            &[][..]
        } else {
            plan.segments
                .get(plan.first_dirty_segment..plan.uncleanable)
                .unwrap_or_default()
        };
        for segment in dirty {
            let mut buf = Vec::new();
            for_each_batch(segment, |b| {
                if cancel.is_set() {
                    return Ok(false);
                }
                let h = b.header;
                stats.bytes_read += h.total_len() as u64;
                throttler.consume(h.total_len() as u64);
                if h.is_control() || aborted.contains(&h) {
                    return Ok(true);
                }
                read_batch(segment, &b, &mut buf)?;
                let decoded = strom_record::decode_records(&Bytes::copy_from_slice(&buf), limits)?;
                for r in &decoded.records {
                    if let Some(key) = &r.key {
                        map.put(key, r.offset);
                    }
                }
                Ok(true)
            })?;
            if cancel.is_set() {
                return Ok(stats);
            }
            end_index += 1;
            if map.len() >= MAX_OFFSET_MAP_ENTRIES {
                break;
            }
        }
        let Some(end_segment) = plan.segments.get(end_index) else {
            return Ok(stats);
        };
        let end = end_segment.base_offset;
        debug!(dir = %self.dir().display(), first_dirty = plan.first_dirty, end, keys = map.len(), "built the offset map");

        // 2 and 3. Rewrite and swap, group by group. Segments below `end` may get gaps from
        // here on: say so durably before the first swap.
        self.raise_gaps_below(end)?;
        let producer_last = self.producer_last_offsets();
        let mut pass = Pass {
            map: &map,
            aborted: &aborted,
            producer_last: &producer_last,
            now_ms,
            delete_retention_ms: config.delete_retention_ms,
            open_txns: HashMap::new(),
            limits,
            next_due: None,
        };
        let to_clean = plan.segments.get(..end_index).unwrap_or_default();
        let max_bytes = config.effective_segment_bytes();
        let mut i = 0;
        while i < to_clean.len() {
            let group_len = group_len(
                to_clean.get(i..).unwrap_or_default(),
                max_bytes,
                &plan.segments,
                i,
            );
            let group = to_clean.get(i..i + group_len).unwrap_or_default();
            let Some(next) = plan.segments.get(i + group_len) else {
                break;
            };
            match self.clean_group(
                group, next, &mut pass, throttler, cancel, &config, &mut stats,
            )? {
                GroupOutcome::Swapped => {}
                GroupOutcome::Cancelled => return Ok(stats),
                GroupOutcome::Changed => {
                    info!(dir = %self.dir().display(), "segments changed during the clean (retention or truncation); stopping");
                    return Ok(stats);
                }
            }
            i += group_len;
        }
        self.advance_cleaner_checkpoint(end, pass.next_due)?;
        stats.end_offset = end;
        info!(
            dir = %self.dir().display(),
            first_dirty = stats.first_dirty_offset,
            end,
            segments = stats.segments_cleaned,
            removed = stats.records_removed,
            read = stats.bytes_read,
            written = stats.bytes_written,
            "cleaned log"
        );
        Ok(stats)
    }

    /// Rewrites `group` into one `.cleaned` segment and swaps it in.
    #[allow(clippy::too_many_arguments)]
    fn clean_group(
        &self,
        group: &[Arc<Segment>],
        next: &Arc<Segment>,
        pass: &mut Pass<'_>,
        throttler: &Throttler,
        cancel: &StopFlag<'_>,
        config: &crate::LogConfig,
        stats: &mut CleanStats,
    ) -> Result<GroupOutcome> {
        let dir = self.dir().to_path_buf();
        let Some(base) = group.first().map(|s| s.base_offset) else {
            return Ok(GroupOutcome::Swapped);
        };
        swap::remove_cleaned(&dir, base)?;
        let (out, _, _, _) = Segment::open_files_with_suffix(&dir, base, swap::CLEANED)?;
        let result = self.write_group(group, &out, pass, throttler, cancel, config, stats);
        match result {
            Ok(true) => {}
            Ok(false) => {
                drop(out);
                swap::remove_cleaned(&dir, base)?;
                return Ok(GroupOutcome::Cancelled);
            }
            Err(e) => {
                drop(out);
                // The write's error is the one to report; leftovers go at the next open.
                let _ = swap::remove_cleaned(&dir, base);
                return Err(e);
            }
        }
        let written = out.size();
        drop(out);
        let old_bases: Vec<i64> = group.iter().map(|s| s.base_offset).collect();
        let end = next.base_offset;
        let interval = config.index_interval_bytes;
        let swapped = match self.replace_segments(group, next, || {
            swap::commit(&dir, base, end, &old_bases)?;
            // A segment the cleaner wrote may skip offsets.
            crate::recovery::open_closed(&dir, base, interval, end, i64::MAX)
        }) {
            Ok(swapped) => swapped,
            Err(e) => {
                // Closed meanwhile, or the commit failed: what is left of the `.cleaned`
                // files goes now if possible, else at the next open.
                let _ = swap::remove_cleaned(&dir, base);
                return Err(e);
            }
        };
        if !swapped {
            swap::remove_cleaned(&dir, base)?;
            return Ok(GroupOutcome::Changed);
        }
        stats.bytes_written += written;
        stats.segments_cleaned += group.len();
        Ok(GroupOutcome::Swapped)
    }

    /// Writes the kept batches of `group` into `out` and syncs it. `false` if cancelled.
    #[allow(clippy::too_many_arguments)]
    fn write_group(
        &self,
        group: &[Arc<Segment>],
        out: &Segment,
        pass: &mut Pass<'_>,
        throttler: &Throttler,
        cancel: &StopFlag<'_>,
        config: &crate::LogConfig,
        stats: &mut CleanStats,
    ) -> Result<bool> {
        let mut position = 0u64;
        let mut bytes_since_index = 0u64;
        let mut last = None;
        let mut kept_markers = Vec::new();
        let mut buf = Vec::new();
        for segment in group {
            let mut cancelled = false;
            for_each_batch(segment, |b| {
                if cancel.is_set() {
                    cancelled = true;
                    return Ok(false);
                }
                let h = b.header;
                stats.bytes_read += h.total_len() as u64;
                throttler.consume(h.total_len() as u64);
                read_batch(segment, &b, &mut buf)?;
                let Some(kept) = pass.filter(&h, &buf, stats)? else {
                    return Ok(true);
                };
                if h.is_control() {
                    kept_markers.push(h.base_offset);
                }
                crate::fs::write_all_at(
                    &out.file,
                    &kept.bytes,
                    position,
                    "write cleaned segment",
                    &out.log_path,
                )?;
                throttler.consume(kept.bytes.len() as u64);
                out.observe_timestamp(kept.header.max_timestamp);
                out.index_batch(
                    &kept.header,
                    position,
                    &mut bytes_since_index,
                    config.index_interval_bytes,
                )?;
                last = Some(BatchPosition {
                    header: kept.header,
                    position,
                });
                position += kept.bytes.len() as u64;
                out.set_size(position);
                Ok(true)
            })?;
            if cancelled {
                return Ok(false);
            }
        }
        // The aborted transactions whose marker was kept stay indexed.
        {
            let mut index = write_lock(&out.txn_index);
            for segment in group {
                let entries: Vec<TxnIndexEntry> = read_lock(&segment.txn_index).entries().to_vec();
                for e in entries
                    .into_iter()
                    .filter(|e| kept_markers.binary_search(&e.last_offset).is_ok())
                {
                    index.append(e)?;
                }
            }
            if index.entries().is_empty() {
                // Always write the file, so the swap replaces the old segment's.
                let file = crate::fs::open_rw(index.path(), "create txn index")?;
                crate::fs::set_len(&file, 0, "create txn index", index.path())?;
                crate::fs::sync_data(&file, "fdatasync txn index", index.path())?;
            }
        }
        out.seal_time_index(last)?;
        out.sync_all()?;
        Ok(true)
    }
}

/// When a clean stops early: its caller's cancel flag, or the log closed or abandoned.
struct StopFlag<'a> {
    cancel: &'a AtomicBool,
    log: &'a PartitionLog,
}

impl StopFlag<'_> {
    fn is_set(&self) -> bool {
        self.cancel.load(Ordering::Relaxed) || self.log.is_closed()
    }
}

/// What became of one group.
enum GroupOutcome {
    Swapped,
    Cancelled,
    Changed,
}

/// How many segments from the start of `rest` (which starts at index `at` of `all`) go into
/// one cleaned segment: at least one, more while their bytes fit in `max_bytes` and their
/// offsets in a 32-bit index.
fn group_len(rest: &[Arc<Segment>], max_bytes: u64, all: &[Arc<Segment>], at: usize) -> usize {
    let Some(first) = rest.first() else {
        return 0;
    };
    let mut bytes = first.size();
    let mut n = 1;
    while let Some(s) = rest.get(n) {
        let end = all.get(at + n + 1).map_or(i64::MAX, |x| x.base_offset);
        if bytes + s.size() > max_bytes || end - first.base_offset > i64::from(i32::MAX) {
            break;
        }
        bytes += s.size();
        n += 1;
    }
    n
}

/// Walks every batch of a segment.
fn for_each_batch(
    segment: &Segment,
    visit: impl FnMut(BatchPosition) -> Result<bool>,
) -> Result<()> {
    segment.walk(segment.base_offset, 0, segment.size(), visit)
}

fn read_batch(segment: &Segment, b: &BatchPosition, buf: &mut Vec<u8>) -> Result<()> {
    buf.resize(b.header.total_len(), 0);
    segment.read_at(buf, b.position)
}

/// The rewrite pass's state: what decides each record's fate.
struct Pass<'a> {
    map: &'a OffsetMap,
    aborted: &'a Aborted,
    producer_last: &'a HashMap<i64, i64>,
    now_ms: i64,
    delete_retention_ms: i64,
    /// Producers whose transaction (ended by a marker not yet seen) has data kept so far.
    open_txns: HashMap<i64, bool>,
    limits: DecodeLimits,
    /// When the earliest tombstone or marker kept becomes removable.
    next_due: Option<i64>,
}

impl Pass<'_> {
    fn rules(&self) -> CompactionRules {
        CompactionRules {
            now_ms: self.now_ms,
            delete_retention_ms: self.delete_retention_ms,
        }
    }

    fn expired(&self, timestamp: i64) -> bool {
        self.rules().tombstone_expired(timestamp)
    }

    /// Notes a kept tombstone or marker of a batch with `timestamp`.
    fn kept_until(&mut self, timestamp: i64) {
        let due = timestamp.saturating_add(self.delete_retention_ms);
        self.next_due = Some(self.next_due.map_or(due, |d| d.min(due)));
    }

    /// The batch to write in place of `batch` (header `h`), or `None` to drop it.
    fn filter(
        &mut self,
        h: &BatchHeader,
        batch: &[u8],
        stats: &mut CleanStats,
    ) -> Result<Option<strom_record::RetainedBatch>> {
        if h.is_control() {
            let marker = (h.producer_id >= 0)
                .then(|| strom_record::parse_marker(batch).ok())
                .flatten();
            let keep = match marker {
                // A marker goes once no batch of its transaction is left and the tombstone
                // retention has passed (consumers that read the data see the marker too).
                Some(_) => {
                    let has_data = self.open_txns.remove(&h.producer_id).unwrap_or(false);
                    let keep = has_data || !self.expired(h.max_timestamp);
                    if keep && !has_data {
                        self.kept_until(h.max_timestamp);
                    }
                    keep
                }
                // Control records of unknown types are kept as they are.
                None => true,
            };
            if !keep {
                stats.records_removed += u64::try_from(h.records_count).unwrap_or(0);
                return Ok(None);
            }
            return strom_record::retain_records(batch, self.limits, |_| true)
                .map(Some)
                .map_err(Error::from);
        }
        let aborted = self.aborted.contains(h);
        let last_of_producer =
            h.producer_id >= 0 && self.producer_last.get(&h.producer_id) == Some(&h.last_offset());
        let batch_ts = h.max_timestamp;
        let map = self.map;
        let rules = self.rules();
        let mut kept_tombstone = false;
        let out = strom_record::retain_records(batch, self.limits, |r: &RecordView<'_>| {
            if aborted {
                return false;
            }
            match rules.verdict(map, r.key, r.offset, r.value_is_null, batch_ts) {
                Verdict::Remove => false,
                Verdict::Keep => true,
                Verdict::KeepTombstone => {
                    kept_tombstone = true;
                    true
                }
            }
        })?;
        if kept_tombstone {
            self.kept_until(batch_ts);
        }
        stats.records_removed += out.removed as u64;
        let keep = out.kept > 0 || last_of_producer;
        if h.is_transactional() && h.producer_id >= 0 {
            let has = self.open_txns.entry(h.producer_id).or_insert(false);
            *has |= keep;
        }
        Ok(keep.then_some(out))
    }
}
