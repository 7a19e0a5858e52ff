//! The hand-framed Fetch response against `kafka-protocol`'s encoder and decoder, for every
//! version Strom serves.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{ApiKey, FetchResponse, ProducerId, ResponseHeader, TopicName};
use kafka_protocol::protocol::{Decodable, HeaderVersion, StrBytes};
use proptest::prelude::*;
use uuid::Uuid;

use super::{AbortedTxn, PartitionResponse, ResponseHead, TopicResponse, encode};
use crate::api::supported_versions;
use crate::frame::encode_response;

fn versions() -> std::ops::RangeInclusive<i16> {
    let (min, max) = supported_versions(ApiKey::Fetch).unwrap();
    min..=max
}

/// The same response built with `kafka-protocol`'s message types, holding only what `version`
/// carries (so it also is what decoding our bytes must give).
fn reference_message(
    version: i16,
    error_code: i16,
    session_id: i32,
    topics: &[TopicResponse],
) -> FetchResponse {
    let responses = topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    PartitionData::default()
                        .with_partition_index(p.index)
                        .with_error_code(p.error_code)
                        .with_high_watermark(p.high_watermark)
                        .with_last_stable_offset(p.last_stable_offset)
                        // Not on the wire before v5: decodes as the default.
                        .with_log_start_offset(if version >= 5 { p.log_start_offset } else { -1 })
                        .with_aborted_transactions(Some(
                            p.aborted
                                .iter()
                                .map(|a| {
                                    AbortedTransaction::default()
                                        .with_producer_id(ProducerId(a.producer_id))
                                        .with_first_offset(a.first_offset)
                                })
                                .collect(),
                        ))
                        .with_records(Some(p.records.clone()))
                })
                .collect();
            let mut topic = FetchableTopicResponse::default().with_partitions(partitions);
            if version >= 13 {
                topic.topic_id = t.id;
            } else {
                topic.topic = TopicName(StrBytes::from_string(t.name.clone()));
            }
            topic
        })
        .collect();
    let mut response = FetchResponse::default().with_responses(responses);
    if version >= 7 {
        response.error_code = error_code;
        response.session_id = session_id;
    }
    response
}

fn concat(parts: &[Bytes]) -> Bytes {
    let mut all = BytesMut::new();
    for p in parts {
        all.extend_from_slice(p);
    }
    all.freeze()
}

/// Encodes with both encoders, checks the bytes are equal, decodes ours and checks every value,
/// and checks the record sets were not copied.
fn check(version: i16, error_code: i16, session_id: i32, topics: &[TopicResponse]) {
    let correlation_id = 0x0102_0304;
    let parts = encode(
        correlation_id,
        version,
        ResponseHead {
            throttle_time_ms: 0,
            error_code,
            session_id,
        },
        topics,
    )
    .unwrap();
    let ours = concat(&parts);
    let message = reference_message(version, error_code, session_id, topics);
    let theirs = encode_response(correlation_id, version, &message).unwrap();
    assert_eq!(
        ours, theirs,
        "v{version}: bytes differ from kafka-protocol's"
    );

    // Decodes to the same values.
    let size = i32::from_be_bytes(ours[..4].try_into().unwrap());
    assert_eq!(usize::try_from(size).unwrap(), ours.len() - 4);
    let mut body = ours.slice(4..);
    let header = ResponseHeader::decode(&mut body, FetchResponse::header_version(version)).unwrap();
    assert_eq!(header.correlation_id, correlation_id);
    let decoded = FetchResponse::decode(&mut body, version).unwrap();
    assert!(body.is_empty(), "v{version}: trailing bytes");
    assert_eq!(decoded, message, "v{version}: decoded values differ");

    // Every non-empty record set is its own chunk, pointing at the caller's bytes.
    let record_sets: Vec<&Bytes> = topics
        .iter()
        .flat_map(|t| t.partitions.iter())
        .map(|p| &p.records)
        .filter(|r| !r.is_empty())
        .collect();
    let spliced: Vec<&Bytes> = parts.iter().skip(1).step_by(2).collect();
    assert_eq!(spliced.len(), record_sets.len());
    assert_eq!(parts.len(), 2 * record_sets.len() + 1);
    for (chunk, records) in spliced.into_iter().zip(record_sets) {
        assert_eq!(chunk.as_ptr(), records.as_ptr(), "records were copied");
        assert_eq!(chunk.len(), records.len());
    }
}

fn partition(index: i32, records: Bytes) -> PartitionResponse {
    PartitionResponse {
        index,
        error_code: 0,
        high_watermark: 1000 + i64::from(index),
        last_stable_offset: 900,
        log_start_offset: 7,
        aborted: Vec::new(),
        records,
    }
}

fn topic(name: &str, partitions: Vec<PartitionResponse>) -> TopicResponse {
    TopicResponse {
        name: name.to_owned(),
        id: Uuid::from_u128(0x0011_2233_4455_6677_8899_aabb_ccdd_eeff),
        partitions,
    }
}

