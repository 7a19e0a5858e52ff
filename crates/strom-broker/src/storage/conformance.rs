//! The conformance suites every [`PartitionStore`] and [`MetadataStore`] implementation runs (STYLE.md: one suite for
//! a trait with several implementations). The local backend runs it in its unit tests; a
//! backend in another crate (`strom-cluster`) enables this crate's `conformance` feature in its
//! dev-dependencies and calls [`partition_store_suite`] and [`metadata_store_suite`] from its tests.
//!
//! Every check panics with a message naming the contract clause it found broken.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use strom_record::{BatchBuilder, ControlType, Record, marker_batch, stored_batches};
use uuid::Uuid;

use crate::metadata::{MetadataEvent, MetadataState};
use crate::storage::{
    AbortedTxn, LogConfig, MetadataStore, Offset, OngoingTxn, PartitionStore, StorageError,
};
use crate::stream::StreamMeta;

/// Makes a new, empty partition store with the given settings (a fresh partition each call).
pub type FreshStore<'a> = dyn FnMut(LogConfig) -> Arc<dyn PartitionStore> + 'a;

/// Runs every check of the [`PartitionStore`] contract against stores made by `fresh`.
/// Blocking; panics at the first broken clause.
pub fn partition_store_suite(fresh: &mut FreshStore<'_>) {
    empty_store(fresh(LogConfig::default()));
    offsets_are_dense_and_reads_stop_at_the_high_watermark(fresh(LogConfig::default()));
    deferred_appends_are_ordered_and_acknowledged_once_durable(fresh(LogConfig::default()));
    the_watermark_is_published(fresh(LogConfig::default()));
    timestamps_are_indexed(fresh(LogConfig::default()));
    delete_records_moves_the_log_start(fresh(LogConfig::default()));
    idempotent_producers_are_checked(fresh(LogConfig::default()));
    transactions_hold_the_last_stable_offset(fresh(LogConfig::default()));
    aborted_transactions_are_indexed(fresh(LogConfig::default()));
    transaction_markers_are_fenced_by_epoch(fresh(LogConfig::default()));
    transactions_follow_a_model(fresh(LogConfig::default()));
    oversized_batches_are_refused(fresh(LogConfig {
        max_message_bytes: 200,
        ..LogConfig::default()
    }));
    a_closed_store_refuses_writes(fresh(LogConfig::default()));
}

fn batch(timestamp: i64, values: &[&str]) -> Vec<u8> {
    batch_from(BatchBuilder::new(), timestamp, values)
}

fn batch_from(builder: BatchBuilder, timestamp: i64, values: &[&str]) -> Vec<u8> {
    let records: Vec<Record> = values
        .iter()
        .map(|v| Record::new(timestamp, None, Some(Bytes::copy_from_slice(v.as_bytes()))))
        .collect();
    match builder.build(&records) {
        Ok(b) => b,
        Err(e) => panic!("test batch does not build: {e}"),
    }
}

fn producer_batch(producer_id: i64, epoch: i16, sequence: i32, values: &[&str]) -> Vec<u8> {
    let builder = BatchBuilder {
        producer_id,
        producer_epoch: epoch,
        base_sequence: sequence,
        ..BatchBuilder::new()
    };
    batch_from(builder, 1_000, values)
}

fn txn_batch(producer_id: i64, epoch: i16, sequence: i32, values: &[&str]) -> Vec<u8> {
    let builder = BatchBuilder {
        producer_id,
        producer_epoch: epoch,
        base_sequence: sequence,
        transactional: true,
        ..BatchBuilder::new()
    };
    batch_from(builder, 1_000, values)
}

fn marker(
    producer_id: i64,
    epoch: i16,
    control_type: ControlType,
    coordinator_epoch: i32,
) -> Vec<u8> {
    match marker_batch(producer_id, epoch, control_type, coordinator_epoch, 1_000) {
        Ok(b) => b,
        Err(e) => panic!("test marker does not build: {e}"),
    }
}

/// The base offsets of the batches a read returned.
fn base_offsets(records: &Bytes) -> Vec<i64> {
    stored_batches(records)
        .map(|b| match b {
            Ok((header, _)) => header.base_offset,
            Err(e) => panic!("a read returned bytes that are not whole batches: {e}"),
        })
        .collect()
}

