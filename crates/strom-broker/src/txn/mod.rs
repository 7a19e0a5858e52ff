//! The transaction coordinator: transactional ids, their producer ids and epochs, and the
//! two-phase ending of transactions (Kafka's `TransactionCoordinator`).
//!
//! Decisions are made by the pure [`engine`] on one [`TxnMetadata`] per transactional id.
//! This runtime owns those, each behind its own `Mutex` (held across the blocking I/O of one
//! request, so requests for one id run one at a time while different ids proceed in parallel)
//! plus a published copy behind an `RwLock`, refreshed when a request lets go of the id, which
//! the produce path and the admin APIs read without waiting for that I/O. It does the I/O in
//! the order that makes a crash safe:
//!
//! 1. every change of an id's metadata is appended to `__transaction_state` ([`state`]) before
//!    the request is answered;
//! 2. EndTxn first makes `PrepareCommit`/`PrepareAbort` durable, then writes a control batch
//!    (a marker, [`strom_record::marker_batch`]) to every partition of the transaction, then
//!    applies (commit) or drops (abort) the transaction's consumer offsets, then records
//!    `CompleteCommit`/`CompleteAbort`;
//! 3. when the broker opens, ids found in a prepare state are completed (steps 2–3 again;
//!    a repeated marker is harmless), and a background tick aborts transactions that outlive
//!    their timeout, bumping the epoch so their producer is fenced.
//!
//! The runtime is [`TxnCoordinator`], the sole owner of that state. It reaches the rest of the
//! broker only through the narrow `TxnHost` trait (the clock, partitions for markers and for
//! `__transaction_state`, producer ids, the group coordinator's transactional offsets), which
//! [`Broker`] implements; the broker's transaction methods delegate to the coordinator.
//!
//! A single node coordinates every transactional id; the coordinator epoch in markers is 0.
//! In cluster mode transactional ids are sharded under PostgreSQL leases and this broker acts
//! only for the shards it took over ([`authority`]); markers carry the lease epoch.

pub mod authority;
pub mod engine;
pub mod state;

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use strom_record::{ControlType, marker_batch};

use crate::broker::Broker;
use crate::error::{Error, Result};
use crate::group::OffsetCommit;
use crate::partition::Partition;
use crate::storage::{CoordinatorLeases, ShardLease};

pub use engine::{
    InitPlan, MAX_TRANSACTION_TIMEOUT_MS, TxnError, TxnMetadata, TxnResult, TxnState, check_timeout,
};
pub use state::TRANSACTION_STATE_TOPIC;

/// Kafka's `transactional.id.expiration.ms` default: an id without a transaction for this long
/// is forgotten.
pub const TRANSACTIONAL_ID_EXPIRATION_MS: i64 = 7 * 24 * 3600 * 1000;

type Entry = Arc<TxnEntry>;

/// One transactional id: the metadata requests change (`op`, held for a whole request) and the
/// copy readers see (`view`, refreshed whenever a [`Held`] is dropped, so also after a request
/// that failed half-way: everything it changed was persisted first).
#[derive(Debug)]
struct TxnEntry {
    op: Mutex<TxnMetadata>,
    view: RwLock<TxnMetadata>,
    /// Cluster mode: the shard lease the entry was loaded or created under; it is written
    /// only while that lease is still the one acted under. `None` on a single broker.
    lease: Option<ShardLease>,
}

/// A request's hold on one id's metadata; publishes it to the readers' copy when dropped.
struct Held<'a> {
    guard: MutexGuard<'a, TxnMetadata>,
    view: &'a RwLock<TxnMetadata>,
    lease: Option<ShardLease>,
}

impl Deref for Held<'_> {
    type Target = TxnMetadata;
    fn deref(&self) -> &TxnMetadata {
        &self.guard
    }
}

impl DerefMut for Held<'_> {
    fn deref_mut(&mut self) -> &mut TxnMetadata {
        &mut self.guard
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let mut view = self.view.write().unwrap_or_else(PoisonError::into_inner);
        view.clone_from(&self.guard);
    }
}

impl TxnEntry {
    fn new(m: TxnMetadata, lease: Option<ShardLease>) -> Entry {
        Arc::new(TxnEntry {
            view: RwLock::new(m.clone()),
            op: Mutex::new(m),
            lease,
        })
    }

