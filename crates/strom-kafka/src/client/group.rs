//! Consumer groups from the client side: the group APIs (FindCoordinator, JoinGroup, SyncGroup,
//! Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch, ListGroups, DescribeGroups, DeleteGroups),
//! the consumer-protocol encodings of subscriptions and assignments, the `range` assignor, and
//! [`GroupMember`], a classic-protocol group member as `strom consume --group` uses it.
//!
//! The consumer protocol (protocol type `consumer`) carries its own versioned messages inside
//! JoinGroup metadata and SyncGroup assignments: an `i16` version, then
//! `ConsumerProtocolSubscription` / `ConsumerProtocolAssignment` encoded at that version.
//! Unknown newer versions decode as the highest version this crate knows, as Kafka's clients do
//! (later versions only append fields).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedPartitions;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, ConsumerProtocolAssignment, ConsumerProtocolSubscription, DeleteGroupsRequest,
    DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse, FindCoordinatorRequest,
    FindCoordinatorResponse, GroupId, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest,
    JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, ListGroupsRequest,
    ListGroupsResponse, OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest,
    OffsetFetchResponse, SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use super::{Client, ClientError, kafka_error, topic_name};

/// The protocol type of consumer groups.
pub const CONSUMER_PROTOCOL_TYPE: &str = "consumer";
/// The one assignor [`GroupMember`] offers.
pub const RANGE_ASSIGNOR: &str = "range";
/// The consumer-protocol version this client writes (v0: no owned partitions, no rack).
const CONSUMER_PROTOCOL_VERSION: i16 = 0;
/// The highest consumer-protocol version `kafka-protocol` decodes.
const CONSUMER_PROTOCOL_MAX: i16 = 3;

fn group_id(id: &str) -> GroupId {
    GroupId(StrBytes::from_string(id.to_owned()))
}

fn protocol_error(what: &str, e: impl std::fmt::Display) -> ClientError {
    ClientError::Protocol(format!("{what}: {e}"))
}

/// Encodes a consumer-protocol subscription (JoinGroup protocol metadata) for `topics`.
pub fn encode_subscription(topics: &[String]) -> Result<Bytes, ClientError> {
    let subscription = ConsumerProtocolSubscription::default().with_topics(
        topics
            .iter()
            .map(|t| StrBytes::from_string(t.clone()))
            .collect(),
    );
    let mut buf = BytesMut::new();
    buf.put_i16(CONSUMER_PROTOCOL_VERSION);
    subscription
        .encode(&mut buf, CONSUMER_PROTOCOL_VERSION)
        .map_err(|e| protocol_error("encoding a subscription", e))?;
    Ok(buf.freeze())
}

/// The topics of a consumer-protocol subscription.
pub fn decode_subscription(bytes: &[u8]) -> Result<Vec<String>, ClientError> {
    let (version, mut body) = split_version(bytes, "subscription")?;
    let subscription = ConsumerProtocolSubscription::decode(&mut body, version)
        .map_err(|e| protocol_error("decoding a subscription", e))?;
    Ok(subscription
        .topics
        .into_iter()
        .map(|t| t.to_string())
        .collect())
}

/// Encodes a consumer-protocol assignment (SyncGroup) of `partitions` (topic → partitions).
pub fn encode_assignment(partitions: &BTreeMap<String, Vec<i32>>) -> Result<Bytes, ClientError> {
    let assignment = ConsumerProtocolAssignment::default().with_assigned_partitions(
        partitions
            .iter()
            .map(|(t, ps)| {
                AssignedPartitions::default()
                    .with_topic(topic_name(t))
                    .with_partitions(ps.clone())
            })
            .collect(),
    );
    let mut buf = BytesMut::new();
    buf.put_i16(CONSUMER_PROTOCOL_VERSION);
    assignment
        .encode(&mut buf, CONSUMER_PROTOCOL_VERSION)
        .map_err(|e| protocol_error("encoding an assignment", e))?;
    Ok(buf.freeze())
}

