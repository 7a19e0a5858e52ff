//! OffsetCommit (key 8): durable commits to `__consumer_offsets` (see `strom_broker::group`).
//!
//! Generation -1 with an empty member id is a simple consumer's commit, accepted when the group
//! has no members, as in Kafka.

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use strom_broker::group::OffsetCommit;

use super::{HandlerError, Outcome, decode, respond};
use crate::error_code::error_code;
use crate::frame::Request;
use crate::{Context, authz};
use strom_broker::acl::{AclOperation, ResourceType};

/// The partitions of a commit request (OffsetCommit or TxnOffsetCommit) in request order, and
/// the commits they ask for.
#[derive(Default)]
pub(super) struct Commits {
    pub(super) order: Vec<(TopicName, i32)>,
    pub(super) commits: Vec<OffsetCommit>,
}

impl Commits {
    pub(super) fn push(
        &mut self,
        topic: &TopicName,
        partition: i32,
        offset: i64,
        leader_epoch: i32,
        metadata: Option<&StrBytes>,
    ) {
        self.order.push((topic.clone(), partition));
        self.commits.push(OffsetCommit {
            topic: topic.to_string(),
            partition,
            offset,
            leader_epoch,
            metadata: metadata.map(|s| s.to_string()),
        });
    }
}

/// One error code per partition of a commit: each partition's own, or the whole request's.
pub(super) fn partition_codes(
    result: &Result<Vec<Result<(), strom_broker::Error>>, strom_broker::Error>,
    partitions: usize,
) -> Vec<i16> {
    match result {
        Ok(results) => results
            .iter()
            .map(|r| r.as_ref().err().map_or(0, error_code))
            .collect(),
        Err(e) => vec![error_code(e); partitions],
    }
}

/// Handles OffsetCommit.
pub async fn handle(context: &Context, request: &Request) -> Result<Outcome, HandlerError> {
    let body: OffsetCommitRequest = decode(request)?;
    let group_id = body.group_id.to_string();
    let member_id = body.member_id.to_string();
    let generation = body.generation_id_or_member_epoch;
    let instance = body.group_instance_id.map(|s| s.to_string());
    // With an authorizer, each topic needs READ: its partitions get TOPIC_AUTHORIZATION_FAILED
    // and are not committed (the group's READ is checked below).
    let denied = authz::denied_topics(
        context,
        request,
        AclOperation::Read,
        body.topics.iter().map(|t| t.name.0.as_str()),
    );
    let mut refused = Vec::new();
    let mut batch = Commits::default();
    for topic in &body.topics {
        if denied.contains(topic.name.0.as_str()) {
            for p in &topic.partitions {
                refused.push((topic.name.clone(), p.partition_index));
            }
            continue;
        }
        for p in &topic.partitions {
            batch.push(
                &topic.name,
                p.partition_index,
                p.committed_offset,
                p.committed_leader_epoch,
                p.committed_metadata.as_ref(),
            );
        }
    }
    let Commits { order, commits } = batch;
    let result = match authz::check(
        context,
        request,
        AclOperation::Read,
        ResourceType::Group,
        &group_id,
    ) {
        Err(e) => Err(e),
        // Every topic refused: nothing reaches the coordinator.
        Ok(()) if commits.is_empty() && !refused.is_empty() => Ok(Vec::new()),
        Ok(()) => {
            context
                .broker
                .run_blocking(move |b| {
                    b.commit_offsets_blocking(
                        &group_id,
                        &member_id,
                        generation,
                        instance.as_deref(),
                        commits,
                    )
                })
                .await
        }
    };
    let mut codes = partition_codes(&result, order.len());
    // Refused topics: the group's error if the group was refused too, else the topic's.
    let refused_code = match &result {
        Err(e @ strom_broker::Error::AuthorizationFailed { .. }) => error_code(e),
        _ => authz::topic_denied_code(),
    };
    codes.extend(std::iter::repeat_n(refused_code, refused.len()));
    let mut response = OffsetCommitResponse::default();
    for ((name, partition), code) in order.into_iter().chain(refused).zip(codes) {
        let partition = OffsetCommitResponsePartition::default()
            .with_partition_index(partition)
            .with_error_code(code);
        match response.topics.last_mut() {
            Some(t) if t.name == name => t.partitions.push(partition),
            _ => response.topics.push(
                OffsetCommitResponseTopic::default()
                    .with_name(name)
                    .with_partitions(vec![partition]),
            ),
        }
    }
    respond(request, &response)
}
