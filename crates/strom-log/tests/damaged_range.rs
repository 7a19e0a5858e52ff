//! A damaged batch in the middle of a closed segment takes only its own offsets out of
//! service: a reader positioned there gets `Error::DamagedRange` (never the next offset in
//! silence), everything before and after it, in the same segment and in later ones, stays
//! readable, and recovery neither cuts the segment nor deletes later ones for it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use strom_log::{Error, FsyncPolicy, LogConfig, PartitionLog, SystemClock};
use strom_record::{BatchBuilder, BatchHeader, DecodeLimits, Record, decode_records};

const BATCHES: i64 = 80;

fn config(fsync: FsyncPolicy) -> LogConfig {
    LogConfig {
        segment_bytes: 2048,
        index_interval_bytes: 256,
        retention_ms: None,
        fsync,
        ..LogConfig::default()
    }
}

fn open(dir: &Path, fsync: FsyncPolicy) -> PartitionLog {
    PartitionLog::open(dir, config(fsync), Arc::new(SystemClock)).unwrap()
}

fn value(i: i64) -> Bytes {
    Bytes::from(format!("v{i}-{}", "p".repeat(60)))
}

/// A log of `BATCHES` one-record batches over several segments, closed cleanly.
fn build(dir: &Path, fsync: FsyncPolicy) {
    let log = open(dir, fsync);
    for i in 0..BATCHES {
        let mut b = BatchBuilder::new()
            .build(&[Record::new(1000 + i, None, Some(value(i)))])
            .unwrap();
        assert_eq!(log.append(&mut b, 0).unwrap().base_offset, i);
    }
    assert!(log.segment_count() >= 3, "{}", log.segment_count());
    log.close().unwrap();
}

fn segment(dir: &Path, n: usize) -> PathBuf {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs[n].clone()
}

/// (base offset, position) of every batch in a segment file.
fn batches(path: &Path) -> Vec<(i64, usize)> {
    let bytes = std::fs::read(path).unwrap();
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let h = BatchHeader::parse(&bytes[pos..]).unwrap();
        out.push((h.base_offset, pos));
        pos += h.total_len();
    }
    out
}

/// Overwrites `len` bytes at `at` of `path` with `byte`.
fn damage(path: &Path, at: usize, len: usize, byte: u8) {
    let mut bytes = std::fs::read(path).unwrap();
    for b in &mut bytes[at..at + len] {
        *b = byte;
    }
    std::fs::write(path, bytes).unwrap();
}

/// One read as the broker does it: on `Corrupt`, ask the log to take the damage out of
/// service and read again.
fn read_checked(log: &PartitionLog, offset: i64) -> Result<Option<Bytes>, Error> {
    for _ in 0..4 {
        let result = log
            .read(offset, 4096)
            .and_then(|r| r.data.map(|s| s.read_to_bytes()).transpose());
        match result {
            Err(Error::Corrupt { .. }) => {
                if log.quarantine(offset)?.is_none() {
                    return result;
                }
            }
            other => return other,
        }
    }
    panic!("read at {offset} kept meeting new damage")
}

/// Reads the whole log, stepping over damaged ranges: the values served and the ranges met.
fn read_everything(log: &PartitionLog) -> (BTreeMap<i64, Bytes>, Vec<(i64, i64)>) {
    let mut values = BTreeMap::new();
    let mut ranges = Vec::new();
    let mut offset = log.log_start_offset();
    loop {
        match read_checked(log, offset) {
            Ok(Some(bytes)) if !bytes.is_empty() => {
                let mut pos = 0;
                while pos < bytes.len() {
                    let h = strom_record::check_stored_batch(&bytes[pos..]).unwrap();
                    let batch = bytes.slice(pos..pos + h.total_len());
                    for r in decode_records(&batch, DecodeLimits::default())
                        .unwrap()
                        .records
                    {
                        assert_eq!(r.offset, offset, "no silent offset gap");
                        values.insert(r.offset, r.value.unwrap());
                        offset += 1;
                    }
                    pos += h.total_len();
                }
            }
            Ok(_) => return (values, ranges),
            Err(Error::DamagedRange {
                first_offset,
                end_offset,
                ..
            }) => {
                assert!(
                    first_offset <= offset && offset < end_offset,
                    "{offset} in {first_offset}..{end_offset}"
                );
                ranges.push((first_offset, end_offset));
                offset = end_offset;
            }
            Err(e) => panic!("read at {offset}: {e}"),
        }
    }
}

