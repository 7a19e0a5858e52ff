//! Coordinator authority in cluster mode: which groups this broker may act for, how it
//! fences its writes, and how it takes a shard of groups over.
//!
//! Group ids hash to [`COORDINATOR_SHARDS`] shards ([`coordinator_shard`]); the backend's
//! [`CoordinatorLeases`] say which shard leases this broker holds, at which epoch. A group
//! request for a shard this coordinator has not taken over at the lease's current epoch is
//! refused with [`GroupError::NotCoordinator`], so the client finds the coordinator again.
//!
//! **Fencing.** Every write of a shard's groups to `__consumer_offsets` is a batch of the
//! idempotent producer `COORDINATOR_PRODUCER_BASE + shard` at producer epoch = lease epoch,
//! with consecutive sequences. The store checks epochs and sequences in the transaction that
//! commits the batch, so once a holder at epoch E has written, nothing of an older holder
//! commits any more. Taking a shard over therefore starts with a *fence*: an empty record at
//! the new epoch, written and durable before the state is read. Every write of the old holder
//! is either before the fence (and read) or refused.
//!
//! **Takeover.** After the fence, the whole `__consumer_offsets` is replayed and the shard's
//! groups (offsets, classic and consumer-protocol state) replace whatever this broker had in
//! memory for them. A write the store refuses (fenced, out of sequence) or that fails after
//! it was handed over (outcome unknown, sequence broken) gives the lease up
//! ([`CoordinatorLeases::give_up`]): the shard is taken again, at a new epoch, with a fresh
//! replay. Only a batch refused for its content (too large, invalid) leaves the lease alone.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use strom_record::{BatchBuilder, Record};

use super::{GroupCoordinator, GroupError, GroupHost, GroupRecord, Replayed, offsets};
use crate::error::{Error, Result};
use crate::partition::Partition;
use crate::storage::{
    COORDINATOR_SHARDS, CoordinatorLeases, CoordinatorShard, ShardLease, StorageError,
    coordinator_shard,
};
use strom_log::AppendInfo;

/// Producer id under which coordinator shard `n` writes `__consumer_offsets` (plus `n`):
/// far above any id the cluster's producer-id sequence hands out.
pub const COORDINATOR_PRODUCER_BASE: i64 = 0x7fff_ff00_0000_0000;

/// A shard a coordinator took over: its lease and the next sequence of its writer. Shared by
/// the group and the transaction coordinators (`txn::authority`).
///
/// The sequence lock is held while a batch is handed to the store (so sequences follow the
/// store's order), which in cluster mode needs the async runtime; request handlers running on
/// the runtime's workers therefore never take it: they read only `lease` and `valid`.
#[derive(Debug)]
pub(crate) struct OwnedShard {
    pub(crate) lease: ShardLease,
    /// False once a write failed; the shard is then given up.
    pub(crate) valid: AtomicBool,
    pub(crate) next_sequence: Mutex<i32>,
}

/// The coordinator a fenced write is made for: what [`OwnedShard::write_fenced`] needs beyond
/// the shard to write as its producer and, when the write fails, to give the shard up.
pub(crate) struct ShardWriter<'a> {
    /// The coordinator's writer producer id for shard 0 (shard `n` writes as base + `n`).
    pub(crate) producer_base: i64,
    /// The coordinator's taken-over shards (a failed shard leaves them).
    pub(crate) shards: &'a Mutex<OwnedShards>,
    /// The coordinator's leases (a failed shard's lease is given up).
    pub(crate) authority: &'a dyn CoordinatorLeases,
    /// The coordinator's NOT_COORDINATOR error.
    pub(crate) not_coordinator: fn() -> Error,
    /// What the coordinator writes, for the log ("group", "transaction-state").
    pub(crate) what: &'static str,
}

impl OwnedShard {
    /// A freshly fenced shard at `lease`: valid, its writer's next sequence 1 (0 was the fence).
    pub(crate) fn fenced(lease: ShardLease) -> Arc<OwnedShard> {
        Arc::new(OwnedShard {
            lease,
            valid: AtomicBool::new(true),
            next_sequence: Mutex::new(1),
        })
    }

    /// Whether the shard is still acted for (no write of it has failed).
    pub(crate) fn is_valid(&self) -> bool {
        self.valid.load(Ordering::Acquire)
    }

