//! The group coordinator: consumer-group membership (classic protocol) and committed offsets.
//!
//! Membership is decided by the pure [`engine::GroupEngine`] (events in, effects out); this
//! module is its thin runtime. One `Mutex` owns the engine together with the senders of the
//! requests it has not answered yet; every call locks it, feeds the engine one event with the
//! clock's time, and performs the returned effects (sending answers on `oneshot` channels)
//! before unlocking. A background task ([`Broker::start_background`]) calls
//! [`GroupCoordinator::tick`] periodically for session and rebalance timeouts.
//!
//! Committed offsets live in [`offsets`]: a cache in front of the internal topic
//! `__consumer_offsets`, created on the first commit and replayed when the broker opens.
//! Membership itself is not persisted: after a restart members rejoin (they get
//! UNKNOWN_MEMBER_ID and join again), as with a Kafka coordinator failover.
//!
//! [`GroupCoordinator`] owns all of this state; what it needs of the broker (the clock, a
//! partition lookup, its `__consumer_offsets` partition, the topics) it gets through the
//! `GroupHost` trait, which [`Broker`] implements, and [`Broker`]'s group methods delegate.

pub mod assignor;
pub(crate) mod authority;
pub mod consumer;
pub mod engine;
pub mod offsets;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use strom_record::Record;
use tokio::sync::oneshot;

use crate::broker::Broker;
use crate::error::{Error, Result};
use crate::partition::Partition;
use crate::storage::{CoordinatorLeases, CoordinatorShard};
#[cfg(test)]
use crate::topic::CreateTopic;

pub use authority::COORDINATOR_PRODUCER_BASE;
pub use consumer::{ConsumerGroupConfig, ConsumerGroupDescription, ConsumerGroupState};
pub use engine::{
    Effect, GroupConfig, GroupDescription, GroupEngine, GroupState, JoinRequest, JoinResponse,
    JoinResult, JoinedMember, MemberDescription, SyncResponse, Token,
};
pub use offsets::{CommittedOffset, OFFSETS_TOPIC};

/// Protocol-neutral group errors (each front end maps them to its codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GroupError {
    /// The member id is not (or no longer) a member of the group.
    #[error("unknown member id")]
    UnknownMemberId,
    /// The generation is not the group's current one.
    #[error("illegal generation")]
    IllegalGeneration,
    /// The group is rebalancing; rejoin.
    #[error("rebalance in progress")]
    RebalanceInProgress,
    /// KIP-394: join again with the member id returned.
    #[error("member id required")]
    MemberIdRequired,
    /// The member's protocol type or protocols do not match the group's.
    #[error("inconsistent group protocol")]
    InconsistentGroupProtocol,
    /// The session timeout is outside the broker's allowed range.
    #[error("invalid session timeout")]
    InvalidSessionTimeout,
    /// Another member now holds this static instance id.
    #[error("fenced instance id")]
    FencedInstanceId,
    /// The group does not exist.
    #[error("group id not found")]
    GroupIdNotFound,
    /// The group still has members.
    #[error("group is not empty")]
    NonEmptyGroup,
    /// The group id is empty or otherwise invalid.
    #[error("invalid group id")]
    InvalidGroupId,
    /// The coordinator cannot answer (shutting down, unsupported coordinator type).
    #[error("coordinator not available")]
    CoordinatorNotAvailable,
    /// OffsetDelete on a topic the group is still subscribed to.
    #[error("group subscribed to topic")]
    GroupSubscribedToTopic,
    /// KIP-848: the member epoch is not the member's (it must rejoin with epoch 0).
    #[error("fenced member epoch")]
    FencedMemberEpoch,
    /// KIP-848: an OffsetCommit at an epoch other than the member's.
    #[error("stale member epoch")]
    StaleMemberEpoch,
    /// KIP-848: the server assignor asked for is not offered.
    #[error("unsupported assignor")]
    UnsupportedAssignor,
    /// KIP-848: another live member holds this static instance id.
    #[error("unreleased instance id")]
    UnreleasedInstanceId,
    /// The group has `group.consumer.max.size` members.
    #[error("group max size reached")]
    GroupMaxSizeReached,
    /// A request whose fields contradict each other (Kafka's INVALID_REQUEST).
    #[error("invalid request")]
    InvalidRequest,
    /// KIP-848: the subscribed topic regex does not compile.
    #[error("invalid regular expression")]
    InvalidRegularExpression,
    /// Cluster mode: this broker does not (or no longer) hold the lease of the group's
    /// coordinator shard; the client finds the coordinator again.
    #[error("not coordinator")]
    NotCoordinator,
}

/// One offset to commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommit {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The next offset to consume.
    pub offset: i64,
    /// Leader epoch, -1 if unknown.
    pub leader_epoch: i32,
    /// Client metadata.
    pub metadata: Option<String>,
}

/// A group as ListGroups shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    /// Group id.
    pub group_id: String,
    /// Protocol type (`consumer`, or empty for offset-only groups).
    pub protocol_type: String,
    /// State.
    pub state: GroupState,
    /// KIP-848's group type: `consumer` for consumer-protocol groups, `classic` for the others
    /// (offsets-only groups included).
    pub group_type: &'static str,
}

#[derive(Debug, Default)]
struct Runtime {
    engine: GroupEngine,
    /// Consumer-protocol (KIP-848) groups. A group id belongs to one engine at a time.
    consumer: consumer::ConsumerGroupEngine,
    joins: HashMap<Token, oneshot::Sender<JoinResult>>,
    syncs: HashMap<Token, oneshot::Sender<std::result::Result<SyncResponse, GroupError>>>,
    /// When each group without members lost its last one (ms), seen in the engines' snapshots;
    /// offset expiry counts from it. Not persisted: after a restart an empty group's offsets
    /// expire by their commit time, as Kafka does for group metadata without a state time.
    empty_since: HashMap<String, i64>,
    /// Cluster mode: groups with members loaded at a shard takeover, with their generation
    /// (group epoch) then, until their first rebalance or [`TAKEOVER_REBALANCE_WINDOW_MS`].
    taken_over: HashMap<String, TakenOver>,
}

/// How long after a coordinator-shard takeover a group's rebalance counts as caused by it.
const TAKEOVER_REBALANCE_WINDOW_MS: i64 = 60_000;

/// A group loaded at a takeover (see `Runtime::taken_over`).
#[derive(Debug, Clone, Copy)]
struct TakenOver {
    /// Its generation (classic) or group epoch (consumer protocol) when loaded.
    generation: i32,
    /// Until when (ms) a rebalance counts as caused by the takeover.
    until: i64,
}

impl Runtime {
    fn perform(&mut self, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Join(token, result) => {
                    if let Some(tx) = self.joins.remove(&token) {
                        let _ = tx.send(result);
                    }
                }
                Effect::Sync(token, result) => {
                    if let Some(tx) = self.syncs.remove(&token) {
                        let _ = tx.send(result);
                    }
                }
            }
        }
    }
}

/// A group's durable state as stored in `__consumer_offsets` (see [`offsets`]).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupRecord {
    /// A classic group.
    Classic(engine::GroupSnapshot),
    /// A consumer-protocol (KIP-848) group.
    Consumer(consumer::ConsumerGroupSnapshot),
}

/// The state a replay of `__consumer_offsets` builds.
#[derive(Debug, Default)]
struct Replayed {
    cache: offsets::OffsetCache,
    states: BTreeMap<String, GroupRecord>,
    values: BTreeMap<String, Bytes>,
    txn_pending: offsets::PendingTxnOffsets,
    /// Transaction completions applied (cluster mode).
    txn_done: offsets::TxnDoneSeen,
}

impl Replayed {
    /// Applies one record of the topic (or of a checkpoint).
    fn apply(&mut self, key: Option<Bytes>, value: Option<Bytes>) {
        let Some(key) = key else { return };
        if offsets::is_txn_done_key(&key) {
            if let Some(done) = offsets::decode_txn_done(key, value)
                && self.txn_done.admits(&done)
            {
                self.txn_done.record(&done);
                for ((group, topic, partition), value) in
                    take_pending(&mut self.txn_pending, done.producer_id, &done.group)
                {
                    if done.commit {
                        offsets::apply(
                            &mut self.cache,
                            Some(offsets::encode_key(&group, &topic, partition)),
                            Some(offsets::encode_value(&value)),
                        );
                    }
                }
            }
            return;
        }
        if offsets::apply_txn(&mut self.txn_pending, &key, value.clone()) {
            return;
        }
        if let Some(group) = offsets::decode_group_key(key.clone()) {
            let state = value.clone().and_then(|v| {
                offsets::decode_group_value(v)
                    .and_then(|json| serde_json::from_slice::<GroupRecord>(&json).ok())
            });
            match (state, value) {
                (Some(s), Some(v)) => {
                    self.states.insert(group.clone(), s);
                    self.values.insert(group, v);
                }
                _ => {
                    self.states.remove(&group);
                    self.values.remove(&group);
                }
            }
            return;
        }
        offsets::apply(&mut self.cache, Some(key), value);
    }
}

/// Removes and returns `producer_id`'s pending offsets of `group`.
fn take_pending(
    pending: &mut offsets::PendingTxnOffsets,
    producer_id: i64,
    group: &str,
) -> Vec<((String, String, i32), offsets::CommittedOffset)> {
    let Some(of_producer) = pending.get_mut(&producer_id) else {
        return Vec::new();
    };
    let keys: Vec<(String, String, i32)> = of_producer
        .keys()
        .filter(|(g, _, _)| g == group)
        .cloned()
        .collect();
    let taken = keys
        .into_iter()
        .filter_map(|k| of_producer.remove(&k).map(|v| (k, v)))
        .collect();
    if of_producer.is_empty() {
        pending.remove(&producer_id);
    }
    taken
}

/// The checkpoint at `path` if it is intact and belongs to this topic and log.
fn load_checkpoint(
    path: &std::path::Path,
    topic_id: uuid::Uuid,
    partition: &Partition,
) -> Option<offsets::Checkpoint> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "offsets checkpoint unreadable");
            return None;
        }
    };
    let Some(c) = offsets::decode_checkpoint(&bytes) else {
        tracing::warn!(path = %path.display(), "offsets checkpoint damaged; ignored");
        return None;
    };
    if c.topic_id != topic_id || c.end > partition.high_watermark() || c.end < 0 {
        tracing::warn!(
            path = %path.display(),
            end = c.end,
            high_watermark = partition.high_watermark(),
            "offsets checkpoint does not match __consumer_offsets; ignored"
        );
        return None;
    }
    Some(c)
}

/// A group and some of its partitions.
type GroupPartitions = (String, Vec<(String, i32)>);

/// Key, value (None: tombstone), and the cache entry it becomes.
type OffsetRecord = (Bytes, Option<Bytes>, (String, i32), Option<CommittedOffset>);

#[derive(Debug, Default)]
struct OffsetStore {
    partition: Option<Arc<Partition>>,
    cache: offsets::OffsetCache,
    /// Log offset of the record each cache entry (or its removal) came from: appends run
    /// concurrently, so a late finisher must not overwrite a newer value.
    written_at: HashMap<(String, String, i32), i64>,
    /// Offsets committed inside open transactions, by producer id (see [`offsets`]).
    txn_pending: offsets::PendingTxnOffsets,
    /// The encoded group-state value last written per group (what a checkpoint stores).
    group_values: BTreeMap<String, Bytes>,
    /// The `end` of the last checkpoint written or loaded (-1: none).
    checkpoint_end: i64,
    /// Cluster mode: transaction completions applied (see `follow_txn_completions_blocking`).
    txn_done: offsets::TxnDoneSeen,
}

