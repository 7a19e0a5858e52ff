//! ACL and SCRAM-credential admin APIs over a real socket, through the protocol client the CLI
//! uses (librdkafka's own checks of these APIs run in compat/librdkafka_tests.sh, 0081).

use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_user_scram_credentials_request::ScramCredentialUpsertion;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse, ApiKey, DeleteAclsRequest,
    DeleteAclsResponse, DescribeAclsRequest, DescribeAclsResponse,
};
use kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse};
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, DeleteRecordsRequest, DeleteRecordsResponse,
    DescribeGroupsRequest, DescribeGroupsResponse, OffsetFetchRequest, OffsetFetchResponse,
};
use kafka_protocol::messages::{DescribeTransactionsRequest, DescribeTransactionsResponse};
use kafka_protocol::messages::{
    FindCoordinatorRequest, FindCoordinatorResponse, GroupId, InitProducerIdRequest,
    InitProducerIdResponse, JoinGroupRequest, JoinGroupResponse, OffsetCommitRequest,
    OffsetCommitResponse, ProducerId, TopicName, TransactionalId,
};
use strom_broker::BrokerConfig;
use strom_broker::acl::{
    AclBinding, AclBindingFilter, AclOperation, AclPermission, PatternFilter, PatternType,
    ResourceType,
};
use strom_broker::scram::ScramMechanism;
use strom_kafka::KafkaConfig;
use strom_kafka::client::acl::ScramUpsert;
use strom_kafka::client::{Client, ClientError};
use strom_tests::TestBroker;

const BOUND: Duration = Duration::from_secs(60);

fn code(e: &ClientError) -> ResponseError {
    match e {
        ClientError::Kafka { error, .. } => *error,
        other => panic!("not a Kafka error: {other}"),
    }
}

fn acl(name: &str, pattern: PatternType, principal: &str, op: AclOperation) -> AclBinding {
    AclBinding {
        resource_type: ResourceType::Topic,
        resource_name: name.to_owned(),
        pattern_type: pattern,
        principal: principal.to_owned(),
        host: "*".to_owned(),
        operation: op,
        permission: AclPermission::Allow,
    }
}

