//! Cluster mode end to end (issue 17): three `strom serve` processes over one real PostgreSQL
//! and one moto S3 server (strom-cluster's test harness), driven by librdkafka.
//!
//! - a topic created through broker 3 is seen through brokers 1 and 2, and Metadata on every
//!   broker lists all three with the partitions' leaders spread over them;
//! - an idempotent `acks=all` producer bootstrapped on broker 1 and a consumer bootstrapped on
//!   broker 2: every acknowledged record is read exactly once, in producer order per
//!   partition, while broker 3 is killed with `kill -9` half-way;
//! - the killed broker leaves Metadata once its lease lapses;
//! - a Kinesis stream created and written through one broker is read through another;
//! - a consumer group joined through one broker commits, and asked through another broker
//!   the group finds the same coordinator and its committed offsets.

mod cluster_common;

use cluster_common::{Broker, ClusterServe};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, FutureProducer, FutureRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};
use strom_cluster::testkit::{MotoServer, PostgresServer};
use strom_kafka::client::Client;

const BUCKET: &str = "strom-cluster-e2e";
const TOPIC: &str = "orders";
const PARTITIONS: i32 = 6;
/// Records produced in each half (before and after the kill).
const HALF: usize = 600;
/// Lease of a broker registration: a killed broker leaves Metadata about this long after.
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
        log: std::env::var("CLUSTER_LOG").unwrap_or_else(|_| "warn".to_owned()),
        extra: vec!["--group-initial-rebalance-delay-ms".into(), "0".into()],
    })
}

/// Metadata of `topic` (or of no topic) as broker `addr` answers it: the brokers listed and
/// each partition's leader.
async fn metadata(addr: &str, topic: Option<&str>) -> (BTreeSet<i32>, BTreeMap<i32, i32>) {
    let mut client = Client::connect(addr).await.unwrap();
    let request = MetadataRequest::default()
        .with_allow_auto_topic_creation(false)
        .with_topics(Some(
            topic
                .map(|t| {
                    vec![
                        kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                            .with_name(Some(TopicName(StrBytes::from_string(t.to_owned())))),
                    ]
                })
                .unwrap_or_default(),
        ));
    let response: MetadataResponse = client.call(ApiKey::Metadata, 9, &request).await.unwrap();
    let brokers = response.brokers.iter().map(|b| b.node_id.0).collect();
    let leaders = response
        .topics
        .iter()
        .filter(|t| t.error_code == 0)
        .flat_map(|t| t.partitions.iter())
        .map(|p| (p.partition_index, p.leader_id.0))
        .collect();
    (brokers, leaders)
}

/// Waits (bounded) until `check` holds for what broker `addr` answers.
async fn until_metadata(
    addr: &str,
    topic: Option<&str>,
    what: &str,
    check: impl Fn(&BTreeSet<i32>, &BTreeMap<i32, i32>) -> bool,
) -> (BTreeSet<i32>, BTreeMap<i32, i32>) {
    let started = Instant::now();
    loop {
        let (brokers, leaders) = metadata(addr, topic).await;
        if check(&brokers, &leaders) {
            return (brokers, leaders);
        }
        assert!(
            started.elapsed() < STEP,
            "{what}: broker {addr} still answers {brokers:?} {leaders:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn producer(bootstrap: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "60000")
        .set("topic.metadata.refresh.interval.ms", "500")
        .set("reconnect.backoff.max.ms", "500")
        .create()
        .unwrap()
}

/// Produces records `from..to` (value `i`, key `k<i>`, partition `i % PARTITIONS`), all
/// enqueued in order before any is awaited; every one must be acknowledged.
async fn produce(producer: &FutureProducer, from: usize, to: usize) {
    let mut deliveries = Vec::with_capacity(to - from);
    for i in from..to {
        let value = i.to_string();
        let key = format!("k{i}");
        let partition = i32::try_from(i).unwrap() % PARTITIONS;
        let record = FutureRecord::to(TOPIC)
            .partition(partition)
            .key(&key)
            .payload(&value);
        match producer.send_result(record) {
            Ok(delivery) => deliveries.push(delivery),
            Err((e, _)) => panic!("record {i} not enqueued: {e}"),
        }
    }
    for (i, delivery) in deliveries.into_iter().enumerate() {
        match tokio::time::timeout(STEP, delivery).await {
            Ok(Ok(Ok(_))) => {}
            other => panic!("record {} not acknowledged: {other:?}", from + i),
        }
    }
}

/// Reads every partition from the start through a consumer bootstrapped on `bootstrap` until
/// `expected` records arrived (bounded), and returns each partition's values in offset order.
fn consume_all(bootstrap: &str, expected: usize) -> BTreeMap<i32, Vec<usize>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "unused-no-commits")
        .set("enable.auto.commit", "false")
        .set("topic.metadata.refresh.interval.ms", "500")
        .create()
        .unwrap();
    cluster_common::assign_from_beginning(&consumer, TOPIC, PARTITIONS);
    let mut out: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
    let mut seen = 0;
    let started = Instant::now();
    while seen < expected {
        assert!(
            started.elapsed() < STEP,
            "consumed {seen} of {expected} records"
        );
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let value: usize = std::str::from_utf8(m.payload().unwrap())
                    .unwrap()
                    .parse()
                    .unwrap();
                assert_eq!(m.key(), Some(format!("k{value}").as_bytes()));
                out.entry(m.partition()).or_default().push(value);
                seen += 1;
            }
            Some(Err(e)) => panic!("consume error: {e}"),
            None => {}
        }
    }
    // Nothing more than what was produced arrives (no duplicate shows up late).
    let quiet = Instant::now();
    while quiet.elapsed() < Duration::from_secs(2) {
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m.unwrap();
            panic!(
                "unexpected extra record at {}-{}",
                m.partition(),
                m.offset()
            );
        }
    }
    out
}

fn group_consumer(bootstrap: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "cluster-group")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .create()
        .unwrap()
}

fn group_commits_seen_through_another_broker(
    first: &str,
    second: &str,
    end_offsets: &BTreeMap<i32, i64>,
) {
    let total: i64 = end_offsets.values().sum();
    let consumer = group_consumer(first);
    consumer.subscribe(&[TOPIC]).unwrap();
    let mut seen = 0;
    let started = Instant::now();
    while seen < total {
        assert!(started.elapsed() < STEP, "group consumed {seen} of {total}");
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            m.unwrap();
            seen += 1;
        }
    }
    consumer
        .commit_consumer_state(rdkafka::consumer::CommitMode::Sync)
        .unwrap();
    drop(consumer);
    let other = group_consumer(second);
    let mut wanted = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        wanted.add_partition(TOPIC, p);
    }
    let committed = other.committed_offsets(wanted, STEP).unwrap();
    for e in committed.elements() {
        let want = end_offsets.get(&e.partition()).copied().unwrap_or(0);
        assert_eq!(
            e.offset(),
            Offset::Offset(want),
            "partition {} committed offset",
            e.partition()
        );
    }
}

