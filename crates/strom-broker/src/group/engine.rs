//! The classic group-membership protocol as a pure engine: events in, effects out.
//!
//! [`GroupEngine`] holds every group's membership and never does I/O, never reads a clock and
//! never waits: each call takes the current time in milliseconds and returns the [`Effect`]s the
//! runtime must perform (answer a pending JoinGroup or SyncGroup). Requests that must wait (a
//! JoinGroup during a rebalance, a follower's SyncGroup before the leader's) are identified by a
//! [`Token`] the runtime chooses; the engine answers them later through an effect. Timeouts are
//! driven by [`GroupEngine::tick`], which the runtime calls periodically.
//!
//! States follow Kafka's `GroupCoordinator`: `Empty` → `PreparingRebalance` (members rejoin) →
//! `CompletingRebalance` (waiting for the leader's assignments) → `Stable`. A rebalance completes
//! as soon as every known member (and every member id handed out with MEMBER_ID_REQUIRED) has
//! rejoined, or when the rebalance timeout expires, dropping the members that did not rejoin. The
//! first rebalance of an empty group waits `initial_rebalance_delay_ms` first
//! (`group.initial.rebalance.delay.ms`), so consumers started together land in one generation.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::Bytes;

use super::GroupError;

/// Identifies a request waiting for an answer (chosen by the runtime).
pub type Token = u64;

