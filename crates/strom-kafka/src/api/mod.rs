//! One module per Kafka API, and the dispatch table with the versions Strom implements.
//!
//! Each handler decodes its request body at the request's version, calls the broker, and builds
//! the response for exactly that version (the codec refuses fields a version lacks).

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion};

use crate::Context;
use crate::frame::{self, Request};

mod acl_wire;
pub mod add_offsets_to_txn;
pub mod add_partitions_to_txn;
pub mod alter_client_quotas;
pub mod alter_configs;
pub mod alter_user_scram_credentials;
pub mod api_versions;
pub mod consumer_group_describe;
pub mod consumer_group_heartbeat;
pub mod create_acls;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_acls;
pub mod delete_groups;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_acls;
pub mod describe_client_quotas;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_groups;
pub mod describe_log_dirs;
pub mod describe_producers;
pub mod describe_transactions;
pub mod describe_user_scram_credentials;
pub mod end_txn;
pub mod fetch;
pub mod find_coordinator;
pub mod heartbeat;
pub mod incremental_alter_configs;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod list_transactions;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod offset_for_leader_epoch;
pub mod produce;
pub mod sasl_authenticate;
pub mod sasl_handshake;
pub mod sync_group;
pub mod txn_offset_commit;

/// The APIs and version ranges Strom implements (and advertises in ApiVersions).
pub const SUPPORTED_APIS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 13),
    (ApiKey::Fetch, 4, 17),
    (ApiKey::ListOffsets, 1, 8),
    (ApiKey::Metadata, 0, 13),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::DescribeLogDirs, 1, 4),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 2),
    (ApiKey::FindCoordinator, 0, 5),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::ConsumerGroupHeartbeat, 0, 1),
    (ApiKey::ConsumerGroupDescribe, 0, 1),
    (ApiKey::DescribeProducers, 0, 0),
    (ApiKey::AddPartitionsToTxn, 0, 3),
    (ApiKey::AddOffsetsToTxn, 0, 4),
    (ApiKey::EndTxn, 0, 4),
    (ApiKey::TxnOffsetCommit, 0, 4),
    (ApiKey::DescribeTransactions, 0, 0),
    (ApiKey::ListTransactions, 0, 1),
    (ApiKey::DescribeAcls, 1, 3),
    (ApiKey::CreateAcls, 1, 3),
    (ApiKey::DeleteAcls, 1, 3),
    (ApiKey::DescribeUserScramCredentials, 0, 0),
    (ApiKey::AlterUserScramCredentials, 0, 0),
    (ApiKey::DescribeClientQuotas, 0, 1),
    (ApiKey::AlterClientQuotas, 0, 1),
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
];

/// The version range Strom implements for an API.
pub fn supported_versions(api_key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED_APIS
        .iter()
        .find(|(k, _, _)| *k == api_key)
        .map(|&(_, min, max)| (min, max))
}

/// What the connection does after a request.
#[derive(Debug)]
pub enum Outcome {
    /// Write this response frame.
    Respond(Bytes),
    /// Write this response frame, given as chunks to write in order with one `writev` (a
    /// Fetch response: its record sets stay in the buffers the log read filled). The permits,
    /// if any, count the response's bytes against the request-memory budget until it is
    /// written.
    RespondVectored(Vec<Bytes>, Option<tokio::sync::OwnedSemaphorePermit>),
    /// Write this response frame, then close the connection (a failed SASL exchange).
    RespondThenClose(Bytes),
    /// Nothing to write (`acks=0` produce).
    NoResponse,
    /// Close the connection (the reason was logged).
    Close,
    /// The answer is not ready yet: a Produce whose writes are done but not yet durable. The
    /// connection may read and handle further Produce requests meanwhile, and writes this
    /// future's outcome in request order.
    Deferred(Deferred),
}

/// A response that completes later (see [`Outcome::Deferred`]).
pub struct Deferred(std::pin::Pin<Box<dyn std::future::Future<Output = Outcome> + Send>>);

