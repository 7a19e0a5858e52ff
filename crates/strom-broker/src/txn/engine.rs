//! The transaction state machine of one transactional id: pure data, no I/O.
//!
//! Each transactional id has one [`TxnMetadata`]: the producer id and epoch it owns, the
//! partitions and consumer groups of its current transaction, and a [`TxnState`]. Every request
//! is a method here that checks the producer's id and epoch and either refuses with a
//! [`TxnError`] or says what to do; the runtime (`txn/mod.rs`) persists the new metadata to
//! `__transaction_state` *before* it answers or writes markers, so a decision survives a crash.
//!
//! ```text
//!  Empty ──AddPartitions/AddOffsets──▶ Ongoing ──EndTxn(commit)──▶ PrepareCommit ─markers─▶ CompleteCommit
//!                                        │  ▲  ──EndTxn(abort) / timeout / fencing──▶ PrepareAbort ─markers─▶ CompleteAbort
//!  Complete* ──AddPartitions/AddOffsets──┘  └── (a new transaction starts from Complete*)
//! ```

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// Kafka's `transaction.max.timeout.ms` default: the largest timeout a producer may ask for.
pub const MAX_TRANSACTION_TIMEOUT_MS: i32 = 900_000;

/// Where a transactional id's transaction is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TxnState {
    /// No transaction yet (just initialised).
    Empty,
    /// A transaction is open: partitions or groups were added.
    Ongoing,
    /// Commit decided (durable); markers are being written.
    PrepareCommit,
    /// Abort decided (durable); markers are being written.
    PrepareAbort,
    /// The last transaction committed.
    CompleteCommit,
    /// The last transaction aborted.
    CompleteAbort,
}

impl TxnState {
    /// The name Kafka's admin APIs use (DescribeTransactions, ListTransactions).
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
        }
    }

    /// Whether markers are still to be written.
    pub fn is_prepare(self) -> bool {
        matches!(self, TxnState::PrepareCommit | TxnState::PrepareAbort)
    }
}

/// Protocol-neutral transaction errors (the Kafka front end maps them to its codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TxnError {
    /// The request's epoch is older than the id's: another producer took the id over.
    #[error("producer fenced: a newer producer uses this transactional id")]
    ProducerFenced,
    /// The producer id is not the one this transactional id owns.
    #[error("the producer id does not belong to this transactional id")]
    InvalidProducerIdMapping,
    /// The request does not fit the transaction's state (e.g. EndTxn without a transaction).
    #[error("invalid transaction state")]
    InvalidTxnState,
    /// `transaction.timeout.ms` is above `transaction.max.timeout.ms` or not positive.
    #[error("invalid transaction timeout")]
    InvalidTransactionTimeout,
    /// Markers of the previous transaction are still being written: retry.
    #[error("concurrent transactions")]
    ConcurrentTransactions,
    /// The transactional id is unknown (never initialised).
    #[error("transactional id not found")]
    TransactionalIdNotFound,
    /// The transactional id is empty.
    #[error("invalid transactional id")]
    InvalidTransactionalId,
    /// A transactional batch for a partition that is not in the producer's transaction.
    #[error("partition not added to the transaction")]
    PartitionNotInTransaction,
    /// Cluster mode: this broker does not hold the lease of the transactional id's
    /// coordinator shard (or has not taken it over yet): the client finds the coordinator
    /// again.
    #[error("not the coordinator of this transactional id")]
    NotCoordinator,
}

/// Result alias for the engine.
pub type TxnResult<T> = std::result::Result<T, TxnError>;

/// The durable state of one transactional id (what `__transaction_state` stores).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnMetadata {
    /// The producer id the transactional id owns.
    pub producer_id: i64,
    /// Its current epoch.
    pub producer_epoch: i16,
    /// The epoch before the last bump by the coordinator (timeout or fencing), -1 if none: a
    /// producer that still holds it may re-initialise (KIP-360).
    pub last_producer_epoch: i16,
    /// `transaction.timeout.ms` of the producer.
    pub timeout_ms: i32,
    /// State.
    pub state: TxnState,
    /// Partitions of the current (or last) transaction.
    pub partitions: BTreeSet<(String, i32)>,
    /// Consumer groups whose offsets the current transaction commits.
    pub groups: BTreeSet<String>,
    /// When the current transaction started (ms), -1 if none.
    pub start_ms: i64,
    /// Last change (ms).
    pub updated_ms: i64,
}

