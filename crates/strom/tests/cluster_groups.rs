//! Consumer groups in cluster mode (issue 18): three `strom serve` processes over one real
//! PostgreSQL and one moto S3 server, librdkafka clients.
//!
//! - a consumer group of three members, each bootstrapped on a different broker, consumes a
//!   topic while it is produced to and the broker coordinating the group is killed with
//!   `kill -9`, and later restarted: every record is consumed, the committed offsets seen
//!   through any broker never go backwards, and the group goes on from them after the
//!   failover (re-reading at most what was not committed yet). Three flavours: the classic
//!   protocol with dynamic members, with static members (`group.instance.id`), and the KIP-848
//!   consumer protocol (`group.protocol=consumer`);
//! - `strom cluster status --format json` lists the 16 coordinator shards, each on one of the
//!   brokers, and the holder's `/metrics` show the group's shard at its epoch;
//! - a broker that does not hold the group's coordinator lease answers OffsetFetch and
//!   OffsetCommit with NOT_COORDINATOR, also the former holder once its lease was taken from
//!   it in PostgreSQL; when the lease comes back, the offsets are all there.

mod cluster_common;

use cluster_common::{Broker, ClusterServe};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::{
    ApiKey, GroupId, OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest,
    OffsetFetchResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use strom_broker::storage::coordinator_shard;
use strom_cluster::coordinator::{holder_node, lease_name};
use strom_cluster::testkit::{MotoServer, PostgresServer};
use strom_kafka::client::Client;

const BUCKET: &str = "strom-cluster-groups";
const TOPIC: &str = "events";
const GROUP: &str = "failover-group";
const PARTITIONS: i32 = 6;
/// Records produced in each of the three phases (before the kill, after it, after the restart).
const PHASE: usize = 600;
/// Members commit after this many records (and whenever they are idle).
const COMMIT_EVERY: usize = 20;
const LEASE_TTL_MS: u64 = 2_000;
/// Bound of the whole scenario once the brokers run.
const BUDGET: Duration = Duration::from_secs(60);
const NOT_COORDINATOR: i16 = 16;

/// How the group's members join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavour {
    /// Classic protocol, dynamic members.
    Classic,
    /// Classic protocol, static members (`group.instance.id`).
    Static,
    /// KIP-848 (`group.protocol=consumer`).
    Consumer,
}

/// One scenario at a time: each starts PostgreSQL, moto and three brokers.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Starts broker `n` of this test's cluster.
fn start(n: usize, pg: &PostgresServer, s3: &MotoServer, data: &Path) -> Broker {
    Broker::start(&ClusterServe {
        n,
        pg,
        s3,
        data,
        bucket: BUCKET,
        prefix: "groups",
        lease_ttl_ms: LEASE_TTL_MS,
        flush_delay_ms: 10,
        log: std::env::var("CLUSTER_GROUPS_LOG").unwrap_or_else(|_| "warn".to_owned()),
        extra: vec![
            "--group-initial-rebalance-delay-ms".into(),
            "0".into(),
            "--config".into(),
            data.join("strom.toml").display().to_string(),
        ],
    })
}

/// The holder (node id) and epoch of the group's coordinator lease, if someone holds it.
async fn coordinator_lease(pg: &PostgresServer) -> Option<(i32, i64)> {
    let status = strom_cluster::backend::status_at(&pg.url()).await.ok()?;
    let name = lease_name(coordinator_shard(GROUP));
    status
        .leases
        .iter()
        .find(|l| l.name == name && l.expires_in_secs > 0.0)
        .and_then(|l| Some((holder_node(&l.holder)?, l.epoch)))
}

