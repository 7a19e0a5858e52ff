//! The ACL matrix: every Kafka API the broker serves (as ApiVersions lists them), sent over a
//! real SASL/PLAIN socket by a principal holding exactly the ACLs Kafka requires for it, and
//! by one holding a near miss (another operation on the same resource, or the other resource
//! of the request), with Kafka's exact error code for the refusal.
//!
//! The operations and error codes follow Kafka's `KafkaApis` / `AuthHelper` (and the group and
//! transaction handlers behind them): one row per check, so an API with several checks
//! (transactional id, then group, then topic) has one row per check. Each row gets two fresh
//! users, so one row's ACLs never help another's. ApiVersions, SaslHandshake and
//! SaslAuthenticate are served without any ACL: every connection of this test authenticates
//! with them as a user that holds none of the ACLs it needs yet.

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::alter_configs_request::{
    AlterConfigsResource as LegacyAlterResource, AlterableConfig as LegacyAlterable,
};
use kafka_protocol::messages::alter_user_scram_credentials_request::ScramCredentialDeletion;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
use kafka_protocol::messages::describe_producers_request::TopicRequest;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use strom_broker::BrokerConfig;
use strom_broker::acl::{
    AclBinding, AclBindingFilter, AclOperation, AclPermission, PatternFilter, PatternType,
    ResourceType,
};
use strom_kafka::client::sasl::SaslCredentials;
use strom_kafka::client::{Client, ClientError};
use strom_kafka::sasl::{Mechanism, SaslConfig};
use strom_kafka::{KafkaConfig, ListenerConfig, SecurityProtocol};
use strom_record::{BatchBuilder, Record};
use strom_tests::TestBroker;

use AclOperation as Op;
use ResourceType as Rt;

/// About 120 SASL/PLAIN logins (a PBKDF2 each, unoptimized in test builds) on a loaded machine.
const BOUND: Duration = Duration::from_secs(480);

/// The topic most rows use (one partition, one record).
const TOPIC: &str = "t";
/// The group most rows use (it has a committed offset for `TOPIC`).
const GROUP: &str = "g";
/// The transactional id most rows use (initialized, so it has a producer id).
const TXN: &str = "tx";
/// Kafka's name of the cluster resource.
const CLUSTER: &str = "kafka-cluster";

const TOPIC_DENIED: i16 = 29;
const GROUP_DENIED: i16 = 30;
const CLUSTER_DENIED: i16 = 31;
const TXN_DENIED: i16 = 53;

/// What a probe saw: an error code, whether the row's resource was listed, or an
/// authorized-operations bit field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    Code(i16),
    Listed(bool),
    Ops(i32),
}

/// What a row expects.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Exactly this.
    Is(Seen),
    /// Any error code but an authorization failure: the request got past the checks (it may
    /// still fail for a reason the row does not set up, such as an unknown member id).
    Passed,
}

impl Expect {
    fn matches(self, seen: Seen) -> bool {
        match self {
            Expect::Is(s) => s == seen,
            Expect::Passed => matches!(seen, Seen::Code(c)
                if ![TOPIC_DENIED, GROUP_DENIED, CLUSTER_DENIED, TXN_DENIED].contains(&c)),
        }
    }
}

const OK: Expect = Expect::Is(Seen::Code(0));
const PASSED: Expect = Expect::Passed;
const fn denied(code: i16) -> Expect {
    Expect::Is(Seen::Code(code))
}