fn empty_store(store: Arc<dyn PartitionStore>) {
    assert_eq!(store.log_start_offset(), Offset(0), "empty: log start");
    assert_eq!(store.log_end_offset(), Offset(0), "empty: log end");
    assert_eq!(store.high_watermark(), Offset(0), "empty: high watermark");
    assert_eq!(
        store.last_stable_offset(),
        Offset(0),
        "empty: last stable offset"
    );
    let read = store.read(Offset(0), 1 << 20).expect("empty: read at 0");
    assert!(
        read.records.is_empty(),
        "empty: a read at the end returns nothing"
    );
    assert_eq!(read.high_watermark, Offset(0));
    match store.read(Offset(1), 1 << 20) {
        Err(StorageError::OffsetOutOfRange {
            requested: 1,
            start: 0,
            end: 0,
        }) => {}
        other => panic!("empty: a read past the end must be OffsetOutOfRange, got {other:?}"),
    }
    assert_eq!(store.max_timestamp().expect("empty: max timestamp"), None);
}

fn offsets_are_dense_and_reads_stop_at_the_high_watermark(store: Arc<dyn PartitionStore>) {
    let a = store
        .append(&mut batch(1_000, &["a", "b"]), 0)
        .expect("append a");
    let b = store
        .append(&mut batch(1_000, &["c", "d", "e"]), 0)
        .expect("append b");
    assert_eq!(
        (a.base_offset, a.last_offset),
        (0, 1),
        "first append's offsets"
    );
    assert_eq!(
        (b.base_offset, b.last_offset),
        (2, 4),
        "offsets continue densely"
    );
    assert_eq!(store.log_end_offset(), Offset(5));
    assert_eq!(
        store.high_watermark(),
        Offset(5),
        "acknowledged means visible"
    );
    let all = store.read(Offset(0), 1 << 20).expect("read all");
    assert_eq!(
        base_offsets(&all.records),
        vec![0, 2],
        "reads return the appended batches"
    );
    assert_eq!(all.high_watermark, Offset(5));
    assert_eq!(all.log_start_offset, Offset(0));
    let second = store.read(Offset(2), 1 << 20).expect("read from 2");
    assert_eq!(base_offsets(&second.records), vec![2]);
    // The first batch is returned whole even above `max_bytes`.
    let tiny = store.read(Offset(0), 1).expect("read with max_bytes 1");
    assert_eq!(
        base_offsets(&tiny.records),
        vec![0],
        "the first batch always whole"
    );
    let end = store
        .read(Offset(5), 1 << 20)
        .expect("read at the high watermark");
    assert!(
        end.records.is_empty(),
        "nothing at or past the high watermark"
    );
    assert!(
        matches!(
            store.read(Offset(6), 1 << 20),
            Err(StorageError::OffsetOutOfRange { requested: 6, .. })
        ),
        "past the high watermark: OffsetOutOfRange"
    );
    let committed = store
        .read_committed(Offset(0), 1 << 20)
        .expect("read committed");
    assert_eq!(base_offsets(&committed.records), vec![0, 2]);
    assert!(committed.aborted_transactions.is_empty());
    assert!(store.size_bytes() > 0, "size counts the stored batches");
}

fn deferred_appends_are_ordered_and_acknowledged_once_durable(store: Arc<dyn PartitionStore>) {
    let first = store
        .append_deferred(&mut batch(1_000, &["a"]), 0)
        .expect("deferred a");
    let second = store
        .append_deferred(&mut batch(1_000, &["b", "c"]), 0)
        .expect("deferred b");
    // A backend that assigns offsets on append reports them at once; one that assigns them in
    // its commit (the cluster's, sequenced by PostgreSQL) reports them unknown (-1) until the
    // write is durable. Either way the order of the calls is the order of the offsets.
    let early = [
        (first.info().base_offset, 0),
        (second.info().base_offset, 1),
        (second.end.0, 3),
    ];
    for (reported, assigned) in early {
        assert!(
            reported == assigned || reported == -1,
            "deferred writes get offsets in call order (reported {reported}, expected {assigned} or unknown)"
        );
    }
    let b = store.await_durable(second).expect("await b");
    assert_eq!(
        (b.base_offset, b.last_offset),
        (1, 2),
        "deferred writes get offsets in call order"
    );
    assert!(store.high_watermark() >= Offset(3), "durable means visible");
    let a = store.await_durable(first).expect("await a after b");
    assert_eq!((a.base_offset, a.last_offset), (0, 0));
}

