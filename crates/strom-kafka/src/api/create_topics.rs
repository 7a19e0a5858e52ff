//! CreateTopics (key 19): create topics with partition counts and configs, or only validate.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::protocol::StrBytes;
use strom_broker::config::{self, ConfigSource};
use strom_broker::{Broker, CreateTopic};

use super::{HandlerError, Outcome, decode, respond};
use crate::error_code::error_code;
use crate::frame::Request;
use crate::{Context, authz};
use strom_broker::acl::{AclOperation, ResourceType};

/// DescribeConfigs' `ConfigSource` code for a config source.
pub fn config_source_code(source: ConfigSource) -> i8 {
    match source {
        ConfigSource::Topic => 1,
        ConfigSource::DynamicBrokerNode => 2,
        ConfigSource::DynamicBroker => 3,
        ConfigSource::Broker => 4,
        ConfigSource::Default => 5,
        ConfigSource::Group => 8,
    }
}

/// Handles CreateTopics.
pub async fn handle(context: &Context, request: &Request) -> Result<Outcome, HandlerError> {
    let version = request.version();
    let body: CreateTopicsRequest = decode(request)?;
    let validate_only = body.validate_only;
    // With an authorizer, creating needs CREATE on the cluster or on the topic.
    let cluster_create = authz::check_cluster(context, request, AclOperation::Create).is_ok();
    let authorized: Vec<bool> = body
        .topics
        .iter()
        .map(|t| {
            cluster_create
                || authz::allowed(
                    context,
                    request,
                    AclOperation::Create,
                    ResourceType::Topic,
                    t.name.0.as_str(),
                )
        })
        .collect();
    // KIP-525: a created topic's configs (and counts) are returned only with
    // DESCRIBE_CONFIGS on it; else TOPIC_AUTHORIZATION_FAILED as its config error.
    let describable: Vec<bool> = body
        .topics
        .iter()
        .map(|t| {
            authz::allowed(
                context,
                request,
                AclOperation::DescribeConfigs,
                ResourceType::Topic,
                t.name.0.as_str(),
            )
        })
        .collect();
    let results = context
        .broker
        .run_blocking(move |broker| {
            Ok(body
                .topics
                .into_iter()
                .zip(authorized.into_iter().zip(describable))
                .map(|(t, (ok, describable))| {
                    let access = Access {
                        create: ok,
                        describe_configs: describable,
                    };
                    create_one(broker, t, access, validate_only, version)
                })
                .collect::<Vec<_>>())
        })
        .await
        .map_err(|e| HandlerError::Internal(e.to_string()))?;
    respond(
        request,
        &CreateTopicsResponse::default().with_topics(results),
    )
}

/// What the client may do with one topic of the request.
#[derive(Debug, Clone, Copy)]
struct Access {
    /// CREATE on the cluster or the topic.
    create: bool,
    /// DESCRIBE_CONFIGS on the topic: whether its configs are returned.
    describe_configs: bool,
}

fn create_one(
    broker: &Broker,
    topic: CreatableTopic,
    access: Access,
    validate_only: bool,
    version: i16,
) -> CreatableTopicResult {
    let authorized = access.create;
    let name = topic.name.clone();
    let mut result = CreatableTopicResult::default()
        .with_name(name.clone())
        .with_error_message(None)
        .with_configs(None);
    let denied = strom_broker::Error::AuthorizationFailed {
        resource_type: ResourceType::Topic,
        operation: AclOperation::Create,
    };
    let outcome = if authorized {
        Ok(())
    } else {
        Err((error_code(&denied), denied.to_string()))
    };
    let outcome = outcome
        .and_then(|()| to_request(broker, topic, validate_only))
        .and_then(|req| {
            broker
                .create_topic_blocking(req)
                .map_err(|e| (error_code(&e), e.to_string()))
        });
    match outcome {
        Ok(summary) => {
            if version >= 7 {
                result.topic_id = summary.id;
            }
            if version >= 5 && !access.describe_configs {
                result.topic_config_error_code =
                    kafka_protocol::error::ResponseError::TopicAuthorizationFailed.code();
                result.configs = Some(Vec::new());
            } else if version >= 5 {
                result.num_partitions = summary.partitions;
                result.replication_factor = summary.replication_factor;
                let entries = config::describe_layers(
                    &broker.config().topic_defaults,
                    &broker.dynamic_topic_defaults(),
                    &summary.overrides,
                );
                result.configs = Some(
                    entries
                        .into_iter()
                        .map(|e| {
                            CreatableTopicConfigs::default()
                                .with_name(StrBytes::from_static_str(e.def.name))
                                .with_value(Some(StrBytes::from_string(e.value)))
                                .with_config_source(config_source_code(e.source))
                        })
                        .collect(),
                );
            }
        }
        Err((code, message)) => {
            tracing::debug!(topic = %name.0, code, %message, "create topic failed");
            result.error_code = code;
            result.error_message = Some(StrBytes::from_string(message));
        }
    }
    result
}

fn to_request(
    broker: &Broker,
    topic: CreatableTopic,
    validate_only: bool,
) -> Result<CreateTopic, (i16, String)> {
    let mut configs = BTreeMap::new();
    for c in topic.configs {
        let Some(value) = c.value else {
            return Err((
                ResponseError::InvalidConfig.code(),
                format!("config {} has a null value", c.name.as_str()),
            ));
        };
        configs.insert(c.name.to_string(), value.to_string());
    }
    let mut partitions = (topic.num_partitions != -1).then_some(topic.num_partitions);
    let mut replication_factor =
        (topic.replication_factor != -1).then_some(topic.replication_factor);
    if !topic.assignments.is_empty() {
        if partitions.is_some() || replication_factor.is_some() {
            return Err((
                ResponseError::InvalidRequest.code(),
                "give either assignments or a partition count and replication factor".to_owned(),
            ));
        }
        let node = broker.node_id();
        let ok = topic.assignments.iter().enumerate().all(|(i, a)| {
            usize::try_from(a.partition_index) == Ok(i)
                && a.broker_ids.len() == 1
                && a.broker_ids.iter().all(|b| b.0 == node)
        });
        if !ok {
            return Err((
                ResponseError::InvalidReplicaAssignment.code(),
                format!("every partition must be assigned to node {node} alone, in order"),
            ));
        }
        partitions = i32::try_from(topic.assignments.len()).ok();
        replication_factor = Some(1);
    }
    Ok(CreateTopic {
        name: topic.name.0.to_string(),
        partitions,
        replication_factor,
        configs,
        validate_only,
    })
}
