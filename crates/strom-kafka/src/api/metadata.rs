//! Metadata (key 3): brokers, topics with ids, partitions and leaders; auto-creates topics.

use std::sync::Arc;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use strom_broker::storage::{BrokerEndpoint, PartitionIndex, partition_leader};
use strom_broker::{Topic, validate_topic_name};

use super::{HandlerError, Outcome, decode, respond};
use crate::error_code::error_code;
use crate::frame::Request;
use crate::{Context, authz};
use strom_broker::acl::{AclOperation, ResourceType};

/// Operations allowed on a topic when asked (`include_topic_authorized_operations`) without an
/// authorizer: everything Kafka defines for topics — READ(3), WRITE(4),
/// CREATE(5), DELETE(6), ALTER(7), DESCRIBE(8), DESCRIBE_CONFIGS(10), ALTER_CONFIGS(11) — as
/// the bit field of `AclOperation` codes.
pub const TOPIC_AUTHORIZED_OPERATIONS: i32 =
    (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 10) | (1 << 11);

/// Operations allowed on the cluster when asked, without an authorizer: CREATE(5), ALTER(7), DESCRIBE(8),
/// CLUSTER_ACTION(9), DESCRIBE_CONFIGS(10), ALTER_CONFIGS(11), IDEMPOTENT_WRITE(12).
pub const CLUSTER_AUTHORIZED_OPERATIONS: i32 =
    (1 << 5) | (1 << 7) | (1 << 8) | (1 << 9) | (1 << 10) | (1 << 11) | (1 << 12);

/// Handles Metadata.
pub async fn handle(context: &Context, request: &Request) -> Result<Outcome, HandlerError> {
    let version = request.version();
    let body: MetadataRequest = decode(request)?;
    let broker = &context.broker;
    // Cluster mode: first apply what other brokers appended to the shared metadata (one
    // query, shared by the requests waiting for it together), so topics and partitions
    // created through any broker (partitions a Kinesis reshard through another broker added
    // among them) are listed by the next Metadata through this one, not up to one
    // metadata-tail interval (250 ms) later.
    let asked = std::time::Instant::now();
    if broker.live_brokers().is_some()
        && let Err(e) = broker
            .run_blocking(move |b| b.sync_metadata_since_blocking(asked))
            .await
    {
        tracing::warn!(error = %e, "reading other brokers' metadata failed");
    }
    // v0: an empty list means all topics; v1+: null means all, empty means none.
    let requested = match body.topics {
        None => None,
        Some(list) if list.is_empty() && version == 0 => None,
        Some(list) => Some(list),
    };
    let auto_create = version < 4 || body.allow_auto_topic_creation;
    // With an authorizer: only topics the client may DESCRIBE are listed; a named one it may
    // not is TOPIC_AUTHORIZATION_FAILED; auto-creation needs CREATE on the cluster or the topic;
    // the authorized-operation bit fields are the client's own.
    let want_ops = version >= 8 && body.include_topic_authorized_operations;
    let topic_ops = |name: &str| {
        want_ops.then(|| {
            if broker.acls().enabled() {
                authz::authorized_operations(
                    context,
                    request,
                    ResourceType::Topic,
                    name,
                    authz::TOPIC_OPERATIONS,
                )
            } else {
                TOPIC_AUTHORIZED_OPERATIONS
            }
        })
    };
    let describable = |name: &str| {
        authz::allowed(
            context,
            request,
            AclOperation::Describe,
            ResourceType::Topic,
            name,
        )
    };
    let denied = || {
        error_code(&strom_broker::Error::AuthorizationFailed {
            resource_type: ResourceType::Topic,
            operation: AclOperation::Describe,
        })
    };
    let live = live_brokers(context, request);
    let mut topics = Vec::new();
    match requested {
        None => {
            for topic in broker.topics() {
                if describable(topic.name()) {
                    topics.push(describe_topic(
                        &live,
                        &topic,
                        version,
                        topic_ops(topic.name()),
                    ));
                }
            }
        }
        Some(list) => {
            for wanted in list {
                let entry = match wanted.name {
                    Some(name) => {
                        let name = name.0.to_string();
                        if let Err(e) = validate_topic_name(&name) {
                            error_topic(&name, error_code(&e))
                        } else if !describable(&name) {
                            error_topic(&name, denied())
                        } else {
                            let auto_create = auto_create
                                && (authz::check_cluster(context, request, AclOperation::Create)
                                    .is_ok()
                                    || authz::allowed(
                                        context,
                                        request,
                                        AclOperation::Create,
                                        ResourceType::Topic,
                                        &name,
                                    ));
                            let lookup = name.clone();
                            let result = broker
                                .run_blocking(move |b| {
                                    b.topic_or_create_blocking(&lookup, auto_create)
                                })
                                .await;
                            match result {
                                Ok(topic) => {
                                    describe_topic(&live, &topic, version, topic_ops(&name))
                                }
                                Err(e) => error_topic(&name, error_code(&e)),
                            }
                        }
                    }
                    None => match broker.topic_by_id(wanted.topic_id) {
                        Ok(topic) if !describable(topic.name()) => MetadataResponseTopic::default()
                            .with_error_code(denied())
                            .with_name(None)
                            .with_topic_id(wanted.topic_id),
                        Ok(topic) => {
                            describe_topic(&live, &topic, version, topic_ops(topic.name()))
                        }
                        Err(e) => MetadataResponseTopic::default()
                            .with_error_code(error_code(&e))
                            .with_name(None)
                            .with_topic_id(wanted.topic_id),
                    },
                };
                topics.push(entry);
            }
        }
    }
    let node = BrokerId(broker.node_id());
    let brokers = live_brokers(context, request)
        .into_iter()
        .map(|b| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(b.node_id))
                .with_host(StrBytes::from_string(b.host))
                .with_port(i32::from(b.port))
        })
        .collect();
    let mut response = MetadataResponse::default()
        .with_brokers(brokers)
        .with_topics(topics);
    if version >= 1 {
        response.controller_id = node;
    }
    if version >= 2 {
        response.cluster_id = Some(StrBytes::from_string(broker.cluster_id().to_owned()));
    }
    if (8..=10).contains(&version) && body.include_cluster_authorized_operations {
        response.cluster_authorized_operations = cluster_authorized_operations(context, request);
    }
    respond(request, &response)
}

