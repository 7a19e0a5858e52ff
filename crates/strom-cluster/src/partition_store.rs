//! [`ClusterPartitionStore`]: one partition behind the broker's `PartitionStore` seam, its
//! batches written by the broker's [`crate::Writer`] and read through its [`crate::Reader`].
//!
//! **Append.** `append_deferred` validates the produced batches as the local log does (size
//! against `max.message.bytes`, header, CRC-32C and every record, the KIP-937 timestamp
//! window), stamps the leader epoch (and the append time for `LogAppendTime` topics), and
//! hands each batch to the writer in order: offsets are assigned later, by the flush's commit
//! transaction, so the [`PendingWrite`] it returns carries no offsets yet (its `info` is a
//! placeholder, `end` is -1). `await_durable` waits for the commit and returns the real
//! offsets; only then is the producer answered. A payload of several batches is enqueued
//! under one lock so its batches stay adjacent in their flush; should they straddle two
//! flushes, another broker's commit may land between them (clients send one batch per
//! partition per request, so this does not arise with them).
//!
//! **Transactions.** Transactional batches and transaction markers (control batches, written
//! by whichever broker coordinates the transaction) are checked and indexed by the writer's
//! commit transaction, like idempotent batches: a marker of an older producer epoch is fenced,
//! a transactional batch opens its producer's transaction (`strom_producer_states.
//! txn_first_offset`), a marker closes it, and an ABORT marker adds a row to
//! `strom_aborted_txns`. The last stable offset is read with the high watermark in one
//! statement (`crate::metadata::partition_offsets`); [`PartitionStore::last_stable_offset`]
//! answers from the value read at the current high watermark and reads it again once the
//! watermark moved (every change of the LSO is a commit that moves the watermark, which every
//! broker learns through the notifier).
//!
//! DeleteRecords moves the log start in
//! PostgreSQL; the batches below it, and those retention passes, are dropped from the index by
//! the retention job and their objects deleted by the reclaim job ([`crate::lifecycle`]), on
//! whichever broker holds those jobs' leases (`apply_retention` here returns 0). The log start
//! is cached and re-read at most once a second, since another broker's job may move it.
//!
//! **Watermark.** Each store keeps its high watermark in a `watch` channel fed by the
//! [`crate::Notifier`] (commits of every broker, through LISTEN/NOTIFY) and by its own
//! commits; the non-blocking getters (`high_watermark`, `log_end_offset`) answer from it.
//! Reads ask PostgreSQL, so they never return past the committed watermark.

use std::any::Any;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use strom_broker::AppendInfo;
use strom_broker::storage::{
    AbortedTxn, LogConfig, Offset, OngoingTxn, PartitionStore, PendingWrite, ProducerInfo,
    StorageError, StorageResult, StoreRead, TimestampType,
};
use strom_record::BatchHeader;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::backend::{Engine, storage_error};
use crate::metadata::TopicPartition;
use crate::reader::OffsetSpec;
use crate::writer::Enqueued;

/// How old the cached log start may get before `log_start_offset` reads it again.
const LOG_START_REFRESH: Duration = Duration::from_secs(1);

/// One partition of the cluster backend (see the module docs).
#[derive(Debug)]
pub struct ClusterPartitionStore {
    engine: Arc<Engine>,
    tp: TopicPartition,
    config: RwLock<LogConfig>,
    high_watermark: Arc<watch::Sender<i64>>,
    log_start: AtomicI64,
    /// When `log_start` was last read from PostgreSQL (the lifecycle jobs move it on any
    /// broker: retention, DeleteRecords through another broker).
    log_start_read: Mutex<Instant>,
    /// The last [`PartitionStore::size_bytes`] summed from the index, and when: a scrape of
    /// `/metrics` asks every partition, so the sum is re-read at most every [`SIZE_REFRESH`].
    size: Mutex<Option<(Instant, u64)>>,
    /// The last stable offset last read, and the high watermark it was read at (the LSO only
    /// changes with commits, which move the watermark).
    stable: Mutex<Stable>,
    /// Serialises the enqueueing of one payload's batches.
    order: Mutex<()>,
    closed: AtomicBool,
    forwarder: Mutex<Option<JoinHandle<()>>>,
}

