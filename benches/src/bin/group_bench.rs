//! Consumer-group benchmarks against a running broker (Strom or any other):
//!
//! - `rebalance`: three librdkafka consumers share a 6-partition topic; one closes; the time
//!   until the two others own all six partitions again, balanced (the group consuming again).
//!   For the classic eager protocol, cooperative-sticky and the KIP-848 consumer protocol.
//! - `commit`: synchronous OffsetCommit round trips of one consumer: commits/s, p50/p99.
//! - `many-groups`: produce and fetch throughput (1 KiB, acks=all) alone and while N single-member
//!   groups (KIP-848 heartbeats plus an OffsetCommit per heartbeat, over raw connections) run.
//!   The two alternate (alone, loaded, alone, loaded, …; the groups pause, well inside their
//!   session timeout, during an "alone" run), so both sides see the same machine noise.
//! - `groups-only`: just those groups for `--seconds`, and (with `--broker-pid`) the share of
//!   a core the broker spends serving them.
//! - `failover` (cluster mode, `benches/cluster_groups.sh`): three consumers bootstrapped on
//!   every broker share a 6-partition topic; once settled, `--kill-command` runs with
//!   `COORDINATOR=host:port` (the group's coordinator, from FindCoordinator) and must kill that
//!   broker; the time from the kill until every partition is assigned again, balanced, and each
//!   consumer's synchronous commit is accepted (the group served by its new coordinator); then
//!   `--restore-command` (restart the broker and wait for it). Per protocol, every run and the
//!   median.
//! - `commit` with `--clients N`: N consumers of N groups (spread over the coordinator shards,
//!   so over the brokers of a cluster) commit synchronously at once; total commits/s.
//!
//! ```text
//! strom serve --data-dir /tmp/bench &
//! cargo run --release -p strom-bench --bin group_bench -- --mode rebalance --runs 5
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    ApiKey, ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, GroupId,
    OffsetCommitRequest, OffsetCommitResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use strom_bench::{cpu_seconds, mb_per_s, median, percentile};
use strom_kafka::client::Client;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Rebalance,
    Commit,
    /// Rebalance time after the group's coordinator broker is killed (cluster mode).
    Failover,
    ManyGroups,
    /// Only the N groups of `many-groups`, for `--seconds`, and the broker's CPU time they
    /// cost (`--broker-pid`, read from `/proc`).
    GroupsOnly,
}

/// Benchmark options.
#[derive(Debug, Parser)]
struct Args {
    /// Broker address.
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    /// What to measure.
    #[arg(long, value_enum)]
    mode: Mode,
    /// Runs (rebalance) — the table shows every run and the median.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Commits to time (commit mode).
    #[arg(long, default_value_t = 5_000)]
    commits: usize,
    /// Groups (many-groups mode).
    #[arg(long, default_value_t = 1_000)]
    groups: usize,
    /// Records per produce measurement (many-groups mode).
    #[arg(long, default_value_t = 200_000)]
    count: usize,
    /// How long to run the groups (groups-only mode).
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// The broker's process id, to report the CPU time the groups cost it (groups-only mode).
    #[arg(long)]
    broker_pid: Option<u32>,
    /// How often each group heartbeats and commits (many-groups mode). Real members heartbeat
    /// every 5 s; 1 s is five times that load.
    #[arg(long, default_value_t = 1_000)]
    interval_ms: u64,
    /// Concurrent committing consumers, each in its own group (commit mode).
    #[arg(long, default_value_t = 1)]
    clients: usize,
    /// Shell command that kills the broker at `$COORDINATOR` (failover mode).
    #[arg(long)]
    kill_command: Option<String>,
    /// Shell command run after each failover run, with `$COORDINATOR` set: restart the killed
    /// broker and return once it listens (failover mode).
    #[arg(long)]
    restore_command: Option<String>,
    /// Protocols measured in failover mode (`range`, `cooperative-sticky`, `consumer`).
    #[arg(long, value_delimiter = ',', default_value = "range,consumer")]
    protocols: Vec<String>,
}

fn runtime() -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tokio runtime: {e}");
            std::process::exit(1);
        }
    }
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{prefix}-{nanos}")
}

fn create_topic(rt: &tokio::runtime::Runtime, bootstrap: &str, name: &str, partitions: i32) {
    let first = bootstrap.split(',').next().unwrap_or(bootstrap);
    let result = rt.block_on(async {
        let mut c = Client::connect(first).await?;
        c.create_topic(name, partitions, &BTreeMap::new()).await
    });
    if let Err(e) = result {
        eprintln!("create topic {name}: {e}");
        std::process::exit(1);
    }
}

