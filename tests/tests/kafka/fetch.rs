//! Fetch semantics over the raw protocol: long poll, byte limits, errors, topic ids, and
//! pipelined requests answered in order.

use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, FetchRequest, FetchResponse, MetadataRequest, MetadataResponse, ProduceRequest,
    ProduceResponse, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, HeaderVersion, StrBytes};
use strom_broker::CreateTopic;
use strom_record::{BatchBuilder, Record};
use strom_tests::TestBroker;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use uuid::Uuid;

use super::raw::{call, frame, produce_request, read_frame};

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_owned()))
}

fn batch(n: usize, size: usize) -> Bytes {
    let records: Vec<Record> = (0..n)
        .map(|_| Record::new(1, None, Some(Bytes::from(vec![b'x'; size]))))
        .collect();
    Bytes::from(BatchBuilder::new().build(&records).unwrap())
}

fn produce_req(topic: &str, partition: i32, records: Bytes) -> ProduceRequest {
    produce_request(topic, partition, records).with_acks(1)
}

fn fetch_req(
    topic: &str,
    partitions: &[(i32, i64)],
    max_wait_ms: i32,
    min_bytes: i32,
) -> FetchRequest {
    FetchRequest::default()
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(min_bytes)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(name(topic))
                .with_partitions(
                    partitions
                        .iter()
                        .map(|&(p, offset)| {
                            FetchPartition::default()
                                .with_partition(p)
                                .with_fetch_offset(offset)
                                .with_partition_max_bytes(1 << 20)
                        })
                        .collect(),
                ),
        ])
}