    /// Waits for other requests of this id and holds it.
    fn hold(&self) -> Held<'_> {
        Held {
            guard: lock(&self.op),
            view: &self.view,
            lease: self.lease,
        }
    }

    /// Holds the id unless a request has it.
    fn try_hold(&self) -> Option<Held<'_>> {
        let guard = match self.op.try_lock() {
            Ok(g) => g,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        };
        Some(Held {
            guard,
            view: &self.view,
            lease: self.lease,
        })
    }

    /// The published metadata (never waits for a request's I/O).
    fn view(&self) -> std::sync::RwLockReadGuard<'_, TxnMetadata> {
        self.view.read().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One result per partition of an AddPartitionsToTxn.
pub type PartitionResults = Vec<((String, i32), Result<()>)>;

/// A transactional id as DescribeTransactions and ListTransactions show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnDescription {
    /// The transactional id.
    pub transactional_id: String,
    /// Its state, producer and partitions.
    pub metadata: TxnMetadata,
}

/// The transaction coordinator of one broker.
#[derive(Debug, Default)]
pub struct TxnCoordinator {
    ids: Mutex<HashMap<String, Entry>>,
    /// Partition 0 of `__transaction_state`, once it exists.
    partition: Mutex<Option<Arc<Partition>>>,
    /// Cluster mode: the transaction-coordinator shard leases ([`authority`]).
    authority: Option<Arc<dyn CoordinatorLeases>>,
    /// Cluster mode: the shards taken over, at their lease epochs.
    owned: Mutex<authority::OwnedShards>,
    /// Shards taken over since opening.
    takeovers: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl TxnCoordinator {
    /// A coordinator replayed from `partition` (partition 0 of `__transaction_state`, if it
    /// exists). In cluster mode (`authority` given) nothing is replayed here: each shard's ids
    /// are loaded when its lease is taken over ([`Self::sync_leases_blocking`]). BLOCKING.
    pub(crate) fn open(
        partition: Option<Arc<Partition>>,
        authority: Option<Arc<dyn CoordinatorLeases>>,
    ) -> Result<TxnCoordinator> {
        let mut ids = HashMap::new();
        if let Some(p) = partition.as_ref().filter(|_| authority.is_none()) {
            crate::internal::replay(p, |key, value| {
                let Some(id) = key.and_then(state::decode_key) else {
                    return;
                };
                match value.and_then(state::decode_value) {
                    Some(m) => {
                        ids.insert(id, TxnEntry::new(m, None));
                    }
                    None => {
                        ids.remove(&id);
                    }
                }
            })?;
            tracing::info!(transactional_ids = ids.len(), "transaction state replayed");
        }
        Ok(TxnCoordinator {
            ids: Mutex::new(ids),
            partition: Mutex::new(partition),
            authority,
            owned: Mutex::default(),
            takeovers: AtomicU64::new(0),
        })
    }

    fn entry(&self, transactional_id: &str) -> Option<Entry> {
        lock(&self.ids).get(transactional_id).cloned()
    }

    fn entries(&self) -> Vec<(String, Entry)> {
        lock(&self.ids)
            .iter()
            .map(|(k, v)| (k.clone(), Arc::clone(v)))
            .collect()
    }

    /// One transactional id, if known.
    pub fn describe(&self, transactional_id: &str) -> Option<TxnDescription> {
        let entry = self.entry(transactional_id)?;
        let metadata = entry.view().clone();
        Some(TxnDescription {
            transactional_id: transactional_id.to_owned(),
            metadata,
        })
    }

    /// Every transactional id, sorted. Ids busy with a request are shown as they were before it.
    pub fn list(&self) -> Vec<TxnDescription> {
        let mut all: Vec<TxnDescription> = self
            .entries()
            .into_iter()
            .map(|(id, e)| TxnDescription {
                transactional_id: id,
                metadata: e.view().clone(),
            })
            .collect();
        all.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        all
    }
}

/// What the transaction coordinator needs from the rest of the broker: the clock, partitions
/// (for markers and for its own state topic), producer ids and the group coordinator's
/// transactional offsets. The coordinator owns its state (the transactional ids and their
/// metadata) and reaches nothing else; [`Broker`] implements this and delegates its
/// transaction methods to the coordinator.
pub(crate) trait TxnHost {
    /// Now, in ms since the epoch (the broker's clock).
    fn now_ms(&self) -> i64;
    /// A partition, for a marker or an AddPartitionsToTxn check.
    fn partition(&self, topic: &str, index: i32) -> Result<Arc<Partition>>;
    /// Partition 0 of `__transaction_state`, created if missing. BLOCKING.
    fn txn_state_partition(&self) -> Result<Arc<Partition>>;
    /// A fresh producer id (durably reserved). BLOCKING.
    fn allocate_producer_id(&self) -> Result<i64>;
    /// Stores a TxnOffsetCommit's offsets as pending for `producer_id` (the group coordinator
    /// checks the member). BLOCKING.
    fn write_txn_offsets(&self, request: TxnOffsets<'_>) -> Result<Vec<Result<()>>>;
    /// Applies (`commit`) or drops the pending offsets of `producer_id`. BLOCKING.
    fn complete_txn_offsets(&self, producer_id: i64, commit: bool) -> Result<()>;
    /// Cluster mode: records in `__consumer_offsets` that `producer_id`'s transaction ended,
    /// for the coordinators of its groups (possibly other brokers) to settle their pending
    /// offsets when they read it. BLOCKING.
    fn publish_txn_completion(&self, completion: TxnCompletion) -> Result<()>;
}

/// The end of a transaction that committed offsets, as the coordinators of its groups learn
/// it in cluster mode ([`TxnHost::publish_txn_completion`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnCompletion {
    /// The transaction's producer.
    pub producer_id: i64,
    /// The groups whose offsets it committed.
    pub groups: Vec<String>,
    /// Committed (else aborted).
    pub commit: bool,
    /// The coordinator epoch (lease epoch) of the broker that ended it: a completion of an
    /// older coordinator epoch than one already applied for this producer is ignored.
    pub coordinator_epoch: i32,
}

/// The offsets of one TxnOffsetCommit, as handed to [`TxnHost::write_txn_offsets`].
#[derive(Debug)]
pub(crate) struct TxnOffsets<'a> {
    pub(crate) producer_id: i64,
    pub(crate) group_id: &'a str,
    pub(crate) member_id: &'a str,
    pub(crate) generation: i32,
    pub(crate) instance_id: Option<&'a str>,
    pub(crate) commits: Vec<OffsetCommit>,
}