/// The partitions of a consumer-protocol assignment (topic → partitions). Empty bytes (a member
/// that has not synced yet) are an empty assignment.
pub fn decode_assignment(bytes: &[u8]) -> Result<BTreeMap<String, Vec<i32>>, ClientError> {
    let mut out: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    if bytes.is_empty() {
        return Ok(out);
    }
    let (version, mut body) = split_version(bytes, "assignment")?;
    let assignment = ConsumerProtocolAssignment::decode(&mut body, version)
        .map_err(|e| protocol_error("decoding an assignment", e))?;
    for tp in assignment.assigned_partitions {
        out.entry(tp.topic.0.to_string())
            .or_default()
            .extend(tp.partitions);
    }
    for ps in out.values_mut() {
        ps.sort_unstable();
        ps.dedup();
    }
    Ok(out)
}

fn split_version<'a>(bytes: &'a [u8], what: &str) -> Result<(i16, &'a [u8]), ClientError> {
    let mut body = bytes;
    if body.remaining() < 2 {
        return Err(ClientError::Protocol(format!(
            "{what} shorter than its version"
        )));
    }
    let version = body.get_i16();
    if version < 0 {
        return Err(ClientError::Protocol(format!(
            "{what} has negative version {version}"
        )));
    }
    Ok((version.min(CONSUMER_PROTOCOL_MAX), body))
}

/// Kafka's `range` assignor: for each topic, the members subscribed to it (sorted by member
/// id) get consecutive ranges of its partitions; the first `partitions % members` members get
/// one more. `members` are `(member id, subscribed topics)`; `partitions` gives each topic's
/// partition count (topics missing from it are skipped). Every member appears in the result,
/// possibly with nothing.
pub fn range_assign(
    members: &[(String, Vec<String>)],
    partitions: &BTreeMap<String, i32>,
) -> BTreeMap<String, BTreeMap<String, Vec<i32>>> {
    let mut out: BTreeMap<String, BTreeMap<String, Vec<i32>>> = members
        .iter()
        .map(|(m, _)| (m.clone(), BTreeMap::new()))
        .collect();
    for (topic, &count) in partitions {
        let mut subscribed: Vec<&String> = members
            .iter()
            .filter(|(_, topics)| topics.contains(topic))
            .map(|(m, _)| m)
            .collect();
        subscribed.sort();
        subscribed.dedup();
        if subscribed.is_empty() || count <= 0 {
            continue;
        }
        let n = i32::try_from(subscribed.len()).unwrap_or(i32::MAX);
        let per = count / n;
        let extra = count % n;
        let mut next = 0;
        for (i, member) in (0..).zip(subscribed) {
            let len = per + i32::from(i < extra);
            if len == 0 {
                continue;
            }
            out.entry(member.clone())
                .or_default()
                .insert(topic.clone(), (next..next + len).collect());
            next += len;
        }
    }
    out
}

/// A group as ListGroups shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedGroup {
    /// Group id.
    pub group_id: String,
    /// State (`Empty`, `Stable`, …).
    pub state: String,
    /// Protocol type (`consumer`, or empty for a group that only commits offsets).
    pub protocol_type: String,
}

/// A member as DescribeGroups shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedMember {
    /// Member id.
    pub member_id: String,
    /// Static instance id, if any.
    pub instance_id: Option<String>,
    /// The client id it joined with.
    pub client_id: String,
    /// The host it joined from.
    pub client_host: String,
    /// Its assignment, decoded if the group uses the consumer protocol (else empty).
    pub assignment: BTreeMap<String, Vec<i32>>,
}

/// A group as DescribeGroups shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedGroup {
    /// Group id.
    pub group_id: String,
    /// State (`Empty`, `PreparingRebalance`, `CompletingRebalance`, `Stable`, `Dead`).
    pub state: String,
    /// Protocol type.
    pub protocol_type: String,
    /// The chosen protocol (assignor), when the group is stable or completing a rebalance.
    pub protocol: String,
    /// Members.
    pub members: Vec<DescribedMember>,
}

/// The answer to a successful JoinGroup.
#[derive(Debug, Clone)]
pub struct Joined {
    /// Generation.
    pub generation_id: i32,
    /// This member's id.
    pub member_id: String,
    /// The leader's member id.
    pub leader: String,
    /// The chosen protocol.
    pub protocol_name: String,
    /// Every member with its metadata (only the leader gets them).
    pub members: Vec<(String, Bytes)>,
}