#[test]
fn no_topics() {
    for v in versions() {
        check(v, 0, 0, &[]);
    }
}

#[test]
fn top_level_error_and_session_id() {
    // FETCH_SESSION_ID_NOT_FOUND as the handler sends it, and a non-zero session id (v7+ only).
    for v in versions() {
        check(v, 70, 0, &[]);
        if v >= 7 {
            check(v, 0, 12345, &[topic("t", vec![partition(0, Bytes::new())])]);
        }
    }
}

#[test]
fn empty_and_error_partitions_have_no_record_chunk() {
    let topics = [
        topic(
            "t",
            vec![
                partition(0, Bytes::new()),
                PartitionResponse::error(1, 3),
                PartitionResponse::error(2, 1),
            ],
        ),
        topic("", vec![]),
    ];
    for v in versions() {
        check(v, 0, 0, &topics);
        let parts = encode(1, v, ResponseHead::default(), &topics).unwrap();
        assert_eq!(parts.len(), 1);
    }
}

#[test]
fn records_at_varint_boundaries() {
    // Compact lengths are length + 1: 126/127 and 16382/16383 bytes straddle a varint byte.
    for len in [1usize, 126, 127, 128, 16_382, 16_383, 16_384, 2_097_151] {
        let records = Bytes::from(vec![0xabu8; len]);
        let topics = [topic("t", vec![partition(0, records)])];
        for v in versions() {
            check(v, 0, 0, &topics);
        }
    }
}

#[test]
fn many_partitions_and_aborted_transactions() {
    let name = "x".repeat(200); // a compact-string length above one varint byte
    let mut partitions = Vec::new();
    for i in 0..150 {
        let mut p = partition(
            i,
            Bytes::from(vec![u8::try_from(i).unwrap(); 3 * i as usize]),
        );
        p.aborted = (0..i64::from(i % 4))
            .map(|k| AbortedTxn {
                producer_id: 1 << 40 | k,
                first_offset: -k,
            })
            .collect();
        partitions.push(p);
    }
    let topics = [
        topic(&name, partitions),
        topic("second", vec![partition(9, Bytes::from_static(b"z"))]),
    ];
    for v in versions() {
        check(v, 0, 0, &topics);
    }
}

#[test]
fn record_chunks_are_slices_of_a_shared_buffer() {
    // Two partitions whose records are slices of one read buffer stay slices of it.
    let buffer = Bytes::from(vec![1u8; 4096]);
    let topics = [topic(
        "t",
        vec![
            partition(0, buffer.slice(..1000)),
            partition(1, buffer.slice(1000..)),
        ],
    )];
    let parts = encode(5, 16, ResponseHead::default(), &topics).unwrap();
    assert_eq!(parts[1].as_ptr(), buffer.as_ptr());
    assert_eq!(parts[3].as_ptr(), buffer[1000..].as_ptr());
}

#[test]
fn too_long_topic_name_is_an_error_before_v12() {
    let topics = [topic(&"n".repeat(40_000), vec![])];
    assert!(encode(1, 11, ResponseHead::default(), &topics).is_err());
    // Compact strings have no such limit; topic ids do not send the name at all.
    assert!(encode(1, 12, ResponseHead::default(), &topics).is_ok());
    assert!(encode(1, 13, ResponseHead::default(), &topics).is_ok());
}

fn arb_partition() -> impl Strategy<Value = PartitionResponse> {
    (
        any::<i32>(),
        any::<i16>(),
        any::<i64>(),
        any::<i64>(),
        any::<i64>(),
        prop::collection::vec((any::<i64>(), any::<i64>()), 0..4),
        prop::collection::vec(any::<u8>(), 0..300),
    )
        .prop_map(
            |(index, error_code, hw, lso, start, aborted, records)| PartitionResponse {
                index,
                error_code,
                high_watermark: hw,
                last_stable_offset: lso,
                log_start_offset: start,
                aborted: aborted
                    .into_iter()
                    .map(|(producer_id, first_offset)| AbortedTxn {
                        producer_id,
                        first_offset,
                    })
                    .collect(),
                records: Bytes::from(records),
            },
        )
}

fn arb_topic() -> impl Strategy<Value = TopicResponse> {
    (
        "[a-zA-Z0-9._-]{0,40}",
        any::<u128>(),
        prop::collection::vec(arb_partition(), 0..5),
    )
        .prop_map(|(name, id, partitions)| TopicResponse {
            name,
            id: Uuid::from_u128(id),
            partitions,
        })
}

proptest! {
    #[test]
    fn matches_kafka_protocol_for_every_version(
        topics in prop::collection::vec(arb_topic(), 0..4),
        error_code in any::<i16>(),
        session_id in any::<i32>(),
    ) {
        for v in versions() {
            let session_id = if v >= 7 { session_id } else { 0 };
            check(v, error_code, session_id, &topics);
        }
    }
}
