//! Coordinator runtime tests against a real broker on a temporary directory.

use super::*;
use crate::topic::CreateTopic;
use crate::{BrokerConfig, ManualClock};
use strom_record::{BatchBuilder, Record, ValidationLimits, batches, parse_marker};

fn open(dir: &std::path::Path, clock: &Arc<ManualClock>) -> Broker {
    let broker = Broker::open_with_clock(
        BrokerConfig::new(dir),
        Arc::clone(clock) as Arc<dyn crate::Clock>,
    )
    .unwrap();
    if broker.topic("t").is_err() {
        broker
            .create_topic_blocking(CreateTopic {
                name: "t".into(),
                partitions: Some(3),
                ..CreateTopic::default()
            })
            .unwrap();
    }
    broker
}

fn produce(broker: &Broker, p: i32, pid: i64, epoch: i16, seq: i32) {
    let mut batch = BatchBuilder {
        producer_id: pid,
        producer_epoch: epoch,
        base_sequence: seq,
        transactional: true,
        ..BatchBuilder::new()
    }
    .build(&[Record::new(1, None, Some(bytes::Bytes::from("v")))])
    .unwrap();
    broker
        .partition("t", p)
        .unwrap()
        .append_blocking(&mut batch)
        .unwrap();
}

/// The markers stored in partition `p`: (producer id, epoch, commit?).
fn markers(broker: &Broker, p: i32) -> Vec<(i64, i16, bool)> {
    let read = broker
        .partition("t", p)
        .unwrap()
        .read_blocking(0, 1 << 20)
        .unwrap();
    batches(&read.records, ValidationLimits::default())
        .map(|b| b.unwrap())
        .filter(|(h, _)| h.is_control())
        .map(|(_, range)| {
            let m = parse_marker(&read.records[range]).unwrap();
            (
                m.producer_id,
                m.producer_epoch,
                m.control_type == ControlType::Commit,
            )
        })
        .collect()
}

fn tps(ps: &[i32]) -> Vec<(String, i32)> {
    ps.iter().map(|p| ("t".to_owned(), *p)).collect()
}

#[test]
fn commit_writes_markers_to_every_partition_and_applies_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000));
    let broker = open(dir.path(), &clock);
    let (pid, epoch) = broker
        .init_transactional_producer_blocking("tx", 60_000, None)
        .unwrap();
    assert_eq!(epoch, 0);
    let added = broker
        .add_partitions_to_txn_blocking("tx", pid, epoch, tps(&[0, 1]))
        .unwrap();
    assert!(added.iter().all(|(_, r)| r.is_ok()));
    produce(&broker, 0, pid, epoch, 0);
    produce(&broker, 1, pid, epoch, 0);
    assert!(matches!(
        broker.check_transactional_produce("tx", pid, epoch, "t", 2),
        Err(Error::Txn(TxnError::PartitionNotInTransaction))
    ));
    broker
        .add_offsets_to_txn_blocking("tx", pid, epoch, "g")
        .unwrap();
    let commit = OffsetCommit {
        topic: "t".into(),
        partition: 2,
        offset: 42,
        leader_epoch: -1,
        metadata: None,
    };
    let r = broker
        .txn_offset_commit_blocking("tx", "g", pid, epoch, "", -1, None, vec![commit])
        .unwrap();
    assert!(r[0].is_ok());
    assert!(
        broker.groups().fetch_offsets("g", None).is_empty(),
        "not visible before commit"
    );
    assert!(broker.has_pending_txn_offset("g", "t", 2));
    broker.end_txn_blocking("tx", pid, epoch, true).unwrap();
    assert_eq!(markers(&broker, 0), [(pid, epoch, true)]);
    assert_eq!(markers(&broker, 1), [(pid, epoch, true)]);
    assert!(markers(&broker, 2).is_empty());
    let got = broker.groups().fetch_offsets("g", None);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1.as_ref().unwrap().offset, 42);
    assert!(!broker.has_pending_txn_offset("g", "t", 2));
    // A retried EndTxn is answered; an abort of a committed transaction is not.
    broker.end_txn_blocking("tx", pid, epoch, true).unwrap();
    assert!(matches!(
        broker.end_txn_blocking("tx", pid, epoch, false),
        Err(Error::Txn(TxnError::InvalidTxnState))
    ));
    assert_eq!(
        broker.txns().describe("tx").unwrap().metadata.state,
        TxnState::CompleteCommit
    );
}

