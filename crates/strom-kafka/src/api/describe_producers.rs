//! DescribeProducers (key 61, KIP-664): the producers each partition remembers — id, epoch,
//! last sequence and timestamp, coordinator epoch and the start of the open transaction (`-1`
//! when none), as `kafka-transactions.sh describe-producers` shows them.

use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};
use strom_broker::Broker;

use super::{HandlerError, Outcome, decode, respond};
use crate::error_code::error_code;
use crate::frame::Request;
use crate::{Context, authz};
use strom_broker::acl::AclOperation;

/// Handles DescribeProducers.
pub async fn handle(context: &Context, request: &Request) -> Result<Outcome, HandlerError> {
    let body: DescribeProducersRequest = decode(request)?;
    // With an authorizer: READ on each topic.
    let denied = authz::denied_topics(
        context,
        request,
        AclOperation::Read,
        body.topics.iter().map(|t| t.name.0.as_str()),
    );
    let topics = context
        .broker
        .run_blocking(move |broker| Ok(describe(broker, body, &denied)))
        .await
        .map_err(|e| HandlerError::Internal(e.to_string()))?;
    respond(
        request,
        &DescribeProducersResponse::default().with_topics(topics),
    )
}

fn describe(
    broker: &Broker,
    body: DescribeProducersRequest,
    denied: &std::collections::HashSet<String>,
) -> Vec<TopicResponse> {
    body.topics
        .into_iter()
        .map(|topic| {
            let partitions = topic
                .partition_indexes
                .iter()
                .map(|&index| {
                    let r = PartitionResponse::default().with_partition_index(index);
                    if denied.contains(topic.name.0.as_str()) {
                        return r.with_error_code(authz::topic_denied_code());
                    }
                    match broker.partition(topic.name.0.as_str(), index) {
                        Err(e) => r.with_error_code(error_code(&e)),
                        Ok(p) => r.with_active_producers(
                            p.producers()
                                .into_iter()
                                .map(|s| {
                                    ProducerState::default()
                                        .with_producer_id(ProducerId(s.producer_id))
                                        .with_producer_epoch(i32::from(s.producer_epoch))
                                        .with_last_sequence(s.last_sequence)
                                        .with_last_timestamp(s.last_timestamp)
                                        .with_coordinator_epoch(s.coordinator_epoch)
                                        .with_current_txn_start_offset(
                                            s.current_txn_start_offset.unwrap_or(-1),
                                        )
                                })
                                .collect(),
                        ),
                    }
                })
                .collect();
            TopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect()
}
