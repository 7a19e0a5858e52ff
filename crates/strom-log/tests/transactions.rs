//! Transactions at the log: open transactions hold the last stable offset back, ABORT markers
//! go to the segment's `.txnindex`, markers fence old epochs and take new ones, and all of it
//! survives reopen, truncation, retention and damaged index files. Ends with a property test
//! against a model that derives everything from the batches in the log.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;
use strom_log::{
    AbortedFilter, AbortedTxn, Error, FsyncPolicy, LogConfig, PartitionLog, SystemClock,
    TXN_INDEX_ENTRY_LEN,
};
use strom_record::{BatchBuilder, ControlType, DecodeLimits, Record, marker_batch};

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 700,
        index_interval_bytes: 128,
        retention_ms: None,
        fsync: FsyncPolicy::Never,
        ..LogConfig::default()
    }
}

fn open(dir: &Path) -> PartitionLog {
    PartitionLog::open(dir, config(), Arc::new(SystemClock)).unwrap()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// `n` records of producer `pid` (`-1`: a plain batch) at sequence `seq`.
fn data(pid: i64, epoch: i16, seq: i32, n: usize, transactional: bool) -> Vec<u8> {
    let builder = BatchBuilder {
        producer_id: pid,
        producer_epoch: if pid < 0 { -1 } else { epoch },
        base_sequence: if pid < 0 { -1 } else { seq },
        transactional,
        ..BatchBuilder::new()
    };
    let ts = now();
    let records: Vec<Record> = (0..n)
        .map(|i| Record::new(ts, None, Some(Bytes::from(format!("{pid}-{seq}-{i}")))))
        .collect();
    builder.build(&records).unwrap()
}

fn txn(pid: i64, seq: i32, n: usize) -> Vec<u8> {
    data(pid, 0, seq, n, true)
}

fn plain(n: usize) -> Vec<u8> {
    data(-1, -1, -1, n, false)
}

fn marker(pid: i64, epoch: i16, t: ControlType) -> Vec<u8> {
    marker_batch(pid, epoch, t, 5, now()).unwrap()
}

fn append(log: &PartitionLog, mut batch: Vec<u8>) -> i64 {
    log.append(&mut batch, 0).unwrap().base_offset
}

fn txn_indexes(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txnindex"))
        .collect();
    out.sort();
    out
}

#[test]
fn open_transaction_holds_the_lso_and_abort_is_indexed() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    append(&log, plain(2)); // 0..=1
    assert_eq!(log.last_stable_offset(), 2);
    append(&log, txn(1, 0, 2)); // 2..=3
    append(&log, plain(1)); // 4
    assert_eq!((log.high_watermark(), log.last_stable_offset()), (5, 2));
    let ongoing = log.ongoing_transactions();
    assert_eq!(ongoing.len(), 1);
    assert_eq!((ongoing[0].producer_id, ongoing[0].first_offset), (1, 2));
    // read_committed stops at the LSO; an offset between LSO and HW reads nothing.
    let r = log.read_committed(0, 1 << 20).unwrap();
    assert_eq!(r.read.last_stable_offset, 2);
    let bytes = r.read.data.unwrap().read_to_vec().unwrap();
    assert_eq!(
        strom_record::check_stored_batch(&bytes)
            .unwrap()
            .next_offset(),
        2
    );
    assert_eq!(
        bytes.len(),
        strom_record::check_stored_batch(&bytes)
            .unwrap()
            .total_len()
    );
    assert!(log.read_committed(3, 1 << 20).unwrap().read.data.is_none());
    assert!(log.read(3, 1 << 20).unwrap().data.is_some());

    let m = append(&log, marker(1, 0, ControlType::Abort)); // 5
    assert_eq!(m, 5);
    assert_eq!(log.last_stable_offset(), 6);
    assert!(log.ongoing_transactions().is_empty());
    let aborted = vec![AbortedTxn {
        producer_id: 1,
        first_offset: 2,
    }];
    assert_eq!(log.aborted_transactions(0, 6).unwrap(), aborted);
    assert_eq!(log.aborted_transactions(5, 6).unwrap(), aborted);
    assert!(log.aborted_transactions(6, 10).unwrap().is_empty());
    assert!(log.aborted_transactions(0, 2).unwrap().is_empty());
    let r = log.read_committed(0, 1 << 20).unwrap();
    assert_eq!(r.aborted_transactions, aborted);
    // The index entry is Kafka's 34 bytes.
    let files = txn_indexes(dir.path());
    assert_eq!(files.len(), 1);
    let raw = std::fs::read(&files[0]).unwrap();
    assert_eq!(raw.len(), TXN_INDEX_ENTRY_LEN);
    let field = |i: usize| i64::from_be_bytes(raw[2 + 8 * i..10 + 8 * i].try_into().unwrap());
    assert_eq!(&raw[..2], &[0, 0]);
    assert_eq!((field(0), field(1), field(2), field(3)), (1, 2, 5, 6));

    // A committed transaction leaves no index entry.
    append(&log, txn(2, 0, 1)); // 6
    assert_eq!(log.last_stable_offset(), 6);
    append(&log, marker(2, 0, ControlType::Commit)); // 7
    assert_eq!(log.last_stable_offset(), 8);
    assert_eq!(log.aborted_transactions(0, 8).unwrap(), aborted);
    assert_eq!(std::fs::read(&files[0]).unwrap().len(), TXN_INDEX_ENTRY_LEN);
    // A marker without an open transaction completes nothing.
    append(&log, marker(3, 0, ControlType::Abort));
    assert_eq!(log.aborted_transactions(0, 100).unwrap(), aborted);
}