/// The group coordinator of one broker: it coordinates every group on a single broker, and in
/// cluster mode the groups of the coordinator shards whose leases it holds (`group/authority.rs`).
///
/// Ownership: membership belongs to the engine behind `runtime`; committed offsets to
/// `offsets`, whose lock is held across the append to `__consumer_offsets` and the cache update
/// so the cache always follows the log's order. The coordinator reaches the rest of the broker
/// only through the narrow `GroupHost` trait (clock, partitions, its offsets partition, the
/// topic list); the broker's group methods delegate to it.
#[derive(Debug)]
pub struct GroupCoordinator {
    config: GroupConfig,
    runtime: Mutex<Runtime>,
    offsets: Mutex<OffsetStore>,
    /// Where the offsets checkpoint is written (see [`offsets::Checkpoint`]).
    checkpoint_path: std::path::PathBuf,
    /// Records of `__consumer_offsets` replayed when the broker opened (after the checkpoint).
    replayed_records: u64,
    /// Commits append under the read side, concurrently, so their syncs are shared (the
    /// partition's group commit); tombstones (DeleteGroups, OffsetDelete) take the write side,
    /// so no commit of the same group interleaves with them.
    offsets_order: std::sync::RwLock<()>,
    next_token: AtomicU64,
    /// Group state waiting to be written, latest per group (`None`: delete), so it stays
    /// bounded by the number of groups; the writer task drains it.
    pending: Mutex<BTreeMap<String, Option<GroupRecord>>>,
    pending_ready: tokio::sync::Notify,
    /// Cluster mode: the coordinator-shard leases (see [`authority`]); `None` on a single
    /// broker, which coordinates every group.
    authority: Option<Arc<dyn CoordinatorLeases>>,
    /// Cluster mode: the shards taken over (fenced and loaded) under their current lease.
    owned: Mutex<authority::OwnedShards>,
    /// Cluster mode: shards taken over since open (`/metrics`).
    takeovers: AtomicU64,
    /// Cluster mode: where the next read of `__consumer_offsets` for transaction completions
    /// starts (`None` until a shard was taken over).
    txn_tail: Mutex<Option<i64>>,
    /// Cluster mode: held by whoever reads transaction completions (the tick, a request
    /// catching up, see [`Self::catch_up_txn_completions_blocking`]) and by a takeover, so a
    /// completion is applied once and in the log's order. Taken before `offsets_order`.
    follow: Mutex<()>,
    /// Cluster mode: rebalances of groups taken over, within a minute of the takeover.
    takeover_rebalances: AtomicU64,
}

impl GroupCoordinator {
    /// A coordinator whose offsets are replayed from `offsets` (the id of `__consumer_offsets`
    /// and its partition 0, if it exists), starting from the checkpoint at `checkpoint_path`
    /// when that one is valid for it (see [`offsets::Checkpoint`]). BLOCKING.
    pub(crate) fn open(
        config: GroupConfig,
        offsets: Option<(uuid::Uuid, Arc<Partition>)>,
        checkpoint_path: std::path::PathBuf,
        now: i64,
        authority: Option<Arc<dyn CoordinatorLeases>>,
    ) -> Result<GroupCoordinator> {
        let mut replayed = Replayed::default();
        let mut checkpoint_end = -1;
        let mut replayed_records = 0;
        // Under coordinator leases nothing is loaded up front: each shard's state is read
        // when its lease is taken (`sync_leases_blocking`).
        if let Some((topic_id, p)) = offsets.as_ref().filter(|_| authority.is_none()) {
            let mut from = p.log_start_offset();
            match load_checkpoint(&checkpoint_path, *topic_id, p) {
                Some(c) => {
                    for (k, v) in c.records {
                        replayed.apply(Some(k), Some(v));
                    }
                    from = from.max(c.end);
                    checkpoint_end = c.end;
                }
                None => tracing::info!(
                    "no usable offsets checkpoint; replaying __consumer_offsets whole"
                ),
            }
            let report = crate::internal::replay_from(p, from, |k, v| replayed.apply(k, v))?;
            replayed_records = report.records;
            tracing::info!(
                groups = replayed.cache.len(),
                group_states = replayed.states.len(),
                from,
                replayed_records = report.records,
                damaged_batches = report.damaged_batches,
                unreadable_ranges = report.unreadable.len(),
                "committed offsets and group state replayed"
            );
        }
        let Replayed {
            cache,
            states,
            values,
            txn_pending,
            txn_done,
        } = replayed;
        let mut engine = GroupEngine::new(config);
        let mut consumer = consumer::ConsumerGroupEngine::new(config.consumer);
        for (group_id, record) in states {
            match record {
                GroupRecord::Classic(s) => engine.restore(group_id, s, now),
                GroupRecord::Consumer(s) => consumer.restore(group_id, s, now),
            }
        }
        Ok(GroupCoordinator {
            config,
            runtime: Mutex::new(Runtime {
                engine,
                consumer,
                ..Runtime::default()
            }),
            offsets: Mutex::new(OffsetStore {
                partition: offsets.map(|(_, p)| p),
                cache,
                written_at: HashMap::new(),
                txn_pending,
                group_values: values,
                checkpoint_end,
                txn_done,
            }),
            checkpoint_path,
            replayed_records,
            offsets_order: std::sync::RwLock::new(()),
            next_token: AtomicU64::new(1),
            pending: Mutex::new(BTreeMap::new()),
            pending_ready: tokio::sync::Notify::new(),
            authority,
            owned: Mutex::new(authority::OwnedShards::new()),
            takeovers: AtomicU64::new(0),
            txn_tail: Mutex::new(None),
            follow: Mutex::new(()),
            takeover_rebalances: AtomicU64::new(0),
        })
    }

    fn runtime(&self) -> MutexGuard<'_, Runtime> {
        self.runtime.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Moves the engines' changed group states to the write queue (called with the runtime
    /// locked, so the queue follows the engines' order), noting when groups become empty.
    fn queue_snapshots(&self, rt: &mut Runtime, now: i64) {
        let classic = rt.engine.take_snapshots();
        let consumer = rt.consumer.take_snapshots();
        if classic.is_empty() && consumer.is_empty() {
            return;
        }
        if !rt.taken_over.is_empty() {
            let generations = classic
                .iter()
                .map(|(id, s)| (id, s.as_ref().map(|s| s.generation)))
                .chain(
                    consumer
                        .iter()
                        .map(|(id, s)| (id, s.as_ref().map(|s| s.epoch()))),
                );
            for (id, generation) in generations {
                let Some(taken) = rt.taken_over.get(id).copied() else {
                    continue;
                };
                match generation {
                    Some(g) if g <= taken.generation => {}
                    Some(_) => {
                        rt.taken_over.remove(id);
                        self.takeover_rebalances.fetch_add(1, Ordering::Relaxed);
                    }
                    None => {
                        rt.taken_over.remove(id);
                    }
                }
            }
        }
        let members = classic
            .iter()
            .map(|(id, s)| (id, s.as_ref().map(|s| !s.members.is_empty())))
            .chain(
                consumer
                    .iter()
                    .map(|(id, s)| (id, s.as_ref().map(|s| s.has_members()))),
            );
        for (id, has_members) in members {
            match has_members {
                Some(false) => {
                    rt.empty_since.entry(id.clone()).or_insert(now);
                }
                Some(true) | None => {
                    rt.empty_since.remove(id);
                }
            }
        }
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        for (id, s) in classic {
            pending.insert(id, s.map(GroupRecord::Classic));
        }
        for (id, s) in consumer {
            pending.insert(id, s.map(GroupRecord::Consumer));
        }
        drop(pending);
        self.pending_ready.notify_one();
    }