/// One request shape, sent by a row's two users.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    Produce,
    ProduceTransactional,
    Fetch,
    ListOffsets,
    MetadataNamed,
    MetadataAll,
    CreateTopics,
    CreateTopicsConfigs,
    DeleteTopics,
    DeleteRecords,
    InitProducerIdTransactional,
    InitProducerIdIdempotent,
    OffsetForLeaderEpoch,
    DescribeConfigs(i8, &'static str),
    AlterConfigs(i8, &'static str),
    IncrementalAlterConfigs(i8, &'static str),
    DescribeLogDirs,
    CreatePartitions,
    DescribeCluster,
    FindCoordinator(i8, &'static str),
    JoinGroup,
    SyncGroup,
    Heartbeat,
    LeaveGroup,
    OffsetCommit,
    OffsetFetch,
    OffsetFetchTopic,
    DescribeGroups,
    ListGroups,
    DeleteGroups,
    OffsetDelete,
    OffsetDeleteTopic,
    ConsumerGroupHeartbeat,
    ConsumerGroupDescribe,
    DescribeProducers,
    AddPartitionsToTxn,
    AddPartitionsToTxnTopic,
    AddOffsetsToTxn,
    EndTxn,
    TxnOffsetCommit,
    TxnOffsetCommitTopic,
    DescribeTransactions,
    ListTransactions,
    DescribeAcls,
    CreateAcls,
    DeleteAcls,
    DescribeUserScramCredentials,
    AlterUserScramCredentials,
    DescribeClientQuotas,
    AlterClientQuotas,
    ApiVersions,
}

/// An ACL a row's user gets: ALLOW `operation` on the literal resource.
type Grant = (ResourceType, &'static str, AclOperation);

/// One check of one API.
struct Row {
    api: ApiKey,
    probe: Probe,
    /// The allowed user's ACLs: what Kafka requires.
    allow: &'static [Grant],
    /// The denied user's ACLs: a near miss.
    deny: &'static [Grant],
    allowed: Expect,
    refused: Expect,
}

const fn row(
    api: ApiKey,
    probe: Probe,
    allow: &'static [Grant],
    deny: &'static [Grant],
    allowed: Expect,
    refused: Expect,
) -> Row {
    Row {
        api,
        probe,
        allow,
        deny,
        allowed,
        refused,
    }
}

/// `ConfigResource.Type` codes.
const TOPIC_CONFIG: i8 = 2;
const BROKER_CONFIG: i8 = 4;
const GROUP_CONFIG: i8 = 32;

/// The matrix. Kafka's requirement per row is in its `allow` column.
fn rows() -> Vec<Row> {
    use ApiKey as A;
    use Probe as P;
    vec![
        row(A::ApiVersions, P::ApiVersions, &[], &[], OK, OK),
        row(
            A::Produce,
            P::Produce,
            &[(Rt::Topic, TOPIC, Op::Write)],
            &[(Rt::Topic, TOPIC, Op::Read)],
            OK,
            denied(TOPIC_DENIED),
        ),
        row(
            A::Produce,
            P::ProduceTransactional,
            &[
                (Rt::TransactionalId, TXN, Op::Write),
                (Rt::Topic, TOPIC, Op::Write),
            ],
            &[
                (Rt::TransactionalId, TXN, Op::Describe),
                (Rt::Topic, TOPIC, Op::Write),
            ],
            PASSED,
            denied(TXN_DENIED),
        ),
        row(
            A::Fetch,
            P::Fetch,
            &[(Rt::Topic, TOPIC, Op::Read)],
            &[(Rt::Topic, TOPIC, Op::Write)],
            OK,
            denied(TOPIC_DENIED),
        ),
        row(
            A::ListOffsets,
            P::ListOffsets,
            &[(Rt::Topic, TOPIC, Op::Describe)],
            &[(Rt::Topic, TOPIC, Op::DescribeConfigs)],
            OK,
            denied(TOPIC_DENIED),
        ),
        row(
            A::Metadata,
            P::MetadataNamed,
            &[(Rt::Topic, TOPIC, Op::Describe)],
            &[(Rt::Topic, TOPIC, Op::Create)],
            OK,
            denied(TOPIC_DENIED),
        ),
        row(
            A::Metadata,
            P::MetadataAll,
            &[(Rt::Topic, TOPIC, Op::Describe)],
            &[(Rt::Topic, TOPIC, Op::DescribeConfigs)],
            Expect::Is(Seen::Listed(true)),
            Expect::Is(Seen::Listed(false)),
        ),
        row(
            A::CreateTopics,
            P::CreateTopics,
            &[(Rt::Topic, "made", Op::Create)],
            &[(Rt::Topic, "made", Op::Describe)],
            OK,
            denied(TOPIC_DENIED),
        ),
        row(
            A::CreateTopics,
            P::CreateTopics,
            &[(Rt::Cluster, CLUSTER, Op::Create)],
            &[(Rt::Cluster, CLUSTER, Op::Describe)],
            // The first row made the topic: the cluster's CREATE gets past the check.
            denied(ResponseError::TopicAlreadyExists.code()),
            denied(TOPIC_DENIED),
        ),
        row(
            A::CreateTopics,
            P::CreateTopicsConfigs,
            // KIP-525: created (here validated only) either way, but the configs only with
            // DESCRIBE_CONFIGS (the code seen is the result's topic_config_error_code).
            &[
                (Rt::Topic, "made-too", Op::Create),
                (Rt::Topic, "made-too", Op::DescribeConfigs),
            ],
            &[(Rt::Topic, "made-too", Op::Create)],
            OK,
            denied(TOPIC_DENIED),
        ),
        row(
            A::DeleteTopics,
            P::DeleteTopics,
            &[(Rt::Topic, "doomed", Op::Delete)],
            &[(Rt::Topic, "doomed", Op::Describe)],
            OK,
            denied(TOPIC_DENIED),
        ),
        row(
            A::DeleteRecords,
            P::DeleteRecords,
            &[(Rt::Topic, TOPIC, Op::Delete)],
            &[(Rt::Topic, TOPIC, Op::Describe)],
            OK,
            denied(TOPIC_DENIED),
        ),
        row(
            A::InitProducerId,
            P::InitProducerIdTransactional,
            &[(Rt::TransactionalId, "tx-init", Op::Write)],
            &[(Rt::TransactionalId, "tx-init", Op::Describe)],
            OK,
            denied(TXN_DENIED),
        ),
        row(
            A::InitProducerId,
            P::InitProducerIdIdempotent,
            &[(Rt::Cluster, CLUSTER, Op::IdempotentWrite)],
            &[(Rt::Cluster, CLUSTER, Op::Describe)],
            OK,
            denied(CLUSTER_DENIED),
        ),
        row(
            A::InitProducerId,
            P::InitProducerIdIdempotent,
            // Or WRITE on some topic (Kafka: "any topic could be written").
            &[(Rt::Topic, TOPIC, Op::Write)],
            &[(Rt::Topic, TOPIC, Op::Read)],
            OK,
            denied(CLUSTER_DENIED),
        ),
        row(
            A::OffsetForLeaderEpoch,
            P::OffsetForLeaderEpoch,
            &[(Rt::Topic, TOPIC, Op::Describe)],
            &[(Rt::Topic, TOPIC, Op::DescribeConfigs)],
            OK,
            denied(TOPIC_DENIED),
        ),
        row(
            A::DescribeConfigs,
            P::DescribeConfigs(TOPIC_CONFIG, TOPIC),
            &[(Rt::Topic, TOPIC, Op::DescribeConfigs)],
            &[(Rt::Topic, TOPIC, Op::Describe)],
            OK,
            denied(TOPIC_DENIED),
        ),
        row(
            A::DescribeConfigs,
            P::DescribeConfigs(BROKER_CONFIG, "0"),
            &[(Rt::Cluster, CLUSTER, Op::DescribeConfigs)],
            &[(Rt::Cluster, CLUSTER, Op::Describe)],
            OK,
            denied(CLUSTER_DENIED),
        ),
        row(
            A::DescribeConfigs,
            P::DescribeConfigs(GROUP_CONFIG, GROUP),
            &[(Rt::Group, GROUP, Op::DescribeConfigs)],
            &[(Rt::Group, GROUP, Op::Describe)],
            OK,
            denied(GROUP_DENIED),
        ),
        row(
            A::AlterConfigs,
            P::AlterConfigs(TOPIC_CONFIG, TOPIC),
            &[(Rt::Topic, TOPIC, Op::AlterConfigs)],
            &[(Rt::Topic, TOPIC, Op::DescribeConfigs)],
            OK,
            denied(TOPIC_DENIED),
        ),
        row(
            A::AlterConfigs,
            P::AlterConfigs(BROKER_CONFIG, "0"),
            &[(Rt::Cluster, CLUSTER, Op::AlterConfigs)],
            &[(Rt::Cluster, CLUSTER, Op::DescribeConfigs)],
            OK,
            denied(CLUSTER_DENIED),
        ),
        row(
            A::IncrementalAlterConfigs,
            P::IncrementalAlterConfigs(TOPIC_CONFIG, TOPIC),
            &[(Rt::Topic, TOPIC, Op::AlterConfigs)],
            &[(Rt::Topic, TOPIC, Op::Alter)],
            OK,
            denied(TOPIC_DENIED),
        ),
        row(
            A::IncrementalAlterConfigs,
            P::IncrementalAlterConfigs(BROKER_CONFIG, "0"),
            &[(Rt::Cluster, CLUSTER, Op::AlterConfigs)],
            &[(Rt::Cluster, CLUSTER, Op::Alter)],
            OK,
            denied(CLUSTER_DENIED),
        ),
        row(
            A::IncrementalAlterConfigs,
            P::IncrementalAlterConfigs(GROUP_CONFIG, GROUP),
            &[(Rt::Group, GROUP, Op::AlterConfigs)],
            &[(Rt::Group, GROUP, Op::Read)],
            OK,
            denied(GROUP_DENIED),
        ),
        row(
            A::DescribeLogDirs,
            P::DescribeLogDirs,
            &[(Rt::Cluster, CLUSTER, Op::Describe)],
            &[(Rt::Cluster, CLUSTER, Op::DescribeConfigs)],
            OK,
            denied(CLUSTER_DENIED),
        ),
        row(
            A::CreatePartitions,
            P::CreatePartitions,
            &[(Rt::Topic, TOPIC, Op::Alter)],
            &[(Rt::Topic, TOPIC, Op::AlterConfigs)],
            OK,
            denied(TOPIC_DENIED),
        ),
        row(
            A::DescribeCluster,
            P::DescribeCluster,
            // Not refused: the cluster's operations are reported only with DESCRIBE, else 0.
            &[(Rt::Cluster, CLUSTER, Op::Describe)],
            &[(Rt::Cluster, CLUSTER, Op::Create)],
            Expect::Is(Seen::Ops(1 << 8)),
            Expect::Is(Seen::Ops(0)),
        ),
        row(
            A::FindCoordinator,
            P::FindCoordinator(0, GROUP),
            &[(Rt::Group, GROUP, Op::Describe)],
            &[(Rt::Group, GROUP, Op::DescribeConfigs)],
            OK,
            denied(GROUP_DENIED),
        ),
        row(
            A::FindCoordinator,
            P::FindCoordinator(1, TXN),
            &[(Rt::TransactionalId, TXN, Op::Describe)],
            &[(Rt::Group, TXN, Op::Describe)],
            OK,
            denied(TXN_DENIED),
        ),
        row(
            A::JoinGroup,
            P::JoinGroup,
            &[(Rt::Group, "joined", Op::Read)],
            &[(Rt::Group, "joined", Op::Describe)],
            PASSED,
            denied(GROUP_DENIED),
        ),
        row(
            A::SyncGroup,
            P::SyncGroup,
            &[(Rt::Group, "joined", Op::Read)],
            &[(Rt::Group, "joined", Op::Describe)],
            PASSED,
            denied(GROUP_DENIED),
        ),
        row(
            A::Heartbeat,
            P::Heartbeat,
            &[(Rt::Group, "joined", Op::Read)],
            &[(Rt::Group, "joined", Op::Describe)],
            PASSED,
            denied(GROUP_DENIED),
        ),
        row(
            A::LeaveGroup,
            P::LeaveGroup,
            &[(Rt::Group, "joined", Op::Read)],
            &[(Rt::Group, "joined", Op::Describe)],
            PASSED,
            denied(GROUP_DENIED),
        ),
        row(
            A::OffsetCommit,
            P::OffsetCommit,
            &[(Rt::Group, GROUP, Op::Read), (Rt::Topic, TOPIC, Op::Read)],
            &[
                (Rt::Group, GROUP, Op::Describe),
                (Rt::Topic, TOPIC, Op::Read),
            ],
            OK,
            denied(GROUP_DENIED),
        ),
        row(
            A::OffsetCommit,
            P::OffsetCommit,
            &[(Rt::Group, GROUP, Op::Read), (Rt::Topic, TOPIC, Op::Read)],
            &[
                (Rt::Group, GROUP, Op::Read),
                (Rt::Topic, TOPIC, Op::Describe),
            ],
            OK,
            denied(TOPIC_DENIED),
        ),
        row(
            A::OffsetFetch,
            P::OffsetFetch,
            &[
                (Rt::Group, GROUP, Op::Describe),
                (Rt::Topic, TOPIC, Op::Describe),
            ],
            &[
                (Rt::Group, GROUP, Op::DescribeConfigs),
                (Rt::Topic, TOPIC, Op::Describe),
            ],
            OK,
            denied(GROUP_DENIED),
        ),
        row(
            A::OffsetFetch,
            P::OffsetFetchTopic,
            &[
                (Rt::Group, GROUP, Op::Describe),
                (Rt::Topic, TOPIC, Op::Describe),
            ],
            &[
                (Rt::Group, GROUP, Op::Describe),
                (Rt::Topic, TOPIC, Op::DescribeConfigs),
            ],
            OK,
            denied(TOPIC_DENIED),
        ),
        row(
            A::DescribeGroups,
            P::DescribeGroups,
            &[(Rt::Group, GROUP, Op::Describe)],
            &[(Rt::Group, GROUP, Op::DescribeConfigs)],
            OK,
            denied(GROUP_DENIED),
        ),
        row(
            A::ListGroups,
            P::ListGroups,
            &[(Rt::Group, GROUP, Op::Describe)],
            &[(Rt::Group, GROUP, Op::DescribeConfigs)],
            Expect::Is(Seen::Listed(true)),
            Expect::Is(Seen::Listed(false)),
        ),
        row(
            A::ListGroups,
            P::ListGroups,
            // DESCRIBE on the cluster lists every group.
            &[(Rt::Cluster, CLUSTER, Op::Describe)],
            &[(Rt::Cluster, CLUSTER, Op::Create)],
            Expect::Is(Seen::Listed(true)),
            Expect::Is(Seen::Listed(false)),
        ),
        row(
            A::DeleteGroups,
            P::DeleteGroups,
            &[(Rt::Group, "gone", Op::Delete)],
            &[(Rt::Group, "gone", Op::Read)],
            PASSED,
            denied(GROUP_DENIED),
        ),
        row(
            A::OffsetDelete,
            P::OffsetDelete,
            &[
                (Rt::Group, "gone", Op::Delete),
                (Rt::Topic, TOPIC, Op::Read),
            ],
            &[(Rt::Group, "gone", Op::Read), (Rt::Topic, TOPIC, Op::Read)],
            PASSED,
            denied(GROUP_DENIED),
        ),
        row(
            A::OffsetDelete,
            P::OffsetDeleteTopic,
            &[(Rt::Group, GROUP, Op::Delete), (Rt::Topic, TOPIC, Op::Read)],
            &[
                (Rt::Group, GROUP, Op::Delete),
                (Rt::Topic, TOPIC, Op::Describe),
            ],
            PASSED,
            denied(TOPIC_DENIED),
        ),
        row(
            A::ConsumerGroupHeartbeat,
            P::ConsumerGroupHeartbeat,
            &[
                (Rt::Group, "cg", Op::Read),
                (Rt::Topic, TOPIC, Op::Describe),
            ],
            &[
                (Rt::Group, "cg", Op::Describe),
                (Rt::Topic, TOPIC, Op::Describe),
            ],
            OK,
            denied(GROUP_DENIED),
        ),
        row(
            A::ConsumerGroupDescribe,
            P::ConsumerGroupDescribe,
            &[(Rt::Group, "cg", Op::Describe)],
            &[(Rt::Group, "cg", Op::DescribeConfigs)],
            OK,
            denied(GROUP_DENIED),
        ),
        row(
            A::DescribeProducers,
            P::DescribeProducers,
            &[(Rt::Topic, TOPIC, Op::Read)],
            &[(Rt::Topic, TOPIC, Op::Describe)],
            OK,
            denied(TOPIC_DENIED),
        ),
        row(
            A::AddPartitionsToTxn,
            P::AddPartitionsToTxn,
            &[
                (Rt::TransactionalId, TXN, Op::Write),
                (Rt::Topic, TOPIC, Op::Write),
            ],
            &[
                (Rt::TransactionalId, TXN, Op::Describe),
                (Rt::Topic, TOPIC, Op::Write),
            ],
            PASSED,
            denied(TXN_DENIED),
        ),
        row(
            A::AddPartitionsToTxn,
            P::AddPartitionsToTxnTopic,
            &[
                (Rt::TransactionalId, TXN, Op::Write),
                (Rt::Topic, TOPIC, Op::Write),
            ],
            &[
                (Rt::TransactionalId, TXN, Op::Write),
                (Rt::Topic, TOPIC, Op::Read),
            ],
            PASSED,
            denied(TOPIC_DENIED),
        ),
        row(
            A::AddOffsetsToTxn,
            P::AddOffsetsToTxn,
            &[
                (Rt::TransactionalId, TXN, Op::Write),
                (Rt::Group, GROUP, Op::Read),
            ],
            &[
                (Rt::TransactionalId, TXN, Op::Describe),
                (Rt::Group, GROUP, Op::Read),
            ],
            PASSED,
            denied(TXN_DENIED),
        ),
        row(
            A::AddOffsetsToTxn,
            P::AddOffsetsToTxn,
            &[
                (Rt::TransactionalId, TXN, Op::Write),
                (Rt::Group, GROUP, Op::Read),
            ],
            &[
                (Rt::TransactionalId, TXN, Op::Write),
                (Rt::Group, GROUP, Op::Describe),
            ],
            PASSED,
            denied(GROUP_DENIED),
        ),
        row(
            A::EndTxn,
            P::EndTxn,
            &[(Rt::TransactionalId, TXN, Op::Write)],
            &[(Rt::TransactionalId, TXN, Op::Describe)],
            PASSED,
            denied(TXN_DENIED),
        ),
        row(
            A::TxnOffsetCommit,
            P::TxnOffsetCommit,
            &[
                (Rt::TransactionalId, TXN, Op::Write),
                (Rt::Group, GROUP, Op::Read),
                (Rt::Topic, TOPIC, Op::Read),
            ],
            &[
                (Rt::TransactionalId, TXN, Op::Describe),
                (Rt::Group, GROUP, Op::Read),
                (Rt::Topic, TOPIC, Op::Read),
            ],
            PASSED,
            denied(TXN_DENIED),
        ),
        row(
            A::TxnOffsetCommit,
            P::TxnOffsetCommit,
            &[
                (Rt::TransactionalId, TXN, Op::Write),
                (Rt::Group, GROUP, Op::Read),
                (Rt::Topic, TOPIC, Op::Read),
            ],
            &[
                (Rt::TransactionalId, TXN, Op::Write),
                (Rt::Group, GROUP, Op::Describe),
                (Rt::Topic, TOPIC, Op::Read),
            ],
            PASSED,
            denied(GROUP_DENIED),
        ),
        row(
            A::TxnOffsetCommit,
            P::TxnOffsetCommitTopic,
            &[
                (Rt::TransactionalId, TXN, Op::Write),
                (Rt::Group, GROUP, Op::Read),
                (Rt::Topic, TOPIC, Op::Read),
            ],
            &[
                (Rt::TransactionalId, TXN, Op::Write),
                (Rt::Group, GROUP, Op::Read),
                (Rt::Topic, TOPIC, Op::Describe),
            ],
            PASSED,
            denied(TOPIC_DENIED),
        ),
        row(
            A::DescribeTransactions,
            P::DescribeTransactions,
            &[(Rt::TransactionalId, TXN, Op::Describe)],
            &[(Rt::Group, TXN, Op::Describe)],
            OK,
            denied(TXN_DENIED),
        ),
        row(
            A::ListTransactions,
            P::ListTransactions,
            &[(Rt::TransactionalId, TXN, Op::Describe)],
            &[(Rt::Group, TXN, Op::Describe)],
            Expect::Is(Seen::Listed(true)),
            Expect::Is(Seen::Listed(false)),
        ),
        row(
            A::DescribeAcls,
            P::DescribeAcls,
            &[(Rt::Cluster, CLUSTER, Op::Describe)],
            &[(Rt::Cluster, CLUSTER, Op::Create)],
            OK,
            denied(CLUSTER_DENIED),
        ),
        row(
            A::CreateAcls,
            P::CreateAcls,
            &[(Rt::Cluster, CLUSTER, Op::Alter)],
            &[(Rt::Cluster, CLUSTER, Op::Describe)],
            OK,
            denied(CLUSTER_DENIED),
        ),
        row(
            A::DeleteAcls,
            P::DeleteAcls,
            &[(Rt::Cluster, CLUSTER, Op::Alter)],
            &[(Rt::Cluster, CLUSTER, Op::Describe)],
            OK,
            denied(CLUSTER_DENIED),
        ),
        row(
            A::DescribeUserScramCredentials,
            P::DescribeUserScramCredentials,
            &[(Rt::Cluster, CLUSTER, Op::Describe)],
            &[(Rt::Cluster, CLUSTER, Op::AlterConfigs)],
            OK,
            denied(CLUSTER_DENIED),
        ),
        row(
            A::AlterUserScramCredentials,
            P::AlterUserScramCredentials,
            &[(Rt::Cluster, CLUSTER, Op::Alter)],
            &[(Rt::Cluster, CLUSTER, Op::Describe)],
            // Deleting a credential nobody has: past the check, RESOURCE_NOT_FOUND.
            denied(ResponseError::ResourceNotFound.code()),
            denied(CLUSTER_DENIED),
        ),
        row(
            A::DescribeClientQuotas,
            P::DescribeClientQuotas,
            &[(Rt::Cluster, CLUSTER, Op::DescribeConfigs)],
            &[(Rt::Cluster, CLUSTER, Op::Describe)],
            OK,
            denied(CLUSTER_DENIED),
        ),
        row(
            A::AlterClientQuotas,
            P::AlterClientQuotas,
            &[(Rt::Cluster, CLUSTER, Op::AlterConfigs)],
            &[(Rt::Cluster, CLUSTER, Op::DescribeConfigs)],
            OK,
            denied(CLUSTER_DENIED),
        ),
    ]
}

/// What the probes need from the set-up: the producer of `TXN`.
#[derive(Debug, Clone, Copy)]
struct Fixture {
    producer_id: i64,
    producer_epoch: i16,
}

fn topic(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
}

fn group(name: &str) -> GroupId {
    GroupId(StrBytes::from_string(name.to_owned()))
}

fn txn(name: &str) -> TransactionalId {
    TransactionalId(StrBytes::from_string(name.to_owned()))
}

fn batch(producer: Option<Fixture>) -> Bytes {
    let mut builder = BatchBuilder::new();
    if let Some(f) = producer {
        builder.producer_id = f.producer_id;
        builder.producer_epoch = f.producer_epoch;
        builder.base_sequence = 0;
        builder.transactional = true;
    }
    let records = [Record::new(1_000, None, Some(Bytes::from_static(b"v")))];
    Bytes::from(builder.build(&records).expect("a batch"))
}

fn produce_request(records: Bytes, transactional_id: Option<&str>) -> ProduceRequest {
    ProduceRequest::default()
        .with_transactional_id(transactional_id.map(txn))
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(topic(TOPIC))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(records)),
                ]),
        ])
}

