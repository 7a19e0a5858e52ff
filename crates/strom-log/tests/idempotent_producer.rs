//! Idempotent producers at the log: duplicates answered with their original offsets, gaps and
//! old epochs refused, and the producer state rebuilt after a clean reopen (snapshot + tail),
//! after a `kill -9` (no close snapshot), after truncation and after retention.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use strom_log::{Clock, Error, FsyncPolicy, LogConfig, ManualClock, PartitionLog, SystemClock};
use strom_record::{BatchBuilder, Record};

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 1024,
        index_interval_bytes: 256,
        retention_ms: None,
        fsync: FsyncPolicy::Always,
        ..LogConfig::default()
    }
}

fn open(dir: &Path) -> PartitionLog {
    PartitionLog::open(dir, config(), Arc::new(SystemClock)).unwrap()
}

/// A batch of `n` records of producer `pid`/`epoch` starting at sequence `seq`.
fn batch(pid: i64, epoch: i16, seq: i32, n: usize) -> Vec<u8> {
    let mut b = BatchBuilder::new();
    b.producer_id = pid;
    b.producer_epoch = epoch;
    b.base_sequence = seq;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let records: Vec<Record> = (0..n)
        .map(|i| {
            Record::new(
                now,
                None,
                Some(Bytes::from(format!("{pid}-{seq}-{i}-{}", "x".repeat(40)))),
            )
        })
        .collect();
    b.build(&records).unwrap()
}

fn snapshots(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".snapshot"))
        .collect();
    names.sort();
    names
}

#[test]
fn duplicate_returns_original_offsets_and_is_not_written() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    log.append(&mut batch(-1, -1, -1, 2), 0).unwrap();
    let first = log.append(&mut batch(7, 0, 0, 3), 0).unwrap();
    let second = log.append(&mut batch(7, 0, 3, 2), 0).unwrap();
    assert_eq!((first.base_offset, first.last_offset), (2, 4));
    let end = log.log_end_offset();
    let dup = log.append(&mut batch(7, 0, 0, 3), 0).unwrap();
    assert_eq!((dup.base_offset, dup.last_offset), (2, 4));
    let dup = log.append(&mut batch(7, 0, 3, 2), 0).unwrap();
    assert_eq!(dup.base_offset, second.base_offset);
    assert_eq!(
        log.log_end_offset(),
        end,
        "a duplicate is not written again"
    );
    // The next batch in sequence goes on.
    assert_eq!(
        log.append(&mut batch(7, 0, 5, 1), 0).unwrap().base_offset,
        end
    );
}

