//! Transactions in cluster mode (issue 18): three `strom serve` processes over one real
//! PostgreSQL and one moto S3 server, librdkafka clients.
//!
//! A consume-transform-produce worker (a read_committed consumer in a group, a transactional
//! producer committing its outputs and the consumer's offsets in one transaction) turns every
//! input record `i` into the output `out-i` while the broker coordinating its transactional id
//! is killed with `kill -9` and later restarted. The output topic read `read_committed` holds
//! each input's result exactly once; `strom cluster status` lists the 16 transaction
//! coordinator shards, and the holder's `/metrics` shows the id's shard; `strom txn list` and
//! `strom txn describe` through a broker that does not coordinate the id find it.

mod cluster_common;

use cluster_common::{Broker, ClusterServe};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, FutureProducer, FutureRecord, Producer};
use rdkafka::{Message, Offset};
use strom_broker::storage::coordinator_shard;
use strom_cluster::coordinator::{CoordinatorKind, holder_node};
use strom_cluster::testkit::{MotoServer, PostgresServer};

const BUCKET: &str = "strom-cluster-txn";
const INPUT: &str = "ctp-in";
const OUTPUT: &str = "ctp-out";
const GROUP: &str = "ctp-group";
const TXN_ID: &str = "ctp-txn";
const PARTITIONS: i32 = 3;
/// Input records.
const N: usize = 300;
const LEASE_TTL_MS: u64 = 2_000;
/// Bound of the whole scenario once the brokers run.
const BUDGET: Duration = Duration::from_secs(90);
/// librdkafka's per-call timeout in the worker.
const CALL: Duration = Duration::from_secs(10);

/// Starts broker `n` of this test's cluster.
fn start(n: usize, pg: &PostgresServer, s3: &MotoServer, data: &Path) -> Broker {
    Broker::start(&ClusterServe {
        n,
        pg,
        s3,
        data,
        bucket: BUCKET,
        prefix: "txn",
        lease_ttl_ms: LEASE_TTL_MS,
        flush_delay_ms: 10,
        log: std::env::var("CLUSTER_TXN_LOG").unwrap_or_else(|_| "warn".to_owned()),
        extra: vec!["--group-initial-rebalance-delay-ms".into(), "0".into()],
    })
}

/// The holder (node id) and epoch of the transactional id's coordinator lease, if held.
async fn txn_lease(pg: &PostgresServer) -> Option<(i32, i64)> {
    let status = strom_cluster::backend::status_at(&pg.url()).await.ok()?;
    let name = CoordinatorKind::Txn.lease_name(coordinator_shard(TXN_ID));
    status
        .leases
        .iter()
        .find(|l| l.name == name && l.expires_in_secs > 0.0)
        .and_then(|l| Some((holder_node(&l.holder)?, l.epoch)))
}

