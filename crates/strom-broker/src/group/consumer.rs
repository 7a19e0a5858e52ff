//! The consumer group protocol of KIP-848 (`group.protocol=consumer`) as a pure engine.
//!
//! Members send `ConsumerGroupHeartbeat`s; the coordinator owns the assignment. Three epochs
//! drive it, as in Kafka's group coordinator:
//!
//! - the **group epoch** is bumped whenever membership, a subscription or the partition count
//!   of a subscribed topic changes;
//! - the **assignment epoch** is the group epoch the current *target assignment* was computed
//!   for (by the server-side assignor, see [`super::assignor`]); it catches up at once;
//! - each **member epoch** says which target the member has reconciled with.
//!
//! A member moves to a new target in two steps. First it must give up the partitions it owns
//! but is no longer meant to own: the coordinator answers with its assignment minus those, at
//! the *old* member epoch (state `UnrevokedPartitions`), until a heartbeat reports them
//! released. Then it gets the new epoch and the target partitions that no other member still
//! holds; partitions not yet released by others come later (`UnreleasedPartitions`). So a
//! partition is never owned by two members at once, and only the partitions that must move
//! do.
//!
//! Like [`super::engine`], this engine does no I/O and reads no clock: every call takes the
//! time, and [`ConsumerGroupEngine::tick`] expires sessions and revocations.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use uuid::Uuid;

use super::GroupError;
use super::assignor::{self, ASSIGNORS, Assignment, AssignorMember};

/// Member epoch of a leave request.
pub const LEAVE_EPOCH: i32 = -1;
/// Member epoch of a static member leaving for a while (it keeps its assignment).
pub const STATIC_LEAVE_EPOCH: i32 = -2;

/// Engine settings (Kafka's `group.consumer.*` broker settings).
#[derive(Debug, Clone, Copy)]
pub struct ConsumerGroupConfig {
    /// `group.consumer.heartbeat.interval.ms`.
    pub heartbeat_interval_ms: i32,
    /// `group.consumer.session.timeout.ms`.
    pub session_timeout_ms: i32,
    /// `group.consumer.max.size`.
    pub max_size: usize,
}

impl Default for ConsumerGroupConfig {
    fn default() -> Self {
        ConsumerGroupConfig {
            heartbeat_interval_ms: 5_000,
            session_timeout_ms: 45_000,
            max_size: usize::MAX,
        }
    }
}

/// A group's own timeouts (KIP-848 group configs); `None` uses the broker's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupTimeouts {
    /// `consumer.session.timeout.ms`.
    pub session_timeout_ms: Option<i32>,
    /// `consumer.heartbeat.interval.ms`.
    pub heartbeat_interval_ms: Option<i32>,
}

/// A topic as the engine sees it: name, id and partition count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// Topic id.
    pub id: Uuid,
    /// Partition count.
    pub partitions: i32,
}

/// Every existing topic by name (the runtime builds it from the broker's registry).
pub type Topics = BTreeMap<String, TopicInfo>;

/// One ConsumerGroupHeartbeat.
#[derive(Debug, Clone, Default)]
pub struct Heartbeat {
    /// Group id.
    pub group_id: String,
    /// Member id (chosen by the client from v1 on; the coordinator picks one if empty).
    pub member_id: String,
    /// 0 to join, -1 to leave, -2 for a static member's temporary leave, else the current epoch.
    pub member_epoch: i32,
    /// `group.instance.id`, if static.
    pub instance_id: Option<String>,
    /// Rack id, if given.
    pub rack_id: Option<String>,
    /// Rebalance timeout, -1 if unchanged.
    pub rebalance_timeout_ms: i32,
    /// Subscribed topic names, `None` if unchanged.
    pub subscribed_topic_names: Option<Vec<String>>,
    /// Subscribed topic regex, `None` if unchanged.
    pub subscribed_topic_regex: Option<String>,
    /// Preferred server assignor, `None` if unchanged.
    pub server_assignor: Option<String>,
    /// Partitions the member owns, `None` if unchanged.
    pub owned: Option<Assignment>,
    /// Client id (for describe).
    pub client_id: String,
    /// Client host (for describe).
    pub client_host: String,
}

