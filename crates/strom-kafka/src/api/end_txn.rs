//! EndTxn (key 26): commit or abort the producer's open transaction. Answered once the
//! markers are written to every partition and the transaction's offsets are settled.

use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse};

use super::{HandlerError, Outcome, decode, respond};
use crate::error_code::error_code;
use crate::frame::Request;
use crate::{Context, authz};

/// Handles EndTxn.
pub async fn handle(context: &Context, request: &Request) -> Result<Outcome, HandlerError> {
    let body: EndTxnRequest = decode(request)?;
    let id = body.transactional_id.to_string();
    let (pid, epoch, commit) = (body.producer_id.0, body.producer_epoch, body.committed);
    let result = match authz::check_txn(context, request, &id, None) {
        Err(e) => Err(e),
        Ok(()) => {
            context
                .broker
                .run_blocking(move |b| b.end_txn_blocking(&id, pid, epoch, commit))
                .await
        }
    };
    if let Err(e) = &result {
        tracing::debug!(error = %e, commit, "EndTxn refused");
    }
    let code = result.as_ref().err().map_or(0, error_code);
    respond(request, &EndTxnResponse::default().with_error_code(code))
}
