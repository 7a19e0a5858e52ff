//! End-to-end Kafka throughput and latency with librdkafka (the `rdkafka` crate) against a
//! running broker (Strom or any other). Reports msgs/s, MB/s and produce latency percentiles
//! (time from `send` to the delivery report), then consumes everything back from the page cache.
//!
//! ```text
//! strom serve --data-dir /tmp/bench &          # or benches/kafka_bench.sh, which does it all
//! cargo run --release -p strom-bench --bin kafka_bench -- --size 1024 --count 200000 --partitions 6
//! cargo run --release -p strom-bench --bin kafka_bench -- --partition-cases 1,6,24 --runs 3
//! ```
//!
//! With `--transaction-size N` the producer is transactional: it commits every `N` records
//! (after waiting for their delivery, so the commit latency is the EndTxn round) and the table
//! adds the commit latency percentiles; the consumer then reads with
//! `isolation.level=read_committed`.
//!
//! Every run first sends one record to a side topic and flushes it, outside the clock, so
//! each producer is measured connected and (when idempotent or transactional) holding its
//! producer id.
//!
//! `--consumer raw` reads back with [`strom_bench::raw_fetch`] instead of librdkafka: plain TCP
//! Fetch requests whose responses are only walked batch by batch, so the broker's serving rate
//! shows rather than the client's per-message cost; `--consumer both` runs librdkafka and then
//! the raw consumer over the same topic. `--consume-passes N` reads the topic N times per run.
//!
//! `--producer raw` writes with [`strom_bench::raw_produce`] instead: one batch built once and
//! sent again and again (partition 0, `--raw-batch-bytes` per request), so the broker's
//! ingest rate shows rather than librdkafka's per-message cost; the raw consumer then counts
//! its records (rounded up to whole batches) as the run's count.
//!
//! Over TLS (benches/tls.sh): `--client-config security.protocol=ssl --client-config
//! ssl.ca.location=ca.pem` for librdkafka, and `--tls-ca ca.pem` for the raw consumer (rustls).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use clap::Parser;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use strom_bench::raw_fetch::{self, Limits};
use strom_bench::raw_produce;
use strom_bench::{cpu_seconds, median, minor_faults, percentile};

/// Fetch limits of both consumers unless overridden: `fetch.max.bytes`,
/// `max.partition.fetch.bytes`, `fetch.wait.max.ms`.
const LIMITS: Limits = Limits {
    max_bytes: 52_428_800,
    partition_max_bytes: 10_485_760,
    max_wait_ms: 100,
};

/// Which consumer reads the topic back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ConsumerKind {
    /// librdkafka's `BaseConsumer`, one `poll` per message.
    Rdkafka,
    /// The raw Fetch client (batch headers only).
    Raw,
    /// librdkafka, then the raw client.
    Both,
}

/// Which producer writes the topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ProducerKind {
    /// librdkafka's `ThreadedProducer`, one `send` per message.
    Rdkafka,
    /// The raw Produce client: one batch built once, sent again and again (partition 0).
    Raw,
}

