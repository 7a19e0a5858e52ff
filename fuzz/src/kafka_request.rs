//! Kafka request frames from arbitrary bytes: the frame header decoder and the body decoder of
//! every API Strom implements must return a value or an error, never panic or abort.
//!
//! Input: a request frame without its 4-byte size prefix (what the connection hands to
//! `strom_kafka::frame::decode_request`). The body is decoded at every version Strom advertises
//! for the API, not only the one in the header, to reach more decoder paths per input.

use bytes::Bytes;
use kafka_protocol::messages::{
    AlterConfigsRequest, ApiKey, ApiVersionsRequest, CreatePartitionsRequest, CreateTopicsRequest,
    DeleteRecordsRequest, DeleteTopicsRequest, DescribeClusterRequest, DescribeConfigsRequest,
    DescribeLogDirsRequest, FetchRequest, IncrementalAlterConfigsRequest, InitProducerIdRequest,
    ListOffsetsRequest, MetadataRequest, OffsetForLeaderEpochRequest, ProduceRequest,
};
use kafka_protocol::protocol::Decodable;

fn try_decode<T: Decodable>(body: &Bytes, version: i16) {
    let mut b = body.clone();
    let _ = T::decode(&mut b, version);
}

/// Runs every check on one fuzzer input.
pub fn check(data: &[u8]) {
    let Ok(request) = strom_kafka::frame::decode_request(Bytes::copy_from_slice(data)) else {
        return;
    };
    let Some((min, max)) = strom_kafka::api::supported_versions(request.api_key)
        .or((request.api_key == ApiKey::ApiVersions).then_some((0, 4)))
    else {
        return;
    };
    for version in min..=max {
        let body = &request.body;
        match request.api_key {
            ApiKey::Produce => try_decode::<ProduceRequest>(body, version),
            ApiKey::Fetch => try_decode::<FetchRequest>(body, version),
            ApiKey::ListOffsets => try_decode::<ListOffsetsRequest>(body, version),
            ApiKey::Metadata => try_decode::<MetadataRequest>(body, version),
            ApiKey::ApiVersions => try_decode::<ApiVersionsRequest>(body, version),
            ApiKey::CreateTopics => try_decode::<CreateTopicsRequest>(body, version),
            ApiKey::DeleteTopics => try_decode::<DeleteTopicsRequest>(body, version),
            ApiKey::DeleteRecords => try_decode::<DeleteRecordsRequest>(body, version),
            ApiKey::InitProducerId => try_decode::<InitProducerIdRequest>(body, version),
            ApiKey::OffsetForLeaderEpoch => {
                try_decode::<OffsetForLeaderEpochRequest>(body, version)
            }
            ApiKey::DescribeConfigs => try_decode::<DescribeConfigsRequest>(body, version),
            ApiKey::AlterConfigs => try_decode::<AlterConfigsRequest>(body, version),
            ApiKey::DescribeLogDirs => try_decode::<DescribeLogDirsRequest>(body, version),
            ApiKey::CreatePartitions => try_decode::<CreatePartitionsRequest>(body, version),
            ApiKey::IncrementalAlterConfigs => {
                try_decode::<IncrementalAlterConfigsRequest>(body, version)
            }
            ApiKey::DescribeCluster => try_decode::<DescribeClusterRequest>(body, version),
            _ => {}
        }
    }
}
