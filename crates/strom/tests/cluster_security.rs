//! Security across brokers in cluster mode (issue 19), two `strom serve` over the harness's
//! PostgreSQL and moto, driven by librdkafka and the `strom` CLI:
//!
//! - a client quota set through broker 1 (`strom quota set`) is described through broker 2,
//!   and both brokers enforce it, each on its own (quotas are per broker, as in Kafka): a
//!   librdkafka producer writing to a partition led by each broker is throttled by both, its
//!   statistics report the throttle time and the bytes it moves stay near the allowance;
//! - brokers with two listeners (an internal PLAINTEXT one and an external SASL_PLAINTEXT one):
//!   a client on either gets Metadata listing both brokers at the addresses of the listener it
//!   came in on, and produces and consumes across both brokers through it.

mod cluster_common;

use cluster_common::{Broker, ClusterServe};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{
    BaseRecord, DeliveryResult, FutureProducer, FutureRecord, ProducerContext, ThreadedProducer,
};
use rdkafka::{ClientContext, Message, Offset, Statistics, TopicPartitionList};
use strom_cluster::testkit::{MotoServer, PostgresServer};

const BUCKET: &str = "strom-cluster-security";
/// Bound of every wait in this test.
const STEP: Duration = Duration::from_secs(90);

/// Starts PostgreSQL and moto (blocking work, off the test's runtime).
async fn backends() -> (PostgresServer, MotoServer) {
    tokio::task::spawn_blocking(|| {
        let pg = PostgresServer::start().expect("start postgres");
        let s3 = MotoServer::start().expect("start moto");
        s3.create_bucket(BUCKET).expect("create bucket");
        (pg, s3)
    })
    .await
    .unwrap()
}

/// Starts brokers 1 and 2 with `extra` flags, concurrently.
fn start_two(pg: &PostgresServer, s3: &MotoServer, data: &Path, extra: &[&str]) -> [Broker; 2] {
    let start = |n: usize| {
        Broker::start(&ClusterServe {
            n,
            pg,
            s3,
            data,
            bucket: BUCKET,
            prefix: "security",
            lease_ttl_ms: 2_000,
            flush_delay_ms: 20,
            log: "warn".to_owned(),
            extra: extra.iter().map(|&a| a.to_owned()).collect(),
        })
    };
    std::thread::scope(|s| {
        let one = s.spawn(|| start(1));
        let two = s.spawn(|| start(2));
        [one.join().unwrap(), two.join().unwrap()]
    })
}

