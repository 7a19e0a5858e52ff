//! SaslAuthenticate (key 36, v0–v2): one SASL token of the exchange SaslHandshake v1 began.
//!
//! A failure answers `SASL_AUTHENTICATION_FAILED` with an error message and closes the
//! connection (Kafka's behaviour); a request out of turn is `ILLEGAL_SASL_STATE`. v1+ carries
//! `session_lifetime_ms` (KIP-368) on success.

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{SaslAuthenticateRequest, SaslAuthenticateResponse};
use kafka_protocol::protocol::StrBytes;

use super::{HandlerError, Outcome, decode, respond};
use crate::Context;
use crate::frame::Request;
use crate::sasl::{SaslError, Session};

/// Handles SaslAuthenticate on the connection's session.
pub fn handle(
    context: &Context,
    request: &Request,
    session: &mut Session,
) -> Result<Outcome, HandlerError> {
    let body: SaslAuthenticateRequest = decode(request)?;
    let result = session.authenticate(
        context.sasl.as_ref(),
        context.broker.scram(),
        &body.auth_bytes,
        false,
    );
    let mut response = SaslAuthenticateResponse::default();
    let mut close = false;
    match result {
        Ok(Err(challenge)) => response.auth_bytes = Bytes::from(challenge),
        Ok(Ok(done)) => {
            tracing::debug!(peer = ?request.peer, principal = ?session.principal(), "SASL authenticated");
            context.metrics.sasl_authentication(true);
            response.auth_bytes = Bytes::from(done.response);
            if request.version() >= 1 {
                response.session_lifetime_ms = done.session_lifetime_ms;
            }
        }
        Err(e) => {
            tracing::info!(peer = ?request.peer, error = %e, "SASL authentication failed");
            let (code, message) = match &e {
                SaslError::IllegalState { what } => {
                    (ResponseError::IllegalSaslState.code(), (*what).to_owned())
                }
                SaslError::Failed(failure) => (
                    ResponseError::SaslAuthenticationFailed.code(),
                    failure.client_message(),
                ),
                SaslError::ReauthChanged | SaslError::UnsupportedMechanism { .. } => (
                    ResponseError::SaslAuthenticationFailed.code(),
                    format!("Authentication failed: {e}"),
                ),
            };
            // Out-of-turn requests on an authenticated or non-SASL connection are answered
            // and the connection lives on (Kafka's KafkaApis); any other failure closes it.
            close = session.failed();
            if code == ResponseError::SaslAuthenticationFailed.code() {
                context.metrics.sasl_authentication(false);
            }
            response.error_code = code;
            response.error_message = Some(StrBytes::from_string(message));
        }
    }
    let outcome = respond(request, &response)?;
    Ok(match (outcome, close) {
        (Outcome::Respond(bytes), true) => Outcome::RespondThenClose(bytes),
        (outcome, _) => outcome,
    })
}
