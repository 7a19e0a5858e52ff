//! OffsetFetch (key 9): committed offsets of a group (v0–v7) or of several groups (v8+).
//!
//! Partitions without a commit answer offset -1; a null topic list asks for every committed
//! partition of the group. With `require_stable` (v7+, sent by `read_committed` consumers,
//! KIP-447) a partition whose offset is pending in an open transaction answers
//! UNSTABLE_OFFSET_COMMIT, so the consumer retries instead of starting from a stale offset.
//! The partition still carries the last committed offset (Kafka answers -1): librdkafka (2.12)
//! re-queues an unstable partition with the offset answered when its assignment changed while
//! the fetch was in flight, and starts fetching there; -1 would send it to
//! `auto.offset.reset`. In cluster mode the group's coordinator first settles transactions
//! that already ended (see `Broker::settle_txn_offsets_blocking`), so only transactions still
//! open are unstable.
//! With an authorizer: DESCRIBE on the group (GROUP_AUTHORIZATION_FAILED), and on each topic
//! (a named one answers TOPIC_AUTHORIZATION_FAILED; every-partition answers leave it out).

use std::collections::HashSet;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use strom_broker::group::CommittedOffset;

use super::{HandlerError, Outcome, decode, respond};
use crate::frame::Request;
use crate::{Context, authz};
use strom_broker::acl::AclOperation;

/// A topic and its partitions' offsets.
type TopicOffsets = (String, Vec<(i32, Option<CommittedOffset>)>);

type Fetched = Vec<((String, i32), Option<CommittedOffset>)>;

/// The group's offsets of the requested partitions (every committed one for `None`), and
/// the topics the client may not DESCRIBE: Kafka leaves those out of an every-partition
/// answer and answers a named one with TOPIC_AUTHORIZATION_FAILED and no offset.
fn fetch(
    context: &Context,
    request: &Request,
    group: &str,
    topics: Option<Vec<(String, Vec<i32>)>>,
) -> (Fetched, HashSet<String>) {
    let named = topics.is_some();
    let wanted: Option<Vec<(String, i32)>> = topics.map(|ts| {
        ts.into_iter()
            .flat_map(|(t, ps)| ps.into_iter().map(move |p| (t.clone(), p)))
            .collect()
    });
    let mut fetched = context
        .broker
        .groups()
        .fetch_offsets(group, wanted.as_deref());
    let denied = authz::denied_topics(
        context,
        request,
        AclOperation::Describe,
        fetched.iter().map(|((t, _), _)| t.as_str()),
    );
    if denied.is_empty() {
        return (fetched, denied);
    }
    if named {
        for ((topic, _), offset) in &mut fetched {
            if denied.contains(topic) {
                *offset = None;
            }
        }
        (fetched, denied)
    } else {
        fetched.retain(|((topic, _), _)| !denied.contains(topic));
        (fetched, HashSet::new())
    }
}

/// A partition's error code: TOPIC_AUTHORIZATION_FAILED for a denied topic, else
/// [`stability`]'s.
fn partition_code(
    context: &Context,
    denied: &HashSet<String>,
    require_stable: bool,
    key: (&str, &str, i32),
) -> i16 {
    let (group, topic, partition) = key;
    if denied.contains(topic) {
        authz::topic_denied_code()
    } else {
        stability(context, require_stable, group, topic, partition)
    }
}

/// Groups consecutive partitions by topic.
fn by_topic(fetched: Fetched) -> Vec<TopicOffsets> {
    let mut out: Vec<TopicOffsets> = Vec::new();
    for ((topic, partition), offset) in fetched {
        match out.last_mut() {
            Some((t, ps)) if *t == topic => ps.push((partition, offset)),
            _ => out.push((topic, vec![(partition, offset)])),
        }
    }
    out
}

/// The error code of a partition: UNSTABLE_OFFSET_COMMIT when stability was asked for and a
/// transaction holds a pending offset for it.
fn stability(context: &Context, require_stable: bool, group: &str, topic: &str, p: i32) -> i16 {
    if require_stable && context.broker.has_pending_txn_offset(group, topic, p) {
        ResponseError::UnstableOffsetCommit.code()
    } else {
        0
    }
}

fn parts(o: Option<CommittedOffset>) -> (i64, i32, Option<StrBytes>) {
    match o {
        Some(o) => (
            o.offset,
            o.leader_epoch,
            Some(StrBytes::from_string(o.metadata.unwrap_or_default())),
        ),
        None => (-1, -1, Some(StrBytes::default())),
    }
}