/// The answer to a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatAnswer {
    /// The member's id.
    pub member_id: String,
    /// The member's epoch after this heartbeat.
    pub member_epoch: i32,
    /// How often to heartbeat.
    pub heartbeat_interval_ms: i32,
    /// The partitions the member should own now, when that changed (or it must be told again).
    pub assignment: Option<Assignment>,
}

/// Reconciliation state of a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum MemberState {
    /// Owns its target.
    Stable,
    /// Must release partitions before getting its new epoch.
    UnrevokedPartitions,
    /// Has its new epoch; waits for partitions other members still own.
    UnreleasedPartitions,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Member {
    instance_id: Option<String>,
    rack_id: Option<String>,
    client_id: String,
    client_host: String,
    rebalance_timeout_ms: i32,
    topics: BTreeSet<String>,
    regex: Option<String>,
    /// `regex`, compiled to match whole topic names.
    #[serde(skip)]
    pattern: Option<regex_lite::Regex>,
    assignor: Option<String>,
    epoch: i32,
    previous_epoch: i32,
    state: MemberState,
    assigned: Assignment,
    revoking: Assignment,
    /// Not persisted: sessions and revocation deadlines restart when a broker restores a group.
    #[serde(skip)]
    last_heartbeat: i64,
    #[serde(skip)]
    revoke_deadline: Option<i64>,
    /// A static member that sent epoch -2: kept (with its partitions) until its session ends.
    away: bool,
}

impl Member {
    /// The existing topics the member subscribes to: by name, or by regex (internal topics
    /// excepted, as in Kafka).
    fn subscribed<'a>(&'a self, topics: &'a Topics) -> impl Iterator<Item = &'a TopicInfo> + 'a {
        topics.iter().filter_map(move |(name, info)| {
            let by_name = self.topics.contains(name);
            let by_regex =
                !name.starts_with("__") && self.pattern.as_ref().is_some_and(|p| p.is_match(name));
            (by_name || by_regex).then_some(info)
        })
    }
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct Group {
    epoch: i32,
    assignment_epoch: i32,
    members: BTreeMap<String, Member>,
    target: BTreeMap<String, Assignment>,
    statics: HashMap<String, String>,
    /// Partition counts of the subscribed topics when the target was computed.
    subscribed: BTreeMap<Uuid, i32>,
    assignor: String,
}

/// A group's state with Kafka's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumerGroupState {
    /// No members.
    Empty,
    /// The target assignment is being computed (never observable here: it is immediate).
    Assigning,
    /// Some member has not reached the target yet.
    Reconciling,
    /// Every member owns its target.
    Stable,
}

impl ConsumerGroupState {
    /// Kafka's name.
    pub fn name(self) -> &'static str {
        match self {
            ConsumerGroupState::Empty => "Empty",
            ConsumerGroupState::Assigning => "Assigning",
            ConsumerGroupState::Reconciling => "Reconciling",
            ConsumerGroupState::Stable => "Stable",
        }
    }
}

/// A member as ConsumerGroupDescribe shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerMemberDescription {
    /// Member id.
    pub member_id: String,
    /// Static instance id.
    pub instance_id: Option<String>,
    /// Rack id.
    pub rack_id: Option<String>,
    /// Member epoch.
    pub member_epoch: i32,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Subscribed topic names.
    pub subscribed_topic_names: Vec<String>,
    /// Subscribed regex.
    pub subscribed_topic_regex: Option<String>,
    /// What it owns now.
    pub assignment: Assignment,
    /// What it is meant to own.
    pub target_assignment: Assignment,
}

