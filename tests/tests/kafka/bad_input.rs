//! Malformed and hostile input over a raw TCP connection: the broker answers with an error code
//! or closes that connection, and keeps serving everyone else.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, MetadataResponse,
    ProduceResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use strom_record::{BatchBuilder, Record};
use strom_tests::TestBroker;

use super::raw::{call, closed_by_server, produce_request, read_frame};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

async fn still_serves(broker: &TestBroker) {
    let mut s = TcpStream::connect(broker.addr()).await.unwrap();
    let r: ApiVersionsResponse = call(
        &mut s,
        ApiKey::ApiVersions,
        3,
        &ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("raw"))
            .with_client_software_version(StrBytes::from_static_str("1.0")),
    )
    .await;
    assert_eq!(r.error_code, 0);
    assert!(
        r.api_keys
            .iter()
            .any(|k| k.api_key == ApiKey::Produce as i16)
    );
}

fn batch() -> Vec<u8> {
    BatchBuilder::new()
        .build(&[Record::new(
            1_000,
            Some(Bytes::from("k")),
            Some(Bytes::from("v")),
        )])
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_oversized_and_unknown_frames_close_only_that_connection() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    // A connection held open across all the bad ones.
    let mut healthy = TcpStream::connect(broker.addr()).await.unwrap();

    // Truncated: announce 100 bytes, send 10, half-close.
    let mut s = TcpStream::connect(broker.addr()).await.unwrap();
    s.write_all(&100i32.to_be_bytes()).await.unwrap();
    s.write_all(&[0u8; 10]).await.unwrap();
    s.shutdown().await.unwrap();
    assert!(closed_by_server(&mut s).await);

    // Oversized: more than socket.request.max.bytes (100 MiB).
    let mut s = TcpStream::connect(broker.addr()).await.unwrap();
    s.write_all(&(200 * 1024 * 1024i32).to_be_bytes())
        .await
        .unwrap();
    assert!(closed_by_server(&mut s).await);

    // Negative size.
    let mut s = TcpStream::connect(broker.addr()).await.unwrap();
    s.write_all(&(-5i32).to_be_bytes()).await.unwrap();
    assert!(closed_by_server(&mut s).await);

    // Unknown API key 999.
    let mut s = TcpStream::connect(broker.addr()).await.unwrap();
    let mut f = BytesMut::new();
    f.put_i32(10);
    f.put_i16(999);
    f.put_i16(0);
    f.put_i32(7);
    f.put_i16(-1);
    s.write_all(&f).await.unwrap();
    assert!(closed_by_server(&mut s).await);

    // Known API at a version we do not implement (Produce v2).
    let mut s = TcpStream::connect(broker.addr()).await.unwrap();
    let mut f = BytesMut::new();
    f.put_i32(10);
    f.put_i16(ApiKey::Produce as i16);
    f.put_i16(2);
    f.put_i32(8);
    f.put_i16(-1);
    s.write_all(&f).await.unwrap();
    assert!(closed_by_server(&mut s).await);

    // A frame too short for a header, and garbage in a Metadata body.
    let mut s = TcpStream::connect(broker.addr()).await.unwrap();
    s.write_all(&[0, 0, 0, 3, 0, 3, 0]).await.unwrap();
    assert!(closed_by_server(&mut s).await);
    // Garbage in a Metadata body: a string length beyond the frame.
    let mut s = TcpStream::connect(broker.addr()).await.unwrap();
    let mut f = BytesMut::new();
    f.put_i32(16);
    f.put_i16(ApiKey::Metadata as i16);
    f.put_i16(1);
    f.put_i32(9);
    f.put_i16(-1);
    f.put_i32(1); // one topic
    f.put_i16(300); // whose name claims 300 bytes
    s.write_all(&f).await.unwrap();
    assert!(closed_by_server(&mut s).await);

    // The connection opened before all of that still works, and so do new ones.
    let r: ApiVersionsResponse = call(
        &mut healthy,
        ApiKey::ApiVersions,
        0,
        &ApiVersionsRequest::default(),
    )
    .await;
    assert_eq!(r.error_code, 0);
    still_serves(&broker).await;
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_versions_at_an_unknown_version_answers_v0_with_our_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let mut s = TcpStream::connect(broker.addr()).await.unwrap();
    // v99 with a v2 header (what a future client would send).
    // The codec cannot encode v99, so build it: a v2 header, then a v3 body.
    let mut payload = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(ApiKey::ApiVersions as i16)
        .with_request_api_version(99)
        .with_correlation_id(5)
        .encode(&mut payload, 2)
        .unwrap();
    ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("x"))
        .with_client_software_version(StrBytes::from_static_str("1"))
        .encode(&mut payload, 3)
        .unwrap();
    let mut f = BytesMut::new();
    f.put_i32(payload.len() as i32);
    f.extend_from_slice(&payload);
    s.write_all(&f).await.unwrap();
    let mut response = read_frame(&mut s).await.expect("a response");
    let header = ResponseHeader::decode(&mut response, 0).unwrap();
    assert_eq!(header.correlation_id, 5);
    let r = ApiVersionsResponse::decode(&mut response, 0).unwrap();
    assert_eq!(r.error_code, 35, "UNSUPPORTED_VERSION");
    let produce = r
        .api_keys
        .iter()
        .find(|k| k.api_key == ApiKey::Produce as i16)
        .unwrap();
    assert_eq!((produce.min_version, produce.max_version), (3, 13));
    // The connection stays usable for the retry at a lower version.
    let r: ApiVersionsResponse = call(
        &mut s,
        ApiKey::ApiVersions,
        3,
        &ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("x"))
            .with_client_software_version(StrBytes::from_static_str("1")),
    )
    .await;
    assert_eq!(r.error_code, 0);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_batches_and_bad_topic_names_get_error_codes() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let mut s = TcpStream::connect(broker.addr()).await.unwrap();

    // A good batch first (Produce never creates topics: make it).
    super::client::create_topic(&broker.bootstrap(), "raw", 1).await;
    let r: ProduceResponse = call(
        &mut s,
        ApiKey::Produce,
        9,
        &produce_request("raw", 0, Bytes::from(batch())),
    )
    .await;
    let p = &r.responses[0].partition_responses[0];
    assert_eq!((p.error_code, p.base_offset), (0, 0));

    // Flip a byte in the records section: CRC mismatch.
    let mut bad = batch();
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    let r: ProduceResponse = call(
        &mut s,
        ApiKey::Produce,
        9,
        &produce_request("raw", 0, Bytes::from(bad)),
    )
    .await;
    assert_eq!(
        r.responses[0].partition_responses[0].error_code, 2,
        "CORRUPT_MESSAGE"
    );

    // Truncated batch.
    let short = Bytes::from(batch()[..30].to_vec());
    let r: ProduceResponse = call(
        &mut s,
        ApiKey::Produce,
        9,
        &produce_request("raw", 0, short),
    )
    .await;
    assert_ne!(r.responses[0].partition_responses[0].error_code, 0);

    // Invalid topic name.
    let r: ProduceResponse = call(
        &mut s,
        ApiKey::Produce,
        9,
        &produce_request("bad/name", 0, Bytes::from(batch())),
    )
    .await;
    assert_eq!(
        r.responses[0].partition_responses[0].error_code, 17,
        "INVALID_TOPIC_EXCEPTION"
    );
    let r: MetadataResponse = call(
        &mut s,
        ApiKey::Metadata,
        12,
        &MetadataRequest::default()
            .with_topics(Some(vec![
                MetadataRequestTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_static_str("bad name")))),
            ]))
            .with_allow_auto_topic_creation(true),
    )
    .await;
    assert_eq!(r.topics[0].error_code, 17);

    // Unknown partition of an existing topic.
    let mut req = produce_request("raw", 0, Bytes::from(batch()));
    req.topic_data[0].partition_data[0].index = 7;
    let r: ProduceResponse = call(&mut s, ApiKey::Produce, 9, &req).await;
    assert_eq!(
        r.responses[0].partition_responses[0].error_code, 3,
        "UNKNOWN_TOPIC_OR_PARTITION"
    );

    // Too large for max.message.bytes.
    let big = BatchBuilder::new()
        .build(&[Record::new(
            1,
            None,
            Some(Bytes::from(vec![7u8; 2 * 1024 * 1024])),
        )])
        .unwrap();
    let r: ProduceResponse = call(
        &mut s,
        ApiKey::Produce,
        9,
        &produce_request("raw", 0, Bytes::from(big)),
    )
    .await;
    assert_eq!(
        r.responses[0].partition_responses[0].error_code, 10,
        "MESSAGE_TOO_LARGE"
    );

    // The same connection still appends good batches at the next offset.
    let r: ProduceResponse = call(
        &mut s,
        ApiKey::Produce,
        9,
        &produce_request("raw", 0, Bytes::from(batch())),
    )
    .await;
    let p = &r.responses[0].partition_responses[0];
    assert_eq!((p.error_code, p.base_offset), (0, 1));
    still_serves(&broker).await;
    broker.stop().await;
}

/// kafka-protocol 0.18.0 calls `Vec::with_capacity(count)` with the array count read off the
/// wire before decoding any element, so 14 bytes claiming 2^31-1 topics would make the system
/// allocator abort the whole process (upstream kafka-protocol-rs PRs #152, #161, #200 are open).
/// `strom-alloc` maps such reservations lazily, so the decode fails cleanly instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_array_count_does_not_abort() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let mut s = TcpStream::connect(broker.addr()).await.unwrap();
    let mut f = BytesMut::new();
    f.put_i32(14);
    f.put_i16(ApiKey::Metadata as i16);
    f.put_i16(1);
    f.put_i32(9);
    f.put_i16(-1);
    f.put_i32(0x7fff_ffff); // claims 2^31-1 topics, provides none
    s.write_all(&f).await.unwrap();
    assert!(closed_by_server(&mut s).await);

    still_serves(&broker).await;
    broker.stop().await;
}