fn consumer(bootstrap: &str, group: &str, protocol: &str) -> BaseConsumer {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest");
    match protocol {
        "consumer" => {
            config.set("group.protocol", "consumer");
        }
        other => {
            config
                .set("session.timeout.ms", "6000")
                .set("heartbeat.interval.ms", "300")
                .set("partition.assignment.strategy", other);
        }
    }
    match config.create() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("consumer: {e}");
            std::process::exit(1);
        }
    }
}

/// Polls until the assignments cover `0..partitions` exactly once, balanced; false on timeout.
fn settle(consumers: &[BaseConsumer], partitions: i32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        for c in consumers {
            let _ = c.poll(Duration::from_millis(5));
        }
        let sets: Vec<BTreeSet<i32>> = consumers
            .iter()
            .map(|c| {
                c.assignment()
                    .map(|a| a.elements().iter().map(|e| e.partition()).collect())
                    .unwrap_or_default()
            })
            .collect();
        let sizes: Vec<usize> = sets.iter().map(BTreeSet::len).collect();
        let total: usize = sizes.iter().sum();
        let union: BTreeSet<i32> = sets.iter().flatten().copied().collect();
        let (lo, hi) = (
            sizes.iter().min().copied().unwrap_or(0),
            sizes.iter().max().copied().unwrap_or(0),
        );
        if total == partitions as usize && union.len() == total && lo > 0 && hi - lo <= 1 {
            return true;
        }
    }
    false
}

fn rebalance(args: &Args, rt: &tokio::runtime::Runtime) {
    println!("| protocol | runs (s) | median s |");
    println!("|---|---|---|");
    for protocol in ["range", "cooperative-sticky", "consumer"] {
        let mut samples = Vec::new();
        for _ in 0..args.runs {
            let topic = unique("bench-rebalance");
            create_topic(rt, &args.bootstrap, &topic, 6);
            let group = unique("bench-group");
            let mut members: Vec<BaseConsumer> = (0..3)
                .map(|_| consumer(&args.bootstrap, &group, protocol))
                .collect();
            for m in &members {
                if let Err(e) = m.subscribe(&[&topic]) {
                    eprintln!("subscribe: {e}");
                    return;
                }
            }
            if !settle(&members, 6, Duration::from_secs(60)) {
                eprintln!("{protocol}: the group never settled");
                continue;
            }
            let leaver = members.remove(0);
            let t0 = Instant::now();
            drop(leaver);
            if settle(&members, 6, Duration::from_secs(60)) {
                samples.push(t0.elapsed().as_secs_f64());
            } else {
                eprintln!("{protocol}: no recovery within 60 s");
            }
        }
        let runs: Vec<String> = samples.iter().map(|s| format!("{s:.2}")).collect();
        println!(
            "| {protocol} | {} | **{:.2}** |",
            runs.join(" / "),
            median(&mut samples)
        );
    }
}

fn commit(args: &Args, rt: &tokio::runtime::Runtime) {
    let topic = unique("bench-commit");
    create_topic(rt, &args.bootstrap, &topic, 1);
    let clients = args.clients.max(1);
    let start = Arc::new(std::sync::Barrier::new(clients + 1));
    let threads: Vec<_> = (0..clients)
        .map(|n| {
            let (bootstrap, topic, commits) = (args.bootstrap.clone(), topic.clone(), args.commits);
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                let c = consumer(&bootstrap, &unique(&format!("bench-commit-{n}")), "range");
                let mut micros = Vec::with_capacity(commits);
                start.wait();
                for i in 0..commits {
                    let mut tpl = TopicPartitionList::new();
                    if tpl
                        .add_partition_offset(&topic, 0, Offset::Offset(i as i64))
                        .is_err()
                    {
                        break;
                    }
                    let t = Instant::now();
                    if let Err(e) = c.commit(&tpl, CommitMode::Sync) {
                        eprintln!("commit: {e}");
                        break;
                    }
                    micros.push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX));
                }
                micros
            })
        })
        .collect();
    start.wait();
    let t0 = Instant::now();
    let mut micros: Vec<u32> = Vec::new();
    for t in threads {
        micros.extend(t.join().unwrap_or_default());
    }
    let elapsed = t0.elapsed();
    micros.sort_unstable();
    println!("| clients | sync commits | commits/s | p50 ms | p99 ms |");
    println!("|---|---|---|---|---|");
    println!(
        "| {clients} | {} | {:.0} | {:.2} | {:.2} |",
        micros.len(),
        micros.len() as f64 / elapsed.as_secs_f64(),
        percentile(&micros, 0.50),
        percentile(&micros, 0.99)
    );
    println!(
        "summary commits={} commits_per_s={:.1}",
        micros.len(),
        micros.len() as f64 / elapsed.as_secs_f64()
    );
}

