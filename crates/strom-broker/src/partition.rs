//! One partition: its storage log plus the high-watermark channel that fetch waiters watch.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use bytes::Bytes;
use strom_log::{
    AbortedTxn, AppendInfo, Clock, FsyncPolicy, LogConfig, OngoingTxn, PendingAppend, ProducerInfo,
};
use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::healing::HealingLog;

/// The leader epoch written into every batch. A single node never changes leader, so this is 0
/// until cluster mode bumps it on leader changes.
pub const LEADER_EPOCH: i32 = 0;

/// One partition of a topic.
///
/// The [`PartitionLog`] serialises writers internally (one writer lock, group commit for fsync)
/// and lets readers proceed without it, so any number of connections may call
/// [`Partition::append_blocking`] and [`Partition::read_blocking`] concurrently from blocking
/// threads. After every append the new high watermark is published on a `watch` channel, which
/// is what long-poll fetches wait on.
///
/// A storage failure that poisons the log (a failed `fdatasync`) is answered with an error and
/// repaired in the background without restarting the broker: see [`crate::healing`].
#[derive(Debug)]
pub struct Partition {
    topic: String,
    index: i32,
    dir: PathBuf,
    log: Arc<HealingLog>,
    flusher_running: AtomicBool,
    closed: AtomicBool,
    /// Whether the partition is sealed (a Kinesis shard closed by resharding): it then takes
    /// transaction markers only. Data appends hold the read side across their write and
    /// [`Partition::seal_blocking`] takes the write side, so once the seal returns no data
    /// write is in flight and none can start: the log end it reports is final for data.
    sealed: RwLock<bool>,
}

/// What a read returned: whole batches (possibly none) and the partition's offsets.
#[derive(Debug, Clone)]
pub struct ReadOutcome {
    /// The high watermark when the read ran.
    pub high_watermark: i64,
    /// The last stable offset when the read ran (below it no transaction is open).
    pub last_stable_offset: i64,
    /// The log start offset when the read ran.
    pub log_start_offset: i64,
    /// Whole record batches, empty when there was nothing to return.
    pub records: Bytes,
    /// For a committed read, the aborted transactions overlapping `records` (a reader skips
    /// their producers' transactional batches, see [`strom_log::AbortedFilter`]); empty for
    /// an uncommitted read.
    pub aborted_transactions: Vec<AbortedTxn>,
}

/// Copies a read's batches out (checking their CRCs) into a [`ReadOutcome`].
fn outcome(
    result: strom_log::ReadResult,
    aborted_transactions: Vec<AbortedTxn>,
) -> Result<ReadOutcome> {
    let records = match result.data {
        Some(slice) => Bytes::from(slice.read_to_vec()?),
        None => Bytes::new(),
    };
    Ok(ReadOutcome {
        high_watermark: result.high_watermark,
        last_stable_offset: result.last_stable_offset,
        log_start_offset: result.log_start_offset,
        records,
        aborted_transactions,
    })
}

/// A write made by [`Partition::append_deferred_blocking`], waiting to be made durable by
/// [`Partition::await_durable_blocking`] on the same log instance.
#[derive(Debug)]
pub struct PendingPartitionAppend {
    log: Arc<strom_log::PartitionLog>,
    pending: PendingAppend,
}

impl Partition {
    /// Opens (creating or recovering) the partition's log. BLOCKING.
    pub(crate) fn open(
        topic: &str,
        index: i32,
        dir: PathBuf,
        config: LogConfig,
        clock: Arc<dyn Clock>,
        durability: &crate::durability::Durability,
    ) -> Result<Partition> {
        let log = HealingLog::open(dir.clone(), config, clock, durability.clone())?;
        Ok(Partition {
            topic: topic.to_owned(),
            index,
            dir,
            log,
            flusher_running: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            sealed: RwLock::new(false),
        })
    }

    /// The topic name.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The partition index.
    pub fn index(&self) -> i32 {
        self.index
    }

    /// The partition's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends a produce payload (one or more v2 batches). BLOCKING: run on a blocking thread.
    ///
    /// On a compacted topic (`cleanup.policy` includes `compact`) a record without a key
    /// refuses the whole payload with [`Error::InvalidRecords`], as Kafka does (the log checks
    /// it while validating the batches, see [`strom_log::Error::KeylessRecords`]).
    ///
    /// The two halves, [`append_deferred_blocking`](Self::append_deferred_blocking) then
    /// [`await_durable_blocking`](Self::await_durable_blocking), back to back.
    pub fn append_blocking(&self, batches: &mut [u8]) -> Result<AppendInfo> {
        let pending = self.append_deferred_blocking(batches)?;
        self.await_durable_blocking(pending)
    }

