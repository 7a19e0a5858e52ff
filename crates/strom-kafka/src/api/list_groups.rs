//! ListGroups (key 16): every group (with members or only committed offsets); v4+ filters by
//! state, v5+ by group type (KIP-848: `classic` or `consumer`, both filters case-insensitive)
//! and answers each group's type.

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};
use kafka_protocol::protocol::StrBytes;

use super::{HandlerError, Outcome, decode, respond};
use crate::frame::Request;
use crate::{Context, authz};
use strom_broker::acl::AclOperation;

/// Handles ListGroups.
pub async fn handle(context: &Context, request: &Request) -> Result<Outcome, HandlerError> {
    let body: ListGroupsRequest = decode(request)?;
    let states: Vec<String> = body
        .states_filter
        .iter()
        .map(|s| s.to_ascii_lowercase())
        .collect();
    let types: Vec<String> = body
        .types_filter
        .iter()
        .map(|s| s.to_ascii_lowercase())
        .collect();
    let mut response = ListGroupsResponse::default();
    // With an authorizer: DESCRIBE on the cluster lists every group; otherwise only the groups
    // the client may DESCRIBE (as Kafka).
    let all = authz::check_cluster(context, request, AclOperation::Describe).is_ok();
    for g in context.broker.groups().list() {
        if !all
            && authz::group_denied(context, request, AclOperation::Describe, &g.group_id).is_some()
        {
            continue;
        }
        let state = g.state.name();
        if !states.is_empty() && !states.contains(&state.to_ascii_lowercase()) {
            continue;
        }
        if !types.is_empty() && !types.iter().any(|t| t == g.group_type) {
            continue;
        }
        let mut listed = ListedGroup::default()
            .with_group_id(GroupId(StrBytes::from_string(g.group_id)))
            .with_protocol_type(StrBytes::from_string(g.protocol_type));
        if request.version() >= 4 {
            listed.group_state = StrBytes::from_static_str(state);
        }
        if request.version() >= 5 {
            listed.group_type = StrBytes::from_static_str(g.group_type);
        }
        response.groups.push(listed);
    }
    respond(request, &response)
}
