//! Kafka framing, sans-io: the 4-byte size prefix, request-header decoding and response encoding.
//!
//! Every Kafka message is `size: i32 (big endian)` followed by `size` bytes. A request frame
//! starts with `api_key: i16, api_version: i16, correlation_id: i32` and the rest of the request
//! header (whose version depends on the API and its version), then the body.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ProduceResponse, RequestHeader, ResponseHeader};
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

/// Where a response body carries `throttle_time_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ThrottleField {
    /// This many bytes after the response header.
    FromBodyStart(usize),
    /// After the body's variable-length part (Produce: after its responses, before the
    /// tagged fields, which may hold `node_endpoints`): found by decoding the body.
    AtBodyEnd,
}

/// The first version of each API whose response has `throttle_time_ms`, and where it sits
/// (Kafka's `*Response.json`; `frame::tests` checks it against the codec for every version
/// Strom serves). ApiVersions and the SASL APIs are left out: they are exempt from quotas.
fn throttle_field(api_key: ApiKey, version: i16) -> Option<ThrottleField> {
    use ThrottleField::{AtBodyEnd, FromBodyStart};
    let (since, at) = match api_key {
        ApiKey::Produce => (1, AtBodyEnd),
        ApiKey::Fetch
        | ApiKey::FindCoordinator
        | ApiKey::Heartbeat
        | ApiKey::LeaveGroup
        | ApiKey::SyncGroup
        | ApiKey::DescribeGroups
        | ApiKey::ListGroups
        | ApiKey::DeleteTopics => (1, FromBodyStart(0)),
        ApiKey::ListOffsets
        | ApiKey::JoinGroup
        | ApiKey::CreateTopics
        | ApiKey::OffsetForLeaderEpoch => (2, FromBodyStart(0)),
        ApiKey::Metadata | ApiKey::OffsetCommit | ApiKey::OffsetFetch => (3, FromBodyStart(0)),
        // error_code: i16 comes first.
        ApiKey::OffsetDelete => (0, FromBodyStart(2)),
        ApiKey::DeleteRecords
        | ApiKey::InitProducerId
        | ApiKey::AddPartitionsToTxn
        | ApiKey::AddOffsetsToTxn
        | ApiKey::EndTxn
        | ApiKey::TxnOffsetCommit
        | ApiKey::DescribeAcls
        | ApiKey::CreateAcls
        | ApiKey::DeleteAcls
        | ApiKey::DescribeConfigs
        | ApiKey::AlterConfigs
        | ApiKey::DescribeLogDirs
        | ApiKey::CreatePartitions
        | ApiKey::IncrementalAlterConfigs
        | ApiKey::DescribeCluster
        | ApiKey::DeleteGroups
        | ApiKey::ConsumerGroupHeartbeat
        | ApiKey::ConsumerGroupDescribe
        | ApiKey::DescribeProducers
        | ApiKey::DescribeTransactions
        | ApiKey::ListTransactions
        | ApiKey::DescribeUserScramCredentials
        | ApiKey::AlterUserScramCredentials
        | ApiKey::DescribeClientQuotas
        | ApiKey::AlterClientQuotas => (0, FromBodyStart(0)),
        _ => return None,
    };
    (version >= since).then_some(at)
}

/// Raises the `throttle_time_ms` of an encoded response to at least `ms` (KIP-219: a
/// response carries the longest throttle of its request, whichever quota gave it).
///
/// `frame` is the start of the response as [`encode_response`] writes it (size prefix,
/// header, body), and must be the whole frame for a Produce response. Returns
/// whether the field was written: `false` when this API and version have no throttle time,
/// or the bytes are not laid out as expected (then nothing is changed).
pub fn raise_throttle_time(api_key: ApiKey, version: i16, frame: &mut [u8], ms: i32) -> bool {
    let Some(field) = throttle_field(api_key, version) else {
        return false;
    };
    // Response header v0 is the correlation id; v1 adds tagged fields, which Strom never
    // sets (one zero byte).
    let header_len = match api_key.response_header_version(version) {
        0 => 4,
        _ => {
            if frame.get(8) != Some(&0) {
                return false;
            }
            5
        }
    };
    let at = match field {
        ThrottleField::FromBodyStart(skip) => 4 + header_len + skip,
        ThrottleField::AtBodyEnd => {
            return raise_produce_throttle_time(version, frame, 4 + header_len, ms);
        }
    };
    let Some(slot) = frame.get_mut(at..at + 4) else {
        return false;
    };
    let mut current = [0u8; 4];
    current.copy_from_slice(slot);
    let raised = i32::from_be_bytes(current).max(ms);
    slot.copy_from_slice(&raised.to_be_bytes());
    true
}