fn the_watermark_is_published(store: Arc<dyn PartitionStore>) {
    let mut rx = store.subscribe();
    rx.borrow_and_update();
    store.append(&mut batch(1_000, &["a"]), 0).expect("append");
    assert!(
        rx.has_changed().unwrap_or(false),
        "an append must wake watermark subscribers"
    );
    assert_eq!(
        *rx.borrow_and_update(),
        1,
        "the published value is the new high watermark"
    );
    store.flush().expect("flush");
}

fn timestamps_are_indexed(store: Arc<dyn PartitionStore>) {
    store
        .append(&mut batch(1_000, &["a", "b"]), 0)
        .expect("append 1000");
    store
        .append(&mut batch(3_000, &["c"]), 0)
        .expect("append 3000");
    store
        .append(&mut batch(2_000, &["d"]), 0)
        .expect("append 2000");
    assert_eq!(
        store.offset_for_timestamp(1_500).expect("offset for 1500"),
        Some((Offset(2), 3_000)),
        "the first record at or after the timestamp"
    );
    assert_eq!(
        store
            .offset_for_timestamp(0)
            .expect("offset for 0")
            .map(|x| x.0),
        Some(Offset(0))
    );
    assert_eq!(
        store.offset_for_timestamp(9_000).expect("offset for 9000"),
        None
    );
    assert_eq!(
        store.max_timestamp().expect("max timestamp"),
        Some((Offset(2), 3_000)),
        "the largest timestamp and its first offset"
    );
}

fn delete_records_moves_the_log_start(store: Arc<dyn PartitionStore>) {
    for v in ["a", "b", "c", "d"] {
        store.append(&mut batch(1_000, &[v]), 0).expect("append");
    }
    assert_eq!(
        store.delete_records(Offset(2)).expect("delete before 2"),
        Offset(2)
    );
    assert_eq!(store.log_start_offset(), Offset(2));
    match store.read(Offset(1), 1 << 20) {
        Err(StorageError::OffsetOutOfRange {
            requested: 1,
            start: 2,
            end: 4,
        }) => {}
        other => panic!("below the log start: OffsetOutOfRange with the bounds, got {other:?}"),
    }
    let read = store
        .read(Offset(2), 1 << 20)
        .expect("read at the new start");
    assert_eq!(base_offsets(&read.records).first(), Some(&2));
    assert!(
        store.delete_records(Offset(9)).is_err(),
        "deleting past the high watermark is refused"
    );
    store
        .apply_retention()
        .expect("retention with nothing to remove");
}

fn idempotent_producers_are_checked(store: Arc<dyn PartitionStore>) {
    let first = store
        .append(&mut producer_batch(7, 0, 0, &["a", "b"]), 0)
        .expect("producer's first batch");
    let retry = store
        .append(&mut producer_batch(7, 0, 0, &["a", "b"]), 0)
        .expect("a retried batch is answered, not refused");
    assert_eq!(
        (retry.base_offset, retry.last_offset),
        (first.base_offset, first.last_offset),
        "a retried batch gets its original offsets"
    );
    assert_eq!(
        store.log_end_offset(),
        Offset(2),
        "a retry is not stored twice"
    );
    assert!(
        matches!(
            store.append(&mut producer_batch(7, 0, 5, &["x"]), 0),
            Err(StorageError::OutOfOrderSequence {
                producer_id: 7,
                expected: 2,
                found: 5,
                ..
            })
        ),
        "a sequence gap is OutOfOrderSequence"
    );
    store
        .append(&mut producer_batch(7, 1, 0, &["c"]), 0)
        .expect("a new epoch starts at sequence 0");
    assert!(
        matches!(
            store.append(&mut producer_batch(7, 0, 2, &["d"]), 0),
            Err(StorageError::ProducerFenced {
                producer_id: 7,
                epoch: 0,
                current_epoch: 1
            })
        ),
        "an older epoch is fenced"
    );
    let producers = store.producers();
    assert!(
        producers.iter().any(|p| p.producer_id == 7),
        "the producer is remembered"
    );
    assert!(store.ongoing_transactions().is_empty());
}