#[test]
fn abort_drops_offsets_and_a_new_producer_fences_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000));
    let broker = open(dir.path(), &clock);
    let (pid, e0) = broker
        .init_transactional_producer_blocking("tx", 60_000, None)
        .unwrap();
    broker
        .add_partitions_to_txn_blocking("tx", pid, e0, tps(&[0]))
        .unwrap();
    produce(&broker, 0, pid, e0, 0);
    broker
        .add_offsets_to_txn_blocking("tx", pid, e0, "g")
        .unwrap();
    let c = OffsetCommit {
        topic: "t".into(),
        partition: 0,
        offset: 7,
        leader_epoch: -1,
        metadata: None,
    };
    broker
        .txn_offset_commit_blocking("tx", "g", pid, e0, "", -1, None, vec![c])
        .unwrap();
    // A second producer with the same id: the open transaction is aborted with a bumped
    // epoch, and the newcomer gets a newer one still.
    let (pid2, e2) = broker
        .init_transactional_producer_blocking("tx", 60_000, None)
        .unwrap();
    assert_eq!((pid2, e2), (pid, e0 + 2));
    assert_eq!(markers(&broker, 0), [(pid, e0 + 1, false)]);
    assert!(broker.groups().fetch_offsets("g", None).is_empty());
    assert!(!broker.has_pending_txn_offset("g", "t", 0));
    // The zombie is fenced everywhere.
    assert!(matches!(
        broker.end_txn_blocking("tx", pid, e0, true),
        Err(Error::Txn(TxnError::ProducerFenced))
    ));
    assert!(matches!(
        broker.add_partitions_to_txn_blocking("tx", pid, e0, tps(&[1])),
        Err(Error::Txn(TxnError::ProducerFenced))
    ));
    assert!(matches!(
        broker.check_transactional_produce("tx", pid, e0, "t", 0),
        Err(Error::Txn(TxnError::ProducerFenced))
    ));
    // Unknown partitions fail alone and nothing is added.
    let r = broker
        .add_partitions_to_txn_blocking("tx", pid, e2, vec![("t".into(), 0), ("nope".into(), 0)])
        .unwrap();
    assert!(matches!(r[0].1, Err(Error::OperationNotAttempted)));
    assert!(matches!(r[1].1, Err(Error::UnknownTopic { .. })));
    assert_eq!(
        broker.txns().describe("tx").unwrap().metadata.state,
        TxnState::Empty
    );
}

#[test]
fn state_survives_a_restart_and_timeouts_abort_with_an_epoch_bump() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000));
    let (pid, epoch) = {
        let broker = open(dir.path(), &clock);
        let (pid, epoch) = broker
            .init_transactional_producer_blocking("tx", 10_000, None)
            .unwrap();
        broker
            .add_partitions_to_txn_blocking("tx", pid, epoch, tps(&[0, 2]))
            .unwrap();
        produce(&broker, 2, pid, epoch, 0);
        broker.shutdown_blocking().unwrap();
        (pid, epoch)
    };
    let broker = open(dir.path(), &clock);
    let m = broker.txns().describe("tx").unwrap().metadata;
    assert_eq!(m.state, TxnState::Ongoing);
    assert_eq!(m.partitions.len(), 2);
    assert_eq!(broker.tick_transactions_blocking(), 0);
    clock.advance(10_001);
    assert_eq!(broker.tick_transactions_blocking(), 1);
    assert_eq!(markers(&broker, 2), [(pid, epoch + 1, false)]);
    let m = broker.txns().describe("tx").unwrap().metadata;
    assert_eq!(
        (m.state, m.producer_epoch, m.last_producer_epoch),
        (TxnState::CompleteAbort, epoch + 1, epoch)
    );
    // The timed-out producer's abort is answered; it re-initialises with its old epoch.
    broker.end_txn_blocking("tx", pid, epoch, false).unwrap();
    let again = broker
        .init_transactional_producer_blocking("tx", 10_000, Some((pid, epoch)))
        .unwrap();
    assert_eq!(again, (pid, epoch + 2));
    assert!(matches!(
        broker.init_transactional_producer_blocking("tx", 10_000_000, None),
        Err(Error::Txn(TxnError::InvalidTransactionTimeout))
    ));
}

