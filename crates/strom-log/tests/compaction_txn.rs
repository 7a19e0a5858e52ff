//! Transactions and idempotent producers through compaction: committed data is compacted like
//! any other, aborted data is removed (and never supersedes committed data), the
//! `read_committed` view is unchanged, markers stay while their transaction has data and go
//! `delete.retention.ms` later, and each producer's last batch survives (emptied if need be)
//! so duplicate detection still works after a clean and a reopen.

mod common;

use common::{clean, remove_snapshots};

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;
use strom_log::{AbortedFilter, Clock, LogConfig, ManualClock, PartitionLog};
use strom_record::{BatchBuilder, ControlType, DecodeLimits, Record, decode_records, marker_batch};

const T0: i64 = 1_000_000;
const RETENTION_MS: i64 = 10_000;

fn config() -> LogConfig {
    common::compact_config(1 << 20, RETENTION_MS)
}

/// A batch of `(key, value)` records from producer `pid` (`-1`: plain).
fn data(pid: i64, seq: i32, transactional: bool, records: &[(&str, &str)], ts: i64) -> Vec<u8> {
    let builder = BatchBuilder {
        producer_id: pid,
        producer_epoch: if pid < 0 { -1 } else { 0 },
        base_sequence: if pid < 0 { -1 } else { seq },
        transactional,
        ..BatchBuilder::new()
    };
    let records: Vec<Record> = records
        .iter()
        .map(|(k, v)| {
            Record::new(
                ts,
                Some(Bytes::from(k.to_string())),
                Some(Bytes::from(v.to_string())),
            )
        })
        .collect();
    builder.build(&records).unwrap()
}

fn append(log: &PartitionLog, mut batch: Vec<u8>) -> strom_log::AppendInfo {
    log.append(&mut batch, 0).unwrap()
}

fn marker(pid: i64, t: ControlType, ts: i64) -> Vec<u8> {
    marker_batch(pid, 0, t, 1, ts).unwrap()
}

/// A batch read back: its header and its records as (offset, key, value).
type ReadBatch = (strom_record::BatchHeader, Vec<(i64, String, String)>);

/// Every batch from the log start.
fn batches(log: &PartitionLog) -> Vec<ReadBatch> {
    let mut out = Vec::new();
    common::scan_batches(log, 1 << 20, |h, batch| {
        let records = if h.is_control() {
            Vec::new()
        } else {
            decode_records(&batch, DecodeLimits::default())
                .unwrap()
                .records
                .into_iter()
                .map(|r| {
                    let s = |b: Option<Bytes>| {
                        String::from_utf8(b.unwrap_or_default().to_vec()).unwrap()
                    };
                    (r.offset, s(r.key), s(r.value))
                })
                .collect()
        };
        out.push((*h, records));
    });
    out
}

/// What a `read_committed` consumer folds the log to.
fn committed_view(log: &PartitionLog) -> BTreeMap<String, String> {
    let lso = log.last_stable_offset();
    let mut filter = AbortedFilter::new(log.aborted_transactions(0, lso).unwrap());
    let mut map = BTreeMap::new();
    for (h, records) in batches(log) {
        if h.base_offset >= lso {
            break;
        }
        // The marker type does not matter for data batches; for control batches the filter
        // needs to know aborts, which the index tells.
        let is_abort = h.is_control()
            && log
                .aborted_transactions(h.base_offset, h.base_offset + 1)
                .unwrap()
                .iter()
                .any(|a| a.producer_id == h.producer_id);
        if filter.skip(&h, is_abort) {
            continue;
        }
        for (_, k, v) in records {
            // An empty value is a tombstone here (test values are never empty).
            if v.is_empty() {
                map.remove(&k);
            } else {
                map.insert(k, v);
            }
        }
    }
    map
}

