//! [`PartitionLog`]: one partition's ordered, durable sequence of record batches.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use strom_record::{BatchHeader, DecodeLimits, TimestampType};
use tracing::{debug, info, warn};

use crate::clock::Clock;
use crate::config::{FsyncPolicy, LogConfig};
use crate::fsync::GroupCommit;
use crate::locks::{lock, read_lock, write_lock};
use crate::producer_state::{
    BatchMetadata, CompletedTxn, ProducerStateManager, SequenceCheck, increment_sequence,
};
use crate::segment::{BatchPosition, Segment};
use crate::txn_index::{AbortedTxn, OngoingTxn, ProducerInfo, TxnIndexEntry};
use crate::{Error, Result, fs, recovery};

const LOG_START_FILE: &str = "log-start-offset";
const RECOVERY_POINT_FILE: &str = "recovery-point";

/// The recovery point: every segment whose base offset is below it has been synced whole, so
/// recovery trusts it; segments at or above it are scanned after an unclean shutdown.
#[derive(Debug)]
struct RecoveryPoint {
    dir: PathBuf,
    value: Mutex<i64>,
}

impl RecoveryPoint {
    /// The recovery point of a log just opened, whose segments below `active_base` are all
    /// trusted or were scanned and synced: `active_base`. Persisted unless `on_disk` already
    /// says so (no write at all for a log that was closed cleanly, which matters on a full
    /// disk). Never fails the open: if the write fails and the file on disk claims more than is
    /// true (possible after a crash in the middle of a truncation), the file is removed, which
    /// only makes the next recovery scan every segment.
    fn at_open(dir: &Path, on_disk: i64, active_base: i64) -> Arc<RecoveryPoint> {
        let value = if on_disk == active_base {
            active_base
        } else {
            match fs::write_offset_file(dir, RECOVERY_POINT_FILE, active_base) {
                Ok(()) => active_base,
                Err(e) => {
                    warn!(dir = %dir.display(), recovery_point = active_base, "cannot write the recovery point at open (recovery will scan more after a crash; retried at the next roll): {e}");
                    if on_disk > active_base {
                        if let Err(e) =
                            fs::remove_file(&dir.join(RECOVERY_POINT_FILE), "remove checkpoint")
                        {
                            warn!(dir = %dir.display(), "cannot remove a recovery point that is too high either: {e}");
                        }
                        i64::MIN
                    } else {
                        on_disk
                    }
                }
            }
        };
        Arc::new(RecoveryPoint {
            dir: dir.to_path_buf(),
            value: Mutex::new(value),
        })
    }

    /// Raises the recovery point to `to` and persists it. Never fails: the checkpoint only
    /// saves recovery work (a stale one makes the next open scan more), so a failure to write
    /// it (disk full) is a warning, and the value stays at what is on disk so the next advance
    /// (the next roll) tries again.
    fn advance(&self, to: i64) {
        let mut value = lock(&self.value);
        if to > *value {
            match fs::write_offset_file(&self.dir, RECOVERY_POINT_FILE, to) {
                Ok(()) => *value = to,
                Err(e) => {
                    warn!(dir = %self.dir.display(), recovery_point = to, "cannot write the recovery point (recovery will scan more after a crash; retried at the next roll): {e}");
                }
            }
        }
    }

    /// Lowers the recovery point to `to` (after a truncation) and persists it. Unlike
    /// [`RecoveryPoint::advance`] this must not fail silently: a recovery point left too high
    /// would make recovery trust segments that were never synced.
    fn lower(&self, to: i64) -> Result<()> {
        let mut value = lock(&self.value);
        if to < *value {
            fs::write_offset_file(&self.dir, RECOVERY_POINT_FILE, to)?;
            *value = to;
        }
        Ok(())
    }
}

/// What an append assigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset of the first record appended.
    pub base_offset: i64,
    /// Offset of the last record appended.
    pub last_offset: i64,
    /// The append time stamped into the batches, or `-1` for `CreateTime` logs.
    pub log_append_time: i64,
    /// Log start offset after the append.
    pub log_start_offset: i64,
    /// Largest record timestamp among the appended batches.
    pub max_timestamp: i64,
    /// Number of records appended.
    pub record_count: i64,
}

/// A range of a segment file that holds whole batches, ready to be sent (`sendfile`) or read.
#[derive(Debug, Clone)]
pub struct FileSlice {
    /// The segment file (kept open even if retention deletes it meanwhile).
    pub file: Arc<File>,
    /// Byte position of the first batch.
    pub position: u64,
    /// Length in bytes.
    pub len: usize,
}

impl FileSlice {
    /// Reads the range into memory and checks every batch's CRC on the way, so a batch damaged
    /// on disk is never handed to a client: returns [`Error::Corrupt`] if the first batch is
    /// damaged, otherwise the intact batches before the first damaged one.
    pub fn read_to_vec(&self) -> Result<Vec<u8>> {
        let mut buf = Vec::with_capacity(self.len);
        // Read into the spare capacity (rustix extends the length by what was read): zero-filling
        // a buffer the read overwrites anyway cost 14 % of a fetch-heavy broker's CPU.
        while buf.len() < self.len {
            let at = self.position + buf.len() as u64;
            let n = rustix::io::pread(&*self.file, rustix::buffer::spare_capacity(&mut buf), at)
                .map_err(|e| Error::io("read segment", PathBuf::new(), e.into()))?;
            if n == 0 {
                return Err(Error::io(
                    "read segment",
                    PathBuf::new(),
                    std::io::ErrorKind::UnexpectedEof.into(),
                ));
            }
        }
        // The capacity may exceed the slice: never keep bytes beyond it (past the watermark).
        buf.truncate(self.len);
        let mut pos = 0;
        let mut expected = None;
        while let Some(rest) = buf.get(pos..).filter(|r| !r.is_empty()) {
            match strom_record::check_stored_batch(rest) {
                // Offsets increase from batch to batch; compaction leaves gaps.
                Ok(h) if expected.is_none_or(|e| h.base_offset >= e) => {
                    pos += h.total_len();
                    expected = Some(h.next_offset());
                }
                Ok(_) => break,
                Err(e) if pos == 0 => {
                    return Err(Error::Corrupt {
                        path: PathBuf::new(),
                        reason: format!("batch at position {}: {e}", self.position),
                    });
                }
                Err(_) => break,
            }
        }
        buf.truncate(pos);
        Ok(buf)
    }

    /// [`FileSlice::read_to_vec`] as [`Bytes`].
    pub fn read_to_bytes(&self) -> Result<Bytes> {
        self.read_to_vec().map(Bytes::from)
    }
}

/// The answer to a read.
#[derive(Debug, Clone)]
pub struct ReadResult {
    /// High watermark when the read was served.
    pub high_watermark: i64,
    /// Last stable offset when the read was served (see [`PartitionLog::last_stable_offset`]).
    pub last_stable_offset: i64,
    /// Log start offset when the read was served.
    pub log_start_offset: i64,
    /// The batches, or `None` when there is nothing at or after the offset yet.
    pub data: Option<FileSlice>,
}

/// The answer to [`PartitionLog::read_committed`].
#[derive(Debug, Clone)]
pub struct CommittedRead {
    /// The batches, all below [`ReadResult::last_stable_offset`].
    pub read: ReadResult,
    /// The aborted transactions overlapping the returned batches, by first offset.
    pub aborted_transactions: Vec<AbortedTxn>,
}

/// What the last stable offset is computed from; written by the writer (before it publishes a
/// new high watermark), read by anyone.
#[derive(Debug, Default)]
struct TxnView {
    /// First offset of the earliest open transaction.
    first_ongoing: Option<i64>,
    /// Transactions whose marker may still be at or above the high watermark (`FsyncPolicy::
    /// Always` publishes it after the sync): `(first_offset, marker_offset)`. They stay
    /// unstable until the marker is below the high watermark, as in Kafka.
    pending: Vec<(i64, i64)>,
}

/// Writer-only state, guarded by the writer lock.
#[derive(Debug)]
struct Writer {
    next_offset: i64,
    /// Bytes appended to the active segment since its last index entry.
    bytes_since_index: u64,
    /// Clock reading when the active segment got its first batch.
    active_since_ms: Option<i64>,
    /// The last batch written to the active segment.
    last_batch: Option<BatchPosition>,
    /// Background syncs of rolled segments (policies other than `Always`), joined on close.
    flushers: Vec<std::thread::JoinHandle<()>>,
    /// Idempotent-producer state through `next_offset`; snapshotted on roll and close.
    producers: ProducerStateManager,
}

/// A write made by [`PartitionLog::append_deferred`] that may not be durable (or, under
/// `Always`, visible) yet: hand it to [`PartitionLog::await_durable`] before acknowledging.
#[derive(Debug)]
#[must_use = "an append is not acknowledged until await_durable returns"]
pub struct PendingAppend {
    info: AppendInfo,
    /// Offset just past the write.
    end: i64,
    /// Under `Always` in a commit window: the written segment, already entered in the open
    /// window (so writes made before anyone waits share one window), and its path.
    ticket: Option<(crate::sync_group::Ticket, PathBuf)>,
}

impl PendingAppend {
    /// What the append assigned (offsets, timestamps); not yet an acknowledgement.
    pub fn info(&self) -> &AppendInfo {
        &self.info
    }

    /// The offset just past the write.
    pub fn end_offset(&self) -> i64 {
        self.end
    }
}

