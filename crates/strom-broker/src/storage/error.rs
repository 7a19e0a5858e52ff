//! The storage layer's error, as the broker core and the front ends see it.
//!
//! Every storage backend maps its own failures into [`StorageError`] at one place (the local
//! backend in [`crate::storage::local`]), so that nothing above the seam matches on a
//! backend's error type: the Kafka and Kinesis front ends turn these kinds into their codes,
//! whichever backend produced them.

use std::sync::Arc;

/// What a storage operation can fail with, whatever the backend. `Clone`, so one failure can
/// be handed to every waiter of a group commit.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// A batch offered for append is malformed (bad CRC, bad header, bad records).
    #[error("invalid record batch: {0}")]
    InvalidBatch(#[from] strom_record::Error),
    /// Records without a key offered to a compacted partition (`cleanup.policy` includes
    /// `compact`); nothing of the payload was appended.
    #[error("{} record(s) without a key offered to a compacted partition", indexes.len())]
    KeylessRecords {
        /// Index of each keyless record in the payload (0-based, counting the records of
        /// every data batch in order; control batches are not counted).
        indexes: Vec<i32>,
    },
    /// A batch offered for append is larger than `max.message.bytes`.
    #[error("record batch of {size} bytes exceeds max.message.bytes {max}")]
    BatchTooLarge {
        /// Size of the offending batch.
        size: usize,
        /// The configured maximum.
        max: usize,
    },
    /// A read asked for an offset outside `[start, end]` (log start, high watermark).
    #[error("offset {requested} is out of range [{start}, {end}]")]
    OffsetOutOfRange {
        /// The offset asked for.
        requested: i64,
        /// The partition's log start offset when the read ran.
        start: i64,
        /// The partition's high watermark when the read ran.
        end: i64,
    },
    /// An offset argument is not acceptable for the operation (DeleteRecords past the end…).
    #[error("invalid offset {offset}: {reason}")]
    InvalidOffset {
        /// The offset given.
        offset: i64,
        /// Why it was refused.
        reason: &'static str,
    },
    /// The storage could not be reached or an I/O operation on it failed (a file write, a
    /// database or object-store call). Retriable from the client's point of view.
    #[error("{op} {resource}: {source}")]
    Unavailable {
        /// What was being done (`"write segment"`, `"fdatasync"`, `"commit batch index"`…).
        op: &'static str,
        /// What it was done on (a file path, an object name, a database).
        resource: String,
        /// The underlying failure.
        source: Arc<dyn std::error::Error + Send + Sync>,
    },
    /// An earlier failure left the partition's storage in an unknown state: it refuses writes
    /// until it is recovered (Kafka's storage error; fjall's `Poisoned`).
    #[error("the partition's storage is poisoned by an earlier failure and is being recovered")]
    Poisoned,
    /// The partition was closed (deleted, or the broker is shutting down) under the request.
    #[error("the partition is closed")]
    Closed,
    /// The partition is sealed in the shared store (a Kinesis shard closed by resharding,
    /// possibly through another broker): it takes no more data batches.
    #[error("the partition is sealed")]
    Sealed,
    /// A batch's producer epoch is older than the one the partition knows (Kafka's
    /// `INVALID_PRODUCER_EPOCH`).
    #[error("producer {producer_id} epoch {epoch} is fenced by epoch {current_epoch}")]
    ProducerFenced {
        /// The producer id.
        producer_id: i64,
        /// The epoch of the refused batch.
        epoch: i16,
        /// The epoch the partition knows.
        current_epoch: i16,
    },
    /// A batch's first sequence number does not follow the producer's last one (Kafka's
    /// `OUT_OF_ORDER_SEQUENCE_NUMBER`).
    #[error("producer {producer_id} epoch {epoch}: sequence {found}, expected {expected}")]
    OutOfOrderSequence {
        /// The producer id.
        producer_id: i64,
        /// The epoch of the refused batch.
        epoch: i16,
        /// The sequence number that would have been in order.
        expected: i32,
        /// The batch's first sequence number.
        found: i32,
    },
    /// A multi-batch append holds a batch already in the log (Kafka's
    /// `DUPLICATE_SEQUENCE_NUMBER`).
    #[error("producer {producer_id}: batch at sequence {first_seq} is a duplicate")]
    DuplicateSequence {
        /// The producer id.
        producer_id: i64,
        /// The duplicate batch's first sequence number.
        first_seq: i32,
    },
    /// A batch does not fit the producer's transaction state (Kafka's `INVALID_TXN_STATE`).
    #[error("producer {producer_id}: invalid transaction state: {reason}")]
    InvalidTxnState {
        /// The producer id.
        producer_id: i64,
        /// What was wrong.
        reason: &'static str,
    },
    /// The offsets `[first_offset, end_offset)` are stored in damaged data: they are out of
    /// service, while the data before and after them stays readable (Kafka's
    /// `CORRUPT_MESSAGE`).
    #[error("offsets {first_offset}..{end_offset} in {location} are damaged")]
    DamagedRange {
        /// Where the damaged data is stored (a segment file, an object).
        location: String,
        /// First offset of the damaged range.
        first_offset: i64,
        /// First offset after it.
        end_offset: i64,
    },
    /// A `CreateTime` batch's timestamp is outside the window `message.timestamp.before.max.ms`
    /// / `message.timestamp.after.max.ms` allow around the broker's clock (KIP-937).
    #[error("timestamp {timestamp} is outside [{earliest}, {latest}] (broker time {now})")]
    InvalidTimestamp {
        /// The offending timestamp.
        timestamp: i64,
        /// The broker's clock when the batch was checked.
        now: i64,
        /// The earliest timestamp accepted.
        earliest: i64,
        /// The latest timestamp accepted.
        latest: i64,
    },
    /// The backend does not support this operation or kind of batch (yet): a feature a backend
    /// names in `StorageBackend::unsupported`, which the broker refuses up front.
    #[error("{feature} is not supported by the {backend} storage backend yet")]
    Unsupported {
        /// What was asked for.
        feature: &'static str,
        /// Which backend refused it.
        backend: &'static str,
    },
    /// Stored data that the backend cannot make sense of, not (yet) narrowed to a range.
    #[error("corrupt data in {location}: {reason}")]
    Corrupt {
        /// Where (a file, an object).
        location: String,
        /// What was found.
        reason: String,
    },
}

impl StorageError {
    /// Whether the failure is the client's (a malformed or oversized batch, keyless records on
    /// a compacted partition) rather than the
    /// storage's.
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            StorageError::InvalidBatch(_)
                | StorageError::BatchTooLarge { .. }
                | StorageError::KeylessRecords { .. }
        )
    }
}
