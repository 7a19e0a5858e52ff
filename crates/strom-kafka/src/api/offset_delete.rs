//! OffsetDelete (key 47): removes committed offsets of a group that is not consuming.

use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};

use super::{HandlerError, Outcome, decode, respond};
use crate::Context;
use crate::error_code::error_code;
use crate::frame::Request;

/// Handles OffsetDelete.
pub async fn handle(context: &Context, request: &Request) -> Result<Outcome, HandlerError> {
    let body: OffsetDeleteRequest = decode(request)?;
    let group_id = body.group_id.to_string();
    let partitions: Vec<(String, i32)> = body
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| (t.name.to_string(), p.partition_index))
        })
        .collect();
    let mut response = OffsetDeleteResponse::default();
    match context
        .broker
        .run_blocking(move |b| b.delete_offsets_blocking(&group_id, partitions))
        .await
    {
        Ok(()) => {
            response.topics = body
                .topics
                .into_iter()
                .map(|t| {
                    OffsetDeleteResponseTopic::default()
                        .with_name(t.name)
                        .with_partitions(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    OffsetDeleteResponsePartition::default()
                                        .with_partition_index(p.partition_index)
                                })
                                .collect(),
                        )
                })
                .collect();
        }
        Err(e) => response.error_code = error_code(&e),
    }
    respond(request, &response)
}
