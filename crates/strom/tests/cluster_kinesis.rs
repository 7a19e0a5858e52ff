//! The Kinesis API across the brokers of a cluster (issue 18): three `strom serve` processes
//! over one real PostgreSQL and one moto S3 server, driven by aws-sdk-kinesis clients pointed
//! at different brokers.
//!
//! - a stream created through broker 1 is listed and described through brokers 2 and 3;
//!   records put through every broker are read in order through another, with an iterator
//!   obtained on one broker and used on the next;
//! - a `SubscribeToShard` stream open on broker 2 delivers records put through brokers 1 and
//!   3, and ends with `ChildShards` when broker 1 splits the shard; `GetRecords` on broker 3
//!   reaches the parent's end and the children, and no acknowledged record is lost across
//!   the split (puts race it through every broker);
//! - consumers, tags and retention changed through one broker are seen through another;
//! - in AWS-limits mode two brokers writing one shard are refused together above the shard's
//!   limit (1,000 records/s for the whole cluster, not per broker), one right after the other;
//! - records produced with librdkafka through one broker are read with Kinesis through
//!   another, and the reverse.

mod cluster_common;

use cluster_common::{Broker, ClusterServe};
use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::config::retry::RetryConfig;
use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{
    PutRecordsRequestEntry, ShardIteratorType, StartingPosition, SubscribeToShardEventStream,
};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use strom_cluster::testkit::{MotoServer, PostgresServer};

const BUCKET: &str = "strom-cluster-kinesis";
/// Bound of every wait in this test.
const STEP: Duration = Duration::from_secs(60);
const ARN_PREFIX: &str = "arn:aws:kinesis:us-east-1:000000000000:stream/";

/// The tests of this file each run a whole cluster: one at a time on a small machine.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// PostgreSQL, moto and three brokers (killed when dropped).
struct Cluster {
    brokers: Vec<Broker>,
    _data: tempfile::TempDir,
    _s3: MotoServer,
    _pg: PostgresServer,
}

impl Cluster {
    async fn start(extra: &[&str]) -> Cluster {
        let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        tokio::task::spawn_blocking(move || {
            let pg = PostgresServer::start().expect("start postgres");
            let s3 = MotoServer::start().expect("start moto");
            s3.create_bucket(BUCKET).expect("create bucket");
            let data = tempfile::tempdir().unwrap();
            let brokers = std::thread::scope(|s| {
                let started: Vec<_> = (1..=3)
                    .map(|n| {
                        let (pg, s3, dir, extra) = (&pg, &s3, data.path(), extra.clone());
                        s.spawn(move || start(n, pg, s3, dir, extra))
                    })
                    .collect();
                started
                    .into_iter()
                    .map(|h| h.join().unwrap())
                    .collect::<Vec<_>>()
            });
            Cluster {
                brokers,
                _data: data,
                _s3: s3,
                _pg: pg,
            }
        })
        .await
        .unwrap()
    }

    fn kinesis(&self, n: usize) -> Client {
        client(&format!("http://{}", self.brokers[n].kinesis))
    }
}

fn start(
    n: usize,
    pg: &PostgresServer,
    s3: &MotoServer,
    data: &Path,
    extra: Vec<String>,
) -> Broker {
    Broker::start(&ClusterServe {
        n,
        pg,
        s3,
        data,
        bucket: BUCKET,
        prefix: "kinesis",
        lease_ttl_ms: 2_000,
        flush_delay_ms: 20,
        log: "warn".to_owned(),
        extra,
    })
}

/// The official SDK client with static dummy credentials, a fixed region, no retries.
fn client(endpoint: &str) -> Client {
    let config = aws_sdk_kinesis::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "static"))
        .endpoint_url(endpoint)
        .retry_config(RetryConfig::disabled())
        .build();
    Client::from_conf(config)
}

/// The exception name of an SDK error.
fn code<E, R>(err: &aws_sdk_kinesis::error::SdkError<E, R>) -> String
where
    E: aws_sdk_kinesis::error::ProvideErrorMetadata,
{
    err.as_service_error()
        .and_then(|e| e.code())
        .unwrap_or("<not a service error>")
        .to_owned()
}

