//! The KIP-848 consumer group protocol with librdkafka (`group.protocol=consumer`): the broker
//! assigns, members reconcile; plus its protocol errors over raw sockets.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    ApiKey, ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse,
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, GroupId, JoinGroupRequest,
    JoinGroupResponse, OffsetCommitRequest, OffsetCommitResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::FutureRecord;
use strom_broker::BrokerConfig;
use strom_kafka::KafkaConfig;
use strom_tests::TestBroker;
use tokio::net::TcpStream;

use super::client::{self, WAIT};
use super::raw;

fn config(dir: &std::path::Path) -> BrokerConfig {
    let mut config = BrokerConfig::new(dir);
    config.group.consumer.heartbeat_interval_ms = 300;
    config.group.consumer.session_timeout_ms = 6_000;
    config
}

/// A consumer with `group.protocol=consumer` unless `extra` says otherwise.
fn member(bootstrap: &str, group: &str, extra: &[(&str, &str)]) -> BaseConsumer {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("group.protocol", "consumer")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest");
    for (k, v) in extra {
        config.set(*k, *v);
    }
    config.create().expect("consumer")
}

fn assignment(c: &BaseConsumer) -> BTreeSet<i32> {
    c.assignment()
        .map(|a| a.elements().iter().map(|e| e.partition()).collect())
        .unwrap_or_default()
}

/// Polls every consumer until their assignments cover `0..partitions` exactly once and are
/// balanced (sizes differ by at most one): reconciliation passes through uneven states.
fn settle(consumers: &[&BaseConsumer], partitions: i32) -> Vec<BTreeSet<i32>> {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        for c in consumers {
            let _ = c.poll(Duration::from_millis(30));
        }
        let sets: Vec<BTreeSet<i32>> = consumers.iter().map(|c| assignment(c)).collect();
        let total: usize = sets.iter().map(BTreeSet::len).sum();
        let union: BTreeSet<i32> = sets.iter().flatten().copied().collect();
        let sizes: Vec<usize> = sets.iter().map(BTreeSet::len).collect();
        let balanced = sizes.iter().max().unwrap_or(&0) - sizes.iter().min().unwrap_or(&0) <= 1;
        if total == partitions as usize
            && union == (0..partitions).collect()
            && sets.iter().all(|s| !s.is_empty())
            && balanced
        {
            return sets;
        }
        assert!(Instant::now() < deadline, "never settled: {sets:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_protocol_members_share_partitions_and_move_only_what_must_move() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_with(config(dir.path()), KafkaConfig::default()).await;
    let bootstrap = broker.bootstrap();
    client::create_topic(&bootstrap, "kip848", 6).await;
    let core = std::sync::Arc::clone(broker.broker());
    let (two, three, after) = tokio::task::spawn_blocking(move || {
        let mut members: Vec<BaseConsumer> =
            (0..2).map(|_| member(&bootstrap, "g848", &[])).collect();
        for m in &members {
            m.subscribe(&["kip848"]).unwrap();
        }
        let two = settle(&members.iter().collect::<Vec<_>>(), 6);
        let third = member(&bootstrap, "g848", &[]);
        third.subscribe(&["kip848"]).unwrap();
        members.push(third);
        let three = settle(&members.iter().collect::<Vec<_>>(), 6);
        let d = core
            .describe_consumer_group("g848")
            .expect("a consumer group");
        assert_eq!(d.members.len(), 3);
        assert_eq!(d.assignor, "uniform");
        // The first member leaves (close sends the leave heartbeat).
        drop(members.remove(0));
        let after = settle(&members.iter().collect::<Vec<_>>(), 6);
        (two, three, after)
    })
    .await
    .unwrap();
    assert!(two.iter().all(|s| s.len() == 3), "{two:?}");
    assert!(three.iter().all(|s| s.len() == 2), "{three:?}");
    // Uniform is sticky: the two first members only lost partitions, none moved between them.
    for (before, now) in two.iter().zip(&three) {
        assert!(now.is_subset(before), "{two:?} -> {three:?}");
    }
    assert!(after.iter().all(|s| s.len() == 3), "{after:?}");
    for (before, now) in three[1..].iter().zip(&after) {
        assert!(before.is_subset(now), "{three:?} -> {after:?}");
    }
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_protocol_consumes_commits_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_with(config(dir.path()), KafkaConfig::default()).await;
    let bootstrap = broker.bootstrap();
    client::create_topic(&bootstrap, "resume848", 2).await;
    let producer = client::producer(&bootstrap);
    for i in 0..20i32 {
        producer
            .send(
                FutureRecord::to("resume848")
                    .partition(i % 2)
                    .key("k")
                    .payload(&format!("v{i}")),
                WAIT,
            )
            .await
            .expect("delivered");
    }
    let b = bootstrap.clone();
    let (first, second) = tokio::task::spawn_blocking(move || {
        let read = |n: usize| {
            let c = member(&b, "gresume", &[("group.remote.assignor", "range")]);
            c.subscribe(&["resume848"]).unwrap();
            let mut got = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(40);
            while got.len() < n {
                assert!(Instant::now() < deadline, "only {} records", got.len());
                if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
                    got.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
                    c.commit_message(&m, CommitMode::Sync).expect("commit");
                }
            }
            got
        };
        let first = read(12);
        let second = read(8);
        (first, second)
    })
    .await
    .unwrap();
    let all: BTreeSet<String> = first.iter().chain(&second).cloned().collect();
    assert_eq!(
        all.len(),
        20,
        "a record was read twice or lost: {first:?} {second:?}"
    );
    let committed = broker.broker().groups().fetch_offsets("gresume", None);
    let offsets: BTreeMap<i32, i64> = committed
        .iter()
        .map(|((_, p), o)| (*p, o.as_ref().map_or(-1, |o| o.offset)))
        .collect();
    assert_eq!(offsets, BTreeMap::from([(0, 10), (1, 10)]));
    drop(producer);
    broker.stop().await;
}

