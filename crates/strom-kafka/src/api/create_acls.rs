//! CreateAcls (key 30): stores ACLs; one result per creation, in request order.
//!
//! Without an authorizer every creation fails with `SECURITY_DISABLED`; an invalid ACL (UNKNOWN,
//! ANY or MATCH codes, an empty resource name, a CLUSTER resource not named `kafka-cluster`)
//! with `INVALID_REQUEST`; the valid ones are stored together in one metadata event.

use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::{CreateAclsRequest, CreateAclsResponse};
use strom_broker::Error;
use strom_broker::acl::AclOperation;

use super::acl_common::{BindingFields, binding, str_bytes};
use super::{HandlerError, Outcome, decode, respond};
use crate::error_code::error_code;
use crate::frame::Request;
use crate::{Context, authz};

/// Handles CreateAcls.
pub async fn handle(context: &Context, request: &Request) -> Result<Outcome, HandlerError> {
    let body: CreateAclsRequest = decode(request)?;
    let decoded: Vec<Result<_, Error>> = body
        .creations
        .iter()
        .map(|c| {
            binding(BindingFields {
                resource_type: c.resource_type,
                resource_name: &c.resource_name,
                pattern_type: c.resource_pattern_type,
                principal: &c.principal,
                host: &c.host,
                operation: c.operation,
                permission: c.permission_type,
            })
            .map_err(Error::InvalidAcl)
        })
        .collect();
    let valid: Vec<_> = decoded
        .iter()
        .filter_map(|r| r.as_ref().ok().cloned())
        .collect();
    let stored = if !context.broker.acls().enabled() {
        Err(Error::SecurityDisabled)
    } else if let Err(e) = authz::check_cluster(context, request, AclOperation::Alter) {
        Err(e)
    } else if valid.is_empty() {
        Ok(())
    } else {
        context
            .broker
            .run_blocking(move |b| b.create_acls_blocking(valid))
            .await
    };
    let results = decoded
        .into_iter()
        .map(|r| {
            let outcome = match (r, &stored) {
                (Err(e), Ok(())) => Err(e),
                (_, Err(e)) => Err(e.clone()),
                (Ok(_), Ok(())) => Ok(()),
            };
            match outcome {
                Ok(()) => AclCreationResult::default(),
                Err(e) => AclCreationResult::default()
                    .with_error_code(error_code(&e))
                    .with_error_message(Some(str_bytes(&e.to_string()))),
            }
        })
        .collect();
    respond(
        request,
        &CreateAclsResponse::default().with_results(results),
    )
}