/// Everything but `lost` is served with its value, and `lost` is reported as damaged.
fn assert_only_lost(log: &PartitionLog, lost: (i64, i64)) {
    let (values, ranges) = read_everything(log);
    assert_eq!(ranges, [lost]);
    for i in 0..BATCHES {
        if (lost.0..lost.1).contains(&i) {
            assert!(!values.contains_key(&i), "damaged offset {i} served");
        } else {
            assert_eq!(values.get(&i), Some(&value(i)), "offset {i}");
        }
    }
    assert_eq!(log.damaged_ranges(), [lost]);
    // A reader positioned in the range gets the error, every time.
    for _ in 0..2 {
        assert!(matches!(
            read_checked(log, lost.0),
            Err(Error::DamagedRange { first_offset, end_offset, .. })
                if (first_offset, end_offset) == lost
        ));
    }
}

#[test]
fn a_batch_failing_its_checksum_is_found_by_the_reader_and_only_it_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), FsyncPolicy::Always);
    let seg = segment(dir.path(), 0);
    let len = std::fs::metadata(&seg).unwrap().len();
    let (offset, pos) = batches(&seg)[5];
    damage(&seg, pos + 70, 3, 0xee); // inside the records: the CRC fails
    let log = open(dir.path(), FsyncPolicy::Always);
    let segments = log.segment_count();
    assert!(
        log.damaged_ranges().is_empty(),
        "a trusted segment is not scanned at open"
    );
    // The read before the damage ends in front of it.
    let before = read_checked(&log, offset - 2).unwrap().unwrap();
    let h = BatchHeader::parse(&before).unwrap();
    assert_eq!(h.base_offset, offset - 2);
    assert_only_lost(&log, (offset, offset + 1));
    assert_eq!(log.segment_count(), segments);
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), len);
    // Still writable, and the next open finds the damage again the same way.
    let mut b = BatchBuilder::new()
        .build(&[Record::new(1, None, Some(value(BATCHES)))])
        .unwrap();
    assert_eq!(log.append(&mut b, 0).unwrap().base_offset, BATCHES);
    drop(log);
    let log = open(dir.path(), FsyncPolicy::Always);
    let (values, ranges) = read_everything(&log);
    assert_eq!(ranges, [(offset, offset + 1)]);
    assert_eq!(values.len() as i64, BATCHES);
}

#[test]
fn a_garbage_header_is_stepped_over_using_the_next_intact_batch() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), FsyncPolicy::Always);
    let seg = segment(dir.path(), 1);
    let (offset, pos) = batches(&seg)[4];
    // Length and base offset garbage: the walk cannot find the next batch from this header.
    damage(&seg, pos, 12, 0x7f);
    let log = open(dir.path(), FsyncPolicy::Always);
    assert_only_lost(&log, (offset, offset + 1));
}

#[test]
fn recovery_salvages_a_synced_segment_instead_of_cutting_it() {
    for fsync in [FsyncPolicy::Always, FsyncPolicy::Never] {
        let dir = tempfile::tempdir().unwrap();
        build(dir.path(), fsync);
        let seg = segment(dir.path(), 0);
        let len = std::fs::metadata(&seg).unwrap().len();
        let (offset, pos) = batches(&seg)[6];
        damage(&seg, pos + 70, 3, 0xee);
        // A missing index makes recovery rebuild it by scanning the segment.
        std::fs::remove_file(seg.with_extension("index")).unwrap();
        std::fs::remove_file(seg.with_extension("timeindex")).unwrap();
        let log = open(dir.path(), fsync);
        assert_eq!(
            log.damaged_ranges(),
            [(offset, offset + 1)],
            "found by the rebuild"
        );
        assert_eq!(std::fs::metadata(&seg).unwrap().len(), len, "not cut");
        assert_eq!(log.log_end_offset(), BATCHES, "no later segment deleted");
        assert_only_lost(&log, (offset, offset + 1));
    }
}

#[test]
fn above_the_recovery_point_damage_is_salvaged_under_always_and_cut_otherwise() {
    for fsync in [FsyncPolicy::Always, FsyncPolicy::Never] {
        let dir = tempfile::tempdir().unwrap();
        build(dir.path(), fsync);
        let seg = segment(dir.path(), 0);
        let (offset, pos) = batches(&seg)[6];
        damage(&seg, pos + 70, 3, 0xee);
        // As after a crash before the first recovery point was written: every segment is
        // suspect.
        std::fs::remove_file(dir.path().join("recovery-point")).unwrap();
        let log = open(dir.path(), fsync);
        if fsync == FsyncPolicy::Always {
            // Every segment was synced before the next got data: the damage is not a torn
            // write, and what follows was acknowledged.
            assert_eq!(log.log_end_offset(), BATCHES);
            assert_only_lost(&log, (offset, offset + 1));
        } else {
            // Unsynced data after a damaged unsynced batch follows lost data: cut, as Kafka.
            assert_eq!(log.log_end_offset(), offset);
            assert_eq!(log.segment_count(), 1);
            let (values, ranges) = read_everything(&log);
            assert!(ranges.is_empty());
            assert_eq!(values.len() as i64, offset);
        }
    }
}

