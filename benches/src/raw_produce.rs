//! A producer that is not the bottleneck: one record batch built once (uncompressed, no
//! producer id), one Produce request encoded once around it, and every request after that the
//! same bytes with a new correlation id, written over plain blocking TCP or TLS with up to
//! `in_flight` requests outstanding. Responses are decoded only for their error codes. What it
//! measures is how fast the broker takes writes (benches/tls.sh: the broker's TLS cost).

use std::collections::VecDeque;
use std::io::Write;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::protocol::{Decodable, HeaderVersion, StrBytes};

use crate::raw_fetch::{RawError, Tls, connect, protocol, read_frame};

/// The Produce version the raw producer speaks: flexible, topics by name.
pub const PRODUCE_VERSION: i16 = 9;

/// Where the correlation id sits in a request frame: after the size prefix, api key and version.
const CORRELATION_ID_AT: usize = 8;

/// What to produce.
#[derive(Debug, Clone)]
pub struct Plan<'a> {
    /// Topic (partition 0 only).
    pub topic: &'a str,
    /// Value size of each record, in bytes.
    pub record_size: usize,
    /// Records in each batch (one batch per request).
    pub records_per_batch: usize,
    /// Records in all; rounded up to whole batches.
    pub count: u64,
    /// Requests sent before the first response is awaited.
    pub in_flight: usize,
    /// `acks` (-1, 0 is not supported, or 1).
    pub acks: i16,
    /// Give up after this long.
    pub timeout: Duration,
}

/// What a production wrote.
#[derive(Debug, Clone, Default)]
pub struct Produced {
    /// Records acknowledged.
    pub records: u64,
    /// Payload bytes (values) acknowledged.
    pub payload_bytes: u64,
    /// From the first request to the last acknowledgement (the warm-up request excluded).
    pub elapsed: Duration,
    /// Each request's time from its write to its response, in microseconds, sorted.
    pub latencies_us: Vec<u32>,
}

/// Produces `plan` to `bootstrap` (the partition's leader), over TLS when `tls` is given. One
/// request is sent and answered first, outside the clock (connection, handshake, topic lookup).
pub fn produce(tls: Option<&Tls>, bootstrap: &str, plan: &Plan<'_>) -> Result<Produced, RawError> {
    if plan.acks == 0 {
        return Err(protocol("acks=0 has no responses to count"));
    }
    let mut frame = request_frame(plan)?;
    let mut conn = connect(tls, bootstrap)?;
    let mut buf = Vec::new();
    let mut correlation_id = 0i32;
    let mut send = |conn: &mut crate::raw_fetch::Conn, frame: &mut [u8]| {
        correlation_id = correlation_id.wrapping_add(1);
        if let Some(slot) = frame.get_mut(CORRELATION_ID_AT..CORRELATION_ID_AT + 4) {
            slot.copy_from_slice(&correlation_id.to_be_bytes());
        }
        conn.write_all(frame).map(|()| correlation_id)
    };
    // Warm-up, outside the clock.
    let id = send(&mut conn, &mut frame)?;
    check_response(&read_frame(&mut conn, &mut buf)?, id)?;

    let batch_records = plan.records_per_batch.max(1) as u64;
    let requests = plan.count.div_ceil(batch_records);
    let mut outstanding: VecDeque<(i32, Instant)> = VecDeque::with_capacity(plan.in_flight);
    let mut latencies = Vec::with_capacity(usize::try_from(requests).unwrap_or(0));
    let mut sent = 0u64;
    let mut acked = 0u64;
    let start = Instant::now();
    while acked < requests {
        if start.elapsed() > plan.timeout {
            return Err(protocol(format!(
                "only {acked} of {requests} requests acknowledged"
            )));
        }
        if sent < requests && outstanding.len() < plan.in_flight.max(1) {
            let id = send(&mut conn, &mut frame)?;
            outstanding.push_back((id, Instant::now()));
            sent += 1;
            continue;
        }
        let response = read_frame(&mut conn, &mut buf)?;
        let (id, at) = outstanding
            .pop_front()
            .ok_or_else(|| protocol("a response to no request"))?;
        check_response(&response, id)?;
        latencies.push(u32::try_from(at.elapsed().as_micros()).unwrap_or(u32::MAX));
        acked += 1;
        if let Ok(m) = response.try_into_mut() {
            buf = Vec::from(m);
        }
    }
    let elapsed = start.elapsed();
    latencies.sort_unstable();
    let records = acked * batch_records;
    Ok(Produced {
        records,
        payload_bytes: records * plan.record_size as u64,
        elapsed,
        latencies_us: latencies,
    })
}