fn transactions_hold_the_last_stable_offset(store: Arc<dyn PartitionStore>) {
    let open = store
        .append(&mut txn_batch(11, 0, 0, &["a", "b"]), 0)
        .expect("a transactional batch is accepted");
    assert_eq!((open.base_offset, open.last_offset), (0, 1));
    store
        .append(&mut batch(1_000, &["plain"]), 0)
        .expect("a plain batch during the transaction");
    assert_eq!(store.high_watermark(), Offset(3));
    assert_eq!(
        store.last_stable_offset(),
        Offset(0),
        "an open transaction holds the last stable offset at its first offset"
    );
    assert_eq!(
        store.ongoing_transactions(),
        vec![OngoingTxn {
            producer_id: 11,
            producer_epoch: 0,
            first_offset: 0
        }],
        "the open transaction is listed"
    );
    let producer = store.producers().into_iter().find(|p| p.producer_id == 11);
    assert_eq!(
        producer.and_then(|p| p.current_txn_start_offset),
        Some(0),
        "DescribeProducers: the current transaction's start offset"
    );
    let held = store
        .read_committed(Offset(0), 1 << 20)
        .expect("read committed during the transaction");
    assert!(
        held.records.is_empty(),
        "read_committed stops at the last stable offset"
    );
    assert_eq!(held.last_stable_offset, Offset(0));
    assert_eq!(held.high_watermark, Offset(3));
    let uncommitted = store.read(Offset(0), 1 << 20).expect("read uncommitted");
    assert_eq!(
        base_offsets(&uncommitted.records),
        vec![0, 2],
        "read_uncommitted reads up to the high watermark"
    );
    assert_eq!(uncommitted.last_stable_offset, Offset(0));

    // A second producer's transaction opens later: the earliest one still holds the LSO.
    store
        .append(&mut txn_batch(12, 0, 0, &["c"]), 0)
        .expect("a second transaction");
    assert_eq!(store.last_stable_offset(), Offset(0));
    let m = store
        .append(&mut marker(11, 0, ControlType::Commit, 3), 0)
        .expect("a COMMIT marker is accepted");
    assert_eq!((m.base_offset, m.last_offset), (4, 4));
    assert_eq!(
        store.last_stable_offset(),
        Offset(3),
        "the commit releases the LSO up to the next open transaction"
    );
    let producer = store.producers().into_iter().find(|p| p.producer_id == 11);
    assert_eq!(
        producer.map(|p| (p.current_txn_start_offset, p.coordinator_epoch)),
        Some((None, 3)),
        "the marker closed the transaction and recorded its coordinator epoch"
    );
    store
        .append(&mut marker(12, 0, ControlType::Commit, 3), 0)
        .expect("the second commit");
    assert_eq!(
        store.last_stable_offset(),
        Offset(6),
        "no open transaction: the LSO is the high watermark"
    );
    assert!(store.ongoing_transactions().is_empty());
    let read = store
        .read_committed(Offset(0), 1 << 20)
        .expect("read committed after the commits");
    assert_eq!(base_offsets(&read.records), vec![0, 2, 3, 4, 5]);
    assert!(
        read.aborted_transactions.is_empty(),
        "committed transactions are not aborted"
    );
    assert_eq!(read.last_stable_offset, Offset(6));

    // A non-transactional batch of a producer whose transaction is open is refused.
    store
        .append(&mut txn_batch(14, 0, 0, &["t"]), 0)
        .expect("producer 14's transaction");
    assert!(
        matches!(
            store.append(&mut producer_batch(14, 0, 1, &["n"]), 0),
            Err(StorageError::InvalidTxnState {
                producer_id: 14,
                ..
            })
        ),
        "a non-transactional batch inside an open transaction is InvalidTxnState"
    );
}

