//! LeaveGroup (key 13): members leave (one in v0–v2, a batch in v3+); the group rebalances.

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};
use kafka_protocol::protocol::StrBytes;

use super::{HandlerError, Outcome, decode, respond};
use crate::error_code::group_error;
use crate::frame::Request;
use crate::{Context, authz};
use strom_broker::acl::AclOperation;

/// Handles LeaveGroup.
pub async fn handle(context: &Context, request: &Request) -> Result<Outcome, HandlerError> {
    let body: LeaveGroupRequest = decode(request)?;
    if let Some(code) = authz::group_denied(context, request, AclOperation::Read, &body.group_id) {
        return respond(
            request,
            &LeaveGroupResponse::default().with_error_code(code),
        );
    }
    let batched = request.version() >= 3;
    let members: Vec<(String, Option<String>)> = if batched {
        body.members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|s| s.to_string()),
                )
            })
            .collect()
    } else {
        vec![(body.member_id.to_string(), None)]
    };
    let now = context.broker.clock().now_ms();
    let results = context.broker.groups().leave(&body.group_id, &members, now);
    let mut response = LeaveGroupResponse::default();
    if batched {
        response.members = members
            .into_iter()
            .zip(results)
            .map(|((member_id, instance), result)| {
                MemberResponse::default()
                    .with_member_id(StrBytes::from_string(member_id))
                    .with_group_instance_id(instance.map(StrBytes::from_string))
                    .with_error_code(result.err().map_or(0, |e| group_error(e).code()))
            })
            .collect();
    } else if let Some(Err(e)) = results.into_iter().next() {
        response.error_code = group_error(e).code();
    }
    respond(request, &response)
}
