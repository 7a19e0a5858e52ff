//! Disk faults through the fault-injection seam (`strom_log::fault`): for every kind of file
//! the log writes and every operation on it, `ENOSPC` and `EIO` at each of the first few
//! operations, during appends, rolls, retention, `DeleteRecords` and close. After each run the
//! log must have answered every call with a result or an error (no panic), reopen cleanly once
//! the fault is gone, keep every acknowledged record at its offset, and serve nothing torn.
//!
//! Plus the "disk stays full" cases: a failed append is undone and the log stays writable, a
//! write succeeds again once space returns (no reopen), and a log opens on a disk where nothing
//! can be written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use strom_log::fault::{self, FailNth, FaultError, FaultInjector, FileKind, FileOp};
use strom_log::{Error, FsyncPolicy, LogConfig, PartitionLog, SystemClock};
use strom_record::{BatchBuilder, ControlType, Record, marker_batch};

mod common;

fn config(fsync: FsyncPolicy) -> LogConfig {
    LogConfig {
        segment_bytes: 1024,
        index_interval_bytes: 128,
        retention_ms: None,
        retention_bytes: Some(3000),
        fsync,
        ..LogConfig::default()
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn plain(step: usize) -> Vec<u8> {
    let ts = now();
    let records: Vec<Record> = (0..3)
        .map(|j| Record::new(ts, None, Some(Bytes::from(format!("v{step}-{j}")))))
        .collect();
    BatchBuilder::new().build(&records).unwrap()
}

fn txn(pid: i64) -> Vec<u8> {
    let builder = BatchBuilder {
        producer_id: pid,
        producer_epoch: 0,
        base_sequence: 0,
        transactional: true,
        ..BatchBuilder::new()
    };
    builder
        .build(&[Record::new(
            now(),
            None,
            Some(Bytes::from(format!("t{pid}"))),
        )])
        .unwrap()
}

/// Opens the log, retrying once: a one-shot fault may hit the first attempt.
fn reopen(dir: &Path, fsync: FsyncPolicy) -> PartitionLog {
    match PartitionLog::open(dir, config(fsync), Arc::new(SystemClock)) {
        Ok(log) => log,
        Err(_) => PartitionLog::open(dir, config(fsync), Arc::new(SystemClock))
            .expect("a second open after a one-shot fault must succeed"),
    }
}

/// What the workload saw acknowledged: offset → value of every acknowledged record.
type Acked = BTreeMap<i64, Bytes>;

fn ack(acked: &mut Acked, base: i64, batch: &[u8]) {
    let mut b = batch.to_vec();
    strom_record::set_base_offset(&mut b, base).unwrap();
    for r in strom_record::decode_records(&Bytes::from(b), strom_record::DecodeLimits::default())
        .unwrap()
        .records
    {
        acked.insert(r.offset, r.value.unwrap_or_default());
    }
}

/// Runs the workload; any call may fail. A poisoned log is abandoned and reopened (what the
/// broker does). Returns the last log and what was acknowledged.
fn workload(dir: &Path, fsync: FsyncPolicy) -> (Option<PartitionLog>, Acked) {
    let mut acked = Acked::new();
    let mut log = PartitionLog::open(dir, config(fsync), Arc::new(SystemClock)).ok();
    for step in 0..36 {
        let Some(l) = log.as_ref() else {
            log = PartitionLog::open(dir, config(fsync), Arc::new(SystemClock)).ok();
            continue;
        };
        let result = match step % 12 {
            5 => {
                // A transaction that aborts: writes the transaction index.
                let pid = 1000 + step as i64;
                let mut batch = txn(pid);
                l.append(&mut batch, 0).and_then(|info| {
                    ack(&mut acked, info.base_offset, &batch);
                    let mut m = marker_batch(pid, 0, ControlType::Abort, 1, now()).unwrap();
                    l.append(&mut m, 0).map(|_| ())
                })
            }
            7 => l.roll(),
            9 => l.apply_retention().map(|_| ()),
            11 => {
                let target = l.high_watermark().saturating_sub(20).max(0);
                l.delete_records_before(target).map(|_| ())
            }
            _ => {
                let batch = plain(step);
                let mut b = batch.clone();
                l.append(&mut b, 0).map(|info| {
                    ack(&mut acked, info.base_offset, &batch);
                })
            }
        };
        if let Err(e) = result
            && (l.is_poisoned() || matches!(e, Error::Poisoned))
        {
            l.abandon();
            log = PartitionLog::open(dir, config(fsync), Arc::new(SystemClock)).ok();
        }
    }
    if let Some(l) = &log {
        let _ = l.close();
    }
    (log, acked)
}

/// Reopens (the fault is gone) and checks every acknowledged record still readable at or
/// after the log start is there with its value, offsets dense, and CRCs intact (`read_all`
/// checks every batch).
fn verify(dir: &Path, fsync: FsyncPolicy, acked: &Acked, case: &str) {
    let log = reopen(dir, fsync);
    let start = log.log_start_offset();
    let read: BTreeMap<i64, Bytes> = common::read_all(&log)
        .into_iter()
        .map(|(o, _, v)| (o, v))
        .collect();
    let offsets: Vec<i64> = read.keys().copied().collect();
    for w in offsets.windows(2) {
        assert_eq!(w[1], w[0] + 1, "{case}: offsets are dense");
    }
    for (offset, value) in acked.range(start..) {
        assert_eq!(
            read.get(offset),
            Some(value),
            "{case}: acknowledged record at {offset} lost or changed (log start {start})"
        );
    }
    // The log is writable again.
    let mut b = plain(999);
    log.append(&mut b, 0)
        .unwrap_or_else(|e| panic!("{case}: append after recovery: {e}"));
}

const CASES: &[(FileKind, &[FileOp])] = &[
    (
        FileKind::Segment,
        &[
            FileOp::Create,
            FileOp::Write,
            FileOp::Truncate,
            FileOp::Sync,
            FileOp::Remove,
        ],
    ),
    (
        FileKind::OffsetIndex,
        &[
            FileOp::Create,
            FileOp::Write,
            FileOp::Truncate,
            FileOp::Sync,
        ],
    ),
    (
        FileKind::TimeIndex,
        &[
            FileOp::Create,
            FileOp::Write,
            FileOp::Truncate,
            FileOp::Sync,
        ],
    ),
    (
        FileKind::TxnIndex,
        &[FileOp::Create, FileOp::Write, FileOp::Sync],
    ),
    (
        FileKind::ProducerSnapshot,
        &[
            FileOp::Create,
            FileOp::Write,
            FileOp::Sync,
            FileOp::Rename,
            FileOp::Remove,
        ],
    ),
    (
        FileKind::Checkpoint,
        &[FileOp::Create, FileOp::Write, FileOp::Sync, FileOp::Rename],
    ),
    (FileKind::Directory, &[FileOp::Create, FileOp::SyncDir]),
];

/// How many of the first operations of each kind get a fault, one run each.
const FIRST_N: u64 = 3;

fn one_shot_faults(fsync: FsyncPolicy) {
    let mut fired = 0;
    for &(kind, ops) in CASES {
        for &op in ops {
            for error in [FaultError::NoSpace, FaultError::Io] {
                for nth in 1..=FIRST_N {
                    let dir = tempfile::tempdir().unwrap();
                    let case = format!("{kind:?} {op:?} #{nth} {error:?} {fsync:?}");
                    let plan = Arc::new(FailNth::new(dir.path(), kind, op, nth, error));
                    let guard = fault::install(plan.clone());
                    // A directory the first open creates (and whose parent it fsyncs).
                    let log_dir = dir.path().join("topic-0");
                    let (log, acked) = workload(&log_dir, fsync);
                    drop(log);
                    drop(guard);
                    fired += plan.fired();
                    verify(&log_dir, fsync, &acked, &case);
                }
            }
        }
    }
    // The plans must actually have hit something, or this test tests nothing.
    assert!(fired > 100, "only {fired} faults fired");
}

#[test]
fn one_shot_faults_with_fsync_always() {
    one_shot_faults(FsyncPolicy::Always);
}

#[test]
fn one_shot_faults_with_fsync_never() {
    one_shot_faults(FsyncPolicy::Never);
}

/// A disk where every write fails with `ENOSPC` while `full` is set.
#[derive(Debug)]
struct FullDisk {
    dir: PathBuf,
    full: AtomicBool,
}

impl FullDisk {
    /// A disk under `dir` that has space until `full` is set.
    fn with_space(dir: &Path) -> Arc<FullDisk> {
        Arc::new(FullDisk {
            dir: dir.to_path_buf(),
            full: AtomicBool::new(false),
        })
    }
}

impl FaultInjector for FullDisk {
    fn before(&self, op: FileOp, _kind: FileKind, path: &Path) -> Option<std::io::Error> {
        (op == FileOp::Write && self.full.load(Ordering::Acquire) && path.starts_with(&self.dir))
            .then(|| FaultError::NoSpace.to_io())
    }
}

#[test]
fn a_full_disk_fails_appends_cleanly_and_writes_resume_when_space_returns() {
    for fsync in [FsyncPolicy::Always, FsyncPolicy::Never] {
        let dir = tempfile::tempdir().unwrap();
        let disk = FullDisk::with_space(dir.path());
        let _guard = fault::install(disk.clone());
        let log = PartitionLog::open(dir.path(), config(fsync), Arc::new(SystemClock)).unwrap();
        let mut acked = Acked::new();
        for step in 0..10 {
            let batch = plain(step);
            let info = log.append(&mut batch.clone(), 0).unwrap();
            ack(&mut acked, info.base_offset, &batch);
        }
        let end = log.log_end_offset();
        disk.full.store(true, Ordering::Release);
        for step in 10..20 {
            let err = log.append(&mut plain(step), 0).unwrap_err();
            let Error::Io { source, .. } = &err else {
                panic!("expected an I/O error, got {err}");
            };
            assert_eq!(
                source.raw_os_error(),
                Some(28),
                "the writer sees ENOSPC: {err}"
            );
            assert!(
                !log.is_poisoned(),
                "a failed write is undone, not poisoning"
            );
            assert_eq!(
                log.log_end_offset(),
                end,
                "nothing of the failed write stays"
            );
        }
        // Rolls, retention and reads still work or fail cleanly on the full disk.
        let _ = log.roll();
        let _ = log.apply_retention();
        assert_eq!(
            common::read_all(&log).len() as i64,
            end - log.log_start_offset()
        );
        disk.full.store(false, Ordering::Release);
        let batch = plain(20);
        let info = log
            .append(&mut batch.clone(), 0)
            .expect("writes resume without a reopen once space returns");
        assert_eq!(info.base_offset, end, "no offset was burnt by the failures");
        ack(&mut acked, info.base_offset, &batch);
        drop(log);
        verify(dir.path(), fsync, &acked, &format!("full disk {fsync:?}"));
    }
}

#[test]
fn a_log_opens_on_a_disk_where_nothing_can_be_written() {
    for fsync in [FsyncPolicy::Always, FsyncPolicy::Never] {
        let dir = tempfile::tempdir().unwrap();
        let disk = FullDisk::with_space(dir.path());
        let _guard = fault::install(disk.clone());
        let mut acked = Acked::new();
        {
            let log = PartitionLog::open(dir.path(), config(fsync), Arc::new(SystemClock)).unwrap();
            for step in 0..30 {
                let batch = plain(step);
                let info = log.append(&mut batch.clone(), 0).unwrap();
                ack(&mut acked, info.base_offset, &batch);
            }
            // A crash: nothing more is synced or written.
            log.abandon();
        }
        // Crashed before its recovery point was written: the open must write one (and cannot).
        std::fs::remove_file(dir.path().join("recovery-point")).unwrap();
        disk.full.store(true, Ordering::Release);
        for round in 0..3 {
            let log = PartitionLog::open(dir.path(), config(fsync), Arc::new(SystemClock))
                .unwrap_or_else(|e| panic!("round {round}: open on a full disk failed: {e}"));
            assert!(log.high_watermark() >= acked.keys().last().map_or(0, |o| o + 1));
            assert!(log.append(&mut plain(100), 0).is_err());
            log.close().unwrap();
        }
        disk.full.store(false, Ordering::Release);
        drop(_guard);
        verify(
            dir.path(),
            fsync,
            &acked,
            &format!("open on full disk {fsync:?}"),
        );
    }
}

#[test]
fn a_failed_fdatasync_poisons_and_reopening_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let plan = Arc::new(FailNth::new(
        dir.path(),
        FileKind::Segment,
        FileOp::Sync,
        4,
        FaultError::Io,
    ));
    let _guard = fault::install(plan.clone());
    let log = PartitionLog::open(
        dir.path(),
        config(FsyncPolicy::Always),
        Arc::new(SystemClock),
    )
    .unwrap();
    let mut acked = Acked::new();
    let mut failed = None;
    for step in 0..10 {
        let batch = plain(step);
        match log.append(&mut batch.clone(), 0) {
            Ok(info) => ack(&mut acked, info.base_offset, &batch),
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    let failed = failed.expect("the 4th fdatasync failed");
    assert!(matches!(failed, Error::Io { .. }), "{failed}");
    assert!(log.is_poisoned());
    assert!(matches!(
        log.append(&mut plain(50), 0),
        Err(Error::Poisoned)
    ));
    log.abandon();
    // Still the (retriable) storage error, not "closed", while the owner reopens it.
    assert!(matches!(
        log.append(&mut plain(51), 0),
        Err(Error::Poisoned)
    ));
    drop(log);
    verify(dir.path(), FsyncPolicy::Always, &acked, "fdatasync failure");
}

fn compacted_config() -> LogConfig {
    LogConfig {
        segment_bytes: 700,
        index_interval_bytes: 128,
        retention_ms: None,
        retention_bytes: None,
        fsync: FsyncPolicy::Always,
        cleanup: strom_log::CleanupPolicy {
            delete: false,
            compact: true,
        },
        ..LogConfig::default()
    }
}

/// Appends 60 batches of one keyed record each over 6 keys (many segments). Returns offset →
/// (key, value) of everything written.
fn keyed_history(log: &PartitionLog) -> BTreeMap<i64, (Bytes, Bytes)> {
    let mut written = BTreeMap::new();
    for i in 0..60 {
        let key = Bytes::from(format!("k{}", i % 6));
        let value = Bytes::from(format!("v{i}"));
        let mut batch = BatchBuilder::new()
            .build(&[Record::new(now(), Some(key.clone()), Some(value.clone()))])
            .unwrap();
        let info = log.append(&mut batch, 0).unwrap();
        written.insert(info.base_offset, (key, value));
    }
    written
}

/// Every record from the log start: (offset, key, value), offsets strictly increasing.
fn read_keyed(log: &PartitionLog) -> Vec<(i64, Bytes, Bytes)> {
    let mut out: Vec<(i64, Bytes, Bytes)> = Vec::new();
    let mut offset = log.log_start_offset();
    loop {
        let read = log.read(offset, 1 << 16).unwrap();
        let Some(slice) = read.data else { break };
        let bytes = slice.read_to_bytes().unwrap();
        let mut pos = 0;
        while pos < bytes.len() {
            let header = strom_record::check_stored_batch(&bytes[pos..]).unwrap();
            let batch = bytes.slice(pos..pos + header.total_len());
            for r in strom_record::decode_records(&batch, strom_record::DecodeLimits::default())
                .unwrap()
                .records
            {
                if r.offset >= offset {
                    if let Some(last) = out.last() {
                        assert!(r.offset > last.0, "offsets increase");
                    }
                    out.push((
                        r.offset,
                        r.key.unwrap_or_default(),
                        r.value.unwrap_or_default(),
                    ));
                }
            }
            offset = header.next_offset();
            pos += header.total_len();
        }
    }
    out
}

/// Checks that what `log` serves is a compaction of `written`: every record read is the one
/// written at its offset, and the latest record of every key is there.
fn check_compaction_of(log: &PartitionLog, written: &BTreeMap<i64, (Bytes, Bytes)>, case: &str) {
    let read = read_keyed(log);
    for (offset, key, value) in &read {
        assert_eq!(
            written.get(offset),
            Some(&(key.clone(), value.clone())),
            "{case}: record at {offset} is not the one written there"
        );
    }
    let mut latest: BTreeMap<&Bytes, i64> = BTreeMap::new();
    for (offset, (key, _)) in written {
        latest.insert(key, *offset);
    }
    for (key, offset) in latest {
        assert!(
            read.iter().any(|(o, _, _)| *o == offset),
            "{case}: the latest record of {key:?} (offset {offset}) is gone"
        );
    }
}

/// Faults during a clean, on the cleaner's own files (`.cleaned`, `.swap`, `.swap-end`), its
/// checkpoint, the directory and the segment files it renames or removes: the clean fails (or
/// the log is poisoned by a failed swap and reopened, as the broker does), the log serves a
/// compaction of what was written (every record at its offset, the latest of each key), it
/// reopens once the fault is gone, a clean then succeeds, and the log stays writable.
#[test]
fn faults_during_a_clean_leave_the_log_consistent() {
    const CLEAN_CASES: &[(FileKind, &[FileOp])] = &[
        (
            FileKind::Cleaner,
            &[
                FileOp::Create,
                FileOp::Write,
                FileOp::Truncate,
                FileOp::Sync,
                FileOp::Rename,
                FileOp::Remove,
            ],
        ),
        (FileKind::Segment, &[FileOp::Rename, FileOp::Remove]),
        (FileKind::OffsetIndex, &[FileOp::Rename, FileOp::Remove]),
        (FileKind::TxnIndex, &[FileOp::Rename, FileOp::Remove]),
        (
            FileKind::Checkpoint,
            &[FileOp::Create, FileOp::Write, FileOp::Sync, FileOp::Rename],
        ),
        (FileKind::Directory, &[FileOp::SyncDir]),
    ];
    let clock = Arc::new(SystemClock);
    let mut fired = 0;
    let mut failed_cleans = 0;
    for &(kind, ops) in CLEAN_CASES {
        for &op in ops {
            for error in [FaultError::NoSpace, FaultError::Io] {
                for nth in 1..=FIRST_N {
                    let dir = tempfile::tempdir().unwrap();
                    let case = format!("clean: {kind:?} {op:?} #{nth} {error:?}");
                    let log_dir = dir.path().join("compacted-0");
                    let log =
                        PartitionLog::open(&log_dir, compacted_config(), clock.clone()).unwrap();
                    let written = keyed_history(&log);
                    let plan = Arc::new(FailNth::new(dir.path(), kind, op, nth, error));
                    let guard = fault::install(plan.clone());
                    let cleaned = log.clean(
                        now(),
                        &strom_log::Throttler::unlimited(),
                        &AtomicBool::new(false),
                    );
                    drop(guard);
                    fired += plan.fired();
                    let log = match cleaned {
                        Ok(_) => log,
                        Err(_) => {
                            failed_cleans += 1;
                            if log.is_poisoned() {
                                log.abandon();
                                drop(log);
                                reopen_compacted(&log_dir, &case)
                            } else {
                                log
                            }
                        }
                    };
                    check_compaction_of(&log, &written, &case);
                    log.close().unwrap();
                    drop(log);
                    // Reopen (completing or rolling back any swap), clean again, write.
                    let log = reopen_compacted(&log_dir, &case);
                    check_compaction_of(&log, &written, &case);
                    log.clean(
                        now(),
                        &strom_log::Throttler::unlimited(),
                        &AtomicBool::new(false),
                    )
                    .unwrap_or_else(|e| panic!("{case}: clean after the fault: {e}"));
                    check_compaction_of(&log, &written, &case);
                    assert!(
                        read_keyed(&log).len() < written.len() / 2,
                        "{case}: the log was compacted"
                    );
                    // Keyed: a compacted log refuses keyless records.
                    let mut b = BatchBuilder::new()
                        .build(&[Record::new(
                            now(),
                            Some(Bytes::from_static(b"after")),
                            Some(Bytes::from_static(b"v")),
                        )])
                        .unwrap();
                    log.append(&mut b, 0)
                        .unwrap_or_else(|e| panic!("{case}: append after the clean: {e}"));
                }
            }
        }
    }
    assert!(fired > 50, "only {fired} faults fired");
    assert!(failed_cleans > 50, "only {failed_cleans} cleans failed");
}

fn reopen_compacted(dir: &Path, case: &str) -> PartitionLog {
    PartitionLog::open(dir, compacted_config(), Arc::new(SystemClock))
        .unwrap_or_else(|e| panic!("{case}: reopen: {e}"))
}