/// A group as ConsumerGroupDescribe shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroupDescription {
    /// State.
    pub state: ConsumerGroupState,
    /// Group epoch.
    pub group_epoch: i32,
    /// Assignment epoch.
    pub assignment_epoch: i32,
    /// The assignor in use.
    pub assignor: String,
    /// Members.
    pub members: Vec<ConsumerMemberDescription>,
}

/// A consumer-protocol group's durable state (epochs, members, assignments, target), as
/// Kafka's coordinator keeps it in `__consumer_offsets`; restored after a restart so members
/// carry on at their epochs.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ConsumerGroupSnapshot(Group);

/// Every consumer-protocol group. Owned by the coordinator's runtime lock.
#[derive(Debug, Default)]
pub struct ConsumerGroupEngine {
    config: ConsumerGroupConfig,
    groups: BTreeMap<String, Group>,
    /// Per-group `consumer.session.timeout.ms` / `consumer.heartbeat.interval.ms` (GROUP
    /// config resource), over the broker-wide values.
    timeouts: HashMap<String, GroupTimeouts>,
    /// Groups touched since the last [`ConsumerGroupEngine::take_snapshots`].
    dirty: BTreeSet<String>,
    /// The encoded snapshot last handed out, per group (to skip unchanged ones).
    persisted: HashMap<String, String>,
}

fn is_subset(a: &Assignment, b: &Assignment) -> bool {
    a.iter()
        .all(|(t, ps)| ps.is_empty() || b.get(t).is_some_and(|bs| ps.is_subset(bs)))
}

fn intersects(a: &Assignment, b: &Assignment) -> bool {
    a.iter()
        .any(|(t, ps)| b.get(t).is_some_and(|bs| !ps.is_disjoint(bs)))
}

fn minus(a: &Assignment, b: &Assignment) -> Assignment {
    let mut out = Assignment::new();
    for (t, ps) in a {
        let left: BTreeSet<i32> = match b.get(t) {
            Some(bs) => ps.difference(bs).copied().collect(),
            None => ps.clone(),
        };
        if !left.is_empty() {
            out.insert(*t, left);
        }
    }
    out
}

fn intersect(a: &Assignment, b: &Assignment) -> Assignment {
    let mut out = Assignment::new();
    for (t, ps) in a {
        if let Some(bs) = b.get(t) {
            let both: BTreeSet<i32> = ps.intersection(bs).copied().collect();
            if !both.is_empty() {
                out.insert(*t, both);
            }
        }
    }
    out
}

fn normalized(a: &Assignment) -> Assignment {
    a.iter()
        .filter(|(_, ps)| !ps.is_empty())
        .map(|(t, ps)| (*t, ps.clone()))
        .collect()
}

impl Group {
    fn state(&self) -> ConsumerGroupState {
        if self.members.is_empty() {
            ConsumerGroupState::Empty
        } else if self.epoch > self.assignment_epoch {
            ConsumerGroupState::Assigning
        } else if self
            .members
            .values()
            .any(|m| m.epoch != self.assignment_epoch || m.state != MemberState::Stable)
        {
            ConsumerGroupState::Reconciling
        } else {
            ConsumerGroupState::Stable
        }
    }

    /// Partitions owned (or still being released) by members other than `except`.
    fn held_by_others(&self, except: &str) -> Assignment {
        let mut held = Assignment::new();
        for (id, m) in &self.members {
            if id == except {
                continue;
            }
            for source in [&m.assigned, &m.revoking] {
                for (t, ps) in source {
                    held.entry(*t).or_default().extend(ps.iter().copied());
                }
            }
        }
        held
    }

    /// Subscribed topics' partition counts, by id.
    fn subscription_metadata(&self, topics: &Topics) -> BTreeMap<Uuid, i32> {
        let mut out = BTreeMap::new();
        for m in self.members.values() {
            for t in m.subscribed(topics) {
                out.insert(t.id, t.partitions);
            }
        }
        out
    }

