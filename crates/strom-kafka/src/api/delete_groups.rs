//! DeleteGroups (key 42): forgets empty groups and tombstones their committed offsets.

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

use super::{HandlerError, Outcome, decode, respond};
use crate::error_code::error_code;
use crate::frame::Request;
use crate::{Context, authz};
use strom_broker::acl::AclOperation;

/// Handles DeleteGroups.
pub async fn handle(context: &Context, request: &Request) -> Result<Outcome, HandlerError> {
    let body: DeleteGroupsRequest = decode(request)?;
    let mut response = DeleteGroupsResponse::default();
    for group_id in body.groups_names {
        let id = group_id.to_string();
        let denied = authz::group_denied(context, request, AclOperation::Delete, &id);
        let code = match denied {
            Some(code) => code,
            None => match context
                .broker
                .run_blocking(move |b| b.delete_group_blocking(&id))
                .await
            {
                Ok(()) => 0,
                Err(e) => error_code(&e),
            },
        };
        response.results.push(
            DeletableGroupResult::default()
                .with_group_id(group_id)
                .with_error_code(code),
        );
    }
    respond(request, &response)
}
