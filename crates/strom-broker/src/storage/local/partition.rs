//! [`LocalPartitionStore`]: a partition in `strom-log` segment files, healed after a poisoning
//! I/O failure ([`crate::healing`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use bytes::Bytes;
use strom_log::{Clock, PartitionLog};
use tokio::sync::watch;

use crate::AppendInfo;
use crate::healing::HealingLog;
use crate::storage::{
    AbortedTxn, LogConfig, Offset, OngoingTxn, PartitionStore, PendingWrite, ProducerInfo,
    StorageError, StorageResult, StoreRead,
};

/// One partition of the local backend: a directory of segments
/// (`<data-dir>/<topic>-<partition>/`), the `HealingLog` that replaces the log after a
/// poisoning failure, and the high-watermark channel.
///
/// Every call goes to the current log instance; results that are errors start the background
/// recovery when they poisoned the log, and every append, flush and failure publishes the high
/// watermark (a failed group commit may still have moved it for other writers' batches).
#[derive(Debug)]
pub struct LocalPartitionStore {
    dir: PathBuf,
    log: Arc<HealingLog>,
}

impl LocalPartitionStore {
    /// Opens (creating or recovering) the log in `dir`, enrolled in the broker's commit window.
    /// BLOCKING.
    pub(crate) fn open(
        dir: PathBuf,
        config: LogConfig,
        clock: Arc<dyn Clock>,
        durability: &crate::durability::Durability,
    ) -> StorageResult<LocalPartitionStore> {
        let log = HealingLog::open(dir.clone(), config, clock, durability.clone())?;
        Ok(LocalPartitionStore { dir, log })
    }

    /// The partition's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The current log (a healed one after a poisoning failure), for the local-only work
    /// (cleaner, salvaging replay of internal topics).
    pub fn log(&self) -> Arc<PartitionLog> {
        self.log.get()
    }

    /// What the log cleaner could do now. BLOCKING.
    pub fn cleanable(&self, now_ms: i64) -> StorageResult<strom_log::CleanableInfo> {
        Ok(self.log.get().cleanable(now_ms)?)
    }

    /// Compacts the cleanable closed segments of the current log. BLOCKING.
    pub fn clean(
        &self,
        now_ms: i64,
        throttler: &strom_log::Throttler,
        cancel: &AtomicBool,
    ) -> StorageResult<strom_log::CleanStats> {
        self.checked(self.log.get().clean(now_ms, throttler, cancel))
    }

    fn publish(&self) {
        self.log.publish();
    }

    /// Passes `result` on; if it is an error that poisoned the log, starts the log's
    /// background recovery (see [`crate::healing`]).
    fn checked<T>(&self, result: strom_log::Result<T>) -> StorageResult<T> {
        if result.is_err() {
            self.log.heal_if_poisoned();
        }
        Ok(result?)
    }

