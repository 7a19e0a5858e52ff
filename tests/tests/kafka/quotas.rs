//! Client quotas (issue 19): DescribeClientQuotas/AlterClientQuotas over a real socket through
//! the protocol client the CLI uses (defaults, validate_only, Kafka's refusals, ACLs, a
//! restart), and enforcement seen by librdkafka: a producer and a consumer under byte-rate
//! quotas stay near their rates and librdkafka reports the broker's throttle times.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kafka_protocol::error::ResponseError;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Statistics};
use strom_broker::BrokerConfig;
use strom_broker::acl::{AclBinding, AclOperation, AclPermission, PatternType, ResourceType};
use strom_broker::quota::{CLIENT_ID, EntityName, QuotaEntity, QuotaMatch, USER};
use strom_kafka::KafkaConfig;
use strom_kafka::client::quota::QuotaEdit;
use strom_kafka::client::{Client, ClientError};
use strom_tests::TestBroker;

const BOUND: Duration = Duration::from_secs(60);

fn code(e: &ClientError) -> ResponseError {
    match e {
        ClientError::Kafka { error, .. } => *error,
        other => panic!("not a Kafka error: {other}"),
    }
}

fn entity(user: Option<EntityName>, client_id: Option<EntityName>) -> QuotaEntity {
    QuotaEntity { user, client_id }
}

fn named(n: &str) -> Option<EntityName> {
    Some(EntityName::Named(n.to_owned()))
}

