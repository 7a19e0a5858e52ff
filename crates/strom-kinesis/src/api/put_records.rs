//! `PutRecords` (and the shared append path of `PutRecord`): route each record to a shard by
//! hash key, build one Kafka v2 batch per shard (key = partition key, value = data, timestamp
//! = arrival ms), append, and turn offsets into sequence numbers.

use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use strom_record::{BatchBuilder, Record};

use super::StreamRef;
use crate::error::{ErrorKind, KinesisError, Result};
use crate::sequence::SequenceNumber;
use crate::service::{Context, parse};
use crate::stream::{StreamView, hash_key, parse_hash_key, shard_id};

/// The most records in one `PutRecords`.
pub(crate) const MAX_RECORDS: usize = 500;
/// The largest data blob plus partition key.
pub(crate) const MAX_RECORD_BYTES: usize = 1024 * 1024;
/// The largest `PutRecords` payload (data plus keys).
pub(crate) const MAX_REQUEST_BYTES: usize = 5 * 1024 * 1024;
/// The longest partition key, in characters.
pub(crate) const MAX_PARTITION_KEY_CHARS: usize = 256;
/// Room left in a batch for its header and record framing.
const BATCH_SLACK: usize = 64 * 1024;

/// One record as the client sent it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Entry {
    pub(crate) data: String,
    pub(crate) partition_key: String,
    #[serde(default)]
    pub(crate) explicit_hash_key: Option<String>,
}

/// The read side of a stream's reshard fence, held by a put.
pub(crate) type PutFence = tokio::sync::OwnedRwLockReadGuard<()>;