    fn take_pending(&self) -> BTreeMap<String, Option<GroupRecord>> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn offsets(&self) -> MutexGuard<'_, OffsetStore> {
        self.offsets.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many records of `__consumer_offsets` the open replayed beyond the checkpoint (the
    /// part of start-up that grows with history rather than with live state).
    pub fn replayed_at_open(&self) -> u64 {
        self.replayed_records
    }

    /// Runs session and rebalance timeouts at `now` (ms).
    pub fn tick(&self, now: i64) {
        let mut rt = self.runtime();
        self.drop_lost_groups(&mut rt);
        rt.taken_over.retain(|_, t| t.until > now);
        let effects = rt.engine.tick(now);
        rt.perform(effects);
        rt.consumer.tick(now);
        self.queue_snapshots(&mut rt, now);
    }

    /// JoinGroup: waits until the engine answers (possibly after a rebalance).
    pub async fn join(&self, req: JoinRequest, now: i64) -> JoinResult {
        let member_id = req.member_id.clone();
        let rx = {
            let token = self.next_token.fetch_add(1, Ordering::Relaxed);
            let (tx, rx) = oneshot::channel();
            let mut rt = self.runtime();
            rt.joins.insert(token, tx);
            // A classic member cannot join a group run by the consumer protocol.
            let effects = if let Err(e) = self.check_coordinator(&req.group_id) {
                vec![Effect::Join(token, Err((e, req.member_id.clone())))]
            } else if rt.consumer.has_members(&req.group_id) {
                vec![Effect::Join(
                    token,
                    Err((GroupError::InconsistentGroupProtocol, req.member_id.clone())),
                )]
            } else {
                rt.engine.join(token, req, now)
            };
            rt.perform(effects);
            self.queue_snapshots(&mut rt, now);
            rx
        };
        rx.await
            .unwrap_or(Err((GroupError::CoordinatorNotAvailable, member_id)))
    }

    /// SyncGroup: waits for the leader's assignments.
    #[allow(clippy::too_many_arguments)]
    pub async fn sync(
        &self,
        group_id: &str,
        member_id: &str,
        generation: i32,
        instance_id: Option<&str>,
        assignments: Vec<(String, Bytes)>,
        now: i64,
    ) -> std::result::Result<SyncResponse, GroupError> {
        self.check_coordinator(group_id)?;
        let rx = {
            let token = self.next_token.fetch_add(1, Ordering::Relaxed);
            let (tx, rx) = oneshot::channel();
            let mut rt = self.runtime();
            rt.syncs.insert(token, tx);
            let effects = rt.engine.sync(
                token,
                group_id,
                member_id,
                generation,
                instance_id,
                assignments,
                now,
            );
            rt.perform(effects);
            self.queue_snapshots(&mut rt, now);
            rx
        };
        rx.await.unwrap_or(Err(GroupError::CoordinatorNotAvailable))
    }

    /// Heartbeat.
    pub fn heartbeat(
        &self,
        group_id: &str,
        member_id: &str,
        generation: i32,
        instance_id: Option<&str>,
        now: i64,
    ) -> std::result::Result<(), GroupError> {
        self.check_coordinator(group_id)?;
        self.runtime()
            .engine
            .heartbeat(group_id, member_id, generation, instance_id, now)
    }

    /// LeaveGroup for `(member_id, instance_id)` pairs; one result each.
    pub fn leave(
        &self,
        group_id: &str,
        members: &[(String, Option<String>)],
        now: i64,
    ) -> Vec<std::result::Result<(), GroupError>> {
        if let Err(e) = self.check_coordinator(group_id) {
            return members.iter().map(|_| Err(e)).collect();
        }
        let mut rt = self.runtime();
        let (results, effects) = rt.engine.leave(group_id, members, now);
        rt.perform(effects);
        self.queue_snapshots(&mut rt, now);
        results
    }

    /// Applies a group's dynamic configs (`consumer.session.timeout.ms`,
    /// `consumer.heartbeat.interval.ms`) to the consumer-protocol engine.
    pub fn set_group_timeouts(&self, group_id: &str, configs: &BTreeMap<String, String>) {
        let get = |k: &str| configs.get(k).and_then(|v| v.trim().parse::<i32>().ok());
        let timeouts = consumer::GroupTimeouts {
            session_timeout_ms: get("consumer.session.timeout.ms"),
            heartbeat_interval_ms: get("consumer.heartbeat.interval.ms"),
        };
        self.runtime().consumer.set_timeouts(group_id, timeouts);
    }

    /// A group's description; `None` if neither membership nor offsets know it.
    pub fn describe(&self, group_id: &str) -> Option<GroupDescription> {
        {
            let rt = self.runtime();
            if let Some(d) = rt.engine.describe(group_id) {
                return Some(d);
            }
            if let Some(d) = rt.consumer.describe(group_id) {
                return Some(classic_view(d));
            }
        }
        self.offsets()
            .cache
            .contains_key(group_id)
            .then(|| GroupDescription {
                state: GroupState::Empty,
                generation: 0,
                protocol_type: String::new(),
                protocol_name: String::new(),
                members: Vec::new(),
            })
    }

    /// Every group, membership or offsets only, sorted by id.
    pub fn list(&self) -> Vec<GroupListing> {
        let mut all: BTreeMap<String, GroupListing> = BTreeMap::new();
        for group_id in self.offsets().cache.keys() {
            all.insert(
                group_id.clone(),
                GroupListing {
                    group_id: group_id.clone(),
                    protocol_type: String::new(),
                    state: GroupState::Empty,
                    group_type: "classic",
                },
            );
        }
        let rt = self.runtime();
        for (group_id, state) in rt.consumer.list() {
            all.insert(
                group_id.clone(),
                GroupListing {
                    group_id,
                    protocol_type: "consumer".to_owned(),
                    state: classic_state(state),
                    group_type: "consumer",
                },
            );
        }
        for (group_id, state, protocol_type) in rt.engine.list() {
            all.insert(
                group_id.clone(),
                GroupListing {
                    group_id,
                    protocol_type,
                    state,
                    group_type: "classic",
                },
            );
        }
        all.into_values()
            .filter(|g| self.acts_for(&g.group_id))
            .collect()
    }

    /// Committed offsets of a group: all of them, or those of `partitions`.
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        partitions: Option<&[(String, i32)]>,
    ) -> Vec<((String, i32), Option<CommittedOffset>)> {
        let store = self.offsets();
        let group = store.cache.get(group_id);
        match partitions {
            Some(wanted) => wanted
                .iter()
                .map(|tp| (tp.clone(), group.and_then(|g| g.get(tp)).cloned()))
                .collect(),
            None => group
                .map(|g| {
                    g.iter()
                        .map(|(k, v)| (k.clone(), Some(v.clone())))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

/// Replaces `path` with `bytes`: temporary file, `fdatasync`, rename, directory `fsync`.
fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write as _;
    let tmp = path.with_extension("tmp");
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_data()))
        .map_err(|e| Error::metadata_io("write checkpoint", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::metadata_io("rename checkpoint", path, e))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::metadata_io("fsync dir", dir, e))
}

/// What offset expiry needs of `group_id`'s membership, from whichever engine owns it.
fn membership(rt: &Runtime, group_id: &str) -> offsets::Membership {
    let since = rt.empty_since.get(group_id).copied();
    if let Some(state) = rt.engine.state(group_id) {
        if state == GroupState::Empty && !rt.engine.has_members(group_id) {
            return offsets::Membership::Empty { since };
        }
        // KIP-496 for classic groups: only a stable `consumer` group, whose members'
        // subscriptions all parse, lets unsubscribed topics expire.
        let subscribed = rt.engine.describe(group_id).and_then(|d| {
            if d.state != GroupState::Stable || d.protocol_type != "consumer" {
                return None;
            }
            let mut topics = std::collections::BTreeSet::new();
            for m in &d.members {
                topics.extend(offsets::subscribed_topics(&m.metadata)?);
            }
            Some(topics)
        });
        return offsets::Membership::Active { subscribed };
    }
    match rt.consumer.describe(group_id) {
        None => offsets::Membership::Standalone,
        Some(d) if d.members.is_empty() => offsets::Membership::Empty { since },
        Some(d) => {
            let by_name = d.members.iter().all(|m| m.subscribed_topic_regex.is_none());
            offsets::Membership::Active {
                subscribed: by_name.then(|| {
                    d.members
                        .iter()
                        .flat_map(|m| m.subscribed_topic_names.iter().cloned())
                        .collect()
                }),
            }
        }
    }
}

fn classic_state(state: consumer::ConsumerGroupState) -> GroupState {
    match state {
        consumer::ConsumerGroupState::Empty => GroupState::Empty,
        consumer::ConsumerGroupState::Assigning => GroupState::Assigning,
        consumer::ConsumerGroupState::Reconciling => GroupState::Reconciling,
        consumer::ConsumerGroupState::Stable => GroupState::Stable,
    }
}

/// A consumer-protocol group as DescribeGroups shows it (as Kafka does for old admin tools):
/// protocol type `consumer`, the assignor as protocol, the owned partitions per member.
fn classic_view(d: consumer::ConsumerGroupDescription) -> GroupDescription {
    GroupDescription {
        state: classic_state(d.state),
        generation: d.group_epoch,
        protocol_type: "consumer".to_owned(),
        protocol_name: d.assignor,
        members: d
            .members
            .into_iter()
            .map(|m| MemberDescription {
                member_id: m.member_id,
                instance_id: m.instance_id,
                client_id: m.client_id,
                client_host: m.client_host,
                metadata: Bytes::new(),
                assignment: Bytes::new(),
                owned: Some(m.assignment),
            })
            .collect(),
    }
}

/// What the group coordinator needs from the rest of the broker: the clock, partitions (to
/// check that a committed offset names one), its own `__consumer_offsets` partition and the
/// topics the consumer protocol assigns. The coordinator owns its state (groups, members,
/// committed and pending offsets, the checkpoint) and reaches nothing else; [`Broker`]
/// implements this and delegates its group methods to the coordinator.
pub(crate) trait GroupHost {
    /// Now, in ms since the epoch (the broker's clock).
    fn now_ms(&self) -> i64;
    /// A partition, if it exists.
    fn partition(&self, topic: &str, index: i32) -> Result<Arc<Partition>>;
    /// Partition 0 of `__consumer_offsets`, created (compacted, one partition) if missing.
    /// BLOCKING.
    fn offsets_partition(&self) -> Result<Arc<Partition>>;
    /// The topic id of `__consumer_offsets` (the checkpoint names it).
    fn offsets_topic_id(&self) -> Result<uuid::Uuid>;
    /// Every topic's id and partition count, by name (what the consumer protocol assigns).
    fn topic_infos(&self) -> consumer::Topics;
}

impl GroupHost for Broker {
    fn now_ms(&self) -> i64 {
        self.clock().now_ms()
    }

    fn partition(&self, topic: &str, index: i32) -> Result<Arc<Partition>> {
        Broker::partition(self, topic, index)
    }

    fn offsets_partition(&self) -> Result<Arc<Partition>> {
        self.internal_partition_blocking(OFFSETS_TOPIC)
    }

    fn offsets_topic_id(&self) -> Result<uuid::Uuid> {
        Ok(self.topic(OFFSETS_TOPIC)?.id())
    }

    /// Every topic's id and partition count, by name (what the consumer protocol assigns).
    fn topic_infos(&self) -> consumer::Topics {
        self.topics()
            .iter()
            .map(|t| {
                (
                    t.name().to_owned(),
                    consumer::TopicInfo {
                        id: t.id(),
                        partitions: t.partition_count(),
                    },
                )
            })
            .collect()
    }
}

impl GroupCoordinator {
    /// Writes the queued group states to `__consumer_offsets` in one batch. BLOCKING.
    pub(crate) fn write_group_states_blocking(&self, host: &dyn GroupHost) -> Result<()> {
        let pending = self.take_pending();
        if pending.is_empty() {
            return Ok(());
        }
        let now = host.now_ms();
        let mut by_shard: BTreeMap<CoordinatorShard, Vec<Record>> = BTreeMap::new();
        for (group_id, state) in &pending {
            // Cluster mode: a group of a shard given up is another coordinator's to write.
            if !self.acts_for(group_id) {
                continue;
            }
            let value = match state {
                Some(s) => match serde_json::to_vec(s) {
                    Ok(json) => Some(offsets::encode_group_value(&json)),
                    Err(e) => {
                        tracing::warn!(group = %group_id, error = %e, "group state not encodable");
                        continue;
                    }
                },
                None => None,
            };
            by_shard
                .entry(self.batch_shard(group_id))
                .or_default()
                .push(Record::new(
                    now,
                    Some(offsets::encode_group_key(group_id)),
                    value,
                ));
        }
        if by_shard.is_empty() {
            return Ok(());
        }
        let partition = self.offsets_partition_blocking(host)?;
        // Under the shared side, so a checkpoint sees the values of every appended record.
        let _shared = self
            .offsets_order
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let mut first_error = None;
        for (shard, records) in by_shard {
            if let Err(e) = self.append_for_shard(&partition, shard, &records) {
                first_error.get_or_insert(e);
                continue;
            }
            let mut store = self.offsets();
            for record in records {
                let Some(group) = record.key.and_then(offsets::decode_group_key) else {
                    continue;
                };
                match record.value {
                    Some(v) => store.group_values.insert(group, v),
                    None => store.group_values.remove(&group),
                };
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Writes the offsets checkpoint (see [`offsets::Checkpoint`]) if `force` or if more than
    /// `max(100 000, 2 × live records)` records were appended since the last one, so a restart
    /// after a crash replays at most that tail. Atomic (temporary file, `fdatasync`, rename,
    /// directory `fsync`); the covered records are flushed first, so the checkpoint never
    /// describes records a power loss could take back. BLOCKING.
    pub(crate) fn checkpoint_offsets_blocking(
        &self,
        host: &dyn GroupHost,
        force: bool,
    ) -> Result<bool> {
        // Under coordinator leases state is loaded per shard from the shared log, never from
        // a local checkpoint.
        if self.authority.is_some() {
            return Ok(false);
        }
        let Some(partition) = self.offsets().partition.clone() else {
            return Ok(false);
        };
        let topic_id = host.offsets_topic_id()?;
        let checkpoint = {
            // Exclusive: every appended record is in the store, none is in flight.
            let _exclusive = self
                .offsets_order
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            let store = self.offsets();
            let end = partition.log_end_offset();
            let live = store.cache.values().map(BTreeMap::len).sum::<usize>()
                + store.group_values.len()
                + store.txn_pending.values().map(BTreeMap::len).sum::<usize>();
            let behind = end - store.checkpoint_end.max(0);
            let due = i64::try_from(live.saturating_mul(2))
                .unwrap_or(i64::MAX)
                .max(100_000);
            if end == store.checkpoint_end || (!force && behind <= due) {
                return Ok(false);
            }
            let mut records = Vec::with_capacity(live);
            for (group, offsets_of) in &store.cache {
                for ((topic, p), v) in offsets_of {
                    records.push((
                        offsets::encode_key(group, topic, *p),
                        offsets::encode_value(v),
                    ));
                }
            }
            for (group, value) in &store.group_values {
                records.push((offsets::encode_group_key(group), value.clone()));
            }
            for (pid, pending) in &store.txn_pending {
                for ((group, topic, p), v) in pending {
                    records.push((
                        offsets::encode_txn_key(*pid, group, topic, *p),
                        offsets::encode_value(v),
                    ));
                }
            }
            offsets::Checkpoint {
                topic_id,
                end,
                records,
            }
        };
        partition.flush_blocking()?;
        let path = &self.checkpoint_path;
        write_atomically(path, &offsets::encode_checkpoint(&checkpoint))?;
        let mut store = self.offsets();
        store.checkpoint_end = store.checkpoint_end.max(checkpoint.end);
        tracing::debug!(
            end = checkpoint.end,
            records = checkpoint.records.len(),
            "offsets checkpoint written"
        );
        Ok(true)
    }

    /// ConsumerGroupHeartbeat (KIP-848). A group id held by a classic group with members is
    /// refused with `GroupIdNotFound`, as Kafka does ("not a consumer group").
    pub(crate) fn consumer_group_heartbeat(
        &self,
        host: &dyn GroupHost,
        req: consumer::Heartbeat,
    ) -> std::result::Result<consumer::HeartbeatAnswer, GroupError> {
        self.check_coordinator(&req.group_id)?;
        let topics = host.topic_infos();
        let now = host.now_ms();
        let mut rt = self.runtime();
        if rt.engine.has_members(&req.group_id) {
            return Err(GroupError::GroupIdNotFound);
        }
        let answer = rt.consumer.heartbeat(req, &topics, now);
        self.queue_snapshots(&mut rt, now);
        answer
    }

    /// ConsumerGroupDescribe: `GroupIdNotFound` unless it is a consumer-protocol group.
    pub(crate) fn describe_consumer_group(
        &self,
        group_id: &str,
    ) -> std::result::Result<consumer::ConsumerGroupDescription, GroupError> {
        self.check_coordinator(group_id)?;
        self.runtime()
            .consumer
            .describe(group_id)
            .ok_or(GroupError::GroupIdNotFound)
    }

    /// Partition 0 of `__consumer_offsets`, created (compacted, one partition) if missing.
    /// BLOCKING.
    fn offsets_partition_blocking(&self, host: &dyn GroupHost) -> Result<Arc<Partition>> {
        if let Some(p) = &self.offsets().partition {
            return Ok(Arc::clone(p));
        }
        let p = host.offsets_partition()?;
        self.offsets().partition = Some(Arc::clone(&p));
        Ok(p)
    }

    /// OffsetCommit: validates the member, then appends every commit to `__consumer_offsets`
    /// and updates the cache. Returns one result per commit (unknown topics and partitions fail
    /// alone). BLOCKING.
    pub(crate) fn commit_offsets_blocking(
        &self,
        host: &dyn GroupHost,
        group_id: &str,
        member_id: &str,
        generation: i32,
        instance_id: Option<&str>,
        commits: Vec<OffsetCommit>,
    ) -> Result<Vec<Result<()>>> {
        if group_id.is_empty() {
            return Err(Error::Group(GroupError::InvalidGroupId));
        }
        self.check_coordinator(group_id)?;
        self.validate_committer(group_id, member_id, generation, instance_id)?;
        let now = host.now_ms();
        let mut results = Vec::with_capacity(commits.len());
        let mut valid = Vec::new();
        for c in commits {
            match host.partition(&c.topic, c.partition) {
                Ok(_) => {
                    results.push(Ok(()));
                    valid.push(c);
                }
                Err(e) => results.push(Err(e)),
            }
        }
        if valid.is_empty() {
            return Ok(results);
        }
        let records: Vec<OffsetRecord> = valid
            .into_iter()
            .map(|c| {
                let value = CommittedOffset {
                    offset: c.offset,
                    leader_epoch: c.leader_epoch,
                    metadata: c.metadata,
                    commit_timestamp: now,
                };
                (
                    offsets::encode_key(group_id, &c.topic, c.partition),
                    Some(offsets::encode_value(&value)),
                    (c.topic, c.partition),
                    Some(value),
                )
            })
            .collect();
        match self.write_offsets_blocking(host, group_id, records) {
            Ok(()) => Ok(results),
            Err(e) => Ok(results.into_iter().map(|r| r.and(Err(e.clone()))).collect()),
        }
    }

    /// Checks that a commit comes from a current member (or, with generation -1 and no member
    /// id, from a simple consumer of a group without members), in whichever engine owns the
    /// group.
    fn validate_committer(
        &self,
        group_id: &str,
        member_id: &str,
        generation: i32,
        instance_id: Option<&str>,
    ) -> Result<()> {
        let rt = self.runtime();
        if rt.consumer.contains(group_id) {
            rt.consumer
                .validate_commit(group_id, member_id, generation)?;
        } else {
            rt.engine
                .validate_commit(group_id, member_id, generation, instance_id)?;
        }
        Ok(())
    }

    fn write_offsets_blocking(
        &self,
        host: &dyn GroupHost,
        group_id: &str,
        records: Vec<OffsetRecord>,
    ) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let partition = self.offsets_partition_blocking(host)?;
        let now = host.now_ms();
        let batch_records: Vec<Record> = records
            .iter()
            .map(|(k, v, _, _)| Record::new(now, Some(k.clone()), v.clone()))
            .collect();
        // The guard is held until the cache is updated, so whoever takes the exclusive side
        // (tombstones, expiry) sees every appended commit in the cache.
        let order = &self.offsets_order;
        if records.iter().any(|(_, v, _, _)| v.is_none()) {
            let _exclusive = order.write().unwrap_or_else(PoisonError::into_inner);
            let base = self
                .append_for_group(&partition, group_id, &batch_records)?
                .base_offset;
            self.apply_offsets(group_id, base, records);
        } else {
            let _shared = order.read().unwrap_or_else(PoisonError::into_inner);
            let base = self
                .append_for_group(&partition, group_id, &batch_records)?
                .base_offset;
            self.apply_offsets(group_id, base, records);
        }
        Ok(())
    }

    /// Updates the cache with records appended from log offset `base`, skipping entries a
    /// later record already superseded.
    fn apply_offsets(&self, group_id: &str, base: i64, records: Vec<OffsetRecord>) {
        let mut store = self.offsets();
        let store = &mut *store;
        for (i, (_, _, tp, value)) in records.into_iter().enumerate() {
            let at = base + i as i64;
            let key = (group_id.to_owned(), tp.0.clone(), tp.1);
            if store.written_at.get(&key).is_some_and(|&w| w > at) {
                continue;
            }
            store.written_at.insert(key, at);
            match value {
                Some(v) => {
                    store
                        .cache
                        .entry(group_id.to_owned())
                        .or_default()
                        .insert(tp, v);
                }
                None => {
                    if let Some(g) = store.cache.get_mut(group_id) {
                        g.remove(&tp);
                        if g.is_empty() {
                            store.cache.remove(group_id);
                        }
                    }
                }
            }
        }
    }

    /// Stores offsets committed inside producer `producer_id`'s transaction (TxnOffsetCommit)
    /// as pending; the member is validated as for OffsetCommit when a generation is given.
    /// One result per commit. BLOCKING.
    pub(crate) fn write_txn_offsets_blocking(
        &self,
        host: &dyn GroupHost,
        request: crate::txn::TxnOffsets<'_>,
    ) -> Result<Vec<Result<()>>> {
        let crate::txn::TxnOffsets {
            producer_id,
            group_id,
            member_id,
            generation,
            instance_id,
            commits,
        } = request;
        self.check_coordinator(group_id)?;
        if generation >= 0 || !member_id.is_empty() {
            self.validate_committer(group_id, member_id, generation, instance_id)?;
        }
        // Cluster mode: this producer's previous transaction may have ended (its completion
        // is in the log, written before its EndTxn was answered) without being settled here
        // yet; it is settled first, or its completion would take this transaction's offsets
        // for its own.
        self.catch_up_txn_completions_blocking(host, group_id, Some(producer_id))?;
        let now = host.now_ms();
        let mut results = Vec::with_capacity(commits.len());
        let mut records = Vec::new();
        let mut values = Vec::new();
        for c in commits {
            if let Err(e) = host.partition(&c.topic, c.partition) {
                results.push(Err(e));
                continue;
            }
            results.push(Ok(()));
            let value = CommittedOffset {
                offset: c.offset,
                leader_epoch: c.leader_epoch,
                metadata: c.metadata,
                commit_timestamp: now,
            };
            records.push((
                offsets::encode_txn_key(producer_id, group_id, &c.topic, c.partition),
                Some(offsets::encode_value(&value)),
            ));
            values.push(((group_id.to_owned(), c.topic, c.partition), value));
        }
        if records.is_empty() {
            return Ok(results);
        }
        let records: Vec<Record> = records
            .into_iter()
            .map(|(k, v)| Record::new(now, Some(k), v))
            .collect();
        let written = self.offsets_partition_blocking(host).and_then(|partition| {
            let _shared = self
                .offsets_order
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            // Fenced by the group's shard lease in cluster mode, as every group write.
            self.append_for_group(&partition, group_id, &records)?;
            tracing::debug!(producer_id, group = group_id, offsets = ?values,
                "transactional offsets pending");
            let mut store = self.offsets();
            store
                .txn_pending
                .entry(producer_id)
                .or_default()
                .extend(values);
            Ok(())
        });
        match written {
            Ok(()) => Ok(results),
            Err(e) => Ok(results.into_iter().map(|r| r.and(Err(e.clone()))).collect()),
        }
    }

    /// Ends producer `producer_id`'s pending offsets (of `group` only, if given): a commit
    /// makes them committed offsets, an abort drops them (both tombstone the pending records).
    /// In cluster mode one group at a time, fenced by its shard lease. BLOCKING.
    pub(crate) fn complete_txn_offsets_blocking(
        &self,
        host: &dyn GroupHost,
        producer_id: i64,
        commit: bool,
        group: Option<&str>,
    ) -> Result<()> {
        let mut pending = self
            .offsets()
            .txn_pending
            .get(&producer_id)
            .cloned()
            .unwrap_or_default();
        if let Some(only) = group {
            pending.retain(|(g, _, _), _| g == only);
        }
        if pending.is_empty() {
            return Ok(());
        }
        let shard = match group {
            Some(g) => self.batch_shard(g),
            None if self.authority.is_some() => {
                // One shard per write: settle group by group.
                let groups: std::collections::BTreeSet<String> =
                    pending.keys().map(|(g, _, _)| g.clone()).collect();
                for g in groups {
                    self.complete_txn_offsets_blocking(host, producer_id, commit, Some(&g))?;
                }
                return Ok(());
            }
            None => CoordinatorShard(0),
        };
        // The tombstones of the pending keys first, then (commit) the offsets, group by group.
        let mut records: Vec<(Bytes, Option<Bytes>)> = pending
            .keys()
            .map(|(group, topic, partition)| {
                (
                    offsets::encode_txn_key(producer_id, group, topic, *partition),
                    None,
                )
            })
            .collect();
        let mut applied: BTreeMap<String, Vec<OffsetRecord>> = BTreeMap::new();
        for ((group, topic, partition), value) in &pending {
            if commit {
                let key = offsets::encode_key(group, topic, *partition);
                let encoded = offsets::encode_value(value);
                records.push((key.clone(), Some(encoded.clone())));
                applied.entry(group.clone()).or_default().push((
                    key,
                    Some(encoded),
                    (topic.clone(), *partition),
                    Some(value.clone()),
                ));
            }
        }
        let partition = self.offsets_partition_blocking(host)?;
        let now = host.now_ms();
        let records: Vec<Record> = records
            .into_iter()
            .map(|(k, v)| Record::new(now, Some(k), v))
            .collect();
        // Held until the cache is updated (see `write_offsets_blocking`).
        let _shared = self
            .offsets_order
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let base = self
            .append_for_shard(&partition, shard, &records)?
            .base_offset;
        {
            let mut store = self.offsets();
            if let Some(p) = store.txn_pending.get_mut(&producer_id) {
                p.retain(|k, _| !pending.contains_key(k));
                if p.is_empty() {
                    store.txn_pending.remove(&producer_id);
                }
            }
        }
        // Record i of `records` sits at `base + i`.
        let mut at = base + pending.len() as i64;
        for (group, recs) in applied {
            let n = recs.len() as i64;
            self.apply_offsets(&group, at, recs);
            at += n;
        }
        Ok(())
    }

    /// Whether `group_id` has offsets pending in a transaction (of `producer_id` only, if
    /// given). Does not block.
    pub(crate) fn has_pending_txn_offsets(&self, group_id: &str, producer_id: Option<i64>) -> bool {
        self.offsets().txn_pending.iter().any(|(pid, of)| {
            producer_id.is_none_or(|want| *pid == want) && of.keys().any(|(g, _, _)| g == group_id)
        })
    }

    /// Whether `group_id` has an offset of `(topic, partition)` pending in an open transaction
    /// (OffsetFetch with `require_stable` answers UNSTABLE_OFFSET_COMMIT for those, KIP-447).
    pub(crate) fn has_pending_txn_offset(
        &self,
        group_id: &str,
        topic: &str,
        partition: i32,
    ) -> bool {
        let key = (group_id.to_owned(), topic.to_owned(), partition);
        self.offsets()
            .txn_pending
            .values()
            .any(|p| p.contains_key(&key))
    }

    /// Expires committed offsets (`offsets.retention.minutes`, see [`offsets::expired`]):
    /// tombstones them in `__consumer_offsets` (so compaction drops them) and removes them from
    /// the cache; an empty group left without offsets, or empty for the whole retention, is
    /// forgotten too (its state record tombstoned), as Kafka does. Returns the number of
    /// offsets expired. Runs every `offsets.retention.check.interval.ms`. BLOCKING.
    pub(crate) fn expire_offsets_blocking(&self, host: &dyn GroupHost) -> Result<usize> {
        let now = host.now_ms();
        let retention = self.config.offsets_retention_ms;
        // Exclusive: no commit appends or updates the cache while the expired set is decided
        // and tombstoned, so a commit racing the expiry is never tombstoned.
        let _exclusive = self
            .offsets_order
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let (expired, forget) = {
            let rt = self.runtime();
            let store = self.offsets();
            let mut expired: Vec<(String, Vec<(String, i32)>)> = Vec::new();
            let mut forget = Vec::new();
            for (group_id, group_offsets) in &store.cache {
                if !self.acts_for(group_id) {
                    continue;
                }
                let membership = membership(&rt, group_id);
                let gone = offsets::expired(group_offsets, &membership, now, retention);
                if matches!(membership, offsets::Membership::Empty { .. })
                    && gone.len() == group_offsets.len()
                {
                    forget.push(group_id.clone());
                }
                if !gone.is_empty() {
                    expired.push((group_id.clone(), gone));
                }
            }
            // Empty groups that never committed (or whose offsets are gone) and stayed empty
            // for the whole retention.
            for (group_id, since) in &rt.empty_since {
                if !store.cache.contains_key(group_id)
                    && since.saturating_add(retention) <= now
                    && self.acts_for(group_id)
                {
                    forget.push(group_id.clone());
                }
            }
            (expired, forget)
        };
        if !forget.is_empty() {
            let mut rt = self.runtime();
            for group_id in &forget {
                // Still empty (the runtime lock was let go): deleting refuses a group that
                // gained members meanwhile.
                let _ = rt.engine.delete(group_id);
                let _ = rt.consumer.delete(group_id);
                rt.empty_since.remove(group_id);
            }
            self.queue_snapshots(&mut rt, now);
        }
        if expired.is_empty() {
            return Ok(0);
        }
        let partition = self.offsets_partition_blocking(host)?;
        // One batch per coordinator shard (on a single broker: all in shard order, one each).
        let mut by_shard: BTreeMap<CoordinatorShard, Vec<GroupPartitions>> = BTreeMap::new();
        for (group_id, tps) in expired {
            by_shard
                .entry(self.batch_shard(&group_id))
                .or_default()
                .push((group_id, tps));
        }
        let mut count = 0;
        for (shard, expired) in by_shard {
            let records: Vec<Record> = expired
                .iter()
                .flat_map(|(g, tps)| {
                    tps.iter().map(move |(t, p)| {
                        Record::new(now, Some(offsets::encode_key(g, t, *p)), None)
                    })
                })
                .collect();
            let mut at = self
                .append_for_shard(&partition, shard, &records)?
                .base_offset;
            count += records.len();
            for (group_id, tps) in expired {
                let n = tps.len() as i64;
                let records = tps
                    .into_iter()
                    .map(|(t, p)| (offsets::encode_key(&group_id, &t, p), None, (t, p), None))
                    .collect();
                self.apply_offsets(&group_id, at, records);
                at += n;
            }
        }
        tracing::info!(offsets = count, "expired committed offsets");
        Ok(count)
    }

    /// DeleteGroups for one group: `GroupIdNotFound`, `NonEmptyGroup`, or its offsets are
    /// tombstoned and the group forgotten. BLOCKING.
    pub(crate) fn delete_group_blocking(&self, host: &dyn GroupHost, group_id: &str) -> Result<()> {
        self.check_coordinator(group_id)?;
        let known_members = {
            let rt = self.runtime();
            rt.engine.state(group_id).is_some() || rt.consumer.contains(group_id)
        };
        let offsets: Vec<(String, i32)> = self
            .offsets()
            .cache
            .get(group_id)
            .map(|g| g.keys().cloned().collect())
            .unwrap_or_default();
        if !known_members && offsets.is_empty() {
            return Err(Error::Group(GroupError::GroupIdNotFound));
        }
        {
            let mut rt = self.runtime();
            rt.engine.delete(group_id)?;
            rt.consumer.delete(group_id)?;
            self.queue_snapshots(&mut rt, host.now_ms());
        }
        self.tombstone_blocking(host, group_id, offsets)
    }

    fn tombstone_blocking(
        &self,
        host: &dyn GroupHost,
        group_id: &str,
        partitions: Vec<(String, i32)>,
    ) -> Result<()> {
        let records = partitions
            .into_iter()
            .map(|(t, p)| (offsets::encode_key(group_id, &t, p), None, (t, p), None))
            .collect();
        self.write_offsets_blocking(host, group_id, records)
    }

    /// OffsetDelete, as Kafka answers it: removes the group's offsets of the requested
    /// partitions of every topic no member subscribes to, and returns the requested topics that
    /// were refused because a member subscribes to them (`GROUP_SUBSCRIBED_TO_TOPIC` per
    /// partition). An unknown group is [`GroupError::GroupIdNotFound`] and a classic group
    /// with members that does not use the `consumer` protocol [`GroupError::NonEmptyGroup`],
    /// both for the whole request.
    ///
    /// Consumer-protocol members subscribe by name (a regex counts as every topic); classic
    /// members' subscriptions are read from their `consumer` protocol metadata (a member whose
    /// metadata does not parse counts as subscribed to every topic). The check and the
    /// tombstones are one critical section under the group runtime lock (and the exclusive
    /// side of the offsets order, taken first as offset expiry does), so a JoinGroup or
    /// heartbeat changing subscriptions is entirely before or after it: an offset of a
    /// subscribed topic is never deleted. The lock is held across the tombstones' append;
    /// OffsetDelete is a rare admin call. BLOCKING.
    pub(crate) fn offset_delete_blocking(
        &self,
        host: &dyn GroupHost,
        group_id: &str,
        topics: &[(String, Vec<i32>)],
    ) -> Result<std::collections::BTreeSet<String>> {
        self.check_coordinator(group_id)?;
        let partition = self.offsets_partition_blocking(host)?;
        let _exclusive = self
            .offsets_order
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let rt = self.runtime();
        let known_offsets = self.offsets().cache.contains_key(group_id);
        let subscriptions = offset_delete_subscriptions(&rt, group_id, known_offsets)?;
        let refused: std::collections::BTreeSet<String> = topics
            .iter()
            .filter(|(t, _)| subscriptions.contains(t))
            .map(|(t, _)| t.clone())
            .collect();
        let records: Vec<OffsetRecord> = topics
            .iter()
            .filter(|(t, _)| !refused.contains(t))
            .flat_map(|(t, ps)| {
                ps.iter().map(move |&p| {
                    (
                        offsets::encode_key(group_id, t, p),
                        None,
                        (t.clone(), p),
                        None,
                    )
                })
            })
            .collect();
        if records.is_empty() {
            return Ok(refused);
        }
        let now = host.now_ms();
        let batch_records: Vec<Record> = records
            .iter()
            .map(|(k, _, _, _)| Record::new(now, Some(k.clone()), None))
            .collect();
        let base = self
            .append_for_group(&partition, group_id, &batch_records)?
            .base_offset;
        self.apply_offsets(group_id, base, records);
        drop(rt);
        Ok(refused)
    }
}

impl Broker {
    /// The group coordinator.
    pub fn groups(&self) -> &GroupCoordinator {
        &self.groups
    }

    /// Runs the group-state writer until the broker is dropped: every queued change is
    /// appended soon after it happens (changes made meanwhile share one batch and one sync).
    pub(crate) fn start_group_state_writer(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                // Held for at most a second at a time, so a dropped broker ends the task.
                let Some(broker) = weak.upgrade() else { return };
                let woken = tokio::time::timeout(
                    std::time::Duration::from_secs(1),
                    broker.groups.pending_ready.notified(),
                )
                .await;
                if woken.is_err() {
                    continue;
                }
                if let Err(e) = broker
                    .run_blocking(|b| b.write_group_states_blocking())
                    .await
                {
                    tracing::warn!(error = %e, "writing group state failed");
                }
            }
        });
    }

    /// Cluster mode: takes over the group- and transaction-coordinator shards whose leases
    /// this broker gained and drops those it lost (see `GroupCoordinator::check_coordinator`,
    /// `txn::authority`), and settles transactional offsets whose transaction ended (see
    /// `GroupCoordinator::follow_txn_completions_blocking`). BLOCKING.
    pub fn sync_coordinator_leases_blocking(&self) -> Result<()> {
        let groups = self.groups.sync_leases_blocking(self);
        if let Err(e) = self.groups.follow_txn_completions_blocking(self) {
            tracing::warn!(error = %e, "reading transaction completions failed");
        }
        let txns = self.txns.sync_leases_blocking(self);
        groups.and(txns)
    }

    /// Writes the queued group states to `__consumer_offsets` in one batch. BLOCKING.
    pub fn write_group_states_blocking(&self) -> Result<()> {
        self.groups.write_group_states_blocking(self)
    }

    /// Writes the offsets checkpoint (see `offsets::Checkpoint`) if `force` or if more than
    /// `max(100 000, 2 × live records)` records were appended since the last one, so a restart
    /// after a crash replays at most that tail. Atomic (temporary file, `fdatasync`, rename,
    /// directory `fsync`); the covered records are flushed first, so the checkpoint never
    /// describes records a power loss could take back. BLOCKING.
    pub fn checkpoint_offsets_blocking(&self, force: bool) -> Result<bool> {
        self.groups.checkpoint_offsets_blocking(self, force)
    }

    /// ConsumerGroupHeartbeat (KIP-848). A group id held by a classic group with members is
    /// refused with `GroupIdNotFound`, as Kafka does ("not a consumer group").
    pub fn consumer_group_heartbeat(
        &self,
        req: consumer::Heartbeat,
    ) -> std::result::Result<consumer::HeartbeatAnswer, GroupError> {
        self.groups.consumer_group_heartbeat(self, req)
    }

    /// OffsetCommit: validates the member, then appends every commit to `__consumer_offsets`
    /// and updates the cache. Returns one result per commit (unknown topics and partitions fail
    /// alone). BLOCKING.
    pub fn commit_offsets_blocking(
        &self,
        group_id: &str,
        member_id: &str,
        generation: i32,
        instance_id: Option<&str>,
        commits: Vec<OffsetCommit>,
    ) -> Result<Vec<Result<()>>> {
        self.groups.commit_offsets_blocking(
            self,
            group_id,
            member_id,
            generation,
            instance_id,
            commits,
        )
    }

    /// Ends producer `producer_id`'s pending offsets: a commit makes them committed offsets,
    /// an abort drops them (both tombstone the pending records). BLOCKING.
    pub(crate) fn complete_txn_offsets_blocking(
        &self,
        producer_id: i64,
        commit: bool,
    ) -> Result<()> {
        self.groups
            .complete_txn_offsets_blocking(self, producer_id, commit, None)
    }

    /// Expires committed offsets (`offsets.retention.minutes`, see `offsets::expired`):
    /// tombstones them in `__consumer_offsets` (so compaction drops them) and removes them from
    /// the cache; an empty group left without offsets, or empty for the whole retention, is
    /// forgotten too (its state record tombstoned), as Kafka does. Returns the number of
    /// offsets expired. Runs every `offsets.retention.check.interval.ms`. BLOCKING.
    pub fn expire_offsets_blocking(&self) -> Result<usize> {
        self.groups.expire_offsets_blocking(self)
    }

    /// DeleteGroups for one group: `GroupIdNotFound`, `NonEmptyGroup`, or its offsets are
    /// tombstoned and the group forgotten. BLOCKING.
    pub fn delete_group_blocking(&self, group_id: &str) -> Result<()> {
        self.groups.delete_group_blocking(self, group_id)
    }

    /// ConsumerGroupDescribe: `GroupIdNotFound` unless it is a consumer-protocol group.
    pub fn describe_consumer_group(
        &self,
        group_id: &str,
    ) -> std::result::Result<consumer::ConsumerGroupDescription, GroupError> {
        self.groups.describe_consumer_group(group_id)
    }

    /// Cluster mode: settles `group_id`'s transactional offsets whose transaction has ended,
    /// reading completions up to the end of `__consumer_offsets` as of now (see
    /// `GroupCoordinator::catch_up_txn_completions_blocking`); nothing when none is pending.
    /// OffsetFetch calls it first, so offsets a transaction committed before the fetch was
    /// sent are answered, not a pending state. BLOCKING.
    pub fn settle_txn_offsets_blocking(&self, group_id: &str) -> Result<()> {
        self.groups
            .catch_up_txn_completions_blocking(self, group_id, None)
    }

    /// Whether `group_id` has offsets pending in a transaction (so OffsetFetch asks
    /// [`Broker::settle_txn_offsets_blocking`] first). Does not block.
    pub fn has_pending_txn_offsets(&self, group_id: &str) -> bool {
        self.groups.has_pending_txn_offsets(group_id, None)
    }

    /// Whether `group_id` has an offset of `(topic, partition)` pending in an open transaction
    /// (OffsetFetch with `require_stable` answers UNSTABLE_OFFSET_COMMIT for those, KIP-447).
    pub fn has_pending_txn_offset(&self, group_id: &str, topic: &str, partition: i32) -> bool {
        self.groups
            .has_pending_txn_offset(group_id, topic, partition)
    }

    /// OffsetDelete, as Kafka answers it: removes the group's offsets of the requested
    /// partitions of every topic no member subscribes to, and returns the requested topics that
    /// were refused because a member subscribes to them (`GROUP_SUBSCRIBED_TO_TOPIC` per
    /// partition). An unknown group is [`GroupError::GroupIdNotFound`] and a classic group
    /// with members that does not use the `consumer` protocol [`GroupError::NonEmptyGroup`],
    /// both for the whole request.
    ///
    /// Consumer-protocol members subscribe by name (a regex counts as every topic); classic
    /// members' subscriptions are read from their `consumer` protocol metadata (a member whose
    /// metadata does not parse counts as subscribed to every topic). The check and the
    /// tombstones are one critical section under the group runtime lock (and the exclusive
    /// side of the offsets order, taken first as offset expiry does), so a JoinGroup or
    /// heartbeat changing subscriptions is entirely before or after it: an offset of a
    /// subscribed topic is never deleted. The lock is held across the tombstones' append;
    /// OffsetDelete is a rare admin call. BLOCKING.
    pub fn offset_delete_blocking(
        &self,
        group_id: &str,
        topics: &[(String, Vec<i32>)],
    ) -> Result<std::collections::BTreeSet<String>> {
        self.groups.offset_delete_blocking(self, group_id, topics)
    }
}

/// The topics a group's members subscribe to, as OffsetDelete sees them.
#[derive(Debug, PartialEq, Eq)]
enum Subscriptions {
    /// No members: nothing is subscribed.
    Empty,
    /// These topics.
    Topics(std::collections::BTreeSet<String>),
    /// Unknown (a regex, or metadata that does not parse): every topic.
    All,
}

impl Subscriptions {
    fn contains(&self, topic: &str) -> bool {
        match self {
            Subscriptions::Empty => false,
            Subscriptions::Topics(t) => t.contains(topic),
            Subscriptions::All => true,
        }
    }
}

/// OffsetDelete's view of `group_id`'s subscriptions, from whichever engine owns it (a group
/// known only by its offsets has none).
fn offset_delete_subscriptions(
    rt: &Runtime,
    group_id: &str,
    known_offsets: bool,
) -> Result<Subscriptions> {
    if let Some(d) = rt.consumer.describe(group_id) {
        let mut topics = std::collections::BTreeSet::new();
        for m in d.members {
            if m.subscribed_topic_regex
                .as_deref()
                .is_some_and(|r| !r.is_empty())
            {
                return Ok(Subscriptions::All);
            }
            topics.extend(m.subscribed_topic_names);
        }
        return Ok(if topics.is_empty() {
            Subscriptions::Empty
        } else {
            Subscriptions::Topics(topics)
        });
    }
    let Some(d) = rt.engine.describe(group_id) else {
        return if known_offsets {
            Ok(Subscriptions::Empty)
        } else {
            Err(Error::Group(GroupError::GroupIdNotFound))
        };
    };
    if d.members.is_empty() || d.state == GroupState::Empty {
        return Ok(Subscriptions::Empty);
    }
    if d.protocol_type != "consumer" {
        return Err(Error::Group(GroupError::NonEmptyGroup));
    }
    let mut topics = std::collections::BTreeSet::new();
    for m in &d.members {
        match offsets::subscribed_topics(&m.metadata) {
            Some(t) => topics.extend(t),
            None => return Ok(Subscriptions::All),
        }
    }
    Ok(Subscriptions::Topics(topics))
}

#[cfg(test)]
mod persistence_tests {
    use super::*;
    use crate::BrokerConfig;

