//! Produce (key 0): append record batches to partitions.
//!
//! Partitions of one request are appended concurrently, each on a blocking thread, in two
//! halves: the write ([`Partition::append_deferred_blocking`], no sync), then the wait for
//! durability ([`Partition::await_durable_blocking`]). A partition's thread starts its wait only
//! once every partition of the request is written (a [`WriteLatch`]), so under
//! `strom.fsync=always` the first waiter starts a commit window that holds every partition of
//! the request; a partition that waited straight after its own write could start a window alone
//! and leave the others to the next one. Requests of one connection are written in order, so
//! batches a client sends in order are appended in order. With acks, the
//! handler returns as soon as every partition's write is done, with the response deferred
//! until they are durable ([`Outcome::Deferred`]): the connection reads and writes the next
//! Produce while this one syncs, and answers in order. `acks=0` gets no response; if such
//! a request fails, the connection is closed so the client notices (as Kafka does).
//!
//! A topic that does not exist is `UNKNOWN_TOPIC_OR_PARTITION` per partition: only Metadata
//! creates topics automatically, as in Kafka. A partition that is a Kinesis shard closed by
//! SplitShard/MergeShards/UpdateShardCount is read-only: the partition itself is sealed, so its
//! append refuses data (`POLICY_VIOLATION`) from the moment the reshard fixed the shard's end.
//!
//! At most [`crate::APPEND_SLOTS`] partition appends run on the blocking pool at once, across
//! all connections. A request takes the slots of its partitions at once (at most
//! `APPEND_SLOTS` at a time: a larger request is appended in groups, each with its own latch),
//! so no request holds some slots while waiting for more, and a latch never waits for a
//! partition that has no thread.
//!
//! A transactional batch (from a request with a transactional id) is checked against the
//! transaction coordinator first: the producer must own the id at this epoch and have added
//! the partition to its open transaction (as Kafka verifies since KIP-890), else
//! INVALID_TXN_STATE / PRODUCER_FENCED.

use std::ops::Range;
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::StrBytes;
use strom_broker::txn::TxnError;
use strom_broker::{AppendInfo, Error, Partition, RecordRejection, Topic, validate_topic_name};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{Deferred, HandlerError, Outcome, decode};
use crate::error_code::error_code;
use crate::frame::{self, Request};
use crate::{Context, authz};
use strom_broker::acl::{AclOperation, ResourceType};

enum Pending {
    Done(PartitionProduceResponse),
    /// Index, partition and payload of an append not started yet, the payload still a slice
    /// of the request frame (shared, read-only).
    Staged(i32, Arc<Partition>, Bytes),
    /// Index, partition and payload of an append not started yet, the payload writable in
    /// place (the append patches base offsets and leader epochs into it).
    Ready(i32, Arc<Partition>, BytesMut),
    /// Index, "written" signal (sent, or dropped, once the write half is over), and the task
    /// that then waits for durability.
    Appending(
        i32,
        oneshot::Receiver<()>,
        JoinHandle<strom_broker::Result<AppendInfo>>,
    ),
}

fn failed(
    index: i32,
    code: i16,
    message: Option<String>,
    version: i16,
) -> PartitionProduceResponse {
    let mut r = PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(code)
        .with_base_offset(-1);
    if version >= 8 {
        r.error_message = message.map(StrBytes::from_string);
    }
    r
}

async fn resolve_topic(
    context: &Context,
    version: i16,
    name: &str,
    id: uuid::Uuid,
) -> Result<Arc<Topic>, Error> {
    if version >= 13 {
        return context.broker.topic_by_id(id);
    }
    validate_topic_name(name)?;
    // Kafka creates topics automatically only through Metadata, never through Produce.
    context.broker.topic(name)
}

