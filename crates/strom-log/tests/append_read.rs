//! Append, read, roll, lookup, retention and truncation on a real directory.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{batch, open, read_all};
use strom_log::{Error, FsyncPolicy, LogConfig, ManualClock, SystemClock, TimestampType};

fn small_segments() -> LogConfig {
    LogConfig {
        segment_bytes: 1024,
        index_interval_bytes: 256,
        fsync: FsyncPolicy::Never,
        retention_ms: None,
        ..LogConfig::default()
    }
}

#[test]
fn offsets_are_dense_and_reads_return_whole_batches() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default(), Arc::new(SystemClock));
    let a = log.append(&mut batch("a", &[10, 11, 12]), 5).unwrap();
    let b = log.append(&mut batch("b", &[13]), 5).unwrap();
    assert_eq!((a.base_offset, a.last_offset, a.record_count), (0, 2, 3));
    assert_eq!((b.base_offset, b.last_offset), (3, 3));
    assert_eq!((log.high_watermark(), log.log_end_offset()), (4, 4));
    assert_eq!(a.log_append_time, -1);

    // A read in the middle of a batch returns that whole batch.
    let read = log.read(1, 1 << 20).unwrap();
    let bytes = read.data.unwrap().read_to_vec().unwrap();
    let first = strom_record::check_stored_batch(&bytes).unwrap();
    assert_eq!((first.base_offset, first.partition_leader_epoch), (0, 5));
    assert_eq!(read.high_watermark, 4);

    // max_bytes smaller than the first batch still returns it whole (KIP-74), but no more.
    let read = log.read(0, 1).unwrap().data.unwrap();
    assert_eq!(read.len, first.total_len());
    // At the high watermark: nothing; past it: out of range.
    assert!(log.read(4, 100).unwrap().data.is_none());
    assert!(matches!(
        log.read(5, 100),
        Err(Error::OffsetOutOfRange { offset: 5, .. })
    ));
    let values: Vec<_> = read_all(&log).into_iter().map(|(o, _, v)| (o, v)).collect();
    assert_eq!(values.len(), 4);
    assert_eq!(values[3], (3, bytes::Bytes::from("b-0")));
}

#[test]
fn corrupt_and_oversized_batches_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        max_message_bytes: 200,
        ..LogConfig::default()
    };
    let log = open(dir.path(), config, Arc::new(SystemClock));
    let mut good = batch("x", &[1]);
    let mut bad = good.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    assert!(matches!(
        log.append(&mut bad, 0),
        Err(Error::InvalidBatch(strom_record::Error::CrcMismatch { .. }))
    ));
    let mut big = batch("y", &[1; 20]);
    assert!(matches!(
        log.append(&mut big, 0),
        Err(Error::BatchTooLarge { max: 200, .. })
    ));
    assert!(matches!(
        log.append(&mut [], 0),
        Err(Error::InvalidBatch(_))
    ));
    // A good batch followed by a truncated one: nothing is appended.
    let mut two = good.clone();
    two.extend_from_slice(&good[..30]);
    assert!(log.append(&mut two, 0).is_err());
    assert_eq!(log.log_end_offset(), 0);
    log.append(&mut good, 0).unwrap();
    assert_eq!(log.log_end_offset(), 1);
}

#[test]
fn log_append_time_is_stamped() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000_000));
    let config = LogConfig {
        timestamp_type: TimestampType::LogAppendTime,
        ..LogConfig::default()
    };
    let log = open(dir.path(), config, clock.clone());
    let info = log.append(&mut batch("a", &[5, 6]), 0).unwrap();
    assert_eq!(info.log_append_time, 1_000_000);
    let all = read_all(&log);
    assert!(all.iter().all(|(_, ts, _)| *ts == 1_000_000));
    assert_eq!(
        log.offset_for_timestamp(999_999).unwrap(),
        Some((0, 1_000_000))
    );
}