    #[test]
    fn offsets_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let commit = |p: i32, o: i64| OffsetCommit {
            topic: "t".into(),
            partition: p,
            offset: o,
            leader_epoch: 0,
            metadata: Some("m".into()),
        };
        {
            let broker = Broker::open(BrokerConfig::new(dir.path())).unwrap();
            broker
                .create_topic_blocking(CreateTopic {
                    name: "t".into(),
                    partitions: Some(2),
                    ..CreateTopic::default()
                })
                .unwrap();
            let r = broker
                .commit_offsets_blocking("g", "", -1, None, vec![commit(0, 5), commit(1, 7)])
                .unwrap();
            assert!(r.iter().all(Result::is_ok));
            broker
                .commit_offsets_blocking("g", "", -1, None, vec![commit(0, 9)])
                .unwrap();
            let r = broker
                .commit_offsets_blocking("g2", "", -1, None, vec![commit(0, 1)])
                .unwrap();
            assert!(r[0].is_ok());
            broker.delete_group_blocking("g2").unwrap();
            let bad = broker
                .commit_offsets_blocking("g", "", -1, None, vec![commit(5, 1)])
                .unwrap();
            assert!(matches!(bad[0], Err(Error::UnknownPartition { .. })));
            broker.shutdown_blocking().unwrap();
        }
        let broker = Broker::open(BrokerConfig::new(dir.path())).unwrap();
        let got = broker.groups().fetch_offsets("g", None);
        let offsets: Vec<(i32, i64)> = got
            .iter()
            .map(|((_, p), o)| (*p, o.as_ref().unwrap().offset))
            .collect();
        assert_eq!(offsets, [(0, 9), (1, 7)]);
        assert_eq!(got[0].1.as_ref().unwrap().metadata.as_deref(), Some("m"));
        assert!(broker.groups().fetch_offsets("g2", None).is_empty());
        assert!(matches!(
            broker.delete_group_blocking("g2"),
            Err(Error::Group(GroupError::GroupIdNotFound))
        ));
    }
}