/// Cluster mode: first settles the group's transactional offsets whose transaction already
/// ended (its completion may not have reached this coordinator's tick yet), so a consumer
/// fetching after a commit returned reads the committed offsets, not a pending state (nor,
/// without `require_stable`, the offsets before it). A failure leaves the pending state
/// answered.
async fn settle(context: &Context, group: &str) {
    // Nothing to settle on a single broker (it settles before EndTxn answers), nor without
    // pending offsets: no blocking call then.
    if context.broker.live_brokers().is_none() || !context.broker.has_pending_txn_offsets(group) {
        return;
    }
    let group = group.to_owned();
    if let Err(e) = context
        .broker
        .run_blocking(move |b| b.settle_txn_offsets_blocking(&group))
        .await
    {
        tracing::warn!(error = %e, "settling transactional offsets before OffsetFetch failed");
    }
}

/// Handles OffsetFetch.
pub async fn handle(context: &Context, request: &Request) -> Result<Outcome, HandlerError> {
    let body: OffsetFetchRequest = decode(request)?;
    let mut response = OffsetFetchResponse::default();
    let require_stable = body.require_stable;
    if request.version() >= 8 {
        for g in body.groups {
            // With an authorizer: DESCRIBE on the group.
            if let Some(code) =
                authz::group_denied(context, request, AclOperation::Describe, &g.group_id)
                    .or_else(|| super::not_coordinator(context, &g.group_id))
            {
                response.groups.push(
                    OffsetFetchResponseGroup::default()
                        .with_group_id(g.group_id)
                        .with_error_code(code),
                );
                continue;
            }
            settle(context, &g.group_id).await;
            let topics = g.topics.map(|ts| {
                ts.into_iter()
                    .map(|t| (t.name.to_string(), t.partition_indexes))
                    .collect()
            });
            let (fetched, denied) = fetch(context, request, &g.group_id, topics);
            let group = g.group_id.to_string();
            tracing::debug!(group, require_stable, ?fetched, "OffsetFetch");
            let topics = by_topic(fetched)
                .into_iter()
                .map(|(name, ps)| {
                    let partitions = ps
                        .into_iter()
                        .map(|(p, o)| {
                            let (offset, epoch, metadata) = parts(o);
                            OffsetFetchResponsePartitions::default()
                                .with_partition_index(p)
                                .with_committed_offset(offset)
                                .with_committed_leader_epoch(epoch)
                                .with_metadata(metadata)
                                .with_error_code(partition_code(
                                    context,
                                    &denied,
                                    require_stable,
                                    (&group, &name, p),
                                ))
                        })
                        .collect();
                    OffsetFetchResponseTopics::default()
                        .with_name(TopicName(StrBytes::from_string(name)))
                        .with_partitions(partitions)
                })
                .collect();
            response.groups.push(
                OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id)
                    .with_topics(topics),
            );
        }
    } else if let Some(code) =
        authz::group_denied(context, request, AclOperation::Describe, &body.group_id)
            .or_else(|| super::not_coordinator(context, &body.group_id))
    {
        if request.version() >= 2 {
            response.error_code = code;
        } else {
            // v1 has no top-level error: every requested partition carries it.
            response.topics = body
                .topics
                .unwrap_or_default()
                .into_iter()
                .map(|t| {
                    OffsetFetchResponseTopic::default()
                        .with_name(t.name)
                        .with_partitions(
                            t.partition_indexes
                                .into_iter()
                                .map(|p| {
                                    OffsetFetchResponsePartition::default()
                                        .with_partition_index(p)
                                        .with_committed_offset(-1)
                                        .with_error_code(code)
                                })
                                .collect(),
                        )
                })
                .collect();
        }
    } else {
        settle(context, &body.group_id).await;
        let topics = body.topics.map(|ts| {
            ts.into_iter()
                .map(|t| (t.name.to_string(), t.partition_indexes))
                .collect()
        });
        let (fetched, denied) = fetch(context, request, &body.group_id, topics);
        let version = request.version();
        let group = body.group_id.to_string();
        tracing::debug!(group, require_stable, ?fetched, "OffsetFetch");
        response.topics = by_topic(fetched)
            .into_iter()
            .map(|(name, ps)| {
                let partitions = ps
                    .into_iter()
                    .map(|(p, o)| {
                        let (offset, epoch, metadata) = parts(o);
                        let mut r = OffsetFetchResponsePartition::default()
                            .with_partition_index(p)
                            .with_committed_offset(offset)
                            .with_metadata(metadata)
                            .with_error_code(partition_code(
                                context,
                                &denied,
                                require_stable,
                                (&group, &name, p),
                            ));
                        if version >= 5 {
                            r.committed_leader_epoch = epoch;
                        }
                        r
                    })
                    .collect();
                OffsetFetchResponseTopic::default()
                    .with_name(TopicName(StrBytes::from_string(name)))
                    .with_partitions(partitions)
            })
            .collect();
    }
    respond(request, &response)
}