/// Random damage (one byte run) anywhere a batch is checked — its length, magic, CRC,
/// attributes, header fields or records — in a random closed segment: every other offset is
/// served with its value, and the damaged batch's offset is reported as damaged. (The base
/// offset and leader epoch are outside the CRC; damage there is covered by the dense-offset
/// check, not by this test.)
#[test]
fn random_damage_in_closed_segments_loses_only_the_damaged_batch() {
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move |bound: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % bound as u64) as usize
    };
    for round in 0..30 {
        let dir = tempfile::tempdir().unwrap();
        build(dir.path(), FsyncPolicy::Always);
        let segments = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "log")
            })
            .count();
        let seg = segment(dir.path(), next(segments - 1));
        let in_seg = batches(&seg);
        let (offset, pos) = in_seg[next(in_seg.len())];
        let batch_len = in_seg
            .iter()
            .find(|(o, _)| *o == offset + 1)
            .map_or(std::fs::metadata(&seg).unwrap().len() as usize, |(_, p)| *p)
            - pos;
        // Bytes 8..12 (length) or 16.. (magic, CRC, attributes, … records).
        let at = if next(4) == 0 {
            8 + next(4)
        } else {
            16 + next(batch_len - 16)
        };
        let len = 1 + next(3).min(batch_len - at - 1);
        let byte = [0x00, 0xff, 0x7f, 0x5a][next(4)] ^ (round as u8);
        let original = std::fs::read(&seg).unwrap();
        damage(&seg, pos + at, len, byte);
        if std::fs::read(&seg).unwrap() == original {
            continue; // the "damage" wrote the same bytes
        }
        if next(2) == 0 {
            // Sometimes through a rebuild at open instead of a reader.
            std::fs::remove_file(seg.with_extension("timeindex")).unwrap();
        }
        let log = open(dir.path(), FsyncPolicy::Always);
        let (values, ranges) = read_everything(&log);
        let case = format!("round {round}: offset {offset}, byte {at}+{len} = {byte:#x}");
        assert!(
            ranges.iter().any(|r| r.0 <= offset && offset < r.1),
            "{case}: damaged offset not reported: {ranges:?}"
        );
        for i in (0..BATCHES).filter(|&i| i != offset) {
            assert_eq!(values.get(&i), Some(&value(i)), "{case}: offset {i}");
        }
        assert_eq!(log.log_end_offset(), BATCHES, "{case}");
    }
}

/// Compaction never turns a damaged range into a silent offset gap: a clean that meets damage
/// not located yet fails before swapping anything, and a log with a located damaged range is
/// not cleaned (the clean fails with `DamagedRange`); the range stays an error at exactly its
/// offsets, everything else stays readable, and the log stays writable.
#[test]
fn a_damaged_range_is_not_compacted_into_a_silent_gap() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        cleanup: strom_log::CleanupPolicy {
            delete: false,
            compact: true,
        },
        ..config(FsyncPolicy::Always)
    };
    let open = || PartitionLog::open(dir.path(), config.clone(), Arc::new(SystemClock)).unwrap();
    let log = open();
    for i in 0..BATCHES {
        // Unique keys: a clean would keep every record, so any gap would be the damage's.
        let key = Bytes::from(format!("k{i}"));
        let mut b = BatchBuilder::new()
            .build(&[Record::new(1000 + i, Some(key), Some(value(i)))])
            .unwrap();
        assert_eq!(log.append(&mut b, 0).unwrap().base_offset, i);
    }
    assert!(log.segment_count() >= 3);
    log.close().unwrap();
    let seg = segment(dir.path(), 0);
    let (offset, pos) = batches(&seg)[5];
    damage(&seg, pos + 70, 3, 0xee); // inside the records: the CRC fails
    let log = open();
    let clean = || {
        log.clean(
            i64::MAX / 4,
            &strom_log::Throttler::unlimited(),
            &std::sync::atomic::AtomicBool::new(false),
        )
    };
    assert!(clean().is_err(), "a clean over unlocated damage fails");
    assert_only_lost(&log, (offset, offset + 1));
    assert!(
        matches!(clean(), Err(Error::DamagedRange { first_offset, .. }) if first_offset == offset),
        "a log with a damaged range is not cleaned"
    );
    assert_only_lost(&log, (offset, offset + 1));
    let mut b = BatchBuilder::new()
        .build(&[Record::new(1, Some(Bytes::from("k")), Some(value(BATCHES)))])
        .unwrap();
    assert_eq!(log.append(&mut b, 0).unwrap().base_offset, BATCHES);
}

