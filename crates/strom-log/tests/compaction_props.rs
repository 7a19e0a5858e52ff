//! Property tests of log compaction: whatever keyed writes, tombstones, rolls, cleans, clock
//! moves and reopens happen, the log read from the start folds (last write wins, a tombstone
//! deletes) to the same map as everything written; every record read is the one written at
//! that offset; a full clean leaves each key once and no tombstone past `delete.retention.ms`;
//! and appends and reads running beside the cleaner stay correct.

mod common;

use common::clean;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use proptest::prelude::*;
use strom_log::{CleanupPolicy, LogConfig, ManualClock, PartitionLog, Throttler};
use strom_record::{BatchBuilder, Compression, Record};

const RETENTION_MS: i64 = 10_000;

fn config() -> LogConfig {
    common::compact_config(700, RETENTION_MS)
}

/// One record read back: offset, key, value (`None`: tombstone).
type Read = (i64, Option<Bytes>, Option<Bytes>);

/// Every record from the log start to the high watermark, checking offsets increase.
fn read_all(log: &PartitionLog) -> Vec<Read> {
    let mut out: Vec<Read> = Vec::new();
    common::scan_records(log, 1 << 20, |r| {
        if let Some(last) = out.last() {
            assert!(
                r.offset > last.0,
                "offsets increase: {} after {}",
                r.offset,
                last.0
            );
        }
        out.push((r.offset, r.key, r.value));
    });
    out
}

/// Last write wins; a tombstone deletes.
fn fold<'a>(records: impl IntoIterator<Item = &'a Read>) -> BTreeMap<Bytes, Bytes> {
    let mut map = BTreeMap::new();
    for (_, key, value) in records {
        let Some(key) = key else { continue };
        match value {
            Some(v) => {
                map.insert(key.clone(), v.clone());
            }
            None => {
                map.remove(key);
            }
        }
    }
    map
}

#[derive(Debug, Clone)]
enum Op {
    /// One batch: (key, tombstone) per record, with a codec.
    Write(Vec<(u8, bool)>, u8),
    Roll,
    Clean,
    Advance(i64),
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (prop::collection::vec((0u8..10, prop::bool::weighted(0.2)), 1..5), 0u8..3)
            .prop_map(|(r, c)| Op::Write(r, c)),
        2 => Just(Op::Roll),
        3 => Just(Op::Clean),
        2 => (0i64..2 * RETENTION_MS).prop_map(Op::Advance),
        1 => Just(Op::Reopen),
    ]
}

fn build(records: &[(u8, bool)], tag: usize, codec: u8, now: i64) -> Vec<u8> {
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, &(k, tombstone))| {
            Record::new(
                now,
                Some(Bytes::from(format!("key-{k}"))),
                (!tombstone)
                    .then(|| Bytes::from(format!("v{tag}-{i}-{}", "p".repeat(k as usize * 7)))),
            )
        })
        .collect();
    let codec = match codec {
        0 => Compression::None,
        1 => Compression::Lz4,
        _ => Compression::Zstd,
    };
    BatchBuilder::new()
        .compression(codec)
        .build(&records)
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    #[test]
    fn compaction_keeps_the_latest_value_of_every_key(ops in prop::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(1_000_000));
        let mut log = PartitionLog::open(dir.path(), config(), clock.clone()).unwrap();
        // Everything written, by offset.
        let mut written: BTreeMap<i64, Read> = BTreeMap::new();
        for (tag, op) in ops.into_iter().enumerate() {
            match op {
                Op::Write(records, codec) => {
                    let mut batch = build(&records, tag, codec, clock.now_ms_public());
                    let info = log.append(&mut batch, 0).unwrap();
                    for (i, &(k, tombstone)) in records.iter().enumerate() {
                        let offset = info.base_offset + i as i64;
                        let value = (!tombstone).then(|| Bytes::from(format!("v{tag}-{i}-{}", "p".repeat(k as usize * 7))));
                        written.insert(offset, (offset, Some(Bytes::from(format!("key-{k}"))), value));
                    }
                }
                Op::Roll => log.roll().unwrap(),
                Op::Clean => {
                    let stats = clean(&log, clock.now_ms_public());
                    prop_assert!(stats.end_offset >= stats.first_dirty_offset);
                }
                Op::Advance(ms) => clock.advance(ms),
                Op::Reopen => {
                    drop(log);
                    log = PartitionLog::open(dir.path(), config(), clock.clone()).unwrap();
                }
            }
            let read = read_all(&log);
            for r in &read {
                prop_assert_eq!(written.get(&r.0), Some(r), "record at offset {} is the one written there", r.0);
            }
            prop_assert_eq!(fold(&read), fold(written.values()));
        }
        // A full clean past the tombstone retention: one record per live key, no tombstone.
        log.roll().unwrap();
        clock.advance(RETENTION_MS);
        clean(&log, clock.now_ms_public());
        let read = read_all(&log);
        let expected = fold(written.values());
        prop_assert_eq!(fold(&read), expected.clone());
        prop_assert_eq!(read.len(), expected.len(), "each live key once, tombstones gone: {:?}", read);
        for (offset, key, _) in &read {
            // The survivor of each key is its last write.
            let last = written.values().rev().find(|w| &w.1 == key).map(|w| w.0);
            prop_assert_eq!(Some(*offset), last);
        }
        // And the same after a reopen.
        drop(log);
        let log = PartitionLog::open(dir.path(), config(), clock.clone()).unwrap();
        prop_assert_eq!(read_all(&log), read);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".cleaned") || n.ends_with(".swap") || n.ends_with(".swap-end"))
            .collect();
        prop_assert!(leftovers.is_empty(), "{:?}", leftovers);
    }
}

