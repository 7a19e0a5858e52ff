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

    /// Events appended by *other* brokers sharing this store since the last call (or since
    /// the store was opened), in the store's order. The broker applies them to its registry
    /// idempotently, so a backend may also return this broker's own events. The local store
    /// is not shared: always empty.
    fn poll(&mut self) -> Result<Vec<MetadataEvent>> {
        Ok(Vec::new())
    }

    /// A producer id from a cluster-wide allocator, or `None` when the broker reserves id
    /// blocks itself through [`MetadataEvent::ProducerIdsReserved`] events (the local store).
    fn allocate_producer_id(&mut self) -> Option<Result<i64>> {
        None
    }
}

/// A live broker of a cluster, as Metadata and DescribeCluster list it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerEndpoint {
    /// Its node id.
    pub node_id: i32,
    /// Host its Kafka listener is advertised as.
    pub host: String,
    /// Port of its Kafka listener.
    pub port: u16,
}

/// Which brokers share the backend (cluster mode): what Metadata lists and how partition
/// leadership is spread. A backend without it (the local one) is a single broker that leads
/// every partition.
///
/// # Contract
/// Calls must not block: they answer from a view the backend refreshes in the background
/// (the cluster backend: the broker registry in PostgreSQL, read every few seconds).
pub trait ClusterMembers: Send + Sync + Debug {
    /// The live brokers, sorted by node id, this one included. Empty when not known yet.
    fn live_brokers(&self) -> Vec<BrokerEndpoint>;

    /// The live brokers with the address of their Kafka listener named `listener` (Kafka
    /// answers each client with the endpoints of the listener it came in on); a broker that
    /// registered no listener of that name is listed with its default address. The default
    /// knows no listener names: [`ClusterMembers::live_brokers`].
    fn live_brokers_on(&self, listener: &str) -> Vec<BrokerEndpoint> {
        let _ = listener;
        self.live_brokers()
    }

    /// Whether this broker's own registration is known to be current. A broker that lost it
    /// (cut off from the shared store for a lease TTL) is no longer live for the others, so
    /// it leaves itself out of Metadata and partition leadership, sending clients to the
    /// brokers that can commit. The default: always registered.
    fn self_registered(&self) -> bool {
        true
    }
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

    /// How often the broker asks the metadata store for other brokers' events
    /// ([`MetadataStore::poll`]); `None` (the default) for a store no other broker writes.
    fn metadata_poll_interval(&self) -> Option<std::time::Duration> {
        None
    }

    /// `Some(StorageError::Unsupported)` for a broker feature this backend cannot serve yet
    /// (`"transactions"`), which the broker then refuses up front; `None` (the default) when
    /// supported.
    fn unsupported(&self, feature: &'static str) -> Option<crate::storage::StorageError> {
        let _ = feature;
        None
    }

    /// The brokers sharing this backend, for Metadata; `None` for a single broker.
    fn members(&self) -> Option<Arc<dyn ClusterMembers>> {
        None
    }

    /// Who may coordinate which consumer groups (cluster mode); `None` for a single broker,
    /// which coordinates every group.
    fn coordinator_leases(&self) -> Option<Arc<dyn CoordinatorLeases>> {
        None
    }

    /// Who may coordinate which transactional ids (cluster mode): shards of
    /// [`coordinator_shard`] of the transactional id, under leases of their own (independent
    /// of the group shards' epochs); `None` for a single broker, which coordinates every id.
    fn txn_coordinator_leases(&self) -> Option<Arc<dyn CoordinatorLeases>> {
        None
    }
}

/// How many coordinator shards group ids hash to ([`coordinator_shard`]); the same on every
/// broker and release, since brokers must agree on which lease covers a group.
pub const COORDINATOR_SHARDS: u32 = 16;

/// One of the [`COORDINATOR_SHARDS`] shards of consumer groups, each covered by one lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CoordinatorShard(pub u32);