impl TxnHost for Broker {
    fn now_ms(&self) -> i64 {
        self.clock().now_ms()
    }

    fn partition(&self, topic: &str, index: i32) -> Result<Arc<Partition>> {
        Broker::partition(self, topic, index)
    }

    fn txn_state_partition(&self) -> Result<Arc<Partition>> {
        self.internal_partition_blocking(TRANSACTION_STATE_TOPIC)
    }

    fn allocate_producer_id(&self) -> Result<i64> {
        self.allocate_producer_id_blocking()
    }

    fn write_txn_offsets(&self, r: TxnOffsets<'_>) -> Result<Vec<Result<()>>> {
        self.groups.write_txn_offsets_blocking(self, r)
    }

    fn complete_txn_offsets(&self, producer_id: i64, commit: bool) -> Result<()> {
        self.complete_txn_offsets_blocking(producer_id, commit)
    }

    fn publish_txn_completion(&self, completion: TxnCompletion) -> Result<()> {
        self.groups
            .publish_txn_completion_blocking(self, &completion)
    }
}

impl TxnCoordinator {
    /// Partition 0 of `__transaction_state`, created through the host on first use.
    fn state_partition(&self, host: &dyn TxnHost) -> Result<Arc<Partition>> {
        if let Some(p) = &*lock(&self.partition) {
            return Ok(Arc::clone(p));
        }
        let p = host.txn_state_partition()?;
        *lock(&self.partition) = Some(Arc::clone(&p));
        Ok(p)
    }

    /// Appends an id's metadata (or a tombstone) to `__transaction_state`, under `lease` in
    /// cluster mode (see [`authority`]). BLOCKING.
    fn persist_txn_blocking(
        &self,
        host: &dyn TxnHost,
        transactional_id: &str,
        lease: Option<ShardLease>,
        m: Option<&TxnMetadata>,
    ) -> Result<()> {
        let partition = self.state_partition(host)?;
        let value = m.and_then(state::encode_value);
        self.append_state_blocking(
            &partition,
            lease,
            &[(state::encode_key(transactional_id), value)],
            host.now_ms(),
        )
    }