    fn remove_member(&mut self, member_id: &str) {
        if let Some(m) = self.members.remove(member_id) {
            if let Some(instance) = &m.instance_id
                && self.statics.get(instance).map(String::as_str) == Some(member_id)
            {
                self.statics.remove(instance);
            }
            self.target.remove(member_id);
            self.epoch += 1;
        }
    }

    /// Recomputes the target assignment if the group epoch moved on. Every change seen by one
    /// heartbeat (membership, subscription, topic metadata) counts as one new epoch, relative
    /// to `epoch_before`.
    fn refresh_target(&mut self, topics: &Topics, epoch_before: i32) {
        let subscribed = self.subscription_metadata(topics);
        if subscribed != self.subscribed {
            self.subscribed = subscribed;
            self.epoch += 1;
        }
        if self.epoch > epoch_before + 1 {
            self.epoch = epoch_before + 1;
        }
        if self.epoch <= self.assignment_epoch {
            return;
        }
        self.assignor = preferred_assignor(self);
        let empty = Assignment::new();
        let members: Vec<AssignorMember<'_>> = self
            .members
            .iter()
            .map(|(id, m)| AssignorMember {
                member_id: id,
                topics: m.subscribed(topics).map(|t| t.id).collect(),
                current: self.target.get(id).unwrap_or(&empty),
            })
            .collect();
        let target = assignor::assign(&self.assignor, &members, &self.subscribed)
            .or_else(|| assignor::assign(ASSIGNORS[0], &members, &self.subscribed))
            .unwrap_or_default();
        self.target = target;
        self.assignment_epoch = self.epoch;
    }

    /// Moves one member towards its target; true if its epoch or assignment changed.
    fn reconcile(&mut self, member_id: &str, owned: Option<&Assignment>, now: i64) -> bool {
        let held = self.held_by_others(member_id);
        let target = self.target.get(member_id).cloned().unwrap_or_default();
        let assignment_epoch = self.assignment_epoch;
        let Some(m) = self.members.get_mut(member_id) else {
            return false;
        };
        let before = (m.epoch, m.assigned.clone(), m.state);
        if m.state == MemberState::UnrevokedPartitions {
            // Released once a heartbeat reports owning none of them.
            match owned {
                Some(o) if !intersects(o, &m.revoking) => {
                    m.revoking.clear();
                    m.revoke_deadline = None;
                    m.state = MemberState::Stable;
                }
                _ => return false,
            }
        }
        if m.epoch != assignment_epoch || m.state != MemberState::Stable || m.assigned != target {
            let revoke = minus(&m.assigned, &target);
            if !revoke.is_empty() {
                m.assigned = intersect(&m.assigned, &target);
                m.revoking = revoke;
                m.state = MemberState::UnrevokedPartitions;
                m.revoke_deadline = Some(now + i64::from(m.rebalance_timeout_ms.max(0)));
            } else {
                let free = minus(&target, &held);
                let mut next = m.assigned.clone();
                for (t, ps) in free {
                    next.entry(t).or_default().extend(ps);
                }
                m.assigned = normalized(&next);
                if m.epoch != assignment_epoch {
                    m.previous_epoch = m.epoch;
                    m.epoch = assignment_epoch;
                }
                m.state = if m.assigned == target {
                    MemberState::Stable
                } else {
                    MemberState::UnreleasedPartitions
                };
            }
        }
        (m.epoch, &m.assigned, m.state) != (before.0, &before.1, before.2)
    }
}

fn preferred_assignor(group: &Group) -> String {
    // The assignor most members ask for (ties: the broker's order), else the default.
    let mut votes: BTreeMap<usize, usize> = BTreeMap::new();
    for m in group.members.values() {
        if let Some(a) = &m.assignor
            && let Some(i) = ASSIGNORS.iter().position(|x| x == a)
        {
            *votes.entry(i).or_default() += 1;
        }
    }
    let best = votes
        .iter()
        .max_by_key(|(i, n)| (**n, std::cmp::Reverse(**i)))
        .map_or(0, |(i, _)| *i);
    ASSIGNORS[best].to_owned()
}