/// A last stable offset read from PostgreSQL, with the high watermark it was read at.
#[derive(Debug, Clone, Copy)]
struct Stable {
    high_watermark: i64,
    last_stable_offset: i64,
}

/// What `append_deferred` hands to `await_durable` through [`PendingWrite::instance`].
#[derive(Debug)]
struct InFlight {
    enqueued: Mutex<Vec<Enqueued>>,
    log_append_time: i64,
    max_timestamp: i64,
}

impl ClusterPartitionStore {
    /// Opens the partition: reads its offsets (a partition whose rows do not exist yet, being
    /// created, starts at 0) and starts following its commits. BLOCKING.
    pub(crate) fn open(
        engine: Arc<Engine>,
        tp: TopicPartition,
        config: LogConfig,
    ) -> StorageResult<ClusterPartitionStore> {
        let offsets = {
            let engine = Arc::clone(&engine);
            let tp = tp.clone();
            engine
                .bridge
                .clone()
                .run(async move { engine.reader.offsets(&tp).await })?
        };
        let (start, next, stable) = match offsets {
            Ok(o) => (o.log_start_offset, o.next_offset, o.last_stable_offset()),
            Err(crate::Error::UnknownPartition { .. }) => (0, 0, 0),
            Err(e) => return Err(storage_error(e)),
        };
        let high_watermark = Arc::new(watch::channel(next).0);
        let forwarder = engine.bridge.handle().spawn(follow(
            Arc::clone(&engine),
            tp.clone(),
            Arc::clone(&high_watermark),
        ));
        Ok(ClusterPartitionStore {
            engine,
            tp,
            config: RwLock::new(config),
            high_watermark,
            log_start: AtomicI64::new(start),
            log_start_read: Mutex::new(Instant::now()),
            size: Mutex::new(None),
            stable: Mutex::new(Stable {
                high_watermark: next,
                last_stable_offset: stable,
            }),
            order: Mutex::new(()),
            closed: AtomicBool::new(false),
            forwarder: Mutex::new(Some(forwarder)),
        })
    }

    fn check_open(&self) -> StorageResult<()> {
        if self.closed.load(Ordering::Acquire) {
            Err(StorageError::Closed)
        } else {
            Ok(())
        }
    }

    fn advance(&self, next: i64) {
        advance(&self.high_watermark, next);
    }

    fn stop(&self) {
        self.closed.store(true, Ordering::Release);
        if let Some(task) = self
            .forwarder
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            task.abort();
        }
        // Wake every long poll, so it sees the partition closed.
        self.high_watermark.send_modify(|_| {});
    }

    /// Remembers a last stable offset read at `high_watermark` (keeps the latest reading).
    fn note_stable(&self, high_watermark: i64, last_stable_offset: i64) {
        let mut stable = self.stable.lock().unwrap_or_else(PoisonError::into_inner);
        if high_watermark >= stable.high_watermark {
            *stable = Stable {
                high_watermark,
                last_stable_offset,
            };
        }
    }

    /// A fetch (`committed`: below the last stable offset) as the seam's [`StoreRead`],
    /// noting the watermarks it saw; with the aborted transactions overlapping a committed
    /// read's batches.
    fn fetch(&self, offset: Offset, max_bytes: usize, committed: bool) -> StorageResult<StoreRead> {
        self.check_open()?;
        let engine = Arc::clone(&self.engine);
        let tp = self.tp.clone();
        let fetched = self
            .engine
            .bridge
            .run(async move {
                if committed {
                    engine
                        .reader
                        .fetch_committed(&tp, offset.0, max_bytes)
                        .await
                } else {
                    engine.reader.fetch(&tp, offset.0, max_bytes).await
                }
            })?
            .map_err(storage_error)?;
        self.advance(fetched.high_watermark);
        self.note_stable(fetched.high_watermark, fetched.last_stable_offset);
        self.log_start
            .fetch_max(fetched.log_start_offset, Ordering::AcqRel);
        *self
            .log_start_read
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Instant::now();
        let aborted_transactions = match fetched.batches.last() {
            Some(last) if committed => {
                let end = BatchHeader::parse(last)?.last_offset() + 1;
                self.aborted_transactions(offset, Offset(end))?
            }
            _ => Vec::new(),
        };
        let records = match fetched.batches.as_slice() {
            [] => Bytes::new(),
            [one] => one.clone(),
            many => {
                let mut out = BytesMut::with_capacity(many.iter().map(Bytes::len).sum());
                for b in many {
                    out.extend_from_slice(b);
                }
                out.freeze()
            }
        };
        Ok(StoreRead {
            high_watermark: Offset(fetched.high_watermark),
            last_stable_offset: Offset(fetched.last_stable_offset),
            log_start_offset: Offset(fetched.log_start_offset),
            records,
            aborted_transactions,
        })
    }

    /// ListOffsets by timestamp or max timestamp, `None` when no record matches.
    fn list_offset(&self, spec: OffsetSpec) -> StorageResult<Option<(Offset, i64)>> {
        let engine = Arc::clone(&self.engine);
        let tp = self.tp.clone();
        let listed = self
            .engine
            .bridge
            .run(async move { engine.reader.list_offset(&tp, spec).await })?
            .map_err(storage_error)?;
        Ok((listed.offset >= 0).then_some((Offset(listed.offset), listed.timestamp)))
    }
}