impl Deferred {
    /// Wraps the future that produces the outcome.
    pub fn new(future: impl std::future::Future<Output = Outcome> + Send + 'static) -> Deferred {
        Deferred(Box::pin(future))
    }

    /// Waits for the outcome.
    pub async fn outcome(self) -> Outcome {
        self.0.await
    }
}

impl Outcome {
    /// The same outcome with its response's `throttle_time_ms` raised to at least `ms`
    /// (KIP-219: a response carries its request's longest throttle, byte rate or request
    /// time). A deferred answer is raised when it completes; an API or version without the
    /// field is left as it is (the connection is still muted).
    pub(crate) fn with_throttle(self, api_key: ApiKey, version: i16, ms: i32) -> Outcome {
        if ms <= 0 {
            return self;
        }
        let raise = |bytes: Bytes| {
            let mut frame = bytes
                .try_into_mut()
                .unwrap_or_else(|shared| bytes::BytesMut::from(&shared[..]));
            frame::raise_throttle_time(api_key, version, &mut frame, ms);
            frame.freeze()
        };
        match self {
            Outcome::Respond(bytes) => Outcome::Respond(raise(bytes)),
            Outcome::RespondThenClose(bytes) => Outcome::RespondThenClose(raise(bytes)),
            // A Fetch: the size prefix, header and throttle time are in the first chunk.
            Outcome::RespondVectored(mut parts, held) => {
                if let Some(first) = parts.first_mut() {
                    *first = raise(std::mem::take(first));
                }
                Outcome::RespondVectored(parts, held)
            }
            Outcome::Deferred(deferred) => Outcome::Deferred(Deferred::new(async move {
                deferred.outcome().await.with_throttle(api_key, version, ms)
            })),
            other @ (Outcome::NoResponse | Outcome::Close) => other,
        }
    }
}

impl std::fmt::Debug for Deferred {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Deferred")
    }
}

/// Why a handler could not answer.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The body does not decode at the requested version.
    #[error("undecodable {api_key:?} v{version} request: {reason}")]
    Decode {
        /// The API.
        api_key: ApiKey,
        /// The version.
        version: i16,
        /// The decoder's message.
        reason: String,
    },
    /// A broker task failed unexpectedly (panicked or was cancelled).
    #[error("internal error: {0}")]
    Internal(String),
    /// The response could not be encoded.
    #[error(transparent)]
    Encode(#[from] frame::EncodeError),
}

/// Decodes the body of `request` as `T`.
/// `NOT_COORDINATOR`'s code when this broker does not coordinate `group_id` now (cluster
/// mode: it does not hold the group's coordinator-shard lease), so the client finds the
/// coordinator again; `None` when it does (always on a single broker).
pub(crate) fn not_coordinator(context: &Context, group_id: &str) -> Option<i16> {
    context
        .broker
        .groups()
        .check_coordinator(group_id)
        .err()
        .map(|e| crate::error_code::group_error(e).code())
}

pub(crate) fn decode<T: Decodable>(request: &Request) -> Result<T, HandlerError> {
    let mut body = request.body.clone();
    T::decode(&mut body, request.version()).map_err(|e| HandlerError::Decode {
        api_key: request.api_key,
        version: request.version(),
        reason: e.to_string(),
    })
}

/// Encodes `response` for `request`.
pub(crate) fn respond<R: Encodable + HeaderVersion>(
    request: &Request,
    response: &R,
) -> Result<Outcome, HandlerError> {
    Ok(Outcome::Respond(frame::encode_response(
        request.correlation_id(),
        request.version(),
        response,
    )?))
}

