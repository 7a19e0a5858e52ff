//! Fetch (key 1): read record batches, long-polling on `max_wait_ms`/`min_bytes`.
//!
//! Every requested partition is subscribed to (its high-watermark `watch` channel) *before* the
//! first read, so an append that lands between the read and the wait still wakes the request.
//! Then: read all partitions on the blocking pool; if fewer than `min_bytes` came back, no
//! partition had an error and the deadline has not passed, wait for any partition's watermark
//! to move (or the deadline) and read again. Never a sleep loop.
//!
//! `isolation_level = 1` (read_committed, v4+) reads only below the last stable offset and
//! fills `aborted_transactions` with the aborted transactions overlapping the returned batches.
//! Such a read still waits on the high-watermark channel: the LSO moves only when a marker is
//! appended (or becomes durable), which moves the high watermark too. Every response reports
//! the partition's real `last_stable_offset`.
//!
//! The broker's `fetch.max.bytes` ([`crate::KafkaConfig::fetch_max_bytes`], 30 MiB by
//! default, below Kafka's 55 MiB: see [`crate::DEFAULT_FETCH_MAX_BYTES`]) caps the request's
//! `max_bytes`; the first batch is still returned whole if larger,
//! as Kafka does. Each read round first reserves its largest possible size from the
//! request-memory budget (`queued.max.request.bytes`), and the bytes really read stay counted
//! until the response is written, so fetch responses and request frames share one bound.
//!
//! Fetch sessions (KIP-227) are not kept: every response carries session id 0, which tells
//! clients to send full requests; an incremental request gets `FETCH_SESSION_ID_NOT_FOUND`.
//!
//! The response is framed by hand (`fetch/encode.rs`) around the record bytes the log read
//! returned and written with one `writev`: the records are copied once, from the page cache into
//! the read buffer, and not again into a response frame.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{FetchRequest, FetchResponse};
use strom_broker::{Error, Partition, StorageError};
use tokio::sync::watch;
use uuid::Uuid;

use super::{HandlerError, Outcome, decode, respond};
use crate::error_code::error_code;
use crate::frame::Request;
use crate::{Context, authz};
use strom_broker::acl::{AclOperation, ResourceType};

mod encode;

use encode::{AbortedTxn, PartitionResponse, TopicResponse};

/// The longest a fetch may wait, whatever the client asks.
const MAX_WAIT_CAP: Duration = Duration::from_secs(60);

struct PartitionTarget {
    index: i32,
    fetch_offset: i64,
    max_bytes: usize,
    partition: Result<Arc<Partition>, Error>,
}

struct TopicTarget {
    name: String,
    id: Uuid,
    partitions: Vec<PartitionTarget>,
}

struct Round {
    topics: Vec<TopicResponse>,
    bytes: usize,
    any_error: bool,
}

