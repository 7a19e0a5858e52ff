//! The cluster backend's error type.
//!
//! Errors are `Clone` (foreign errors are wrapped in `Arc`) because one failed flush fails every
//! waiter of that flush with the same error. [`Error::is_retriable`] tells the front ends which
//! errors a client should retry (Kafka: a retriable error code; Kinesis: a 5xx/throughput
//! exception): database and object-store outages are retriable, sequence and fencing errors are
//! not.

use std::sync::Arc;
use std::time::Duration;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which PostgreSQL operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbOp {
    /// Opening a connection.
    Connect,
    /// Applying schema migrations.
    Migrate,
    /// Registering or refreshing a broker.
    Registry,
    /// Acquiring, renewing or releasing a named lease.
    Lease,
    /// Reading or changing topics and partitions.
    Metadata,
    /// Recording a new object before its upload.
    RecordObject,
    /// The commit transaction of a flush.
    Commit,
    /// Reading the batch index.
    ReadIndex,
    /// Listening for commit notifications.
    Listen,
    /// Collecting orphan objects.
    CollectOrphans,
    /// Allocating a producer id.
    ProducerId,
    /// A lifecycle job (retention, reclaiming objects, merging, compaction) or its record.
    Lifecycle,
    /// Storing or reading a cluster-wide secret.
    Secret,
    /// Charging a Kinesis shard's shared limit buckets.
    KinesisLimits,
}

/// Which object-store operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOp {
    /// Uploading a flushed object.
    Put,
    /// Reading a byte range.
    GetRange,
    /// Deleting an object.
    Delete,
    /// Listing objects.
    List,
    /// Building the client from configuration.
    Build,
}

/// Everything that can go wrong in the cluster backend.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// A PostgreSQL call failed (connection lost, server down, statement failed).
    #[error("postgres {op:?} failed: {}", describe_pg(source))]
    Postgres {
        /// What we were doing.
        op: DbOp,
        /// The driver's error.
        source: Arc<tokio_postgres::Error>,
    },
    /// An object-store call failed after the client's own retries.
    #[error("object store {op:?} of {key:?} failed: {source}")]
    ObjectStore {
        /// What we were doing.
        op: StoreOp,
        /// The object key, when there is one.
        key: Option<String>,
        /// The client's error.
        source: Arc<object_store::Error>,
    },
    /// A configuration value is malformed.
    #[error("invalid cluster setting {setting}: {value:?} ({reason})")]
    InvalidConfig {
        /// The setting's name.
        setting: &'static str,
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The topic-partition is not in the `partitions` table.
    #[error("unknown topic-partition {topic}-{partition}")]
    UnknownPartition {
        /// Topic name.
        topic: String,
        /// Partition index.
        partition: i32,
    },
    /// A data batch for a sealed partition (a Kinesis shard closed by resharding).
    #[error("topic-partition {topic}-{partition} is sealed")]
    PartitionSealed {
        /// Topic name.
        topic: String,
        /// Partition index.
        partition: i32,
    },
    /// A fetch asked for an offset outside `[log_start_offset, high_watermark]`.
    #[error(
        "offset {offset} of {topic}-{partition} is outside [{log_start_offset}, {high_watermark}]"
    )]
    OffsetOutOfRange {
        /// Topic name.
        topic: String,
        /// Partition index.
        partition: i32,
        /// The offset asked for.
        offset: i64,
        /// First readable offset.
        log_start_offset: i64,
        /// Next offset to be written.
        high_watermark: i64,
    },
    /// A topic of that name exists already.
    #[error("topic {topic} already exists")]
    TopicExists {
        /// Topic name.
        topic: String,
    },
    /// The bytes handed to the writer are not exactly one record batch v2.
    #[error("invalid record batch: {source}")]
    InvalidBatch {
        /// Why the header did not parse.
        source: strom_record::Error,
    },
    /// The batch's length field disagrees with the bytes handed over.
    #[error("record batch says {declared} bytes but {given} were given")]
    BatchLength {
        /// Length from the header.
        declared: usize,
        /// Length of the buffer.
        given: usize,
    },
    /// An idempotent batch's sequence does not follow the last one written for its producer.
    #[error(
        "out-of-order sequence for producer {producer_id} epoch {producer_epoch} on {topic}-{partition}: expected {expected}, got {received}"
    )]
    OutOfOrderSequence {
        /// Topic name.
        topic: String,
        /// Partition index.
        partition: i32,
        /// Producer id.
        producer_id: i64,
        /// Producer epoch of the batch.
        producer_epoch: i16,
        /// The sequence the broker expected.
        expected: i32,
        /// The batch's base sequence.
        received: i32,
    },
    /// The batch's producer epoch is older than the one last written for that producer.
    #[error(
        "producer {producer_id} epoch {producer_epoch} is fenced by epoch {current_epoch} on {topic}-{partition}"
    )]
    ProducerFenced {
        /// Topic name.
        topic: String,
        /// Partition index.
        partition: i32,
        /// Producer id.
        producer_id: i64,
        /// Epoch of the batch.
        producer_epoch: i16,
        /// Epoch on record.
        current_epoch: i16,
    },
    /// A non-transactional batch of a producer whose transaction is open on the partition
    /// (Kafka's `INVALID_TXN_STATE`).
    #[error(
        "producer {producer_id} wrote a non-transactional batch to {topic}-{partition} while its transaction is open"
    )]
    InvalidTxnState {
        /// Topic name.
        topic: String,
        /// Partition index.
        partition: i32,
        /// Producer id.
        producer_id: i64,
    },
    /// The pending object of a flush was claimed by the orphan collector before the flush
    /// committed (the flush took longer than the collector's grace period).
    #[error("object {key} was collected before its flush committed")]
    ObjectCollected {
        /// Object key.
        key: String,
    },
    /// A lease is held by someone else or was lost (expired and taken, or released).
    #[error("lease {name} is not held by {holder} at epoch {epoch}")]
    LeaseLost {
        /// Lease name.
        name: String,
        /// Who asked.
        holder: String,
        /// The fencing token they held.
        epoch: i64,
    },
    /// Another live process is registered under this broker id.
    #[error("broker id {broker_id} is registered by another live process")]
    BrokerIdInUse {
        /// The contested id.
        broker_id: i32,
    },
    /// The writer stopped (shut down, or its task ended) before this append was flushed.
    #[error("cluster writer is closed")]
    WriterClosed,
    /// One append is larger than the writer's whole buffer.
    #[error("batch of {size} bytes exceeds the writer's buffer of {limit} bytes")]
    BatchTooLarge {
        /// Batch size.
        size: usize,
        /// Buffer limit.
        limit: usize,
    },
    /// A stored index row is inconsistent with its object (length or range mismatch).
    #[error("index row for {topic}-{partition} at {base_offset} does not match object {key}")]
    CorruptIndex {
        /// Topic name.
        topic: String,
        /// Partition index.
        partition: i32,
        /// Base offset of the row.
        base_offset: i64,
        /// Object key.
        key: String,
    },
    /// The metadata events after this broker's cursor were compacted away before it read them
    /// (it stopped tailing for longer than the compaction keeps covered events): its metadata
    /// can no longer be brought up to date by tailing, and the broker must be restarted.
    #[error(
        "metadata events after seq {cursor} were compacted (through seq {pruned_through}) before this broker read them; restart it"
    )]
    MetadataEventsPruned {
        /// The last event this broker read.
        cursor: i64,
        /// The highest event seq deleted by compaction.
        pruned_through: i64,
    },
    /// The metadata snapshot row is not a JSON array of events.
    #[error("the metadata snapshot through seq {through_seq} is not a list of events")]
    CorruptMetadataSnapshot {
        /// The seq the snapshot claims to cover.
        through_seq: i64,
    },
    /// A stored cluster secret does not have the expected length.
    #[error("cluster secret {name} is {len} bytes, not 32")]
    BadSecret {
        /// The secret's name.
        name: String,
        /// Its stored length.
        len: usize,
    },
    /// Waiting for a flush or a query exceeded its bound.
    #[error("timed out after {waited:?}")]
    Timeout {
        /// How long we waited.
        waited: Duration,
    },
}

