//! Topic lifecycle against a real data dir: create, append, read, restart, configs, delete.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use strom_broker::{Broker, BrokerConfig, ConfigOp, CreateTopic, Error};
use strom_record::{BatchBuilder, Record};

fn batch(values: &[&str]) -> Vec<u8> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let records: Vec<Record> = values
        .iter()
        .map(|v| Record::new(now, None, Some(Bytes::copy_from_slice(v.as_bytes()))))
        .collect();
    BatchBuilder::new().build(&records).unwrap()
}

fn create(broker: &Broker, name: &str, partitions: i32) {
    broker
        .create_topic_blocking(CreateTopic {
            name: name.to_owned(),
            partitions: Some(partitions),
            ..CreateTopic::default()
        })
        .unwrap();
}

#[test]
fn create_append_restart_delete() {
    let dir = tempfile::tempdir().unwrap();
    let config = BrokerConfig::new(dir.path());
    let id;
    {
        let broker = Broker::open(config.clone()).unwrap();
        create(&broker, "orders", 3);
        id = broker.topic("orders").unwrap().id();
        let p = broker.partition("orders", 2).unwrap();
        let info = p.append_blocking(&mut batch(&["a", "b"])).unwrap();
        assert_eq!((info.base_offset, info.last_offset), (0, 1));
        let info = p.append_blocking(&mut batch(&["c"])).unwrap();
        assert_eq!(info.base_offset, 2);
        assert!(matches!(
            broker.partition("orders", 3),
            Err(Error::UnknownPartition { partition: 3, .. })
        ));
        assert!(matches!(
            broker.create_topic_blocking(CreateTopic {
                name: "orders".into(),
                ..CreateTopic::default()
            }),
            Err(Error::TopicAlreadyExists { .. })
        ));
        broker.shutdown_blocking().unwrap();
    }
    let broker = Broker::open(config.clone()).unwrap();
    let topic = broker.topic("orders").unwrap();
    assert_eq!(topic.id(), id);
    assert_eq!(topic.partition_count(), 3);
    let p = topic.partition(2).unwrap();
    assert_eq!(p.high_watermark(), 3);
    let read = p.read_blocking(0, 1 << 20).unwrap();
    assert!(!read.records.is_empty());
    assert_eq!(read.high_watermark, 3);

    broker.delete_topic_blocking("orders").unwrap();
    assert!(matches!(
        broker.topic("orders"),
        Err(Error::UnknownTopic { .. })
    ));
    assert!(!dir.path().join("orders-0").exists());
    drop(broker);
    let broker = Broker::open(config).unwrap();
    assert!(broker.topics().is_empty());
}

#[test]
fn configs_validate_persist_and_alter() {
    let dir = tempfile::tempdir().unwrap();
    let config = BrokerConfig::new(dir.path());
    let broker = Broker::open(config.clone()).unwrap();
    let bad = broker.create_topic_blocking(CreateTopic {
        name: "t".into(),
        configs: BTreeMap::from([("retention.ms".into(), "soon".into())]),
        ..CreateTopic::default()
    });
    assert!(matches!(bad, Err(Error::InvalidConfig { .. })));
    let validate_only = broker
        .create_topic_blocking(CreateTopic {
            name: "t".into(),
            partitions: Some(2),
            validate_only: true,
            ..CreateTopic::default()
        })
        .unwrap();
    assert_eq!(validate_only.partitions, 2);
    assert!(broker.topic("t").is_err());
    broker
        .create_topic_blocking(CreateTopic {
            name: "t".into(),
            configs: BTreeMap::from([("retention.ms".into(), "1000".into())]),
            ..CreateTopic::default()
        })
        .unwrap();
    broker
        .incremental_alter_configs_blocking(
            "t",
            &[
                ConfigOp::Set("segment.bytes".into(), "4096".into()),
                ConfigOp::Delete("retention.ms".into()),
                ConfigOp::Append("cleanup.policy".into(), "compact".into()),
            ],
            false,
        )
        .unwrap();
    broker.create_partitions_blocking("t", 4, false).unwrap();
    assert!(matches!(
        broker.create_partitions_blocking("t", 2, false),
        Err(Error::InvalidPartitions { .. })
    ));
    drop(broker);
    let broker = Broker::open(config).unwrap();
    let t = broker.topic("t").unwrap();
    assert_eq!(t.partition_count(), 4);
    let overrides = t.overrides();
    assert_eq!(
        overrides.get("segment.bytes").map(String::as_str),
        Some("4096")
    );
    assert_eq!(
        overrides.get("cleanup.policy").map(String::as_str),
        Some("delete,compact")
    );
    assert!(!overrides.contains_key("retention.ms"));
}

