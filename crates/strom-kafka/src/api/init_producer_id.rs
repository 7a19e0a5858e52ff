//! InitProducerId (key 22): producer ids for idempotent and transactional producers.
//!
//! Without a transactional id: a durable, never-reused producer id at epoch 0, or the next
//! epoch when a client bumps its own (KIP-360). With one: the transaction coordinator
//! (`strom_broker::txn`) hands out the id's producer id with a bumped epoch, fencing any older
//! producer of the same transactional id and aborting its open transaction first.

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use super::{HandlerError, Outcome, decode, respond};
use crate::error_code::error_code;
use crate::frame::Request;
use crate::{Context, authz};
use strom_broker::acl::{AclOperation, ResourceType};

/// With an authorizer, an idempotent producer needs IDEMPOTENT_WRITE on the cluster or WRITE
/// on some topic (KIP-679; Kafka asks whether any topic could be written, Strom whether an
/// existing one can), else CLUSTER_AUTHORIZATION_FAILED.
fn idempotent_allowed(context: &Context, request: &Request) -> Result<(), strom_broker::Error> {
    let cluster = authz::check_cluster(context, request, AclOperation::IdempotentWrite);
    if cluster.is_err()
        && context.broker.topics().iter().any(|t| {
            authz::allowed(
                context,
                request,
                AclOperation::Write,
                ResourceType::Topic,
                t.name(),
            )
        })
    {
        return Ok(());
    }
    cluster
}

/// Handles InitProducerId.
pub async fn handle(context: &Context, request: &Request) -> Result<Outcome, HandlerError> {
    let body: InitProducerIdRequest = decode(request)?;
    let mut response = InitProducerIdResponse::default();
    let (pid, epoch) = (body.producer_id.0, body.producer_epoch);
    let result = if let Some(id) = body.transactional_id {
        let id = id.to_string();
        if let Err(e) = authz::check_txn(context, request, &id, None) {
            let response = InitProducerIdResponse::default()
                .with_error_code(error_code(&e))
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1);
            return respond(request, &response);
        }
        let timeout = body.transaction_timeout_ms;
        let expected = (pid >= 0).then_some((pid, epoch));
        context
            .broker
            .run_blocking(move |b| b.init_transactional_producer_blocking(&id, timeout, expected))
            .await
    } else if let Err(e) = idempotent_allowed(context, request) {
        Err(e)
    } else if context.broker.producer_id_was_allocated(pid) && (0..i16::MAX - 1).contains(&epoch) {
        // Epoch bump for an existing idempotent producer (KIP-360).
        Ok((pid, epoch + 1))
    } else {
        context
            .broker
            .run_blocking(|b| b.allocate_producer_id_blocking())
            .await
            .map(|id| (id, 0))
    };
    match result {
        Ok((id, epoch)) => {
            response.producer_id = ProducerId(id);
            response.producer_epoch = epoch;
        }
        Err(e) => {
            tracing::debug!(error = %e, "InitProducerId refused");
            response.error_code = error_code(&e);
            response.producer_id = ProducerId(-1);
            response.producer_epoch = -1;
        }
    }
    respond(request, &response)
}