/// Waits (within `deadline`) until `check` gives a value.
async fn until<T, F: Future<Output = Option<T>>>(
    deadline: Instant,
    what: &str,
    mut check: impl FnMut() -> F,
) -> T {
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What the worker did, for the test's progress checks.
#[derive(Default)]
struct Progress {
    /// Transactions committed.
    committed: AtomicUsize,
    /// Client sessions restarted after an error.
    restarts: AtomicUsize,
    stop: AtomicBool,
}

/// One consume-transform-produce session: a read_committed consumer and a transactional
/// producer. Any error ends it; the worker then starts a new one (the new producer's
/// InitProducerId fences the old one and aborts its open transaction, and the new consumer
/// resumes from the committed offsets).
fn session(bootstrap: &str, progress: &Progress) -> Result<(), String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", GROUP)
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("topic.metadata.refresh.interval.ms", "500")
        .set("reconnect.backoff.max.ms", "500")
        .set("log_level", "3")
        .create()
        .map_err(|e| e.to_string())?;
    consumer.subscribe(&[INPUT]).map_err(|e| e.to_string())?;
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("transactional.id", TXN_ID)
        .set("transaction.timeout.ms", "10000")
        .set("linger.ms", "1")
        .set("topic.metadata.refresh.interval.ms", "500")
        .set("reconnect.backoff.max.ms", "500")
        .set("log_level", "3")
        .create()
        .map_err(|e| e.to_string())?;
    let producer = Arc::new(producer);
    producer
        .init_transactions(CALL)
        .map_err(|e| format!("init: {e}"))?;
    while !progress.stop.load(Ordering::Acquire) {
        let mut batch = Vec::new();
        while batch.len() < 10 {
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => batch.push(m.detach()),
                Some(Err(e)) => return Err(format!("consume: {e}")),
                None => break,
            }
        }
        if batch.is_empty() {
            continue;
        }
        producer.begin_transaction().map_err(|e| e.to_string())?;
        for m in &batch {
            let input = std::str::from_utf8(m.payload().unwrap_or_default()).unwrap_or("?");
            let value = format!("out-{input}");
            let deadline = Instant::now() + CALL;
            loop {
                match producer.send(BaseRecord::<(), _>::to(OUTPUT).payload(&value)) {
                    Ok(()) => break,
                    Err((e, _)) if Instant::now() > deadline => {
                        return Err(format!("send: {e}"));
                    }
                    Err(_) => {
                        producer.poll(Duration::from_millis(10));
                    }
                }
            }
        }
        producer.flush(CALL).map_err(|e| format!("flush: {e}"))?;
        let position = consumer.position().map_err(|e| e.to_string())?;
        let metadata = consumer
            .group_metadata()
            .ok_or_else(|| "no group metadata".to_owned())?;
        let (p, at) = (Arc::clone(&producer), position.clone());
        bounded(move || p.send_offsets_to_transaction(&at, &metadata, CALL))
            .ok_or_else(|| "send offsets: hung past its timeout".to_owned())?
            .map_err(|e| format!("send offsets: {e}"))?;
        producer
            .commit_transaction(CALL)
            .map_err(|e| format!("commit: {e}"))?;
        let n = progress.committed.fetch_add(1, Ordering::Relaxed);
        let at: Vec<(i32, Offset)> = position
            .elements()
            .iter()
            .map(|e| (e.partition(), e.offset()))
            .collect();
        eprintln!("transaction {n} committed offsets {at:?}");
    }
    Ok(())
}

/// `call` on a thread of its own, waited for at most [`CALL`] and a margin; `None` if it did
/// not return by then. librdkafka's `rd_kafka_send_offsets_to_transaction` can block past its
/// own timeout when the group coordinator it cached left Metadata (a killed broker does, as in
/// Kafka once a broker is fenced): librdkafka issues 5456 and 5511. The session then ends and
/// leaves the hung call (and its producer) behind; the next session's InitProducerId fences
/// that producer, so nothing it might still do can commit.
fn bounded<T: Send + 'static>(call: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(call());
    });
    rx.recv_timeout(CALL + Duration::from_secs(5)).ok()
}

/// The worker: sessions until told to stop.
fn worker(bootstrap: String, progress: Arc<Progress>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !progress.stop.load(Ordering::Acquire) {
            if let Err(e) = session(&bootstrap, &progress) {
                eprintln!("consume-transform-produce session ended: {e}");
                progress.restarts.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    })
}

