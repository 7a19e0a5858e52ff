//! Kinesis exceptions: the `__type` names AWS SDKs match on, and the one mapping from broker
//! errors to them ([`From<strom_broker::Error>`]).

use axum::http::StatusCode;

/// Result alias for request handlers.
pub type Result<T, E = KinesisError> = std::result::Result<T, E>;

/// The exception classes this front end returns. The `Display` form is the `__type` name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The stream, shard or consumer does not exist.
    ResourceNotFound,
    /// The resource exists but is in the wrong state (already exists, being deleted…).
    ResourceInUse,
    /// A parameter is well-formed but not acceptable.
    InvalidArgument,
    /// A parameter breaks a constraint of the API model (length, range, pattern).
    Validation,
    /// The body does not decode, or a field has the wrong type.
    Serialization,
    /// `X-Amz-Target` names no operation of this API.
    UnknownOperation,
    /// A limit (shard count, consumers…) was exceeded.
    LimitExceeded,
    /// The shard iterator is older than its time to live.
    ExpiredIterator,
    /// The request needs a header or content type this server does not accept.
    MissingAction,
    /// The broker failed (storage error, shutting down).
    InternalFailure,
    /// A shard's throughput limit was exceeded (AWS-limits mode only).
    ProvisionedThroughputExceeded,
    /// The request carries no SigV4 signature.
    MissingAuthenticationToken,
    /// The `Authorization` header does not parse.
    IncompleteSignature,
    /// The access key id is not configured.
    UnrecognizedClient,
    /// The signature does not match, or its date is outside the clock-skew window.
    InvalidSignature,
    /// The principal is not allowed this operation by the ACLs.
    AccessDenied,
    /// The temporary access key's session token has expired.
    ExpiredToken,
}

impl ErrorKind {
    /// The `__type` name.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::ResourceNotFound => "ResourceNotFoundException",
            ErrorKind::ResourceInUse => "ResourceInUseException",
            ErrorKind::InvalidArgument => "InvalidArgumentException",
            ErrorKind::Validation => "ValidationException",
            ErrorKind::Serialization => "SerializationException",
            ErrorKind::UnknownOperation => "UnknownOperationException",
            ErrorKind::LimitExceeded => "LimitExceededException",
            ErrorKind::ExpiredIterator => "ExpiredIteratorException",
            ErrorKind::MissingAction => "MissingAction",
            ErrorKind::InternalFailure => "InternalFailure",
            ErrorKind::ProvisionedThroughputExceeded => "ProvisionedThroughputExceededException",
            ErrorKind::MissingAuthenticationToken => "MissingAuthenticationTokenException",
            ErrorKind::IncompleteSignature => "IncompleteSignatureException",
            ErrorKind::UnrecognizedClient => "UnrecognizedClientException",
            ErrorKind::InvalidSignature => "InvalidSignatureException",
            ErrorKind::AccessDenied => "AccessDeniedException",
            ErrorKind::ExpiredToken => "ExpiredTokenException",
        }
    }

    /// The HTTP status AWS uses for this class.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorKind::InternalFailure => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorKind::MissingAuthenticationToken => StatusCode::FORBIDDEN,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// A failed request: an exception class and a message for the client.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {message}", kind.name())]
pub struct KinesisError {
    /// The exception class.
    pub kind: ErrorKind,
    /// Human-readable detail, sent as `message`.
    pub message: String,
}

impl KinesisError {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> KinesisError {
        KinesisError {
            kind,
            message: message.into(),
        }
    }

    /// `ResourceNotFoundException` for a stream.
    pub fn stream_not_found(name: &str) -> KinesisError {
        KinesisError::new(
            ErrorKind::ResourceNotFound,
            format!(
                "Stream {name} under account {} not found.",
                crate::stream::ACCOUNT
            ),
        )
    }

    /// `InvalidArgumentException`.
    pub fn invalid(message: impl Into<String>) -> KinesisError {
        KinesisError::new(ErrorKind::InvalidArgument, message)
    }

    /// `ValidationException`.
    pub fn validation(message: impl Into<String>) -> KinesisError {
        KinesisError::new(ErrorKind::Validation, message)
    }
}

impl From<crate::sigv4::AuthError> for KinesisError {
    fn from(e: crate::sigv4::AuthError) -> Self {
        use crate::sigv4::AuthError as A;
        let kind = match &e {
            A::Missing => ErrorKind::MissingAuthenticationToken,
            A::Malformed { .. } => ErrorKind::IncompleteSignature,
            A::UnknownKey | A::BadToken => ErrorKind::UnrecognizedClient,
            A::BadSignature | A::Expired { .. } | A::PresignedExpired { .. } => {
                ErrorKind::InvalidSignature
            }
            A::TokenExpired => ErrorKind::ExpiredToken,
        };
        KinesisError::new(kind, e.to_string())
    }
}

impl From<strom_broker::Error> for KinesisError {
    fn from(e: strom_broker::Error) -> Self {
        use strom_broker::Error as B;
        let kind = match &e {
            B::UnknownTopic { .. } | B::UnknownTopicId { .. } | B::UnknownPartition { .. } => {
                ErrorKind::ResourceNotFound
            }
            // A shard closed by resharding, as `reshard::open_shard` refuses it.
            B::TopicAlreadyExists { .. } | B::PartitionSealed { .. } => ErrorKind::ResourceInUse,
            B::InvalidTopicName { .. } | B::InvalidConfig { .. } => ErrorKind::Validation,
            B::InvalidPartitions { .. } => ErrorKind::LimitExceeded,
            B::InvalidReplicationFactor { .. }
            | B::NotEnoughReplicas { .. }
            | B::InvalidRecords { .. } => ErrorKind::InvalidArgument,
            B::Storage(s) if s.is_client_error() => ErrorKind::InvalidArgument,
            // A partition is closed when its topic is deleted under a request.
            B::Storage(strom_broker::StorageError::Closed) => ErrorKind::ResourceNotFound,
            _ => ErrorKind::InternalFailure,
        };
        if kind == ErrorKind::InternalFailure {
            tracing::warn!(error = %e, "kinesis request failed in the broker");
        }
        KinesisError::new(kind, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_errors_map_to_exceptions() {
        let cases = [
            (
                strom_broker::Error::UnknownTopic { name: "a".into() },
                "ResourceNotFoundException",
            ),
            (
                strom_broker::Error::TopicAlreadyExists { name: "a".into() },
                "ResourceInUseException",
            ),
            (
                strom_broker::Error::InvalidTopicName {
                    name: "a b".into(),
                    reason: "x",
                },
                "ValidationException",
            ),
            (strom_broker::Error::ShuttingDown, "InternalFailure"),
            // Disk full / I/O error / a log being recovered / damaged data: 500 InternalFailure.
            (
                strom_broker::Error::Storage(strom_broker::StorageError::Unavailable {
                    op: "write segment",
                    resource: "p".into(),
                    source: std::sync::Arc::new(std::io::Error::from_raw_os_error(28)),
                }),
                "InternalFailure",
            ),
            (
                strom_broker::Error::Storage(strom_broker::StorageError::Poisoned),
                "InternalFailure",
            ),
            (
                strom_broker::Error::Storage(strom_broker::StorageError::DamagedRange {
                    location: "p".into(),
                    first_offset: 5,
                    end_offset: 6,
                }),
                "InternalFailure",
            ),
            (
                strom_broker::Error::Storage(strom_broker::StorageError::Closed),
                "ResourceNotFoundException",
            ),
        ];
        for (e, name) in cases {
            assert_eq!(KinesisError::from(e).kind.name(), name);
        }
    }
}