fn code(seen: i16) -> Seen {
    Seen::Code(seen)
}

fn client_code(result: Result<(), ClientError>) -> Seen {
    match result {
        Ok(()) => code(0),
        Err(ClientError::Kafka { error, .. }) => code(error.code()),
        Err(other) => panic!("not an answer: {other}"),
    }
}

/// Sends the probe's request and reads the code its check answers with.
async fn run(probe: Probe, c: &mut Client, f: Fixture) -> Result<Seen, ClientError> {
    Ok(match probe {
        Probe::ApiVersions => {
            let r: ApiVersionsResponse = c
                .call(
                    ApiKey::ApiVersions,
                    3,
                    &ApiVersionsRequest::default()
                        .with_client_software_name(StrBytes::from_static_str("acl-matrix"))
                        .with_client_software_version(StrBytes::from_static_str("1")),
                )
                .await?;
            code(r.error_code)
        }
        Probe::Produce => {
            let r: ProduceResponse = c
                .call(ApiKey::Produce, 9, &produce_request(batch(None), None))
                .await?;
            code(r.responses[0].partition_responses[0].error_code)
        }
        Probe::ProduceTransactional => {
            let r: ProduceResponse = c
                .call(
                    ApiKey::Produce,
                    9,
                    &produce_request(batch(Some(f)), Some(TXN)),
                )
                .await?;
            code(r.responses[0].partition_responses[0].error_code)
        }
        Probe::Fetch => {
            let r: FetchResponse = c
                .call(
                    ApiKey::Fetch,
                    12,
                    &FetchRequest::default()
                        .with_max_wait_ms(0)
                        .with_min_bytes(1)
                        .with_max_bytes(1 << 20)
                        .with_topics(vec![
                            FetchTopic::default()
                                .with_topic(topic(TOPIC))
                                .with_partitions(vec![
                                    FetchPartition::default()
                                        .with_partition(0)
                                        .with_fetch_offset(0)
                                        .with_partition_max_bytes(1 << 20),
                                ]),
                        ]),
                )
                .await?;
            assert_eq!(r.error_code, 0);
            code(r.responses[0].partitions[0].error_code)
        }
        Probe::ListOffsets => {
            let r: ListOffsetsResponse = c
                .call(
                    ApiKey::ListOffsets,
                    7,
                    &ListOffsetsRequest::default()
                        .with_replica_id((-1).into())
                        .with_topics(vec![
                            ListOffsetsTopic::default()
                                .with_name(topic(TOPIC))
                                .with_partitions(vec![
                                    ListOffsetsPartition::default()
                                        .with_partition_index(0)
                                        .with_timestamp(-1),
                                ]),
                        ]),
                )
                .await?;
            code(r.topics[0].partitions[0].error_code)
        }
        Probe::MetadataNamed | Probe::MetadataAll => {
            let topics = (probe == Probe::MetadataNamed)
                .then(|| vec![MetadataRequestTopic::default().with_name(Some(topic(TOPIC)))]);
            let r: MetadataResponse = c
                .call(
                    ApiKey::Metadata,
                    12,
                    &MetadataRequest::default()
                        .with_topics(topics)
                        .with_allow_auto_topic_creation(false),
                )
                .await?;
            let ours = r
                .topics
                .iter()
                .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == TOPIC));
            if probe == Probe::MetadataNamed {
                code(ours.expect("the named topic is answered").error_code)
            } else {
                Seen::Listed(ours.is_some())
            }
        }
        Probe::CreateTopics | Probe::CreateTopicsConfigs => {
            let name = if probe == Probe::CreateTopics {
                "made"
            } else {
                "made-too"
            };
            let r: CreateTopicsResponse = c
                .call(
                    ApiKey::CreateTopics,
                    7,
                    &CreateTopicsRequest::default()
                        .with_timeout_ms(10_000)
                        .with_validate_only(probe == Probe::CreateTopicsConfigs)
                        .with_topics(vec![
                            CreatableTopic::default()
                                .with_name(topic(name))
                                .with_num_partitions(1)
                                .with_replication_factor(1),
                        ]),
                )
                .await?;
            let t = &r.topics[0];
            match (probe, t.error_code) {
                (Probe::CreateTopicsConfigs, 0) => {
                    if t.topic_config_error_code == 0 {
                        assert_eq!(t.num_partitions, 1);
                        assert!(t.configs.as_ref().is_some_and(|c| !c.is_empty()));
                    } else {
                        assert_eq!(t.num_partitions, -1);
                        assert!(t.configs.as_ref().is_none_or(Vec::is_empty));
                    }
                    code(t.topic_config_error_code)
                }
                (_, error) => code(error),
            }
        }
        Probe::DeleteTopics => {
            let r: DeleteTopicsResponse = c
                .call(
                    ApiKey::DeleteTopics,
                    5,
                    &DeleteTopicsRequest::default()
                        .with_timeout_ms(10_000)
                        .with_topic_names(vec![topic("doomed")]),
                )
                .await?;
            code(r.responses[0].error_code)
        }
        Probe::DeleteRecords => {
            let r: DeleteRecordsResponse = c
                .call(
                    ApiKey::DeleteRecords,
                    2,
                    &DeleteRecordsRequest::default()
                        .with_timeout_ms(10_000)
                        .with_topics(vec![
                            DeleteRecordsTopic::default()
                                .with_name(topic(TOPIC))
                                .with_partitions(vec![
                                    DeleteRecordsPartition::default()
                                        .with_partition_index(0)
                                        .with_offset(0),
                                ]),
                        ]),
                )
                .await?;
            code(r.topics[0].partitions[0].error_code)
        }
        Probe::InitProducerIdTransactional | Probe::InitProducerIdIdempotent => {
            let id = (probe == Probe::InitProducerIdTransactional).then(|| txn("tx-init"));
            let r: InitProducerIdResponse = c
                .call(
                    ApiKey::InitProducerId,
                    4,
                    &InitProducerIdRequest::default()
                        .with_transactional_id(id)
                        .with_transaction_timeout_ms(60_000)
                        .with_producer_id(ProducerId(-1))
                        .with_producer_epoch(-1),
                )
                .await?;
            code(r.error_code)
        }
        Probe::OffsetForLeaderEpoch => {
            let r: OffsetForLeaderEpochResponse = c
                .call(
                    ApiKey::OffsetForLeaderEpoch,
                    4,
                    &OffsetForLeaderEpochRequest::default()
                        .with_replica_id(BrokerId(-1))
                        .with_topics(vec![
                            OffsetForLeaderTopic::default()
                                .with_topic(topic(TOPIC))
                                .with_partitions(vec![
                                    OffsetForLeaderPartition::default()
                                        .with_partition(0)
                                        .with_current_leader_epoch(-1)
                                        .with_leader_epoch(0),
                                ]),
                        ]),
                )
                .await?;
            code(r.topics[0].partitions[0].error_code)
        }
        Probe::DescribeConfigs(kind, name) => {
            let r: DescribeConfigsResponse = c
                .call(
                    ApiKey::DescribeConfigs,
                    4,
                    &DescribeConfigsRequest::default().with_resources(vec![
                        DescribeConfigsResource::default()
                            .with_resource_type(kind)
                            .with_resource_name(StrBytes::from_static_str(name))
                            .with_configuration_keys(None),
                    ]),
                )
                .await?;
            code(r.results[0].error_code)
        }
        Probe::AlterConfigs(kind, name) => {
            let r: AlterConfigsResponse = c
                .call(
                    ApiKey::AlterConfigs,
                    1,
                    &AlterConfigsRequest::default()
                        .with_validate_only(true)
                        .with_resources(vec![
                            LegacyAlterResource::default()
                                .with_resource_type(kind)
                                .with_resource_name(StrBytes::from_static_str(name))
                                .with_configs(Vec::<LegacyAlterable>::new()),
                        ]),
                )
                .await?;
            code(r.responses[0].error_code)
        }
        Probe::IncrementalAlterConfigs(kind, name) => {
            let r: IncrementalAlterConfigsResponse = c
                .call(
                    ApiKey::IncrementalAlterConfigs,
                    1,
                    &IncrementalAlterConfigsRequest::default()
                        .with_validate_only(true)
                        .with_resources(vec![
                            AlterConfigsResource::default()
                                .with_resource_type(kind)
                                .with_resource_name(StrBytes::from_static_str(name))
                                .with_configs(Vec::<AlterableConfig>::new()),
                        ]),
                )
                .await?;
            code(r.responses[0].error_code)
        }
        Probe::DescribeLogDirs => {
            let r: DescribeLogDirsResponse = c
                .call(
                    ApiKey::DescribeLogDirs,
                    4,
                    &DescribeLogDirsRequest::default().with_topics(Some(vec![
                        DescribableLogDirTopic::default()
                            .with_topic(topic(TOPIC))
                            .with_partitions(vec![0]),
                    ])),
                )
                .await?;
            if r.error_code != 0 {
                assert!(r.results.is_empty(), "a refusal lists no log dirs");
            }
            code(r.error_code)
        }
        Probe::CreatePartitions => {
            let r: CreatePartitionsResponse = c
                .call(
                    ApiKey::CreatePartitions,
                    3,
                    &CreatePartitionsRequest::default()
                        .with_timeout_ms(10_000)
                        .with_validate_only(true)
                        .with_topics(vec![
                            CreatePartitionsTopic::default()
                                .with_name(topic(TOPIC))
                                .with_count(2)
                                .with_assignments(None),
                        ]),
                )
                .await?;
            code(r.results[0].error_code)
        }
        Probe::DescribeCluster => {
            let r: DescribeClusterResponse = c
                .call(
                    ApiKey::DescribeCluster,
                    1,
                    &DescribeClusterRequest::default()
                        .with_include_cluster_authorized_operations(true)
                        .with_endpoint_type(1),
                )
                .await?;
            assert_eq!(r.error_code, 0, "DescribeCluster is never refused");
            Seen::Ops(r.cluster_authorized_operations)
        }
        Probe::FindCoordinator(key_type, key) => {
            let r: FindCoordinatorResponse = c
                .call(
                    ApiKey::FindCoordinator,
                    3,
                    &FindCoordinatorRequest::default()
                        .with_key(StrBytes::from_static_str(key))
                        .with_key_type(key_type),
                )
                .await?;
            code(r.error_code)
        }
        Probe::JoinGroup => {
            let r: JoinGroupResponse = c
                .call(
                    ApiKey::JoinGroup,
                    5,
                    &JoinGroupRequest::default()
                        .with_group_id(group("joined"))
                        .with_session_timeout_ms(10_000)
                        .with_rebalance_timeout_ms(10_000)
                        .with_protocol_type(StrBytes::from_static_str("consumer")),
                )
                .await?;
            code(r.error_code)
        }
        Probe::SyncGroup => {
            let r: SyncGroupResponse = c
                .call(
                    ApiKey::SyncGroup,
                    3,
                    &SyncGroupRequest::default()
                        .with_group_id(group("joined"))
                        .with_generation_id(1)
                        .with_member_id(StrBytes::from_static_str("nobody")),
                )
                .await?;
            code(r.error_code)
        }
        Probe::Heartbeat => {
            let r: HeartbeatResponse = c
                .call(
                    ApiKey::Heartbeat,
                    3,
                    &HeartbeatRequest::default()
                        .with_group_id(group("joined"))
                        .with_generation_id(1)
                        .with_member_id(StrBytes::from_static_str("nobody")),
                )
                .await?;
            code(r.error_code)
        }
        Probe::LeaveGroup => {
            let r: LeaveGroupResponse = c
                .call(
                    ApiKey::LeaveGroup,
                    3,
                    &LeaveGroupRequest::default()
                        .with_group_id(group("joined"))
                        .with_members(vec![
                            MemberIdentity::default()
                                .with_member_id(StrBytes::from_static_str("nobody")),
                        ]),
                )
                .await?;
            code(r.error_code)
        }
        Probe::OffsetCommit => {
            let r: OffsetCommitResponse = c
                .call(
                    ApiKey::OffsetCommit,
                    7,
                    &OffsetCommitRequest::default()
                        .with_group_id(group(GROUP))
                        .with_generation_id_or_member_epoch(-1)
                        .with_topics(vec![
                            OffsetCommitRequestTopic::default()
                                .with_name(topic(TOPIC))
                                .with_partitions(vec![
                                    OffsetCommitRequestPartition::default()
                                        .with_partition_index(0)
                                        .with_committed_offset(1),
                                ]),
                        ]),
                )
                .await?;
            code(r.topics[0].partitions[0].error_code)
        }
        Probe::OffsetFetch | Probe::OffsetFetchTopic => {
            let r: OffsetFetchResponse = c
                .call(
                    ApiKey::OffsetFetch,
                    7,
                    &OffsetFetchRequest::default()
                        .with_group_id(group(GROUP))
                        .with_topics(Some(vec![
                            OffsetFetchRequestTopic::default()
                                .with_name(topic(TOPIC))
                                .with_partition_indexes(vec![0]),
                        ])),
                )
                .await?;
            if probe == Probe::OffsetFetch {
                code(r.error_code)
            } else {
                assert_eq!(r.error_code, 0);
                code(r.topics[0].partitions[0].error_code)
            }
        }
        Probe::DescribeGroups => {
            let r: DescribeGroupsResponse = c
                .call(
                    ApiKey::DescribeGroups,
                    5,
                    &DescribeGroupsRequest::default().with_groups(vec![group(GROUP)]),
                )
                .await?;
            code(r.groups[0].error_code)
        }
        Probe::ListGroups => {
            let r: ListGroupsResponse = c
                .call(ApiKey::ListGroups, 4, &ListGroupsRequest::default())
                .await?;
            assert_eq!(r.error_code, 0);
            Seen::Listed(r.groups.iter().any(|g| g.group_id.0.as_str() == GROUP))
        }
        Probe::DeleteGroups => {
            let r: DeleteGroupsResponse = c
                .call(
                    ApiKey::DeleteGroups,
                    2,
                    &DeleteGroupsRequest::default().with_groups_names(vec![group("gone")]),
                )
                .await?;
            code(r.results[0].error_code)
        }
        Probe::OffsetDelete | Probe::OffsetDeleteTopic => {
            let name = if probe == Probe::OffsetDelete {
                "gone"
            } else {
                GROUP
            };
            let r: OffsetDeleteResponse = c
                .call(
                    ApiKey::OffsetDelete,
                    0,
                    &OffsetDeleteRequest::default()
                        .with_group_id(group(name))
                        .with_topics(vec![
                            OffsetDeleteRequestTopic::default()
                                .with_name(topic(TOPIC))
                                .with_partitions(vec![
                                    OffsetDeleteRequestPartition::default().with_partition_index(0),
                                ]),
                        ]),
                )
                .await?;
            if probe == Probe::OffsetDelete || r.error_code != 0 {
                code(r.error_code)
            } else {
                code(r.topics[0].partitions[0].error_code)
            }
        }
        Probe::ConsumerGroupHeartbeat => {
            let r: ConsumerGroupHeartbeatResponse = c
                .call(
                    ApiKey::ConsumerGroupHeartbeat,
                    0,
                    &ConsumerGroupHeartbeatRequest::default()
                        .with_group_id(group("cg"))
                        .with_member_epoch(0)
                        .with_rebalance_timeout_ms(10_000)
                        .with_subscribed_topic_names(Some(vec![topic(TOPIC)]))
                        .with_topic_partitions(Some(Vec::new())),
                )
                .await?;
            code(r.error_code)
        }
        Probe::ConsumerGroupDescribe => {
            let r: ConsumerGroupDescribeResponse = c
                .call(
                    ApiKey::ConsumerGroupDescribe,
                    0,
                    &ConsumerGroupDescribeRequest::default().with_group_ids(vec![group("cg")]),
                )
                .await?;
            code(r.groups[0].error_code)
        }
        Probe::DescribeProducers => {
            let r: DescribeProducersResponse = c
                .call(
                    ApiKey::DescribeProducers,
                    0,
                    &DescribeProducersRequest::default().with_topics(vec![
                        TopicRequest::default()
                            .with_name(topic(TOPIC))
                            .with_partition_indexes(vec![0]),
                    ]),
                )
                .await?;
            code(r.topics[0].partitions[0].error_code)
        }
        Probe::AddPartitionsToTxn | Probe::AddPartitionsToTxnTopic => {
            let r: AddPartitionsToTxnResponse = c
                .call(
                    ApiKey::AddPartitionsToTxn,
                    3,
                    &AddPartitionsToTxnRequest::default()
                        .with_v3_and_below_transactional_id(txn(TXN))
                        .with_v3_and_below_producer_id(ProducerId(f.producer_id))
                        .with_v3_and_below_producer_epoch(f.producer_epoch)
                        .with_v3_and_below_topics(vec![
                            AddPartitionsToTxnTopic::default()
                                .with_name(topic(TOPIC))
                                .with_partitions(vec![0]),
                        ]),
                )
                .await?;
            code(r.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code)
        }
        Probe::AddOffsetsToTxn => {
            let r: AddOffsetsToTxnResponse = c
                .call(
                    ApiKey::AddOffsetsToTxn,
                    3,
                    &AddOffsetsToTxnRequest::default()
                        .with_transactional_id(txn(TXN))
                        .with_producer_id(ProducerId(f.producer_id))
                        .with_producer_epoch(f.producer_epoch)
                        .with_group_id(group(GROUP)),
                )
                .await?;
            code(r.error_code)
        }
        Probe::EndTxn => {
            let r: EndTxnResponse = c
                .call(
                    ApiKey::EndTxn,
                    3,
                    &EndTxnRequest::default()
                        .with_transactional_id(txn(TXN))
                        .with_producer_id(ProducerId(f.producer_id))
                        .with_producer_epoch(f.producer_epoch)
                        .with_committed(false),
                )
                .await?;
            code(r.error_code)
        }
        Probe::TxnOffsetCommit | Probe::TxnOffsetCommitTopic => {
            let r: TxnOffsetCommitResponse = c
                .call(
                    ApiKey::TxnOffsetCommit,
                    3,
                    &TxnOffsetCommitRequest::default()
                        .with_transactional_id(txn(TXN))
                        .with_group_id(group(GROUP))
                        .with_producer_id(ProducerId(f.producer_id))
                        .with_producer_epoch(f.producer_epoch)
                        .with_generation_id(-1)
                        .with_topics(vec![
                            TxnOffsetCommitRequestTopic::default()
                                .with_name(topic(TOPIC))
                                .with_partitions(vec![
                                    TxnOffsetCommitRequestPartition::default()
                                        .with_partition_index(0)
                                        .with_committed_offset(1),
                                ]),
                        ]),
                )
                .await?;
            code(r.topics[0].partitions[0].error_code)
        }
        Probe::DescribeTransactions => {
            let r: DescribeTransactionsResponse = c
                .call(
                    ApiKey::DescribeTransactions,
                    0,
                    &DescribeTransactionsRequest::default().with_transactional_ids(vec![txn(TXN)]),
                )
                .await?;
            code(r.transaction_states[0].error_code)
        }
        Probe::ListTransactions => {
            let r: ListTransactionsResponse = c
                .call(
                    ApiKey::ListTransactions,
                    1,
                    &ListTransactionsRequest::default().with_duration_filter(-1),
                )
                .await?;
            assert_eq!(r.error_code, 0);
            Seen::Listed(
                r.transaction_states
                    .iter()
                    .any(|t| t.transactional_id.0.as_str() == TXN),
            )
        }
        Probe::DescribeAcls => {
            let result = c.describe_acls(&AclBindingFilter::any()).await.map(drop);
            client_code(result)
        }
        Probe::CreateAcls => {
            let result = c.create_acls(&[bystander_acl()]).await?;
            client_code(result.into_iter().next().expect("one result"))
        }
        Probe::DeleteAcls => {
            let filter = AclBindingFilter {
                resource_type: Some(ResourceType::Topic),
                resource_name: Some("bystander".to_owned()),
                pattern: PatternFilter::Exact(PatternType::Literal),
                ..AclBindingFilter::any()
            };
            let result = c.delete_acls(&[filter]).await?;
            client_code(result.into_iter().next().expect("one result").map(drop))
        }
        Probe::DescribeUserScramCredentials => {
            let r: DescribeUserScramCredentialsResponse = c
                .call(
                    ApiKey::DescribeUserScramCredentials,
                    0,
                    &DescribeUserScramCredentialsRequest::default().with_users(None),
                )
                .await?;
            code(r.error_code)
        }
        Probe::AlterUserScramCredentials => {
            let r: AlterUserScramCredentialsResponse = c
                .call(
                    ApiKey::AlterUserScramCredentials,
                    0,
                    &AlterUserScramCredentialsRequest::default().with_deletions(vec![
                        ScramCredentialDeletion::default()
                            .with_name(StrBytes::from_static_str("no-such-user"))
                            .with_mechanism(1),
                    ]),
                )
                .await?;
            code(r.results[0].error_code)
        }
        Probe::DescribeClientQuotas => {
            let r: DescribeClientQuotasResponse = c
                .call(
                    ApiKey::DescribeClientQuotas,
                    1,
                    &DescribeClientQuotasRequest::default(),
                )
                .await?;
            code(r.error_code)
        }
        Probe::AlterClientQuotas => {
            // Validate only: the allowed user changes nothing.
            let entry = alter_client_quotas_request::EntryData::default()
                .with_entity(vec![
                    alter_client_quotas_request::EntityData::default()
                        .with_entity_type(StrBytes::from_static_str("user"))
                        .with_entity_name(Some(StrBytes::from_static_str("matrix-quota"))),
                ])
                .with_ops(vec![
                    alter_client_quotas_request::OpData::default()
                        .with_key(StrBytes::from_static_str("producer_byte_rate"))
                        .with_value(1_000_000.0),
                ]);
            let r: AlterClientQuotasResponse = c
                .call(
                    ApiKey::AlterClientQuotas,
                    1,
                    &AlterClientQuotasRequest::default()
                        .with_entries(vec![entry])
                        .with_validate_only(true),
                )
                .await?;
            code(r.entries[0].error_code)
        }
    })
}

