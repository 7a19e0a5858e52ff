//! OffsetCommit (key 8): durable commits to `__consumer_offsets` (see `strom_broker::group`).
//!
//! Generation -1 with an empty member id is a simple consumer's commit, accepted when the group
//! has no members, as in Kafka.

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};
use strom_broker::group::OffsetCommit;

use super::{HandlerError, Outcome, decode, respond};
use crate::Context;
use crate::error_code::error_code;
use crate::frame::Request;

/// Handles OffsetCommit.
pub async fn handle(context: &Context, request: &Request) -> Result<Outcome, HandlerError> {
    let body: OffsetCommitRequest = decode(request)?;
    let group_id = body.group_id.to_string();
    let member_id = body.member_id.to_string();
    let generation = body.generation_id_or_member_epoch;
    let instance = body.group_instance_id.map(|s| s.to_string());
    let mut order = Vec::new();
    let mut commits = Vec::new();
    for topic in &body.topics {
        for p in &topic.partitions {
            order.push((topic.name.clone(), p.partition_index));
            commits.push(OffsetCommit {
                topic: topic.name.to_string(),
                partition: p.partition_index,
                offset: p.committed_offset,
                leader_epoch: p.committed_leader_epoch,
                metadata: p.committed_metadata.as_ref().map(|s| s.to_string()),
            });
        }
    }
    let result = context
        .broker
        .run_blocking(move |b| {
            b.commit_offsets_blocking(
                &group_id,
                &member_id,
                generation,
                instance.as_deref(),
                commits,
            )
        })
        .await;
    let codes: Vec<i16> = match result {
        Ok(results) => results
            .iter()
            .map(|r| r.as_ref().err().map_or(0, error_code))
            .collect(),
        Err(e) => vec![error_code(&e); order.len()],
    };
    let mut response = OffsetCommitResponse::default();
    for ((name, partition), code) in order.into_iter().zip(codes) {
        let partition = OffsetCommitResponsePartition::default()
            .with_partition_index(partition)
            .with_error_code(code);
        match response.topics.last_mut() {
            Some(t) if t.name == name => t.partitions.push(partition),
            _ => response.topics.push(
                OffsetCommitResponseTopic::default()
                    .with_name(name)
                    .with_partitions(vec![partition]),
            ),
        }
    }
    respond(request, &response)
}
