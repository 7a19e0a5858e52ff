//! Differential tests against the `kafka-protocol` crate's record-batch codec: batches we build
//! decode there to the same records, and batches it encodes validate and decode here to the same
//! records, for every codec.
//!
//! `kafka-protocol` keeps headers in a map, so these tests use unique (UTF-8) header keys; it
//! also writes no timestamp-type bit, so only `CreateTime` batches are compared.

use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression as KpCompression, Record as KpRecord, RecordBatchDecoder, RecordBatchEncoder,
    RecordEncodeOptions, TimestampType as KpTimestampType,
};
use proptest::prelude::*;
use strom_record::{
    BatchBuilder, Compression, DecodeLimits, Record, RecordHeader, ValidationLimits, batches,
    decode_records, set_base_offset, validate_records,
};

const CODECS: [(Compression, KpCompression); 5] = [
    (Compression::None, KpCompression::None),
    (Compression::Gzip, KpCompression::Gzip),
    (Compression::Snappy, KpCompression::Snappy),
    (Compression::Lz4, KpCompression::Lz4),
    (Compression::Zstd, KpCompression::Zstd),
];

fn codec_pair() -> impl Strategy<Value = (Compression, KpCompression)> {
    prop::sample::select(CODECS.to_vec())
}

fn field() -> impl Strategy<Value = Option<Bytes>> {
    prop::option::of(prop::collection::vec(any::<u8>(), 0..64).prop_map(Bytes::from))
}

/// Records with unique header keys, as a map-based decoder can represent them.
fn record() -> impl Strategy<Value = Record> {
    (
        0i64..4_102_444_800_000,
        field(),
        field(),
        prop::collection::btree_map("[a-z0-9.-]{0,12}", field(), 0..4),
    )
        .prop_map(|(timestamp, key, value, headers)| Record {
            timestamp,
            key,
            value,
            headers: headers
                .into_iter()
                .map(|(key, value)| RecordHeader {
                    key: Bytes::from(key),
                    value,
                })
                .collect(),
        })
}

fn records() -> impl Strategy<Value = Vec<Record>> {
    prop::collection::vec(record(), 1..16)
}

fn header_map(headers: &[RecordHeader]) -> IndexMap<StrBytes, Option<Bytes>> {
    headers
        .iter()
        .map(|h| {
            let key = StrBytes::from_utf8(h.key.clone()).unwrap();
            (key, h.value.clone())
        })
        .collect()
}

fn to_kafka_protocol(records: &[Record], base_offset: i64) -> Vec<KpRecord> {
    records
        .iter()
        .enumerate()
        .map(|(i, r)| KpRecord {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: KpTimestampType::Creation,
            offset: base_offset + i as i64,
            // kafka-protocol splits batches where offset - sequence changes.
            sequence: i as i32,
            timestamp: r.timestamp,
            key: r.key.clone(),
            value: r.value.clone(),
            headers: header_map(&r.headers),
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn our_batches_decode_the_same_in_kafka_protocol(
        records in records(),
        (ours, _) in codec_pair(),
        base_offset in 0i64..1 << 40,
    ) {
        let mut batch = BatchBuilder::new().compression(ours).build(&records).unwrap();
        set_base_offset(&mut batch, base_offset).unwrap();
        let set = RecordBatchDecoder::decode(&mut Bytes::from(batch)).unwrap();
        prop_assert_eq!(set.records.len(), records.len());
        for (i, (theirs, ours)) in set.records.iter().zip(&records).enumerate() {
            prop_assert_eq!(theirs.offset, base_offset + i as i64);
            prop_assert_eq!(theirs.timestamp, ours.timestamp);
            prop_assert_eq!(&theirs.key, &ours.key);
            prop_assert_eq!(&theirs.value, &ours.value);
            prop_assert_eq!(&theirs.headers, &header_map(&ours.headers));
        }
    }

    #[test]
    fn kafka_protocol_batches_validate_and_decode_the_same_here(
        records in records(),
        (ours, theirs) in codec_pair(),
        base_offset in 0i64..1 << 40,
    ) {
        let mut buf = BytesMut::new();
        let options = RecordEncodeOptions { version: 2, compression: theirs };
        RecordBatchEncoder::encode(&mut buf, &to_kafka_protocol(&records, base_offset), &options)
            .unwrap();
        let buf = buf.freeze();

        let found: Vec<_> = batches(&buf, ValidationLimits::default())
            .collect::<Result<_, _>>()
            .unwrap();
        prop_assert_eq!(found.len(), 1);
        let (header, range) = &found[0];
        prop_assert_eq!(range.clone(), 0..buf.len());
        prop_assert_eq!(header.compression().unwrap(), ours);
        validate_records(&buf, DecodeLimits::default()).unwrap();

        let decoded = decode_records(&buf, DecodeLimits::default()).unwrap();
        prop_assert_eq!(decoded.records.len(), records.len());
        for (i, (got, sent)) in decoded.records.iter().zip(&records).enumerate() {
            prop_assert_eq!(got.offset, base_offset + i as i64);
            prop_assert_eq!(got.timestamp, sent.timestamp);
            prop_assert_eq!(&got.key, &sent.key);
            prop_assert_eq!(&got.value, &sent.value);
            prop_assert_eq!(&got.headers, &sent.headers);
        }
    }
}

/// A batch large enough for several snappy and LZ4 blocks, in both directions.
#[test]
fn multi_block_batches_interoperate() {
    let records: Vec<Record> = (0..40)
        .map(|i| {
            let value: Vec<u8> = (0..5_000u32).map(|j| (j * 7 + i) as u8).collect();
            Record::new(
                1_700_000_000_000 + i64::from(i),
                None,
                Some(Bytes::from(value)),
            )
        })
        .collect();
    for (ours, theirs) in CODECS {
        let batch = BatchBuilder::new()
            .compression(ours)
            .build(&records)
            .unwrap();
        let set = RecordBatchDecoder::decode(&mut Bytes::from(batch)).unwrap();
        let values: Vec<_> = set.records.into_iter().map(|r| r.value).collect();
        let expected: Vec<_> = records.iter().map(|r| r.value.clone()).collect();
        assert_eq!(values, expected, "{ours:?}");

        let mut buf = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression: theirs,
        };
        RecordBatchEncoder::encode(&mut buf, &to_kafka_protocol(&records, 0), &options).unwrap();
        let decoded = decode_records(&buf.freeze(), DecodeLimits::default()).unwrap();
        let back: Vec<Record> = decoded.records.into_iter().map(Record::from).collect();
        assert_eq!(back, records, "{ours:?}");
    }
}