#[test]
fn aborted_data_goes_committed_data_stays_and_the_committed_view_is_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let log = PartitionLog::open(dir.path(), config(), clock.clone()).unwrap();
    append(&log, data(-1, -1, false, &[("k1", "a")], T0)); // 0
    append(&log, data(1, 0, true, &[("k1", "b"), ("k2", "x")], T0)); // 1..=2
    append(&log, marker(1, ControlType::Commit, T0)); // 3
    append(&log, data(2, 0, true, &[("k1", "c"), ("k3", "y")], T0)); // 4..=5
    append(&log, marker(2, ControlType::Abort, T0)); // 6
    append(&log, data(2, 2, true, &[("k5", "w")], T0)); // 7: producer 2's last batch
    append(&log, marker(2, ControlType::Commit, T0)); // 8
    append(&log, data(-1, -1, false, &[("k4", "z")], T0)); // 9
    log.roll().unwrap();
    let before = committed_view(&log);
    assert_eq!(before.get("k1").map(String::as_str), Some("b"));

    let stats = clean(&log, T0);
    assert_eq!(stats.segments_cleaned, 1);
    // k1=a superseded by the committed k1=b (not by the aborted k1=c); both aborted records go.
    assert_eq!(stats.records_removed, 3);
    assert_eq!(committed_view(&log), before);
    let all = batches(&log);
    let offsets: Vec<i64> = all
        .iter()
        .flat_map(|(_, r)| r.iter().map(|x| x.0))
        .collect();
    assert_eq!(
        offsets,
        vec![1, 2, 7, 9],
        "aborted records never reach even read_uncommitted readers"
    );
    let markers: Vec<i64> = all
        .iter()
        .filter(|(h, _)| h.is_control())
        .map(|(h, _)| h.base_offset)
        .collect();
    assert_eq!(
        markers,
        vec![3, 6, 8],
        "markers stay until delete.retention.ms has passed"
    );
    assert_eq!(log.last_stable_offset(), log.high_watermark());

    // Past the retention the data-less ABORT marker goes; the COMMIT markers of transactions
    // with kept data stay.
    clock.advance(RETENTION_MS);
    assert!(
        log.cleanable(clock.now_ms()).unwrap().must_clean,
        "a kept marker is due"
    );
    clean(&log, clock.now_ms());
    let all = batches(&log);
    let markers: Vec<i64> = all
        .iter()
        .filter(|(h, _)| h.is_control())
        .map(|(h, _)| h.base_offset)
        .collect();
    assert_eq!(markers, vec![3, 8]);
    assert_eq!(committed_view(&log), before);

    // The same after a reopen, with and without producer snapshots (rebuilt from the log).
    drop(log);
    let log = PartitionLog::open(dir.path(), config(), clock.clone()).unwrap();
    assert_eq!(committed_view(&log), before);
    assert!(log.ongoing_transactions().is_empty());
    drop(log);
    remove_snapshots(dir.path());
    let log = PartitionLog::open(dir.path(), config(), clock.clone()).unwrap();
    assert!(
        log.ongoing_transactions().is_empty(),
        "no transaction looks open after the rebuild"
    );
    assert_eq!(log.last_stable_offset(), log.high_watermark());
    assert_eq!(committed_view(&log), before);
}

#[test]
fn the_last_batch_of_a_producer_survives_so_duplicates_are_still_detected() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let log = PartitionLog::open(dir.path(), config(), clock.clone()).unwrap();
    append(&log, data(5, 0, false, &[("k", "a")], T0)); // 0
    let last = append(&log, data(5, 1, false, &[("k", "b"), ("j", "b")], T0)); // 1..=2
    append(&log, data(-1, -1, false, &[("k", "c"), ("j", "c")], T0)); // 3..=4
    log.roll().unwrap();
    let stats = clean(&log, T0);
    assert_eq!(stats.records_removed, 3);
    let all = batches(&log);
    // Producer 5's first batch is gone; its last is kept, empty, with its offset range.
    let producer: Vec<_> = all.iter().filter(|(h, _)| h.producer_id == 5).collect();
    assert_eq!(producer.len(), 1);
    let (h, records) = producer[0];
    assert_eq!(
        (
            h.base_offset,
            h.last_offset(),
            h.base_sequence,
            h.records_count
        ),
        (1, 2, 1, 0)
    );
    assert!(records.is_empty());

    assert_eq!(log.producer_state(5), Some((0, Some(2))));
    drop(log);
    remove_snapshots(dir.path());
    let log = PartitionLog::open(dir.path(), config(), clock.clone()).unwrap();
    assert_eq!(
        log.producer_state(5),
        Some((0, Some(2))),
        "rebuilt from the emptied batch"
    );
    // A retry of the last batch is a duplicate answered with its original offsets.
    let dup = append(&log, data(5, 1, false, &[("k", "b"), ("j", "b")], T0));
    assert_eq!(
        (dup.base_offset, dup.last_offset),
        (last.base_offset, last.last_offset)
    );
    // The next sequence is accepted.
    let next = append(&log, data(5, 3, false, &[("k", "d")], T0));
    assert_eq!(next.base_offset, 5);
}