/// Benchmark options.
#[derive(Debug, Clone, Parser)]
struct Args {
    /// Broker address.
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    /// Topic prefix; each run uses a fresh topic.
    #[arg(long, default_value = "bench")]
    topic: String,
    /// Partitions of the topic.
    #[arg(long, default_value_t = 1)]
    partitions: i32,
    /// Partition counts to measure in every run (e.g. `1,6,24`), each on its own topic, in
    /// alternating order from run to run; overrides `--partitions`. Medians per count at the end.
    #[arg(long, value_delimiter = ',')]
    partition_cases: Vec<i32>,
    /// Message value size in bytes.
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// Messages per run.
    #[arg(long, default_value_t = 100_000)]
    count: usize,
    /// `acks`: 0, 1 or all.
    #[arg(long, default_value = "all")]
    acks: String,
    /// `linger.ms`.
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,
    /// `compression.type`: none, gzip, snappy, lz4, zstd.
    #[arg(long, default_value = "none")]
    compression: String,
    /// Topic config for the run's topic, `KEY=VALUE` (repeatable), e.g. `strom.fsync=never`.
    #[arg(long = "topic-config", value_name = "KEY=VALUE")]
    topic_configs: Vec<String>,
    /// Runs; the table shows every run and the median.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Produce with `enable.idempotence=true` (the broker checks producer sequences).
    #[arg(long)]
    idempotence: bool,
    /// `max.in.flight.requests.per.connection` (librdkafka's default when unset; an idempotent
    /// producer allows at most 5).
    #[arg(long)]
    max_in_flight: Option<u32>,
    /// Records per transaction; 0 (the default) produces without transactions.
    #[arg(long, default_value_t = 0)]
    transaction_size: usize,
    /// The producer that writes the topic. `raw` writes partition 0 only, without
    /// idempotence or transactions, `--raw-batch-bytes` per request, `--max-in-flight`
    /// (default 5) requests outstanding.
    #[arg(long, value_enum, default_value_t = ProducerKind::Rdkafka)]
    producer: ProducerKind,
    /// Payload bytes per batch of the raw producer (as librdkafka's `batch.size` here).
    #[arg(long, default_value_t = 1_000_000)]
    raw_batch_bytes: usize,
    /// The consumer that reads the topic back.
    #[arg(long, value_enum, default_value_t = ConsumerKind::Rdkafka)]
    consumer: ConsumerKind,
    /// How many times each consumer reads the topic per run (the first pass may still find
    /// pages the producer just wrote being written back).
    #[arg(long, default_value_t = 1)]
    consume_passes: usize,
    /// Consumers' `fetch.max.bytes` (default 52428800).
    #[arg(long, default_value_t = LIMITS.max_bytes)]
    fetch_max_bytes: i32,
    /// Consumers' `max.partition.fetch.bytes` (default 10485760).
    #[arg(long, default_value_t = LIMITS.partition_max_bytes)]
    max_partition_fetch_bytes: i32,
    /// librdkafka consumer setting, `KEY=VALUE` (repeatable), applied after the harness's own,
    /// e.g. `debug=fetch` or `fetch.queue.backoff.ms=10`.
    #[arg(long = "consumer-config", value_name = "KEY=VALUE")]
    consumer_configs: Vec<String>,
    /// librdkafka setting for every client of the run (admin, producer, consumer),
    /// `KEY=VALUE` (repeatable), applied before the role's own: e.g. `security.protocol=ssl`
    /// and `ssl.ca.location=ca.pem` to measure over TLS (benches/tls.sh).
    #[arg(long = "client-config", value_name = "KEY=VALUE")]
    client_configs: Vec<String>,
    /// The raw consumer speaks TLS (rustls), trusting the CAs of this PEM file; the server
    /// name is `--tls-server-name`.
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<std::path::PathBuf>,
    /// The name the raw consumer checks the broker's certificate against.
    #[arg(long, default_value = "localhost")]
    tls_server_name: String,
    /// The broker's process id, to report its CPU time per GB consumed (Linux `/proc`).
    #[arg(long)]
    broker_pid: Option<u32>,
    /// Bootstrap address of the consumers (default: `--bootstrap`). The raw consumer sends
    /// every Fetch to it; librdkafka only bootstraps there and then fetches from each
    /// partition's leader. In cluster mode, where any broker serves any partition, this reads
    /// through a broker other than the ones the producer wrote to.
    #[arg(long)]
    consume_bootstrap: Option<String>,
    /// Offered load in records per second (0: as fast as the producer accepts them). Below
    /// saturation the latency percentiles are the broker's, not the client queue's.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Shell command run (`sh -c`) after the producer's warm-up, just before the clock starts;
    /// its output goes to stderr. E.g. a snapshot of the store's counters.
    #[arg(long, value_name = "CMD")]
    before_produce: Option<String>,
    /// Shell command run (`sh -c`) once every record is acknowledged, after the clock stops.
    #[arg(long, value_name = "CMD")]
    after_produce: Option<String>,
}