/// Group-coordination timings of a [`GroupMember`].
#[derive(Debug, Clone, Copy)]
pub struct MemberTimeouts {
    /// `session.timeout.ms`.
    pub session_timeout_ms: i32,
    /// `max.poll.interval.ms` (the rebalance timeout).
    pub rebalance_timeout_ms: i32,
    /// `heartbeat.interval.ms`.
    pub heartbeat_interval: Duration,
}

impl Default for MemberTimeouts {
    fn default() -> Self {
        MemberTimeouts {
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 30_000,
            heartbeat_interval: Duration::from_millis(1_000),
        }
    }
}

fn is_error(e: &ClientError, wanted: ResponseError) -> bool {
    matches!(e, ClientError::Kafka { error, .. } if *error == wanted)
}

/// Whether `e` means "rejoin the group": the member's generation or id is stale, or a
/// rebalance started.
pub fn needs_rejoin(e: &ClientError) -> bool {
    is_error(e, ResponseError::RebalanceInProgress)
        || is_error(e, ResponseError::IllegalGeneration)
        || is_error(e, ResponseError::UnknownMemberId)
}

/// Whether `e` means "find the coordinator again": it moved (NOT_COORDINATOR), is not
/// available or still loading, or the connection to it broke (a broker that went away).
pub fn coordinator_moved(e: &ClientError) -> bool {
    matches!(e, ClientError::Io(_))
        || is_error(e, ResponseError::NotCoordinator)
        || is_error(e, ResponseError::CoordinatorNotAvailable)
        || is_error(e, ResponseError::CoordinatorLoadInProgress)
}

/// Whether `e` is OFFSET_OUT_OF_RANGE (a fetch below the log start or past the end).
pub fn is_offset_out_of_range(e: &ClientError) -> bool {
    is_error(e, ResponseError::OffsetOutOfRange)
}

impl Client {
    /// FindCoordinator for a group: the coordinator's `host:port`.
    pub async fn find_coordinator(&mut self, group: &str) -> Result<String, ClientError> {
        self.find_coordinator_of(group, 0).await
    }

    /// FindCoordinator for a transactional id: its transaction coordinator's `host:port`.
    pub async fn find_transaction_coordinator(
        &mut self,
        transactional_id: &str,
    ) -> Result<String, ClientError> {
        self.find_coordinator_of(transactional_id, 1).await
    }

    /// FindCoordinator of `key` of `key_type` (0 group, 1 transactional id).
    async fn find_coordinator_of(
        &mut self,
        key: &str,
        key_type: i8,
    ) -> Result<String, ClientError> {
        let v = self.version(ApiKey::FindCoordinator)?.min(3);
        let request = FindCoordinatorRequest::default()
            .with_key(StrBytes::from_string(key.to_owned()))
            .with_key_type(key_type);
        let response: FindCoordinatorResponse =
            self.call(ApiKey::FindCoordinator, v, &request).await?;
        kafka_error(
            format!("find coordinator of {key}"),
            response.error_code,
            response.error_message.as_ref(),
        )?;
        Ok(format!("{}:{}", response.host, response.port))
    }

    /// One JoinGroup request (no retry on MEMBER_ID_REQUIRED: the error's member id is
    /// handled by [`Client::join_group`]).
    async fn join_group_once(
        &mut self,
        group: &str,
        member_id: &str,
        timeouts: MemberTimeouts,
        metadata: Bytes,
    ) -> Result<(i16, JoinGroupResponse), ClientError> {
        let v = self.version(ApiKey::JoinGroup)?.min(5);
        let request = JoinGroupRequest::default()
            .with_group_id(group_id(group))
            .with_session_timeout_ms(timeouts.session_timeout_ms)
            .with_rebalance_timeout_ms(timeouts.rebalance_timeout_ms)
            .with_member_id(StrBytes::from_string(member_id.to_owned()))
            .with_protocol_type(StrBytes::from_static_str(CONSUMER_PROTOCOL_TYPE))
            .with_protocols(vec![
                JoinGroupRequestProtocol::default()
                    .with_name(StrBytes::from_static_str(RANGE_ASSIGNOR))
                    .with_metadata(metadata),
            ]);
        let response: JoinGroupResponse = self.call(ApiKey::JoinGroup, v, &request).await?;
        Ok((response.error_code, response))
    }