/// Waits until the group's coordinator lease is held by its preferred broker (index `shard
/// mod 3` of the sorted node ids); its node id and the lease epoch.
async fn preferred_holder(
    pg: &PostgresServer,
    brokers: &[Broker],
    deadline: Instant,
) -> (i32, i64) {
    let mut ids: Vec<i32> = brokers.iter().map(|b| b.node_id).collect();
    ids.sort_unstable();
    let shard = usize::try_from(coordinator_shard(GROUP).0).unwrap();
    let preferred = ids[shard % ids.len()];
    until(
        deadline,
        "the coordinator lease on its preferred broker",
        || async {
            coordinator_lease(pg)
                .await
                .filter(|(node, _)| *node == preferred)
        },
    )
    .await
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

/// OffsetFetch (v8) of the group sent to broker `addr` itself: the group's error code and its
/// committed offsets.
async fn offset_fetch(addr: &str) -> Option<(i16, BTreeMap<i32, i64>)> {
    let mut client = Client::connect(addr).await.ok()?;
    let request = OffsetFetchRequest::default().with_groups(vec![
        OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(StrBytes::from_static_str(GROUP)))
            .with_topics(None),
    ]);
    let response: OffsetFetchResponse = client.call(ApiKey::OffsetFetch, 8, &request).await.ok()?;
    let group = response.groups.first()?;
    let offsets = group
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter())
        .filter(|p| p.committed_offset >= 0)
        .map(|p| (p.partition_index, p.committed_offset))
        .collect();
    Some((group.error_code, offsets))
}

/// A simple-consumer OffsetCommit (v8) of partition 0 sent to broker `addr` itself: its code.
async fn offset_commit(addr: &str, offset: i64) -> Option<i16> {
    let mut client = Client::connect(addr).await.ok()?;
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str(GROUP)))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![
            OffsetCommitRequestTopic::default()
                .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
                .with_partitions(vec![
                    OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(offset),
                ]),
        ]);
    let response: OffsetCommitResponse =
        client.call(ApiKey::OffsetCommit, 8, &request).await.ok()?;
    Some(response.topics.first()?.partitions.first()?.error_code)
}

fn producer(bootstrap: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000")
        .set("topic.metadata.refresh.interval.ms", "500")
        .set("reconnect.backoff.max.ms", "500")
        .create()
        .unwrap()
}

/// Produces records `from..to` (value `i`, partition `i % PARTITIONS`); all acknowledged.
async fn produce(producer: &FutureProducer, from: usize, to: usize) {
    let mut deliveries = Vec::with_capacity(to - from);
    for i in from..to {
        let value = i.to_string();
        let partition = i32::try_from(i).unwrap() % PARTITIONS;
        let record = FutureRecord::<(), _>::to(TOPIC)
            .partition(partition)
            .payload(&value);
        match producer.send_result(record) {
            Ok(delivery) => deliveries.push(delivery),
            Err((e, _)) => panic!("record {i} not enqueued: {e}"),
        }
    }
    for (i, delivery) in deliveries.into_iter().enumerate() {
        match tokio::time::timeout(BUDGET, delivery).await {
            Ok(Ok(Ok(_))) => {}
            other => panic!("record {} not acknowledged: {other:?}", from + i),
        }
    }
}

/// What the members consumed (record values, with repeats) and whether to stop.
#[derive(Default)]
struct Shared {
    consumed: Mutex<Vec<usize>>,
    stop: AtomicBool,
    /// Committed offsets that went backwards (or vanished), as the monitor saw them.
    regressions: Mutex<Vec<String>>,
    /// The highest committed offset seen per partition.
    committed: Mutex<BTreeMap<i32, i64>>,
}

/// One group member bootstrapped on `bootstrap`: consumes, commits every [`COMMIT_EVERY`]
/// records and when idle, until told to stop.
fn member(
    n: usize,
    flavour: Flavour,
    bootstrap: String,
    shared: Arc<Shared>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", GROUP)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("topic.metadata.refresh.interval.ms", "500")
            .set("reconnect.backoff.max.ms", "500");
        match flavour {
            // Session and heartbeat timing are the broker's (strom.toml).
            Flavour::Consumer => config.set("group.protocol", "consumer"),
            Flavour::Classic | Flavour::Static => config
                .set("session.timeout.ms", "6000")
                .set("heartbeat.interval.ms", "500"),
        };
        if flavour == Flavour::Static {
            config.set("group.instance.id", format!("member-{n}"));
        }
        let consumer: BaseConsumer = config.create().unwrap();
        consumer.subscribe(&[TOPIC]).unwrap();
        let mut uncommitted = 0;
        while !shared.stop.load(Ordering::Acquire) {
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    let value: usize = std::str::from_utf8(m.payload().unwrap())
                        .unwrap()
                        .parse()
                        .unwrap();
                    shared.consumed.lock().unwrap().push(value);
                    uncommitted += 1;
                    if uncommitted >= COMMIT_EVERY
                        && consumer.commit_consumer_state(CommitMode::Sync).is_ok()
                    {
                        uncommitted = 0;
                    }
                }
                // Errors during a failover (coordinator gone, rebalances) are retried.
                Some(Err(_)) => {}
                None => {
                    if uncommitted > 0 && consumer.commit_consumer_state(CommitMode::Sync).is_ok() {
                        uncommitted = 0;
                    }
                }
            }
        }
        consumer.unsubscribe();
    })
}

