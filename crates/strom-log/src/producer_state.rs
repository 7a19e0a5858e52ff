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
//! This module is a pure data structure: no I/O. The log persists it with
//! [`ProducerStateManager::encode`] into `<offset>.snapshot` files and rebuilds it on open from
//! the latest snapshot plus a header-only scan of the batches after it.

use std::collections::{BTreeMap, VecDeque};

use crate::{Error, Result};

/// How many batches per producer are remembered for duplicate detection: Kafka's limit, which
/// matches the largest `max.in.flight.requests.per.connection` an idempotent producer may use.
pub const MAX_CACHED_BATCHES: usize = 5;

const SNAPSHOT_VERSION: u16 = 1;
const ENTRY_HEADER_LEN: usize = 8 + 2 + 8 + 1;
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

/// The idempotent-producer state of one partition, keyed by producer id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerStateManager {
    producers: BTreeMap<i64, ProducerEntry>,
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

    /// Copies the entries of `producer_ids` (for checking a multi-batch append without
    /// touching the real state until the write succeeded).
    pub fn subset(&self, producer_ids: impl IntoIterator<Item = i64>) -> Self {
        let mut out = Self::default();
        for id in producer_ids {
            if let Some(e) = self.producers.get(&id) {
                out.producers.insert(id, e.clone());
            }
        }
        out
    }

    /// Replaces this state's entries by those of `other` (the counterpart of [`Self::subset`]).
    pub fn merge(&mut self, other: Self) {
        self.producers.extend(other.producers);
    }

    /// Forgets producers whose last batch is older than `expiration_ms` at `now_ms` (Kafka's
    /// `producer.id.expiration.ms`). Returns how many were removed.
    pub fn expire(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers
            .retain(|_, e| now_ms.saturating_sub(e.last_timestamp) < expiration_ms);
        before - self.producers.len()
    }

    /// The snapshot file's bytes: version (u16), producer count (u32), then per producer its
    /// id (i64), epoch (i16), last timestamp (i64), batch count (u8) and batches (first and
    /// last sequence i32, first and last offset i64, timestamp i64), then a CRC-32C (u32) of
    /// everything before it. Big-endian.
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
        if r.u16()? != SNAPSHOT_VERSION {
            return Err("unknown version");
        }
        let count = r.u32()?;
        let mut producers = BTreeMap::new();
        for _ in 0..count {
            let id = r.i64()?;
            let epoch = r.i16()?;
            let last_timestamp = r.i64()?;
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
                },
            );
        }
        if !r.0.is_empty() {
            return Err("trailing bytes");
        }
        Ok(ProducerStateManager { producers })
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