    /// JoinGroup as a consumer with the `range` assignor; a first join answered
    /// MEMBER_ID_REQUIRED (KIP-394) is repeated with the id the coordinator returned.
    pub async fn join_group(
        &mut self,
        group: &str,
        member_id: &str,
        timeouts: MemberTimeouts,
        topics: &[String],
    ) -> Result<Joined, ClientError> {
        let metadata = encode_subscription(topics)?;
        let mut member_id = member_id.to_owned();
        for _ in 0..3 {
            let (code, response) = self
                .join_group_once(group, &member_id, timeouts, metadata.clone())
                .await?;
            if code == ResponseError::MemberIdRequired.code() && !response.member_id.is_empty() {
                member_id = response.member_id.to_string();
                continue;
            }
            kafka_error(format!("join group {group}"), code, None)?;
            return Ok(Joined {
                generation_id: response.generation_id,
                member_id: response.member_id.to_string(),
                leader: response.leader.to_string(),
                protocol_name: response
                    .protocol_name
                    .map(|p| p.to_string())
                    .unwrap_or_default(),
                members: response
                    .members
                    .into_iter()
                    .map(|m| (m.member_id.to_string(), m.metadata))
                    .collect(),
            });
        }
        Err(ClientError::Protocol(format!(
            "join group {group}: MEMBER_ID_REQUIRED answered repeatedly"
        )))
    }

    /// SyncGroup: sends the leader's `assignments` (empty for followers) and returns this
    /// member's assignment bytes.
    pub async fn sync_group(
        &mut self,
        group: &str,
        member_id: &str,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
    ) -> Result<Bytes, ClientError> {
        let v = self.version(ApiKey::SyncGroup)?.min(3);
        let request = SyncGroupRequest::default()
            .with_group_id(group_id(group))
            .with_generation_id(generation)
            .with_member_id(StrBytes::from_string(member_id.to_owned()))
            .with_assignments(
                assignments
                    .into_iter()
                    .map(|(m, a)| {
                        SyncGroupRequestAssignment::default()
                            .with_member_id(StrBytes::from_string(m))
                            .with_assignment(a)
                    })
                    .collect(),
            );
        let response: SyncGroupResponse = self.call(ApiKey::SyncGroup, v, &request).await?;
        kafka_error(format!("sync group {group}"), response.error_code, None)?;
        Ok(response.assignment)
    }

    /// Heartbeat.
    pub async fn heartbeat(
        &mut self,
        group: &str,
        member_id: &str,
        generation: i32,
    ) -> Result<(), ClientError> {
        let v = self.version(ApiKey::Heartbeat)?.min(3);
        let request = HeartbeatRequest::default()
            .with_group_id(group_id(group))
            .with_generation_id(generation)
            .with_member_id(StrBytes::from_string(member_id.to_owned()));
        let response: HeartbeatResponse = self.call(ApiKey::Heartbeat, v, &request).await?;
        kafka_error(format!("heartbeat to {group}"), response.error_code, None)
    }

    /// LeaveGroup for one member.
    pub async fn leave_group(&mut self, group: &str, member_id: &str) -> Result<(), ClientError> {
        let v = self.version(ApiKey::LeaveGroup)?.min(3);
        let request = LeaveGroupRequest::default()
            .with_group_id(group_id(group))
            .with_members(vec![
                MemberIdentity::default()
                    .with_member_id(StrBytes::from_string(member_id.to_owned())),
            ]);
        let response: LeaveGroupResponse = self.call(ApiKey::LeaveGroup, v, &request).await?;
        kafka_error(format!("leave group {group}"), response.error_code, None)?;
        for m in &response.members {
            kafka_error(format!("leave group {group}"), m.error_code, None)?;
        }
        Ok(())
    }

