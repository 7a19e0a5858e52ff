//! `SubscribeToShard`: an `application/vnd.amazon.eventstream` response that pushes
//! `SubscribeToShardEvent`s for one registered consumer and shard, served over HTTP/1.1
//! (chunked) or HTTP/2 on the same port.
//!
//! Frames are written with `aws-smithy-eventstream` (the SDKs' own codec), payloads in the
//! request's encoding (JSON 1.1 or CBOR): first an
//! `initial-response` event, then one `SubscribeToShardEvent` per read (records, a
//! `ContinuationSequenceNumber`, `MillisBehindLatest`). When caught up the task waits on the
//! partition's high-watermark channel, sending an empty event every few seconds as a
//! heartbeat. The subscription ends after [`crate::KinesisConfig::subscription_duration`]
//! (AWS: 5 minutes), when the client goes away, or after a drained closed shard's last event
//! (which carries `ChildShards`), or when the server shuts down.
//!
//! `ContinuationSequenceNumber` is the sequence number of the last record delivered, for
//! `AFTER_SEQUENCE_NUMBER`; before any record it is that of the offset before the starting
//! position (for offset 0, offset 0 itself, so resuming from there may repeat nothing but
//! cannot skip: AT/AFTER of offset 0 differ by that one record).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use axum::body::{Body, Bytes};
use axum::http::{HeaderValue as HttpHeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{OwnedSemaphorePermit, mpsc};

use super::get_records::{PageRecord, child_shards, read_page};
use super::get_shard_iterator::{Position, start_offset};
use super::put_records::sequence_number;
use crate::error::{ErrorKind, KinesisError, Result};
use crate::service::{Context, parse};
use crate::stream;
use crate::wire::Encoding;

/// How long a caught-up subscription waits before sending an empty event.
const HEARTBEAT: Duration = Duration::from_secs(5);
/// Records per event.
const EVENT_RECORDS: usize = 10_000;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Request {
    #[serde(rename = "ConsumerARN")]
    consumer_arn: String,
    shard_id: String,
    starting_position: StartingPosition,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StartingPosition {
    #[serde(rename = "Type")]
    kind: String,
    #[serde(default)]
    sequence_number: Option<String>,
    #[serde(default)]
    timestamp: Option<f64>,
}

/// One event frame and its share of the in-flight memory budget (none for the initial
/// response).
type Event = (Bytes, Option<OwnedSemaphorePermit>);

/// A streaming body fed by the subscription task. The reservation of the frame last handed to
/// the connection is held until the next one is asked for.
struct Frames {
    events: mpsc::Receiver<Event>,
    held: Option<OwnedSemaphorePermit>,
}

impl http_body::Body for Frames {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<std::result::Result<http_body::Frame<Bytes>, Infallible>>> {
        let next = std::task::ready!(self.events.poll_recv(cx));
        Poll::Ready(next.map(|(bytes, reservation)| {
            self.held = reservation;
            Ok(http_body::Frame::data(bytes))
        }))
    }
}

fn frame(encoding: Encoding, event_type: &'static str, payload: &Value) -> Option<Bytes> {
    let body = crate::wire::encode(encoding, payload);
    let message = Message::new(body)
        .add_header(Header::new(
            ":message-type",
            HeaderValue::String("event".into()),
        ))
        .add_header(Header::new(
            ":event-type",
            HeaderValue::String(event_type.into()),
        ))
        .add_header(Header::new(
            ":content-type",
            HeaderValue::String(encoding.content_type().into()),
        ));
    let mut out = Vec::new();
    aws_smithy_eventstream::frame::write_message_to(&message, &mut out).ok()?;
    Some(Bytes::from(out))
}

/// Validates the request and starts the subscription; errors are ordinary AWS errors.
pub(crate) async fn handle(
    ctx: Arc<Context>,
    encoding: Encoding,
    input: Value,
) -> Result<Response> {
    let req: Request = parse(input)?;
    let (stream_arn, rest) = req
        .consumer_arn
        .split_once("/consumer/")
        .ok_or_else(|| KinesisError::invalid("invalid ConsumerARN"))?;
    let consumer = rest.split(':').next().unwrap_or(rest);
    let view = stream::resolve(&ctx.broker, None, Some(stream_arn))?
        .synced_if(&ctx.broker, |v| {
            v.shard(&req.shard_id).is_err() || !v.meta.consumers.iter().any(|c| c.name == consumer)
        })?;
    if !view.meta.consumers.iter().any(|c| c.name == consumer) {
        return Err(KinesisError::new(
            ErrorKind::ResourceNotFound,
            format!("Consumer {} not found", req.consumer_arn),
        ));
    }
    let (index, partition) = view.shard(&req.shard_id)?;
    let partition = Arc::clone(partition);
    let position = Position {
        kind: &req.starting_position.kind,
        sequence_number: req.starting_position.sequence_number.as_deref(),
        timestamp: req.starting_position.timestamp,
    };
    let start = start_offset(&ctx, &partition, index, &req.shard_id, &position).await?;
    let mut closed_at = view.meta.shards.get(index).and_then(|s| s.closed_at_offset);
    let mut children = child_shards(&view, index);
    // Resharding (through this broker or, in cluster mode, another one) may close the shard
    // while the subscription runs: every change of stream metadata wakes it to look.
    let mut changes = ctx.broker.stream_changes();
    // Also looked at once first: a reshard may have landed since `view` was read.
    let mut recheck = true;

    let (tx, rx) = mpsc::channel::<Event>(2);
    let duration = ctx.config.subscription_duration;
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + duration;
        let Some(initial) = frame(encoding, "initial-response", &json!({})) else {
            return;
        };
        if tx.send((initial, None)).await.is_err() {
            return;
        }
        let mut watch = partition.subscribe();
        let mut closing = ctx.closing.subscribe();
        if *closing.borrow_and_update() {
            return;
        }
        let mut offset = start;
        let mut last_seq = sequence_number(index, start.saturating_sub(1).max(0) as u64);
        // An event counts against the in-flight memory budget as a GetRecords response does,
        // from before its read until its frame is handed to the connection; without room the
        // subscription waits (back-pressure), it does not fail.
        let bound = super::get_records::response_bound(EVENT_RECORDS).min(ctx.memory_capacity);
        let permits = u32::try_from(bound).unwrap_or(u32::MAX);
        loop {
            let mut reservation = tokio::select! {
                r = Arc::clone(&ctx.memory).acquire_many_owned(permits) => match r {
                    Ok(r) => r,
                    Err(_) => return,
                },
                _ = closing.changed() => return,
                () = tokio::time::sleep_until(deadline) => return,
            };
            watch.borrow_and_update();
            if closed_at.is_none() && (recheck || changes.has_changed().unwrap_or(false)) {
                recheck = false;
                changes.borrow_and_update();
                if let Ok(now) = view.refresh(&ctx.broker) {
                    closed_at = now.meta.shards.get(index).and_then(|s| s.closed_at_offset);
                    if closed_at.is_some() {
                        children = child_shards(&now, index);
                    }
                }
            }
            let p = Arc::clone(&partition);
            let page = match ctx
                .blocking(move |_| read_page(&p, offset, EVENT_RECORDS, closed_at))
                .await
            {
                Ok(page) => page,
                // A deleted stream closes its partitions: the subscription simply ends.
                Err(e) => {
                    tracing::debug!(error = %e, "SubscribeToShard read failed; ending the subscription");
                    return;
                }
            };
            if let Some(last) = page.records.last() {
                last_seq = last.sequence_number().to_string();
            }
            let caught_up = page.next_offset >= page.high_watermark;
            let behind = if caught_up {
                0
            } else {
                page.last_timestamp
                    .map_or(0, |ts| ctx.now_ms().saturating_sub(ts).max(0))
            };
            let drained = closed_at.is_some_and(|end| page.next_offset >= end);
            let records: Vec<Value> = page.records.iter().map(PageRecord::to_value).collect();
            let mut event = json!({
                "Records": records,
                "ContinuationSequenceNumber": last_seq,
                "MillisBehindLatest": behind,
            });
            if drained {
                event["ChildShards"] = Value::Array(children.clone());
            }
            let Some(bytes) = frame(encoding, "SubscribeToShardEvent", &event) else {
                return;
            };
            let next_offset = page.next_offset;
            drop((event, page));
            let excess = reservation.num_permits().saturating_sub(bytes.len().max(1));
            drop(reservation.split(excess));
            if tx.send((bytes, Some(reservation))).await.is_err() || drained {
                return;
            }
            offset = next_offset;
            if tokio::time::Instant::now() >= deadline || *closing.borrow() {
                return;
            }
            if caught_up {
                tokio::select! {
                    _ = closing.changed() => return,
                    _ = watch.changed() => {}
                    _ = changes.changed(), if closed_at.is_none() => recheck = true,
                    () = tokio::time::sleep(HEARTBEAT) => {}
                    () = tokio::time::sleep_until(deadline) => return,
                }
            }
        }
    });

    let mut response = (
        StatusCode::OK,
        Body::new(Frames {
            events: rx,
            held: None,
        }),
    )
        .into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HttpHeaderValue::from_static("application/vnd.amazon.eventstream"),
    );
    Ok(response)
}
