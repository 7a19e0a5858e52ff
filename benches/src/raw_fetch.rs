//! A consumer that is not the bottleneck: plain blocking TCP, Fetch requests encoded with
//! `kafka-protocol`, responses decoded without copying the record bytes, and per response only
//! a walk over the record-batch headers (base offset, length, record count). No record is
//! decoded, so what it measures is how fast the broker serves fetches.
//!
//! One request is in flight at a time, as librdkafka keeps one fetch per broker in flight.
//! With [`Tls`] it speaks TLS (rustls, the broker's own stack), for benches/tls.sh.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{ApiKey, FetchRequest, FetchResponse, RequestHeader, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use rustls::pki_types::ServerName;

/// The Fetch version the raw consumer speaks: flexible, topics by name.
pub const FETCH_VERSION: i16 = 12;

/// Byte offsets inside a v2 record-batch header.
const BATCH_LENGTH_AT: usize = 8;
const LAST_OFFSET_DELTA_AT: usize = 23;
const RECORDS_COUNT_AT: usize = 57;
const BATCH_HEADER_LEN: usize = 61;

/// Fetch limits, as the librdkafka consumer of `kafka_bench` sets them.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `max_bytes` of the request (`fetch.max.bytes`).
    pub max_bytes: i32,
    /// `partition_max_bytes` (`max.partition.fetch.bytes`).
    pub partition_max_bytes: i32,
    /// `max_wait_ms` (`fetch.wait.max.ms`).
    pub max_wait_ms: i32,
}

/// What a consumption read.
#[derive(Debug, Clone, Copy, Default)]
pub struct Consumed {
    /// Records counted from the batch headers.
    pub records: u64,
    /// Bytes of record batches received.
    pub batch_bytes: u64,
    /// Fetch round trips.
    pub fetches: u64,
    /// From connecting to the first response that carried records.
    pub first_response: Duration,
    /// From the first response with records to the last response; `records` and
    /// `batch_bytes` count only what came after the first such response, so they divide by it.
    pub elapsed: Duration,
}

/// Why a raw consumption failed.
#[derive(Debug)]
pub enum RawError {
    /// The socket failed.
    Io(std::io::Error),
    /// The broker answered something this client does not expect.
    Protocol(String),
}

impl std::fmt::Display for RawError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RawError::Io(e) => write!(f, "i/o: {e}"),
            RawError::Protocol(m) => write!(f, "protocol: {m}"),
        }
    }
}

impl From<std::io::Error> for RawError {
    fn from(e: std::io::Error) -> Self {
        RawError::Io(e)
    }
}

pub(crate) fn protocol(m: impl Into<String>) -> RawError {
    RawError::Protocol(m.into())
}

/// The TLS side of a raw client: the rustls config (no session resumption, so each
/// connection makes a full handshake) and the name the broker's certificate must carry.
#[derive(Debug, Clone)]
pub struct Tls {
    config: Arc<rustls::ClientConfig>,
    server_name: ServerName<'static>,
}

impl Tls {
    /// Trusts the CAs of the PEM file `ca` and checks the broker's certificate against
    /// `server_name` (a DNS name or an IP address).
    pub fn new(ca: &Path, server_name: &str) -> Result<Tls, RawError> {
        let config = strom_tls::client_config(&strom_tls::ClientTlsFiles {
            ca: Some(ca.to_path_buf()),
            ..strom_tls::ClientTlsFiles::default()
        })
        .map_err(|e| protocol(e.to_string()))?;
        let mut config = (*config).clone();
        config.resumption = rustls::client::Resumption::disabled();
        let server_name = ServerName::try_from(server_name.to_owned())
            .map_err(|e| protocol(format!("server name {server_name:?}: {e}")))?;
        Ok(Tls {
            config: Arc::new(config),
            server_name,
        })
    }

    /// The client config.
    pub fn config(&self) -> &Arc<rustls::ClientConfig> {
        &self.config
    }

    /// The name checked against the certificate.
    pub fn server_name(&self) -> &ServerName<'static> {
        &self.server_name
    }
}