/// Runs a `--before-produce`/`--after-produce` hook; a failure is reported, not fatal.
fn hook(cmd: Option<&str>) {
    let Some(cmd) = cmd else { return };
    match std::process::Command::new("sh").args(["-c", cmd]).status() {
        Ok(s) if s.success() => {}
        Ok(s) => eprintln!("hook {cmd:?} exited with {s}"),
        Err(e) => eprintln!("hook {cmd:?}: {e}"),
    }
}

/// Collects produce latencies from delivery reports.
struct Latencies {
    micros: Mutex<Vec<u32>>,
    errors: Mutex<u64>,
}

impl ClientContext for Latencies {}

impl ProducerContext for Latencies {
    type DeliveryOpaque = Box<Instant>;

    fn delivery(&self, result: &DeliveryResult<'_>, sent: Self::DeliveryOpaque) {
        if result.is_err() {
            if let Ok(mut e) = self.errors.lock() {
                *e += 1;
            }
            return;
        }
        let us = u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX);
        if let Ok(mut v) = self.micros.lock() {
            v.push(us);
        }
    }
}

struct ProduceResult {
    msgs_per_s: f64,
    mb_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
    /// Commit latency percentiles (ms), when transactional.
    commit_p50_ms: f64,
    commit_p99_ms: f64,
    /// Broker CPU seconds per GB of payload produced (user + system), with `--broker-pid`.
    broker_cpu_s_per_gb: Option<f64>,
}

/// A librdkafka config with the run's `--client-config` settings.
fn client_config(args: &Args) -> Result<ClientConfig, String> {
    let mut config = ClientConfig::new();
    for c in &args.client_configs {
        let (k, v) = c
            .split_once('=')
            .ok_or_else(|| format!("--client-config {c:?} is not KEY=VALUE"))?;
        config.set(k, v);
    }
    Ok(config)
}

fn create_topic(args: &Args, name: &str) -> Result<(), String> {
    let admin: AdminClient<DefaultClientContext> = client_config(args)?
        .set("bootstrap.servers", &args.bootstrap)
        .create()
        .map_err(|e| e.to_string())?;
    let mut topic = NewTopic::new(name, args.partitions, TopicReplication::Fixed(1));
    for c in &args.topic_configs {
        let (k, v) = c
            .split_once('=')
            .ok_or_else(|| format!("--topic-config {c:?} is not KEY=VALUE"))?;
        topic = topic.set(k, v);
    }
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = block_on(admin.create_topics([&topic], &opts)).map_err(|e| e.to_string())?;
    for r in results {
        r.map_err(|(t, e)| format!("{t}: {e}"))?;
    }
    Ok(())
}

/// Polls a future to completion on this thread (the admin API is async; this keeps the harness
/// free of an async runtime).
fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    use std::task::{Context, Poll, Wake, Waker};
    struct ThreadWaker(std::thread::Thread);
    impl Wake for ThreadWaker {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(std::sync::Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park_timeout(Duration::from_millis(10));
    }
}