/// Handles Produce.
///
/// Takes the request's body out of `request` (and makes its client id an owned copy), so
/// that the record sets, once decoded, are the only references left to the frame and can be
/// written from it in place instead of copied ([`writable_payloads`]).
pub async fn handle(context: &Context, request: &mut Request) -> Result<Outcome, HandlerError> {
    let version = request.version();
    // `producer_byte_rate` counts the request's bytes (Kafka: its size in bytes).
    let throttle_ms = context.quotas.record(
        context.broker.quotas(),
        request,
        crate::quota::QuotaType::Produce,
        request.body.len() as f64,
    );
    // Every field not named here (tagged fields) is dropped at the end of this statement.
    let ProduceRequest {
        acks,
        transactional_id,
        topic_data,
        ..
    } = decode(request)?;
    let txn_id = transactional_id.map(|id| id.to_string());
    // With an authorizer: a transactional produce needs WRITE on its transactional id (else
    // every partition fails with TRANSACTIONAL_ID_AUTHORIZATION_FAILED), every topic WRITE
    // (TOPIC_AUTHORIZATION_FAILED, checked before the topic's existence when named).
    let txn_denied = txn_id.as_deref().and_then(|id| {
        authz::check(
            context,
            request,
            AclOperation::Write,
            ResourceType::TransactionalId,
            id,
        )
        .err()
    });
    let mut topics = Vec::with_capacity(topic_data.len());
    for topic_data in topic_data {
        let name = topic_data.name.0.to_string();
        let resolved = match &txn_denied {
            Some(e) => Err(e.clone()),
            None if version < 13 => {
                match authz::check(
                    context,
                    request,
                    AclOperation::Write,
                    ResourceType::Topic,
                    &name,
                ) {
                    Ok(()) => resolve_topic(context, version, &name, topic_data.topic_id).await,
                    Err(e) => Err(e),
                }
            }
            None => resolve_topic(context, version, &name, topic_data.topic_id)
                .await
                .and_then(|t| {
                    authz::check(
                        context,
                        request,
                        AclOperation::Write,
                        ResourceType::Topic,
                        t.name(),
                    )?;
                    Ok(t)
                }),
        };
        let mut parts = Vec::with_capacity(topic_data.partition_data.len());
        for pd in topic_data.partition_data {
            let index = pd.index;
            let pending = match (&resolved, acks) {
                (_, a) if !(-1..=1).contains(&a) => Pending::Done(failed(
                    index,
                    ResponseError::InvalidRequiredAcks.code(),
                    Some(format!("acks must be -1, 0 or 1, not {a}")),
                    version,
                )),
                (Err(e), _) => {
                    Pending::Done(failed(index, error_code(e), Some(e.to_string()), version))
                }
                (Ok(topic), _) => {
                    let checked = match &txn_id {
                        Some(id) => check_transactional(context, id, topic, index, &pd.records),
                        None => Ok(()),
                    };
                    let prepared = match checked {
                        Ok(()) => prepare_append(context, topic, index, acks, pd.records),
                        Err(e) => Err(e),
                    };
                    match prepared {
                        Ok((partition, data)) => Pending::Staged(index, partition, data),
                        // A fenced epoch on produce is INVALID_PRODUCER_EPOCH (KIP-588), so the
                        // client can abort instead of failing fatally.
                        Err(e @ Error::Txn(TxnError::ProducerFenced)) => Pending::Done(failed(
                            index,
                            ResponseError::InvalidProducerEpoch.code(),
                            Some(e.to_string()),
                            version,
                        )),
                        Err(e) => Pending::Done(failed(
                            index,
                            error_code(&e),
                            Some(e.to_string()),
                            version,
                        )),
                    }
                }
            };
            parts.push(pending);
        }
        topics.push((name, topic_data.topic_id, parts));
    }

    writable_payloads(request, &mut topics);
    start_appends(context, version, &mut topics).await;
    // Every write of this request is done (in request order) before the handler returns; the
    // acknowledgement waits for durability in the returned future.
    for (_, _, parts) in &mut topics {
        for pending in parts.iter_mut() {
            if let Pending::Appending(_, written, _) = pending {
                let _ = written.await;
            }
        }
    }
    let correlation_id = request.correlation_id();
    let answer = async move {
        let mut any_error = false;
        let mut responses = Vec::with_capacity(topics.len());
        for (name, id, parts) in topics {
            let mut partition_responses = Vec::with_capacity(parts.len());
            for pending in parts {
                let r = match pending {
                    Pending::Done(r) => r,
                    // Every append was started before the handler returned.
                    Pending::Staged(index, ..) | Pending::Ready(index, ..) => failed(
                        index,
                        ResponseError::UnknownServerError.code(),
                        None,
                        version,
                    ),
                    Pending::Appending(index, _, handle) => match handle.await {
                        Ok(Ok(info)) => {
                            let mut r = PartitionProduceResponse::default()
                                .with_index(index)
                                .with_base_offset(info.base_offset)
                                .with_log_append_time_ms(info.log_append_time);
                            if version >= 5 {
                                r.log_start_offset = info.log_start_offset;
                            }
                            r
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(topic = %name, partition = index, error = %e, "produce failed");
                            let mut r = failed(index, error_code(&e), Some(e.to_string()), version);
                            if version >= 8 {
                                r.record_errors = record_errors(&e);
                            }
                            r
                        }
                        Err(_) => failed(
                            index,
                            ResponseError::UnknownServerError.code(),
                            None,
                            version,
                        ),
                    },
                };
                any_error |= r.error_code != 0;
                partition_responses.push(r);
            }
            responses.push(
                TopicProduceResponse::default()
                    .with_name(kafka_protocol::messages::TopicName(StrBytes::from_string(
                        name,
                    )))
                    .with_topic_id(id)
                    .with_partition_responses(partition_responses),
            );
        }
        if acks == 0 {
            if any_error {
                tracing::debug!("acks=0 produce failed, closing the connection to tell the client");
                return Ok(Outcome::Close);
            }
            return Ok(Outcome::NoResponse);
        }
        Ok(Outcome::Respond(frame::encode_response(
            correlation_id,
            version,
            &ProduceResponse::default()
                .with_responses(responses)
                .with_throttle_time_ms(i32::try_from(throttle_ms).unwrap_or(i32::MAX)),
        )?))
    };
    if acks == 0 {
        return answer.await;
    }
    Ok(Outcome::Deferred(Deferred::new(async move {
        match answer.await {
            Ok(outcome) => outcome,
            Err(e) => {
                tracing::warn!(correlation_id, error = %e, "closing connection");
                Outcome::Close
            }
        }
    })))
}