    /// OffsetCommit of `(topic, partition, next offset)`; `member_id` empty and `generation`
    /// -1 for a commit from outside the group (only accepted while the group has no members).
    pub async fn commit_offsets(
        &mut self,
        group: &str,
        member_id: &str,
        generation: i32,
        offsets: &[(String, i32, i64)],
    ) -> Result<(), ClientError> {
        let v = self.version(ApiKey::OffsetCommit)?.min(7);
        let mut topics: Vec<OffsetCommitRequestTopic> = Vec::new();
        for (topic, partition, offset) in offsets {
            let p = OffsetCommitRequestPartition::default()
                .with_partition_index(*partition)
                .with_committed_offset(*offset)
                .with_committed_leader_epoch(-1);
            match topics.last_mut() {
                Some(t) if t.name.0.as_str() == topic.as_str() => t.partitions.push(p),
                _ => topics.push(
                    OffsetCommitRequestTopic::default()
                        .with_name(topic_name(topic))
                        .with_partitions(vec![p]),
                ),
            }
        }
        let request = OffsetCommitRequest::default()
            .with_group_id(group_id(group))
            .with_generation_id_or_member_epoch(generation)
            .with_member_id(StrBytes::from_string(member_id.to_owned()))
            .with_topics(topics);
        let response: OffsetCommitResponse = self.call(ApiKey::OffsetCommit, v, &request).await?;
        for t in &response.topics {
            for p in &t.partitions {
                kafka_error(
                    format!(
                        "commit offset of {}-{} for {group}",
                        t.name.0, p.partition_index
                    ),
                    p.error_code,
                    None,
                )?;
            }
        }
        Ok(())
    }

