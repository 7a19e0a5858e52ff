//! OffsetForLeaderEpoch (key 23): the end offset of a leader epoch (KIP-101/KIP-320).
//!
//! A single node has one leader epoch, [`LEADER_EPOCH`], for the life of a partition: asking
//! for it (or an earlier one) returns the log end offset; asking for a later one returns the
//! undefined epoch and offset, as Kafka does. A `current_leader_epoch` newer than ours is
//! `UNKNOWN_LEADER_EPOCH` (an older one cannot exist until cluster mode bumps epochs, when it
//! becomes `FENCED_LEADER_EPOCH`).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
use strom_broker::LEADER_EPOCH;

use super::{HandlerError, Outcome, decode, respond};
use crate::error_code::error_code;
use crate::frame::Request;
use crate::{Context, authz};
use strom_broker::acl::AclOperation;

/// Handles OffsetForLeaderEpoch.
pub async fn handle(context: &Context, request: &Request) -> Result<Outcome, HandlerError> {
    let body: OffsetForLeaderEpochRequest = decode(request)?;
    let broker = &context.broker;
    // With an authorizer: DESCRIBE on each topic.
    let denied = authz::denied_topics(
        context,
        request,
        AclOperation::Describe,
        body.topics.iter().map(|t| t.topic.0.as_str()),
    );
    let topics = body
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let mut r = EpochEndOffset::default().with_partition(p.partition);
                    if denied.contains(t.topic.0.as_str()) {
                        r.error_code = authz::topic_denied_code();
                        return r;
                    }
                    if p.current_leader_epoch > LEADER_EPOCH {
                        r.error_code = ResponseError::UnknownLeaderEpoch.code();
                        return r;
                    }
                    match broker.partition(t.topic.0.as_str(), p.partition) {
                        Ok(partition) if p.leader_epoch <= LEADER_EPOCH => {
                            r.leader_epoch = LEADER_EPOCH;
                            r.end_offset = partition.log_end_offset();
                        }
                        Ok(_) => {
                            r.leader_epoch = -1;
                            r.end_offset = -1;
                        }
                        Err(e) => r.error_code = error_code(&e),
                    }
                    r
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic)
                .with_partitions(partitions)
        })
        .collect();
    respond(
        request,
        &OffsetForLeaderEpochResponse::default().with_topics(topics),
    )
}
