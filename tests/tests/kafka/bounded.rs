//! Bounded resources on the Kafka listener: the broker's fetch.max.bytes and the connection
//! limits, over real sockets.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, FetchRequest, FetchResponse, ProduceResponse,
};
use kafka_protocol::protocol::StrBytes;
use strom_broker::BrokerConfig;
use strom_kafka::KafkaConfig;
use strom_record::{BatchBuilder, Record};
use strom_tests::TestBroker;
use tokio::net::TcpStream;

use super::conformance::{produce_one, topic_name};
use super::raw::{call, closed_by_server};

async fn api_versions(s: &mut TcpStream) -> i16 {
    let r: ApiVersionsResponse = call(
        s,
        ApiKey::ApiVersions,
        3,
        &ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("bounded"))
            .with_client_software_version(StrBytes::from_static_str("1")),
    )
    .await;
    r.error_code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_per_ip_closes_the_excess_connection() {
    let dir = tempfile::tempdir().unwrap();
    let kafka = KafkaConfig {
        max_connections_per_ip: 2,
        ..KafkaConfig::default()
    };
    let broker = TestBroker::start_with(BrokerConfig::new(dir.path()), kafka).await;
    let mut a = TcpStream::connect(broker.addr()).await.unwrap();
    let mut b = TcpStream::connect(broker.addr()).await.unwrap();
    assert_eq!(api_versions(&mut a).await, 0);
    assert_eq!(api_versions(&mut b).await, 0);
    let mut c = TcpStream::connect(broker.addr()).await.unwrap();
    assert!(
        closed_by_server(&mut c).await,
        "the third connection is closed"
    );
    assert_eq!(api_versions(&mut a).await, 0, "the others keep working");

    // Closing one frees its slot (the server notices the close asynchronously).
    drop(b);
    let mut admitted = false;
    for _ in 0..50 {
        let mut d = TcpStream::connect(broker.addr()).await.unwrap();
        // A refused connection makes the call panic (no response): that task fails.
        if let Ok(code) = tokio::spawn(async move { api_versions(&mut d).await }).await {
            assert_eq!(code, 0);
            admitted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(admitted, "a slot frees when a connection closes");
    broker.stop().await;
}

fn fetch(topic: &str, max_bytes: i32) -> FetchRequest {
    FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(max_bytes)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(topic_name(topic))
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(0)
                        .with_fetch_offset(0)
                        .with_partition_max_bytes(max_bytes),
                ]),
        ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_fetch_max_bytes_caps_a_fetch_response() {
    let dir = tempfile::tempdir().unwrap();
    let kafka = KafkaConfig {
        fetch_max_bytes: 64 * 1024,
        ..KafkaConfig::default()
    };
    let broker = TestBroker::start_with(BrokerConfig::new(dir.path()), kafka).await;
    super::client::create_topic(&broker.bootstrap(), "big", 1).await;
    let mut s = TcpStream::connect(broker.addr()).await.unwrap();
    // Ten batches of ~20 KiB each (incompressible enough: distinct bytes).
    let value: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
    let mut batch_len = 0;
    for _ in 0..10 {
        let batch = BatchBuilder::new()
            .build(&[Record::new(1, None, Some(Bytes::from(value.clone())))])
            .unwrap();
        batch_len = batch.len();
        let mut req = produce_one("big", 0);
        req.topic_data[0].partition_data[0].records = Some(Bytes::from(batch));
        let r: ProduceResponse = call(&mut s, ApiKey::Produce, 9, &req).await;
        assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    }
    // The client asks for 10 MiB; the broker sends at most its 64 KiB.
    let r: FetchResponse = call(&mut s, ApiKey::Fetch, 12, &fetch("big", 10 << 20)).await;
    let records = r.responses[0].partitions[0]
        .records
        .clone()
        .unwrap_or_default();
    assert!(records.len() <= 64 * 1024, "{} bytes", records.len());
    assert!(
        records.len() >= 3 * batch_len,
        "whole batches up to the cap"
    );
    assert_eq!(records.len() % batch_len, 0, "only whole batches");
    broker.stop().await;

    // A broker cap below one batch still returns the first batch whole.
    let dir = tempfile::tempdir().unwrap();
    let kafka = KafkaConfig {
        fetch_max_bytes: 1024,
        ..KafkaConfig::default()
    };
    let broker = TestBroker::start_with(BrokerConfig::new(dir.path()), kafka).await;
    super::client::create_topic(&broker.bootstrap(), "big", 1).await;
    let mut s = TcpStream::connect(broker.addr()).await.unwrap();
    for _ in 0..2 {
        let batch = BatchBuilder::new()
            .build(&[Record::new(1, None, Some(Bytes::from(value.clone())))])
            .unwrap();
        let mut req = produce_one("big", 0);
        req.topic_data[0].partition_data[0].records = Some(Bytes::from(batch));
        let _: ProduceResponse = call(&mut s, ApiKey::Produce, 9, &req).await;
    }
    let r: FetchResponse = call(&mut s, ApiKey::Fetch, 12, &fetch("big", 10 << 20)).await;
    let records = r.responses[0].partitions[0]
        .records
        .clone()
        .unwrap_or_default();
    assert_eq!(records.len(), batch_len, "exactly the first batch");
    broker.stop().await;
}