#[cfg(test)]
mod concurrent_commit_tests {
    use super::*;
    use crate::BrokerConfig;

    /// Concurrent commits append without a lock between them; the cache must still end with
    /// what the log says last, which is what a restart replays.
    #[test]
    fn concurrent_commits_leave_the_cache_equal_to_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let last = {
            let broker = Arc::new(Broker::open(BrokerConfig::new(dir.path())).unwrap());
            broker
                .create_topic_blocking(CreateTopic {
                    name: "t".into(),
                    partitions: Some(2),
                    ..CreateTopic::default()
                })
                .unwrap();
            let threads: Vec<_> = (0..8i64)
                .map(|t| {
                    let broker = Arc::clone(&broker);
                    std::thread::spawn(move || {
                        for i in 0..40i64 {
                            let c = OffsetCommit {
                                topic: "t".into(),
                                partition: (i % 2) as i32,
                                offset: t * 1000 + i,
                                leader_epoch: -1,
                                metadata: None,
                            };
                            let r = broker
                                .commit_offsets_blocking("g", "", -1, None, vec![c])
                                .unwrap();
                            assert!(r[0].is_ok());
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            let last = broker.groups().fetch_offsets("g", None);
            broker.shutdown_blocking().unwrap();
            last
        };
        let broker = Broker::open(BrokerConfig::new(dir.path())).unwrap();
        assert_eq!(broker.groups().fetch_offsets("g", None), last);
        assert_eq!(last.len(), 2);
    }
}

#[cfg(test)]
mod state_tests {
    use super::*;
    use crate::BrokerConfig;

    fn config(dir: &std::path::Path) -> BrokerConfig {
        let mut c = BrokerConfig::new(dir);
        c.group.initial_rebalance_delay_ms = 0;
        c
    }

    fn join_848(group: &str, member: &str) -> consumer::Heartbeat {
        consumer::Heartbeat {
            group_id: group.into(),
            member_id: member.into(),
            member_epoch: 0,
            rebalance_timeout_ms: 10_000,
            subscribed_topic_names: Some(vec!["t".into()]),
            ..consumer::Heartbeat::default()
        }
    }

    #[tokio::test]
    async fn classic_and_consumer_group_state_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (member_id, generation) = {
            let broker = Broker::open(config(dir.path())).unwrap();
            broker
                .create_topic_blocking(CreateTopic {
                    name: "t".into(),
                    partitions: Some(2),
                    ..CreateTopic::default()
                })
                .unwrap();
            let now = broker.clock().now_ms();
            let joined = broker
                .groups()
                .join(
                    JoinRequest {
                        group_id: "classic".into(),
                        session_timeout_ms: 10_000,
                        rebalance_timeout_ms: 10_000,
                        protocol_type: "consumer".into(),
                        protocols: vec![("range".into(), Bytes::from_static(b"sub"))],
                        ..JoinRequest::default()
                    },
                    now,
                )
                .await
                .unwrap();
            let synced = broker
                .groups()
                .sync(
                    "classic",
                    &joined.member_id,
                    joined.generation_id,
                    None,
                    vec![(joined.member_id.clone(), Bytes::from_static(b"assigned"))],
                    now,
                )
                .await
                .unwrap();
            assert_eq!(&synced.assignment[..], b"assigned");
            let hb = broker
                .consumer_group_heartbeat(join_848("kip848", "m"))
                .unwrap();
            assert_eq!(hb.member_epoch, 1);
            // A group that is deleted must stay deleted.
            broker
                .consumer_group_heartbeat(join_848("gone", "x"))
                .unwrap();
            broker.write_group_states_blocking().unwrap();
            broker
                .consumer_group_heartbeat(consumer::Heartbeat {
                    group_id: "gone".into(),
                    member_id: "x".into(),
                    member_epoch: consumer::LEAVE_EPOCH,
                    ..consumer::Heartbeat::default()
                })
                .unwrap();
            broker.delete_group_blocking("gone").unwrap();
            broker.shutdown_blocking().unwrap();
            (joined.member_id, joined.generation_id)
        };
        let broker = Broker::open(config(dir.path())).unwrap();
        let now = broker.clock().now_ms();
        // The classic member carries on: same generation, heartbeats accepted, assignment kept.
        let d = broker.groups().describe("classic").unwrap();
        assert_eq!(d.state, GroupState::Stable);
        assert_eq!(d.generation, generation);
        assert_eq!(&d.members[0].assignment[..], b"assigned");
        assert_eq!(
            broker
                .groups()
                .heartbeat("classic", &member_id, generation, None, now),
            Ok(())
        );
        // The consumer-protocol member too: its epoch and partitions are still valid.
        let c = broker.describe_consumer_group("kip848").unwrap();
        assert_eq!(c.members[0].member_epoch, 1);
        let hb = broker
            .consumer_group_heartbeat(consumer::Heartbeat {
                group_id: "kip848".into(),
                member_id: "m".into(),
                member_epoch: 1,
                rebalance_timeout_ms: -1,
                owned: Some(c.members[0].assignment.clone()),
                ..consumer::Heartbeat::default()
            })
            .unwrap();
        assert_eq!(hb.member_epoch, 1);
        assert_eq!(hb.assignment, None);
        assert!(broker.describe_consumer_group("gone").is_err());
        assert!(broker.groups().describe("gone").is_none());
    }
}

#[cfg(test)]
mod expiry_tests {
    use super::*;
    use crate::BrokerConfig;
    use strom_log::{Clock, ManualClock};

    const RETENTION: i64 = 10_000;

    pub(super) fn commit(topic: &str, partition: i32, offset: i64) -> OffsetCommit {
        OffsetCommit {
            topic: topic.into(),
            partition,
            offset,
            leader_epoch: -1,
            metadata: None,
        }
    }

    /// A `consumer` protocol subscription (version 1) to `topics`.
    pub(super) fn subscription(topics: &[&str]) -> Bytes {
        use bytes::BufMut;
        let mut b = Vec::new();
        b.put_i16(1);
        b.put_i32(topics.len() as i32);
        for t in topics {
            b.put_u16(t.len() as u16);
            b.put_slice(t.as_bytes());
        }
        b.put_i32(-1);
        b.put_i32(0);
        Bytes::from(b)
    }

    fn open(dir: &std::path::Path, clock: &Arc<ManualClock>) -> Broker {
        let mut c = BrokerConfig::new(dir);
        c.group.initial_rebalance_delay_ms = 0;
        c.group.offsets_retention_ms = RETENTION;
        Broker::open_with_clock(c, clock.clone()).unwrap()
    }

    /// Offset expiry with an injected clock: standalone offsets by commit time, an empty
    /// group's from when it emptied, a member group's unsubscribed topics (KIP-496); expired
    /// offsets are tombstoned, so they stay gone after a restart.
    #[tokio::test]
    async fn offsets_expire_by_kafkas_rules_without_sleeping() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(1_000_000));
        let broker = open(dir.path(), &clock);
        for name in ["t", "u"] {
            broker
                .create_topic_blocking(CreateTopic {
                    name: name.into(),
                    partitions: Some(2),
                    ..CreateTopic::default()
                })
                .unwrap();
        }
        let groups = broker.groups();
        // A standalone committer.
        broker
            .commit_offsets_blocking("solo", "", -1, None, vec![commit("t", 0, 5)])
            .unwrap();
        // A classic group with one member that commits.
        let now = clock.now_ms();
        let joined = groups
            .join(
                JoinRequest {
                    group_id: "classic".into(),
                    session_timeout_ms: 600_000,
                    rebalance_timeout_ms: 600_000,
                    protocol_type: "consumer".into(),
                    protocols: vec![("range".into(), subscription(&["t"]))],
                    ..JoinRequest::default()
                },
                now,
            )
            .await
            .unwrap();
        groups
            .sync(
                "classic",
                &joined.member_id,
                joined.generation_id,
                None,
                vec![(joined.member_id.clone(), Bytes::new())],
                now,
            )
            .await
            .unwrap();
        let r = broker
            .commit_offsets_blocking(
                "classic",
                &joined.member_id,
                joined.generation_id,
                None,
                vec![commit("t", 0, 7), commit("u", 1, 8)],
            )
            .unwrap();
        assert!(r.iter().all(Result::is_ok));
        // A consumer-protocol group subscribed to "t" with offsets of "t" and of "u".
        let hb = broker
            .consumer_group_heartbeat(consumer::Heartbeat {
                group_id: "kip848".into(),
                member_id: "m".into(),
                member_epoch: 0,
                rebalance_timeout_ms: 600_000,
                subscribed_topic_names: Some(vec!["t".into()]),
                ..consumer::Heartbeat::default()
            })
            .unwrap();
        let r = broker
            .commit_offsets_blocking(
                "kip848",
                "m",
                hb.member_epoch,
                None,
                vec![commit("t", 1, 3), commit("u", 0, 4)],
            )
            .unwrap();
        assert!(r.iter().all(Result::is_ok));

        clock.advance(RETENTION - 1);
        assert_eq!(broker.expire_offsets_blocking().unwrap(), 0);
        // A stable classic `consumer` group subscribed to "t" (KIP-496): its "u" offset
        // expires by commit time while the member is there (one ms later, with the others).
        clock.advance(1);
        assert_eq!(broker.expire_offsets_blocking().unwrap(), 3);
        assert_eq!(groups.fetch_offsets("classic", None).len(), 1);
        // Everything else is back in step with the checks below.
        broker
            .commit_offsets_blocking("solo", "", -1, None, vec![commit("t", 0, 5)])
            .unwrap();
        broker
            .commit_offsets_blocking(
                "kip848",
                "m",
                hb.member_epoch,
                None,
                vec![commit("u", 0, 4)],
            )
            .unwrap();
        clock.advance(RETENTION - 1);
        assert_eq!(broker.expire_offsets_blocking().unwrap(), 0);
        // The member leaves just before the standalone offset expires.
        let left = groups.leave(
            "classic",
            &[(joined.member_id.clone(), None)],
            clock.now_ms(),
        );
        assert!(left[0].is_ok());
        clock.advance(1);
        // Standalone by commit time; KIP-496: kip848's "u" (not subscribed), not its "t";
        // classic emptied one millisecond ago, so it keeps its offsets.
        assert_eq!(broker.expire_offsets_blocking().unwrap(), 2);
        assert_eq!(groups.fetch_offsets("classic", None).len(), 1);
        assert!(groups.fetch_offsets("solo", None).is_empty());
        let kept: Vec<_> = groups
            .fetch_offsets("kip848", None)
            .into_iter()
            .map(|(tp, _)| tp)
            .collect();
        assert_eq!(kept, [("t".to_owned(), 1)]);
        assert_eq!(groups.fetch_offsets("classic", None).len(), 1);

        // A full retention after it emptied, the classic group's offsets expire and the group
        // is forgotten.
        clock.advance(RETENTION - 2);
        assert_eq!(broker.expire_offsets_blocking().unwrap(), 0);
        clock.advance(1);
        assert_eq!(broker.expire_offsets_blocking().unwrap(), 1);
        assert!(groups.fetch_offsets("classic", None).is_empty());
        assert!(groups.describe("classic").is_none());
        broker.shutdown_blocking().unwrap();
        drop(broker);

        let broker = open(dir.path(), &clock);
        assert!(broker.groups().fetch_offsets("solo", None).is_empty());
        assert!(broker.groups().fetch_offsets("classic", None).is_empty());
        assert!(broker.groups().describe("classic").is_none());
        assert_eq!(broker.groups().fetch_offsets("kip848", None).len(), 1);
    }
}

#[cfg(test)]
mod checkpoint_tests {
    use super::*;
    use crate::BrokerConfig;