/// Reads the group's committed offsets through librdkafka (which finds the coordinator
/// itself) every 200 ms and records any that went backwards or disappeared.
fn monitor(bootstrap: String, shared: Arc<Shared>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", GROUP)
            .set("enable.auto.commit", "false")
            .set("reconnect.backoff.max.ms", "500")
            .create()
            .unwrap();
        let mut wanted = TopicPartitionList::new();
        for p in 0..PARTITIONS {
            wanted.add_partition(TOPIC, p);
        }
        while !shared.stop.load(Ordering::Acquire) {
            if let Ok(list) = consumer.committed_offsets(wanted.clone(), Duration::from_secs(3)) {
                let mut committed = shared.committed.lock().unwrap();
                for e in list.elements() {
                    if e.error().is_err() {
                        continue;
                    }
                    let before = committed.get(&e.partition()).copied();
                    match (e.offset(), before) {
                        (Offset::Offset(now), Some(was)) if now < was => {
                            shared
                                .regressions
                                .lock()
                                .unwrap()
                                .push(format!("partition {}: {was} -> {now}", e.partition()));
                        }
                        (Offset::Offset(now), _) => {
                            committed.insert(e.partition(), now);
                        }
                        (_, Some(was)) => shared
                            .regressions
                            .lock()
                            .unwrap()
                            .push(format!("partition {}: {was} -> none", e.partition())),
                        (_, None) => {}
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    })
}

/// Waits until every record below `produced` was consumed and the committed offsets reached
/// the end of every partition.
async fn until_caught_up(shared: &Shared, produced: usize, deadline: Instant, what: &str) {
    let per_partition = i64::try_from(produced).unwrap() / i64::from(PARTITIONS);
    until(deadline, what, || async {
        let consumed: BTreeSet<usize> = shared.consumed.lock().unwrap().iter().copied().collect();
        let committed = shared.committed.lock().unwrap().clone();
        let all_consumed = (0..produced).all(|i| consumed.contains(&i));
        let all_committed =
            (0..PARTITIONS).all(|p| committed.get(&p).copied().unwrap_or(-1) >= per_partition);
        if Instant::now() + Duration::from_millis(200) >= deadline {
            eprintln!(
                "{what}: {} of {produced} consumed, committed {committed:?}",
                (0..produced).filter(|i| consumed.contains(i)).count()
            );
        }
        (all_consumed && all_committed).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn classic_group_survives_coordinator_failover() {
    failover(Flavour::Classic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn static_group_survives_coordinator_failover() {
    failover(Flavour::Static).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn consumer_protocol_group_survives_coordinator_failover() {
    failover(Flavour::Consumer).await;
}

async fn failover(flavour: Flavour) {
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
    std::fs::write(
        data.path().join("strom.toml"),
        "[group]\nconsumer_heartbeat_interval_ms = 500\nconsumer_session_timeout_ms = 6000\n",
    )
    .unwrap();
    let mut brokers: Vec<Broker> = {
        let (pg, s3, dir) = (&pg, &s3, data.path());
        std::thread::scope(|s| {
            let handles: Vec<_> = (1..=3)
                .map(|n| s.spawn(move || start(n, pg, s3, dir)))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        })
    };
    let started = Instant::now();
    let deadline = started + BUDGET;
    let all: Vec<String> = brokers.iter().map(|b| b.kafka.clone()).collect();

    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &all[0])
        .create()
        .unwrap();
    let created = admin
        .create_topics(
            &[NewTopic::new(TOPIC, PARTITIONS, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .unwrap();
    assert!(created.iter().all(Result::is_ok), "{created:?}");

    // The group's shard settles on its preferred broker (the first broker up took every
    // shard, and hands them over once the others have been live for two lease TTLs); the
    // holder serves the group, the others refuse it.
    let (holder, epoch) = preferred_holder(&pg, &brokers, deadline).await;
    // `strom cluster status` shows every shard's coordinator, among these brokers.
    let status = Command::new(env!("CARGO_BIN_EXE_strom"))
        .args(["cluster", "status", "--format", "json"])
        .args(["--cluster-postgres", &pg.url()])
        .env_remove("STROM_CONFIG")
        .output()
        .unwrap();
    assert!(status.status.success(), "{status:?}");
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let shards = status["group_coordinators"].as_array().unwrap();
    assert_eq!(shards.len(), 16, "{status}");
    let ids: BTreeSet<i64> = brokers.iter().map(|b| i64::from(b.node_id)).collect();
    for shard in shards {
        assert!(ids.contains(&shard["node_id"].as_i64().unwrap()), "{shard}");
        assert!(shard["expires_in_secs"].as_f64().is_some(), "{shard}");
    }
    let coordinator = brokers.iter().position(|b| b.node_id == holder).unwrap();
    let other = (coordinator + 1) % brokers.len();
    until(deadline, "the holder serving the group", || async {
        offset_fetch(&brokers[coordinator].kafka)
            .await
            .filter(|(code, _)| *code == 0)
    })
    .await;
    // The holder's /metrics show the shard at that epoch.
    let shard = coordinator_shard(GROUP).0;
    let scraped = brokers[coordinator].metrics();
    assert!(
        scraped.contains(&format!(
            "strom_group_coordinator_shard_epoch{{shard=\"{shard}\"}} {epoch}"
        )),
        "{scraped}"
    );
    assert!(
        scraped.contains("strom_group_coordinator_takeovers_total"),
        "{scraped}"
    );
    let (code, _) = offset_fetch(&brokers[other].kafka).await.unwrap();
    assert_eq!(code, NOT_COORDINATOR, "OffsetFetch through a non-holder");
    assert_eq!(
        offset_commit(&brokers[other].kafka, 1).await,
        Some(NOT_COORDINATOR),
        "OffsetCommit through a non-holder"
    );

    // Phase 1: three members, each bootstrapped on a different broker.
    let producer = producer(&all.join(","));
    produce(&producer, 0, PHASE).await;
    let shared = Arc::new(Shared::default());
    let mut threads: Vec<_> = all
        .iter()
        .enumerate()
        .map(|(n, b)| member(n, flavour, b.clone(), Arc::clone(&shared)))
        .collect();
    threads.push(monitor(all.join(","), Arc::clone(&shared)));
    until_caught_up(&shared, PHASE, deadline, "phase 1 consumed and committed").await;

    // Phase 2: records keep coming, the members consume them, and the coordinator is killed
    // in the middle; another broker takes the group over.
    let survivors: Vec<String> = brokers
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != coordinator)
        .map(|(_, b)| b.kafka.clone())
        .collect();
    let producer2 = self::producer(&survivors.join(","));
    let producing = {
        let producer2 = producer2.clone();
        tokio::spawn(async move {
            for chunk in (PHASE..2 * PHASE).step_by(PHASE / 6) {
                produce(&producer2, chunk, chunk + PHASE / 6).await;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    };
    until(deadline, "phase 2 being consumed", || async {
        let consumed = shared.consumed.lock().unwrap();
        (consumed.iter().filter(|&&v| v >= PHASE).count() >= PHASE / 4).then_some(())
    })
    .await;
    brokers[coordinator].kill();
    producing.await.unwrap();
    until_caught_up(
        &shared,
        2 * PHASE,
        deadline,
        "phase 2 consumed after the failover",
    )
    .await;
    let (new_holder, new_epoch) =
        until(deadline, "a new coordinator", || coordinator_lease(&pg)).await;
    assert_ne!(
        new_holder, holder,
        "the killed broker cannot hold the lease"
    );
    assert!(
        new_epoch > epoch,
        "the lease changed hands: epoch {epoch} -> {new_epoch}"
    );

    // Phase 3: the killed broker comes back.
    brokers[coordinator] = start(coordinator + 1, &pg, &s3, data.path());
    produce(&producer2, 2 * PHASE, 3 * PHASE).await;
    until_caught_up(
        &shared,
        3 * PHASE,
        deadline,
        "phase 3 consumed after the restart",
    )
    .await;

    shared.stop.store(true, Ordering::Release);
    for t in threads {
        t.join().unwrap();
    }
    let regressions = shared.regressions.lock().unwrap().clone();
    assert!(
        regressions.is_empty(),
        "committed offsets went backwards: {regressions:?}"
    );
    let consumed = shared.consumed.lock().unwrap().clone();
    let distinct: BTreeSet<usize> = consumed.iter().copied().collect();
    assert_eq!(distinct.len(), 3 * PHASE);
    // Only records not yet committed are read again after a rebalance; had the new
    // coordinator lost the offsets, the group would have started over (≥ PHASE repeats).
    let repeats = consumed.len() - distinct.len();
    assert!(repeats < PHASE / 2, "{repeats} records consumed again");

    // Fencing: the lease is taken from its holder in PostgreSQL (an intruder at a higher
    // epoch, for 4 s). The former holder refuses the group at once; when the intruder's
    // lease lapses a broker takes the shard again and every committed offset is there.
    let (holder, _) = preferred_holder(&pg, &brokers, deadline).await;
    let holder = brokers.iter().position(|b| b.node_id == holder).unwrap();
    let (_, before) = until(deadline, "the holder serving the group", || async {
        offset_fetch(&brokers[holder].kafka)
            .await
            .filter(|(code, _)| *code == 0)
    })
    .await;
    {
        let db = strom_cluster::Db::new(
            strom_cluster::db::PgConfig::parse(&pg.url(), strom_cluster::db::PgTimeouts::default())
                .unwrap(),
        );
        let conn = db.conn().await.unwrap();
        let stolen = conn
            .execute(
                "UPDATE strom_leases SET holder = 'intruder', epoch = epoch + 1,
                     expires_at = now() + interval '4 seconds' WHERE name = $1",
                &[&lease_name(coordinator_shard(GROUP))],
            )
            .await
            .unwrap();
        assert_eq!(stolen, 1);
    }
    let lapsed = Instant::now();
    until(deadline, "the former holder refusing the group", || async {
        offset_fetch(&brokers[holder].kafka)
            .await
            .filter(|(code, _)| *code == NOT_COORDINATOR)
    })
    .await;
    assert!(
        lapsed.elapsed() < Duration::from_millis(LEASE_TTL_MS),
        "refused within one lease TTL"
    );
    assert_eq!(
        offset_commit(&brokers[holder].kafka, 0).await,
        Some(NOT_COORDINATOR),
        "a broker whose lease lapsed refuses commits"
    );
    let after = until(deadline, "the group served again", || async {
        for b in &brokers {
            if let Some((0, offsets)) = offset_fetch(&b.kafka).await {
                return Some(offsets);
            }
        }
        None
    })
    .await;
    assert_eq!(after, before, "offsets after the lease changed hands again");
    let per_partition = i64::try_from(3 * PHASE).unwrap() / i64::from(PARTITIONS);
    assert!(after.values().all(|&o| o == per_partition), "{after:?}");
    eprintln!(
        "cluster_groups {flavour:?}: {} records, {repeats} consumed again, {:.1}s after the brokers started",
        3 * PHASE,
        started.elapsed().as_secs_f64()
    );
}

/// `strom group …` run against broker `addr`, bounded: its stdout, or a failure with stderr.
fn strom_group(addr: &str, args: &[&str]) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_strom"))
        .arg("group")
        .args(args)
        .args(["--bootstrap", addr])
        .env_remove("STROM_CONFIG")
        .env_remove("STROM_BOOTSTRAP")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + BUDGET;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("strom group {args:?} through {addr} did not finish");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "strom group {args:?} through {addr}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// `strom group describe --format json`: the committed offset per partition of [`TOPIC`].
fn described_offsets(addr: &str, group: &str) -> BTreeMap<i64, Option<i64>> {
    let out = strom_group(addr, &["describe", group, "--format", "json"]);
    let described: serde_json::Value = serde_json::from_str(&out).unwrap();
    described["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["topic"] == TOPIC)
        .map(|p| {
            (
                p["partition"].as_i64().unwrap(),
                p["current_offset"].as_i64(),
            )
        })
        .collect()
}

/// `strom group list --format json`: the group ids.
fn listed_groups(addr: &str) -> BTreeSet<String> {
    let out = strom_group(addr, &["list", "--format", "json"]);
    let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
    listed
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["group"].as_str().unwrap().to_owned())
        .collect()
}

/// The group CLI in cluster mode: `list`, `describe`, `reset-offsets` and `delete` work
/// through any broker (routed to the group's coordinator through FindCoordinator; `list`
/// asks every broker), also right after the coordinator was killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn group_cli_works_through_any_broker() {
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
    std::fs::write(data.path().join("strom.toml"), "").unwrap();
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
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &all[0])
        .create()
        .unwrap();
    let created = admin
        .create_topics(
            &[NewTopic::new(TOPIC, PARTITIONS, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .unwrap();
    assert!(created.iter().all(Result::is_ok), "{created:?}");
    let per_partition = 10usize;
    produce(
        &producer(&all.join(",")),
        0,
        per_partition * usize::try_from(PARTITIONS).unwrap(),
    )
    .await;

    let (holder, _) = preferred_holder(&pg, &brokers, deadline).await;
    let coordinator = brokers.iter().position(|b| b.node_id == holder).unwrap();
    let others: Vec<usize> = (0..brokers.len()).filter(|i| *i != coordinator).collect();
    let addrs: Vec<String> = brokers.iter().map(|b| b.kafka.clone()).collect();
    let via = |i: usize| addrs[i].clone();

    // reset-offsets --execute through a broker that is not the coordinator.
    let group = GROUP;
    let out = tokio::task::spawn_blocking({
        let addr = via(others[0]);
        move || {
            strom_group(
                &addr,
                &[
                    "reset-offsets",
                    group,
                    "--topic",
                    TOPIC,
                    "--to-latest",
                    "--execute",
                ],
            )
        }
    })
    .await
    .unwrap();
    assert!(out.contains("committed new offsets"), "{out}");
    // describe and list through every broker agree.
    let latest = i64::try_from(per_partition).unwrap();
    let expected: BTreeMap<i64, Option<i64>> = (0..i64::from(PARTITIONS))
        .map(|p| (p, Some(latest)))
        .collect();
    for i in 0..brokers.len() {
        let addr = via(i);
        let (described, listed) = tokio::task::spawn_blocking(move || {
            (described_offsets(&addr, group), listed_groups(&addr))
        })
        .await
        .unwrap();
        assert_eq!(described, expected, "describe through broker {i}");
        assert!(
            listed.contains(group),
            "list through broker {i}: {listed:?}"
        );
    }
    // The coordinator is killed: describe and reset-offsets through a survivor find the new
    // coordinator (after NOT_COORDINATOR or a refused connection) and see the commits.
    brokers[coordinator].kill();
    let survivor = via(others[1]);
    let (described, out) = tokio::task::spawn_blocking({
        let addr = survivor.clone();
        move || {
            let described = described_offsets(&addr, group);
            let out = strom_group(
                &addr,
                &[
                    "reset-offsets",
                    group,
                    "--topic",
                    TOPIC,
                    "--partition",
                    "0",
                    "--shift-by",
                    "-3",
                    "--execute",
                ],
            );
            (described, out)
        }
    })
    .await
    .unwrap();
    assert_eq!(described, expected, "describe after the failover");
    assert!(out.contains("committed new offsets"), "{out}");
    let after = tokio::task::spawn_blocking({
        let addr = via(others[0]);
        move || described_offsets(&addr, group)
    })
    .await
    .unwrap();
    assert_eq!(after.get(&0), Some(&Some(latest - 3)), "{after:?}");
    // delete through a survivor; no broker lists the group any more.
    let (out, listed) = tokio::task::spawn_blocking({
        let addr = survivor.clone();
        move || {
            let out = strom_group(&addr, &["delete", group]);
            (out, listed_groups(&addr))
        }
    })
    .await
    .unwrap();
    assert!(out.contains("deleted group"), "{out}");
    assert!(!listed.contains(group), "{listed:?}");
}