#[test]
fn gaps_and_old_epochs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    // An unknown producer may start anywhere.
    log.append(&mut batch(3, 0, 10, 2), 0).unwrap();
    let err = log.append(&mut batch(3, 0, 13, 1), 0).unwrap_err();
    assert!(
        matches!(
            err,
            Error::OutOfOrderSequence {
                expected: 12,
                found: 13,
                ..
            }
        ),
        "{err}"
    );
    // A new epoch must start at 0.
    let err = log.append(&mut batch(3, 1, 12, 1), 0).unwrap_err();
    assert!(
        matches!(err, Error::OutOfOrderSequence { expected: 0, .. }),
        "{err}"
    );
    log.append(&mut batch(3, 1, 0, 1), 0).unwrap();
    let err = log.append(&mut batch(3, 0, 12, 1), 0).unwrap_err();
    assert!(
        matches!(
            err,
            Error::ProducerFenced {
                epoch: 0,
                current_epoch: 1,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(log.log_end_offset(), 3, "refused batches are not written");
    // Several batches in one append: checked in order, all or nothing.
    let mut two = batch(3, 1, 1, 1);
    two.extend(batch(3, 1, 3, 1));
    assert!(log.append(&mut two, 0).is_err());
    assert_eq!(log.log_end_offset(), 3);
    let mut two = batch(3, 1, 1, 1);
    two.extend(batch(3, 1, 2, 1));
    log.append(&mut two, 0).unwrap();
    assert_eq!(log.producer_state(3), Some((1, Some(2))));
}

#[test]
fn state_survives_clean_reopen_from_snapshot_and_tail() {
    let dir = tempfile::tempdir().unwrap();
    let mut originals = Vec::new();
    {
        let log = open(dir.path());
        for seq in 0..40 {
            originals.push(log.append(&mut batch(5, 0, seq, 1), 0).unwrap().base_offset);
        }
        assert!(log.segment_count() > 3, "rolled");
        log.close().unwrap();
    }
    assert!(
        snapshots(dir.path()).len() >= 2,
        "{:?}",
        snapshots(dir.path())
    );
    let log = open(dir.path());
    assert_eq!(log.producer_state(5), Some((0, Some(39))));
    for seq in 35..40 {
        let dup = log.append(&mut batch(5, 0, seq, 1), 0).unwrap();
        assert_eq!(dup.base_offset, originals[seq as usize]);
    }
    assert!(matches!(
        log.append(&mut batch(5, 0, 41, 1), 0),
        Err(Error::OutOfOrderSequence { expected: 40, .. })
    ));
    log.append(&mut batch(5, 0, 40, 1), 0).unwrap();
}

#[test]
fn state_survives_kill9_without_close_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let mut originals = Vec::new();
    {
        let log = open(dir.path());
        for seq in 0..30 {
            originals.push(log.append(&mut batch(9, 2, seq, 1), 0).unwrap().base_offset);
        }
        // No close: neither the final sync nor the close snapshot happen, as after SIGKILL.
        std::mem::forget(log);
    }
    let log = open(dir.path());
    assert_eq!(log.producer_state(9), Some((2, Some(29))));
    let dup = log.append(&mut batch(9, 2, 29, 1), 0).unwrap();
    assert_eq!(dup.base_offset, originals[29]);
    assert!(matches!(
        log.append(&mut batch(9, 1, 30, 1), 0),
        Err(Error::ProducerFenced { .. })
    ));
    drop(log);

    // With every snapshot gone too, a full header scan rebuilds the same state.
    for name in snapshots(dir.path()) {
        std::fs::remove_file(dir.path().join(name)).unwrap();
    }
    let log = open(dir.path());
    assert_eq!(log.producer_state(9), Some((2, Some(29))));
    assert_eq!(
        log.append(&mut batch(9, 2, 25, 1), 0).unwrap().base_offset,
        originals[25]
    );
}

#[test]
fn damaged_snapshot_falls_back_to_an_older_one() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path());
        for seq in 0..30 {
            log.append(&mut batch(4, 0, seq, 1), 0).unwrap();
        }
    }
    let names = snapshots(dir.path());
    let newest = dir.path().join(names.last().unwrap());
    std::fs::write(&newest, b"garbage").unwrap();
    let log = open(dir.path());
    assert_eq!(log.producer_state(4), Some((0, Some(29))));
}

#[test]
fn truncation_rebuilds_state_below_the_new_end() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let mut originals = Vec::new();
    for seq in 0..30 {
        originals.push(log.append(&mut batch(6, 0, seq, 1), 0).unwrap().base_offset);
    }
    let cut = originals[12];
    log.truncate_to(cut).unwrap();
    assert_eq!(log.producer_state(6), Some((0, Some(11))));
    for name in snapshots(dir.path()) {
        let offset: i64 = name.trim_end_matches(".snapshot").parse().unwrap();
        assert!(offset <= cut, "snapshot {name} above the new end {cut}");
    }
    // Sequence 12 is no longer a duplicate: it is the next one.
    assert_eq!(
        log.append(&mut batch(6, 0, 12, 1), 0).unwrap().base_offset,
        cut
    );
    drop(log);
    let log = open(dir.path());
    assert_eq!(log.producer_state(6), Some((0, Some(12))));
}

#[test]
fn retention_deletes_snapshots_with_segments_and_producers_expire() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000_000));
    let config = LogConfig {
        retention_bytes: Some(2048),
        producer_id_expiration_ms: 10_000,
        ..config()
    };
    let log = PartitionLog::open(dir.path(), config, clock.clone()).unwrap();
    let b = |pid: i64, seq: i32| {
        let mut builder = BatchBuilder::new();
        builder.producer_id = pid;
        builder.producer_epoch = 0;
        builder.base_sequence = seq;
        builder
            .build(&[Record::new(
                clock.now_ms(),
                None,
                Some(Bytes::from("y".repeat(100))),
            )])
            .unwrap()
    };
    for seq in 0..40 {
        log.append(&mut b(1, seq), 0).unwrap();
    }
    assert!(log.apply_retention().unwrap() > 0);
    let first = log.log_start_offset();
    for name in snapshots(dir.path()) {
        let offset: i64 = name.trim_end_matches(".snapshot").parse().unwrap();
        assert!(
            offset >= first,
            "snapshot {name} below the log start {first}"
        );
    }
    // Producer 1 is still known after its early segments went.
    assert_eq!(log.producer_state(1), Some((0, Some(39))));
    clock.advance(10_001);
    log.apply_retention().unwrap();
    assert_eq!(log.producer_state(1), None, "expired");
    // Expired producers may start again at any sequence.
    log.append(&mut b(1, 100), 0).unwrap();
}
