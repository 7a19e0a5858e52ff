//! InitProducerId (key 22): producer ids for idempotent producers.
//!
//! Java clients since 3.0 and kafka-python 3 enable idempotence by default and refuse to
//! produce without this API. Strom hands out durable, never-reused producer ids (epoch 0, or
//! the next epoch when a client bumps its epoch, KIP-360). Sequence numbers are stored with
//! the batches but not yet checked for duplicates or gaps. Transactional ids are refused
//! until transactions exist.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use super::{HandlerError, Outcome, decode, respond};
use crate::Context;
use crate::error_code::error_code;
use crate::frame::Request;

/// Handles InitProducerId.
pub async fn handle(context: &Context, request: &Request) -> Result<Outcome, HandlerError> {
    let body: InitProducerIdRequest = decode(request)?;
    let mut response = InitProducerIdResponse::default();
    if body.transactional_id.is_some() {
        tracing::debug!(transactional_id = ?body.transactional_id, "transactions are not supported yet");
        response.error_code = ResponseError::TransactionalIdAuthorizationFailed.code();
        return respond(request, &response);
    }
    let (pid, epoch) = (body.producer_id.0, body.producer_epoch);
    if context.broker.producer_id_was_allocated(pid) && (0..i16::MAX - 1).contains(&epoch) {
        // Epoch bump for an existing producer (KIP-360).
        response.producer_id = ProducerId(pid);
        response.producer_epoch = epoch + 1;
        return respond(request, &response);
    }
    match context
        .broker
        .run_blocking(|b| b.allocate_producer_id_blocking())
        .await
    {
        Ok(id) => {
            response.producer_id = ProducerId(id);
            response.producer_epoch = 0;
        }
        Err(e) => response.error_code = error_code(&e),
    }
    respond(request, &response)
}
