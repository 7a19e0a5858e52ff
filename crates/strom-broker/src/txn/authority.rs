//! Transaction-coordinator authority in cluster mode: which transactional ids this broker may
//! act for, how it fences its writes to `__transaction_state`, and how it takes a shard of ids
//! over. The same pattern as the group coordinator's (`group::authority`), under leases of
//! their own (`txn-coordinator/NN`).
//!
//! Transactional ids hash to [`COORDINATOR_SHARDS`] shards ([`coordinator_shard`]); the
//! backend's transaction [`CoordinatorLeases`] say which shard leases this broker holds. A
//! request for an id of a shard not taken over at the lease's current epoch is refused with
//! [`TxnError::NotCoordinator`] (Kafka's NOT_COORDINATOR), so the client finds the coordinator
//! again.
//!
//! **Fencing.** Every write of a shard's ids to `__transaction_state` is a batch of the
//! idempotent producer [`TXN_COORDINATOR_PRODUCER_BASE`] `+ shard` at producer epoch = lease
//! epoch, with consecutive sequences; the store refuses an older epoch in its commit. Taking a
//! shard over starts with a fence (sequence 0 of the new epoch, a tombstone of a key replay
//! skips), durable before the state is read, so every write of a former holder is either
//! before the fence (and read) or refused. Each id's in-memory entry remembers the lease it
//! was loaded (or created) under, and a write is made only under that same lease: a request
//! that began before its shard changed hands cannot write under the new epoch.
//!
//! **Takeover.** After the fence, `__transaction_state` is replayed and the shard's ids replace
//! what this broker had for them. Then, as Kafka's coordinator does when it loads a partition
//! of its state topic: an id found in `PrepareCommit`/`PrepareAbort` has its markers written
//! and is completed at once; an `Ongoing` transaction is kept (its producer may still end it
//! here) and aborted by this holder's tick once it outlives its timeout. Only a holder ticks
//! its ids, so a timeout is aborted by the lease holder alone.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use strom_record::Record;

use super::{TxnCoordinator, TxnEntry, TxnError, TxnHost, lock, state};
use crate::error::{Error, Result};
use crate::group::authority::{build, fenced_builder_for};
use crate::partition::Partition;
use crate::storage::{
    COORDINATOR_SHARDS, CoordinatorLeases, CoordinatorShard, ShardLease, coordinator_shard,
};

/// Producer id under which transaction-coordinator shard `n` writes `__transaction_state`
/// (plus `n`): far above any id the cluster's producer-id sequence hands out, and apart from
/// the group coordinator's (`group::authority::COORDINATOR_PRODUCER_BASE`).
pub const TXN_COORDINATOR_PRODUCER_BASE: i64 = 0x7fff_ff00_0001_0000;

// A shard taken over is the same thing for both coordinators: its lease, whether it is
// still valid, and the next sequence of its writer (defined with the group coordinator's).
pub(super) use crate::group::authority::{OwnedShard, OwnedShards};
use crate::group::authority::{ShardWriter, current_shard};

fn not_coordinator() -> Error {
    Error::Txn(TxnError::NotCoordinator)
}

impl TxnCoordinator {
    /// The taken-over shard, if its lease is still held at the same epoch.
    fn current(
        &self,
        authority: &dyn CoordinatorLeases,
        shard: CoordinatorShard,
    ) -> Option<Arc<OwnedShard>> {
        current_shard(&self.owned, authority, shard)
    }

    /// The lease this coordinator acts for `transactional_id` under: `Ok(None)` on a single
    /// broker (it acts for every id); in cluster mode the lease of the id's shard if taken
    /// over at the epoch still held, else [`TxnError::NotCoordinator`].
    pub(super) fn acting_lease(&self, transactional_id: &str) -> Result<Option<ShardLease>> {
        match &self.authority {
            None => Ok(None),
            Some(authority) => self
                .current(authority.as_ref(), coordinator_shard(transactional_id))
                .map(|o| Some(o.lease))
                .ok_or_else(not_coordinator),
        }
    }