/// The Produce request frame (size prefix included) with one batch of the plan's records.
fn request_frame(plan: &Plan<'_>) -> Result<Vec<u8>, RawError> {
    let value: Bytes = (0..plan.record_size)
        .map(|i| (i * 7 + 13) as u8)
        .collect::<Vec<u8>>()
        .into();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(0));
    let records: Vec<strom_record::Record> = (0..plan.records_per_batch.max(1))
        .map(|i| {
            strom_record::Record::new(
                now,
                Some(Bytes::from((i % 1024).to_string())),
                Some(value.clone()),
            )
        })
        .collect();
    let batch = strom_record::BatchBuilder::new()
        .build(&records)
        .map_err(|e| protocol(e.to_string()))?;
    let request = ProduceRequest::default()
        .with_acks(plan.acks)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(plan.topic.to_owned())))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(Bytes::from(batch))),
                ]),
        ]);
    crate::raw_fetch::request_frame(ApiKey::Produce, PRODUCE_VERSION, 0, &request)
}

/// Checks a Produce response frame: its correlation id and every partition's error code.
fn check_response(frame: &Bytes, correlation_id: i32) -> Result<(), RawError> {
    let mut body = frame.clone();
    let header = kafka_protocol::messages::ResponseHeader::decode(
        &mut body,
        ProduceResponse::header_version(PRODUCE_VERSION),
    )
    .map_err(|e| protocol(e.to_string()))?;
    if header.correlation_id != correlation_id {
        return Err(protocol("correlation id mismatch"));
    }
    let response =
        ProduceResponse::decode(&mut body, PRODUCE_VERSION).map_err(|e| protocol(e.to_string()))?;
    for t in &response.responses {
        for p in &t.partition_responses {
            if p.error_code != 0 {
                return Err(protocol(format!(
                    "partition {} error {}",
                    p.index, p.error_code
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::RequestHeader;

    #[test]
    fn the_request_frame_decodes_with_its_batch() {
        let plan = Plan {
            topic: "t",
            record_size: 10,
            records_per_batch: 3,
            count: 3,
            in_flight: 1,
            acks: -1,
            timeout: Duration::from_secs(1),
        };
        let mut frame = request_frame(&plan).unwrap();
        let size = i32::from_be_bytes(frame[..4].try_into().unwrap());
        assert_eq!(size as usize, frame.len() - 4);
        frame[CORRELATION_ID_AT..CORRELATION_ID_AT + 4].copy_from_slice(&77i32.to_be_bytes());
        let mut body = Bytes::from(frame[4..].to_vec());
        let header = RequestHeader::decode(
            &mut body,
            ApiKey::Produce.request_header_version(PRODUCE_VERSION),
        )
        .unwrap();
        assert_eq!(header.request_api_key, ApiKey::Produce as i16);
        assert_eq!(header.correlation_id, 77);
        let request = ProduceRequest::decode(&mut body, PRODUCE_VERSION).unwrap();
        assert_eq!(request.acks, -1);
        let records = request.topic_data[0].partition_data[0]
            .records
            .clone()
            .unwrap();
        assert_eq!(crate::raw_fetch::walk_batches(&records, 0).unwrap(), (3, 3));
    }
}
