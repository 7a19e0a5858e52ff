//! One partition: its storage log plus the high-watermark channel that fetch waiters watch.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use strom_log::{
    AbortedTxn, AppendInfo, Clock, FsyncPolicy, LogConfig, OngoingTxn, PartitionLog, PendingAppend,
    ProducerInfo,
};
use tokio::sync::watch;

use crate::error::{Error, Result};

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
#[derive(Debug)]
pub struct Partition {
    topic: String,
    index: i32,
    dir: PathBuf,
    log: Arc<PartitionLog>,
    high_watermark: watch::Sender<i64>,
    flusher_running: AtomicBool,
    closed: AtomicBool,
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
        let log = PartitionLog::open(&dir, config, clock)?;
        durability.enroll(&log);
        let (high_watermark, _) = watch::channel(log.high_watermark());
        Ok(Partition {
            topic: topic.to_owned(),
            index,
            dir,
            log: Arc::new(log),
            high_watermark,
            flusher_running: AtomicBool::new(false),
            closed: AtomicBool::new(false),
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
    pub fn append_blocking(&self, batches: &mut [u8]) -> Result<AppendInfo> {
        self.check_open()?;
        let result = self.log.append(batches, LEADER_EPOCH);
        // Publish even on error: a failed group commit may still have moved the watermark for
        // other writers' batches.
        self.publish();
        Ok(result?)
    }

    /// [deferred-durability] The first half of [`append_blocking`](Self::append_blocking):
    /// validates and writes, returning before the write is durable (under `always`, before it
    /// is visible). Acknowledge only after [`await_durable_blocking`](Self::await_durable_blocking).
    /// Writes are ordered by the calls to this. BLOCKING.
    pub fn append_deferred_blocking(&self, batches: &mut [u8]) -> Result<PendingAppend> {
        self.check_open()?;
        let result = self.log.append_deferred(batches, LEADER_EPOCH);
        // Under `interval`/`never` the watermark moved with the write.
        self.publish();
        Ok(result?)
    }

    /// The second half of [`append_blocking`](Self::append_blocking): returns once `pending`
    /// is as durable as the partition's fsync policy promises. BLOCKING.
    pub fn await_durable_blocking(&self, pending: PendingAppend) -> Result<AppendInfo> {
        let result = self.log.await_durable(pending);
        // Publish even on error, as `append_blocking` does.
        self.publish();
        Ok(result?)
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
        outcome(self.log.read(offset, max_bytes)?, Vec::new())
    }

    /// A `read_committed` read: whole batches from `offset`, never at or past the last stable
    /// offset (an offset between it and the high watermark reads nothing), with the aborted
    /// transactions overlapping them. BLOCKING.
    pub fn read_committed_blocking(&self, offset: i64, max_bytes: usize) -> Result<ReadOutcome> {
        self.check_open()?;
        let committed = self.log.read_committed(offset, max_bytes)?;
        outcome(committed.read, committed.aborted_transactions)
    }

    /// The offset below which `read_committed` readers see records: the high watermark, or
    /// the first offset of the earliest open transaction if lower. It moves only when the high
    /// watermark does (a marker append publishes one), so long polls wait on
    /// [`Partition::subscribe`] for it too.
    pub fn last_stable_offset(&self) -> i64 {
        self.log.last_stable_offset()
    }

    /// The aborted transactions overlapping `[from, to)`. BLOCKING (in memory, but takes the
    /// segment list lock).
    pub fn aborted_transactions(&self, from: i64, to: i64) -> Result<Vec<AbortedTxn>> {
        Ok(self.log.aborted_transactions(from, to)?)
    }

    /// The open transactions of this partition, earliest first.
    pub fn ongoing_transactions(&self) -> Vec<OngoingTxn> {
        self.log.ongoing_transactions()
    }

    /// The producers this partition remembers (`DescribeProducers`), by id.
    pub fn producers(&self) -> Vec<ProducerInfo> {
        self.log.producers()
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
        self.high_watermark.send_modify(|_| {});
    }

    /// A receiver that sees every new high watermark (for long-poll fetches).
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.high_watermark.subscribe()
    }

    fn publish(&self) {
        let hw = self.log.high_watermark();
        self.high_watermark.send_if_modified(|current| {
            if *current != hw {
                *current = hw;
                true
            } else {
                false
            }
        });
    }

    /// The offset below which records are visible to readers.
    pub fn high_watermark(&self) -> i64 {
        self.log.high_watermark()
    }

    /// The offset the next appended record will get.
    pub fn log_end_offset(&self) -> i64 {
        self.log.log_end_offset()
    }

    /// The first offset still in the log.
    pub fn log_start_offset(&self) -> i64 {
        self.log.log_start_offset()
    }

    /// `fdatasync` calls made for this partition since it was opened (metrics, tests).
    pub fn sync_count(&self) -> u64 {
        self.log.sync_count()
    }

    /// Total bytes on disk.
    pub fn size_bytes(&self) -> u64 {
        self.log.size_bytes()
    }

    /// First record with a timestamp at or after `ts`: `(offset, timestamp)`. BLOCKING.
    pub fn offset_for_timestamp_blocking(&self, ts: i64) -> Result<Option<(i64, i64)>> {
        Ok(self.log.offset_for_timestamp(ts)?)
    }

    /// The largest timestamp and the offset of the first record carrying it. BLOCKING.
    pub fn max_timestamp_blocking(&self) -> Result<Option<(i64, i64)>> {
        Ok(self.log.max_timestamp()?)
    }

    /// Advances the log start offset (DeleteRecords); returns the new log start. BLOCKING.
    pub fn delete_records_blocking(&self, before: i64) -> Result<i64> {
        Ok(self.log.delete_records_before(before)?)
    }

    /// Applies retention now; returns the number of deleted segments. BLOCKING.
    pub fn apply_retention_blocking(&self) -> Result<usize> {
        Ok(self.log.apply_retention()?)
    }

    /// Flushes to disk. BLOCKING.
    pub fn flush_blocking(&self) -> Result<()> {
        self.log.flush()?;
        self.publish();
        Ok(())
    }

    /// Replaces the storage configuration (AlterConfigs).
    pub(crate) fn set_config(self: &Arc<Self>, config: LogConfig) {
        self.log.set_config(config);
        self.ensure_flusher();
    }

    /// Flushes and closes the log, then wakes fetch waiters so they see it. BLOCKING.
    pub(crate) fn close_blocking(&self) -> Result<()> {
        self.mark_closed();
        Ok(self.log.close()?)
    }

    /// Closes the log and removes its directory. BLOCKING.
    pub(crate) fn delete_blocking(self: Arc<Self>) -> Result<()> {
        self.mark_closed();
        let dir = self.dir.clone();
        match Arc::try_unwrap(self) {
            Ok(partition) => match Arc::try_unwrap(partition.log) {
                Ok(log) => Ok(log.delete()?),
                Err(log) => remove_after_close(&log, &dir),
            },
            Err(shared) => remove_after_close(&shared.log, &dir),
        }
    }

    /// Starts the interval-flush task if the policy is `interval` and none runs yet. The task
    /// holds only a weak reference and ends when the partition is dropped or the policy changes.
    pub(crate) fn ensure_flusher(self: &Arc<Self>) {
        if !matches!(self.log.config().fsync, FsyncPolicy::Interval(_)) {
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
                    Some(p) => match p.log.config().fsync {
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

fn remove_after_close(log: &PartitionLog, dir: &Path) -> Result<()> {
    // Someone (an in-flight request) still holds the log: close it so further writes fail with
    // `Closed`, then remove the files ourselves.
    log.close()?;
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::metadata_io("remove partition dir", dir, e)),
    }
}
