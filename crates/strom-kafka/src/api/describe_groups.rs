//! DescribeGroups (key 15): state, protocol and members of groups. Unknown groups are `Dead`
//! with no members, as Kafka answers before v6.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{ConsumerProtocolAssignment, TopicName};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};
use kafka_protocol::protocol::{Encodable, StrBytes};
use strom_broker::group::assignor::Assignment;

use super::{HandlerError, Outcome, decode, respond};
use crate::frame::Request;
use crate::{Context, authz};
use strom_broker::acl::{AclOperation, ResourceType};

/// Handles DescribeGroups.
pub async fn handle(context: &Context, request: &Request) -> Result<Outcome, HandlerError> {
    let body: DescribeGroupsRequest = decode(request)?;
    let mut response = DescribeGroupsResponse::default();
    let want_ops = request.version() >= 3 && body.include_authorized_operations;
    for group_id in body.groups {
        let mut described = DescribedGroup::default().with_group_id(group_id.clone());
        // With an authorizer: DESCRIBE on the group, and the client's own operations.
        if let Some(code) = authz::group_denied(context, request, AclOperation::Describe, &group_id)
        {
            response.groups.push(described.with_error_code(code));
            continue;
        }
        // Cluster mode: another broker coordinates this group.
        if let Some(code) = super::not_coordinator(context, &group_id) {
            response.groups.push(described.with_error_code(code));
            continue;
        }
        if want_ops && context.broker.acls().enabled() {
            described.authorized_operations = authz::authorized_operations(
                context,
                request,
                ResourceType::Group,
                &group_id,
                authz::GROUP_OPERATIONS,
            );
        }
        match context.broker.groups().describe(&group_id) {
            Some(d) => {
                described.group_state = StrBytes::from_static_str(d.state.name());
                described.protocol_type = StrBytes::from_string(d.protocol_type);
                described.protocol_data = StrBytes::from_string(d.protocol_name);
                described.members = d
                    .members
                    .into_iter()
                    .map(|m| {
                        let mut member = DescribedGroupMember::default()
                            .with_member_id(StrBytes::from_string(m.member_id))
                            .with_client_id(StrBytes::from_string(m.client_id))
                            .with_client_host(StrBytes::from_string(m.client_host))
                            .with_member_metadata(m.metadata)
                            .with_member_assignment(match &m.owned {
                                Some(owned) => encode_assignment(context, owned),
                                None => m.assignment,
                            });
                        if request.version() >= 4 {
                            member.group_instance_id = m.instance_id.map(StrBytes::from_string);
                        }
                        member
                    })
                    .collect();
            }
            None => described.group_state = StrBytes::from_static_str("Dead"),
        }
        response.groups.push(described);
    }
    respond(request, &response)
}

/// A consumer-protocol member's partitions in the classic consumer protocol's assignment
/// encoding (version 0), which admin tools decode.
fn encode_assignment(context: &Context, owned: &Assignment) -> Bytes {
    let assignment = ConsumerProtocolAssignment::default().with_assigned_partitions(
        owned
            .iter()
            .filter_map(|(id, parts)| {
                let topic = context.broker.topic_by_id(*id).ok()?;
                Some(
                    TopicPartition::default()
                        .with_topic(TopicName(StrBytes::from_string(topic.name().to_owned())))
                        .with_partitions(parts.iter().copied().collect()),
                )
            })
            .collect(),
    );
    let mut buf = BytesMut::new();
    buf.put_i16(0);
    if assignment.encode(&mut buf, 0).is_err() {
        return Bytes::new();
    }
    buf.freeze()
}