    /// Appends `records` to `partition` as this shard's writer: a batch of producer
    /// `writer.producer_base + shard` at producer epoch = lease epoch, at the writer's next
    /// sequence, taken under the sequence lock and only while the shard is still valid (else
    /// `writer.not_coordinator`). A batch refused for its content (too large, invalid) leaves
    /// the shard alone; any other failure, before or after the batch was handed to the store
    /// (fenced by a newer holder, out of sequence, outcome unknown), gives the shard up
    /// ([`Self::give_up`]) and returns the error. Waits until the batch is durable. BLOCKING.
    pub(crate) fn write_fenced(
        self: &Arc<Self>,
        writer: &ShardWriter<'_>,
        partition: &Partition,
        records: &[Record],
    ) -> Result<AppendInfo> {
        let pending = {
            let mut next = lock(&self.next_sequence);
            if !self.is_valid() {
                return Err((writer.not_coordinator)());
            }
            let builder = fenced_builder_for(writer.producer_base, self.lease, *next)
                .ok_or_else(writer.not_coordinator)?;
            let mut batch = build(&builder, records)?;
            match partition.append_deferred_blocking(&mut batch) {
                Ok(pending) => {
                    *next = add_sequence(*next, records.len());
                    pending
                }
                // Refused for its content before the sequence was checked: nothing changes.
                Err(
                    e @ Error::Storage(
                        StorageError::BatchTooLarge { .. } | StorageError::InvalidBatch(_),
                    ),
                ) => return Err(e),
                // Fenced (a newer holder wrote), out of sequence, or failed: give up.
                Err(e) => {
                    drop(next);
                    self.give_up(writer, &e);
                    return Err(e);
                }
            }
        };
        partition
            .await_durable_blocking(pending)
            .inspect_err(|e| self.give_up(writer, e))
    }

    /// After a failed write under this shard's lease: the shard is no longer acted for (it
    /// leaves `writer.shards` unless taken over again meanwhile), and the lease is released so
    /// that it is taken again at a new epoch (with a new fence and a fresh replay).
    pub(crate) fn give_up(self: &Arc<Self>, writer: &ShardWriter<'_>, error: &Error) {
        let lease = self.lease;
        tracing::warn!(shard = lease.shard.0, epoch = lease.epoch, %error, writes = writer.what,
            "a fenced coordinator write failed; giving the coordinator shard up");
        self.valid.store(false, Ordering::Release);
        let mut shards = lock(writer.shards);
        if shards
            .get(&lease.shard)
            .is_some_and(|o| Arc::ptr_eq(o, self))
        {
            shards.remove(&lease.shard);
        }
        drop(shards);
        writer.authority.give_up(lease);
    }
}

/// Of `shards`, `shard` if taken over and its lease still held at the same epoch.
pub(crate) fn current_shard(
    shards: &Mutex<OwnedShards>,
    authority: &dyn CoordinatorLeases,
    shard: CoordinatorShard,
) -> Option<Arc<OwnedShard>> {
    let owned = lock(shards).get(&shard).cloned()?;
    (owned.is_valid() && authority.held().contains(&owned.lease)).then_some(owned)
}

/// The shards taken over.
pub(crate) type OwnedShards = HashMap<CoordinatorShard, Arc<OwnedShard>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn not_coordinator() -> Error {
    Error::Group(GroupError::NotCoordinator)
}

/// A random nonce for a completion record (unique enough to tell two records apart).
fn rand_nonce() -> u64 {
    let id = uuid::Uuid::new_v4().as_u128();
    (id >> 64) as u64 ^ id as u64
}

/// Kafka's sequence arithmetic: sequences wrap from `i32::MAX` to 0.
pub(crate) fn add_sequence(sequence: i32, count: usize) -> i32 {
    let count = i32::try_from(count).unwrap_or(i32::MAX);
    if sequence > i32::MAX - count {
        count - (i32::MAX - sequence) - 1
    } else {
        sequence + count
    }
}

pub(crate) fn build(builder: &BatchBuilder, records: &[Record]) -> Result<Vec<u8>> {
    builder
        .build(records)
        .map_err(|e| Error::Storage(StorageError::InvalidBatch(e)))
}

fn fenced_builder(lease: ShardLease, sequence: i32) -> Result<BatchBuilder> {
    fenced_builder_for(COORDINATOR_PRODUCER_BASE, lease, sequence).ok_or_else(not_coordinator)
}