/// Handles Fetch.
pub async fn handle(context: &Context, request: &Request) -> Result<Outcome, HandlerError> {
    let version = request.version();
    let body: FetchRequest = decode(request)?;
    if version >= 7 && (body.session_id != 0 || body.session_epoch > 0) {
        let response = FetchResponse::default()
            .with_error_code(ResponseError::FetchSessionIdNotFound.code())
            .with_session_id(0);
        return respond(request, &response);
    }
    let broker = &context.broker;
    let mut targets = Vec::with_capacity(body.topics.len());
    for topic in body.topics {
        // With an authorizer, reading needs READ on the topic (TOPIC_AUTHORIZATION_FAILED per
        // partition; checked before existence when the topic is named).
        let read = |name: &str| {
            authz::check(
                context,
                request,
                AclOperation::Read,
                ResourceType::Topic,
                name,
            )
        };
        let resolved = if version >= 13 {
            broker
                .topic_by_id(topic.topic_id)
                .and_then(|t| read(t.name()).map(|()| t))
        } else {
            read(topic.topic.0.as_str()).and_then(|()| broker.topic(topic.topic.0.as_str()))
        };
        let (name, id) = match &resolved {
            Ok(t) => (t.name().to_owned(), t.id()),
            Err(_) => (topic.topic.0.to_string(), topic.topic_id),
        };
        let partitions = topic
            .partitions
            .into_iter()
            .map(|p| PartitionTarget {
                index: p.partition,
                fetch_offset: p.fetch_offset,
                max_bytes: usize::try_from(p.partition_max_bytes).unwrap_or(0),
                partition: match &resolved {
                    Ok(t) => t.partition(p.partition).cloned(),
                    Err(e) => Err(e.clone()),
                },
            })
            .collect();
        targets.push(TopicTarget {
            name,
            id,
            partitions,
        });
    }
    let mut watchers: Vec<watch::Receiver<i64>> = targets
        .iter()
        .flat_map(|t| t.partitions.iter())
        .filter_map(|p| p.partition.as_ref().ok().map(|p| p.subscribe()))
        .collect();
    let wait =
        Duration::from_millis(u64::try_from(body.max_wait_ms).unwrap_or(0)).min(MAX_WAIT_CAP);
    let deadline = tokio::time::Instant::now() + wait;
    let min_bytes = usize::try_from(body.min_bytes).unwrap_or(0);
    // The broker's fetch.max.bytes caps whatever the client asks, and so does the client's
    // `consumer_byte_rate` over the quota window (Kafka's getMaxValueInQuotaWindow).
    let max_bytes = usize::try_from(body.max_bytes)
        .unwrap_or(0)
        .min(context.fetch_max_bytes)
        .min(
            context
                .quotas
                .max_fetch_bytes(context.broker.quotas(), request)
                .unwrap_or(usize::MAX),
        );
    let committed = body.isolation_level == 1;
    let targets = Arc::new(targets);
    // Each read reserves its largest possible size from the request-memory budget first, and
    // keeps what it really read until the response is written.
    let reserve = max_bytes.clamp(1, context.fetch_memory_limit());
    // A budget smaller than the cap lowers it (the first batch is still whole).
    let max_bytes = max_bytes.min(reserve);
    let (round, held) = loop {
        let mut permits = Arc::clone(&context.request_memory)
            .acquire_many_owned(u32::try_from(reserve).unwrap_or(u32::MAX))
            .await
            .map_err(|_| HandlerError::Internal("request memory budget closed".to_owned()))?;
        let for_read = Arc::clone(&targets);
        let round =
            tokio::task::spawn_blocking(move || read_round(&for_read, max_bytes, committed))
                .await
                .map_err(|e| HandlerError::Internal(format!("fetch read task: {e}")))?;
        if round.bytes >= min_bytes
            || round.any_error
            || watchers.is_empty()
            || tokio::time::Instant::now() >= deadline
        {
            let held = match round.bytes.min(reserve) {
                0 => None,
                n => permits.split(n),
            };
            break (round, held);
        }
        drop(permits);
        let waiting = std::time::Instant::now();
        tokio::select! {
            () = any_changed(&mut watchers) => {}
            () = tokio::time::sleep_until(deadline) => {}
        }
        // A long poll is not request time for `request_percentage`.
        if let Some(session) = &request.session {
            session.throttle.waited(waiting.elapsed());
        }
    };
    // `consumer_byte_rate` counts the bytes sent; a throttled Fetch is answered at once with
    // no data and its bytes are taken back (Kafka's getThrottledResponse).
    let throttle_ms = context.quotas.record(
        context.broker.quotas(),
        request,
        crate::quota::QuotaType::Fetch,
        round.bytes as f64,
    );
    let head = encode::ResponseHead {
        throttle_time_ms: i32::try_from(throttle_ms).unwrap_or(i32::MAX),
        ..encode::ResponseHead::default()
    };
    if throttle_ms > 0 {
        drop(held);
        let parts = encode::encode(request.correlation_id(), version, head, &[])?;
        return Ok(Outcome::RespondVectored(parts, None));
    }
    context.metrics.fetched(round.bytes);
    let parts = encode::encode(request.correlation_id(), version, head, &round.topics)?;
    Ok(Outcome::RespondVectored(parts, held))
}

