//! Transactions with librdkafka (KIP-98): commits over several partitions are seen by
//! `read_committed` consumers and aborts are not (but are by `read_uncommitted` ones); a new
//! producer with the same transactional id fences the old one; a transaction survives a broker
//! restart; a consume-transform-produce process killed with SIGKILL mid-transaction and
//! restarted reflects every input exactly once; and raw requests get Kafka's error codes.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, ApiKey, EndTxnRequest, EndTxnResponse, FindCoordinatorRequest,
    FindCoordinatorResponse, GroupId, InitProducerIdRequest, InitProducerIdResponse,
    OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse,
    ProduceResponse, ProducerId, TopicName, TransactionalId, TxnOffsetCommitRequest,
    TxnOffsetCommitResponse,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use strom_broker::BrokerConfig;
use strom_record::{BatchBuilder, Record};
use strom_tests::TestBroker;
use tokio::net::TcpStream;

use super::client;
use super::raw::{call, produce_request};

const T: Duration = Duration::from_secs(30);

fn txn_producer(bootstrap: &str, transactional_id: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("transactional.id", transactional_id)
        .set("transaction.timeout.ms", "60000")
        .set("linger.ms", "2")
        .set("message.timeout.ms", "30000")
        .set("log_level", "3")
        .create()
        .expect("transactional producer")
}

/// Reads every partition of `topic` from the beginning until `idle` passes without a message.
async fn read_all(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    isolation: &str,
    idle: Duration,
) -> Vec<OwnedMessage> {
    let consumer = client::isolated_consumer(bootstrap, isolation);
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    while let Ok(m) = tokio::time::timeout(idle, consumer.recv()).await {
        out.push(m.expect("consume").detach());
    }
    out
}

fn payloads(messages: &[OwnedMessage]) -> Vec<String> {
    let mut v: Vec<String> = messages
        .iter()
        .map(|m| client::payload(m).to_owned())
        .collect();
    v.sort();
    v
}

async fn send(producer: &FutureProducer, topic: &str, partition: i32, payload: &str) {
    producer
        .send(
            FutureRecord::<(), _>::to(topic)
                .partition(partition)
                .payload(payload),
            T,
        )
        .await
        .map_err(|(e, _)| e)
        .expect("delivered");
}