/// A batch builder for shard `lease.shard`'s writer: producer `producer_base + shard` at
/// producer epoch = lease epoch, from `sequence`. `None` (logged) when the epoch is beyond a
/// producer epoch's range: the shard is then not served.
pub(crate) fn fenced_builder_for(
    producer_base: i64,
    lease: ShardLease,
    sequence: i32,
) -> Option<BatchBuilder> {
    let Ok(epoch) = i16::try_from(lease.epoch) else {
        tracing::error!(
            shard = lease.shard.0,
            epoch = lease.epoch,
            "coordinator lease epoch beyond a producer epoch's range; shard not served"
        );
        return None;
    };
    let mut builder = BatchBuilder::new();
    builder.producer_id = producer_base + i64::from(lease.shard.0);
    builder.producer_epoch = epoch;
    builder.base_sequence = sequence;
    Some(builder)
}

impl GroupCoordinator {
    /// Whether this coordinator may act for `group_id` now: always on a single broker; in
    /// cluster mode only while it holds the group's shard lease at the epoch it took the
    /// shard over with. [`GroupError::NotCoordinator`] otherwise.
    pub fn check_coordinator(&self, group_id: &str) -> std::result::Result<(), GroupError> {
        match &self.authority {
            None => Ok(()),
            Some(authority) => self
                .current(authority.as_ref(), coordinator_shard(group_id))
                .map(|_| ())
                .ok_or(GroupError::NotCoordinator),
        }
    }

    /// Whether this coordinator acts for `group_id` (see [`Self::check_coordinator`]).
    pub(super) fn acts_for(&self, group_id: &str) -> bool {
        self.check_coordinator(group_id).is_ok()
    }

    /// The taken-over shard, if its lease is still held at the same epoch.
    fn current(
        &self,
        authority: &dyn CoordinatorLeases,
        shard: CoordinatorShard,
    ) -> Option<Arc<OwnedShard>> {
        current_shard(&self.owned, authority, shard)
    }

    /// Appends `records`, all of groups of `shard`, to `partition`: plainly on a single
    /// broker, fenced by the shard's lease epoch in cluster mode (see the module docs).
    /// BLOCKING.
    pub(super) fn append_for_shard(
        &self,
        partition: &Partition,
        shard: CoordinatorShard,
        records: &[Record],
    ) -> Result<AppendInfo> {
        let Some(authority) = &self.authority else {
            let mut batch = build(&BatchBuilder::new(), records)?;
            return partition.append_blocking(&mut batch);
        };
        let owned = self
            .current(authority.as_ref(), shard)
            .ok_or_else(not_coordinator)?;
        owned.write_fenced(
            &ShardWriter {
                producer_base: COORDINATOR_PRODUCER_BASE,
                shards: &self.owned,
                authority: authority.as_ref(),
                not_coordinator,
                what: "group",
            },
            partition,
            records,
        )
    }

    /// The shard whose batch a write of `group_id` goes in: its coordinator shard in cluster
    /// mode; on a single broker one for all, so a write of many groups stays one batch.
    pub(super) fn batch_shard(&self, group_id: &str) -> CoordinatorShard {
        if self.authority.is_some() {
            coordinator_shard(group_id)
        } else {
            CoordinatorShard(0)
        }
    }

    /// Appends records of `group_id` (see [`Self::append_for_shard`]). BLOCKING.
    pub(super) fn append_for_group(
        &self,
        partition: &Partition,
        group_id: &str,
        records: &[Record],
    ) -> Result<AppendInfo> {
        self.append_for_shard(partition, coordinator_shard(group_id), records)
    }