/// Waits until every message is delivered and its report served (what `flush` promises). The
/// `rdkafka` wrapper's `flush` on a `ThreadedProducer` sleeps in 100 ms polls while the
/// producer's thread takes the events, which would add up to 100 ms to every measurement.
fn drain(producer: &ThreadedProducer<Latencies>, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    while producer.in_flight_count() > 0 {
        if Instant::now() >= deadline {
            return Err(format!(
                "{} messages still in flight after {timeout:?}",
                producer.in_flight_count()
            ));
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    Ok(())
}

/// Writes the topic with the raw Produce client.
fn produce_raw(args: &Args, topic: &str) -> Result<ProduceResult, String> {
    if args.partitions != 1 || args.transaction_size > 0 || args.idempotence || args.rate > 0 {
        return Err(
            "--producer raw writes one partition, without idempotence, transactions or --rate"
                .to_owned(),
        );
    }
    let tls = match &args.tls_ca {
        Some(ca) => {
            Some(raw_fetch::Tls::new(ca, &args.tls_server_name).map_err(|e| e.to_string())?)
        }
        None => None,
    };
    let acks = match args.acks.as_str() {
        "all" | "-1" => -1,
        "1" => 1,
        other => return Err(format!("--producer raw needs acks all or 1, not {other}")),
    };
    let plan = raw_produce::Plan {
        topic,
        record_size: args.size,
        records_per_batch: (args.raw_batch_bytes / args.size.max(1)).max(1),
        count: args.count as u64,
        in_flight: args.max_in_flight.map_or(5, |n| n as usize),
        acks,
        timeout: Duration::from_secs(120),
    };
    hook(args.before_produce.as_deref());
    let cpu_before = args.broker_pid.and_then(cpu_seconds);
    let p =
        raw_produce::produce(tls.as_ref(), &args.bootstrap, &plan).map_err(|e| e.to_string())?;
    let cpu_after = args.broker_pid.and_then(cpu_seconds);
    hook(args.after_produce.as_deref());
    let secs = p.elapsed.as_secs_f64();
    Ok(ProduceResult {
        msgs_per_s: p.records as f64 / secs,
        mb_per_s: p.payload_bytes as f64 / secs / 1e6,
        p50_ms: percentile(&p.latencies_us, 0.50),
        p99_ms: percentile(&p.latencies_us, 0.99),
        errors: 0,
        commit_p50_ms: 0.0,
        commit_p99_ms: 0.0,
        broker_cpu_s_per_gb: cpu_before
            .zip(cpu_after)
            .map(|(a, b)| (b - a) / (p.payload_bytes as f64 / 1e9)),
    })
}

fn produce(args: &Args, topic: &str) -> Result<ProduceResult, String> {
    if args.producer == ProducerKind::Raw {
        return produce_raw(args, topic);
    }
    let context = Latencies {
        micros: Mutex::new(Vec::with_capacity(args.count)),
        errors: Mutex::new(0),
    };
    let mut config = client_config(args)?;
    if args.transaction_size > 0 {
        config.set("transactional.id", format!("{topic}-txn"));
    }
    if let Some(n) = args.max_in_flight {
        config.set("max.in.flight.requests.per.connection", n.to_string());
    }
    let producer: ThreadedProducer<Latencies> = config
        .set("bootstrap.servers", &args.bootstrap)
        .set("acks", &args.acks)
        .set("linger.ms", args.linger_ms.to_string())
        .set("compression.type", &args.compression)
        .set("batch.size", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("queue.buffering.max.messages", "1000000")
        // A transactional producer is idempotent (librdkafka refuses one that is not).
        .set(
            "enable.idempotence",
            (args.idempotence || args.transaction_size > 0).to_string(),
        )
        .create_with_context(context)
        .map_err(|e| e.to_string())?;
    let payload: Vec<u8> = (0..args.size).map(|i| (i * 7 + 13) as u8).collect();
    let txn_timeout = Duration::from_secs(60);
    let mut commits_us: Vec<u32> = Vec::new();
    if args.transaction_size > 0 {
        producer
            .init_transactions(txn_timeout)
            .map_err(|e| e.to_string())?;
    }
    // Warm up before the clock starts: one record to a side topic, flushed, so the connection,
    // the metadata and (for an idempotent producer) the producer id are in place. librdkafka's
    // idempotent producer asks for its id only on a timer ~0.5 s after start, which would
    // otherwise be counted against a run of well under a second.
    let warmup = format!("{topic}-warmup");
    create_topic(args, &warmup)?;
    if args.transaction_size > 0 {
        producer.begin_transaction().map_err(|e| e.to_string())?;
    }
    producer
        .send(
            BaseRecord::<str, [u8], Box<Instant>>::with_opaque_to(
                &warmup,
                Box::new(Instant::now()),
            )
            .payload(&payload[..])
            // Keyed: with `--topic-config cleanup.policy=compact` a keyless record is refused.
            .key("warmup"),
        )
        .map_err(|(e, _)| e.to_string())?;
    if args.transaction_size > 0 {
        producer
            .commit_transaction(txn_timeout)
            .map_err(|e| e.to_string())?;
    }
    drain(&producer, Duration::from_secs(60))?;
    producer
        .context()
        .micros
        .lock()
        .map_err(|_| "poisoned")?
        .clear();
    hook(args.before_produce.as_deref());
    let cpu_before = args.broker_pid.and_then(cpu_seconds);
    let start = Instant::now();
    for i in 0..args.count {
        if args.transaction_size > 0 && i % args.transaction_size == 0 {
            producer.begin_transaction().map_err(|e| e.to_string())?;
        }
        if args.rate > 0 {
            let due = start + Duration::from_secs_f64(i as f64 / args.rate as f64);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        let key = (i % 1024).to_string();
        let mut record = BaseRecord::with_opaque_to(topic, Box::new(Instant::now()))
            .payload(&payload)
            .key(&key);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((e, r)) => {
                    if !matches!(
                        e.rdkafka_error_code(),
                        Some(rdkafka::types::RDKafkaErrorCode::QueueFull)
                    ) {
                        return Err(e.to_string());
                    }
                    record = r;
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        }
        if args.transaction_size > 0
            && (i % args.transaction_size == args.transaction_size - 1 || i + 1 == args.count)
        {
            // `commit_transaction` flushes first, and the wrapper's flush polls in 100 ms
            // steps while the producer's own thread takes the events: drain first. The commit
            // latency is then the EndTxn round alone (markers written and synced).
            drain(&producer, txn_timeout)?;
            let t = Instant::now();
            producer
                .commit_transaction(txn_timeout)
                .map_err(|e| e.to_string())?;
            commits_us.push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX));
        }
    }
    drain(&producer, Duration::from_secs(120))?;
    let elapsed = start.elapsed().as_secs_f64();
    let cpu_after = args.broker_pid.and_then(cpu_seconds);
    hook(args.after_produce.as_deref());
    let ctx = producer.context();
    let mut lat = ctx.micros.lock().map_err(|_| "poisoned")?.clone();
    let errors = *ctx.errors.lock().map_err(|_| "poisoned")?;
    lat.sort_unstable();
    commits_us.sort_unstable();
    let (commit_p50_ms, commit_p99_ms) = if commits_us.is_empty() {
        (0.0, 0.0)
    } else {
        (percentile(&commits_us, 0.50), percentile(&commits_us, 0.99))
    };
    Ok(ProduceResult {
        commit_p50_ms,
        commit_p99_ms,
        msgs_per_s: args.count as f64 / elapsed,
        mb_per_s: (args.count * args.size) as f64 / elapsed / 1e6,
        p50_ms: percentile(&lat, 0.50),
        p99_ms: percentile(&lat, 0.99),
        errors,
        broker_cpu_s_per_gb: cpu_before
            .zip(cpu_after)
            .map(|(a, b)| (b - a) / ((args.count * args.size) as f64 / 1e9)),
    })
}

/// One consumption of the topic.
#[derive(Debug, Clone, Copy, Default)]
struct Consumed {
    /// From creating the consumer to the first message (connect, metadata, offsets, first fetch).
    startup_ms: f64,
    /// Messages per second after the first message.
    msgs_per_s: f64,
    /// Payload MB/s after the first message.
    mb_per_s: f64,
    /// Record-batch MB/s on the wire (raw consumer only).
    wire_mb_per_s: f64,
    /// Broker CPU seconds per GB of payload (user + system, all threads), with `--broker-pid`.
    broker_cpu_s_per_gb: Option<f64>,
    /// This process's CPU seconds per GB of payload (librdkafka consumer only).
    client_cpu_s_per_gb: Option<f64>,
    /// This process's minor page faults per GB of payload (librdkafka consumer only).
    client_faults_per_gb: Option<f64>,
}

/// Consumer context that writes librdkafka's log (`--consumer-config debug=...`) to stderr,
/// each line with the milliseconds since the consumer was created.
struct StderrLog(Instant);

impl ClientContext for StderrLog {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        eprintln!(
            "{:10.3} {level:?} {fac} {log_message}",
            self.0.elapsed().as_secs_f64() * 1e3
        );
    }
}

impl ConsumerContext for StderrLog {}

fn consume(args: &Args, topic: &str) -> Result<Consumed, String> {
    let mut config = client_config(args)?;
    config
        .set(
            "bootstrap.servers",
            args.consume_bootstrap.as_deref().unwrap_or(&args.bootstrap),
        )
        .set("group.id", "strom-bench")
        .set("enable.auto.commit", "false")
        .set("fetch.max.bytes", args.fetch_max_bytes.to_string())
        .set(
            "max.partition.fetch.bytes",
            args.max_partition_fetch_bytes.to_string(),
        )
        .set("fetch.wait.max.ms", LIMITS.max_wait_ms.to_string())
        .set(
            "isolation.level",
            if args.transaction_size > 0 {
                "read_committed"
            } else {
                "read_uncommitted"
            },
        );
    for c in &args.consumer_configs {
        let (k, v) = c
            .split_once('=')
            .ok_or_else(|| format!("--consumer-config {c:?} is not KEY=VALUE"))?;
        config.set(k, v);
        if k == "debug" {
            // The crate otherwise filters librdkafka's log by the `log` crate's level.
            config.set_log_level(RDKafkaLogLevel::Debug);
        }
    }
    let consumer: BaseConsumer<StderrLog> = config
        .create_with_context(StderrLog(Instant::now()))
        .map_err(|e| e.to_string())?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..args.partitions {
        // The run's topic is new, so offset 0 is its beginning. A logical offset
        // (`Offset::Beginning`) would make librdkafka ask ListOffsets first, and it sends that
        // query on a 500 ms retry timer when the partition leader's connection is not up yet
        // (always, at start): half a second of client start-up counted against the broker.
        tpl.add_partition_offset(topic, p, Offset::Offset(0))
            .map_err(|e| e.to_string())?;
    }
    consumer.assign(&tpl).map_err(|e| e.to_string())?;
    let start = Instant::now();
    // The rate is taken from the first message on: librdkafka spends about half a second
    // connecting, fetching metadata and offsets before it, which dominated runs of 100 MB.
    let mut first: Option<(Instant, Option<f64>)> = None;
    let me = std::process::id();
    let mut first_client = (None, None);
    // Messages and payload bytes after the first message.
    let (mut seen, mut n, mut bytes) = (0usize, 0usize, 0usize);
    while seen < args.count {
        if start.elapsed() > Duration::from_secs(120) {
            return Err(format!("consumed only {seen} of {}", args.count));
        }
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                seen += 1;
                if first.is_none() {
                    first = Some((Instant::now(), args.broker_pid.and_then(cpu_seconds)));
                    first_client = (cpu_seconds(me), minor_faults(me));
                } else {
                    n += 1;
                    bytes += m.payload().map_or(0, <[u8]>::len);
                }
            }
            Some(Err(e)) => return Err(e.to_string()),
            None => {}
        }
    }
    let end_cpu = args.broker_pid.and_then(cpu_seconds);
    let (end_client_cpu, end_faults) = (cpu_seconds(me), minor_faults(me));
    let (first_at, first_cpu) = first.ok_or("no message")?;
    let elapsed = first_at.elapsed().as_secs_f64();
    let gb = bytes as f64 / 1e9;
    Ok(Consumed {
        startup_ms: (first_at - start).as_secs_f64() * 1e3,
        msgs_per_s: n as f64 / elapsed,
        mb_per_s: bytes as f64 / elapsed / 1e6,
        wire_mb_per_s: 0.0,
        broker_cpu_s_per_gb: first_cpu.zip(end_cpu).map(|(a, b)| (b - a) / gb),
        client_cpu_s_per_gb: first_client
            .0
            .zip(end_client_cpu)
            .map(|(a, b)| (b - a) / gb),
        client_faults_per_gb: first_client
            .1
            .zip(end_faults)
            .map(|(a, b)| b.saturating_sub(a) as f64 / gb),
    })
}