    /// OffsetFetch: committed offsets `(topic, partition, offset)` of a group, of every
    /// partition (`None`) or of the given ones; partitions without a commit are left out.
    pub async fn fetch_offsets(
        &mut self,
        group: &str,
        partitions: Option<&[(String, i32)]>,
    ) -> Result<Vec<(String, i32, i64)>, ClientError> {
        let v = self.version(ApiKey::OffsetFetch)?.min(7);
        let topics = partitions.map(|ps| {
            let mut topics: Vec<OffsetFetchRequestTopic> = Vec::new();
            for (topic, partition) in ps {
                match topics.last_mut() {
                    Some(t) if t.name.0.as_str() == topic.as_str() => {
                        t.partition_indexes.push(*partition);
                    }
                    _ => topics.push(
                        OffsetFetchRequestTopic::default()
                            .with_name(topic_name(topic))
                            .with_partition_indexes(vec![*partition]),
                    ),
                }
            }
            topics
        });
        let request = OffsetFetchRequest::default()
            .with_group_id(group_id(group))
            .with_topics(topics);
        let response: OffsetFetchResponse = self.call(ApiKey::OffsetFetch, v, &request).await?;
        kafka_error(
            format!("fetch offsets of {group}"),
            response.error_code,
            None,
        )?;
        let mut out = Vec::new();
        for t in response.topics {
            for p in t.partitions {
                kafka_error(
                    format!("fetch offset of {}-{}", t.name.0, p.partition_index),
                    p.error_code,
                    None,
                )?;
                if p.committed_offset >= 0 {
                    out.push((t.name.0.to_string(), p.partition_index, p.committed_offset));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// ListGroups: every group, sorted by id (v4+ carries the state; older brokers leave it
    /// empty).
    pub async fn list_groups(&mut self) -> Result<Vec<ListedGroup>, ClientError> {
        let v = self.version(ApiKey::ListGroups)?.min(4);
        let response: ListGroupsResponse = self
            .call(ApiKey::ListGroups, v, &ListGroupsRequest::default())
            .await?;
        kafka_error("list groups", response.error_code, None)?;
        let mut out: Vec<ListedGroup> = response
            .groups
            .into_iter()
            .map(|g| ListedGroup {
                group_id: g.group_id.0.to_string(),
                state: g.group_state.to_string(),
                protocol_type: g.protocol_type.to_string(),
            })
            .collect();
        out.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        Ok(out)
    }

    /// DescribeGroups for one group. Kafka answers an unknown group with state `Dead` and no
    /// members rather than an error; so does this.
    pub async fn describe_group(&mut self, group: &str) -> Result<DescribedGroup, ClientError> {
        let v = self.version(ApiKey::DescribeGroups)?.min(4);
        let request = DescribeGroupsRequest::default().with_groups(vec![group_id(group)]);
        let response: DescribeGroupsResponse =
            self.call(ApiKey::DescribeGroups, v, &request).await?;
        let g = response
            .groups
            .into_iter()
            .next()
            .ok_or_else(|| ClientError::Protocol("empty describe groups response".into()))?;
        kafka_error(
            format!("describe group {group}"),
            g.error_code,
            g.error_message.as_ref(),
        )?;
        let consumer = g.protocol_type.as_str() == CONSUMER_PROTOCOL_TYPE;
        let mut members = Vec::with_capacity(g.members.len());
        for m in g.members {
            let assignment = if consumer {
                decode_assignment(&m.member_assignment)?
            } else {
                BTreeMap::new()
            };
            members.push(DescribedMember {
                member_id: m.member_id.to_string(),
                instance_id: m.group_instance_id.map(|s| s.to_string()),
                client_id: m.client_id.to_string(),
                client_host: m.client_host.to_string(),
                assignment,
            });
        }
        Ok(DescribedGroup {
            group_id: g.group_id.0.to_string(),
            state: g.group_state.to_string(),
            protocol_type: g.protocol_type.to_string(),
            protocol: g.protocol_data.to_string(),
            members,
        })
    }

    /// DeleteGroups for one group (`NonEmptyGroup` while it has members,
    /// `GroupIdNotFound` if unknown).
    pub async fn delete_group(&mut self, group: &str) -> Result<(), ClientError> {
        let v = self.version(ApiKey::DeleteGroups)?.min(2);
        let request = DeleteGroupsRequest::default().with_groups_names(vec![group_id(group)]);
        let response: DeleteGroupsResponse = self.call(ApiKey::DeleteGroups, v, &request).await?;
        for r in &response.results {
            kafka_error(format!("delete group {group}"), r.error_code, None)?;
        }
        Ok(())
    }
}

/// A classic-protocol consumer-group member: joins (leader assigns with `range`), heartbeats
/// when asked to by the caller's loop, commits and leaves. It holds its own connection to the
/// coordinator; fetching is the caller's business (on another connection), so a long fetch
/// never delays a heartbeat beyond the fetch's wait.
#[derive(Debug)]
pub struct GroupMember {
    coordinator: Client,
    group: String,
    topics: Vec<String>,
    timeouts: MemberTimeouts,
    member_id: String,
    generation: i32,
    assignment: BTreeMap<String, Vec<i32>>,
    last_heartbeat: Instant,
}

impl GroupMember {
    /// Finds the group's coordinator through `bootstrap` and connects to it (falling back to
    /// `bootstrap_addr` if the advertised address does not answer). Does not join yet.
    pub async fn connect(
        bootstrap: &mut Client,
        bootstrap_addr: &str,
        group: &str,
        topics: Vec<String>,
        timeouts: MemberTimeouts,
    ) -> Result<GroupMember, ClientError> {
        let addr = bootstrap.find_coordinator(group).await?;
        let options = bootstrap.options().clone();
        let coordinator = match Client::connect_with_options(&addr, &options).await {
            Ok(c) => c,
            Err(ClientError::Io(_)) => {
                Client::connect_with_options(bootstrap_addr, &options).await?
            }
            Err(e) => return Err(e),
        };
        Ok(GroupMember {
            coordinator,
            group: group.to_owned(),
            topics,
            timeouts,
            member_id: String::new(),
            generation: -1,
            assignment: BTreeMap::new(),
            last_heartbeat: Instant::now(),
        })
    }

    /// The member id (empty before the first join).
    pub fn member_id(&self) -> &str {
        &self.member_id
    }

    /// The current generation (-1 before the first join).
    pub fn generation(&self) -> i32 {
        self.generation
    }

    /// The current assignment (topic → partitions).
    pub fn assignment(&self) -> &BTreeMap<String, Vec<i32>> {
        &self.assignment
    }

    /// Joins (or rejoins) the group and syncs; the leader computes a `range` assignment over
    /// `partition_counts` (topic → partition count). Returns the new assignment.
    ///
    /// A stale member id (UNKNOWN_MEMBER_ID) starts over with an empty one; a rebalance that
    /// restarts during SyncGroup (REBALANCE_IN_PROGRESS) joins again.
    pub async fn join(
        &mut self,
        partition_counts: &BTreeMap<String, i32>,
    ) -> Result<&BTreeMap<String, Vec<i32>>, ClientError> {
        for _ in 0..10 {
            let joined = match self
                .coordinator
                .join_group(&self.group, &self.member_id, self.timeouts, &self.topics)
                .await
            {
                Ok(j) => j,
                Err(e) if is_error(&e, ResponseError::UnknownMemberId) => {
                    self.member_id.clear();
                    continue;
                }
                Err(e) if is_error(&e, ResponseError::RebalanceInProgress) => continue,
                Err(e) => return Err(e),
            };
            self.member_id = joined.member_id.clone();
            self.generation = joined.generation_id;
            let assignments = if joined.leader == joined.member_id {
                let mut members = Vec::with_capacity(joined.members.len());
                for (id, metadata) in &joined.members {
                    members.push((id.clone(), decode_subscription(metadata)?));
                }
                let plan = range_assign(&members, partition_counts);
                let mut out = Vec::with_capacity(plan.len());
                for (member, partitions) in plan {
                    out.push((member, encode_assignment(&partitions)?));
                }
                out
            } else {
                Vec::new()
            };
            match self
                .coordinator
                .sync_group(&self.group, &self.member_id, self.generation, assignments)
                .await
            {
                Ok(bytes) => {
                    self.assignment = decode_assignment(&bytes)?;
                    self.last_heartbeat = Instant::now();
                    return Ok(&self.assignment);
                }
                Err(e) if needs_rejoin(&e) => {
                    if is_error(&e, ResponseError::UnknownMemberId) {
                        self.member_id.clear();
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Err(ClientError::Protocol(format!(
            "could not join group {}: the group kept rebalancing",
            self.group
        )))
    }

    /// Sends a heartbeat if the heartbeat interval has passed since the last one. `Ok(true)`
    /// means the member must rejoin (a rebalance started, or its generation or id is stale).
    pub async fn heartbeat_if_due(&mut self) -> Result<bool, ClientError> {
        if self.last_heartbeat.elapsed() < self.timeouts.heartbeat_interval {
            return Ok(false);
        }
        self.last_heartbeat = Instant::now();
        match self
            .coordinator
            .heartbeat(&self.group, &self.member_id, self.generation)
            .await
        {
            Ok(()) => Ok(false),
            Err(e) if needs_rejoin(&e) => {
                if is_error(&e, ResponseError::UnknownMemberId) {
                    self.member_id.clear();
                }
                Ok(true)
            }
            Err(e) => Err(e),
        }
    }

    /// How long the caller may wait (e.g. in a fetch) before the next heartbeat is due.
    pub fn until_heartbeat(&self) -> Duration {
        self.timeouts
            .heartbeat_interval
            .saturating_sub(self.last_heartbeat.elapsed())
    }

    /// Commits `(topic, partition, next offset)` under the current generation. `Ok(false)`
    /// means the commit was refused because the member must rejoin first.
    pub async fn commit(&mut self, offsets: &[(String, i32, i64)]) -> Result<bool, ClientError> {
        if offsets.is_empty() {
            return Ok(true);
        }
        match self
            .coordinator
            .commit_offsets(&self.group, &self.member_id, self.generation, offsets)
            .await
        {
            Ok(()) => Ok(true),
            Err(e) if needs_rejoin(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Committed offsets of the assigned partitions: `(topic, partition) → offset`.
    pub async fn committed(&mut self) -> Result<BTreeMap<(String, i32), i64>, ClientError> {
        let wanted: Vec<(String, i32)> = self
            .assignment
            .iter()
            .flat_map(|(t, ps)| ps.iter().map(move |p| (t.clone(), *p)))
            .collect();
        if wanted.is_empty() {
            return Ok(BTreeMap::new());
        }
        let got = self
            .coordinator
            .fetch_offsets(&self.group, Some(&wanted))
            .await?;
        Ok(got.into_iter().map(|(t, p, o)| ((t, p), o)).collect())
    }

    /// LeaveGroup (nothing to do before the first join).
    pub async fn leave(&mut self) -> Result<(), ClientError> {
        if self.member_id.is_empty() {
            return Ok(());
        }
        let result = self
            .coordinator
            .leave_group(&self.group, &self.member_id)
            .await;
        self.member_id.clear();
        self.generation = -1;
        self.assignment.clear();
        match result {
            Err(e) if is_error(&e, ResponseError::UnknownMemberId) => Ok(()),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(list: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
        list.iter()
            .map(|(m, ts)| {
                (
                    (*m).to_owned(),
                    ts.iter().map(|t| (*t).to_owned()).collect(),
                )
            })
            .collect()
    }

    fn counts(list: &[(&str, i32)]) -> BTreeMap<String, i32> {
        list.iter().map(|(t, n)| ((*t).to_owned(), *n)).collect()
    }

    fn parts(plan: &BTreeMap<String, BTreeMap<String, Vec<i32>>>, m: &str, t: &str) -> Vec<i32> {
        plan[m].get(t).cloned().unwrap_or_default()
    }

    #[test]
    fn range_splits_like_kafka() {
        // Kafka's RangeAssignor javadoc: two consumers, two topics of three partitions.
        let plan = range_assign(
            &members(&[("c1", &["t0", "t1"]), ("c0", &["t0", "t1"])]),
            &counts(&[("t0", 3), ("t1", 3)]),
        );
        assert_eq!(parts(&plan, "c0", "t0"), [0, 1]);
        assert_eq!(parts(&plan, "c0", "t1"), [0, 1]);
        assert_eq!(parts(&plan, "c1", "t0"), [2]);
        assert_eq!(parts(&plan, "c1", "t1"), [2]);
    }

    #[test]
    fn range_more_members_than_partitions_and_subscriptions() {
        let plan = range_assign(
            &members(&[("a", &["t"]), ("b", &["t"]), ("c", &["t", "u"])]),
            &counts(&[("t", 2), ("u", 4), ("absent", 5)]),
        );
        assert_eq!(parts(&plan, "a", "t"), [0]);
        assert_eq!(parts(&plan, "b", "t"), [1]);
        assert_eq!(parts(&plan, "c", "t"), Vec::<i32>::new());
        assert_eq!(parts(&plan, "c", "u"), [0, 1, 2, 3]);
        assert_eq!(plan.len(), 3, "every member appears");
        assert!(!plan["a"].contains_key("u"));
        // Every partition exactly once.
        let mut all: Vec<(String, i32)> = plan
            .values()
            .flat_map(|m| {
                m.iter()
                    .flat_map(|(t, ps)| ps.iter().map(|p| (t.clone(), *p)))
            })
            .collect();
        all.sort();
        assert_eq!(all.len(), 6);
        all.dedup();
        assert_eq!(all.len(), 6);
    }

    #[test]
    fn range_uneven_split_gives_extras_first() {
        let plan = range_assign(
            &members(&[("m2", &["t"]), ("m1", &["t"]), ("m3", &["t"])]),
            &counts(&[("t", 8)]),
        );
        assert_eq!(parts(&plan, "m1", "t"), [0, 1, 2]);
        assert_eq!(parts(&plan, "m2", "t"), [3, 4, 5]);
        assert_eq!(parts(&plan, "m3", "t"), [6, 7]);
    }

    #[test]
    fn assignment_round_trips_and_matches_the_wire_layout() {
        let mut a = BTreeMap::new();
        a.insert("t".to_owned(), vec![0, 2]);
        let bytes = encode_assignment(&a).unwrap();
        // version 0, one topic "t", partitions [0, 2], null user data.
        assert_eq!(
            &bytes[..],
            &[
                0, 0, // version
                0, 0, 0, 1, // topics
                0, 1, b't', // name
                0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 2, // partitions
                0xff, 0xff, 0xff, 0xff // user data: null
            ]
        );
        assert_eq!(decode_assignment(&bytes).unwrap(), a);
        assert!(decode_assignment(&[]).unwrap().is_empty());
        assert!(decode_assignment(&[0]).is_err());
        assert!(decode_assignment(&[0, 0, 0, 0, 0, 9]).is_err());
    }

    #[test]
    fn newer_assignment_versions_decode() {
        // v3 has the same fields as v0; a version beyond 3 is read as 3.
        let mut a = BTreeMap::new();
        a.insert("x".to_owned(), vec![1]);
        let mut bytes = BytesMut::new();
        bytes.put_i16(7);
        ConsumerProtocolAssignment::default()
            .with_assigned_partitions(vec![
                AssignedPartitions::default()
                    .with_topic(topic_name("x"))
                    .with_partitions(vec![1]),
            ])
            .encode(&mut bytes, 3)
            .unwrap();
        assert_eq!(decode_assignment(&bytes).unwrap(), a);
    }

    #[test]
    fn subscription_round_trips() {
        let topics = vec!["a".to_owned(), "b".to_owned()];
        let bytes = encode_subscription(&topics).unwrap();
        assert_eq!(&bytes[..2], &[0, 0]);
        assert_eq!(decode_subscription(&bytes).unwrap(), topics);
        assert!(decode_subscription(&[0, 0, 0xff]).is_err());
    }
}