    /// Cluster mode: brings the taken-over shards in line with the leases held. Shards whose
    /// lease is gone are dropped (their groups answer NOT_COORDINATOR); newly held ones are
    /// fenced and loaded (see the module docs). A no-op on a single broker. BLOCKING.
    pub(crate) fn sync_leases_blocking(&self, host: &dyn GroupHost) -> Result<()> {
        let Some(authority) = &self.authority else {
            return Ok(());
        };
        let held = authority.held();
        let new: Vec<ShardLease> = {
            let mut owned = lock(&self.owned);
            owned.retain(|_, o| o.is_valid() && held.contains(&o.lease));
            held.iter()
                .filter(|l| l.shard.0 < COORDINATOR_SHARDS && !owned.contains_key(&l.shard))
                .copied()
                .collect()
        };
        if new.is_empty() {
            return Ok(());
        }
        // No completion is applied while the shards' state is replaced.
        let _follow = lock(&self.follow);
        let partition = self.offsets_partition_blocking(host)?;
        let now = host.now_ms();
        let mut fenced = Vec::new();
        for lease in new {
            // The fence: sequence 0 of the new epoch; a tombstone of a key replay skips.
            let fence = Record::new(
                now,
                Some(super::offsets::encode_fence_key(lease.shard.0)),
                None,
            );
            let result = fenced_builder(lease, 0)
                .and_then(|b| build(&b, &[fence]))
                .and_then(|mut batch| partition.append_blocking(&mut batch));
            match result {
                Ok(_) => fenced.push(lease),
                Err(error) => {
                    tracing::warn!(shard = lease.shard.0, epoch = lease.epoch, %error,
                        "fencing a coordinator shard failed; giving it up");
                    authority.give_up(lease);
                }
            }
        }
        if fenced.is_empty() {
            return Ok(());
        }
        let shards: BTreeSet<CoordinatorShard> = fenced.iter().map(|l| l.shard).collect();
        let ours = |group: &str| shards.contains(&coordinator_shard(group));
        let mut replayed = Replayed::default();
        let report =
            crate::internal::replay_from(&partition, partition.log_start_offset(), |k, v| {
                replayed.apply(k, v);
            });
        let report = match report {
            Ok(r) => r,
            Err(error) => {
                for lease in &fenced {
                    authority.give_up(*lease);
                }
                return Err(error);
            }
        };
        let now = host.now_ms();
        {
            // Exclusive side first, as expiry does: no commit is between append and cache.
            let _exclusive = self
                .offsets_order
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            let mut rt = self.runtime();
            let mut store = self.offsets();
            store.cache.retain(|g, _| !ours(g));
            store.written_at.retain(|(g, _, _), _| !ours(g));
            store.group_values.retain(|g, _| !ours(g));
            // Offsets of open transactions: the log's, for the shard's groups.
            for of_producer in store.txn_pending.values_mut() {
                of_producer.retain(|(g, _, _), _| !ours(g));
            }
            store.txn_pending.retain(|_, p| !p.is_empty());
            for (pid, of_producer) in replayed.txn_pending {
                let mine: Vec<_> = of_producer
                    .into_iter()
                    .filter(|((g, _, _), _)| ours(g))
                    .collect();
                if !mine.is_empty() {
                    store.txn_pending.entry(pid).or_default().extend(mine);
                }
            }
            store.txn_done.merge(replayed.txn_done, ours);
            for (g, offsets_of) in replayed.cache {
                if ours(&g) {
                    store.cache.insert(g, offsets_of);
                }
            }
            for (g, value) in replayed.values {
                if ours(&g) {
                    store.group_values.insert(g, value);
                }
            }
            drop(store);
            let mut stale: Vec<String> = rt.engine.list().into_iter().map(|(g, _, _)| g).collect();
            stale.extend(rt.consumer.list().into_iter().map(|(g, _)| g));
            for g in stale.iter().filter(|g| ours(g)) {
                let effects = rt.engine.forget(g);
                rt.perform(effects);
                rt.consumer.forget(g);
            }
            rt.empty_since.retain(|g, _| !ours(g));
            rt.taken_over.retain(|g, _| !ours(g));
            let mut groups = 0usize;
            for (g, record) in replayed.states {
                if !ours(&g) {
                    continue;
                }
                groups += 1;
                let active = match &record {
                    GroupRecord::Classic(s) => (!s.members.is_empty()).then_some(s.generation),
                    GroupRecord::Consumer(s) => s.has_members().then(|| s.epoch()),
                };
                if let Some(generation) = active {
                    let until = now + super::TAKEOVER_REBALANCE_WINDOW_MS;
                    rt.taken_over
                        .insert(g.clone(), super::TakenOver { generation, until });
                }
                match record {
                    GroupRecord::Classic(s) => rt.engine.restore(g, s, now),
                    GroupRecord::Consumer(s) => rt.consumer.restore(g, s, now),
                }
            }
            self.takeovers
                .fetch_add(fenced.len() as u64, Ordering::Relaxed);
            let mut tail = lock(&self.txn_tail);
            if tail.is_none() {
                *tail = Some(report.end);
            }
            drop(tail);
            let mut owned = lock(&self.owned);
            for lease in &fenced {
                owned.insert(lease.shard, OwnedShard::fenced(*lease));
            }
            tracing::info!(
                shards = ?shards.iter().map(|s| s.0).collect::<Vec<_>>(),
                groups,
                "took coordinator shards over"
            );
        }
        Ok(())
    }