/// One partition on disk: a directory of segments, append-only, indexed by offset and time.
///
/// # Ownership and concurrency
/// `PartitionLog` is `Send + Sync` and every method takes `&self`. Appends, retention,
/// truncation and rolls serialise on one writer lock. Readers never take it: they see a
/// snapshot of the segment list (an `RwLock` held only to clone `Arc`s) and read files with
/// positional reads below the published high watermark. Durability waits
/// ([`FsyncPolicy::Always`]) happen outside the writer lock, so concurrent appenders share one
/// `fdatasync` (see `fsync.rs`).
///
/// All methods block on file I/O: call them from a blocking thread, not an async executor.
#[derive(Debug)]
pub struct PartitionLog {
    dir: PathBuf,
    clock: Arc<dyn Clock>,
    config: RwLock<LogConfig>,
    /// Sorted by base offset; the last one is the active segment.
    segments: RwLock<Vec<Arc<Segment>>>,
    writer: Mutex<Writer>,
    group_commit: GroupCommit,
    high_watermark: AtomicI64,
    log_end: AtomicI64,
    log_start: AtomicI64,
    recovery_point: Arc<RecoveryPoint>,
    closed: AtomicBool,
    txn_view: RwLock<TxnView>,
    /// [sync-group] The broker-wide commit window `Always` appends sync through, once joined.
    sync_group: std::sync::OnceLock<crate::SyncGroup>,
    /// The cleaner's checkpoint (persisted in `cleaner-offset-checkpoint`).
    pub(crate) cleaner_checkpoint: Mutex<crate::cleaner::Checkpoint>,
    /// Held by a running [`PartitionLog::clean`]: one clean at a time per log.
    pub(crate) clean_lock: Mutex<()>,
}

impl PartitionLog {
    /// Opens the log in `dir` (created if missing), recovering it after an unclean shutdown.
    pub fn open(dir: &Path, config: LogConfig, clock: Arc<dyn Clock>) -> Result<PartitionLog> {
        fs::create_dir_durable(dir)?;
        crate::cleaner::swap::recover(dir)?;
        let mut bases = fs::list_segments(dir)?;
        let cleaner_checkpoint = crate::cleaner::Checkpoint::read(dir);
        let gaps_below = cleaner_checkpoint.map_or(i64::MIN, |c| c.gaps_below);
        let interval = config.index_interval_bytes;
        // Without a recovery point every segment is suspect (scanned); with one, only those at
        // or above it are.
        let recovery_point = match fs::read_offset_file(&dir.join(RECOVERY_POINT_FILE)) {
            Ok(Some(rp)) => rp,
            Ok(None) => i64::MIN,
            Err(e) => {
                warn!(dir = %dir.display(), "unreadable recovery point, scanning every segment: {e}");
                i64::MIN
            }
        };
        let mut segments = Vec::with_capacity(bases.len().max(1));
        let mut recovered_closed = None;
        let mut i = 0;
        while i + 1 < bases.len() {
            let Some(&base) = bases.get(i) else { break };
            let next_base = bases.get(i + 1).copied().unwrap_or(i64::MAX);
            if base < recovery_point {
                segments.push(Arc::new(recovery::open_closed(
                    dir, base, interval, next_base, gaps_below,
                )?));
                i += 1;
                continue;
            }
            // Under `Always` a segment is synced whole before the next one gets a batch (see
            // `roll_locked`), so damage in a closed segment is never a torn write, even above a
            // recovery point that could not be written: salvage it like one below.
            let salvage = (config.fsync == FsyncPolicy::Always).then_some(next_base);
            let (segment, scan) =
                recovery::open_unflushed_closed(dir, base, interval, salvage, gaps_below)?;
            if scan.stopped.is_some() {
                // Data after a damaged unflushed segment follows lost data: drop it, as Kafka
                // does, and continue from the damaged segment.
                for &later in bases.get(i + 1..).unwrap_or_default() {
                    let (doomed, _, _, _) = Segment::open_files(dir, later)?;
                    doomed.delete_files()?;
                    warn!(dir = %dir.display(), base_offset = later, "deleted segment after a damaged unflushed segment");
                }
                bases.truncate(i + 1);
                recovered_closed = Some((segment, scan.next_offset));
                break;
            }
            segments.push(Arc::new(segment));
            i += 1;
        }
        let (active, next_offset) = match (recovered_closed, bases.last()) {
            (Some(recovered), _) => recovered,
            (None, Some(&last)) => recovery::open_active(dir, last, interval, gaps_below)?,
            (None, None) => {
                let start = fs::read_offset_file(&dir.join(LOG_START_FILE))?.unwrap_or(0);
                let seg = Segment::open_files(dir, start)?.0;
                fs::sync_dir(dir)?;
                (seg, start)
            }
        };
        let last_batch = if active.size() > 0 {
            active.find_batch(next_offset - 1, active.size())?
        } else {
            None
        };
        let active_base = active.base_offset;
        segments.push(Arc::new(active));
        let first_base = segments.first().map_or(0, |s| s.base_offset);
        let persisted_start = fs::read_offset_file(&dir.join(LOG_START_FILE))?.unwrap_or(0);
        let log_start = persisted_start.max(first_base).min(next_offset);
        let now = clock.now_ms();
        debug!(dir = %dir.display(), log_start, next_offset, segments = segments.len(), "opened log");
        let active_since = last_batch.map(|_| now);
        // Every closed segment is now either trusted or scanned and synced.
        let recovery_point = RecoveryPoint::at_open(dir, recovery_point, active_base);
        let producers = load_producer_state(dir, &segments, next_offset)?;
        let txn_view = TxnView {
            first_ongoing: producers.first_ongoing_offset(),
            pending: Vec::new(),
        };
        let cleaner_checkpoint = cleaner_checkpoint.unwrap_or(crate::cleaner::Checkpoint {
            first_dirty: log_start,
            tombstones_due_ms: None,
            gaps_below: i64::MIN,
        });
        Ok(PartitionLog {
            dir: dir.to_path_buf(),
            group_commit: GroupCommit::new(next_offset, now),
            clock,
            config: RwLock::new(config),
            segments: RwLock::new(segments),
            writer: Mutex::new(Writer {
                next_offset,
                bytes_since_index: 0,
                active_since_ms: active_since,
                last_batch,
                flushers: Vec::new(),
                producers,
            }),
            high_watermark: AtomicI64::new(next_offset),
            log_end: AtomicI64::new(next_offset),
            log_start: AtomicI64::new(log_start),
            recovery_point,
            closed: AtomicBool::new(false),
            txn_view: RwLock::new(txn_view),
            sync_group: std::sync::OnceLock::new(),
            cleaner_checkpoint: Mutex::new(cleaner_checkpoint),
            clean_lock: Mutex::new(()),
        })
    }

    /// The directory holding the segments.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Offset below which readers may read: the log end, or with [`FsyncPolicy::Always`] the
    /// durable end, so a reader never sees a record a crash could take back.
    pub fn high_watermark(&self) -> i64 {
        self.high_watermark.load(Ordering::Acquire)
    }

    /// Offset the next appended record will get.
    pub fn log_end_offset(&self) -> i64 {
        self.log_end.load(Ordering::Acquire)
    }

    /// First offset still readable.
    pub fn log_start_offset(&self) -> i64 {
        self.log_start.load(Ordering::Acquire)
    }

    /// Total bytes in all segments.
    pub fn size_bytes(&self) -> u64 {
        read_lock(&self.segments).iter().map(|s| s.size()).sum()
    }

    /// Number of segments (the active one included).
    pub fn segment_count(&self) -> usize {
        read_lock(&self.segments).len()
    }

    /// Number of `fdatasync` calls made by group commit since the log was opened (each covers
    /// every append that was waiting), including those a joined `SyncGroup` made of this log's
    /// segment. For metrics and tests.
    pub fn sync_count(&self) -> u64 {
        self.group_commit.sync_count()
    }

    /// The current configuration.
    pub fn config(&self) -> LogConfig {
        read_lock(&self.config).clone()
    }

    /// Replaces the configuration; applies from the next append or retention run.
    pub fn set_config(&self, config: LogConfig) {
        *write_lock(&self.config) = config;
    }

    pub(crate) fn check_writable(&self) -> Result<()> {
        // Poisoned first: a poisoned log that was abandoned for recovery keeps answering
        // with the storage error (retriable) rather than as a closed log.
        if self.group_commit.is_poisoned() {
            return Err(Error::Poisoned);
        }
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        Ok(())
    }

    fn active(&self) -> Result<Arc<Segment>> {
        read_lock(&self.segments)
            .last()
            .cloned()
            .ok_or_else(|| Error::Corrupt {
                path: self.dir.clone(),
                reason: "log has no segment".into(),
            })
    }

    /// Appends one or more complete record batches (a Kafka produce payload), validating each,
    /// assigning offsets and `leader_epoch`, stamping the append time when the log uses
    /// `LogAppendTime`, and returning once the batches are as durable as the [`FsyncPolicy`]
    /// promises. `batches` is patched in place.
    pub fn append(&self, batches: &mut [u8], leader_epoch: i32) -> Result<AppendInfo> {
        // [deferred-durability] Split in two so a connection can write its next request while
        // this one's sync is pending; `append` is both halves back to back.
        let pending = self.append_deferred(batches, leader_epoch)?;
        self.await_durable(pending)
    }