fn aborted_transactions_are_indexed(store: Arc<dyn PartitionStore>) {
    store
        .append(&mut batch(1_000, &["before"]), 0)
        .expect("plain batch");
    store
        .append(&mut txn_batch(21, 0, 0, &["x", "y"]), 0)
        .expect("transaction of 21");
    store
        .append(&mut txn_batch(21, 0, 2, &["z"]), 0)
        .expect("more of the transaction of 21");
    let abort = store
        .append(&mut marker(21, 0, ControlType::Abort, 1), 0)
        .expect("an ABORT marker is accepted");
    assert_eq!(abort.base_offset, 4);
    store
        .append(&mut batch(1_000, &["after"]), 0)
        .expect("plain batch after");
    assert_eq!(store.last_stable_offset(), Offset(6));
    let aborted = vec![AbortedTxn {
        producer_id: 21,
        first_offset: 1,
    }];
    assert_eq!(
        store
            .aborted_transactions(Offset(0), Offset(6))
            .expect("aborted transactions"),
        aborted,
        "the aborted transaction runs from its first offset to its marker"
    );
    assert_eq!(
        store
            .aborted_transactions(Offset(4), Offset(6))
            .expect("aborted at the marker"),
        aborted,
        "a range starting at the marker still overlaps the transaction"
    );
    assert!(
        store
            .aborted_transactions(Offset(5), Offset(6))
            .expect("aborted after the marker")
            .is_empty(),
        "a range after the marker does not"
    );
    assert!(
        store
            .aborted_transactions(Offset(0), Offset(1))
            .expect("aborted before the transaction")
            .is_empty(),
        "a range before the first offset does not"
    );
    let read = store
        .read_committed(Offset(0), 1 << 20)
        .expect("read committed");
    assert_eq!(
        base_offsets(&read.records),
        vec![0, 1, 3, 4, 5],
        "read_committed returns the aborted batches, for the consumer to skip"
    );
    assert_eq!(
        read.aborted_transactions, aborted,
        "with the aborted transaction overlapping them"
    );
    let tail = store
        .read_committed(Offset(5), 1 << 20)
        .expect("read committed after the abort");
    assert!(
        tail.aborted_transactions.is_empty(),
        "a read past the marker lists no aborted transaction"
    );
}

fn transaction_markers_are_fenced_by_epoch(store: Arc<dyn PartitionStore>) {
    store
        .append(&mut txn_batch(31, 1, 0, &["a"]), 0)
        .expect("transaction at epoch 1");
    assert!(
        matches!(
            store.append(&mut marker(31, 0, ControlType::Abort, 0), 0),
            Err(StorageError::ProducerFenced {
                producer_id: 31,
                epoch: 0,
                current_epoch: 1
            })
        ),
        "a marker of an older epoch is fenced"
    );
    assert_eq!(
        store.last_stable_offset(),
        Offset(0),
        "a fenced marker closes nothing"
    );
    store
        .append(&mut marker(31, 1, ControlType::Commit, 0), 0)
        .expect("the marker of the current epoch");
    assert_eq!(store.last_stable_offset(), Offset(2));
    // The coordinator aborts with a bumped epoch (a timed-out transaction): the producer's
    // older epoch is fenced from then on, and the new one starts at sequence 0.
    store
        .append(&mut marker(31, 2, ControlType::Abort, 0), 0)
        .expect("a marker of a newer epoch with no open transaction");
    assert!(
        matches!(
            store.append(&mut txn_batch(31, 1, 1, &["late"]), 0),
            Err(StorageError::ProducerFenced {
                producer_id: 31,
                epoch: 1,
                current_epoch: 2
            })
        ),
        "the marker's newer epoch fences the older one"
    );
    store
        .append(&mut txn_batch(31, 2, 0, &["b"]), 0)
        .expect("the bumped epoch starts at sequence 0");
    assert_eq!(store.last_stable_offset(), Offset(3));
    // A marker for a producer the partition never saw completes nothing and is stored.
    let unknown = store
        .append(&mut marker(32, 0, ControlType::Commit, 0), 0)
        .expect("a marker for a producer with no open transaction is accepted");
    assert_eq!(unknown.base_offset, 4);
    assert_eq!(
        store
            .ongoing_transactions()
            .iter()
            .map(|t| t.producer_id)
            .collect::<Vec<_>>(),
        vec![31],
        "only producer 31's transaction is open"
    );
    assert!(
        store
            .aborted_transactions(Offset(0), Offset(5))
            .expect("aborted")
            .is_empty(),
        "an ABORT marker with no open transaction indexes nothing"
    );
}