fn heartbeat(
    member_id: &str,
    epoch: i32,
    topics: Option<&[&str]>,
) -> ConsumerGroupHeartbeatRequest {
    ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("graw")))
        .with_member_id(StrBytes::from_string(member_id.to_owned()))
        .with_member_epoch(epoch)
        .with_rebalance_timeout_ms(if epoch == 0 { 10_000 } else { -1 })
        .with_subscribed_topic_names(topics.map(|ts| {
            ts.iter()
                .map(|t| TopicName(StrBytes::from_string((*t).to_owned())))
                .collect()
        }))
        .with_topic_partitions(Some(Vec::<TopicPartitions>::new()))
}

#[tokio::test]
async fn consumer_protocol_errors_over_raw_sockets() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_with(config(dir.path()), KafkaConfig::default()).await;
    client::create_topic(&broker.bootstrap(), "raw848", 2).await;
    let mut s = TcpStream::connect(broker.addr()).await.unwrap();
    let hb = ApiKey::ConsumerGroupHeartbeat;
    let joined: ConsumerGroupHeartbeatResponse =
        raw::call(&mut s, hb, 1, &heartbeat("m1", 0, Some(&["raw848"]))).await;
    assert_eq!(joined.error_code, 0);
    assert_eq!(joined.member_epoch, 1);
    let assigned = joined.assignment.expect("an assignment on join");
    assert_eq!(assigned.topic_partitions.len(), 1);
    assert_eq!(assigned.topic_partitions[0].partitions, [0, 1]);
    let topic_id = assigned.topic_partitions[0].topic_id;
    assert_eq!(topic_id, broker.broker().topic("raw848").unwrap().id());

    // UNKNOWN_MEMBER_ID (25), FENCED_MEMBER_EPOCH (110), UNSUPPORTED_ASSIGNOR (112),
    // INVALID_REQUEST (42) for a join without subscription.
    let r: ConsumerGroupHeartbeatResponse =
        raw::call(&mut s, hb, 1, &heartbeat("ghost", 3, None)).await;
    assert_eq!(r.error_code, 25);
    let r: ConsumerGroupHeartbeatResponse =
        raw::call(&mut s, hb, 1, &heartbeat("m1", 9, None)).await;
    assert_eq!(r.error_code, 110);
    let bad = heartbeat("m2", 0, Some(&["raw848"]))
        .with_server_assignor(Some(StrBytes::from_static_str("nope")));
    let r: ConsumerGroupHeartbeatResponse = raw::call(&mut s, hb, 1, &bad).await;
    assert_eq!(r.error_code, 112);
    let r: ConsumerGroupHeartbeatResponse =
        raw::call(&mut s, hb, 1, &heartbeat("m2", 0, None)).await;
    assert_eq!(r.error_code, 42);

    // OffsetCommit v9 checks the member epoch: STALE_MEMBER_EPOCH (113), then success.
    let commit = |epoch: i32| {
        OffsetCommitRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("graw")))
            .with_member_id(StrBytes::from_static_str("m1"))
            .with_generation_id_or_member_epoch(epoch)
            .with_topics(vec![
                OffsetCommitRequestTopic::default()
                    .with_name(TopicName(StrBytes::from_static_str("raw848")))
                    .with_partitions(vec![
                        OffsetCommitRequestPartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(5),
                    ]),
            ])
    };
    let r: OffsetCommitResponse = raw::call(&mut s, ApiKey::OffsetCommit, 9, &commit(7)).await;
    assert_eq!(r.topics[0].partitions[0].error_code, 113);
    let r: OffsetCommitResponse = raw::call(&mut s, ApiKey::OffsetCommit, 9, &commit(1)).await;
    assert_eq!(r.topics[0].partitions[0].error_code, 0);

    // A classic member cannot join it: INCONSISTENT_GROUP_PROTOCOL (23).
    let join = JoinGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("graw")))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_protocol_type(StrBytes::from_static_str("consumer"))
        .with_protocols(vec![
            JoinGroupRequestProtocol::default().with_name(StrBytes::from_static_str("range")),
        ]);
    let r: JoinGroupResponse = raw::call(&mut s, ApiKey::JoinGroup, 5, &join).await;
    assert_eq!(r.error_code, 23);

    // ConsumerGroupDescribe: the group, and GROUP_ID_NOT_FOUND (69) for an unknown id.
    let describe = ConsumerGroupDescribeRequest::default().with_group_ids(vec![
        GroupId(StrBytes::from_static_str("graw")),
        GroupId(StrBytes::from_static_str("nosuch")),
    ]);
    let d: ConsumerGroupDescribeResponse =
        raw::call(&mut s, ApiKey::ConsumerGroupDescribe, 1, &describe).await;
    assert_eq!(d.groups[0].error_code, 0);
    assert_eq!(d.groups[0].group_state.as_str(), "Stable");
    assert_eq!(d.groups[0].group_epoch, 1);
    assert_eq!(d.groups[0].members.len(), 1);
    let m = &d.groups[0].members[0];
    assert_eq!(m.member_id.as_str(), "m1");
    assert_eq!(m.member_type, 1);
    assert_eq!(
        m.assignment.topic_partitions[0].topic_name.as_str(),
        "raw848"
    );
    assert_eq!(m.assignment.topic_partitions[0].partitions, [0, 1]);
    assert_eq!(d.groups[1].error_code, 69);

    // Leave (-1): the group is empty and can be deleted.
    let r: ConsumerGroupHeartbeatResponse =
        raw::call(&mut s, hb, 1, &heartbeat("m1", -1, None)).await;
    assert_eq!((r.error_code, r.member_epoch), (0, -1));
    let listed = broker.broker().groups().list();
    assert_eq!(listed[0].state.name(), "Empty");
    assert_eq!(listed[0].protocol_type, "consumer");
    broker
        .broker()
        .run_blocking(|b| b.delete_group_blocking("graw"))
        .await
        .unwrap();
    broker.stop().await;
}

