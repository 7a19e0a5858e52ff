//! Idempotent-producer state of one partition: Kafka's `ProducerStateManager`.
//!
//! For every producer id seen in the log it keeps the producer epoch and the metadata of the
//! producer's last [`MAX_CACHED_BATCHES`] batches (sequence range, offset range, timestamp).
//! [`crate::PartitionLog::append`] consults it under the writer lock, before offsets are
//! assigned, for every batch with a producer id `>= 0`:
//!
//! - an epoch below the known one is fenced ([`Error::ProducerFenced`]);
//! - a batch whose `(first_seq, last_seq)` equals a cached one is a duplicate (a retry whose
//!   answer was lost): it is not written again and the append answers with the original
//!   offsets ([`SequenceCheck::Duplicate`]);
//! - in the same epoch the first sequence must follow the last one (`last + 1`, wrapping from
//!   `i32::MAX` to 0), and a higher epoch must start at sequence 0, else
//!   [`Error::OutOfOrderSequence`];
//! - an unknown producer id is accepted at any sequence (as Kafka does since KIP-360: its
//!   state may have been expired or removed with old segments).
//!
//! Transactions (KIP-98): a transactional data batch of a producer with no open transaction
//! opens one at its first offset ([`ProducerStateManager::begin_txn`]); a transaction marker
//! closes it ([`ProducerStateManager::complete_txn`]), fencing markers of an older epoch and
//! taking the epoch of a newer one. While a producer's transaction is open, a
//! non-transactional batch of it is refused ([`Error::InvalidTxnState`]).
//!
//! This module is a pure data structure: no I/O. The log persists it with
//! [`ProducerStateManager::encode`] into `<offset>.snapshot` files and rebuilds it on open from
//! the latest snapshot plus a scan of the batches after it (headers, and the marker record of
//! control batches).

use std::collections::{BTreeMap, VecDeque};

use strom_record::ControlType;

use crate::{Error, Result};

/// How many batches per producer are remembered for duplicate detection: Kafka's limit, which
/// matches the largest `max.in.flight.requests.per.connection` an idempotent producer may use.
pub const MAX_CACHED_BATCHES: usize = 5;

/// The snapshot version written; version 1 (no transaction fields) is still read.
const SNAPSHOT_VERSION: u16 = 2;
const SNAPSHOT_VERSION_1: u16 = 1;
const ENTRY_HEADER_LEN: usize = 8 + 2 + 8 + 4 + 8 + 1;
const BATCH_LEN: usize = 4 + 4 + 8 + 8 + 8;

/// What the log stored for one producer batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMetadata {
    /// Sequence number of the first record.
    pub first_seq: i32,
    /// Sequence number of the last record.
    pub last_seq: i32,
    /// Offset of the first record.
    pub first_offset: i64,
    /// Offset of the last record.
    pub last_offset: i64,
    /// Largest timestamp of the batch (as stored: the append time for `LogAppendTime`).
    pub timestamp: i64,
}

/// One producer's state in a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerEntry {
    /// The producer epoch of the last batch.
    pub epoch: i16,
    /// The last batches of `epoch`, oldest first, at most [`MAX_CACHED_BATCHES`].
    batches: VecDeque<BatchMetadata>,
    /// Timestamp of the producer's last batch; expiration counts from it.
    pub last_timestamp: i64,
    /// Coordinator epoch of the last transaction marker, `-1` if none was seen.
    pub coordinator_epoch: i32,
    /// First offset of the producer's open transaction in this partition, if one is open.
    pub current_txn_first_offset: Option<i64>,
}

impl ProducerEntry {
    /// The cached batches, oldest first.
    pub fn batches(&self) -> impl Iterator<Item = &BatchMetadata> {
        self.batches.iter()
    }

    /// Last sequence number written, if any batch is cached.
    pub fn last_seq(&self) -> Option<i32> {
        self.batches.back().map(|b| b.last_seq)
    }
}

/// The verdict on a producer batch that may be appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Write it.
    Append,
    /// Already written: answer with these offsets and do not write again.
    Duplicate(BatchMetadata),
}