fn set(key: &str, value: f64) -> QuotaEdit {
    QuotaEdit {
        key: key.to_owned(),
        value: Some(value),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_and_alter_round_trip_with_defaults_validate_only_and_a_restart() {
    tokio::time::timeout(BOUND, async {
        let dir = tempfile::tempdir().unwrap();
        let config = BrokerConfig::new(dir.path());
        let broker = TestBroker::start(dir.path()).await;
        let mut c = Client::connect(&broker.bootstrap()).await.unwrap();
        let alice = entity(named("alice"), None);
        let defaults = entity(Some(EntityName::Default), Some(EntityName::Default));
        let app = entity(None, named("app"));
        c.alter_client_quotas(&alice, &[set("producer_byte_rate", 1024.0)], false)
            .await
            .unwrap();
        c.alter_client_quotas(&defaults, &[set("request_percentage", 12.5)], false)
            .await
            .unwrap();
        c.alter_client_quotas(&app, &[set("consumer_byte_rate", 4096.0)], true)
            .await
            .unwrap();
        for (edit, what) in [
            (set("nope", 1.0), "unknown key"),
            (set("consumer_byte_rate", 0.5), "fractional byte rate"),
            (set("producer_byte_rate", 0.0), "zero"),
        ] {
            let e = c
                .alter_client_quotas(&app, &[edit], false)
                .await
                .unwrap_err();
            assert_eq!(code(&e), ResponseError::InvalidRequest, "{what}");
        }
        let all = c.describe_client_quotas(&[], false).await.unwrap();
        assert_eq!(all.len(), 2, "validate_only stored nothing: {all:?}");
        let by_user = c
            .describe_client_quotas(&[(USER, QuotaMatch::Exact("alice".into()))], false)
            .await
            .unwrap();
        assert_eq!(
            by_user,
            vec![(
                alice.clone(),
                [("producer_byte_rate".to_owned(), 1024.0)].into()
            )]
        );
        let default_user = c
            .describe_client_quotas(&[(USER, QuotaMatch::Default)], false)
            .await
            .unwrap();
        assert_eq!(default_user[0].0, defaults);
        // Strict: an entity with a client id too is not a user-only entity.
        let strict = c
            .describe_client_quotas(&[(USER, QuotaMatch::Specified)], true)
            .await
            .unwrap();
        assert_eq!(strict.len(), 1);
        assert_eq!(strict[0].0, alice);
        let any_client = c
            .describe_client_quotas(&[(CLIENT_ID, QuotaMatch::Specified)], false)
            .await
            .unwrap();
        assert_eq!(any_client.len(), 1);
        let e = c
            .describe_client_quotas(&[("group", QuotaMatch::Specified)], false)
            .await
            .unwrap_err();
        assert_eq!(code(&e), ResponseError::UnsupportedVersion);
        let e = c
            .describe_client_quotas(
                &[(USER, QuotaMatch::Default), (USER, QuotaMatch::Specified)],
                false,
            )
            .await
            .unwrap_err();
        assert_eq!(code(&e), ResponseError::InvalidRequest);
        drop(c);

        let broker = broker.restart(config).await;
        let mut c = Client::connect(&broker.bootstrap()).await.unwrap();
        let all = c.describe_client_quotas(&[], false).await.unwrap();
        assert_eq!(all.len(), 2, "{all:?}");
        assert!(all.contains(&(
            defaults.clone(),
            [("request_percentage".to_owned(), 12.5)].into()
        )));
        c.alter_client_quotas(
            &alice,
            &[QuotaEdit {
                key: "producer_byte_rate".into(),
                value: None,
            }],
            false,
        )
        .await
        .unwrap();
        let all = c.describe_client_quotas(&[], false).await.unwrap();
        assert_eq!(all.len(), 1, "{all:?}");
        drop(c);
        broker.stop().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quota_apis_need_cluster_describe_configs_and_alter_configs() {
    tokio::time::timeout(BOUND, async {
        let dir = tempfile::tempdir().unwrap();
        let mut config = BrokerConfig::new(dir.path());
        config.authorizer.enabled = true;
        let broker = TestBroker::start_with(config, KafkaConfig::default()).await;
        let mut c = Client::connect(&broker.bootstrap()).await.unwrap();
        let e = c.describe_client_quotas(&[], false).await.unwrap_err();
        assert_eq!(code(&e), ResponseError::ClusterAuthorizationFailed);
        let app = entity(None, named("app"));
        let e = c
            .alter_client_quotas(&app, &[set("consumer_byte_rate", 10.0)], false)
            .await
            .unwrap_err();
        assert_eq!(code(&e), ResponseError::ClusterAuthorizationFailed);
        let grant = |operation| AclBinding {
            resource_type: ResourceType::Cluster,
            resource_name: "kafka-cluster".to_owned(),
            pattern_type: PatternType::Literal,
            principal: "User:ANONYMOUS".to_owned(),
            host: "*".to_owned(),
            operation,
            permission: AclPermission::Allow,
        };
        let b = Arc::clone(broker.broker());
        tokio::task::spawn_blocking(move || {
            b.create_acls_blocking(vec![grant(AclOperation::DescribeConfigs)])
        })
        .await
        .unwrap()
        .unwrap();
        assert!(
            c.describe_client_quotas(&[], false)
                .await
                .unwrap()
                .is_empty()
        );
        let e = c
            .alter_client_quotas(&app, &[set("consumer_byte_rate", 10.0)], false)
            .await
            .unwrap_err();
        assert_eq!(code(&e), ResponseError::ClusterAuthorizationFailed);
        let b = Arc::clone(broker.broker());
        tokio::task::spawn_blocking(move || {
            b.create_acls_blocking(vec![grant(AclOperation::AlterConfigs)])
        })
        .await
        .unwrap()
        .unwrap();
        c.alter_client_quotas(&app, &[set("consumer_byte_rate", 10.0)], false)
            .await
            .unwrap();
        drop(c);
        broker.stop().await;
    })
    .await
    .unwrap();
}

/// Collects what librdkafka reports: delivered bytes and the largest broker throttle time.
#[derive(Default, Clone)]
struct Observed {
    delivered: Arc<AtomicU64>,
    throttle_max_ms: Arc<AtomicI64>,
}

impl ClientContext for Observed {
    fn stats(&self, statistics: Statistics) {
        for b in statistics.brokers.values() {
            if let Some(t) = &b.throttle {
                self.throttle_max_ms.fetch_max(t.max, Ordering::Relaxed);
            }
        }
    }
}

impl ProducerContext for Observed {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Ok(m) = result {
            let n = m.payload().map_or(0, <[u8]>::len);
            self.delivered.fetch_add(n as u64, Ordering::Relaxed);
        }
    }
}

impl ConsumerContext for Observed {}

async fn set_quota(broker: &TestBroker, client_id: &str, key: &str, value: f64) {
    let mut c = Client::connect(&broker.bootstrap()).await.unwrap();
    c.alter_client_quotas(&entity(None, named(client_id)), &[set(key, value)], false)
        .await
        .unwrap();
}

/// Bytes a client may move in `secs` under `rate` with Kafka's measurement: the rate is taken
/// over at least 10 s, so up to 10 s worth passes before the first throttle.
fn allowance(rate: f64, secs: f64) -> f64 {
    rate * (secs + 10.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_over_its_byte_rate_is_throttled() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    const RATE: f64 = 20_000.0;
    set_quota(&broker, "throttled-producer", "producer_byte_rate", RATE).await;
    let observed = Observed::default();
    let producer: ThreadedProducer<Observed> = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("client.id", "throttled-producer")
        .set("linger.ms", "5")
        .set("batch.size", "16384")
        .set("queue.buffering.max.messages", "2000")
        .set("statistics.interval.ms", "500")
        .create_with_context(observed.clone())
        .unwrap();
    let payload = vec![b'q'; 1000];
    let run = Duration::from_secs(8);
    let started = Instant::now();
    let delivered = tokio::task::spawn_blocking({
        let observed = observed.clone();
        move || {
            while started.elapsed() < run {
                if producer
                    .send(BaseRecord::<(), _>::to("quota-produce").payload(&payload))
                    .is_err()
                {
                    // Queue full: the broker is holding us back.
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            let delivered = observed.delivered.load(Ordering::Relaxed);
            // Stats are emitted every 500 ms; let one more arrive.
            std::thread::sleep(Duration::from_millis(1500));
            drop(producer);
            delivered
        }
    })
    .await
    .unwrap();
    let limit = 2.0 * allowance(RATE, run.as_secs_f64());
    assert!(
        (delivered as f64) < limit,
        "{delivered} bytes in {run:?} against {RATE} B/s (limit {limit})"
    );
    assert!(
        delivered as f64 > RATE,
        "the producer still makes progress: {delivered}"
    );
    let throttle = observed.throttle_max_ms.load(Ordering::Relaxed);
    assert!(throttle > 0, "librdkafka saw no throttle time");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_over_its_byte_rate_is_throttled() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    // 3 MB to read, written without a quota, in batches far below the consumer's 10 s
    // allowance (a batch larger than that could never be fetched under the quota: Kafka
    // returns the first batch whole and throttles a response beyond the allowance).
    let loader: ThreadedProducer<Observed> = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("linger.ms", "5")
        .set("batch.size", "16384")
        .create_with_context(Observed::default())
        .unwrap();
    let payload = vec![b'f'; 1000];
    for _ in 0..3000 {
        while loader
            .send(BaseRecord::<(), _>::to("quota-fetch").payload(&payload))
            .is_err()
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let flushed = tokio::task::spawn_blocking(move || {
        use rdkafka::producer::Producer;
        loader.flush(Duration::from_secs(30))
    })
    .await
    .unwrap();
    assert!(flushed.is_ok());

    const RATE: f64 = 50_000.0;
    set_quota(&broker, "throttled-consumer", "consumer_byte_rate", RATE).await;
    let observed = Observed::default();
    let consumer: BaseConsumer<Observed> = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("client.id", "throttled-consumer")
        .set("group.id", "quota-readers")
        .set("auto.offset.reset", "earliest")
        .set("statistics.interval.ms", "500")
        .create_with_context(observed.clone())
        .unwrap();
    consumer.subscribe(&["quota-fetch"]).unwrap();
    let run = Duration::from_secs(8);
    let (consumed, throttle) = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let mut consumed = 0u64;
        // Measured from the first record (joining the group is not part of the rate), which
        // must come within 30 s.
        let mut first: Option<Instant> = None;
        loop {
            match first {
                Some(t) if t.elapsed() >= run => break,
                None if started.elapsed() > Duration::from_secs(30) => break,
                _ => {}
            }
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                first.get_or_insert_with(Instant::now);
                consumed += m.payload().map_or(0, <[u8]>::len) as u64;
            }
        }
        std::thread::sleep(Duration::from_millis(1500));
        let _ = consumer.poll(Duration::from_millis(100));
        (consumed, observed.throttle_max_ms.load(Ordering::Relaxed))
    })
    .await
    .unwrap();
    // One Fetch may read up to 10 s worth (Kafka caps it there), beyond the allowance.
    let limit = 1.5 * (allowance(RATE, run.as_secs_f64()) + 10.0 * RATE);
    assert!(consumed > 0, "nothing consumed");
    assert!(
        (consumed as f64) < limit,
        "{consumed} bytes in {run:?} against {RATE} B/s (limit {limit})"
    );
    assert!(consumed < 3_000_000, "everything was read: not throttled");
    assert!(throttle > 0, "librdkafka saw no throttle time");
    broker.stop().await;
}

/// KIP-124/KIP-219: a client over its `request_percentage` is told so in the responses'
/// `throttle_time_ms`, not only muted. With no byte-rate quota set, librdkafka sees a throttle
/// time only if the request-time throttle is written into the responses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_its_request_percentage_sees_the_throttle_in_responses() {
    tokio::time::timeout(BOUND, async {
        let dir = tempfile::tempdir().unwrap();
        let broker = TestBroker::start(dir.path()).await;
        // 0.01 % of a second: 1 ms of handler time per 10 s window, which a few dozen
        // Produce requests exceed.
        set_quota(&broker, "busy-client", "request_percentage", 0.01).await;
        let observed = Observed::default();
        let producer: ThreadedProducer<Observed> = ClientConfig::new()
            .set("bootstrap.servers", broker.bootstrap())
            .set("client.id", "busy-client")
            .set("linger.ms", "0")
            .set("statistics.interval.ms", "200")
            .create_with_context(observed.clone())
            .unwrap();
        let (delivered, throttle) = tokio::task::spawn_blocking({
            let observed = observed.clone();
            move || {
                let started = Instant::now();
                // One record at a time, each its own request, until librdkafka reports a
                // throttle time (or 20 s passed).
                while started.elapsed() < Duration::from_secs(20)
                    && observed.throttle_max_ms.load(Ordering::Relaxed) == 0
                {
                    let sent =
                        producer.send(BaseRecord::<(), _>::to("request-quota").payload(&b"r"[..]));
                    if sent.is_err() {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                    use rdkafka::producer::Producer;
                    let _ = producer.flush(Duration::from_secs(5));
                }
                // Stats come every 200 ms; let one more arrive.
                std::thread::sleep(Duration::from_millis(600));
                drop(producer);
                (
                    observed.delivered.load(Ordering::Relaxed),
                    observed.throttle_max_ms.load(Ordering::Relaxed),
                )
            }
        })
        .await
        .unwrap();
        assert!(delivered > 0, "nothing was delivered");
        assert!(
            throttle > 0,
            "librdkafka saw no throttle time after {delivered} records"
        );
        // A request-time throttle is at most one quota window (1 s).
        assert!(throttle <= 1000, "throttle {throttle} ms");
        broker.stop().await;
    })
    .await
    .unwrap();
}