/// Members of both protocols carry on across a broker restart without a rebalance: the
/// coordinator restores generations, epochs and assignments from `__consumer_offsets`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_state_survives_a_broker_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_with(config(dir.path()), KafkaConfig::default()).await;
    let bootstrap = broker.bootstrap();
    client::create_topic(&bootstrap, "restart848", 4).await;
    let b = bootstrap.clone();
    let members = tokio::task::spawn_blocking(move || {
        let classic = member(
            &b,
            "grestart-classic",
            &[
                ("group.protocol", "classic"),
                ("session.timeout.ms", "20000"),
                ("heartbeat.interval.ms", "300"),
            ],
        );
        let next = member(&b, "grestart-848", &[]);
        classic.subscribe(&["restart848"]).unwrap();
        next.subscribe(&["restart848"]).unwrap();
        settle(&[&classic], 4);
        settle(&[&next], 4);
        // A second member comes and goes, so the generation and epoch are well past 1: a
        // group rebuilt from scratch after the restart would start again at 1.
        let extra_classic = member(
            &b,
            "grestart-classic",
            &[
                ("group.protocol", "classic"),
                ("session.timeout.ms", "20000"),
            ],
        );
        let extra_next = member(&b, "grestart-848", &[]);
        extra_classic.subscribe(&["restart848"]).unwrap();
        extra_next.subscribe(&["restart848"]).unwrap();
        settle(&[&classic, &extra_classic], 4);
        settle(&[&next, &extra_next], 4);
        drop(extra_classic);
        drop(extra_next);
        settle(&[&classic], 4);
        settle(&[&next], 4);
        (classic, next)
    })
    .await
    .unwrap();
    let before = broker
        .broker()
        .groups()
        .describe("grestart-classic")
        .unwrap();
    let generation = before.generation;
    assert!(generation >= 3, "generation {generation}");
    let member_id = before.members[0].member_id.clone();
    let epoch = broker
        .broker()
        .describe_consumer_group("grestart-848")
        .unwrap()
        .group_epoch;
    assert!(epoch >= 3, "epoch {epoch}");
    let broker = broker.restart(config(dir.path())).await;
    let core = std::sync::Arc::clone(broker.broker());
    let (classic, next) = members;
    tokio::task::spawn_blocking(move || {
        // Keep both members busy for a few heartbeat rounds against the restarted broker.
        let until = Instant::now() + Duration::from_secs(4);
        while Instant::now() < until {
            let _ = classic.poll(Duration::from_millis(20));
            let _ = next.poll(Duration::from_millis(20));
        }
        assert_eq!(assignment(&classic).len(), 4);
        assert_eq!(assignment(&next).len(), 4);
        let d = core.groups().describe("grestart-classic").unwrap();
        assert_eq!(d.state.name(), "Stable");
        assert_eq!(d.generation, generation, "the classic group rebalanced");
        assert_eq!(
            d.members[0].member_id, member_id,
            "the classic member rejoined"
        );
        let c = core.describe_consumer_group("grestart-848").unwrap();
        assert_eq!(
            c.group_epoch, epoch,
            "the consumer-protocol group rebalanced"
        );
        assert_eq!(c.members.len(), 1);
    })
    .await
    .unwrap();
    broker.stop().await;
}

