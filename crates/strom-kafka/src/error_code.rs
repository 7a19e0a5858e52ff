//! The one mapping from broker errors to Kafka error codes.

use kafka_protocol::error::ResponseError;
use strom_broker::group::GroupError;
use strom_broker::txn::TxnError;
use strom_broker::{Error, StorageError};

/// The Kafka error code for a broker error.
pub fn error_code(error: &Error) -> i16 {
    response_error(error).code()
}

/// The Kafka error for an operation the authorizer refused on a resource of this type.
pub fn authorization_error(resource_type: strom_broker::acl::ResourceType) -> ResponseError {
    use strom_broker::acl::ResourceType as T;
    match resource_type {
        T::Topic => ResponseError::TopicAuthorizationFailed,
        T::Group => ResponseError::GroupAuthorizationFailed,
        T::Cluster => ResponseError::ClusterAuthorizationFailed,
        T::TransactionalId => ResponseError::TransactionalIdAuthorizationFailed,
        T::DelegationToken => ResponseError::DelegationTokenAuthorizationFailed,
        T::User => ResponseError::ClusterAuthorizationFailed,
    }
}

/// The Kafka error for a refused SCRAM credential operation.
pub fn scram_error(reason: strom_broker::scram::ScramRefusal) -> ResponseError {
    use strom_broker::scram::ScramRefusal as R;
    match reason {
        R::NotFound => ResponseError::ResourceNotFound,
        R::Duplicate => ResponseError::DuplicateResource,
        R::UnknownMechanism => ResponseError::UnsupportedSaslMechanism,
        R::TooFewIterations | R::TooManyIterations | R::Empty => {
            ResponseError::UnacceptableCredential
        }
        _ => ResponseError::UnknownServerError,
    }
}

/// The Kafka error for a broker error.
pub fn response_error(error: &Error) -> ResponseError {
    match error {
        Error::UnknownTopic { .. } | Error::UnknownPartition { .. } => {
            ResponseError::UnknownTopicOrPartition
        }
        Error::UnknownTopicId { .. } => ResponseError::UnknownTopicId,
        Error::TopicAlreadyExists { .. } => ResponseError::TopicAlreadyExists,
        Error::InvalidTopicName { .. } => ResponseError::InvalidTopicException,
        Error::InvalidPartitions { .. } => ResponseError::InvalidPartitions,
        Error::InvalidReplicationFactor { .. } => ResponseError::InvalidReplicationFactor,
        Error::InvalidConfig { .. } => ResponseError::InvalidConfig,
        Error::NotEnoughReplicas { .. } => ResponseError::NotEnoughReplicas,
        Error::InvalidRecords { .. } => ResponseError::InvalidRecord,
        Error::PartitionSealed { .. } => ResponseError::PolicyViolation,
        Error::Storage(e) => storage_error(e),
        Error::Metadata { .. } | Error::CorruptMetadata { .. } | Error::MetadataPoisoned { .. } => {
            ResponseError::KafkaStorageError
        }
        Error::ShuttingDown => ResponseError::NotLeaderOrFollower,
        Error::Group(e) => group_error(*e),
        Error::Txn(e) => txn_error(*e),
        Error::OperationNotAttempted => ResponseError::OperationNotAttempted,
        Error::SecurityDisabled => ResponseError::SecurityDisabled,
        Error::InvalidAcl(_) => ResponseError::InvalidRequest,
        Error::AuthorizationFailed { resource_type, .. } => authorization_error(*resource_type),
        Error::Scram { reason, .. } => scram_error(*reason),
        Error::Quota {
            reason: strom_broker::quota::QuotaRefusal::UnsupportedEntityType,
        } => ResponseError::UnsupportedVersion,
        Error::Quota { .. } => ResponseError::InvalidRequest,
        // `Error` is non_exhaustive for downstream crates.
        _ => ResponseError::UnknownServerError,
    }
}

/// The Kafka error for a group-coordinator error.
pub fn group_error(error: GroupError) -> ResponseError {
    match error {
        GroupError::UnknownMemberId => ResponseError::UnknownMemberId,
        GroupError::IllegalGeneration => ResponseError::IllegalGeneration,
        GroupError::RebalanceInProgress => ResponseError::RebalanceInProgress,
        GroupError::MemberIdRequired => ResponseError::MemberIdRequired,
        GroupError::InconsistentGroupProtocol => ResponseError::InconsistentGroupProtocol,
        GroupError::InvalidSessionTimeout => ResponseError::InvalidSessionTimeout,
        GroupError::FencedInstanceId => ResponseError::FencedInstanceId,
        GroupError::GroupIdNotFound => ResponseError::GroupIdNotFound,
        GroupError::NonEmptyGroup => ResponseError::NonEmptyGroup,
        GroupError::InvalidGroupId => ResponseError::InvalidGroupId,
        GroupError::CoordinatorNotAvailable => ResponseError::CoordinatorNotAvailable,
        GroupError::GroupSubscribedToTopic => ResponseError::GroupSubscribedToTopic,
        GroupError::FencedMemberEpoch => ResponseError::FencedMemberEpoch,
        GroupError::StaleMemberEpoch => ResponseError::StaleMemberEpoch,
        GroupError::UnsupportedAssignor => ResponseError::UnsupportedAssignor,
        GroupError::UnreleasedInstanceId => ResponseError::UnreleasedInstanceId,
        GroupError::GroupMaxSizeReached => ResponseError::GroupMaxSizeReached,
        GroupError::InvalidRequest => ResponseError::InvalidRequest,
        GroupError::InvalidRegularExpression => ResponseError::InvalidRegularExpression,
        GroupError::NotCoordinator => ResponseError::NotCoordinator,
        _ => ResponseError::UnknownServerError,
    }
}

