//! The broker core's protocol-neutral error type.
//!
//! Front ends map each variant to their protocol's own codes in exactly one place
//! (`strom-kafka/src/error_code.rs`). Errors are `Clone` so that one failure can be handed to
//! several waiters.

use std::path::PathBuf;
use std::sync::Arc;

use uuid::Uuid;

use crate::storage::StorageError;

/// Result alias for the broker core.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the broker core.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No topic with this name exists (and it was not auto-created).
    #[error("unknown topic {name:?}")]
    UnknownTopic {
        /// The requested topic name.
        name: String,
    },
    /// No topic with this id exists.
    #[error("unknown topic id {id}")]
    UnknownTopicId {
        /// The requested topic id.
        id: Uuid,
    },
    /// The topic exists but has no such partition.
    #[error("topic {topic:?} has no partition {partition}")]
    UnknownPartition {
        /// The topic name.
        topic: String,
        /// The requested partition index.
        partition: i32,
    },
    /// A topic with this name already exists.
    #[error("topic {name:?} already exists")]
    TopicAlreadyExists {
        /// The topic name.
        name: String,
    },
    /// The topic name breaks Kafka's naming rules.
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidTopicName {
        /// The rejected name.
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// A partition count is out of range or would shrink a topic.
    #[error("invalid partition count {count}: {reason}")]
    InvalidPartitions {
        /// The requested count.
        count: i32,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A replication factor other than 1 (or -1 for the default) on this single-node broker.
    #[error("invalid replication factor {factor}: this broker has a single node")]
    InvalidReplicationFactor {
        /// The requested factor.
        factor: i16,
    },
    /// A topic config key that is unknown or whose value does not parse or is out of range.
    #[error("invalid config {key}={value:?}: {reason}")]
    InvalidConfig {
        /// The config key.
        key: String,
        /// The offending value.
        value: String,
        /// What was expected.
        reason: String,
    },
    /// Records of a produced payload were refused; nothing of the payload was appended
    /// (Kafka's INVALID_RECORD with one record error per refused record).
    #[error("{} record(s) of {topic}-{partition} refused: {reason}", indexes.len())]
    InvalidRecords {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// Index of each refused record in the payload (0-based, counting every record of every
        /// batch in order).
        indexes: Vec<i32>,
        /// Why they were refused.
        reason: RecordRejection,
    },
    /// A data append to a sealed partition (a Kinesis shard closed by resharding, which is
    /// read-only for both APIs); transaction markers are still taken.
    #[error(
        "partition {partition} of {topic} is a Kinesis shard closed by resharding; it is read-only"
    )]
    PartitionSealed {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
    },
    /// `acks=all` asked for more in-sync replicas than this broker has.
    #[error("not enough replicas: min.insync.replicas={required}, in sync: {available}")]
    NotEnoughReplicas {
        /// The topic's `min.insync.replicas`.
        required: i32,
        /// How many replicas are in sync (always 1 on a single node).
        available: i32,
    },
    /// Storage failed (invalid batch, too large, offset out of range, I/O, poisoned), in the
    /// backend-neutral kinds of [`StorageError`].
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Reading or writing the metadata event log failed.
    #[error("metadata {op} failed on {path}: {source}")]
    Metadata {
        /// What was being done.
        op: &'static str,
        /// Which file.
        path: PathBuf,
        /// The underlying error.
        source: Arc<std::io::Error>,
    },
    /// A metadata write failed and could not be undone (the file may end in a partial event),
    /// or a snapshot was installed without its fresh log: metadata changes are refused until
    /// the broker is reopened, whose replay repairs the file.
    #[error("metadata log {path} is unusable after a failed write; reopen the broker")]
    MetadataPoisoned {
        /// Which file.
        path: PathBuf,
    },
    /// The metadata event log holds something that cannot be replayed.
    #[error("corrupt metadata log {path} at line {line}: {reason}")]
    CorruptMetadata {
        /// Which file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A consumer-group request was refused (unknown member, illegal generation…).
    #[error(transparent)]
    Group(#[from] crate::group::GroupError),
    /// A transaction request was refused (fenced producer, wrong state…).
    #[error(transparent)]
    Txn(#[from] crate::txn::TxnError),
    /// Not attempted because another item of the same request failed (Kafka's
    /// OPERATION_NOT_ATTEMPTED).
    #[error("operation not attempted: another item of the request failed")]
    OperationNotAttempted,
    /// The broker is shutting down (or a blocking task was cancelled).
    #[error("the broker is shutting down")]
    ShuttingDown,
    /// No authorizer is configured, so ACLs cannot be managed.
    #[error("no authorizer is configured")]
    SecurityDisabled,
    /// The authorizer refused an operation on a resource of this type.
    #[error("not authorized: {operation:?} on {resource_type:?}")]
    AuthorizationFailed {
        /// The resource type (front ends pick the matching code: TOPIC_, GROUP_,
        /// CLUSTER_, TRANSACTIONAL_ID_AUTHORIZATION_FAILED).
        resource_type: crate::acl::ResourceType,
        /// The operation refused.
        operation: crate::acl::AclOperation,
    },
    /// An ACL or ACL filter is not acceptable.
    #[error("invalid ACL: {0}")]
    InvalidAcl(crate::acl::InvalidAcl),
    /// A SCRAM credential operation was refused.
    #[error("SCRAM credential for {user:?}: {reason}")]
    Scram {
        /// The user.
        user: String,
        /// Why.
        reason: crate::scram::ScramRefusal,
    },
    /// A client quota request was refused.
    #[error("client quota: {reason}")]
    Quota {
        /// Why.
        reason: crate::quota::QuotaRefusal,
    },
}

/// Why a produced record was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordRejection {
    /// A record without a key sent to a topic whose `cleanup.policy` includes `compact`.
    #[error("a compacted topic cannot accept a record without a key")]
    MissingKeyOnCompactedTopic,
}

impl Error {
    pub(crate) fn metadata_io(
        op: &'static str,
        path: &std::path::Path,
        source: std::io::Error,
    ) -> Self {
        Error::Metadata {
            op,
            path: path.to_path_buf(),
            source: Arc::new(source),
        }
    }
}