#[test]
fn an_open_transaction_holds_the_cleaner_back() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let log = PartitionLog::open(dir.path(), config(), clock.clone()).unwrap();
    append(&log, data(-1, -1, false, &[("k", "a")], T0)); // 0
    log.roll().unwrap();
    append(&log, data(1, 0, true, &[("k", "b")], T0)); // 1, open
    log.roll().unwrap();
    append(&log, data(-1, -1, false, &[("k", "c")], T0)); // 2
    log.roll().unwrap();
    let info = log.cleanable(T0).unwrap();
    assert_eq!(
        info.first_uncleanable_offset, 1,
        "the segment holding the LSO is not cleaned"
    );
    let stats = clean(&log, T0);
    assert_eq!(stats.records_removed, 0);
    assert_eq!(stats.end_offset, 1);
    append(&log, marker(1, ControlType::Abort, T0)); // 3
    log.roll().unwrap();
    let stats = clean(&log, T0);
    assert_eq!(
        stats.records_removed, 2,
        "k=a superseded by k=c, aborted k=b removed"
    );
    assert_eq!(committed_view(&log).get("k").map(String::as_str), Some("c"));
}

#[derive(Debug, Clone)]
enum Op {
    /// A plain write of a key, or a tombstone.
    Plain(u8, bool),
    /// A transactional write of producer `pid` (opening its transaction if needed).
    Txn(u8, u8, bool),
    /// Ends producer `pid`'s open transaction: commit or abort.
    End(u8, bool),
    Roll,
    Clean,
    Advance(i64),
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..6, prop::bool::weighted(0.15)).prop_map(|(k, t)| Op::Plain(k, t)),
        4 => (1u8..4, 0u8..6, prop::bool::weighted(0.15)).prop_map(|(p, k, t)| Op::Txn(p, k, t)),
        2 => (1u8..4, any::<bool>()).prop_map(|(p, c)| Op::End(p, c)),
        2 => Just(Op::Roll),
        3 => Just(Op::Clean),
        1 => (0i64..2 * RETENTION_MS).prop_map(Op::Advance),
        1 => Just(Op::Reopen),
    ]
}