    /// The first half of [`append`](Self::append): validates, assigns offsets and writes, but
    /// returns before the batches are as durable as the policy promises; they are not visible
    /// to readers under `Always` until [`await_durable`](Self::await_durable) returns for them
    /// (or a later sync covers them). Appends are ordered by their `append_deferred` calls.
    pub fn append_deferred(&self, batches: &mut [u8], leader_epoch: i32) -> Result<PendingAppend> {
        self.check_writable()?;
        let config = self.config();
        // Validation (CRC over every byte) happens before taking the writer lock, so concurrent
        // appenders check their batches in parallel.
        let headers = validate_payload(batches, &config, self.clock.now_ms())?;
        let record_count: i64 = headers
            .iter()
            .map(|(h, _)| i64::from(h.last_offset_delta) + 1)
            .sum();

        let (info, end, ticket) = {
            let mut w = lock(&self.writer);
            self.check_writable()?;
            let now = self.clock.now_ms();
            let log_append_time = match config.timestamp_type {
                TimestampType::LogAppendTime => now,
                TimestampType::CreateTime => strom_record::NO_TIMESTAMP,
            };
            // Producer checks come before anything is written or rolled, against the offsets
            // the batches will get (a roll does not move the log end).
            let staged = if headers.iter().any(|(h, _)| h.producer_id >= 0) {
                match check_producers(&w.producers, batches, &headers, w.next_offset, &config, now)?
                {
                    ProducerPlan::Append(staged, completed) => Some((staged, completed)),
                    ProducerPlan::Duplicate(m) => {
                        debug!(dir = %self.dir.display(), first_offset = m.first_offset, "duplicate producer batch");
                        let info = AppendInfo {
                            base_offset: m.first_offset,
                            last_offset: m.last_offset,
                            log_append_time: if log_append_time >= 0 {
                                m.timestamp
                            } else {
                                log_append_time
                            },
                            log_start_offset: self.log_start_offset(),
                            max_timestamp: m.timestamp,
                            record_count: m.last_offset - m.first_offset + 1,
                        };
                        drop(w);
                        // The original may still be waiting for its sync: `await_durable`
                        // answers only once it is as durable as a fresh append would be.
                        return Ok(PendingAppend {
                            info,
                            end: m.last_offset + 1,
                            ticket: None,
                        });
                    }
                }
            } else {
                None
            };
            self.maybe_roll(&mut w, &config, batches.len() as u64, record_count, now)?;
            let active = self.active()?;
            let base_offset = w.next_offset;
            let mut max_timestamp = strom_record::NO_TIMESTAMP;
            let mut next = base_offset;
            for (header, range) in &headers {
                let batch = batches.get_mut(range.clone()).ok_or(Error::InvalidOffset {
                    offset: next,
                    reason: "batch range outside the buffer",
                })?;
                strom_record::set_base_offset(batch, next)?;
                strom_record::set_partition_leader_epoch(batch, leader_epoch)?;
                if config.timestamp_type == TimestampType::LogAppendTime {
                    strom_record::set_log_append_time(batch, now)?;
                }
                let ts = if config.timestamp_type == TimestampType::LogAppendTime {
                    now
                } else {
                    header.max_timestamp
                };
                max_timestamp = max_timestamp.max(ts);
                next += i64::from(header.last_offset_delta) + 1;
            }

            let position = active.size();
            if let Err(e) = fs::write_all_at(
                &active.file,
                batches,
                position,
                "write segment",
                &active.log_path,
            ) {
                // Undo a partial write (a full disk), so the log stays writable and the next
                // append, once there is space, lands at the same position. If even the undo
                // fails the file is in an unknown state: poison, so the owner reopens the log.
                if let Err(undo) =
                    fs::set_len(&active.file, position, "undo write", &active.log_path)
                {
                    warn!(segment = %active.log_path.display(), "cannot undo a failed write, poisoning the log: {undo}");
                    self.group_commit.poison();
                }
                return Err(e);
            }
            let mut pos = position;
            let mut offset = base_offset;
            let mut last = None;
            for (header, _) in &headers {
                let mut h = *header;
                h.base_offset = offset;
                if config.timestamp_type == TimestampType::LogAppendTime {
                    h.max_timestamp = now;
                }
                active.observe_timestamp(h.max_timestamp);
                if let Err(e) = active.index_batch(
                    &h,
                    pos,
                    &mut w.bytes_since_index,
                    config.index_interval_bytes,
                ) {
                    self.group_commit.poison();
                    return Err(e);
                }
                last = Some(BatchPosition {
                    header: h,
                    position: pos,
                });
                pos += h.total_len() as u64;
                offset = h.next_offset();
            }
            active.set_size(pos);
            if let Some((staged, completed)) = staged {
                for c in completed.iter().filter(|c| c.aborted) {
                    let appended = write_lock(&active.txn_index).append(TxnIndexEntry {
                        producer_id: c.producer_id,
                        first_offset: c.first_offset,
                        last_offset: c.last_offset,
                        last_stable_offset: c.last_stable_offset,
                    });
                    if let Err(e) = appended {
                        // The marker is in the log but not in the index: reopen to rebuild it.
                        self.group_commit.poison();
                        return Err(e);
                    }
                }
                w.producers.merge(staged);
                // Before the high watermark moves: a reader that sees the new watermark must
                // see the transactions it covers.
                let hw = self.high_watermark();
                let mut view = write_lock(&self.txn_view);
                view.first_ongoing = w.producers.first_ongoing_offset();
                view.pending.retain(|&(_, marker)| marker >= hw);
                view.pending
                    .extend(completed.iter().map(|c| (c.first_offset, c.last_offset)));
            }
            w.last_batch = last;
            w.active_since_ms.get_or_insert(now);
            w.next_offset = next;
            self.log_end.store(next, Ordering::Release);
            if config.fsync != FsyncPolicy::Always {
                self.high_watermark.store(next, Ordering::Release);
            }
            // [sync-group] Enter the written file in the open window now, after the write: a
            // window that starts later syncs it, whoever waits first.
            let ticket = match (config.fsync, self.sync_group.get()) {
                (FsyncPolicy::Always, Some(group)) => Some((
                    group.enter(Arc::new(crate::sync_group::SegmentSync {
                        file: Arc::clone(&active.file),
                        path: active.log_path.clone(),
                    })),
                    active.log_path.clone(),
                )),
                _ => None,
            };
            (
                AppendInfo {
                    base_offset,
                    last_offset: next - 1,
                    log_append_time,
                    log_start_offset: self.log_start_offset(),
                    max_timestamp,
                    record_count,
                },
                next,
                ticket,
            )
        };

        Ok(PendingAppend { info, end, ticket })
    }

    /// The second half of [`append`](Self::append): returns once the write of `pending` is as
    /// durable as the [`FsyncPolicy`] promises (under `Always`: synced, and then visible).
    pub fn await_durable(&self, pending: PendingAppend) -> Result<AppendInfo> {
        let PendingAppend { info, end, ticket } = pending;
        // A log closed or abandoned (healing) between the halves: if the write is not known
        // durable, it cannot become so through this log; fail rather than wait or sync files
        // the next open may be recovering.
        if self.is_closed() && self.high_watermark() < end {
            return Err(if self.group_commit.is_poisoned() {
                Error::Poisoned
            } else {
                Error::Closed
            });
        }
        match self.config().fsync {
            FsyncPolicy::Always => match (ticket, self.sync_group.get()) {
                (Some((ticket, path)), Some(group)) => {
                    self.sync_in_group(group, end, Some((&ticket, &path)))?;
                }
                _ => self.sync_through(end)?,
            },
            FsyncPolicy::Interval(every) => {
                let now = self.clock.now_ms();
                let due = i64::try_from(every.as_millis()).unwrap_or(i64::MAX);
                if now.saturating_sub(self.group_commit.last_sync_ms()) >= due {
                    self.sync_through(end)?;
                }
            }
            FsyncPolicy::Never => {}
        }
        Ok(info)
    }

    /// Makes every offset below `end` durable, sharing the `fdatasync` with concurrent callers.
    fn sync_through(&self, end: i64) -> Result<()> {
        let always = self.config().fsync == FsyncPolicy::Always;
        // [sync-group] Under `Always`, a log that joined a group syncs in its windows instead.
        if always && let Some(group) = self.sync_group.get() {
            return self.sync_in_group(group, end, None);
        }
        self.group_commit.sync_through(
            end,
            self.clock.now_ms(),
            || {
                let (captured_end, active) = {
                    let w = lock(&self.writer);
                    (w.next_offset, self.active()?)
                };
                fs::sync_data(&active.file, "fdatasync segment", &active.log_path)?;
                Ok(captured_end)
            },
            |durable| {
                if always {
                    self.high_watermark.fetch_max(durable, Ordering::AcqRel);
                }
            },
        )
    }

    /// Forces everything appended so far to stable storage (for `Interval` timers and shutdown).
    pub fn flush(&self) -> Result<()> {
        self.check_writable()?;
        let end = self.log_end_offset();
        self.sync_through(end)
    }

    /// Rolls to a new segment if the active one is full, old or would overflow its offsets.
    fn maybe_roll(
        &self,
        w: &mut Writer,
        config: &LogConfig,
        incoming: u64,
        incoming_records: i64,
        now: i64,
    ) -> Result<()> {
        let active = self.active()?;
        let size = active.size();
        if size == 0 {
            return Ok(());
        }
        let full = size + incoming > config.effective_segment_bytes();
        let old = match (config.effective_segment_ms(), w.active_since_ms) {
            (Some(ms), Some(since)) => now.saturating_sub(since) >= ms,
            _ => false,
        };
        let offsets_overflow =
            w.next_offset + incoming_records - active.base_offset > i64::from(i32::MAX);
        if full || old || offsets_overflow {
            self.roll_locked(w, now)?;
        }
        Ok(())
    }

    /// Closes the active segment (syncing it) and starts a new one at the log end. A no-op when
    /// the active segment is empty.
    pub fn roll(&self) -> Result<()> {
        self.check_writable()?;
        let mut w = lock(&self.writer);
        let now = self.clock.now_ms();
        self.roll_locked(&mut w, now)
    }