/// Kafka's per-record errors (`record_errors`, Produce v8+) for a refused payload: the index
/// of each refused record with the reason, as Kafka words it for a keyless record.
fn record_errors(error: &Error) -> Vec<BatchIndexAndErrorMessage> {
    let Error::InvalidRecords {
        topic,
        partition,
        indexes,
        reason,
    } = error
    else {
        return Vec::new();
    };
    let message = match reason {
        RecordRejection::MissingKeyOnCompactedTopic => format!(
            "Compacted topic cannot accept message without key in topic partition {topic}-{partition}."
        ),
        _ => reason.to_string(),
    };
    indexes
        .iter()
        .map(|&i| {
            BatchIndexAndErrorMessage::default()
                .with_batch_index(i)
                .with_batch_index_error_message(Some(StrBytes::from_string(message.clone())))
        })
        .collect()
}

/// Checks a transactional produce against the coordinator (non-transactional batches of a
/// transactional producer pass).
fn check_transactional(
    context: &Context,
    transactional_id: &str,
    topic: &Topic,
    partition: i32,
    records: &Option<Bytes>,
) -> Result<(), Error> {
    let Some(header) = records
        .as_deref()
        .and_then(|r| strom_record::BatchHeader::parse(r).ok())
    else {
        return Ok(());
    };
    if !header.is_transactional() {
        return Ok(());
    }
    context.broker.check_transactional_produce(
        transactional_id,
        header.producer_id,
        header.producer_epoch,
        topic.name(),
        partition,
    )
}

/// Checks that one partition can be appended to and takes its payload (still a slice of the
/// request frame).
fn prepare_append(
    context: &Context,
    topic: &Topic,
    index: i32,
    acks: i16,
    records: Option<Bytes>,
) -> Result<(Arc<Partition>, Bytes), Error> {
    let partition: Arc<Partition> = Arc::clone(topic.partition(index)?);
    let min_isr = topic.settings().min_insync_replicas;
    if acks == -1 && min_isr > 1 {
        return Err(Error::NotEnoughReplicas {
            required: min_isr,
            available: 1,
        });
    }
    let data = records.unwrap_or_default();
    context.metrics.produced(data.len());
    Ok((partition, data))
}

/// Turns every staged payload of the request into a writable one ([`Pending::Ready`]). The
/// request's body is taken out of `request` and its client id made an owned copy first, so
/// that, once the decoded request is gone, the staged record sets are the only references to
/// the frame: the frame then becomes writable without a copy and each partition's payload is
/// split out of it in place ([`split_writable`]). The append patches offsets into the bytes
/// it writes, so without this every byte produced was copied once more before its `pwrite`.
fn writable_payloads(request: &mut Request, topics: &mut [(String, uuid::Uuid, Vec<Pending>)]) {
    let frame = std::mem::take(&mut request.body);
    if let Some(id) = request.header.client_id.take() {
        request.header.client_id = Some(StrBytes::from_string(id.to_string()));
    }
    let mut staged = Vec::new();
    let mut payloads = Vec::new();
    for pending in topics
        .iter_mut()
        .flat_map(|(_, _, parts)| parts.iter_mut())
        .filter(|p| matches!(p, Pending::Staged(..)))
    {
        if let Pending::Staged(index, partition, data) =
            std::mem::replace(pending, Pending::Done(PartitionProduceResponse::default()))
        {
            staged.push((pending, index, partition));
            payloads.push(data);
        }
    }
    for ((pending, index, partition), data) in
        staged.into_iter().zip(split_writable(frame, payloads))
    {
        *pending = Pending::Ready(index, partition, data);
    }
}