#[test]
fn state_survives_reopen_and_producer_listing() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path());
        append(&log, txn(1, 0, 1)); // 0
        append(&log, txn(2, 0, 3)); // 1..=3
        append(&log, marker(1, 0, ControlType::Abort)); // 4
        assert_eq!(log.last_stable_offset(), 1);
    }
    let log = open(dir.path());
    assert_eq!(log.last_stable_offset(), 1);
    assert_eq!(
        log.aborted_transactions(0, 10).unwrap(),
        vec![AbortedTxn {
            producer_id: 1,
            first_offset: 0
        }]
    );
    let producers = log.producers();
    assert_eq!(producers.len(), 2);
    let p2 = producers.iter().find(|p| p.producer_id == 2).unwrap();
    assert_eq!(
        (p2.last_sequence, p2.current_txn_start_offset),
        (2, Some(1))
    );
    let p1 = producers.iter().find(|p| p.producer_id == 1).unwrap();
    assert_eq!(
        (p1.coordinator_epoch, p1.current_txn_start_offset),
        (5, None)
    );
    // The open transaction goes on after the reopen.
    append(&log, txn(2, 3, 1));
    append(&log, marker(2, 0, ControlType::Commit));
    assert_eq!(log.last_stable_offset(), log.high_watermark());
}

#[test]
fn markers_fence_old_epochs_and_take_new_ones() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    append(&log, data(7, 2, 0, 1, true));
    let mut old = marker(7, 1, ControlType::Commit);
    assert!(matches!(
        log.append(&mut old, 0),
        Err(Error::ProducerFenced {
            epoch: 1,
            current_epoch: 2,
            ..
        })
    ));
    assert_eq!(log.last_stable_offset(), 0);
    // The coordinator aborts with a bumped epoch.
    append(&log, marker(7, 3, ControlType::Abort));
    assert_eq!(log.producer_state(7).map(|s| s.0), Some(3));
    assert_eq!(log.last_stable_offset(), 2);
    let mut stale = data(7, 2, 1, 1, true);
    assert!(matches!(
        log.append(&mut stale, 0),
        Err(Error::ProducerFenced { .. })
    ));
    append(&log, data(7, 3, 0, 1, true));
    assert_eq!(log.last_stable_offset(), 2);
}

#[test]
fn non_transactional_batch_during_a_transaction_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    append(&log, txn(4, 0, 1));
    let mut b = data(4, 0, 1, 1, false);
    assert!(matches!(
        log.append(&mut b, 0),
        Err(Error::InvalidTxnState { producer_id: 4, .. })
    ));
    append(&log, marker(4, 0, ControlType::Commit));
    append(&log, data(4, 0, 1, 1, false));
}

