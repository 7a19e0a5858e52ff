//! Authorization of Kafka requests against the broker's ACLs (`strom_broker::acl`).
//!
//! A client is its connection's principal ([`crate::session::Session`]): `User:ANONYMOUS`
//! (Kafka's principal for an unauthenticated client) unless it presented a client
//! certificate or authenticated with SASL; its host is its socket's IP address. Without an
//! authorizer every check passes at the cost of one boolean.

use strom_broker::Error;
use strom_broker::acl::model::CLUSTER_RESOURCE_NAME;
use strom_broker::acl::{AclOperation, Requester, Resource, ResourceType};

use crate::Context;
use crate::frame::Request;

/// The principal of a client that did not authenticate.
pub const ANONYMOUS: &str = "User:ANONYMOUS";

/// Whether the request's client may do `operation` on the resource.
pub(crate) fn allowed(
    context: &Context,
    request: &Request,
    operation: AclOperation,
    resource_type: ResourceType,
    name: &str,
) -> bool {
    if !context.broker.acls().enabled() {
        return true;
    }
    let host = request
        .peer
        .map_or_else(|| String::from("127.0.0.1"), |p| p.ip().to_string());
    let principal = request.session.as_ref().map(|s| s.principal());
    context.broker.authorize(
        Requester {
            principal: principal.as_deref().unwrap_or(ANONYMOUS),
            host: &host,
        },
        operation,
        Resource {
            resource_type,
            name,
        },
    )
}

/// [`allowed`] as a result: `Error::AuthorizationFailed` when refused.
pub(crate) fn check(
    context: &Context,
    request: &Request,
    operation: AclOperation,
    resource_type: ResourceType,
    name: &str,
) -> Result<(), Error> {
    if allowed(context, request, operation, resource_type, name) {
        Ok(())
    } else {
        Err(Error::AuthorizationFailed {
            resource_type,
            operation,
        })
    }
}

/// [`check`] on the cluster resource.
pub(crate) fn check_cluster(
    context: &Context,
    request: &Request,
    operation: AclOperation,
) -> Result<(), Error> {
    check(
        context,
        request,
        operation,
        ResourceType::Cluster,
        CLUSTER_RESOURCE_NAME,
    )
}

/// The bit field of `AclOperation` codes among `operations` the client may do on the resource
/// (the `*_authorized_operations` fields of Metadata, DescribeCluster, DescribeGroups).
pub(crate) fn authorized_operations(
    context: &Context,
    request: &Request,
    resource_type: ResourceType,
    name: &str,
    operations: &[AclOperation],
) -> i32 {
    operations
        .iter()
        .filter(|&&op| allowed(context, request, op, resource_type, name))
        .fold(0, |bits, op| bits | (1 << op.code()))
}

/// Operations Kafka reports for topics.
pub(crate) const TOPIC_OPERATIONS: &[AclOperation] = &[
    AclOperation::Read,
    AclOperation::Write,
    AclOperation::Create,
    AclOperation::Delete,
    AclOperation::Alter,
    AclOperation::Describe,
    AclOperation::DescribeConfigs,
    AclOperation::AlterConfigs,
];

/// Operations Kafka reports for the cluster.
pub(crate) const CLUSTER_OPERATIONS: &[AclOperation] = &[
    AclOperation::Create,
    AclOperation::Alter,
    AclOperation::Describe,
    AclOperation::ClusterAction,
    AclOperation::DescribeConfigs,
    AclOperation::AlterConfigs,
    AclOperation::IdempotentWrite,
];

/// The GROUP_AUTHORIZATION_FAILED code if the client may not do `operation` on the group.
pub(crate) fn group_denied(
    context: &Context,
    request: &Request,
    operation: AclOperation,
    group: &str,
) -> Option<i16> {
    check(context, request, operation, ResourceType::Group, group)
        .err()
        .map(|e| crate::error_code::error_code(&e))
}

/// The checks of a transactional request: WRITE on the transactional id
/// (TRANSACTIONAL_ID_AUTHORIZATION_FAILED), then READ on the group if it names one
/// (GROUP_AUTHORIZATION_FAILED).
pub(crate) fn check_txn(
    context: &Context,
    request: &Request,
    transactional_id: &str,
    group: Option<&str>,
) -> Result<(), Error> {
    check(
        context,
        request,
        AclOperation::Write,
        ResourceType::TransactionalId,
        transactional_id,
    )?;
    match group {
        Some(g) => check(context, request, AclOperation::Read, ResourceType::Group, g),
        None => Ok(()),
    }
}

/// The topics among `names` the client may not do `operation` on (empty without an
/// authorizer), for handlers that answer per topic on the blocking pool.
pub(crate) fn denied_topics<'a>(
    context: &Context,
    request: &Request,
    operation: AclOperation,
    names: impl IntoIterator<Item = &'a str>,
) -> std::collections::HashSet<String> {
    if !context.broker.acls().enabled() {
        return std::collections::HashSet::new();
    }
    names
        .into_iter()
        .filter(|n| !allowed(context, request, operation, ResourceType::Topic, n))
        .map(str::to_owned)
        .collect()
}

/// TOPIC_AUTHORIZATION_FAILED.
pub(crate) fn topic_denied_code() -> i16 {
    kafka_protocol::error::ResponseError::TopicAuthorizationFailed.code()
}

/// Operations Kafka reports for groups (`AclEntry.supportedOperations(GROUP)`; the config
/// operations since group configs, KIP-848).
pub(crate) const GROUP_OPERATIONS: &[AclOperation] = &[
    AclOperation::Read,
    AclOperation::Describe,
    AclOperation::Delete,
    AclOperation::DescribeConfigs,
    AclOperation::AlterConfigs,
];

/// The check of a config resource (DescribeConfigs, AlterConfigs, IncrementalAlterConfigs):
/// topics on the topic, brokers and broker loggers on the cluster, groups on the group. The
/// refusal as `(code, message)`, the shape the config handlers answer with.
pub(crate) fn config_denied(
    context: &Context,
    request: &Request,
    operation: AclOperation,
    config_resource_type: i8,
    name: &str,
) -> Option<(i16, String)> {
    use crate::api::describe_configs::resource_type as kind;
    /// BROKER_LOGGER in Kafka's `ConfigResource.Type`.
    const BROKER_LOGGER: i8 = 8;
    let result = match config_resource_type {
        kind::TOPIC => check(context, request, operation, ResourceType::Topic, name),
        kind::BROKER | BROKER_LOGGER => check_cluster(context, request, operation),
        kind::GROUP => check(context, request, operation, ResourceType::Group, name),
        _ => Ok(()),
    };
    result
        .err()
        .map(|e| (crate::error_code::error_code(&e), e.to_string()))
}
