//! ListOffsets (key 2): earliest, latest, by timestamp and max-timestamp offsets. With
//! `isolation_level = 1` (read_committed, v2+) LATEST is the last stable offset.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use strom_broker::{Broker, LEADER_EPOCH};

use super::{HandlerError, Outcome, decode, respond};
use crate::error_code::error_code;
use crate::frame::Request;
use crate::{Context, authz};
use strom_broker::acl::AclOperation;

/// Special timestamps of ListOffsets.
pub mod spec {
    /// The next offset to be written (the high watermark; the last stable offset for
    /// read_committed).
    pub const LATEST: i64 = -1;
    /// The first offset in the log.
    pub const EARLIEST: i64 = -2;
    /// The record with the largest timestamp (v7+).
    pub const MAX_TIMESTAMP: i64 = -3;
    /// The first offset on local disk (v8+; no tiering, so the same as earliest).
    pub const EARLIEST_LOCAL: i64 = -4;
}

/// Handles ListOffsets.
pub async fn handle(context: &Context, request: &Request) -> Result<Outcome, HandlerError> {
    let version = request.version();
    let body: ListOffsetsRequest = decode(request)?;
    // With an authorizer: DESCRIBE on each topic (TOPIC_AUTHORIZATION_FAILED).
    let denied = authz::denied_topics(
        context,
        request,
        AclOperation::Describe,
        body.topics.iter().map(|t| t.name.0.as_str()),
    );
    let topics = context
        .broker
        .run_blocking(move |broker| Ok(list(broker, body, version, &denied)))
        .await
        .map_err(|e| HandlerError::Internal(e.to_string()))?;
    respond(request, &ListOffsetsResponse::default().with_topics(topics))
}

fn list(
    broker: &Broker,
    body: ListOffsetsRequest,
    version: i16,
    denied: &std::collections::HashSet<String>,
) -> Vec<ListOffsetsTopicResponse> {
    let committed = body.isolation_level == 1;
    body.topics
        .into_iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let mut r = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index);
                    if denied.contains(topic.name.0.as_str()) {
                        r.error_code = authz::topic_denied_code();
                        r.offset = -1;
                        r.timestamp = -1;
                        return r;
                    }
                    match lookup(
                        broker,
                        topic.name.0.as_str(),
                        p.partition_index,
                        p.timestamp,
                        committed,
                    ) {
                        Ok((offset, timestamp)) => {
                            r.offset = offset;
                            r.timestamp = timestamp;
                            if version >= 4 && offset >= 0 {
                                r.leader_epoch = LEADER_EPOCH;
                            }
                        }
                        Err(code) => r.error_code = code,
                    }
                    r
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect()
}

/// `(offset, timestamp)` for one partition; -1/-1 when no record matches. `committed`: LATEST
/// is the last stable offset. BLOCKING.
fn lookup(
    broker: &Broker,
    topic: &str,
    partition: i32,
    timestamp: i64,
    committed: bool,
) -> Result<(i64, i64), i16> {
    let p = broker
        .partition(topic, partition)
        .map_err(|e| error_code(&e))?;
    let found = match timestamp {
        spec::LATEST if committed => return Ok((p.last_stable_offset(), -1)),
        spec::LATEST => return Ok((p.high_watermark(), -1)),
        spec::EARLIEST | spec::EARLIEST_LOCAL => return Ok((p.log_start_offset(), -1)),
        spec::MAX_TIMESTAMP => p.max_timestamp_blocking(),
        ts if ts >= 0 => p.offset_for_timestamp_blocking(ts),
        _ => return Err(ResponseError::InvalidRequest.code()),
    }
    .map_err(|e| error_code(&e))?;
    Ok(found.map_or((-1, -1), |(offset, ts)| (offset, ts)))
}