async fn started_with_topic(partitions: i32) -> (tempfile::TempDir, TestBroker) {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let b = broker.broker().clone();
    b.run_blocking(move |b| {
        b.create_topic_blocking(CreateTopic {
            name: "f".into(),
            partitions: Some(partitions),
            ..CreateTopic::default()
        })
    })
    .await
    .unwrap();
    (dir, broker)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_waits_for_data_or_the_deadline() {
    let (_dir, broker) = started_with_topic(2).await;
    let mut s = TcpStream::connect(broker.addr()).await.unwrap();

    // Nothing to read: the response comes after max_wait_ms, with empty (not null) records.
    let start = Instant::now();
    let r: FetchResponse = call(
        &mut s,
        ApiKey::Fetch,
        12,
        &fetch_req("f", &[(0, 0), (1, 0)], 300, 1),
    )
    .await;
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(250), "{waited:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    for p in &r.responses[0].partitions {
        assert_eq!(p.error_code, 0);
        assert_eq!(p.records.as_ref().map(Bytes::len), Some(0));
        assert_eq!(p.high_watermark, 0);
    }

    // A parked fetch wakes as soon as a record lands on any of its partitions.
    let addr = broker.addr();
    let writer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut w = TcpStream::connect(addr).await.unwrap();
        let r: ProduceResponse = call(
            &mut w,
            ApiKey::Produce,
            9,
            &produce_req("f", 1, batch(1, 10)),
        )
        .await;
        assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    });
    let start = Instant::now();
    let r: FetchResponse = call(
        &mut s,
        ApiKey::Fetch,
        12,
        &fetch_req("f", &[(0, 0), (1, 0)], 20_000, 1),
    )
    .await;
    let waited = start.elapsed();
    writer.await.unwrap();
    assert!(waited < Duration::from_secs(5), "woke late: {waited:?}");
    let p1 = &r.responses[0].partitions[1];
    assert_eq!(p1.high_watermark, 1);
    assert!(!p1.records.as_ref().unwrap().is_empty());
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byte_limits_and_errors() {
    let (_dir, broker) = started_with_topic(3).await;
    let mut s = TcpStream::connect(broker.addr()).await.unwrap();
    for p in 0..3 {
        let r: ProduceResponse = call(
            &mut s,
            ApiKey::Produce,
            9,
            &produce_req("f", p, batch(10, 1000)),
        )
        .await;
        assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    }
    // max_bytes smaller than one batch: the first batch still comes whole (KIP-74), nothing more.
    let mut req = fetch_req("f", &[(0, 0), (1, 0), (2, 0)], 0, 1);
    req.max_bytes = 100;
    let r: FetchResponse = call(&mut s, ApiKey::Fetch, 12, &req).await;
    let sizes: Vec<usize> = r.responses[0]
        .partitions
        .iter()
        .map(|p| p.records.as_ref().unwrap().len())
        .collect();
    assert!(sizes[0] > 10_000, "{sizes:?}");
    assert_eq!(&sizes[1..], &[0, 0]);

    // Offset past the end, unknown partition, unknown topic.
    let r: FetchResponse = call(
        &mut s,
        ApiKey::Fetch,
        12,
        &fetch_req("f", &[(0, 99), (7, 0)], 0, 1),
    )
    .await;
    let parts = &r.responses[0].partitions;
    assert_eq!(parts[0].error_code, 1, "OFFSET_OUT_OF_RANGE");
    assert_eq!(parts[0].high_watermark, 10);
    assert_eq!(parts[1].error_code, 3, "UNKNOWN_TOPIC_OR_PARTITION");
    let r: FetchResponse = call(
        &mut s,
        ApiKey::Fetch,
        12,
        &fetch_req("nope", &[(0, 0)], 0, 1),
    )
    .await;
    assert_eq!(r.responses[0].partitions[0].error_code, 3);
    assert!(r.responses[0].partitions[0].records.is_some());
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_ids_in_metadata_produce_and_fetch() {
    let (_dir, broker) = started_with_topic(1).await;
    let mut s = TcpStream::connect(broker.addr()).await.unwrap();
    let md: MetadataResponse = call(
        &mut s,
        ApiKey::Metadata,
        12,
        &MetadataRequest::default().with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(name("f"))),
        ])),
    )
    .await;
    let id = md.topics[0].topic_id;
    assert_eq!(id, broker.broker().topic("f").unwrap().id());
    // Metadata v12 by id only.
    let md: MetadataResponse = call(
        &mut s,
        ApiKey::Metadata,
        12,
        &MetadataRequest::default().with_topics(Some(vec![
            MetadataRequestTopic::default()
                .with_name(None)
                .with_topic_id(id),
        ])),
    )
    .await;
    assert_eq!(md.topics[0].name.as_ref().unwrap().0.as_str(), "f");

    // Produce v13 addresses topics by id.
    let mut req = produce_req("", 0, batch(2, 5));
    req.topic_data[0].topic_id = id;
    let r: ProduceResponse = call(&mut s, ApiKey::Produce, 13, &req).await;
    assert_eq!(r.responses[0].topic_id, id);
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    let mut req = produce_req("", 0, batch(1, 5));
    req.topic_data[0].topic_id = Uuid::new_v4();
    let r: ProduceResponse = call(&mut s, ApiKey::Produce, 13, &req).await;
    assert_eq!(
        r.responses[0].partition_responses[0].error_code, 100,
        "UNKNOWN_TOPIC_ID"
    );

    // Fetch v13+ too.
    let mut req = fetch_req("", &[(0, 0)], 0, 1);
    req.topics[0].topic_id = id;
    let r: FetchResponse = call(&mut s, ApiKey::Fetch, 16, &req).await;
    assert_eq!(r.responses[0].topic_id, id);
    assert_eq!(r.responses[0].partitions[0].high_watermark, 2);
    req.topics[0].topic_id = Uuid::new_v4();
    let r: FetchResponse = call(&mut s, ApiKey::Fetch, 16, &req).await;
    assert_eq!(r.responses[0].partitions[0].error_code, 100);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order() {
    let (_dir, broker) = started_with_topic(1).await;
    let mut s = TcpStream::connect(broker.addr()).await.unwrap();
    let mut all = Vec::new();
    for i in 0..20 {
        all.extend_from_slice(&frame(
            ApiKey::Produce,
            9,
            1000 + i,
            &produce_req("f", 0, batch(1, 3)),
        ));
    }
    s.write_all(&all).await.unwrap();
    for i in 0..20 {
        let mut f = read_frame(&mut s).await.unwrap();
        let header = ResponseHeader::decode(&mut f, 1).unwrap();
        assert_eq!(header.correlation_id, 1000 + i);
        let r = ProduceResponse::decode(&mut f, 9).unwrap();
        assert_eq!(
            r.responses[0].partition_responses[0].base_offset,
            i64::from(i)
        );
    }
    broker.stop().await;
}

/// A response is sent as soon as it is ready, even when the client has already pipelined a
/// request behind it that will take long (here a Fetch long-polling for 3 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_does_not_wait_for_the_pipelined_request_behind_it() {
    let (_dir, broker) = started_with_topic(1).await;
    let mut s = TcpStream::connect(broker.addr()).await.unwrap();
    let mut both = frame(ApiKey::Produce, 9, 1, &produce_req("f", 0, batch(1, 3))).to_vec();
    // Offset 1 is past the one record just produced: the fetch waits out max_wait_ms.
    both.extend_from_slice(&frame(
        ApiKey::Fetch,
        12,
        2,
        &fetch_req("f", &[(0, 1)], 3_000, 1),
    ));
    let started = Instant::now();
    s.write_all(&both).await.unwrap();
    let mut f = read_frame(&mut s).await.unwrap();
    let produced_after = started.elapsed();
    assert_eq!(ResponseHeader::decode(&mut f, 1).unwrap().correlation_id, 1);
    let r = ProduceResponse::decode(&mut f, 9).unwrap();
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    assert!(
        produced_after < Duration::from_millis(1_500),
        "the produce answer waited {produced_after:?} behind the long poll"
    );
    let mut f = read_frame(&mut s).await.unwrap();
    assert_eq!(ResponseHeader::decode(&mut f, 1).unwrap().correlation_id, 2);
    assert!(started.elapsed() >= Duration::from_millis(2_900));
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_creation_can_be_turned_off() {
    use strom_broker::BrokerConfig;
    use strom_kafka::KafkaConfig;

    let dir = tempfile::tempdir().unwrap();
    let mut config = BrokerConfig::new(dir.path());
    config.auto_create_topics = false;
    let broker = TestBroker::start_with(config, KafkaConfig::default()).await;
    let mut s = TcpStream::connect(broker.addr()).await.unwrap();
    let md: MetadataResponse = call(
        &mut s,
        ApiKey::Metadata,
        12,
        &MetadataRequest::default()
            .with_allow_auto_topic_creation(true)
            .with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(name("absent"))),
            ])),
    )
    .await;
    assert_eq!(md.topics[0].error_code, 3, "UNKNOWN_TOPIC_OR_PARTITION");
    let r: ProduceResponse = call(
        &mut s,
        ApiKey::Produce,
        9,
        &produce_req("absent", 0, batch(1, 1)),
    )
    .await;
    assert_eq!(r.responses[0].partition_responses[0].error_code, 3);
    assert!(broker.broker().topics().is_empty());
    broker.stop().await;
}

