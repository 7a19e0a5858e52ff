//! DescribeConfigs (key 32): effective topic configs (every Kafka topic config, with its
//! source and synonyms), the broker's configs (static and dynamic), and KIP-848 group configs.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;
use strom_broker::broker_config::ResourceConfigEntry;
use strom_broker::config::{ConfigType, Effect};

use super::create_topics::config_source_code;
use super::{HandlerError, Outcome, decode, respond};
use crate::error_code::error_code;
use crate::frame::Request;
use crate::{Context, authz};
use strom_broker::acl::AclOperation;

/// Config resource types (DescribeConfigs, AlterConfigs, IncrementalAlterConfigs).
pub mod resource_type {
    /// A topic.
    pub const TOPIC: i8 = 2;
    /// A broker (name = node id, or empty for the cluster-wide default).
    pub const BROKER: i8 = 4;
    /// A consumer group (KIP-848 group configs).
    pub const GROUP: i8 = 32;
}

/// DescribeConfigs' `ConfigType` code.
pub fn config_type_code(kind: ConfigType) -> i8 {
    match kind {
        ConfigType::Boolean => 1,
        ConfigType::String => 2,
        ConfigType::Int => 3,
        ConfigType::Short => 4,
        ConfigType::Long => 5,
        ConfigType::Double => 6,
        ConfigType::List => 7,
    }
}

struct Entry {
    name: String,
    value: String,
    source: i8,
    read_only: bool,
    kind: i8,
    doc: String,
    /// (name, value, source) of every layer, effective first.
    synonyms: Vec<(String, String, i8)>,
}

/// Handles DescribeConfigs.
pub async fn handle(context: &Context, request: &Request) -> Result<Outcome, HandlerError> {
    let version = request.version();
    let body: DescribeConfigsRequest = decode(request)?;
    let broker = &context.broker;
    let mut results = Vec::with_capacity(body.resources.len());
    for resource in body.resources {
        let mut result = DescribeConfigsResult::default()
            .with_resource_type(resource.resource_type)
            .with_resource_name(resource.resource_name.clone());
        // With an authorizer: DESCRIBE_CONFIGS on the topic, the cluster or the group.
        let denied = authz::config_denied(
            context,
            request,
            AclOperation::DescribeConfigs,
            resource.resource_type,
            resource.resource_name.as_str(),
        );
        let entries: Result<Vec<Entry>, (i16, String)> = match resource.resource_type {
            _ if denied.is_some() => Err(denied.unwrap_or_default()),
            resource_type::TOPIC => broker
                .describe_topic_configs(resource.resource_name.as_str())
                .map(|list| {
                    list.into_iter()
                        .map(|e| Entry {
                            name: e.def.name.to_owned(),
                            value: e.value,
                            source: config_source_code(e.source),
                            read_only: false,
                            kind: config_type_code(e.def.kind),
                            doc: match e.def.effect {
                                Effect::Honoured => e.def.doc.to_owned(),
                                Effect::NoEffect(why) => {
                                    format!("{} (accepted without effect: {why})", e.def.doc)
                                }
                            },
                            synonyms: e
                                .synonyms
                                .into_iter()
                                .map(|s| (s.name, s.value, config_source_code(s.source)))
                                .collect(),
                        })
                        .collect()
                })
                .map_err(|e| (error_code(&e), e.to_string())),
            resource_type::BROKER => {
                let name = resource.resource_name.as_str();
                if name.is_empty() || name == broker.node_id().to_string() {
                    Ok(resource_entries(broker.describe_broker_configs()))
                } else {
                    Err((
                        ResponseError::InvalidRequest.code(),
                        format!("this is broker {}, not {name}", broker.node_id()),
                    ))
                }
            }
            resource_type::GROUP => Ok(resource_entries(
                broker.describe_group_configs(resource.resource_name.as_str()),
            )),
            other => Err((
                ResponseError::InvalidRequest.code(),
                format!("unsupported config resource type {other}"),
            )),
        };
        match entries {
            Ok(list) => {
                result.configs = list
                    .into_iter()
                    .filter(|e| {
                        resource
                            .configuration_keys
                            .as_ref()
                            // Null or empty: every key (Kafka's ConfigHelper).
                            .is_none_or(|keys| {
                                keys.is_empty() || keys.iter().any(|k| k.as_str() == e.name)
                            })
                    })
                    .map(|e| {
                        let mut r = DescribeConfigsResourceResult::default()
                            .with_name(StrBytes::from_string(e.name.clone()))
                            .with_value(Some(StrBytes::from_string(e.value.clone())))
                            .with_read_only(e.read_only)
                            .with_config_source(e.source);
                        if body.include_synonyms {
                            r.synonyms = e
                                .synonyms
                                .into_iter()
                                .map(|(name, value, source)| {
                                    DescribeConfigsSynonym::default()
                                        .with_name(StrBytes::from_string(name))
                                        .with_value(Some(StrBytes::from_string(value)))
                                        .with_source(source)
                                })
                                .collect();
                        }
                        if version >= 3 {
                            r.config_type = e.kind;
                            if body.include_documentation {
                                r.documentation = Some(StrBytes::from_string(e.doc));
                            }
                        }
                        r
                    })
                    .collect();
            }
            Err((code, message)) => {
                result.error_code = code;
                result.error_message = Some(StrBytes::from_string(message));
            }
        }
        results.push(result);
    }
    respond(
        request,
        &DescribeConfigsResponse::default().with_results(results),
    )
}

fn resource_entries(list: Vec<ResourceConfigEntry>) -> Vec<Entry> {
    list.into_iter()
        .map(|e| Entry {
            name: e.name,
            value: e.value,
            source: config_source_code(e.source),
            read_only: e.read_only,
            kind: config_type_code(e.kind),
            doc: e.doc.to_owned(),
            synonyms: e
                .synonyms
                .into_iter()
                .map(|s| (s.name, s.value, config_source_code(s.source)))
                .collect(),
        })
        .collect()
}
