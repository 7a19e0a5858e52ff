//! ApiVersions (key 18): which APIs and versions Strom implements.
//!
//! A request at a version we do not know is answered at v0 with `UNSUPPORTED_VERSION` and our
//! ranges, so the client can retry with a version both sides know (KIP-511). The response header
//! is always v0 for this API (the codec's header-version table says so).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::protocol::Message;

use super::{HandlerError, Outcome, SUPPORTED_APIS, decode, respond};
use crate::frame::{self, Request};

fn api_keys() -> Vec<ApiVersion> {
    SUPPORTED_APIS
        .iter()
        .map(|&(key, min, max)| {
            ApiVersion::default()
                .with_api_key(key as i16)
                .with_min_version(min)
                .with_max_version(max)
        })
        .collect()
}

/// Kafka's rule for client software names and versions: `[a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?`.
fn valid_software_field(s: &str) -> bool {
    let b = s.as_bytes();
    let edge = |c: &u8| c.is_ascii_alphanumeric();
    let inner = |c: &u8| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'.';
    match (b.first(), b.last()) {
        (Some(first), Some(last)) => edge(first) && edge(last) && b.iter().all(inner),
        _ => false,
    }
}

/// Handles ApiVersions.
pub fn handle(request: &Request) -> Result<Outcome, HandlerError> {
    let version = request.version();
    let range = ApiVersionsRequest::VERSIONS;
    if version < range.min || version > range.max {
        tracing::debug!(
            version,
            "ApiVersions at an unknown version, answering v0 UNSUPPORTED_VERSION"
        );
        let response = ApiVersionsResponse::default()
            .with_error_code(ResponseError::UnsupportedVersion.code())
            .with_api_keys(api_keys());
        return Ok(Outcome::Respond(frame::encode_response(
            request.correlation_id(),
            0,
            &response,
        )?));
    }
    let body: ApiVersionsRequest = decode(request)?;
    let mut response = ApiVersionsResponse::default().with_api_keys(api_keys());
    if version >= 3 {
        let name = body.client_software_name.as_str();
        let ver = body.client_software_version.as_str();
        tracing::debug!(
            client_software_name = name,
            client_software_version = ver,
            "ApiVersions"
        );
        if !valid_software_field(name) || !valid_software_field(ver) {
            response.error_code = ResponseError::InvalidRequest.code();
        }
    }
    respond(request, &response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn software_fields() {
        assert!(valid_software_field("librdkafka"));
        assert!(valid_software_field("2.12.1"));
        assert!(valid_software_field("a"));
        assert!(!valid_software_field(""));
        assert!(!valid_software_field("-x"));
        assert!(!valid_software_field("x y"));
    }
}