/// A transaction that a marker ended (only non-empty transactions: a marker of a producer
/// with no open transaction completes nothing, as in Kafka).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompletedTxn {
    /// The producer.
    pub producer_id: i64,
    /// Offset of the transaction's first record in this partition.
    pub first_offset: i64,
    /// Offset of the marker.
    pub last_offset: i64,
    /// Whether the marker was an abort.
    pub aborted: bool,
    /// The last stable offset right after the marker (Kafka's definition for the `.txnindex`):
    /// the first offset of the earliest transaction still open, else `last_offset + 1`.
    pub last_stable_offset: i64,
}

/// The idempotent-producer and transaction state of one partition, keyed by producer id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerStateManager {
    producers: BTreeMap<i64, ProducerEntry>,
    /// Open transactions: first offset → producer id (first offsets are distinct).
    ongoing: BTreeMap<i64, i64>,
}

/// The sequence number `delta` records after `seq`, wrapping from `i32::MAX` to 0 as Kafka
/// producers do.
pub fn increment_sequence(seq: i32, delta: i32) -> i32 {
    let next = i64::from(seq) + i64::from(delta);
    if next > i64::from(i32::MAX) {
        // In range: `next - (i32::MAX + 1)` is below `delta`, itself an i32.
        i32::try_from(next - i64::from(i32::MAX) - 1).unwrap_or(0)
    } else {
        i32::try_from(next).unwrap_or(0)
    }
}

fn in_sequence(last_seq: i32, next_seq: i32) -> bool {
    i64::from(next_seq) == i64::from(last_seq) + 1 || (next_seq == 0 && last_seq == i32::MAX)
}

impl ProducerStateManager {
    /// An empty state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of producers tracked.
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    /// Whether no producer is tracked.
    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// The state of `producer_id`, if known.
    pub fn get(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    /// Every tracked producer, by id.
    pub fn iter(&self) -> impl Iterator<Item = (i64, &ProducerEntry)> {
        self.producers.iter().map(|(id, e)| (*id, e))
    }

    /// The open transactions as `(first_offset, producer_id)`, earliest first.
    pub fn ongoing(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.ongoing.iter().map(|(first, pid)| (*first, *pid))
    }

    /// First offset of the earliest open transaction.
    pub fn first_ongoing_offset(&self) -> Option<i64> {
        self.ongoing.keys().next().copied()
    }

    /// Refuses a non-transactional batch of a producer whose transaction is open (Kafka's
    /// `INVALID_TXN_STATE`).
    pub fn check_txn_state(&self, producer_id: i64, transactional: bool) -> Result<()> {
        match self.producers.get(&producer_id) {
            Some(e) if !transactional && e.current_txn_first_offset.is_some() => {
                Err(Error::InvalidTxnState {
                    producer_id,
                    reason: "a non-transactional batch while its transaction is open",
                })
            }
            _ => Ok(()),
        }
    }

    /// Opens a transaction of `producer_id` at `first_offset` unless one is open (call after
    /// [`Self::update`] for a transactional data batch).
    pub fn begin_txn(&mut self, producer_id: i64, first_offset: i64) {
        if let Some(e) = self.producers.get_mut(&producer_id)
            && e.current_txn_first_offset.is_none()
        {
            e.current_txn_first_offset = Some(first_offset);
            self.ongoing.insert(first_offset, producer_id);
        }
    }

    /// Applies a transaction marker of `producer_id`/`epoch` at `offset`: an epoch below the
    /// known one is fenced ([`Error::ProducerFenced`]); a higher one becomes the producer's
    /// epoch (the coordinator bumps it when it aborts a timed-out or fenced transaction). Closes
    /// the open transaction, if any, and returns it.
    pub fn complete_txn(
        &mut self,
        producer_id: i64,
        epoch: i16,
        control_type: ControlType,
        coordinator_epoch: i32,
        offset: i64,
        timestamp: i64,
    ) -> Result<Option<CompletedTxn>> {
        let entry = self
            .producers
            .entry(producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch,
                batches: VecDeque::new(),
                last_timestamp: timestamp,
                coordinator_epoch,
                current_txn_first_offset: None,
            });
        if epoch < entry.epoch {
            return Err(Error::ProducerFenced {
                producer_id,
                epoch,
                current_epoch: entry.epoch,
            });
        }
        if epoch > entry.epoch {
            entry.epoch = epoch;
            entry.batches.clear();
        }
        entry.coordinator_epoch = coordinator_epoch;
        entry.last_timestamp = entry.last_timestamp.max(timestamp);
        let Some(first_offset) = entry.current_txn_first_offset.take() else {
            return Ok(None);
        };
        self.ongoing.remove(&first_offset);
        Ok(Some(CompletedTxn {
            producer_id,
            first_offset,
            last_offset: offset,
            aborted: control_type == ControlType::Abort,
            last_stable_offset: self.first_ongoing_offset().unwrap_or(offset + 1),
        }))
    }