#[test]
fn segments_roll_by_size_and_age_and_reads_cross_them() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(0));
    let config = LogConfig {
        segment_ms: Some(1000),
        ..small_segments()
    };
    let log = open(dir.path(), config, clock.clone());
    for i in 0..40 {
        log.append(&mut batch(&format!("b{i}"), &[i, i + 1]), 0)
            .unwrap();
    }
    let by_size = log.segment_count();
    assert!(by_size > 3, "expected several segments, got {by_size}");
    clock.advance(1000);
    log.append(&mut batch("late", &[100]), 0).unwrap();
    assert_eq!(log.segment_count(), by_size + 1, "segment.ms should roll");
    let all = read_all(&log);
    assert_eq!(all.len(), 81);
    assert!(all.iter().enumerate().all(|(i, (o, _, _))| *o == i as i64));
    drop(log);
    let log = open(dir.path(), small_segments(), clock);
    assert_eq!(read_all(&log).len(), 81);
    assert_eq!(log.log_end_offset(), 81);
}

#[test]
fn timestamp_lookup_finds_the_first_record_not_batch() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_segments(), Arc::new(SystemClock));
    // Timestamps are not monotonic under CreateTime.
    log.append(&mut batch("a", &[100, 300, 200]), 0).unwrap(); // offsets 0..2
    log.append(&mut batch("b", &[150, 400]), 0).unwrap(); // 3..4
    assert_eq!(log.offset_for_timestamp(0).unwrap(), Some((0, 100)));
    assert_eq!(log.offset_for_timestamp(101).unwrap(), Some((1, 300)));
    assert_eq!(log.offset_for_timestamp(301).unwrap(), Some((4, 400)));
    assert_eq!(log.offset_for_timestamp(401).unwrap(), None);
    assert_eq!(log.max_timestamp().unwrap(), Some((4, 400)));
}

#[test]
fn delete_records_advances_log_start_persistently() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_segments(), Arc::new(SystemClock));
    for i in 0..30 {
        log.append(&mut batch("x", &[i]), 0).unwrap();
    }
    let segments = log.segment_count();
    assert_eq!(log.delete_records_before(17).unwrap(), 17);
    assert!(log.segment_count() < segments);
    assert!(matches!(
        log.read(16, 100),
        Err(Error::OffsetOutOfRange { .. })
    ));
    assert_eq!(read_all(&log).first().map(|r| r.0), Some(17));
    assert!(matches!(
        log.delete_records_before(31),
        Err(Error::InvalidOffset { .. })
    ));
    drop(log);
    let log = open(dir.path(), small_segments(), Arc::new(SystemClock));
    assert_eq!(log.log_start_offset(), 17);
    assert_eq!(read_all(&log).len(), 13);
}

#[test]
fn retention_by_time_and_size_deletes_whole_segments() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(10_000));
    let log = open(dir.path(), small_segments(), clock.clone());
    for i in 0..40 {
        log.append(&mut batch("x", &[i * 100]), 0).unwrap();
    }
    let before = log.size_bytes();
    log.set_config(LogConfig {
        retention_bytes: Some(before / 2),
        ..small_segments()
    });
    assert!(log.apply_retention().unwrap() > 0);
    assert!(log.size_bytes() <= before / 2 + 1024);
    assert!(log.size_bytes() >= before / 2);
    let start = log.log_start_offset();
    assert!(start > 0);
    assert_eq!(read_all(&log).first().map(|r| r.0), Some(start));

    // Everything older than 1 s at t = 10 s: timestamps are <= 3900 ms, so all goes, the active
    // segment included (rolled first); the log end stays.
    log.set_config(LogConfig {
        retention_ms: Some(1000),
        ..small_segments()
    });
    assert!(log.apply_retention().unwrap() > 0);
    assert_eq!(log.log_start_offset(), 40);
    assert_eq!(log.log_end_offset(), 40);
    assert!(read_all(&log).is_empty());
    log.append(&mut batch("y", &[20_000]), 0).unwrap();
    assert_eq!(read_all(&log).first().map(|r| r.0), Some(40));
}