/// Runs `command` with `sh -c`, `COORDINATOR` set to `coordinator`; false if it failed.
fn hook(command: &str, coordinator: &str) -> bool {
    match std::process::Command::new("sh")
        .args(["-c", command])
        .env("COORDINATOR", coordinator)
        .status()
    {
        Ok(s) if s.success() => true,
        other => {
            eprintln!("`{command}` failed: {other:?}");
            false
        }
    }
}

/// Every consumer commits its assigned partitions' positions (or offset 0 when none is
/// known yet) synchronously: true once all of them were accepted.
fn all_commit(consumers: &[BaseConsumer], topic: &str) -> bool {
    consumers.iter().all(|c| {
        let Ok(assignment) = c.assignment() else {
            return false;
        };
        let mut tpl = TopicPartitionList::new();
        for e in assignment.elements() {
            if tpl
                .add_partition_offset(topic, e.partition(), Offset::Offset(0))
                .is_err()
            {
                return false;
            }
        }
        tpl.count() > 0 && c.commit(&tpl, CommitMode::Sync).is_ok()
    })
}

fn failover(args: &Args, rt: &tokio::runtime::Runtime) {
    let (Some(kill), Some(restore)) = (&args.kill_command, &args.restore_command) else {
        eprintln!("failover mode needs --kill-command and --restore-command");
        std::process::exit(2);
    };
    let brokers: Vec<String> = args.bootstrap.split(',').map(str::to_owned).collect();
    println!("| protocol | runs (s) | median s |");
    println!("|---|---|---|");
    for protocol in &args.protocols {
        let mut samples = Vec::new();
        for _ in 0..args.runs {
            let topic = unique("bench-failover");
            create_topic(rt, &args.bootstrap, &topic, 6);
            let group = unique("bench-failover-group");
            let members: Vec<BaseConsumer> = (0..3)
                .map(|_| consumer(&args.bootstrap, &group, protocol))
                .collect();
            for m in &members {
                if let Err(e) = m.subscribe(&[&topic]) {
                    eprintln!("subscribe: {e}");
                    return;
                }
            }
            if !settle(&members, 6, Duration::from_secs(60)) || !all_commit(&members, &topic) {
                eprintln!("{protocol}: the group never settled");
                continue;
            }
            let coordinator = rt.block_on(async {
                for b in &brokers {
                    if let Ok(mut c) = Client::connect(b).await
                        && let Ok(addr) = c.find_coordinator(&group).await
                    {
                        return Some(addr);
                    }
                }
                None
            });
            let Some(coordinator) = coordinator else {
                eprintln!("{protocol}: no coordinator found");
                continue;
            };
            if !hook(kill, &coordinator) {
                return;
            }
            let t0 = Instant::now();
            let deadline = t0 + Duration::from_secs(120);
            let mut recovered = false;
            while Instant::now() < deadline {
                if settle(&members, 6, Duration::from_millis(200)) && all_commit(&members, &topic) {
                    recovered = true;
                    break;
                }
            }
            if recovered {
                samples.push(t0.elapsed().as_secs_f64());
            } else {
                eprintln!("{protocol}: no recovery within 120 s");
            }
            drop(members);
            if !hook(restore, &coordinator) {
                return;
            }
        }
        let runs: Vec<String> = samples.iter().map(|s| format!("{s:.2}")).collect();
        println!(
            "| {protocol} | {} | **{:.2}** |",
            runs.join(" / "),
            median(&mut samples)
        );
        println!(
            "summary protocol={protocol} failover_s={:.2}",
            median(&mut samples)
        );
    }
}

/// Produces `count` 1 KiB records (acks=all) to `topic`; MB/s.
fn produce(bootstrap: &str, topic: &str, count: usize) -> f64 {
    let producer: ThreadedProducer<_> = match ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("enable.idempotence", "false")
        .set("queue.buffering.max.messages", "1000000")
        .create()
    {
        Ok(p) => p,
        Err(e) => {
            eprintln!("producer: {e}");
            return 0.0;
        }
    };
    let value = vec![b'x'; 1024];
    let t0 = Instant::now();
    for i in 0..count {
        let key = i.to_string();
        let mut record = BaseRecord::to(topic).key(&key).payload(&value);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }
    if producer.flush(Duration::from_secs(120)).is_err() {
        eprintln!("flush timed out");
    }
    mb_per_s((count * 1024) as u64, t0.elapsed())
}