/// What InitProducerId must do for an existing transactional id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitPlan {
    /// Abort the open transaction first (with the epoch bumped, fencing its producer), then
    /// bump again for the new producer.
    AbortThenBump,
    /// Bump the epoch (or take a new producer id if the epoch is exhausted).
    Bump,
}

/// How a request's `(producer_id, epoch)` relates to the metadata.
fn check_producer(m: &TxnMetadata, producer_id: i64, epoch: i16) -> TxnResult<()> {
    if producer_id != m.producer_id {
        return Err(TxnError::InvalidProducerIdMapping);
    }
    if epoch != m.producer_epoch {
        return Err(TxnError::ProducerFenced);
    }
    Ok(())
}

impl TxnMetadata {
    /// A fresh id owning `producer_id` at epoch 0.
    pub fn new(producer_id: i64, timeout_ms: i32, now: i64) -> Self {
        TxnMetadata {
            producer_id,
            producer_epoch: 0,
            last_producer_epoch: -1,
            timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            groups: BTreeSet::new(),
            start_ms: -1,
            updated_ms: now,
        }
    }

    /// InitProducerId on an existing id. `expected` is the `(producer_id, epoch)` the client
    /// sent when it re-initialises itself (KIP-360), `None` for a new producer.
    pub fn plan_init(&self, expected: Option<(i64, i16)>) -> TxnResult<InitPlan> {
        if self.state.is_prepare() {
            return Err(TxnError::ConcurrentTransactions);
        }
        if let Some((pid, epoch)) = expected {
            let current = pid == self.producer_id
                && (epoch == self.producer_epoch
                    || (self.last_producer_epoch >= 0 && epoch == self.last_producer_epoch));
            if !current {
                return Err(TxnError::ProducerFenced);
            }
        }
        Ok(if self.state == TxnState::Ongoing {
            InitPlan::AbortThenBump
        } else {
            InitPlan::Bump
        })
    }

    /// Whether the epoch cannot be bumped again (a new producer id is needed).
    pub fn epoch_exhausted(&self) -> bool {
        self.producer_epoch >= i16::MAX - 1
    }

    /// Bumps the epoch for a (re-)initialised producer: `new_producer_id` is used when the
    /// epoch is exhausted. The previous transaction's partitions are forgotten.
    pub fn bump_for_init(&mut self, new_producer_id: Option<i64>, timeout_ms: i32, now: i64) {
        match new_producer_id {
            Some(pid) => {
                self.producer_id = pid;
                self.producer_epoch = 0;
            }
            None => self.producer_epoch += 1,
        }
        self.last_producer_epoch = -1;
        self.timeout_ms = timeout_ms;
        self.state = TxnState::Empty;
        self.partitions.clear();
        self.groups.clear();
        self.start_ms = -1;
        self.updated_ms = now;
    }

    /// AddPartitionsToTxn / AddOffsetsToTxn: checks and says whether anything changes. The
    /// caller then applies [`TxnMetadata::add`].
    pub fn check_add(&self, producer_id: i64, epoch: i16) -> TxnResult<()> {
        check_producer(self, producer_id, epoch)?;
        if self.state.is_prepare() {
            return Err(TxnError::ConcurrentTransactions);
        }
        Ok(())
    }

    /// Adds partitions and groups to the (possibly new) transaction; returns whether the
    /// metadata changed (and must be persisted).
    pub fn add(&mut self, partitions: &[(String, i32)], group: Option<&str>, now: i64) -> bool {
        let mut changed = false;
        if self.state != TxnState::Ongoing {
            self.state = TxnState::Ongoing;
            self.partitions.clear();
            self.groups.clear();
            self.start_ms = now;
            changed = true;
        }
        for tp in partitions {
            changed |= self.partitions.insert(tp.clone());
        }
        if let Some(g) = group {
            changed |= self.groups.insert(g.to_owned());
        }
        if changed {
            self.updated_ms = now;
        }
        changed
    }