/// Handles one request.
pub async fn handle(context: &Context, mut request: Request) -> Outcome {
    let api_key = request.api_key;
    let version = request.version();
    tracing::trace!(
        ?api_key,
        version,
        correlation_id = request.correlation_id(),
        "request"
    );
    if api_key == ApiKey::ApiVersions {
        return finish(&request, api_versions::handle(&request));
    }
    match supported_versions(api_key) {
        Some((min, max)) if (min..=max).contains(&version) => {}
        _ => {
            tracing::warn!(
                ?api_key,
                version,
                correlation_id = request.correlation_id(),
                client_id = ?request.header.client_id,
                "unsupported api or version, closing connection"
            );
            return Outcome::Close;
        }
    }
    let result = match api_key {
        ApiKey::Produce => produce::handle(context, &mut request).await,
        ApiKey::Fetch => fetch::handle(context, &request).await,
        ApiKey::ListOffsets => list_offsets::handle(context, &request).await,
        ApiKey::Metadata => metadata::handle(context, &request).await,
        ApiKey::CreateTopics => create_topics::handle(context, &request).await,
        ApiKey::DeleteTopics => delete_topics::handle(context, &request).await,
        ApiKey::DeleteRecords => delete_records::handle(context, &request).await,
        ApiKey::InitProducerId => init_producer_id::handle(context, &request).await,
        ApiKey::OffsetForLeaderEpoch => offset_for_leader_epoch::handle(context, &request).await,
        ApiKey::DescribeConfigs => describe_configs::handle(context, &request).await,
        ApiKey::AlterConfigs => alter_configs::handle(context, &request).await,
        ApiKey::DescribeLogDirs => describe_log_dirs::handle(context, &request).await,
        ApiKey::CreatePartitions => create_partitions::handle(context, &request).await,
        ApiKey::IncrementalAlterConfigs => {
            incremental_alter_configs::handle(context, &request).await
        }
        ApiKey::DescribeCluster => describe_cluster::handle(context, &request).await,
        ApiKey::FindCoordinator => find_coordinator::handle(context, &request).await,
        ApiKey::JoinGroup => join_group::handle(context, &request).await,
        ApiKey::SyncGroup => sync_group::handle(context, &request).await,
        ApiKey::Heartbeat => heartbeat::handle(context, &request).await,
        ApiKey::LeaveGroup => leave_group::handle(context, &request).await,
        ApiKey::OffsetCommit => offset_commit::handle(context, &request).await,
        ApiKey::OffsetFetch => offset_fetch::handle(context, &request).await,
        ApiKey::DescribeGroups => describe_groups::handle(context, &request).await,
        ApiKey::ListGroups => list_groups::handle(context, &request).await,
        ApiKey::DeleteGroups => delete_groups::handle(context, &request).await,
        ApiKey::OffsetDelete => offset_delete::handle(context, &request).await,
        ApiKey::ConsumerGroupHeartbeat => consumer_group_heartbeat::handle(context, &request).await,
        ApiKey::ConsumerGroupDescribe => consumer_group_describe::handle(context, &request).await,
        ApiKey::DescribeProducers => describe_producers::handle(context, &request).await,
        ApiKey::AddPartitionsToTxn => add_partitions_to_txn::handle(context, &request).await,
        ApiKey::AddOffsetsToTxn => add_offsets_to_txn::handle(context, &request).await,
        ApiKey::EndTxn => end_txn::handle(context, &request).await,
        ApiKey::TxnOffsetCommit => txn_offset_commit::handle(context, &request).await,
        ApiKey::DescribeTransactions => describe_transactions::handle(context, &request).await,
        ApiKey::ListTransactions => list_transactions::handle(context, &request).await,
        ApiKey::DescribeAcls => describe_acls::handle(context, &request).await,
        ApiKey::CreateAcls => create_acls::handle(context, &request).await,
        ApiKey::DeleteAcls => delete_acls::handle(context, &request).await,
        ApiKey::DescribeUserScramCredentials => {
            describe_user_scram_credentials::handle(context, &request).await
        }
        ApiKey::AlterUserScramCredentials => {
            alter_user_scram_credentials::handle(context, &request).await
        }
        ApiKey::DescribeClientQuotas => describe_client_quotas::handle(context, &request).await,
        ApiKey::AlterClientQuotas => alter_client_quotas::handle(context, &request).await,
        _ => {
            tracing::warn!(?api_key, "no handler, closing connection");
            return Outcome::Close;
        }
    };
    finish(&request, result)
}