/// Runs `strom args --bootstrap bootstrap` (stdin closed), bounded.
fn strom(bootstrap: &str, args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_strom"))
        .args(args)
        .args(["--bootstrap", bootstrap])
        .env_remove("STROM_BOOTSTRAP")
        .env_remove("STROM_COMMAND_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > STEP {
            let _ = child.kill();
            panic!("strom {args:?} did not finish");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// [`strom`] that must succeed; its stdout.
fn strom_ok(bootstrap: &str, args: &[&str]) -> String {
    let out = strom(bootstrap, args);
    assert!(out.status.success(), "strom {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// Whether a printed table has a row with exactly these cells.
fn has_row(table: &str, cells: &[&str]) -> bool {
    table
        .lines()
        .any(|l| l.split_whitespace().collect::<Vec<_>>() == cells)
}

/// Creates `topic` with `partitions` through `admin`.
async fn create_topic(admin: &AdminClient<DefaultClientContext>, topic: &str, partitions: i32) {
    for result in admin
        .create_topics(
            [&NewTopic::new(
                topic,
                partitions,
                TopicReplication::Fixed(1),
            )],
            &AdminOptions::new(),
        )
        .await
        .unwrap()
    {
        result.unwrap();
    }
}

/// For each broker id, one partition of `topic` it leads, as `config`'s client sees
/// Metadata (waits, bounded, until every broker leads one).
fn partition_led_by(config: &ClientConfig, topic: &str, ids: &[i32]) -> Vec<i32> {
    let consumer: BaseConsumer = config.create().unwrap();
    let started = Instant::now();
    loop {
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .unwrap();
        let partitions = metadata
            .topics()
            .iter()
            .flat_map(|t| t.partitions())
            .map(|p| (p.leader(), p.id()))
            .collect::<Vec<_>>();
        let led: Option<Vec<i32>> = ids
            .iter()
            .map(|id| partitions.iter().find(|(l, _)| l == id).map(|(_, p)| *p))
            .collect();
        if let Some(led) = led {
            return led;
        }
        assert!(
            started.elapsed() < STEP,
            "{topic}: leaders {partitions:?}, want one partition on each of {ids:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Collects what librdkafka reports: delivered bytes and the largest throttle time per broker.
#[derive(Default, Clone)]
struct Observed {
    delivered: Arc<AtomicU64>,
    /// Largest throttle time each broker (by node id, index 0 and 1 for ids given at
    /// creation) reported.
    throttle_max_ms: Arc<[AtomicI64; 2]>,
    ids: [i32; 2],
}

impl ClientContext for Observed {
    fn stats(&self, statistics: Statistics) {
        for b in statistics.brokers.values() {
            let Some(slot) = self.ids.iter().position(|&id| id == b.nodeid) else {
                continue;
            };
            if let Some(t) = &b.throttle {
                self.throttle_max_ms[slot].fetch_max(t.max, Ordering::Relaxed);
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

/// The sum of `metric`'s samples on `metrics` whose labels contain every one of `labels`.
fn metric_sum(metrics: &str, metric: &str, labels: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quota_set_through_one_broker_is_described_and_enforced_by_every_broker() {
    let (pg, s3) = backends().await;
    let data = tempfile::tempdir().unwrap();
    let brokers = start_two(&pg, &s3, data.path(), &[]);
    let (one, two) = (&brokers[0], &brokers[1]);
    const CLIENT: &str = "cluster-throttled";
    const RATE: f64 = 20_000.0;

    strom_ok(
        &one.kafka,
        &[
            "quota",
            "set",
            "--client-id",
            CLIENT,
            &format!("producer_byte_rate={RATE}"),
        ],
    );
    // Through broker 2 (which learns it from the shared metadata log, tailed every 250 ms).
    let started = Instant::now();
    loop {
        let described = strom_ok(&two.kafka, &["quota", "describe", "--client-id", CLIENT]);
        if has_row(&described, &[CLIENT, "producer_byte_rate", "20000"]) {
            break;
        }
        assert!(started.elapsed() < STEP, "broker 2 describes: {described}");
        std::thread::sleep(Duration::from_millis(200));
    }

    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &two.kafka)
        .create()
        .unwrap();
    create_topic(&admin, "quota-cluster", 8).await;
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &two.kafka)
        .set("client.id", CLIENT)
        .set("linger.ms", "5")
        .set("batch.size", "16384")
        .set("queue.buffering.max.messages", "2000")
        .set("statistics.interval.ms", "500");
    let ids = [one.node_id, two.node_id];
    let partitions = partition_led_by(&config, "quota-cluster", &ids);
    let observed = Observed {
        ids,
        ..Observed::default()
    };
    let producer: ThreadedProducer<Observed> =
        config.create_with_context(observed.clone()).unwrap();
    let payload = vec![b'q'; 1000];
    let run = Duration::from_secs(8);
    let delivered = tokio::task::spawn_blocking({
        let observed = observed.clone();
        move || {
            let started = Instant::now();
            let mut i = 0usize;
            while started.elapsed() < run {
                let partition = partitions[i % partitions.len()];
                let record = BaseRecord::<(), _>::to("quota-cluster")
                    .partition(partition)
                    .payload(&payload);
                if producer.send(record).is_ok() {
                    i += 1;
                } else {
                    // Queue full: the brokers are holding us back.
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            let delivered = observed.delivered.load(Ordering::Relaxed);
            // Statistics come every 500 ms; let one more arrive.
            std::thread::sleep(Duration::from_millis(1500));
            drop(producer);
            delivered
        }
    })
    .await
    .unwrap();

    // Each broker lets the client reach the rate on its own: up to 10 s worth passes before
    // the first throttle (Kafka's 11 samples of 1 s), then RATE a second. Loosely: twice that.
    let per_broker = RATE * (run.as_secs_f64() + 10.0);
    let limit = 2.0 * 2.0 * per_broker;
    assert!(
        (delivered as f64) < limit,
        "{delivered} bytes in {run:?} against {RATE} B/s per broker (limit {limit})"
    );
    assert!(delivered as f64 > RATE, "no progress: {delivered}");
    for (slot, broker) in brokers.iter().enumerate() {
        let throttle = observed.throttle_max_ms[slot].load(Ordering::Relaxed);
        assert!(
            throttle > 0,
            "librdkafka saw no throttle time from broker {}",
            broker.node_id
        );
        let metrics = broker.metrics();
        let client_label = format!("client_id=\"{CLIENT}\"");
        let throttled = metric_sum(
            &metrics,
            "strom_kafka_quota_throttled_responses_total",
            &["quota_type=\"Produce\"", &client_label],
        );
        assert!(
            throttled > 0.0,
            "broker {} throttled no produce response: {metrics}",
            broker.node_id
        );
    }
    drop(brokers);
}

/// Listeners of the two-listener brokers.
const LISTENERS: &[&str] = &[
    "--listeners",
    "INTERNAL://127.0.0.1:0,EXTERNAL://127.0.0.1:0",
    "--listener-security-protocol-map",
    "INTERNAL:PLAINTEXT,EXTERNAL:SASL_PLAINTEXT",
    "--sasl-enabled-mechanisms",
    "PLAIN",
];

/// A client config for `listener` of `broker`: the external one authenticates as alice.
fn listener_config(broker: &Broker, listener: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", broker.listener_addr(listener))
        .set("topic.metadata.refresh.interval.ms", "500")
        .set("message.timeout.ms", "60000");
    if listener == "EXTERNAL" {
        config
            .set("security.protocol", "SASL_PLAINTEXT")
            .set("sasl.mechanism", "PLAIN")
            .set("sasl.username", "alice")
            .set("sasl.password", "alice-secret");
    }
    config
}

/// The brokers Metadata lists to a client of `config`, as `host:port`, waiting (bounded) until
/// it lists `want` brokers.
fn listed_brokers(config: &ClientConfig, want: usize) -> BTreeSet<String> {
    let consumer: BaseConsumer = config.create().unwrap();
    let started = Instant::now();
    loop {
        let metadata = consumer
            .fetch_metadata(None, Duration::from_secs(10))
            .unwrap();
        let listed: BTreeSet<String> = metadata
            .brokers()
            .iter()
            .map(|b| format!("{}:{}", b.host(), b.port()))
            .collect();
        if listed.len() >= want {
            return listed;
        }
        assert!(started.elapsed() < STEP, "Metadata lists {listed:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Produces `count` records to every partition in `partitions` of `topic` through `config`
/// (value `<tag>-<partition>-<i>`), each acknowledged, then reads each partition back through
/// `config` from the start and checks exactly those values are there.
async fn round_trip(config: &ClientConfig, topic: &str, partitions: &[i32], tag: &str) {
    const COUNT: usize = 20;
    let producer: FutureProducer = config.create().unwrap();
    let mut deliveries = Vec::new();
    for &p in partitions {
        for i in 0..COUNT {
            let value = format!("{tag}-{p}-{i}");
            match producer.send_result(
                FutureRecord::<(), _>::to(topic)
                    .partition(p)
                    .payload(&value),
            ) {
                Ok(d) => deliveries.push(d),
                Err((e, _)) => panic!("{tag}: not enqueued: {e}"),
            }
        }
    }
    for d in deliveries {
        match tokio::time::timeout(STEP, d).await {
            Ok(Ok(Ok(_))) => {}
            other => panic!("{tag}: not acknowledged: {other:?}"),
        }
    }
    let config = config.clone();
    let (topic, partitions, tag) = (topic.to_owned(), partitions.to_vec(), tag.to_owned());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = config
            .clone()
            .set("group.id", format!("reader-{tag}"))
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let mut assignment = TopicPartitionList::new();
        for &p in &partitions {
            assignment
                .add_partition_offset(&topic, p, Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&assignment).unwrap();
        let mut want = BTreeSet::new();
        for p in &partitions {
            for i in 0..COUNT {
                want.insert(format!("{tag}-{p}-{i}"));
            }
        }
        let mut got = BTreeSet::new();
        let started = Instant::now();
        while !want.is_subset(&got) {
            assert!(
                started.elapsed() < STEP,
                "{tag}: read {} of {}",
                got.len(),
                want.len()
            );
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => {
                    let value = String::from_utf8_lossy(m.payload().unwrap_or_default());
                    if value.starts_with(&format!("{tag}-")) {
                        got.insert(value.into_owned());
                    }
                }
                Some(Err(e)) => panic!("{tag}: consume error: {e}"),
                None => {}
            }
        }
        assert_eq!(got, want, "{tag}: exactly what was produced");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_listener_advertises_its_own_addresses_of_every_broker() {
    let (pg, s3) = backends().await;
    let data = tempfile::tempdir().unwrap();
    let brokers = start_two(&pg, &s3, data.path(), LISTENERS);
    let (one, two) = (&brokers[0], &brokers[1]);
    // alice's credential, set through broker 1's internal listener, logs in on broker 2's
    // external one too (SCRAM credentials are shared metadata; PLAIN checks them).
    let set = Command::new(env!("CARGO_BIN_EXE_strom"))
        .args([
            "user",
            "scram",
            "set",
            "alice",
            "--password",
            "alice-secret",
        ])
        .args(["--bootstrap", &one.listener_addr("INTERNAL")])
        .env_remove("STROM_BOOTSTRAP")
        .env_remove("STROM_COMMAND_CONFIG")
        .output()
        .unwrap();
    assert!(set.status.success(), "{set:?}");
    let started = Instant::now();
    while !strom_ok(
        &two.listener_addr("INTERNAL"),
        &["user", "scram", "list", "alice"],
    )
    .contains("SCRAM-SHA-256")
    {
        assert!(started.elapsed() < STEP, "broker 2 never learnt alice");
        std::thread::sleep(Duration::from_millis(200));
    }

    let ids = [one.node_id, two.node_id];
    let admin: AdminClient<DefaultClientContext> =
        listener_config(one, "INTERNAL").create().unwrap();
    create_topic(&admin, "listeners", 8).await;
    for listener in ["INTERNAL", "EXTERNAL"] {
        let want: BTreeSet<String> = brokers.iter().map(|b| b.listener_addr(listener)).collect();
        // A client of each broker on this listener sees both brokers at this listener's
        // addresses (never the other listener's).
        for (entry, broker) in brokers.iter().enumerate() {
            let config = listener_config(broker, listener);
            let listed = listed_brokers(&config, 2);
            assert_eq!(
                listed, want,
                "{listener} client of broker {}: Metadata lists {listed:?}",
                broker.node_id
            );
            // Produce and consume across both brokers through this listener (librdkafka
            // connects to each partition's leader at the address Metadata gave it).
            let partitions = partition_led_by(&config, "listeners", &ids);
            round_trip(
                &config,
                "listeners",
                &partitions,
                &format!("{listener}-{entry}"),
            )
            .await;
        }
    }
    drop(brokers);
}