    /// Cluster mode: records, for each group of a transaction that committed offsets, that
    /// the transaction ended (see [`offsets::TxnDone`]): the groups' coordinators, possibly
    /// other brokers, settle their pending offsets when they read it. Written plainly (not
    /// as a shard's producer: the transaction coordinator holds no group lease); a record of a
    /// former transaction coordinator is told apart by its coordinator epoch. BLOCKING.
    pub(crate) fn publish_txn_completion_blocking(
        &self,
        host: &dyn GroupHost,
        completion: &crate::txn::TxnCompletion,
    ) -> Result<()> {
        if completion.groups.is_empty() {
            return Ok(());
        }
        let records: Vec<(bytes::Bytes, Option<bytes::Bytes>)> = completion
            .groups
            .iter()
            .map(|group| {
                let (k, v) = offsets::encode_txn_done(&offsets::TxnDone {
                    producer_id: completion.producer_id,
                    group: group.clone(),
                    commit: completion.commit,
                    coordinator_epoch: completion.coordinator_epoch,
                    nonce: rand_nonce(),
                });
                (k, Some(v))
            })
            .collect();
        let partition = self.offsets_partition_blocking(host)?;
        let mut batch = crate::internal::batch_of(&records, host.now_ms())?;
        partition.append_blocking(&mut batch)?;
        Ok(())
    }

    /// Cluster mode: reads `__consumer_offsets` past where it last read for transaction
    /// completions (see [`Self::publish_txn_completion_blocking`]) and settles the pending
    /// offsets of the groups it coordinates: committed ones become the groups' offsets,
    /// aborted ones are dropped, each write fenced by the group's shard lease. A completion
    /// already applied (read again, or by a takeover's replay) or of an older coordinator
    /// epoch than one applied for its producer is skipped. A failed write stops the pass; the
    /// next starts at the same place. BLOCKING.
    pub(crate) fn follow_txn_completions_blocking(&self, host: &dyn GroupHost) -> Result<()> {
        self.follow_txn_completions_from_blocking(host, false)
    }

    /// Cluster mode: if `group_id` has offsets pending in a transaction (of `producer_id`
    /// only, if given), applies every transaction completion appended to `__consumer_offsets`
    /// until now ([`Self::follow_txn_completions_blocking`] after asking the store for its
    /// current end). A completion is appended before its EndTxn is answered, so afterwards
    /// every transaction a client saw end is settled here: the tick alone would leave a
    /// window of up to its interval. BLOCKING.
    pub(crate) fn catch_up_txn_completions_blocking(
        &self,
        host: &dyn GroupHost,
        group_id: &str,
        producer_id: Option<i64>,
    ) -> Result<()> {
        if self.authority.is_none() {
            return Ok(());
        }
        if !self.has_pending_txn_offsets(group_id, producer_id) {
            return Ok(());
        }
        self.follow_txn_completions_from_blocking(host, true)
    }

    /// [`Self::follow_txn_completions_blocking`]; `fresh`: first a read at the tail, which
    /// asks the store for its end now (the cached watermark follows other brokers' commits
    /// with a delay).
    fn follow_txn_completions_from_blocking(
        &self,
        host: &dyn GroupHost,
        fresh: bool,
    ) -> Result<()> {
        if self.authority.is_none() {
            return Ok(());
        }
        let _follow = lock(&self.follow);
        let Some(from) = *lock(&self.txn_tail) else {
            return Ok(());
        };
        let partition = self.offsets_partition_blocking(host)?;
        if fresh {
            partition.read_blocking(from.max(partition.log_start_offset()), 1)?;
        }
        if partition.high_watermark() <= from {
            return Ok(());
        }
        let mut found = Vec::new();
        let report = crate::internal::replay_from(&partition, from, |k, v| {
            if let Some(k) = k.filter(|k| offsets::is_txn_done_key(k))
                && let Some(done) = offsets::decode_txn_done(k, v)
            {
                found.push(done);
            }
        })?;
        for done in found {
            if !self.acts_for(&done.group) || !self.offsets().txn_done.admits(&done) {
                continue;
            }
            self.complete_txn_offsets_blocking(
                host,
                done.producer_id,
                done.commit,
                Some(&done.group),
            )?;
            tracing::debug!(producer_id = done.producer_id, group = %done.group,
                commit = done.commit, "transactional offsets settled");
            self.offsets().txn_done.record(&done);
        }
        let mut tail = lock(&self.txn_tail);
        if tail.is_some_and(|t| t < report.end) {
            *tail = Some(report.end);
        }
        Ok(())
    }