    fn commit(partition: i32, offset: i64) -> OffsetCommit {
        OffsetCommit {
            topic: "t".into(),
            partition,
            offset,
            leader_epoch: -1,
            metadata: Some(format!("m{offset}")),
        }
    }

    type Fetched = Vec<((String, i32), Option<CommittedOffset>)>;

    fn all(broker: &Broker) -> Vec<(String, Fetched)> {
        broker
            .groups()
            .list()
            .into_iter()
            .map(|g| {
                let offsets = broker.groups().fetch_offsets(&g.group_id, None);
                (g.group_id, offsets)
            })
            .collect()
    }

    /// The checkpoint of a clean shutdown plus the tail written after it (a later run killed
    /// without one) reopen to exactly what a full replay gives; a damaged or foreign
    /// checkpoint is ignored.
    #[test]
    fn checkpoint_plus_tail_equals_full_replay() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoint = dir.path().join("metadata").join(offsets::CHECKPOINT_FILE);
        {
            let broker = Broker::open(BrokerConfig::new(dir.path())).unwrap();
            broker
                .create_topic_blocking(CreateTopic {
                    name: "t".into(),
                    partitions: Some(4),
                    ..CreateTopic::default()
                })
                .unwrap();
            for i in 0..50 {
                let g = format!("g{}", i % 7);
                broker
                    .commit_offsets_blocking(&g, "", -1, None, vec![commit(i % 4, i as i64)])
                    .unwrap();
            }
            broker.delete_group_blocking("g3").unwrap();
            broker.shutdown_blocking().unwrap();
        }
        assert!(checkpoint.exists());
        let tail_end = {
            // Loads the checkpoint, then writes a tail and "crashes" (no shutdown).
            let broker = Broker::open(BrokerConfig::new(dir.path())).unwrap();
            for i in 50..80 {
                let g = format!("g{}", i % 5);
                broker
                    .commit_offsets_blocking(&g, "", -1, None, vec![commit(i % 4, i as i64)])
                    .unwrap();
            }
            let refused = broker
                .offset_delete_blocking("g1", &[("t".into(), vec![1])])
                .unwrap();
            assert!(refused.is_empty());
            all(&broker)
        };
        let with_checkpoint = all(&Broker::open(BrokerConfig::new(dir.path())).unwrap());
        assert_eq!(with_checkpoint, tail_end);
        let saved = std::fs::read(&checkpoint).unwrap();
        std::fs::remove_file(&checkpoint).unwrap();
        let full = all(&Broker::open(BrokerConfig::new(dir.path())).unwrap());
        assert_eq!(full, tail_end);
        // Damaged: ignored.
        let mut damaged = saved.clone();
        let last = damaged.len() - 1;
        damaged[last] ^= 1;
        std::fs::write(&checkpoint, &damaged).unwrap();
        assert_eq!(
            all(&Broker::open(BrokerConfig::new(dir.path())).unwrap()),
            tail_end
        );
        // Beyond the log (it would describe records the log does not have): ignored.
        let mut c = offsets::decode_checkpoint(&saved).unwrap();
        c.end = 1 << 40;
        c.records.clear();
        std::fs::write(&checkpoint, offsets::encode_checkpoint(&c)).unwrap();
        assert_eq!(
            all(&Broker::open(BrokerConfig::new(dir.path())).unwrap()),
            tail_end
        );
        // Another topic's (the internal topic was recreated): ignored.
        let mut c = offsets::decode_checkpoint(&saved).unwrap();
        c.topic_id = uuid::Uuid::new_v4();
        c.records.clear();
        std::fs::write(&checkpoint, offsets::encode_checkpoint(&c)).unwrap();
        assert_eq!(
            all(&Broker::open(BrokerConfig::new(dir.path())).unwrap()),
            tail_end
        );
    }
}