/// KIP-848 static membership: a member with `group.instance.id` that closes and comes back
/// gets its partitions again without a new group epoch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_consumer_protocol_member_comes_back_without_a_rebalance() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_with(config(dir.path()), KafkaConfig::default()).await;
    let bootstrap = broker.bootstrap();
    client::create_topic(&bootstrap, "static848", 4).await;
    let core = std::sync::Arc::clone(broker.broker());
    tokio::task::spawn_blocking(move || {
        let make = |id: &str| {
            let c = member(&bootstrap, "gstatic848", &[("group.instance.id", id)]);
            c.subscribe(&["static848"]).unwrap();
            c
        };
        let a = make("a");
        let b = make("b");
        let before = settle(&[&a, &b], 4);
        let epoch = core
            .describe_consumer_group("gstatic848")
            .unwrap()
            .group_epoch;
        drop(a);
        let a = make("a");
        let after = settle(&[&a, &b], 4);
        assert_eq!(before, after, "the static member's partitions moved");
        let d = core.describe_consumer_group("gstatic848").unwrap();
        assert_eq!(d.group_epoch, epoch, "a new group epoch: it rebalanced");
        assert_eq!(d.members.len(), 2);
    })
    .await
    .unwrap();
    broker.stop().await;
}

/// What a member reports owning after being given `assignment`.
fn owned_partitions(
    assignment: kafka_protocol::messages::consumer_group_heartbeat_response::Assignment,
) -> Vec<TopicPartitions> {
    assignment
        .topic_partitions
        .into_iter()
        .map(|t| {
            TopicPartitions::default()
                .with_topic_id(t.topic_id)
                .with_partitions(t.partitions)
        })
        .collect()
}