    /// Cluster mode: drops from memory every group of a shard this coordinator does not act
    /// for now (its lease lapsed, was taken, or was given up after a failed write). JoinGroup
    /// and SyncGroup requests waiting in them are answered `NotCoordinator` at once, so their
    /// clients find the new coordinator instead of waiting for their own timeouts; the groups'
    /// state is read again from the log if the shard is taken over again. Called with the
    /// runtime locked (from [`GroupCoordinator::tick`]); never blocks on I/O.
    pub(super) fn drop_lost_groups(&self, rt: &mut super::Runtime) {
        let Some(authority) = &self.authority else {
            return;
        };
        let held = authority.held();
        // A shard no longer acted for leaves `owned` with its groups, so acting for it again
        // always goes through a fresh takeover (fence and replay), never from a memory
        // emptied here.
        let acting: BTreeSet<CoordinatorShard> = {
            let mut owned = lock(&self.owned);
            owned.retain(|_, o| o.is_valid() && held.contains(&o.lease));
            owned.keys().copied().collect()
        };
        let lost = |g: &String| !acting.contains(&coordinator_shard(g));
        let mut groups: BTreeSet<String> = rt
            .engine
            .list()
            .into_iter()
            .map(|(g, _, _)| g)
            .filter(lost)
            .collect();
        groups.extend(rt.consumer.list().into_iter().map(|(g, _)| g).filter(lost));
        if groups.is_empty() {
            return;
        }
        for g in &groups {
            let effects = rt.engine.forget(g);
            rt.perform(effects);
            rt.consumer.forget(g);
            rt.empty_since.remove(g);
            rt.taken_over.remove(g);
        }
        tracing::info!(
            groups = groups.len(),
            "dropped the groups of coordinator shards no longer held"
        );
    }

    /// The node id that coordinates `group_id` in cluster mode (see
    /// [`CoordinatorLeases::coordinator`]); `None` on a single broker or when unknown.
    pub fn coordinator_node(&self, group_id: &str) -> Option<i32> {
        self.authority
            .as_ref()?
            .coordinator(coordinator_shard(group_id))
    }

    /// The coordinator-shard leases this coordinator has taken over (status displays).
    pub fn owned_shards(&self) -> Vec<ShardLease> {
        let mut out: Vec<ShardLease> = lock(&self.owned).values().map(|o| o.lease).collect();
        out.sort_by_key(|l| l.shard);
        out
    }

    /// Coordinator shards taken over since this coordinator opened (cluster mode).
    pub fn takeovers(&self) -> u64 {
        self.takeovers.load(Ordering::Relaxed)
    }

    /// Rebalances of groups loaded at a shard takeover, starting within a minute of it: the
    /// rebalances failovers caused (cluster mode; a member leaving at the same moment counts
    /// too).
    pub fn takeover_rebalances(&self) -> u64 {
        self.takeover_rebalances.load(Ordering::Relaxed)
    }

    /// Whether this coordinator runs under coordinator leases (cluster mode).
    pub fn is_leased(&self) -> bool {
        self.authority.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_wrap_as_kafkas() {
        assert_eq!(add_sequence(0, 1), 1);
        assert_eq!(add_sequence(i32::MAX, 1), 0);
        assert_eq!(add_sequence(i32::MAX - 1, 3), 1);
    }

    #[test]
    fn fence_batches_carry_the_shard_producer_and_lease_epoch() {
        let lease = ShardLease {
            shard: CoordinatorShard(3),
            epoch: 7,
        };
        let b = fenced_builder(lease, 5).unwrap();
        assert_eq!(b.producer_id, COORDINATOR_PRODUCER_BASE + 3);
        assert_eq!(b.producer_epoch, 7);
        assert_eq!(b.base_sequence, 5);
        let too_far = ShardLease {
            shard: CoordinatorShard(3),
            epoch: i64::from(i16::MAX) + 1,
        };
        assert!(fenced_builder(too_far, 0).is_err());
    }
}