/// `ManualClock` reads through the `Clock` trait; a shorthand.
trait NowMs {
    fn now_ms_public(&self) -> i64;
}

impl NowMs for ManualClock {
    fn now_ms_public(&self) -> i64 {
        strom_log::Clock::now_ms(self)
    }
}

#[test]
fn tombstones_stay_until_delete_retention_has_passed() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000_000));
    let log = PartitionLog::open(dir.path(), config(), clock.clone()).unwrap();
    let now = clock.now_ms_public();
    log.append(&mut build(&[(1, false), (2, false)], 0, 0, now), 0)
        .unwrap();
    log.append(&mut build(&[(1, true)], 1, 0, now), 0).unwrap();
    log.roll().unwrap();
    let stats = clean(&log, clock.now_ms_public());
    assert_eq!(stats.records_removed, 1, "the old value of key 1 goes");
    let read = read_all(&log);
    assert_eq!(read.len(), 2, "key 2 and the tombstone of key 1: {read:?}");
    assert!(read.iter().any(|r| r.2.is_none()));
    // Not yet: one millisecond short. (The clean needs something dirty to run.)
    clock.advance(RETENTION_MS - 1);
    log.append(&mut build(&[(3, false)], 2, 0, now), 0).unwrap();
    log.roll().unwrap();
    clean(&log, clock.now_ms_public());
    assert!(read_all(&log).iter().any(|r| r.2.is_none()));
    clock.advance(1);
    log.append(&mut build(&[(4, false)], 3, 0, now), 0).unwrap();
    log.roll().unwrap();
    clean(&log, clock.now_ms_public());
    let read = read_all(&log);
    assert!(read.iter().all(|r| r.2.is_some()), "{read:?}");
    assert_eq!(read.iter().map(|r| r.0).collect::<Vec<_>>(), vec![1, 3, 4]);
}

