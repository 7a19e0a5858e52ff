//! Protocol and admin details found by running Kafka's own clients and librdkafka's
//! integration tests against Strom: each answer is the one Kafka gives.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, ProduceRequest, ProduceResponse,
    RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use strom_record::{BatchBuilder, Record};
use strom_tests::TestBroker;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::raw::{call, read_frame};

pub(crate) fn topic_name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_owned()))
}

pub(crate) fn produce_one(topic: &str, partition: i32) -> ProduceRequest {
    let batch = BatchBuilder::new()
        .build(&[Record::new(
            1_000,
            Some(Bytes::from("k")),
            Some(Bytes::from("v")),
        )])
        .unwrap();
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(topic_name(topic))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(partition)
                        .with_records(Some(Bytes::from(batch))),
                ]),
        ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_versions_at_an_unknown_version_answers_v0_with_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let mut s = TcpStream::connect(broker.addr()).await.unwrap();
    // What a newer client sends: header v2, its newest body (here v3's layout) at version 127.
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::ApiVersions as i16)
        .with_request_api_version(127)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("future-client")));
    let mut payload = BytesMut::new();
    header.encode(&mut payload, 2).unwrap();
    ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("future"))
        .with_client_software_version(StrBytes::from_static_str("9.9"))
        .encode(&mut payload, 3)
        .unwrap();
    let mut frame = BytesMut::new();
    frame.put_i32(payload.len() as i32);
    frame.extend_from_slice(&payload);
    s.write_all(&frame).await.unwrap();

    let mut response = read_frame(&mut s)
        .await
        .expect("an answer, not a closed connection");
    let header = ResponseHeader::decode(&mut response, 0).unwrap();
    assert_eq!(header.correlation_id, 7);
    let body = ApiVersionsResponse::decode(&mut response, 0).unwrap();
    assert_eq!(body.error_code, 35, "UNSUPPORTED_VERSION");
    let api_versions = body
        .api_keys
        .iter()
        .find(|k| k.api_key == ApiKey::ApiVersions as i16)
        .expect("the table lists ApiVersions");
    assert_eq!((api_versions.min_version, api_versions.max_version), (0, 4));
    assert!(
        body.api_keys
            .iter()
            .any(|k| k.api_key == ApiKey::Produce as i16)
    );

    // The connection stays usable: the client retries at a version both know.
    let again: ApiVersionsResponse = call(
        &mut s,
        ApiKey::ApiVersions,
        3,
        &ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("future"))
            .with_client_software_version(StrBytes::from_static_str("9.9")),
    )
    .await;
    assert_eq!(again.error_code, 0);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_to_a_missing_topic_is_unknown_topic_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let mut s = TcpStream::connect(broker.addr()).await.unwrap();
    for version in [3, 9, 12] {
        let r: ProduceResponse = call(
            &mut s,
            ApiKey::Produce,
            version,
            &produce_one("never-made", 0),
        )
        .await;
        let p = &r.responses[0].partition_responses[0];
        assert_eq!(p.error_code, 3, "UNKNOWN_TOPIC_OR_PARTITION at v{version}");
        assert_eq!(p.base_offset, -1);
    }
    assert!(
        broker.broker().topic("never-made").is_err(),
        "Produce never creates a topic (auto.create.topics.enable is on)"
    );
    broker.stop().await;
}