/// A blocking connection, plain or TLS.
pub(crate) enum Conn {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

/// Connects to `addr` (no Nagle), over TLS when `tls` is given; the handshake happens with
/// the first write.
pub(crate) fn connect(tls: Option<&Tls>, addr: &str) -> Result<Conn, RawError> {
    let tcp = TcpStream::connect(addr)?;
    tcp.set_nodelay(true)?;
    Ok(match tls {
        Some(tls) => {
            let connection =
                rustls::ClientConnection::new(Arc::clone(&tls.config), tls.server_name.clone())
                    .map_err(|e| protocol(e.to_string()))?;
            Conn::Tls(Box::new(rustls::StreamOwned::new(connection, tcp)))
        }
        None => Conn::Plain(tcp),
    })
}

/// Reads partitions `0..partitions` of `topic` from offset 0 until `count` records came back
/// (or `timeout` passed); over TLS when `tls` is given.
pub fn consume(
    tls: Option<&Tls>,
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    count: u64,
    limits: Limits,
    timeout: Duration,
) -> Result<Consumed, RawError> {
    let mut stream = connect(tls, bootstrap)?;
    let mut offsets: Vec<i64> = vec![0; usize::try_from(partitions).unwrap_or(0)];
    let mut buf: Vec<u8> = Vec::new();
    let mut out = Consumed::default();
    let mut correlation_id = 0i32;
    let start = Instant::now();
    let mut first: Option<Instant> = None;
    // Records of the first response with records: counted towards `count`, not the rate.
    let mut first_records = 0u64;
    while out.records + first_records < count {
        if start.elapsed() > timeout {
            return Err(protocol(format!(
                "consumed only {} of {count} records",
                out.records + first_records
            )));
        }
        correlation_id = correlation_id.wrapping_add(1);
        let request = fetch_request(correlation_id, topic, &offsets, limits)?;
        stream.write_all(&request)?;
        let frame = read_frame(&mut stream, &mut buf)?;
        out.fetches += 1;
        let mut body = frame.clone();
        let header = kafka_protocol::messages::ResponseHeader::decode(
            &mut body,
            FetchResponse::header_version(FETCH_VERSION),
        )
        .map_err(|e| protocol(e.to_string()))?;
        if header.correlation_id != correlation_id {
            return Err(protocol("correlation id mismatch"));
        }
        let response =
            FetchResponse::decode(&mut body, FETCH_VERSION).map_err(|e| protocol(e.to_string()))?;
        if response.error_code != 0 {
            return Err(protocol(format!("fetch error {}", response.error_code)));
        }
        for t in &response.responses {
            for p in &t.partitions {
                if p.error_code != 0 {
                    return Err(protocol(format!(
                        "partition {} error {}",
                        p.partition_index, p.error_code
                    )));
                }
                let slot = usize::try_from(p.partition_index)
                    .ok()
                    .and_then(|i| offsets.get_mut(i))
                    .ok_or_else(|| protocol("unexpected partition"))?;
                if let Some(records) = &p.records {
                    let (n, next) = walk_batches(records, *slot)?;
                    if first.is_some() {
                        out.records += n;
                        out.batch_bytes += records.len() as u64;
                    } else {
                        first_records += n;
                    }
                    *slot = next;
                }
            }
        }
        if first.is_none() && first_records > 0 {
            let now = Instant::now();
            out.first_response = now - start;
            first = Some(now);
        }
        drop(response);
        drop(body);
        // Get the buffer back for the next response (it is unique again), so large responses
        // do not fault in fresh memory every time.
        if let Ok(m) = frame.try_into_mut() {
            buf = Vec::from(m);
        }
    }
    out.elapsed = first.map_or(Duration::ZERO, |f| f.elapsed());
    Ok(out)
}

fn fetch_request(
    correlation_id: i32,
    topic: &str,
    offsets: &[i64],
    limits: Limits,
) -> Result<Vec<u8>, RawError> {
    let partitions = offsets
        .iter()
        .enumerate()
        .map(|(i, &offset)| {
            FetchPartition::default()
                .with_partition(i32::try_from(i).unwrap_or(i32::MAX))
                .with_fetch_offset(offset)
                .with_partition_max_bytes(limits.partition_max_bytes)
        })
        .collect();
    let request = FetchRequest::default()
        .with_max_wait_ms(limits.max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(limits.max_bytes)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic.to_owned())))
                .with_partitions(partitions),
        ]);
    request_frame(ApiKey::Fetch, FETCH_VERSION, correlation_id, &request)
}