    /// InitProducerId with a transactional id: a new id gets a fresh producer id at epoch 0;
    /// a known one gets its epoch bumped (fencing any older producer), after its open
    /// transaction, if any, is aborted. `expected` is the `(producer id, epoch)` a client sends
    /// when it re-initialises itself (KIP-360). BLOCKING.
    pub(crate) fn init_transactional_producer_blocking(
        &self,
        host: &dyn TxnHost,
        transactional_id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
    ) -> Result<(i64, i16)> {
        if transactional_id.is_empty() {
            return Err(TxnError::InvalidTransactionalId.into());
        }
        check_timeout(timeout_ms)?;
        let lease = self.acting_lease(transactional_id)?;
        let now = host.now_ms();
        let entry = match self.entry(transactional_id) {
            Some(e) => e,
            None => {
                if expected.is_some() {
                    // A client re-initialising an id this coordinator never knew (or forgot).
                    return Err(TxnError::InvalidProducerIdMapping.into());
                }
                let pid = host.allocate_producer_id()?;
                let fresh = TxnEntry::new(TxnMetadata::new(pid, timeout_ms, now), lease);
                let existing = {
                    let mut ids = lock(&self.ids);
                    let e = ids
                        .entry(transactional_id.to_owned())
                        .or_insert_with(|| Arc::clone(&fresh));
                    Arc::clone(e)
                };
                if Arc::ptr_eq(&existing, &fresh) {
                    let m = fresh.hold();
                    let persisted =
                        self.persist_txn_blocking(host, transactional_id, m.lease, Some(&m));
                    if let Err(e) = persisted {
                        // Not durable: the id stays unknown.
                        drop(m);
                        let mut ids = lock(&self.ids);
                        if ids
                            .get(transactional_id)
                            .is_some_and(|e| Arc::ptr_eq(e, &fresh))
                        {
                            ids.remove(transactional_id);
                        }
                        return Err(e);
                    }
                    return Ok((m.producer_id, m.producer_epoch));
                }
                existing
            }
        };
        let mut m = entry.hold();
        let plan = m.plan_init(expected)?;
        if plan == InitPlan::AbortThenBump {
            tracing::info!(
                transactional_id,
                producer_id = m.producer_id,
                "fencing the open transaction of a previous producer"
            );
            self.end_transaction_locked(host, transactional_id, &mut m, false, true)?;
        }
        let mut next = m.clone();
        let new_pid = if next.epoch_exhausted() {
            Some(host.allocate_producer_id()?)
        } else {
            None
        };
        next.bump_for_init(new_pid, timeout_ms, now);
        self.persist_txn_blocking(host, transactional_id, m.lease, Some(&next))?;
        *m = next;
        Ok((m.producer_id, m.producer_epoch))
    }

    /// The entry of an id this coordinator acts for (NOT_COORDINATOR in cluster mode
    /// otherwise), or INVALID_PRODUCER_ID_MAPPING if unknown.
    fn locked_entry(&self, transactional_id: &str) -> Result<Entry> {
        self.acting_lease(transactional_id)?;
        self.entry(transactional_id)
            .ok_or_else(|| TxnError::InvalidProducerIdMapping.into())
    }

    /// AddPartitionsToTxn: one result per partition. Unknown partitions fail alone, and then
    /// nothing is added (Kafka answers the others with OPERATION_NOT_ATTEMPTED, here
    /// [`Error::OperationNotAttempted`]). BLOCKING.
    pub(crate) fn add_partitions_to_txn_blocking(
        &self,
        host: &dyn TxnHost,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: Vec<(String, i32)>,
    ) -> Result<PartitionResults> {
        let entry = self.locked_entry(transactional_id)?;
        let mut m = entry.hold();
        m.check_add(producer_id, epoch)?;
        let checked: PartitionResults = partitions
            .into_iter()
            .map(|(t, p)| {
                let r = host.partition(&t, p).map(|_| ());
                ((t, p), r)
            })
            .collect();
        if checked.iter().any(|(_, r)| r.is_err()) {
            return Ok(checked
                .into_iter()
                .map(|(tp, r)| (tp, r.and(Err(Error::OperationNotAttempted))))
                .collect());
        }
        let tps: Vec<(String, i32)> = checked.iter().map(|(tp, _)| tp.clone()).collect();
        self.add_to_txn_locked(host, transactional_id, &mut m, &tps, None)?;
        Ok(checked)
    }

