//! DeleteAcls (key 31): deletes every ACL matching each filter; one result per filter, listing
//! the ACLs it matched.
//!
//! Without an authorizer every filter fails with `SECURITY_DISABLED`; a filter with an UNKNOWN
//! code with `INVALID_REQUEST` (the others still apply). The deletions of all valid filters are
//! one metadata event.

use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::{DeleteAclsRequest, DeleteAclsResponse};
use strom_broker::Error;
use strom_broker::acl::AclOperation;

use super::acl_common::{FilterFields, filter, str_bytes};
use super::{HandlerError, Outcome, decode, respond};
use crate::error_code::error_code;
use crate::frame::Request;
use crate::{Context, authz};

fn failed(e: &Error) -> DeleteAclsFilterResult {
    DeleteAclsFilterResult::default()
        .with_error_code(error_code(e))
        .with_error_message(Some(str_bytes(&e.to_string())))
}

/// Handles DeleteAcls.
pub async fn handle(context: &Context, request: &Request) -> Result<Outcome, HandlerError> {
    let body: DeleteAclsRequest = decode(request)?;
    let refused = if context.broker.acls().enabled() {
        authz::check_cluster(context, request, AclOperation::Alter).err()
    } else {
        Some(Error::SecurityDisabled)
    };
    if let Some(e) = refused {
        let results = body.filters.iter().map(|_| failed(&e)).collect();
        return respond(
            request,
            &DeleteAclsResponse::default().with_filter_results(results),
        );
    }
    let decoded: Vec<Result<_, Error>> = body
        .filters
        .iter()
        .map(|f| {
            filter(FilterFields {
                resource_type: f.resource_type_filter,
                resource_name: f.resource_name_filter.as_ref(),
                pattern_type: f.pattern_type_filter,
                principal: f.principal_filter.as_ref(),
                host: f.host_filter.as_ref(),
                operation: f.operation,
                permission: f.permission_type,
            })
            .map_err(Error::InvalidAcl)
        })
        .collect();
    let valid: Vec<_> = decoded
        .iter()
        .filter_map(|r| r.as_ref().ok().cloned())
        .collect();
    let deleted = context
        .broker
        .run_blocking(move |b| b.delete_acls_blocking(&valid))
        .await;
    let mut matched = match &deleted {
        Ok(m) => m.clone().into_iter(),
        Err(_) => Vec::new().into_iter(),
    };
    let results = decoded
        .iter()
        .map(|r| match (r, &deleted) {
            (Err(e), _) | (Ok(_), Err(e)) => failed(e),
            (Ok(_), Ok(_)) => {
                let acls = matched.next().unwrap_or_default();
                DeleteAclsFilterResult::default().with_matching_acls(
                    acls.iter()
                        .map(|acl| {
                            DeleteAclsMatchingAcl::default()
                                .with_resource_type(acl.resource_type.code())
                                .with_resource_name(str_bytes(&acl.resource_name))
                                .with_pattern_type(acl.pattern_type.code())
                                .with_principal(str_bytes(&acl.principal))
                                .with_host(str_bytes(&acl.host))
                                .with_operation(acl.operation.code())
                                .with_permission_type(acl.permission.code())
                        })
                        .collect(),
                )
            }
        })
        .collect();
    respond(
        request,
        &DeleteAclsResponse::default().with_filter_results(results),
    )
}