#[test]
fn keyless_records_are_dropped_and_offsets_kept() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000_000));
    // Keyless records get in only while the log is not compacted (a compacted log refuses
    // them at append): written under `delete`, then the policy changes to `compact`.
    let mut delete = config();
    delete.cleanup.compact = false;
    delete.cleanup.delete = true;
    let log = PartitionLog::open(dir.path(), delete, clock.clone()).unwrap();
    let records = vec![
        Record::new(1, None, Some(Bytes::from("no key"))),
        Record::new(2, Some(Bytes::from("a")), Some(Bytes::from("1"))),
        Record::new(3, Some(Bytes::from("a")), Some(Bytes::from("2"))),
        Record::new(4, Some(Bytes::from("b")), Some(Bytes::from("3"))),
    ];
    log.append(&mut BatchBuilder::new().build(&records).unwrap(), 0)
        .unwrap();
    log.roll().unwrap();
    log.set_config(config());
    assert!(matches!(
        log.append(&mut BatchBuilder::new().build(&records[..1]).unwrap(), 0),
        Err(strom_log::Error::KeylessRecords { .. })
    ));
    let stats = clean(&log, 5);
    assert_eq!(stats.records_removed, 2);
    assert_eq!(stats.segments_cleaned, 1);
    let read = read_all(&log);
    assert_eq!(read.iter().map(|r| r.0).collect::<Vec<_>>(), vec![2, 3]);
    // Reads at a compacted-away offset start at the next batch holding it or later.
    let from_zero = log.read(0, 1 << 20).unwrap().data.unwrap();
    assert!(from_zero.len > 0);
    assert_eq!(log.log_end_offset(), 4);
    // The next append continues after the original last offset.
    let info = log
        .append(&mut BatchBuilder::new().build(&records[1..2]).unwrap(), 0)
        .unwrap();
    assert_eq!(info.base_offset, 4);
}

#[test]
fn nothing_to_clean_returns_zero_stats() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000_000));
    let log = PartitionLog::open(dir.path(), config(), clock.clone()).unwrap();
    assert_eq!(clean(&log, 0).segments_cleaned, 0);
    log.append(&mut build(&[(1, false), (1, false)], 0, 0, 0), 0)
        .unwrap();
    // Only the active segment holds data: not cleanable.
    let stats = clean(&log, 0);
    assert_eq!((stats.segments_cleaned, stats.records_removed), (0, 0));
    let info = log.cleanable(0).unwrap();
    assert_eq!(info.dirty_bytes, 0);
    log.roll().unwrap();
    let info = log.cleanable(0).unwrap();
    assert!(info.dirty_bytes > 0 && info.dirty_ratio == 1.0, "{info:?}");
    assert_eq!(info.first_uncleanable_offset, 2);
    // A delete-only log is never compacted.
    log.set_config(LogConfig {
        cleanup: CleanupPolicy::default(),
        ..config()
    });
    assert_eq!(clean(&log, 0).segments_cleaned, 0);
    log.set_config(config());
    assert_eq!(clean(&log, 0).segments_cleaned, 1);
    let info = log.cleanable(0).unwrap();
    assert_eq!((info.first_dirty_offset, info.dirty_bytes), (2, 0));
    assert!(info.clean_bytes > 0);
}

#[test]
fn min_and_max_compaction_lag() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000_000));
    let cfg = LogConfig {
        min_compaction_lag_ms: 5_000,
        max_compaction_lag_ms: 60_000,
        ..config()
    };
    let log = PartitionLog::open(dir.path(), cfg, clock.clone()).unwrap();
    let now = clock.now_ms_public();
    log.append(&mut build(&[(1, false), (1, false)], 0, 0, now), 0)
        .unwrap();
    log.roll().unwrap();
    assert_eq!(
        log.cleanable(now).unwrap().dirty_bytes,
        0,
        "younger than the min lag"
    );
    assert_eq!(clean(&log, now).segments_cleaned, 0);
    let later = now + 5_000;
    let info = log.cleanable(later).unwrap();
    assert!(info.dirty_bytes > 0 && !info.must_clean);
    assert!(log.cleanable(now + 60_001).unwrap().must_clean);
    assert_eq!(info.oldest_dirty_timestamp, Some(now));
    assert_eq!(clean(&log, later).records_removed, 1);
}

