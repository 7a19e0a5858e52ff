//! The cluster backend behind the broker's storage seam, two brokers' backends over one real
//! PostgreSQL and moto: the metadata store's cluster-wide checks and ordering, partition stores
//! writing through one broker and reading through the other (DeleteRecords and producers
//! included), and what is refused.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use strom_broker::metadata::MetadataEvent;
use strom_broker::storage::{
    LogConfig, Offset, PartitionIndex, PartitionStore, StorageBackend, StorageError, TopicPartition,
};
use strom_cluster::ClusterBackend;
use support::{Env, STEP, batch, blocking, node, values};
use uuid::Uuid;

fn created(name: &str, id: Uuid, partitions: i32) -> MetadataEvent {
    MetadataEvent::TopicCreated {
        name: name.into(),
        id,
        partitions,
        configs: BTreeMap::new(),
    }
}

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
async fn two_brokers_share_metadata_and_partitions() {
    let env = Env::start().await;
    let (node_a, a) = node(&env).await;
    let (node_b, b) = node(&env).await;
    assert_ne!(node_a.node_id(), node_b.node_id(), "distinct node ids");

    let (a2, b2) = (a.clone(), b.clone());
    blocking(move || {
        let (mut meta_a, events_a) = a2.open_metadata().unwrap();
        let (mut meta_b, events_b) = b2.open_metadata().unwrap();
        // One cluster id, chosen once.
        assert!(matches!(
            events_a.first(),
            Some(MetadataEvent::ClusterInitialized { .. })
        ));
        assert_eq!(events_a.first(), events_b.first());

        let first = Uuid::new_v4();
        meta_a.append(&created("t", first, 2)).unwrap();
        // The name is taken cluster-wide, even for a broker that has not seen it yet.
        let err = meta_b.append(&created("t", Uuid::new_v4(), 1)).unwrap_err();
        assert!(
            matches!(err, strom_broker::Error::TopicAlreadyExists { .. }),
            "{err:?}"
        );
        // The other broker learns it from the shared order.
        let seen = meta_b.poll().unwrap();
        assert_eq!(seen, vec![created("t", first, 2)]);
        assert!(meta_b.poll().unwrap().is_empty(), "each event read once");

        // Partitions only grow, whoever asks.
        meta_b
            .append(&MetadataEvent::PartitionsCreated {
                id: first,
                total: 3,
            })
            .unwrap();
        let err = meta_a
            .append(&MetadataEvent::PartitionsCreated {
                id: first,
                total: 3,
            })
            .unwrap_err();
        assert!(
            matches!(err, strom_broker::Error::InvalidPartitions { .. }),
            "{err:?}"
        );
        // Own events come back too, in the shared order (the broker applies them idempotently).
        let seen = meta_a.poll().unwrap();
        assert_eq!(
            seen,
            vec![
                created("t", first, 2),
                MetadataEvent::PartitionsCreated {
                    id: first,
                    total: 3
                }
            ]
        );

        // Producer ids are unique across brokers.
        let ids: Vec<i64> = (0..4)
            .map(|i| {
                let meta = if i % 2 == 0 { &mut meta_a } else { &mut meta_b };
                meta.allocate_producer_id().unwrap().unwrap()
            })
            .collect();
        let mut unique = ids.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ids.len(), "{ids:?}");
    })
    .await;

    // Written through broker A, read through broker B.
    let (a2, b2) = (a.clone(), b.clone());
    blocking(move || {
        let writer = open(&a2, "t", 2);
        let reader = open(&b2, "t", 2);
        let mut payload = BytesMut::from(&batch(None, &values("x", 5))[..]);
        payload.extend_from_slice(&batch(None, &values("y", 3)));
        let pending = writer.append_deferred(&mut payload, 0).unwrap();
        let info = writer.await_durable(pending).unwrap();
        assert_eq!((info.base_offset, info.last_offset), (0, 7));
        assert_eq!(writer.high_watermark(), Offset(8));
        let read = reader.read(Offset(0), 1 << 20).unwrap();
        assert_eq!(read.high_watermark, Offset(8));
        let mut offsets = Vec::new();
        for b in strom_record::stored_batches(&read.records) {
            let (header, _) = b.unwrap();
            offsets.push((header.base_offset, header.last_offset()));
        }
        assert_eq!(offsets, vec![(0, 4), (5, 7)]);
        // The reader's watermark follows commits made elsewhere (LISTEN/NOTIFY).
        let mut payload = BytesMut::from(&batch(None, &values("z", 2))[..]);
        writer.append(&mut payload, 0).unwrap();
        let started = Instant::now();
        while reader.high_watermark() != Offset(10) {
            assert!(started.elapsed() < STEP, "watermark not notified");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(
            reader.offset_for_timestamp(1_003).unwrap().map(|(o, _)| o),
            Some(Offset(3))
        );

        // Refused with a typed error: transactions, DeleteRecords.
        let mut builder = strom_record::BatchBuilder::new();
        builder.producer_id = 7;
        builder.producer_epoch = 0;
        builder.base_sequence = 0;
        builder.transactional = true;
        let txn = builder
            .build(&[strom_record::Record::new(1, None, Some("v".into()))])
            .unwrap();
        let err = writer.append(&mut txn.clone(), 0).unwrap_err();
        assert!(matches!(err, StorageError::Unsupported { .. }), "{err:?}");
        // DeleteRecords through one broker moves the log start for every broker.
        assert_eq!(writer.delete_records(Offset(3)).unwrap(), Offset(3));
        let err = reader.read(Offset(1), 1 << 20).unwrap_err();
        assert!(
            matches!(
                err,
                StorageError::OffsetOutOfRange {
                    requested: 1,
                    start: 3,
                    end: 10
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            reader.read(Offset(3), 1 << 20).unwrap().log_start_offset,
            Offset(3)
        );
        assert_eq!(
            writer.delete_records(Offset(2)).unwrap(),
            Offset(3),
            "never moves back"
        );
        let err = writer.delete_records(Offset(11)).unwrap_err();
        assert!(matches!(err, StorageError::InvalidOffset { .. }), "{err:?}");
        // Producers remembered by the commit transactions, seen through either broker.
        let mut idempotent = BytesMut::from(&batch(Some((9, 0, 0)), &values("p", 2))[..]);
        writer.append(&mut idempotent, 0).unwrap();
        let producers = reader.producers();
        assert!(
            producers
                .iter()
                .any(|p| p.producer_id == 9 && p.last_sequence == 1),
            "{producers:?}"
        );
        // A malformed batch is refused before it reaches the writer.
        let mut bad = batch(None, &values("b", 1)).to_vec();
        if let Some(last) = bad.last_mut() {
            *last ^= 0xff;
        }
        let err = writer.append(&mut bad, 0).unwrap_err();
        assert!(matches!(err, StorageError::InvalidBatch(_)), "{err:?}");
        assert_eq!(
            writer.high_watermark(),
            Offset(12),
            "nothing refused was written"
        );
    })
    .await;

    // Deleting the topic removes its partitions for everyone.
    let (a2, b2) = (a.clone(), b.clone());
    blocking(move || {
        let (mut meta_a, events) = a2.open_metadata().unwrap();
        let id = events
            .iter()
            .find_map(|e| match e {
                MetadataEvent::TopicCreated { id, .. } => Some(*id),
                _ => None,
            })
            .unwrap();
        meta_a.append(&MetadataEvent::TopicDeleted { id }).unwrap();
        let (mut meta_b, _) = b2.open_metadata().unwrap();
        let err = meta_b
            .append(&MetadataEvent::TopicDeleted { id })
            .unwrap_err();
        assert!(
            matches!(err, strom_broker::Error::UnknownTopicId { .. }),
            "{err:?}"
        );
        let reader = open(&b2, "t", 0);
        let err = reader.read(Offset(0), 1024).unwrap_err();
        assert!(matches!(err, StorageError::Closed), "{err:?}");
    })
    .await;
    node_a.shutdown(Duration::from_secs(5)).await;
    node_b.shutdown(Duration::from_secs(5)).await;
}

/// A producer's first batch on a partition fails with its flush (the object store is down);
/// its next batch must not overtake it: refused as out of order until the first is retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_batch_lost_to_a_failed_flush_is_not_overtaken() {
    let mut env = Env::start().await;
    env.create_topic("o", 1).await;
    let tp = strom_cluster::TopicPartition::new("o", 0);
    let writer = env.writer("w", support::fast_flush(), None);
    let first = batch(Some((42, 0, 0)), &values("a", 2));
    let second = batch(Some((42, 0, 2)), &values("b", 1));

    tokio::task::block_in_place(|| env.s3.stop());
    let err = tokio::time::timeout(STEP, writer.append(tp.clone(), first.clone()))
        .await
        .unwrap()
        .unwrap_err();
    assert!(err.is_retriable(), "{err}");
    tokio::task::block_in_place(|| {
        env.s3.restart().expect("restart moto");
        env.s3.create_bucket(support::BUCKET).expect("bucket");
    });
    let err = tokio::time::timeout(STEP, writer.append(tp.clone(), second.clone()))
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(
            err,
            strom_cluster::Error::OutOfOrderSequence {
                expected: 0,
                received: 2,
                ..
            }
        ),
        "{err}"
    );
    // The producer retries in order: both land, in order.
    let a = writer.append(tp.clone(), first).await.unwrap();
    let b = writer.append(tp.clone(), second).await.unwrap();
    assert_eq!((a.base_offset, a.last_offset, b.base_offset), (0, 1, 2));
}