    fn roll_locked(&self, w: &mut Writer, now: i64) -> Result<()> {
        let active = self.active()?;
        if active.size() == 0 {
            return Ok(());
        }
        active.seal_time_index(w.last_batch)?;
        let config = self.config();
        let (segment, _, _, _) = Segment::open_files(&self.dir, w.next_offset)?;
        if config.preallocate {
            fs::preallocate(&segment.file, config.effective_segment_bytes());
        }
        fs::sync_dir(&self.dir)?;
        write_lock(&self.segments).push(Arc::new(segment));
        w.bytes_since_index = 0;
        w.active_since_ms = None;
        w.last_batch = None;
        let new_base = w.next_offset;
        w.producers.expire(now, config.producer_id_expiration_ms);
        // The snapshot only saves re-scanning: without it recovery scans from an older one.
        // Under `Always` it is synced here; otherwise with the rolled segment, in the background
        // (a torn snapshot fails its checksum and recovery takes an older one).
        let sync_snapshot = config.fsync == FsyncPolicy::Always;
        if let Err(e) =
            self.write_producer_snapshot(&w.producers, new_base, active.base_offset, sync_snapshot)
        {
            warn!(dir = %self.dir.display(), offset = new_base, "writing the producer-state snapshot failed: {e}");
        }
        if config.fsync == FsyncPolicy::Always {
            // Little is unsynced under `Always`: sync now, so what is acknowledged stays simple.
            if let Err(e) = active.sync_all() {
                self.group_commit.poison();
                return Err(e);
            }
            self.recovery_point.advance(new_base);
            self.group_commit.advance_durable_end(new_base, now);
            self.high_watermark.fetch_max(new_base, Ordering::AcqRel);
        } else {
            // Flushing a whole segment can take a second; do it beside the appenders (as Kafka
            // flushes a rolled segment asynchronously). Until it is done the recovery point stays
            // below this segment, so a crash makes recovery scan it.
            w.flushers.retain(|h| !h.is_finished());
            let recovery_point = Arc::clone(&self.recovery_point);
            let snapshot = self.dir.join(fs::snapshot_name(new_base));
            let spawned = std::thread::Builder::new()
                .name("strom-log-flush".into())
                .spawn(move || {
                    let synced = active
                        .sync_all()
                        .and_then(|()| fs::sync_file(&snapshot))
                        // Advancing rewrites the recovery point and syncs the directory, which
                        // makes the snapshot's rename durable too.
                        .map(|()| recovery_point.advance(new_base));
                    if let Err(e) = synced {
                        warn!(segment = %active.log_path.display(), "flushing rolled segment failed: {e}");
                    }
                });
            match spawned {
                Ok(handle) => w.flushers.push(handle),
                Err(e) => {
                    warn!("cannot start a flush thread, the rolled segment stays unflushed: {e}")
                }
            }
        }
        debug!(dir = %self.dir.display(), base_offset = new_base, "rolled segment");
        Ok(())
    }

    /// Reads whole batches from the batch containing `offset`: at most `max_bytes`, except that
    /// the first batch is returned whole even if larger (so a consumer always progresses),
    /// never past the high watermark, and from one segment only.
    pub fn read(&self, offset: i64, max_bytes: usize) -> Result<ReadResult> {
        Ok(self.read_below(offset, max_bytes, false)?.0)
    }

    /// A `read_committed` read: as [`PartitionLog::read`] but never at or past the last stable
    /// offset (an offset between it and the high watermark reads nothing), with the aborted
    /// transactions that overlap the returned batches.
    pub fn read_committed(&self, offset: i64, max_bytes: usize) -> Result<CommittedRead> {
        let (read, end) = self.read_below(offset, max_bytes, true)?;
        let aborted_transactions = if read.data.is_some() {
            self.aborted_transactions(offset, end)?
        } else {
            Vec::new()
        };
        Ok(CommittedRead {
            read,
            aborted_transactions,
        })
    }

    /// Offset below which `read_committed` readers may read: the high watermark, or the first
    /// offset of the earliest transaction that is open (or whose marker is not yet below the
    /// high watermark) if that is lower; never below the log start.
    pub fn last_stable_offset(&self) -> i64 {
        self.last_stable_offset_at(self.high_watermark())
    }

    /// The last stable offset for high watermark `hw` (loaded before the view, see append).
    fn last_stable_offset_at(&self, hw: i64) -> i64 {
        let log_start = self.log_start_offset();
        let view = read_lock(&self.txn_view);
        let pending = view
            .pending
            .iter()
            .filter(|&&(_, marker)| marker >= hw)
            .map(|&(first, _)| first);
        let first_unstable = view.first_ongoing.into_iter().chain(pending).min();
        match first_unstable {
            Some(first) => hw.min(first.max(log_start)),
            None => hw,
        }
    }

    /// The aborted transactions overlapping `[from, to)`: those whose marker is at or after
    /// `from` and whose first offset is below `to`, ordered by marker offset.
    pub fn aborted_transactions(&self, from: i64, to: i64) -> Result<Vec<AbortedTxn>> {
        let segments: Vec<Arc<Segment>> = {
            let all = read_lock(&self.segments);
            let idx = all
                .partition_point(|s| s.base_offset <= from)
                .saturating_sub(1);
            all.get(idx..).map(<[_]>::to_vec).unwrap_or_default()
        };
        let mut out = Vec::new();
        for segment in segments {
            let index = read_lock(&segment.txn_index);
            for e in index.entries() {
                if e.last_offset >= from && e.first_offset < to {
                    out.push(AbortedTxn {
                        producer_id: e.producer_id,
                        first_offset: e.first_offset,
                    });
                }
                if e.last_stable_offset >= to {
                    return Ok(out);
                }
            }
        }
        Ok(out)
    }

    /// The open transactions, earliest first.
    pub fn ongoing_transactions(&self) -> Vec<OngoingTxn> {
        let w = lock(&self.writer);
        w.producers
            .ongoing()
            .map(|(first_offset, producer_id)| OngoingTxn {
                producer_id,
                producer_epoch: w.producers.get(producer_id).map_or(-1, |e| e.epoch),
                first_offset,
            })
            .collect()
    }

    /// Every producer the partition remembers (`DescribeProducers`), by id.
    pub fn producers(&self) -> Vec<ProducerInfo> {
        let w = lock(&self.writer);
        w.producers
            .iter()
            .map(|(producer_id, e)| ProducerInfo {
                producer_id,
                producer_epoch: e.epoch,
                last_sequence: e.last_seq().unwrap_or(-1),
                last_timestamp: e.last_timestamp,
                coordinator_epoch: e.coordinator_epoch,
                current_txn_start_offset: e.current_txn_first_offset,
            })
            .collect()
    }

    /// Reads below the high watermark, or with `committed` below the last stable offset, and
    /// returns the offset after the last batch returned.
    fn read_below(
        &self,
        offset: i64,
        max_bytes: usize,
        committed: bool,
    ) -> Result<(ReadResult, i64)> {
        let hw = self.high_watermark();
        let lso = self.last_stable_offset_at(hw);
        let log_start = self.log_start_offset();
        let bound = if committed { lso } else { hw };
        let result = |data| ReadResult {
            high_watermark: hw,
            last_stable_offset: lso,
            log_start_offset: log_start,
            data,
        };
        if offset < log_start || offset > hw {
            return Err(Error::OffsetOutOfRange {
                offset,
                log_start,
                high_watermark: hw,
            });
        }
        if offset >= bound {
            return Ok((result(None), offset));
        }
        let segments: Vec<Arc<Segment>> = {
            let all = read_lock(&self.segments);
            let idx = all
                .partition_point(|s| s.base_offset <= offset)
                .saturating_sub(1);
            all.get(idx..).map(<[_]>::to_vec).unwrap_or_default()
        };
        for segment in segments {
            let limit = segment.size();
            let Some(first) = segment.find_batch(offset, limit)? else {
                continue;
            };
            if first.header.last_offset() >= bound {
                return Ok((result(None), offset));
            }
            let mut end = first.position + first.header.total_len() as u64;
            let budget = first.position.saturating_add(max_bytes as u64);
            let mut expected = first.header.next_offset();
            // A header that does not parse or breaks the offset sequence (dense, or increasing
            // in a compacted segment) ends the range; the next read starting there reports the
            // damage.
            while let Ok(Some(h)) = segment.header_at(end, limit) {
                let next_end = end + h.total_len() as u64;
                if !segment.follows(h.base_offset, expected)
                    || h.last_offset() >= bound
                    || next_end > budget
                {
                    break;
                }
                end = next_end;
                expected = h.next_offset();
            }
            return Ok((
                result(Some(FileSlice {
                    file: Arc::clone(&segment.file),
                    position: first.position,
                    len: usize::try_from(end - first.position).unwrap_or(usize::MAX),
                })),
                expected,
            ));
        }
        Ok((result(None), offset))
    }

    /// Where a reader that hit damage at `offset` (a read there failed) can try next: the
    /// first offset above it at which the log knows a batch starts without walking through the
    /// damaged bytes — the next offset-index entry of the segment holding `offset`, else the
    /// base offset of the next segment. `None` if there is none below the high watermark. The
    /// records between `offset` and the answer are not readable by offset; a read at the answer
    /// may fail again, and the caller asks again from there. For readers that salvage what is
    /// intact (replay of internal topics); the Fetch path reports the damage instead.
    pub fn next_readable_offset(&self, offset: i64) -> Option<i64> {
        let hw = self.high_watermark();
        let segments = read_lock(&self.segments);
        let idx = segments
            .partition_point(|s| s.base_offset <= offset)
            .saturating_sub(1);
        let candidate = segments.get(idx..)?.iter().find_map(|segment| {
            if segment.base_offset > offset {
                Some(segment.base_offset)
            } else {
                read_lock(&segment.offset_index)
                    .next_after(offset)
                    .map(|e| e.offset)
            }
        })?;
        (candidate < hw).then_some(candidate)
    }