impl ConsumerGroupSnapshot {
    /// Whether the group has members.
    pub fn has_members(&self) -> bool {
        !self.0.members.is_empty()
    }

    /// The group epoch (bumped by every rebalance).
    pub fn epoch(&self) -> i32 {
        self.0.epoch
    }
}

impl ConsumerGroupEngine {
    /// An engine with these settings.
    pub fn new(config: ConsumerGroupConfig) -> ConsumerGroupEngine {
        ConsumerGroupEngine {
            config,
            ..ConsumerGroupEngine::default()
        }
    }

    /// Sets (or with both `None`, clears) a group's own session timeout and heartbeat
    /// interval.
    pub fn set_timeouts(&mut self, group_id: &str, timeouts: GroupTimeouts) {
        if timeouts == GroupTimeouts::default() {
            self.timeouts.remove(group_id);
        } else {
            self.timeouts.insert(group_id.to_owned(), timeouts);
        }
    }

    fn config_for(&self, group_id: &str) -> ConsumerGroupConfig {
        let mut c = self.config;
        if let Some(t) = self.timeouts.get(group_id) {
            if let Some(ms) = t.session_timeout_ms {
                c.session_timeout_ms = ms;
            }
            if let Some(ms) = t.heartbeat_interval_ms {
                c.heartbeat_interval_ms = ms;
            }
        }
        c
    }

    /// Whether a group with this id exists (with or without members).
    pub fn contains(&self, group_id: &str) -> bool {
        self.groups.contains_key(group_id)
    }

    /// Whether the group has members.
    pub fn has_members(&self, group_id: &str) -> bool {
        self.groups
            .get(group_id)
            .is_some_and(|g| !g.members.is_empty())
    }

    /// Handles one heartbeat at `now` (ms).
    pub fn heartbeat(
        &mut self,
        req: Heartbeat,
        topics: &Topics,
        now: i64,
    ) -> Result<HeartbeatAnswer, GroupError> {
        validate(&req)?;
        let config = self.config_for(&req.group_id);
        if req.member_epoch == LEAVE_EPOCH || req.member_epoch == STATIC_LEAVE_EPOCH {
            return self.leave(req);
        }
        let group = self.groups.entry(req.group_id.clone()).or_default();
        let epoch_before = group.epoch;
        let mut member_id = req.member_id.clone();
        let mut full = false;
        if req.member_epoch == 0 {
            full = true;
            if member_id.is_empty() {
                member_id = Uuid::new_v4().to_string();
            }
            join(group, &config, &req, &member_id, now)?;
        } else {
            let Some(m) = group.members.get(&member_id) else {
                return Err(GroupError::UnknownMemberId);
            };
            if let Some(instance) = &req.instance_id
                && m.instance_id.as_ref() != Some(instance)
            {
                return Err(GroupError::FencedInstanceId);
            }
            let owned_ok = req.owned.as_ref().is_none_or(|o| is_subset(o, &m.assigned));
            if req.member_epoch != m.epoch && !(req.member_epoch == m.previous_epoch && owned_ok) {
                return Err(GroupError::FencedMemberEpoch);
            }
            update_subscription(group, &member_id, &req)?;
        }
        if let Some(m) = group.members.get_mut(&member_id) {
            m.last_heartbeat = now;
            m.away = false;
            if !req.client_id.is_empty() {
                m.client_id.clone_from(&req.client_id);
            }
            if !req.client_host.is_empty() {
                m.client_host.clone_from(&req.client_host);
            }
        }
        group.refresh_target(topics, epoch_before);
        let changed = group.reconcile(&member_id, req.owned.as_ref(), now);
        // Only a join, a new group epoch or a moved member changes the durable state; plain
        // heartbeats do not, and are not snapshotted.
        if full || changed || group.epoch != epoch_before {
            self.dirty.insert(req.group_id.clone());
        }
        let Some(m) = group.members.get(&member_id) else {
            return Err(GroupError::UnknownMemberId);
        };
        let stale = req
            .owned
            .as_ref()
            .is_some_and(|o| normalized(o) != m.assigned);
        Ok(HeartbeatAnswer {
            member_id,
            member_epoch: m.epoch,
            heartbeat_interval_ms: config.heartbeat_interval_ms,
            assignment: (changed || full || stale).then(|| m.assigned.clone()),
        })
    }