/// Handles SaslHandshake or SaslAuthenticate on the connection's SASL session.
pub(crate) fn handle_sasl(
    context: &Context,
    request: &Request,
    session: &mut crate::sasl::Session,
) -> Outcome {
    let api_key = request.api_key;
    match supported_versions(api_key) {
        Some((min, max)) if (min..=max).contains(&request.version()) => {}
        _ => {
            tracing::warn!(
                ?api_key,
                version = request.version(),
                "unsupported SASL api version, closing connection"
            );
            return Outcome::Close;
        }
    }
    let result = match api_key {
        ApiKey::SaslHandshake => sasl_handshake::handle(context, request, session),
        _ => sasl_authenticate::handle(context, request, session),
    };
    finish(request, result)
}

fn finish(request: &Request, result: Result<Outcome, HandlerError>) -> Outcome {
    match result {
        Ok(outcome) => outcome,
        Err(e) => {
            tracing::warn!(
                correlation_id = request.correlation_id(),
                client_id = ?request.header.client_id,
                error = %e,
                "closing connection"
            );
            Outcome::Close
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::Message;

    fn crate_range(key: ApiKey) -> (i16, i16) {
        let r = match key {
            ApiKey::Produce => ProduceRequest::VERSIONS,
            ApiKey::Fetch => FetchRequest::VERSIONS,
            ApiKey::ListOffsets => ListOffsetsRequest::VERSIONS,
            ApiKey::Metadata => MetadataRequest::VERSIONS,
            ApiKey::ApiVersions => ApiVersionsRequest::VERSIONS,
            ApiKey::CreateTopics => CreateTopicsRequest::VERSIONS,
            ApiKey::DeleteTopics => DeleteTopicsRequest::VERSIONS,
            ApiKey::OffsetForLeaderEpoch => OffsetForLeaderEpochRequest::VERSIONS,
            ApiKey::CreatePartitions => CreatePartitionsRequest::VERSIONS,
            ApiKey::DescribeConfigs => DescribeConfigsRequest::VERSIONS,
            ApiKey::AlterConfigs => AlterConfigsRequest::VERSIONS,
            ApiKey::IncrementalAlterConfigs => IncrementalAlterConfigsRequest::VERSIONS,
            ApiKey::DeleteRecords => DeleteRecordsRequest::VERSIONS,
            ApiKey::DescribeCluster => DescribeClusterRequest::VERSIONS,
            ApiKey::DescribeLogDirs => DescribeLogDirsRequest::VERSIONS,
            ApiKey::FindCoordinator => FindCoordinatorRequest::VERSIONS,
            ApiKey::InitProducerId => InitProducerIdRequest::VERSIONS,
            ApiKey::JoinGroup => JoinGroupRequest::VERSIONS,
            ApiKey::SyncGroup => SyncGroupRequest::VERSIONS,
            ApiKey::Heartbeat => HeartbeatRequest::VERSIONS,
            ApiKey::LeaveGroup => LeaveGroupRequest::VERSIONS,
            ApiKey::OffsetCommit => OffsetCommitRequest::VERSIONS,
            ApiKey::OffsetFetch => OffsetFetchRequest::VERSIONS,
            ApiKey::DescribeGroups => DescribeGroupsRequest::VERSIONS,
            ApiKey::ListGroups => ListGroupsRequest::VERSIONS,
            ApiKey::DeleteGroups => DeleteGroupsRequest::VERSIONS,
            ApiKey::OffsetDelete => OffsetDeleteRequest::VERSIONS,
            ApiKey::ConsumerGroupHeartbeat => ConsumerGroupHeartbeatRequest::VERSIONS,
            ApiKey::ConsumerGroupDescribe => ConsumerGroupDescribeRequest::VERSIONS,
            ApiKey::DescribeProducers => DescribeProducersRequest::VERSIONS,
            ApiKey::AddPartitionsToTxn => AddPartitionsToTxnRequest::VERSIONS,
            ApiKey::AddOffsetsToTxn => AddOffsetsToTxnRequest::VERSIONS,
            ApiKey::EndTxn => EndTxnRequest::VERSIONS,
            ApiKey::TxnOffsetCommit => TxnOffsetCommitRequest::VERSIONS,
            ApiKey::DescribeTransactions => DescribeTransactionsRequest::VERSIONS,
            ApiKey::ListTransactions => ListTransactionsRequest::VERSIONS,
            ApiKey::DescribeAcls => DescribeAclsRequest::VERSIONS,
            ApiKey::CreateAcls => CreateAclsRequest::VERSIONS,
            ApiKey::DeleteAcls => DeleteAclsRequest::VERSIONS,
            ApiKey::DescribeUserScramCredentials => DescribeUserScramCredentialsRequest::VERSIONS,
            ApiKey::AlterUserScramCredentials => AlterUserScramCredentialsRequest::VERSIONS,
            ApiKey::DescribeClientQuotas => DescribeClientQuotasRequest::VERSIONS,
            ApiKey::AlterClientQuotas => AlterClientQuotasRequest::VERSIONS,
            ApiKey::SaslHandshake => SaslHandshakeRequest::VERSIONS,
            ApiKey::SaslAuthenticate => SaslAuthenticateRequest::VERSIONS,
            other => panic!("add {other:?} to this test"),
        };
        (r.min, r.max)
    }

    #[test]
    fn advertised_versions_are_within_the_codec() {
        for &(key, min, max) in SUPPORTED_APIS {
            let (cmin, cmax) = crate_range(key);
            assert!(min >= cmin && max <= cmax && min <= max, "{key:?}");
        }
    }

    fn fetch_frame(throttle: i32) -> Bytes {
        frame::encode_response(
            3,
            12,
            &FetchResponse::default()
                .with_throttle_time_ms(throttle)
                .with_session_id(9),
        )
        .unwrap()
    }

    fn concat(parts: &[Bytes]) -> Vec<u8> {
        parts.iter().flat_map(|p| p.iter().copied()).collect()
    }

    #[tokio::test]
    async fn with_throttle_raises_plain_vectored_and_deferred_answers() {
        let want = fetch_frame(700);
        // A plain frame.
        match Outcome::Respond(fetch_frame(0)).with_throttle(ApiKey::Fetch, 12, 700) {
            Outcome::Respond(b) => assert_eq!(b, want),
            other => panic!("{other:?}"),
        }
        // Chunks sharing one buffer (as the Fetch encoder splits it): the first is raised.
        let shared = fetch_frame(0);
        let parts = vec![shared.slice(..14), shared.slice(14..)];
        match Outcome::RespondVectored(parts, None).with_throttle(ApiKey::Fetch, 12, 700) {
            Outcome::RespondVectored(parts, None) => assert_eq!(concat(&parts), want.to_vec()),
            other => panic!("{other:?}"),
        }
        // A deferred answer is raised when it completes; a larger throttle already there stays.
        let deferred = Outcome::Deferred(Deferred::new(async { Outcome::Respond(fetch_frame(0)) }));
        match deferred.with_throttle(ApiKey::Fetch, 12, 700) {
            Outcome::Deferred(d) => match d.outcome().await {
                Outcome::Respond(b) => assert_eq!(b, want),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
        match Outcome::Respond(fetch_frame(900)).with_throttle(ApiKey::Fetch, 12, 700) {
            Outcome::Respond(b) => assert_eq!(b, fetch_frame(900)),
            other => panic!("{other:?}"),
        }
        // No throttle: untouched; nothing to write: nothing to raise.
        match Outcome::Respond(fetch_frame(0)).with_throttle(ApiKey::Fetch, 12, 0) {
            Outcome::Respond(b) => assert_eq!(b, fetch_frame(0)),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            Outcome::NoResponse.with_throttle(ApiKey::Produce, 9, 700),
            Outcome::NoResponse
        ));
    }
}