#[test]
fn a_prepared_transaction_is_completed_when_the_broker_opens() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000));
    let pid = {
        let broker = open(dir.path(), &clock);
        let (pid, epoch) = broker
            .init_transactional_producer_blocking("tx", 60_000, None)
            .unwrap();
        broker
            .add_partitions_to_txn_blocking("tx", pid, epoch, tps(&[1]))
            .unwrap();
        // Simulate a crash between the durable PrepareCommit and the markers.
        let entry = broker.txns().entry("tx").unwrap();
        let mut m = entry.hold();
        m.prepare(true, false, 2_000);
        broker
            .txns()
            .persist_txn_blocking(&broker, "tx", None, Some(&m))
            .unwrap();
        drop(m);
        broker.shutdown_blocking().unwrap();
        pid
    };
    let broker = open(dir.path(), &clock);
    assert_eq!(markers(&broker, 1), [(pid, 0, true)]);
    assert_eq!(
        broker.txns().describe("tx").unwrap().metadata.state,
        TxnState::CompleteCommit
    );
}

/// Issue 15: `__transaction_state` and `__consumer_offsets` compacted by the cleaner replay to the
/// same transaction states and committed offsets (transactional offsets included) after a
/// restart.
#[test]
fn compacted_internal_topics_replay_to_the_same_state() {
    use std::collections::BTreeMap;
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000));
    let broker = open(dir.path(), &clock);
    let compact: BTreeMap<String, String> = [
        ("cleanup.policy", "compact"),
        ("segment.ms", "5"),
        ("min.cleanable.dirty.ratio", "0.01"),
        ("delete.retention.ms", "0"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    let mut seq: HashMap<i64, i32> = HashMap::new();
    for round in 0..6 {
        for id in 0..5 {
            let tx = format!("tx-{id}");
            let (pid, epoch) = broker
                .init_transactional_producer_blocking(&tx, 60_000, None)
                .unwrap();
            let added = broker
                .add_partitions_to_txn_blocking(&tx, pid, epoch, tps(&[id % 3]))
                .unwrap();
            assert!(added.iter().all(|(_, r)| r.is_ok()));
            let s = seq.entry(pid).or_insert(0);
            if epoch > 0 {
                *s = 0;
            }
            produce(&broker, id % 3, pid, epoch, *s);
            *s += 1;
            broker
                .add_offsets_to_txn_blocking(&tx, pid, epoch, "g")
                .unwrap();
            let commit = OffsetCommit {
                topic: "t".into(),
                partition: id % 3,
                offset: i64::from(round * 10 + id),
                leader_epoch: -1,
                metadata: None,
            };
            let r = broker
                .txn_offset_commit_blocking(&tx, "g", pid, epoch, "", -1, None, vec![commit])
                .unwrap();
            assert!(r[0].is_ok());
            // Commit all but the last round of tx-4, which is aborted.
            let commit = !(round == 5 && id == 4);
            broker.end_txn_blocking(&tx, pid, epoch, commit).unwrap();
        }
        if round == 0 {
            for topic in [TRANSACTION_STATE_TOPIC, crate::group::OFFSETS_TOPIC] {
                broker
                    .set_topic_configs_blocking(topic, compact.clone(), false)
                    .unwrap();
            }
        }
        clock.advance(10);
    }
    // Roll both internal topics' last segments with one more transaction.
    let (pid, epoch) = broker
        .init_transactional_producer_blocking("tx-roll", 60_000, None)
        .unwrap();
    broker
        .add_offsets_to_txn_blocking("tx-roll", pid, epoch, "roll")
        .unwrap();
    broker
        .end_txn_blocking("tx-roll", pid, epoch, true)
        .unwrap();

    let describe = |b: &Broker| {
        (0..5)
            .map(|id| format!("tx-{id}"))
            .chain(["tx-roll".to_owned()])
            .map(|tx| {
                let m = b.txns().describe(&tx).unwrap().metadata;
                (tx, m.producer_id, m.producer_epoch, m.state)
            })
            .collect::<Vec<(String, i64, i16, TxnState)>>()
    };
    let offsets = |b: &Broker| {
        let mut all: Vec<(i32, i64)> = b
            .groups()
            .fetch_offsets("g", None)
            .into_iter()
            .map(|((_, p), c)| (p, c.unwrap().offset))
            .collect();
        all.sort_unstable();
        all
    };
    let before = (describe(&broker), offsets(&broker));
    // Partition 1 is written by tx-1 and tx-4; tx-4's last round was aborted, so tx-1's (51)
    // is the last committed offset.
    assert_eq!(before.1, [(0, 53), (1, 51), (2, 52)]);

    let sizes = |b: &Broker| {
        [TRANSACTION_STATE_TOPIC, crate::group::OFFSETS_TOPIC]
            .map(|t| b.partition(t, 0).unwrap().size_bytes())
    };
    let size_before = sizes(&broker);
    let mut passes = 0;
    while broker.clean_once_blocking() {
        passes += 1;
        assert!(passes < 100, "the cleaner never ran out of work");
    }
    let size_after = sizes(&broker);
    for i in 0..2 {
        assert!(
            size_after[i] < size_before[i],
            "{size_before:?} -> {size_after:?}"
        );
    }
    let removed: u64 = broker
        .cleaner_status()
        .iter()
        .filter(|s| s.topic.starts_with("__"))
        .map(|s| s.state.records_removed_total)
        .sum();
    assert!(removed > 50, "{:?}", broker.cleaner_status());
    assert_eq!((describe(&broker), offsets(&broker)), before);
    broker.shutdown_blocking().unwrap();
    drop(broker);

    let reopened = open(dir.path(), &clock);
    assert_eq!(
        (describe(&reopened), offsets(&reopened)),
        before,
        "replayed from the compacted internal topics"
    );
    assert!(!reopened.has_pending_txn_offset("g", "t", 1));
    reopened.shutdown_blocking().unwrap();
}

/// The coordinator alone, on a host that is not a broker: it reaches the rest of the broker
/// only through [`TxnHost`].
mod narrow_host {
    use std::sync::atomic::{AtomicI64, Ordering};

    use super::*;
    use crate::storage::local::{LocalBackend, open_test_partition as partition};
    use crate::storage::{CoordinatorLeases, ShardLease};

    #[derive(Debug)]
    struct Host {
        backend: LocalBackend,
        data: Arc<Partition>,
        next_pid: AtomicI64,
        completed: Mutex<Vec<(i64, bool)>>,
        written: Mutex<Vec<(i64, String, usize)>>,
        published: Mutex<Vec<TxnCompletion>>,
        now: AtomicI64,
        state: std::sync::OnceLock<Arc<Partition>>,
        /// When set, publishing a completion fails (a transaction then stays prepared).
        fail_publish: std::sync::atomic::AtomicBool,
    }

    impl Host {
        fn open(dir: &std::path::Path) -> Host {
            let backend = LocalBackend::open(dir, Arc::new(crate::SystemClock)).unwrap();
            let data = partition(&backend, "data");
            Host {
                backend,
                data,
                next_pid: AtomicI64::new(100),
                completed: Mutex::default(),
                written: Mutex::default(),
                published: Mutex::default(),
                now: AtomicI64::new(1_000),
                state: std::sync::OnceLock::new(),
                fail_publish: std::sync::atomic::AtomicBool::new(false),
            }
        }
    }

    impl TxnHost for Host {
        fn now_ms(&self) -> i64 {
            self.now.load(Ordering::Relaxed)
        }
        fn partition(&self, topic: &str, index: i32) -> Result<Arc<Partition>> {
            if topic == "data" && index == 0 {
                Ok(Arc::clone(&self.data))
            } else {
                Err(Error::UnknownPartition {
                    topic: topic.to_owned(),
                    partition: index,
                })
            }
        }
        fn txn_state_partition(&self) -> Result<Arc<Partition>> {
            // One partition object, shared by every coordinator on this host (as a broker's).
            Ok(Arc::clone(self.state.get_or_init(|| {
                partition(&self.backend, TRANSACTION_STATE_TOPIC)
            })))
        }
        fn allocate_producer_id(&self) -> Result<i64> {
            Ok(self.next_pid.fetch_add(1, Ordering::Relaxed))
        }
        fn write_txn_offsets(&self, r: TxnOffsets<'_>) -> Result<Vec<Result<()>>> {
            lock(&self.written).push((r.producer_id, r.group_id.to_owned(), r.commits.len()));
            Ok(r.commits.iter().map(|_| Ok(())).collect())
        }
        fn complete_txn_offsets(&self, producer_id: i64, commit: bool) -> Result<()> {
            lock(&self.completed).push((producer_id, commit));
            Ok(())
        }
        fn publish_txn_completion(&self, completion: TxnCompletion) -> Result<()> {
            if self.fail_publish.load(Ordering::Relaxed) {
                return Err(Error::ShuttingDown);
            }
            lock(&self.published).push(completion);
            Ok(())
        }
    }

    #[test]
    fn a_commit_writes_markers_settles_offsets_and_persists_state() {
        let dir = tempfile::tempdir().unwrap();
        let host = Host::open(dir.path());
        let txns = TxnCoordinator::default();
        let (pid, epoch) = txns
            .init_transactional_producer_blocking(&host, "tx", 60_000, None)
            .unwrap();
        assert_eq!((pid, epoch), (100, 0));

        // An unknown partition fails alone and nothing is added.
        let results = txns
            .add_partitions_to_txn_blocking(
                &host,
                "tx",
                pid,
                epoch,
                vec![("data".into(), 0), ("gone".into(), 0)],
            )
            .unwrap();
        assert!(matches!(results[0].1, Err(Error::OperationNotAttempted)));
        assert!(matches!(results[1].1, Err(Error::UnknownPartition { .. })));
        assert!(txns.describe("tx").unwrap().metadata.partitions.is_empty());

        txns.add_partitions_to_txn_blocking(&host, "tx", pid, epoch, vec![("data".into(), 0)])
            .unwrap();
        txns.add_offsets_to_txn_blocking(&host, "tx", pid, epoch, "g")
            .unwrap();
        let offsets = TxnOffsets {
            producer_id: pid,
            group_id: "g",
            member_id: "",
            generation: -1,
            instance_id: None,
            commits: vec![OffsetCommit {
                topic: "data".into(),
                partition: 0,
                offset: 1,
                leader_epoch: -1,
                metadata: None,
            }],
        };
        txns.txn_offset_commit_blocking(&host, "tx", offsets, epoch)
            .unwrap();
        assert_eq!(*lock(&host.written), vec![(pid, "g".to_owned(), 1)]);

        let before = host.data.log_end_offset();
        txns.end_txn_blocking(&host, "tx", pid, epoch, true)
            .unwrap();
        // One commit marker on the data partition, the offsets applied, the id complete.
        assert_eq!(host.data.log_end_offset(), before + 1);
        assert_eq!(*lock(&host.completed), vec![(pid, true)]);
        assert_eq!(
            txns.describe("tx").unwrap().metadata.state,
            TxnState::CompleteCommit
        );

        // The state went to the host's `__transaction_state`: a coordinator replayed from it
        // knows the id as it was left.
        let replayed = TxnCoordinator::open(
            Some(partition(&host.backend, TRANSACTION_STATE_TOPIC)),
            None,
        );
        let replayed = replayed.unwrap();
        let m = replayed.describe("tx").unwrap().metadata;
        assert_eq!((m.producer_id, m.state), (pid, TxnState::CompleteCommit));
    }

    /// Test leases: what the test says is held.
    #[derive(Debug, Default)]
    struct Leases {
        held: Mutex<Vec<ShardLease>>,
        given_up: Mutex<Vec<ShardLease>>,
    }

    impl CoordinatorLeases for Leases {
        fn held(&self) -> Vec<ShardLease> {
            lock(&self.held).clone()
        }
        fn coordinator(&self, _: crate::storage::CoordinatorShard) -> Option<i32> {
            None
        }
        fn give_up(&self, lease: ShardLease) {
            lock(&self.held).retain(|l| *l != lease);
            lock(&self.given_up).push(lease);
        }
    }

    /// The markers of the data partition: (producer id, commit?, coordinator epoch).
    fn data_markers(host: &Host) -> Vec<(i64, bool, i32)> {
        let read = host.data.read_blocking(0, 1 << 20).unwrap();
        strom_record::batches(&read.records, strom_record::ValidationLimits::default())
            .map(|b| b.unwrap())
            .filter(|(h, _)| h.is_control())
            .map(|(_, range)| {
                let m = strom_record::parse_marker(&read.records[range]).unwrap();
                (
                    m.producer_id,
                    m.control_type == ControlType::Commit,
                    m.coordinator_epoch,
                )
            })
            .collect()
    }

    fn transactional_batch(pid: i64, epoch: i16) -> Vec<u8> {
        strom_record::BatchBuilder {
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: 0,
            transactional: true,
            ..strom_record::BatchBuilder::new()
        }
        .build(&[strom_record::Record::new(
            1,
            None,
            Some(bytes::Bytes::from("v")),
        )])
        .unwrap()
    }

    /// Cluster-mode authority over one shared `__transaction_state` (the local store fences
    /// an idempotent producer's older epoch as the cluster store does): a shard changes
    /// hands, the former holder's write is refused, and a transaction the former holder left
    /// in PrepareCommit is completed by the new holder at takeover, its markers carrying the
    /// new lease epoch.
    #[test]
    fn a_shard_changes_hands_the_stale_holder_is_fenced_and_a_prepared_commit_completes() {
        use crate::storage::coordinator_shard;

        let dir = tempfile::tempdir().unwrap();
        let host = Host::open(dir.path());
        let (leases_a, leases_b) = (Arc::new(Leases::default()), Arc::new(Leases::default()));
        let open = |leases: &Arc<Leases>| {
            let authority: Arc<dyn CoordinatorLeases> = Arc::clone(leases) as _;
            TxnCoordinator::open(None, Some(authority)).unwrap()
        };
        let (a, b) = (open(&leases_a), open(&leases_b));
        let shard = coordinator_shard("tx");
        let at = |epoch| ShardLease { shard, epoch };
        let not_coordinator =
            |r: &Result<(i64, i16)>| matches!(r, Err(Error::Txn(TxnError::NotCoordinator)));

        // No lease, or held but not taken over yet: NOT_COORDINATOR.
        assert!(not_coordinator(&a.init_transactional_producer_blocking(
            &host, "tx", 60_000, None
        )));
        lock(&leases_a.held).push(at(1));
        assert!(not_coordinator(&a.init_transactional_producer_blocking(
            &host, "tx", 60_000, None
        )));
        a.sync_leases_blocking(&host).unwrap();
        assert_eq!(a.owned_shards(), vec![at(1)]);
        let (pid, epoch) = a
            .init_transactional_producer_blocking(&host, "tx", 60_000, None)
            .unwrap();
        a.add_partitions_to_txn_blocking(&host, "tx", pid, epoch, vec![("data".into(), 0)])
            .unwrap();
        a.add_offsets_to_txn_blocking(&host, "tx", pid, epoch, "g")
            .unwrap();
        // Another shard's id is not A's.
        let other = (0..)
            .map(|i| format!("other-{i}"))
            .find(|id| coordinator_shard(id) != shard)
            .unwrap();
        assert!(not_coordinator(&a.init_transactional_producer_blocking(
            &host, &other, 60_000, None
        )));
        // A producer's transactional batch lands; the commit cannot finish (the groups'
        // completion is not published), so the id stays PrepareCommit, durably.
        host.data
            .append_blocking(&mut transactional_batch(pid, epoch))
            .unwrap();
        host.fail_publish.store(true, Ordering::Relaxed);
        assert!(a.end_txn_blocking(&host, "tx", pid, epoch, true).is_err());
        assert_eq!(
            a.describe("tx").unwrap().metadata.state,
            TxnState::PrepareCommit
        );
        host.fail_publish.store(false, Ordering::Relaxed);

        // B takes the shard at epoch 2 while A still believes it holds epoch 1: B fences,
        // reads the prepared commit and completes it (markers at coordinator epoch 2).
        lock(&leases_b.held).push(at(2));
        b.sync_leases_blocking(&host).unwrap();
        let m = b.describe("tx").unwrap().metadata;
        assert_eq!((m.producer_id, m.state), (pid, TxnState::CompleteCommit));
        assert!(
            data_markers(&host).contains(&(pid, true, 2)),
            "{:?}",
            data_markers(&host)
        );
        let published = lock(&host.published).clone();
        assert_eq!(published.len(), 1);
        assert_eq!(
            (
                published[0].producer_id,
                published[0].commit,
                published[0].coordinator_epoch
            ),
            (pid, true, 2)
        );
        assert_eq!(published[0].groups, vec!["g".to_owned()]);

        // A's tick retries its prepared commit: its state write is refused by the store (B's
        // fence is newer) and A gives the shard up.
        assert_eq!(a.tick_transactions_blocking(&host), 0);
        assert_eq!(*lock(&leases_a.given_up), vec![at(1)]);
        assert!(!a.acts_for("tx"));

        // B serves the id: the producer re-initialises and gets the next epoch.
        let (pid_b, epoch_b) = b
            .init_transactional_producer_blocking(&host, "tx", 60_000, None)
            .unwrap();
        assert_eq!((pid_b, epoch_b), (pid, epoch + 1));

        // B loses the lease: its ids are forgotten and refused; A takes it back at epoch 3 and
        // sees B's epoch, not its own refused write.
        lock(&leases_b.held).clear();
        b.sync_leases_blocking(&host).unwrap();
        assert!(b.describe("tx").is_none());
        assert!(!b.acts_for("tx"));
        lock(&leases_a.held).push(at(3));
        a.sync_leases_blocking(&host).unwrap();
        let m = a.describe("tx").unwrap().metadata;
        assert_eq!((m.producer_id, m.producer_epoch), (pid, epoch + 1));

        // The fences are invisible to a plain replay of the topic.
        let replayed = TxnCoordinator::open(
            Some(partition(&host.backend, TRANSACTION_STATE_TOPIC)),
            None,
        )
        .unwrap();
        assert_eq!(replayed.list().len(), 1);
    }

    /// In cluster mode an ongoing transaction found at takeover is kept, and aborted by the
    /// new holder's tick once it outlives its timeout (with an epoch bump).
    #[test]
    fn an_ongoing_transaction_is_kept_at_takeover_and_aborted_on_timeout_by_the_holder() {
        use crate::storage::coordinator_shard;

        let dir = tempfile::tempdir().unwrap();
        let host = Host::open(dir.path());
        let (leases_a, leases_b) = (Arc::new(Leases::default()), Arc::new(Leases::default()));
        let open = |leases: &Arc<Leases>| {
            let authority: Arc<dyn CoordinatorLeases> = Arc::clone(leases) as _;
            TxnCoordinator::open(None, Some(authority)).unwrap()
        };
        let (a, b) = (open(&leases_a), open(&leases_b));
        let shard = coordinator_shard("tx");
        lock(&leases_a.held).push(ShardLease { shard, epoch: 1 });
        a.sync_leases_blocking(&host).unwrap();
        let (pid, epoch) = a
            .init_transactional_producer_blocking(&host, "tx", 1_000, None)
            .unwrap();
        a.add_partitions_to_txn_blocking(&host, "tx", pid, epoch, vec![("data".into(), 0)])
            .unwrap();
        // A stalls (lease lapses without it ticking); B takes over.
        lock(&leases_a.held).clear();
        lock(&leases_b.held).push(ShardLease { shard, epoch: 2 });
        b.sync_leases_blocking(&host).unwrap();
        assert_eq!(b.describe("tx").unwrap().metadata.state, TxnState::Ongoing);
        assert_eq!(b.tick_transactions_blocking(&host), 0, "not timed out yet");
        host.now.store(10_000, Ordering::Relaxed);
        assert_eq!(a.tick_transactions_blocking(&host), 0, "A holds no lease");
        assert_eq!(b.tick_transactions_blocking(&host), 1);
        let m = b.describe("tx").unwrap().metadata;
        assert_eq!(
            (m.state, m.producer_epoch),
            (TxnState::CompleteAbort, epoch + 1)
        );
        assert!(data_markers(&host).contains(&(pid, false, 2)));
    }
}