fn blocking<R>(f: impl FnOnce() -> R) -> R {
    tokio::task::block_in_place(f)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_transactions_are_visible_to_read_committed_and_aborted_ones_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let bootstrap = broker.bootstrap();
    client::create_topic(&bootstrap, "txn3", 3).await;
    let producer = txn_producer(&bootstrap, "tx-visibility");
    blocking(|| producer.init_transactions(T)).expect("init");

    producer.begin_transaction().unwrap();
    for p in 0..3 {
        for i in 0..5 {
            send(&producer, "txn3", p, &format!("committed-{p}-{i}")).await;
        }
    }
    blocking(|| producer.commit_transaction(T)).expect("commit");

    producer.begin_transaction().unwrap();
    for p in 0..3 {
        send(&producer, "txn3", p, &format!("aborted-{p}")).await;
    }
    blocking(|| producer.abort_transaction(T)).expect("abort");

    producer.begin_transaction().unwrap();
    send(&producer, "txn3", 1, "committed-last").await;
    blocking(|| producer.commit_transaction(T)).expect("commit");

    let committed = payloads(
        &read_all(
            &bootstrap,
            "txn3",
            3,
            "read_committed",
            Duration::from_secs(3),
        )
        .await,
    );
    let mut expected: Vec<String> = (0..3)
        .flat_map(|p| (0..5).map(move |i| format!("committed-{p}-{i}")))
        .collect();
    expected.push("committed-last".into());
    expected.sort();
    assert_eq!(committed, expected);

    let all = payloads(
        &read_all(
            &bootstrap,
            "txn3",
            3,
            "read_uncommitted",
            Duration::from_secs(3),
        )
        .await,
    );
    let mut with_aborted = expected.clone();
    with_aborted.extend((0..3).map(|p| format!("aborted-{p}")));
    with_aborted.sort();
    assert_eq!(all, with_aborted);

    let d = broker.broker().txns().describe("tx-visibility").unwrap();
    assert_eq!(
        d.metadata.state,
        strom_broker::txn::TxnState::CompleteCommit
    );
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_producer_fences_the_zombie_and_aborts_its_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let bootstrap = broker.bootstrap();
    client::create_topic(&bootstrap, "zombie", 1).await;
    let old = txn_producer(&bootstrap, "tx-zombie");
    blocking(|| old.init_transactions(T)).expect("init");
    old.begin_transaction().unwrap();
    send(&old, "zombie", 0, "from-the-zombie").await;

    let new = txn_producer(&bootstrap, "tx-zombie");
    blocking(|| new.init_transactions(T)).expect("init fences the old producer");
    new.begin_transaction().unwrap();
    send(&new, "zombie", 0, "from-the-new-one").await;
    blocking(|| new.commit_transaction(T)).expect("commit");

    let err = blocking(|| old.commit_transaction(T)).expect_err("the zombie is fenced");
    match &err {
        rdkafka::error::KafkaError::Transaction(e) => {
            assert!(
                e.is_fatal() || e.txn_requires_abort(),
                "fenced zombie: {e:?}"
            )
        }
        other => panic!("unexpected error: {other:?}"),
    }
    let committed = payloads(
        &read_all(
            &bootstrap,
            "zombie",
            1,
            "read_committed",
            Duration::from_secs(3),
        )
        .await,
    );
    assert_eq!(committed, ["from-the-new-one"]);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_survives_a_broker_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let bootstrap = broker.bootstrap();
    client::create_topic(&bootstrap, "txn-restart", 2).await;
    let producer = txn_producer(&bootstrap, "tx-restart");
    blocking(|| producer.init_transactions(T)).expect("init");
    producer.begin_transaction().unwrap();
    send(&producer, "txn-restart", 0, "before").await;
    let broker = broker.restart(BrokerConfig::new(dir.path())).await;
    send(&producer, "txn-restart", 1, "after").await;
    blocking(|| producer.commit_transaction(T)).expect("commit after the restart");
    let committed = payloads(
        &read_all(
            &bootstrap,
            "txn-restart",
            2,
            "read_committed",
            Duration::from_secs(3),
        )
        .await,
    );
    assert_eq!(committed, ["after", "before"]);
    broker.stop().await;
}

