//! Log compaction seen by real clients: a compacted topic written by librdkafka (100 000 updates
//! over 1 000 keys, some tombstones) and cleaned by the broker's background cleaner reads back
//! as exactly the latest value per key, offsets increasing, tombstoned keys gone once
//! `delete.retention.ms` has passed, and smaller on disk; transactional data (committed and
//! aborted) stays correct through compaction for both isolation levels; keyless records are
//! refused per record with INVALID_RECORD (87), also after a runtime switch to `compact`.
//!
//! Waits are bounded and poll the broker's cleaner state (what `/metrics` shows) instead of
//! sleeping for a fixed time; the only sleeps let `segment.ms` pass so the active segment
//! rolls (the cleaner never touches the active segment).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, ProduceResponse};
use rdkafka::admin::{AdminOptions, AlterConfig, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::consumer::Consumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use strom_broker::{Broker, BrokerConfig};
use strom_kafka::KafkaConfig;
use strom_record::{BatchBuilder, Record};
use strom_tests::TestBroker;
use tokio::net::TcpStream;

use super::client;
use super::raw::{call, produce_request};

const T: Duration = Duration::from_secs(30);

/// `segment.ms` of the test topics: how long before the active segment may roll.
const SEGMENT_MS: u64 = 300;

/// `delete.retention.ms` of the test topics.
const DELETE_RETENTION_MS: u64 = 1_000;

/// A broker whose cleaner looks for work every 100 ms.
async fn start(dir: &std::path::Path) -> TestBroker {
    let mut config = BrokerConfig::new(dir);
    config.cleaner.backoff = Duration::from_millis(100);
    TestBroker::start_with(config, KafkaConfig::default()).await
}

/// Creates a one-partition compacted topic with small, quickly rolling segments.
async fn create_compacted(bootstrap: &str, name: &str) {
    let admin = client::admin(bootstrap);
    let segment_ms = SEGMENT_MS.to_string();
    let delete_retention = DELETE_RETENTION_MS.to_string();
    let topic = NewTopic::new(name, 1, TopicReplication::Fixed(1))
        .set("cleanup.policy", "compact")
        .set("segment.bytes", "65536")
        .set("segment.ms", &segment_ms)
        .set("min.cleanable.dirty.ratio", "0.01")
        .set("delete.retention.ms", &delete_retention)
        .set("min.compaction.lag.ms", "0");
    let results = admin
        .create_topics(&[topic], &AdminOptions::new().operation_timeout(Some(T)))
        .await
        .expect("create_topics request");
    for r in results {
        r.expect("topic created");
    }
}

fn producer(bootstrap: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("batch.size", "16384")
        .set("message.timeout.ms", "30000")
        .set("log_level", "3")
        .create()
        .expect("producer")
}

/// Reads partition 0 of `topic` from `offset` until the record at `last` arrived.
async fn read_through(
    bootstrap: &str,
    topic: &str,
    isolation: &str,
    offset: Offset,
    last: i64,
) -> Vec<OwnedMessage> {
    let consumer = client::isolated_consumer(bootstrap, isolation);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, offset).unwrap();
    consumer.assign(&tpl).unwrap();
    let mut out: Vec<OwnedMessage> = Vec::new();
    while out.last().is_none_or(|m| m.offset() < last) {
        let m = tokio::time::timeout(T, consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("timed out after {} messages", out.len()))
            .expect("consume");
        out.push(m.detach());
    }
    out
}

/// The key → value map a reader of `messages` ends with (a null value deletes), checking
/// offsets increase on the way.
fn last_write_wins(messages: &[OwnedMessage]) -> BTreeMap<String, Option<String>> {
    let mut map = BTreeMap::new();
    let mut previous = -1;
    for m in messages {
        assert!(
            m.offset() > previous,
            "offsets increase: {previous} then {}",
            m.offset()
        );
        previous = m.offset();
        let key = String::from_utf8(m.key().expect("every record has a key").to_vec()).unwrap();
        let value = m.payload().map(|v| String::from_utf8(v.to_vec()).unwrap());
        map.insert(key, value);
    }
    map
}