/// The authorizer on; every client is `User:ANONYMOUS` until SASL exists, so it is the super
/// user that may manage ACLs (without it, and without ACLs, nothing is allowed).
fn with_authorizer(dir: &std::path::Path) -> BrokerConfig {
    let mut config = BrokerConfig::new(dir);
    config.authorizer.enabled = true;
    config.authorizer.super_users = vec![strom_kafka::authz::ANONYMOUS.to_owned()];
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_apis_answer_security_disabled_without_an_authorizer() {
    tokio::time::timeout(BOUND, async {
        let dir = tempfile::tempdir().unwrap();
        let broker = TestBroker::start(dir.path()).await;
        let mut c = Client::connect(&broker.bootstrap()).await.unwrap();
        let a = acl("t", PatternType::Literal, "User:alice", AclOperation::Read);
        let created = c.create_acls(&[a]).await.unwrap();
        assert_eq!(
            code(created[0].as_ref().unwrap_err()),
            ResponseError::SecurityDisabled
        );
        let e = c.describe_acls(&AclBindingFilter::any()).await.unwrap_err();
        assert_eq!(code(&e), ResponseError::SecurityDisabled);
        let deleted = c.delete_acls(&[AclBindingFilter::any()]).await.unwrap();
        assert_eq!(
            code(deleted[0].as_ref().unwrap_err()),
            ResponseError::SecurityDisabled
        );
        broker.stop().await;
    })
    .await
    .expect("bounded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acls_are_created_filtered_deleted_and_survive_a_restart() {
    tokio::time::timeout(BOUND, async {
        let dir = tempfile::tempdir().unwrap();
        let broker =
            TestBroker::start_with(with_authorizer(dir.path()), KafkaConfig::default()).await;
        let mut c = Client::connect(&broker.bootstrap()).await.unwrap();
        let lit = acl(
            "orders",
            PatternType::Literal,
            "User:alice",
            AclOperation::Read,
        );
        let pre = acl(
            "ord",
            PatternType::Prefixed,
            "User:bob",
            AclOperation::Write,
        );
        let wild = acl("*", PatternType::Literal, "User:*", AclOperation::Describe);
        let other = acl(
            "payments",
            PatternType::Literal,
            "User:alice",
            AclOperation::Read,
        );
        let bad_cluster = AclBinding {
            resource_type: ResourceType::Cluster,
            ..lit.clone()
        };
        let mut empty_name = lit.clone();
        empty_name.resource_name.clear();
        let created = c
            .create_acls(&[
                lit.clone(),
                bad_cluster,
                pre.clone(),
                empty_name,
                wild.clone(),
                other.clone(),
            ])
            .await
            .unwrap();
        let codes: Vec<Option<ResponseError>> =
            created.iter().map(|r| r.as_ref().err().map(code)).collect();
        assert_eq!(
            codes,
            vec![
                None,
                Some(ResponseError::InvalidRequest),
                None,
                Some(ResponseError::InvalidRequest),
                None,
                None
            ]
        );
        // Creating an existing ACL again is a no-op success.
        assert!(c.create_acls(std::slice::from_ref(&lit)).await.unwrap()[0].is_ok());

        let mut all = c.describe_acls(&AclBindingFilter::any()).await.unwrap();
        all.sort();
        let mut expected = vec![lit.clone(), pre.clone(), wild.clone(), other.clone()];
        expected.sort();
        assert_eq!(all, expected);
        // MATCH: what applies to the topic "orders".
        let matching = AclBindingFilter {
            resource_type: Some(ResourceType::Topic),
            resource_name: Some("orders".to_owned()),
            pattern: PatternFilter::Match,
            ..AclBindingFilter::any()
        };
        let mut got = c.describe_acls(&matching).await.unwrap();
        got.sort();
        let mut want = vec![lit.clone(), pre.clone(), wild.clone()];
        want.sort();
        assert_eq!(got, want);
        // A filter with an UNKNOWN code is INVALID_REQUEST.
        let bad: DescribeAclsResponse = c
            .call(
                ApiKey::DescribeAcls,
                3,
                &DescribeAclsRequest::default()
                    .with_resource_type_filter(0)
                    .with_pattern_type_filter(1)
                    .with_operation(1)
                    .with_permission_type(1),
            )
            .await
            .unwrap();
        assert_eq!(bad.error_code, ResponseError::InvalidRequest.code());

        // DeleteAcls: one bad filter fails alone; the others delete.
        let deleted: DeleteAclsResponse = c
            .call(
                ApiKey::DeleteAcls,
                3,
                &DeleteAclsRequest::default().with_filters(vec![
                    DeleteAclsFilter::default()
                        .with_resource_name_filter(None)
                        .with_principal_filter(None)
                        .with_host_filter(None)
                        .with_resource_type_filter(ResourceType::Topic.code())
                        .with_pattern_type_filter(PatternType::Prefixed.code())
                        .with_operation(1)
                        .with_permission_type(1),
                    DeleteAclsFilter::default()
                        .with_resource_type_filter(1)
                        .with_pattern_type_filter(0)
                        .with_operation(1)
                        .with_permission_type(1),
                ]),
            )
            .await
            .unwrap();
        assert_eq!(deleted.filter_results[0].error_code, 0);
        assert_eq!(deleted.filter_results[0].matching_acls.len(), 1);
        assert_eq!(
            deleted.filter_results[0].matching_acls[0]
                .principal
                .as_str(),
            "User:bob"
        );
        assert_eq!(
            deleted.filter_results[1].error_code,
            ResponseError::InvalidRequest.code()
        );
        let by_principal = AclBindingFilter {
            principal: Some("User:alice".to_owned()),
            resource_name: Some("payments".to_owned()),
            ..AclBindingFilter::any()
        };
        let gone = c.delete_acls(&[by_principal]).await.unwrap();
        assert_eq!(gone[0].as_ref().unwrap(), &vec![other.clone()]);
        drop(c);

        let broker = broker.restart(with_authorizer(dir.path())).await;
        let mut c = Client::connect(&broker.bootstrap()).await.unwrap();
        let mut all = c.describe_acls(&AclBindingFilter::any()).await.unwrap();
        all.sort();
        let mut expected = vec![lit, wild];
        expected.sort();
        assert_eq!(all, expected);
        broker.stop().await;
    })
    .await
    .expect("bounded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_credentials_follow_kafka_rules_and_survive_a_restart() {
    tokio::time::timeout(BOUND, async {
        let dir = tempfile::tempdir().unwrap();
        let broker = TestBroker::start(dir.path()).await;
        let mut c = Client::connect(&broker.bootstrap()).await.unwrap();
        let described = c
            .describe_scram_credentials(Some(&["alice"]))
            .await
            .unwrap();
        assert_eq!(described[0].0, "alice");
        assert_eq!(
            code(described[0].1.as_ref().unwrap_err()),
            ResponseError::ResourceNotFound
        );

        let upsert = |user, mechanism, iterations| ScramUpsert {
            user,
            mechanism,
            iterations,
            salt: b"0123456789abcdef",
            password: b"secret",
        };
        let results = c
            .alter_scram_credentials(
                &[("carol", ScramMechanism::Sha256)],
                &[
                    upsert("alice", ScramMechanism::Sha256, 8192),
                    upsert("bob", ScramMechanism::Sha256, 100),
                    upsert("dave", ScramMechanism::Sha512, 20000),
                    upsert("eve", ScramMechanism::Sha256, 4096),
                    upsert("eve", ScramMechanism::Sha256, 5000),
                ],
            )
            .await
            .unwrap();
        let codes: Vec<(String, Option<ResponseError>)> = results
            .iter()
            .map(|(u, r)| (u.clone(), r.as_ref().err().map(code)))
            .collect();
        assert_eq!(
            codes,
            vec![
                ("carol".to_owned(), Some(ResponseError::ResourceNotFound)),
                ("alice".to_owned(), None),
                (
                    "bob".to_owned(),
                    Some(ResponseError::UnacceptableCredential)
                ),
                (
                    "dave".to_owned(),
                    Some(ResponseError::UnacceptableCredential)
                ),
                ("eve".to_owned(), Some(ResponseError::DuplicateResource)),
            ]
        );
        // One user once per request: a second mechanism in another request.
        let second = c
            .alter_scram_credentials(&[], &[upsert("alice", ScramMechanism::Sha512, 4096)])
            .await
            .unwrap();
        assert!(second[0].1.is_ok());
        // An unknown mechanism code.
        let unknown: AlterUserScramCredentialsResponse = c
            .call(
                ApiKey::AlterUserScramCredentials,
                0,
                &AlterUserScramCredentialsRequest::default().with_upsertions(vec![
                    ScramCredentialUpsertion::default()
                        .with_name("frank".into())
                        .with_mechanism(3)
                        .with_iterations(4096)
                        .with_salt(bytes::Bytes::from_static(b"s"))
                        .with_salted_password(bytes::Bytes::from_static(b"p")),
                ]),
            )
            .await
            .unwrap();
        assert_eq!(
            unknown.results[0].error_code,
            ResponseError::UnsupportedSaslMechanism.code()
        );
        // The stored keys are what RFC 5802 derives from the salted password.
        let stored = broker
            .broker()
            .scram()
            .credential("alice", ScramMechanism::Sha256)
            .unwrap();
        let salted = strom_broker::scram::salted_password(
            ScramMechanism::Sha256,
            b"secret",
            b"0123456789abcdef",
            8192,
        );
        let expected = strom_broker::scram::ScramCredential::from_salted_password(
            ScramMechanism::Sha256,
            b"0123456789abcdef",
            8192,
            &salted,
        );
        assert_eq!(stored, expected);
        drop(c);

        let broker = broker.restart(BrokerConfig::new(dir.path())).await;
        let mut c = Client::connect(&broker.bootstrap()).await.unwrap();
        let all = c.describe_scram_credentials(None).await.unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].0, "alice");
        assert_eq!(all[0].1.as_ref().unwrap(), &vec![(1, 8192), (2, 4096)]);
        let dup = c
            .describe_scram_credentials(Some(&["alice", "alice"]))
            .await
            .unwrap();
        assert_eq!(
            code(dup[0].1.as_ref().unwrap_err()),
            ResponseError::DuplicateResource
        );
        let deleted = c
            .alter_scram_credentials(&[("alice", ScramMechanism::Sha512)], &[])
            .await
            .unwrap();
        assert!(deleted[0].1.is_ok());
        let after = c
            .describe_scram_credentials(Some(&["alice"]))
            .await
            .unwrap();
        assert_eq!(after[0].1.as_ref().unwrap(), &vec![(1, 8192)]);
        broker.stop().await;
    })
    .await
    .expect("bounded");
}

/// Kafka's codes from the ACLs, seen by librdkafka, for `User:ANONYMOUS` (every client until
/// SASL exists) with `allow.everyone.if.no.acl.found`: a resource with any ACL needs an ALLOW.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acls_are_enforced_with_kafka_codes() {
    use rdkafka::Offset;
    use rdkafka::TopicPartitionList;
    use rdkafka::admin::AdminOptions;
    use rdkafka::consumer::Consumer;
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};
    use rdkafka::producer::FutureRecord;

    use super::client;

    tokio::time::timeout(Duration::from_secs(120), async {
        let dir = tempfile::tempdir().unwrap();
        let mut config = BrokerConfig::new(dir.path());
        config.authorizer.enabled = true;
        config.authorizer.allow_everyone_if_no_acl_found = true;
        let broker = TestBroker::start_with(config.clone(), KafkaConfig::default()).await;
        let bootstrap = broker.bootstrap();
        for t in ["open", "closed", "hidden"] {
            client::create_topic(&bootstrap, t, 1).await;
        }
        let rule = |name: &str, op, permission| AclBinding {
            permission,
            ..acl(name, PatternType::Literal, "User:*", op)
        };
        let mut c = Client::connect(&bootstrap).await.unwrap();
        let created = c
            .create_acls(&[
                rule("closed", AclOperation::Describe, AclPermission::Allow),
                rule("closed", AclOperation::Write, AclPermission::Deny),
                rule("closed", AclOperation::Read, AclPermission::Deny),
                rule("closed", AclOperation::Delete, AclPermission::Deny),
                rule("hidden", AclOperation::Describe, AclPermission::Deny),
                AclBinding {
                    pattern_type: PatternType::Prefixed,
                    ..rule("nocreate-", AclOperation::Create, AclPermission::Deny)
                },
                AclBinding {
                    resource_type: ResourceType::Cluster,
                    ..rule("kafka-cluster", AclOperation::Create, AclPermission::Deny)
                },
                AclBinding {
                    resource_type: ResourceType::Cluster,
                    ..rule("kafka-cluster", AclOperation::All, AclPermission::Allow)
                },
            ])
            .await
            .unwrap();
        assert!(created.iter().all(Result::is_ok), "{created:?}");

        // Groups: DENY READ on a group refuses joining and committing with
        // GROUP_AUTHORIZATION_FAILED; with an ACL on it and no ALLOW DESCRIBE, FindCoordinator
        // is refused too. Another group is open.
        let group_acl = AclBinding {
            resource_type: ResourceType::Group,
            ..rule("closed-group", AclOperation::Read, AclPermission::Deny)
        };
        assert!(c.create_acls(&[group_acl]).await.unwrap()[0].is_ok());
        for (group, expected) in [
            (
                "closed-group",
                ResponseError::GroupAuthorizationFailed.code(),
            ),
            ("open-group", 0),
        ] {
            let found: FindCoordinatorResponse = c
                .call(
                    ApiKey::FindCoordinator,
                    3,
                    &FindCoordinatorRequest::default().with_key(group.into()),
                )
                .await
                .unwrap();
            assert_eq!(found.error_code, expected, "{group}");
        }
        let joined: JoinGroupResponse = c
            .call(
                ApiKey::JoinGroup,
                5,
                &JoinGroupRequest::default()
                    .with_group_id(GroupId("closed-group".into()))
                    .with_session_timeout_ms(10_000)
                    .with_rebalance_timeout_ms(10_000)
                    .with_protocol_type("consumer".into()),
            )
            .await
            .unwrap();
        assert_eq!(
            joined.error_code,
            ResponseError::GroupAuthorizationFailed.code()
        );
        let committed: OffsetCommitResponse = c
            .call(
                ApiKey::OffsetCommit,
                7,
                &OffsetCommitRequest::default()
                    .with_group_id(GroupId("closed-group".into()))
                    .with_generation_id_or_member_epoch(-1)
                    .with_topics(vec![
                        OffsetCommitRequestTopic::default()
                            .with_name(TopicName("open".into()))
                            .with_partitions(vec![
                                OffsetCommitRequestPartition::default()
                                    .with_partition_index(0)
                                    .with_committed_offset(0),
                            ]),
                    ]),
            )
            .await
            .unwrap();
        assert_eq!(
            committed.topics[0].partitions[0].error_code,
            ResponseError::GroupAuthorizationFailed.code()
        );

        let described: DescribeGroupsResponse = c
            .call(
                ApiKey::DescribeGroups,
                5,
                &DescribeGroupsRequest::default()
                    .with_groups(vec![
                        GroupId("closed-group".into()),
                        GroupId("open-group".into()),
                    ])
                    .with_include_authorized_operations(true),
            )
            .await
            .unwrap();
        assert_eq!(
            described.groups[0].error_code,
            ResponseError::GroupAuthorizationFailed.code()
        );
        assert_eq!(described.groups[1].error_code, 0);
        // READ(3), DESCRIBE(8), DELETE(6), DESCRIBE_CONFIGS(10), ALTER_CONFIGS(11): an
        // ACL-less group is open to everyone.
        assert_eq!(
            described.groups[1].authorized_operations,
            (1 << 3) | (1 << 6) | (1 << 8) | (1 << 10) | (1 << 11)
        );
        let fetched: OffsetFetchResponse = c
            .call(
                ApiKey::OffsetFetch,
                7,
                &OffsetFetchRequest::default()
                    .with_group_id(GroupId("closed-group".into()))
                    .with_topics(None),
            )
            .await
            .unwrap();
        assert_eq!(
            fetched.error_code,
            ResponseError::GroupAuthorizationFailed.code()
        );

        // OffsetCommit to an open group: per topic, READ.
        let committed: OffsetCommitResponse = c
            .call(
                ApiKey::OffsetCommit,
                7,
                &OffsetCommitRequest::default()
                    .with_group_id(GroupId("open-group".into()))
                    .with_generation_id_or_member_epoch(-1)
                    .with_topics(
                        ["open", "closed"]
                            .into_iter()
                            .map(|t| {
                                OffsetCommitRequestTopic::default()
                                    .with_name(TopicName(t.into()))
                                    .with_partitions(vec![
                                        OffsetCommitRequestPartition::default()
                                            .with_partition_index(0)
                                            .with_committed_offset(0),
                                    ])
                            })
                            .collect(),
                    ),
            )
            .await
            .unwrap();
        let codes: Vec<(&str, i16)> = committed
            .topics
            .iter()
            .map(|t| (t.name.0.as_str(), t.partitions[0].error_code))
            .collect();
        assert_eq!(
            codes,
            vec![
                ("open", 0),
                ("closed", ResponseError::TopicAuthorizationFailed.code())
            ]
        );
        let beat: ConsumerGroupHeartbeatResponse = c
            .call(
                ApiKey::ConsumerGroupHeartbeat,
                0,
                &ConsumerGroupHeartbeatRequest::default()
                    .with_group_id(GroupId("closed-group".into()))
                    .with_member_epoch(0)
                    .with_rebalance_timeout_ms(10_000)
                    .with_subscribed_topic_names(Some(vec![TopicName("open".into())]))
                    .with_topic_partitions(Some(Vec::new())),
            )
            .await
            .unwrap();
        assert_eq!(
            beat.error_code,
            ResponseError::GroupAuthorizationFailed.code()
        );

        // Transactions: WRITE on the transactional id.
        let txn_acl = AclBinding {
            resource_type: ResourceType::TransactionalId,
            ..rule("closed-txn", AclOperation::Write, AclPermission::Deny)
        };
        assert!(c.create_acls(&[txn_acl]).await.unwrap()[0].is_ok());
        for (id, expected) in [
            (
                "closed-txn",
                ResponseError::TransactionalIdAuthorizationFailed.code(),
            ),
            ("open-txn", 0),
        ] {
            let init: InitProducerIdResponse = c
                .call(
                    ApiKey::InitProducerId,
                    4,
                    &InitProducerIdRequest::default()
                        .with_transactional_id(Some(TransactionalId(id.into())))
                        .with_transaction_timeout_ms(60_000)
                        .with_producer_id(ProducerId(-1))
                        .with_producer_epoch(-1),
                )
                .await
                .unwrap();
            assert_eq!(init.error_code, expected, "{id}");
        }
        let described: DescribeTransactionsResponse = c
            .call(
                ApiKey::DescribeTransactions,
                0,
                &DescribeTransactionsRequest::default().with_transactional_ids(vec![
                    TransactionalId("closed-txn".into()),
                    TransactionalId("open-txn".into()),
                ]),
            )
            .await
            .unwrap();
        let codes: Vec<i16> = described
            .transaction_states
            .iter()
            .map(|t| t.error_code)
            .collect();
        assert_eq!(
            codes,
            vec![ResponseError::TransactionalIdAuthorizationFailed.code(), 0]
        );

        // Configs: DESCRIBE_CONFIGS / ALTER_CONFIGS on the topic.
        let e = c.topic_configs("closed").await.unwrap_err();
        assert_eq!(code(&e), ResponseError::TopicAuthorizationFailed);
        assert!(!c.topic_configs("open").await.unwrap().is_empty());
        let mut retention = std::collections::BTreeMap::new();
        retention.insert("retention.ms".to_owned(), "3600000".to_owned());
        let e = c
            .alter_topic_configs("closed", &retention, &[])
            .await
            .unwrap_err();
        assert_eq!(code(&e), ResponseError::TopicAuthorizationFailed);

        // ListOffsets needs DESCRIBE, DeleteRecords DELETE, CreatePartitions ALTER.
        let e = c.list_offset("hidden", 0, -1).await.unwrap_err();
        assert_eq!(code(&e), ResponseError::TopicAuthorizationFailed);
        assert_eq!(c.list_offset("closed", 0, -1).await.unwrap(), 0);
        let trimmed: DeleteRecordsResponse = c
            .call(
                ApiKey::DeleteRecords,
                2,
                &DeleteRecordsRequest::default().with_topics(
                    ["closed", "open"]
                        .into_iter()
                        .map(|t| {
                            DeleteRecordsTopic::default()
                                .with_name(TopicName(t.into()))
                                .with_partitions(vec![
                                    DeleteRecordsPartition::default()
                                        .with_partition_index(0)
                                        .with_offset(-1),
                                ])
                        })
                        .collect(),
                ),
            )
            .await
            .unwrap();
        let codes: Vec<i16> = trimmed
            .topics
            .iter()
            .map(|t| t.partitions[0].error_code)
            .collect();
        assert_eq!(
            codes,
            vec![ResponseError::TopicAuthorizationFailed.code(), 0]
        );
        let grown: CreatePartitionsResponse = c
            .call(
                ApiKey::CreatePartitions,
                3,
                &CreatePartitionsRequest::default()
                    .with_timeout_ms(10_000)
                    .with_topics(vec![
                        CreatePartitionsTopic::default()
                            .with_name(TopicName("closed".into()))
                            .with_count(2)
                            .with_assignments(None),
                    ]),
            )
            .await
            .unwrap();
        assert_eq!(
            grown.results[0].error_code,
            ResponseError::TopicAuthorizationFailed.code()
        );

        // Produce: allowed on "open", TOPIC_AUTHORIZATION_FAILED on "closed".
        let producer = client::producer(&bootstrap);
        producer
            .send(
                FutureRecord::<(), _>::to("open").payload("ok"),
                client::WAIT,
            )
            .await
            .expect("produce to an open topic");
        let refused = producer
            .send(
                FutureRecord::<(), _>::to("closed").payload("no"),
                client::WAIT,
            )
            .await
            .expect_err("produce to a closed topic");
        assert_eq!(
            refused.0,
            KafkaError::MessageProduction(RDKafkaErrorCode::TopicAuthorizationFailed)
        );

        // Fetch: TOPIC_AUTHORIZATION_FAILED on "closed".
        let consumer = client::consumer(&bootstrap);
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("closed", 0, Offset::Beginning)
            .unwrap();
        consumer.assign(&tpl).unwrap();
        let error = tokio::time::timeout(client::WAIT, consumer.recv())
            .await
            .expect("an answer")
            .expect_err("reading a closed topic");
        assert_eq!(
            error,
            KafkaError::MessageConsumption(RDKafkaErrorCode::TopicAuthorizationFailed)
        );

        // Metadata: "hidden" is not listed, "closed" and "open" are.
        let metadata = consumer.fetch_metadata(None, client::WAIT).unwrap();
        let mut names: Vec<&str> = metadata
            .topics()
            .iter()
            .map(|t| t.name())
            .filter(|n| !n.starts_with("__"))
            .collect();
        names.sort_unstable();
        assert_eq!(names, vec!["closed", "open"]);

        // CreateTopics and DeleteTopics.
        let admin = client::admin(&bootstrap);
        let opts = AdminOptions::new().operation_timeout(Some(client::WAIT));
        let made = admin
            .create_topics(
                &[
                    rdkafka::admin::NewTopic::new(
                        "nocreate-x",
                        1,
                        rdkafka::admin::TopicReplication::Fixed(1),
                    ),
                    rdkafka::admin::NewTopic::new(
                        "fine",
                        1,
                        rdkafka::admin::TopicReplication::Fixed(1),
                    ),
                ],
                &opts,
            )
            .await
            .unwrap();
        assert_eq!(
            made,
            vec![
                Err((
                    "nocreate-x".to_owned(),
                    RDKafkaErrorCode::TopicAuthorizationFailed
                )),
                Ok("fine".to_owned())
            ]
        );
        let deleted = admin
            .delete_topics(&["closed", "open"], &opts)
            .await
            .unwrap();
        assert_eq!(
            deleted,
            vec![
                Err((
                    "closed".to_owned(),
                    RDKafkaErrorCode::TopicAuthorizationFailed
                )),
                Ok("open".to_owned())
            ]
        );
        drop((producer, consumer, admin, c));

        // Without allow.everyone.if.no.acl.found and without ACLs nothing is allowed, not
        // even managing ACLs (CLUSTER_AUTHORIZATION_FAILED).
        let empty = tempfile::tempdir().unwrap();
        let mut strict = BrokerConfig::new(empty.path());
        strict.authorizer.enabled = true;
        let locked = TestBroker::start_with(strict, KafkaConfig::default()).await;
        let mut c = Client::connect(&locked.bootstrap()).await.unwrap();
        let e = c.describe_acls(&AclBindingFilter::any()).await.unwrap_err();
        assert_eq!(code(&e), ResponseError::ClusterAuthorizationFailed);
        let e = c
            .create_topic("t", 1, &std::collections::BTreeMap::new())
            .await
            .unwrap_err();
        assert_eq!(code(&e), ResponseError::TopicAuthorizationFailed);
        assert!(c.topics(None).await.unwrap().is_empty());
        let idempotent: InitProducerIdResponse = c
            .call(
                ApiKey::InitProducerId,
                4,
                &InitProducerIdRequest::default()
                    .with_transactional_id(None)
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1),
            )
            .await
            .unwrap();
        assert_eq!(
            idempotent.error_code,
            ResponseError::ClusterAuthorizationFailed.code()
        );
        drop(c);
        locked.stop().await;

        // A super user passes every check.
        config.authorizer.super_users = vec![strom_kafka::authz::ANONYMOUS.to_owned()];
        let broker = broker.restart(config).await;
        let producer = client::producer(&broker.bootstrap());
        producer
            .send(
                FutureRecord::<(), _>::to("closed").payload("yes"),
                client::WAIT,
            )
            .await
            .expect("a super user writes anywhere");
        drop(producer);
        broker.stop().await;
    })
    .await
    .expect("bounded");
}