    /// EndTxn: `Ok(true)` to go to the prepare state and write markers, `Ok(false)` when the
    /// request is a retry of an ending that already completed.
    pub fn check_end(&self, producer_id: i64, epoch: i16, commit: bool) -> TxnResult<bool> {
        if producer_id != self.producer_id {
            return Err(TxnError::InvalidProducerIdMapping);
        }
        // A producer whose transaction the coordinator aborted (timeout) still holds the old
        // epoch: its abort is answered as done, as Kafka does, and it re-initialises.
        let bumped_by_us = self.last_producer_epoch >= 0 && epoch == self.last_producer_epoch;
        let answered_abort = bumped_by_us && !commit;
        if epoch != self.producer_epoch && !answered_abort {
            return Err(TxnError::ProducerFenced);
        }
        match (self.state, commit) {
            (TxnState::Ongoing, _) if epoch == self.producer_epoch => Ok(true),
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => Ok(false),
            (TxnState::PrepareCommit | TxnState::PrepareAbort, _) => {
                Err(TxnError::ConcurrentTransactions)
            }
            _ => Err(TxnError::InvalidTxnState),
        }
    }

    /// Enters the prepare state of `commit`; with `bump_epoch` (timeout, fencing) the epoch is
    /// raised first, so the markers fence the producer that held the old one.
    pub fn prepare(&mut self, commit: bool, bump_epoch: bool, now: i64) {
        if bump_epoch && !self.epoch_exhausted() {
            self.last_producer_epoch = self.producer_epoch;
            self.producer_epoch += 1;
        }
        self.state = if commit {
            TxnState::PrepareCommit
        } else {
            TxnState::PrepareAbort
        };
        self.updated_ms = now;
    }

    /// The markers are written: the transaction is complete.
    pub fn complete(&mut self, now: i64) {
        self.state = match self.state {
            TxnState::PrepareCommit => TxnState::CompleteCommit,
            TxnState::PrepareAbort => TxnState::CompleteAbort,
            other => other,
        };
        self.updated_ms = now;
    }

    /// Whether an open transaction has outlived its timeout at `now`.
    pub fn timed_out(&self, now: i64) -> bool {
        self.state == TxnState::Ongoing
            && self.start_ms >= 0
            && now.saturating_sub(self.start_ms) > i64::from(self.timeout_ms)
    }

    /// A transactional produce to `(topic, partition)` by `(producer_id, epoch)`.
    pub fn check_produce(
        &self,
        producer_id: i64,
        epoch: i16,
        topic: &str,
        partition: i32,
    ) -> TxnResult<()> {
        if producer_id != self.producer_id {
            return Err(TxnError::InvalidProducerIdMapping);
        }
        if epoch < self.producer_epoch {
            return Err(TxnError::ProducerFenced);
        }
        let added = self
            .partitions
            .iter()
            .any(|(t, p)| t == topic && *p == partition);
        if self.state != TxnState::Ongoing || !added {
            return Err(TxnError::PartitionNotInTransaction);
        }
        Ok(())
    }

    /// TxnOffsetCommit for `group` by `(producer_id, epoch)`.
    pub fn check_offset_commit(&self, producer_id: i64, epoch: i16, group: &str) -> TxnResult<()> {
        check_producer(self, producer_id, epoch)?;
        if self.state != TxnState::Ongoing || !self.groups.contains(group) {
            return Err(TxnError::InvalidTxnState);
        }
        Ok(())
    }
}