/// [`raise_throttle_time`] for a Produce response whose body starts at `body_at`: decoded,
/// raised and encoded again in place (the same length: only an `i32` changes). Produce
/// responses are small, and only a throttled one is rewritten.
fn raise_produce_throttle_time(version: i16, frame: &mut [u8], body_at: usize, ms: i32) -> bool {
    let Some(body) = frame.get_mut(body_at..) else {
        return false;
    };
    let mut bytes = Bytes::copy_from_slice(body);
    let Ok(mut response) = ProduceResponse::decode(&mut bytes, version) else {
        return false;
    };
    if !bytes.is_empty() {
        return false;
    }
    response.throttle_time_ms = response.throttle_time_ms.max(ms);
    let mut out = BytesMut::with_capacity(body.len());
    if response.encode(&mut out, version).is_err() || out.len() != body.len() {
        return false;
    }
    body.copy_from_slice(&out);
    true
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

    /// A response of `key` at `version` with `throttle_time_ms = ms` (a Produce with one
    /// partition, so its throttle time is not the body's only field), or `None` when the
    /// codec refuses it. The SASL APIs have no such field and are encoded without it.
    fn response_with_throttle(key: ApiKey, version: i16, ms: i32) -> Option<Bytes> {
        use kafka_protocol::messages::*;
        macro_rules! enc {
            ($t:ty) => {
                encode_response(7, version, &<$t>::default().with_throttle_time_ms(ms)).ok()
            };
        }
        match key {
            ApiKey::Produce => encode_response(
                7,
                version,
                &ProduceResponse::default()
                    .with_responses(vec![
                        produce_response::TopicProduceResponse::default().with_partition_responses(
                            vec![
                                produce_response::PartitionProduceResponse::default()
                                    .with_base_offset(42),
                            ],
                        ),
                    ])
                    .with_throttle_time_ms(ms),
            )
            .ok(),
            ApiKey::Fetch => enc!(FetchResponse),
            ApiKey::ListOffsets => enc!(ListOffsetsResponse),
            ApiKey::Metadata => enc!(MetadataResponse),
            ApiKey::ApiVersions => enc!(ApiVersionsResponse),
            ApiKey::CreateTopics => enc!(CreateTopicsResponse),
            ApiKey::DeleteTopics => enc!(DeleteTopicsResponse),
            ApiKey::DeleteRecords => enc!(DeleteRecordsResponse),
            ApiKey::InitProducerId => enc!(InitProducerIdResponse),
            ApiKey::OffsetForLeaderEpoch => enc!(OffsetForLeaderEpochResponse),
            ApiKey::DescribeConfigs => enc!(DescribeConfigsResponse),
            ApiKey::AlterConfigs => enc!(AlterConfigsResponse),
            ApiKey::DescribeLogDirs => enc!(DescribeLogDirsResponse),
            ApiKey::CreatePartitions => enc!(CreatePartitionsResponse),
            ApiKey::IncrementalAlterConfigs => enc!(IncrementalAlterConfigsResponse),
            ApiKey::DescribeCluster => enc!(DescribeClusterResponse),
            ApiKey::FindCoordinator => enc!(FindCoordinatorResponse),
            ApiKey::JoinGroup => enc!(JoinGroupResponse),
            ApiKey::SyncGroup => enc!(SyncGroupResponse),
            ApiKey::Heartbeat => enc!(HeartbeatResponse),
            ApiKey::LeaveGroup => enc!(LeaveGroupResponse),
            ApiKey::OffsetCommit => enc!(OffsetCommitResponse),
            ApiKey::OffsetFetch => enc!(OffsetFetchResponse),
            ApiKey::DescribeGroups => enc!(DescribeGroupsResponse),
            ApiKey::ListGroups => enc!(ListGroupsResponse),
            ApiKey::DeleteGroups => enc!(DeleteGroupsResponse),
            ApiKey::OffsetDelete => enc!(OffsetDeleteResponse),
            ApiKey::ConsumerGroupHeartbeat => enc!(ConsumerGroupHeartbeatResponse),
            ApiKey::ConsumerGroupDescribe => enc!(ConsumerGroupDescribeResponse),
            ApiKey::DescribeProducers => enc!(DescribeProducersResponse),
            ApiKey::AddPartitionsToTxn => enc!(AddPartitionsToTxnResponse),
            ApiKey::AddOffsetsToTxn => enc!(AddOffsetsToTxnResponse),
            ApiKey::EndTxn => enc!(EndTxnResponse),
            ApiKey::TxnOffsetCommit => enc!(TxnOffsetCommitResponse),
            ApiKey::DescribeTransactions => enc!(DescribeTransactionsResponse),
            ApiKey::ListTransactions => enc!(ListTransactionsResponse),
            ApiKey::DescribeAcls => enc!(DescribeAclsResponse),
            ApiKey::CreateAcls => enc!(CreateAclsResponse),
            ApiKey::DeleteAcls => enc!(DeleteAclsResponse),
            ApiKey::DescribeUserScramCredentials => enc!(DescribeUserScramCredentialsResponse),
            ApiKey::AlterUserScramCredentials => enc!(AlterUserScramCredentialsResponse),
            ApiKey::DescribeClientQuotas => enc!(DescribeClientQuotasResponse),
            ApiKey::AlterClientQuotas => enc!(AlterClientQuotasResponse),
            ApiKey::SaslHandshake => {
                encode_response(7, version, &SaslHandshakeResponse::default()).ok()
            }
            ApiKey::SaslAuthenticate => {
                encode_response(7, version, &SaslAuthenticateResponse::default()).ok()
            }
            other => panic!("add {other:?} to this test"),
        }
    }

    #[test]
    fn throttle_time_is_raised_where_the_codec_puts_it_for_every_served_version() {
        const MARK: i32 = 0x0102_0304;
        let exempt = [
            ApiKey::ApiVersions,
            ApiKey::SaslHandshake,
            ApiKey::SaslAuthenticate,
        ];
        let mut raised = 0;
        for &(key, min, max) in crate::api::SUPPORTED_APIS {
            for version in min..=max {
                let plain = response_with_throttle(key, version, 0)
                    .unwrap_or_else(|| panic!("{key:?} v{version} does not encode"));
                // The codec drops an ignorable field a version lacks, as Kafka's does.
                let marked = if exempt.contains(&key) {
                    None
                } else {
                    response_with_throttle(key, version, MARK).filter(|m| *m != plain)
                };
                let mut patched = plain.to_vec();
                let done = raise_throttle_time(key, version, &mut patched, MARK);
                match marked {
                    Some(marked) => {
                        assert!(done, "{key:?} v{version}: not raised");
                        assert_eq!(patched, marked.to_vec(), "{key:?} v{version}");
                        // Raising to less than what is there keeps it.
                        assert!(raise_throttle_time(key, version, &mut patched, 5));
                        assert_eq!(patched, marked.to_vec(), "{key:?} v{version}");
                        raised += 1;
                    }
                    None => {
                        assert!(!done, "{key:?} v{version} has no throttle time");
                        assert_eq!(patched, plain.to_vec(), "{key:?} v{version}");
                    }
                }
            }
        }
        assert!(raised > 100, "only {raised} versions checked");
    }

    #[test]
    fn a_produce_response_with_tagged_fields_is_raised_and_a_short_frame_left_alone() {
        use kafka_protocol::messages::produce_response::NodeEndpoint;
        let response = ProduceResponse::default().with_node_endpoints(vec![
            NodeEndpoint::default().with_host(StrBytes::from_static_str("h")),
        ]);
        let frame = encode_response(7, 10, &response).unwrap();
        let expected = encode_response(7, 10, &response.with_throttle_time_ms(99)).unwrap();
        let mut patched = frame.to_vec();
        assert!(raise_throttle_time(ApiKey::Produce, 10, &mut patched, 99));
        assert_eq!(patched, expected.to_vec());
        // Cut short: nothing written.
        let mut short = frame[..frame.len() - 1].to_vec();
        assert!(!raise_throttle_time(ApiKey::Produce, 10, &mut short, 99));
        assert_eq!(short, frame[..frame.len() - 1].to_vec());
        let mut short = frame[..6].to_vec();
        assert!(!raise_throttle_time(ApiKey::Metadata, 12, &mut short, 99));
        assert_eq!(short, frame[..6].to_vec());
    }
}