/// Raises `sender` to `next` (never lowers it).
fn advance(sender: &watch::Sender<i64>, next: i64) {
    sender.send_if_modified(|hw| {
        if next > *hw {
            *hw = next;
            true
        } else {
            false
        }
    });
}

/// Forwards the notifier's watermark of `tp` into `sender`, resubscribing after failures
/// (the partition's rows may not exist yet while its topic is being created).
async fn follow(engine: Arc<Engine>, tp: TopicPartition, sender: Arc<watch::Sender<i64>>) {
    loop {
        match engine.notifier.subscribe(&tp).await {
            Ok(mut rx) => loop {
                let next = *rx.borrow_and_update();
                advance(&sender, next);
                if rx.changed().await.is_err() {
                    break;
                }
            },
            Err(error) => tracing::debug!(%error, partition = %tp, "watermark subscription failed"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// DeleteRecords: moves the partition's log start to `before` (never back), refused past the
/// high watermark (`None`). The batches below stay indexed until the next retention pass
/// drops them (`crate::lifecycle::retention`); reads and ListOffsets never return offsets
/// below the log start.
async fn delete_records(
    db: &crate::db::Db,
    tp: &TopicPartition,
    before: i64,
) -> crate::Result<Option<i64>> {
    let conn = db.conn().await?;
    let pg = crate::Error::pg(crate::error::DbOp::Metadata);
    let row = conn
        .query_opt(
            "UPDATE strom_partitions SET log_start_offset = greatest(log_start_offset, $3)
             WHERE topic = $1 AND partition = $2 AND $3 <= next_offset
             RETURNING log_start_offset",
            &[&tp.topic, &tp.partition, &before],
        )
        .await
        .map_err(pg)?;
    match row {
        Some(row) => Ok(Some(
            row.try_get(0)
                .map_err(crate::Error::pg(crate::error::DbOp::Metadata))?,
        )),
        None => {
            // Past the high watermark, or the partition is gone.
            drop(conn);
            crate::metadata::partition_offsets(db, tp).await?;
            Ok(None)
        }
    }
}

/// Seals a partition in PostgreSQL (a Kinesis shard closed by resharding) and returns the end
/// offset the seal fixed: the high watermark when the seal took the partition row's lock, which
/// every commit transaction takes too, so no data batch is committed past it. Sealing a sealed
/// partition returns the first seal's offset. `None`: the partition is gone.
async fn seal(db: &crate::db::Db, tp: &TopicPartition) -> crate::Result<Option<i64>> {
    let conn = db.conn().await?;
    let row = conn
        .query_opt(
            "UPDATE strom_partitions SET sealed_at = coalesce(sealed_at, next_offset)
             WHERE topic = $1 AND partition = $2
             RETURNING sealed_at",
            &[&tp.topic, &tp.partition],
        )
        .await
        .map_err(crate::Error::pg(crate::error::DbOp::Metadata))?;
    row.map(|r| r.try_get(0))
        .transpose()
        .map_err(crate::Error::pg(crate::error::DbOp::Metadata))
}

/// Lifts a partition's seal in PostgreSQL.
async fn unseal(db: &crate::db::Db, tp: &TopicPartition) -> crate::Result<()> {
    let conn = db.conn().await?;
    conn.execute(
        "UPDATE strom_partitions SET sealed_at = NULL WHERE topic = $1 AND partition = $2",
        &[&tp.topic, &tp.partition],
    )
    .await
    .map_err(crate::Error::pg(crate::error::DbOp::Metadata))?;
    Ok(())
}

/// The producers a partition remembers (DescribeProducers), from the commit transactions'
/// producer states.
async fn producers(db: &crate::db::Db, tp: &TopicPartition) -> crate::Result<Vec<ProducerInfo>> {
    let conn = db.conn().await?;
    let pg = || crate::Error::pg(crate::error::DbOp::Metadata);
    let rows = conn
        .query(
            "SELECT s.producer_id, s.producer_epoch, s.last_sequence,
                    coalesce((SELECT b.max_timestamp FROM strom_batches b
                              WHERE b.topic = s.topic AND b.partition = s.partition
                                AND b.last_offset = s.last_offset), -1),
                    s.coordinator_epoch, s.txn_first_offset
             FROM strom_producer_states s
             WHERE s.topic = $1 AND s.partition = $2 ORDER BY s.producer_id",
            &[&tp.topic, &tp.partition],
        )
        .await
        .map_err(pg())?;
    rows.iter()
        .map(|r| {
            Ok(ProducerInfo {
                producer_id: r.try_get(0).map_err(pg())?,
                producer_epoch: r.try_get(1).map_err(pg())?,
                last_sequence: r.try_get(2).map_err(pg())?,
                last_timestamp: r.try_get(3).map_err(pg())?,
                coordinator_epoch: r.try_get(4).map_err(pg())?,
                current_txn_start_offset: r.try_get(5).map_err(pg())?,
            })
        })
        .collect()
}

/// The aborted transactions of `tp` overlapping `[from, to)`: those whose ABORT marker is at
/// or after `from` and whose first offset is below `to`, in marker order.
async fn aborted_transactions(
    db: &crate::db::Db,
    tp: &TopicPartition,
    from: i64,
    to: i64,
) -> crate::Result<Vec<AbortedTxn>> {
    let conn = db.conn().await?;
    let pg = || crate::Error::pg(crate::error::DbOp::ReadIndex);
    let rows = conn
        .query(
            "SELECT producer_id, first_offset FROM strom_aborted_txns
             WHERE topic = $1 AND partition = $2 AND last_offset >= $3 AND first_offset < $4
             ORDER BY last_offset",
            &[&tp.topic, &tp.partition, &from, &to],
        )
        .await
        .map_err(pg())?;
    rows.iter()
        .map(|r| {
            Ok(AbortedTxn {
                producer_id: r.try_get(0).map_err(pg())?,
                first_offset: r.try_get(1).map_err(pg())?,
            })
        })
        .collect()
}

/// The open transactions of `tp`, earliest first.
async fn ongoing_transactions(
    db: &crate::db::Db,
    tp: &TopicPartition,
) -> crate::Result<Vec<OngoingTxn>> {
    let conn = db.conn().await?;
    let pg = || crate::Error::pg(crate::error::DbOp::Metadata);
    let rows = conn
        .query(
            "SELECT producer_id, producer_epoch, txn_first_offset FROM strom_producer_states
             WHERE topic = $1 AND partition = $2 AND txn_first_offset IS NOT NULL
             ORDER BY txn_first_offset",
            &[&tp.topic, &tp.partition],
        )
        .await
        .map_err(pg())?;
    rows.iter()
        .map(|r| {
            Ok(OngoingTxn {
                producer_id: r.try_get(0).map_err(pg())?,
                producer_epoch: r.try_get(1).map_err(pg())?,
                first_offset: r.try_get(2).map_err(pg())?,
            })
        })
        .collect()
}

/// The bytes of the partition's indexed batches at or above its log start.
async fn stored_bytes(db: &crate::db::Db, tp: &TopicPartition) -> crate::Result<u64> {
    let conn = db.conn().await?;
    let total: i64 = conn
        .query_one(
            "SELECT coalesce(sum(b.byte_length), 0)::bigint
             FROM strom_batches b JOIN strom_partitions p
               ON p.topic = b.topic AND p.partition = b.partition
             WHERE b.topic = $1 AND b.partition = $2 AND b.last_offset >= p.log_start_offset",
            &[&tp.topic, &tp.partition],
        )
        .await
        .and_then(|r| r.try_get(0))
        .map_err(crate::Error::pg(crate::error::DbOp::ReadIndex))?;
    Ok(u64::try_from(total).unwrap_or(0))
}

/// How long a summed [`PartitionStore::size_bytes`] is served from the cache.
const SIZE_REFRESH: Duration = Duration::from_secs(10);

/// Validates a produced payload with the local log's own check (the seam's
/// [`validate_payload`](strom_broker::storage::validate_payload)). Returns each batch's header
/// and range.
fn validate(
    buf: &[u8],
    config: &LogConfig,
    now: i64,
) -> StorageResult<Vec<(BatchHeader, std::ops::Range<usize>)>> {
    strom_broker::storage::validate_payload(buf, config, now)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl PartitionStore for ClusterPartitionStore {
    fn append_deferred(
        &self,
        batches: &mut [u8],
        leader_epoch: i32,
    ) -> StorageResult<PendingWrite> {
        self.check_open()?;
        let config = self.config();
        let now = now_ms();
        let headers = validate(batches, &config, now)?;
        let log_append_time = config.timestamp_type == TimestampType::LogAppendTime;
        let mut owned = Vec::with_capacity(headers.len());
        let mut max_timestamp = strom_record::NO_TIMESTAMP;
        for (header, range) in &headers {
            let batch = batches
                .get_mut(range.clone())
                .ok_or(StorageError::InvalidOffset {
                    offset: 0,
                    reason: "batch range outside the buffer",
                })?;
            strom_record::set_partition_leader_epoch(batch, leader_epoch)?;
            if log_append_time {
                strom_record::set_log_append_time(batch, now)?;
            }
            max_timestamp = max_timestamp.max(if log_append_time {
                now
            } else {
                header.max_timestamp
            });
            owned.push(Bytes::copy_from_slice(batch));
        }
        let enqueued = {
            let _order = self.order.lock().unwrap_or_else(PoisonError::into_inner);
            let writer = self.engine.writer.clone();
            let tp = self.tp.clone();
            self.engine.bridge.run(async move {
                let mut enqueued = Vec::with_capacity(owned.len());
                for batch in owned {
                    enqueued.push(writer.enqueue(tp.clone(), batch).await?);
                }
                Ok::<_, crate::Error>(enqueued)
            })?
        }
        .map_err(storage_error)?;
        let log_append_time = if log_append_time {
            now
        } else {
            strom_record::NO_TIMESTAMP
        };
        let in_flight: Arc<dyn Any + Send + Sync> = Arc::new(InFlight {
            enqueued: Mutex::new(enqueued),
            log_append_time,
            max_timestamp,
        });
        Ok(PendingWrite::new(
            AppendInfo {
                base_offset: -1,
                last_offset: -1,
                log_append_time,
                log_start_offset: self.log_start.load(Ordering::Acquire),
                max_timestamp,
                record_count: 0,
            },
            Offset(-1),
            in_flight,
        ))
    }

    fn await_durable(&self, pending: PendingWrite) -> StorageResult<AppendInfo> {
        let Ok(in_flight) = pending.instance.downcast::<InFlight>() else {
            return Err(StorageError::Closed);
        };
        let enqueued = std::mem::take(
            &mut *in_flight
                .enqueued
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        let results = self.engine.bridge.run(async move {
            let mut results = Vec::with_capacity(enqueued.len());
            for e in enqueued {
                results.push(e.wait().await);
            }
            results
        })?;
        let mut first = None;
        let mut last = None;
        for result in results {
            let appended = result.map_err(storage_error)?;
            first.get_or_insert(appended.base_offset);
            last = Some(appended.last_offset);
        }
        let (Some(base_offset), Some(last_offset)) = (first, last) else {
            return Err(StorageError::Closed);
        };
        self.advance(last_offset + 1);
        Ok(AppendInfo {
            base_offset,
            last_offset,
            log_append_time: in_flight.log_append_time,
            log_start_offset: self.log_start.load(Ordering::Acquire),
            max_timestamp: in_flight.max_timestamp,
            record_count: last_offset - base_offset + 1,
        })
    }

    fn read(&self, offset: Offset, max_bytes: usize) -> StorageResult<StoreRead> {
        self.fetch(offset, max_bytes, false)
    }

    fn read_committed(&self, offset: Offset, max_bytes: usize) -> StorageResult<StoreRead> {
        self.fetch(offset, max_bytes, true)
    }

    fn log_start_offset(&self) -> Offset {
        // Retention runs on whichever broker holds its lease: re-read the log start when the
        // cached one is older than a second (at most one query per second per partition).
        let stale = {
            let mut read = self
                .log_start_read
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let stale = read.elapsed() >= LOG_START_REFRESH;
            if stale {
                *read = Instant::now();
            }
            stale
        };
        if stale && !self.closed.load(Ordering::Acquire) {
            let engine = Arc::clone(&self.engine);
            let tp = self.tp.clone();
            if let Ok(Ok(offsets)) = self
                .engine
                .bridge
                .run(async move { engine.reader.offsets(&tp).await })
            {
                self.log_start
                    .fetch_max(offsets.log_start_offset, Ordering::AcqRel);
            }
        }
        Offset(self.log_start.load(Ordering::Acquire))
    }

    fn log_end_offset(&self) -> Offset {
        self.high_watermark()
    }

    fn high_watermark(&self) -> Offset {
        Offset(*self.high_watermark.borrow())
    }

    fn last_stable_offset(&self) -> Offset {
        let hw = *self.high_watermark.borrow();
        let known = *self.stable.lock().unwrap_or_else(PoisonError::into_inner);
        if known.high_watermark >= hw || self.closed.load(Ordering::Acquire) {
            return Offset(known.last_stable_offset.min(hw));
        }
        // The watermark moved since the LSO was read: read both again. On failure the LSO
        // read before stays a safe answer (it only grows).
        let engine = Arc::clone(&self.engine);
        let tp = self.tp.clone();
        match self
            .engine
            .bridge
            .run(async move { engine.reader.offsets(&tp).await })
        {
            Ok(Ok(offsets)) => {
                self.advance(offsets.next_offset);
                self.note_stable(offsets.next_offset, offsets.last_stable_offset());
                Offset(offsets.last_stable_offset())
            }
            Ok(Err(error)) => {
                tracing::debug!(%error, partition = %self.tp, "reading the last stable offset failed");
                Offset(known.last_stable_offset.min(hw))
            }
            Err(_) => Offset(known.last_stable_offset.min(hw)),
        }
    }

    fn offset_for_timestamp(&self, timestamp: i64) -> StorageResult<Option<(Offset, i64)>> {
        self.list_offset(OffsetSpec::Timestamp(timestamp))
    }

    fn max_timestamp(&self) -> StorageResult<Option<(Offset, i64)>> {
        self.list_offset(OffsetSpec::MaxTimestamp)
    }

    fn producers(&self) -> Vec<ProducerInfo> {
        let engine = Arc::clone(&self.engine);
        let tp = self.tp.clone();
        let listed = self
            .engine
            .bridge
            .run(async move { producers(&engine.admin, &tp).await });
        match listed {
            Ok(Ok(list)) => list,
            Ok(Err(error)) => {
                tracing::warn!(%error, partition = %self.tp, "listing producers failed");
                Vec::new()
            }
            Err(_) => Vec::new(),
        }
    }

    fn aborted_transactions(&self, from: Offset, to: Offset) -> StorageResult<Vec<AbortedTxn>> {
        let engine = Arc::clone(&self.engine);
        let tp = self.tp.clone();
        self.engine
            .bridge
            .run(async move {
                engine
                    .admin
                    .bounded(aborted_transactions(&engine.admin, &tp, from.0, to.0))
                    .await
            })?
            .map_err(storage_error)
    }

    fn ongoing_transactions(&self) -> Vec<OngoingTxn> {
        let engine = Arc::clone(&self.engine);
        let tp = self.tp.clone();
        let listed = self
            .engine
            .bridge
            .run(async move { ongoing_transactions(&engine.admin, &tp).await });
        match listed {
            Ok(Ok(list)) => list,
            Ok(Err(error)) => {
                tracing::warn!(%error, partition = %self.tp, "listing open transactions failed");
                Vec::new()
            }
            Err(_) => Vec::new(),
        }
    }

    fn delete_records(&self, before: Offset) -> StorageResult<Offset> {
        self.check_open()?;
        let engine = Arc::clone(&self.engine);
        let tp = self.tp.clone();
        let moved = self
            .engine
            .bridge
            .run(async move { delete_records(&engine.admin, &tp, before.0).await })?
            .map_err(storage_error)?;
        match moved {
            Some(start) => {
                // Cached index runs may start below the new log start.
                self.engine.reader.forget(&self.tp);
                self.log_start.fetch_max(start, Ordering::AcqRel);
                Ok(Offset(start))
            }
            None => Err(StorageError::InvalidOffset {
                offset: before.0,
                reason: "beyond the high watermark",
            }),
        }
    }

    fn apply_retention(&self) -> StorageResult<usize> {
        Ok(0)
    }

    fn seal(&self) -> StorageResult<Option<Offset>> {
        self.check_open()?;
        let engine = Arc::clone(&self.engine);
        let tp = self.tp.clone();
        let end = self
            .engine
            .bridge
            .run(async move { engine.admin.bounded(seal(&engine.admin, &tp)).await })?
            .map_err(storage_error)?;
        match end {
            Some(end) => {
                // The watermark this broker answers from may lag the commits the seal counted.
                advance(&self.high_watermark, end);
                Ok(Some(Offset(end)))
            }
            None => Err(StorageError::Closed),
        }
    }

    fn unseal(&self) -> StorageResult<()> {
        let engine = Arc::clone(&self.engine);
        let tp = self.tp.clone();
        self.engine
            .bridge
            .run(async move { engine.admin.bounded(unseal(&engine.admin, &tp)).await })?
            .map_err(storage_error)
    }

    fn size_bytes(&self) -> u64 {
        let cached = *self.size.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((read, bytes)) = cached
            && read.elapsed() < SIZE_REFRESH
        {
            return bytes;
        }
        let engine = Arc::clone(&self.engine);
        let tp = self.tp.clone();
        let summed = self
            .engine
            .bridge
            .run(async move { stored_bytes(&engine.admin, &tp).await });
        let bytes = match summed {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(error)) => {
                tracing::warn!(%error, partition = %self.tp, "summing the stored bytes failed");
                return cached.map_or(0, |(_, bytes)| bytes);
            }
            Err(_) => return cached.map_or(0, |(_, bytes)| bytes),
        };
        *self.size.lock().unwrap_or_else(PoisonError::into_inner) = Some((Instant::now(), bytes));
        bytes
    }

    fn flush(&self) -> StorageResult<()> {
        // The writer flushes on its own delay; nothing is acknowledged before its commit.
        Ok(())
    }

    fn close(&self) -> StorageResult<()> {
        self.stop();
        Ok(())
    }

    fn delete(&self) -> StorageResult<()> {
        // The data goes with the topic's rows, removed by the metadata store's TopicDeleted.
        self.stop();
        Ok(())
    }

    fn subscribe(&self) -> watch::Receiver<i64> {
        self.high_watermark.subscribe()
    }

    fn config(&self) -> LogConfig {
        self.config
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set_config(&self, config: LogConfig) {
        *self.config.write().unwrap_or_else(PoisonError::into_inner) = config;
    }
}

impl Drop for ClusterPartitionStore {
    fn drop(&mut self) {
        if let Some(task) = self
            .forwarder
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            task.abort();
        }
    }
}
