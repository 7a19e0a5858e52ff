//! AddPartitionsToTxn (key 24): a transactional producer names the partitions it is about to
//! write, before its first produce to each (v0–v3, the client versions).

use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse};

use super::{HandlerError, Outcome, decode, respond};
use crate::error_code::error_code;
use crate::frame::Request;
use crate::{Context, authz};
use strom_broker::acl::{AclOperation, ResourceType};

/// Handles AddPartitionsToTxn.
pub async fn handle(context: &Context, request: &Request) -> Result<Outcome, HandlerError> {
    let body: AddPartitionsToTxnRequest = decode(request)?;
    let id = body.v3_and_below_transactional_id.to_string();
    let pid = body.v3_and_below_producer_id.0;
    let epoch = body.v3_and_below_producer_epoch;
    let mut wanted = Vec::new();
    for topic in &body.v3_and_below_topics {
        for &p in &topic.partitions {
            wanted.push((topic.name.to_string(), p));
        }
    }
    let order = wanted.clone();
    // With an authorizer: WRITE on the transactional id (every partition fails), then WRITE
    // on each topic: refused ones get TOPIC_AUTHORIZATION_FAILED and the rest
    // OPERATION_NOT_ATTEMPTED, nothing is added (as Kafka does).
    let topic_denied: Vec<bool> = order
        .iter()
        .map(|(name, _)| {
            !authz::allowed(
                context,
                request,
                AclOperation::Write,
                ResourceType::Topic,
                name,
            )
        })
        .collect();
    let result = if let Err(e) = authz::check_txn(context, request, &id, None) {
        Err(e)
    } else if topic_denied.iter().any(|d| *d) {
        let denied = strom_broker::Error::AuthorizationFailed {
            resource_type: ResourceType::Topic,
            operation: AclOperation::Write,
        };
        Ok(topic_denied
            .iter()
            .zip(&order)
            .map(|(d, tp)| {
                let r = if *d {
                    Err(denied.clone())
                } else {
                    Err(strom_broker::Error::OperationNotAttempted)
                };
                (tp.clone(), r)
            })
            .collect())
    } else {
        context
            .broker
            .run_blocking(move |b| b.add_partitions_to_txn_blocking(&id, pid, epoch, wanted))
            .await
    };
    let codes: Vec<i16> = match result {
        Ok(results) => results
            .iter()
            .map(|(_, r)| r.as_ref().err().map_or(0, error_code))
            .collect(),
        Err(e) => {
            tracing::debug!(error = %e, "AddPartitionsToTxn refused");
            vec![error_code(&e); order.len()]
        }
    };
    let mut topics: Vec<AddPartitionsToTxnTopicResult> = Vec::new();
    for ((name, partition), code) in order.into_iter().zip(codes) {
        let result = AddPartitionsToTxnPartitionResult::default()
            .with_partition_index(partition)
            .with_partition_error_code(code);
        match topics.iter_mut().find(|t| t.name.0.as_str() == name) {
            Some(t) => t.results_by_partition.push(result),
            None => topics.push(
                AddPartitionsToTxnTopicResult::default()
                    .with_name(kafka_protocol::messages::TopicName(
                        kafka_protocol::protocol::StrBytes::from_string(name),
                    ))
                    .with_results_by_partition(vec![result]),
            ),
        }
    }
    respond(
        request,
        &AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(topics),
    )
}