/// Writes a log with aborted transactions across several segments; returns the aborted list.
fn several_segments(log: &PartitionLog) -> Vec<AbortedTxn> {
    let mut aborted = Vec::new();
    for i in 0..12i64 {
        let pid = i % 3;
        let seq = i32::try_from(i / 3).unwrap() * 2;
        let first = append(log, txn(pid, seq, 2));
        append(log, plain(1));
        let t = if i % 2 == 0 {
            ControlType::Abort
        } else {
            ControlType::Commit
        };
        append(log, marker(pid, 0, t));
        if t == ControlType::Abort {
            aborted.push(AbortedTxn {
                producer_id: pid,
                first_offset: first,
            });
        }
    }
    aborted
}

#[test]
fn damaged_txn_indexes_are_rebuilt_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let aborted = {
        let log = open(dir.path());
        let a = several_segments(&log);
        assert!(log.segment_count() > 2);
        assert_eq!(log.aborted_transactions(0, i64::MAX).unwrap(), a);
        a
    };
    let files = txn_indexes(dir.path());
    assert!(files.len() > 2, "{files:?}");
    // A torn tail, garbage after valid entries, and a file cut to nothing but a stray byte.
    let len = std::fs::metadata(&files[0]).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&files[0])
        .unwrap()
        .set_len(len - 5)
        .unwrap();
    let mut garbage = std::fs::read(&files[1]).unwrap();
    garbage.extend_from_slice(&[0xff; TXN_INDEX_ENTRY_LEN]);
    std::fs::write(&files[1], garbage).unwrap();
    std::fs::write(files.last().unwrap(), [7u8]).unwrap();
    let log = open(dir.path());
    assert_eq!(log.aborted_transactions(0, i64::MAX).unwrap(), aborted);
    drop(log);
    // The rebuilt files are whole again.
    for f in txn_indexes(dir.path()) {
        assert_eq!(
            std::fs::metadata(&f).unwrap().len() % TXN_INDEX_ENTRY_LEN as u64,
            0
        );
    }
    let log = open(dir.path());
    assert_eq!(log.aborted_transactions(0, i64::MAX).unwrap(), aborted);
}

#[test]
fn truncation_reopens_transactions_and_drops_index_entries() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    append(&log, plain(1)); // 0
    append(&log, txn(1, 0, 1)); // 1
    append(&log, marker(1, 0, ControlType::Abort)); // 2
    append(&log, plain(1)); // 3
    assert_eq!(log.aborted_transactions(0, 4).unwrap().len(), 1);
    log.truncate_to(2).unwrap();
    assert_eq!(log.high_watermark(), 2);
    assert_eq!(log.last_stable_offset(), 1);
    assert!(log.aborted_transactions(0, 4).unwrap().is_empty());
    assert!(
        txn_indexes(dir.path()).is_empty()
            || std::fs::metadata(&txn_indexes(dir.path())[0])
                .unwrap()
                .len()
                == 0
    );
    append(&log, marker(1, 0, ControlType::Commit));
    assert_eq!(log.last_stable_offset(), 3);
}

#[test]
fn retention_removes_txn_indexes_with_their_segments() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    several_segments(&log);
    let before = txn_indexes(dir.path()).len();
    let hw = log.high_watermark();
    log.roll().unwrap();
    log.delete_records_before(hw).unwrap();
    assert!(txn_indexes(dir.path()).len() < before);
    assert!(txn_indexes(dir.path()).is_empty());
    assert!(log.aborted_transactions(0, i64::MAX).unwrap().is_empty());
    assert_eq!(log.last_stable_offset(), hw);
}

#[test]
fn retention_past_an_open_transaction_keeps_it_open() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    append(&log, txn(9, 0, 1)); // 0
    for _ in 0..20 {
        append(&log, plain(3));
    }
    log.roll().unwrap();
    log.delete_records_before(log.high_watermark()).unwrap();
    // The start of the transaction is gone: the LSO is the log start.
    assert_eq!(log.last_stable_offset(), log.log_start_offset());
    drop(log);
    let log = open(dir.path());
    assert_eq!(log.last_stable_offset(), log.log_start_offset());
    append(&log, marker(9, 0, ControlType::Commit));
    assert_eq!(log.last_stable_offset(), log.high_watermark());
}

