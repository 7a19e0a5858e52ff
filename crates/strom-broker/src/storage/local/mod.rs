//! The local (single-node) storage backend: `strom-log` segment files per partition, the
//! metadata event log and the internal topics, all under the broker's data directory.
//!
//! Besides the [`crate::storage::PartitionStore`] contract, a local partition has work of its
//! own that no other backend shares: the log cleaner compacts its segment files
//! ([`LocalPartitionStore::clean`]), a poisoning I/O failure is healed by reopening the log in
//! the background (`healing.rs`), and reads that meet damaged segment data take the
//! damaged range out of service and go on (salvage).

mod backend;
mod error;
mod partition;

pub use backend::LocalBackend;
pub use partition::LocalPartitionStore;

/// Partition 0 of `topic` in `backend`, with default log settings: the partitions the
/// coordinators' test hosts (hosts that are not a broker) serve.
#[cfg(test)]
pub(crate) fn open_test_partition(
    backend: &LocalBackend,
    topic: &str,
) -> std::sync::Arc<crate::partition::Partition> {
    use crate::storage::{PartitionIndex, StorageBackend, TopicPartition};
    let store = backend
        .open_partition(
            TopicPartition {
                topic,
                index: PartitionIndex(0),
            },
            strom_log::LogConfig::default(),
        )
        .unwrap();
    std::sync::Arc::new(crate::partition::Partition::new(topic, 0, store))
}