/// Waits (bounded) until `check` holds, polling every 100 ms.
async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < STEP, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn put(k: &Client, stream: &str, key: &str, data: Vec<u8>) -> String {
    k.put_record()
        .stream_name(stream)
        .partition_key(key)
        .data(Blob::new(data))
        .send()
        .await
        .unwrap()
        .sequence_number()
        .to_owned()
}

/// Every record of a shard from TRIM_HORIZON up to its end (a closed shard: until the
/// iterator ends) or, for an open shard, until `want` records were read.
async fn read_shard(k: &Client, stream: &str, shard: &str, want: Option<usize>) -> Vec<Vec<u8>> {
    let mut it = k
        .get_shard_iterator()
        .stream_name(stream)
        .shard_id(shard)
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap()
        .shard_iterator()
        .map(str::to_owned);
    let mut out = Vec::new();
    let started = Instant::now();
    while let Some(i) = it {
        if want.is_some_and(|w| out.len() >= w) {
            break;
        }
        assert!(
            started.elapsed() < STEP,
            "{shard}: read {} records",
            out.len()
        );
        let page = k.get_records().shard_iterator(i).send().await.unwrap();
        out.extend(page.records().iter().map(|r| r.data().as_ref().to_vec()));
        it = page.next_shard_iterator().map(str::to_owned);
        if page.records().is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinesis_across_three_brokers() {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::start(&[]).await;
    let (k1, k2, k3) = (cluster.kinesis(0), cluster.kinesis(1), cluster.kinesis(2));
    let stream = "orders";
    let arn = format!("{ARN_PREFIX}{stream}");

    // Created through broker 1, seen through the others.
    k1.create_stream()
        .stream_name(stream)
        .shard_count(2)
        .send()
        .await
        .unwrap();
    for k in [&k2, &k3] {
        let d = k
            .describe_stream_summary()
            .stream_name(stream)
            .send()
            .await
            .unwrap();
        assert_eq!(
            d.stream_description_summary().unwrap().open_shard_count(),
            2
        );
        let listed = k.list_streams().send().await.unwrap();
        assert!(listed.stream_names().iter().any(|s| s == stream));
    }

    // Records put through every broker; an iterator from broker 1 read on broker 2, and the
    // next iterator broker 2 handed out read on broker 3.
    let mut seqs = Vec::new();
    for (i, k) in [&k1, &k2, &k3].iter().enumerate() {
        seqs.push(put(k, stream, "same-key", vec![b'a' + i as u8]).await);
    }
    let shard = k3
        .put_record()
        .stream_name(stream)
        .partition_key("same-key")
        .data(Blob::new(b"d".to_vec()))
        .send()
        .await
        .unwrap()
        .shard_id()
        .to_owned();
    let it = k1
        .get_shard_iterator()
        .stream_name(stream)
        .shard_id(&shard)
        .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
        .starting_sequence_number(&seqs[0])
        .send()
        .await
        .unwrap()
        .shard_iterator()
        .unwrap()
        .to_owned();
    let page = k2
        .get_records()
        .shard_iterator(&it)
        .limit(2)
        .send()
        .await
        .unwrap();
    let data: Vec<&[u8]> = page.records().iter().map(|r| r.data().as_ref()).collect();
    assert_eq!(data, [b"a".as_slice(), b"b"]);
    let page = k3
        .get_records()
        .shard_iterator(page.next_shard_iterator().unwrap())
        .send()
        .await
        .unwrap();
    let data: Vec<&[u8]> = page.records().iter().map(|r| r.data().as_ref()).collect();
    assert_eq!(data, [b"c".as_slice(), b"d"]);

    // Consumers, tags and retention changed through one broker are seen through another.
    let consumer = k2
        .register_stream_consumer()
        .stream_arn(&arn)
        .consumer_name("efo")
        .send()
        .await
        .unwrap()
        .consumer()
        .unwrap()
        .consumer_arn()
        .to_owned();
    k3.add_tags_to_stream()
        .stream_name(stream)
        .tags("team", "kin")
        .send()
        .await
        .unwrap();
    k1.increase_stream_retention_period()
        .stream_name(stream)
        .retention_period_hours(48)
        .send()
        .await
        .unwrap();
    until("consumer, tag and retention on every broker", || {
        let (k1, k2, k3, arn) = (k1.clone(), k2.clone(), k3.clone(), arn.clone());
        async move {
            let listed = k1.list_stream_consumers().stream_arn(&arn).send().await;
            let tags = k2.list_tags_for_stream().stream_name(stream).send().await;
            let summary = k3
                .describe_stream_summary()
                .stream_name(stream)
                .send()
                .await;
            listed.is_ok_and(|l| l.consumers().iter().any(|c| c.consumer_name() == "efo"))
                && tags.is_ok_and(|t| t.tags().iter().any(|t| t.key() == "team"))
                && summary.is_ok_and(|s| {
                    s.stream_description_summary()
                        .unwrap()
                        .retention_period_hours()
                        == 48
                })
        }
    })
    .await;

    // A subscription on broker 2, at the shard's end; records put through brokers 1 and 3
    // reach it.
    let start = StartingPosition::builder()
        .r#type(ShardIteratorType::Latest)
        .build()
        .unwrap();
    let mut sub = k2
        .subscribe_to_shard()
        .consumer_arn(&consumer)
        .shard_id(&shard)
        .starting_position(start)
        .send()
        .await
        .unwrap();
    // Puts race the split through every broker: each acknowledged record must be found in
    // the parent (below its end) or in a child.
    let racers: Vec<_> = [k1.clone(), k2.clone(), k3.clone()]
        .into_iter()
        .enumerate()
        .map(|(b, k)| {
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for i in 0..40u32 {
                    let data = format!("race-{b}-{i}").into_bytes();
                    match k
                        .put_record()
                        .stream_name(stream)
                        .partition_key("same-key")
                        .data(Blob::new(data.clone()))
                        .send()
                        .await
                    {
                        Ok(_) => acked.push(data),
                        Err(e) => panic!("put through broker {}: {}", b + 1, code(&e)),
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                acked
            })
        })
        .collect();
    let mut delivered: Vec<Vec<u8>> = Vec::new();
    let children;
    let mut split_done = false;
    let started = Instant::now();
    loop {
        assert!(
            started.elapsed() < STEP,
            "subscription did not end with ChildShards"
        );
        if !split_done && delivered.len() >= 20 {
            // Split through broker 1 while broker 2 streams the parent.
            let parent = k1
                .list_shards()
                .stream_name(stream)
                .send()
                .await
                .unwrap()
                .shards()
                .iter()
                .find(|s| s.shard_id() == shard)
                .unwrap()
                .clone();
            let range = parent.hash_key_range().unwrap();
            let lo: u128 = range.starting_hash_key().parse().unwrap();
            let hi: u128 = range.ending_hash_key().parse().unwrap();
            k1.split_shard()
                .stream_name(stream)
                .shard_to_split(&shard)
                .new_starting_hash_key((lo + (hi - lo) / 2 + 1).to_string())
                .send()
                .await
                .unwrap();
            split_done = true;
        }
        let event = tokio::time::timeout(STEP, sub.event_stream.recv())
            .await
            .expect("an event within the bound")
            .expect("event stream readable");
        let Some(SubscribeToShardEventStream::SubscribeToShardEvent(e)) = event else {
            panic!("subscription ended before ChildShards: {event:?}");
        };
        delivered.extend(e.records().iter().map(|r| r.data().as_ref().to_vec()));
        if !e.child_shards().is_empty() {
            children = e
                .child_shards()
                .iter()
                .map(|c| c.shard_id().to_owned())
                .collect::<BTreeSet<_>>();
            break;
        }
    }
    assert_eq!(children.len(), 2, "{children:?}");
    // The subscription ended after the ChildShards event.
    let end = tokio::time::timeout(STEP, sub.event_stream.recv())
        .await
        .unwrap();
    assert!(matches!(end, Ok(None)), "{end:?}");

    let mut acked = Vec::new();
    for r in racers {
        acked.extend(r.await.unwrap());
    }
    // The parent read on broker 3 ends (its iterator runs out) with what the subscription saw.
    let parent = read_shard(&k3, stream, &shard, None).await;
    assert!(
        parent.ends_with(&delivered),
        "subscription = the parent's tail"
    );
    let mut found: BTreeSet<Vec<u8>> = parent.into_iter().collect();
    // Children listed with their lineage through broker 2.
    let listed = k2.list_shards().stream_name(stream).send().await.unwrap();
    for c in &children {
        let s = listed.shards().iter().find(|s| s.shard_id() == c).unwrap();
        assert_eq!(s.parent_shard_id(), Some(shard.as_str()));
    }
    for c in &children {
        found.extend(read_shard_open(&k1, stream, c).await);
    }
    let lost: Vec<String> = acked
        .iter()
        .filter(|a| !found.contains(*a))
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    assert!(
        lost.is_empty(),
        "acknowledged records lost across the split: {lost:?}"
    );

    // Kafka and Kinesis across brokers: produced with librdkafka through broker 3, read with
    // Kinesis through broker 1; put through Kinesis on broker 2, consumed through broker 3.
    kafka_and_kinesis_across_brokers(&cluster).await;
}

/// Every record of an open shard, read until a page comes back empty at the shard's end.
async fn read_shard_open(k: &Client, stream: &str, shard: &str) -> Vec<Vec<u8>> {
    let mut it = k
        .get_shard_iterator()
        .stream_name(stream)
        .shard_id(shard)
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap()
        .shard_iterator()
        .map(str::to_owned);
    let mut out = Vec::new();
    while let Some(i) = it {
        let page = k.get_records().shard_iterator(i).send().await.unwrap();
        out.extend(page.records().iter().map(|r| r.data().as_ref().to_vec()));
        if page.millis_behind_latest() == Some(0) && page.records().is_empty() {
            break;
        }
        it = page.next_shard_iterator().map(str::to_owned);
    }
    out
}

async fn kafka_and_kinesis_across_brokers(cluster: &Cluster) {
    let stream = "mixed";
    let k1 = cluster.kinesis(0);
    let k2 = cluster.kinesis(1);
    k1.create_stream()
        .stream_name(stream)
        .shard_count(1)
        .send()
        .await
        .unwrap();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &cluster.brokers[2].kafka)
        .set("enable.idempotence", "true")
        .set("linger.ms", "0")
        .create()
        .unwrap();
    producer
        .send(
            FutureRecord::to(stream)
                .partition(0)
                .key("k")
                .payload("from-kafka"),
            STEP,
        )
        .await
        .unwrap();
    let seq = put(&k2, stream, "k", b"from-kinesis".to_vec()).await;
    assert!(!seq.is_empty());
    let got = read_shard(&k1, stream, "shardId-000000000000", Some(2)).await;
    assert_eq!(got, [b"from-kafka".to_vec(), b"from-kinesis".to_vec()]);

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &cluster.brokers[2].kafka)
        .set("group.id", "unused")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(stream, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let mut seen = Vec::new();
    let started = Instant::now();
    while seen.len() < 2 {
        assert!(started.elapsed() < STEP, "consumed {seen:?}");
        if let Some(m) = consumer.poll(Duration::from_millis(500)) {
            let m = m.unwrap();
            seen.push(m.payload().unwrap().to_vec());
        }
    }
    assert_eq!(seen, [b"from-kafka".to_vec(), b"from-kinesis".to_vec()]);
}

/// AWS-limits mode: the shard's write limit (1,000 records/s) holds for the cluster, not per
/// broker: what one broker spent of a shard's bucket another broker cannot spend again (it is
/// refused with `ProvisionedThroughputExceededException` beyond what refilled). Then the read
/// side, in a way per-broker buckets cannot pass however slow the machine: a 10 MiB
/// GetRecords through broker 1 overdraws the shard's read bytes (2 MiB/s) by 8 MiB, which
/// refuses the shard's reads for four seconds; a GetRecords through broker 2 right after must
/// be refused (with a bucket per broker, broker 2's is full and admits it). An attempt whose
/// second read came more than 2.5 s after the first proves nothing and is repeated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_limits_hold_across_brokers() {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::start(&["--kinesis-aws-limits"]).await;
    let (k1, k2) = (cluster.kinesis(0), cluster.kinesis(1));
    let stream = "limited";
    k1.create_stream()
        .stream_name(stream)
        .shard_count(1)
        .send()
        .await
        .unwrap();
    until("stream known on broker 2", || {
        let k2 = k2.clone();
        async move {
            k2.describe_stream_summary()
                .stream_name(stream)
                .send()
                .await
                .is_ok()
        }
    })
    .await;
    // Broker 1 empties the shard's record bucket (1,000 records), then broker 2 offers 1,000
    // more at once: with the bucket shared it is admitted only what refilled meanwhile
    // (1,000/s), with a bucket per broker it would be admitted all 1,000.
    let entries: Vec<PutRecordsRequestEntry> = (0..500)
        .map(|i| {
            PutRecordsRequestEntry::builder()
                .partition_key(format!("k{i}"))
                .data(Blob::new(vec![0u8; 10]))
                .build()
                .unwrap()
        })
        .collect();
    let put_500 = |k: Client| {
        let entries = entries.clone();
        async move {
            let out = k
                .put_records()
                .stream_name(stream)
                .set_records(Some(entries))
                .send()
                .await
                .unwrap();
            let refused = out
                .records()
                .iter()
                .filter(|r| r.error_code() == Some("ProvisionedThroughputExceededException"))
                .count();
            500 - refused
        }
    };
    let started = Instant::now();
    let first = put_500(k1.clone()).await + put_500(k1.clone()).await;
    let second = put_500(k2.clone()).await + put_500(k2.clone()).await;
    let elapsed = started.elapsed().as_secs_f64();
    eprintln!("admitted {first} through broker 1, {second} through broker 2 in {elapsed:.2}s");
    // Broker 1 got the full bucket (plus a refill while its requests ran).
    assert!(first >= 900, "broker 1 admitted only {first}");
    // Together no more than one bucket plus what refilled over the whole exchange.
    let bound = 1_000.0 + 1_000.0 * elapsed + 50.0;
    assert!(
        ((first + second) as f64) <= bound,
        "admitted {first} + {second} in {elapsed:.2}s: the limit held per broker, not per shard"
    );

    // 10 MiB more in the shard, through Kafka (Kinesis puts would take ten seconds at the
    // shard's 1 MiB/s).
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &cluster.brokers[2].kafka)
        .set("linger.ms", "0")
        .create()
        .unwrap();
    for _ in 0..20 {
        producer
            .send(
                FutureRecord::to(stream)
                    .partition(0)
                    .key("big")
                    .payload(&vec![7u8; 512 * 1024]),
                STEP,
            )
            .await
            .unwrap();
    }
    let iterator = |k: Client| async move {
        k.get_shard_iterator()
            .stream_name(stream)
            .shard_id("shardId-000000000000")
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap()
            .shard_iterator()
            .unwrap()
            .to_owned()
    };
    let (it1, it2) = (iterator(k1.clone()).await, iterator(k2.clone()).await);
    for attempt in 0..5 {
        // Broker 1 reads up to 10 MiB (once its reads are admitted again after an earlier
        // attempt's debt).
        let started = Instant::now();
        let read: usize = loop {
            match k1.get_records().shard_iterator(&it1).send().await {
                Ok(page) => break page.records().iter().map(|r| r.data().as_ref().len()).sum(),
                Err(e) => assert_eq!(code(&e), "ProvisionedThroughputExceededException"),
            }
            assert!(started.elapsed() < STEP, "broker 1's reads never admitted");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let charged = Instant::now();
        assert!(read >= 9 << 20, "the big read returned {read} bytes");
        let second = k2.get_records().shard_iterator(&it2).limit(1).send().await;
        let after = charged.elapsed();
        if after > Duration::from_millis(2_500) {
            eprintln!("attempt {attempt}: broker 2 read {after:?} after broker 1's; again");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        match second {
            Err(e) => assert_eq!(code(&e), "ProvisionedThroughputExceededException"),
            Ok(_) => panic!(
                "broker 2 read {after:?} after broker 1 overdrew the shard's read bytes: \
                 the limit held per broker, not per shard"
            ),
        }
        return;
    }
    panic!("broker 2 never read within 2.5 s of broker 1 in five attempts");
}