#[test]
fn appends_and_reads_beside_a_cleaner_stay_correct() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000_000));
    let log = Arc::new(PartitionLog::open(dir.path(), config(), clock.clone()).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let cleaner = {
        let (log, stop) = (Arc::clone(&log), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut cleaned = 0;
            while !stop.load(Ordering::Relaxed) {
                cleaned += clean(&log, 1_000_000).segments_cleaned;
            }
            cleaned
        })
    };
    let reader = {
        let (log, stop) = (Arc::clone(&log), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut reads = 0;
            while !stop.load(Ordering::Relaxed) {
                let read = read_all(&log);
                // Each key's values only ever grow (v<n>), and the latest is never lost.
                let mut last: HashMap<Bytes, i64> = HashMap::new();
                for (offset, key, _) in read {
                    last.insert(key.unwrap(), offset);
                }
                reads += 1;
            }
            reads
        })
    };
    let mut written: Vec<Read> = Vec::new();
    for n in 0..600i64 {
        let key = Bytes::from(format!("key-{}", n % 13));
        let value = Bytes::from(format!("v{n}"));
        let mut batch = BatchBuilder::new()
            .build(&[Record::new(n, Some(key.clone()), Some(value.clone()))])
            .unwrap();
        let info = log.append(&mut batch, 0).unwrap();
        written.push((info.base_offset, Some(key), Some(value)));
        if n % 50 == 0 {
            assert_eq!(fold(&read_all(&log)), fold(&written));
        }
    }
    stop.store(true, Ordering::Relaxed);
    let cleaned = cleaner.join().unwrap();
    let reads = reader.join().unwrap();
    assert!(
        cleaned > 0 && reads > 0,
        "cleaned {cleaned} segments, {reads} reads"
    );
    assert_eq!(fold(&read_all(&log)), fold(&written));
    log.roll().unwrap();
    clean(&log, 1_000_000);
    assert_eq!(read_all(&log).len(), 13);
}

#[test]
fn a_reader_of_a_replaced_segment_keeps_reading_it() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000_000));
    let log = PartitionLog::open(dir.path(), config(), clock.clone()).unwrap();
    log.append(&mut build(&[(1, false), (2, false)], 0, 0, 0), 0)
        .unwrap();
    log.append(&mut build(&[(1, false), (2, false)], 1, 0, 0), 0)
        .unwrap();
    log.roll().unwrap();
    let slice = log.read(0, 1 << 20).unwrap().data.unwrap();
    let before = slice.read_to_vec().unwrap();
    assert_eq!(clean(&log, 0).records_removed, 2);
    // The old file is unlinked (replaced by the cleaned one) but still open for this reader.
    assert_eq!(slice.read_to_vec().unwrap(), before);
    assert_eq!(
        read_all(&log).iter().map(|r| r.0).collect::<Vec<_>>(),
        vec![2, 3]
    );
}

#[test]
fn a_cancelled_clean_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000_000));
    let log = PartitionLog::open(dir.path(), config(), clock.clone()).unwrap();
    log.append(&mut build(&[(1, false), (1, false)], 0, 0, 0), 0)
        .unwrap();
    log.roll().unwrap();
    let before = read_all(&log);
    let stats = log
        .clean(0, &Throttler::unlimited(), &AtomicBool::new(true))
        .unwrap();
    assert_eq!((stats.segments_cleaned, stats.records_removed), (0, 0));
    assert_eq!(read_all(&log), before);
    assert_eq!(
        log.cleanable(0).unwrap().first_dirty_offset,
        0,
        "checkpoint not advanced"
    );
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains("cleaned") || n.contains("swap"))
        .collect();
    assert!(names.is_empty(), "{names:?}");
    assert_eq!(clean(&log, 0).records_removed, 1);
}

#[test]
fn small_segments_are_merged_up_to_segment_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000_000));
    let log = PartitionLog::open(
        dir.path(),
        LogConfig {
            segment_bytes: 64 * 1024,
            ..config()
        },
        clock.clone(),
    )
    .unwrap();
    for n in 0..10u8 {
        log.append(&mut build(&[(n, false)], n as usize, 0, 0), 0)
            .unwrap();
        log.roll().unwrap();
    }
    assert_eq!(log.segment_count(), 11);
    let stats = clean(&log, 0);
    assert_eq!(stats.segments_cleaned, 10);
    assert_eq!(log.segment_count(), 2, "ten small segments became one");
    assert_eq!(read_all(&log).len(), 10);
    drop(log);
    let log = PartitionLog::open(dir.path(), config(), clock.clone()).unwrap();
    assert_eq!(log.segment_count(), 2);
    assert_eq!(read_all(&log).len(), 10);
}

