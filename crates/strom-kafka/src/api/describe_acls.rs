//! DescribeAcls (key 29): the ACLs matching one filter, grouped by resource pattern.
//!
//! Without an authorizer the response carries `SECURITY_DISABLED`; a filter with an UNKNOWN
//! code `INVALID_REQUEST`.

use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{DescribeAclsRequest, DescribeAclsResponse};
use strom_broker::Error;
use strom_broker::acl::{AclBinding, AclOperation};

use super::acl_common::{FilterFields, filter, str_bytes};
use super::{HandlerError, Outcome, decode, respond};
use crate::error_code::error_code;
use crate::frame::Request;
use crate::{Context, authz};

/// Groups ACLs (sorted by resource pattern first) into the response's resources.
fn group(acls: Vec<AclBinding>) -> Vec<DescribeAclsResource> {
    let mut out: Vec<DescribeAclsResource> = Vec::new();
    for acl in acls {
        let description = AclDescription::default()
            .with_principal(str_bytes(&acl.principal))
            .with_host(str_bytes(&acl.host))
            .with_operation(acl.operation.code())
            .with_permission_type(acl.permission.code());
        match out.last_mut() {
            Some(last)
                if last.resource_type == acl.resource_type.code()
                    && last.pattern_type == acl.pattern_type.code()
                    && last.resource_name.as_str() == acl.resource_name =>
            {
                last.acls.push(description);
            }
            _ => out.push(
                DescribeAclsResource::default()
                    .with_resource_type(acl.resource_type.code())
                    .with_resource_name(str_bytes(&acl.resource_name))
                    .with_pattern_type(acl.pattern_type.code())
                    .with_acls(vec![description]),
            ),
        }
    }
    out
}

/// Handles DescribeAcls.
pub async fn handle(context: &Context, request: &Request) -> Result<Outcome, HandlerError> {
    let body: DescribeAclsRequest = decode(request)?;
    // SECURITY_DISABLED comes before the filter's validation, as in Kafka.
    let result = if context.broker.acls().enabled() {
        filter(FilterFields {
            resource_type: body.resource_type_filter,
            resource_name: body.resource_name_filter.as_ref(),
            pattern_type: body.pattern_type_filter,
            principal: body.principal_filter.as_ref(),
            host: body.host_filter.as_ref(),
            operation: body.operation,
            permission: body.permission_type,
        })
        .map_err(Error::InvalidAcl)
        .and_then(|f| {
            authz::check_cluster(context, request, AclOperation::Describe)?;
            context.broker.describe_acls(&f)
        })
    } else {
        Err(Error::SecurityDisabled)
    };
    let response = match result {
        Ok(acls) => DescribeAclsResponse::default().with_resources(group(acls)),
        Err(e) => DescribeAclsResponse::default()
            .with_error_code(error_code(&e))
            .with_error_message(Some(str_bytes(&e.to_string()))),
    };
    respond(request, &response)
}
