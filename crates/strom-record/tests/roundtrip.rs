//! Property tests: whatever records go into [`BatchBuilder`] come back out of the decoders,
//! patching keeps batches valid, and any corruption or truncation is a typed error.

use bytes::Bytes;
use proptest::prelude::*;
use proptest::sample::Index;
use strom_record::{
    BatchBuilder, BatchHeader, Compression, DecodeLimits, Error, HEADER_LEN, OffsetAndTimestamp,
    Record, RecordHeader, ValidationLimits, batches, check_stored_batch, decode_records,
    find_by_timestamp, record_offsets_and_timestamps, set_base_offset, set_log_append_time,
    set_partition_leader_epoch, validate_batch, validate_records,
};

/// Start of the CRC field; the CRC covers everything after it.
const CRC_FIELD: usize = 17;

fn codec() -> impl Strategy<Value = Compression> {
    prop::sample::select(vec![
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ])
}

fn field() -> impl Strategy<Value = Option<Bytes>> {
    prop::option::of(prop::collection::vec(any::<u8>(), 0..48).prop_map(Bytes::from))
}

/// Header keys from a tiny alphabet so that keys repeat within a record.
fn header() -> impl Strategy<Value = RecordHeader> {
    (
        prop::sample::select(vec!["", "a", "b", "trace-id"]),
        field(),
    )
        .prop_map(|(key, value)| RecordHeader {
            key: Bytes::from_static(key.as_bytes()),
            value,
        })
}

/// Timestamps between 1900 and 2200, plus "no timestamp".
fn timestamp() -> impl Strategy<Value = i64> {
    prop_oneof![Just(-1i64), -2_208_988_800_000i64..7_258_118_400_000]
}

fn record() -> impl Strategy<Value = Record> {
    (
        timestamp(),
        field(),
        field(),
        prop::collection::vec(header(), 0..4),
    )
        .prop_map(|(timestamp, key, value, headers)| Record {
            timestamp,
            key,
            value,
            headers,
        })
}

fn records() -> impl Strategy<Value = Vec<Record>> {
    prop::collection::vec(record(), 1..24)
}

fn limits() -> DecodeLimits {
    DecodeLimits::default()
}

fn build(records: &[Record], codec: Compression) -> Vec<u8> {
    BatchBuilder::new()
        .compression(codec)
        .build(records)
        .unwrap()
}

fn is_crc_mismatch<T>(r: Result<T, Error>) -> bool {
    matches!(r, Err(Error::CrcMismatch { .. }))
}

fn is_truncated<T>(r: Result<T, Error>) -> bool {
    matches!(r, Err(Error::Truncated { .. }))
}

