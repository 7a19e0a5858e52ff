//! TxnOffsetCommit (key 28): offsets committed inside a transaction. They stay pending (and
//! invisible to OffsetFetch) until the transaction commits; an abort drops them.

use super::offset_commit::{Commits, partition_codes};
use super::{HandlerError, Outcome, decode, respond};
use crate::error_code::error_code;
use crate::frame::Request;
use crate::{Context, authz};
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};
use strom_broker::acl::AclOperation;

/// Handles TxnOffsetCommit.
pub async fn handle(context: &Context, request: &Request) -> Result<Outcome, HandlerError> {
    let body: TxnOffsetCommitRequest = decode(request)?;
    let id = body.transactional_id.to_string();
    let group = body.group_id.to_string();
    let (pid, epoch) = (body.producer_id.0, body.producer_epoch);
    let member = body.member_id.to_string();
    let generation = body.generation_id;
    let instance = body.group_instance_id.map(|s| s.to_string());
    // With an authorizer, each topic needs READ (Kafka's `handleTxnOffsetCommitRequest`): its
    // partitions get TOPIC_AUTHORIZATION_FAILED and are not committed; the others go on.
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
    let result = match authz::check_txn(context, request, &id, Some(&group)) {
        Err(e) => Err(e),
        // Every topic refused: nothing reaches the coordinator.
        Ok(()) if commits.is_empty() && !refused.is_empty() => Ok(Vec::new()),
        Ok(()) => {
            context
                .broker
                .run_blocking(move |b| {
                    b.txn_offset_commit_blocking(
                        &id,
                        &group,
                        pid,
                        epoch,
                        &member,
                        generation,
                        instance.as_deref(),
                        commits,
                    )
                })
                .await
        }
    };
    if let Err(e) = &result {
        tracing::debug!(error = %e, "TxnOffsetCommit refused");
    }
    let mut codes = partition_codes(&result, order.len());
    // Refused topics: the transactional id's or group's error if that was refused too, else
    // the topic's.
    let refused_code = match &result {
        Err(e @ strom_broker::Error::AuthorizationFailed { .. }) => error_code(e),
        _ => authz::topic_denied_code(),
    };
    codes.extend(std::iter::repeat_n(refused_code, refused.len()));
    let mut topics: Vec<TxnOffsetCommitResponseTopic> = Vec::new();
    for ((name, partition), code) in order.into_iter().chain(refused).zip(codes) {
        let p = TxnOffsetCommitResponsePartition::default()
            .with_partition_index(partition)
            .with_error_code(code);
        match topics.iter_mut().find(|t| t.name == name) {
            Some(t) => t.partitions.push(p),
            None => topics.push(
                TxnOffsetCommitResponseTopic::default()
                    .with_name(name)
                    .with_partitions(vec![p]),
            ),
        }
    }
    respond(
        request,
        &TxnOffsetCommitResponse::default().with_topics(topics),
    )
}