/// Reads `count` records of `topic` partition 0 from `from` with an assigned (group-less)
/// librdkafka consumer; MB/s of payload.
fn fetch(bootstrap: &str, topic: &str, from: i64, count: usize) -> f64 {
    let consumer: BaseConsumer = match ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "bench-many-fetch")
        .set("enable.auto.commit", "false")
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "10485760")
        .create()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("consumer: {e}");
            return 0.0;
        }
    };
    let mut tpl = TopicPartitionList::new();
    if tpl
        .add_partition_offset(topic, 0, Offset::Offset(from))
        .and_then(|()| consumer.assign(&tpl))
        .is_err()
    {
        eprintln!("assign failed");
        return 0.0;
    }
    let t0 = Instant::now();
    let (mut n, mut bytes) = (0usize, 0u64);
    while n < count && t0.elapsed() < Duration::from_secs(120) {
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                n += 1;
                bytes += m.payload().map_or(0, |p| p.len() as u64);
            }
            Some(Err(e)) => {
                eprintln!("fetch: {e}");
                return 0.0;
            }
            None => {}
        }
    }
    mb_per_s(bytes, t0.elapsed())
}

/// One connection's worth of single-member groups: heartbeat each, commit an offset for each,
/// until `stop`.
async fn run_groups(
    bootstrap: String,
    topic: String,
    groups: Vec<String>,
    stop: Arc<AtomicBool>,
    paused: Arc<AtomicBool>,
    requests: Arc<AtomicU64>,
    interval: Duration,
) {
    let mut client = match Client::connect(&bootstrap).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("connect: {e}");
            return;
        }
    };
    let mut epochs: Vec<i32> = vec![0; groups.len()];
    let mut round: i64 = 0;
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        if paused.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        for (i, group) in groups.iter().enumerate() {
            let member = format!("{group}-member");
            let hb = ConsumerGroupHeartbeatRequest::default()
                .with_group_id(GroupId(StrBytes::from_string(group.clone())))
                .with_member_id(StrBytes::from_string(member.clone()))
                .with_member_epoch(epochs[i])
                .with_rebalance_timeout_ms(if epochs[i] == 0 { 30_000 } else { -1 })
                .with_subscribed_topic_names(
                    (epochs[i] == 0).then(|| vec![TopicName(StrBytes::from_string(topic.clone()))]),
                )
                .with_topic_partitions((epochs[i] == 0).then(Vec::<TopicPartitions>::new));
            let r: Result<ConsumerGroupHeartbeatResponse, _> =
                client.call(ApiKey::ConsumerGroupHeartbeat, 1, &hb).await;
            match r {
                Ok(r) if r.error_code == 0 => epochs[i] = r.member_epoch,
                Ok(_) => epochs[i] = 0,
                Err(e) => {
                    eprintln!("heartbeat: {e}");
                    return;
                }
            }
            let commit = OffsetCommitRequest::default()
                .with_group_id(GroupId(StrBytes::from_string(group.clone())))
                .with_member_id(StrBytes::from_string(member))
                .with_generation_id_or_member_epoch(epochs[i])
                .with_topics(vec![
                    OffsetCommitRequestTopic::default()
                        .with_name(TopicName(StrBytes::from_string(topic.clone())))
                        .with_partitions(vec![
                            OffsetCommitRequestPartition::default()
                                .with_partition_index(0)
                                .with_committed_offset(round),
                        ]),
                ]);
            let c: Result<OffsetCommitResponse, _> =
                client.call(ApiKey::OffsetCommit, 9, &commit).await;
            if let Err(e) = c {
                eprintln!("commit: {e}");
                return;
            }
            requests.fetch_add(2, Ordering::Relaxed);
        }
        round += 1;
        if let Some(rest) = interval.checked_sub(started.elapsed()) {
            tokio::time::sleep(rest).await;
        }
    }
}

