//! ConsumerGroupHeartbeat (key 68, KIP-848): joins, heartbeats and leaves of consumer-protocol
//! groups (`group.protocol=consumer`); the assignment is computed by the coordinator
//! (`strom_broker::group::consumer`). Topics travel as ids both ways.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::messages::consumer_group_heartbeat_response::{Assignment, TopicPartitions};
use kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse};
use kafka_protocol::protocol::StrBytes;
use strom_broker::group::consumer::Heartbeat;

use super::{HandlerError, Outcome, decode, respond};
use crate::error_code::group_error;
use crate::frame::Request;
use crate::{Context, authz};
use strom_broker::acl::AclOperation;

/// Handles ConsumerGroupHeartbeat.
pub async fn handle(context: &Context, request: &Request) -> Result<Outcome, HandlerError> {
    let body: ConsumerGroupHeartbeatRequest = decode(request)?;
    // With an authorizer: READ on the group.
    if let Some(code) = authz::group_denied(context, request, AclOperation::Read, &body.group_id) {
        let response = ConsumerGroupHeartbeatResponse::default()
            .with_error_code(code)
            .with_error_message(Some(StrBytes::from_static_str(
                "not authorized to READ the group",
            )));
        return respond(request, &response);
    }
    let owned = body.topic_partitions.map(|topics| {
        let mut owned: BTreeMap<_, BTreeSet<i32>> = BTreeMap::new();
        for t in topics {
            owned.entry(t.topic_id).or_default().extend(t.partitions);
        }
        owned
    });
    let req = Heartbeat {
        group_id: body.group_id.to_string(),
        member_id: body.member_id.to_string(),
        member_epoch: body.member_epoch,
        instance_id: body.instance_id.map(|s| s.to_string()),
        rack_id: body.rack_id.map(|s| s.to_string()),
        rebalance_timeout_ms: body.rebalance_timeout_ms,
        subscribed_topic_names: body
            .subscribed_topic_names
            .map(|names| names.into_iter().map(|n| n.to_string()).collect()),
        subscribed_topic_regex: body.subscribed_topic_regex.map(|s| s.to_string()),
        server_assignor: body.server_assignor.map(|s| s.to_string()),
        owned,
        client_id: request.client_id(),
        client_host: request.client_host(),
    };
    let mut response = ConsumerGroupHeartbeatResponse::default();
    match context.broker.consumer_group_heartbeat(req) {
        Ok(answer) => {
            response.member_id = Some(StrBytes::from_string(answer.member_id));
            response.member_epoch = answer.member_epoch;
            response.heartbeat_interval_ms = answer.heartbeat_interval_ms;
            response.assignment = answer.assignment.map(|a| {
                Assignment::default().with_topic_partitions(
                    a.into_iter()
                        .map(|(topic_id, parts)| {
                            TopicPartitions::default()
                                .with_topic_id(topic_id)
                                .with_partitions(parts.into_iter().collect())
                        })
                        .collect(),
                )
            });
        }
        Err(e) => {
            let code = group_error(e);
            response.error_code = code.code();
            response.error_message = Some(StrBytes::from_string(e.to_string()));
        }
    }
    respond(request, &response)
}
