//! ConsumerGroupDescribe (key 69, KIP-848): epochs, assignor and members (with current and
//! target assignments) of consumer-protocol groups. A classic or unknown group id gets
//! GROUP_ID_NOT_FOUND, as in Kafka.

use kafka_protocol::messages::consumer_group_describe_response::{
    Assignment, DescribedGroup, Member, TopicPartitions,
};
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use strom_broker::Broker;
use strom_broker::group::assignor::Assignment as Owned;

use super::{HandlerError, Outcome, decode, respond};
use crate::error_code::group_error;
use crate::frame::Request;
use crate::{Context, authz};
use strom_broker::acl::{AclOperation, ResourceType};

/// Operations on a group when asked without an authorizer: READ, DELETE and DESCRIBE.
pub const GROUP_AUTHORIZED_OPERATIONS: i32 = (1 << 3) | (1 << 6) | (1 << 8);

/// Handles ConsumerGroupDescribe.
pub async fn handle(context: &Context, request: &Request) -> Result<Outcome, HandlerError> {
    let body: ConsumerGroupDescribeRequest = decode(request)?;
    let broker = &context.broker;
    let mut response = ConsumerGroupDescribeResponse::default();
    for group_id in body.group_ids {
        let mut described = DescribedGroup::default().with_group_id(group_id.clone());
        // With an authorizer: DESCRIBE on the group.
        if let Some(code) = authz::group_denied(context, request, AclOperation::Describe, &group_id)
        {
            response.groups.push(described.with_error_code(code));
            continue;
        }
        match broker.describe_consumer_group(&group_id) {
            Ok(d) => {
                described.group_state = StrBytes::from_static_str(d.state.name());
                described.group_epoch = d.group_epoch;
                described.assignment_epoch = d.assignment_epoch;
                described.assignor_name = StrBytes::from_string(d.assignor);
                if body.include_authorized_operations {
                    described.authorized_operations = if broker.acls().enabled() {
                        authz::authorized_operations(
                            context,
                            request,
                            ResourceType::Group,
                            &group_id,
                            authz::GROUP_OPERATIONS,
                        )
                    } else {
                        GROUP_AUTHORIZED_OPERATIONS
                    };
                }
                described.members = d
                    .members
                    .into_iter()
                    .map(|m| {
                        let mut member = Member::default()
                            .with_member_id(StrBytes::from_string(m.member_id))
                            .with_instance_id(m.instance_id.map(StrBytes::from_string))
                            .with_rack_id(m.rack_id.map(StrBytes::from_string))
                            .with_member_epoch(m.member_epoch)
                            .with_client_id(StrBytes::from_string(m.client_id))
                            .with_client_host(StrBytes::from_string(m.client_host))
                            .with_subscribed_topic_names(
                                m.subscribed_topic_names
                                    .into_iter()
                                    .map(|n| TopicName(StrBytes::from_string(n)))
                                    .collect(),
                            )
                            .with_subscribed_topic_regex(
                                m.subscribed_topic_regex.map(StrBytes::from_string),
                            )
                            .with_assignment(assignment(broker, &m.assignment))
                            .with_target_assignment(assignment(broker, &m.target_assignment));
                        if request.version() >= 1 {
                            // 1: a member of the consumer protocol (0 would be classic).
                            member.member_type = 1;
                        }
                        member
                    })
                    .collect();
            }
            Err(e) => {
                described.error_code = group_error(e).code();
                described.error_message = Some(StrBytes::from_string(format!(
                    "group {} is not a consumer group",
                    &*group_id
                )));
            }
        }
        response.groups.push(described);
    }
    respond(request, &response)
}

fn assignment(broker: &Broker, owned: &Owned) -> Assignment {
    Assignment::default().with_topic_partitions(
        owned
            .iter()
            .map(|(id, parts)| {
                let name = broker
                    .topic_by_id(*id)
                    .map(|t| t.name().to_owned())
                    .unwrap_or_default();
                TopicPartitions::default()
                    .with_topic_id(*id)
                    .with_topic_name(TopicName(StrBytes::from_string(name)))
                    .with_partitions(parts.iter().copied().collect())
            })
            .collect(),
    )
}