    /// Decides whether a batch of `producer_id`/`epoch` carrying sequences
    /// `first_seq..=last_seq` may be appended.
    pub fn check(
        &self,
        producer_id: i64,
        epoch: i16,
        first_seq: i32,
        last_seq: i32,
    ) -> Result<SequenceCheck> {
        let Some(entry) = self.producers.get(&producer_id) else {
            if first_seq < 0 {
                return Err(Error::OutOfOrderSequence {
                    producer_id,
                    epoch,
                    expected: 0,
                    found: first_seq,
                });
            }
            return Ok(SequenceCheck::Append);
        };
        if epoch < entry.epoch {
            return Err(Error::ProducerFenced {
                producer_id,
                epoch,
                current_epoch: entry.epoch,
            });
        }
        if epoch > entry.epoch {
            if first_seq != 0 {
                return Err(Error::OutOfOrderSequence {
                    producer_id,
                    epoch,
                    expected: 0,
                    found: first_seq,
                });
            }
            return Ok(SequenceCheck::Append);
        }
        if let Some(dup) = entry
            .batches
            .iter()
            .find(|b| b.first_seq == first_seq && b.last_seq == last_seq)
        {
            return Ok(SequenceCheck::Duplicate(*dup));
        }
        match entry.last_seq() {
            Some(last) if !in_sequence(last, first_seq) => Err(Error::OutOfOrderSequence {
                producer_id,
                epoch,
                expected: increment_sequence(last, 1),
                found: first_seq,
            }),
            // The epoch came from a transaction marker (the coordinator bumped it when it
            // aborted): no batch of it exists yet, so it starts at 0, as a new epoch does.
            None if first_seq != 0 => Err(Error::OutOfOrderSequence {
                producer_id,
                epoch,
                expected: 0,
                found: first_seq,
            }),
            _ => Ok(SequenceCheck::Append),
        }
    }