#[test]
fn fsync_always_marker_counts_only_once_durable() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        fsync: FsyncPolicy::Always,
        ..config()
    };
    let log = PartitionLog::open(dir.path(), cfg, Arc::new(SystemClock)).unwrap();
    append(&log, txn(1, 0, 1));
    append(&log, marker(1, 0, ControlType::Abort));
    assert_eq!(log.high_watermark(), 2);
    assert_eq!(log.last_stable_offset(), 2);
}

/// The read side of a consumer: every data record a `read_committed` reader keeps.
fn committed_values(log: &PartitionLog) -> Vec<i64> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    loop {
        let r = log.read_committed(offset, 300).unwrap();
        let Some(slice) = r.read.data else { break };
        let bytes = Bytes::from(slice.read_to_vec().unwrap());
        let mut filter = AbortedFilter::new(r.aborted_transactions);
        for batch in strom_record::batches(&bytes, strom_record::ValidationLimits::default()) {
            let (h, range) = batch.unwrap();
            let slice = bytes.slice(range);
            let abort = h.is_control()
                && strom_record::parse_marker(&slice).unwrap().control_type == ControlType::Abort;
            offset = h.next_offset();
            if filter.skip(&h, abort) {
                continue;
            }
            let decoded = strom_record::decode_records(&slice, DecodeLimits::default()).unwrap();
            out.extend(decoded.records.iter().map(|r| r.offset));
        }
    }
    out
}

// ---- the model ----

#[derive(Debug, Clone, Copy)]
enum Kind {
    Plain,
    Txn { pid: i64, last_seq: i32 },
    Marker { pid: i64, abort: bool },
}

#[derive(Debug, Clone, Copy)]
struct MBatch {
    base: i64,
    len: i64,
    kind: Kind,
}

#[derive(Debug, Default)]
struct Model {
    batches: Vec<MBatch>,
}

struct Derived {
    lso: i64,
    /// (pid, first, marker offset)
    aborted: Vec<(i64, i64, i64)>,
    ongoing: Vec<(i64, i64)>,
    committed: Vec<i64>,
}

impl Model {
    fn end(&self) -> i64 {
        self.batches.last().map_or(0, |b| b.base + b.len)
    }

    fn next_seq(&self, pid: i64) -> i32 {
        self.batches
            .iter()
            .rev()
            .find_map(|b| match b.kind {
                Kind::Txn { pid: p, last_seq } if p == pid => Some(last_seq + 1),
                _ => None,
            })
            .unwrap_or(0)
    }

