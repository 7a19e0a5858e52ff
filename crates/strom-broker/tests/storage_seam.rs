//! The storage seam (issue 17): a broker opened on a backend other than the built-in local one
//! works through the `StorageBackend` / `PartitionStore` / `MetadataStore` traits alone.
//!
//! The backend here wraps the local one and hides that it is local (`as_local` is `None`), so
//! the broker must take its backend-neutral paths (plain replay of internal topics, no log
//! cleaner) and every call must cross the seam, which the wrapper counts.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use strom_broker::group::OffsetCommit;
use strom_broker::metadata::MetadataEvent;
use strom_broker::storage::local::LocalBackend;
use strom_broker::storage::{
    AbortedTxn, LogConfig, MetadataStore, Offset, OngoingTxn, PartitionIndex, PartitionStore,
    PendingWrite, ProducerInfo, StorageBackend, StorageResult, StoreRead, TopicPartition,
};
use strom_broker::{
    AppendInfo, Broker, BrokerConfig, CreateTopic, Error, StorageError, SystemClock,
};
use strom_record::{BatchBuilder, Record};
use tokio::sync::watch;

#[derive(Debug, Default)]
struct Counts {
    partitions_opened: AtomicUsize,
    appends: AtomicUsize,
    reads: AtomicUsize,
    metadata_appends: AtomicUsize,
    partitions_deleted: AtomicUsize,
}

/// A backend that is not the local one as far as the broker can tell.
#[derive(Debug)]
struct Wrapped {
    inner: LocalBackend,
    counts: Arc<Counts>,
}

#[derive(Debug)]
struct WrappedStore {
    inner: Arc<dyn PartitionStore>,
    counts: Arc<Counts>,
}

#[derive(Debug)]
struct WrappedMeta {
    inner: Box<dyn MetadataStore>,
    counts: Arc<Counts>,
}

impl MetadataStore for WrappedMeta {
    fn append(&mut self, event: &MetadataEvent) -> strom_broker::Result<()> {
        self.counts.metadata_appends.fetch_add(1, Ordering::Relaxed);
        self.inner.append(event)
    }
}

impl StorageBackend for Wrapped {
    fn open_metadata(&self) -> strom_broker::Result<(Box<dyn MetadataStore>, Vec<MetadataEvent>)> {
        let (inner, events) = self.inner.open_metadata()?;
        let meta = WrappedMeta {
            inner,
            counts: Arc::clone(&self.counts),
        };
        Ok((Box::new(meta), events))
    }

    fn open_partition(
        &self,
        partition: TopicPartition<'_>,
        config: LogConfig,
    ) -> strom_broker::Result<Arc<dyn PartitionStore>> {
        self.counts
            .partitions_opened
            .fetch_add(1, Ordering::Relaxed);
        Ok(Arc::new(WrappedStore {
            inner: self.inner.open_partition(partition, config)?,
            counts: Arc::clone(&self.counts),
        }))
    }

    fn delete_partition(&self, store: &dyn PartitionStore) -> strom_broker::Result<()> {
        self.counts
            .partitions_deleted
            .fetch_add(1, Ordering::Relaxed);
        self.inner.delete_partition(store)
    }

    fn remove_orphans(&self, is_live: &dyn Fn(&str, PartitionIndex) -> bool) {
        self.inner.remove_orphans(is_live);
    }
}

impl PartitionStore for WrappedStore {
    fn append_deferred(&self, batches: &mut [u8], epoch: i32) -> StorageResult<PendingWrite> {
        self.counts.appends.fetch_add(1, Ordering::Relaxed);
        self.inner.append_deferred(batches, epoch)
    }
    fn await_durable(&self, pending: PendingWrite) -> StorageResult<AppendInfo> {
        self.inner.await_durable(pending)
    }
    fn read(&self, offset: Offset, max_bytes: usize) -> StorageResult<StoreRead> {
        self.counts.reads.fetch_add(1, Ordering::Relaxed);
        self.inner.read(offset, max_bytes)
    }
    fn read_committed(&self, offset: Offset, max_bytes: usize) -> StorageResult<StoreRead> {
        self.counts.reads.fetch_add(1, Ordering::Relaxed);
        self.inner.read_committed(offset, max_bytes)
    }
    fn log_start_offset(&self) -> Offset {
        self.inner.log_start_offset()
    }
    fn log_end_offset(&self) -> Offset {
        self.inner.log_end_offset()
    }
    fn high_watermark(&self) -> Offset {
        self.inner.high_watermark()
    }
    fn last_stable_offset(&self) -> Offset {
        self.inner.last_stable_offset()
    }
    fn offset_for_timestamp(&self, ts: i64) -> StorageResult<Option<(Offset, i64)>> {
        self.inner.offset_for_timestamp(ts)
    }
    fn max_timestamp(&self) -> StorageResult<Option<(Offset, i64)>> {
        self.inner.max_timestamp()
    }
    fn producers(&self) -> Vec<ProducerInfo> {
        self.inner.producers()
    }
    fn aborted_transactions(&self, from: Offset, to: Offset) -> StorageResult<Vec<AbortedTxn>> {
        self.inner.aborted_transactions(from, to)
    }
    fn ongoing_transactions(&self) -> Vec<OngoingTxn> {
        self.inner.ongoing_transactions()
    }
    fn delete_records(&self, before: Offset) -> StorageResult<Offset> {
        self.inner.delete_records(before)
    }
    fn apply_retention(&self) -> StorageResult<usize> {
        self.inner.apply_retention()
    }
    fn size_bytes(&self) -> u64 {
        self.inner.size_bytes()
    }
    fn flush(&self) -> StorageResult<()> {
        self.inner.flush()
    }
    fn close(&self) -> StorageResult<()> {
        self.inner.close()
    }
    fn delete(&self) -> StorageResult<()> {
        self.inner.delete()
    }
    fn subscribe(&self) -> watch::Receiver<i64> {
        self.inner.subscribe()
    }
    fn config(&self) -> LogConfig {
        self.inner.config()
    }
    fn set_config(&self, config: LogConfig) {
        self.inner.set_config(config);
    }
}