/// `strom topic`, `strom produce` and `strom consume` against a cluster, each command pointed
/// at a different broker: created and written through one broker, described, altered, read and
/// deleted through the others.
fn cli_works_across_brokers(one: &Broker, two: &Broker, three: &Broker) {
    let run = |bootstrap: &str, args: &[&str], stdin: Option<&str>| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_strom"))
            .args(args)
            .args(["--bootstrap", bootstrap])
            .env_remove("STROM_BOOTSTRAP")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            std::io::Write::write_all(&mut input, text.as_bytes()).unwrap();
        }
        drop(input);
        child.wait_with_output().unwrap()
    };
    let strom = |bootstrap: &str, args: &[&str], stdin: Option<&str>| {
        let out = run(bootstrap, args, stdin);
        assert!(out.status.success(), "strom {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    // Waits (bounded) until `strom args` through `bootstrap` prints something `check` accepts.
    let until = |bootstrap: &str, args: &[&str], check: &dyn Fn(&str) -> bool| {
        let started = Instant::now();
        loop {
            let out = run(bootstrap, args, None);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            if out.status.success() && check(&text) {
                return text;
            }
            assert!(started.elapsed() < STEP, "strom {args:?}: {out:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    strom(&one.kafka, &["topic", "create", "cli", "-p", "2"], None);
    strom(&one.kafka, &["produce", "cli"], Some("one\ntwo\nthree\n"));
    strom(
        &one.kafka,
        &["produce", "cli", "-p", "1", "-K", ":"],
        Some("a:x\nb:y\n"),
    );
    // Another broker lists it once it has read the metadata event (polled every 250 ms).
    until(&three.kafka, &["topic", "list"], &|listed| {
        listed.lines().any(|l| l.starts_with("cli\t2 partitions"))
    });
    // Described through a third broker: both partitions with the offsets written through the
    // first.
    let described = until(&two.kafka, &["topic", "describe", "cli"], &|d| {
        d.contains("partitions 2")
    });
    assert!(
        described.contains("partition 0: offsets 0..3 (3 records)")
            && described.contains("partition 1: offsets 0..2 (2 records)"),
        "{described}"
    );
    // Altered through one broker, seen through another.
    strom(
        &three.kafka,
        &["topic", "alter", "cli", "-c", "retention.ms=5400000"],
        None,
    );
    until(&one.kafka, &["topic", "describe", "cli"], &|d| {
        d.contains("retention.ms = 5400000  (topic)")
    });
    let consumed = strom(&three.kafka, &["consume", "cli", "-n", "3"], None);
    assert_eq!(
        consumed.lines().collect::<Vec<_>>(),
        ["one", "two", "three"]
    );
    let consumed = strom(
        &two.kafka,
        &["consume", "cli", "-p", "1", "--from", "1", "-n", "1"],
        None,
    );
    assert_eq!(consumed.lines().collect::<Vec<_>>(), ["y"]);
    // Deleted through one broker, gone from another.
    strom(&two.kafka, &["topic", "delete", "cli"], None);
    until(&one.kafka, &["topic", "list"], &|listed| {
        !listed.lines().any(|l| l.starts_with("cli\t"))
    });
}

/// One Kinesis JSON 1.1 call (unsigned) to `addr`: whether it answered 200, and the body.
fn kinesis_call(addr: &str, target: &str, body: &serde_json::Value) -> (bool, serde_json::Value) {
    use std::io::{Read, Write};
    let body = body.to_string();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(STEP)).unwrap();
    write!(
        s,
        "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-amz-json-1.1\r\n\
         X-Amz-Target: Kinesis_20131202.{target}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let json = serde_json::from_str(body).unwrap_or(serde_json::Value::Null);
    (head.starts_with("HTTP/1.1 200"), json)
}

/// A Kinesis call that must succeed.
fn kinesis(addr: &str, target: &str, body: serde_json::Value) -> serde_json::Value {
    let (ok, json) = kinesis_call(addr, target, &body);
    assert!(ok, "{target}: {json}");
    json
}

/// A stream created and written through broker 1's Kinesis API is read through broker 2's,
/// with a shard iterator issued by broker 2 (iterators are signed with the shared cluster id).
fn kinesis_across_brokers(one: &Broker, two: &Broker) {
    use serde_json::json;
    kinesis(
        &one.kinesis,
        "CreateStream",
        json!({"StreamName": "clicks", "ShardCount": 1}),
    );
    let put = kinesis(
        &one.kinesis,
        "PutRecord",
        json!({"StreamName": "clicks", "Data": "aGVsbG8=", "PartitionKey": "k"}),
    );
    assert_eq!(put["ShardId"], "shardId-000000000000");
    let started = Instant::now();
    let iterator = loop {
        // Broker 2 learns the stream from the shared metadata (polled every 250 ms).
        let (ok, json) = kinesis_call(
            &two.kinesis,
            "GetShardIterator",
            &json!({"StreamName": "clicks", "ShardId": "shardId-000000000000",
                    "ShardIteratorType": "TRIM_HORIZON"}),
        );
        if ok {
            break json["ShardIterator"].as_str().unwrap().to_owned();
        }
        assert!(started.elapsed() < STEP, "{json}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let got = kinesis(
        &two.kinesis,
        "GetRecords",
        json!({"ShardIterator": iterator}),
    );
    let records = got["Records"].as_array().unwrap();
    assert_eq!(records.len(), 1, "{got}");
    assert_eq!(records[0]["Data"], "aGVsbG8=");
    assert_eq!(records[0]["SequenceNumber"], put["SequenceNumber"]);
    // Iterators are signed with the secret every broker shares (kept in PostgreSQL): the next
    // iterator broker 2 handed out reads on broker 1, and a forged one is refused there.
    let next = got["NextShardIterator"].as_str().unwrap();
    let (ok, json) = kinesis_call(&one.kinesis, "GetRecords", &json!({"ShardIterator": next}));
    assert!(ok, "an iterator from another broker: {json}");
    assert_eq!(json["Records"].as_array().map(Vec::len), Some(0), "{json}");
    let mut forged = next.to_owned();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    let (ok, json) = kinesis_call(
        &one.kinesis,
        "GetRecords",
        &json!({"ShardIterator": forged}),
    );
    assert!(!ok, "a tampered iterator must be refused: {json}");
}

/// Admin operations through one broker are seen through the other, and a long poll on one
/// broker is woken by a commit made through another.
async fn admin_and_long_polls_across_brokers(one: &Broker, two: &Broker) {
    let mut c1 = Client::connect(&one.kafka).await.unwrap();
    let mut c2 = Client::connect(&two.kafka).await.unwrap();
    let set = BTreeMap::from([("retention.ms".to_owned(), "3600000".to_owned())]);
    c1.alter_topic_configs(TOPIC, &set, &[]).await.unwrap();
    let started = Instant::now();
    loop {
        let configs = c2.topic_configs(TOPIC).await.unwrap();
        if configs
            .iter()
            .any(|(k, v, _)| k == "retention.ms" && v == "3600000")
        {
            break;
        }
        assert!(started.elapsed() < STEP, "config not seen: {configs:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    c2.create_topic("scratch", 1, &BTreeMap::new())
        .await
        .unwrap();
    until_metadata(&one.kafka, Some("scratch"), "scratch created", |_, l| {
        l.len() == 1
    })
    .await;
    // A long poll on broker 2 at the end of the partition…
    let poll = {
        let addr = two.kafka.clone();
        tokio::spawn(async move {
            let mut c = Client::connect(&addr).await.unwrap();
            let started = Instant::now();
            let fetched = c.fetch("scratch", 0, 0, 20_000, 1 << 20).await.unwrap();
            (fetched, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // …is answered when a batch produced through broker 1 commits.
    let batch = strom_record::BatchBuilder::new()
        .build(&[strom_record::Record::new(
            0,
            None,
            Some(bytes::Bytes::from_static(b"woken")),
        )])
        .unwrap();
    let base = c1
        .produce("scratch", 0, -1, bytes::Bytes::from(batch))
        .await
        .unwrap();
    assert_eq!(base, 0);
    let (fetched, waited) = tokio::time::timeout(STEP, poll).await.unwrap().unwrap();
    assert_eq!(fetched.high_watermark, 1);
    assert!(!fetched.records.is_empty());
    assert!(
        waited < Duration::from_secs(10),
        "long poll woken by the commit, not by its timeout: {waited:?}"
    );
    c1.delete_topic("scratch").await.unwrap();
    until_metadata(&two.kafka, Some("scratch"), "scratch deleted", |_, l| {
        l.is_empty()
    })
    .await;
}

/// The tests of this file each run a whole cluster: one at a time on a small machine.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_brokers_share_one_log() {
    let _serial = SERIAL.lock().await;
    let (pg, s3) = tokio::task::spawn_blocking(|| {
        let pg = PostgresServer::start().expect("start postgres");
        let s3 = MotoServer::start().expect("start moto");
        s3.create_bucket(BUCKET).expect("create bucket");
        (pg, s3)
    })
    .await
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    let (b1, b2, mut b3) = {
        let (pg, s3, dir) = (&pg, &s3, data.path());
        std::thread::scope(|s| {
            let one = s.spawn(|| start(1, pg, s3, dir));
            let two = s.spawn(|| start(2, pg, s3, dir));
            let three = s.spawn(|| start(3, pg, s3, dir));
            (
                one.join().unwrap(),
                two.join().unwrap(),
                three.join().unwrap(),
            )
        })
    };
    let ids: BTreeSet<i32> = [b1.node_id, b2.node_id, b3.node_id].into();
    assert_eq!(ids.len(), 3, "distinct node ids allocated: {ids:?}");

    // Every broker lists all three.
    for b in [&b1, &b2, &b3] {
        until_metadata(&b.kafka, None, "all brokers listed", |brokers, _| {
            *brokers == ids
        })
        .await;
    }

    // A topic created through broker 3 is seen through the others, leaders spread.
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &b3.kafka)
        .create()
        .unwrap();
    let created = admin
        .create_topics(
            [&NewTopic::new(
                TOPIC,
                PARTITIONS,
                TopicReplication::Fixed(1),
            )],
            &AdminOptions::new().operation_timeout(Some(STEP)),
        )
        .await
        .unwrap();
    assert!(created.iter().all(Result::is_ok), "{created:?}");
    let mut leaders_seen = BTreeMap::new();
    for b in [&b1, &b2, &b3] {
        let (_, leaders) = until_metadata(&b.kafka, Some(TOPIC), "topic visible", |_, l| {
            l.len() == PARTITIONS as usize
        })
        .await;
        leaders_seen.insert(b.node_id, leaders);
    }
    let first = leaders_seen.values().next().unwrap().clone();
    assert!(
        leaders_seen.values().all(|l| *l == first),
        "every broker names the same leaders: {leaders_seen:?}"
    );
    let leader_set: BTreeSet<i32> = first.values().copied().collect();
    assert!(
        leader_set.len() >= 2,
        "leaders spread over brokers: {first:?}"
    );
    // Creating it again through another broker is refused: the name is taken cluster-wide.
    let again = admin
        .create_topics(
            [&NewTopic::new(TOPIC, 1, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .unwrap();
    assert!(again.iter().all(Result::is_err), "{again:?}");

    admin_and_long_polls_across_brokers(&b1, &b2).await;
    let status = Command::new(env!("CARGO_BIN_EXE_strom"))
        .args(["cluster", "status", "--format", "json"])
        .args(["--cluster-postgres", &pg.url()])
        .output()
        .unwrap();
    assert!(status.status.success(), "{status:?}");
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let listed: BTreeSet<i32> = status["brokers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| i32::try_from(b["node_id"].as_i64().unwrap()).unwrap())
        .collect();
    assert_eq!(listed, ids, "strom cluster status: {status}");
    cli_works_across_brokers(&b1, &b2, &b3);

    kinesis_across_brokers(&b1, &b2);

    // Transactional producers start in cluster mode (their coordinator is found through any
    // broker; see cluster_txn.rs for transactions across a failover).
    let bootstrap = b2.kafka.clone();
    let initialised = tokio::task::spawn_blocking(move || {
        let transactional: rdkafka::producer::BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("transactional.id", "cluster-txn")
            .create()
            .unwrap();
        rdkafka::producer::Producer::init_transactions(&transactional, Duration::from_secs(30))
    })
    .await
    .unwrap();
    assert!(initialised.is_ok(), "{initialised:?}");

    // Produce through broker 1; kill -9 broker 3 half-way; keep producing.
    let producer = producer(&b1.kafka);
    produce(&producer, 0, HALF).await;
    let killed = b3.node_id;
    b3.kill();
    produce(&producer, HALF, 2 * HALF).await;

    // Broker 3 drops out of Metadata once its lease lapsed.
    until_metadata(
        &b1.kafka,
        Some(TOPIC),
        "killed broker gone",
        |brokers, l| !brokers.contains(&killed) && l.values().all(|leader| *leader != killed),
    )
    .await;

    // Consume through broker 2: every acknowledged record exactly once, in order.
    let bootstrap = b2.kafka.clone();
    let got = tokio::task::spawn_blocking(move || consume_all(&bootstrap, 2 * HALF))
        .await
        .unwrap();
    let mut all = BTreeSet::new();
    for (partition, values) in &got {
        assert!(
            values.windows(2).all(|w| w[0] < w[1]),
            "partition {partition} out of producer order: {values:?}"
        );
        for v in values {
            assert_eq!(i32::try_from(*v).unwrap() % PARTITIONS, *partition);
            assert!(all.insert(*v), "record {v} delivered twice");
        }
    }
    assert_eq!(all, (0..2 * HALF).collect::<BTreeSet<_>>());

    // A consumer group joined through broker 2 commits; the same group asked through broker 1
    // finds the same coordinator and the committed offsets.
    let (two, one) = (b2.kafka.clone(), b1.kafka.clone());
    let expected: BTreeMap<i32, i64> = got
        .iter()
        .map(|(p, v)| (*p, i64::try_from(v.len()).unwrap()))
        .collect();
    tokio::task::spawn_blocking(move || {
        group_commits_seen_through_another_broker(&two, &one, &expected)
    })
    .await
    .unwrap();
    drop(producer);
    drop((b1, b2));
}

/// Fault checker in the spirit of Jepsen, bounded: two idempotent `acks=all` producers write
/// to four partitions through all brokers while the [`FAULTS`] are injected in turn: brokers
/// killed with `kill -9` and started again, PostgreSQL killed and restarted, the object store
/// frozen and PostgreSQL frozen (unreachable) for a few seconds. At the end
/// every acknowledged record is at its acknowledged offset exactly once, offsets are gapless,
/// each producer's records keep their order per partition, and no record appears twice
/// (acknowledged or not). Through the same faults a consumer group of two members commits
/// each record before processing it ([`GroupChecker`]): no record is processed twice, no
/// committed offset is ever seen going backwards, and the final committed offsets are at
/// least every acknowledged commit. And (unless `CLUSTER_FAULT_TXN=0`) through the same faults a
/// transactional consume-transform-produce worker ([`TxnChecker`]): read `read_committed`, no
/// transaction is partly visible, no aborted record appears, no input is transformed twice,
/// every input below the group's committed offsets is transformed, and the group's committed
/// offsets never go backwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_survive_broker_kills_and_postgres_restarts() {
    const FAULT_TOPIC: &str = "faults";
    const FAULT_PARTITIONS: i32 = 4;
    let _serial = SERIAL.lock().await;
    let started = Instant::now();
    let (mut pg, s3) = tokio::task::spawn_blocking(|| {
        let pg = PostgresServer::start().expect("start postgres");
        let s3 = MotoServer::start().expect("start moto");
        s3.create_bucket(BUCKET).expect("create bucket");
        (pg, s3)
    })
    .await
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut brokers: Vec<Broker> = (0..3).map(|n| start(n, &pg, &s3, data.path())).collect();
    let bootstrap = brokers
        .iter()
        .map(|b| b.kafka.clone())
        .collect::<Vec<_>>()
        .join(",");
    let mut c = Client::connect(&brokers[0].kafka).await.unwrap();
    c.create_topic(FAULT_TOPIC, FAULT_PARTITIONS, &BTreeMap::new())
        .await
        .unwrap();
    c.create_topic(
        TxnChecker::OUTPUT,
        TxnChecker::OUTPUT_PARTITIONS,
        &BTreeMap::new(),
    )
    .await
    .unwrap();
    for b in &brokers {
        until_metadata(&b.kafka, Some(FAULT_TOPIC), "topic visible", |_, l| {
            l.len() == FAULT_PARTITIONS as usize
        })
        .await;
        until_metadata(
            &b.kafka,
            Some(TxnChecker::OUTPUT),
            "topic visible",
            |_, l| l.len() == TxnChecker::OUTPUT_PARTITIONS as usize,
        )
        .await;
    }

    // (producer, sequence) → the delivery outcome: Some((partition, offset)) if acknowledged.
    type Outcomes = Arc<std::sync::Mutex<Vec<(usize, usize, Option<(i32, i64)>)>>>;
    let outcomes: Outcomes = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut producers = Vec::new();
    for id in 0..2 {
        let producer = producer(&bootstrap);
        let outcomes = Arc::clone(&outcomes);
        let stop = Arc::clone(&stop);
        producers.push(tokio::spawn(async move {
            let mut seq = 0usize;
            let mut inflight = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                for _ in 0..20 {
                    let value = format!("p{id}-{seq}");
                    let partition = i32::try_from(seq).unwrap() % FAULT_PARTITIONS;
                    let outcomes = Arc::clone(&outcomes);
                    let this = seq;
                    // Enqueued here, in sequence order (the order the producer keeps per
                    // partition); only the wait for the acknowledgement is spawned.
                    let record = FutureRecord::to(FAULT_TOPIC)
                        .partition(partition)
                        .key(&value)
                        .payload(&value);
                    match producer.send_result(record) {
                        Ok(delivery) => inflight.push(tokio::spawn(async move {
                            let acked = match delivery.await {
                                Ok(Ok(d)) => Some((d.partition, d.offset)),
                                _ => None,
                            };
                            outcomes.lock().unwrap().push((id, this, acked));
                        })),
                        Err(_) => outcomes.lock().unwrap().push((id, this, None)),
                    }
                    seq += 1;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            for task in inflight {
                task.await.unwrap();
            }
        }));
    }

    // A reader fetching through every broker in turn while the faults go on: each fetch must
    // answer (records, or a retriable error code, or a refused connection to a killed broker)
    // within READ_BOUND, never hang.
    let addresses = Arc::new(std::sync::Mutex::new(
        brokers.iter().map(|b| b.kafka.clone()).collect::<Vec<_>>(),
    ));
    let reads = {
        let addresses = Arc::clone(&addresses);
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let mut tally: BTreeMap<String, usize> = BTreeMap::new();
            let mut turn = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                let addr = {
                    let a = addresses.lock().unwrap();
                    a[turn % a.len()].clone()
                };
                let partition = i32::try_from(turn).unwrap() % FAULT_PARTITIONS;
                turn += 1;
                let began = Instant::now();
                let fetched = tokio::time::timeout(read_bound(), async {
                    let mut c = Client::connect(&addr).await?;
                    c.fetch(FAULT_TOPIC, partition, 0, 200, 64 << 10).await
                })
                .await;
                let took = usize::try_from(began.elapsed().as_millis()).unwrap_or(usize::MAX);
                let slowest = tally.entry("slowest ms".to_owned()).or_default();
                *slowest = (*slowest).max(took);
                let kind = match fetched {
                    Ok(Ok(_)) => "fetched".to_owned(),
                    Ok(Err(strom_kafka::client::ClientError::Kafka { error, .. })) => {
                        assert!(error.is_retriable(), "fetch answered {error:?}");
                        format!("{error:?}")
                    }
                    Ok(Err(_)) => "connection failed".to_owned(),
                    Err(_) => panic!("a fetch through {addr} hung past {:?}", read_bound()),
                };
                *tally.entry(kind).or_default() += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            tally
        })
    };

    // A consumer group of two members that commit each record before processing it, and a
    // monitor of the group's committed offsets, through the same faults.
    let group = GroupChecker::start(&bootstrap, FAULT_TOPIC);
    // A transactional consume-transform-produce worker on the same input, through the same
    // faults.
    // CLUSTER_FAULT_TXN=0 leaves it out: on a heavily loaded machine a fetch of the reader
    // above took longer than READ_BOUND more often with it (see RELIABILITY.md).
    let txns = (std::env::var("CLUSTER_FAULT_TXN").as_deref() != Ok("0"))
        .then(|| TxnChecker::start(Arc::clone(&addresses), FAULT_TOPIC));

    let mut injected: BTreeMap<&str, usize> = BTreeMap::new();
    let mut kills = 0;
    for fault in FAULTS {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        match fault {
            Fault::KillBroker | Fault::KillBrokerAndRestartPostgres => {
                let victim = kills % brokers.len();
                kills += 1;
                brokers[victim].kill();
                *injected.entry("broker kill -9").or_default() += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
                if fault == Fault::KillBrokerAndRestartPostgres {
                    tokio::task::block_in_place(|| pg.restart()).expect("restart postgres");
                    *injected.entry("postgres restart").or_default() += 1;
                }
                brokers[victim] = start(victim, &pg, &s3, data.path());
                addresses.lock().unwrap()[victim] = brokers[victim].kafka.clone();
            }
            Fault::FreezeObjectStore => {
                s3.pause();
                tokio::time::sleep(OUTAGE).await;
                s3.resume();
                *injected.entry("object store frozen").or_default() += 1;
            }
            Fault::FreezePostgres => {
                pg.pause();
                tokio::time::sleep(OUTAGE).await;
                pg.resume();
                *injected.entry("postgres frozen").or_default() += 1;
            }
        }
    }
    let faults: usize = injected.values().sum();
    let faults_done = started.elapsed();
    // Both workers settle at once (bounded by STEP each).
    let (during_faults, txns_during_faults) = tokio::task::block_in_place(|| {
        std::thread::scope(|s| {
            let txns = s.spawn(|| txns.as_ref().map_or(0, TxnChecker::settle));
            let group = group.settle();
            (group, txns.join().unwrap())
        })
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::Release);
    for p in producers {
        tokio::time::timeout(STEP, p).await.unwrap().unwrap();
    }
    let producers_done = started.elapsed();
    let reads = tokio::time::timeout(STEP, reads).await.unwrap().unwrap();
    assert!(reads.get("fetched").is_some_and(|n| *n > 0), "{reads:?}");
    let group_live = brokers
        .iter()
        .map(|b| b.kafka.clone())
        .collect::<Vec<_>>()
        .join(",");
    let txn_live = group_live.clone();
    let group = tokio::task::spawn_blocking(move || group.finish(&group_live, during_faults))
        .await
        .unwrap();
    let txns = tokio::task::spawn_blocking(move || {
        txns.map_or_else(
            || "left out".to_owned(),
            |t| t.finish(&txn_live, txns_during_faults),
        )
    })
    .await
    .unwrap();

    let outcomes = std::mem::take(&mut *outcomes.lock().unwrap());
    let acked: Vec<_> = outcomes.iter().filter(|o| o.2.is_some()).collect();
    assert!(!acked.is_empty(), "nothing was acknowledged");
    // Not acknowledged (delivery timed out or failed), per (producer, partition): how many,
    // and the range of their sequence numbers, to tell a stall from scattered failures.
    let mut unacked: BTreeMap<(usize, usize), (usize, usize, usize)> = BTreeMap::new();
    for (id, seq, _) in outcomes.iter().filter(|o| o.2.is_none()) {
        let partition = seq % FAULT_PARTITIONS as usize;
        let e = unacked.entry((*id, partition)).or_insert((0, *seq, *seq));
        *e = (e.0 + 1, e.1.min(*seq), e.2.max(*seq));
    }
    let live = brokers
        .iter()
        .map(|b| b.kafka.clone())
        .collect::<Vec<_>>()
        .join(",");
    let read = tokio::task::spawn_blocking(move || {
        read_every_partition(&live, FAULT_TOPIC, FAULT_PARTITIONS)
    })
    .await
    .unwrap();
    let acked_at: BTreeMap<(usize, usize), Option<(i32, i64)>> = outcomes
        .iter()
        .map(|(id, seq, at)| ((*id, *seq), *at))
        .collect();
    let mut seen = BTreeMap::new();
    for (partition, records) in &read {
        let mut last_seq: BTreeMap<usize, usize> = BTreeMap::new();
        for (i, (offset, value)) in records.iter().enumerate() {
            assert_eq!(
                *offset,
                i64::try_from(i).unwrap(),
                "gap in partition {partition}"
            );
            let (id, seq) = value.strip_prefix('p').unwrap().split_once('-').unwrap();
            let (id, seq): (usize, usize) = (id.parse().unwrap(), seq.parse().unwrap());
            if let Some(prev) = last_seq.insert(id, seq) {
                let acked = |s: usize| acked_at.get(&(id, s)).copied().flatten();
                assert!(
                    prev < seq,
                    "producer {id} out of order in partition {partition} at offset {offset}: \
                     seq {prev} (acknowledged at {:?}) before seq {seq} (acknowledged at {:?})",
                    acked(prev),
                    acked(seq)
                );
            }
            assert!(
                seen.insert(value.clone(), (*partition, *offset)).is_none(),
                "{value} appears twice"
            );
        }
    }
    for (id, seq, at) in &acked {
        let value = format!("p{id}-{seq}");
        assert_eq!(
            seen.get(&value),
            at.as_ref(),
            "acknowledged {value} not at its offset"
        );
    }
    eprintln!(
        "fault checker: {} records sent, {} acknowledged, {} present, {} faults injected \
         ({injected:?}); faults over at {faults_done:?}, producers done at {producers_done:?}, \
         checked at {:?}; fetches during the faults: {reads:?}; not acknowledged per \
         (producer, partition): (count, first seq, last seq) {unacked:?}; group: {group}; \
         transactions: {txns}",
        outcomes.len(),
        acked.len(),
        seen.len(),
        faults,
        started.elapsed()
    );
    drop(s3);
}

/// One fault of the checker's schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// `kill -9` a broker (the next in turn), start it again.
    KillBroker,
    /// As `KillBroker`, and PostgreSQL killed (`SIGQUIT`, immediate shutdown) and restarted
    /// while the broker is down.
    KillBrokerAndRestartPostgres,
    /// The object store frozen (`SIGSTOP`) for [`OUTAGE`]: PUTs and GETs get no answer.
    /// (moto keeps objects in memory, so it is frozen rather than restarted.)
    FreezeObjectStore,
    /// PostgreSQL frozen (`SIGSTOP` of every server process) for [`OUTAGE`]: connections
    /// stay open but nothing answers, as in a network partition.
    FreezePostgres,
}

/// The checker's faults, in order, 1.5 s of traffic before each.
const FAULTS: [Fault; 9] = [
    Fault::KillBroker,
    Fault::FreezeObjectStore,
    Fault::KillBrokerAndRestartPostgres,
    Fault::FreezePostgres,
    Fault::KillBroker,
    Fault::FreezeObjectStore,
    Fault::KillBrokerAndRestartPostgres,
    Fault::FreezePostgres,
    Fault::KillBroker,
];

/// Longest a fetch may take during the faults: above the reader's own bounds (10 s for the
/// object store, 40 s for PostgreSQL by default), which are what "never hang" promises; a
/// frozen server here lasts [`OUTAGE`], but on a loaded machine a fetch queued behind a
/// restart's reconnects can use most of the PostgreSQL bound.
const READ_BOUND: Duration = Duration::from_secs(45);

/// [`READ_BOUND`], or `CLUSTER_FAULT_READ_BOUND_SECS` (to see how long a slow fetch takes).
fn read_bound() -> Duration {
    std::env::var("CLUSTER_FAULT_READ_BOUND_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(READ_BOUND, Duration::from_secs)
}

/// How long a frozen server stays frozen.
const OUTAGE: Duration = Duration::from_secs(3);

/// Every record of every partition, `(offset, value)` in offset order, up to the high
/// watermarks seen when the read starts.
fn read_every_partition(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
) -> BTreeMap<i32, Vec<(i64, String)>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "fault-checker-no-commits")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut ends = BTreeMap::new();
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        let (_, high) = consumer.fetch_watermarks(topic, p, STEP).unwrap();
        ends.insert(p, high);
        assignment
            .add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let mut out: BTreeMap<i32, Vec<(i64, String)>> = BTreeMap::new();
    let done = |out: &BTreeMap<i32, Vec<(i64, String)>>| {
        ends.iter().all(|(p, high)| {
            *high == 0
                || out
                    .get(p)
                    .and_then(|v| v.last())
                    .is_some_and(|(o, _)| o + 1 >= *high)
        })
    };
    let started = Instant::now();
    while !done(&out) {
        assert!(started.elapsed() < STEP, "read stalled: {ends:?}");
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m.unwrap();
            let value = String::from_utf8(m.payload().unwrap().to_vec()).unwrap();
            out.entry(m.partition())
                .or_default()
                .push((m.offset(), value));
        }
    }
    out
}

/// The fault checker's consumer group (issue 18): [`GroupChecker::MEMBERS`] librdkafka
/// members of one classic group commit each record's next offset (synchronously) *before*
/// processing it, and process it only once the commit is acknowledged: at most once, so a
/// record processed twice means an acknowledged commit was lost. A monitor reads the group's
/// committed offsets every 200 ms through any broker; none may ever go backwards.
struct GroupChecker {
    stop: Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    topic: &'static str,
    /// Every record processed, `(partition, offset)`, with repeats.
    processed: Arc<std::sync::Mutex<Vec<(i32, i64)>>>,
    /// Per partition, the highest commit acknowledged to a member.
    acked: Arc<std::sync::Mutex<BTreeMap<i32, i64>>>,
    /// Per partition, the highest committed offset the monitor saw.
    seen: Arc<std::sync::Mutex<BTreeMap<i32, i64>>>,
    /// Committed offsets the monitor saw go backwards.
    regressions: Arc<std::sync::Mutex<Vec<String>>>,
    /// Commits that failed (retried with the next record: the member does not process it).
    failed_commits: Arc<std::sync::atomic::AtomicUsize>,
}

impl GroupChecker {
    const GROUP: &'static str = "fault-checker-group";
    const MEMBERS: usize = 2;
    /// Records the group must process after the faults before the checks.
    const AFTER_FAULTS: usize = 100;

    fn config(bootstrap: &str) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", bootstrap)
            .set("group.id", Self::GROUP)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "500")
            .set("socket.timeout.ms", "10000")
            .set("topic.metadata.refresh.interval.ms", "500")
            .set("reconnect.backoff.max.ms", "500");
        config
    }

    fn start(bootstrap: &str, topic: &'static str) -> GroupChecker {
        let checker = GroupChecker {
            stop: Arc::default(),
            threads: Vec::new(),
            topic,
            processed: Arc::default(),
            acked: Arc::default(),
            seen: Arc::default(),
            regressions: Arc::default(),
            failed_commits: Arc::default(),
        };
        let mut threads = Vec::new();
        for _ in 0..Self::MEMBERS {
            let bootstrap = bootstrap.to_owned();
            let (stop, processed, acked, failed) = (
                Arc::clone(&checker.stop),
                Arc::clone(&checker.processed),
                Arc::clone(&checker.acked),
                Arc::clone(&checker.failed_commits),
            );
            threads.push(std::thread::spawn(move || {
                let consumer: BaseConsumer = Self::config(&bootstrap).create().unwrap();
                consumer.subscribe(&[topic]).unwrap();
                while !stop.load(std::sync::atomic::Ordering::Acquire) {
                    let m = match consumer.poll(Duration::from_millis(100)) {
                        Some(Ok(m)) => m,
                        Some(Err(_)) | None => continue,
                    };
                    let (partition, offset) = (m.partition(), m.offset());
                    let mut commit = TopicPartitionList::new();
                    commit
                        .add_partition_offset(topic, partition, Offset::Offset(offset + 1))
                        .unwrap();
                    match consumer.commit(&commit, rdkafka::consumer::CommitMode::Sync) {
                        Ok(()) => {
                            let mut acked = acked.lock().unwrap();
                            let high = acked.entry(partition).or_insert(offset + 1);
                            *high = (*high).max(offset + 1);
                            drop(acked);
                            processed.lock().unwrap().push((partition, offset));
                        }
                        Err(_) => {
                            failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                }
                consumer.unsubscribe();
            }));
        }
        threads.push(monitor_committed(
            Self::config(bootstrap),
            topic,
            Arc::clone(&checker.stop),
            Arc::clone(&checker.seen),
            Arc::clone(&checker.regressions),
        ));
        GroupChecker { threads, ..checker }
    }

    /// Every partition of `topic` (as the consumer's metadata knows it).
    fn wanted(topic: &str, consumer: &BaseConsumer) -> TopicPartitionList {
        let mut wanted = TopicPartitionList::new();
        if let Ok(md) = consumer.fetch_metadata(Some(topic), Duration::from_secs(3)) {
            for t in md.topics() {
                for p in t.partitions() {
                    wanted.add_partition(topic, p.id());
                }
            }
        }
        wanted
    }

    /// Stops the members and the monitor (bounded), then checks: no record processed twice,
    /// no committed offset seen going backwards, and the committed offsets read now (through
    /// the live brokers `bootstrap`) at least the highest acknowledged. A summary.
    /// Once the faults are over (the producers still running): waits until the group has
    /// processed [`Self::AFTER_FAULTS`] more records (it may have spent the faults
    /// rebalancing), so the checks cover a group that works again. Returns how many it had
    /// processed during the faults.
    fn settle(&self) -> usize {
        let deadline = Instant::now() + STEP;
        let during = self.processed.lock().unwrap().len();
        while self.processed.lock().unwrap().len() < during + Self::AFTER_FAULTS {
            assert!(
                Instant::now() < deadline,
                "the group processed {} records after the faults ({} commits failed)",
                self.processed.lock().unwrap().len() - during,
                self.failed_commits
                    .load(std::sync::atomic::Ordering::Relaxed)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        during
    }

    fn finish(self, bootstrap: &str, during: usize) -> String {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        let deadline = Instant::now() + STEP;
        for t in self.threads {
            while !t.is_finished() {
                assert!(Instant::now() < deadline, "a group member did not stop");
                std::thread::sleep(Duration::from_millis(50));
            }
            t.join().unwrap();
        }
        let processed = std::mem::take(&mut *self.processed.lock().unwrap());
        assert!(
            !processed.is_empty(),
            "the group processed nothing ({} commits failed)",
            self.failed_commits
                .load(std::sync::atomic::Ordering::Relaxed)
        );
        let mut once = BTreeSet::new();
        for record in &processed {
            assert!(
                once.insert(*record),
                "record {record:?} processed twice by a group that commits first"
            );
        }
        let regressions = self.regressions.lock().unwrap().clone();
        assert!(
            regressions.is_empty(),
            "committed offsets went backwards: {regressions:?}"
        );
        let acked = self.acked.lock().unwrap().clone();
        let reader: BaseConsumer = Self::config(bootstrap).create().unwrap();
        let committed: BTreeMap<i32, i64> = loop {
            let list = reader
                .committed_offsets(Self::wanted(self.topic, &reader), Duration::from_secs(10));
            if let Ok(list) = list {
                let read: BTreeMap<i32, i64> = list
                    .elements()
                    .iter()
                    .filter_map(|e| match e.offset() {
                        Offset::Offset(o) => Some((e.partition(), o)),
                        _ => None,
                    })
                    .collect();
                if acked.keys().all(|p| read.contains_key(p)) {
                    break read;
                }
            }
            assert!(Instant::now() < deadline, "committed offsets not readable");
            std::thread::sleep(Duration::from_millis(200));
        };
        for (p, high) in &acked {
            assert!(
                committed.get(p).is_some_and(|c| c >= high),
                "partition {p}: acknowledged commit {high} but the group's offset is {:?}",
                committed.get(p)
            );
        }
        format!(
            "{} records processed once each ({during} during the faults), {} commits failed, \
             final offsets {committed:?}",
            processed.len(),
            self.failed_commits
                .load(std::sync::atomic::Ordering::Relaxed)
        )
    }
}

/// The fault checker's transactions (issue 18): a consume-transform-produce worker reads the
/// fault topic in its own group (`read_committed`) and, per batch of up to
/// [`TxnChecker::BATCH`] inputs, commits one transaction holding an output per input, spread
/// over the [`TxnChecker::OUTPUT`] topic's partitions, together with the group's offsets.
/// Every output is `TAG|k/n|partition@offset`: the transaction's tag, its place in the
/// transaction and the input it came from. Before every fourth transaction the worker writes a
/// transaction of `abort|…` records to every output partition and aborts it. Any error ends the
/// worker's session; the next one's InitProducerId fences it (aborting what it left open) and
/// its consumer resumes from the committed offsets. A monitor reads the group's committed
/// offsets every 200 ms; none may go backwards. At the end the output is read `read_committed`:
/// no aborted record, every transaction all or none (every committed one all, none whose
/// commit was never asked for), no input's output twice, and every input below the group's
/// final committed offsets has its output.
struct TxnChecker {
    /// The input topic.
    input: &'static str,
    stop: Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    log: Arc<std::sync::Mutex<TxnLog>>,
    /// Per partition, the highest committed offset the monitor saw.
    seen: Arc<std::sync::Mutex<BTreeMap<i32, i64>>>,
    /// Committed offsets the monitor saw go backwards.
    regressions: Arc<std::sync::Mutex<Vec<String>>>,
}

/// What the transactional worker did, by transaction tag (see [`TxnChecker`]).
#[derive(Default)]
struct TxnLog {
    /// Transactions whose commit was acknowledged, with their record counts.
    committed: BTreeMap<String, usize>,
    /// Transactions whose commit was asked for but failed: committed or aborted, all or none.
    unknown: BTreeMap<String, usize>,
    /// Transactions whose commit was never asked for (the session failed first): none of it.
    abandoned: BTreeSet<String>,
    /// Transactions aborted on purpose.
    aborted: usize,
    /// Sessions ended by an error, with the last errors seen.
    failed_sessions: usize,
    last_errors: Vec<String>,
}

impl TxnChecker {
    const GROUP: &'static str = "fault-checker-txn";
    const TXN_ID: &'static str = "fault-checker-txn";
    /// The output topic and its partitions.
    const OUTPUT: &'static str = "faults-txn-out";
    const OUTPUT_PARTITIONS: i32 = 3;
    /// Most inputs per transaction.
    const BATCH: usize = 20;
    /// Pause after each committed transaction.
    const PACE: Duration = Duration::from_millis(300);
    /// Transactions the worker must commit after the faults before the checks.
    const AFTER_FAULTS: usize = 2;
    /// librdkafka's bound on each transactional call.
    const CALL: Duration = Duration::from_secs(10);

    fn consumer_config(bootstrap: &str) -> ClientConfig {
        let mut config = GroupChecker::config(bootstrap);
        config
            .set("group.id", Self::GROUP)
            .set(
                "isolation.level",
                std::env::var("CLUSTER_FAULT_TXN_ISOLATION")
                    .unwrap_or_else(|_| "read_committed".to_owned()),
            )
            .set("log_level", "3");
        config
    }

    /// Starts the worker, bootstrapped for each session on the brokers in `addresses` then
    /// (the test replaces a restarted broker's address, and a client bootstrapped only on
    /// brokers killed since could never connect), and the monitor.
    fn start(addresses: Arc<std::sync::Mutex<Vec<String>>>, input: &'static str) -> TxnChecker {
        let bootstrap = || addresses.lock().unwrap().join(",");
        let checker = TxnChecker {
            input,
            stop: Arc::default(),
            threads: Vec::new(),
            log: Arc::default(),
            seen: Arc::default(),
            regressions: Arc::default(),
        };
        let (stop, log) = (Arc::clone(&checker.stop), Arc::clone(&checker.log));
        let monitor_bootstrap = bootstrap();
        let worker = std::thread::spawn(move || {
            let bootstrap = || addresses.lock().unwrap().join(",");
            let mut session = 0usize;
            let mut clean = true;
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                session += 1;
                clean = match Self::session(&bootstrap(), input, session, &stop, &log) {
                    Ok(()) => true,
                    Err(e) => {
                        let mut log = log.lock().unwrap();
                        log.failed_sessions += 1;
                        log.last_errors.push(e);
                        if log.last_errors.len() > 5 {
                            log.last_errors.remove(0);
                        }
                        false
                    }
                };
                if !clean {
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
            if !clean {
                // A session that failed may have left its transaction open: a new producer's
                // InitProducerId aborts it, so the final read_committed read is not held up.
                Self::fence(&bootstrap());
            }
        });
        let monitor = monitor_committed(
            Self::consumer_config(&monitor_bootstrap),
            input,
            Arc::clone(&checker.stop),
            Arc::clone(&checker.seen),
            Arc::clone(&checker.regressions),
        );
        TxnChecker {
            threads: vec![worker, monitor],
            ..checker
        }
    }

    fn producer(bootstrap: &str) -> Result<BaseProducer<Logged>, String> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", bootstrap)
            .set("transactional.id", Self::TXN_ID)
            .set("transaction.timeout.ms", "10000")
            .set("linger.ms", "2")
            .set("topic.metadata.refresh.interval.ms", "500")
            .set("reconnect.backoff.max.ms", "500")
            .set_log_level(rdkafka::config::RDKafkaLogLevel::Critical);
        // To see the producer's transaction steps: CLUSTER_TXN_DEBUG=eos,protocol.
        if let Ok(debug) = std::env::var("CLUSTER_TXN_DEBUG") {
            config
                .set("debug", debug)
                .set_log_level(rdkafka::config::RDKafkaLogLevel::Debug);
        }
        let producer: BaseProducer<Logged> = config
            .create_with_context(Logged)
            .map_err(|e| e.to_string())?;
        producer
            .init_transactions(Self::CALL)
            .map_err(|e| format!("init: {e}"))?;
        Ok(producer)
    }

    /// Until a new producer of the transactional id initialises (bounded by [`STEP`]).
    fn fence(bootstrap: &str) {
        let deadline = Instant::now() + STEP;
        while let Err(e) = Self::producer(bootstrap) {
            assert!(
                Instant::now() < deadline,
                "the transactional id stays unusable: {e}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Sends `value` to `partition` of the output topic, waiting out a full queue.
    fn send(producer: &BaseProducer<Logged>, partition: i32, value: &str) -> Result<(), String> {
        let deadline = Instant::now() + Self::CALL;
        loop {
            let record = BaseRecord::<(), _>::to(Self::OUTPUT)
                .partition(partition)
                .payload(value);
            match producer.send(record) {
                Ok(()) => return Ok(()),
                Err((e, _)) if Instant::now() > deadline => return Err(format!("send: {e}")),
                Err(_) => {
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
    }

    /// One consume-transform-produce session; returns on `stop` between transactions, or at
    /// the first error.
    fn session(
        bootstrap: &str,
        input: &str,
        session: usize,
        stop: &std::sync::atomic::AtomicBool,
        log: &std::sync::Mutex<TxnLog>,
    ) -> Result<(), String> {
        let consumer: BaseConsumer = Self::consumer_config(bootstrap)
            .create()
            .map_err(|e| e.to_string())?;
        consumer.subscribe(&[input]).map_err(|e| e.to_string())?;
        let producer = Self::producer(bootstrap)?;
        let mut txn = 0usize;
        while !stop.load(std::sync::atomic::Ordering::Acquire) {
            let mut batch = Vec::new();
            while batch.len() < Self::BATCH {
                match consumer.poll(Duration::from_millis(200)) {
                    Some(Ok(m)) => batch.push((m.partition(), m.offset())),
                    Some(Err(e)) => return Err(format!("consume: {e}")),
                    None => break,
                }
            }
            if batch.is_empty() {
                continue;
            }
            txn += 1;
            let tag = format!("s{session}-t{txn}");
            if txn % 4 == 1 {
                producer.begin_transaction().map_err(|e| e.to_string())?;
                for p in 0..Self::OUTPUT_PARTITIONS {
                    Self::send(&producer, p, &format!("abort|{tag}|{p}"))?;
                }
                producer
                    .flush(Self::CALL)
                    .map_err(|e| format!("flush: {e}"))?;
                producer
                    .abort_transaction(Self::CALL)
                    .map_err(|e| format!("abort: {e}"))?;
                log.lock().unwrap().aborted += 1;
            }
            log.lock().unwrap().abandoned.insert(tag.clone());
            producer.begin_transaction().map_err(|e| e.to_string())?;
            let n = batch.len();
            for (k, (partition, offset)) in batch.iter().enumerate() {
                let out = i32::try_from(k).unwrap() % Self::OUTPUT_PARTITIONS;
                Self::send(
                    &producer,
                    out,
                    &format!("{tag}|{k}/{n}|{partition}@{offset}"),
                )?;
            }
            producer
                .flush(Self::CALL)
                .map_err(|e| format!("flush: {e}"))?;
            let position = consumer.position().map_err(|e| e.to_string())?;
            let metadata = consumer
                .group_metadata()
                .ok_or_else(|| "no group metadata".to_owned())?;
            producer
                .send_offsets_to_transaction(&position, &metadata, Self::CALL)
                .map_err(|e| format!("send offsets: {e}"))?;
            {
                let mut log = log.lock().unwrap();
                log.abandoned.remove(&tag);
                log.unknown.insert(tag.clone(), n);
            }
            let committed = producer.commit_transaction(Self::CALL);
            if committed.is_ok() {
                let mut log = log.lock().unwrap();
                log.unknown.remove(&tag);
                log.committed.insert(tag, n);
            }
            committed.map_err(|e| format!("commit: {e}"))?;
            // Paced: the checker proves atomicity, not throughput, and the brokers under
            // faults on a loaded machine must keep serving the other checks.
            std::thread::sleep(Self::PACE);
        }
        Ok(())
    }

    fn committed(&self) -> usize {
        self.log.lock().unwrap().committed.len()
    }

    /// Once the faults are over: waits until the worker committed [`Self::AFTER_FAULTS`] more
    /// transactions. Returns how many it had committed during the faults.
    fn settle(&self) -> usize {
        let deadline = Instant::now() + STEP;
        let during = self.committed();
        while self.committed() < during + Self::AFTER_FAULTS {
            let log = self.log.lock().unwrap();
            assert!(
                Instant::now() < deadline,
                "{} transactions committed after the faults, {during} before ({} sessions \
                 failed, last errors {:?})",
                log.committed.len() - during,
                log.failed_sessions,
                log.last_errors
            );
            drop(log);
            std::thread::sleep(Duration::from_millis(100));
        }
        during
    }

    /// Stops the worker and the monitor (bounded), reads the output `read_committed` through
    /// the live brokers `bootstrap` and checks it (see [`TxnChecker`]). A summary.
    fn finish(self, bootstrap: &str, during: usize) -> String {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        let deadline = Instant::now() + STEP;
        for t in self.threads {
            while !t.is_finished() {
                assert!(
                    Instant::now() < deadline,
                    "the transactional worker did not stop"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            t.join().unwrap();
        }
        let log = std::mem::take(&mut *self.log.lock().unwrap());
        assert!(
            !log.committed.is_empty(),
            "no transaction committed ({} sessions failed, last errors {:?})",
            log.failed_sessions,
            log.last_errors
        );
        let regressions = self.regressions.lock().unwrap().clone();
        assert!(
            regressions.is_empty(),
            "transactionally committed offsets went backwards: {regressions:?}"
        );
        let reader: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", "fault-checker-txn-reader")
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .set("enable.partition.eof", "true")
            .set("log_level", "3")
            .create()
            .unwrap();
        let output = read_to_end(&reader, Self::OUTPUT, Self::OUTPUT_PARTITIONS);
        // tag → its records' places; input → the tags that carry its output.
        let mut txns: BTreeMap<String, (usize, BTreeSet<usize>)> = BTreeMap::new();
        let mut inputs: BTreeMap<(i32, i64), Vec<String>> = BTreeMap::new();
        for value in &output {
            assert!(!value.starts_with("abort|"), "aborted record read: {value}");
            let mut fields = value.split('|');
            let (Some(tag), Some(place), Some(from), None) =
                (fields.next(), fields.next(), fields.next(), fields.next())
            else {
                panic!("unexpected output {value}");
            };
            let (k, n) = place.split_once('/').unwrap();
            let (k, n): (usize, usize) = (k.parse().unwrap(), n.parse().unwrap());
            let (p, o) = from.split_once('@').unwrap();
            let entry = txns.entry(tag.to_owned()).or_insert((n, BTreeSet::new()));
            assert!(entry.1.insert(k), "{value} read twice");
            inputs
                .entry((p.parse().unwrap(), o.parse().unwrap()))
                .or_default()
                .push(tag.to_owned());
        }
        for (tag, (n, places)) in &txns {
            assert_eq!(
                places.len(),
                *n,
                "transaction {tag} partly visible: {places:?} of {n}"
            );
            assert!(
                log.committed.contains_key(tag) || log.unknown.contains_key(tag),
                "transaction {tag} visible though its commit was never asked for"
            );
        }
        for tag in log.committed.keys() {
            assert!(
                txns.contains_key(tag),
                "committed transaction {tag} not visible"
            );
        }
        for (input, tags) in &inputs {
            assert_eq!(tags.len(), 1, "input {input:?} transformed twice: {tags:?}");
        }
        // Everything below the group's committed offsets was transformed, exactly once.
        let group: BaseConsumer = Self::consumer_config(bootstrap).create().unwrap();
        let committed: BTreeMap<i32, i64> = loop {
            if let Ok(list) = group.committed_offsets(
                GroupChecker::wanted(self.input, &group),
                Duration::from_secs(10),
            ) {
                let read: BTreeMap<i32, i64> = list
                    .elements()
                    .iter()
                    .filter_map(|e| match e.offset() {
                        Offset::Offset(o) => Some((e.partition(), o)),
                        _ => None,
                    })
                    .collect();
                if !read.is_empty() {
                    break read;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the group's offsets not readable"
            );
            std::thread::sleep(Duration::from_millis(200));
        };
        for (p, c) in &committed {
            let missing: Vec<i64> = (0..*c)
                .filter(|o| !inputs.contains_key(&(*p, *o)))
                .collect();
            assert!(
                missing.is_empty(),
                "inputs of partition {p} below the committed offset {c} without output: \
                 {missing:?}"
            );
        }
        format!(
            "{} transactions committed ({during} during the faults), {} of unknown outcome, {} \
             abandoned, {} aborted on purpose, {} failed sessions, {} outputs read_committed, \
             the group's offsets {committed:?}",
            log.committed.len(),
            log.unknown.len(),
            log.abandoned.len(),
            log.aborted,
            log.failed_sessions,
            output.len()
        )
    }
}

/// The transactional producer's context: librdkafka's log lines go to stderr (critical ones
/// only, all of them with `CLUSTER_TXN_DEBUG=eos,protocol`, say).
struct Logged;

impl rdkafka::ClientContext for Logged {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, line: &str) {
        eprintln!("librdkafka {level:?} {fac}: {line}");
    }
}

impl rdkafka::producer::ProducerContext for Logged {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: ()) {}
}

/// A monitor thread: reads the committed offsets of `config`'s group for every partition of
/// `topic` every 200 ms until `stop`, keeping the highest seen per partition in `seen` and
/// every decrease in `regressions`.
fn monitor_committed(
    config: ClientConfig,
    topic: &'static str,
    stop: Arc<std::sync::atomic::AtomicBool>,
    seen: Arc<std::sync::Mutex<BTreeMap<i32, i64>>>,
    regressions: Arc<std::sync::Mutex<Vec<String>>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let monitor: BaseConsumer = config.create().unwrap();
        while !stop.load(std::sync::atomic::Ordering::Acquire) {
            if let Ok(list) = monitor.committed_offsets(
                GroupChecker::wanted(topic, &monitor),
                Duration::from_secs(3),
            ) {
                let mut seen = seen.lock().unwrap();
                for e in list.elements() {
                    let Offset::Offset(now) = e.offset() else {
                        continue;
                    };
                    if e.error().is_err() {
                        continue;
                    }
                    let was = seen.entry(e.partition()).or_insert(now);
                    if now < *was {
                        regressions
                            .lock()
                            .unwrap()
                            .push(format!("partition {}: {was} -> {now}", e.partition()));
                    }
                    *was = (*was).max(now);
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    })
}

/// Every value of every partition of `topic` as `consumer` (with `enable.partition.eof`)
/// reads it from the beginning, up to the high watermarks seen when the read starts.
fn read_to_end(consumer: &BaseConsumer, topic: &str, partitions: i32) -> Vec<String> {
    let mut ends = BTreeMap::new();
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        let (_, high) = consumer.fetch_watermarks(topic, p, STEP).unwrap();
        ends.insert(p, high);
        assignment
            .add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let mut values = Vec::new();
    let mut at_end = BTreeSet::new();
    let started = Instant::now();
    while at_end.len() < ends.len() {
        assert!(
            started.elapsed() < STEP,
            "read_committed read stalled: {ends:?}"
        );
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                values.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                let position = consumer.position().unwrap();
                let reached = position
                    .find_partition(topic, p)
                    .and_then(|e| match e.offset() {
                        Offset::Offset(o) => Some(o),
                        _ => None,
                    })
                    .is_some_and(|o| ends.get(&p).is_some_and(|end| o >= *end));
                if reached {
                    at_end.insert(p);
                }
            }
            Some(Err(_)) | None => {}
        }
    }
    values
}