    fn derive(&self) -> Derived {
        let mut open: BTreeMap<i64, i64> = BTreeMap::new();
        let mut aborted = Vec::new();
        let mut txn_of: BTreeMap<i64, Vec<i64>> = BTreeMap::new(); // first -> offsets
        let mut dropped = std::collections::BTreeSet::new();
        for b in &self.batches {
            match b.kind {
                Kind::Plain => {}
                Kind::Txn { pid, .. } => {
                    let first = *open.entry(pid).or_insert(b.base);
                    txn_of
                        .entry(first)
                        .or_default()
                        .extend(b.base..b.base + b.len);
                }
                Kind::Marker { pid, abort } => {
                    if let Some(first) = open.remove(&pid)
                        && abort
                    {
                        aborted.push((pid, first, b.base));
                        dropped.extend(txn_of.get(&first).cloned().unwrap_or_default());
                    }
                }
            }
        }
        let lso = open
            .values()
            .copied()
            .min()
            .unwrap_or(self.end())
            .min(self.end());
        let committed = self
            .batches
            .iter()
            .filter(|b| !matches!(b.kind, Kind::Marker { .. }))
            .flat_map(|b| b.base..b.base + b.len)
            .filter(|o| *o < lso && !dropped.contains(o))
            .collect();
        let mut ongoing: Vec<(i64, i64)> = open.into_iter().map(|(p, f)| (f, p)).collect();
        ongoing.sort();
        Derived {
            lso,
            aborted,
            ongoing,
            committed,
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Plain(u8),
    Txn(u8, u8),
    Marker(u8, bool),
    Roll,
    Reopen,
    Truncate(u16),
    /// Damage a `.txnindex` (index into the sorted list, how) and reopen.
    Damage(u8, u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1u8..4).prop_map(Op::Plain),
        5 => (0u8..3, 1u8..4).prop_map(|(p, n)| Op::Txn(p, n)),
        4 => (0u8..3, any::<bool>()).prop_map(|(p, a)| Op::Marker(p, a)),
        1 => Just(Op::Roll),
        1 => Just(Op::Reopen),
        1 => (0u16..1000).prop_map(Op::Truncate),
        1 => (any::<u8>(), 0u8..3).prop_map(|(i, h)| Op::Damage(i, h)),
    ]
}

fn check(log: &PartitionLog, model: &Model) -> Result<(), TestCaseError> {
    let d = model.derive();
    prop_assert_eq!(log.high_watermark(), model.end());
    prop_assert_eq!(log.last_stable_offset(), d.lso);
    let ongoing: Vec<(i64, i64)> = log
        .ongoing_transactions()
        .iter()
        .map(|t| (t.first_offset, t.producer_id))
        .collect();
    prop_assert_eq!(ongoing, d.ongoing);
    let end = model.end();
    for (from, to) in [
        (0, end + 1),
        (0, d.lso),
        (end / 3, end / 2 + 1),
        (end / 2, end),
    ] {
        let mut want: Vec<AbortedTxn> = d
            .aborted
            .iter()
            .filter(|(_, first, last)| *last >= from && *first < to)
            .map(|&(producer_id, first_offset, _)| AbortedTxn {
                producer_id,
                first_offset,
            })
            .collect();
        let mut got = log.aborted_transactions(from, to).unwrap();
        want.sort();
        got.sort();
        prop_assert_eq!(got, want, "aborted in [{}, {})", from, to);
    }
    prop_assert_eq!(committed_values(log), d.committed);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn lso_and_aborted_list_match_the_model(ops in prop::collection::vec(op(), 1..50)) {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path());
        let mut model = Model::default();
        for op in ops {
            match op {
                Op::Plain(n) => {
                    let base = append(&log, plain(usize::from(n)));
                    model.batches.push(MBatch { base, len: i64::from(n), kind: Kind::Plain });
                }
                Op::Txn(p, n) => {
                    let pid = i64::from(p);
                    let seq = model.next_seq(pid);
                    let base = append(&log, txn(pid, seq, usize::from(n)));
                    model.batches.push(MBatch {
                        base,
                        len: i64::from(n),
                        kind: Kind::Txn { pid, last_seq: seq + i32::from(n) - 1 },
                    });
                }
                Op::Marker(p, abort) => {
                    let pid = i64::from(p);
                    let t = if abort { ControlType::Abort } else { ControlType::Commit };
                    let base = append(&log, marker(pid, 0, t));
                    model.batches.push(MBatch { base, len: 1, kind: Kind::Marker { pid, abort } });
                }
                Op::Roll => log.roll().unwrap(),
                Op::Reopen => {
                    drop(log);
                    log = open(dir.path());
                }
                Op::Truncate(frac) => {
                    let end = model.end();
                    let at = end * i64::from(frac) / 1000;
                    log.truncate_to(at).unwrap();
                    if let Some(i) = model.batches.iter().position(|b| b.base + b.len > at) {
                        model.batches.truncate(i);
                    }
                }
                Op::Damage(i, how) => {
                    drop(log);
                    let files = txn_indexes(dir.path());
                    if !files.is_empty() {
                        let f = &files[usize::from(i) % files.len()];
                        let mut bytes = std::fs::read(f).unwrap();
                        match how {
                            0 => bytes.truncate(bytes.len().saturating_sub(3)),
                            1 => bytes.extend_from_slice(&[0xff; TXN_INDEX_ENTRY_LEN]),
                            _ => bytes.push(1),
                        }
                        std::fs::write(f, bytes).unwrap();
                    }
                    log = open(dir.path());
                }
            }
            check(&log, &model)?;
        }
    }
}