impl Error {
    /// Whether a client should retry the same request (possibly on another broker).
    pub fn is_retriable(&self) -> bool {
        matches!(
            self,
            Error::Postgres { .. }
                | Error::ObjectStore { .. }
                | Error::ObjectCollected { .. }
                | Error::WriterClosed
                | Error::Timeout { .. }
        )
    }

    /// Whether this is a read of an object that does not exist (any more).
    pub fn is_object_missing(&self) -> bool {
        matches!(
            self,
            Error::ObjectStore { source, .. }
                if matches!(source.as_ref(), object_store::Error::NotFound { .. })
        )
    }

    /// The server's SQLSTATE when PostgreSQL answered with an error (not for a lost
    /// connection or a timeout).
    pub fn pg_code(&self) -> Option<&str> {
        match self {
            Error::Postgres { source, .. } => source.as_db_error().map(|db| db.code().code()),
            _ => None,
        }
    }

    pub(crate) fn pg(op: DbOp) -> impl FnOnce(tokio_postgres::Error) -> Error {
        move |source| Error::Postgres {
            op,
            source: Arc::new(source),
        }
    }

    pub(crate) fn store(
        op: StoreOp,
        key: Option<&str>,
    ) -> impl FnOnce(object_store::Error) -> Error + '_ {
        move |source| Error::ObjectStore {
            op,
            key: key.map(str::to_owned),
            source: Arc::new(source),
        }
    }
}

/// The driver's error with what it wraps: the server's severity, SQLSTATE and message for an
/// error answer (the driver's own text is only "db error"), else the underlying cause (an
/// I/O or TLS error), so a refused connection says why.
fn describe_pg(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!(
            "{e}: {} {}: {}",
            db.severity(),
            db.code().code(),
            db.message()
        );
    }
    match std::error::Error::source(e) {
        Some(cause) => {
            let cause = cause.to_string();
            let own = e.to_string();
            if own.contains(&cause) {
                own
            } else {
                format!("{own}: {cause}")
            }
        }
        None => e.to_string(),
    }
}
