//! Classic group protocol errors over raw sockets, with Kafka's codes: MEMBER_ID_REQUIRED (79),
//! ILLEGAL_GENERATION (22), UNKNOWN_MEMBER_ID (25), REBALANCE_IN_PROGRESS (27),
//! NON_EMPTY_GROUP (68), GROUP_ID_NOT_FOUND (69), COORDINATOR_NOT_AVAILABLE (15).

use bytes::Bytes;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, DeleteGroupsRequest, DeleteGroupsResponse, FindCoordinatorRequest,
    FindCoordinatorResponse, GroupId, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest,
    JoinGroupResponse, OffsetCommitRequest, OffsetCommitResponse, SyncGroupRequest,
    SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use strom_broker::BrokerConfig;
use strom_kafka::KafkaConfig;
use strom_tests::TestBroker;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::client;
use super::raw;

const GROUP: &str = "gerr";

fn join(member_id: &str) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str(GROUP)))
        .with_member_id(StrBytes::from_string(member_id.to_owned()))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_protocol_type(StrBytes::from_static_str("consumer"))
        .with_protocols(vec![
            JoinGroupRequestProtocol::default()
                .with_name(StrBytes::from_static_str("range"))
                .with_metadata(Bytes::from_static(b"meta")),
        ])
}

fn heartbeat(member_id: &str, generation: i32) -> HeartbeatRequest {
    HeartbeatRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str(GROUP)))
        .with_member_id(StrBytes::from_string(member_id.to_owned()))
        .with_generation_id(generation)
}

fn commit(member_id: &str, generation: i32) -> OffsetCommitRequest {
    OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str(GROUP)))
        .with_member_id(StrBytes::from_string(member_id.to_owned()))
        .with_generation_id_or_member_epoch(generation)
        .with_topics(vec![
            OffsetCommitRequestTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("errs")))
                .with_partitions(vec![
                    OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(1),
                ]),
        ])
}

async fn join_with_id(s: &mut TcpStream) -> JoinGroupResponse {
    let first: JoinGroupResponse = raw::call(s, ApiKey::JoinGroup, 5, &join("")).await;
    assert_eq!(first.error_code, 79, "MEMBER_ID_REQUIRED on a first join");
    assert!(!first.member_id.is_empty());
    raw::call(s, ApiKey::JoinGroup, 5, &join(&first.member_id)).await
}

#[tokio::test]
async fn classic_group_errors_use_kafkas_codes() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = BrokerConfig::new(dir.path());
    config.group.initial_rebalance_delay_ms = 0;
    let broker = TestBroker::start_with(config, KafkaConfig::default()).await;
    client::create_topic(&broker.bootstrap(), "errs", 1).await;
    let mut a = TcpStream::connect(broker.addr()).await.unwrap();

    let joined = join_with_id(&mut a).await;
    assert_eq!(joined.error_code, 0);
    let (m1, generation) = (joined.member_id.to_string(), joined.generation_id);
    assert_eq!(joined.leader, joined.member_id);

    let sync = |member: &str, generation: i32| {
        SyncGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str(GROUP)))
            .with_member_id(StrBytes::from_string(member.to_owned()))
            .with_generation_id(generation)
            .with_assignments(vec![
                SyncGroupRequestAssignment::default()
                    .with_member_id(StrBytes::from_string(member.to_owned()))
                    .with_assignment(Bytes::from_static(b"all")),
            ])
    };
    let r: SyncGroupResponse =
        raw::call(&mut a, ApiKey::SyncGroup, 3, &sync(&m1, generation + 1)).await;
    assert_eq!(r.error_code, 22);
    let r: SyncGroupResponse =
        raw::call(&mut a, ApiKey::SyncGroup, 3, &sync(&m1, generation)).await;
    assert_eq!(r.error_code, 0);
    assert_eq!(&r.assignment[..], b"all");

    let r: HeartbeatResponse =
        raw::call(&mut a, ApiKey::Heartbeat, 3, &heartbeat(&m1, generation)).await;
    assert_eq!(r.error_code, 0);
    let r: HeartbeatResponse = raw::call(
        &mut a,
        ApiKey::Heartbeat,
        3,
        &heartbeat(&m1, generation - 1),
    )
    .await;
    assert_eq!(r.error_code, 22);
    let r: HeartbeatResponse = raw::call(
        &mut a,
        ApiKey::Heartbeat,
        3,
        &heartbeat("nobody", generation),
    )
    .await;
    assert_eq!(r.error_code, 25);

    let r: OffsetCommitResponse = raw::call(
        &mut a,
        ApiKey::OffsetCommit,
        7,
        &commit(&m1, generation + 4),
    )
    .await;
    assert_eq!(r.topics[0].partitions[0].error_code, 22);
    let r: OffsetCommitResponse = raw::call(
        &mut a,
        ApiKey::OffsetCommit,
        7,
        &commit("nobody", generation),
    )
    .await;
    assert_eq!(r.topics[0].partitions[0].error_code, 25);
    let r: OffsetCommitResponse =
        raw::call(&mut a, ApiKey::OffsetCommit, 7, &commit(&m1, generation)).await;
    assert_eq!(r.topics[0].partitions[0].error_code, 0);

    // A second member joins: its join waits for the rebalance, and meanwhile the first
    // member's heartbeat says REBALANCE_IN_PROGRESS.
    let mut b = TcpStream::connect(broker.addr()).await.unwrap();
    let first: JoinGroupResponse = raw::call(&mut b, ApiKey::JoinGroup, 5, &join("")).await;
    assert_eq!(first.error_code, 79);
    b.write_all(&raw::frame(
        ApiKey::JoinGroup,
        5,
        42,
        &join(&first.member_id),
    ))
    .await
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let r: HeartbeatResponse =
            raw::call(&mut a, ApiKey::Heartbeat, 3, &heartbeat(&m1, generation)).await;
        if r.error_code == 27 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never REBALANCE_IN_PROGRESS"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let rejoined: JoinGroupResponse = raw::call(&mut a, ApiKey::JoinGroup, 5, &join(&m1)).await;
    assert_eq!(rejoined.error_code, 0);
    assert_eq!(rejoined.generation_id, generation + 1);

    // DeleteGroups: NON_EMPTY_GROUP while members remain, GROUP_ID_NOT_FOUND for unknown ids.
    let delete = DeleteGroupsRequest::default().with_groups_names(vec![
        GroupId(StrBytes::from_static_str(GROUP)),
        GroupId(StrBytes::from_static_str("never-existed")),
    ]);
    let r: DeleteGroupsResponse = raw::call(&mut a, ApiKey::DeleteGroups, 2, &delete).await;
    let codes: Vec<i16> = r
        .results
        .iter()
        .map(|g: &DeletableGroupResult| g.error_code)
        .collect();
    assert_eq!(codes, [68, 69]);

    // FindCoordinator for an unknown key type (2 is a share group, not offered): INVALID_REQUEST.
    let find = FindCoordinatorRequest::default()
        .with_key(StrBytes::from_static_str("share"))
        .with_key_type(2);
    let r: FindCoordinatorResponse = raw::call(&mut a, ApiKey::FindCoordinator, 3, &find).await;
    assert_eq!(r.error_code, 42);
    broker.stop().await;
}