/// `args.groups` single-member groups heartbeating and committing over 10 connections, joined.
struct Groups {
    stop: Arc<AtomicBool>,
    paused: Arc<AtomicBool>,
    requests: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Groups {
    /// Starts the groups (named `{prefix}-{i}`, committing on a fresh topic) and waits until
    /// every one has joined.
    fn start(args: &Args, rt: &tokio::runtime::Runtime, prefix: &str) -> Groups {
        let group_topic = unique(&format!("bench-{prefix}-groups"));
        create_topic(rt, &args.bootstrap, &group_topic, 1);
        let stop = Arc::new(AtomicBool::new(false));
        let paused = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicU64::new(0));
        let names: Vec<String> = (0..args.groups).map(|i| format!("{prefix}-{i}")).collect();
        let tasks = names
            .chunks(args.groups.div_ceil(10).max(1))
            .map(|chunk| {
                rt.spawn(run_groups(
                    args.bootstrap.clone(),
                    group_topic.clone(),
                    chunk.to_vec(),
                    Arc::clone(&stop),
                    Arc::clone(&paused),
                    Arc::clone(&requests),
                    Duration::from_millis(args.interval_ms),
                ))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(args.interval_ms.max(1_000) + 1_000));
        Groups {
            stop,
            paused,
            requests,
            tasks,
        }
    }

    fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    fn stop(self, rt: &tokio::runtime::Runtime) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = rt.block_on(t);
        }
    }
}

fn many_groups(args: &Args, rt: &tokio::runtime::Runtime) {
    let topic = unique("bench-many");
    create_topic(rt, &args.bootstrap, &topic, 1);
    let groups = Groups::start(args, rt, "many");
    let mut alone = Vec::new();
    let mut loaded = Vec::new();
    let mut alone_fetch = Vec::new();
    let mut loaded_fetch = Vec::new();
    let mut loaded_time = Duration::ZERO;
    let mut loaded_requests = 0;
    let mut next_offset = 0i64;
    let count = i64::try_from(args.count).unwrap_or(i64::MAX);
    for _ in 0..args.runs {
        // Both runs start after the same rest (one interval), so the previous run's writeback
        // weighs on each alike; the loaded run's rest is also every group heartbeating again.
        groups.paused.store(true, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(args.interval_ms));
        alone.push(produce(&args.bootstrap, &topic, args.count));
        alone_fetch.push(fetch(&args.bootstrap, &topic, next_offset, args.count));
        next_offset += count;
        groups.paused.store(false, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(args.interval_ms));
        let before = groups.requests();
        let t0 = Instant::now();
        loaded.push(produce(&args.bootstrap, &topic, args.count));
        loaded_fetch.push(fetch(&args.bootstrap, &topic, next_offset, args.count));
        next_offset += count;
        loaded_time += t0.elapsed();
        loaded_requests += groups.requests() - before;
    }
    let rate = loaded_requests as f64 / loaded_time.as_secs_f64().max(1e-9);
    groups.stop(rt);
    let fmt = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.0}"))
            .collect::<Vec<_>>()
            .join(" / ")
    };
    println!(
        "| 1 KiB, acks=all | produce MB/s runs | median | fetch (page cache) MB/s runs | median |"
    );
    println!("|---|---|---|---|---|");
    println!(
        "| alone | {} | **{:.0}** | {} | **{:.0}** |",
        fmt(&alone),
        median(&mut alone.clone()),
        fmt(&alone_fetch),
        median(&mut alone_fetch.clone())
    );
    println!(
        "| with {} groups ({rate:.0} heartbeats + commits per s) | {} | **{:.0}** | {} | **{:.0}** |",
        args.groups,
        fmt(&loaded),
        median(&mut loaded.clone()),
        fmt(&loaded_fetch),
        median(&mut loaded_fetch.clone())
    );
}

fn groups_only(args: &Args, rt: &tokio::runtime::Runtime) {
    let groups = Groups::start(args, rt, "only");
    let before = groups.requests();
    let cpu_before = args.broker_pid.and_then(cpu_seconds);
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(args.seconds));
    let elapsed = t0.elapsed().as_secs_f64();
    let sent = groups.requests() - before;
    let cpu_after = args.broker_pid.and_then(cpu_seconds);
    groups.stop(rt);
    println!(
        "{} groups, every {} ms: {:.0} heartbeats + commits per s",
        args.groups,
        args.interval_ms,
        sent as f64 / elapsed
    );
    if let (Some(a), Some(b)) = (cpu_before, cpu_after) {
        println!(
            "broker CPU: {:.1} % of one core ({:.2} s in {elapsed:.1} s)",
            (b - a) / elapsed * 100.0,
            b - a
        );
    }
}

fn main() {
    let args = Args::parse();
    let rt = runtime();
    match args.mode {
        Mode::Rebalance => rebalance(&args, &rt),
        Mode::Commit => commit(&args, &rt),
        Mode::Failover => failover(&args, &rt),
        Mode::ManyGroups => many_groups(&args, &rt),
        Mode::GroupsOnly => groups_only(&args, &rt),
    }
}