    /// Refuses a payload with data on a sealed partition; transaction markers (control
    /// batches) pass, so a transaction open when the partition was sealed can still end. A
    /// payload that does not parse counts as data.
    fn check_unsealed(&self, sealed: bool, payload: &[u8]) -> Result<()> {
        if !sealed {
            return Ok(());
        }
        let markers_only = strom_record::stored_batches(payload)
            .all(|batch| batch.is_ok_and(|(header, _)| header.is_control()));
        if markers_only {
            Ok(())
        } else {
            Err(Error::PartitionSealed {
                topic: self.topic.clone(),
                partition: self.index,
            })
        }
    }

    /// Seals the partition (a Kinesis shard closed by resharding) and returns its log end
    /// offset, which no data append can move from then on: an append writing when this is
    /// called finishes first, later ones are refused with [`Error::PartitionSealed`].
    /// Transaction markers are still taken. BLOCKING (waits for in-flight writes).
    pub fn seal_blocking(&self) -> i64 {
        let mut sealed = self.sealed.write().unwrap_or_else(PoisonError::into_inner);
        *sealed = true;
        self.log_end_offset()
    }

    /// Lifts a seal (a reshard whose metadata write failed after the seal). BLOCKING.
    pub(crate) fn unseal_blocking(&self) {
        *self.sealed.write().unwrap_or_else(PoisonError::into_inner) = false;
    }