/// One record: key, value (`None`: tombstone).
fn record(key: u8, tombstone: bool, tag: usize, ts: i64) -> Record {
    Record::new(
        ts,
        Some(Bytes::from(format!("k{key}"))),
        (!tombstone).then(|| Bytes::from(format!("v{tag}"))),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    /// Any mix of plain and transactional writes, commits, aborts, rolls, cleans, clock moves
    /// and reopens: once every transaction is ended, the `read_committed` view equals the
    /// committed writes folded in offset order, and no aborted record survives a clean.
    #[test]
    fn the_committed_view_survives_any_cleaning(ops in prop::collection::vec(op(), 1..50)) {
        let small = LogConfig { segment_bytes: 400, ..config() };
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(T0));
        let mut log = PartitionLog::open(dir.path(), small.clone(), clock.clone()).unwrap();
        // offset → (key, value or "" for a tombstone, producer or -1)
        let mut written: BTreeMap<i64, (String, String, i64)> = BTreeMap::new();
        let mut open: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
        let mut aborted_offsets: Vec<i64> = Vec::new();
        let mut seqs: BTreeMap<i64, i32> = BTreeMap::new();
        let end_txn = |log: &PartitionLog, open: &mut BTreeMap<i64, Vec<i64>>, aborted: &mut Vec<i64>, written: &mut BTreeMap<i64, (String, String, i64)>, pid: i64, commit: bool| {
            if let Some(offsets) = open.remove(&pid) {
                let t = if commit { ControlType::Commit } else { ControlType::Abort };
                append(log, marker(pid, t, clock.now_ms()));
                if !commit {
                    for o in offsets {
                        written.remove(&o);
                        aborted.push(o);
                    }
                }
            }
        };
        for (tag, op) in ops.into_iter().enumerate() {
            match op {
                Op::Plain(k, t) => {
                    let mut b = BatchBuilder::new().build(&[record(k, t, tag, clock.now_ms())]).unwrap();
                    let info = log.append(&mut b, 0).unwrap();
                    written.insert(info.base_offset, (format!("k{k}"), if t { String::new() } else { format!("v{tag}") }, -1));
                }
                Op::Txn(p, k, t) => {
                    let pid = i64::from(p);
                    let seq = seqs.entry(pid).or_insert(0);
                    let builder = BatchBuilder {
                        producer_id: pid,
                        producer_epoch: 0,
                        base_sequence: *seq,
                        transactional: true,
                        ..BatchBuilder::new()
                    };
                    *seq += 1;
                    let mut b = builder.build(&[record(k, t, tag, clock.now_ms())]).unwrap();
                    let info = log.append(&mut b, 0).unwrap();
                    open.entry(pid).or_default().push(info.base_offset);
                    written.insert(info.base_offset, (format!("k{k}"), if t { String::new() } else { format!("v{tag}") }, pid));
                }
                Op::End(p, commit) => end_txn(&log, &mut open, &mut aborted_offsets, &mut written, i64::from(p), commit),
                Op::Roll => log.roll().unwrap(),
                Op::Clean => { clean(&log, clock.now_ms()); }
                Op::Advance(ms) => clock.advance(ms),
                Op::Reopen => {
                    drop(log);
                    log = PartitionLog::open(dir.path(), small.clone(), clock.clone()).unwrap();
                }
            }
            // Whatever is read is what was written at that offset (or aborted data).
            for (_, records) in batches(&log) {
                for (o, k, v) in records {
                    if let Some((wk, wv, _)) = written.get(&o) {
                        prop_assert_eq!((&k, &v), (wk, wv), "offset {}", o);
                    } else {
                        prop_assert!(aborted_offsets.contains(&o), "offset {} was never written", o);
                    }
                }
            }
        }
        let pids: Vec<i64> = open.keys().copied().collect();
        for pid in pids {
            end_txn(&log, &mut open, &mut aborted_offsets, &mut written, pid, true);
        }
        let mut expected = BTreeMap::new();
        for (k, v, _) in written.values() {
            if v.is_empty() { expected.remove(k); } else { expected.insert(k.clone(), v.clone()); }
        }
        prop_assert_eq!(log.last_stable_offset(), log.high_watermark());
        prop_assert_eq!(&committed_view(&log), &expected);
        log.roll().unwrap();
        clock.advance(RETENTION_MS);
        clean(&log, clock.now_ms());
        prop_assert_eq!(&committed_view(&log), &expected);
        let left: Vec<i64> = batches(&log).into_iter().flat_map(|(_, r)| r.into_iter().map(|x| x.0)).collect();
        for o in &left {
            prop_assert!(!aborted_offsets.contains(o), "aborted record at {} survived a full clean", o);
        }
        prop_assert_eq!(left.len(), expected.len(), "one record per live key after a full clean");
        drop(log);
        let log = PartitionLog::open(dir.path(), small, clock.clone()).unwrap();
        prop_assert_eq!(&committed_view(&log), &expected);
        prop_assert!(log.ongoing_transactions().is_empty());
    }
}