/// A validated record, routed to a shard.
#[derive(Debug)]
pub(crate) struct Routed {
    shard: usize,
    key: Bytes,
    data: Bytes,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Request {
    #[serde(flatten)]
    stream: StreamRef,
    records: Vec<Entry>,
}

/// Validates an entry and picks its shard.
pub(crate) fn route(view: &StreamView, entry: Entry) -> Result<Routed> {
    let chars = entry.partition_key.chars().count();
    if chars == 0 || chars > MAX_PARTITION_KEY_CHARS {
        return Err(KinesisError::validation(format!(
            "1 validation error detected: Value at 'partitionKey' failed to satisfy constraint: \
             Member must have length between 1 and {MAX_PARTITION_KEY_CHARS}, found {chars}"
        )));
    }
    let data = base64::engine::general_purpose::STANDARD
        .decode(entry.data.as_bytes())
        .map_err(|e| {
            KinesisError::new(ErrorKind::Serialization, format!("Data is not base64: {e}"))
        })?;
    if data.len() > MAX_RECORD_BYTES {
        return Err(KinesisError::validation(format!(
            "1 validation error detected: Value at 'data' failed to satisfy constraint: \
             Member must have length less than or equal to {MAX_RECORD_BYTES}, found {}",
            data.len()
        )));
    }
    if data.len() + entry.partition_key.len() > MAX_RECORD_BYTES {
        return Err(KinesisError::invalid(format!(
            "Record size (data plus partition key) {} exceeds the limit of {MAX_RECORD_BYTES} bytes",
            data.len() + entry.partition_key.len()
        )));
    }
    let hash = match entry.explicit_hash_key.as_deref() {
        Some(h) => parse_hash_key(h)?,
        None => hash_key(&entry.partition_key),
    };
    let shard = view.shard_for_hash(hash).ok_or_else(|| {
        KinesisError::new(
            ErrorKind::ResourceNotFound,
            format!(
                "no open shard of stream {} covers hash key {hash}",
                view.name()
            ),
        )
    })?;
    Ok(Routed {
        shard,
        key: Bytes::from(entry.partition_key.into_bytes()),
        data: Bytes::from(data),
    })
}

/// Appends routed records; returns, per record in input order, its (shard, offset) or error.
/// Each append task holds a share of `fence`, so the fence outlives an append even when the
/// request is dropped while it runs.
pub(crate) async fn append(
    ctx: &Context,
    view: &StreamView,
    records: Vec<Routed>,
    fence: &Arc<PutFence>,
) -> Vec<Result<(usize, u64)>> {
    let now = ctx.now_ms();
    let max_batch = view
        .topic
        .settings()
        .max_message_bytes
        .saturating_sub(BATCH_SLACK)
        .max(1);
    let mut by_shard: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    for (i, r) in records.iter().enumerate() {
        by_shard.entry(r.shard).or_default().push(i);
    }
    let mut results: Vec<Result<(usize, u64)>> = (0..records.len())
        .map(|_| {
            Err(KinesisError::new(
                ErrorKind::InternalFailure,
                "not appended",
            ))
        })
        .collect();
    let mut tasks = Vec::new();
    for (shard, indexes) in by_shard {
        let Some(partition) = view.partition(shard).cloned() else {
            continue;
        };
        let mut payload = Vec::new();
        let mut chunk: Vec<Record> = Vec::new();
        let mut chunk_bytes = 0usize;
        let mut build_error = None;
        for &i in &indexes {
            let Some(r) = records.get(i) else { continue };
            let size = r.key.len() + r.data.len() + 32;
            if !chunk.is_empty() && chunk_bytes + size > max_batch {
                match BatchBuilder::new().build(&chunk) {
                    Ok(b) => payload.extend_from_slice(&b),
                    Err(e) => build_error = Some(e),
                }
                chunk.clear();
                chunk_bytes = 0;
            }
            chunk_bytes += size;
            chunk.push(Record::new(now, Some(r.key.clone()), Some(r.data.clone())));
        }
        if !chunk.is_empty() {
            match BatchBuilder::new().build(&chunk) {
                Ok(b) => payload.extend_from_slice(&b),
                Err(e) => build_error = Some(e),
            }
        }
        if let Some(e) = build_error {
            let err = KinesisError::new(ErrorKind::InternalFailure, e.to_string());
            for &i in &indexes {
                if let Some(slot) = results.get_mut(i) {
                    *slot = Err(err.clone());
                }
            }
            continue;
        }
        tasks.push((shard, indexes, {
            let fence = Arc::clone(fence);
            tokio::spawn(async move {
                let out = partition.append(payload).await;
                drop(fence);
                out
            })
        }));
    }
    for (shard, indexes, task) in tasks {
        let outcome = match task.await {
            Ok(Ok(info)) => Ok(info.base_offset),
            Ok(Err(e)) => Err(KinesisError::from(e)),
            Err(_) => Err(KinesisError::new(
                ErrorKind::InternalFailure,
                "append task failed",
            )),
        };
        for (j, &i) in indexes.iter().enumerate() {
            if let Some(slot) = results.get_mut(i) {
                *slot = match &outcome {
                    Ok(base) => Ok((shard, (*base as u64).saturating_add(j as u64))),
                    Err(e) => Err(e.clone()),
                };
            }
        }
    }
    results
}

/// [`append`], after AWS-limits mode has admitted or refused each record (a refused record
/// gets `ProvisionedThroughputExceededException` and is not appended).
pub(crate) async fn admit_and_append(
    ctx: &Context,
    view: &StreamView,
    records: Vec<Routed>,
    fence: &Arc<PutFence>,
) -> Vec<Result<(usize, u64)>> {
    if !ctx.limiter.enabled() {
        return append(ctx, view, records, fence).await;
    }
    let now = std::time::Instant::now();
    let topic_id = view.topic.id();
    let mut slots: Vec<Option<Result<(usize, u64)>>> = Vec::with_capacity(records.len());
    let mut admitted = Vec::with_capacity(records.len());
    for r in records {
        let shard = u32::try_from(r.shard).unwrap_or(u32::MAX);
        if ctx
            .limiter
            .admit_write(topic_id, shard, r.key.len() + r.data.len(), now)
        {
            slots.push(None);
            admitted.push(r);
        } else {
            slots.push(Some(Err(throttled(view, r.shard))));
        }
    }
    let mut appended = append(ctx, view, admitted, fence).await.into_iter();
    slots
        .into_iter()
        .map(|slot| {
            slot.unwrap_or_else(|| {
                appended.next().unwrap_or_else(|| {
                    Err(KinesisError::new(ErrorKind::InternalFailure, "no result"))
                })
            })
        })
        .collect()
}

/// Routes and appends `entries` under the stream's put fence (so a concurrent reshard cannot
/// close a shard between routing and append, see [`crate::fence`]). Routing uses the stream as
/// it is once the fence is held; that view is returned with the per-record results. Fails whole
/// on an invalid entry or when the records exceed [`MAX_REQUEST_BYTES`].
pub(crate) async fn put(
    ctx: &Context,
    view: &StreamView,
    entries: Vec<Entry>,
) -> Result<(StreamView, Vec<Result<(usize, u64)>>)> {
    let fence = Arc::new(ctx.fence.put(view.topic.id()).await);
    let view = view.refresh(&ctx.broker)?;
    let mut routed = Vec::with_capacity(entries.len());
    let mut total = 0usize;
    for entry in entries {
        let r = route(&view, entry)?;
        total += r.key.len() + r.data.len();
        routed.push(r);
    }
    if total > MAX_REQUEST_BYTES {
        return Err(KinesisError::invalid(format!(
            "Records size {total} exceeds the limit of {MAX_REQUEST_BYTES} bytes"
        )));
    }
    let results = admit_and_append(ctx, &view, routed, &fence).await;
    Ok((view, results))
}

/// `ProvisionedThroughputExceededException` for a shard of `view`.
pub(crate) fn throttled(view: &StreamView, shard: usize) -> KinesisError {
    KinesisError::new(
        ErrorKind::ProvisionedThroughputExceeded,
        crate::limits::rate_exceeded_message(&shard_id(shard), view.name()),
    )
}

/// The `SequenceNumber` string of (shard, offset).
pub(crate) fn sequence_number(shard: usize, offset: u64) -> String {
    SequenceNumber::new(u32::try_from(shard).unwrap_or(u32::MAX), offset).to_string()
}

/// The `PutRecords` request without `#[serde(flatten)]` (which would buffer every record into
/// serde's generic content first), for decoding a JSON body directly.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct FlatRequest {
    #[serde(default)]
    stream_name: Option<String>,
    #[serde(default, rename = "StreamARN")]
    stream_arn: Option<String>,
    records: Vec<Entry>,
}

