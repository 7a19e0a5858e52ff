//! Consumer groups with librdkafka: partitions shared by `subscribe()`, takeover on close,
//! committed offsets across consumer and broker restarts.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::Offset;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::FutureRecord;
use strom_broker::BrokerConfig;
use strom_kafka::KafkaConfig;
use strom_tests::TestBroker;

use super::client::{self, WAIT};

fn group_consumer(bootstrap: &str, group: &str) -> BaseConsumer {
    group_consumer_with(bootstrap, group, &[])
}

fn group_consumer_with(bootstrap: &str, group: &str, extra: &[(&str, &str)]) -> BaseConsumer {
    let mut config = ClientConfig::new();
    for (k, v) in extra {
        config.set(*k, *v);
    }
    config
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "200")
        .create()
        .expect("consumer")
}

fn config(dir: &std::path::Path) -> BrokerConfig {
    let mut config = BrokerConfig::new(dir);
    config.group.initial_rebalance_delay_ms = 500;
    config
}

/// Polls every consumer until their assignments cover `partitions` exactly once.
fn wait_for_assignment(consumers: &[&BaseConsumer], partitions: i32) -> Vec<Vec<i32>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for c in consumers {
            let _ = c.poll(Duration::from_millis(50));
        }
        let assigned: Vec<Vec<i32>> = consumers
            .iter()
            .map(|c| {
                c.assignment()
                    .map(|a| a.elements().iter().map(|e| e.partition()).collect())
                    .unwrap_or_default()
            })
            .collect();
        let mut all: Vec<i32> = assigned.iter().flatten().copied().collect();
        all.sort_unstable();
        if all == (0..partitions).collect::<Vec<_>>() && assigned.iter().all(|a| !a.is_empty()) {
            return assigned;
        }
        assert!(
            Instant::now() < deadline,
            "assignments never settled: {assigned:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_consumers_share_six_partitions_and_take_over() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_with(config(dir.path()), KafkaConfig::default()).await;
    let bootstrap = broker.bootstrap();
    client::create_topic(&bootstrap, "shared", 6).await;
    let result = tokio::task::spawn_blocking(move || {
        let consumers: Vec<BaseConsumer> =
            (0..3).map(|_| group_consumer(&bootstrap, "g3")).collect();
        for c in &consumers {
            c.subscribe(&["shared"]).unwrap();
        }
        let refs: Vec<&BaseConsumer> = consumers.iter().collect();
        let assigned = wait_for_assignment(&refs, 6);
        let mut consumers = consumers;
        let closed = consumers.pop().unwrap();
        drop(closed);
        let refs: Vec<&BaseConsumer> = consumers.iter().collect();
        let after = wait_for_assignment(&refs, 6);
        (assigned, after)
    })
    .await
    .unwrap();
    assert_eq!(result.0.len(), 3);
    assert_eq!(result.1.len(), 2);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooperative_sticky_consumers_rebalance_in_rounds() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_with(config(dir.path()), KafkaConfig::default()).await;
    let bootstrap = broker.bootstrap();
    client::create_topic(&bootstrap, "coop", 6).await;
    let extra = [("partition.assignment.strategy", "cooperative-sticky")];
    let (two, three, after) = tokio::task::spawn_blocking(move || {
        let mut consumers: Vec<BaseConsumer> = (0..2)
            .map(|_| group_consumer_with(&bootstrap, "gcoop", &extra))
            .collect();
        for c in &consumers {
            c.subscribe(&["coop"]).unwrap();
        }
        let two = wait_for_assignment(&consumers.iter().collect::<Vec<_>>(), 6);
        // A third member joins: partitions move incrementally, over several join rounds.
        let third = group_consumer_with(&bootstrap, "gcoop", &extra);
        third.subscribe(&["coop"]).unwrap();
        consumers.push(third);
        let three = wait_for_assignment(&consumers.iter().collect::<Vec<_>>(), 6);
        drop(consumers.remove(0));
        let after = wait_for_assignment(&consumers.iter().collect::<Vec<_>>(), 6);
        (two, three, after)
    })
    .await
    .unwrap();
    assert_eq!((two.len(), three.len(), after.len()), (2, 3, 2));
    // Sticky: the first two members kept partitions they already had.
    for (before, now) in two.iter().zip(&three) {
        assert!(
            now.iter().all(|p| before.contains(p)),
            "{two:?} -> {three:?}"
        );
    }
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offsets_survive_consumer_and_broker_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_with(config(dir.path()), KafkaConfig::default()).await;
    let bootstrap = broker.bootstrap();
    client::create_topic(&bootstrap, "committed", 2).await;
    let producer = client::producer(&bootstrap);
    for i in 0..10i32 {
        producer
            .send(
                FutureRecord::to("committed")
                    .partition(i % 2)
                    .key("k")
                    .payload("v"),
                WAIT,
            )
            .await
            .expect("delivered");
    }
    let b = bootstrap.clone();
    tokio::task::spawn_blocking(move || {
        let c = group_consumer(&b, "gc");
        c.subscribe(&["committed"]).unwrap();
        wait_for_assignment(&[&c], 2);
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("committed", 0, Offset::Offset(3))
            .unwrap();
        tpl.add_partition_offset("committed", 1, Offset::Offset(4))
            .unwrap();
        c.commit(&tpl, CommitMode::Sync).expect("commit");
    })
    .await
    .unwrap();
    let expected: BTreeMap<i32, Offset> = [(0, Offset::Offset(3)), (1, Offset::Offset(4))].into();
    let committed = |bootstrap: String| async move {
        tokio::task::spawn_blocking(move || {
            let c = group_consumer(&bootstrap, "gc");
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition("committed", 0);
            tpl.add_partition("committed", 1);
            let got = c
                .committed_offsets(tpl, Duration::from_secs(10))
                .expect("committed offsets");
            got.elements()
                .iter()
                .map(|e| (e.partition(), e.offset()))
                .collect::<BTreeMap<i32, Offset>>()
        })
        .await
        .unwrap()
    };
    assert_eq!(committed(bootstrap.clone()).await, expected);
    drop(producer);
    broker.stop().await;
    let broker = TestBroker::start_with(config(dir.path()), KafkaConfig::default()).await;
    assert_eq!(committed(broker.bootstrap()).await, expected);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_list_and_delete_groups() {
    use rdkafka::admin::{AdminOptions, GroupResult};
    use rdkafka::types::RDKafkaErrorCode;

    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_with(config(dir.path()), KafkaConfig::default()).await;
    let bootstrap = broker.bootstrap();
    client::create_topic(&bootstrap, "described", 1).await;
    let b = bootstrap.clone();
    let consumer = tokio::task::spawn_blocking(move || {
        let c = group_consumer(&b, "gd");
        c.subscribe(&["described"]).unwrap();
        wait_for_assignment(&[&c], 1);
        let list = c
            .fetch_group_list(Some("gd"), Duration::from_secs(10))
            .expect("group list");
        let group = &list.groups()[0];
        assert_eq!(group.name(), "gd");
        assert_eq!(group.state(), "Stable");
        assert_eq!(group.protocol_type(), "consumer");
        assert_eq!(group.members().len(), 1);
        c
    })
    .await
    .unwrap();
    let admin = client::admin(&bootstrap);
    let options = AdminOptions::new().operation_timeout(Some(WAIT));
    let code = |r: &GroupResult| r.as_ref().err().map(|(_, c)| *c);
    let results = admin.delete_groups(&["gd"], &options).await.unwrap();
    assert_eq!(code(&results[0]), Some(RDKafkaErrorCode::NonEmptyGroup));
    tokio::task::spawn_blocking(move || drop(consumer))
        .await
        .unwrap();
    let results = admin.delete_groups(&["gd"], &options).await.unwrap();
    assert_eq!(code(&results[0]), None);
    let results = admin.delete_groups(&["gd"], &options).await.unwrap();
    assert_eq!(code(&results[0]), Some(RDKafkaErrorCode::GroupIdNotFound));
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_member_restart_keeps_its_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_with(config(dir.path()), KafkaConfig::default()).await;
    let bootstrap = broker.bootstrap();
    client::create_topic(&bootstrap, "static", 4).await;
    let core = std::sync::Arc::clone(broker.broker());
    tokio::task::spawn_blocking(move || {
        let member = |id: &str| {
            let c = group_consumer_with(&bootstrap, "gstatic", &[("group.instance.id", id)]);
            c.subscribe(&["static"]).unwrap();
            c
        };
        let a = member("a");
        let b = member("b");
        let before = wait_for_assignment(&[&a, &b], 4);
        drop(b);
        // A static member's close sends no LeaveGroup: the group keeps it until its session ends.
        let d = core.groups().describe("gstatic").expect("group");
        assert_eq!(d.members.len(), 2);
        let generation = d.generation;
        let b = member("b");
        let after = wait_for_assignment(&[&a, &b], 4);
        assert_eq!(before, after);
        let d = core.groups().describe("gstatic").expect("group");
        assert_eq!(
            (d.state, d.members.len(), d.generation),
            (strom_broker::group::GroupState::Stable, 2, generation),
            "no rebalance"
        );
    })
    .await
    .unwrap();
    broker.stop().await;
}

/// `offsets.retention.minutes` (here 2 s): a group's committed offsets outlive the retention
/// while it has a member, and expire once it has been empty that long: OffsetFetch then
/// answers -1 (librdkafka's `Offset::Invalid`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offsets_expire_after_the_group_stays_empty() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.group.initial_rebalance_delay_ms = 0;
    cfg.group.offsets_retention_ms = 2_000;
    cfg.group.offsets_retention_check_interval_ms = 100;
    let broker = TestBroker::start_with(cfg, KafkaConfig::default()).await;
    let bootstrap = broker.bootstrap();
    client::create_topic(&bootstrap, "expiring", 1).await;
    let committed = |bootstrap: String| async move {
        tokio::task::spawn_blocking(move || {
            let c = group_consumer(&bootstrap, "gexp");
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition("expiring", 0);
            let got = c
                .committed_offsets(tpl, Duration::from_secs(10))
                .expect("committed offsets");
            got.elements()[0].offset()
        })
        .await
        .unwrap()
    };
    let b = bootstrap.clone();
    let member = tokio::task::spawn_blocking(move || {
        let c = group_consumer(&b, "gexp");
        c.subscribe(&["expiring"]).unwrap();
        wait_for_assignment(&[&c], 1);
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("expiring", 0, Offset::Offset(42))
            .unwrap();
        c.commit(&tpl, CommitMode::Sync).expect("commit");
        c
    })
    .await
    .unwrap();
    assert_eq!(committed(bootstrap.clone()).await, Offset::Offset(42));

    // Longer than the retention with a live member: kept.
    let member = tokio::task::spawn_blocking(move || {
        let until = Instant::now() + Duration::from_millis(3_000);
        while Instant::now() < until {
            let _ = member.poll(Duration::from_millis(100));
        }
        member
    })
    .await
    .unwrap();
    assert_eq!(committed(bootstrap.clone()).await, Offset::Offset(42));

    // The member leaves (LeaveGroup on close); after the retention the offset is gone.
    tokio::task::spawn_blocking(move || drop(member))
        .await
        .unwrap();
    let left = Instant::now();
    let deadline = left + Duration::from_secs(20);
    loop {
        let got = committed(bootstrap.clone()).await;
        if got == Offset::Invalid {
            break;
        }
        assert_eq!(got, Offset::Offset(42));
        assert!(Instant::now() < deadline, "offset never expired");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        left.elapsed() >= Duration::from_millis(1_500),
        "expired {:?} after the leave, before the retention",
        left.elapsed()
    );
    broker.stop().await;
}
