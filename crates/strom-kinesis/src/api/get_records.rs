//! `GetRecords`: decode stored batches from the iterator's offset into Kinesis records.
//!
//! The records of a read stay slices of the read buffer ([`PageRecord`]) until the response
//! is written. A JSON 1.1 response is written straight into its output buffer (sequence
//! numbers as digits, data base64-encoded in place, [`write_response_json`]); CBOR responses
//! and SubscribeToShard events go through the JSON value model ([`PageRecord::to_value`]), which
//! yields the same document.

use std::borrow::Cow;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use strom_record::DecodeLimits;

use super::{limit, seconds};
use crate::error::{ErrorKind, KinesisError, Result};
use crate::iterator::ShardIterator;
use crate::sequence::SequenceNumber;
use crate::service::{Context, Reply, parse};
use crate::stream::{self, shard_id};
use crate::wire::Encoding;

/// The most bytes one `GetRecords` returns.
const MAX_BYTES: usize = 10 * 1024 * 1024;
/// What a record with a null Kafka key gets as its partition key.
pub(crate) const NULL_KEY_PLACEHOLDER: &str = "-";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Request {
    shard_iterator: String,
    #[serde(default)]
    limit: Option<i64>,
}

/// One stored record of a read, as slices of the read buffer.
#[derive(Debug, Clone)]
pub(crate) struct PageRecord {
    /// Shard (partition) index.
    pub(crate) shard: usize,
    /// Offset in the partition.
    pub(crate) offset: i64,
    /// Timestamp, epoch milliseconds.
    pub(crate) timestamp: i64,
    /// The Kafka key (the partition key); `None` for a null key.
    pub(crate) key: Option<Bytes>,
    /// The Kafka value (the data); `None` for a null value.
    pub(crate) data: Option<Bytes>,
}

impl PageRecord {
    /// The record's sequence number.
    pub(crate) fn sequence_number(&self) -> SequenceNumber {
        SequenceNumber::new(
            u32::try_from(self.shard).unwrap_or(u32::MAX),
            self.offset.max(0) as u64,
        )
    }

    /// The partition key: the key as (lossy) UTF-8, [`NULL_KEY_PLACEHOLDER`] for a null key.
    fn partition_key(&self) -> Cow<'_, str> {
        match &self.key {
            Some(k) => String::from_utf8_lossy(k),
            None => Cow::Borrowed(NULL_KEY_PLACEHOLDER),
        }
    }

    /// The `Record` structure in the JSON value model.
    pub(crate) fn to_value(&self) -> Value {
        json!({
            "SequenceNumber": self.sequence_number().to_string(),
            "ApproximateArrivalTimestamp": seconds(self.timestamp),
            "Data": base64_simd::STANDARD.encode_to_string(self.data.as_deref().unwrap_or_default()),
            "PartitionKey": self.partition_key(),
        })
    }

    /// Appends the `Record` structure as JSON, byte for byte what serialising
    /// [`PageRecord::to_value`] gives (members in the value model's sorted order).
    fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"ApproximateArrivalTimestamp\":");
        put_json(out, &(self.timestamp as f64 / 1000.0));
        out.extend_from_slice(b",\"Data\":\"");
        put_base64(out, self.data.as_deref().unwrap_or_default());
        out.extend_from_slice(b"\",\"PartitionKey\":");
        put_json(out, &*self.partition_key());
        out.extend_from_slice(b",\"SequenceNumber\":\"");
        out.extend_from_slice(&self.sequence_number().digits());
        out.extend_from_slice(b"\"}");
    }
}

/// Appends `value` as JSON. Writing into a `Vec` cannot fail, and nothing written here has a
/// map with non-string keys; on the impossible error the output gets `null`.
fn put_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    let start = out.len();
    if serde_json::to_writer(&mut *out, value).is_err() {
        out.truncate(start);
        out.extend_from_slice(b"null");
    }
}

/// Appends `data` in standard base64, encoded in place (SIMD where the CPU has it: this is
/// most of a `GetRecords` response's bytes).
fn put_base64(out: &mut Vec<u8>, data: &[u8]) {
    base64_simd::STANDARD.encode_append(data, out);
}

/// A `GetRecords` response before it is encoded.
struct Response<'a> {
    records: &'a [PageRecord],
    millis_behind_latest: i64,
    /// `ChildShards` (a drained closed shard) or `NextShardIterator`.
    next: Next,
}

