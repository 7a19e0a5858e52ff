//! AlterConfigs (key 33): replace all config overrides of a topic, the dynamic configs of the
//! broker (resource name = node id) or of the cluster default (`""`), or a group's configs.
//!
//! Broker changes are refused as Kafka refuses them: INVALID_REQUEST ("Cannot update these
//! configs dynamically" for a static or unknown name, or a bad value).

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_configs_request::AlterConfigsResource;
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};
use kafka_protocol::protocol::StrBytes;
use strom_broker::Broker;
use strom_broker::broker_config::ConfigChange;

use super::describe_configs::resource_type;
use super::{HandlerError, Outcome, decode, respond};
use crate::error_code::error_code;
use crate::frame::Request;
use crate::{Context, authz};
use strom_broker::acl::AclOperation;

/// Handles AlterConfigs.
pub async fn handle(context: &Context, request: &Request) -> Result<Outcome, HandlerError> {
    let body: AlterConfigsRequest = decode(request)?;
    let validate_only = body.validate_only;
    let responses = alter_each(
        context,
        request,
        body.resources,
        |r| (r.resource_type, r.resource_name.as_str()),
        refused,
        move |broker, r| alter_one(broker, r, validate_only),
    )
    .await?;
    context.apply_dynamic_configs();
    respond(
        request,
        &AlterConfigsResponse::default().with_responses(responses),
    )
}

fn refused(r: &AlterConfigsResource, code: i16, message: String) -> AlterConfigsResourceResponse {
    AlterConfigsResourceResponse::default()
        .with_resource_type(r.resource_type)
        .with_resource_name(r.resource_name.clone())
        .with_error_code(code)
        .with_error_message(Some(StrBytes::from_string(message)))
}

fn alter_one(
    broker: &Broker,
    r: AlterConfigsResource,
    validate_only: bool,
) -> AlterConfigsResourceResponse {
    let mut response = AlterConfigsResourceResponse::default()
        .with_resource_type(r.resource_type)
        .with_resource_name(r.resource_name.clone());
    let mut configs = BTreeMap::new();
    let mut null = None;
    for c in r.configs {
        match c.value {
            Some(v) => {
                configs.insert(c.name.to_string(), v.to_string());
            }
            None => null = Some(c.name.to_string()),
        }
    }
    let outcome = match null {
        Some(name) => Err((
            ResponseError::InvalidConfig.code(),
            format!("config {name} has a null value"),
        )),
        None if r.resource_type == resource_type::TOPIC => broker
            .set_topic_configs_blocking(r.resource_name.as_str(), configs, validate_only)
            .map_err(|e| (error_code(&e), e.to_string())),
        None => alter_resource(
            broker,
            r.resource_type,
            r.resource_name.as_str(),
            ConfigChange::Replace(configs),
            validate_only,
        ),
    };
    if let Err((code, message)) = outcome {
        response.error_code = code;
        response.error_message = Some(StrBytes::from_string(message));
    }
    response
}

/// Checks ALTER_CONFIGS on every resource of an AlterConfigs or IncrementalAlterConfigs request
/// (the topic, the cluster for brokers, the group), then alters the allowed ones on a blocking
/// thread in request order and answers the denied ones with `refuse`. `key` gives a resource's
/// config resource type and name.
pub(crate) async fn alter_each<R, T>(
    context: &Context,
    request: &Request,
    resources: Vec<R>,
    key: impl Fn(&R) -> (i8, &str),
    refuse: fn(&R, i16, String) -> T,
    alter: impl Fn(&Broker, R) -> T + Send + 'static,
) -> Result<Vec<T>, HandlerError>
where
    R: Send + 'static,
    T: Send + 'static,
{
    let denied: Vec<_> = resources
        .iter()
        .map(|r| {
            let (kind, name) = key(r);
            authz::config_denied(context, request, AclOperation::AlterConfigs, kind, name)
        })
        .collect();
    context
        .broker
        .run_blocking(move |broker| {
            Ok(resources
                .into_iter()
                .zip(denied)
                .map(|(r, denied)| match denied {
                    Some((code, message)) => refuse(&r, code, message),
                    None => alter(broker, r),
                })
                .collect::<Vec<_>>())
        })
        .await
        .map_err(|e| HandlerError::Internal(e.to_string()))
}

/// The error for a resource type Strom has no configs for.
pub(crate) fn unsupported_resource(kind: i8) -> (i16, String) {
    (
        ResponseError::InvalidRequest.code(),
        format!("unsupported config resource type {kind}"),
    )
}

/// Alters the configs of a broker or group resource. BLOCKING.
pub(crate) fn alter_resource(
    broker: &Broker,
    kind: i8,
    name: &str,
    change: ConfigChange,
    validate_only: bool,
) -> Result<(), (i16, String)> {
    match kind {
        resource_type::BROKER => {
            let per_broker = if name.is_empty() {
                false
            } else if name == broker.node_id().to_string() {
                true
            } else {
                return Err((
                    ResponseError::InvalidRequest.code(),
                    format!("this is broker {}, not {name}", broker.node_id()),
                ));
            };
            broker
                .alter_broker_configs_blocking(per_broker, change, validate_only)
                .map_err(|e| match e {
                    // Kafka answers every broker-config validation failure this way.
                    strom_broker::Error::InvalidConfig { .. } => {
                        (ResponseError::InvalidRequest.code(), e.to_string())
                    }
                    e => (error_code(&e), e.to_string()),
                })
        }
        resource_type::GROUP => {
            if name.is_empty() {
                return Err((
                    ResponseError::InvalidRequest.code(),
                    "a group config resource needs a group id".to_owned(),
                ));
            }
            broker
                .alter_group_configs_blocking(name, change, validate_only)
                .map_err(|e| (error_code(&e), e.to_string()))
        }
        other => Err(unsupported_resource(other)),
    }
}
