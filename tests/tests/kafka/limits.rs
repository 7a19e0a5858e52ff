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

/// A client that sends Fetch requests and never reads the answers: with Produce answers written
/// by a writer task, the write of each answer is still bounded by `connections.max.idle.ms`,
/// so the connection is closed and the request memory its queued Fetch responses held is
/// released for other connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_fetch_responses_close_the_connection_and_free_their_memory() {
    let dir = tempfile::tempdir().unwrap();
    let kafka = KafkaConfig {
        idle_timeout: Duration::from_millis(500),
        max_queued_request_bytes: 8 << 20,
        ..KafkaConfig::default()
    };
    let broker = TestBroker::start_with(BrokerConfig::new(dir.path()), kafka).await;
    let b = broker.broker().clone();
    b.run_blocking(|b| {
        b.create_topic_blocking(CreateTopic {
            name: "big".into(),
            ..CreateTopic::default()
        })
    })
    .await
    .unwrap();
    let partition = b.partition("big", 0).unwrap();
    for i in 0..16i64 {
        let value = bytes::Bytes::from(vec![b'x'; 256 * 1024]);
        let batch = strom_record::BatchBuilder::new()
            .build(&[strom_record::Record::new(i, None, Some(value))])
            .unwrap();
        partition.append(batch).await.unwrap();
    }
    let fetch = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_max_bytes(4 << 20)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_static_str("big")))
                .with_partitions(vec![
                    FetchPartition::default().with_partition_max_bytes(4 << 20),
                ]),
        ]);
    // A: 40 fetches of 4 MiB each, far more than socket buffers hold; never read.
    let mut a = TcpStream::connect(broker.addr()).await.unwrap();
    let mut out = Vec::new();
    for id in 0..40 {
        out.extend_from_slice(&frame(ApiKey::Fetch, 12, id, &fetch));
    }
    a.write_all(&out).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // B is served: A's stalled answers did not keep the request memory.
    let mut other = TcpStream::connect(broker.addr()).await.unwrap();
    let served = tokio::time::timeout(
        Duration::from_secs(10),
        call::<_, FetchResponse>(&mut other, ApiKey::Fetch, 12, &fetch),
    )
    .await
    .expect("a fetch on another connection is served once A was closed");
    assert_eq!(served.responses[0].partitions[0].error_code, 0);
    assert!(served.responses[0].partitions[0].records.is_some());
    // A was closed: reading drains what was in flight, then ends.
    let mut drained = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match tokio::io::AsyncReadExt::read(&mut a, &mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "A still open after {drained} bytes");
    assert!(
        drained < 40 * (4 << 20),
        "A got every answer: {drained} bytes"
    );
    broker.stop().await;
}
