//! `client::group::GroupMember` against an in-process broker: a second member joining a stable
//! group makes the first one's heartbeat ask for a rejoin, after which the `range` assignor
//! gives each one partition; commits and leaving work; a stale generation's commit is refused.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use strom_broker::{Broker, BrokerConfig, CreateTopic};
use strom_kafka::client::Client;
use strom_kafka::client::group::{GroupMember, MemberTimeouts};
use strom_kafka::{KafkaConfig, KafkaServer};

#[global_allocator]
static ALLOC: strom_alloc::GuardedAlloc = strom_alloc::GuardedAlloc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_member_triggers_a_rebalance_and_range_splits_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = BrokerConfig::new(dir.path());
    config.group.initial_rebalance_delay_ms = 0;
    let broker = Broker::start(config).await.unwrap();
    broker
        .run_blocking(|b| {
            b.create_topic_blocking(CreateTopic {
                name: "t".into(),
                partitions: Some(2),
                ..CreateTopic::default()
            })
        })
        .await
        .unwrap();
    let server = KafkaServer::bind(
        KafkaConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..KafkaConfig::default()
        },
        Arc::clone(&broker),
    )
    .await
    .unwrap();
    let addr = server.local_addr().unwrap().to_string();
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let serving = tokio::spawn(server.serve(async move {
        let _ = stop_rx.wait_for(|s| *s).await;
    }));

    let counts: BTreeMap<String, i32> = [("t".to_owned(), 2)].into();
    let timeouts = MemberTimeouts {
        heartbeat_interval: Duration::from_millis(100),
        ..MemberTimeouts::default()
    };
    let mut bootstrap = Client::connect(&addr).await.unwrap();
    let mut a = GroupMember::connect(&mut bootstrap, &addr, "g", vec!["t".into()], timeouts)
        .await
        .unwrap();
    let alone = a.join(&counts).await.unwrap().clone();
    assert_eq!(alone, [("t".to_owned(), vec![0, 1])].into());
    let first_generation = a.generation();
    assert!(!a.member_id().is_empty());
    assert!(a.commit(&[("t".into(), 0, 3)]).await.unwrap());

    // B's join waits for A to rejoin; A learns of the rebalance from its heartbeat.
    let mut b = GroupMember::connect(&mut bootstrap, &addr, "g", vec!["t".into()], timeouts)
        .await
        .unwrap();
    let b_join = tokio::spawn(async move {
        let assignment = b.join(&[("t".to_owned(), 2)].into()).await.cloned();
        (b, assignment)
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        assert!(tokio::time::Instant::now() < deadline, "no rebalance seen");
        if a.heartbeat_if_due().await.unwrap() {
            break;
        }
        tokio::time::sleep(a.until_heartbeat()).await;
    }
    let a_assignment = a.join(&counts).await.unwrap().clone();
    let (mut b, b_assignment) = tokio::time::timeout(Duration::from_secs(20), b_join)
        .await
        .unwrap()
        .unwrap();
    let b_assignment = b_assignment.unwrap();
    assert!(a.generation() > first_generation);
    assert_eq!(a.generation(), b.generation());
    let mut all: Vec<i32> = a_assignment["t"]
        .iter()
        .chain(&b_assignment["t"])
        .copied()
        .collect();
    all.sort_unstable();
    assert_eq!(all, [0, 1]);
    assert_eq!(a_assignment["t"].len(), 1);
    // The lower member id leads the range: it gets partition 0.
    let (low, high) = if a.member_id() < b.member_id() {
        (&a_assignment, &b_assignment)
    } else {
        (&b_assignment, &a_assignment)
    };
    assert_eq!(low["t"], [0]);
    assert_eq!(high["t"], [1]);

    // The committed offset survived the rebalance and is visible to whoever owns p0.
    let owner = if a_assignment["t"] == [0] {
        &mut a
    } else {
        &mut b
    };
    let committed = owner.committed().await.unwrap();
    assert_eq!(committed.get(&("t".to_owned(), 0)), Some(&3));

    // Leaving: the group empties and an outside commit is accepted again.
    a.leave().await.unwrap();
    b.leave().await.unwrap();
    let mut admin = Client::connect(&addr).await.unwrap();
    let described = admin.describe_group("g").await.unwrap();
    assert_eq!(described.state, "Empty");
    admin
        .commit_offsets("g", "", -1, &[("t".into(), 1, 1)])
        .await
        .unwrap();
    assert_eq!(
        admin.fetch_offsets("g", None).await.unwrap(),
        [("t".to_owned(), 0, 3), ("t".to_owned(), 1, 1)]
    );

    let _ = stop_tx.send(true);
    serving.await.unwrap();
}