/// The coordinator alone, on a host that is not a broker: it reaches the rest of the broker
/// only through [`GroupHost`].
#[cfg(test)]
mod narrow_host {
    use super::*;
    use crate::storage::local::{LocalBackend, open_test_partition as partition};

    #[derive(Debug)]
    struct Host {
        backend: LocalBackend,
        data: Arc<Partition>,
        offsets: Mutex<Option<Arc<Partition>>>,
    }

    impl Host {
        /// A host over a local backend in `dir` with one data partition, `data`.
        fn open(dir: &std::path::Path) -> Host {
            let backend = LocalBackend::open(dir, Arc::new(crate::SystemClock)).unwrap();
            Host {
                data: partition(&backend, "data"),
                backend,
                offsets: Mutex::new(None),
            }
        }
    }

    impl GroupHost for Host {
        fn now_ms(&self) -> i64 {
            5_000
        }
        fn partition(&self, topic: &str, index: i32) -> Result<Arc<Partition>> {
            if topic == "data" && index == 0 {
                Ok(Arc::clone(&self.data))
            } else {
                Err(Error::UnknownPartition {
                    topic: topic.to_owned(),
                    partition: index,
                })
            }
        }
        fn offsets_partition(&self) -> Result<Arc<Partition>> {
            let mut slot = self.offsets.lock().unwrap();
            Ok(Arc::clone(slot.get_or_insert_with(|| {
                partition(&self.backend, OFFSETS_TOPIC)
            })))
        }
        fn offsets_topic_id(&self) -> Result<uuid::Uuid> {
            Ok(uuid::Uuid::nil())
        }
        fn topic_infos(&self) -> consumer::Topics {
            consumer::Topics::default()
        }
    }

    use crate::storage::{ShardLease, coordinator_shard};

    /// Coordinator leases the test hands out and takes away.
    #[derive(Debug, Default)]
    struct Leases {
        held: Mutex<Vec<ShardLease>>,
        given_up: Mutex<Vec<ShardLease>>,
    }

    impl CoordinatorLeases for Leases {
        fn held(&self) -> Vec<ShardLease> {
            self.held.lock().unwrap().clone()
        }
        fn coordinator(&self, _: CoordinatorShard) -> Option<i32> {
            None
        }
        fn give_up(&self, lease: ShardLease) {
            self.held.lock().unwrap().retain(|l| *l != lease);
            self.given_up.lock().unwrap().push(lease);
        }
    }

    fn commit(topic: &str, offset: i64) -> OffsetCommit {
        OffsetCommit {
            topic: topic.into(),
            partition: 0,
            offset,
            leader_epoch: -1,
            metadata: None,
        }
    }

    #[test]
    fn commits_go_to_the_hosts_offsets_partition_and_replay() {
        let dir = tempfile::tempdir().unwrap();
        let host = Host::open(dir.path());
        let checkpoint = dir.path().join("checkpoint");
        let groups =
            GroupCoordinator::open(GroupConfig::default(), None, checkpoint.clone(), 0, None)
                .unwrap();
        let results = groups
            .commit_offsets_blocking(
                &host,
                "g",
                "",
                -1,
                None,
                vec![commit("data", 7), commit("gone", 1)],
            )
            .unwrap();
        assert!(results[0].is_ok());
        assert!(matches!(results[1], Err(Error::UnknownPartition { .. })));
        let fetched = groups.fetch_offsets("g", None);
        assert_eq!(fetched.len(), 1);
        let committed = fetched[0].1.clone().unwrap();
        assert_eq!((committed.offset, committed.commit_timestamp), (7, 5_000));

        // One record went to the host's offsets partition; a coordinator replayed from it
        // knows the commit.
        let offsets = host.offsets_partition().unwrap();
        assert_eq!(offsets.high_watermark(), 1);
        let replayed = GroupCoordinator::open(
            GroupConfig::default(),
            Some((uuid::Uuid::nil(), offsets)),
            checkpoint,
            0,
            None,
        )
        .unwrap();
        let fetched = replayed.fetch_offsets("g", Some(&[("data".to_owned(), 0)]));
        assert_eq!(fetched[0].1.as_ref().map(|c| c.offset), Some(7));

        // Deleting the offsets of a group without members tombstones them.
        let refused = groups
            .offset_delete_blocking(&host, "g", &[("data".to_owned(), vec![0])])
            .unwrap();
        assert!(refused.is_empty());
        assert!(groups.fetch_offsets("g", None).is_empty());
    }

    /// Cluster-mode coordinator authority over one shared `__consumer_offsets` (the local
    /// backend stands in for the cluster store: both refuse an idempotent producer's older
    /// epoch): two coordinators hand a shard over, and the stale one's writes are fenced.
    #[test]
    fn a_shard_changes_hands_and_the_former_holder_is_fenced() {
        let dir = tempfile::tempdir().unwrap();
        let host = Host::open(dir.path());
        let open = |leases: &Arc<Leases>| {
            let authority: Arc<dyn CoordinatorLeases> = Arc::clone(leases) as _;
            GroupCoordinator::open(
                GroupConfig::default(),
                None,
                dir.path().join("unused-checkpoint"),
                0,
                Some(authority),
            )
            .unwrap()
        };
        let (leases_a, leases_b) = (Arc::new(Leases::default()), Arc::new(Leases::default()));
        let (a, b) = (open(&leases_a), open(&leases_b));
        let shard = coordinator_shard("g");
        let at = |epoch| ShardLease { shard, epoch };
        let commit_g = |c: &GroupCoordinator, offset| {
            c.commit_offsets_blocking(&host, "g", "", -1, None, vec![commit("data", offset)])
        };
        let offset_of = |c: &GroupCoordinator| {
            c.fetch_offsets("g", None)
                .first()
                .and_then(|(_, o)| o.as_ref().map(|o| o.offset))
        };
        let not_coordinator =
            |r: Result<Vec<Result<()>>>| matches!(r, Err(Error::Group(GroupError::NotCoordinator)));

        // No lease: refused, nothing written.
        assert!(not_coordinator(commit_g(&a, 1)));
        assert_eq!(a.check_coordinator("g"), Err(GroupError::NotCoordinator));
        // Held but not taken over yet: still refused.
        leases_a.held.lock().unwrap().push(at(1));
        assert!(not_coordinator(commit_g(&a, 1)));
        a.sync_leases_blocking(&host).unwrap();
        assert_eq!(a.check_coordinator("g"), Ok(()));
        assert!(commit_g(&a, 7).unwrap().iter().all(Result::is_ok));
        assert_eq!(a.owned_shards(), vec![at(1)]);
        // A group of another shard is not A's.
        let other = (0..)
            .map(|i| format!("other-{i}"))
            .find(|g| coordinator_shard(g) != shard)
            .unwrap();
        assert_eq!(a.check_coordinator(&other), Err(GroupError::NotCoordinator));

        // B takes the shard at epoch 2 while A still believes it holds epoch 1 (a stalled
        // holder): B's fence comes first, then B reads A's commit.
        leases_b.held.lock().unwrap().push(at(2));
        b.sync_leases_blocking(&host).unwrap();
        assert_eq!(offset_of(&b), Some(7));
        // A's next write is refused by the store and A gives the shard up.
        let stale = commit_g(&a, 9).unwrap();
        assert!(stale.iter().all(Result::is_err), "{stale:?}");
        assert_eq!(*leases_a.given_up.lock().unwrap(), vec![at(1)]);
        assert_eq!(a.check_coordinator("g"), Err(GroupError::NotCoordinator));
        assert!(commit_g(&b, 11).unwrap().iter().all(Result::is_ok));

        // A takes it back at epoch 3 and sees B's commit, not its own refused one.
        leases_b.held.lock().unwrap().clear();
        b.sync_leases_blocking(&host).unwrap();
        assert_eq!(b.check_coordinator("g"), Err(GroupError::NotCoordinator));
        leases_a.held.lock().unwrap().push(at(3));
        a.sync_leases_blocking(&host).unwrap();
        assert_eq!(offset_of(&a), Some(11));

        // The fences are invisible to a plain replay of the topic.
        let replayed = GroupCoordinator::open(
            GroupConfig::default(),
            Some((uuid::Uuid::nil(), host.offsets_partition().unwrap())),
            dir.path().join("unused-checkpoint-2"),
            0,
            None,
        )
        .unwrap();
        assert_eq!(offset_of(&replayed), Some(11));
        assert_eq!(replayed.list().len(), 1);
    }