/// One producer of [`transactions_follow_a_model`].
#[derive(Debug, Clone, Copy)]
struct ModelProducer {
    id: i64,
    epoch: i16,
    next_sequence: i32,
    open: Option<i64>,
}

/// A pseudo-random run (fixed seed) of transactional batches, plain batches, COMMIT and ABORT
/// markers (some with a bumped epoch, as a coordinator writes when it aborts a timed-out
/// transaction) of three producers, checked after every step against a model of the
/// transaction index: the high watermark, the last stable offset, the open transactions, and
/// the aborted transactions over sliding ranges.
fn transactions_follow_a_model(store: Arc<dyn PartitionStore>) {
    let mut producers: Vec<ModelProducer> = (0..3)
        .map(|i| ModelProducer {
            id: 41 + i,
            epoch: 0,
            next_sequence: 0,
            open: None,
        })
        .collect();
    let mut next = 0i64;
    let mut aborted: Vec<(i64, i64, i64)> = Vec::new();
    let mut seed = 0x5eed_u64;
    let mut random = |bound: u64| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) % bound
    };
    for step in 0..48 {
        let op = random(8);
        let p = &mut producers[usize::try_from(random(3)).unwrap_or(0)];
        let what = match op {
            0..=3 => {
                let info = store
                    .append(&mut txn_batch(p.id, p.epoch, p.next_sequence, &["v"]), 0)
                    .expect("model: transactional batch");
                assert_eq!(info.base_offset, next, "model step {step}: offsets");
                p.next_sequence += 1;
                p.open.get_or_insert(next);
                "data"
            }
            4 => {
                store
                    .append(&mut batch(1_000, &["plain"]), 0)
                    .expect("model: plain batch");
                "plain"
            }
            5 | 6 => {
                let control = if op == 5 {
                    ControlType::Commit
                } else {
                    ControlType::Abort
                };
                store
                    .append(&mut marker(p.id, p.epoch, control, 0), 0)
                    .expect("model: marker");
                if let Some(first) = p.open.take()
                    && control == ControlType::Abort
                {
                    aborted.push((p.id, first, next));
                }
                "marker"
            }
            _ => {
                // The coordinator aborts with a bumped epoch.
                p.epoch += 1;
                p.next_sequence = 0;
                store
                    .append(&mut marker(p.id, p.epoch, ControlType::Abort, 0), 0)
                    .expect("model: bumped abort");
                if let Some(first) = p.open.take() {
                    aborted.push((p.id, first, next));
                }
                "bumped abort"
            }
        };
        next += 1;
        assert_eq!(
            store.high_watermark(),
            Offset(next),
            "model step {step} ({what}): high watermark"
        );
        let first_open = producers.iter().filter_map(|p| p.open).min();
        assert_eq!(
            store.last_stable_offset(),
            Offset(first_open.unwrap_or(next)),
            "model step {step} ({what}): last stable offset"
        );
        let mut open: Vec<(i64, i64)> = producers
            .iter()
            .filter_map(|p| p.open.map(|f| (f, p.id)))
            .collect();
        open.sort_unstable();
        assert_eq!(
            store
                .ongoing_transactions()
                .iter()
                .map(|t| (t.first_offset, t.producer_id))
                .collect::<Vec<_>>(),
            open,
            "model step {step} ({what}): open transactions"
        );
    }
    assert!(
        aborted.len() >= 2 && producers.iter().any(|p| p.epoch > 0),
        "the run aborts transactions and bumps an epoch: {aborted:?}"
    );
    for from in 0..next {
        let to = (from + 5).min(next);
        let want: Vec<AbortedTxn> = aborted
            .iter()
            .filter(|&&(_, first, last)| last >= from && first < to)
            .map(|&(producer_id, first_offset, _)| AbortedTxn {
                producer_id,
                first_offset,
            })
            .collect();
        assert_eq!(
            store
                .aborted_transactions(Offset(from), Offset(to))
                .expect("model: aborted transactions"),
            want,
            "model: aborted transactions over [{from}, {to})"
        );
    }
}

