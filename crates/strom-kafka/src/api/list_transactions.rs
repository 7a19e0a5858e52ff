//! ListTransactions (key 66): transactional ids, filtered by state, producer id and (v1+) by
//! how long their transaction has been running.

use kafka_protocol::messages::list_transactions_response::TransactionState;
use kafka_protocol::messages::{
    ListTransactionsRequest, ListTransactionsResponse, ProducerId, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use strom_broker::txn::TxnState;

use super::{HandlerError, Outcome, decode, respond};
use crate::frame::Request;
use crate::{Context, authz};
use strom_broker::acl::{AclOperation, ResourceType};

const STATES: [TxnState; 6] = [
    TxnState::Empty,
    TxnState::Ongoing,
    TxnState::PrepareCommit,
    TxnState::PrepareAbort,
    TxnState::CompleteCommit,
    TxnState::CompleteAbort,
];

/// Handles ListTransactions.
pub async fn handle(context: &Context, request: &Request) -> Result<Outcome, HandlerError> {
    let body: ListTransactionsRequest = decode(request)?;
    let unknown: Vec<StrBytes> = body
        .state_filters
        .iter()
        .filter(|f| !STATES.iter().any(|s| s.name() == f.as_str()))
        .cloned()
        .collect();
    let now = context.broker.clock().now_ms();
    let states = context
        .broker
        .txns()
        .list()
        .into_iter()
        // With an authorizer: only the ids the client may DESCRIBE (as Kafka).
        .filter(|d| {
            authz::allowed(
                context,
                request,
                AclOperation::Describe,
                ResourceType::TransactionalId,
                &d.transactional_id,
            )
        })
        .filter(|d| {
            let m = &d.metadata;
            (body.state_filters.is_empty()
                || body
                    .state_filters
                    .iter()
                    .any(|f| f.as_str() == m.state.name()))
                && (body.producer_id_filters.is_empty()
                    || body
                        .producer_id_filters
                        .contains(&ProducerId(m.producer_id)))
                && (body.duration_filter < 0
                    || (m.state == TxnState::Ongoing
                        && now.saturating_sub(m.start_ms) >= body.duration_filter))
        })
        .map(|d| {
            TransactionState::default()
                .with_transactional_id(TransactionalId(StrBytes::from_string(d.transactional_id)))
                .with_producer_id(ProducerId(d.metadata.producer_id))
                .with_transaction_state(StrBytes::from_static_str(d.metadata.state.name()))
        })
        .collect();
    respond(
        request,
        &ListTransactionsResponse::default()
            .with_unknown_state_filters(unknown)
            .with_transaction_states(states),
    )
}