/// Reads the topic with the raw Fetch client.
fn consume_raw(args: &Args, topic: &str) -> Result<Consumed, String> {
    let tls = match &args.tls_ca {
        Some(ca) => {
            Some(raw_fetch::Tls::new(ca, &args.tls_server_name).map_err(|e| e.to_string())?)
        }
        None => None,
    };
    let cpu_before = args.broker_pid.and_then(cpu_seconds);
    let c = raw_fetch::consume(
        tls.as_ref(),
        args.consume_bootstrap.as_deref().unwrap_or(&args.bootstrap),
        topic,
        args.partitions,
        args.count as u64,
        Limits {
            max_bytes: args.fetch_max_bytes,
            partition_max_bytes: args.max_partition_fetch_bytes,
            ..LIMITS
        },
        Duration::from_secs(120),
    )
    .map_err(|e| e.to_string())?;
    let cpu_after = args.broker_pid.and_then(cpu_seconds);
    let secs = c.elapsed.as_secs_f64();
    let payload = c.records as f64 * args.size as f64;
    Ok(Consumed {
        startup_ms: c.first_response.as_secs_f64() * 1e3,
        msgs_per_s: c.records as f64 / secs,
        mb_per_s: payload / secs / 1e6,
        wire_mb_per_s: c.batch_bytes as f64 / secs / 1e6,
        broker_cpu_s_per_gb: cpu_before
            .zip(cpu_after)
            .map(|(a, b)| (b - a) / (payload / 1e9)),
        client_cpu_s_per_gb: None,
        client_faults_per_gb: None,
    })
}

