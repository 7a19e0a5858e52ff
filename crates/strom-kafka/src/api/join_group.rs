//! JoinGroup (key 11): join a consumer group; answered when the rebalance completes.
//!
//! v4+ first joins without a member id get MEMBER_ID_REQUIRED with an id (KIP-394).

use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};
use kafka_protocol::protocol::StrBytes;
use strom_broker::group::JoinRequest;

use super::{HandlerError, Outcome, decode, respond};
use crate::error_code::group_error;
use crate::frame::Request;
use crate::{Context, authz};
use strom_broker::acl::AclOperation;

/// Handles JoinGroup.
pub async fn handle(context: &Context, request: &Request) -> Result<Outcome, HandlerError> {
    let body: JoinGroupRequest = decode(request)?;
    let version = request.version();
    if let Some(code) = authz::group_denied(context, request, AclOperation::Read, &body.group_id) {
        let mut response = JoinGroupResponse::default()
            .with_error_code(code)
            .with_generation_id(-1)
            .with_member_id(body.member_id);
        if version < 7 {
            response.protocol_name = Some(StrBytes::default());
        }
        return respond(request, &response);
    }
    let req = JoinRequest {
        group_id: body.group_id.to_string(),
        member_id: body.member_id.to_string(),
        instance_id: body.group_instance_id.map(|s| s.to_string()),
        client_id: request.client_id(),
        client_host: request.client_host(),
        session_timeout_ms: body.session_timeout_ms,
        rebalance_timeout_ms: if version >= 1 {
            body.rebalance_timeout_ms
        } else {
            body.session_timeout_ms
        },
        protocol_type: body.protocol_type.to_string(),
        protocols: body
            .protocols
            .into_iter()
            .map(|p| (p.name.to_string(), p.metadata))
            .collect(),
        require_known_member_id: version >= 4,
    };
    let now = context.broker.clock().now_ms();
    let mut response = JoinGroupResponse::default();
    match context.broker.groups().join(req, now).await {
        Ok(joined) => {
            response.generation_id = joined.generation_id;
            response.protocol_type = Some(StrBytes::from_string(joined.protocol_type));
            response.protocol_name = Some(StrBytes::from_string(joined.protocol_name));
            response.leader = StrBytes::from_string(joined.leader);
            response.member_id = StrBytes::from_string(joined.member_id);
            response.members = joined
                .members
                .into_iter()
                .map(|m| {
                    JoinGroupResponseMember::default()
                        .with_member_id(StrBytes::from_string(m.member_id))
                        .with_group_instance_id(m.instance_id.map(StrBytes::from_string))
                        .with_metadata(m.metadata)
                })
                .collect();
        }
        Err((e, member_id)) => {
            response.error_code = group_error(e).code();
            response.generation_id = -1;
            response.member_id = StrBytes::from_string(member_id);
            if version < 7 {
                response.protocol_name = Some(StrBytes::default());
            }
        }
    }
    if version < 7 && response.protocol_name.is_none() {
        response.protocol_name = Some(StrBytes::default());
    }
    respond(request, &response)
}