    /// The offset after segment `i` of `segments`: the next one's base, or the log end.
    fn segment_end(&self, segments: &[Arc<Segment>], i: usize) -> i64 {
        segments
            .get(i + 1)
            .map_or_else(|| self.log_end_offset(), |s| s.base_offset)
    }

    /// The first record (not batch) whose timestamp is `>= timestamp`, at or after the log
    /// start and below the high watermark: `Some((offset, record_timestamp))`, or `None`.
    ///
    /// Damage met on the way (not yet taken out of service) is located and taken out of
    /// service, as a read does (`salvage.rs`), and the answer comes from the intact data.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<(i64, i64)>> {
        let hw = self.high_watermark();
        let log_start = self.log_start_offset();
        let segments: Vec<Arc<Segment>> = read_lock(&self.segments).clone();
        for (i, segment) in segments.iter().enumerate() {
            if segment.max_timestamp() < timestamp {
                continue;
            }
            let limit = segment.size();
            let (offset, position) = read_lock(&segment.time_index).lookup(timestamp);
            let mut found = None;
            let end = self.segment_end(&segments, i);
            crate::salvage::walk_salvaging(segment, offset, position, limit, end, |b| {
                let h = b.header;
                if h.base_offset >= hw {
                    return Ok(false);
                }
                if h.last_offset() >= log_start && h.max_timestamp >= timestamp {
                    let mut buf = vec![0u8; h.total_len()];
                    segment.read_at(&mut buf, b.position)?;
                    found = first_record_at_or_after(&buf, &h, timestamp, log_start)?;
                }
                Ok(found.is_none())
            })?;
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }

    /// The largest record timestamp in the log and the offset of the first record carrying it
    /// (Kafka's `ListOffsets` with `MAX_TIMESTAMP`), or `None` for an empty log.
    ///
    /// Segments entirely above the log start answer from their tracked maximum; a segment that
    /// still holds records below the log start (after `DeleteRecords`) is scanned, since its
    /// maximum may belong to a deleted record.
    pub fn max_timestamp(&self) -> Result<Option<(i64, i64)>> {
        let log_start = self.log_start_offset();
        let segments: Vec<Arc<Segment>> = read_lock(&self.segments).clone();
        let mut max = strom_record::NO_TIMESTAMP;
        for (i, segment) in segments.iter().enumerate() {
            if segment.base_offset < log_start {
                max = max.max(self.scan_max_timestamp(&segments, i, log_start)?);
            } else {
                max = max.max(segment.max_timestamp());
            }
        }
        if max < 0 {
            return Ok(None);
        }
        if let Some(found) = self.offset_for_timestamp(max)? {
            return Ok(Some(found));
        }
        // The maximum belongs to records not yet below the high watermark: scan for the largest
        // readable one.
        let mut max = strom_record::NO_TIMESTAMP;
        for i in 0..segments.len() {
            max = max.max(self.scan_max_timestamp(&segments, i, log_start)?);
        }
        if max < 0 {
            return Ok(None);
        }
        self.offset_for_timestamp(max)
    }

    /// Largest timestamp of the records of `segment` at or after `log_start` and below the
    /// high watermark, by decoding them.
    fn scan_max_timestamp(
        &self,
        segments: &[Arc<Segment>],
        i: usize,
        log_start: i64,
    ) -> Result<i64> {
        let hw = self.high_watermark();
        let mut max = strom_record::NO_TIMESTAMP;
        let Some(segment) = segments.get(i) else {
            return Ok(max);
        };
        let limit = segment.size();
        let end = self.segment_end(segments, i);
        let (offset, position) = segment.start_for(log_start);
        crate::salvage::walk_salvaging(segment, offset, position, limit, end, |b| {
            let h = b.header;
            if h.base_offset >= hw {
                return Ok(false);
            }
            if h.last_offset() < log_start {
                return Ok(true);
            }
            if h.base_offset >= log_start || h.timestamp_type() == TimestampType::LogAppendTime {
                max = max.max(h.max_timestamp);
            } else {
                let mut buf = vec![0u8; h.total_len()];
                segment.read_at(&mut buf, b.position)?;
                let records =
                    strom_record::record_offsets_and_timestamps(&buf, DecodeLimits::default())?;
                for r in records.iter().filter(|r| r.offset >= log_start) {
                    max = max.max(r.timestamp);
                }
            }
            Ok(true)
        })?;
        Ok(max)
    }

    /// Advances the log start offset to `offset` (Kafka's `DeleteRecords`), deleting segments
    /// that lie wholly below it. Returns the new log start. `offset` must not exceed the high
    /// watermark; an offset at or below the current start changes nothing.
    pub fn delete_records_before(&self, offset: i64) -> Result<i64> {
        self.check_writable()?;
        let _w = lock(&self.writer);
        let hw = self.high_watermark();
        if offset > hw {
            return Err(Error::InvalidOffset {
                offset,
                reason: "beyond the high watermark",
            });
        }
        if offset <= self.log_start_offset() {
            return Ok(self.log_start_offset());
        }
        fs::write_offset_file(&self.dir, LOG_START_FILE, offset)?;
        self.log_start.store(offset, Ordering::Release);
        self.delete_segments_while(|seg, next_base| {
            let _ = seg;
            next_base <= offset
        })?;
        Ok(offset)
    }

    /// Deletes closed segments from the oldest while `doomed(segment, next_segment_base)` holds,
    /// then moves the log start up to the first remaining segment.
    fn delete_segments_while(
        &self,
        mut doomed: impl FnMut(&Segment, i64) -> bool,
    ) -> Result<usize> {
        let mut deleted = Vec::new();
        {
            let mut segments = write_lock(&self.segments);
            while segments.len() > 1 {
                let (Some(first), Some(second)) = (segments.first(), segments.get(1)) else {
                    break;
                };
                if !doomed(first, second.base_offset) {
                    break;
                }
                deleted.push(segments.remove(0));
            }
            if let Some(first) = segments.first() {
                self.log_start
                    .fetch_max(first.base_offset, Ordering::AcqRel);
            }
        }
        for segment in &deleted {
            segment.delete_files()?;
            info!(segment = %segment.log_path.display(), "deleted segment");
        }
        if !deleted.is_empty() {
            // Snapshots of deleted segments go with them; the one at the first remaining
            // segment's base keeps the producers seen only in deleted segments.
            let first = read_lock(&self.segments)
                .first()
                .map_or(0, |s| s.base_offset);
            for offset in fs::list_snapshots(&self.dir)? {
                if offset < first {
                    fs::remove_snapshot(&self.dir, offset)?;
                }
            }
            fs::sync_dir(&self.dir)?;
        }
        Ok(deleted.len())
    }

    /// Applies `retention.ms` and `retention.bytes` now, deleting whole segments from the
    /// oldest. A non-empty active segment whose data has all expired is rolled first so it can
    /// go too. Returns the number of segments deleted.
    ///
    /// As in Kafka, retention applies only when the cleanup policy contains `delete`: a
    /// `compact`-only log keeps its data until the cleaner supersedes it; `compact,delete` has
    /// both. Idle producers expire either way.
    pub fn apply_retention(&self) -> Result<usize> {
        self.check_writable()?;
        let config = self.config();
        let now = self.clock.now_ms();
        let mut w = lock(&self.writer);
        w.producers.expire(now, config.producer_id_expiration_ms);
        let mut deleted = 0;
        if !config.cleanup.delete {
            return Ok(0);
        }
        if let Some(retention_ms) = config.retention_ms {
            let cutoff = now.saturating_sub(retention_ms);
            let active = self.active()?;
            let active_expired = active.size() > 0 && segment_time(&active, &config)? < cutoff;
            if active_expired && w.next_offset <= self.high_watermark() {
                self.roll_locked(&mut w, now)?;
            }
            let mut failed = None;
            deleted += self.delete_segments_while(|seg, _| match segment_time(seg, &config) {
                Ok(t) => t < cutoff,
                Err(e) => {
                    failed = Some(e);
                    false
                }
            })?;
            if let Some(e) = failed {
                return Err(e);
            }
        }
        if let Some(limit) = config.retention_bytes {
            let mut total = self.size_bytes();
            deleted += self.delete_segments_while(|seg, _| {
                if total.saturating_sub(seg.size()) >= limit && total > limit {
                    total -= seg.size();
                    true
                } else {
                    false
                }
            })?;
        }
        Ok(deleted)
    }