/// Damage no read has met yet does not fail a timestamp lookup (issue 15): the lookup takes it
/// out of service as a read would and answers from the intact batches after it.
#[test]
fn offset_for_timestamp_steps_over_damage_no_read_has_met() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), FsyncPolicy::Always);
    let seg = segment(dir.path(), 1);
    let (offset, pos) = batches(&seg)[3];
    damage(&seg, pos, 12, 0xff); // base offset and length: garbage
    let log = open(dir.path(), FsyncPolicy::Always);
    assert!(log.damaged_ranges().is_empty());
    // The record at `offset` (timestamp 1000 + offset) is lost; the first one at or after its
    // timestamp is the next intact one.
    assert_eq!(
        log.offset_for_timestamp(1000 + offset).unwrap(),
        Some((offset + 1, 1000 + offset + 1))
    );
    assert_eq!(log.damaged_ranges(), [(offset, offset + 1)]);
    // Lookups before and after it are unchanged.
    assert_eq!(log.offset_for_timestamp(1000).unwrap(), Some((0, 1000)));
    assert_eq!(
        log.offset_for_timestamp(1000 + offset + 5).unwrap(),
        Some((offset + 5, 1000 + offset + 5))
    );
}

/// The largest timestamp belongs to a batch that turns out damaged: `max_timestamp` answers
/// with the largest intact one instead of failing.
#[test]
fn max_timestamp_answers_from_the_intact_data() {
    const FUTURE: i64 = 1_000_000;
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), FsyncPolicy::Always);
    let mut future = None;
    for i in 0..BATCHES {
        // The third batch of the second segment carries the largest timestamp.
        let ts = if future.is_none() && log.segment_count() == 2 && i > 0 {
            let seg_start = i;
            future = Some(seg_start + 2);
            1000 + i
        } else if Some(i) == future {
            FUTURE
        } else {
            1000 + i
        };
        let mut b = BatchBuilder::new()
            .build(&[Record::new(ts, None, Some(value(i)))])
            .unwrap();
        assert_eq!(log.append(&mut b, 0).unwrap().base_offset, i);
    }
    log.close().unwrap();
    let future = future.unwrap();
    let seg = segment(dir.path(), 1);
    let &(_, pos) = batches(&seg)
        .iter()
        .find(|(o, _)| *o == future)
        .expect("the future batch is in the second segment");
    damage(&seg, pos + 70, 3, 0xee); // inside the records: the CRC fails
    let log = open(dir.path(), FsyncPolicy::Always);
    assert!(log.damaged_ranges().is_empty());
    assert_eq!(
        log.max_timestamp().unwrap(),
        Some((BATCHES - 1, 1000 + BATCHES - 1))
    );
    assert_eq!(log.damaged_ranges(), [(future, future + 1)]);
}

/// Rebuilding the idempotent-producer state by a scan (no snapshot left) steps over a damaged
/// header instead of failing the open, and ends with the producer's last intact batch.
#[test]
fn producer_state_rebuild_steps_over_damage() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path(), FsyncPolicy::Always);
        for i in 0..BATCHES {
            let mut builder = BatchBuilder::new();
            builder.producer_id = 7;
            builder.producer_epoch = 0;
            builder.base_sequence = i as i32;
            let mut b = builder
                .build(&[Record::new(1000 + i, None, Some(value(i)))])
                .unwrap();
            assert_eq!(log.append(&mut b, 0).unwrap().base_offset, i);
        }
        log.close().unwrap();
    }
    for e in std::fs::read_dir(dir.path()).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "snapshot") {
            std::fs::remove_file(path).unwrap();
        }
    }
    let seg = segment(dir.path(), 1);
    let (offset, pos) = batches(&seg)[2];
    damage(&seg, pos, 12, 0xff);
    let log = open(dir.path(), FsyncPolicy::Always);
    assert_eq!(log.producer_state(7), Some((0, Some(BATCHES as i32 - 1))));
    assert_eq!(log.damaged_ranges(), [(offset, offset + 1)]);
    // The next batch of the producer follows on.
    let mut builder = BatchBuilder::new();
    builder.producer_id = 7;
    builder.producer_epoch = 0;
    builder.base_sequence = BATCHES as i32;
    let mut b = builder
        .build(&[Record::new(1, None, Some(value(BATCHES)))])
        .unwrap();
    assert_eq!(log.append(&mut b, 0).unwrap().base_offset, BATCHES);
}
