//! DescribeLogDirs (key 35): the data directory and each partition's size on disk.

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::{HandlerError, Outcome, decode, respond};
use crate::error_code::error_code;
use crate::frame::Request;
use crate::{Context, authz};
use strom_broker::acl::AclOperation;

/// Handles DescribeLogDirs (`topics` null means every partition).
pub async fn handle(context: &Context, request: &Request) -> Result<Outcome, HandlerError> {
    let body: DescribeLogDirsRequest = decode(request)?;
    // With an authorizer: DESCRIBE on the cluster (CLUSTER_AUTHORIZATION_FAILED, v3+ has the
    // top-level error; older versions get no directories, as Kafka answers them).
    if let Err(e) = authz::check_cluster(context, request, AclOperation::Describe) {
        let mut response = DescribeLogDirsResponse::default();
        if request.version() >= 3 {
            response.error_code = error_code(&e);
        }
        return respond(request, &response);
    }
    let broker = &context.broker;
    let wanted: Option<BTreeMap<String, Vec<i32>>> = body.topics.map(|list| {
        list.into_iter()
            .map(|t| (t.topic.0.to_string(), t.partitions))
            .collect()
    });
    let mut topics = Vec::new();
    for topic in broker.topics() {
        let filter = match &wanted {
            None => None,
            Some(map) => match map.get(topic.name()) {
                Some(parts) => Some(parts),
                None => continue,
            },
        };
        let partitions: Vec<_> = topic
            .partitions()
            .iter()
            .filter(|p| filter.is_none_or(|f| f.contains(&p.index())))
            .map(|p| {
                DescribeLogDirsPartition::default()
                    .with_partition_index(p.index())
                    .with_partition_size(i64::try_from(p.size_bytes()).unwrap_or(i64::MAX))
                    .with_offset_lag(0)
            })
            .collect();
        if !partitions.is_empty() {
            topics.push(
                DescribeLogDirsTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic.name().to_owned())))
                    .with_partitions(partitions),
            );
        }
    }
    let dir = std::path::absolute(&broker.config().data_dir)
        .unwrap_or_else(|_| broker.config().data_dir.clone());
    let result = DescribeLogDirsResult::default()
        .with_log_dir(StrBytes::from_string(dir.display().to_string()))
        .with_topics(topics)
        .with_total_bytes(-1)
        .with_usable_bytes(-1);
    respond(
        request,
        &DescribeLogDirsResponse::default().with_results(vec![result]),
    )
}
