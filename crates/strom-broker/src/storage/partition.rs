//! [`PartitionStore`]: one partition's log, as the broker core uses it.

use std::fmt::Debug;

use bytes::Bytes;
use tokio::sync::watch;

use crate::AppendInfo;
use crate::storage::{
    AbortedTxn, LogConfig, Offset, OngoingTxn, PendingWrite, ProducerInfo, StorageError,
};

/// Result alias of the storage seam.
pub type StorageResult<T> = std::result::Result<T, StorageError>;

/// What a read of a [`PartitionStore`] returned.
#[derive(Debug, Clone)]
pub struct StoreRead {
    /// The high watermark when the read ran.
    pub high_watermark: Offset,
    /// The last stable offset when the read ran.
    pub last_stable_offset: Offset,
    /// The log start offset when the read ran.
    pub log_start_offset: Offset,
    /// Whole record batches (v2, base offsets set, CRCs checked), empty when there was nothing
    /// to return.
    pub records: Bytes,
    /// For a committed read, the aborted transactions overlapping `records`; empty otherwise.
    pub aborted_transactions: Vec<AbortedTxn>,
}

/// One partition's log: what the broker's [`crate::Partition`] needs from storage, whatever
/// the backend (local segment files, or object storage sequenced by PostgreSQL).
///
/// # Contract
/// - **Offsets** are dense and monotonic: an append assigns `[base, last]` right after the
///   previous append's last offset; nothing below the log start offset is readable, nothing at
///   or past the high watermark is ever returned by a read.
/// - **Durability**: [`append_deferred`](Self::append_deferred) orders writes (the order of its
///   calls is the order of the offsets) and may return before the write is durable, and before
///   its offsets are known: a backend that assigns offsets in its commit (the cluster's) reports
///   them as -1 in the [`PendingWrite`] and for real in `await_durable`'s [`AppendInfo`];
///   [`await_durable`](Self::await_durable) returns only once the write is as durable as the
///   partition's policy promises (local: the fsync policy; cluster: committed in the
///   database). Nothing may be acknowledged to a producer before that.
/// - **Watermark notification**: every move of the high watermark (an append made durable, a
///   recovery moving it down, a close) is sent on [`subscribe`](Self::subscribe)'s channel:
///   long polls wait on it, never by sleeping.
/// - **Idempotence and transactions**: the store checks producer epochs and sequences on
///   append (errors: [`StorageError::ProducerFenced`], [`StorageError::OutOfOrderSequence`],
///   [`StorageError::DuplicateSequence`]) and answers a retried single batch with its
///   original offsets; it keeps the transaction index (ongoing and aborted transactions, the
///   last stable offset) from the control batches appended to it.
/// - **Failure**: a store whose state became unknown (a failed sync) answers
///   [`StorageError::Poisoned`] to writes until it has recovered, by itself if it can; after
///   [`close`](Self::close) or [`delete`](Self::delete) every call fails with
///   [`StorageError::Closed`].
/// - All methods may block (file or network I/O): the broker calls them from blocking threads.
///
/// # Backend-specific concerns
/// The local backend's log cleaner (compaction of segment files), its healing after a
/// poisoning I/O failure and its salvage of damaged segment data are not part of this
/// contract: they are reached through [`as_local`](Self::as_local), and a backend without them
/// keeps the defaults (no health counters, nothing to clean). A cluster backend runs its own
/// lifecycle jobs (merging objects, compaction) under its leases.
pub trait PartitionStore: Send + Sync + Debug {
    /// Validates and writes one or more v2 batches (stamping base offsets, `leader_epoch` and,
    /// for `LogAppendTime`, timestamps in place), returning before the write is durable.
    fn append_deferred(&self, batches: &mut [u8], leader_epoch: i32)
    -> StorageResult<PendingWrite>;

    /// Returns once `pending` (from this store's `append_deferred`) is durable.
    fn await_durable(&self, pending: PendingWrite) -> StorageResult<AppendInfo>;

    /// `append_deferred` then `await_durable`; a backend may do both at once.
    fn append(&self, batches: &mut [u8], leader_epoch: i32) -> StorageResult<AppendInfo> {
        let pending = self.append_deferred(batches, leader_epoch)?;
        self.await_durable(pending)
    }