enum Next {
    Children(Vec<Value>),
    Iterator(String),
}

impl Response<'_> {
    /// The response in the JSON value model.
    fn to_value(&self) -> Value {
        let records: Vec<Value> = self.records.iter().map(PageRecord::to_value).collect();
        let mut out = json!({
            "Records": records,
            "MillisBehindLatest": self.millis_behind_latest,
        });
        match &self.next {
            Next::Children(c) => out["ChildShards"] = Value::Array(c.clone()),
            Next::Iterator(it) => out["NextShardIterator"] = json!(it),
        }
        out
    }
}

/// Writes a `GetRecords` response as JSON 1.1: the bytes serialising
/// [`Response::to_value`] gives, without building it.
fn write_response_json(r: &Response<'_>) -> Vec<u8> {
    let data: usize = r
        .records
        .iter()
        .map(|x| x.data.as_ref().map_or(0, Bytes::len) + x.key.as_ref().map_or(0, Bytes::len))
        .sum();
    let mut out = Vec::with_capacity(data / 3 * 4 + r.records.len() * 160 + 256);
    out.push(b'{');
    if let Next::Children(c) = &r.next {
        out.extend_from_slice(b"\"ChildShards\":");
        put_json(&mut out, c);
        out.push(b',');
    }
    out.extend_from_slice(b"\"MillisBehindLatest\":");
    put_json(&mut out, &r.millis_behind_latest);
    out.push(b',');
    if let Next::Iterator(it) = &r.next {
        out.extend_from_slice(b"\"NextShardIterator\":");
        put_json(&mut out, it);
        out.push(b',');
    }
    out.extend_from_slice(b"\"Records\":[");
    for (i, record) in r.records.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        record.write_json(&mut out);
    }
    out.extend_from_slice(b"]}");
    out
}

/// One read of a shard.
pub(crate) struct Page {
    pub(crate) records: Vec<PageRecord>,
    pub(crate) next_offset: i64,
    pub(crate) high_watermark: i64,
    pub(crate) last_timestamp: Option<i64>,
    /// Data plus partition-key bytes of `records`.
    pub(crate) bytes: usize,
}

/// Runs `GetRecords`; the response is written in `encoding`.
pub(crate) async fn handle(ctx: &Context, encoding: Encoding, input: Value) -> Result<Reply> {
    let req: Request = parse(input)?;
    let limit = limit("limit", req.limit, 10_000, 10_000)?;
    let it = ctx.iterator_key.decode(&req.shard_iterator).map_err(|_| {
        KinesisError::invalid(format!(
            "Invalid ShardIterator: {}",
            req.shard_iterator.chars().take(200).collect::<String>()
        ))
    })?;
    let now = ctx.now_ms();
    let ttl = i64::try_from(ctx.config.iterator_ttl.as_millis()).unwrap_or(i64::MAX);
    if now.saturating_sub(it.issued_ms) > ttl {
        return Err(KinesisError::new(
            ErrorKind::ExpiredIterator,
            format!(
                "Iterator expired. The iterator was created at time {} while right now it is {now} which is further in the future than the tolerated delay of {ttl} milliseconds.",
                it.issued_ms
            ),
        ));
    }
    let topic = ctx.broker.topic_by_id(it.topic_id).map_err(|_| {
        KinesisError::new(
            ErrorKind::ResourceNotFound,
            "the stream of this iterator no longer exists",
        )
    })?;
    let view = stream::view(&ctx.broker, topic);
    let index = it.shard as usize;
    let partition = view
        .partition(index)
        .cloned()
        .ok_or_else(|| KinesisError::new(ErrorKind::ResourceNotFound, "shard not found"))?;
    if !ctx.limiter.admit_read_call(it.topic_id, it.shard).await {
        return Err(super::put_records::throttled(&view, index));
    }
    let closed_at = view.meta.shards.get(index).and_then(|s| s.closed_at_offset);
    let start = i64::try_from(it.offset).unwrap_or(i64::MAX);
    // Counted against the in-flight memory budget like a request body, from before the read
    // until the response is sent (cut to the body's size once it is encoded).
    let reservation = ctx.reserve(response_bound(limit)).await?;
    let page = ctx
        .blocking(move |_| read_page(&partition, start, limit, closed_at))
        .await?;
    ctx.limiter
        .charge_read_bytes(it.topic_id, it.shard, page.bytes)
        .await;

    let millis_behind_latest = if page.next_offset >= page.high_watermark {
        0
    } else {
        page.last_timestamp
            .map_or(0, |ts| now.saturating_sub(ts).max(0))
    };
    let drained_closed = closed_at.is_some_and(|end| page.next_offset >= end);
    let next = if drained_closed {
        Next::Children(child_shards(&view, index))
    } else {
        let next = ShardIterator {
            offset: page.next_offset.max(0) as u64,
            issued_ms: now,
            ..it
        };
        Next::Iterator(ctx.iterator_key.encode(&next))
    };
    let response = Response {
        records: &page.records,
        millis_behind_latest,
        next,
    };
    let reply = match encoding {
        Encoding::Json => Reply::Encoded(write_response_json(&response)),
        Encoding::Cbor => Reply::Value(response.to_value()),
    };
    Ok(Reply::Reserved(Box::new(reply), reservation))
}

