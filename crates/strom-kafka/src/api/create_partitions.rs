//! CreatePartitions (key 37): grow a topic's partition count.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::protocol::StrBytes;

use super::{HandlerError, Outcome, decode, respond};
use crate::error_code::error_code;
use crate::frame::Request;
use crate::{Context, authz};
use strom_broker::acl::AclOperation;

/// Handles CreatePartitions.
pub async fn handle(context: &Context, request: &Request) -> Result<Outcome, HandlerError> {
    let body: CreatePartitionsRequest = decode(request)?;
    let validate_only = body.validate_only;
    let node = context.broker.node_id();
    // With an authorizer: ALTER on each topic (TOPIC_AUTHORIZATION_FAILED).
    let denied = authz::denied_topics(
        context,
        request,
        AclOperation::Alter,
        body.topics.iter().map(|t| t.name.0.as_str()),
    );
    let results = context
        .broker
        .run_blocking(move |broker| {
            Ok(body
                .topics
                .into_iter()
                .map(|t| {
                    let mut r = CreatePartitionsTopicResult::default().with_name(t.name.clone());
                    let bad_assignment = t.assignments.as_ref().is_some_and(|a| {
                        a.iter().any(|x| {
                            x.broker_ids.len() != 1 || x.broker_ids.iter().any(|b| b.0 != node)
                        })
                    });
                    let outcome = if denied.contains(t.name.0.as_str()) {
                        Err((
                            authz::topic_denied_code(),
                            String::from("not authorized to ALTER the topic"),
                        ))
                    } else if bad_assignment {
                        Err((
                            ResponseError::InvalidReplicaAssignment.code(),
                            format!("new partitions must be assigned to node {node} alone"),
                        ))
                    } else {
                        broker
                            .create_partitions_blocking(t.name.0.as_str(), t.count, validate_only)
                            .map_err(|e| (error_code(&e), e.to_string()))
                    };
                    if let Err((code, message)) = outcome {
                        r.error_code = code;
                        r.error_message = Some(StrBytes::from_string(message));
                    }
                    r
                })
                .collect::<Vec<_>>())
        })
        .await
        .map_err(|e| HandlerError::Internal(e.to_string()))?;
    respond(
        request,
        &CreatePartitionsResponse::default().with_results(results),
    )
}