    /// Whether the partition is sealed (see [`seal_blocking`](Self::seal_blocking)).
    pub fn is_sealed(&self) -> bool {
        *self.sealed.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The broker's error for a failed append: the log's refusal of keyless records (compacted
    /// topics) becomes [`Error::InvalidRecords`] naming the topic and partition.
    fn append_error(&self, error: Error) -> Error {
        match error {
            Error::Log(strom_log::Error::KeylessRecords { indexes }) => Error::InvalidRecords {
                topic: self.topic.clone(),
                partition: self.index,
                indexes,
                reason: crate::RecordRejection::MissingKeyOnCompactedTopic,
            },
            other => other,
        }
    }

    /// [deferred-durability] The first half of [`append_blocking`](Self::append_blocking):
    /// validates (including the keyless-record refusal of compacted topics) and writes,
    /// returning before the write is durable (under `always`, before it is visible).
    /// Acknowledge only after [`await_durable_blocking`](Self::await_durable_blocking). Writes
    /// are ordered by the calls to this. BLOCKING.
    pub fn append_deferred_blocking(&self, batches: &mut [u8]) -> Result<PendingPartitionAppend> {
        self.check_open()?;
        let sealed = self.sealed.read().unwrap_or_else(PoisonError::into_inner);
        self.check_unsealed(*sealed, batches)?;
        let log = self.log.get();
        let result = log.append_deferred(batches, LEADER_EPOCH);
        drop(sealed);
        // Under `interval`/`never` the watermark moved with the write.
        self.publish();
        let pending = self.checked(result).map_err(|e| self.append_error(e))?;
        Ok(PendingPartitionAppend { log, pending })
    }

    /// The second half of [`append_blocking`](Self::append_blocking): returns once `pending`
    /// is as durable as the partition's fsync policy promises. Waits on the log instance the
    /// first half wrote to: if healing replaced it meanwhile, this fails with a storage error
    /// (the write is not acknowledged). BLOCKING.
    pub fn await_durable_blocking(&self, pending: PendingPartitionAppend) -> Result<AppendInfo> {
        let PendingPartitionAppend { log, pending } = pending;
        let result = log.await_durable(pending);
        // Publish even on error: a failed group commit may still have moved the watermark for
        // other writers' batches.
        self.publish();
        match result {
            Err(strom_log::Error::Closed) if !self.closed.load(Ordering::Acquire) => {
                // The partition is open: its log was swapped by healing under this append.
                Err(Error::Log(strom_log::Error::Poisoned))
            }
            other => self.checked(other),
        }
    }

    /// Appends on the blocking pool.
    pub async fn append(self: &Arc<Self>, mut batches: Vec<u8>) -> Result<AppendInfo> {
        let this = Arc::clone(self);
        tokio::task::spawn_blocking(move || this.append_blocking(&mut batches))
            .await
            .map_err(|_| Error::ShuttingDown)?
    }

    /// Reads whole batches from `offset`, at most `max_bytes` (the first batch always whole).
    /// BLOCKING.
    pub fn read_blocking(&self, offset: i64, max_bytes: usize) -> Result<ReadOutcome> {
        self.check_open()?;
        self.read_salvaging(offset, |log| {
            outcome(log.read(offset, max_bytes)?, Vec::new())
        })
    }

    /// Runs `read`; if it meets damaged data ([`strom_log::Error::Corrupt`]), has the log take
    /// the damaged range out of service and runs it again, so the reader gets
    /// [`strom_log::Error::DamagedRange`] if `offset` is in the range (Kafka's
    /// `CORRUPT_MESSAGE`), or the data after it otherwise. Bounded: a read that keeps meeting
    /// new damage gets the error after a few ranges.
    fn read_salvaging(
        &self,
        offset: i64,
        read: impl Fn(&strom_log::PartitionLog) -> Result<ReadOutcome>,
    ) -> Result<ReadOutcome> {
        const MAX_RANGES_PER_READ: usize = 4;
        let mut attempt = 0;
        loop {
            let log = self.log.get();
            match read(&log) {
                Err(Error::Log(strom_log::Error::Corrupt { .. }))
                    if attempt < MAX_RANGES_PER_READ =>
                {
                    attempt += 1;
                    if log.quarantine(offset)?.is_none() {
                        // Nothing found to take out of service: report the damage as it is.
                        return read(&log);
                    }
                }
                other => return other,
            }
        }
    }

    /// Ranges of this partition taken out of service because the data in them is damaged on
    /// disk, as offsets `[first, end)` (a metric; reads in them fail with `CORRUPT_MESSAGE`).
    pub fn damaged_ranges(&self) -> Vec<(i64, i64)> {
        self.log.get().damaged_ranges()
    }

    /// The partition's current log (a healed one after a poisoning failure, see
    /// [`crate::healing`]), for readers in this crate that need more than the reads above (the
    /// salvaging replay of internal topics).
    pub(crate) fn log(&self) -> Arc<strom_log::PartitionLog> {
        self.log.get()
    }

    /// A `read_committed` read: whole batches from `offset`, never at or past the last stable
    /// offset (an offset between it and the high watermark reads nothing), with the aborted
    /// transactions overlapping them. BLOCKING.
    pub fn read_committed_blocking(&self, offset: i64, max_bytes: usize) -> Result<ReadOutcome> {
        self.check_open()?;
        self.read_salvaging(offset, |log| {
            let committed = log.read_committed(offset, max_bytes)?;
            outcome(committed.read, committed.aborted_transactions)
        })
    }

    /// The offset below which `read_committed` readers see records: the high watermark, or
    /// the first offset of the earliest open transaction if lower. It moves only when the high
    /// watermark does (a marker append publishes one), so long polls wait on
    /// [`Partition::subscribe`] for it too.
    pub fn last_stable_offset(&self) -> i64 {
        self.log.get().last_stable_offset()
    }

    /// The aborted transactions overlapping `[from, to)`. BLOCKING (in memory, but takes the
    /// segment list lock).
    pub fn aborted_transactions(&self, from: i64, to: i64) -> Result<Vec<AbortedTxn>> {
        Ok(self.log.get().aborted_transactions(from, to)?)
    }

    /// The open transactions of this partition, earliest first.
    pub fn ongoing_transactions(&self) -> Vec<OngoingTxn> {
        self.log.get().ongoing_transactions()
    }

    /// The producers this partition remembers (`DescribeProducers`), by id.
    pub fn producers(&self) -> Vec<ProducerInfo> {
        self.log.get().producers()
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            Err(Error::Log(strom_log::Error::Closed))
        } else {
            Ok(())
        }
    }

    /// Marks the partition closed and wakes every fetch waiting on it.
    fn mark_closed(&self) {
        self.closed.store(true, Ordering::Release);
        self.log.mark_closed();
    }

    /// A receiver that sees every new high watermark (for long-poll fetches).
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.log.subscribe()
    }

    fn publish(&self) {
        self.log.publish();
    }

    /// Passes `result` on; if it is an error that poisoned the log, starts the log's
    /// background recovery (see [`crate::healing`]).
    fn checked<T>(&self, result: strom_log::Result<T>) -> Result<T> {
        if result.is_err() {
            self.log.heal_if_poisoned();
        }
        Ok(result?)
    }

    /// How many times this partition's log was reopened after a poisoning I/O failure since
    /// the broker started (a metric).
    pub fn recoveries(&self) -> u64 {
        self.log.recoveries()
    }

    /// Whether the log is being reopened after a poisoning I/O failure right now (writes fail
    /// with a storage error until it is done).
    pub fn is_recovering(&self) -> bool {
        self.log.is_recovering()
    }

    /// The offset below which records are visible to readers.
    pub fn high_watermark(&self) -> i64 {
        self.log.get().high_watermark()
    }