fn decoded(batch: &[u8]) -> Vec<Record> {
    decode_records(&Bytes::copy_from_slice(batch), limits())
        .unwrap()
        .records
        .into_iter()
        .map(Record::from)
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    #[test]
    fn build_validate_decode_returns_the_input(records in records(), codec in codec()) {
        let batch = build(&records, codec);
        let header = validate_batch(&batch, ValidationLimits::default()).unwrap();
        prop_assert_eq!(header.total_len(), batch.len());
        prop_assert_eq!(header.compression().unwrap(), codec);
        prop_assert_eq!(header.records_count as usize, records.len());
        prop_assert_eq!(header.base_timestamp, records[0].timestamp);
        prop_assert_eq!(header.max_timestamp, records.iter().map(|r| r.timestamp).max().unwrap());
        validate_records(&batch, limits()).unwrap();
        prop_assert_eq!(check_stored_batch(&batch).unwrap(), header);

        let decoded = decode_records(&Bytes::from(batch.clone()), limits()).unwrap();
        prop_assert_eq!(decoded.header, header);
        for (i, r) in decoded.records.iter().enumerate() {
            prop_assert_eq!(r.offset, i as i64);
        }
        let back: Vec<Record> = decoded.records.into_iter().map(Record::from).collect();
        prop_assert_eq!(&back, &records);

        let positions = record_offsets_and_timestamps(&batch, limits()).unwrap();
        let expected: Vec<OffsetAndTimestamp> = records
            .iter()
            .enumerate()
            .map(|(i, r)| OffsetAndTimestamp { offset: i as i64, timestamp: r.timestamp })
            .collect();
        prop_assert_eq!(positions, expected);
    }

    #[test]
    fn find_by_timestamp_agrees_with_a_linear_scan(
        records in records(),
        codec in codec(),
        target in timestamp(),
    ) {
        let batch = build(&records, codec);
        let expected = records
            .iter()
            .enumerate()
            .find(|(_, r)| r.timestamp >= target)
            .map(|(i, r)| OffsetAndTimestamp { offset: i as i64, timestamp: r.timestamp });
        prop_assert_eq!(find_by_timestamp(&batch, target, limits()).unwrap(), expected);
    }

    #[test]
    fn patching_offset_and_epoch_keeps_the_batch_valid(
        records in records(),
        codec in codec(),
        base_offset in 0i64..(1 << 62),
        epoch in any::<i32>(),
    ) {
        let mut batch = build(&records, codec);
        set_base_offset(&mut batch, base_offset).unwrap();
        set_partition_leader_epoch(&mut batch, epoch).unwrap();
        let header = validate_batch(&batch, ValidationLimits::default()).unwrap();
        prop_assert_eq!(header.base_offset, base_offset);
        prop_assert_eq!(header.partition_leader_epoch, epoch);
        prop_assert_eq!(header.last_offset(), base_offset + records.len() as i64 - 1);
        validate_records(&batch, limits()).unwrap();
        let decoded = decode_records(&Bytes::from(batch), limits()).unwrap();
        for (i, r) in decoded.records.iter().enumerate() {
            prop_assert_eq!(r.offset, base_offset + i as i64);
        }
    }

    #[test]
    fn log_append_time_keeps_the_crc_valid_and_applies_to_every_record(
        records in records(),
        codec in codec(),
        append_time in timestamp(),
    ) {
        let mut batch = build(&records, codec);
        set_log_append_time(&mut batch, append_time).unwrap();
        let header = validate_batch(&batch, ValidationLimits::default()).unwrap();
        prop_assert_eq!(header.max_timestamp, append_time);
        validate_records(&batch, limits()).unwrap();
        let back = decoded(&batch);
        prop_assert_eq!(back.len(), records.len());
        for (got, sent) in back.iter().zip(&records) {
            prop_assert_eq!(got.timestamp, append_time);
            prop_assert_eq!(&got.key, &sent.key);
            prop_assert_eq!(&got.value, &sent.value);
            prop_assert_eq!(&got.headers, &sent.headers);
        }
    }

    #[test]
    fn any_single_byte_change_under_the_crc_is_detected(
        records in records(),
        codec in codec(),
        at in any::<Index>(),
        xor in 1u8..=255,
    ) {
        let mut batch = build(&records, codec);
        let at = CRC_FIELD + at.index(batch.len() - CRC_FIELD);
        batch[at] ^= xor;
        prop_assert!(
            is_crc_mismatch(validate_batch(&batch, ValidationLimits::default())),
            "change at {} not detected", at
        );
        prop_assert!(is_crc_mismatch(check_stored_batch(&batch)));
        prop_assert!(is_crc_mismatch(validate_records(&batch, limits())));
        prop_assert!(is_crc_mismatch(decode_records(&Bytes::from(batch), limits())));
    }

    #[test]
    fn truncation_is_a_typed_error(
        records in records(),
        codec in codec(),
        cut in any::<Index>(),
    ) {
        let batch = build(&records, codec);
        let short = &batch[..cut.index(batch.len())];
        let exact = |r: Result<BatchHeader, Error>| {
            matches!(r, Err(Error::Truncated { needed, available })
                if available == short.len() && needed > available)
        };
        prop_assert!(exact(validate_batch(short, ValidationLimits::default())));
        prop_assert!(exact(check_stored_batch(short)));
        prop_assert!(is_truncated(validate_records(short, limits())));
        prop_assert!(is_truncated(decode_records(&Bytes::copy_from_slice(short), limits())));
        prop_assert!(is_truncated(record_offsets_and_timestamps(short, limits())));
        let mut set = batches(short, ValidationLimits::default());
        if !short.is_empty() {
            prop_assert!(set.next().is_some_and(is_truncated));
        }
        prop_assert!(set.next().is_none());
    }

    #[test]
    fn message_sets_iterate_batch_by_batch(
        sets in prop::collection::vec((records(), codec()), 1..5),
    ) {
        let mut buf = Vec::new();
        let mut next_offset = 0i64;
        for (records, codec) in &sets {
            let mut batch = build(records, *codec);
            set_base_offset(&mut batch, next_offset).unwrap();
            next_offset += records.len() as i64;
            buf.extend_from_slice(&batch);
        }
        let found: Vec<_> = batches(&buf, ValidationLimits::default())
            .collect::<Result<_, _>>()
            .unwrap();
        prop_assert_eq!(found.len(), sets.len());
        let mut expected_offset = 0i64;
        for ((header, range), (records, _)) in found.iter().zip(&sets) {
            prop_assert_eq!(header.base_offset, expected_offset);
            expected_offset = header.next_offset();
            prop_assert_eq!(&decoded(&buf[range.clone()]), records);
        }
    }

    /// A small in-process fuzzer: random edits to the records section with the CRC recomputed,
    /// so that the record decoders themselves see corrupt input. They must return errors, never
    /// panic, and agree with each other.
    #[test]
    fn corrupt_records_with_a_valid_crc_never_panic(
        records in records(),
        codec in codec(),
        edits in prop::collection::vec((any::<Index>(), any::<u8>()), 1..8),
        cut in prop::option::of(any::<Index>()),
    ) {
        let mut batch = build(&records, codec);
        for (at, byte) in edits {
            let at = HEADER_LEN + at.index(batch.len() - HEADER_LEN);
            batch[at] = byte;
        }
        if let Some(cut) = cut {
            let len = HEADER_LEN + cut.index(batch.len() - HEADER_LEN + 1);
            batch.truncate(len);
            let batch_length = (len - 12) as i32;
            batch[8..12].copy_from_slice(&batch_length.to_be_bytes());
        }
        let crc = crc32c::crc32c(&batch[21..]);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());

        let small = DecodeLimits { max_decompressed_bytes: 1 << 16, ..DecodeLimits::default() };
        let strict = validate_records(&batch, small);
        let full = decode_records(&Bytes::from(batch.clone()), small);
        let light = record_offsets_and_timestamps(&batch, small);
        if strict.is_ok() {
            prop_assert!(full.is_ok(), "validated but failed to decode: {:?}", full);
        }
        match (&full, &light) {
            (Ok(full), Ok(light)) => {
                let positions: Vec<_> = full
                    .records
                    .iter()
                    .map(|r| OffsetAndTimestamp { offset: r.offset, timestamp: r.timestamp })
                    .collect();
                prop_assert_eq!(&positions, light);
            }
            (Err(a), Err(b)) => prop_assert_eq!(a, b),
            _ => prop_assert!(false, "decoders disagree: {:?} vs {:?}", full, light),
        }
    }
}
