//! `GetRecords`: decode stored batches from the iterator's offset into Kinesis records.

use base64::Engine as _;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use strom_record::{DecodeLimits, ValidationLimits};

use super::{limit, seconds};
use crate::error::{ErrorKind, KinesisError, Result};
use crate::iterator::ShardIterator;
use crate::service::{Context, parse};
use crate::stream::{self, shard_id};

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

/// One read of a shard.
pub(crate) struct Page {
    pub(crate) records: Vec<Value>,
    pub(crate) next_offset: i64,
    pub(crate) high_watermark: i64,
    pub(crate) last_timestamp: Option<i64>,
    /// Data plus partition-key bytes of `records`.
    pub(crate) bytes: usize,
}

pub(crate) async fn handle(ctx: &Context, input: Value) -> Result<Value> {
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
    if !ctx
        .limiter
        .admit_read(it.topic_id, it.shard, std::time::Instant::now())
    {
        return Err(super::put_records::throttled(&view, index));
    }
    let closed_at = view.meta.shards.get(index).and_then(|s| s.closed_at_offset);
    let start = i64::try_from(it.offset).unwrap_or(i64::MAX);
    let page = ctx
        .blocking(move |_| read_page(&partition, start, limit, closed_at))
        .await?;
    ctx.limiter
        .charge_read(it.topic_id, it.shard, page.bytes, std::time::Instant::now());

    let mut out = json!({
        "Records": page.records,
        "MillisBehindLatest": if page.next_offset >= page.high_watermark {
            0
        } else {
            page.last_timestamp.map_or(0, |ts| now.saturating_sub(ts).max(0))
        },
    });
    let drained_closed = closed_at.is_some_and(|end| page.next_offset >= end);
    if drained_closed {
        let children = child_shards(&view, index);
        out["ChildShards"] = Value::Array(children);
    } else {
        let next = ShardIterator {
            offset: page.next_offset.max(0) as u64,
            issued_ms: now,
            ..it
        };
        out["NextShardIterator"] = json!(ctx.iterator_key.encode(&next));
    }
    Ok(out)
}

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
            Err(strom_broker::Error::Log(strom_log::Error::OffsetOutOfRange { .. })) => {
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
        let limits = ValidationLimits {
            max_batch_bytes: usize::MAX,
        };
        let mut next = offset;
        let mut full = false;
        let mut aborted = strom_log::AbortedFilter::new(outcome.aborted_transactions);
        for batch in strom_record::batches(&data, limits) {
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
                let key = match &r.key {
                    Some(k) => String::from_utf8_lossy(k).into_owned(),
                    None => NULL_KEY_PLACEHOLDER.to_owned(),
                };
                let data = r.value.as_deref().unwrap_or_default();
                records.push(json!({
                    "SequenceNumber": super::put_records::sequence_number(
                        partition.index().max(0) as usize,
                        r.offset.max(0) as u64,
                    ),
                    "ApproximateArrivalTimestamp": seconds(r.timestamp),
                    "Data": base64::engine::general_purpose::STANDARD.encode(data),
                    "PartitionKey": key,
                }));
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
