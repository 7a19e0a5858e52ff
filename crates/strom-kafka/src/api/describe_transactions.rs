//! DescribeTransactions (key 65): state, producer, timeout and partitions of transactional
//! ids (what `kafka-transactions.sh describe` shows).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::{
    DescribeTransactionsRequest, DescribeTransactionsResponse, ProducerId, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::{HandlerError, Outcome, decode, respond};
use crate::error_code::error_code;
use crate::frame::Request;
use crate::{Context, authz};
use strom_broker::acl::{AclOperation, ResourceType};

/// Handles DescribeTransactions.
pub async fn handle(context: &Context, request: &Request) -> Result<Outcome, HandlerError> {
    let body: DescribeTransactionsRequest = decode(request)?;
    let states = body
        .transactional_ids
        .into_iter()
        .map(|id| {
            // With an authorizer: DESCRIBE on the transactional id.
            if let Err(e) = authz::check(
                context,
                request,
                AclOperation::Describe,
                ResourceType::TransactionalId,
                id.as_str(),
            ) {
                return TransactionState::default()
                    .with_transactional_id(id)
                    .with_error_code(error_code(&e));
            }
            let Some(d) = context.broker.txns().describe(id.as_str()) else {
                return TransactionState::default()
                    .with_transactional_id(id)
                    .with_error_code(ResponseError::TransactionalIdNotFound.code());
            };
            let m = d.metadata;
            let mut topics: Vec<TopicData> = Vec::new();
            for (topic, partition) in &m.partitions {
                match topics.iter_mut().find(|t| t.topic.0.as_str() == topic) {
                    Some(t) => t.partitions.push(*partition),
                    None => topics.push(
                        TopicData::default()
                            .with_topic(TopicName(StrBytes::from_string(topic.clone())))
                            .with_partitions(vec![*partition]),
                    ),
                }
            }
            TransactionState::default()
                .with_transactional_id(id)
                .with_transaction_state(StrBytes::from_static_str(m.state.name()))
                .with_transaction_timeout_ms(m.timeout_ms)
                .with_transaction_start_time_ms(m.start_ms)
                .with_producer_id(ProducerId(m.producer_id))
                .with_producer_epoch(m.producer_epoch)
                .with_topics(topics)
        })
        .collect();
    respond(
        request,
        &DescribeTransactionsResponse::default().with_transaction_states(states),
    )
}