    /// AddOffsetsToTxn: the transaction will commit offsets of `group_id`. BLOCKING.
    pub(crate) fn add_offsets_to_txn_blocking(
        &self,
        host: &dyn TxnHost,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        group_id: &str,
    ) -> Result<()> {
        if group_id.is_empty() {
            return Err(crate::group::GroupError::InvalidGroupId.into());
        }
        let entry = self.locked_entry(transactional_id)?;
        let mut m = entry.hold();
        m.check_add(producer_id, epoch)?;
        self.add_to_txn_locked(host, transactional_id, &mut m, &[], Some(group_id))
    }

    fn add_to_txn_locked(
        &self,
        host: &dyn TxnHost,
        transactional_id: &str,
        m: &mut Held<'_>,
        partitions: &[(String, i32)],
        group: Option<&str>,
    ) -> Result<()> {
        let mut next = TxnMetadata::clone(m);
        if next.add(partitions, group, host.now_ms()) {
            self.persist_txn_blocking(host, transactional_id, m.lease, Some(&next))?;
            **m = next;
        }
        Ok(())
    }

    /// TxnOffsetCommit: checks the producer against its transaction (the group must have been
    /// added with AddOffsetsToTxn) and the member against the group (when a generation is
    /// given), then stores the offsets as pending: they become committed offsets only when
    /// the transaction commits. One result per offset. BLOCKING.
    pub(crate) fn txn_offset_commit_blocking(
        &self,
        host: &dyn TxnHost,
        transactional_id: &str,
        offsets: TxnOffsets<'_>,
        epoch: i16,
    ) -> Result<Vec<Result<()>>> {
        // Cluster mode: TxnOffsetCommit goes to the group's coordinator, which may not be the
        // transactional id's; that broker checks the member and the group only, as Kafka's
        // group coordinator does (the EndTxn that settles the offsets checks the producer).
        if self.authority.is_some() && !self.acts_for(transactional_id) {
            return host.write_txn_offsets(offsets);
        }
        let entry = self.locked_entry(transactional_id)?;
        let m = entry.hold();
        m.check_offset_commit(offsets.producer_id, epoch, offsets.group_id)?;
        host.write_txn_offsets(offsets)
    }

    /// EndTxn: commits or aborts the open transaction (a retry of a completed ending is
    /// answered as done). BLOCKING.
    pub(crate) fn end_txn_blocking(
        &self,
        host: &dyn TxnHost,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        commit: bool,
    ) -> Result<()> {
        let entry = self.locked_entry(transactional_id)?;
        let mut m = entry.hold();
        if !m.check_end(producer_id, epoch, commit)? {
            return Ok(());
        }
        self.end_transaction_locked(host, transactional_id, &mut m, commit, false)
    }

    /// Prepares (durably), writes the markers and completes a transaction.
    fn end_transaction_locked(
        &self,
        host: &dyn TxnHost,
        transactional_id: &str,
        m: &mut Held<'_>,
        commit: bool,
        bump_epoch: bool,
    ) -> Result<()> {
        let mut next = TxnMetadata::clone(m);
        next.prepare(commit, bump_epoch, host.now_ms());
        self.persist_txn_blocking(host, transactional_id, m.lease, Some(&next))?;
        **m = next;
        self.complete_transaction_locked(host, transactional_id, m)
    }