/// The cluster operations the client may do, as a bit field (everything without an
/// authorizer).
pub(crate) fn cluster_authorized_operations(context: &Context, request: &Request) -> i32 {
    if context.broker.acls().enabled() {
        // Kafka (`AuthHelper.computeDescribeClusterResponse`, Metadata alike) reports the
        // cluster's operations only to a client that may DESCRIBE it, and 0 to any other.
        if !authz::allowed(
            context,
            request,
            AclOperation::Describe,
            ResourceType::Cluster,
            strom_broker::acl::model::CLUSTER_RESOURCE_NAME,
        ) {
            return 0;
        }
        authz::authorized_operations(
            context,
            request,
            ResourceType::Cluster,
            strom_broker::acl::model::CLUSTER_RESOURCE_NAME,
            authz::CLUSTER_OPERATIONS,
        )
    } else {
        CLUSTER_AUTHORIZED_OPERATIONS
    }
}

fn error_topic(name: &str, code: i16) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_error_code(code)
        .with_name(Some(TopicName(StrBytes::from_string(name.to_owned()))))
}

/// The brokers to list: on a single node this one; in cluster mode every live broker of the
/// registry, this one included even before its registration is seen.
///
/// Every broker is given with the advertised address of the listener the request came in on
/// (Kafka answers each client with the endpoints of its own listener): this one from its
/// session, the others from the addresses they registered per listener
/// ([`strom_broker::storage::ClusterMembers::live_brokers_on`]; a broker that registered no
/// listener of that name is given with its first listener's address). A cluster broker whose
/// own registration lapsed (cut off from PostgreSQL) leaves itself out, unless it knows no
/// other broker, so clients move its partitions to brokers that can commit them.
pub(crate) fn live_brokers(context: &Context, request: &Request) -> Vec<BrokerEndpoint> {
    let (host, port) = advertised(context, request);
    let me = BrokerEndpoint {
        node_id: context.broker.node_id(),
        host,
        port: u16::try_from(port).unwrap_or(0),
    };
    let mut live = match &request.session {
        Some(session) => context.broker.live_brokers_on(&session.listener.name),
        None => context.broker.live_brokers(),
    }
    .unwrap_or_default();
    if !context.broker.self_registered() {
        live.retain(|b| b.node_id != me.node_id);
        if !live.is_empty() {
            return live;
        }
    }
    match live.iter_mut().find(|b| b.node_id == me.node_id) {
        Some(mine) => *mine = me,
        None => {
            live.push(me);
            live.sort_by_key(|b| b.node_id);
        }
    }
    live
}

/// The host and port advertised to the request's client: its listener's, or the first
/// listener's for a request that came over none.
pub(crate) fn advertised(context: &Context, request: &Request) -> (String, i32) {
    match &request.session {
        Some(session) => (
            session.listener.advertised_host.clone(),
            session.listener.advertised_port,
        ),
        None => (context.advertised_host.clone(), context.advertised_port),
    }
}

fn describe_topic(
    live: &[BrokerEndpoint],
    topic: &Arc<Topic>,
    version: i16,
    authorized_operations: Option<i32>,
) -> MetadataResponseTopic {
    let partitions = topic
        .partitions()
        .iter()
        .map(|p| {
            // Any broker serves any partition in cluster mode; the leader named here only
            // keeps each partition of a producer on one connection (its order).
            let node = BrokerId(
                partition_leader(live, topic.name(), PartitionIndex(p.index()))
                    .map_or(-1, |b| b.node_id),
            );
            let mut part = MetadataResponsePartition::default()
                .with_partition_index(p.index())
                .with_leader_id(node)
                .with_replica_nodes(vec![node])
                .with_isr_nodes(vec![node]);
            if version >= 7 {
                part.leader_epoch = strom_broker::LEADER_EPOCH;
            }
            part
        })
        .collect();
    let mut t = MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(
            topic.name().to_owned(),
        ))))
        .with_is_internal(topic.is_internal())
        .with_partitions(partitions);
    if version >= 10 {
        t.topic_id = topic.id();
    }
    if let Some(ops) = authorized_operations {
        t.topic_authorized_operations = ops;
    }
    t
}
