//! `PutRecords` (and the shared append path of `PutRecord`): route each record to a shard by
//! hash key, build one Kafka v2 batch per shard (key = partition key, value = data, timestamp
//! = arrival ms), append, and turn offsets into sequence numbers.

use std::borrow::Cow;
use std::sync::Arc;

use base64::Engine as _;
use base64_simd::AsOut as _;
use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use serde_json::{Value, json};
use strom_broker::{AppendInfo, Partition};
use strom_record::{BatchBuilder, Record};

use super::StreamRef;
use crate::error::{ErrorKind, KinesisError, Result};
use crate::sequence::SequenceNumber;
use crate::service::{Context, Reply, parse};
use crate::stream::{StreamView, hash_key, parse_hash_key, shard_id};
use crate::wire::Encoding;

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

/// A record as the client sent it, however it was decoded.
pub(crate) trait Incoming {
    /// `PartitionKey`.
    fn partition_key(&self) -> &str;
    /// `Data`, base64.
    fn data(&self) -> &str;
    /// `ExplicitHashKey`, if given.
    fn explicit_hash_key(&self) -> Option<&str>;
}

impl Incoming for Entry {
    fn partition_key(&self) -> &str {
        &self.partition_key
    }
    fn data(&self) -> &str {
        &self.data
    }
    fn explicit_hash_key(&self) -> Option<&str> {
        self.explicit_hash_key.as_deref()
    }
}

/// One record of a JSON body, borrowing its strings from the body where they hold no
/// escapes (base64 never does).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct BorrowedEntry<'a> {
    #[serde(borrow)]
    data: Cow<'a, str>,
    #[serde(borrow)]
    partition_key: Cow<'a, str>,
    #[serde(default)]
    explicit_hash_key: Option<String>,
}

impl Incoming for BorrowedEntry<'_> {
    fn partition_key(&self) -> &str {
        &self.partition_key
    }
    fn data(&self) -> &str {
        &self.data
    }
    fn explicit_hash_key(&self) -> Option<&str> {
        self.explicit_hash_key.as_deref()
    }
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

/// Decodes base64 `data` into the free part of `buf` and splits it off (so the records of one
/// request share one allocation). SIMD where the CPU has it; canonical standard base64 only,
/// as before: padding required, no whitespace, no stray bits in the last symbol.
fn decode_data(data: &str, buf: &mut BytesMut) -> Result<Bytes> {
    let engine = &base64_simd::STANDARD;
    let start = buf.len();
    buf.resize(start + engine.estimated_decoded_length(data.len()), 0);
    let decoded = buf
        .get_mut(start..)
        .and_then(|out| engine.decode(data.as_bytes(), out.as_out()).ok())
        .map(|d| d.len());
    match decoded {
        Some(n) => {
            buf.truncate(start + n);
            Ok(buf.split().freeze())
        }
        None => {
            buf.truncate(start);
            // The slow engine only to say what is wrong, in its words.
            let why = base64::engine::general_purpose::STANDARD
                .decode(data)
                .err()
                .map_or_else(|| "not canonical".to_owned(), |e| e.to_string());
            Err(KinesisError::new(
                ErrorKind::Serialization,
                format!("Data is not base64: {why}"),
            ))
        }
    }
}

