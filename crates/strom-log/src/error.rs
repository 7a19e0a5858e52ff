//! Errors of the storage layer.

use std::path::PathBuf;
use std::sync::Arc;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything an operation on a [`crate::PartitionLog`] can fail with. `Clone`, so one failure
/// can be handed to every waiter of a group commit.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// A batch offered for append is malformed (bad CRC, bad header, bad records).
    #[error("invalid record batch: {0}")]
    InvalidBatch(#[from] strom_record::Error),
    /// Records without a key offered to a compacted log (`cleanup.policy` includes
    /// `compact`); nothing of the payload was appended.
    #[error("{} record(s) without a key offered to a compacted log", indexes.len())]
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
    /// A read asked for an offset outside `[log_start, high_watermark]`.
    #[error("offset {offset} is out of range [{log_start}, {high_watermark}]")]
    OffsetOutOfRange {
        /// Requested offset.
        offset: i64,
        /// Current log start offset.
        log_start: i64,
        /// Current high watermark.
        high_watermark: i64,
    },
    /// An offset argument is not acceptable for the operation.
    #[error("invalid offset {offset}: {reason}")]
    InvalidOffset {
        /// The offset given.
        offset: i64,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A file operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done (`"write"`, `"fdatasync"`, `"open"`…).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        source: Arc<std::io::Error>,
    },
    /// An earlier `fdatasync` or write failed, so the state of the file is unknown: the log
    /// refuses writes until it is reopened (and recovered).
    #[error("the log is poisoned by an earlier I/O failure and must be reopened")]
    Poisoned,
    /// The log was closed.
    #[error("the log is closed")]
    Closed,
    /// A batch's producer epoch is older than the one the partition knows: a newer instance of
    /// the producer exists (Kafka's `INVALID_PRODUCER_EPOCH`).
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
    /// An append of several batches contains one that is already in the log: only a
    /// single-batch append (what Kafka clients send) can be answered with the original offsets
    /// (Kafka's `DUPLICATE_SEQUENCE_NUMBER`).
    #[error(
        "producer {producer_id}: batch at sequence {first_seq} is a duplicate inside a multi-batch append"
    )]
    DuplicateSequence {
        /// The producer id.
        producer_id: i64,
        /// The duplicate batch's first sequence number.
        first_seq: i32,
    },
    /// A batch does not fit the producer's transaction state: a non-transactional batch while
    /// its transaction is open (Kafka's `INVALID_TXN_STATE`).
    #[error("producer {producer_id}: invalid transaction state: {reason}")]
    InvalidTxnState {
        /// The producer id.
        producer_id: i64,
        /// What was wrong.
        reason: &'static str,
    },
    /// The offsets `[first_offset, end_offset)` are stored in a damaged stretch of a segment
    /// (a batch fails its checksum or its header is garbage): they are out of service, while
    /// the data before and after them stays readable. Kafka's `CORRUPT_MESSAGE`.
    #[error("offsets {first_offset}..{end_offset} of {path} are damaged on disk")]
    DamagedRange {
        /// The segment file.
        path: PathBuf,
        /// First offset of the damaged range.
        first_offset: i64,
        /// First offset after it (the next intact batch, or the end of the segment).
        end_offset: i64,
    },
    /// A `CreateTime` batch carries a timestamp outside the window that
    /// `message.timestamp.before.max.ms` / `message.timestamp.after.max.ms` allow around the
    /// broker's clock (Kafka's `INVALID_TIMESTAMP`, KIP-937).
    #[error("timestamp {timestamp} is outside [{earliest}, {latest}] (broker time {now})")]
    InvalidTimestamp {
        /// The offending timestamp (the batch's first or largest).
        timestamp: i64,
        /// The broker's clock when the batch was checked.
        now: i64,
        /// The earliest timestamp accepted.
        earliest: i64,
        /// The latest timestamp accepted.
        latest: i64,
    },
    /// On-disk state that recovery cannot make sense of.
    #[error("corrupt log data in {path}: {reason}")]
    Corrupt {
        /// The file concerned.
        path: PathBuf,
        /// What was found.
        reason: String,
    },
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source: Arc::new(source),
        }
    }
}