/// The most memory one `GetRecords` of at most `limit` records holds: the read buffer (at most
/// [`MAX_BYTES`] of records, plus a batch), and the response (base64 grows the data by a third;
/// a record's sequence number, timestamp and JSON framing take under 160 bytes).
pub(crate) const fn response_bound(limit: usize) -> usize {
    MAX_BYTES
        .saturating_add(MAX_BYTES / 3 * 4)
        .saturating_add(limit.saturating_mul(160))
        .saturating_add(64 * 1024)
}

/// [`response_bound`] of the largest `Limit` (10,000 records): about 25 MiB.
pub(crate) const MAX_RESPONSE_BOUND: usize = response_bound(10_000);

/// The `ChildShards` of shard `index`: shards that name it as a parent.
pub(crate) fn child_shards(view: &stream::StreamView, index: usize) -> Vec<Value> {
    view.meta
        .shards
        .iter()
        .enumerate()
        .filter(|(_, s)| s.parent == Some(index as i32) || s.adjacent_parent == Some(index as i32))
        .map(|(i, s)| {
            let mut parents = vec![];
            if let Some(p) = s.parent {
                parents.push(shard_id(p.max(0) as usize));
            }
            if let Some(p) = s.adjacent_parent {
                parents.push(shard_id(p.max(0) as usize));
            }
            json!({
                "ShardId": shard_id(i),
                "ParentShards": parents,
                "HashKeyRange": {
                    "StartingHashKey": s.starting_hash_key.to_string(),
                    "EndingHashKey": s.ending_hash_key.to_string(),
                },
            })
        })
        .collect()
}

