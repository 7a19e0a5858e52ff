//! Cluster mode's background jobs end to end (issue 17, lifecycle): two `strom serve`
//! processes over one real PostgreSQL and moto, librdkafka clients, and `strom cluster status`.
//!
//! - a `cleanup.policy=compact` topic produced through one broker is compacted by whichever
//!   broker holds the compaction lease: a consumer through the other broker reads the latest
//!   value of every key, offsets growing, fewer records than were produced;
//! - a topic with a short `retention.ms` loses its old records (the low watermark moves);
//! - the broker holding the retention job is killed with `kill -9`: the other takes the job
//!   over (status shows it with a higher epoch) and retention goes on.

mod cluster_common;

use cluster_common::{Broker, ClusterServe};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use strom_cluster::testkit::{MotoServer, PostgresServer};

const BUCKET: &str = "strom-lifecycle-e2e";
/// Job leases lapse this long after their holder dies; jobs run every half of it.
const LEASE_TTL_MS: u64 = 2_000;
/// Bound of every wait in this test.
const STEP: Duration = Duration::from_secs(90);

/// Starts broker `n` of this test's cluster.
fn start(n: usize, pg: &PostgresServer, s3: &MotoServer, data: &Path) -> Broker {
    Broker::start(&ClusterServe {
        n,
        pg,
        s3,
        data,
        bucket: BUCKET,
        prefix: "e2e",
        lease_ttl_ms: LEASE_TTL_MS,
        flush_delay_ms: 20,
        log: "warn".to_owned(),
        extra: Vec::new(),
    })
}

/// `strom cluster status --format json`.
fn status(pg: &PostgresServer) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_strom"))
        .args(["cluster", "status", "--cluster-postgres", &pg.url()])
        .args(["--format", "json"])
        .env_remove("STROM_CONFIG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The last recorded run of job `name`: (holder, epoch, runs).
fn job(pg: &PostgresServer, name: &str) -> Option<(String, i64, i64)> {
    let status = status(pg);
    status["jobs"].as_array()?.iter().find_map(|j| {
        (j["name"] == name && j["ok"] == true).then(|| {
            (
                j["holder"].as_str().unwrap_or_default().to_owned(),
                j["epoch"].as_i64().unwrap_or(-1),
                j["runs"].as_i64().unwrap_or(-1),
            )
        })
    })
}

fn producer(bootstrap: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "0")
        .set("message.timeout.ms", "60000")
        .create()
        .unwrap()
}

async fn send(producer: &FutureProducer, topic: &str, key: &str, value: &str) {
    let record = FutureRecord::to(topic).partition(0).key(key).payload(value);
    match tokio::time::timeout(STEP, producer.send(record, Duration::from_secs(60))).await {
        Ok(Ok(_)) => {}
        other => panic!("{topic} {key}={value} not acknowledged: {other:?}"),
    }
}

