//! OffsetDelete (key 47): removes committed offsets of a group.
//!
//! As Kafka does: an unknown group is `GROUP_ID_NOT_FOUND` for the whole request, and so is a
//! group with members that does not use the consumer protocol (`NON_EMPTY_GROUP`). Otherwise
//! each partition is answered alone: `GROUP_SUBSCRIBED_TO_TOPIC` when a member subscribes to its
//! topic (classic members' subscriptions are read from their consumer-protocol metadata; a group
//! whose subscriptions cannot be read, e.g. in the middle of a rebalance, or that subscribes
//! by regex counts as subscribed to every topic), and the offsets of the others are deleted.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};

use super::{HandlerError, Outcome, decode, respond};
use crate::error_code::error_code;
use crate::frame::Request;
use crate::{Context, authz};
use strom_broker::acl::AclOperation;

/// Handles OffsetDelete.
pub async fn handle(context: &Context, request: &Request) -> Result<Outcome, HandlerError> {
    let body: OffsetDeleteRequest = decode(request)?;
    let group_id = body.group_id.to_string();
    let mut response = OffsetDeleteResponse::default();
    // With an authorizer: DELETE on the group (the whole request), READ on each topic (its
    // partitions get TOPIC_AUTHORIZATION_FAILED and keep their offsets).
    if let Some(code) = authz::group_denied(context, request, AclOperation::Delete, &group_id) {
        response.error_code = code;
        return respond(request, &response);
    }
    let denied = authz::denied_topics(
        context,
        request,
        AclOperation::Read,
        body.topics.iter().map(|t| t.name.as_str()),
    );
    let requested: Vec<(String, Vec<i32>)> = body
        .topics
        .iter()
        .filter(|t| !denied.contains(t.name.as_str()))
        .map(|t| {
            (
                t.name.to_string(),
                t.partitions.iter().map(|p| p.partition_index).collect(),
            )
        })
        .collect();
    // The subscription check and the delete are one step in the broker (see
    // `Broker::offset_delete_blocking`), so a rebalance cannot come between them.
    let refused = match context
        .broker
        .run_blocking(move |b| b.offset_delete_blocking(&group_id, &requested))
        .await
    {
        Ok(refused) => refused,
        Err(e) => {
            response.error_code = error_code(&e);
            return respond(request, &response);
        }
    };
    response.topics = body
        .topics
        .into_iter()
        .map(|t| {
            let code = if denied.contains(t.name.as_str()) {
                authz::topic_denied_code()
            } else if refused.contains(t.name.as_str()) {
                ResponseError::GroupSubscribedToTopic.code()
            } else {
                0
            };
            OffsetDeleteResponseTopic::default()
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            OffsetDeleteResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(code)
                        })
                        .collect(),
                )
                .with_name(t.name)
        })
        .collect();
    respond(request, &response)
}