    /// Removes every record at or after `offset` (for replicas whose log diverged from the
    /// leader's). If `offset` falls inside a batch, that whole batch goes: the new log end is
    /// its base offset. Truncating below the log start empties the log and restarts it at
    /// `offset`.
    pub fn truncate_to(&self, offset: i64) -> Result<()> {
        self.check_writable()?;
        let mut w = lock(&self.writer);
        if offset >= w.next_offset {
            return Ok(());
        }
        // A background flush must not raise the recovery point over segments removed here.
        for handle in w.flushers.drain(..) {
            let _ = handle.join();
        }
        let mut removed = Vec::new();
        let new_end;
        {
            let mut segments = write_lock(&self.segments);
            let first_base = segments.first().map_or(0, |s| s.base_offset);
            if offset <= first_base || offset <= self.log_start_offset() {
                // Persist the new start first: a crash after the deletions below leaves an empty
                // directory, which `open` restarts at the persisted log start.
                fs::write_offset_file(&self.dir, LOG_START_FILE, offset)?;
                for s in segments.drain(..) {
                    s.delete_files()?;
                }
                let (segment, _, _, _) = Segment::open_files(&self.dir, offset)?;
                segments.push(Arc::new(segment));
                new_end = offset;
                self.log_start.store(offset, Ordering::Release);
            } else {
                while segments.last().is_some_and(|s| s.base_offset >= offset) {
                    if let Some(s) = segments.pop() {
                        removed.push(s);
                    }
                }
                let active = segments.last().cloned().ok_or(Error::InvalidOffset {
                    offset,
                    reason: "no segment left",
                })?;
                let limit = active.size();
                match active.find_batch(offset, limit)? {
                    Some(b) => {
                        active.truncate_to(b.position)?;
                        new_end = b.header.base_offset;
                    }
                    // `offset` lies in a compaction gap after the segment's last batch: the log
                    // ends after that batch (where recovery would put its end too).
                    None => {
                        let mut end = active.base_offset;
                        let entry = read_lock(&active.offset_index).lookup(offset);
                        active.walk(entry.offset, entry.position, limit, |b| {
                            end = b.header.next_offset();
                            Ok(true)
                        })?;
                        new_end = w.next_offset.min(offset).min(end.max(active.base_offset));
                    }
                }
                fs::sync_data(&active.file, "fdatasync segment", &active.log_path)?;
                active.reset_max_timestamp();
                if let Some(t) = read_lock(&active.time_index).last() {
                    active.observe_timestamp(t.max_timestamp);
                }
            }
        }
        for s in &removed {
            s.delete_files()?;
        }
        fs::sync_dir(&self.dir)?;
        let active = self.active()?;
        w.next_offset = new_end;
        w.bytes_since_index = 0;
        w.last_batch = if active.size() > 0 {
            active.find_batch(new_end - 1, active.size())?
        } else {
            None
        };
        // The active segment's max timestamp must cover the batches kept after the last
        // time-index entry.
        if w.last_batch.is_some() {
            let mut pos = read_lock(&active.time_index)
                .last()
                .map_or(0, |t| t.position);
            while let Some(h) = active.header_at(pos, active.size())? {
                active.observe_timestamp(h.max_timestamp);
                pos += h.total_len() as u64;
            }
        }
        // Producer state through the new end: the latest snapshot at or below it (newer ones
        // describe removed batches and are deleted) plus a header scan.
        let segments: Vec<Arc<Segment>> = read_lock(&self.segments).clone();
        w.producers = load_producer_state(&self.dir, &segments, new_end)?;
        {
            let mut view = write_lock(&self.txn_view);
            view.first_ongoing = w.producers.first_ongoing_offset();
            view.pending.retain(|&(_, marker)| marker < new_end);
        }
        // Segments rolled from here on start below the old recovery point: lower it.
        self.recovery_point.lower(active.base_offset)?;
        // Offsets from the new end on will hold new, uncleaned data.
        self.lower_cleaner_checkpoint(new_end)?;
        self.log_end.store(new_end, Ordering::Release);
        self.high_watermark.fetch_min(new_end, Ordering::AcqRel);
        self.group_commit.reset_durable_end(new_end);
        Ok(())
    }

    /// Lowers the cleaner checkpoint to `to` (after a truncation) and persists it.
    fn lower_cleaner_checkpoint(&self, to: i64) -> Result<()> {
        let mut checkpoint = lock(&self.cleaner_checkpoint);
        if checkpoint.first_dirty > to || checkpoint.gaps_below > to {
            let lowered = crate::cleaner::Checkpoint {
                first_dirty: checkpoint.first_dirty.min(to),
                gaps_below: checkpoint.gaps_below.min(to),
                ..*checkpoint
            };
            lowered.write(&self.dir)?;
            *checkpoint = lowered;
        }
        Ok(())
    }

    /// A snapshot of the segment list (oldest first; the last is the active segment).
    pub(crate) fn segments_snapshot(&self) -> Vec<Arc<Segment>> {
        read_lock(&self.segments).clone()
    }

    /// The offset of the last batch of every producer the log remembers: the cleaner keeps
    /// that batch (possibly emptied) so duplicate detection survives compaction.
    pub(crate) fn producer_last_offsets(&self) -> std::collections::HashMap<i64, i64> {
        let w = lock(&self.writer);
        w.producers
            .iter()
            .filter_map(|(id, e)| e.batches().last().map(|b| (id, b.last_offset)))
            .collect()
    }

    /// Replaces `old` (consecutive segments, followed in the list by `next`) with the segment
    /// `commit` puts on disk, under the writer lock so retention, truncation and rolls cannot
    /// interleave. Returns `false` without calling `commit` if the list changed meanwhile
    /// (retention deleted one of them, a truncation removed `next`). The in-memory list is
    /// swapped under its write guard for a moment only; readers holding the old segments keep
    /// reading their (unlinked) files.
    pub(crate) fn replace_segments(
        &self,
        old: &[Arc<Segment>],
        next: &Arc<Segment>,
        commit: impl FnOnce() -> Result<Segment>,
    ) -> Result<bool> {
        self.check_writable()?;
        let _w = lock(&self.writer);
        self.check_writable()?;
        let position = {
            let all = read_lock(&self.segments);
            let Some(first) = old.first() else {
                return Ok(false);
            };
            let Some(at) = all.iter().position(|s| Arc::ptr_eq(s, first)) else {
                return Ok(false);
            };
            let same = old
                .iter()
                .chain(std::iter::once(next))
                .enumerate()
                .all(|(i, s)| all.get(at + i).is_some_and(|c| Arc::ptr_eq(c, s)));
            if !same {
                return Ok(false);
            }
            at
        };
        let segment = match commit() {
            Ok(s) => s,
            Err(e) => {
                // The files on disk may already be swapped: only a reopen (which completes or
                // rolls back the swap) knows the state again.
                self.group_commit.poison();
                return Err(e);
            }
        };
        let mut all = write_lock(&self.segments);
        all.splice(
            position..position + old.len(),
            std::iter::once(Arc::new(segment)),
        );
        if let Some(first) = all.first() {
            self.log_start
                .fetch_max(first.base_offset, Ordering::AcqRel);
        }
        Ok(true)
    }

    /// Raises the offset below which segments may be compacted to `to` and persists it; the
    /// cleaner calls this before it swaps in a segment below `to`, so recovery never takes a
    /// compacted segment's gaps for damage.
    pub(crate) fn raise_gaps_below(&self, to: i64) -> Result<()> {
        let mut checkpoint = lock(&self.cleaner_checkpoint);
        if to > checkpoint.gaps_below {
            let raised = crate::cleaner::Checkpoint {
                gaps_below: to,
                ..*checkpoint
            };
            raised.write(&self.dir)?;
            *checkpoint = raised;
        }
        Ok(())
    }

    /// Records a finished clean: raises the first dirty offset to `to` (never lowers it) and
    /// sets when the tombstones it kept become due; persists both.
    pub(crate) fn advance_cleaner_checkpoint(
        &self,
        to: i64,
        tombstones_due_ms: Option<i64>,
    ) -> Result<()> {
        let mut checkpoint = lock(&self.cleaner_checkpoint);
        let next = crate::cleaner::Checkpoint {
            first_dirty: checkpoint.first_dirty.max(to),
            tombstones_due_ms,
            ..*checkpoint
        };
        if next != *checkpoint {
            next.write(&self.dir)?;
            *checkpoint = next;
        }
        Ok(())
    }

    /// Syncs and closes the log; later calls fail with [`Error::Closed`]. Safe to call twice.
    pub fn close(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        if self.group_commit.is_poisoned() {
            return Err(Error::Poisoned);
        }
        let mut w = lock(&self.writer);
        for handle in w.flushers.drain(..) {
            let _ = handle.join();
        }
        let active = self.active()?;
        active.sync_all()?;
        // After the sync: the snapshot must describe only durable batches. It only saves the
        // next open a scan, so failing to write it (disk full) does not fail the close.
        if let Err(e) =
            self.write_producer_snapshot(&w.producers, w.next_offset, active.base_offset, true)
        {
            warn!(dir = %self.dir.display(), offset = w.next_offset, "cannot write the producer-state snapshot at close (the next open scans instead): {e}");
        }
        Ok(())
    }

    /// Whether an earlier I/O failure poisoned the log (a failed `fdatasync`, or a failed write
    /// that could not be undone): it refuses writes with [`Error::Poisoned`] until it is closed
    /// with [`PartitionLog::abandon`] and opened again, which recovers it.
    pub fn is_poisoned(&self) -> bool {
        self.group_commit.is_poisoned()
    }

    /// Closes the log without syncing or writing anything, for a poisoned log: what was written
    /// since the last good sync cannot be trusted and is left to the recovery of the next
    /// [`PartitionLog::open`] (which keeps what is intact and cuts the rest; none of it was
    /// acknowledged under [`FsyncPolicy::Always`]). Waits for background flushes, so nothing
    /// writes to the directory once it returns. Later calls fail with [`Error::Closed`].
    pub fn abandon(&self) {
        self.closed.store(true, Ordering::Release);
        {
            let mut w = lock(&self.writer);
            for handle in w.flushers.drain(..) {
                let _ = handle.join();
            }
        }
        // A clean in progress sees the log closed at its next batch (or its swap refuses it)
        // and removes its `.cleaned` files: wait for it, so it cannot touch the directory
        // while the log is opened again there.
        drop(lock(&self.clean_lock));
    }