/// Every record of partition 0 of `topic` from the beginning up to the high watermark, as
/// (offset, key, value), read through `bootstrap`.
fn read_all(bootstrap: &str, topic: &str) -> Vec<(i64, String, String)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "unused-no-commits")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let (_, high) = consumer
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&assignment).unwrap();
    let mut out: Vec<(i64, String, String)> = Vec::new();
    let started = Instant::now();
    while out.last().is_none_or(|r| r.0 + 1 < high) {
        assert!(
            started.elapsed() < STEP,
            "read {} records of {topic}",
            out.len()
        );
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let text =
                    |b: Option<&[u8]>| String::from_utf8_lossy(b.unwrap_or_default()).into_owned();
                if let Some(last) = out.last() {
                    assert!(
                        m.offset() > last.0,
                        "offsets grow: {} after {}",
                        m.offset(),
                        last.0
                    );
                }
                out.push((m.offset(), text(m.key()), text(m.payload())));
            }
            Some(Err(e)) => panic!("consume error: {e}"),
            None => {}
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_compact_expire_and_move_to_another_broker_when_their_holder_is_killed() {
    let (pg, s3) = tokio::task::spawn_blocking(|| {
        let pg = PostgresServer::start().expect("start postgres");
        let s3 = MotoServer::start().expect("start moto");
        s3.create_bucket(BUCKET).expect("create bucket");
        (pg, s3)
    })
    .await
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut brokers = {
        let (pg, s3, dir) = (&pg, &s3, data.path());
        std::thread::scope(|s| {
            let one = s.spawn(|| start(1, pg, s3, dir));
            let two = s.spawn(|| start(2, pg, s3, dir));
            vec![one.join().unwrap(), two.join().unwrap()]
        })
    };
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &brokers[0].kafka)
        .create()
        .unwrap();
    let compacted = NewTopic::new("compacted", 1, TopicReplication::Fixed(1))
        .set("cleanup.policy", "compact")
        .set("min.cleanable.dirty.ratio", "0.01");
    let expiring =
        NewTopic::new("expiring", 1, TopicReplication::Fixed(1)).set("retention.ms", "3000");
    for result in admin
        .create_topics([&compacted, &expiring], &AdminOptions::new())
        .await
        .unwrap()
    {
        result.unwrap();
    }

    // 10 rounds over 10 keys, one acknowledged record at a time (one batch each).
    let producer = producer(&brokers[0].kafka);
    let mut latest = BTreeMap::new();
    for round in 0..10 {
        for k in 0..10 {
            let (key, value) = (format!("k{k}"), format!("v{round}-{k}"));
            send(&producer, "compacted", &key, &value).await;
            latest.insert(key, value);
        }
    }
    for i in 0..5 {
        send(&producer, "expiring", "x", &format!("old{i}")).await;
    }

    // Compaction: read through the other broker until it shows; every key's latest value
    // is there (the last one, never cleaned, is k9's), and fewer records than the 100.
    let started = Instant::now();
    let compacted = loop {
        let got = read_all(&brokers[1].kafka, "compacted");
        let values: BTreeMap<String, String> =
            got.iter().map(|(_, k, v)| (k.clone(), v.clone())).collect();
        assert_eq!(values, latest, "latest value of every key");
        if got.len() <= 20 {
            break got;
        }
        assert!(
            started.elapsed() < STEP,
            "not compacted: {} records",
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(compacted.last().map(|r| r.0), Some(99));

    // Retention: the old records of "expiring" go (the low watermark reaches the end).
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers[1].kafka)
        .create()
        .unwrap();
    let low_reaches = |consumer: &BaseConsumer, target: i64| {
        let started = Instant::now();
        loop {
            let (low, _) = consumer
                .fetch_watermarks("expiring", 0, Duration::from_secs(10))
                .unwrap();
            if low >= target {
                return;
            }
            assert!(
                started.elapsed() < STEP,
                "log start {low}, waiting for {target}"
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    };
    low_reaches(&consumer, 5);

    // Kill -9 the broker running retention; the other takes it over.
    let (holder, epoch, _) = job(&pg, "retention").expect("retention ran");
    let victim = brokers
        .iter()
        .position(|b| holder == format!("broker-{}", b.node_id))
        .expect("holder is one of ours");
    brokers[victim].kill();
    let survivor = &brokers[1 - victim];
    for i in 0..3 {
        send(&producer_for(survivor), "expiring", "x", &format!("new{i}")).await;
    }
    let started = Instant::now();
    loop {
        if let Some((h, e, _)) = job(&pg, "retention")
            && h == format!("broker-{}", survivor.node_id)
        {
            assert!(e > epoch, "new epoch {e} after {epoch}");
            break;
        }
        assert!(started.elapsed() < STEP, "retention not taken over");
        std::thread::sleep(Duration::from_millis(300));
    }
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &survivor.kafka)
        .create()
        .unwrap();
    low_reaches(&consumer, 8);
    drop(brokers);
}

fn producer_for(broker: &Broker) -> FutureProducer {
    producer(&broker.kafka)
}