    /// Cluster mode: a producer's transaction ends (its completion is in `__consumer_offsets`)
    /// before this coordinator's tick read it, and the producer's next transaction commits
    /// offsets of the same partition. The completion is applied first and to the first
    /// transaction's offsets only: the second's stay pending (not committed by the first's
    /// completion), and a fetch that catches up sees the first's offsets committed.
    #[test]
    fn a_completion_not_yet_followed_settles_its_own_transaction_not_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let host = Host::open(dir.path());
        let leases = Arc::new(Leases::default());
        let authority: Arc<dyn CoordinatorLeases> = Arc::clone(&leases) as _;
        let groups = GroupCoordinator::open(
            GroupConfig::default(),
            None,
            dir.path().join("unused-checkpoint"),
            0,
            Some(authority),
        )
        .unwrap();
        leases.held.lock().unwrap().push(ShardLease {
            shard: coordinator_shard("g"),
            epoch: 1,
        });
        groups.sync_leases_blocking(&host).unwrap();
        let pid = 42;
        let txn_commit = |offset| {
            groups.write_txn_offsets_blocking(
                &host,
                crate::txn::TxnOffsets {
                    producer_id: pid,
                    group_id: "g",
                    member_id: "",
                    generation: -1,
                    instance_id: None,
                    commits: vec![commit("data", offset)],
                },
            )
        };
        let committed = || {
            groups
                .fetch_offsets("g", None)
                .first()
                .and_then(|(_, o)| o.as_ref().map(|o| o.offset))
        };
        // The transaction coordinator's completion record of a commit (not followed here).
        let publish_commit = || {
            groups
                .publish_txn_completion_blocking(
                    &host,
                    &crate::txn::TxnCompletion {
                        producer_id: pid,
                        groups: vec!["g".to_owned()],
                        commit: true,
                        coordinator_epoch: 1,
                    },
                )
                .unwrap();
        };
        assert!(txn_commit(5).unwrap().iter().all(Result::is_ok));
        assert!(groups.has_pending_txn_offset("g", "data", 0));
        publish_commit();
        // Not followed yet: still pending, nothing committed.
        assert_eq!(committed(), None);
        // The next transaction's offsets: the completion is applied first.
        assert!(txn_commit(9).unwrap().iter().all(Result::is_ok));
        assert_eq!(committed(), Some(5));
        assert!(groups.has_pending_txn_offset("g", "data", 0));
        // The tick reads nothing more for it: 9 stays pending until its own completion.
        groups.follow_txn_completions_blocking(&host).unwrap();
        assert_eq!(committed(), Some(5));
        assert!(groups.has_pending_txn_offset("g", "data", 0));
        publish_commit();
        // A fetch's catch-up settles it without waiting for the tick.
        groups
            .catch_up_txn_completions_blocking(&host, "g", None)
            .unwrap();
        assert_eq!(committed(), Some(9));
        assert!(!groups.has_pending_txn_offset("g", "data", 0));
    }

    /// A JoinGroup and a SyncGroup waiting in a shard this broker then loses are answered
    /// NOT_COORDINATOR by the next tick, not left to the client's timeout; the shard's groups
    /// leave memory, and a consumer-protocol heartbeat is refused at once too.
    #[test]
    fn requests_waiting_in_a_lost_shard_are_answered_not_coordinator() {
        let dir = tempfile::tempdir().unwrap();
        let host = Host::open(dir.path());
        let leases = Arc::new(Leases::default());
        let authority: Arc<dyn CoordinatorLeases> = Arc::clone(&leases) as _;
        let config = GroupConfig {
            initial_rebalance_delay_ms: 0,
            ..GroupConfig::default()
        };
        let groups = Arc::new(
            GroupCoordinator::open(
                config,
                None,
                dir.path().join("unused-checkpoint"),
                0,
                Some(authority),
            )
            .unwrap(),
        );
        // Two groups of one shard: one with a sync waiting, one with a join waiting.
        let syncing = "syncing".to_owned();
        let shard = coordinator_shard(&syncing);
        let joining = (0..)
            .map(|i| format!("joining-{i}"))
            .find(|g| coordinator_shard(g) == shard)
            .unwrap();
        leases
            .held
            .lock()
            .unwrap()
            .push(ShardLease { shard, epoch: 1 });
        groups.sync_leases_blocking(&host).unwrap();

        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let request = |group: &str, member_id: &str| JoinRequest {
            group_id: group.to_owned(),
            member_id: member_id.to_owned(),
            session_timeout_ms: 600_000,
            rebalance_timeout_ms: 600_000,
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::new())],
            ..JoinRequest::default()
        };
        let join = |group: &str, member_id: &str| {
            let groups = Arc::clone(&groups);
            let req = request(group, member_id);
            rt.spawn(async move { groups.join(req, 5_000).await })
        };
        let wait_for = |what: &str, done: &dyn Fn() -> bool| {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while !done() {
                assert!(std::time::Instant::now() < deadline, "{what}");
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        };
        let state = |group: &str| groups.describe(group).map(|d| d.state);

        // `syncing`: two members joined at generation 2; the follower's sync waits for the
        // leader's.
        let first = rt.block_on(join(&syncing, "")).unwrap().unwrap();
        let second = join(&syncing, "");
        wait_for("second member waits", &|| {
            state(&syncing) == Some(GroupState::PreparingRebalance)
        });
        let leader = rt
            .block_on(join(&syncing, &first.member_id))
            .unwrap()
            .unwrap();
        let follower = rt.block_on(second).unwrap().unwrap();
        assert_eq!(leader.generation_id, follower.generation_id);
        assert_ne!(leader.member_id, follower.member_id);
        let waiting_sync = {
            let groups = Arc::clone(&groups);
            let (group, member, generation) = (
                syncing.clone(),
                follower.member_id.clone(),
                follower.generation_id,
            );
            rt.spawn(async move {
                groups
                    .sync(&group, &member, generation, None, Vec::new(), 5_000)
                    .await
            })
        };
        // `joining`: the second member's join waits for the first to rejoin.
        rt.block_on(join(&joining, "")).unwrap().unwrap();
        let waiting_join = join(&joining, "");
        wait_for("joiner waits", &|| {
            state(&joining) == Some(GroupState::PreparingRebalance)
        });
        // Give the sync time to register; it must still be waiting.
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!waiting_sync.is_finished() && !waiting_join.is_finished());

        // The lease lapses: the next tick answers both.
        leases.held.lock().unwrap().clear();
        groups.tick(5_000);
        let bound = std::time::Duration::from_secs(10);
        let synced = rt
            .block_on(async { tokio::time::timeout(bound, waiting_sync).await })
            .expect("sync answered")
            .unwrap();
        assert_eq!(synced.err(), Some(GroupError::NotCoordinator));
        let joined = rt
            .block_on(async { tokio::time::timeout(bound, waiting_join).await })
            .expect("join answered")
            .unwrap();
        assert!(
            matches!(joined, Err((GroupError::NotCoordinator, _))),
            "{joined:?}"
        );
        // The lost shard's groups left memory; new requests are refused at once.
        assert_eq!(state(&syncing), None);
        assert_eq!(state(&joining), None);
        let again = rt.block_on(groups.join(request(&joining, ""), 5_000));
        assert!(matches!(again, Err((GroupError::NotCoordinator, _))));
        let heartbeat = groups.consumer_group_heartbeat(
            &host,
            consumer::Heartbeat {
                group_id: joining.clone(),
                member_epoch: 0,
                ..consumer::Heartbeat::default()
            },
        );
        assert_eq!(heartbeat.err(), Some(GroupError::NotCoordinator));
    }
}

#[cfg(test)]
mod offset_delete_tests {
    use super::*;
    use crate::BrokerConfig;

    use super::expiry_tests::{commit, subscription};

    /// Joins one classic member to `group` (joined and synced).
    async fn join_classic(broker: &Broker, group: &str, protocol_type: &str, metadata: Bytes) {
        let now = broker.clock().now_ms();
        let joined = broker
            .groups()
            .join(
                JoinRequest {
                    group_id: group.into(),
                    session_timeout_ms: 600_000,
                    rebalance_timeout_ms: 600_000,
                    protocol_type: protocol_type.into(),
                    protocols: vec![("range".into(), metadata)],
                    ..JoinRequest::default()
                },
                now,
            )
            .await
            .unwrap();
        broker
            .groups()
            .sync(
                group,
                &joined.member_id,
                joined.generation_id,
                None,
                vec![(joined.member_id.clone(), Bytes::new())],
                now,
            )
            .await
            .unwrap();
    }

    fn offset(broker: &Broker, group: &str, topic: &str, partition: i32) -> Option<i64> {
        broker
            .groups()
            .fetch_offsets(group, Some(&[(topic.to_owned(), partition)]))
            .pop()
            .and_then(|(_, o)| o)
            .map(|o| o.offset)
    }

    fn set(topics: &[&str]) -> std::collections::BTreeSet<String> {
        topics.iter().map(|t| (*t).to_owned()).collect()
    }

    /// OffsetDelete decides "subscribed?" in the broker, from the group engines, in the same
    /// critical section as the delete: subscribed topics are refused per topic, the others'
    /// offsets deleted; an unknown group or a non-consumer group with members fails whole.
    #[tokio::test]
    async fn offset_delete_refuses_subscribed_topics_and_deletes_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = BrokerConfig::new(dir.path());
        config.group.initial_rebalance_delay_ms = 0;
        let broker = Broker::open(config).unwrap();
        for name in ["t", "u"] {
            broker
                .create_topic_blocking(CreateTopic {
                    name: name.into(),
                    partitions: Some(2),
                    ..CreateTopic::default()
                })
                .unwrap();
        }
        let both = |p: i32| vec![("t".to_owned(), vec![p]), ("u".to_owned(), vec![p])];

        // Offsets only (a standalone committer): nothing is subscribed.
        broker
            .commit_offsets_blocking("solo", "", -1, None, vec![commit("t", 0, 5)])
            .unwrap();
        let refused = broker
            .offset_delete_blocking("solo", &[("t".into(), vec![0])])
            .unwrap();
        assert!(refused.is_empty());
        assert_eq!(offset(&broker, "solo", "t", 0), None);

        // A classic `consumer` group subscribed to "t".
        broker
            .commit_offsets_blocking(
                "classic",
                "",
                -1,
                None,
                vec![commit("t", 0, 7), commit("u", 0, 8)],
            )
            .unwrap();
        join_classic(&broker, "classic", "consumer", subscription(&["t"])).await;
        let refused = broker.offset_delete_blocking("classic", &both(0)).unwrap();
        assert_eq!(refused, set(&["t"]));
        assert_eq!(offset(&broker, "classic", "t", 0), Some(7));
        assert_eq!(offset(&broker, "classic", "u", 0), None);

        // Subscriptions that do not parse count as every topic.
        join_classic(&broker, "opaque", "consumer", Bytes::from_static(b"?")).await;
        let refused = broker.offset_delete_blocking("opaque", &both(1)).unwrap();
        assert_eq!(refused, set(&["t", "u"]));

        // A group with members of another protocol type fails whole.
        join_classic(&broker, "connect", "connect", Bytes::new()).await;
        assert!(matches!(
            broker.offset_delete_blocking("connect", &both(0)),
            Err(Error::Group(GroupError::NonEmptyGroup))
        ));

        // Consumer-protocol groups: by name, and by regex (every topic).
        for (group, names, regex, want) in [
            ("names", Some(vec!["u".to_owned()]), None, set(&["u"])),
            ("regex", None, Some("t.*".to_owned()), set(&["t", "u"])),
        ] {
            broker
                .consumer_group_heartbeat(consumer::Heartbeat {
                    group_id: group.into(),
                    member_id: "m".into(),
                    member_epoch: 0,
                    rebalance_timeout_ms: 600_000,
                    subscribed_topic_names: names,
                    subscribed_topic_regex: regex,
                    ..consumer::Heartbeat::default()
                })
                .unwrap();
            assert_eq!(
                broker.offset_delete_blocking(group, &both(0)).unwrap(),
                want
            );
        }

        assert!(matches!(
            broker.offset_delete_blocking("nobody", &both(0)),
            Err(Error::Group(GroupError::GroupIdNotFound))
        ));
    }
}
