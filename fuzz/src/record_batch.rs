//! Record batches from arbitrary bytes: every entry point of `strom-record` that takes untrusted
//! input must return a value or a typed error, never panic, and the entry points must agree with
//! each other.
//!
//! Input layout: one flags byte, then the bytes under test. Random bytes almost never carry a
//! valid CRC-32C, which would stop every input at the CRC check, so the flags ask for fix-ups of
//! the first batch before checking:
//!
//! - bit 0: set `batchLength` so the first batch spans the whole input;
//! - bit 1: recompute the first batch's CRC.
//!
//! This file is also compiled into `strom-record`'s `fuzz_corpus` test (by path), so it may only
//! use `strom_record`, `bytes` and `crc32c`.

use bytes::Bytes;
use strom_record::{
    BatchBuilder, BatchHeader, DecodeLimits, HEADER_LEN, LOG_OVERHEAD, OffsetAndTimestamp, Record,
    TimestampType, batches, check_stored_batch, decode_records, find_by_timestamp,
    record_offsets_and_timestamps, retain_records, set_base_offset, set_log_append_time,
    set_partition_leader_epoch, stored_batches, validate_batch, validate_records,
};

/// Small enough that a decompression bomb costs little, large enough for real batches.
pub const MAX_DECOMPRESSED: usize = 1 << 20;

const FIX_LENGTH: u8 = 1;
const FIX_CRC: u8 = 2;
const BATCH_LENGTH: usize = 8;
const CRC: usize = 17;
const CRC_START: usize = 21;

/// Runs every check on one fuzzer input.
pub fn check(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut buf = rest.to_vec();
    fix_up(&mut buf, flags);
    check_message_set(&buf);
}