    /// Runs `read`; if it meets damaged data ([`StorageError::Corrupt`]), has the log take the
    /// damaged range out of service and runs it again, so the reader gets
    /// [`StorageError::DamagedRange`] if `offset` is in the range (Kafka's `CORRUPT_MESSAGE`),
    /// or the data after it otherwise. Bounded: a read that keeps meeting new damage gets the
    /// error after a few ranges.
    fn read_salvaging(
        &self,
        offset: i64,
        read: impl Fn(&PartitionLog) -> StorageResult<StoreRead>,
    ) -> StorageResult<StoreRead> {
        const MAX_RANGES_PER_READ: usize = 4;
        let mut attempt = 0;
        loop {
            let log = self.log.get();
            match read(&log) {
                Err(StorageError::Corrupt { .. }) if attempt < MAX_RANGES_PER_READ => {
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
}

/// Copies a read's batches out (checking their CRCs) into a [`StoreRead`].
fn store_read(
    result: strom_log::ReadResult,
    aborted_transactions: Vec<AbortedTxn>,
) -> StorageResult<StoreRead> {
    let records = match result.data {
        Some(slice) => Bytes::from(slice.read_to_vec()?),
        None => Bytes::new(),
    };
    Ok(StoreRead {
        high_watermark: Offset(result.high_watermark),
        last_stable_offset: Offset(result.last_stable_offset),
        log_start_offset: Offset(result.log_start_offset),
        records,
        aborted_transactions,
    })
}

impl PartitionStore for LocalPartitionStore {
    fn append_deferred(
        &self,
        batches: &mut [u8],
        leader_epoch: i32,
    ) -> StorageResult<PendingWrite> {
        let log = self.log.get();
        let result = log.append_deferred(batches, leader_epoch);
        // Under `interval`/`never` the watermark moved with the write.
        self.publish();
        let pending = self.checked(result)?;
        Ok(PendingWrite {
            info: *pending.info(),
            end: Offset(pending.end_offset()),
            instance: log,
            local: Some(pending),
        })
    }

    fn await_durable(&self, pending: PendingWrite) -> StorageResult<AppendInfo> {
        // Waits on the log instance the first half wrote to: if healing replaced it meanwhile,
        // this fails (the write is not acknowledged).
        let (Some(local), Ok(log)) = (pending.local, pending.instance.downcast::<PartitionLog>())
        else {
            // Not a write of this backend.
            return Err(StorageError::Closed);
        };
        let result = log.await_durable(local);
        self.publish();
        self.checked(result)
    }

    fn append(&self, batches: &mut [u8], leader_epoch: i32) -> StorageResult<AppendInfo> {
        let result = self.log.get().append(batches, leader_epoch);
        self.publish();
        self.checked(result)
    }

    fn read(&self, offset: Offset, max_bytes: usize) -> StorageResult<StoreRead> {
        self.read_salvaging(offset.0, |log| {
            store_read(log.read(offset.0, max_bytes)?, Vec::new())
        })
    }

    fn read_committed(&self, offset: Offset, max_bytes: usize) -> StorageResult<StoreRead> {
        self.read_salvaging(offset.0, |log| {
            let committed = log.read_committed(offset.0, max_bytes)?;
            store_read(committed.read, committed.aborted_transactions)
        })
    }

    fn log_start_offset(&self) -> Offset {
        Offset(self.log.get().log_start_offset())
    }

    fn log_end_offset(&self) -> Offset {
        Offset(self.log.get().log_end_offset())
    }

    fn high_watermark(&self) -> Offset {
        Offset(self.log.get().high_watermark())
    }

    fn last_stable_offset(&self) -> Offset {
        Offset(self.log.get().last_stable_offset())
    }

    fn offset_for_timestamp(&self, timestamp: i64) -> StorageResult<Option<(Offset, i64)>> {
        Ok(self
            .log
            .get()
            .offset_for_timestamp(timestamp)?
            .map(|(o, t)| (Offset(o), t)))
    }

    fn max_timestamp(&self) -> StorageResult<Option<(Offset, i64)>> {
        Ok(self.log.get().max_timestamp()?.map(|(o, t)| (Offset(o), t)))
    }

    fn producers(&self) -> Vec<ProducerInfo> {
        self.log.get().producers()
    }

    fn aborted_transactions(&self, from: Offset, to: Offset) -> StorageResult<Vec<AbortedTxn>> {
        Ok(self.log.get().aborted_transactions(from.0, to.0)?)
    }

    fn ongoing_transactions(&self) -> Vec<OngoingTxn> {
        self.log.get().ongoing_transactions()
    }

    fn delete_records(&self, before: Offset) -> StorageResult<Offset> {
        self.checked(self.log.get().delete_records_before(before.0))
            .map(Offset)
    }

    fn apply_retention(&self) -> StorageResult<usize> {
        self.checked(self.log.get().apply_retention())
    }

    fn size_bytes(&self) -> u64 {
        self.log.get().size_bytes()
    }

    fn flush(&self) -> StorageResult<()> {
        let flushed = self.log.get().flush();
        self.publish();
        self.checked(flushed)
    }

    fn close(&self) -> StorageResult<()> {
        self.log.mark_closed();
        Ok(self.log.get().close()?)
    }

    fn delete(&self) -> StorageResult<()> {
        self.log.mark_closed();
        self.log.wait_for_recovery();
        // No sync: the files are about to go (and a poisoned log could not sync anyway).
        self.log.get().abandon();
        match std::fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StorageError::Unavailable {
                op: "remove partition dir",
                resource: self.dir.display().to_string(),
                source: Arc::new(e),
            }),
        }
    }

    fn subscribe(&self) -> watch::Receiver<i64> {
        self.log.subscribe()
    }

    fn config(&self) -> LogConfig {
        self.log.get().config()
    }

    fn set_config(&self, config: LogConfig) {
        self.log.get().set_config(config);
    }

    fn sync_count(&self) -> u64 {
        self.log.get().sync_count()
    }

    fn recoveries(&self) -> u64 {
        self.log.recoveries()
    }

    fn is_recovering(&self) -> bool {
        self.log.is_recovering()
    }

    fn damaged_ranges(&self) -> Vec<(i64, i64)> {
        self.log.get().damaged_ranges()
    }

    fn as_local(&self) -> Option<&LocalPartitionStore> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{PartitionIndex, StorageBackend, TopicPartition};

    #[test]
    fn the_local_store_passes_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let backend =
            crate::storage::local::LocalBackend::open(dir.path(), Arc::new(crate::SystemClock))
                .unwrap();
        let mut n = 0;
        crate::storage::conformance::partition_store_suite(&mut |config| {
            n += 1;
            let partition = TopicPartition {
                topic: "conformance",
                index: PartitionIndex(n),
            };
            backend.open_partition(partition, config).unwrap()
        });
    }
}
