//! Partial network partitions end to end: two `strom serve` brokers over the harness's
//! PostgreSQL and moto, broker 1 reaching both through TCP proxies the test cuts
//! (`strom_cluster::testkit::TcpProxy`), broker 2 directly; an idempotent librdkafka
//! producer (`acks=all`) bootstrapped on broker 2 writes one record per partition per phase.
//!
//! - object store cut from broker 1 (PostgreSQL reachable, so it stays in Metadata): records
//!   of the partitions it leads are not acknowledged while the cut lasts, those of broker 2's
//!   partitions are; once the path is back, every one is acknowledged;
//! - PostgreSQL cut from broker 1: its flushes fail retriably and its lease lapses, so broker
//!   2 drops it from Metadata and broker 1 leaves itself out of its own (its registration is
//!   not current): the producer moves every partition to broker 2 and all are acknowledged
//!   while the cut lasts;
//! - in the end every partition read through broker 2 holds each record exactly once, in
//!   producer order, and nothing else.

mod cluster_common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use cluster_common::{Broker, ClusterServe};
use rdkafka::Message;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use strom_cluster::testkit::{MotoServer, PostgresServer, TcpProxy};
use tokio::task::JoinHandle;

const BUCKET: &str = "strom-partitions-e2e";
const TOPIC: &str = "cut";
const PARTITIONS: i32 = 8;
/// A broker leaves Metadata this long after its last heartbeat.
const LEASE_TTL_MS: u64 = 2_000;
/// Bound of every wait in this test (a flush cut from the object store ends after its 60 s
/// stage bound at worst).
const STEP: Duration = Duration::from_secs(120);

fn serve<'a>(
    n: usize,
    pg: &'a PostgresServer,
    s3: &'a MotoServer,
    data: &'a Path,
) -> ClusterServe<'a> {
    ClusterServe {
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
    }
}

/// Partition → leader node id, as broker `bootstrap` reports it.
fn leaders(bootstrap: &str) -> BTreeMap<i32, i32> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let md = consumer
        .fetch_metadata(Some(TOPIC), Duration::from_secs(10))
        .unwrap();
    md.topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| (p.id(), p.leader())))
        .collect()
}