#[test]
fn retention_applies_only_with_the_delete_policy() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000_000));
    let compact_only = LogConfig {
        retention_ms: Some(1),
        ..config()
    };
    let log = PartitionLog::open(dir.path(), compact_only.clone(), clock.clone()).unwrap();
    log.append(&mut build(&[(1, false)], 0, 0, 0), 0).unwrap();
    log.roll().unwrap();
    log.append(&mut build(&[(2, false)], 1, 0, 0), 0).unwrap();
    clock.advance(1_000);
    assert_eq!(
        log.apply_retention().unwrap(),
        0,
        "compact-only: no time retention"
    );
    log.set_config(LogConfig {
        cleanup: CleanupPolicy {
            delete: true,
            compact: true,
        },
        ..compact_only
    });
    assert!(
        log.apply_retention().unwrap() > 0,
        "compact,delete: retention applies"
    );
}

#[test]
fn a_compacted_log_rolls_at_max_compaction_lag() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000_000));
    let cfg = LogConfig {
        segment_ms: None,
        max_compaction_lag_ms: 1_000,
        ..config()
    };
    let log = PartitionLog::open(dir.path(), cfg.clone(), clock.clone()).unwrap();
    log.append(&mut build(&[(1, false)], 0, 0, 0), 0).unwrap();
    clock.advance(999);
    log.append(&mut build(&[(1, false)], 1, 0, 0), 0).unwrap();
    assert_eq!(log.segment_count(), 1);
    clock.advance(1);
    log.append(&mut build(&[(1, false)], 2, 0, 0), 0).unwrap();
    assert_eq!(
        log.segment_count(),
        2,
        "rolled so the data becomes cleanable"
    );
    // Not for a delete-only log.
    log.set_config(LogConfig {
        cleanup: CleanupPolicy::default(),
        ..cfg
    });
    clock.advance(5_000);
    log.append(&mut build(&[(1, false)], 3, 0, 0), 0).unwrap();
    assert_eq!(log.segment_count(), 2);
}

#[test]
fn truncating_into_a_compaction_gap_ends_the_log_where_recovery_would() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000_000));
    let log = PartitionLog::open(dir.path(), config(), clock.clone()).unwrap();
    // Offsets 0..=1 (keys 1, 2), then 2 (key 3) in its own segment, then a segment too large
    // to be merged with them starting at 3 with key 3 again and more.
    log.append(&mut build(&[(1, false), (2, false)], 0, 0, 0), 0)
        .unwrap();
    log.roll().unwrap();
    log.append(&mut build(&[(3, false)], 1, 0, 0), 0).unwrap();
    log.roll().unwrap();
    let big: Vec<(u8, bool)> = std::iter::once((3, false))
        .chain((10..40).map(|k| (k, false)))
        .collect();
    log.append(&mut build(&big, 2, 0, 0), 0).unwrap();
    log.roll().unwrap();
    assert_eq!(clean(&log, 0).records_removed, 1);
    // The cleaned segment [0, 3) ends with the batch at 0..=1; offset 2 is gone.
    let offsets: Vec<i64> = read_all(&log).iter().map(|r| r.0).collect();
    assert_eq!(offsets, [0, 1].into_iter().chain(3..34).collect::<Vec<_>>());
    assert_eq!(log.segment_count(), 3, "the large segment was not merged");
    log.truncate_to(3).unwrap();
    assert_eq!(
        log.log_end_offset(),
        2,
        "the log ends after the last batch left"
    );
    assert_eq!(
        read_all(&log).iter().map(|r| r.0).collect::<Vec<_>>(),
        vec![0, 1]
    );
    drop(log);
    let log = PartitionLog::open(dir.path(), config(), clock.clone()).unwrap();
    assert_eq!(log.log_end_offset(), 2, "the same end after a reopen");
    let info = log.append(&mut build(&[(4, false)], 4, 0, 0), 0).unwrap();
    assert_eq!(info.base_offset, 2);
    assert_eq!(
        read_all(&log).iter().map(|r| r.0).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
}