/// Throughput samples of one partition count over the runs.
#[derive(Debug, Default)]
struct Samples {
    produce_mb: Vec<f64>,
    produce_msgs: Vec<f64>,
    produce_p99_ms: Vec<f64>,
    consume_mb: Vec<f64>,
    consume_msgs: Vec<f64>,
    raw_mb: Vec<f64>,
    /// Broker CPU seconds per GB produced, with `--broker-pid`.
    produce_cpu: Vec<f64>,
    /// Broker CPU seconds per GB consumed (the last pass), with `--broker-pid`.
    consume_cpu: Vec<f64>,
}

/// One run of one case: a fresh topic with `args.partitions` partitions, produced and consumed.
fn run_case(args: &Args, run: usize, samples: &mut Samples) {
    let use_rdkafka = args.consumer != ConsumerKind::Raw;
    let use_raw = args.consumer != ConsumerKind::Rdkafka;
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let topic = format!("{}-{nonce}-{run}-p{}", args.topic, args.partitions);
    if let Err(e) = create_topic(args, &topic) {
        eprintln!("create topic {topic}: {e}");
        std::process::exit(1);
    }
    let p = match produce(args, &topic) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("produce: {e}");
            std::process::exit(1);
        }
    };
    let mut last = Consumed::default();
    let show = |kind: &str, pass: usize, c: &Consumed| {
        let cpu = c
            .broker_cpu_s_per_gb
            .map_or(String::new(), |s| format!(", broker {s:.2} CPU s/GB"));
        let client = c
            .client_cpu_s_per_gb
            .zip(c.client_faults_per_gb)
            .map_or(String::new(), |(s, f)| {
                format!(", client {s:.2} CPU s/GB, {f:.0} minor faults/GB")
            });
        let wire = if c.wire_mb_per_s > 0.0 {
            format!(" ({:.1} MB/s of batches)", c.wire_mb_per_s)
        } else {
            String::new()
        };
        eprintln!(
            "run {run} pass {pass}: {kind} {:.0} msgs/s, {:.1} MB/s{wire}, first message after {:.0} ms{cpu}{client}",
            c.msgs_per_s, c.mb_per_s, c.startup_ms
        );
    };
    for pass in 0..args.consume_passes {
        if use_rdkafka {
            match consume(args, &topic) {
                Ok(c) => {
                    show("librdkafka", pass, &c);
                    last = c;
                }
                Err(e) => eprintln!("consume: {e}"),
            }
        }
        if use_raw {
            match consume_raw(args, &topic) {
                Ok(c) => {
                    show("raw fetch", pass, &c);
                    samples.raw_mb.push(c.mb_per_s);
                    if !use_rdkafka {
                        last = c;
                    }
                }
                Err(e) => eprintln!("raw consume: {e}"),
            }
        }
    }
    let (cm, cmb) = (last.msgs_per_s, last.mb_per_s);
    if p.errors > 0 {
        eprintln!("{} delivery errors", p.errors);
    }
    samples.produce_mb.push(p.mb_per_s);
    samples.produce_msgs.push(p.msgs_per_s);
    samples.produce_p99_ms.push(p.p99_ms);
    if let Some(cpu) = p.broker_cpu_s_per_gb {
        eprintln!(
            "run {run}: produce {:.1} MB/s, broker {cpu:.2} CPU s/GB",
            p.mb_per_s
        );
        samples.produce_cpu.push(cpu);
    }
    if let Some(cpu) = last.broker_cpu_s_per_gb {
        samples.consume_cpu.push(cpu);
    }
    if args.consume_passes > 0 {
        samples.consume_mb.push(cmb);
        samples.consume_msgs.push(cm);
    }
    println!(
        "| {run} | {} B | {} | {} | {} ms | {} | {} | {:.0} | {:.1} | {:.2} | {:.2} | {:.2} | {:.2} | {:.0} | {:.1} |",
        args.size,
        args.partitions,
        args.acks,
        args.linger_ms,
        args.compression,
        args.transaction_size,
        p.msgs_per_s,
        p.mb_per_s,
        p.p50_ms,
        p.p99_ms,
        p.commit_p50_ms,
        p.commit_p99_ms,
        cm,
        cmb
    );
}