/// Engine settings (Kafka's broker-side group settings).
#[derive(Debug, Clone, Copy)]
pub struct GroupConfig {
    /// `group.min.session.timeout.ms`.
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`.
    pub max_session_timeout_ms: i32,
    /// `group.initial.rebalance.delay.ms`.
    pub initial_rebalance_delay_ms: i32,
    /// Settings of consumer-protocol (KIP-848) groups.
    pub consumer: super::consumer::ConsumerGroupConfig,
    /// `offsets.retention.minutes` in milliseconds: committed offsets of a group that has been
    /// empty this long (of a standalone committer: committed this long ago) expire.
    pub offsets_retention_ms: i64,
    /// `offsets.retention.check.interval.ms`: how often expired offsets are looked for.
    pub offsets_retention_check_interval_ms: i64,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            min_session_timeout_ms: 1_000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
            consumer: super::consumer::ConsumerGroupConfig::default(),
            offsets_retention_ms: 7 * 24 * 60 * 60 * 1000,
            offsets_retention_check_interval_ms: 600_000,
        }
    }
}

/// A group's state, with Kafka's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    /// No members (possibly committed offsets).
    Empty,
    /// Waiting for members to rejoin.
    PreparingRebalance,
    /// Waiting for the leader's assignments.
    CompletingRebalance,
    /// Members have their assignments.
    Stable,
    /// Consumer-protocol groups only: the target assignment is being computed.
    Assigning,
    /// Consumer-protocol groups only: members are moving to the target assignment.
    Reconciling,
}

impl GroupState {
    /// Kafka's name for the state (DescribeGroups, ListGroups).
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Assigning => "Assigning",
            GroupState::Reconciling => "Reconciling",
        }
    }
}

/// A JoinGroup request.
#[derive(Debug, Clone, Default)]
pub struct JoinRequest {
    /// The group.
    pub group_id: String,
    /// Empty on a first join.
    pub member_id: String,
    /// `group.instance.id` of a static member.
    pub instance_id: Option<String>,
    /// Client id (for DescribeGroups).
    pub client_id: String,
    /// Client host (for DescribeGroups).
    pub client_host: String,
    /// Session timeout.
    pub session_timeout_ms: i32,
    /// Rebalance timeout.
    pub rebalance_timeout_ms: i32,
    /// `consumer`, `connect`…
    pub protocol_type: String,
    /// The member's protocols (assignors) in preference order, with their metadata.
    pub protocols: Vec<(String, Bytes)>,
    /// KIP-394 (JoinGroup v4+): a first join without member id gets MEMBER_ID_REQUIRED.
    pub require_known_member_id: bool,
}

/// A member as the leader sees it in a JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    /// Member id.
    pub member_id: String,
    /// Static instance id.
    pub instance_id: Option<String>,
    /// Its metadata for the chosen protocol.
    pub metadata: Bytes,
}

/// A successful JoinGroup answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResponse {
    /// The new generation.
    pub generation_id: i32,
    /// `consumer`…
    pub protocol_type: String,
    /// The chosen protocol (assignor).
    pub protocol_name: String,
    /// The leader's member id.
    pub leader: String,
    /// The member's id.
    pub member_id: String,
    /// All members with metadata (leader only; empty for followers).
    pub members: Vec<JoinedMember>,
}

/// The answer to a JoinGroup: the member id is set on MEMBER_ID_REQUIRED too.
pub type JoinResult = Result<JoinResponse, (GroupError, String)>;

/// A successful SyncGroup answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncResponse {
    /// `consumer`…
    pub protocol_type: String,
    /// The chosen protocol.
    pub protocol_name: String,
    /// The member's assignment.
    pub assignment: Bytes,
}

/// What the runtime must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Answer a waiting JoinGroup.
    Join(Token, JoinResult),
    /// Answer a waiting SyncGroup.
    Sync(Token, Result<SyncResponse, GroupError>),
}

/// One member.
#[derive(Debug, Clone)]
struct Member {
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout_ms: i32,
    rebalance_timeout_ms: i32,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    pending_join: Option<Token>,
    pending_sync: Option<Token>,
    last_heartbeat: i64,
    /// Join order, for a stable leader choice.
    joined_seq: u64,
}

impl Member {
    fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
}

/// Membership of one group.
#[derive(Debug, Clone)]
struct Group {
    state: GroupState,
    generation: i32,
    protocol_type: Option<String>,
    protocol_name: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// KIP-394 member ids handed out and not yet used, with their expiry.
    pending_members: HashMap<String, i64>,
    static_members: HashMap<String, String>,
    rebalance_deadline: i64,
    initial_until: Option<i64>,
}

impl Group {
    fn new() -> Group {
        Group {
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: BTreeMap::new(),
            pending_members: HashMap::new(),
            static_members: HashMap::new(),
            rebalance_deadline: 0,
            initial_until: None,
        }
    }
}

/// A member as DescribeGroups shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    /// Member id.
    pub member_id: String,
    /// Static instance id.
    pub instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Metadata for the chosen protocol.
    pub metadata: Bytes,
    /// The current assignment.
    pub assignment: Bytes,
    /// Consumer-protocol groups: the partitions the member owns, by topic id (the front end
    /// encodes them as the classic consumer protocol's assignment).
    pub owned: Option<super::assignor::Assignment>,
}

/// A group as DescribeGroups shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// State.
    pub state: GroupState,
    /// Current generation (0 before the first rebalance).
    pub generation: i32,
    /// Protocol type (empty if none).
    pub protocol_type: String,
    /// Chosen protocol (empty unless Stable or CompletingRebalance).
    pub protocol_name: String,
    /// Members.
    pub members: Vec<MemberDescription>,
}

/// The engine: every group's membership. Owned by one `Mutex` in the runtime.
#[derive(Debug, Default)]
pub struct GroupEngine {
    config: GroupConfig,
    groups: BTreeMap<String, Group>,
    next_member: u64,
    seq: u64,
    /// Groups touched since the last [`GroupEngine::take_snapshots`].
    dirty: BTreeSet<String>,
    /// What was last handed out for persistence, per group.
    persisted: HashMap<String, GroupSnapshot>,
}

/// A classic group's durable state, as Kafka's coordinator writes it (GroupMetadata): taken
/// when the group is `Stable` or `Empty`, restored as that state after a restart, so members
/// carry on with their generation instead of rejoining.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GroupSnapshot {
    /// Generation.
    pub generation: i32,
    /// Protocol type.
    pub protocol_type: Option<String>,
    /// Chosen protocol.
    pub protocol_name: Option<String>,
    /// Leader's member id.
    pub leader: Option<String>,
    /// Members (empty for an `Empty` group).
    pub members: Vec<MemberSnapshot>,
}

/// One member of a [`GroupSnapshot`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MemberSnapshot {
    /// Member id.
    pub member_id: String,
    /// Static instance id.
    pub instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Session timeout.
    pub session_timeout_ms: i32,
    /// Rebalance timeout.
    pub rebalance_timeout_ms: i32,
    /// Metadata for the chosen protocol.
    pub metadata: Vec<u8>,
    /// Assignment.
    pub assignment: Vec<u8>,
}

impl GroupEngine {
    /// An engine with these settings.
    pub fn new(config: GroupConfig) -> GroupEngine {
        GroupEngine {
            config,
            ..GroupEngine::default()
        }
    }

    fn new_member_id(&mut self, client_id: &str) -> String {
        self.next_member += 1;
        let prefix = if client_id.is_empty() {
            "member"
        } else {
            client_id
        };
        format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
    }

    /// JoinGroup. The answer may come now or later, always as an [`Effect::Join`] for `token`.
    pub fn join(&mut self, token: Token, req: JoinRequest, now: i64) -> Vec<Effect> {
        self.dirty.insert(req.group_id.clone());
        let mut effects = Vec::new();
        if req.session_timeout_ms < self.config.min_session_timeout_ms
            || req.session_timeout_ms > self.config.max_session_timeout_ms
        {
            effects.push(Effect::Join(
                token,
                Err((GroupError::InvalidSessionTimeout, req.member_id)),
            ));
            return effects;
        }
        if req.group_id.is_empty() {
            effects.push(Effect::Join(
                token,
                Err((GroupError::InvalidGroupId, req.member_id)),
            ));
            return effects;
        }
        if req.protocols.is_empty() || req.protocol_type.is_empty() {
            effects.push(Effect::Join(
                token,
                Err((GroupError::InconsistentGroupProtocol, req.member_id)),
            ));
            return effects;
        }
        if !req.member_id.is_empty() && !self.groups.contains_key(&req.group_id) {
            effects.push(Effect::Join(
                token,
                Err((GroupError::UnknownMemberId, req.member_id)),
            ));
            return effects;
        }
        let new_id = if req.member_id.is_empty() {
            Some(self.new_member_id(&req.client_id))
        } else {
            None
        };
        self.seq += 1;
        let seq = self.seq;
        let config = self.config;
        let group = self
            .groups
            .entry(req.group_id.clone())
            .or_insert_with(Group::new);
        if !protocols_compatible(group, &req) {
            effects.push(Effect::Join(
                token,
                Err((GroupError::InconsistentGroupProtocol, req.member_id)),
            ));
            self.drop_if_unused(&req.group_id);
            return effects;
        }
        let member_id = match new_id {
            Some(id) => {
                if let Some(instance) = &req.instance_id
                    && let Some(old_id) = group.static_members.get(instance).cloned()
                    && group.members.contains_key(&old_id)
                {
                    replace_static_member(group, &old_id, &id, &req, now, token, &mut effects);
                    return effects;
                }
                if req.require_known_member_id && req.instance_id.is_none() {
                    let expiry = now + i64::from(req.session_timeout_ms);
                    group.pending_members.insert(id.clone(), expiry);
                    effects.push(Effect::Join(token, Err((GroupError::MemberIdRequired, id))));
                    return effects;
                }
                id
            }
            None => {
                let id = req.member_id.clone();
                if let Some(instance) = &req.instance_id
                    && let Some(known) = group.static_members.get(instance)
                    && *known != id
                {
                    effects.push(Effect::Join(token, Err((GroupError::FencedInstanceId, id))));
                    return effects;
                }
                if group.pending_members.remove(&id).is_none() && !group.members.contains_key(&id) {
                    effects.push(Effect::Join(token, Err((GroupError::UnknownMemberId, id))));
                    return effects;
                }
                id
            }
        };
        let existing = group.members.get(&member_id).cloned();
        let unchanged = existing
            .as_ref()
            .is_some_and(|m| m.protocols == req.protocols);
        if let Some(old) = existing.as_ref().and_then(|m| m.pending_join)
            && old != token
        {
            // A retried join replaces the older request.
            effects.push(Effect::Join(
                old,
                Err((GroupError::RebalanceInProgress, member_id.clone())),
            ));
        }
        let member = group
            .members
            .entry(member_id.clone())
            .or_insert_with(|| Member {
                instance_id: None,
                client_id: String::new(),
                client_host: String::new(),
                session_timeout_ms: 0,
                rebalance_timeout_ms: 0,
                protocols: Vec::new(),
                assignment: Bytes::new(),
                pending_join: None,
                pending_sync: None,
                last_heartbeat: now,
                joined_seq: seq,
            });
        member.instance_id = req.instance_id.clone();
        member.client_id = req.client_id.clone();
        member.client_host = req.client_host.clone();
        member.session_timeout_ms = req.session_timeout_ms;
        member.rebalance_timeout_ms = req.rebalance_timeout_ms;
        member.protocols = req.protocols.clone();
        member.last_heartbeat = now;
        if let Some(instance) = &req.instance_id {
            group
                .static_members
                .insert(instance.clone(), member_id.clone());
        }
        if group.protocol_type.is_none() {
            group.protocol_type = Some(req.protocol_type.clone());
        }
        let is_leader = group.leader.as_deref() == Some(member_id.as_str());
        match group.state {
            GroupState::CompletingRebalance if unchanged => {
                // A retried join: hand back the current generation (members to the leader).
                let response = current_join_response(group, &member_id, true);
                effects.push(Effect::Join(token, Ok(response)));
            }
            GroupState::Stable if unchanged && !is_leader => {
                // Nothing changed for this follower: hand back the current generation.
                let response = current_join_response(group, &member_id, false);
                effects.push(Effect::Join(token, Ok(response)));
            }
            _ => {
                if let Some(m) = group.members.get_mut(&member_id) {
                    m.pending_join = Some(token);
                }
                if group.state != GroupState::PreparingRebalance {
                    prepare_rebalance(group, &config, now, &mut effects);
                } else {
                    extend_initial_delay(group, &config, now);
                }
                maybe_complete_rebalance(group, now, &mut effects);
            }
        }
        effects
    }

    /// SyncGroup. `assignments` is the leader's (empty for followers).
    #[allow(clippy::too_many_arguments)]
    pub fn sync(
        &mut self,
        token: Token,
        group_id: &str,
        member_id: &str,
        generation: i32,
        instance_id: Option<&str>,
        assignments: Vec<(String, Bytes)>,
        now: i64,
    ) -> Vec<Effect> {
        self.dirty.insert(group_id.to_owned());
        let mut effects = Vec::new();
        let reply = |e: GroupError| vec![Effect::Sync(token, Err(e))];
        let Some(group) = self.groups.get_mut(group_id) else {
            return reply(GroupError::UnknownMemberId);
        };
        if let Err(e) = check_member(group, member_id, instance_id) {
            return reply(e);
        }
        if generation != group.generation {
            return reply(GroupError::IllegalGeneration);
        }
        match group.state {
            GroupState::Empty => reply(GroupError::UnknownMemberId),
            GroupState::PreparingRebalance | GroupState::Assigning | GroupState::Reconciling => {
                reply(GroupError::RebalanceInProgress)
            }
            GroupState::Stable => {
                let Some(m) = group.members.get_mut(member_id) else {
                    return reply(GroupError::UnknownMemberId);
                };
                m.last_heartbeat = now;
                let response = SyncResponse {
                    protocol_type: group.protocol_type.clone().unwrap_or_default(),
                    protocol_name: group.protocol_name.clone().unwrap_or_default(),
                    assignment: m.assignment.clone(),
                };
                vec![Effect::Sync(token, Ok(response))]
            }
            GroupState::CompletingRebalance => {
                if let Some(m) = group.members.get_mut(member_id) {
                    if let Some(old) = m.pending_sync.replace(token) {
                        effects.push(Effect::Sync(old, Err(GroupError::RebalanceInProgress)));
                    }
                    m.last_heartbeat = now;
                }
                if group.leader.as_deref() == Some(member_id) {
                    let mut by_member: HashMap<String, Bytes> = assignments.into_iter().collect();
                    for (id, m) in group.members.iter_mut() {
                        m.assignment = by_member.remove(id).unwrap_or_default();
                    }
                    group.state = GroupState::Stable;
                    let protocol_type = group.protocol_type.clone().unwrap_or_default();
                    let protocol_name = group.protocol_name.clone().unwrap_or_default();
                    for m in group.members.values_mut() {
                        if let Some(t) = m.pending_sync.take() {
                            effects.push(Effect::Sync(
                                t,
                                Ok(SyncResponse {
                                    protocol_type: protocol_type.clone(),
                                    protocol_name: protocol_name.clone(),
                                    assignment: m.assignment.clone(),
                                }),
                            ));
                        }
                    }
                }
                effects
            }
        }
    }

    /// Heartbeat: `Ok` or the error to return.
    pub fn heartbeat(
        &mut self,
        group_id: &str,
        member_id: &str,
        generation: i32,
        instance_id: Option<&str>,
        now: i64,
    ) -> Result<(), GroupError> {
        let group = self
            .groups
            .get_mut(group_id)
            .ok_or(GroupError::UnknownMemberId)?;
        check_member(group, member_id, instance_id)?;
        if generation != group.generation {
            return Err(GroupError::IllegalGeneration);
        }
        if let Some(m) = group.members.get_mut(member_id) {
            m.last_heartbeat = now;
        }
        match group.state {
            GroupState::Empty => Err(GroupError::UnknownMemberId),
            GroupState::PreparingRebalance | GroupState::Assigning | GroupState::Reconciling => {
                Err(GroupError::RebalanceInProgress)
            }
            GroupState::CompletingRebalance | GroupState::Stable => Ok(()),
        }
    }

    /// LeaveGroup for a batch of `(member_id, instance_id)`; one result per member, and the
    /// effects (answers to the leavers' pending requests, a completed rebalance).
    pub fn leave(
        &mut self,
        group_id: &str,
        members: &[(String, Option<String>)],
        now: i64,
    ) -> (Vec<Result<(), GroupError>>, Vec<Effect>) {
        self.dirty.insert(group_id.to_owned());
        let mut effects = Vec::new();
        let config = self.config;
        let Some(group) = self.groups.get_mut(group_id) else {
            return (
                members
                    .iter()
                    .map(|_| Err(GroupError::UnknownMemberId))
                    .collect(),
                effects,
            );
        };
        let mut results = Vec::new();
        for (member_id, instance_id) in members {
            let id = match instance_id {
                Some(instance) => match group.static_members.get(instance) {
                    Some(known) if member_id.is_empty() || known == member_id => known.clone(),
                    Some(_) => {
                        results.push(Err(GroupError::FencedInstanceId));
                        continue;
                    }
                    None => {
                        results.push(Err(GroupError::UnknownMemberId));
                        continue;
                    }
                },
                None => member_id.clone(),
            };
            if group.pending_members.remove(&id).is_some() {
                results.push(Ok(()));
                continue;
            }
            if !group.members.contains_key(&id) {
                results.push(Err(GroupError::UnknownMemberId));
                continue;
            }
            remove_member(group, &config, &id, now, &mut effects);
            results.push(Ok(()));
        }
        (results, effects)
    }

    /// Expires members whose session timed out and completes rebalances whose time is up.
    pub fn tick(&mut self, now: i64) -> Vec<Effect> {
        let mut effects = Vec::new();
        let config = self.config;
        for (group_id, group) in self.groups.iter_mut() {
            let before = (group.state, group.generation);
            group.pending_members.retain(|_, expiry| *expiry > now);
            let expired: Vec<String> = group
                .members
                .iter()
                .filter(|(_, m)| {
                    m.pending_join.is_none()
                        && m.pending_sync.is_none()
                        && now - m.last_heartbeat > i64::from(m.session_timeout_ms)
                })
                .map(|(id, _)| id.clone())
                .collect();
            for id in expired {
                tracing::info!(member = %id, "group member session expired");
                remove_member(group, &config, &id, now, &mut effects);
            }
            if group.state == GroupState::PreparingRebalance {
                maybe_complete_rebalance(group, now, &mut effects);
            }
            if (group.state, group.generation) != before {
                self.dirty.insert(group_id.clone());
            }
        }
        effects
    }

    /// The durable state of every group touched since the last call that changed since it was
    /// last taken: `Some` for a `Stable` or `Empty` group, `None` for a group that is gone.
    /// Groups in the middle of a rebalance are taken once they settle.
    pub fn take_snapshots(&mut self) -> Vec<(String, Option<GroupSnapshot>)> {
        let mut out = Vec::new();
        for group_id in std::mem::take(&mut self.dirty) {
            match self.groups.get(&group_id) {
                Some(g) if matches!(g.state, GroupState::Stable | GroupState::Empty) => {
                    let snapshot = snapshot_of(g);
                    if self.persisted.get(&group_id) != Some(&snapshot) {
                        self.persisted.insert(group_id.clone(), snapshot.clone());
                        out.push((group_id, Some(snapshot)));
                    }
                }
                Some(_) => {}
                None => {
                    if self.persisted.remove(&group_id).is_some() {
                        out.push((group_id, None));
                    }
                }
            }
        }
        out
    }

    /// Restores a group from its snapshot (at broker start): `Stable` with its members, whose
    /// sessions start now, or `Empty`.
    pub fn restore(&mut self, group_id: String, snapshot: GroupSnapshot, now: i64) {
        let mut group = Group::new();
        group.generation = snapshot.generation;
        group.protocol_type.clone_from(&snapshot.protocol_type);
        group.protocol_name.clone_from(&snapshot.protocol_name);
        group.leader.clone_from(&snapshot.leader);
        let protocol = snapshot.protocol_name.clone().unwrap_or_default();
        for m in &snapshot.members {
            self.seq += 1;
            if let Some(instance) = &m.instance_id {
                group
                    .static_members
                    .insert(instance.clone(), m.member_id.clone());
            }
            group.members.insert(
                m.member_id.clone(),
                Member {
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    session_timeout_ms: m.session_timeout_ms,
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    protocols: vec![(protocol.clone(), Bytes::from(m.metadata.clone()))],
                    assignment: Bytes::from(m.assignment.clone()),
                    pending_join: None,
                    pending_sync: None,
                    last_heartbeat: now,
                    joined_seq: self.seq,
                },
            );
        }
        group.state = if group.members.is_empty() {
            GroupState::Empty
        } else {
            GroupState::Stable
        };
        self.persisted.insert(group_id.clone(), snapshot);
        self.groups.insert(group_id, group);
    }

    /// Checks that a member may commit offsets at this generation. Generation -1 with an empty
    /// member id is a simple consumer's commit, allowed when the group has no members.
    pub fn validate_commit(
        &self,
        group_id: &str,
        member_id: &str,
        generation: i32,
        instance_id: Option<&str>,
    ) -> Result<(), GroupError> {
        let Some(group) = self.groups.get(group_id) else {
            return if generation < 0 {
                Ok(())
            } else {
                Err(GroupError::IllegalGeneration)
            };
        };
        if generation < 0 && member_id.is_empty() {
            return if group.members.is_empty() {
                Ok(())
            } else {
                Err(GroupError::UnknownMemberId)
            };
        }
        check_member(group, member_id, instance_id)?;
        if generation != group.generation {
            return Err(GroupError::IllegalGeneration);
        }
        if group.state == GroupState::CompletingRebalance {
            return Err(GroupError::RebalanceInProgress);
        }
        Ok(())
    }

    /// The group's description, `None` if the engine does not know it.
    pub fn describe(&self, group_id: &str) -> Option<GroupDescription> {
        let group = self.groups.get(group_id)?;
        let protocol = group.protocol_name.clone().unwrap_or_default();
        let show_protocol = matches!(
            group.state,
            GroupState::Stable | GroupState::CompletingRebalance
        );
        Some(GroupDescription {
            state: group.state,
            generation: group.generation,
            protocol_type: group.protocol_type.clone().unwrap_or_default(),
            protocol_name: if show_protocol {
                protocol.clone()
            } else {
                String::new()
            },
            members: group
                .members
                .iter()
                .map(|(id, m)| MemberDescription {
                    member_id: id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: if show_protocol {
                        m.metadata(&protocol)
                    } else {
                        Bytes::new()
                    },
                    assignment: m.assignment.clone(),
                    owned: None,
                })
                .collect(),
        })
    }

    /// Every known group with its state and protocol type.
    pub fn list(&self) -> Vec<(String, GroupState, String)> {
        self.groups
            .iter()
            .map(|(id, g)| {
                (
                    id.clone(),
                    g.state,
                    g.protocol_type.clone().unwrap_or_default(),
                )
            })
            .collect()
    }

    /// Drops a group from memory without recording a deletion (cluster mode: this broker
    /// lost the group's coordinator shard, or another broker's state replaces it when this
    /// coordinator takes the shard over). Every JoinGroup and SyncGroup still waiting in the
    /// group is answered `NotCoordinator` (the returned effects), so its client finds the
    /// coordinator again at once instead of waiting for its own timeout.
    pub fn forget(&mut self, group_id: &str) -> Vec<Effect> {
        self.persisted.remove(group_id);
        self.dirty.remove(group_id);
        let mut effects = Vec::new();
        let Some(group) = self.groups.remove(group_id) else {
            return effects;
        };
        for (id, member) in group.members {
            if let Some(t) = member.pending_join {
                effects.push(Effect::Join(t, Err((GroupError::NotCoordinator, id))));
            }
            if let Some(t) = member.pending_sync {
                effects.push(Effect::Sync(t, Err(GroupError::NotCoordinator)));
            }
        }
        effects
    }

    /// Forgets an empty group; `NonEmptyGroup` if it has members.
    pub fn delete(&mut self, group_id: &str) -> Result<(), GroupError> {
        self.dirty.insert(group_id.to_owned());
        match self.groups.get(group_id) {
            Some(g) if g.state != GroupState::Empty || !g.members.is_empty() => {
                Err(GroupError::NonEmptyGroup)
            }
            _ => {
                self.groups.remove(group_id);
                Ok(())
            }
        }
    }

    /// Whether the group exists and has members.
    pub fn has_members(&self, group_id: &str) -> bool {
        self.groups
            .get(group_id)
            .is_some_and(|g| !g.members.is_empty())
    }

    /// The group's state, if known.
    pub fn state(&self, group_id: &str) -> Option<GroupState> {
        self.groups.get(group_id).map(|g| g.state)
    }

    fn drop_if_unused(&mut self, group_id: &str) {
        if let Some(g) = self.groups.get(group_id)
            && g.members.is_empty()
            && g.pending_members.is_empty()
            && g.generation == 0
        {
            self.groups.remove(group_id);
        }
    }
}

fn snapshot_of(g: &Group) -> GroupSnapshot {
    let protocol = g.protocol_name.clone().unwrap_or_default();
    GroupSnapshot {
        generation: g.generation,
        protocol_type: g.protocol_type.clone(),
        protocol_name: g.protocol_name.clone(),
        leader: g.leader.clone(),
        members: g
            .members
            .iter()
            .map(|(id, m)| MemberSnapshot {
                member_id: id.clone(),
                instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                session_timeout_ms: m.session_timeout_ms,
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                metadata: m.metadata(&protocol).to_vec(),
                assignment: m.assignment.to_vec(),
            })
            .collect(),
    }
}

fn protocols_compatible(group: &Group, req: &JoinRequest) -> bool {
    if group.members.is_empty() {
        return true;
    }
    if group.protocol_type.as_deref() != Some(req.protocol_type.as_str()) {
        return false;
    }
    // Some protocol must be supported by every other member and this one.
    req.protocols.iter().any(|(name, _)| {
        group
            .members
            .iter()
            .filter(|(id, _)| **id != req.member_id)
            .all(|(_, m)| m.protocols.iter().any(|(n, _)| n == name))
    })
}

fn check_member(
    group: &Group,
    member_id: &str,
    instance_id: Option<&str>,
) -> Result<(), GroupError> {
    if let Some(instance) = instance_id
        && let Some(known) = group.static_members.get(instance)
        && known != member_id
    {
        return Err(GroupError::FencedInstanceId);
    }
    if group.members.contains_key(member_id) {
        Ok(())
    } else {
        Err(GroupError::UnknownMemberId)
    }
}

fn replace_static_member(
    group: &mut Group,
    old_id: &str,
    new_id: &str,
    req: &JoinRequest,
    now: i64,
    token: Token,
    effects: &mut Vec<Effect>,
) {
    let Some(mut member) = group.members.remove(old_id) else {
        return;
    };
    if let Some(t) = member.pending_join.take() {
        effects.push(Effect::Join(
            t,
            Err((GroupError::FencedInstanceId, old_id.to_owned())),
        ));
    }
    if let Some(t) = member.pending_sync.take() {
        effects.push(Effect::Sync(t, Err(GroupError::FencedInstanceId)));
    }
    let unchanged = member.protocols == req.protocols;
    member.client_id = req.client_id.clone();
    member.client_host = req.client_host.clone();
    member.session_timeout_ms = req.session_timeout_ms;
    member.rebalance_timeout_ms = req.rebalance_timeout_ms;
    member.protocols = req.protocols.clone();
    member.last_heartbeat = now;
    group.members.insert(new_id.to_owned(), member);
    if let Some(instance) = &req.instance_id {
        group
            .static_members
            .insert(instance.clone(), new_id.to_owned());
    }
    if group.leader.as_deref() == Some(old_id) {
        group.leader = Some(new_id.to_owned());
    }
    match group.state {
        GroupState::Stable if unchanged => {
            // KIP-345: same instance, same subscription: keep the assignment, no rebalance.
            let mut response = current_join_response(group, new_id, false);
            response.members.clear();
            effects.push(Effect::Join(token, Ok(response)));
        }
        _ => {
            if let Some(m) = group.members.get_mut(new_id) {
                m.pending_join = Some(token);
            }
            if group.state != GroupState::PreparingRebalance {
                prepare_rebalance(group, &GroupConfig::default(), now, effects);
                group.initial_until = None;
            }
            maybe_complete_rebalance(group, now, effects);
        }
    }
}

fn current_join_response(group: &Group, member_id: &str, with_members: bool) -> JoinResponse {
    let protocol = group.protocol_name.clone().unwrap_or_default();
    let leader = group.leader.clone().unwrap_or_default();
    let members = if with_members && leader == member_id {
        joined_members(group, &protocol)
    } else {
        Vec::new()
    };
    JoinResponse {
        generation_id: group.generation,
        protocol_type: group.protocol_type.clone().unwrap_or_default(),
        protocol_name: protocol,
        leader,
        member_id: member_id.to_owned(),
        members,
    }
}

fn joined_members(group: &Group, protocol: &str) -> Vec<JoinedMember> {
    let mut members: Vec<(&String, &Member)> = group.members.iter().collect();
    members.sort_by_key(|(_, m)| m.joined_seq);
    members
        .into_iter()
        .map(|(id, m)| JoinedMember {
            member_id: id.clone(),
            instance_id: m.instance_id.clone(),
            metadata: m.metadata(protocol),
        })
        .collect()
}

fn prepare_rebalance(group: &mut Group, config: &GroupConfig, now: i64, effects: &mut Vec<Effect>) {
    for m in group.members.values_mut() {
        if let Some(t) = m.pending_sync.take() {
            effects.push(Effect::Sync(t, Err(GroupError::RebalanceInProgress)));
        }
    }
    let timeout = group
        .members
        .values()
        .map(|m| i64::from(m.rebalance_timeout_ms.max(0)))
        .max()
        .unwrap_or(0);
    group.initial_until = if group.state == GroupState::Empty {
        Some(now + i64::from(config.initial_rebalance_delay_ms).min(timeout))
    } else {
        None
    };
    group.rebalance_deadline = now + timeout;
    group.state = GroupState::PreparingRebalance;
}

fn extend_initial_delay(group: &mut Group, config: &GroupConfig, now: i64) {
    if let Some(until) = group.initial_until.as_mut() {
        *until = (now + i64::from(config.initial_rebalance_delay_ms))
            .max(*until)
            .min(group.rebalance_deadline);
    }
}

fn maybe_complete_rebalance(group: &mut Group, now: i64, effects: &mut Vec<Effect>) {
    if group.state != GroupState::PreparingRebalance {
        return;
    }
    let all_joined = group.members.values().all(|m| m.pending_join.is_some())
        && group.pending_members.is_empty();
    let delay_over = group.initial_until.is_none_or(|until| now >= until);
    let timed_out = now >= group.rebalance_deadline;
    if !(timed_out || all_joined && delay_over) {
        return;
    }
    // Members that did not rejoin in time are dropped.
    let gone: Vec<String> = group
        .members
        .iter()
        .filter(|(_, m)| m.pending_join.is_none())
        .map(|(id, _)| id.clone())
        .collect();
    for id in gone {
        if let Some(m) = group.members.remove(&id)
            && let Some(instance) = m.instance_id
            && group.static_members.get(&instance) == Some(&id)
        {
            group.static_members.remove(&instance);
        }
    }
    group.pending_members.clear();
    group.initial_until = None;
    group.generation += 1;
    if group.members.is_empty() {
        group.state = GroupState::Empty;
        group.protocol_name = None;
        group.leader = None;
        return;
    }
    group.protocol_name = select_protocol(group);
    let leader_alive = group
        .leader
        .as_ref()
        .is_some_and(|l| group.members.contains_key(l));
    if !leader_alive {
        group.leader = group
            .members
            .iter()
            .min_by_key(|(_, m)| m.joined_seq)
            .map(|(id, _)| id.clone());
    }
    group.state = GroupState::CompletingRebalance;
    let ids: Vec<String> = group.members.keys().cloned().collect();
    for id in ids {
        let response = current_join_response(group, &id, true);
        if let Some(m) = group.members.get_mut(&id) {
            m.last_heartbeat = now;
            m.assignment = Bytes::new();
            if let Some(t) = m.pending_join.take() {
                effects.push(Effect::Join(t, Ok(response)));
            }
        }
    }
}

/// Kafka's vote: each member votes for its most preferred protocol that all members support;
/// the most votes wins (ties go to the earliest member's preference).
fn select_protocol(group: &Group) -> Option<String> {
    let mut members: Vec<&Member> = group.members.values().collect();
    members.sort_by_key(|m| m.joined_seq);
    let candidates: Vec<&String> = members
        .first()?
        .protocols
        .iter()
        .map(|(n, _)| n)
        .filter(|n| {
            members
                .iter()
                .all(|m| m.protocols.iter().any(|(p, _)| p == *n))
        })
        .collect();
    let mut votes: Vec<(&String, usize)> = candidates.iter().map(|c| (*c, 0)).collect();
    for m in &members {
        if let Some((name, _)) = m.protocols.iter().find(|(n, _)| candidates.contains(&n))
            && let Some(v) = votes.iter_mut().find(|(c, _)| *c == name)
        {
            v.1 += 1;
        }
    }
    let best = votes.iter().map(|(_, v)| *v).max()?;
    votes
        .into_iter()
        .find(|(_, v)| *v == best)
        .map(|(n, _)| n.clone())
}

fn remove_member(
    group: &mut Group,
    config: &GroupConfig,
    id: &str,
    now: i64,
    effects: &mut Vec<Effect>,
) {
    let Some(m) = group.members.remove(id) else {
        return;
    };
    if let Some(t) = m.pending_join {
        effects.push(Effect::Join(
            t,
            Err((GroupError::UnknownMemberId, id.to_owned())),
        ));
    }
    if let Some(t) = m.pending_sync {
        effects.push(Effect::Sync(t, Err(GroupError::UnknownMemberId)));
    }
    if let Some(instance) = m.instance_id
        && group.static_members.get(&instance).map(String::as_str) == Some(id)
    {
        group.static_members.remove(&instance);
    }
    match group.state {
        GroupState::Stable | GroupState::CompletingRebalance => {
            prepare_rebalance(group, config, now, effects);
            maybe_complete_rebalance(group, now, effects);
        }
        GroupState::PreparingRebalance => maybe_complete_rebalance(group, now, effects),
        GroupState::Empty | GroupState::Assigning | GroupState::Reconciling => {}
    }
}

#[cfg(test)]
mod tests;
