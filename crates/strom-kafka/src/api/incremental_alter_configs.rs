//! IncrementalAlterConfigs (key 44): set, delete, append to or subtract from the configs of a
//! topic, the broker, the cluster default or a group (see `alter_configs` for the errors).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::incremental_alter_configs_request::AlterConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};
use kafka_protocol::protocol::StrBytes;
use strom_broker::{Broker, ConfigOp};

use strom_broker::broker_config::ConfigChange;

use super::alter_configs::{alter_each, alter_resource, unsupported_resource};
use super::describe_configs::resource_type;
use super::{HandlerError, Outcome, decode, respond};
use crate::Context;
use crate::error_code::error_code;
use crate::frame::Request;

/// Handles IncrementalAlterConfigs.
pub async fn handle(context: &Context, request: &Request) -> Result<Outcome, HandlerError> {
    let body: IncrementalAlterConfigsRequest = decode(request)?;
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
        &IncrementalAlterConfigsResponse::default().with_responses(responses),
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
    let outcome = if matches!(
        r.resource_type,
        resource_type::TOPIC | resource_type::BROKER | resource_type::GROUP
    ) {
        let mut ops = Vec::with_capacity(r.configs.len());
        let mut bad = None;
        for c in r.configs {
            let name = c.name.to_string();
            let value = c.value.map(|v| v.to_string());
            let op = match (c.config_operation, value) {
                (0, Some(v)) => ConfigOp::Set(name, v),
                (1, _) => ConfigOp::Delete(name),
                (2, Some(v)) => ConfigOp::Append(name, v),
                (3, Some(v)) => ConfigOp::Subtract(name, v),
                (op, _) => {
                    bad = Some(format!("invalid operation {op} or null value for {name}"));
                    break;
                }
            };
            ops.push(op);
        }
        match bad {
            Some(message) => Err((ResponseError::InvalidConfig.code(), message)),
            None if r.resource_type == resource_type::TOPIC => broker
                .incremental_alter_configs_blocking(r.resource_name.as_str(), &ops, validate_only)
                .map_err(|e| (error_code(&e), e.to_string())),
            None => alter_resource(
                broker,
                r.resource_type,
                r.resource_name.as_str(),
                ConfigChange::Incremental(ops),
                validate_only,
            ),
        }
    } else {
        Err(unsupported_resource(r.resource_type))
    };
    if let Err((code, message)) = outcome {
        response.error_code = code;
        response.error_message = Some(StrBytes::from_string(message));
    }
    response
}
