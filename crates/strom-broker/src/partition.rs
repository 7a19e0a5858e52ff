//! One partition: its storage ([`PartitionStore`]) plus what the broker adds on top (the
//! keyless-record check of compacted topics, the closed flag, the interval flusher).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use bytes::Bytes;
use strom_log::{AbortedTxn, AppendInfo, FsyncPolicy, LogConfig, OngoingTxn, ProducerInfo};
use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::storage::{
    Offset, PartitionStore, PendingWrite, StorageBackend, StorageError, StoreRead,
};

/// The leader epoch written into every batch. A single node never changes leader, so this is 0
/// until cluster mode bumps it on leader changes.
pub const LEADER_EPOCH: i32 = 0;

/// One partition of a topic.
///
/// Storage is a [`PartitionStore`] (the local backend's segment files, or the cluster
/// backend's objects): it serialises writers internally and lets readers proceed without them,
/// so any number of connections may call [`Partition::append_blocking`] and
/// [`Partition::read_blocking`] concurrently from blocking threads. After every append the
/// store publishes the new high watermark on a `watch` channel, which is what long-poll
/// fetches wait on.
///
/// On the local backend, a storage failure that poisons the log (a failed `fdatasync`) is
/// answered with an error and repaired in the background without restarting the broker: see
/// `healing.rs`.
#[derive(Debug)]
pub struct Partition {
    topic: String,
    index: i32,
    store: Arc<dyn PartitionStore>,
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
    /// their producers' transactional batches, see [`crate::storage::AbortedFilter`]); empty
    /// for an uncommitted read.
    pub aborted_transactions: Vec<AbortedTxn>,
}

impl From<StoreRead> for ReadOutcome {
    fn from(r: StoreRead) -> Self {
        ReadOutcome {
            high_watermark: r.high_watermark.0,
            last_stable_offset: r.last_stable_offset.0,
            log_start_offset: r.log_start_offset.0,
            records: r.records,
            aborted_transactions: r.aborted_transactions,
        }
    }
}

/// A write made by [`Partition::append_deferred_blocking`], waiting to be made durable by
/// [`Partition::await_durable_blocking`].
#[derive(Debug)]
pub struct PendingPartitionAppend {
    pending: PendingWrite,
}

impl PendingPartitionAppend {
    /// What the append assigned (offsets, timestamps); not yet an acknowledgement.
    pub fn info(&self) -> &AppendInfo {
        self.pending.info()
    }
}

impl Partition {
    /// A partition over `store` (opened by the broker's [`crate::storage::StorageBackend`]).
    pub(crate) fn new(topic: &str, index: i32, store: Arc<dyn PartitionStore>) -> Partition {
        Partition {
            topic: topic.to_owned(),
            index,
            store,
            flusher_running: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            sealed: RwLock::new(false),
        }
    }

    /// The partition's storage.
    pub fn store(&self) -> &Arc<dyn PartitionStore> {
        &self.store
    }

    /// The topic name.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The partition index.
    pub fn index(&self) -> i32 {
        self.index
    }

    /// The partition's directory, on the local backend.
    pub fn dir(&self) -> Option<&Path> {
        self.store.as_local().map(|l| l.dir())
    }

    /// Appends a produce payload (one or more v2 batches). BLOCKING: run on a blocking thread.
    ///
    /// On a compacted topic (`cleanup.policy` includes `compact`) a record without a key
    /// refuses the whole payload with [`Error::InvalidRecords`], as Kafka does (the store checks
    /// it while validating the batches, see [`StorageError::KeylessRecords`]).
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
    ///
    /// On a store shared between brokers (cluster mode) the seal is also set in the shared
    /// store ([`PartitionStore::seal`]), which refuses data other brokers commit after it, and
    /// the end offset is the one it fixed; if that fails the partition is left unsealed.
    pub fn seal_blocking(&self) -> Result<i64> {
        let mut sealed = self.sealed.write().unwrap_or_else(PoisonError::into_inner);
        let was = *sealed;
        *sealed = true;
        match self.store.seal() {
            Ok(Some(end)) => Ok(end.0),
            Ok(None) => Ok(self.log_end_offset()),
            Err(e) => {
                *sealed = was;
                Err(Error::Storage(e))
            }
        }
    }