    /// Whole batches from `offset`, at most `max_bytes` (the first batch always whole), below
    /// the high watermark. [`StorageError::OffsetOutOfRange`] outside `[log start, hw]`.
    fn read(&self, offset: Offset, max_bytes: usize) -> StorageResult<StoreRead>;

    /// A `read_committed` read: as [`read`](Self::read) but below the last stable offset, with
    /// the aborted transactions overlapping the batches returned.
    fn read_committed(&self, offset: Offset, max_bytes: usize) -> StorageResult<StoreRead>;

    /// The first offset still readable.
    fn log_start_offset(&self) -> Offset;
    /// The offset the next appended record will get.
    fn log_end_offset(&self) -> Offset;
    /// The offset below which records are visible to readers.
    fn high_watermark(&self) -> Offset;
    /// The offset below which no transaction is open (at most the high watermark).
    fn last_stable_offset(&self) -> Offset;

    /// The first record with a timestamp at or after `timestamp`: `(offset, timestamp)`.
    fn offset_for_timestamp(&self, timestamp: i64) -> StorageResult<Option<(Offset, i64)>>;
    /// The largest timestamp and the offset of the first record carrying it.
    fn max_timestamp(&self) -> StorageResult<Option<(Offset, i64)>>;

    /// The producers this partition remembers, by id.
    fn producers(&self) -> Vec<ProducerInfo>;
    /// The aborted transactions overlapping `[from, to)`.
    fn aborted_transactions(&self, from: Offset, to: Offset) -> StorageResult<Vec<AbortedTxn>>;
    /// The open transactions, earliest first.
    fn ongoing_transactions(&self) -> Vec<OngoingTxn>;

    /// Advances the log start offset to `before` (DeleteRecords); returns the new log start.
    fn delete_records(&self, before: Offset) -> StorageResult<Offset>;
    /// Applies retention (`retention.ms`, `retention.bytes`) now; returns how many storage
    /// units (segments, objects) went.
    fn apply_retention(&self) -> StorageResult<usize>;
    /// Bytes stored for this partition.
    fn size_bytes(&self) -> u64;

    /// Seals the partition in the shared store, if the backend shares partitions between
    /// brokers: data batches committed after this are refused with [`StorageError::Sealed`]
    /// (transaction markers pass), whichever broker wrote them. Returns the end offset the
    /// seal fixed, or `None` when the backend has no shared seal (a single node: the broker's
    /// own seal, which waits for its writes in flight, is enough). Idempotent: sealing again
    /// returns the first seal's offset.
    fn seal(&self) -> StorageResult<Option<Offset>> {
        Ok(None)
    }

    /// Lifts a seal set by [`seal`](Self::seal) (a reshard whose metadata write failed).
    fn unseal(&self) -> StorageResult<()> {
        Ok(())
    }

    /// Makes everything appended so far durable.
    fn flush(&self) -> StorageResult<()>;
    /// Flushes and closes; wakes every watermark subscriber.
    fn close(&self) -> StorageResult<()>;
    /// Closes without flushing and removes the partition's data (topic deletion).
    fn delete(&self) -> StorageResult<()>;

    /// A receiver that sees every new high watermark.
    fn subscribe(&self) -> watch::Receiver<i64>;

    /// The partition's storage settings (retention, cleanup policy, max batch size…).
    fn config(&self) -> LogConfig;
    /// Replaces the storage settings (AlterConfigs).
    fn set_config(&self, config: LogConfig);

    /// Syncs made for this partition (a metric; 0 where the backend has none).
    fn sync_count(&self) -> u64 {
        0
    }
    /// Recoveries after a poisoning failure since the broker started (a metric).
    fn recoveries(&self) -> u64 {
        0
    }
    /// Whether a recovery is under way (writes fail until it is done).
    fn is_recovering(&self) -> bool {
        false
    }
    /// Offset ranges `[first, end)` taken out of service as damaged (a metric).
    fn damaged_ranges(&self) -> Vec<(i64, i64)> {
        Vec::new()
    }

    /// The local backend's store, for its backend-specific work (log cleaner, salvage);
    /// `None` for every other backend.
    fn as_local(&self) -> Option<&crate::storage::local::LocalPartitionStore> {
        None
    }
}