fn main() {
    let args = Args::parse();
    println!(
        "| run | size | partitions | acks | linger | compression | txn size | produce msgs/s | produce MB/s | p50 ms | p99 ms | commit p50 ms | commit p99 ms | consume msgs/s | consume MB/s |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let cases: Vec<i32> = if args.partition_cases.is_empty() {
        vec![args.partitions]
    } else {
        args.partition_cases.clone()
    };
    let mut samples: Vec<Samples> = cases.iter().map(|_| Samples::default()).collect();
    for run in 0..args.runs {
        let order: Vec<usize> = if run % 2 == 0 {
            (0..cases.len()).collect()
        } else {
            (0..cases.len()).rev().collect()
        };
        for ci in order {
            let (Some(&partitions), Some(samples)) = (cases.get(ci), samples.get_mut(ci)) else {
                continue;
            };
            let case = Args {
                partitions,
                ..args.clone()
            };
            run_case(&case, run, samples);
        }
    }
    for (partitions, samples) in cases.iter().zip(samples.iter_mut()) {
        println!(
            "\n{partitions} partitions: median produce {:.1} MB/s, median consume {:.1} MB/s",
            median(&mut samples.produce_mb),
            median(&mut samples.consume_mb)
        );
        // One line per case for scripts (benches/issue16.sh): medians over the runs.
        println!(
            "summary size={} partitions={partitions} runs={} produce_mb_s={:.1} produce_rec_s={:.0} produce_p99_ms={:.1} consume_mb_s={:.1} consume_rec_s={:.0} raw_consume_mb_s={:.1} produce_broker_cpu_s_gb={:.2} consume_broker_cpu_s_gb={:.2}",
            args.size,
            args.runs,
            median(&mut samples.produce_mb),
            median(&mut samples.produce_msgs),
            median(&mut samples.produce_p99_ms),
            median(&mut samples.consume_mb),
            median(&mut samples.consume_msgs),
            median(&mut samples.raw_mb),
            median(&mut samples.produce_cpu),
            median(&mut samples.consume_cpu)
        );
        if args.consumer != ConsumerKind::Rdkafka {
            println!(
                "{partitions} partitions: median raw fetch {:.1} MB/s of payload (every pass)",
                median(&mut samples.raw_mb)
            );
        }
    }
}