    /// Whether this coordinator acts for `transactional_id` now (see [`Self::acting_lease`]).
    pub fn acts_for(&self, transactional_id: &str) -> bool {
        self.acting_lease(transactional_id).is_ok()
    }

    /// Whether `lease` (an entry's) is still the one this coordinator acts under.
    pub(super) fn lease_is_current(&self, lease: Option<ShardLease>) -> bool {
        match (&self.authority, lease) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(authority), Some(l)) => self
                .current(authority.as_ref(), l.shard)
                .is_some_and(|o| o.lease == l),
        }
    }

    /// The coordinator epoch markers carry: the lease epoch in cluster mode (so a marker of
    /// a former holder is recognisably older), 0 on a single broker.
    pub(super) fn coordinator_epoch(lease: Option<ShardLease>) -> i32 {
        lease.map_or(0, |l| i32::try_from(l.epoch).unwrap_or(i32::MAX))
    }

    /// Appends one batch to `__transaction_state`: plainly on a single broker; in cluster
    /// mode as the shard's producer at the lease epoch, only while `lease` is still the one
    /// acted under (see the module docs). BLOCKING.
    pub(super) fn append_state_blocking(
        &self,
        partition: &Partition,
        lease: Option<ShardLease>,
        records: &[(bytes::Bytes, Option<bytes::Bytes>)],
        now: i64,
    ) -> Result<()> {
        let Some(authority) = &self.authority else {
            let mut batch = crate::internal::batch_of(records, now)?;
            partition.append_blocking(&mut batch)?;
            return Ok(());
        };
        let lease = lease.ok_or_else(not_coordinator)?;
        let owned = self
            .current(authority.as_ref(), lease.shard)
            .filter(|o| o.lease == lease)
            .ok_or_else(not_coordinator)?;
        let records: Vec<Record> = records
            .iter()
            .map(|(k, v)| Record::new(now, Some(k.clone()), v.clone()))
            .collect();
        owned
            .write_fenced(
                &ShardWriter {
                    producer_base: TXN_COORDINATOR_PRODUCER_BASE,
                    shards: &self.owned,
                    authority: authority.as_ref(),
                    not_coordinator,
                    what: "transaction-state",
                },
                partition,
                &records,
            )
            .map(|_| ())
    }

    /// Cluster mode: brings the taken-over shards in line with the leases held. Ids of shards
    /// whose lease is gone are forgotten (they answer NOT_COORDINATOR); newly held shards are
    /// fenced, replayed and their prepared transactions completed (see the module docs). A
    /// no-op on a single broker. BLOCKING.
    pub(crate) fn sync_leases_blocking(&self, host: &dyn TxnHost) -> Result<()> {
        let Some(authority) = &self.authority else {
            return Ok(());
        };
        let held = authority.held();
        let new: Vec<ShardLease> = {
            let mut owned = lock(&self.owned);
            owned.retain(|_, o| o.is_valid() && held.contains(&o.lease));
            let kept: HashMap<CoordinatorShard, ShardLease> =
                owned.iter().map(|(s, o)| (*s, o.lease)).collect();
            let new = held
                .iter()
                .filter(|l| l.shard.0 < COORDINATOR_SHARDS && !owned.contains_key(&l.shard))
                .copied()
                .collect();
            drop(owned);
            // Ids of shards no longer acted for (or acted for at another epoch) are dropped.
            lock(&self.ids).retain(|id, e| {
                kept.get(&coordinator_shard(id))
                    .is_some_and(|l| e.lease == Some(*l))
            });
            new
        };
        if new.is_empty() {
            return Ok(());
        }
        let partition = self.state_partition(host)?;
        let now = host.now_ms();
        let mut fenced = Vec::new();
        for lease in new {
            let fence = Record::new(now, Some(state::encode_fence_key(lease.shard.0)), None);
            let result = fenced_builder_for(TXN_COORDINATOR_PRODUCER_BASE, lease, 0)
                .ok_or_else(not_coordinator)
                .and_then(|b| build(&b, &[fence]))
                .and_then(|mut batch| partition.append_blocking(&mut batch));
            match result {
                Ok(_) => fenced.push(lease),
                Err(error) => {
                    tracing::warn!(shard = lease.shard.0, epoch = lease.epoch, %error,
                        "fencing a transaction-coordinator shard failed; giving it up");
                    authority.give_up(lease);
                }
            }
        }
        if fenced.is_empty() {
            return Ok(());
        }
        let leases: HashMap<CoordinatorShard, ShardLease> =
            fenced.iter().map(|l| (l.shard, *l)).collect();
        let mut replayed: HashMap<String, super::TxnMetadata> = HashMap::new();
        let report =
            crate::internal::replay_from(&partition, partition.log_start_offset(), |key, value| {
                let Some(id) = key.and_then(state::decode_key) else {
                    return;
                };
                if !leases.contains_key(&coordinator_shard(&id)) {
                    return;
                }
                match value.and_then(state::decode_value) {
                    Some(m) => {
                        replayed.insert(id, m);
                    }
                    None => {
                        replayed.remove(&id);
                    }
                }
            });
        if let Err(error) = report {
            for lease in &fenced {
                authority.give_up(*lease);
            }
            return Err(error);
        }
        let count = replayed.len();
        let mut prepared = Vec::new();
        {
            let mut ids = lock(&self.ids);
            ids.retain(|id, _| !leases.contains_key(&coordinator_shard(id)));
            for (id, m) in replayed {
                let lease = leases.get(&coordinator_shard(&id)).copied();
                let is_prepared = m.state.is_prepare();
                let entry = TxnEntry::new(m, lease);
                if is_prepared {
                    prepared.push((id.clone(), Arc::clone(&entry)));
                }
                ids.insert(id, entry);
            }
            let mut owned = lock(&self.owned);
            for lease in &fenced {
                owned.insert(lease.shard, OwnedShard::fenced(*lease));
            }
        }
        self.takeovers
            .fetch_add(fenced.len() as u64, Ordering::Relaxed);
        let shards: BTreeSet<u32> = leases.keys().map(|s| s.0).collect();
        tracing::info!(
            ?shards,
            transactional_ids = count,
            prepared = prepared.len(),
            "took transaction-coordinator shards over"
        );
        // As Kafka's coordinator at load: a prepared transaction's markers are written now.
        for (id, entry) in prepared {
            let mut m = entry.hold();
            if !m.state.is_prepare() {
                continue;
            }
            if let Err(error) = self.complete_transaction_locked(host, &id, &mut m) {
                tracing::warn!(transactional_id = %id, %error,
                    "completing a prepared transaction at takeover failed; the tick retries");
            }
        }
        Ok(())
    }

    /// The transaction-coordinator shard leases this coordinator has taken over (status
    /// displays and metrics).
    pub fn owned_shards(&self) -> Vec<ShardLease> {
        let mut out: Vec<ShardLease> = lock(&self.owned).values().map(|o| o.lease).collect();
        out.sort_by_key(|l| l.shard);
        out
    }

    /// Transaction-coordinator shards taken over since this coordinator opened (cluster
    /// mode).
    pub fn takeovers(&self) -> u64 {
        self.takeovers.load(Ordering::Relaxed)
    }

    /// Whether this coordinator runs under coordinator leases (cluster mode).
    pub fn is_leased(&self) -> bool {
        self.authority.is_some()
    }

    /// The node id that coordinates `transactional_id` in cluster mode (see
    /// [`CoordinatorLeases::coordinator`]); `None` on a single broker or when unknown.
    pub fn coordinator_node(&self, transactional_id: &str) -> Option<i32> {
        self.authority
            .as_ref()?
            .coordinator(coordinator_shard(transactional_id))
    }
}