/// The output topic's values read with `isolation`, until `want` distinct values were seen or
/// `deadline` passed (with a quiet second after the last record, so duplicates show up).
fn read_output(
    bootstrap: &str,
    isolation: &str,
    want: usize,
    deadline: Instant,
) -> Vec<(String, i32, i64)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("reader-{isolation}"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .set("reconnect.backoff.max.ms", "500")
        .set("log_level", "3")
        .create()
        .unwrap();
    cluster_common::assign_from_beginning(&consumer, OUTPUT, PARTITIONS);
    let mut values = Vec::new();
    let mut distinct = BTreeSet::new();
    let mut quiet_since = Instant::now();
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let v = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
                distinct.insert(v.clone());
                values.push((v, m.partition(), m.offset()));
                quiet_since = Instant::now();
            }
            Some(Err(_)) => {}
            None => {
                if distinct.len() >= want && quiet_since.elapsed() > Duration::from_secs(1) {
                    break;
                }
            }
        }
    }
    values
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn consume_transform_produce_survives_coordinator_failover_exactly_once() {
    let (pg, s3) = tokio::task::spawn_blocking(|| {
        let pg = PostgresServer::start().expect("start postgres");
        let s3 = MotoServer::start().expect("start moto");
        s3.create_bucket(BUCKET).expect("create bucket");
        (pg, s3)
    })
    .await
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut brokers: Vec<Broker> = {
        let (pg, s3, dir) = (&pg, &s3, data.path());
        std::thread::scope(|s| {
            let handles: Vec<_> = (1..=3)
                .map(|n| s.spawn(move || start(n, pg, s3, dir)))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        })
    };
    let deadline = Instant::now() + BUDGET;
    let all: Vec<String> = brokers.iter().map(|b| b.kafka.clone()).collect();
    let bootstrap = all.join(",");

    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &all[0])
        .create()
        .unwrap();
    let created = admin
        .create_topics(
            &[
                NewTopic::new(INPUT, PARTITIONS, TopicReplication::Fixed(1)),
                NewTopic::new(OUTPUT, PARTITIONS, TopicReplication::Fixed(1)),
            ],
            &AdminOptions::new(),
        )
        .await
        .unwrap();
    assert!(created.iter().all(Result::is_ok), "{created:?}");
    let input: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .unwrap();
    let deliveries: Vec<_> = (0..N)
        .map(|i| {
            let value = i.to_string();
            let partition = i32::try_from(i).unwrap() % PARTITIONS;
            input
                .send_result(
                    FutureRecord::<(), _>::to(INPUT)
                        .partition(partition)
                        .payload(&value),
                )
                .unwrap_or_else(|(e, _)| panic!("record {i} not enqueued: {e}"))
        })
        .collect();
    for d in deliveries {
        assert!(matches!(d.await, Ok(Ok(_))), "input not acknowledged");
    }

    // The transactional id's shard is held by one of the brokers; `strom cluster status`
    // lists every transaction shard's coordinator among them.
    let (holder, epoch) = until(deadline, "the transaction coordinator lease", || {
        txn_lease(&pg)
    })
    .await;
    let status = Command::new(env!("CARGO_BIN_EXE_strom"))
        .args(["cluster", "status", "--format", "json"])
        .args(["--cluster-postgres", &pg.url()])
        .env_remove("STROM_CONFIG")
        .output()
        .unwrap();
    assert!(status.status.success(), "{status:?}");
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let shards = status["txn_coordinators"].as_array().unwrap();
    assert_eq!(shards.len(), 16, "{status}");
    let ids: BTreeSet<i64> = brokers.iter().map(|b| i64::from(b.node_id)).collect();
    for shard in shards {
        assert!(ids.contains(&shard["node_id"].as_i64().unwrap()), "{shard}");
    }

    let progress = Arc::new(Progress::default());
    let worker = worker(bootstrap.clone(), Arc::clone(&progress));
    // Some transactions commit; then the id's coordinator (as it is now) is killed.
    until(deadline, "transactions before the kill", || async {
        (progress.committed.load(Ordering::Relaxed) >= 5).then_some(())
    })
    .await;
    let (holder, epoch) = txn_lease(&pg).await.unwrap_or((holder, epoch));
    let victim = brokers.iter().position(|b| b.node_id == holder).unwrap();
    // Its /metrics show the id's shard at the lease epoch.
    let shard = coordinator_shard(TXN_ID).0;
    let scraped = brokers[victim].metrics();
    assert!(
        scraped.contains(&format!(
            "strom_txn_coordinator_shard_epoch{{shard=\"{shard}\"}} {epoch}"
        )),
        "{scraped}"
    );
    let before_kill = progress.committed.load(Ordering::Relaxed);
    brokers[victim].kill();
    // Another broker takes the shard over, and transactions go on.
    let (taker, _) = until(deadline, "the transaction shard taken over", || async {
        txn_lease(&pg).await.filter(|(node, _)| *node != holder)
    })
    .await;
    assert_ne!(taker, holder);
    until(deadline, "transactions after the kill", || async {
        (progress.committed.load(Ordering::Relaxed) >= before_kill + 5).then_some(())
    })
    .await;
    // The killed broker comes back (with a new node incarnation).
    brokers[victim] = start(victim + 1, &pg, &s3, data.path());

    // Every input's result, exactly once, read read_committed through another broker.
    let reader = all[(victim + 1) % all.len()].clone();
    let want = N;
    let committed =
        tokio::task::spawn_blocking(move || read_output(&reader, "read_committed", want, deadline));
    let output = committed.await.unwrap();
    progress.stop.store(true, Ordering::Release);
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for (v, _, _) in &output {
        *counts.entry(v.as_str()).or_default() += 1;
    }
    let missing: Vec<usize> = (0..N)
        .filter(|i| !counts.contains_key(format!("out-{i}").as_str()))
        .collect();
    let duplicated: Vec<(&&str, &usize)> = counts.iter().filter(|(_, c)| **c > 1).collect();
    assert!(missing.is_empty(), "missing outputs: {missing:?}");
    let placed: Vec<&(String, i32, i64)> = output
        .iter()
        .filter(|(v, _, _)| counts.get(v.as_str()).is_some_and(|c| *c > 1))
        .collect();
    assert!(
        duplicated.is_empty(),
        "duplicated outputs: {duplicated:?} (value, partition, offset): {placed:?}"
    );
    assert_eq!(output.len(), N);
    tokio::task::spawn_blocking(move || worker.join().unwrap())
        .await
        .unwrap();
    // `strom txn list` through a broker that does not coordinate the id still lists it (the
    // CLI asks every broker), and `strom txn describe` through it finds the coordinator.
    let (holder, _) = until(deadline, "the transaction coordinator lease", || {
        txn_lease(&pg)
    })
    .await;
    let other = brokers
        .iter()
        .find(|b| b.node_id != holder)
        .map(|b| b.kafka.clone())
        .unwrap();
    // Leases may still be moving to the restarted broker: while a shard is between holders
    // nobody lists its ids, so both calls are retried until they find it.
    let txn_cli = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_strom"))
            .arg("txn")
            .args(args)
            .args(["--format", "json", "-b", &other])
            .env_remove("STROM_CONFIG")
            .env_remove("STROM_BOOTSTRAP")
            .output()
            .unwrap();
        out.status
            .success()
            .then(|| serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap())
            .ok_or_else(|| format!("strom txn {args:?}: {out:?}"))
    };
    loop {
        let listed = txn_cli(&["list"]).and_then(|listed| {
            listed
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t["transactional_id"] == TXN_ID)
                .then_some(())
                .ok_or_else(|| listed.to_string())
        });
        let described = listed.and_then(|()| {
            let d = txn_cli(&["describe", TXN_ID])?;
            (d["transactional_id"] == TXN_ID)
                .then_some(())
                .ok_or_else(|| d.to_string())
        });
        match described {
            Ok(()) => break,
            Err(e) => assert!(Instant::now() < deadline, "strom txn list/describe: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "cluster consume-transform-produce: {} transactions, {} session restarts",
        progress.committed.load(Ordering::Relaxed),
        progress.restarts.load(Ordering::Relaxed)
    );
}