fn open(dir: &std::path::Path, counts: &Arc<Counts>) -> Broker {
    let clock = Arc::new(SystemClock);
    let backend = Wrapped {
        inner: LocalBackend::open(dir, clock.clone()).unwrap(),
        counts: Arc::clone(counts),
    };
    Broker::open_with_backend(BrokerConfig::new(dir), clock, Arc::new(backend)).unwrap()
}

fn batch(values: &[&str]) -> Vec<u8> {
    let records: Vec<Record> = values
        .iter()
        .map(|v| Record::new(1_000, None, Some(Bytes::copy_from_slice(v.as_bytes()))))
        .collect();
    BatchBuilder::new().build(&records).unwrap()
}

#[test]
fn a_broker_on_another_backend_produces_reads_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let counts = Arc::new(Counts::default());
    {
        let broker = open(dir.path(), &counts);
        broker
            .create_topic_blocking(CreateTopic {
                name: "orders".into(),
                partitions: Some(2),
                ..CreateTopic::default()
            })
            .unwrap();
        assert_eq!(counts.partitions_opened.load(Ordering::Relaxed), 2);
        assert!(counts.metadata_appends.load(Ordering::Relaxed) >= 1);
        let p = broker.partition("orders", 1).unwrap();
        assert!(p.store().as_local().is_none());
        assert_eq!(p.dir(), None);
        let info = p.append_blocking(&mut batch(&["a", "b"])).unwrap();
        assert_eq!((info.base_offset, info.last_offset), (0, 1));
        let pending = p.append_deferred_blocking(&mut batch(&["c"])).unwrap();
        assert_eq!(pending.info().base_offset, 2);
        let info = p.await_durable_blocking(pending).unwrap();
        assert_eq!(info.last_offset, 2);
        assert_eq!(p.high_watermark(), 3);
        let read = p.read_blocking(0, 1 << 20).unwrap();
        assert!(!read.records.is_empty());
        assert_eq!(read.high_watermark, 3);
        // Errors come back as the seam's kinds.
        assert!(matches!(
            p.read_blocking(9, 1 << 20),
            Err(Error::Storage(StorageError::OffsetOutOfRange {
                requested: 9,
                start: 0,
                end: 3
            }))
        ));
        // A coordinator's state goes to an internal topic on the same backend.
        broker
            .commit_offsets_blocking(
                "g",
                "",
                -1,
                None,
                vec![OffsetCommit {
                    topic: "orders".into(),
                    partition: 1,
                    offset: 2,
                    leader_epoch: -1,
                    metadata: None,
                }],
            )
            .unwrap()
            .into_iter()
            .for_each(|r| r.unwrap());
        broker.shutdown_blocking().unwrap();
    }
    assert!(counts.appends.load(Ordering::Relaxed) >= 3);
    assert!(counts.reads.load(Ordering::Relaxed) >= 1);

    // Reopened on the same backend: topics from the metadata store, data from the stores, and
    // the committed offset from the internal topic's (plain) replay.
    let broker = open(dir.path(), &counts);
    let p = broker.partition("orders", 1).unwrap();
    assert_eq!(p.high_watermark(), 3);
    let offsets = broker
        .groups()
        .fetch_offsets("g", Some(&[("orders".to_owned(), 1)]));
    assert_eq!(offsets.len(), 1);
    assert_eq!(offsets[0].1.as_ref().map(|c| c.offset), Some(2));

    // Deleting the topic deletes its partitions through the backend.
    broker.delete_topic_blocking("orders").unwrap();
    assert_eq!(counts.partitions_deleted.load(Ordering::Relaxed), 2);
    assert!(!dir.path().join("orders-0").exists());
    assert!(!dir.path().join("orders-1").exists());
    broker.shutdown_blocking().unwrap();
}