    /// Whether the log was closed or abandoned (a running clean stops).
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// After a read at `offset` failed with [`Error::Corrupt`] (a batch failed its checksum or a
    /// header did not parse): finds the damaged stretch of the segment holding `offset`, from
    /// the last intact batch before it to the next intact one after it, and takes it out of
    /// service (see `salvage.rs`). Returns its offsets `[first, end)`, or `None` if the batches
    /// up to `offset` are intact. A read retried afterwards either fails with
    /// [`Error::DamagedRange`] (the offset is in the range) or is served from past the damage.
    pub fn quarantine(&self, offset: i64) -> Result<Option<(i64, i64)>> {
        let (segment, end_offset) = {
            let all = read_lock(&self.segments);
            let idx = all
                .partition_point(|s| s.base_offset <= offset)
                .saturating_sub(1);
            let Some(segment) = all.get(idx).cloned() else {
                return Ok(None);
            };
            let end = all
                .get(idx + 1)
                .map_or_else(|| self.log_end_offset(), |s| s.base_offset);
            (segment, end)
        };
        Ok(crate::salvage::locate(&segment, offset, end_offset)?
            .map(|r| (r.first_offset, r.end_offset)))
    }

    /// The damaged ranges taken out of service so far (found by reads or at open), as offsets
    /// `[first, end)`. For metrics and diagnostics.
    pub fn damaged_ranges(&self) -> Vec<(i64, i64)> {
        read_lock(&self.segments)
            .iter()
            .flat_map(|s| s.damaged_ranges())
            .map(|r| (r.first_offset, r.end_offset))
            .collect()
    }

    /// Writes the producer state through `offset` as `<offset>.snapshot` and removes the
    /// snapshots strictly between `keep_through` (the base of the segment they belong to) and
    /// `offset`, which it supersedes.
    fn write_producer_snapshot(
        &self,
        state: &ProducerStateManager,
        offset: i64,
        keep_through: i64,
        sync: bool,
    ) -> Result<()> {
        fs::write_file_atomic(&self.dir, &fs::snapshot_name(offset), &state.encode(), sync)?;
        for older in fs::list_snapshots(&self.dir)? {
            if older > keep_through && older < offset {
                fs::remove_snapshot(&self.dir, older)?;
            }
        }
        Ok(())
    }

    /// The known state of `producer_id`: its epoch and the sequence of its last batch (for
    /// tests and diagnostics).
    pub fn producer_state(&self, producer_id: i64) -> Option<(i16, Option<i32>)> {
        let w = lock(&self.writer);
        w.producers
            .get(producer_id)
            .map(|e| (e.epoch, e.last_seq()))
    }

    /// Closes the log and removes its directory (topic deletion).
    pub fn delete(self) -> Result<()> {
        self.closed.store(true, Ordering::Release);
        std::fs::remove_dir_all(&self.dir).map_err(|e| Error::io("delete log dir", &self.dir, e))
    }
}

// [sync-group] Joining a broker-wide commit window (`sync_group.rs`); kept apart from the
// append path above so the edit there is two lines.
impl PartitionLog {
    /// Makes this log's `Always` appends (and [`flush`](Self::flush)) sync through `group`, a
    /// commit window shared with the broker's other partitions, instead of through its own
    /// group commit. Only the first call has an effect. Other policies are unaffected.
    pub fn join_sync_group(&self, group: crate::SyncGroup) {
        let _ = self.sync_group.set(group);
    }

    /// `sync_through` for a log in a group: waits for a window's `fdatasync` of the active
    /// segment, then publishes `end` as the high watermark.
    ///
    /// With `entered`, the file written (entered in a window right after the write, see
    /// `append_deferred`) is waited on; without, the active segment is entered now.
    fn sync_in_group(
        &self,
        group: &crate::SyncGroup,
        end: i64,
        entered: Option<(&crate::sync_group::Ticket, &Path)>,
    ) -> Result<()> {
        if self.group_commit.is_poisoned() {
            return Err(Error::Poisoned);
        }
        if self.high_watermark() >= end {
            return Ok(());
        }
        let (synced, path) = match entered {
            // The ticket's window started after the write (the entry was made after it), so
            // its sync covers it; a roll since then synced the segment too (harmless twice).
            Some((ticket, path)) => (group.wait(ticket), path.to_path_buf()),
            None => {
                // Under the writer lock: a roll pushes the new segment before it syncs the old
                // one, all while holding the lock, so the segment seen here is either the one
                // `end` was written to or a later one whose roll already synced it.
                let active = {
                    let _w = lock(&self.writer);
                    self.active()?
                };
                // Through the fault seam, as `fs::sync_data` is for the log's own group commit.
                let file: Arc<dyn crate::sync_group::SyncData> =
                    Arc::new(crate::sync_group::SegmentSync {
                        file: Arc::clone(&active.file),
                        path: active.log_path.clone(),
                    });
                (group.sync(file), active.log_path.clone())
            }
        };
        match synced {
            // Counted once per sync, for `sync_count`.
            Ok(true) => self.group_commit.count_sync(),
            Ok(false) => {}
            Err(e) => {
                // As with the log's own group commit: after a failed `fdatasync` nothing
                // unsynced can be trusted.
                self.group_commit.poison();
                return Err(Error::io("fdatasync segment", &path, e));
            }
        }
        let now = self.clock.now_ms();
        // Never past the log end: a truncation since the write must not be undone here.
        let w = lock(&self.writer);
        let durable = end.min(w.next_offset);
        self.group_commit.advance_durable_end(durable, now);
        self.high_watermark.fetch_max(durable, Ordering::AcqRel);
        drop(w);
        Ok(())
    }
}

impl Drop for PartitionLog {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::warn!(dir = %self.dir.display(), "closing log on drop failed: {e}");
        }
    }
}

/// Validates every batch in `buf` for appending: size against `max.message.bytes` first (so an
/// oversized batch is refused before any hashing), then header, CRC-32C and the records inside;
/// on a compacted log (`cleanup.compact`) a data record without a key refuses the payload
/// with [`Error::KeylessRecords`] (every keyless record's index), after the other checks.
fn validate(buf: &[u8], config: &LogConfig) -> Result<Vec<(BatchHeader, std::ops::Range<usize>)>> {
    let limits = DecodeLimits {
        max_batch_bytes: config.max_message_bytes,
        ..DecodeLimits::default()
    };
    let mut out = Vec::new();
    let mut pos = 0;
    // Compacted logs refuse keyless records; the records are walked once for both checks.
    let mut keyless = Vec::new();
    let mut records_before: i32 = 0;
    while let Some(rest) = buf.get(pos..).filter(|r| !r.is_empty()) {
        let header = BatchHeader::parse(rest)?;
        let total = header.total_len();
        if total > config.max_message_bytes {
            return Err(Error::BatchTooLarge {
                size: total,
                max: config.max_message_bytes,
            });
        }
        let batch = rest.get(..total).ok_or(strom_record::Error::Truncated {
            needed: total,
            available: rest.len(),
        })?;
        if config.cleanup.compact && !header.is_control() {
            let missing = strom_record::validate_records_keyed(batch, limits)?;
            keyless.extend(
                missing
                    .into_iter()
                    .map(|i| records_before.saturating_add(i32::try_from(i).unwrap_or(i32::MAX))),
            );
            records_before = records_before.saturating_add(header.records_count.max(0));
        } else {
            strom_record::validate_records(batch, limits)?;
            if !header.is_control() {
                records_before = records_before.saturating_add(header.records_count.max(0));
            }
        }
        out.push((header, pos..pos + total));
        pos += total;
    }
    if out.is_empty() {
        return Err(Error::InvalidBatch(strom_record::Error::Truncated {
            needed: strom_record::HEADER_LEN,
            available: buf.len(),
        }));
    }
    if !keyless.is_empty() {
        return Err(Error::KeylessRecords { indexes: keyless });
    }
    Ok(out)
}

/// Validates a produced payload as every backend must before it accepts it: whole batches
/// (each within `max.message.bytes`, CRC and records checked), keyless records refused on a
/// compacted log ([`Error::KeylessRecords`]), and KIP-937's timestamp window around `now`.
/// Returns each batch's header and byte range in `buf`. Pure: no I/O.
pub fn validate_payload(
    buf: &[u8],
    config: &LogConfig,
    now: i64,
) -> Result<Vec<(BatchHeader, std::ops::Range<usize>)>> {
    let headers = validate(buf, config)?;
    check_timestamps(&headers, config, now)?;
    Ok(headers)
}

/// KIP-937: with `CreateTime`, every data batch's timestamps must lie within
/// `[now - message.timestamp.before.max.ms, now + message.timestamp.after.max.ms]`. The batch
/// header's first timestamp and largest timestamp are checked (Kafka checks every record; a
/// record older than its batch's first one is the only case this misses, and it cannot hold
/// retention back, which is what the check is for). Batches without timestamps (`-1`) and
/// control batches pass; with `LogAppendTime` the broker's clock replaces the timestamps.
fn check_timestamps(
    headers: &[(BatchHeader, std::ops::Range<usize>)],
    config: &LogConfig,
    now: i64,
) -> Result<()> {
    if config.timestamp_type != TimestampType::CreateTime {
        return Ok(());
    }
    let earliest = now.saturating_sub(config.timestamp_before_max_ms.max(0));
    let latest = now.saturating_add(config.timestamp_after_max_ms.max(0));
    for (h, _) in headers {
        if h.is_control() {
            continue;
        }
        for timestamp in [h.base_timestamp, h.max_timestamp] {
            if timestamp != strom_record::NO_TIMESTAMP && !(earliest..=latest).contains(&timestamp)
            {
                return Err(Error::InvalidTimestamp {
                    timestamp,
                    now,
                    earliest,
                    latest,
                });
            }
        }
    }
    Ok(())
}

/// What to do with an append that carries producer batches.
enum ProducerPlan {
    /// Write the batches; then merge this state (the updated entries of their producers) and
    /// index the aborted transactions among the completed ones.
    Append(ProducerStateManager, Vec<CompletedTxn>),
    /// The single batch is already in the log.
    Duplicate(BatchMetadata),
}