    /// Records a batch written for `producer_id`/`epoch`. A new epoch forgets the batches of
    /// the old one.
    pub fn update(&mut self, producer_id: i64, epoch: i16, batch: BatchMetadata) {
        let entry = self
            .producers
            .entry(producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch,
                batches: VecDeque::with_capacity(MAX_CACHED_BATCHES),
                last_timestamp: batch.timestamp,
                coordinator_epoch: -1,
                current_txn_first_offset: None,
            });
        if entry.epoch != epoch {
            entry.epoch = epoch;
            entry.batches.clear();
        }
        if entry.batches.len() >= MAX_CACHED_BATCHES {
            entry.batches.pop_front();
        }
        entry.batches.push_back(batch);
        entry.last_timestamp = entry.last_timestamp.max(batch.timestamp);
    }

    /// Copies the entries of `producer_ids` and every open transaction (for checking a
    /// multi-batch append without touching the real state until the write succeeded).
    pub fn subset(&self, producer_ids: impl IntoIterator<Item = i64>) -> Self {
        let mut out = Self {
            producers: BTreeMap::new(),
            ongoing: self.ongoing.clone(),
        };
        for id in producer_ids {
            if let Some(e) = self.producers.get(&id) {
                out.producers.insert(id, e.clone());
            }
        }
        out
    }

    /// Replaces this state's entries by those of `other` and its open transactions by
    /// `other`'s (the counterpart of [`Self::subset`]: `other` must come from `subset` of this
    /// unchanged state).
    pub fn merge(&mut self, other: Self) {
        self.producers.extend(other.producers);
        self.ongoing = other.ongoing;
    }

    /// Forgets producers whose last batch is older than `expiration_ms` at `now_ms` (Kafka's
    /// `producer.id.expiration.ms`), except those with an open transaction. Returns how many
    /// were removed.
    pub fn expire(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers.retain(|_, e| {
            e.current_txn_first_offset.is_some()
                || now_ms.saturating_sub(e.last_timestamp) < expiration_ms
        });
        before - self.producers.len()
    }

    /// The snapshot file's bytes: version (u16, 2), producer count (u32), then per producer
    /// its id (i64), epoch (i16), last timestamp (i64), coordinator epoch (i32), first offset
    /// of its open transaction (i64, `-1` if none), batch count (u8) and batches (first and
    /// last sequence i32, first and last offset i64, timestamp i64), then a CRC-32C (u32) of
    /// everything before it. Big-endian. Version 1 lacked the two transaction fields.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            6 + self.producers.len() * (ENTRY_HEADER_LEN + MAX_CACHED_BATCHES * BATCH_LEN) + 4,
        );
        out.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
        out.extend_from_slice(
            &u32::try_from(self.producers.len())
                .unwrap_or(0)
                .to_be_bytes(),
        );
        for (id, e) in &self.producers {
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&e.epoch.to_be_bytes());
            out.extend_from_slice(&e.last_timestamp.to_be_bytes());
            out.extend_from_slice(&e.coordinator_epoch.to_be_bytes());
            out.extend_from_slice(&e.current_txn_first_offset.unwrap_or(-1).to_be_bytes());
            out.push(u8::try_from(e.batches.len()).unwrap_or(0));
            for b in &e.batches {
                out.extend_from_slice(&b.first_seq.to_be_bytes());
                out.extend_from_slice(&b.last_seq.to_be_bytes());
                out.extend_from_slice(&b.first_offset.to_be_bytes());
                out.extend_from_slice(&b.last_offset.to_be_bytes());
                out.extend_from_slice(&b.timestamp.to_be_bytes());
            }
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    /// Parses [`Self::encode`]'s output; `Err` names what is wrong.
    pub fn decode(buf: &[u8]) -> std::result::Result<Self, &'static str> {
        let split = buf
            .len()
            .checked_sub(4)
            .ok_or("shorter than its checksum")?;
        let (body, crc) = buf.split_at(split);
        let stored = u32::from_be_bytes(crc.try_into().map_err(|_| "short checksum")?);
        if crc32c::crc32c(body) != stored {
            return Err("checksum mismatch");
        }
        let mut r = Reader(body);
        let version = r.u16()?;
        if version != SNAPSHOT_VERSION && version != SNAPSHOT_VERSION_1 {
            return Err("unknown version");
        }
        let count = r.u32()?;
        let mut producers = BTreeMap::new();
        let mut ongoing = BTreeMap::new();
        for _ in 0..count {
            let id = r.i64()?;
            let epoch = r.i16()?;
            let last_timestamp = r.i64()?;
            let (coordinator_epoch, txn_first) = if version == SNAPSHOT_VERSION_1 {
                (-1, -1)
            } else {
                (r.i32()?, r.i64()?)
            };
            let current_txn_first_offset = (txn_first >= 0).then_some(txn_first);
            if let Some(first) = current_txn_first_offset
                && ongoing.insert(first, id).is_some()
            {
                return Err("two open transactions at one offset");
            }
            let n = usize::from(r.u8()?);
            if n > MAX_CACHED_BATCHES {
                return Err("too many batches for a producer");
            }
            let mut batches = VecDeque::with_capacity(n);
            for _ in 0..n {
                batches.push_back(BatchMetadata {
                    first_seq: r.i32()?,
                    last_seq: r.i32()?,
                    first_offset: r.i64()?,
                    last_offset: r.i64()?,
                    timestamp: r.i64()?,
                });
            }
            producers.insert(
                id,
                ProducerEntry {
                    epoch,
                    batches,
                    last_timestamp,
                    coordinator_epoch,
                    current_txn_first_offset,
                },
            );
        }
        if !r.0.is_empty() {
            return Err("trailing bytes");
        }
        Ok(ProducerStateManager { producers, ongoing })
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> std::result::Result<[u8; N], &'static str> {
        let (head, rest) = self.0.split_at_checked(N).ok_or("truncated")?;
        self.0 = rest;
        head.try_into().map_err(|_| "truncated")
    }
    fn u8(&mut self) -> std::result::Result<u8, &'static str> {
        Ok(u8::from_be_bytes(self.take()?))
    }
    fn u16(&mut self) -> std::result::Result<u16, &'static str> {
        Ok(u16::from_be_bytes(self.take()?))
    }
    fn i16(&mut self) -> std::result::Result<i16, &'static str> {
        Ok(i16::from_be_bytes(self.take()?))
    }
    fn u32(&mut self) -> std::result::Result<u32, &'static str> {
        Ok(u32::from_be_bytes(self.take()?))
    }
    fn i32(&mut self) -> std::result::Result<i32, &'static str> {
        Ok(i32::from_be_bytes(self.take()?))
    }
    fn i64(&mut self) -> std::result::Result<i64, &'static str> {
        Ok(i64::from_be_bytes(self.take()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn meta(first_seq: i32, last_seq: i32, first_offset: i64) -> BatchMetadata {
        BatchMetadata {
            first_seq,
            last_seq,
            first_offset,
            last_offset: first_offset + i64::from(last_seq - first_seq),
            timestamp: 1000,
        }
    }

    #[test]
    fn unknown_producer_accepts_any_sequence() {
        let s = ProducerStateManager::new();
        assert_eq!(s.check(7, 0, 42, 45).unwrap(), SequenceCheck::Append);
        assert!(matches!(
            s.check(7, 0, -1, -1),
            Err(Error::OutOfOrderSequence { .. })
        ));
    }

    #[test]
    fn in_order_duplicate_gap_and_fencing() {
        let mut s = ProducerStateManager::new();
        s.update(1, 0, meta(0, 4, 10));
        assert_eq!(s.check(1, 0, 5, 9).unwrap(), SequenceCheck::Append);
        assert_eq!(
            s.check(1, 0, 0, 4).unwrap(),
            SequenceCheck::Duplicate(meta(0, 4, 10))
        );
        assert!(matches!(
            s.check(1, 0, 6, 9),
            Err(Error::OutOfOrderSequence {
                expected: 5,
                found: 6,
                ..
            })
        ));
        // A retry with the same first sequence but another length is not a duplicate.
        assert!(matches!(
            s.check(1, 0, 0, 3),
            Err(Error::OutOfOrderSequence { .. })
        ));
        s.update(1, 2, meta(0, 0, 20));
        assert!(matches!(
            s.check(1, 1, 1, 1),
            Err(Error::ProducerFenced {
                epoch: 1,
                current_epoch: 2,
                ..
            })
        ));
        assert!(matches!(
            s.check(1, 3, 1, 1),
            Err(Error::OutOfOrderSequence { expected: 0, .. })
        ));
        assert_eq!(s.check(1, 3, 0, 0).unwrap(), SequenceCheck::Append);
    }

    #[test]
    fn new_epoch_forgets_old_batches() {
        let mut s = ProducerStateManager::new();
        s.update(1, 0, meta(0, 0, 0));
        s.update(1, 1, meta(0, 0, 1));
        assert_eq!(s.get(1).unwrap().batches().count(), 1);
        assert_eq!(s.get(1).unwrap().epoch, 1);
    }

    #[test]
    fn an_epoch_bumped_by_a_marker_starts_at_sequence_zero() {
        let mut s = ProducerStateManager::new();
        s.update(1, 0, meta(0, 4, 10));
        // The coordinator aborts with a bumped epoch: the marker carries epoch 1.
        s.complete_txn(1, 1, ControlType::Abort, 0, 11, 0).unwrap();
        assert!(matches!(
            s.check(1, 1, 5, 5),
            Err(Error::OutOfOrderSequence {
                expected: 0,
                found: 5,
                ..
            })
        ));
        assert_eq!(s.check(1, 1, 0, 3).unwrap(), SequenceCheck::Append);
        // Within an epoch, a marker that does not bump keeps the sequence going.
        s.update(1, 1, meta(0, 3, 12));
        s.complete_txn(1, 1, ControlType::Commit, 0, 13, 0).unwrap();
        assert!(s.check(1, 1, 0, 0).is_err());
        assert_eq!(s.check(1, 1, 4, 4).unwrap(), SequenceCheck::Append);
    }

    #[test]
    fn only_the_last_five_batches_are_duplicates() {
        let mut s = ProducerStateManager::new();
        for i in 0..7 {
            s.update(1, 0, meta(i, i, i64::from(i)));
        }
        assert!(s.check(1, 0, 1, 1).is_err());
        for i in 2..7 {
            assert_eq!(
                s.check(1, 0, i, i).unwrap(),
                SequenceCheck::Duplicate(meta(i, i, i64::from(i)))
            );
        }
    }

    #[test]
    fn sequence_wraps() {
        assert_eq!(increment_sequence(i32::MAX, 1), 0);
        assert_eq!(increment_sequence(i32::MAX - 1, 3), 1);
        let mut s = ProducerStateManager::new();
        s.update(1, 0, meta(i32::MAX - 1, i32::MAX, 0));
        assert_eq!(s.check(1, 0, 0, 4).unwrap(), SequenceCheck::Append);
    }

    #[test]
    fn expiration() {
        let mut s = ProducerStateManager::new();
        s.update(1, 0, meta(0, 0, 0));
        s.update(
            2,
            0,
            BatchMetadata {
                timestamp: 5000,
                ..meta(0, 0, 1)
            },
        );
        assert_eq!(s.expire(5999, 1000), 1);
        assert!(s.get(1).is_none() && s.get(2).is_some());
    }

    #[test]
    fn decode_rejects_damage() {
        let mut s = ProducerStateManager::new();
        s.update(1, 0, meta(0, 0, 0));
        let mut bytes = s.encode();
        assert_eq!(ProducerStateManager::decode(&bytes).unwrap(), s);
        bytes[8] ^= 1;
        assert!(ProducerStateManager::decode(&bytes).is_err());
        assert!(ProducerStateManager::decode(&[]).is_err());
    }

    #[test]
    fn transactions_open_complete_and_round_trip() {
        let mut s = ProducerStateManager::new();
        s.update(1, 0, meta(0, 0, 10));
        s.begin_txn(1, 10);
        s.update(2, 0, meta(0, 0, 11));
        s.begin_txn(2, 11);
        s.update(1, 0, meta(1, 1, 12));
        s.begin_txn(1, 12); // already open: stays at 10
        assert_eq!(s.first_ongoing_offset(), Some(10));
        assert!(matches!(
            s.check_txn_state(1, false),
            Err(Error::InvalidTxnState { .. })
        ));
        assert!(s.check_txn_state(1, true).is_ok() && s.check_txn_state(3, false).is_ok());
        let back = ProducerStateManager::decode(&s.encode()).unwrap();
        assert_eq!(back, s);
        let done = s
            .complete_txn(1, 0, ControlType::Abort, 4, 13, 1000)
            .unwrap()
            .unwrap();
        assert_eq!(
            done,
            CompletedTxn {
                producer_id: 1,
                first_offset: 10,
                last_offset: 13,
                aborted: true,
                last_stable_offset: 11,
            }
        );
        assert_eq!(s.get(1).unwrap().coordinator_epoch, 4);
        let done = s
            .complete_txn(2, 0, ControlType::Commit, 4, 14, 1000)
            .unwrap()
            .unwrap();
        assert_eq!((done.aborted, done.last_stable_offset), (false, 15));
        assert_eq!(
            s.complete_txn(2, 0, ControlType::Commit, 4, 15, 0).unwrap(),
            None
        );
        assert!(matches!(
            s.complete_txn(2, -1, ControlType::Abort, 4, 16, 0),
            Err(Error::ProducerFenced { .. })
        ));
        assert_eq!(s.first_ongoing_offset(), None);
    }

    #[test]
    fn open_transactions_do_not_expire_and_merge_keeps_them() {
        let mut s = ProducerStateManager::new();
        s.update(1, 0, meta(0, 0, 0));
        s.begin_txn(1, 0);
        s.update(2, 0, meta(0, 0, 1));
        assert_eq!(s.expire(1_000_000, 10), 1);
        assert!(s.get(1).is_some());
        let mut staged = s.subset([3]);
        staged.update(3, 0, meta(0, 0, 2));
        staged.begin_txn(3, 2);
        s.merge(staged);
        assert_eq!(s.ongoing().collect::<Vec<_>>(), vec![(0, 1), (2, 3)]);
    }

    #[test]
    fn version_1_snapshots_are_read() {
        let mut v1 = Vec::new();
        v1.extend_from_slice(&1u16.to_be_bytes());
        v1.extend_from_slice(&1u32.to_be_bytes());
        v1.extend_from_slice(&9i64.to_be_bytes());
        v1.extend_from_slice(&2i16.to_be_bytes());
        v1.extend_from_slice(&77i64.to_be_bytes());
        v1.push(1);
        for v in [3i32, 4] {
            v1.extend_from_slice(&v.to_be_bytes());
        }
        for v in [20i64, 21, 77] {
            v1.extend_from_slice(&v.to_be_bytes());
        }
        let crc = crc32c::crc32c(&v1);
        v1.extend_from_slice(&crc.to_be_bytes());
        let s = ProducerStateManager::decode(&v1).unwrap();
        let e = s.get(9).unwrap();
        assert_eq!((e.epoch, e.last_seq(), e.last_timestamp), (2, Some(4), 77));
        assert_eq!(
            (e.coordinator_epoch, e.current_txn_first_offset),
            (-1, None)
        );
        assert_eq!(u16::from_be_bytes([s.encode()[0], s.encode()[1]]), 2);
    }

    /// A producer's retries as the broker sees them: a batch number to (re)send.
    fn ops() -> impl Strategy<Value = Vec<(u8, u8, usize)>> {
        proptest::collection::vec((0u8..3, 1u8..4, 0usize..8), 1..60)
    }

    proptest! {
        /// Against a model that remembers every batch: a batch is appended only when it is
        /// the next in sequence, a resend of one of the last five is a duplicate with its
        /// original offsets, anything else is out of order; the state round-trips through a
        /// snapshot at every step.
        #[test]
        fn matches_model(ops in ops()) {
            let mut s = ProducerStateManager::new();
            // Per producer: (first_seq, last_seq, first_offset) of every batch written.
            let mut written: BTreeMap<i64, Vec<(i32, i32, i64)>> = BTreeMap::new();
            let mut next_offset = 0i64;
            for (pid, len, back) in ops {
                let pid = i64::from(pid);
                let w = written.entry(pid).or_default();
                let next_seq = w.last().map_or(0, |b| b.1 + 1);
                // `back == 0`: a new batch; otherwise resend the batch `back` from the end.
                let (first, last) = if back == 0 || back > w.len() {
                    (next_seq, next_seq + i32::from(len) - 1)
                } else {
                    let b = w[w.len() - back];
                    (b.0, b.1)
                };
                let verdict = s.check(pid, 0, first, last);
                if first == next_seq {
                    prop_assert_eq!(verdict.unwrap(), SequenceCheck::Append);
                    let m = BatchMetadata {
                        first_seq: first,
                        last_seq: last,
                        first_offset: next_offset,
                        last_offset: next_offset + i64::from(last - first),
                        timestamp: next_offset,
                    };
                    s.update(pid, 0, m);
                    w.push((first, last, next_offset));
                    next_offset = m.last_offset + 1;
                } else if back <= MAX_CACHED_BATCHES {
                    let b = w[w.len() - back];
                    match verdict.unwrap() {
                        SequenceCheck::Duplicate(m) => prop_assert_eq!(m.first_offset, b.2),
                        SequenceCheck::Append => prop_assert!(false, "resend appended"),
                    }
                } else {
                    let out_of_order = matches!(verdict, Err(Error::OutOfOrderSequence { .. }));
                    prop_assert!(out_of_order);
                }
                prop_assert_eq!(&ProducerStateManager::decode(&s.encode()).unwrap(), &s);
            }
        }
    }
}