/// The ACL the CreateAcls and DeleteAcls rows create and delete: one nobody else looks at.
fn bystander_acl() -> AclBinding {
    AclBinding {
        resource_type: ResourceType::Topic,
        resource_name: "bystander".to_owned(),
        pattern_type: PatternType::Literal,
        principal: "User:nobody".to_owned(),
        host: "*".to_owned(),
        operation: AclOperation::Read,
        permission: AclPermission::Allow,
    }
}

fn credentials(user: &str) -> SaslCredentials {
    SaslCredentials {
        mechanism: Mechanism::Plain,
        username: user.to_owned(),
        password: format!("{user}-pw"),
    }
}

fn grants(principal: &str, grants: &[Grant]) -> Vec<AclBinding> {
    grants
        .iter()
        .map(|&(resource_type, name, operation)| AclBinding {
            resource_type,
            resource_name: name.to_owned(),
            pattern_type: PatternType::Literal,
            principal: principal.to_owned(),
            host: "*".to_owned(),
            operation,
            permission: AclPermission::Allow,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_allows_what_kafka_allows_and_refuses_with_kafkas_code() {
    tokio::time::timeout(BOUND, async {
        let dir = tempfile::tempdir().unwrap();
        let mut config = BrokerConfig::new(dir.path());
        config.authorizer.enabled = true;
        config.authorizer.super_users = vec!["User:admin".to_owned()];
        let kafka = KafkaConfig {
            listeners: vec![ListenerConfig {
                name: "SASL_PLAINTEXT".to_owned(),
                security_protocol: SecurityProtocol::SaslPlaintext,
                ..ListenerConfig::plaintext(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
            }],
            sasl: Some(SaslConfig {
                mechanisms: vec![Mechanism::Plain],
                max_reauth: None,
                oauthbearer: None,
            }),
            ..KafkaConfig::default()
        };
        let broker = TestBroker::start_with(config, kafka).await;
        let addr = broker.bootstrap();
        let rows = rows();

        // Users: admin (super user) and two per row.
        let mut users = vec!["admin".to_owned()];
        for i in 0..rows.len() {
            users.push(format!("ok{i}"));
            users.push(format!("no{i}"));
        }
        let passwords: Vec<(String, String)> = users
            .iter()
            .map(|u| (u.clone(), format!("{u}-pw")))
            .collect();
        let borrowed: Vec<(&str, &str)> = passwords
            .iter()
            .map(|(u, p)| (u.as_str(), p.as_str()))
            .collect();
        // PLAIN checks the SCRAM-SHA-256 credential: one PBKDF2 per user, not two.
        broker
            .set_scram_passwords_for(&[strom_broker::scram::ScramMechanism::Sha256], &borrowed)
            .await;

        // Every API ApiVersions lists has a row (the SASL APIs: see the module doc).
        let mut admin = Client::connect_with(&addr, Some(&credentials("admin")))
            .await
            .unwrap_or_else(|e| panic!("admin connects: {e}"));
        let versions: ApiVersionsResponse = admin
            .call(
                ApiKey::ApiVersions,
                3,
                &ApiVersionsRequest::default()
                    .with_client_software_name(StrBytes::from_static_str("acl-matrix"))
                    .with_client_software_version(StrBytes::from_static_str("1")),
            )
            .await
            .unwrap();
        assert_eq!(versions.error_code, 0);
        let served: BTreeSet<i16> = versions
            .api_keys
            .iter()
            .map(|k| k.api_key)
            .filter(|&k| k != ApiKey::SaslHandshake as i16 && k != ApiKey::SaslAuthenticate as i16)
            .collect();
        let covered: BTreeSet<i16> = rows.iter().map(|r| r.api as i16).collect();
        assert_eq!(served, covered, "APIs served vs APIs in the matrix");

        // Resources the rows use.
        for name in [TOPIC, "doomed"] {
            admin
                .create_topic(name, 1, &Default::default())
                .await
                .unwrap();
        }
        admin.produce(TOPIC, 0, -1, batch(None)).await.unwrap();
        let committed: OffsetCommitResponse = admin
            .call(
                ApiKey::OffsetCommit,
                7,
                &OffsetCommitRequest::default()
                    .with_group_id(group(GROUP))
                    .with_generation_id_or_member_epoch(-1)
                    .with_topics(vec![
                        OffsetCommitRequestTopic::default()
                            .with_name(topic(TOPIC))
                            .with_partitions(vec![
                                OffsetCommitRequestPartition::default()
                                    .with_partition_index(0)
                                    .with_committed_offset(0),
                            ]),
                    ]),
            )
            .await
            .unwrap();
        assert_eq!(committed.topics[0].partitions[0].error_code, 0);
        let init: InitProducerIdResponse = admin
            .call(
                ApiKey::InitProducerId,
                4,
                &InitProducerIdRequest::default()
                    .with_transactional_id(Some(txn(TXN)))
                    .with_transaction_timeout_ms(60_000)
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1),
            )
            .await
            .unwrap();
        assert_eq!(init.error_code, 0);
        let fixture = Fixture {
            producer_id: init.producer_id.0,
            producer_epoch: init.producer_epoch,
        };

        let mut acls = Vec::new();
        for (i, r) in rows.iter().enumerate() {
            acls.extend(grants(&format!("User:ok{i}"), r.allow));
            acls.extend(grants(&format!("User:no{i}"), r.deny));
        }
        for result in admin.create_acls(&acls).await.unwrap() {
            result.unwrap_or_else(|e| panic!("ACL created: {e}"));
        }

        // The refused user goes first, so an allowed request that changes state (a topic
        // created or deleted) cannot make the refusal answer differently.
        let mut failures = Vec::new();
        for (i, r) in rows.iter().enumerate() {
            for (user, expect) in [(format!("no{i}"), r.refused), (format!("ok{i}"), r.allowed)] {
                let mut c = Client::connect_with(&addr, Some(&credentials(&user)))
                    .await
                    .unwrap_or_else(|e| panic!("{user} connects: {e}"));
                let seen = run(r.probe, &mut c, fixture)
                    .await
                    .unwrap_or_else(|e| panic!("{:?} as {user}: {e}", r.probe));
                if !expect.matches(seen) {
                    failures.push(format!(
                        "row {i} {:?} as {user}: expected {expect:?}, saw {seen:?}",
                        r.probe
                    ));
                }
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        drop(admin);
        broker.stop().await;
    })
    .await
    .expect("bounded");
}
