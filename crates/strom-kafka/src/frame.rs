//! Kafka framing, sans-io: the 4-byte size prefix, request-header decoding and response encoding.
//!
//! Every Kafka message is `size: i32 (big endian)` followed by `size` bytes. A request frame
//! starts with `api_key: i16, api_version: i16, correlation_id: i32` and the rest of the request
//! header (whose version depends on the API and its version), then the body.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion};

/// Kafka's default `socket.request.max.bytes`: 100 MiB.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 100 * 1024 * 1024;

/// A frame that cannot be served; the connection is closed after logging it.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The size prefix is negative or larger than `socket.request.max.bytes`.
    #[error("frame size {size} is negative or larger than socket.request.max.bytes ({max})")]
    BadSize {
        /// The announced size.
        size: i32,
        /// The configured limit.
        max: usize,
    },
    /// The frame is shorter than the fixed part of a request header.
    #[error("frame of {len} bytes is too short for a request header")]
    Truncated {
        /// The frame length.
        len: usize,
    },
    /// The API key is not one Kafka defines.
    #[error("unknown api key {api_key} (correlation id {correlation_id})")]
    UnknownApiKey {
        /// The key from the frame.
        api_key: i16,
        /// The correlation id from the frame.
        correlation_id: i32,
    },
    /// The request header does not decode.
    #[error("undecodable {api_key:?} v{api_version} request header: {reason}")]
    BadHeader {
        /// The API.
        api_key: ApiKey,
        /// Its version.
        api_version: i16,
        /// The decoder's message.
        reason: String,
    },
}

/// Checks a size prefix against the limit.
pub fn frame_len(prefix: [u8; 4], max: usize) -> Result<usize, FrameError> {
    let size = i32::from_be_bytes(prefix);
    match usize::try_from(size) {
        Ok(len) if len <= max => Ok(len),
        _ => Err(FrameError::BadSize { size, max }),
    }
}

/// A request whose header is decoded; the body is decoded by the API's handler.
#[derive(Debug, Clone)]
pub struct Request {
    /// The API.
    pub api_key: ApiKey,
    /// The full request header.
    pub header: RequestHeader,
    /// The body bytes after the header.
    pub body: Bytes,
    /// The client's address, when the request came over a socket.
    pub peer: Option<std::net::SocketAddr>,
    /// The connection's listener and principal, when the request came over a listener.
    pub session: Option<std::sync::Arc<crate::session::Session>>,
}

impl Request {
    /// The API version the client asked for.
    pub fn version(&self) -> i16 {
        self.header.request_api_version
    }

    /// The correlation id to echo.
    pub fn correlation_id(&self) -> i32 {
        self.header.correlation_id
    }

    /// The client host as Kafka shows it in group descriptions (`/` and the IP address).
    pub fn client_host(&self) -> String {
        self.peer
            .map_or_else(|| String::from("/127.0.0.1"), |p| format!("/{}", p.ip()))
    }

    /// The client id of the request header (empty if none).
    pub fn client_id(&self) -> String {
        self.header
            .client_id
            .as_ref()
            .map(|s| s.to_string())
            .unwrap_or_default()
    }
}

/// Decodes the request header of one frame (without its size prefix).
pub fn decode_request(mut frame: Bytes) -> Result<Request, FrameError> {
    let fixed = frame
        .get(..8)
        .ok_or(FrameError::Truncated { len: frame.len() })?;
    let raw_key = i16::from_be_bytes([fixed[0], fixed[1]]);
    let api_version = i16::from_be_bytes([fixed[2], fixed[3]]);
    let correlation_id = i32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]);
    let api_key = ApiKey::try_from(raw_key).map_err(|()| FrameError::UnknownApiKey {
        api_key: raw_key,
        correlation_id,
    })?;
    let header_version = api_key.request_header_version(api_version);
    let header =
        RequestHeader::decode(&mut frame, header_version).map_err(|e| FrameError::BadHeader {
            api_key,
            api_version,
            reason: e.to_string(),
        })?;
    Ok(Request {
        api_key,
        header,
        body: frame,
        peer: None,
        session: None,
    })
}

/// A response that the codec refused to encode (a field set that the version lacks, or a
/// response over 2 GiB). A bug on our side; the connection is closed.
#[derive(Debug, thiserror::Error)]
#[error("cannot encode response: {0}")]
pub struct EncodeError(pub String);

/// Encodes a response frame: size prefix, response header (at the version the response type
/// requires for `api_version`) and body.
pub fn encode_response<R>(
    correlation_id: i32,
    api_version: i16,
    response: &R,
) -> Result<Bytes, EncodeError>
where
    R: Encodable + HeaderVersion,
{
    let header_version = R::header_version(api_version);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let size = header
        .compute_size(header_version)
        .map_err(|e| EncodeError(e.to_string()))?
        + response
            .compute_size(api_version)
            .map_err(|e| EncodeError(e.to_string()))?;
    let size_i32 =
        i32::try_from(size).map_err(|_| EncodeError("response larger than 2 GiB".to_owned()))?;
    let mut buf = BytesMut::with_capacity(4 + size);
    buf.put_i32(size_i32);
    header
        .encode(&mut buf, header_version)
        .map_err(|e| EncodeError(e.to_string()))?;
    response
        .encode(&mut buf, api_version)
        .map_err(|e| EncodeError(e.to_string()))?;
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::ApiVersionsResponse;
    use kafka_protocol::protocol::StrBytes;

    #[test]
    fn sizes() {
        assert_eq!(frame_len(10i32.to_be_bytes(), 100).unwrap(), 10);
        assert!(frame_len((-1i32).to_be_bytes(), 100).is_err());
        assert!(frame_len(101i32.to_be_bytes(), 100).is_err());
    }

    #[test]
    fn header_round_trip() {
        let header = RequestHeader::default()
            .with_request_api_key(ApiKey::Metadata as i16)
            .with_request_api_version(12)
            .with_correlation_id(7)
            .with_client_id(Some(StrBytes::from_static_str("me")));
        let mut buf = BytesMut::new();
        header.encode(&mut buf, 2).unwrap();
        buf.put_slice(b"body");
        let req = decode_request(buf.freeze()).unwrap();
        assert_eq!(req.api_key, ApiKey::Metadata);
        assert_eq!(req.correlation_id(), 7);
        assert_eq!(&req.body[..], b"body");
    }

    #[test]
    fn bad_frames() {
        assert!(matches!(
            decode_request(Bytes::from_static(&[0, 18, 0])),
            Err(FrameError::Truncated { len: 3 })
        ));
        assert!(matches!(
            decode_request(Bytes::from_static(&[0x7f, 0, 0, 0, 0, 0, 0, 9])),
            Err(FrameError::UnknownApiKey {
                api_key: 0x7f00,
                correlation_id: 9
            })
        ));
        // Header v1 with a client id longer than the frame.
        assert!(matches!(
            decode_request(Bytes::from_static(&[0, 3, 0, 1, 0, 0, 0, 1, 0, 50, b'x'])),
            Err(FrameError::BadHeader { .. })
        ));
    }

    #[test]
    fn api_versions_response_uses_header_v0() {
        let frame = encode_response(5, 3, &ApiVersionsResponse::default()).unwrap();
        // size, correlation id, then the body directly (no tagged fields in header v0).
        assert_eq!(&frame[4..8], &5i32.to_be_bytes());
        assert_eq!(
            frame.len() - 4,
            i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize
        );
    }
}