/// The child side of [`consume_transform_produce_survives_sigkill_exactly_once`]: runs only
/// when the parent starts this test binary with `STROM_CTP_BOOTSTRAP` set.
#[test]
fn ctp_child() {
    let Ok(bootstrap) = std::env::var("STROM_CTP_BOOTSTRAP") else {
        return;
    };
    let total: i64 = std::env::var("STROM_CTP_TOTAL").unwrap().parse().unwrap();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("broker.address.family", "v4")
        .set("group.id", "ctp")
        .set("group.instance.id", "ctp-1")
        .set("session.timeout.ms", "6000")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("log_level", "3")
        .create()
        .unwrap();
    consumer.subscribe(&["ctp-in"]).unwrap();
    let producer: rdkafka::producer::BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("broker.address.family", "v4")
        .set("transactional.id", "ctp-tx")
        .set("linger.ms", "1")
        .set("log_level", "3")
        .create()
        .unwrap();
    producer.init_transactions(T).unwrap();
    loop {
        let mut batch = Vec::new();
        while batch.len() < 20 {
            match consumer.poll(Duration::from_millis(200)) {
                Some(m) => batch.push(m.unwrap().detach()),
                None => break,
            }
        }
        if batch.is_empty() {
            // Done once the committed positions cover every input.
            let position = consumer.position().unwrap();
            let done: i64 = position
                .elements()
                .iter()
                .filter_map(|e| match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                })
                .sum();
            if done >= total {
                return;
            }
            continue;
        }
        producer.begin_transaction().unwrap();
        for m in &batch {
            let value = format!("out-{}", std::str::from_utf8(m.payload().unwrap()).unwrap());
            loop {
                match producer
                    .send(rdkafka::producer::BaseRecord::<(), _>::to("ctp-out").payload(&value))
                {
                    Ok(()) => break,
                    Err((_, _)) => {
                        producer.poll(Duration::from_millis(10));
                    }
                }
            }
        }
        producer.flush(T).unwrap();
        // Widen the window in which the parent's SIGKILL lands inside a transaction.
        std::thread::sleep(Duration::from_millis(30));
        let position = consumer.position().unwrap();
        producer
            .send_offsets_to_transaction(&position, &consumer.group_metadata().unwrap(), T)
            .unwrap();
        producer.commit_transaction(T).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consume_transform_produce_survives_sigkill_exactly_once() {
    const N: usize = 400;
    let dir = tempfile::tempdir().unwrap();
    let mut config = BrokerConfig::new(dir.path());
    config.group.initial_rebalance_delay_ms = 0;
    let broker = TestBroker::start_with(config, strom_kafka::KafkaConfig::default()).await;
    let bootstrap = broker.bootstrap();
    client::create_topic(&bootstrap, "ctp-in", 2).await;
    client::create_topic(&bootstrap, "ctp-out", 2).await;
    let producer = client::producer(&bootstrap);
    for i in 0..N {
        send(&producer, "ctp-in", (i % 2) as i32, &format!("{i}")).await;
    }
    let exe = std::env::current_exe().unwrap();
    let spawn = || {
        std::process::Command::new(&exe)
            .args([
                "kafka::transactions::ctp_child",
                "--exact",
                "--test-threads=1",
            ])
            .env("STROM_CTP_BOOTSTRAP", &bootstrap)
            .env("STROM_CTP_TOTAL", N.to_string())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let out = broker.broker().partition("ctp-out", 0).unwrap();
    let out1 = broker.broker().partition("ctp-out", 1).unwrap();
    // Kill the child twice while it is working, then let a third one finish.
    for round in 0..2 {
        let mut child = spawn();
        let start = out.log_end_offset() + out1.log_end_offset();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while out.log_end_offset() + out1.log_end_offset() < start + 60 {
            assert!(
                std::time::Instant::now() < deadline,
                "round {round}: no progress"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    let mut last = spawn();
    let status = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(s) = last.try_wait().unwrap() {
                return s;
            }
            if std::time::Instant::now() > deadline {
                let _ = last.kill();
                panic!("the last child did not finish");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .await
    .unwrap();
    assert!(status.success(), "child failed: {status:?}");

    let output = read_all(
        &bootstrap,
        "ctp-out",
        2,
        "read_committed",
        Duration::from_secs(3),
    )
    .await;
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for m in &output {
        *counts.entry(client::payload(m).to_owned()).or_default() += 1;
    }
    let missing: Vec<usize> = (0..N)
        .filter(|i| !counts.contains_key(&format!("out-{i}")))
        .collect();
    let duplicated: Vec<(&String, &usize)> = counts.iter().filter(|(_, c)| **c > 1).collect();
    assert!(missing.is_empty(), "missing outputs: {missing:?}");
    assert!(duplicated.is_empty(), "duplicated outputs: {duplicated:?}");
    assert_eq!(output.len(), N);
    // The killed children left aborted data behind, which read_uncommitted readers see.
    let everything = read_all(
        &bootstrap,
        "ctp-out",
        2,
        "read_uncommitted",
        Duration::from_secs(2),
    )
    .await;
    assert!(everything.len() >= N);
    eprintln!(
        "consume-transform-produce: {} records written, {} committed",
        everything.len(),
        output.len()
    );
    broker.stop().await;
}

fn txn_id(s: &str) -> TransactionalId {
    TransactionalId(StrBytes::from_string(s.to_owned()))
}

async fn init(s: &mut TcpStream, id: &str, timeout_ms: i32) -> InitProducerIdResponse {
    let req = InitProducerIdRequest::default()
        .with_transactional_id(Some(txn_id(id)))
        .with_transaction_timeout_ms(timeout_ms)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    call(s, ApiKey::InitProducerId, 4, &req).await
}

async fn add_partition(s: &mut TcpStream, id: &str, pid: i64, epoch: i16, topic: &str) -> i16 {
    let req = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(txn_id(id))
        .with_v3_and_below_producer_id(ProducerId(pid))
        .with_v3_and_below_producer_epoch(epoch)
        .with_v3_and_below_topics(vec![
            AddPartitionsToTxnTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
                .with_partitions(vec![0]),
        ]);
    let r: AddPartitionsToTxnResponse = call(s, ApiKey::AddPartitionsToTxn, 3, &req).await;
    r.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code
}

async fn end(s: &mut TcpStream, id: &str, pid: i64, epoch: i16, commit: bool) -> i16 {
    let req = EndTxnRequest::default()
        .with_transactional_id(txn_id(id))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
        .with_committed(commit);
    let r: EndTxnResponse = call(s, ApiKey::EndTxn, 3, &req).await;
    r.error_code
}

async fn produce_txn(s: &mut TcpStream, id: &str, topic: &str, pid: i64, epoch: i16) -> i16 {
    let batch = BatchBuilder {
        producer_id: pid,
        producer_epoch: epoch,
        base_sequence: 0,
        transactional: true,
        ..BatchBuilder::new()
    }
    .build(&[Record::new(1, None, Some(Bytes::from("x")))])
    .unwrap();
    let req = produce_request(topic, 0, batch).with_transactional_id(Some(txn_id(id)));
    let r: ProduceResponse = call(s, ApiKey::Produce, 9, &req).await;
    r.responses[0].partition_responses[0].error_code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_requests_get_kafka_error_codes() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    client::create_topic(&broker.bootstrap(), "txn-raw", 1).await;
    let mut s = TcpStream::connect(broker.addr()).await.unwrap();

    let find = FindCoordinatorRequest::default()
        .with_key(StrBytes::from_static_str("tx-raw"))
        .with_key_type(1);
    let r: FindCoordinatorResponse = call(&mut s, ApiKey::FindCoordinator, 3, &find).await;
    assert_eq!((r.error_code, r.node_id.0), (0, broker.broker().node_id()));

    // INVALID_TRANSACTION_TIMEOUT (50) above transaction.max.timeout.ms.
    assert_eq!(init(&mut s, "tx-raw", 900_001).await.error_code, 50);
    let r = init(&mut s, "tx-raw", 60_000).await;
    assert_eq!(r.error_code, 0);
    let (pid, epoch) = (r.producer_id.0, r.producer_epoch);
    // INVALID_TXN_STATE (48): nothing to end; a transactional write to a partition not added.
    assert_eq!(end(&mut s, "tx-raw", pid, epoch, true).await, 48);
    assert_eq!(
        produce_txn(&mut s, "tx-raw", "txn-raw", pid, epoch).await,
        48
    );
    // INVALID_PRODUCER_ID_MAPPING (49): another producer id, or an unknown transactional id.
    assert_eq!(
        add_partition(&mut s, "tx-raw", pid + 1, epoch, "txn-raw").await,
        49
    );
    assert_eq!(
        add_partition(&mut s, "tx-unknown", pid, epoch, "txn-raw").await,
        49
    );
    // UNKNOWN_TOPIC_OR_PARTITION (3).
    assert_eq!(
        add_partition(&mut s, "tx-raw", pid, epoch, "no-such-topic").await,
        3
    );
    assert_eq!(
        add_partition(&mut s, "tx-raw", pid, epoch, "txn-raw").await,
        0
    );
    assert_eq!(
        produce_txn(&mut s, "tx-raw", "txn-raw", pid, epoch).await,
        0
    );
    // A newer producer of the same id: PRODUCER_FENCED (90) for the old epoch, and its
    // transactional writes are refused with INVALID_PRODUCER_EPOCH (47).
    let newer = init(&mut s, "tx-raw", 60_000).await;
    assert_eq!(newer.error_code, 0);
    assert_eq!(newer.producer_id.0, pid);
    assert!(newer.producer_epoch > epoch);
    assert_eq!(end(&mut s, "tx-raw", pid, epoch, true).await, 90);
    assert_eq!(
        add_partition(&mut s, "tx-raw", pid, epoch, "txn-raw").await,
        90
    );
    assert_eq!(
        produce_txn(&mut s, "tx-raw", "txn-raw", pid, epoch).await,
        47
    );
    broker.stop().await;
}

/// OffsetFetch of `group`'s offset of partition 0 of `topic` (v7, or v8 with its per-group
/// layout): (error code, committed offset).
async fn fetch_offset(
    s: &mut TcpStream,
    version: i16,
    group: &str,
    topic: &str,
    require_stable: bool,
) -> (i16, i64) {
    let group = GroupId(StrBytes::from_string(group.to_owned()));
    let name = TopicName(StrBytes::from_string(topic.to_owned()));
    let mut req = OffsetFetchRequest::default().with_require_stable(require_stable);
    if version >= 8 {
        req = req.with_groups(vec![
            OffsetFetchRequestGroup::default()
                .with_group_id(group)
                .with_topics(Some(vec![
                    OffsetFetchRequestTopics::default()
                        .with_name(name)
                        .with_partition_indexes(vec![0]),
                ])),
        ]);
        let r: OffsetFetchResponse = call(s, ApiKey::OffsetFetch, version, &req).await;
        let p = &r.groups[0].topics[0].partitions[0];
        (p.error_code, p.committed_offset)
    } else {
        req = req.with_group_id(group).with_topics(Some(vec![
            OffsetFetchRequestTopic::default()
                .with_name(name)
                .with_partition_indexes(vec![0]),
        ]));
        let r: OffsetFetchResponse = call(s, ApiKey::OffsetFetch, version, &req).await;
        let p = &r.topics[0].partitions[0];
        (p.error_code, p.committed_offset)
    }
}

/// KIP-447: while a transaction holds a pending offset of a partition, OffsetFetch with
/// `require_stable` answers UNSTABLE_OFFSET_COMMIT (88), so a read_committed consumer retries
/// rather than start from the older offset (the partition still carries the last committed
/// offset, see `offset_fetch`'s docs); without it, the last committed offset. Once the
/// transaction commits, the new offset, stable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offset_fetch_require_stable_answers_unstable_while_a_transaction_holds_the_offset() {
    const UNSTABLE_OFFSET_COMMIT: i16 = 88;
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    client::create_topic(&broker.bootstrap(), "stable", 1).await;
    let mut s = TcpStream::connect(broker.addr()).await.unwrap();
    let group = || GroupId(StrBytes::from_static_str("stable-group"));
    let topic = || TopicName(StrBytes::from_static_str("stable"));

    // A plain commit of offset 3 (a group without members: generation -1).
    let commit = OffsetCommitRequest::default()
        .with_group_id(group())
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![
            OffsetCommitRequestTopic::default()
                .with_name(topic())
                .with_partitions(vec![
                    OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(3),
                ]),
        ]);
    let r: OffsetCommitResponse = call(&mut s, ApiKey::OffsetCommit, 8, &commit).await;
    assert_eq!(r.topics[0].partitions[0].error_code, 0);

    // A transaction commits offset 5 of the group, and is still open.
    let init = init(&mut s, "tx-stable", 60_000).await;
    assert_eq!(init.error_code, 0);
    let (pid, epoch) = (init.producer_id.0, init.producer_epoch);
    let add = AddOffsetsToTxnRequest::default()
        .with_transactional_id(txn_id("tx-stable"))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
        .with_group_id(group());
    let r: AddOffsetsToTxnResponse = call(&mut s, ApiKey::AddOffsetsToTxn, 3, &add).await;
    assert_eq!(r.error_code, 0);
    let txn_commit = TxnOffsetCommitRequest::default()
        .with_transactional_id(txn_id("tx-stable"))
        .with_group_id(group())
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
        .with_generation_id(-1)
        .with_topics(vec![
            TxnOffsetCommitRequestTopic::default()
                .with_name(topic())
                .with_partitions(vec![
                    TxnOffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(5),
                ]),
        ]);
    let r: TxnOffsetCommitResponse = call(&mut s, ApiKey::TxnOffsetCommit, 3, &txn_commit).await;
    assert_eq!(r.topics[0].partitions[0].error_code, 0);

    for version in [7, 8] {
        assert_eq!(
            fetch_offset(&mut s, version, "stable-group", "stable", true).await,
            (UNSTABLE_OFFSET_COMMIT, 3),
            "v{version}"
        );
        assert_eq!(
            fetch_offset(&mut s, version, "stable-group", "stable", false).await,
            (0, 3),
            "v{version}"
        );
    }
    assert_eq!(end(&mut s, "tx-stable", pid, epoch, true).await, 0);
    for version in [7, 8] {
        assert_eq!(
            fetch_offset(&mut s, version, "stable-group", "stable", true).await,
            (0, 5),
            "v{version}"
        );
    }
    broker.stop().await;
}