    fn leave(&mut self, req: Heartbeat) -> Result<HeartbeatAnswer, GroupError> {
        let interval = self.config_for(&req.group_id).heartbeat_interval_ms;
        let Some(group) = self.groups.get_mut(&req.group_id) else {
            return Err(GroupError::UnknownMemberId);
        };
        let Some(m) = group.members.get_mut(&req.member_id) else {
            return Err(GroupError::UnknownMemberId);
        };
        self.dirty.insert(req.group_id.clone());
        if req.member_epoch == STATIC_LEAVE_EPOCH {
            if m.instance_id.is_none() {
                return Err(GroupError::InvalidRequest);
            }
            m.away = true;
        } else {
            group.remove_member(&req.member_id);
        }
        Ok(HeartbeatAnswer {
            member_id: req.member_id,
            member_epoch: req.member_epoch,
            heartbeat_interval_ms: interval,
            assignment: None,
        })
    }

    /// Expires members whose session ended or who did not release partitions in time.
    pub fn tick(&mut self, now: i64) {
        for (group_id, group) in self.groups.iter_mut() {
            let session = i64::from(
                self.timeouts
                    .get(group_id)
                    .and_then(|t| t.session_timeout_ms)
                    .unwrap_or(self.config.session_timeout_ms),
            );
            let expired: Vec<String> = group
                .members
                .iter()
                .filter(|(_, m)| {
                    now - m.last_heartbeat > session || m.revoke_deadline.is_some_and(|d| now > d)
                })
                .map(|(id, _)| id.clone())
                .collect();
            for id in expired {
                tracing::info!(member = %id, "consumer group member expired");
                group.remove_member(&id);
                self.dirty.insert(group_id.clone());
            }
        }
    }

    /// Checks an OffsetCommit's member id and epoch. An empty member id with a negative epoch
    /// is an admin or simple consumer's commit, allowed when the group has no members.
    pub fn validate_commit(
        &self,
        group_id: &str,
        member_id: &str,
        member_epoch: i32,
    ) -> Result<(), GroupError> {
        let Some(group) = self.groups.get(group_id) else {
            return Ok(());
        };
        if member_id.is_empty() && member_epoch < 0 {
            return if group.members.is_empty() {
                Ok(())
            } else {
                Err(GroupError::UnknownMemberId)
            };
        }
        let Some(m) = group.members.get(member_id) else {
            return Err(GroupError::UnknownMemberId);
        };
        if member_epoch != m.epoch {
            return Err(GroupError::StaleMemberEpoch);
        }
        Ok(())
    }

    /// A group's description.
    pub fn describe(&self, group_id: &str) -> Option<ConsumerGroupDescription> {
        let g = self.groups.get(group_id)?;
        Some(ConsumerGroupDescription {
            state: g.state(),
            group_epoch: g.epoch,
            assignment_epoch: g.assignment_epoch,
            assignor: if g.assignor.is_empty() {
                ASSIGNORS[0].to_owned()
            } else {
                g.assignor.clone()
            },
            members: g
                .members
                .iter()
                .map(|(id, m)| ConsumerMemberDescription {
                    member_id: id.clone(),
                    instance_id: m.instance_id.clone(),
                    rack_id: m.rack_id.clone(),
                    member_epoch: m.epoch,
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    subscribed_topic_names: m.topics.iter().cloned().collect(),
                    subscribed_topic_regex: m.regex.clone(),
                    assignment: m.assigned.clone(),
                    target_assignment: g.target.get(id).cloned().unwrap_or_default(),
                })
                .collect(),
        })
    }

