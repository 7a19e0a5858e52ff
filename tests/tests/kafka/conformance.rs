//! Protocol and admin details found by running Kafka's own clients and librdkafka's
//! integration tests against Strom: each answer is the one Kafka gives.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, ProduceRequest, ProduceResponse,
    RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use strom_record::{BatchBuilder, Record};
use strom_tests::TestBroker;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::raw::{call, produce_request, read_frame};

pub(crate) fn topic_name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_owned()))
}

pub(crate) fn produce_one(topic: &str, partition: i32) -> ProduceRequest {
    let batch = BatchBuilder::new()
        .build(&[Record::new(
            1_000,
            Some(Bytes::from("k")),
            Some(Bytes::from("v")),
        )])
        .unwrap();
    produce_request(topic, partition, batch)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_versions_at_an_unknown_version_answers_v0_with_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let mut s = TcpStream::connect(broker.addr()).await.unwrap();
    // What a newer client sends: header v2, its newest body (here v3's layout) at version 127.
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::ApiVersions as i16)
        .with_request_api_version(127)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("future-client")));
    let mut payload = BytesMut::new();
    header.encode(&mut payload, 2).unwrap();
    ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("future"))
        .with_client_software_version(StrBytes::from_static_str("9.9"))
        .encode(&mut payload, 3)
        .unwrap();
    let mut frame = BytesMut::new();
    frame.put_i32(payload.len() as i32);
    frame.extend_from_slice(&payload);
    s.write_all(&frame).await.unwrap();

    let mut response = read_frame(&mut s)
        .await
        .expect("an answer, not a closed connection");
    let header = ResponseHeader::decode(&mut response, 0).unwrap();
    assert_eq!(header.correlation_id, 7);
    let body = ApiVersionsResponse::decode(&mut response, 0).unwrap();
    assert_eq!(body.error_code, 35, "UNSUPPORTED_VERSION");
    let api_versions = body
        .api_keys
        .iter()
        .find(|k| k.api_key == ApiKey::ApiVersions as i16)
        .expect("the table lists ApiVersions");
    assert_eq!((api_versions.min_version, api_versions.max_version), (0, 4));
    assert!(
        body.api_keys
            .iter()
            .any(|k| k.api_key == ApiKey::Produce as i16)
    );

    // The connection stays usable: the client retries at a version both know.
    let again: ApiVersionsResponse = call(
        &mut s,
        ApiKey::ApiVersions,
        3,
        &ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("future"))
            .with_client_software_version(StrBytes::from_static_str("9.9")),
    )
    .await;
    assert_eq!(again.error_code, 0);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_to_a_missing_topic_is_unknown_topic_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let mut s = TcpStream::connect(broker.addr()).await.unwrap();
    for version in [3, 9, 12] {
        let r: ProduceResponse = call(
            &mut s,
            ApiKey::Produce,
            version,
            &produce_one("never-made", 0),
        )
        .await;
        let p = &r.responses[0].partition_responses[0];
        assert_eq!(p.error_code, 3, "UNKNOWN_TOPIC_OR_PARTITION at v{version}");
        assert_eq!(p.base_offset, -1);
    }
    assert!(
        broker.broker().topic("never-made").is_err(),
        "Produce never creates a topic (auto.create.topics.enable is on)"
    );
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_details_match_kafka() {
    use std::collections::BTreeMap;

    use kafka_protocol::messages::alter_configs_request::{AlterConfigsResource, AlterableConfig};
    use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
    use kafka_protocol::messages::delete_records_request::{
        DeleteRecordsPartition, DeleteRecordsTopic,
    };
    use kafka_protocol::messages::incremental_alter_configs_request as iac;
    use kafka_protocol::messages::offset_delete_request::{
        OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
    };
    use kafka_protocol::messages::{
        AlterConfigsRequest, AlterConfigsResponse, ConsumerGroupHeartbeatRequest,
        ConsumerGroupHeartbeatResponse, DeleteRecordsRequest, DeleteRecordsResponse, GroupId,
        IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse, ListGroupsRequest,
        ListGroupsResponse, OffsetDeleteRequest, OffsetDeleteResponse,
    };
    use strom_broker::BrokerConfig;
    use strom_kafka::KafkaConfig;
    use strom_kafka::client::Client;
    use strom_kafka::client::group::{GroupMember, MemberTimeouts};

    let dir = tempfile::tempdir().unwrap();
    let mut config = BrokerConfig::new(dir.path());
    config.group.initial_rebalance_delay_ms = 0;
    let broker = TestBroker::start_with(config, KafkaConfig::default()).await;
    let bootstrap = broker.bootstrap();
    super::client::create_topic(&bootstrap, "sub", 1).await;
    super::client::create_topic(&bootstrap, "other", 1).await;
    let mut s = TcpStream::connect(broker.addr()).await.unwrap();

    // DeleteRecords below -1 is OFFSET_OUT_OF_RANGE; -1 means "up to the high watermark".
    let _: ProduceResponse = call(&mut s, ApiKey::Produce, 9, &produce_one("sub", 0)).await;
    let delete = |offset: i64| {
        DeleteRecordsRequest::default()
            .with_timeout_ms(5000)
            .with_topics(vec![
                DeleteRecordsTopic::default()
                    .with_name(topic_name("sub"))
                    .with_partitions(vec![
                        DeleteRecordsPartition::default()
                            .with_partition_index(0)
                            .with_offset(offset),
                    ]),
            ])
    };
    let r: DeleteRecordsResponse = call(&mut s, ApiKey::DeleteRecords, 2, &delete(-1001)).await;
    assert_eq!(
        r.topics[0].partitions[0].error_code, 1,
        "OFFSET_OUT_OF_RANGE"
    );
    let r: DeleteRecordsResponse = call(&mut s, ApiKey::DeleteRecords, 2, &delete(-1)).await;
    assert_eq!(r.topics[0].partitions[0].error_code, 0);
    assert_eq!(r.topics[0].partitions[0].low_watermark, 1);

    // AlterConfigs and IncrementalAlterConfigs on a missing topic: UNKNOWN_TOPIC_OR_PARTITION,
    // even when the config itself is bad.
    for (version, key, value) in [
        (1, "retention.ms", "1000"),
        (2, "retention.ms", "1000"),
        (1, "retention.ms", "soon"),
    ] {
        let r: AlterConfigsResponse = call(
            &mut s,
            ApiKey::AlterConfigs,
            version,
            &AlterConfigsRequest::default().with_resources(vec![
                AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(StrBytes::from_static_str("missing"))
                    .with_configs(vec![
                        AlterableConfig::default()
                            .with_name(StrBytes::from_static_str(key))
                            .with_value(Some(StrBytes::from_static_str(value))),
                    ]),
            ]),
        )
        .await;
        assert_eq!(r.responses[0].error_code, 3, "AlterConfigs {key}={value}");
    }
    let r: IncrementalAlterConfigsResponse = call(
        &mut s,
        ApiKey::IncrementalAlterConfigs,
        1,
        &IncrementalAlterConfigsRequest::default().with_resources(vec![
            iac::AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("missing"))
                .with_configs(vec![
                    iac::AlterableConfig::default()
                        .with_name(StrBytes::from_static_str("retention.ms"))
                        .with_config_operation(0)
                        .with_value(Some(StrBytes::from_static_str("1000"))),
                ]),
        ]),
    )
    .await;
    assert_eq!(r.responses[0].error_code, 3, "IncrementalAlterConfigs");

    // A classic group subscribed to "sub" with offsets for "sub" and "other": OffsetDelete
    // answers per partition.
    let mut client = Client::connect(&bootstrap).await.unwrap();
    client
        .commit_offsets(
            "g",
            "",
            -1,
            &[("sub".to_owned(), 0, 1), ("other".to_owned(), 0, 1)],
        )
        .await
        .unwrap();
    let mut member = GroupMember::connect(
        &mut client,
        &bootstrap,
        "g",
        vec!["sub".to_owned()],
        MemberTimeouts::default(),
    )
    .await
    .unwrap();
    member
        .join(&BTreeMap::from([("sub".to_owned(), 1)]))
        .await
        .unwrap();
    let offset_delete = |group: &str| {
        OffsetDeleteRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group.to_owned())))
            .with_topics(vec![
                OffsetDeleteRequestTopic::default()
                    .with_name(topic_name("sub"))
                    .with_partitions(vec![
                        OffsetDeleteRequestPartition::default().with_partition_index(0),
                    ]),
                OffsetDeleteRequestTopic::default()
                    .with_name(topic_name("other"))
                    .with_partitions(vec![
                        OffsetDeleteRequestPartition::default().with_partition_index(0),
                    ]),
            ])
    };
    let r: OffsetDeleteResponse = call(&mut s, ApiKey::OffsetDelete, 0, &offset_delete("g")).await;
    assert_eq!(r.error_code, 0);
    let codes: Vec<(&str, i16)> = r
        .topics
        .iter()
        .map(|t| (t.name.0.as_str(), t.partitions[0].error_code))
        .collect();
    assert_eq!(
        codes,
        [("sub", 86), ("other", 0)],
        "GROUP_SUBSCRIBED_TO_TOPIC per partition"
    );
    let committed = member.committed().await.unwrap();
    assert_eq!(committed.get(&("sub".to_owned(), 0)), Some(&1));
    assert_eq!(committed.get(&("other".to_owned(), 0)), None, "deleted");
    let r: OffsetDeleteResponse = call(
        &mut s,
        ApiKey::OffsetDelete,
        0,
        &offset_delete("no-such-group"),
    )
    .await;
    assert_eq!(r.error_code, 69, "GROUP_ID_NOT_FOUND");

    // A KIP-848 group subscribed to "other".
    let hb = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("g848")))
        .with_member_id(StrBytes::from_static_str("m848"))
        .with_member_epoch(0)
        .with_rebalance_timeout_ms(10_000)
        .with_subscribed_topic_names(Some(vec![topic_name("other")]))
        .with_topic_partitions(Some(Vec::<TopicPartitions>::new()));
    let joined: ConsumerGroupHeartbeatResponse =
        call(&mut s, ApiKey::ConsumerGroupHeartbeat, 1, &hb).await;
    assert_eq!(joined.error_code, 0);
    let r: OffsetDeleteResponse =
        call(&mut s, ApiKey::OffsetDelete, 0, &offset_delete("g848")).await;
    let codes: Vec<(&str, i16)> = r
        .topics
        .iter()
        .map(|t| (t.name.0.as_str(), t.partitions[0].error_code))
        .collect();
    assert_eq!(codes, [("sub", 0), ("other", 86)]);

    // ListGroups v5: the group type in the answer, and the type filter (case-insensitive).
    let list = |types: &[&str]| {
        ListGroupsRequest::default().with_types_filter(
            types
                .iter()
                .map(|t| StrBytes::from_string((*t).to_owned()))
                .collect(),
        )
    };
    let r: ListGroupsResponse = call(&mut s, ApiKey::ListGroups, 5, &list(&[])).await;
    let mut groups: Vec<(&str, &str)> = r
        .groups
        .iter()
        .map(|g| (g.group_id.0.as_str(), g.group_type.as_str()))
        .collect();
    groups.sort();
    assert_eq!(groups, [("g", "classic"), ("g848", "consumer")]);
    let r: ListGroupsResponse = call(&mut s, ApiKey::ListGroups, 5, &list(&["Consumer"])).await;
    let only: Vec<&str> = r.groups.iter().map(|g| g.group_id.0.as_str()).collect();
    assert_eq!(only, ["g848"]);
    let r: ListGroupsResponse = call(&mut s, ApiKey::ListGroups, 5, &list(&["classic"])).await;
    let only: Vec<&str> = r.groups.iter().map(|g| g.group_id.0.as_str()).collect();
    assert_eq!(only, ["g"]);

    member.leave().await.unwrap();
    broker.stop().await;
}
