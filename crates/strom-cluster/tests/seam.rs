//! The cluster backend behind the broker's storage seam, two brokers' backends over one real
//! PostgreSQL and moto: the metadata store's cluster-wide checks and ordering, partition stores
//! writing through one broker and reading through the other (DeleteRecords, producers and
//! transactions included), and what is refused.

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

fn txn_batch(producer_id: i64, epoch: i16, sequence: i32, values: &[String]) -> Vec<u8> {
    let builder = strom_record::BatchBuilder {
        producer_id,
        producer_epoch: epoch,
        base_sequence: sequence,
        transactional: true,
        ..strom_record::BatchBuilder::new()
    };
    let records: Vec<strom_record::Record> = values
        .iter()
        .map(|v| strom_record::Record::new(1_000, None, Some(v.clone().into())))
        .collect();
    builder.build(&records).expect("build transactional batch")
}

fn marker(producer_id: i64, epoch: i16, control_type: strom_record::ControlType) -> Vec<u8> {
    strom_record::marker_batch(producer_id, epoch, control_type, 0, 1_000).expect("build marker")
}

/// Waits until `store`'s high watermark reaches `hw` (commits of the other broker arrive
/// through LISTEN/NOTIFY).
fn await_watermark(store: &Arc<dyn PartitionStore>, hw: i64) {
    let started = Instant::now();
    while store.high_watermark() < Offset(hw) {
        assert!(started.elapsed() < STEP, "watermark {hw} not notified");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Broker A writes a transaction's data, broker B (the coordinator's broker) its markers: each
/// broker's store reports the other's open transaction, last stable offset and aborted
/// transactions, and fences a marker of an older epoch written through either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_written_through_one_broker_is_seen_by_the_other() {
    let env = Env::start().await;
    let (node_a, a) = node(&env).await;
    let (node_b, b) = node(&env).await;
    let (a2, b2) = (a.clone(), b.clone());
    blocking(move || {
        let (mut meta_a, _) = a2.open_metadata().unwrap();
        meta_a.append(&created("tx", Uuid::new_v4(), 1)).unwrap();
        let on_a = open(&a2, "tx", 0);
        let on_b = open(&b2, "tx", 0);

        // A transaction of producer 40 and a plain batch, through A.
        let info = on_a
            .append(&mut txn_batch(40, 0, 0, &values("t", 3)), 0)
            .unwrap();
        assert_eq!((info.base_offset, info.last_offset), (0, 2));
        on_a.append(&mut batch(None, &values("p", 1)).to_vec(), 0)
            .unwrap();
        await_watermark(&on_b, 4);
        assert_eq!(
            on_b.last_stable_offset(),
            Offset(0),
            "B sees A's open transaction hold the LSO"
        );
        let ongoing = on_b.ongoing_transactions();
        assert_eq!(
            ongoing
                .iter()
                .map(|t| (t.producer_id, t.first_offset))
                .collect::<Vec<_>>(),
            vec![(40, 0)]
        );
        let held = on_b.read_committed(Offset(0), 1 << 20).unwrap();
        assert!(held.records.is_empty(), "read_committed stops at the LSO");
        assert_eq!(
            (held.high_watermark, held.last_stable_offset),
            (Offset(4), Offset(0))
        );
        assert_eq!(
            on_b.producers()
                .iter()
                .find(|p| p.producer_id == 40)
                .and_then(|p| p.current_txn_start_offset),
            Some(0)
        );

        // B writes the ABORT marker; A learns the LSO and the aborted transaction.
        let m = on_b
            .append(&mut marker(40, 0, strom_record::ControlType::Abort), 0)
            .unwrap();
        assert_eq!(m.base_offset, 4);
        await_watermark(&on_a, 5);
        assert_eq!(
            on_a.last_stable_offset(),
            Offset(5),
            "the abort released the LSO"
        );
        assert!(on_a.ongoing_transactions().is_empty());
        let read = on_a.read_committed(Offset(0), 1 << 20).unwrap();
        assert_eq!(read.last_stable_offset, Offset(5));
        assert_eq!(
            read.aborted_transactions
                .iter()
                .map(|t| (t.producer_id, t.first_offset))
                .collect::<Vec<_>>(),
            vec![(40, 0)],
            "A lists the transaction B aborted"
        );

        // Producer 41 at epoch 2 through A; a marker of epoch 1 through B is fenced, one of
        // epoch 2 commits.
        on_a.append(&mut txn_batch(41, 2, 0, &values("c", 2)), 0)
            .unwrap();
        await_watermark(&on_b, 7);
        assert_eq!(on_b.last_stable_offset(), Offset(5));
        let err = on_b
            .append(&mut marker(41, 1, strom_record::ControlType::Commit), 0)
            .unwrap_err();
        assert!(
            matches!(
                err,
                StorageError::ProducerFenced {
                    producer_id: 41,
                    epoch: 1,
                    current_epoch: 2
                }
            ),
            "{err:?}"
        );
        on_b.append(&mut marker(41, 2, strom_record::ControlType::Commit), 0)
            .unwrap();
        await_watermark(&on_a, 8);
        assert_eq!(on_a.last_stable_offset(), Offset(8));
        let read = on_a.read_committed(Offset(5), 1 << 20).unwrap();
        assert!(
            read.aborted_transactions.is_empty(),
            "a commit aborts nothing"
        );
        let mut bases = Vec::new();
        for b in strom_record::stored_batches(&read.records) {
            bases.push(b.unwrap().0.base_offset);
        }
        assert_eq!(
            bases,
            vec![5, 7],
            "the committed transaction and its marker"
        );
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