/// A member that dies without leaving (it just stops heartbeating) loses its partitions to the
/// survivors once its session times out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_member_is_expired_and_its_partitions_move() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.group.consumer.session_timeout_ms = 2_000;
    let broker = TestBroker::start_with(cfg, KafkaConfig::default()).await;
    let bootstrap = broker.bootstrap();
    client::create_topic(&bootstrap, "silent848", 4).await;
    let mut s = TcpStream::connect(broker.addr()).await.unwrap();
    let hb = ApiKey::ConsumerGroupHeartbeat;
    let group = |r: ConsumerGroupHeartbeatRequest| {
        r.with_group_id(GroupId(StrBytes::from_static_str("gsilent")))
    };
    let joined: ConsumerGroupHeartbeatResponse = raw::call(
        &mut s,
        hb,
        1,
        &group(heartbeat("doomed", 0, Some(&["silent848"]))),
    )
    .await;
    assert_eq!(joined.member_epoch, 1);
    let mut owned = owned_partitions(joined.assignment.unwrap());
    let mut epoch = joined.member_epoch;
    let b = bootstrap.clone();
    let survivor = tokio::task::spawn_blocking(move || {
        let c = member(&b, "gsilent", &[]);
        c.subscribe(&["silent848"]).unwrap();
        c
    })
    .await
    .unwrap();
    // The raw member plays along until the group has settled at two partitions each: it
    // reports what it owns, releasing what it is told to.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let _ = tokio::task::block_in_place(|| survivor.poll(Duration::from_millis(50)));
        let r: ConsumerGroupHeartbeatResponse = raw::call(
            &mut s,
            hb,
            1,
            &group(heartbeat("doomed", epoch, None)).with_topic_partitions(Some(owned.clone())),
        )
        .await;
        assert_eq!(r.error_code, 0);
        epoch = r.member_epoch;
        if let Some(a) = r.assignment {
            owned = owned_partitions(a);
        }
        let mine: usize = owned.iter().map(|t| t.partitions.len()).sum();
        if mine == 2 && assignment(&survivor).len() == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "never settled at 2 + 2");
    }
    // Now it goes silent, as a killed process would: no leave.
    let silent_since = Instant::now();
    let took = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        while assignment(&survivor).len() != 4 {
            assert!(
                Instant::now() < deadline,
                "the survivor never got all partitions"
            );
            let _ = survivor.poll(Duration::from_millis(50));
        }
        (silent_since.elapsed(), survivor)
    })
    .await
    .unwrap();
    let (took, survivor) = took;
    assert!(
        took >= Duration::from_millis(1_900),
        "moved before the session timeout: {took:?}"
    );
    let d = broker.broker().describe_consumer_group("gsilent").unwrap();
    assert_eq!(d.members.len(), 1, "only the survivor is left");
    tokio::task::spawn_blocking(move || drop(survivor))
        .await
        .unwrap();
    broker.stop().await;
}