/// Reads up to `limit` records from `start`, never past `closed_at`, and only committed data:
/// below the last stable offset, without the records of aborted transactions (Kinesis readers
/// are `read_committed`). `Page::high_watermark` is the last stable offset. BLOCKING.
pub(crate) fn read_page(
    partition: &strom_broker::Partition,
    start: i64,
    limit: usize,
    closed_at: Option<i64>,
) -> Result<Page> {
    let shard = partition.index().max(0) as usize;
    let mut offset = start;
    let mut records = Vec::new();
    let mut bytes = 0usize;
    let mut high_watermark;
    let mut last_timestamp = None;
    loop {
        let outcome = match partition
            .read_committed_blocking(offset, MAX_BYTES.saturating_sub(bytes).max(1))
        {
            Ok(o) => o,
            Err(strom_broker::Error::Storage(strom_broker::StorageError::OffsetOutOfRange {
                ..
            })) => {
                // Below the log start (retention removed it) or past the end: move to the
                // start or stay at the end, as Kinesis does for trimmed data.
                let log_start = partition.log_start_offset();
                let hw = partition.high_watermark();
                let lso = partition.last_stable_offset().min(hw);
                if offset < log_start {
                    offset = log_start;
                    continue;
                }
                high_watermark = lso;
                offset = offset.min(hw);
                break;
            }
            Err(e) => return Err(e.into()),
        };
        high_watermark = outcome.last_stable_offset;
        if offset < outcome.log_start_offset {
            offset = outcome.log_start_offset;
        }
        if outcome.records.is_empty() {
            break;
        }
        let before = records.len();
        let data = outcome.records;
        let mut next = offset;
        let mut full = false;
        let mut aborted = strom_broker::storage::AbortedFilter::new(outcome.aborted_transactions);
        for batch in strom_record::stored_batches(&data) {
            let (header, range) =
                batch.map_err(|e| KinesisError::new(ErrorKind::InternalFailure, e.to_string()))?;
            let slice: Bytes = data.slice(range);
            let abort_marker = header.is_control()
                && strom_record::parse_marker(&slice)
                    .is_ok_and(|m| m.control_type == strom_record::ControlType::Abort);
            if aborted.skip(&header, abort_marker) {
                next = next.max(header.next_offset());
                continue;
            }
            let decoded = strom_record::decode_records(
                &slice,
                DecodeLimits {
                    max_batch_bytes: usize::MAX,
                    ..DecodeLimits::default()
                },
            )
            .map_err(|e| KinesisError::new(ErrorKind::InternalFailure, e.to_string()))?;
            for r in decoded.records {
                if r.offset < offset || closed_at.is_some_and(|end| r.offset >= end) {
                    continue;
                }
                let size =
                    r.value.as_ref().map_or(0, Bytes::len) + r.key.as_ref().map_or(0, Bytes::len);
                if records.len() >= limit || (bytes + size > MAX_BYTES && !records.is_empty()) {
                    full = true;
                    break;
                }
                bytes += size;
                records.push(PageRecord {
                    shard,
                    offset: r.offset,
                    timestamp: r.timestamp,
                    key: r.key,
                    data: r.value,
                });
                last_timestamp = Some(r.timestamp);
                next = r.offset + 1;
            }
            if full {
                break;
            }
            next = next.max(header.next_offset());
        }
        if let Some(end) = closed_at {
            next = next.min(end.max(offset));
        }
        let progressed = next > offset || records.len() > before;
        offset = next;
        if !progressed
            || full
            || records.len() >= limit
            || bytes >= MAX_BYTES
            || offset >= high_watermark
        {
            break;
        }
        if closed_at.is_some_and(|end| offset >= end) {
            break;
        }
    }
    Ok(Page {
        records,
        next_offset: offset,
        high_watermark,
        last_timestamp,
        bytes,
    })
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;

    use super::*;

    fn record(offset: i64, key: Option<&[u8]>, data: Option<&[u8]>) -> PageRecord {
        PageRecord {
            shard: 3,
            offset,
            timestamp: 1_764_690_000_123 + offset % 1000,
            key: key.map(Bytes::copy_from_slice),
            data: data.map(Bytes::copy_from_slice),
        }
    }

    fn records() -> Vec<PageRecord> {
        vec![
            record(0, Some(b"k"), Some(b"hello")),
            record(1, None, None),
            record(
                2,
                Some(b"quote\" back\\ nl\n \x01 \xe2\x82\xac"),
                Some(&[0xff; 1000]),
            ),
            record(3, Some(&[0xff, 0xfe]), Some(b"")),
            record(i64::MAX, Some(b"-"), Some(b"x")),
        ]
    }

    #[test]
    fn json_response_is_the_value_model_serialised() {
        let recs = records();
        for next in [
            Next::Iterator("AAAA-_b".to_owned()),
            Next::Children(vec![
                json!({"ShardId": "shardId-000000000004", "ParentShards": ["shardId-000000000003"]}),
            ]),
        ] {
            for records in [&recs[..], &recs[..0]] {
                let r = Response {
                    records,
                    millis_behind_latest: 42,
                    next: match &next {
                        Next::Iterator(s) => Next::Iterator(s.clone()),
                        Next::Children(c) => Next::Children(c.clone()),
                    },
                };
                let expected = serde_json::to_vec(&r.to_value()).unwrap();
                let written = write_response_json(&r);
                assert_eq!(
                    String::from_utf8_lossy(&written),
                    String::from_utf8_lossy(&expected)
                );
            }
        }
    }

    proptest::proptest! {
        /// Lengths past the SIMD block sizes, so the vector paths and their tails are covered.
        #[test]
        fn base64_in_place_matches_the_engine(
            data in proptest::collection::vec(proptest::num::u8::ANY, 0..5000),
        ) {
            let mut out = b"prefix".to_vec();
            put_base64(&mut out, &data);
            let expected = base64::engine::general_purpose::STANDARD.encode(&data);
            proptest::prop_assert_eq!(&out[6..], expected.as_bytes());
        }
    }
}