    /// Writes the markers of a prepared transaction, settles its offsets and records it
    /// complete. On failure the id stays prepared (durably) and the tick retries.
    fn complete_transaction_locked(
        &self,
        host: &dyn TxnHost,
        transactional_id: &str,
        m: &mut Held<'_>,
    ) -> Result<()> {
        let commit = m.state == TxnState::PrepareCommit;
        let control = if commit {
            ControlType::Commit
        } else {
            ControlType::Abort
        };
        if !self.lease_is_current(m.lease) {
            return Err(TxnError::NotCoordinator.into());
        }
        let coordinator_epoch = Self::coordinator_epoch(m.lease);
        self.write_markers_blocking(host, m, control, coordinator_epoch)?;
        if !m.groups.is_empty() {
            if self.authority.is_some() {
                // The groups' coordinators may be other brokers: they settle the offsets when
                // they read this completion in `__consumer_offsets`.
                host.publish_txn_completion(TxnCompletion {
                    producer_id: m.producer_id,
                    groups: m.groups.iter().cloned().collect(),
                    commit,
                    coordinator_epoch,
                })?;
            } else {
                host.complete_txn_offsets(m.producer_id, commit)?;
            }
        }
        let mut next = TxnMetadata::clone(m);
        next.complete(host.now_ms());
        self.persist_txn_blocking(host, transactional_id, m.lease, Some(&next))?;
        **m = next;
        tracing::debug!(
            transactional_id,
            commit,
            partitions = m.partitions.len(),
            "transaction complete"
        );
        Ok(())
    }

    /// Appends a marker to every partition of the transaction, in parallel (each waits for
    /// its own sync). Partitions deleted meanwhile are skipped.
    fn write_markers_blocking(
        &self,
        host: &dyn TxnHost,
        m: &TxnMetadata,
        control: ControlType,
        coordinator_epoch: i32,
    ) -> Result<()> {
        let now = host.now_ms();
        let batch = marker_batch(
            m.producer_id,
            m.producer_epoch,
            control,
            coordinator_epoch,
            now,
        )
        .map_err(|e| Error::Storage(crate::storage::StorageError::InvalidBatch(e)))?;
        let targets: Vec<Arc<Partition>> = m
            .partitions
            .iter()
            .filter_map(|(t, p)| match host.partition(t, *p) {
                Ok(partition) => Some(partition),
                Err(e) => {
                    tracing::warn!(topic = %t, partition = p, error = %e, "no marker for a vanished partition");
                    None
                }
            })
            .collect();
        let write = |p: &Partition| -> Result<()> {
            let mut b = batch.clone();
            p.append_blocking(&mut b).map(|_| ())
        };
        if targets.len() <= 1 {
            return targets.iter().try_for_each(|p| write(p));
        }
        std::thread::scope(|scope| {
            let handles: Vec<_> = targets
                .iter()
                .map(|p| scope.spawn(move || write(p)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or(Err(Error::ShuttingDown)))
                .collect::<Result<Vec<()>>>()
        })
        .map(|_| ())
    }

    /// Checks a transactional produce: the producer owns `transactional_id` at this epoch and
    /// added the partition to its open transaction.
    pub(crate) fn check_transactional_produce(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        topic: &str,
        partition: i32,
    ) -> Result<()> {
        // Cluster mode: the partition's leader is often not the id's coordinator, and brokers
        // do not ask each other; the store fences the producer's epoch on its own. Checked
        // here only when this broker coordinates the id.
        if self.authority.is_some() && !self.acts_for(transactional_id) {
            return Ok(());
        }
        let entry = self.locked_entry(transactional_id)?;
        entry
            .view()
            .check_produce(producer_id, epoch, topic, partition)?;
        Ok(())
    }

    /// Completes transactions left prepared (by a crash or a failed marker write) and aborts,
    /// with an epoch bump, those that outlived their timeout; forgets ids idle for
    /// [`TRANSACTIONAL_ID_EXPIRATION_MS`]. Ids busy with a request are left for the next
    /// call. Returns how many transactions it ended. BLOCKING.
    pub(crate) fn tick_transactions_blocking(&self, host: &dyn TxnHost) -> usize {
        let now = host.now_ms();
        let mut ended = 0;
        for (id, entry) in self.entries() {
            // Cluster mode: only the holder of the id's shard lease ends its transactions.
            if !self.lease_is_current(entry.lease) {
                continue;
            }
            let Some(mut m) = entry.try_hold() else {
                continue;
            };
            let result = if m.state.is_prepare() {
                self.complete_transaction_locked(host, &id, &mut m)
            } else if m.timed_out(now) {
                tracing::info!(transactional_id = %id, producer_id = m.producer_id, "aborting a timed-out transaction");
                self.end_transaction_locked(host, &id, &mut m, false, true)
            } else {
                if m.state != TxnState::Ongoing
                    && now.saturating_sub(m.updated_ms) > TRANSACTIONAL_ID_EXPIRATION_MS
                    && self.persist_txn_blocking(host, &id, m.lease, None).is_ok()
                {
                    lock(&self.ids).remove(&id);
                }
                continue;
            };
            match result {
                Ok(()) => ended += 1,
                Err(e) => {
                    tracing::warn!(transactional_id = %id, error = %e, "ending a transaction failed; will retry")
                }
            }
        }
        ended
    }
}

impl Broker {
    /// The transaction coordinator.
    pub fn txns(&self) -> &TxnCoordinator {
        &self.txns
    }

