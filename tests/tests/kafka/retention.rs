//! Retention correctness with librdkafka: KIP-937 timestamp bounds refuse a far-future record
//! with INVALID_TIMESTAMP, and a retention.ms lowered at runtime (AlterConfigs) deletes old
//! segments at the next retention tick, without a restart.

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminOptions, AlterConfig, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::consumer::Consumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::FutureRecord;
use rdkafka::util::Timeout;
use strom_broker::BrokerConfig;
use strom_kafka::KafkaConfig;
use strom_tests::TestBroker;

use super::client::{self, WAIT};

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn far_future_timestamps_are_refused_with_invalid_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let bootstrap = broker.bootstrap();
    client::create_topic(&bootstrap, "stamps", 1).await;
    let producer = client::producer(&bootstrap);
    let now = now_ms();
    // Within message.timestamp.after.max.ms (1 h by default): accepted.
    producer
        .send(
            FutureRecord::to("stamps")
                .payload("soon")
                .key("k")
                .timestamp(now + 30 * 60 * 1000),
            WAIT,
        )
        .await
        .expect("accepted");
    // A century ahead: refused, nothing stored.
    let err = producer
        .send(
            FutureRecord::to("stamps")
                .payload("future")
                .key("k")
                .timestamp(now + 100 * 365 * 24 * 3_600_000),
            WAIT,
        )
        .await
        .expect_err("refused");
    assert!(
        matches!(
            err.0,
            KafkaError::MessageProduction(RDKafkaErrorCode::InvalidTimestamp)
        ),
        "{err:?}"
    );
    assert_eq!(
        broker
            .broker()
            .partition("stamps", 0)
            .unwrap()
            .high_watermark(),
        1
    );
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_lowered_at_runtime_deletes_old_segments_at_the_next_tick() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = BrokerConfig::new(dir.path());
    config.retention_check_interval = Duration::from_millis(200);
    let broker = TestBroker::start_with(config, KafkaConfig::default()).await;
    let bootstrap = broker.bootstrap();
    let admin = client::admin(&bootstrap);
    let opts = AdminOptions::new().operation_timeout(Some(WAIT));
    let created = admin
        .create_topics(
            &[NewTopic::new("aging", 1, TopicReplication::Fixed(1)).set("segment.bytes", "1024")],
            &opts,
        )
        .await
        .unwrap();
    assert!(created[0].is_ok(), "{created:?}");
    let producer = client::producer(&bootstrap);
    for i in 0..40 {
        producer
            .send(
                FutureRecord::to("aging")
                    .payload(&format!("value-{i:04}-{}", "x".repeat(100)))
                    .key("k"),
                WAIT,
            )
            .await
            .expect("produced");
    }
    let partition = broker.broker().partition("aging", 0).unwrap();
    let segments = std::fs::read_dir(dir.path().join("aging-0"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "log"))
        })
        .count();
    assert!(segments > 3, "{segments} segments");
    // Default retention (7 days): ticks delete nothing.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(partition.log_start_offset(), 0);

    let altered = admin
        .alter_configs(
            &[AlterConfig::new(ResourceSpecifier::Topic("aging")).set("retention.ms", "1000")],
            &opts,
        )
        .await
        .unwrap();
    assert!(altered[0].is_ok(), "{altered:?}");
    // The records are more than a second old: the next ticks delete every segment.
    let deadline = Instant::now() + Duration::from_secs(20);
    while partition.log_start_offset() < 40 {
        assert!(Instant::now() < deadline, "retention never applied");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Clients see it: the low watermark moved.
    let consumer = client::consumer(&bootstrap);
    let (low, high) = tokio::task::spawn_blocking(move || {
        consumer.fetch_watermarks("aging", 0, Timeout::After(WAIT))
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!((low, high), (40, 40));
    broker.stop().await;
}
