//! AlterConfigs (key 33): replace all config overrides of a topic.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_configs_request::AlterConfigsResource;
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};
use kafka_protocol::protocol::StrBytes;
use strom_broker::Broker;

use super::describe_configs::resource_type;
use super::{HandlerError, Outcome, decode, respond};
use crate::Context;
use crate::error_code::error_code;
use crate::frame::Request;

/// Handles AlterConfigs.
pub async fn handle(context: &Context, request: &Request) -> Result<Outcome, HandlerError> {
    let body: AlterConfigsRequest = decode(request)?;
    let validate_only = body.validate_only;
    let responses = context
        .broker
        .run_blocking(move |broker| {
            Ok(body
                .resources
                .into_iter()
                .map(|r| alter_one(broker, r, validate_only))
                .collect::<Vec<_>>())
        })
        .await
        .map_err(|e| HandlerError::Internal(e.to_string()))?;
    respond(
        request,
        &AlterConfigsResponse::default().with_responses(responses),
    )
}

fn alter_one(
    broker: &Broker,
    r: AlterConfigsResource,
    validate_only: bool,
) -> AlterConfigsResourceResponse {
    let mut response = AlterConfigsResourceResponse::default()
        .with_resource_type(r.resource_type)
        .with_resource_name(r.resource_name.clone());
    let outcome = if r.resource_type == resource_type::TOPIC {
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
        match null {
            Some(name) => Err((
                ResponseError::InvalidConfig.code(),
                format!("config {name} has a null value"),
            )),
            None => broker
                .set_topic_configs_blocking(r.resource_name.as_str(), configs, validate_only)
                .map_err(|e| (error_code(&e), e.to_string())),
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

/// The error for altering anything but a topic (broker settings are static in Strom).
pub(crate) fn unsupported_resource(kind: i8) -> (i16, String) {
    if kind == resource_type::BROKER {
        (
            ResponseError::InvalidRequest.code(),
            "broker configs are static in strom; set them in the config file".to_owned(),
        )
    } else {
        (
            ResponseError::InvalidRequest.code(),
            format!("unsupported config resource type {kind}"),
        )
    }
}
