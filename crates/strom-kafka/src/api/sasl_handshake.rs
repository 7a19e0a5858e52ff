//! SaslHandshake (key 17, v0–v1): picks the mechanism of the connection's SASL exchange.
//!
//! v0 means the client then sends raw SASL tokens (a 4-byte length and the token, no Kafka
//! header) and expects raw answers; v1 means the tokens come in SaslAuthenticate requests.
//! An unknown or disabled mechanism is `UNSUPPORTED_SASL_MECHANISM` with the enabled list and
//! closes the connection, as Kafka does; on a listener without SASL, or mid-exchange, the answer
//! is `ILLEGAL_SASL_STATE`.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{SaslHandshakeRequest, SaslHandshakeResponse};
use kafka_protocol::protocol::StrBytes;

use super::{HandlerError, Outcome, decode, respond};
use crate::Context;
use crate::frame::Request;
use crate::sasl::{SaslError, Session};

/// Handles SaslHandshake on the connection's session.
pub fn handle(
    context: &Context,
    request: &Request,
    session: &mut Session,
) -> Result<Outcome, HandlerError> {
    let body: SaslHandshakeRequest = decode(request)?;
    let mechanisms: Vec<StrBytes> = context
        .sasl
        .as_ref()
        .map(|c| {
            c.mechanisms
                .iter()
                .map(|m| StrBytes::from_static_str(m.name()))
                .collect()
        })
        .unwrap_or_default();
    let result = session.handshake(context.sasl.as_ref(), request.version(), &body.mechanism);
    let code = match &result {
        Ok(()) => 0,
        Err(e) => {
            tracing::info!(peer = ?request.peer, mechanism = %body.mechanism, error = %e, "SASL handshake refused");
            match e {
                SaslError::UnsupportedMechanism { .. } => {
                    ResponseError::UnsupportedSaslMechanism.code()
                }
                SaslError::IllegalState { .. } => ResponseError::IllegalSaslState.code(),
                SaslError::Failed(_) | SaslError::ReauthChanged => {
                    ResponseError::SaslAuthenticationFailed.code()
                }
            }
        }
    };
    let response = SaslHandshakeResponse::default()
        .with_error_code(code)
        .with_mechanisms(mechanisms);
    // A refusal that ends the exchange closes the connection once answered (Kafka's
    // behaviour); one on a non-SASL listener is only answered.
    let close = session.failed();
    let outcome = respond(request, &response)?;
    Ok(match (outcome, close) {
        (Outcome::Respond(bytes), true) => Outcome::RespondThenClose(bytes),
        (outcome, _) => outcome,
    })
}
