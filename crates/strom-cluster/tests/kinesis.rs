//! Kinesis state shared by the brokers of a cluster, two brokers' backends over one real
//! PostgreSQL and moto: a partition sealed through one broker (a shard closed by resharding)
//! refuses data committed through the other, at the end offset the seal returned; and a
//! shard's AWS-limits buckets, charged through two brokers, are one bucket.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::BytesMut;
use strom_broker::metadata::MetadataEvent;
use strom_broker::storage::{
    LogConfig, Offset, PartitionIndex, PartitionStore, StorageBackend, StorageError, TopicPartition,
};
use strom_broker::stream::StreamMeta;
use strom_cluster::ClusterBackend;
use support::{Env, batch, blocking, node, values};
use uuid::Uuid;

fn open(backend: &Arc<ClusterBackend>, topic: &'static str, index: i32) -> Arc<dyn PartitionStore> {
    backend
        .open_partition(
            TopicPartition {
                topic,
                index: PartitionIndex(index),
            },
            LogConfig::default(),
        )
        .expect("open partition")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seal_through_one_broker_refuses_data_committed_through_another() {
    let env = Env::start().await;
    let (_node_a, a) = node(&env).await;
    let (_node_b, b) = node(&env).await;
    blocking(move || {
        let (mut meta, _) = a.open_metadata().unwrap();
        meta.append(&MetadataEvent::TopicCreated {
            name: "s".into(),
            id: Uuid::new_v4(),
            partitions: 1,
            configs: BTreeMap::new(),
        })
        .unwrap();
        let (on_a, on_b) = (open(&a, "s", 0), open(&b, "s", 0));
        let mut payload = BytesMut::from(&batch(None, &values("x", 3))[..]);
        on_b.append(&mut payload, 0).unwrap();
        // Broker A has not necessarily seen B's commit: the seal counts it anyway.
        assert_eq!(on_a.seal().unwrap(), Some(Offset(3)));
        // Sealing again keeps the first end.
        assert_eq!(on_b.seal().unwrap(), Some(Offset(3)));
        let mut payload = BytesMut::from(&batch(None, &values("y", 2))[..]);
        let err = on_b.append(&mut payload, 0).unwrap_err();
        assert!(matches!(err, StorageError::Sealed), "{err:?}");
        let mut payload = BytesMut::from(&batch(None, &values("y", 2))[..]);
        assert!(matches!(
            on_a.append(&mut payload, 0),
            Err(StorageError::Sealed)
        ));
        assert_eq!(
            on_b.read(Offset(0), 1 << 20).unwrap().high_watermark,
            Offset(3)
        );
        // Lifted (a reshard whose metadata append failed): data is taken again.
        on_a.unseal().unwrap();
        let mut payload = BytesMut::from(&batch(None, &values("z", 1))[..]);
        assert_eq!(on_b.append(&mut payload, 0).unwrap().base_offset, 3);

        // A stream's metadata changed through A is not overwritten by a change B decided on
        // the older value: B must read A's change first.
        let (mut meta_b, _) = b.open_metadata().unwrap();
        let id = Uuid::new_v4();
        let set = |retention_hours| MetadataEvent::StreamMetaSet {
            id,
            stream: StreamMeta {
                retention_hours,
                ..StreamMeta::new(1, "PROVISIONED", 0)
            },
        };
        meta.append(&set(48)).unwrap();
        let err = meta_b.append(&set(72)).unwrap_err();
        assert!(
            matches!(err, strom_broker::Error::InvalidPartitions { .. }),
            "{err:?}"
        );
        assert!(meta_b.poll().unwrap().contains(&set(48)));
        meta_b.append(&set(72)).unwrap();
        // A's own earlier change does not count against it, B's later one does.
        assert!(meta.append(&set(96)).is_err());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shards_buckets_are_one_for_every_broker() {
    let env = Env::start().await;
    let (node_a, _a) = node(&env).await;
    let (node_b, _b) = node(&env).await;
    let (on_a, on_b) = (
        node_a.kinesis_buckets().unwrap(),
        node_b.kinesis_buckets().unwrap(),
    );
    let topic = Uuid::new_v4();
    // First step on the shard: no stored levels.
    on_a.update(topic, 0, |stored| {
        assert!(stored.is_none(), "{stored:?}");
        [0.0, 1.0, 2.0, 3.0]
    })
    .await
    .unwrap();
    // The other broker reads what the first stored, and the time since.
    let mut seen = None;
    on_b.update(topic, 0, |stored| {
        seen = stored;
        [10.0, 11.0, 12.0, 13.0]
    })
    .await
    .unwrap();
    let (levels, elapsed) = seen.unwrap();
    assert_eq!(levels, [0.0, 1.0, 2.0, 3.0]);
    assert!((0.0..60.0).contains(&elapsed), "{elapsed}");
    // Steps from both brokers at once are serialised: none is lost.
    let steps: Vec<_> = (0..20)
        .map(|i| {
            let buckets = if i % 2 == 0 { &on_a } else { &on_b };
            buckets.update(topic, 1, |stored| {
                let [n, ..] = stored.map_or([0.0; 4], |(l, _)| l);
                [n + 1.0, 0.0, 0.0, 0.0]
            })
        })
        .collect();
    for r in futures_util::future::join_all(steps).await {
        r.unwrap();
    }
    let mut total = None;
    on_a.update(topic, 1, |stored| {
        total = stored.map(|(l, _)| l[0]);
        stored.map_or([0.0; 4], |(l, _)| l)
    })
    .await
    .unwrap();
    assert_eq!(total, Some(20.0));
}