fn oversized_batches_are_refused(store: Arc<dyn PartitionStore>) {
    let big = "x".repeat(500);
    assert!(
        matches!(
            store.append(&mut batch(1_000, &[&big]), 0),
            Err(StorageError::BatchTooLarge { max: 200, .. })
        ),
        "a batch above max.message.bytes is BatchTooLarge"
    );
    assert_eq!(store.log_end_offset(), Offset(0), "nothing of it is stored");
    assert_eq!(store.config().max_message_bytes, 200, "config reads back");
}

fn a_closed_store_refuses_writes(store: Arc<dyn PartitionStore>) {
    store.append(&mut batch(1_000, &["a"]), 0).expect("append");
    store.close().expect("close");
    assert!(
        store.append(&mut batch(1_000, &["b"]), 0).is_err(),
        "a closed store refuses appends"
    );
}

/// Opens the metadata store under test on the same underlying storage each call (as a broker
/// restart would), returning it with the events it replays.
pub type OpenMetadata<'a> = dyn FnMut() -> (Box<dyn MetadataStore>, Vec<MetadataEvent>) + 'a;

/// Runs every check of the [`MetadataStore`] contract: `open` must start on empty storage
/// (which may replay the cluster id its storage chose, as the cluster backend's does).
/// The events replayed after a reopen must recreate the state the acknowledged appends left
/// (a backend may compact them, so the check compares states, not event lists). Blocking;
/// panics at the first broken clause.
pub fn metadata_store_suite(open: &mut OpenMetadata<'_>) {
    let (mut store, events) = open();
    assert!(
        events
            .iter()
            .all(|e| matches!(e, MetadataEvent::ClusterInitialized { .. })),
        "a new metadata store replays nothing but a cluster id"
    );
    let mut model = MetadataState::default();
    for e in &events {
        model.apply(e);
    }
    let kept = Uuid::from_u128(1);
    let gone = Uuid::from_u128(2);
    fn append(store: &mut Box<dyn MetadataStore>, model: &mut MetadataState, event: MetadataEvent) {
        store.append(&event).expect("metadata append");
        model.apply(&event);
    }
    let configs = |v: &str| BTreeMap::from([("retention.ms".to_owned(), v.to_owned())]);
    append(
        &mut store,
        &mut model,
        MetadataEvent::ClusterInitialized {
            cluster_id: "c".into(),
        },
    );
    append(
        &mut store,
        &mut model,
        MetadataEvent::ProducerIdsReserved { until: 1_000 },
    );
    for (name, id) in [("kept", kept), ("gone", gone)] {
        append(
            &mut store,
            &mut model,
            MetadataEvent::TopicCreated {
                name: name.into(),
                id,
                partitions: 1,
                configs: BTreeMap::new(),
            },
        );
    }
    append(
        &mut store,
        &mut model,
        MetadataEvent::PartitionsCreated { id: kept, total: 3 },
    );
    append(
        &mut store,
        &mut model,
        MetadataEvent::StreamMetaSet {
            id: kept,
            stream: StreamMeta::new(3, "PROVISIONED", 5),
        },
    );
    append(
        &mut store,
        &mut model,
        MetadataEvent::TopicDeleted { id: gone },
    );
    // Enough changes that a backend which compacts its history does so at least once.
    for i in 0..1_500 {
        append(
            &mut store,
            &mut model,
            MetadataEvent::ConfigsSet {
                id: kept,
                configs: configs(&i.to_string()),
            },
        );
    }
    append(
        &mut store,
        &mut model,
        MetadataEvent::ProducerIdsReserved { until: 2_000 },
    );
    drop(store);

    let (mut store, events) = open();
    let mut replayed = MetadataState::default();
    for e in &events {
        replayed.apply(e);
    }
    assert_eq!(
        replayed, model,
        "the replayed events recreate the state of every acknowledged append"
    );

    // Appends after a reopen go on from there.
    append(
        &mut store,
        &mut model,
        MetadataEvent::TopicDeleted { id: kept },
    );
    drop(store);
    let (_store, events) = open();
    let mut replayed = MetadataState::default();
    for e in &events {
        replayed.apply(e);
    }
    assert_eq!(replayed, model, "appends after a reopen are kept too");
}