/// The hand-framed Fetch response over a real socket: every version Strom advertises decodes
/// with `kafka-protocol` and carries exactly the produced batches; large record sets (written
/// past the connection's write buffer) and pipelined fetches arrive whole and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fetch_version_decodes_and_large_fetches_pipeline() {
    let (_dir, broker) = started_with_topic(2).await;
    let mut s = TcpStream::connect(broker.addr()).await.unwrap();
    let mut produced = [Vec::new(), Vec::new()];
    for (p, sizes) in [(0, [10usize, 3000, 1]), (1, [200_000, 7, 64])] {
        for size in sizes {
            let b = batch(3, size);
            let r: ProduceResponse =
                call(&mut s, ApiKey::Produce, 9, &produce_req("f", p, b.clone())).await;
            assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
            produced[p as usize].extend_from_slice(&b);
        }
    }
    let id = broker.broker().topic("f").unwrap().id();
    let (min, max) = strom_kafka::api::supported_versions(ApiKey::Fetch).unwrap();
    for v in min..=max {
        let mut req = fetch_req(if v >= 13 { "" } else { "f" }, &[(0, 0), (1, 0)], 0, 1);
        req.max_bytes = 10 << 20;
        if v >= 13 {
            req.topics[0].topic_id = id;
        }
        let r: FetchResponse = call(&mut s, ApiKey::Fetch, v, &req).await;
        if v >= 7 {
            assert_eq!((r.error_code, r.session_id), (0, 0), "v{v}");
        }
        let t = &r.responses[0];
        if v >= 13 {
            assert_eq!(t.topic_id, id, "v{v}");
        } else {
            assert_eq!(t.topic.0.as_str(), "f", "v{v}");
        }
        for (i, p) in t.partitions.iter().enumerate() {
            assert_eq!(p.partition_index, i as i32, "v{v}");
            assert_eq!(p.error_code, 0, "v{v}");
            assert_eq!((p.high_watermark, p.last_stable_offset), (9, 9), "v{v}");
            if v >= 5 {
                assert_eq!(p.log_start_offset, 0, "v{v}");
            }
            // Stored batches differ from the produced ones only in the fields before the magic
            // byte (base offset, leader epoch), which the broker patches.
            let records = p.records.as_ref().unwrap();
            assert_eq!(
                without_offsets(records),
                without_offsets(&produced[i]),
                "v{v} partition {i}"
            );
        }
    }

    // Pipelined: five fetches of partition 1 (about 600 kB each) written at once.
    let versions = [12i16, 11, 16, 4, 17];
    let mut all = Vec::new();
    for (i, &v) in (0..).zip(&versions) {
        let mut req = fetch_req(if v >= 13 { "" } else { "f" }, &[(1, 0)], 0, 1);
        req.max_bytes = 10 << 20;
        if v >= 13 {
            req.topics[0].topic_id = id;
        }
        all.extend_from_slice(&frame(ApiKey::Fetch, v, 500 + i, &req));
    }
    s.write_all(&all).await.unwrap();
    for (i, &v) in (0..).zip(&versions) {
        let mut f = read_frame(&mut s).await.unwrap();
        let header = ResponseHeader::decode(&mut f, FetchResponse::header_version(v)).unwrap();
        assert_eq!(header.correlation_id, 500 + i);
        let r = FetchResponse::decode(&mut f, v).unwrap();
        assert!(f.is_empty());
        let records = r.responses[0].partitions[0].records.as_ref().unwrap();
        assert_eq!(records.len(), produced[1].len());
    }
    broker.stop().await;
}

/// The batches of `records` from their magic byte on (what the broker does not patch).
fn without_offsets(records: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < records.len() {
        let len = i32::from_be_bytes(records[pos + 8..pos + 12].try_into().unwrap()) as usize;
        out.push(records[pos + 16..pos + 12 + len].to_vec());
        pos += 12 + len;
    }
    out
}