    /// Every group with its state.
    pub fn list(&self) -> Vec<(String, ConsumerGroupState)> {
        self.groups
            .iter()
            .map(|(id, g)| (id.clone(), g.state()))
            .collect()
    }

    /// Drops a group from memory without recording a deletion (cluster mode: another
    /// broker's state replaces it when this coordinator takes its shard over).
    pub fn forget(&mut self, group_id: &str) {
        self.groups.remove(group_id);
        self.persisted.remove(group_id);
        self.dirty.remove(group_id);
    }

    /// Forgets an empty group; `NonEmptyGroup` if it has members.
    pub fn delete(&mut self, group_id: &str) -> Result<(), GroupError> {
        match self.groups.get(group_id) {
            Some(g) if !g.members.is_empty() => Err(GroupError::NonEmptyGroup),
            _ => {
                self.groups.remove(group_id);
                self.dirty.insert(group_id.to_owned());
                Ok(())
            }
        }
    }

    /// Snapshots of the groups that changed since the last call (`None`: the group is gone).
    pub fn take_snapshots(&mut self) -> Vec<(String, Option<ConsumerGroupSnapshot>)> {
        let mut out = Vec::new();
        for group_id in std::mem::take(&mut self.dirty) {
            match self.groups.get(&group_id) {
                Some(g) => {
                    let Ok(encoded) = serde_json::to_string(g) else {
                        continue;
                    };
                    if self.persisted.get(&group_id) != Some(&encoded) {
                        self.persisted.insert(group_id.clone(), encoded);
                        out.push((group_id, Some(ConsumerGroupSnapshot(g.clone()))));
                    }
                }
                None => {
                    if self.persisted.remove(&group_id).is_some() {
                        out.push((group_id, None));
                    }
                }
            }
        }
        out
    }

    /// Restores a group at broker start: sessions and revocation deadlines start `now`.
    pub fn restore(&mut self, group_id: String, snapshot: ConsumerGroupSnapshot, now: i64) {
        let mut group = snapshot.0;
        for m in group.members.values_mut() {
            m.last_heartbeat = now;
            if m.state == MemberState::UnrevokedPartitions {
                m.revoke_deadline = Some(now + i64::from(m.rebalance_timeout_ms.max(0)));
            }
            m.pattern = m
                .regex
                .as_ref()
                .and_then(|r| regex_lite::Regex::new(&format!("^(?:{r})$")).ok());
        }
        if let Ok(encoded) = serde_json::to_string(&group) {
            self.persisted.insert(group_id.clone(), encoded);
        }
        self.groups.insert(group_id, group);
    }
}

fn validate(req: &Heartbeat) -> Result<(), GroupError> {
    if req.group_id.is_empty() {
        return Err(GroupError::InvalidGroupId);
    }
    if req.member_epoch < STATIC_LEAVE_EPOCH {
        return Err(GroupError::InvalidRequest);
    }
    if req.member_epoch == 0 {
        if req.rebalance_timeout_ms < 0
            || (req.subscribed_topic_names.is_none() && req.subscribed_topic_regex.is_none())
            || req
                .owned
                .as_ref()
                .is_some_and(|o| o.values().any(|p| !p.is_empty()))
        {
            return Err(GroupError::InvalidRequest);
        }
    } else if req.member_id.is_empty() {
        return Err(GroupError::InvalidRequest);
    }
    if let Some(a) = &req.server_assignor
        && !ASSIGNORS.contains(&a.as_str())
    {
        return Err(GroupError::UnsupportedAssignor);
    }
    if let Some(r) = &req.subscribed_topic_regex
        && !r.is_empty()
        && regex_lite::Regex::new(&format!("^(?:{r})$")).is_err()
    {
        return Err(GroupError::InvalidRegularExpression);
    }
    Ok(())
}