/// The shard a group id belongs to: FNV-1a of the id modulo [`COORDINATOR_SHARDS`] (stable
/// across processes, unlike the standard hasher).
pub fn coordinator_shard(group_id: &str) -> CoordinatorShard {
    CoordinatorShard(
        u32::try_from(fnv1a(group_id.as_bytes()) % u64::from(COORDINATOR_SHARDS)).unwrap_or(0),
    )
}

fn fnv1a(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .fold(OFFSET, |hash, b| (hash ^ u64::from(*b)).wrapping_mul(PRIME))
}

/// A coordinator shard's lease as this broker holds it: the fencing epoch grows each time
/// the lease changes hands (or lapses and is taken again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardLease {
    /// The shard.
    pub shard: CoordinatorShard,
    /// The lease's fencing epoch.
    pub epoch: i64,
}

/// Coordinator authority in cluster mode: each [`CoordinatorShard`] is a lease that at most
/// one broker holds; only the holder acts for the shard's groups, and it fences its writes to
/// `__consumer_offsets` with the lease epoch (the group coordinator writes them as an
/// idempotent producer whose epoch is the lease epoch, so the store refuses a stale holder's
/// write in its commit).
///
/// # Contract
/// Calls must not block. [`held`](Self::held) lists only leases whose expiry, measured
/// conservatively on this broker's clock from before the acquire or renew was sent, is still
/// ahead; a lease that lapsed is never listed again at the same epoch.
pub trait CoordinatorLeases: Send + Sync + Debug {
    /// The shard leases this broker holds now.
    fn held(&self) -> Vec<ShardLease>;

    /// The node id of the broker that coordinates `shard`: the live holder of a valid lease,
    /// or else the live broker that will take it. `None` when unknown.
    fn coordinator(&self, shard: CoordinatorShard) -> Option<i32>;

    /// This broker can no longer act under `lease` (a write under it failed, so its
    /// idempotent sequence is broken or it was fenced): release it so that it is taken again
    /// at a new epoch.
    fn give_up(&self, lease: ShardLease);
}

/// The broker that leads `partition` of `topic` among `live` (sorted by node id): a stable
/// hash (FNV-1a, the same in every process and release) of the topic name and partition
/// index, modulo the number of live brokers. Every broker computes the same leader from the
/// same live list, so a producer keeps each partition on one connection and its order is
/// kept; partitions of one topic spread over the brokers. `None` when `live` is empty.
pub fn partition_leader<'a>(
    live: &'a [BrokerEndpoint],
    topic: &str,
    partition: PartitionIndex,
) -> Option<&'a BrokerEndpoint> {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    for byte in topic
        .as_bytes()
        .iter()
        .chain(&[0u8])
        .chain(&partition.0.to_le_bytes())
    {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(PRIME);
    }
    let n = u64::try_from(live.len()).ok().filter(|n| *n > 0)?;
    live.get(usize::try_from(hash % n).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brokers(ids: &[i32]) -> Vec<BrokerEndpoint> {
        ids.iter()
            .map(|&node_id| BrokerEndpoint {
                node_id,
                host: "h".into(),
                port: 1,
            })
            .collect()
    }

    #[test]
    fn leaders_are_stable_and_spread() {
        let live = brokers(&[0, 1, 2]);
        let leader = |p| partition_leader(&live, "orders", PartitionIndex(p)).map(|b| b.node_id);
        // The same answer every time, in every process (no random hasher state).
        assert_eq!(leader(0), leader(0));
        let counts = (0..300).fold([0usize; 3], |mut c, p| {
            if let Some(id) = leader(p) {
                c[usize::try_from(id).unwrap()] += 1;
            }
            c
        });
        assert!(counts.iter().all(|&c| c > 60), "{counts:?}");
        assert!(partition_leader(&[], "t", PartitionIndex(0)).is_none());
        // One live broker leads everything.
        let one = brokers(&[7]);
        assert_eq!(
            partition_leader(&one, "t", PartitionIndex(5)).map(|b| b.node_id),
            Some(7)
        );
    }
}