/// Validates an entry and picks its shard; its data is decoded into `buf`.
pub(crate) fn route(
    view: &StreamView,
    entry: &impl Incoming,
    buf: &mut BytesMut,
) -> Result<Routed> {
    let partition_key = entry.partition_key();
    let chars = partition_key.chars().count();
    if chars == 0 || chars > MAX_PARTITION_KEY_CHARS {
        return Err(KinesisError::validation(format!(
            "1 validation error detected: Value at 'partitionKey' failed to satisfy constraint: \
             Member must have length between 1 and {MAX_PARTITION_KEY_CHARS}, found {chars}"
        )));
    }
    let data = decode_data(entry.data(), buf)?;
    if data.len() > MAX_RECORD_BYTES {
        return Err(KinesisError::validation(format!(
            "1 validation error detected: Value at 'data' failed to satisfy constraint: \
             Member must have length less than or equal to {MAX_RECORD_BYTES}, found {}",
            data.len()
        )));
    }
    if data.len() + partition_key.len() > MAX_RECORD_BYTES {
        return Err(KinesisError::invalid(format!(
            "Record size (data plus partition key) {} exceeds the limit of {MAX_RECORD_BYTES} bytes",
            data.len() + partition_key.len()
        )));
    }
    let hash = match entry.explicit_hash_key() {
        Some(h) => parse_hash_key(h)?,
        None => hash_key(partition_key),
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
        key: Bytes::copy_from_slice(partition_key.as_bytes()),
        data,
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
    let mut results: Vec<Option<Result<(usize, u64)>>> = (0..records.len()).map(|_| None).collect();
    let mut records: Vec<Option<Routed>> = records.into_iter().map(Some).collect();
    let mut writes = Vec::new();
    for (shard, indexes) in by_shard {
        let Some(partition) = view.partition(shard).cloned() else {
            continue;
        };
        let mut payload = Vec::new();
        let mut chunk: Vec<Record> = Vec::with_capacity(indexes.len());
        let mut chunk_bytes = 0usize;
        let mut build_error = None;
        for &i in &indexes {
            let Some(r) = records.get_mut(i).and_then(Option::take) else {
                continue;
            };
            let size = r.key.len() + r.data.len() + 32;
            if !chunk.is_empty() && chunk_bytes + size > max_batch {
                if let Err(e) = flush(&mut chunk, &mut payload) {
                    build_error = Some(e);
                }
                chunk_bytes = 0;
            }
            chunk_bytes += size;
            chunk.push(Record::new(now, Some(r.key), Some(r.data)));
        }
        if !chunk.is_empty()
            && let Err(e) = flush(&mut chunk, &mut payload)
        {
            build_error = Some(e);
        }
        if let Some(e) = build_error {
            let err = KinesisError::new(ErrorKind::InternalFailure, e.to_string());
            for &i in &indexes {
                if let Some(slot) = results.get_mut(i) {
                    *slot = Some(Err(err.clone()));
                }
            }
            continue;
        }
        writes.push(ShardWrite {
            shard,
            indexes,
            partition,
            payload,
        });
    }
    // One task does both halves for every shard, so a request dropped between them (client
    // gone) still completes its appends: a write is always followed by its durability wait.
    let appended = tokio::spawn(append_shards(
        Arc::clone(&ctx.append_slots),
        writes,
        Arc::clone(fence),
    ))
    .await;
    let appended = match appended {
        Ok(appended) => appended,
        Err(_) => {
            let err = KinesisError::new(ErrorKind::InternalFailure, "append task failed");
            for slot in results.iter_mut().filter(|s| s.is_none()) {
                *slot = Some(Err(err.clone()));
            }
            Vec::new()
        }
    };
    for (shard, indexes, outcome) in appended {
        let outcome = outcome
            .map(|info| info.base_offset)
            .map_err(KinesisError::from);
        for (j, &i) in indexes.iter().enumerate() {
            if let Some(slot) = results.get_mut(i) {
                *slot = Some(match &outcome {
                    Ok(base) => Ok((shard, (*base as u64).saturating_add(j as u64))),
                    Err(e) => Err(e.clone()),
                });
            }
        }
    }
    results
        .into_iter()
        .map(|r| {
            r.unwrap_or_else(|| {
                Err(KinesisError::new(
                    ErrorKind::InternalFailure,
                    "not appended",
                ))
            })
        })
        .collect()
}

/// One shard's part of a PutRecords: its batches and the request indexes of its records.
struct ShardWrite {
    shard: usize,
    indexes: Vec<usize>,
    partition: Arc<Partition>,
    payload: Vec<u8>,
}

/// Appends every shard's batches so that one commit window covers them: first every shard's
/// write ([`Partition::append_deferred_blocking`], no sync), concurrently on the blocking pool;
/// only when all writes are done, every shard's wait for durability
/// ([`Partition::await_durable_blocking`]), concurrently again, so under `strom.fsync=always`
/// the shards' segment files are in the same window and are `fdatasync`ed together by their
/// waiters. (Writing and waiting shard by shard would let the first shard start a window of its
/// own while the others still write.) Each half holds one of `slots` only while it runs, so a
/// request with more shards than slots cannot wait on itself. Returns, per shard, its
/// `(shard, indexes, outcome)`; `fence` is held until the last append is durable.
async fn append_shards(
    slots: Arc<tokio::sync::Semaphore>,
    writes: Vec<ShardWrite>,
    fence: Arc<PutFence>,
) -> Vec<(usize, Vec<usize>, strom_broker::Result<AppendInfo>)> {
    let mut written = Vec::with_capacity(writes.len());
    for w in writes {
        let slots = Arc::clone(&slots);
        let ShardWrite {
            shard,
            indexes,
            partition,
            mut payload,
        } = w;
        written.push(tokio::spawn(async move {
            let _slot = slots.acquire_owned().await;
            let p = Arc::clone(&partition);
            let pending =
                tokio::task::spawn_blocking(move || p.append_deferred_blocking(&mut payload))
                    .await
                    .map_err(|_| strom_broker::Error::ShuttingDown)
                    .and_then(|r| r);
            (shard, indexes, partition, pending)
        }));
    }
    // Every write first: a wait started before the last write would start a window without it.
    let mut done = Vec::with_capacity(written.len());
    for task in written {
        // A write task that panicked: its shard is reported as not appended by the caller.
        if let Ok(d) = task.await {
            done.push(d);
        }
    }
    let mut durable = Vec::with_capacity(done.len());
    for (shard, indexes, partition, pending) in done {
        let slots = Arc::clone(&slots);
        durable.push((
            shard,
            indexes,
            tokio::spawn(async move {
                let pending = pending?;
                let _slot = slots.acquire_owned().await;
                tokio::task::spawn_blocking(move || partition.await_durable_blocking(pending))
                    .await
                    .map_err(|_| strom_broker::Error::ShuttingDown)?
            }),
        ));
    }
    let mut out = Vec::with_capacity(durable.len());
    for (shard, indexes, task) in durable {
        let outcome = task.await.unwrap_or(Err(strom_broker::Error::ShuttingDown));
        out.push((shard, indexes, outcome));
    }
    drop(fence);
    out
}

/// Encodes `chunk` as one batch onto `payload` and empties it.
fn flush(chunk: &mut Vec<Record>, payload: &mut Vec<u8>) -> strom_record::Result<()> {
    let batch = BatchBuilder::new().build(chunk);
    chunk.clear();
    let batch = batch?;
    if payload.is_empty() {
        // One batch per shard is the common case: no copy.
        *payload = batch;
    } else {
        payload.extend_from_slice(&batch);
    }
    Ok(())
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
    let topic_id = view.topic.id();
    // One admission step per shard (cluster-wide when the buckets are shared), each record
    // admitted or refused in request order within its shard.
    let mut by_shard: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    for (i, r) in records.iter().enumerate() {
        by_shard.entry(r.shard).or_default().push(i);
    }
    let mut verdicts = vec![false; records.len()];
    for (shard, indexes) in by_shard {
        let sizes: Vec<usize> = indexes
            .iter()
            .filter_map(|&i| records.get(i).map(|r| r.key.len() + r.data.len()))
            .collect();
        let shard = u32::try_from(shard).unwrap_or(u32::MAX);
        let admitted = ctx.limiter.admit_writes(topic_id, shard, &sizes).await;
        for (&i, ok) in indexes.iter().zip(admitted) {
            if let Some(v) = verdicts.get_mut(i) {
                *v = ok;
            }
        }
    }
    let mut slots: Vec<Option<Result<(usize, u64)>>> = Vec::with_capacity(records.len());
    let mut admitted = Vec::with_capacity(records.len());
    for (r, ok) in records.into_iter().zip(verdicts) {
        if ok {
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
    entries: &[impl Incoming],
) -> Result<(StreamView, Vec<Result<(usize, u64)>>)> {
    let fence = Arc::new(ctx.fence.put(view.topic.id()).await);
    let view = view.refresh(&ctx.broker)?;
    let mut routed = Vec::with_capacity(entries.len());
    let mut total = 0usize;
    let estimate: usize = entries
        .iter()
        .map(|e| base64::decoded_len_estimate(e.data().len()))
        .sum();
    let mut buf = BytesMut::with_capacity(estimate.min(MAX_REQUEST_BYTES + 4 * MAX_RECORDS));
    for entry in entries {
        let r = route(&view, entry, &mut buf)?;
        total += r.key.len() + r.data.len();
        routed.push(r);
    }
    if total > MAX_REQUEST_BYTES {
        return Err(KinesisError::invalid(format!(
            "Records size {total} exceeds the limit of {MAX_REQUEST_BYTES} bytes"
        )));
    }
    let mut results = admit_and_append(ctx, &view, routed, &fence).await;
    // Cluster mode: another broker may have closed a shard after this one routed to it (its
    // fence covers only its own puts). The shared seal refused those records, unacknowledged:
    // learn the new shard list and route them again, to the children. (On a single node the
    // fence makes this impossible.)
    let mut view = view;
    for _ in 0..SEALED_RETRIES {
        let sealed: Vec<usize> = results
            .iter()
            .enumerate()
            .filter(|(_, r)| {
                r.as_ref()
                    .is_err_and(|e| e.kind == ErrorKind::ResourceInUse)
            })
            .map(|(i, _)| i)
            .collect();
        if sealed.is_empty() {
            break;
        }
        ctx.blocking(|b| b.sync_metadata_blocking().map_err(KinesisError::from))
            .await?;
        view = view.refresh(&ctx.broker)?;
        let mut rerouted = Vec::with_capacity(sealed.len());
        for &i in &sealed {
            let Some(entry) = entries.get(i) else {
                continue;
            };
            rerouted.push(route(&view, entry, &mut buf)?);
        }
        let again = admit_and_append(ctx, &view, rerouted, &fence).await;
        for (i, outcome) in sealed.into_iter().zip(again) {
            if let Some(slot) = results.get_mut(i) {
                *slot = outcome;
            }
        }
    }
    Ok((view, results))
}

/// How many times a put routes again records refused because another broker closed their
/// shard meanwhile (each time after reading the metadata the other brokers appended).
const SEALED_RETRIES: usize = 3;

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
struct FlatRequest<'a> {
    #[serde(default)]
    stream_name: Option<String>,
    #[serde(default, rename = "StreamARN")]
    stream_arn: Option<String>,
    #[serde(borrow)]
    records: Vec<BorrowedEntry<'a>>,
}

/// `PutRecords` from a JSON 1.1 body (see [`crate::service::parse_error`] for the errors),
/// answered in JSON.
pub(crate) async fn handle_json(ctx: &Context, body: &[u8]) -> Result<Reply> {
    let flat: FlatRequest<'_> =
        serde_json::from_slice(body).map_err(crate::service::parse_error)?;
    let stream = StreamRef {
        stream_name: flat.stream_name,
        stream_arn: flat.stream_arn,
    };
    let response = run(ctx, &stream, &flat.records).await?;
    Ok(Reply::Encoded(response.to_json()))
}

/// `PutRecords` from the JSON value model (a CBOR body), answered in `encoding`.
pub(crate) async fn handle(ctx: &Context, encoding: Encoding, input: Value) -> Result<Reply> {
    let req: Request = parse(input)?;
    let response = run(ctx, &req.stream, &req.records).await?;
    Ok(match encoding {
        Encoding::Json => Reply::Encoded(response.to_json()),
        Encoding::Cbor => Reply::Value(response.to_value()),
    })
}

async fn run(ctx: &Context, stream: &StreamRef, entries: &[impl Incoming]) -> Result<Response> {
    let view = stream.resolve(ctx)?;
    let n = entries.len();
    if n == 0 || n > MAX_RECORDS {
        return Err(KinesisError::validation(format!(
            "1 validation error detected: Value at 'records' failed to satisfy constraint: \
             Member must have length between 1 and {MAX_RECORDS}, found {n}"
        )));
    }
    let (view, results) = put(ctx, &view, entries).await?;
    Ok(Response {
        results,
        encrypted: view.meta.encryption_key.is_some(),
    })
}

/// A `PutRecords` response before it is encoded.
struct Response {
    /// Per record, in request order: (shard, offset) or why it failed.
    results: Vec<Result<(usize, u64)>>,
    /// `EncryptionType` `KMS` (else `NONE`).
    encrypted: bool,
}

impl Response {
    fn encryption_type(&self) -> &'static str {
        if self.encrypted { "KMS" } else { "NONE" }
    }

    /// The response in the JSON value model.
    fn to_value(&self) -> Value {
        let failed = self.results.iter().filter(|r| r.is_err()).count();
        let records: Vec<Value> = self
            .results
            .iter()
            .map(|r| match r {
                Ok((shard, offset)) => json!({
                    "SequenceNumber": sequence_number(*shard, *offset),
                    "ShardId": shard_id(*shard),
                }),
                Err(e) => json!({
                    "ErrorCode": e.kind.name(),
                    "ErrorMessage": e.message,
                }),
            })
            .collect();
        json!({
            "FailedRecordCount": failed,
            "Records": records,
            "EncryptionType": self.encryption_type(),
        })
    }

    /// The response as JSON 1.1: the bytes serialising [`Response::to_value`] gives (members
    /// in the value model's sorted order), written without building it.
    fn to_json(&self) -> Vec<u8> {
        use std::io::Write as _;
        let failed = self.results.iter().filter(|r| r.is_err()).count();
        let mut out = Vec::with_capacity(64 + self.results.len() * 110);
        out.extend_from_slice(b"{\"EncryptionType\":\"");
        out.extend_from_slice(self.encryption_type().as_bytes());
        out.extend_from_slice(b"\",\"FailedRecordCount\":");
        // Writing into a Vec cannot fail.
        let _ = write!(out, "{failed}");
        out.extend_from_slice(b",\"Records\":[");
        for (i, r) in self.results.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            match r {
                Ok((shard, offset)) => {
                    let seq =
                        SequenceNumber::new(u32::try_from(*shard).unwrap_or(u32::MAX), *offset);
                    out.extend_from_slice(b"{\"SequenceNumber\":\"");
                    out.extend_from_slice(&seq.digits());
                    let _ = write!(out, "\",\"ShardId\":\"shardId-{shard:012}\"}}");
                }
                Err(e) => {
                    out.extend_from_slice(b"{\"ErrorCode\":\"");
                    out.extend_from_slice(e.kind.name().as_bytes());
                    out.extend_from_slice(b"\",\"ErrorMessage\":");
                    if serde_json::to_writer(&mut out, &e.message).is_err() {
                        out.extend_from_slice(b"null");
                    }
                    out.push(b'}');
                }
            }
        }
        out.extend_from_slice(b"]}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_response_is_the_value_model_serialised() {
        for encrypted in [false, true] {
            let r = Response {
                results: vec![
                    Ok((0, 0)),
                    Ok((3, u64::MAX)),
                    Err(KinesisError::new(
                        ErrorKind::ProvisionedThroughputExceeded,
                        "Rate exceeded for shard \"shardId-000000000001\" \\ \u{1}",
                    )),
                    Ok((1_000_000_000_000, 7)),
                ],
                encrypted,
            };
            assert_eq!(
                String::from_utf8(r.to_json()).unwrap(),
                serde_json::to_string(&r.to_value()).unwrap()
            );
        }
    }

    proptest::proptest! {
        /// The SIMD decoder accepts exactly what the canonical standard engine accepts, with
        /// the same bytes: random strings over the alphabet, padding and a few strays, and
        /// encodings of random data (long enough for the vector paths).
        #[test]
        fn simd_decode_agrees_with_the_engine(
            text in "[A-Za-z0-9+/=_ -]{0,80}",
            // Whole quanta, then a tail whose last symbol may carry stray bits or lack padding.
            tail in "([A-Za-z0-9+/]{4}){0,20}[A-Za-z0-9+/]{2,3}={0,2}",
            data in proptest::collection::vec(proptest::num::u8::ANY, 0..3000),
        ) {
            let engine = &base64::engine::general_purpose::STANDARD;
            let encoded = engine.encode(&data);
            for input in [text.as_str(), tail.as_str(), encoded.as_str()] {
                let mut buf = BytesMut::new();
                let ours = decode_data(input, &mut buf).map(|b| b.to_vec()).ok();
                proptest::prop_assert_eq!(ours, engine.decode(input).ok(), "input {:?}", input);
            }
        }
    }

    #[test]
    fn data_decodes_into_one_buffer() {
        let mut buf = BytesMut::new();
        let a = decode_data("aGk=", &mut buf).unwrap();
        let b = decode_data("", &mut buf).unwrap();
        let c = decode_data("aGVsbG8gd29ybGQ=", &mut buf).unwrap();
        assert_eq!(
            (&a[..], &b[..], &c[..]),
            (&b"hi"[..], &b""[..], &b"hello world"[..])
        );
        let e = decode_data("not base64!", &mut buf).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Serialization);
        assert_eq!(
            e.message,
            format!(
                "Data is not base64: {}",
                base64::engine::general_purpose::STANDARD
                    .decode("not base64!")
                    .unwrap_err()
            )
        );
    }
}
