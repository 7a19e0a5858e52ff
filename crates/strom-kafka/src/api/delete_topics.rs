//! DeleteTopics (key 20): delete topics by name (v1+) or by id (v6+).

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use strom_broker::Broker;
use uuid::Uuid;

use super::{HandlerError, Outcome, decode, respond};
use crate::error_code::error_code;
use crate::frame::Request;
use crate::{Context, authz};
use strom_broker::acl::{AclOperation, ResourceType};

/// Handles DeleteTopics.
pub async fn handle(context: &Context, request: &Request) -> Result<Outcome, HandlerError> {
    let version = request.version();
    let body: DeleteTopicsRequest = decode(request)?;
    // v1-5 list names; v6 lists (name or id) states.
    let wanted: Vec<(Option<String>, Uuid)> = if version >= 6 {
        body.topics
            .into_iter()
            .map(|t| (t.name.map(|n| n.0.to_string()), t.topic_id))
            .collect()
    } else {
        body.topic_names
            .into_iter()
            .map(|n| (Some(n.0.to_string()), Uuid::nil()))
            .collect()
    };
    // With an authorizer, deleting needs DELETE on the topic.
    let authorized: Vec<bool> = wanted
        .iter()
        .map(|(name, id)| {
            let name = match name {
                Some(n) => Some(n.clone()),
                None => context
                    .broker
                    .topic_by_id(*id)
                    .ok()
                    .map(|t| t.name().to_owned()),
            };
            name.is_none_or(|n| {
                authz::allowed(
                    context,
                    request,
                    AclOperation::Delete,
                    ResourceType::Topic,
                    &n,
                )
            })
        })
        .collect();
    let responses = context
        .broker
        .run_blocking(move |broker| {
            Ok(wanted
                .into_iter()
                .zip(authorized)
                .map(|((name, id), ok)| delete_one(broker, name, id, ok, version))
                .collect::<Vec<_>>())
        })
        .await
        .map_err(|e| HandlerError::Internal(e.to_string()))?;
    respond(
        request,
        &DeleteTopicsResponse::default().with_responses(responses),
    )
}

fn delete_one(
    broker: &Broker,
    name: Option<String>,
    id: Uuid,
    authorized: bool,
    version: i16,
) -> DeletableTopicResult {
    let outcome = match &name {
        _ if !authorized => Err(strom_broker::Error::AuthorizationFailed {
            resource_type: ResourceType::Topic,
            operation: AclOperation::Delete,
        }),
        Some(name) => broker
            .delete_topic_blocking(name)
            .map(|id| (name.clone(), id)),
        None => broker
            .delete_topic_by_id_blocking(id)
            .map(|name| (name, id)),
    };
    let mut result = DeletableTopicResult::default();
    match outcome {
        Ok((name, id)) => {
            result.name = Some(TopicName(StrBytes::from_string(name)));
            if version >= 6 {
                result.topic_id = id;
            }
        }
        Err(e) => {
            result.name = name.map(|n| TopicName(StrBytes::from_string(n)));
            if version >= 6 {
                result.topic_id = id;
            }
            result.error_code = error_code(&e);
            if version >= 5 {
                result.error_message = Some(StrBytes::from_string(e.to_string()));
            }
        }
    }
    result
}