/// Applies the fix-ups the flags ask for to the batch at the start of `buf`.
pub fn fix_up(buf: &mut [u8], flags: u8) {
    if buf.len() < HEADER_LEN {
        return;
    }
    if flags & FIX_LENGTH != 0 {
        let length = i32::try_from(buf.len() - LOG_OVERHEAD).unwrap_or(i32::MAX);
        buf[BATCH_LENGTH..BATCH_LENGTH + 4].copy_from_slice(&length.to_be_bytes());
    }
    if flags & FIX_CRC != 0 {
        let declared = i32::from_be_bytes(buf[BATCH_LENGTH..BATCH_LENGTH + 4].try_into().unwrap());
        let end = usize::try_from(declared)
            .map_or(buf.len(), |l| l.saturating_add(LOG_OVERHEAD))
            .clamp(CRC_START, buf.len());
        let crc = crc32c::crc32c(&buf[CRC_START..end]);
        buf[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
    }
}

fn limits() -> DecodeLimits {
    DecodeLimits {
        max_batch_bytes: 1 << 24,
        max_decompressed_bytes: MAX_DECOMPRESSED,
    }
}

/// Checks `buf` as a message set, then each batch found in it, then `buf` as one stored batch.
pub fn check_message_set(buf: &[u8]) {
    let mut end = 0;
    for item in batches(buf, limits().validation()) {
        let Ok((header, range)) = item else {
            break;
        };
        assert_eq!(range.start, end, "batches must be contiguous");
        assert_eq!(range.len(), header.total_len());
        end = range.end;
        let batch = &buf[range];
        assert_eq!(validate_batch(batch, limits().validation()), Ok(header));
        check_batch(batch, true);
    }
    assert!(end <= buf.len());

    // The framing-only walk of a stored set finds every batch the produce-side walk finds, at
    // the same ranges, and possibly more after them: batches that only the produce rules refuse.
    let mut walked = 0;
    for item in stored_batches(buf) {
        let Ok((header, range)) = item else {
            break;
        };
        assert_eq!(range.start, walked, "stored batches must be contiguous");
        assert_eq!(range.len(), header.total_len());
        assert_eq!(BatchHeader::parse(&buf[range.clone()]), Ok(header));
        walked = range.end;
        if walked > end {
            let batch = &buf[range];
            check_batch(batch, validate_batch(batch, limits().validation()).is_ok());
        }
    }
    assert!(walked >= end && walked <= buf.len());

    if check_stored_batch(buf).is_ok() {
        check_batch(buf, false);
    }
    // Header parsing and the stored-batch check on whatever the input is.
    let _ = BatchHeader::parse(buf);
    let _ = check_stored_batch(buf);
}

/// Runs the record-level entry points on one batch and checks that they agree. `validated`
/// says whether [`validate_batch`] accepted it.
fn check_batch(batch: &[u8], validated: bool) {
    let strict = validate_records(batch, limits());
    let full = decode_records(&Bytes::copy_from_slice(batch), limits());
    let light = record_offsets_and_timestamps(batch, limits());
    if strict.is_ok() && !validated {
        assert!(validate_batch(batch, limits().validation()).is_ok());
    }

    match (&full, &light) {
        (Ok(decoded), Ok(positions)) => {
            let from_full: Vec<OffsetAndTimestamp> = decoded
                .records
                .iter()
                .map(|r| OffsetAndTimestamp {
                    offset: r.offset,
                    timestamp: r.timestamp,
                })
                .collect();
            assert_eq!(&from_full, positions, "decoders disagree");
            assert_eq!(
                usize::try_from(decoded.header.records_count).ok(),
                Some(decoded.records.len())
            );
            check_offsets_and_timestamps(&decoded.header, positions);
            check_find_by_timestamp(batch, positions);
            check_reencode(
                decoded.header,
                decoded.records.iter().cloned().map(Record::from),
            );
            check_retain(batch, decoded);
        }
        (Err(a), Err(b)) => {
            assert_eq!(a, b, "decoders fail differently");
            assert!(retain_records(batch, limits(), |_| true).is_err());
        }
        _ => panic!("decoders disagree: {full:?} vs {light:?}"),
    }

    if strict.is_ok() {
        let decoded = full.as_ref().expect("a validated batch must decode");
        for (i, record) in decoded.records.iter().enumerate() {
            assert_eq!(record.offset, decoded.header.base_offset + i as i64);
        }
        check_patching(batch, decoded.records.len());
    }
}

/// Compaction's rewrite keeps exactly the chosen records, at their offsets, in a batch with the
/// same offset range that decodes again.
fn check_retain(batch: &[u8], decoded: &strom_record::DecodedBatch) {
    let keep = |offset: i64| offset % 2 == 0;
    let retained =
        retain_records(batch, limits(), |r| keep(r.offset)).expect("a decodable batch retains");
    let again =
        decode_records(&Bytes::from(retained.bytes), limits()).expect("retained batch decodes");
    assert_eq!(again.header, retained.header);
    assert_eq!(
        (again.header.base_offset, again.header.last_offset_delta),
        (decoded.header.base_offset, decoded.header.last_offset_delta)
    );
    let expected: Vec<_> = decoded.records.iter().filter(|r| keep(r.offset)).collect();
    assert_eq!(again.records.iter().collect::<Vec<_>>(), expected);
    assert_eq!(retained.kept + retained.removed, decoded.records.len());
}

fn check_offsets_and_timestamps(header: &BatchHeader, positions: &[OffsetAndTimestamp]) {
    for pair in positions.windows(2) {
        assert!(pair[0].offset < pair[1].offset, "offsets must increase");
    }
    for p in positions {
        assert!(p.offset >= header.base_offset && p.offset <= header.last_offset());
        if header.timestamp_type() == TimestampType::LogAppendTime {
            assert_eq!(p.timestamp, header.max_timestamp);
        }
    }
}

fn check_find_by_timestamp(batch: &[u8], positions: &[OffsetAndTimestamp]) {
    let mut targets: Vec<i64> = positions.iter().map(|p| p.timestamp).collect();
    targets.extend([i64::MIN, i64::MAX]);
    targets.truncate(8);
    for target in targets {
        let expected = positions.iter().find(|p| p.timestamp >= target).copied();
        assert_eq!(find_by_timestamp(batch, target, limits()), Ok(expected));
    }
}

/// Decoded records built again into a batch decode to the same records.
fn check_reencode(header: BatchHeader, records: impl Iterator<Item = Record>) {
    let records: Vec<Record> = records.collect();
    if records.is_empty() {
        return;
    }
    let Ok(codec) = header.compression() else {
        panic!("a decoded batch has a known codec");
    };
    let built = BatchBuilder::new()
        .compression(codec)
        .build(&records)
        .expect("decoded records fit a batch");
    let big = DecodeLimits {
        max_decompressed_bytes: usize::MAX,
        ..limits()
    };
    validate_records(&built, big).expect("a built batch validates");
    let again = decode_records(&Bytes::from(built), big).expect("a built batch decodes");
    let again: Vec<Record> = again.records.into_iter().map(Record::from).collect();
    // Timestamps of a LogAppendTime batch are all the append time; the rest is as decoded.
    assert_eq!(again, records);
}

/// What a leader does to a validated batch keeps it valid.
fn check_patching(batch: &[u8], records: usize) {
    let mut patched = batch.to_vec();
    set_base_offset(&mut patched, 1 << 40).unwrap();
    set_partition_leader_epoch(&mut patched, 7).unwrap();
    set_log_append_time(&mut patched, 1_700_000_000_000).unwrap();
    let header = validate_batch(&patched, limits().validation()).unwrap();
    assert_eq!(header.base_offset, 1 << 40);
    assert_eq!(header.partition_leader_epoch, 7);
    assert_eq!(header.timestamp_type(), TimestampType::LogAppendTime);
    assert_eq!(validate_records(&patched, limits()), Ok(()));
    let decoded = decode_records(&Bytes::from(patched), limits()).unwrap();
    assert_eq!(decoded.records.len(), records);
    assert!(
        decoded
            .records
            .iter()
            .all(|r| r.timestamp == 1_700_000_000_000)
    );
}
