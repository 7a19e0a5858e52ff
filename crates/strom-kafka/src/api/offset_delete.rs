//! OffsetDelete (key 47): removes committed offsets of a group.
//!
//! As Kafka does: an unknown group is `GROUP_ID_NOT_FOUND` for the whole request, and so is a
//! group with members that does not use the consumer protocol (`NON_EMPTY_GROUP`). Otherwise
//! each partition is answered alone: `GROUP_SUBSCRIBED_TO_TOPIC` when a member subscribes to its
//! topic (classic members' subscriptions are read from their consumer-protocol metadata; a group
//! whose subscriptions cannot be read, e.g. in the middle of a rebalance, or that subscribes
//! by regex counts as subscribed to every topic), and the offsets of the others are deleted.

use std::collections::BTreeSet;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};
use strom_broker::group::GroupState;

use super::{HandlerError, Outcome, decode, respond};
use crate::Context;
use crate::error_code::error_code;
use crate::frame::Request;

/// The topics a group's members subscribe to; `None` means "cannot tell: all of them".
enum Subscriptions {
    /// No members: nothing is subscribed.
    Empty,
    /// These topics.
    Topics(BTreeSet<String>),
    /// Unknown (treated as every topic).
    All,
}

impl Subscriptions {
    fn contains(&self, topic: &str) -> bool {
        match self {
            Subscriptions::Empty => false,
            Subscriptions::Topics(t) => t.contains(topic),
            Subscriptions::All => true,
        }
    }
}

fn subscriptions(context: &Context, group_id: &str) -> Result<Subscriptions, ResponseError> {
    let broker = &context.broker;
    if let Ok(d) = broker.describe_consumer_group(group_id) {
        let mut topics = BTreeSet::new();
        for m in d.members {
            if m.subscribed_topic_regex
                .as_deref()
                .is_some_and(|r| !r.is_empty())
            {
                return Ok(Subscriptions::All);
            }
            topics.extend(m.subscribed_topic_names);
        }
        return Ok(if topics.is_empty() {
            Subscriptions::Empty
        } else {
            Subscriptions::Topics(topics)
        });
    }
    let Some(d) = broker.groups().describe(group_id) else {
        return Err(ResponseError::GroupIdNotFound);
    };
    if d.members.is_empty() || d.state == GroupState::Empty {
        return Ok(Subscriptions::Empty);
    }
    if d.protocol_type != "consumer" {
        return Err(ResponseError::NonEmptyGroup);
    }
    let mut topics = BTreeSet::new();
    for m in &d.members {
        match crate::client::group::decode_subscription(&m.metadata) {
            Ok(t) if !m.metadata.is_empty() => topics.extend(t),
            _ => return Ok(Subscriptions::All),
        }
    }
    Ok(Subscriptions::Topics(topics))
}

/// Handles OffsetDelete.
pub async fn handle(context: &Context, request: &Request) -> Result<Outcome, HandlerError> {
    let body: OffsetDeleteRequest = decode(request)?;
    let group_id = body.group_id.to_string();
    let mut response = OffsetDeleteResponse::default();
    let subscribed = match subscriptions(context, &group_id) {
        Ok(s) => s,
        Err(e) => {
            response.error_code = e.code();
            return respond(request, &response);
        }
    };
    let to_delete: Vec<(String, i32)> = body
        .topics
        .iter()
        .filter(|t| !subscribed.contains(t.name.as_str()))
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| (t.name.to_string(), p.partition_index))
        })
        .collect();
    let deleted = {
        let group_id = group_id.clone();
        context
            .broker
            .run_blocking(move |b| b.delete_unsubscribed_offsets_blocking(&group_id, to_delete))
            .await
    };
    if let Err(e) = deleted {
        response.error_code = error_code(&e);
        return respond(request, &response);
    }
    response.topics = body
        .topics
        .into_iter()
        .map(|t| {
            let code = if subscribed.contains(t.name.as_str()) {
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