#[test]
fn auto_create_and_invalid_names() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = BrokerConfig::new(dir.path());
    config.num_partitions = 2;
    let broker = Broker::open(config).unwrap();
    assert_eq!(
        broker
            .topic_or_create_blocking("auto", true)
            .unwrap()
            .partition_count(),
        2
    );
    assert!(matches!(
        broker.topic_or_create_blocking("bad name", true),
        Err(Error::InvalidTopicName { .. })
    ));
    assert!(matches!(
        broker.topic_or_create_blocking("missing", false),
        Err(Error::UnknownTopic { .. })
    ));
}

#[tokio::test]
async fn appends_wake_watchers() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Arc::new(Broker::open(BrokerConfig::new(dir.path())).unwrap());
    create(&broker, "w", 1);
    let p = broker.partition("w", 0).unwrap();
    let mut rx = p.subscribe();
    let writer = Arc::clone(&p);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        writer.append(batch(&["x"])).await.unwrap();
    });
    tokio::time::timeout(Duration::from_secs(5), rx.changed())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(*rx.borrow(), 1);
}

#[test]
fn producer_ids_are_never_reused_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let config = BrokerConfig::new(dir.path());
    let first: Vec<i64> = {
        let broker = Broker::open(config.clone()).unwrap();
        (0..3)
            .map(|_| broker.allocate_producer_id_blocking().unwrap())
            .collect()
    };
    assert_eq!(first, [0, 1, 2]);
    let broker = Broker::open(config).unwrap();
    let next = broker.allocate_producer_id_blocking().unwrap();
    assert!(next > 2, "{next}");
}

#[test]
fn altered_configs_reach_the_storage_engine() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(BrokerConfig::new(dir.path())).unwrap();
    create(&broker, "r", 1);
    let p = broker.partition("r", 0).unwrap();
    let value = "v".repeat(500);
    for _ in 0..20 {
        p.append_blocking(&mut batch(&[&value])).unwrap();
    }
    assert_eq!(broker.apply_retention_blocking().unwrap(), 0);
    assert_eq!(p.log_start_offset(), 0);
    // Small segments and a size limit: the next appends roll, retention then drops old ones.
    broker
        .incremental_alter_configs_blocking(
            "r",
            &[
                ConfigOp::Set("segment.bytes".into(), "2048".into()),
                ConfigOp::Set("retention.bytes".into(), "4096".into()),
            ],
            false,
        )
        .unwrap();
    for _ in 0..40 {
        p.append_blocking(&mut batch(&[&value])).unwrap();
    }
    assert!(broker.apply_retention_blocking().unwrap() > 0);
    assert!(p.log_start_offset() > 0, "retention.bytes had no effect");
    assert!(p.size_bytes() < 4096 + 2048 + 1024, "{}", p.size_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsync_policies_always_interval_never() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Arc::new(Broker::open(BrokerConfig::new(dir.path())).unwrap());
    broker.start_background();
    for (name, policy) in [
        ("always", "always"),
        ("interval", "interval"),
        ("never", "never"),
    ] {
        let b = Arc::clone(&broker);
        let name = name.to_owned();
        let policy = policy.to_owned();
        broker
            .run_blocking(move |_| {
                b.create_topic_blocking(CreateTopic {
                    name,
                    configs: BTreeMap::from([
                        ("strom.fsync".into(), policy),
                        ("strom.fsync.interval.ms".into(), "50".into()),
                    ]),
                    ..CreateTopic::default()
                })
            })
            .await
            .unwrap();
    }
    let mut before = Vec::new();
    for name in ["always", "interval", "never"] {
        let p = broker.partition(name, 0).unwrap();
        before.push(p.sync_count());
        for _ in 0..3 {
            p.append(batch(&["x"])).await.unwrap();
        }
        // Every policy makes the records visible at once.
        assert_eq!(p.high_watermark(), 3, "{name}");
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let after: Vec<u64> = ["always", "interval", "never"]
        .iter()
        .map(|n| broker.partition(n, 0).unwrap().sync_count())
        .collect();
    assert!(
        after[0] >= before[0] + 3,
        "always syncs each append: {before:?} -> {after:?}"
    );
    assert!(
        after[1] > before[1],
        "the interval flusher ran: {before:?} -> {after:?}"
    );
    assert_eq!(
        after[2], before[2],
        "never syncs on its own: {before:?} -> {after:?}"
    );
}