/// Asserts a reader's map equals `expected` on every live key, and that a key it still shows
/// as deleted (a tombstone not yet past `delete.retention.ms`) was deleted; reports at most a
/// few differences.
fn assert_live_equal(
    actual: &BTreeMap<String, Option<String>>,
    expected: &BTreeMap<String, Option<String>>,
    context: &str,
) {
    let live = |m: &BTreeMap<String, Option<String>>| -> BTreeMap<String, String> {
        m.iter()
            .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
            .collect()
    };
    let (a, e) = (live(actual), live(expected));
    let wrong: Vec<_> = e
        .iter()
        .filter(|(k, v)| a.get(*k) != Some(*v))
        .map(|(k, v)| format!("{k}: want {v}, got {:?}", a.get(k)))
        .chain(
            a.keys()
                .filter(|k| !e.contains_key(*k))
                .map(|k| format!("{k}: unexpected {:?}", a.get(k))),
        )
        .take(5)
        .collect();
    assert!(
        wrong.is_empty(),
        "{context}: {} live keys, {} expected; {wrong:?}",
        a.len(),
        e.len()
    );
    for (k, v) in actual {
        if v.is_none() {
            assert_eq!(
                expected.get(k),
                Some(&None),
                "{context}: {k} shows as deleted"
            );
        }
    }
}

async fn send(p: &FutureProducer, topic: &str, key: &str, value: Option<&str>) -> i64 {
    let mut record = FutureRecord::<str, str>::to(topic).partition(0).key(key);
    if let Some(v) = value {
        record = record.payload(v);
    }
    p.send(record, T)
        .await
        .map_err(|(e, _)| e)
        .expect("delivered")
        .offset
}