/// `payloads` as writable buffers, in the same order. Those that are disjoint slices of
/// `frame` are split out of the frame itself when nothing else holds it (no copy); any other
/// (not a slice of the frame, overlapping another, or the frame still shared) is copied.
fn split_writable(frame: Bytes, payloads: Vec<Bytes>) -> Vec<BytesMut> {
    let base = frame.as_ptr() as usize;
    // Where each non-empty payload lies in the frame, if it is a slice of it.
    let mut ranges: Vec<Option<Range<usize>>> = payloads
        .iter()
        .map(|p| {
            let start = (p.as_ptr() as usize).checked_sub(base)?;
            let end = start.checked_add(p.len())?;
            (!p.is_empty() && end <= frame.len()).then_some(start..end)
        })
        .collect();
    let mut order: Vec<usize> = (0..ranges.len())
        .filter(|&i| ranges.get(i).is_some_and(Option::is_some))
        .collect();
    order.sort_by_key(|&i| ranges.get(i).cloned().flatten().map_or(0, |r| r.start));
    // Keep only disjoint ranges (a decoder gives them so); the others are copied.
    let mut end = 0;
    order.retain(|&i| match ranges.get(i).cloned().flatten() {
        Some(r) if r.start >= end => {
            end = r.end;
            true
        }
        _ => {
            if let Some(slot) = ranges.get_mut(i) {
                *slot = None;
            }
            false
        }
    });
    let mut out: Vec<BytesMut> = payloads
        .iter()
        .zip(&ranges)
        .map(|(p, r)| match r {
            Some(_) => BytesMut::new(),
            None => BytesMut::from(&p[..]),
        })
        .collect();
    // The payloads must be gone for the frame to have a single owner.
    drop(payloads);
    match frame.try_into_mut() {
        Ok(mut rest) => {
            let mut consumed = 0;
            for i in order {
                let (Some(Some(r)), Some(slot)) = (ranges.get(i), out.get_mut(i)) else {
                    continue;
                };
                rest.advance(r.start - consumed);
                *slot = rest.split_to(r.len());
                consumed = r.end;
            }
        }
        Err(frame) => {
            for i in order {
                if let (Some(Some(r)), Some(slot)) = (ranges.get(i), out.get_mut(i)) {
                    *slot = BytesMut::from(frame.get(r.clone()).unwrap_or_default());
                }
            }
        }
    }
    out
}

/// The writes of a group of partitions of one request still running: a partition's thread
/// waits for durability only once this reaches zero.
struct WriteLatch {
    remaining: Mutex<usize>,
    written: Condvar,
}

impl WriteLatch {
    fn new(writes: usize) -> Arc<WriteLatch> {
        Arc::new(WriteLatch {
            remaining: Mutex::new(writes),
            written: Condvar::new(),
        })
    }