/// The Kafka error of a transaction-coordinator refusal.
pub fn txn_error(error: TxnError) -> ResponseError {
    match error {
        TxnError::ProducerFenced => ResponseError::ProducerFenced,
        TxnError::InvalidProducerIdMapping => ResponseError::InvalidProducerIdMapping,
        TxnError::InvalidTxnState | TxnError::PartitionNotInTransaction => {
            ResponseError::InvalidTxnState
        }
        TxnError::InvalidTransactionTimeout => ResponseError::InvalidTransactionTimeout,
        TxnError::ConcurrentTransactions => ResponseError::ConcurrentTransactions,
        TxnError::TransactionalIdNotFound => ResponseError::TransactionalIdNotFound,
        TxnError::InvalidTransactionalId => ResponseError::InvalidRequest,
        TxnError::NotCoordinator => ResponseError::NotCoordinator,
        _ => ResponseError::UnknownServerError,
    }
}

/// The Kafka error for a storage error (whichever backend raised it).
pub fn storage_error(error: &StorageError) -> ResponseError {
    use StorageError as L;
    match error {
        L::InvalidBatch(_) => ResponseError::CorruptMessage,
        // The broker turns it into `InvalidRecords` (with record errors); the same code here.
        L::KeylessRecords { .. } => ResponseError::InvalidRecord,
        // A fetch in a range damaged on disk: not retriable (the data will not come back), so
        // the client reports it and the application can seek past it, as Kafka's consumer does
        // with CORRUPT_MESSAGE in a fetch response.
        L::DamagedRange { .. } => ResponseError::CorruptMessage,
        L::BatchTooLarge { .. } => ResponseError::MessageTooLarge,
        L::InvalidTimestamp { .. } => ResponseError::InvalidTimestamp,
        // Without transactions the fencing is by a producer's own newer epoch: Kafka answers
        // INVALID_PRODUCER_EPOCH there (PRODUCER_FENCED is for transactional ids).
        L::ProducerFenced { .. } => ResponseError::InvalidProducerEpoch,
        L::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber,
        L::DuplicateSequence { .. } => ResponseError::DuplicateSequenceNumber,
        L::InvalidTxnState { .. } => ResponseError::InvalidTxnState,
        L::OffsetOutOfRange { .. } | L::InvalidOffset { .. } => ResponseError::OffsetOutOfRange,
        L::Unavailable { .. } | L::Poisoned | L::Corrupt { .. } => ResponseError::KafkaStorageError,
        // The partition was closed under the request (topic deletion, shutdown).
        L::Closed => ResponseError::NotLeaderOrFollower,
        // Not retriable: the same request would be refused again by this backend.
        L::Unsupported { .. } => ResponseError::InvalidRequest,
        // `StorageError` is non_exhaustive for downstream crates.
        _ => ResponseError::KafkaStorageError,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn every_variant_maps() {
        let io = || Arc::new(std::io::Error::other("x"));
        let cases: Vec<(Error, ResponseError)> = vec![
            (
                Error::UnknownTopic { name: "t".into() },
                ResponseError::UnknownTopicOrPartition,
            ),
            (
                Error::UnknownPartition {
                    topic: "t".into(),
                    partition: 1,
                },
                ResponseError::UnknownTopicOrPartition,
            ),
            (
                Error::UnknownTopicId {
                    id: uuid::Uuid::nil(),
                },
                ResponseError::UnknownTopicId,
            ),
            (
                Error::TopicAlreadyExists { name: "t".into() },
                ResponseError::TopicAlreadyExists,
            ),
            (
                Error::InvalidTopicName {
                    name: "".into(),
                    reason: "empty",
                },
                ResponseError::InvalidTopicException,
            ),
            (
                Error::InvalidPartitions {
                    count: 0,
                    reason: "x",
                },
                ResponseError::InvalidPartitions,
            ),
            (
                Error::InvalidReplicationFactor { factor: 3 },
                ResponseError::InvalidReplicationFactor,
            ),
            (
                Error::InvalidConfig {
                    key: "k".into(),
                    value: "v".into(),
                    reason: "r".into(),
                },
                ResponseError::InvalidConfig,
            ),
            (
                Error::NotEnoughReplicas {
                    required: 2,
                    available: 1,
                },
                ResponseError::NotEnoughReplicas,
            ),
            (
                Error::InvalidRecords {
                    topic: "t".into(),
                    partition: 0,
                    indexes: vec![1],
                    reason: strom_broker::RecordRejection::MissingKeyOnCompactedTopic,
                },
                ResponseError::InvalidRecord,
            ),
            (
                Error::PartitionSealed {
                    topic: "t".into(),
                    partition: 0,
                },
                ResponseError::PolicyViolation,
            ),
            (
                Error::Metadata {
                    op: "append",
                    path: "p".into(),
                    source: io(),
                },
                ResponseError::KafkaStorageError,
            ),
            (Error::ShuttingDown, ResponseError::NotLeaderOrFollower),
            (Error::SecurityDisabled, ResponseError::SecurityDisabled),
            (
                Error::Quota {
                    reason: strom_broker::quota::QuotaRefusal::UnknownKey,
                },
                ResponseError::InvalidRequest,
            ),
            (
                Error::Quota {
                    reason: strom_broker::quota::QuotaRefusal::UnsupportedEntityType,
                },
                ResponseError::UnsupportedVersion,
            ),
            (
                Error::AuthorizationFailed {
                    resource_type: strom_broker::acl::ResourceType::Topic,
                    operation: strom_broker::acl::AclOperation::Write,
                },
                ResponseError::TopicAuthorizationFailed,
            ),
            (
                Error::AuthorizationFailed {
                    resource_type: strom_broker::acl::ResourceType::Group,
                    operation: strom_broker::acl::AclOperation::Read,
                },
                ResponseError::GroupAuthorizationFailed,
            ),
            (
                Error::InvalidAcl(strom_broker::acl::InvalidAcl::ClusterName),
                ResponseError::InvalidRequest,
            ),
            (
                Error::Scram {
                    user: "u".into(),
                    reason: strom_broker::scram::ScramRefusal::NotFound,
                },
                ResponseError::ResourceNotFound,
            ),
            (
                Error::Scram {
                    user: "u".into(),
                    reason: strom_broker::scram::ScramRefusal::Duplicate,
                },
                ResponseError::DuplicateResource,
            ),
            (
                Error::Scram {
                    user: "u".into(),
                    reason: strom_broker::scram::ScramRefusal::UnknownMechanism,
                },
                ResponseError::UnsupportedSaslMechanism,
            ),
            (
                Error::Scram {
                    user: "u".into(),
                    reason: strom_broker::scram::ScramRefusal::TooManyIterations,
                },
                ResponseError::UnacceptableCredential,
            ),
            (
                Error::Group(GroupError::IllegalGeneration),
                ResponseError::IllegalGeneration,
            ),
            (
                Error::Storage(StorageError::KeylessRecords { indexes: vec![0] }),
                ResponseError::InvalidRecord,
            ),
            (
                Error::Storage(StorageError::BatchTooLarge { size: 2, max: 1 }),
                ResponseError::MessageTooLarge,
            ),
            (
                Error::Storage(StorageError::OffsetOutOfRange {
                    requested: 9,
                    start: 0,
                    end: 1,
                }),
                ResponseError::OffsetOutOfRange,
            ),
            (
                Error::Storage(StorageError::Poisoned),
                ResponseError::KafkaStorageError,
            ),
            (
                Error::Storage(StorageError::Unavailable {
                    op: "write segment",
                    resource: "p".into(),
                    source: io(),
                }),
                ResponseError::KafkaStorageError,
            ),
            (
                Error::Storage(StorageError::DamagedRange {
                    location: "p".into(),
                    first_offset: 5,
                    end_offset: 6,
                }),
                ResponseError::CorruptMessage,
            ),
            (
                Error::Storage(StorageError::InvalidTimestamp {
                    timestamp: 10,
                    now: 0,
                    earliest: 0,
                    latest: 5,
                }),
                ResponseError::InvalidTimestamp,
            ),
            (
                Error::Storage(StorageError::Closed),
                ResponseError::NotLeaderOrFollower,
            ),
            (
                Error::Storage(StorageError::ProducerFenced {
                    producer_id: 1,
                    epoch: 0,
                    current_epoch: 1,
                }),
                ResponseError::InvalidProducerEpoch,
            ),
            (
                Error::Storage(StorageError::OutOfOrderSequence {
                    producer_id: 1,
                    epoch: 0,
                    expected: 1,
                    found: 2,
                }),
                ResponseError::OutOfOrderSequenceNumber,
            ),
            (
                Error::Storage(StorageError::DuplicateSequence {
                    producer_id: 1,
                    first_seq: 0,
                }),
                ResponseError::DuplicateSequenceNumber,
            ),
        ];
        for (error, expected) in cases {
            assert_eq!(response_error(&error), expected, "{error}");
        }
    }
}