fn new_member(req: &Heartbeat, now: i64) -> Member {
    Member {
        instance_id: req.instance_id.clone(),
        rack_id: req.rack_id.clone(),
        client_id: req.client_id.clone(),
        client_host: req.client_host.clone(),
        rebalance_timeout_ms: req.rebalance_timeout_ms,
        topics: BTreeSet::new(),
        regex: None,
        pattern: None,
        assignor: None,
        epoch: 0,
        previous_epoch: 0,
        state: MemberState::Stable,
        assigned: Assignment::new(),
        revoking: Assignment::new(),
        last_heartbeat: now,
        revoke_deadline: None,
        away: false,
    }
}

/// Epoch 0: a new member, a member starting over, or a static member coming back.
fn join(
    group: &mut Group,
    config: &ConsumerGroupConfig,
    req: &Heartbeat,
    member_id: &str,
    now: i64,
) -> Result<(), GroupError> {
    if let Some(instance) = &req.instance_id
        && let Some(previous) = group.statics.get(instance).cloned()
        && previous != member_id
    {
        let away = group.members.get(&previous).is_some_and(|m| m.away);
        if !away {
            return Err(GroupError::UnreleasedInstanceId);
        }
        // The new incarnation takes over the old one's partitions and epoch: no rebalance.
        if let Some(mut old) = group.members.remove(&previous) {
            old.away = false;
            old.last_heartbeat = now;
            if let Some(target) = group.target.remove(&previous) {
                group.target.insert(member_id.to_owned(), target);
            }
            group.members.insert(member_id.to_owned(), old);
        }
        group.statics.insert(instance.clone(), member_id.to_owned());
        return update_subscription(group, member_id, req);
    }
    match group.members.get_mut(member_id) {
        Some(m) => {
            // Starting over (after being fenced): it owns nothing now.
            m.assigned.clear();
            m.revoking.clear();
            m.state = MemberState::Stable;
            m.revoke_deadline = None;
            m.previous_epoch = 0;
            m.epoch = 0;
        }
        None => {
            if group.members.len() >= config.max_size {
                return Err(GroupError::GroupMaxSizeReached);
            }
            group
                .members
                .insert(member_id.to_owned(), new_member(req, now));
            group.epoch += 1;
            if let Some(instance) = &req.instance_id {
                group.statics.insert(instance.clone(), member_id.to_owned());
            }
        }
    }
    update_subscription(group, member_id, req)
}

/// Applies the fields a heartbeat changed; bumps the group epoch if the subscription changed.
fn update_subscription(
    group: &mut Group,
    member_id: &str,
    req: &Heartbeat,
) -> Result<(), GroupError> {
    let Some(m) = group.members.get_mut(member_id) else {
        return Ok(());
    };
    let mut changed = false;
    if let Some(names) = &req.subscribed_topic_names {
        let names: BTreeSet<String> = names.iter().cloned().collect();
        if names != m.topics {
            m.topics = names;
            changed = true;
        }
    }
    if let Some(regex) = &req.subscribed_topic_regex {
        let regex = (!regex.is_empty()).then(|| regex.clone());
        if regex != m.regex {
            m.pattern = match &regex {
                Some(r) => Some(
                    regex_lite::Regex::new(&format!("^(?:{r})$"))
                        .map_err(|_| GroupError::InvalidRegularExpression)?,
                ),
                None => None,
            };
            m.regex = regex;
            changed = true;
        }
    }
    if let Some(a) = &req.server_assignor
        && m.assignor.as_ref() != Some(a)
    {
        m.assignor = Some(a.clone());
        changed = true;
    }
    if req.rebalance_timeout_ms >= 0 {
        m.rebalance_timeout_ms = req.rebalance_timeout_ms;
    }
    if req.rack_id.is_some() {
        m.rack_id.clone_from(&req.rack_id);
    }
    if changed {
        group.epoch += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
