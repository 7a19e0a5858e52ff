//! Heartbeat (key 12): keeps a member's session alive; tells it about rebalances.

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use super::{HandlerError, Outcome, decode, respond};
use crate::error_code::group_error;
use crate::frame::Request;
use crate::{Context, authz};
use strom_broker::acl::AclOperation;

/// Handles Heartbeat.
pub async fn handle(context: &Context, request: &Request) -> Result<Outcome, HandlerError> {
    let body: HeartbeatRequest = decode(request)?;
    if let Some(code) = authz::group_denied(context, request, AclOperation::Read, &body.group_id) {
        return respond(request, &HeartbeatResponse::default().with_error_code(code));
    }
    let instance = body.group_instance_id.map(|s| s.to_string());
    let now = context.broker.clock().now_ms();
    let mut response = HeartbeatResponse::default();
    if let Err(e) = context.broker.groups().heartbeat(
        &body.group_id,
        &body.member_id,
        body.generation_id,
        instance.as_deref(),
        now,
    ) {
        response.error_code = group_error(e).code();
    }
    respond(request, &response)
}
