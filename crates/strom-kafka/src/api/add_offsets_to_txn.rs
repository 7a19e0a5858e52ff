//! AddOffsetsToTxn (key 25): the transaction will commit a consumer group's offsets
//! (`send_offsets_to_transaction`); the client then sends TxnOffsetCommit to the group
//! coordinator.

use kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};

use super::{HandlerError, Outcome, decode, respond};
use crate::error_code::error_code;
use crate::frame::Request;
use crate::{Context, authz};

/// Handles AddOffsetsToTxn.
pub async fn handle(context: &Context, request: &Request) -> Result<Outcome, HandlerError> {
    let body: AddOffsetsToTxnRequest = decode(request)?;
    let id = body.transactional_id.to_string();
    let group = body.group_id.to_string();
    let (pid, epoch) = (body.producer_id.0, body.producer_epoch);
    let result = match authz::check_txn(context, request, &id, Some(&group)) {
        Err(e) => Err(e),
        Ok(()) => {
            context
                .broker
                .run_blocking(move |b| b.add_offsets_to_txn_blocking(&id, pid, epoch, &group))
                .await
        }
    };
    let code = result.as_ref().err().map_or(0, error_code);
    respond(
        request,
        &AddOffsetsToTxnResponse::default().with_error_code(code),
    )
}
