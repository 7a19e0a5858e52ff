//! The storage seam: what the broker core needs from storage, whatever the backend.
//!
//! ```text
//!   Partition (broker core) ──▶ Arc<dyn PartitionStore> ─┬─ local::LocalPartitionStore (strom-log segments)
//!   Broker (admin lock)     ──▶ Box<dyn MetadataStore>   │   local::LocalMetadataStore → metadata/events.log
//!   Broker::open_with_backend(Arc<dyn StorageBackend>) ──┴─ strom-cluster (object store + PostgreSQL)
//! ```
//!
//! The single-node backend ([`local`]) keeps each partition in `strom-log` segment files under
//! the data directory and the metadata in its event log; the cluster backend (`strom-cluster`)
//! keeps record data in object storage and ordering and metadata in PostgreSQL. The front ends
//! and the coordinators see only the broker's [`crate::Partition`] and the types of this
//! module: [`StorageError`] for failures, and the aborted-transaction types of a
//! `read_committed` read.

mod backend;
#[cfg(any(test, feature = "conformance"))]
#[allow(
    clippy::expect_used,
    clippy::panic,
    reason = "a test suite: it panics at the first broken clause"
)]
pub mod conformance;
mod error;
pub mod local;
mod partition;
mod types;

pub use backend::{
    BrokerEndpoint, COORDINATOR_SHARDS, ClusterMembers, CoordinatorLeases, CoordinatorShard,
    MetadataStore, ShardLease, StorageBackend, coordinator_shard, partition_leader,
};
pub use error::StorageError;
pub use partition::{PartitionStore, StorageResult, StoreRead};
pub use types::{Offset, PartitionIndex, PendingWrite, ProducerId, TopicPartition};

/// The aborted transactions of a `read_committed` read and the filter a reader applies to skip
/// their batches, a partition's open transactions and its producers (plain data types, shared
/// by every backend), and a partition's storage settings.
pub use strom_log::{
    AbortedFilter, AbortedTxn, LogConfig, OngoingTxn, ProducerInfo, TimestampType,
};

/// Validates a produced payload as every backend must before accepting it (the local log's
/// own check, shared so that backends cannot drift apart): whole batches within
/// `max.message.bytes` with valid CRCs and records, no keyless record on a compacted topic,
/// timestamps within KIP-937's window around `now`. Returns each batch's header and range.
pub fn validate_payload(
    buf: &[u8],
    config: &LogConfig,
    now: i64,
) -> StorageResult<Vec<(strom_record::BatchHeader, std::ops::Range<usize>)>> {
    Ok(strom_log::validate_payload(buf, config, now)?)
}