    /// Seals the partition on this broker only (a closed shard read from the metadata log,
    /// whose shared seal, if any, was set by the broker that closed it). BLOCKING (waits for
    /// in-flight writes).
    pub(crate) fn seal_local_blocking(&self) {
        *self.sealed.write().unwrap_or_else(PoisonError::into_inner) = true;
    }

    /// Lifts a seal (a reshard whose metadata write failed after the seal), here and in the
    /// shared store. BLOCKING.
    pub(crate) fn unseal_blocking(&self) {
        let mut sealed = self.sealed.write().unwrap_or_else(PoisonError::into_inner);
        if let Err(e) = self.store.unseal() {
            tracing::warn!(topic = %self.topic, partition = self.index, error = %e, "lifting the shared seal failed");
        }
        *sealed = false;
    }

    /// Whether the partition is sealed (see [`seal_blocking`](Self::seal_blocking)).
    pub fn is_sealed(&self) -> bool {
        *self.sealed.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The broker's error for a failed append: the store's refusal of keyless records
    /// (compacted topics) becomes [`Error::InvalidRecords`] naming the topic and partition.
    fn append_error(&self, error: StorageError) -> Error {
        match error {
            StorageError::Sealed => Error::PartitionSealed {
                topic: self.topic.clone(),
                partition: self.index,
            },
            StorageError::KeylessRecords { indexes } => Error::InvalidRecords {
                topic: self.topic.clone(),
                partition: self.index,
                indexes,
                reason: crate::RecordRejection::MissingKeyOnCompactedTopic,
            },
            other => Error::Storage(other),
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
        let result = self.store.append_deferred(batches, LEADER_EPOCH);
        drop(sealed);
        let pending = result.map_err(|e| self.append_error(e))?;
        Ok(PendingPartitionAppend { pending })
    }

    /// The second half of [`append_blocking`](Self::append_blocking): returns once `pending`
    /// is as durable as the partition's fsync policy promises. Waits on the log instance the
    /// first half wrote to: if healing replaced it meanwhile, this fails with a storage error
    /// (the write is not acknowledged). BLOCKING.
    pub fn await_durable_blocking(&self, pending: PendingPartitionAppend) -> Result<AppendInfo> {
        match self.store.await_durable(pending.pending) {
            Err(StorageError::Closed) if !self.closed.load(Ordering::Acquire) => {
                // The partition is open: its log was swapped by healing under this append.
                Err(Error::Storage(StorageError::Poisoned))
            }
            Err(e) => Err(self.append_error(e)),
            Ok(info) => Ok(info),
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
        Ok(self.store.read(Offset(offset), max_bytes)?.into())
    }

    /// Ranges of this partition taken out of service because the data in them is damaged on
    /// disk, as offsets `[first, end)` (a metric; reads in them fail with `CORRUPT_MESSAGE`).
    pub fn damaged_ranges(&self) -> Vec<(i64, i64)> {
        self.store.damaged_ranges()
    }

    /// A `read_committed` read: whole batches from `offset`, never at or past the last stable
    /// offset (an offset between it and the high watermark reads nothing), with the aborted
    /// transactions overlapping them. BLOCKING.
    pub fn read_committed_blocking(&self, offset: i64, max_bytes: usize) -> Result<ReadOutcome> {
        self.check_open()?;
        Ok(self.store.read_committed(Offset(offset), max_bytes)?.into())
    }

    /// The offset below which `read_committed` readers see records: the high watermark, or
    /// the first offset of the earliest open transaction if lower. It moves only when the high
    /// watermark does (a marker append publishes one), so long polls wait on
    /// [`Partition::subscribe`] for it too.
    pub fn last_stable_offset(&self) -> i64 {
        self.store.last_stable_offset().0
    }

    /// The aborted transactions overlapping `[from, to)`. BLOCKING (in memory, but takes the
    /// segment list lock).
    pub fn aborted_transactions(&self, from: i64, to: i64) -> Result<Vec<AbortedTxn>> {
        Ok(self.store.aborted_transactions(Offset(from), Offset(to))?)
    }

    /// The open transactions of this partition, earliest first.
    pub fn ongoing_transactions(&self) -> Vec<OngoingTxn> {
        self.store.ongoing_transactions()
    }

    /// The producers this partition remembers (`DescribeProducers`), by id.
    pub fn producers(&self) -> Vec<ProducerInfo> {
        self.store.producers()
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            Err(Error::Storage(StorageError::Closed))
        } else {
            Ok(())
        }
    }

    /// A receiver that sees every new high watermark (for long-poll fetches).
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.store.subscribe()
    }

    /// How many times this partition's log was reopened after a poisoning I/O failure since
    /// the broker started (a metric).
    pub fn recoveries(&self) -> u64 {
        self.store.recoveries()
    }

    /// Whether the log is being reopened after a poisoning I/O failure right now (writes fail
    /// with a storage error until it is done).
    pub fn is_recovering(&self) -> bool {
        self.store.is_recovering()
    }

    /// The offset below which records are visible to readers.
    pub fn high_watermark(&self) -> i64 {
        self.store.high_watermark().0
    }

    /// The offset the next appended record will get.
    pub fn log_end_offset(&self) -> i64 {
        self.store.log_end_offset().0
    }

    /// The first offset still in the log.
    pub fn log_start_offset(&self) -> i64 {
        self.store.log_start_offset().0
    }

    /// `fdatasync` calls made for this partition since it was opened (metrics, tests).
    pub fn sync_count(&self) -> u64 {
        self.store.sync_count()
    }

    /// Total bytes on disk.
    pub fn size_bytes(&self) -> u64 {
        self.store.size_bytes()
    }

    /// First record with a timestamp at or after `ts`: `(offset, timestamp)`. BLOCKING.
    pub fn offset_for_timestamp_blocking(&self, ts: i64) -> Result<Option<(i64, i64)>> {
        Ok(self.store.offset_for_timestamp(ts)?.map(|(o, t)| (o.0, t)))
    }

    /// The largest timestamp and the offset of the first record carrying it. BLOCKING.
    pub fn max_timestamp_blocking(&self) -> Result<Option<(i64, i64)>> {
        Ok(self.store.max_timestamp()?.map(|(o, t)| (o.0, t)))
    }

    /// Advances the log start offset (DeleteRecords); returns the new log start. BLOCKING.
    pub fn delete_records_blocking(&self, before: i64) -> Result<i64> {
        Ok(self.store.delete_records(Offset(before))?.0)
    }

    /// Applies retention now; returns the number of deleted segments. BLOCKING.
    pub fn apply_retention_blocking(&self) -> Result<usize> {
        Ok(self.store.apply_retention()?)
    }

    /// What the log cleaner could do on this partition now (cheap: segment sizes and the
    /// cleaner checkpoint). BLOCKING.
    ///
    /// `None` on a backend without the local log cleaner.
    pub fn cleanable_blocking(&self, now_ms: i64) -> Result<Option<strom_log::CleanableInfo>> {
        self.check_open()?;
        match self.store.as_local() {
            Some(local) => Ok(Some(local.cleanable(now_ms)?)),
            None => Ok(None),
        }
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
        match self.store.as_local() {
            Some(local) => Ok(local.clean(now_ms, throttler, cancel)?),
            None => Ok(strom_log::CleanStats::default()),
        }
    }

    /// Flushes to disk. BLOCKING.
    pub fn flush_blocking(&self) -> Result<()> {
        Ok(self.store.flush()?)
    }

    /// Replaces the storage configuration (AlterConfigs).
    pub(crate) fn set_config(self: &Arc<Self>, config: LogConfig) {
        self.store.set_config(config);
        self.ensure_flusher();
    }

    /// Flushes and closes the log, then wakes fetch waiters so they see it. BLOCKING.
    pub(crate) fn close_blocking(&self) -> Result<()> {
        self.closed.store(true, Ordering::Release);
        Ok(self.store.close()?)
    }

    /// Closes the partition and has `storage` (the backend that opened it) delete its data.
    /// BLOCKING.
    pub(crate) fn delete_blocking(self: Arc<Self>, storage: &dyn StorageBackend) -> Result<()> {
        self.closed.store(true, Ordering::Release);
        storage.delete_partition(self.store.as_ref())
    }

    /// Starts the interval-flush task if the policy is `interval` and none runs yet. The task
    /// holds only a weak reference and ends when the partition is dropped or the policy changes.
    pub(crate) fn ensure_flusher(self: &Arc<Self>) {
        if !matches!(self.store.config().fsync, FsyncPolicy::Interval(_)) {
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
                    Some(p) => match p.store.config().fsync {
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