#[test]
fn truncate_to_removes_the_tail_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_segments(), Arc::new(SystemClock));
    for i in 0..30 {
        log.append(&mut batch(&format!("b{i}"), &[i, i]), 0)
            .unwrap();
    }
    // Offset 21 is inside the batch 20..21: the whole batch goes.
    log.truncate_to(21).unwrap();
    assert_eq!(log.log_end_offset(), 20);
    assert_eq!(log.high_watermark(), 20);
    let info = log.append(&mut batch("new", &[1]), 3).unwrap();
    assert_eq!(info.base_offset, 20);
    let all = read_all(&log);
    assert_eq!(all.len(), 21);
    assert_eq!(all[20].2, bytes::Bytes::from("new-0"));
    // Truncating below the start empties the log and restarts it there.
    log.truncate_to(0).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 0));
    assert!(read_all(&log).is_empty());
    drop(log);
    let log = open(dir.path(), small_segments(), Arc::new(SystemClock));
    assert_eq!(log.log_end_offset(), 0);
}

#[test]
fn group_commit_shares_fdatasync_between_concurrent_appenders() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(open(
        dir.path(),
        LogConfig::default(),
        Arc::new(SystemClock),
    ));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                (0..25)
                    .map(|i| {
                        log.append(&mut batch(&format!("t{t}-{i}"), &[i]), 0)
                            .unwrap()
                            .base_offset
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut offsets: Vec<i64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    offsets.sort_unstable();
    assert_eq!(offsets, (0..200).collect::<Vec<_>>());
    assert_eq!(log.high_watermark(), 200);
    let syncs = log.sync_count();
    assert!(
        syncs < 200,
        "8 concurrent appenders should share syncs, got {syncs} for 200 appends"
    );
}

#[test]
fn interval_policy_syncs_when_due_and_exposes_unsynced_data() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(0));
    let config = LogConfig {
        fsync: FsyncPolicy::Interval(Duration::from_millis(100)),
        ..LogConfig::default()
    };
    let log = open(dir.path(), config, clock.clone());
    log.append(&mut batch("a", &[1]), 0).unwrap();
    assert_eq!(log.high_watermark(), 1);
    assert_eq!(log.sync_count(), 0);
    clock.advance(100);
    log.append(&mut batch("b", &[1]), 0).unwrap();
    assert_eq!(log.sync_count(), 1);
    log.flush().unwrap();
}

/// A compacted log refuses a payload holding records without a key, naming every one by its
/// index across the payload's data batches (control batches do not count); nothing is written.
/// A log that is not compacted takes them.
#[test]
fn a_compacted_log_refuses_keyless_records_by_index() {
    use bytes::Bytes;
    use strom_record::{BatchBuilder, ControlType, Record, marker_batch};

    let record = |key: Option<&'static [u8]>| Record::new(1, key.map(Bytes::from_static), None);
    let payload = || {
        let mut p = BatchBuilder::new()
            .build(&[record(Some(b"a")), record(None)])
            .unwrap();
        p.extend(marker_batch(1, 0, ControlType::Abort, 0, 1).unwrap());
        p.extend(
            BatchBuilder::new()
                .build(&[record(None), record(Some(b"b")), record(None)])
                .unwrap(),
        );
        p
    };
    let dir = tempfile::tempdir().unwrap();
    let mut config = LogConfig::default();
    config.cleanup.compact = true;
    let log = open(dir.path(), config, Arc::new(SystemClock));
    match log.append(&mut payload(), 0) {
        Err(Error::KeylessRecords { indexes }) => assert_eq!(indexes, [1, 2, 4]),
        other => panic!("keyless records on a compacted log: {other:?}"),
    }
    assert_eq!(log.log_end_offset(), 0);
    let mut keyed = BatchBuilder::new().build(&[record(Some(b"k"))]).unwrap();
    assert_eq!(log.append(&mut keyed, 0).unwrap().base_offset, 0);

    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default(), Arc::new(SystemClock));
    let mut data = BatchBuilder::new().build(&[record(None)]).unwrap();
    assert_eq!(log.append(&mut data, 0).unwrap().base_offset, 0);
}