/// Resolves when any watched high watermark changes.
async fn any_changed(watchers: &mut [watch::Receiver<i64>]) {
    let mut futures: Vec<Pin<Box<dyn Future<Output = ()> + Send + '_>>> = watchers
        .iter_mut()
        .map(|rx| {
            Box::pin(async move {
                if rx.changed().await.is_err() {
                    // The partition is gone; the next read reports it.
                }
            }) as Pin<Box<dyn Future<Output = ()> + Send + '_>>
        })
        .collect();
    std::future::poll_fn(|cx| {
        for f in futures.iter_mut() {
            if f.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
        }
        Poll::Pending
    })
    .await;
}

/// Reads every target once (below the LSO when `committed`). BLOCKING.
fn read_round(targets: &[TopicTarget], max_bytes: usize, committed: bool) -> Round {
    let mut total = 0usize;
    let mut any_error = false;
    let mut topics = Vec::with_capacity(targets.len());
    for t in targets {
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in &t.partitions {
            let data = match &p.partition {
                Err(e) => {
                    any_error = true;
                    error_data(p.index, e)
                }
                Ok(partition) => {
                    let remaining = max_bytes.saturating_sub(total);
                    let limit = p.max_bytes.min(remaining);
                    let read = if total > 0 && limit == 0 {
                        None
                    } else if committed {
                        Some(partition.read_committed_blocking(p.fetch_offset, limit))
                    } else {
                        Some(partition.read_blocking(p.fetch_offset, limit))
                    };
                    match read {
                        None => ok_data(p.index, partition, Bytes::new(), None),
                        Some(Ok(read)) => {
                            // Only the first batch of the response may exceed the limits.
                            let records = if total > 0 && read.records.len() > remaining {
                                Bytes::new()
                            } else {
                                read.records
                            };
                            let aborted = if records.is_empty() {
                                Vec::new()
                            } else {
                                read.aborted_transactions
                            };
                            total += records.len();
                            ok_data(
                                p.index,
                                partition,
                                records,
                                Some(Offsets {
                                    high_watermark: read.high_watermark,
                                    last_stable_offset: read.last_stable_offset,
                                    log_start_offset: read.log_start_offset,
                                    aborted,
                                }),
                            )
                        }
                        Some(Err(e)) => {
                            any_error = true;
                            let mut d = error_data(p.index, &e);
                            if let Error::Storage(StorageError::OffsetOutOfRange {
                                start: log_start,
                                end: high_watermark,
                                ..
                            }) = e
                            {
                                d.high_watermark = high_watermark;
                                d.last_stable_offset =
                                    partition.last_stable_offset().min(high_watermark);
                                d.log_start_offset = log_start;
                            }
                            d
                        }
                    }
                }
            };
            partitions.push(data);
        }
        topics.push(TopicResponse {
            name: t.name.clone(),
            id: t.id,
            partitions,
        });
    }
    Round {
        topics,
        bytes: total,
        any_error,
    }
}

/// What a read saw of a partition.
struct Offsets {
    high_watermark: i64,
    last_stable_offset: i64,
    log_start_offset: i64,
    aborted: Vec<strom_broker::storage::AbortedTxn>,
}

fn ok_data(
    index: i32,
    partition: &Partition,
    records: Bytes,
    offsets: Option<Offsets>,
) -> PartitionResponse {
    let o = offsets.unwrap_or_else(|| {
        let high_watermark = partition.high_watermark();
        Offsets {
            high_watermark,
            last_stable_offset: partition.last_stable_offset().min(high_watermark),
            log_start_offset: partition.log_start_offset(),
            aborted: Vec::new(),
        }
    });
    PartitionResponse {
        index,
        error_code: 0,
        high_watermark: o.high_watermark,
        last_stable_offset: o.last_stable_offset,
        log_start_offset: o.log_start_offset,
        // Empty unless read_committed (only committed reads collect aborted transactions).
        aborted: o
            .aborted
            .into_iter()
            .map(|a| AbortedTxn {
                producer_id: a.producer_id,
                first_offset: a.first_offset,
            })
            .collect(),
        // Never null on the wire: librdkafka rejects a null record set.
        records,
    }
}

fn error_data(index: i32, error: &Error) -> PartitionResponse {
    PartitionResponse::error(index, error_code(error))
}