/// `PutRecords` from a JSON 1.1 body (see [`crate::service::parse_error`] for the errors).
pub(crate) async fn handle_json(ctx: &Context, body: &[u8]) -> Result<Value> {
    let flat: FlatRequest = serde_json::from_slice(body).map_err(crate::service::parse_error)?;
    let req = Request {
        stream: StreamRef {
            stream_name: flat.stream_name,
            stream_arn: flat.stream_arn,
        },
        records: flat.records,
    };
    run(ctx, req).await
}

pub(crate) async fn handle(ctx: &Context, input: Value) -> Result<Value> {
    run(ctx, parse(input)?).await
}

async fn run(ctx: &Context, req: Request) -> Result<Value> {
    let view = req.stream.resolve(ctx)?;
    let n = req.records.len();
    if n == 0 || n > MAX_RECORDS {
        return Err(KinesisError::validation(format!(
            "1 validation error detected: Value at 'records' failed to satisfy constraint: \
             Member must have length between 1 and {MAX_RECORDS}, found {n}"
        )));
    }
    let (view, results) = put(ctx, &view, req.records).await?;
    let failed = results.iter().filter(|r| r.is_err()).count();
    let records: Vec<Value> = results
        .into_iter()
        .map(|r| match r {
            Ok((shard, offset)) => json!({
                "SequenceNumber": sequence_number(shard, offset),
                "ShardId": shard_id(shard),
            }),
            Err(e) => json!({
                "ErrorCode": e.kind.name(),
                "ErrorMessage": e.message,
            }),
        })
        .collect();
    let encryption = if view.meta.encryption_key.is_some() {
        "KMS"
    } else {
        "NONE"
    };
    Ok(json!({
        "FailedRecordCount": failed,
        "Records": records,
        "EncryptionType": encryption,
    }))
}