/// `request` of `api` at `version` as one frame: the size prefix, a request header (this
/// bench's client id, `correlation_id`) and the body.
pub(crate) fn request_frame(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    request: &impl Encodable,
) -> Result<Vec<u8>, RawError> {
    let header = RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("strom-bench-raw")));
    let mut payload = BytesMut::new();
    header
        .encode(&mut payload, api.request_header_version(version))
        .map_err(|e| protocol(e.to_string()))?;
    request
        .encode(&mut payload, version)
        .map_err(|e| protocol(e.to_string()))?;
    let len = i32::try_from(payload.len()).map_err(|_| protocol("request too large"))?;
    let mut frame = Vec::with_capacity(payload.len() + 4);
    frame.put_i32(len);
    frame.extend_from_slice(&payload);
    Ok(frame)
}

/// Reads one response frame into `buf` (zero-filled only when it grows) and hands it out as
/// [`Bytes`], so decoding slices it instead of copying the records.
pub(crate) fn read_frame(stream: &mut impl Read, buf: &mut Vec<u8>) -> Result<Bytes, RawError> {
    let mut size = [0u8; 4];
    stream.read_exact(&mut size)?;
    let size = usize::try_from(i32::from_be_bytes(size))
        .map_err(|_| protocol("negative response size"))?;
    let mut vec = std::mem::take(buf);
    if vec.len() < size {
        vec.resize(size, 0);
    }
    let body = vec
        .get_mut(..size)
        .ok_or_else(|| protocol("buffer shorter than the frame"))?;
    stream.read_exact(body)?;
    let all = Bytes::from(vec);
    let frame = all.slice(..size);
    drop(all);
    Ok(frame)
}

/// Counts the records of the whole batches in `records` that start at or after `offset` and
/// returns the count and the offset after the last batch. A partial batch at the end (Kafka may
/// send one) is ignored; it is fetched again next time.
pub fn walk_batches(records: &[u8], offset: i64) -> Result<(u64, i64), RawError> {
    let mut pos = 0usize;
    let mut count = 0u64;
    let mut next = offset;
    while let Some(header) = records.get(pos..pos + BATCH_HEADER_LEN) {
        let base = i64::from_be_bytes(field(header, 0)?);
        let length = i32::from_be_bytes(field(header, BATCH_LENGTH_AT)?);
        let total = usize::try_from(length)
            .ok()
            .and_then(|l| l.checked_add(12))
            .ok_or_else(|| protocol("negative batch length"))?;
        if pos + total > records.len() {
            break;
        }
        let last_delta = i32::from_be_bytes(field(header, LAST_OFFSET_DELTA_AT)?);
        let n = i32::from_be_bytes(field(header, RECORDS_COUNT_AT)?);
        let last = base + i64::from(last_delta);
        if last >= offset {
            count += u64::try_from(n).unwrap_or(0);
        }
        next = next.max(last + 1);
        pos += total;
    }
    Ok((count, next))
}

fn field<const N: usize>(header: &[u8], at: usize) -> Result<[u8; N], RawError> {
    header
        .get(at..at + N)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| protocol("short batch header"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_whole_batches_and_ignores_a_partial_one() {
        let records: Vec<strom_record::Record> = (0..3)
            .map(|_| strom_record::Record::new(1, None, Some(Bytes::from_static(b"v"))))
            .collect();
        let mut one = strom_record::BatchBuilder::new().build(&records).unwrap();
        let mut two = one.clone();
        two[..8].copy_from_slice(&3i64.to_be_bytes());
        one.extend_from_slice(&two);
        let whole = one.len();
        one.extend_from_slice(&two[..20]);
        assert_eq!(walk_batches(&one, 0).unwrap(), (6, 6));
        assert_eq!(walk_batches(&one[..whole], 3).unwrap(), (3, 6));
        assert_eq!(walk_batches(&[], 9).unwrap(), (0, 9));
    }
}
