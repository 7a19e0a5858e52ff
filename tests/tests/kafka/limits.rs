//! Connection limits: idle timeout, request-memory admission, waking parked fetches on delete.

use std::time::{Duration, Instant};

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, FetchRequest, FetchResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use strom_broker::{BrokerConfig, CreateTopic};
use strom_kafka::KafkaConfig;
use strom_tests::TestBroker;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::raw::{call, closed_by_server, frame, read_frame};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let kafka = KafkaConfig {
        idle_timeout: Duration::from_millis(200),
        ..KafkaConfig::default()
    };
    let broker = TestBroker::start_with(BrokerConfig::new(dir.path()), kafka).await;
    let mut s = TcpStream::connect(broker.addr()).await.unwrap();
    let r: ApiVersionsResponse = call(
        &mut s,
        ApiKey::ApiVersions,
        0,
        &ApiVersionsRequest::default(),
    )
    .await;
    assert_eq!(r.error_code, 0);
    let start = Instant::now();
    assert!(closed_by_server(&mut s).await);
    assert!(start.elapsed() >= Duration::from_millis(150));
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_frame_body_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let kafka = KafkaConfig {
        idle_timeout: Duration::from_millis(300),
        ..KafkaConfig::default()
    };
    let broker = TestBroker::start_with(BrokerConfig::new(dir.path()), kafka).await;
    let mut s = TcpStream::connect(broker.addr()).await.unwrap();
    s.write_all(&1000i32.to_be_bytes()).await.unwrap();
    for _ in 0..3 {
        s.write_all(&[0u8; 4]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(closed_by_server(&mut s).await);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_memory_is_bounded_across_connections() {
    let dir = tempfile::tempdir().unwrap();
    let kafka = KafkaConfig {
        max_request_bytes: 1000,
        max_queued_request_bytes: 1000,
        ..KafkaConfig::default()
    };
    let broker = TestBroker::start_with(BrokerConfig::new(dir.path()), kafka).await;
    // Connection A announces a 1000-byte frame and sends only part of it: it holds all the
    // request memory while its body trickles in.
    let mut a = TcpStream::connect(broker.addr()).await.unwrap();
    a.write_all(&1000i32.to_be_bytes()).await.unwrap();
    a.write_all(&[0u8; 10]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Connection B's small request waits for admission...
    let mut b = TcpStream::connect(broker.addr()).await.unwrap();
    b.write_all(&frame(
        ApiKey::ApiVersions,
        0,
        7,
        &ApiVersionsRequest::default(),
    ))
    .await
    .unwrap();
    let waited = tokio::time::timeout(Duration::from_millis(300), read_frame(&mut b)).await;
    assert!(
        waited.is_err(),
        "B was served while A held the request memory"
    );
    // ...and is served once A goes away.
    drop(a);
    let response = read_frame(&mut b).await.expect("served after A closed");
    assert_eq!(&response[..4], &7i32.to_be_bytes());
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_topic_wakes_parked_fetches() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let b = broker.broker().clone();
    b.run_blocking(|b| {
        b.create_topic_blocking(CreateTopic {
            name: "gone".into(),
            ..CreateTopic::default()
        })
    })
    .await
    .unwrap();
    let addr = broker.addr();
    let fetcher = tokio::spawn(async move {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let req = FetchRequest::default()
            .with_max_wait_ms(30_000)
            .with_min_bytes(1)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_static_str("gone")))
                    .with_partitions(vec![
                        FetchPartition::default().with_partition_max_bytes(1 << 20),
                    ]),
            ]);
        let start = Instant::now();
        let r: FetchResponse = call(&mut s, ApiKey::Fetch, 12, &req).await;
        (start.elapsed(), r.responses[0].partitions[0].error_code)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    b.run_blocking(|b| b.delete_topic_blocking("gone"))
        .await
        .unwrap();
    let (waited, code) = fetcher.await.unwrap();
    assert!(waited < Duration::from_secs(10), "{waited:?}");
    assert_ne!(code, 0);
    broker.stop().await;
}