    /// The offset the next appended record will get.
    pub fn log_end_offset(&self) -> i64 {
        self.log.get().log_end_offset()
    }

    /// The first offset still in the log.
    pub fn log_start_offset(&self) -> i64 {
        self.log.get().log_start_offset()
    }

    /// `fdatasync` calls made for this partition since it was opened (metrics, tests).
    pub fn sync_count(&self) -> u64 {
        self.log.get().sync_count()
    }

    /// Total bytes on disk.
    pub fn size_bytes(&self) -> u64 {
        self.log.get().size_bytes()
    }

    /// First record with a timestamp at or after `ts`: `(offset, timestamp)`. BLOCKING.
    pub fn offset_for_timestamp_blocking(&self, ts: i64) -> Result<Option<(i64, i64)>> {
        Ok(self.log.get().offset_for_timestamp(ts)?)
    }

    /// The largest timestamp and the offset of the first record carrying it. BLOCKING.
    pub fn max_timestamp_blocking(&self) -> Result<Option<(i64, i64)>> {
        Ok(self.log.get().max_timestamp()?)
    }

    /// Advances the log start offset (DeleteRecords); returns the new log start. BLOCKING.
    pub fn delete_records_blocking(&self, before: i64) -> Result<i64> {
        self.checked(self.log.get().delete_records_before(before))
    }

    /// Applies retention now; returns the number of deleted segments. BLOCKING.
    pub fn apply_retention_blocking(&self) -> Result<usize> {
        self.checked(self.log.get().apply_retention())
    }

    /// What the log cleaner could do on this partition now (cheap: segment sizes and the
    /// cleaner checkpoint). BLOCKING.
    pub fn cleanable_blocking(&self, now_ms: i64) -> Result<strom_log::CleanableInfo> {
        self.check_open()?;
        Ok(self.log.get().cleanable(now_ms)?)
    }

    /// Compacts the cleanable closed segments (the log cleaner's work; appends and reads go on
    /// meanwhile). Returns early with what it did when `cancel` is set. BLOCKING.
    ///
    /// Each call cleans the partition's current log, so after a poisoning failure the next
    /// pass cleans the healed log; a clean running on a log abandoned meanwhile fails without
    /// touching the files (the abandoned log's swap refuses to run).
    pub fn clean_blocking(
        &self,
        now_ms: i64,
        throttler: &strom_log::Throttler,
        cancel: &AtomicBool,
    ) -> Result<strom_log::CleanStats> {
        self.check_open()?;
        self.checked(self.log.get().clean(now_ms, throttler, cancel))
    }

    /// Flushes to disk. BLOCKING.
    pub fn flush_blocking(&self) -> Result<()> {
        let flushed = self.log.get().flush();
        self.publish();
        self.checked(flushed)
    }

    /// Replaces the storage configuration (AlterConfigs).
    pub(crate) fn set_config(self: &Arc<Self>, config: LogConfig) {
        self.log.get().set_config(config);
        self.ensure_flusher();
    }

    /// Flushes and closes the log, then wakes fetch waiters so they see it. BLOCKING.
    pub(crate) fn close_blocking(&self) -> Result<()> {
        self.mark_closed();
        Ok(self.log.get().close()?)
    }

    /// Closes the log and removes its directory. BLOCKING.
    pub(crate) fn delete_blocking(self: Arc<Self>) -> Result<()> {
        self.mark_closed();
        self.log.wait_for_recovery();
        // No sync: the files are about to go (and a poisoned log could not sync anyway).
        self.log.get().abandon();
        match std::fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::metadata_io("remove partition dir", &self.dir, e)),
        }
    }

    /// Starts the interval-flush task if the policy is `interval` and none runs yet. The task
    /// holds only a weak reference and ends when the partition is dropped or the policy changes.
    pub(crate) fn ensure_flusher(self: &Arc<Self>) {
        if !matches!(self.log.get().config().fsync, FsyncPolicy::Interval(_)) {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.flusher_running.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak = Arc::downgrade(self);
        handle.spawn(async move {
            loop {
                let period = match weak.upgrade() {
                    Some(p) => match p.log.get().config().fsync {
                        FsyncPolicy::Interval(d) => d,
                        _ => {
                            p.flusher_running.store(false, Ordering::Release);
                            return;
                        }
                    },
                    None => return,
                };
                tokio::time::sleep(period).await;
                let Some(p) = weak.upgrade() else { return };
                let flushed = tokio::task::spawn_blocking(move || p.flush_blocking()).await;
                if let Ok(Err(e)) = flushed {
                    tracing::warn!(error = %e, "interval flush failed");
                }
            }
        });
    }
}