/// Sends one record (`{phase}-{p}`) to every partition; each delivery is awaited on its own
/// task (Ok when acknowledged).
fn send_all(producer: &FutureProducer, phase: &str) -> BTreeMap<i32, JoinHandle<bool>> {
    (0..PARTITIONS)
        .map(|p| {
            let value = format!("{phase}-{p}");
            let delivery = producer
                .send_result(
                    FutureRecord::<(), _>::to(TOPIC)
                        .partition(p)
                        .payload(&value),
                )
                .unwrap_or_else(|(e, _)| panic!("{value} not enqueued: {e}"));
            let handle = tokio::spawn(async move {
                matches!(tokio::time::timeout(STEP, delivery).await, Ok(Ok(Ok(_))))
            });
            (p, handle)
        })
        .collect()
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < STEP, "{what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_cut_off_from_one_engine_acknowledges_nothing_while_the_other_serves() {
    let (pg, s3) = tokio::task::spawn_blocking(|| {
        let pg = PostgresServer::start().expect("start postgres");
        let s3 = MotoServer::start().expect("start moto");
        s3.create_bucket(BUCKET).expect("create bucket");
        (pg, s3)
    })
    .await
    .unwrap();
    let pg_proxy = TcpProxy::start(SocketAddr::from(([127, 0, 0, 1], pg.port()))).unwrap();
    let s3_proxy =
        TcpProxy::start(s3.endpoint().trim_start_matches("http://").parse().unwrap()).unwrap();
    let data = tempfile::tempdir().unwrap();
    let (one, two) = {
        let (pg, s3, dir) = (&pg, &s3, data.path());
        let pg_url = format!(
            "postgres://postgres@127.0.0.1:{}/postgres?connect_timeout=1",
            pg_proxy.port()
        );
        let s3_url = format!("http://{}", s3_proxy.addr());
        std::thread::scope(|s| {
            let one = s.spawn(|| Broker::start_through(&serve(1, pg, s3, dir), &pg_url, &s3_url));
            let two = s.spawn(|| Broker::start(&serve(2, pg, s3, dir)));
            (one.join().unwrap(), two.join().unwrap())
        })
    };
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &two.kafka)
        .create()
        .unwrap();
    let topic = NewTopic::new(TOPIC, PARTITIONS, TopicReplication::Fixed(1));
    for result in admin
        .create_topics([&topic], &AdminOptions::new())
        .await
        .unwrap()
    {
        result.unwrap();
    }
    // Broker 2 lists broker 1 once it re-read the live brokers (every second).
    until("leaders spread over both brokers", || {
        let led = leaders(&two.kafka);
        led.values().any(|l| *l == one.node_id) && led.values().any(|l| *l == two.node_id)
    })
    .await;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &two.kafka)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "300000")
        .set("topic.metadata.refresh.interval.ms", "500")
        .set("reconnect.backoff.max.ms", "500")
        .create()
        .unwrap();
    for (p, ok) in send_all(&producer, "before") {
        assert!(ok.await.unwrap(), "before-{p} acknowledged");
    }

    // The object store cut from broker 1.
    let led = leaders(&two.kafka);
    let of_one: Vec<i32> = led
        .iter()
        .filter(|(_, l)| **l == one.node_id)
        .map(|(p, _)| *p)
        .collect();
    assert!(
        !of_one.is_empty() && of_one.len() < PARTITIONS as usize,
        "leaders spread over both brokers: {led:?}"
    );
    s3_proxy.cut();
    let mut sent = send_all(&producer, "s3cut");
    for p in (0..PARTITIONS).filter(|p| !of_one.contains(p)) {
        let ok = sent.remove(&p).unwrap().await.unwrap();
        assert!(ok, "s3cut-{p} acknowledged by broker 2 during the cut");
    }
    // A flush of broker 1 waits for the object store; nothing of it is acknowledged.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (p, handle) in &sent {
        assert!(
            !handle.is_finished(),
            "s3cut-{p} answered through a cut path"
        );
    }
    s3_proxy.restore();
    for (p, handle) in sent {
        assert!(
            handle.await.unwrap(),
            "s3cut-{p} acknowledged after the cut"
        );
    }

    // PostgreSQL cut from broker 1: its flushes fail retriably and its registration lapses;
    // broker 2 drops it, and broker 1 leaves itself out of its own Metadata, so the producer
    // moves every partition to broker 2 and all are acknowledged while the cut lasts.
    pg_proxy.cut();
    for (p, ok) in send_all(&producer, "pgcut") {
        assert!(ok.await.unwrap(), "pgcut-{p} acknowledged during the cut");
    }
    for (name, broker) in [("broker 2", &two), ("broker 1", &one)] {
        let led = leaders(&broker.kafka);
        assert!(
            led.values().all(|l| *l == two.node_id),
            "{name}'s Metadata during the cut: {led:?}"
        );
    }
    pg_proxy.restore();
    // Broker 1 comes back (its next heartbeat revives the registration).
    until("broker 1 back in Metadata", || {
        leaders(&two.kafka).values().any(|l| *l == one.node_id)
    })
    .await;
    for (p, ok) in send_all(&producer, "after") {
        assert!(ok.await.unwrap(), "after-{p} acknowledged");
    }

    // Every record once, in order, nothing else.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &two.kafka)
        .set("group.id", "unused-no-commits")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    cluster_common::assign_from_beginning(&consumer, TOPIC, PARTITIONS);
    let mut got: BTreeMap<i32, Vec<(i64, String)>> = BTreeMap::new();
    let started = Instant::now();
    while got.values().map(Vec::len).sum::<usize>() < 4 * PARTITIONS as usize {
        assert!(started.elapsed() < STEP, "read {got:?}");
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let value = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
            got.entry(m.partition())
                .or_default()
                .push((m.offset(), value));
        }
    }
    for p in 0..PARTITIONS {
        let records = got.get(&p).cloned().unwrap_or_default();
        let values: Vec<String> = records.iter().map(|r| r.1.clone()).collect();
        assert_eq!(
            values,
            ["before", "s3cut", "pgcut", "after"].map(|phase| format!("{phase}-{p}")),
            "partition {p}"
        );
        let offsets: Vec<i64> = records.iter().map(|r| r.0).collect();
        assert_eq!(offsets, vec![0, 1, 2, 3], "partition {p} gapless");
        let (_, high) = consumer
            .fetch_watermarks(TOPIC, p, Duration::from_secs(10))
            .unwrap();
        assert_eq!(high, 4, "partition {p}: nothing unacknowledged");
    }
    drop((one, two));
}
