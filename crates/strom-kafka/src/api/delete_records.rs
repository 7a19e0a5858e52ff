//! DeleteRecords (key 21): advance partitions' log start offsets.

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use kafka_protocol::error::ResponseError;

use super::{HandlerError, Outcome, decode, respond};
use crate::error_code::error_code;
use crate::frame::Request;
use crate::{Context, authz};
use strom_broker::acl::AclOperation;

/// Handles DeleteRecords. An offset of -1 means "up to the high watermark".
pub async fn handle(context: &Context, request: &Request) -> Result<Outcome, HandlerError> {
    let body: DeleteRecordsRequest = decode(request)?;
    // With an authorizer: DELETE on each topic (TOPIC_AUTHORIZATION_FAILED).
    let denied = authz::denied_topics(
        context,
        request,
        AclOperation::Delete,
        body.topics.iter().map(|t| t.name.0.as_str()),
    );
    let topics = context
        .broker
        .run_blocking(move |broker| {
            Ok(body
                .topics
                .into_iter()
                .map(|t| {
                    let partitions = t
                        .partitions
                        .iter()
                        .map(|p| {
                            let mut r = DeleteRecordsPartitionResult::default()
                                .with_partition_index(p.partition_index)
                                .with_low_watermark(-1);
                            // -1 is "up to the high watermark"; anything lower is out of
                            // range (Kafka's answer to librdkafka's 0081 with -1001).
                            if denied.contains(t.name.0.as_str()) {
                                r.error_code = authz::topic_denied_code();
                                return r;
                            }
                            if p.offset < -1 {
                                r.error_code = ResponseError::OffsetOutOfRange.code();
                                return r;
                            }
                            let outcome = broker
                                .partition(t.name.0.as_str(), p.partition_index)
                                .and_then(|part| {
                                    let before = if p.offset == -1 {
                                        part.high_watermark()
                                    } else {
                                        p.offset
                                    };
                                    part.delete_records_blocking(before)
                                });
                            match outcome {
                                Ok(low) => r.low_watermark = low,
                                Err(e) => r.error_code = error_code(&e),
                            }
                            r
                        })
                        .collect();
                    DeleteRecordsTopicResult::default()
                        .with_name(t.name)
                        .with_partitions(partitions)
                })
                .collect::<Vec<_>>())
        })
        .await
        .map_err(|e| HandlerError::Internal(e.to_string()))?;
    respond(
        request,
        &DeleteRecordsResponse::default().with_topics(topics),
    )
}