    /// InitProducerId with a transactional id: a new id gets a fresh producer id at epoch 0;
    /// a known one gets its epoch bumped (fencing any older producer), after its open
    /// transaction, if any, is aborted. `expected` is the `(producer id, epoch)` a client sends
    /// when it re-initialises itself (KIP-360). BLOCKING.
    pub fn init_transactional_producer_blocking(
        &self,
        transactional_id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
    ) -> Result<(i64, i16)> {
        self.txns
            .init_transactional_producer_blocking(self, transactional_id, timeout_ms, expected)
    }

    /// AddPartitionsToTxn: one result per partition. Unknown partitions fail alone, and then
    /// nothing is added (Kafka answers the others with OPERATION_NOT_ATTEMPTED, here
    /// [`Error::OperationNotAttempted`]). BLOCKING.
    pub fn add_partitions_to_txn_blocking(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: Vec<(String, i32)>,
    ) -> Result<PartitionResults> {
        self.txns.add_partitions_to_txn_blocking(
            self,
            transactional_id,
            producer_id,
            epoch,
            partitions,
        )
    }

    /// AddOffsetsToTxn: the transaction will commit offsets of `group_id`. BLOCKING.
    pub fn add_offsets_to_txn_blocking(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        group_id: &str,
    ) -> Result<()> {
        self.txns
            .add_offsets_to_txn_blocking(self, transactional_id, producer_id, epoch, group_id)
    }

    /// TxnOffsetCommit: checks the producer against its transaction (the group must have been
    /// added with AddOffsetsToTxn) and the member against the group (when a generation is
    /// given), then stores the offsets as pending: they become committed offsets only when
    /// the transaction commits. One result per offset. BLOCKING.
    #[allow(clippy::too_many_arguments)]
    pub fn txn_offset_commit_blocking(
        &self,
        transactional_id: &str,
        group_id: &str,
        producer_id: i64,
        epoch: i16,
        member_id: &str,
        generation: i32,
        instance_id: Option<&str>,
        commits: Vec<OffsetCommit>,
    ) -> Result<Vec<Result<()>>> {
        self.txns.txn_offset_commit_blocking(
            self,
            transactional_id,
            TxnOffsets {
                producer_id,
                group_id,
                member_id,
                generation,
                instance_id,
                commits,
            },
            epoch,
        )
    }

    /// EndTxn: commits or aborts the open transaction (a retry of a completed ending is
    /// answered as done). BLOCKING.
    pub fn end_txn_blocking(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        commit: bool,
    ) -> Result<()> {
        self.txns
            .end_txn_blocking(self, transactional_id, producer_id, epoch, commit)
    }

    /// Checks a transactional produce: the producer owns `transactional_id` at this epoch and
    /// added the partition to its open transaction.
    pub fn check_transactional_produce(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        topic: &str,
        partition: i32,
    ) -> Result<()> {
        self.txns.check_transactional_produce(
            transactional_id,
            producer_id,
            epoch,
            topic,
            partition,
        )
    }

    /// Completes transactions left prepared (by a crash or a failed marker write) and aborts,
    /// with an epoch bump, those that outlived their timeout; forgets ids idle for
    /// [`TRANSACTIONAL_ID_EXPIRATION_MS`]. Ids busy with a request are left for the next
    /// call. Returns how many transactions it ended. BLOCKING.
    pub fn tick_transactions_blocking(&self) -> usize {
        self.txns.tick_transactions_blocking(self)
    }
}

#[cfg(test)]
mod tests;
