//! [`StorageBackend`] (the factory the broker opens its storage through) and
//! [`MetadataStore`] (where cluster metadata is persisted).

use std::fmt::Debug;
use std::sync::Arc;

use crate::error::Result;
use crate::metadata::MetadataEvent;
use crate::storage::{LogConfig, PartitionIndex, PartitionStore, TopicPartition};

/// Where the broker's metadata events are persisted: topics (created, grown, deleted), topic
/// and dynamic broker configs, Kinesis stream metadata, producer-id reservations and the
/// cluster id — the [`MetadataEvent`]s.
///
/// Consumer-group offsets and transaction state are not here: the coordinators keep them in
/// the internal topics `__consumer_offsets` and `__transaction_state`, which are partitions
/// like any other ([`PartitionStore`]), so they follow the backend.
///
/// # Contract
/// [`append`](Self::append) returns only once the event is durable, and the events returned
/// when the store was opened ([`StorageBackend::open_metadata`]) recreate the state every
/// acknowledged append left (the local backend snapshots, so they are the live state rather
/// than the history). The broker serialises appends (one admin lock); a backend shared by
/// several brokers orders them itself.
pub trait MetadataStore: Send + Debug {
    /// Appends one event durably.
    fn append(&mut self, event: &MetadataEvent) -> Result<()>;
}

/// What a broker opens its storage through: the metadata store and one [`PartitionStore`] per
/// partition. [`crate::Broker::open_with_backend`] takes one; the single-node default is
/// [`crate::storage::local::LocalBackend`], the cluster backend lives in `strom-cluster`.
pub trait StorageBackend: Send + Sync + Debug {
    /// Opens the metadata store, returning it with the events that recreate the live state.
    fn open_metadata(&self) -> Result<(Box<dyn MetadataStore>, Vec<MetadataEvent>)>;

    /// Opens a partition's store, creating it if it does not exist (a new topic or partition),
    /// recovering it if it does.
    fn open_partition(
        &self,
        partition: TopicPartition<'_>,
        config: LogConfig,
    ) -> Result<Arc<dyn PartitionStore>>;

    /// Deletes a partition's store and its data (topic deletion, or undoing a failed create).
    fn delete_partition(&self, store: &dyn PartitionStore) -> Result<()> {
        Ok(store.delete()?)
    }

    /// The local backend, for its backend-specific state (the commit window); `None` for
    /// every other backend.
    fn as_local(&self) -> Option<&crate::storage::local::LocalBackend> {
        None
    }

    /// Removes stored partitions that `is_live` says belong to no topic (left by a crash in
    /// the middle of a deletion). Called once when the broker opens.
    fn remove_orphans(&self, is_live: &dyn Fn(&str, PartitionIndex) -> bool) {
        let _ = is_live;
    }
}