/// Validates a requested transaction timeout.
pub fn check_timeout(timeout_ms: i32) -> TxnResult<()> {
    if timeout_ms <= 0 || timeout_ms > MAX_TRANSACTION_TIMEOUT_MS {
        return Err(TxnError::InvalidTransactionTimeout);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(p: i32) -> (String, i32) {
        ("t".to_owned(), p)
    }

    #[test]
    fn a_transaction_commits_and_a_retry_of_the_commit_is_answered() {
        let mut m = TxnMetadata::new(7, 60_000, 0);
        assert_eq!(m.check_end(7, 0, true), Err(TxnError::InvalidTxnState));
        m.check_add(7, 0).unwrap();
        assert!(m.add(&[tp(0), tp(1)], None, 5));
        assert!(
            !m.add(&[tp(1)], None, 6),
            "adding a partition twice changes nothing"
        );
        assert!(m.add(&[], Some("g"), 7));
        assert_eq!(m.check_produce(7, 0, "t", 1), Ok(()));
        assert_eq!(
            m.check_produce(7, 0, "t", 2),
            Err(TxnError::PartitionNotInTransaction)
        );
        assert_eq!(m.check_offset_commit(7, 0, "g"), Ok(()));
        assert_eq!(
            m.check_offset_commit(7, 0, "h"),
            Err(TxnError::InvalidTxnState)
        );
        assert_eq!(m.check_end(7, 0, true), Ok(true));
        m.prepare(true, false, 8);
        assert_eq!(m.check_add(7, 0), Err(TxnError::ConcurrentTransactions));
        assert_eq!(m.plan_init(None), Err(TxnError::ConcurrentTransactions));
        m.complete(9);
        assert_eq!(m.state, TxnState::CompleteCommit);
        assert_eq!(m.check_end(7, 0, true), Ok(false));
        assert_eq!(m.check_end(7, 0, false), Err(TxnError::InvalidTxnState));
        // The next transaction starts from scratch.
        assert!(m.add(&[tp(2)], None, 10));
        assert_eq!(m.partitions.len(), 1);
        assert_eq!(m.start_ms, 10);
    }

    #[test]
    fn wrong_producers_are_refused() {
        let m = TxnMetadata::new(7, 60_000, 0);
        assert_eq!(m.check_add(8, 0), Err(TxnError::InvalidProducerIdMapping));
        assert_eq!(m.check_add(7, 1), Err(TxnError::ProducerFenced));
        assert_eq!(
            m.check_end(8, 0, true),
            Err(TxnError::InvalidProducerIdMapping)
        );
        assert_eq!(m.plan_init(Some((8, 0))), Err(TxnError::ProducerFenced));
        assert_eq!(m.plan_init(Some((7, 0))), Ok(InitPlan::Bump));
    }

    #[test]
    fn a_timeout_bumps_the_epoch_and_the_old_producer_may_reinitialise() {
        let mut m = TxnMetadata::new(7, 1_000, 0);
        m.add(&[tp(0)], None, 100);
        assert!(!m.timed_out(1_100));
        assert!(m.timed_out(1_101));
        m.prepare(false, true, 1_101);
        m.complete(1_102);
        assert_eq!((m.producer_epoch, m.last_producer_epoch), (1, 0));
        // The zombie's produce and commit are fenced, its abort is answered.
        assert_eq!(m.check_produce(7, 0, "t", 0), Err(TxnError::ProducerFenced));
        assert_eq!(m.check_end(7, 0, true), Err(TxnError::ProducerFenced));
        assert_eq!(m.check_end(7, 0, false), Ok(false));
        assert_eq!(m.plan_init(Some((7, 0))), Ok(InitPlan::Bump));
        m.bump_for_init(None, 1_000, 2_000);
        assert_eq!((m.producer_epoch, m.last_producer_epoch), (2, -1));
        assert_eq!(m.plan_init(Some((7, 0))), Err(TxnError::ProducerFenced));
    }

    #[test]
    fn a_new_producer_fences_an_open_transaction() {
        let mut m = TxnMetadata::new(7, 60_000, 0);
        m.add(&[tp(0)], None, 1);
        assert_eq!(m.plan_init(None), Ok(InitPlan::AbortThenBump));
        let mut exhausted = TxnMetadata::new(7, 60_000, 0);
        exhausted.producer_epoch = i16::MAX - 1;
        assert!(exhausted.epoch_exhausted());
        exhausted.bump_for_init(Some(9), 60_000, 1);
        assert_eq!((exhausted.producer_id, exhausted.producer_epoch), (9, 0));
    }

    #[test]
    fn timeouts_are_bounded() {
        assert!(check_timeout(60_000).is_ok());
        assert_eq!(check_timeout(0), Err(TxnError::InvalidTransactionTimeout));
        assert_eq!(
            check_timeout(MAX_TRANSACTION_TIMEOUT_MS + 1),
            Err(TxnError::InvalidTransactionTimeout)
        );
    }
}
