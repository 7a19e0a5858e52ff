//! SyncGroup (key 14): the leader hands in assignments; every member gets its own.

use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};
use kafka_protocol::protocol::StrBytes;

use super::{HandlerError, Outcome, decode, respond};
use crate::error_code::group_error;
use crate::frame::Request;
use crate::{Context, authz};
use strom_broker::acl::AclOperation;

/// Handles SyncGroup.
pub async fn handle(context: &Context, request: &Request) -> Result<Outcome, HandlerError> {
    let body: SyncGroupRequest = decode(request)?;
    if let Some(code) = authz::group_denied(context, request, AclOperation::Read, &body.group_id) {
        return respond(request, &SyncGroupResponse::default().with_error_code(code));
    }
    let assignments = body
        .assignments
        .into_iter()
        .map(|a| (a.member_id.to_string(), a.assignment))
        .collect();
    let instance = body.group_instance_id.map(|s| s.to_string());
    let now = context.broker.clock().now_ms();
    let result = context
        .broker
        .groups()
        .sync(
            &body.group_id,
            &body.member_id,
            body.generation_id,
            instance.as_deref(),
            assignments,
            now,
        )
        .await;
    let mut response = SyncGroupResponse::default();
    match result {
        Ok(synced) => {
            if request.version() >= 5 {
                response.protocol_type = Some(StrBytes::from_string(synced.protocol_type));
                response.protocol_name = Some(StrBytes::from_string(synced.protocol_name));
            }
            response.assignment = synced.assignment;
        }
        Err(e) => response.error_code = group_error(e).code(),
    }
    respond(request, &response)
}