    /// Blocks until every write of the group is done (or given up). BLOCKING.
    fn wait(&self) {
        let mut remaining = self
            .remaining
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        while *remaining > 0 {
            remaining = self
                .written
                .wait(remaining)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// One write of a [`WriteLatch`]'s group; counts it down when dropped, so a write that fails or
/// panics still releases the others.
struct LatchWrite(Arc<WriteLatch>);

impl Drop for LatchWrite {
    fn drop(&mut self) {
        let mut remaining = self
            .0
            .remaining
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *remaining = remaining.saturating_sub(1);
        if *remaining == 0 {
            self.0.written.notify_all();
        }
    }
}

/// Starts every ready append of the request on the blocking pool, in groups of at most
/// [`crate::APPEND_SLOTS`] partitions. Each group first takes one append slot per partition at
/// once ([`Context::append_slots`], so the blocking threads produce requests occupy do not
/// follow the partition counts clients send, and no request holds part of its slots while
/// waiting for the rest); each partition's thread holds its slot through both halves, writes,
/// counts the group's latch down, waits for the latch, then waits for durability. A lone
/// partition does not wait on anyone.
async fn start_appends(
    context: &Context,
    version: i16,
    topics: &mut [(String, uuid::Uuid, Vec<Pending>)],
) {
    let ready: Vec<&mut Pending> = topics
        .iter_mut()
        .flat_map(|(_, _, parts)| parts.iter_mut())
        .filter(|p| matches!(p, Pending::Ready(..)))
        .collect();
    let mut ready = ready.into_iter().peekable();
    while ready.peek().is_some() {
        let group: Vec<&mut Pending> = ready.by_ref().take(crate::APPEND_SLOTS).collect();
        let slots = u32::try_from(group.len()).unwrap_or(u32::MAX);
        // Err: the semaphore is closed, the broker is shutting down.
        let mut permits = Arc::clone(&context.append_slots)
            .acquire_many_owned(slots)
            .await
            .ok();
        let latch = WriteLatch::new(group.len());
        for pending in group {
            let Pending::Ready(index, partition, mut data) =
                std::mem::replace(pending, Pending::Done(PartitionProduceResponse::default()))
            else {
                // Not reached (only ready appends are in the group); keeps the count right.
                drop(LatchWrite(Arc::clone(&latch)));
                continue;
            };
            let Some(slot) = permits.as_mut().and_then(|p| p.split(1)) else {
                // The semaphore is closed: the broker is shutting down. Counts the latch down.
                drop(LatchWrite(Arc::clone(&latch)));
                let e = Error::ShuttingDown;
                *pending =
                    Pending::Done(failed(index, error_code(&e), Some(e.to_string()), version));
                continue;
            };
            let latch_write = LatchWrite(Arc::clone(&latch));
            let latch = Arc::clone(&latch);
            let (written_tx, written) = oneshot::channel();
            let handle = tokio::task::spawn_blocking(move || {
                // The slot is held through both halves: a blocking thread is busy until durable.
                let _slot = slot;
                let pending = partition.append_deferred_blocking(&mut data);
                drop(latch_write);
                // The receiver may be gone (connection dropped); the append still completes.
                let _ = written_tx.send(());
                let pending = pending?;
                latch.wait();
                partition.await_durable_blocking(pending)
            });
            *pending = Pending::Appending(index, written, handle);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame() -> Bytes {
        Bytes::from((0..=255u8).cycle().take(1000).collect::<Vec<u8>>())
    }

    #[test]
    fn payloads_split_out_of_an_unshared_frame_without_a_copy() {
        let frame = frame();
        let base = frame.as_ptr() as usize;
        // Out of order, as topics and partitions need not be in frame order.
        let payloads = vec![frame.slice(600..900), frame.slice(10..200), Bytes::new()];
        let expected: Vec<Vec<u8>> = payloads.iter().map(|p| p.to_vec()).collect();
        let out = split_writable(frame, payloads);
        let got: Vec<Vec<u8>> = out.iter().map(|b| b.to_vec()).collect();
        assert_eq!(got, expected);
        // The same memory as the frame's: nothing was copied.
        assert_eq!(out[0].as_ptr() as usize, base + 600);
        assert_eq!(out[1].as_ptr() as usize, base + 10);
    }

    #[test]
    fn a_shared_frame_is_copied_and_left_intact() {
        let frame = frame();
        let other_owner = frame.clone();
        let payloads = vec![frame.slice(100..300), frame.slice(300..301)];
        let expected: Vec<Vec<u8>> = payloads.iter().map(|p| p.to_vec()).collect();
        let mut out = split_writable(frame, payloads);
        assert_eq!(out.iter().map(|b| b.to_vec()).collect::<Vec<_>>(), expected);
        out[0][0] ^= 0xff;
        // Writing a payload does not change what the other owner sees.
        assert_eq!(other_owner[100], expected[0][0]);
    }

    #[test]
    fn foreign_and_overlapping_payloads_are_copied() {
        let frame = frame();
        let base = frame.as_ptr() as usize;
        let foreign = Bytes::from(vec![7u8; 50]);
        let payloads = vec![
            frame.slice(0..100),
            frame.slice(50..150),
            foreign.clone(),
            frame.slice(200..250),
        ];
        let expected: Vec<Vec<u8>> = payloads.iter().map(|p| p.to_vec()).collect();
        let mut out = split_writable(frame, payloads);
        assert_eq!(out.iter().map(|b| b.to_vec()).collect::<Vec<_>>(), expected);
        // The overlapping one is a copy, the disjoint ones are the frame's own bytes.
        assert_eq!(out[0].as_ptr() as usize, base);
        assert_ne!(out[1].as_ptr() as usize, base + 50);
        assert_eq!(out[3].as_ptr() as usize, base + 200);
        out[2][0] = 0;
        assert_eq!(foreign[0], 7);
    }
}