/// Waits (bounded) until the partition's cleaner state satisfies `done`.
async fn wait_for_cleaner(
    broker: &Arc<Broker>,
    topic: &str,
    what: &str,
    done: impl Fn(&strom_broker::cleaner::PartitionCleanerState) -> bool,
) {
    let deadline = Instant::now() + T;
    loop {
        let state = broker
            .cleaner_status()
            .into_iter()
            .find(|s| s.topic == topic && s.partition == 0)
            .map(|s| s.state);
        if state.as_ref().is_some_and(&done) {
            return;
        }
        assert!(Instant::now() < deadline, "cleaner never {what}: {state:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads partition 0 of `topic` from the beginning through `last` until at most `records`
/// records are left (the cleaner has reached everything below the active segment), bounded.
async fn read_when_compacted(
    bootstrap: &str,
    topic: &str,
    last: i64,
    records: usize,
) -> Vec<OwnedMessage> {
    let deadline = Instant::now() + T;
    loop {
        let messages = read_through(
            bootstrap,
            topic,
            "read_uncommitted",
            Offset::Beginning,
            last,
        )
        .await;
        if messages.len() <= records {
            return messages;
        }
        assert!(
            Instant::now() < deadline,
            "{} records left, want at most {records}",
            messages.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Lets `segment.ms` pass and appends one record, which rolls the active segment so that
/// everything before it becomes cleanable. Returns the record's offset.
async fn roll_with(p: &FutureProducer, topic: &str, key: &str) -> i64 {
    tokio::time::sleep(Duration::from_millis(SEGMENT_MS + 50)).await;
    send(p, topic, key, Some(key)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compacted_topic_reads_back_as_the_latest_value_per_key() {
    const TOPIC: &str = "table";
    const KEYS: usize = 1_000;
    const UPDATES: usize = 100_000;
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path()).await;
    let bootstrap = broker.bootstrap();
    create_compacted(&bootstrap, TOPIC).await;
    let producer = producer(&bootstrap);

    let mut expected: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut pending = Vec::with_capacity(UPDATES);
    for i in 0..UPDATES {
        let key = format!("key-{:04}", i % KEYS);
        let value = format!("value-{i}");
        expected.insert(key.clone(), Some(value.clone()));
        let record = FutureRecord::to(TOPIC)
            .partition(0)
            .key(&key)
            .payload(&value);
        pending.push(producer.send_result(record).expect("queued"));
    }
    for delivery in pending {
        delivery.await.expect("not cancelled").expect("delivered");
    }
    // Every tenth key is deleted.
    for k in (0..KEYS).step_by(10) {
        let key = format!("key-{k:04}");
        send(&producer, TOPIC, &key, None).await;
        expected.insert(key, None);
    }
    let partition = broker.broker().partition(TOPIC, 0).unwrap();
    let last = roll_with(&producer, TOPIC, "filler-0").await;
    expected.insert("filler-0".into(), Some("filler-0".into()));

    wait_for_cleaner(broker.broker(), TOPIC, "cleaned", |s| {
        s.cleans_total > 0 && s.records_removed_total > 0
    })
    .await;
    // One record per key: every update but the latest is gone (tombstones may still be there).
    let messages = read_when_compacted(&bootstrap, TOPIC, last, expected.len()).await;
    assert_live_equal(
        &last_write_wins(&messages),
        &expected,
        "after the first clean",
    );
    // The cleaner runs while the records arrive, so the size on disk never reaches what was
    // produced: compare with the payload bytes alone (at least 19 per record), and check the
    // cleaner wrote less than it read.
    let produced_at_least = (UPDATES * 19) as u64;
    assert!(
        partition.size_bytes() < produced_at_least / 10,
        "on disk: {} bytes for {produced_at_least} bytes of keys and values",
        partition.size_bytes()
    );
    let state = broker
        .broker()
        .cleaner_status()
        .into_iter()
        .find(|s| s.topic == TOPIC)
        .map(|s| s.state)
        .unwrap();
    assert!(
        state.bytes_written_total < state.bytes_read_total,
        "cleaner read {} bytes and wrote {}",
        state.bytes_read_total,
        state.bytes_written_total
    );

    // Once delete.retention.ms has passed, a clean drops the tombstones (the log asks for
    // that clean itself when a kept tombstone becomes due, dirty or not).
    let want: BTreeMap<String, Option<String>> = expected
        .iter()
        .filter(|(_, v)| v.is_some())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let deadline = Instant::now() + T;
    let messages = loop {
        let messages = read_through(
            &bootstrap,
            TOPIC,
            "read_uncommitted",
            Offset::Beginning,
            last,
        )
        .await;
        let tombstones = messages.iter().filter(|m| m.payload().is_none()).count();
        if tombstones == 0 {
            break messages;
        }
        assert!(
            Instant::now() < deadline,
            "{tombstones} tombstones never removed: {:?}",
            broker.broker().cleaner_status()
        );
        tokio::time::sleep(Duration::from_millis(DELETE_RETENTION_MS / 4)).await;
    };
    let map = last_write_wins(&messages);
    assert_live_equal(&map, &want, "after delete.retention.ms");
    assert_eq!(map.len(), want.len(), "no tombstone left");

    // ListOffsets over the compacted log: the watermarks are unchanged by cleaning, and the
    // first offset at or after a timestamp older than every record is the first record kept.
    let c = client::isolated_consumer(&bootstrap, "read_uncommitted");
    let (low, high) = tokio::task::block_in_place(|| c.fetch_watermarks(TOPIC, 0, T)).unwrap();
    assert_eq!((low, high), (0, last + 1));
    let mut query = TopicPartitionList::new();
    query
        .add_partition_offset(TOPIC, 0, Offset::Offset(0))
        .unwrap();
    let found = tokio::task::block_in_place(|| c.offsets_for_times(query, T)).unwrap();
    assert_eq!(
        found.find_partition(TOPIC, 0).map(|e| e.offset()),
        Some(Offset::Offset(messages[0].offset()))
    );

    // A fetch from an offset compacted away starts at the next record kept.
    let offsets: Vec<i64> = messages.iter().map(Message::offset).collect();
    let gap = offsets
        .windows(2)
        .find(|w| w[1] > w[0] + 1)
        .expect("compaction left offset gaps");
    let from_gap = read_through(
        &bootstrap,
        TOPIC,
        "read_uncommitted",
        Offset::Offset(gap[0] + 1),
        last,
    )
    .await;
    assert_eq!(from_gap.first().map(Message::offset), Some(gap[1]));
    broker.stop().await;
}

fn txn_producer(bootstrap: &str, id: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("transactional.id", id)
        .set("linger.ms", "2")
        .set("message.timeout.ms", "30000")
        .set("log_level", "3")
        .create()
        .expect("transactional producer")
}

fn blocking<R>(f: impl FnOnce() -> R) -> R {
    tokio::task::block_in_place(f)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_stay_correct_through_compaction() {
    const TOPIC: &str = "txn-table";
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path()).await;
    let bootstrap = broker.bootstrap();
    create_compacted(&bootstrap, TOPIC).await;
    let producer = txn_producer(&bootstrap, "tx-compaction");
    blocking(|| producer.init_transactions(T)).expect("init");

    // Three committed rounds over 50 keys, each followed by an aborted one that would
    // overwrite them.
    let mut committed: BTreeMap<String, Option<String>> = BTreeMap::new();
    for round in 0..3 {
        producer.begin_transaction().unwrap();
        for k in 0..50 {
            let (key, value) = (format!("k{k:02}"), format!("committed-{round}-{k}"));
            send(&producer, TOPIC, &key, Some(&value)).await;
            committed.insert(key, Some(value));
        }
        blocking(|| producer.commit_transaction(T)).expect("commit");
        producer.begin_transaction().unwrap();
        for k in 0..50 {
            let (key, value) = (format!("k{k:02}"), format!("aborted-{round}-{k}"));
            send(&producer, TOPIC, &key, Some(&value)).await;
        }
        blocking(|| producer.abort_transaction(T)).expect("abort");
    }
    let plain = self::producer(&bootstrap);
    let last = roll_with(&plain, TOPIC, "filler").await;
    committed.insert("filler".into(), Some("filler".into()));

    let committed_before =
        read_through(&bootstrap, TOPIC, "read_committed", Offset::Beginning, last).await;
    assert_live_equal(
        &last_write_wins(&committed_before),
        &committed,
        "before cleaning",
    );

    wait_for_cleaner(broker.broker(), TOPIC, "cleaned", |s| {
        s.cleans_total > 0 && s.records_removed_total > 0
    })
    .await;
    read_when_compacted(&bootstrap, TOPIC, last, committed.len()).await;
    for isolation in ["read_committed", "read_uncommitted"] {
        let after = read_through(&bootstrap, TOPIC, isolation, Offset::Beginning, last).await;
        assert_live_equal(&last_write_wins(&after), &committed, isolation);
        assert!(
            after
                .iter()
                .all(|m| !client::payload(m).starts_with("aborted-")),
            "{isolation}: aborted records removed by the cleaner"
        );
        assert_eq!(
            after.len(),
            committed.len(),
            "{isolation}: one record per key"
        );
    }
    broker.stop().await;
}

/// A Produce v9 of one batch with these keys; returns the partition response.
async fn produce_raw(
    s: &mut TcpStream,
    topic: &str,
    keys: &[Option<&str>],
) -> kafka_protocol::messages::produce_response::PartitionProduceResponse {
    let records: Vec<Record> = keys
        .iter()
        .map(|k| {
            Record::new(
                1_700_000_000_000,
                k.map(|k| Bytes::from(k.to_owned())),
                Some(Bytes::from_static(b"v")),
            )
        })
        .collect();
    let batch = BatchBuilder::new().build(&records).unwrap();
    let req = produce_request(topic, 0, batch);
    let r: ProduceResponse = call(s, ApiKey::Produce, 9, &req).await;
    r.responses[0].partition_responses[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyless_records_to_a_compacted_topic_are_refused_per_record() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path()).await;
    let bootstrap = broker.bootstrap();
    create_compacted(&bootstrap, "keyed").await;
    client::create_topic(&bootstrap, "plain", 1).await;
    let mut s = TcpStream::connect(broker.addr()).await.unwrap();

    let r = produce_raw(&mut s, "keyed", &[Some("a"), None, Some("b"), None]).await;
    assert_eq!(r.error_code, 87, "INVALID_RECORD");
    assert_eq!(r.base_offset, -1);
    let indexes: Vec<i32> = r.record_errors.iter().map(|e| e.batch_index).collect();
    assert_eq!(indexes, [1, 3]);
    for e in &r.record_errors {
        let message = e.batch_index_error_message.as_deref().unwrap_or_default();
        assert!(
            message.starts_with("Compacted topic cannot accept message without key"),
            "{message}"
        );
    }
    let p = broker.broker().partition("keyed", 0).unwrap();
    assert_eq!(
        p.high_watermark(),
        0,
        "nothing of the refused batch was appended"
    );
    let r = produce_raw(&mut s, "keyed", &[Some("a"), Some("b")]).await;
    assert_eq!((r.error_code, r.base_offset), (0, 0));
    let r = produce_raw(&mut s, "plain", &[None, None]).await;
    assert_eq!(
        r.error_code, 0,
        "keyless records are fine on a delete topic"
    );

    // librdkafka reports the refusal as a delivery error.
    let producer = producer(&bootstrap);
    let refused = producer
        .send(
            FutureRecord::<(), str>::to("keyed")
                .partition(0)
                .payload("no key"),
            T,
        )
        .await
        .map_err(|(e, _)| e)
        .expect_err("refused");
    assert_eq!(
        refused,
        KafkaError::MessageProduction(RDKafkaErrorCode::InvalidRecord)
    );

    // Switching a topic to compact at runtime applies to the next produce.
    let admin = client::admin(&bootstrap);
    let results =
        admin
            .alter_configs(
                &[AlterConfig::new(ResourceSpecifier::Topic("plain"))
                    .set("cleanup.policy", "compact")],
                &AdminOptions::new().operation_timeout(Some(T)),
            )
            .await
            .expect("alter_configs request");
    for r in results {
        r.expect("altered");
    }
    let r = produce_raw(&mut s, "plain", &[None]).await;
    assert_eq!(r.error_code, 87);
    assert_eq!(r.record_errors.len(), 1);
    broker.stop().await;
}