/// Whether a batch takes part in sequence checks: it has a producer id and is not a control
/// batch (transaction markers carry the producer id but no sequence, as in Kafka).
fn is_idempotent(h: &BatchHeader) -> bool {
    h.producer_id >= 0 && !h.is_control()
}

/// Whether a batch is a transaction marker to apply to the producer state.
fn is_marker(h: &BatchHeader) -> bool {
    h.producer_id >= 0 && h.is_control()
}

/// The marker in a control batch, or `None` for a control record of a type this version does
/// not know (ignored, as Kafka ignores it).
fn marker_of(batch: &[u8]) -> Option<strom_record::Marker> {
    match strom_record::parse_marker(batch) {
        Ok(m) => Some(m),
        Err(e) => {
            debug!("ignoring a control batch that is no transaction marker: {e}");
            None
        }
    }
}

/// Checks the producer batches among `headers` (ranges into `batches`), which will get offsets
/// from `base_offset` on, against `state` without changing it; applies transaction markers.
fn check_producers(
    state: &ProducerStateManager,
    batches: &[u8],
    headers: &[(BatchHeader, std::ops::Range<usize>)],
    base_offset: i64,
    config: &LogConfig,
    now: i64,
) -> Result<ProducerPlan> {
    let mut staged = state.subset(
        headers
            .iter()
            .filter(|(h, _)| h.producer_id >= 0)
            .map(|(h, _)| h.producer_id),
    );
    let mut completed = Vec::new();
    let mut next = base_offset;
    for (h, range) in headers {
        let delta = i64::from(h.last_offset_delta);
        let timestamp = match config.timestamp_type {
            TimestampType::LogAppendTime => now,
            TimestampType::CreateTime => h.max_timestamp,
        };
        if is_marker(h)
            && let Some(m) = batches.get(range.clone()).and_then(marker_of)
        {
            let done = staged.complete_txn(
                h.producer_id,
                h.producer_epoch,
                m.control_type,
                m.coordinator_epoch,
                next,
                timestamp,
            )?;
            completed.extend(done);
        }
        if is_idempotent(h) {
            staged.check_txn_state(h.producer_id, h.is_transactional())?;
            let last_seq = increment_sequence(h.base_sequence, h.last_offset_delta);
            match staged.check(h.producer_id, h.producer_epoch, h.base_sequence, last_seq)? {
                SequenceCheck::Append => {
                    staged.update(
                        h.producer_id,
                        h.producer_epoch,
                        BatchMetadata {
                            first_seq: h.base_sequence,
                            last_seq,
                            first_offset: next,
                            last_offset: next + delta,
                            timestamp,
                        },
                    );
                    if h.is_transactional() {
                        staged.begin_txn(h.producer_id, next);
                    }
                }
                SequenceCheck::Duplicate(m) if headers.len() == 1 => {
                    return Ok(ProducerPlan::Duplicate(m));
                }
                SequenceCheck::Duplicate(_) => {
                    return Err(Error::DuplicateSequence {
                        producer_id: h.producer_id,
                        first_seq: h.base_sequence,
                    });
                }
            }
        }
        next += delta + 1;
    }
    Ok(ProducerPlan::Append(staged, completed))
}

/// Rebuilds the producer and transaction state through `end`: loads the latest readable
/// snapshot at or below `end` (and at or below the base of any segment whose transaction
/// index is damaged or does not fit it), then reads the batches from there to `end`: headers,
/// plus the marker record of control batches. Snapshots above `end` describe batches that are
/// gone and are deleted, as are unreadable ones. The transaction indexes are made to match the
/// scan: entries from the snapshot on are replaced by the aborted transactions it found.
fn load_producer_state(
    dir: &Path,
    segments: &[Arc<Segment>],
    end: i64,
) -> Result<ProducerStateManager> {
    let mut snapshots = fs::list_snapshots(dir)?;
    for &offset in snapshots.iter().filter(|&&o| o > end) {
        fs::remove_snapshot(dir, offset)?;
    }
    snapshots.retain(|&o| o <= end);
    // A segment whose index entries fall outside it is damaged too.
    for (i, segment) in segments.iter().enumerate() {
        let next_base = segments.get(i + 1).map_or(i64::MAX, |s| s.base_offset);
        let mut index = write_lock(&segment.txn_index);
        if index
            .entries()
            .last()
            .is_some_and(|e| e.last_offset >= next_base)
        {
            warn!(path = %index.path().display(), "transaction index entries beyond the segment; rebuilding it");
            index.mark_damaged();
        }
    }
    let rebuild_from = segments
        .iter()
        .filter(|s| read_lock(&s.txn_index).is_damaged())
        .map(|s| s.base_offset)
        .min()
        .unwrap_or(i64::MAX);
    let mut state = ProducerStateManager::new();
    let mut from = i64::MIN;
    while let Some(offset) = snapshots.pop() {
        if offset > rebuild_from {
            continue;
        }
        let path = dir.join(fs::snapshot_name(offset));
        let loaded = std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| ProducerStateManager::decode(&b).map_err(str::to_owned));
        match loaded {
            Ok(s) => {
                state = s;
                from = offset;
                break;
            }
            Err(reason) => {
                warn!(snapshot = %path.display(), "dropping unreadable producer snapshot: {reason}");
                fs::remove_snapshot(dir, offset)?;
            }
        }
    }
    let mut scanned = 0u64;
    for (i, segment) in segments.iter().enumerate() {
        let next_base = segments.get(i + 1).map_or(i64::MAX, |s| s.base_offset);
        let mut aborted = Vec::new();
        if next_base > from && segment.base_offset < end {
            let limit = segment.size();
            let (offset, position) = if segment.base_offset >= from {
                (segment.base_offset, 0)
            } else {
                segment.start_for(from)
            };
            // Damage in the scanned range is taken out of service and stepped over (logged
            // once per range): the state is rebuilt from the intact batches.
            let segment_end = segments.get(i + 1).map_or(end, |s| s.base_offset);
            crate::salvage::walk_salvaging(segment, offset, position, limit, segment_end, |b| {
                let h = b.header;
                if h.base_offset >= end {
                    return Ok(false);
                }
                if h.base_offset < from {
                    return Ok(true);
                }
                if is_marker(&h) {
                    let mut buf = vec![0u8; h.total_len()];
                    segment.read_at(&mut buf, b.position)?;
                    if let Some(m) = marker_of(&buf) {
                        scanned += 1;
                        match state.complete_txn(
                            h.producer_id,
                            h.producer_epoch,
                            m.control_type,
                            m.coordinator_epoch,
                            h.base_offset,
                            h.max_timestamp,
                        ) {
                            Ok(Some(c)) if c.aborted => aborted.push(TxnIndexEntry {
                                producer_id: c.producer_id,
                                first_offset: c.first_offset,
                                last_offset: c.last_offset,
                                last_stable_offset: c.last_stable_offset,
                            }),
                            Ok(_) => {}
                            Err(e) => {
                                warn!(dir = %dir.display(), offset = h.base_offset, "skipping a marker that no longer applies: {e}")
                            }
                        }
                    }
                } else if is_idempotent(&h) {
                    scanned += 1;
                    state.update(
                        h.producer_id,
                        h.producer_epoch,
                        BatchMetadata {
                            first_seq: h.base_sequence,
                            last_seq: increment_sequence(h.base_sequence, h.last_offset_delta),
                            first_offset: h.base_offset,
                            last_offset: h.last_offset(),
                            timestamp: h.max_timestamp,
                        },
                    );
                    if h.is_transactional() {
                        state.begin_txn(h.producer_id, h.base_offset);
                    }
                }
                Ok(true)
            })?;
        }
        write_lock(&segment.txn_index).replace_from(from, &aborted)?;
    }
    debug!(dir = %dir.display(), snapshot = from, scanned, producers = state.len(), "loaded producer state");
    Ok(state)
}

/// The time retention judges a segment by: its largest record timestamp, but never later than
/// its file's modification time plus `message.timestamp.after.max.ms`; the file's modification
/// time when no record carries a timestamp.
///
/// The clamp is what keeps one far-future timestamp from holding retention back: segments are
/// deleted oldest first and the scan stops at the first one that is not expired (as in Kafka),
/// so a segment claiming the year 2100 would otherwise keep itself and everything after it. A
/// batch that passes the append check (KIP-937) has timestamps at most `after.max.ms` ahead of
/// the time it was written, and a segment's modification time is at or after its last write, so
/// the clamp never changes the time of data accepted under the check; it only bounds data
/// written before the check existed (or while `after.max.ms` was larger): such a segment expires
/// `retention.ms` after `mtime + after.max.ms`. Rewriting a segment (compaction) can only move
/// its modification time later, which keeps it longer, never shorter.
fn segment_time(segment: &Segment, config: &LogConfig) -> Result<i64> {
    let ts = segment.max_timestamp();
    let mtime = fs::mtime_ms(&segment.log_path)?;
    if ts >= 0 {
        return Ok(ts.min(mtime.saturating_add(config.timestamp_after_max_ms.max(0))));
    }
    Ok(mtime)
}

/// Finds, inside one batch, the first record at or after `log_start` with timestamp `>= ts`.
fn first_record_at_or_after(
    batch: &[u8],
    header: &BatchHeader,
    ts: i64,
    log_start: i64,
) -> Result<Option<(i64, i64)>> {
    if header.timestamp_type() == TimestampType::LogAppendTime {
        let offset = header.base_offset.max(log_start);
        return Ok((header.max_timestamp >= ts).then_some((offset, header.max_timestamp)));
    }
    let records = strom_record::record_offsets_and_timestamps(batch, DecodeLimits::default())?;
    Ok(records
        .into_iter()
        .find(|r| r.offset >= log_start && r.timestamp >= ts)
        .map(|r| (r.offset, r.timestamp)))
}
