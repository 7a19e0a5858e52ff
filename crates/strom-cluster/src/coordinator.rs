//! Coordinator leases: which broker coordinates which shard of consumer groups, and which
//! shard of transactional ids (`strom_broker::storage::CoordinatorLeases`).
//!
//! Group ids and transactional ids hash to `COORDINATOR_SHARDS` shards (16) each; shard `n`
//! is the lease `group-coordinator/NN` or `txn-coordinator/NN` in `strom_leases` (see
//! [`crate::lease`], [`CoordinatorKind`]). Per shard rather than per id so that the number of
//! leases to renew stays fixed however many groups and ids exist (Kafka does the same with the
//! partitions of `__consumer_offsets` and `__transaction_state`). Each kind has its own
//! keeper (two per broker): their epochs, hand-overs and give-ups are independent, so a failed
//! transaction-state write never costs the groups of the same shard number their coordinator.
//!
//! One task per keeper, every third of the lease TTL (and at once when a lease is given up):
//! - renews the leases it holds (a lost one is dropped at once; while the database cannot be
//!   reached a lease stays held only until its local deadline, see below);
//! - takes a free or expired shard when it is the shard's *preferred* broker — the live
//!   broker at index `shard mod n` of the live brokers sorted by node id — or when the shard
//!   has been left expired for a whole TTL (so a shard whose preferred broker does not act is
//!   still served);
//! - hands a held shard over (releases it) once its preferred broker is another one that has
//!   been live for two TTLs, so shards spread again after a broker (re)joins; the preferred
//!   broker takes it in its next round;
//! - reads every coordinator lease, so FindCoordinator can name the holder.
//!
//! A lease is reported held only until `sent + ttl × 0.9`, where `sent` is the local instant
//! before the acquire or renew was sent: PostgreSQL's expiry (`now()` of that statement plus
//! the TTL) is later, so this broker stops acting for a shard before any other broker can take
//! it. Holders are `"<node id>/<uuid>"`, unique per process, so a restarted broker never
//! inherits its previous incarnation's epoch.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use strom_broker::storage::{
    COORDINATOR_SHARDS, ClusterMembers, CoordinatorLeases, CoordinatorShard, ShardLease,
};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::db::Db;
use crate::error::Error;
use crate::lease::{self, Lease};

/// The name prefix of the group-coordinator leases.
pub const LEASE_PREFIX: &str = "group-coordinator/";

/// The name prefix of the transaction-coordinator leases.
pub const TXN_LEASE_PREFIX: &str = "txn-coordinator/";

/// What a coordinator lease covers: a shard of consumer groups or of transactional ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CoordinatorKind {
    /// Consumer groups (`group-coordinator/NN`).
    Group,
    /// Transactional ids (`txn-coordinator/NN`).
    Txn,
}

impl CoordinatorKind {
    /// Both kinds.
    pub const ALL: [CoordinatorKind; 2] = [CoordinatorKind::Group, CoordinatorKind::Txn];

    /// The lease-name prefix of this kind.
    pub fn prefix(self) -> &'static str {
        match self {
            CoordinatorKind::Group => LEASE_PREFIX,
            CoordinatorKind::Txn => TXN_LEASE_PREFIX,
        }
    }

    /// A short label for displays (`group`, `txn`).
    pub fn label(self) -> &'static str {
        match self {
            CoordinatorKind::Group => "group",
            CoordinatorKind::Txn => "txn",
        }
    }

    /// The lease name of `shard` of this kind.
    pub fn lease_name(self, shard: CoordinatorShard) -> String {
        format!("{}{:02}", self.prefix(), shard.0)
    }

    /// The shard a lease name covers, if it is a coordinator lease of this kind.
    pub fn shard_of(self, name: &str) -> Option<CoordinatorShard> {
        name.strip_prefix(self.prefix())?
            .parse()
            .ok()
            .filter(|s| *s < COORDINATOR_SHARDS)
            .map(CoordinatorShard)
    }

    /// The kind and shard a lease name covers, if it is a coordinator lease.
    pub fn parse(name: &str) -> Option<(CoordinatorKind, CoordinatorShard)> {
        CoordinatorKind::ALL
            .into_iter()
            .find_map(|kind| kind.shard_of(name).map(|shard| (kind, shard)))
    }
}

/// The lease name of group-coordinator `shard`.
pub fn lease_name(shard: CoordinatorShard) -> String {
    CoordinatorKind::Group.lease_name(shard)
}

/// The shard a lease name covers, if it is a group-coordinator lease.
pub fn shard_of(name: &str) -> Option<CoordinatorShard> {
    CoordinatorKind::Group.shard_of(name)
}

/// The node id in a holder string (`"<node id>/<uuid>"`).
pub fn holder_node(holder: &str) -> Option<i32> {
    holder.split('/').next()?.parse().ok()
}

/// The live broker that should take `shard`: index `shard mod n` among `live` (sorted).
pub fn preferred(shard: CoordinatorShard, live: &[i32]) -> Option<i32> {
    let n = u32::try_from(live.len()).ok().filter(|n| *n > 0)?;
    live.get(usize::try_from(shard.0 % n).ok()?).copied()
}

/// A shard lease this broker holds, with the time left on it (status and `/metrics`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeldShard {
    /// The shard.
    pub shard: CoordinatorShard,
    /// The lease epoch.
    pub epoch: i64,
    /// Seconds until this broker stops acting for the shard unless it renews the lease (its
    /// local deadline, 0.9 TTL after the last acquire or renew was sent).
    pub expires_in_secs: f64,
}

#[derive(Debug)]
struct Held {
    lease: Lease,
    deadline: Instant,
}

#[derive(Debug, Default)]
struct State {
    held: HashMap<CoordinatorShard, Held>,
    /// Every shard's last known holder and until when it holds (by this broker's clock).
    holders: HashMap<CoordinatorShard, (i32, Instant)>,
    /// When each shard was last seen expired without a holder taking it over.
    expired_since: HashMap<CoordinatorShard, Instant>,
    /// Since when each live broker has been seen live without interruption.
    live_since: HashMap<i32, Instant>,
}

/// This broker's view and upkeep of the coordinator leases of one kind (see the module docs).
#[derive(Debug)]
pub struct CoordinatorLeaseKeeper {
    kind: CoordinatorKind,
    node_id: i32,
    members: Arc<dyn ClusterMembers>,
    state: Arc<RwLock<State>>,
    given_up: Arc<std::sync::Mutex<Vec<Lease>>>,
    wake: Arc<Notify>,
    task: JoinHandle<()>,
    db: Db,
    failovers: Arc<AtomicU64>,
}

impl CoordinatorLeaseKeeper {
    /// Starts the upkeep task of the `kind` leases on the current runtime for broker
    /// `node_id`, connecting to the database at `pg`.
    pub fn start(
        kind: CoordinatorKind,
        pg: crate::db::PgConfig,
        node_id: i32,
        members: Arc<dyn ClusterMembers>,
        ttl: Duration,
    ) -> CoordinatorLeaseKeeper {
        let state: Arc<RwLock<State>> = Arc::default();
        let given_up: Arc<std::sync::Mutex<Vec<Lease>>> = Arc::default();
        let wake = Arc::new(Notify::new());
        let failovers = Arc::new(AtomicU64::new(0));
        let holder = format!("{node_id}/{}", uuid::Uuid::now_v7());
        let task = {
            let upkeep = Upkeep {
                kind,
                db: Db::new(pg.clone()),
                node_id,
                holder,
                ttl,
                members: Arc::clone(&members),
                state: Arc::clone(&state),
                given_up: Arc::clone(&given_up),
                failovers: Arc::clone(&failovers),
            };
            let wake = Arc::clone(&wake);
            tokio::spawn(async move {
                loop {
                    upkeep.round().await;
                    let _ = tokio::time::timeout(ttl / 3, wake.notified()).await;
                }
            })
        };
        CoordinatorLeaseKeeper {
            kind,
            node_id,
            members,
            state,
            given_up,
            wake,
            task,
            db: Db::new(pg),
            failovers,
        }
    }

    /// The shard leases held now, by shard, with the time left on each.
    pub fn held_shards(&self) -> Vec<HeldShard> {
        let now = Instant::now();
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<HeldShard> = state
            .held
            .iter()
            .filter(|(_, h)| h.deadline > now)
            .map(|(shard, h)| HeldShard {
                shard: *shard,
                epoch: h.lease.epoch,
                expires_in_secs: h.deadline.duration_since(now).as_secs_f64(),
            })
            .collect();
        out.sort_by_key(|h| h.shard);
        out
    }

    /// Shards this broker took from a holder that is gone (not a live broker any more, or an
    /// earlier incarnation of this one): failovers, as opposed to hand-overs between live
    /// brokers. Since start.
    pub fn failovers(&self) -> u64 {
        self.failovers.load(Ordering::Relaxed)
    }

    /// Stops the upkeep and releases every lease held, so other brokers take the shards at
    /// once (clean shutdown).
    pub async fn release_all(&self) {
        self.task.abort();
        let held: Vec<Lease> = {
            let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
            state.held.drain().map(|(_, h)| h.lease).collect()
        };
        for lease in held {
            if let Err(error) = lease::release(&self.db, &lease).await {
                tracing::debug!(%error, lease = %lease.name, "releasing a coordinator lease failed");
            }
        }
    }

    fn live_ids(&self) -> Vec<i32> {
        live_ids(self.members.as_ref(), self.node_id)
    }

    /// The kind of leases this keeper keeps.
    pub fn kind(&self) -> CoordinatorKind {
        self.kind
    }
}

impl Drop for CoordinatorLeaseKeeper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn live_ids(members: &dyn ClusterMembers, me: i32) -> Vec<i32> {
    let mut ids: Vec<i32> = members.live_brokers().iter().map(|b| b.node_id).collect();
    if !ids.contains(&me) {
        ids.push(me);
    }
    ids.sort_unstable();
    ids
}

fn shard_lease(shard: CoordinatorShard, lease: &Lease) -> ShardLease {
    ShardLease {
        shard,
        epoch: lease.epoch,
    }
}

impl CoordinatorLeases for CoordinatorLeaseKeeper {
    fn held(&self) -> Vec<ShardLease> {
        let now = Instant::now();
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<ShardLease> = state
            .held
            .iter()
            .filter(|(_, h)| h.deadline > now)
            .map(|(shard, h)| shard_lease(*shard, &h.lease))
            .collect();
        out.sort_by_key(|l| l.shard);
        out
    }

    fn coordinator(&self, shard: CoordinatorShard) -> Option<i32> {
        let live = self.live_ids();
        let now = Instant::now();
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        if state.held.get(&shard).is_some_and(|h| h.deadline > now) {
            return Some(self.node_id);
        }
        match state.holders.get(&shard) {
            Some((node, until)) if *until > now && live.contains(node) => Some(*node),
            _ => preferred(shard, &live),
        }
    }

    fn give_up(&self, given: ShardLease) {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        let matches = state
            .held
            .get(&given.shard)
            .is_some_and(|h| h.lease.epoch == given.epoch);
        if matches && let Some(h) = state.held.remove(&given.shard) {
            self.given_up
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(h.lease);
            drop(state);
            self.wake.notify_one();
        }
    }
}

/// What the upkeep task owns.
struct Upkeep {
    kind: CoordinatorKind,
    db: Db,
    node_id: i32,
    holder: String,
    ttl: Duration,
    members: Arc<dyn ClusterMembers>,
    state: Arc<RwLock<State>>,
    given_up: Arc<std::sync::Mutex<Vec<Lease>>>,
    failovers: Arc<AtomicU64>,
}

impl Upkeep {
    fn deadline(&self, sent: Instant) -> Instant {
        sent + self.ttl.mul_f64(0.9)
    }

    async fn round(&self) {
        let released: Vec<Lease> =
            std::mem::take(&mut *self.given_up.lock().unwrap_or_else(PoisonError::into_inner));
        for l in released {
            if let Err(error) = lease::release(&self.db, &l).await {
                tracing::debug!(%error, lease = %l.name, "releasing a coordinator lease failed");
            }
        }
        // Renew what is held.
        let held: Vec<(CoordinatorShard, Lease)> = {
            let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
            state
                .held
                .iter()
                .map(|(s, h)| (*s, h.lease.clone()))
                .collect()
        };
        for (shard, l) in held {
            let sent = Instant::now();
            match lease::renew(&self.db, &l).await {
                Ok(()) => {
                    let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
                    if let Some(h) = state.held.get_mut(&shard).filter(|h| h.lease == l) {
                        h.deadline = self.deadline(sent);
                    }
                }
                Err(Error::LeaseLost { .. }) => {
                    tracing::warn!(
                        kind = self.kind.label(),
                        shard = shard.0,
                        epoch = l.epoch,
                        "coordinator lease lost"
                    );
                    let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
                    if state.held.get(&shard).is_some_and(|h| h.lease == l) {
                        state.held.remove(&shard);
                    }
                }
                // Unreachable database: the lease stays held until its local deadline.
                Err(error) => tracing::debug!(%error, "renewing a coordinator lease failed"),
            }
        }
        // Who holds what.
        let listed = match lease::list(&self.db).await {
            Ok(l) => l,
            Err(error) => {
                tracing::debug!(%error, "listing coordinator leases failed");
                return;
            }
        };
        let now = Instant::now();
        let live = live_ids(self.members.as_ref(), self.node_id);
        let mut known: BTreeMap<CoordinatorShard, (i32, f64)> = BTreeMap::new();
        let mut previous: HashMap<CoordinatorShard, &str> = HashMap::new();
        for l in &listed {
            if let (Some(shard), Some(node)) = (self.kind.shard_of(&l.name), holder_node(&l.holder))
            {
                known.insert(shard, (node, l.expires_in_secs));
                previous.insert(shard, l.holder.as_str());
            }
        }
        let mut to_take = Vec::new();
        let mut to_hand_over = Vec::new();
        {
            let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
            state.live_since.retain(|id, _| live.contains(id));
            for id in &live {
                state.live_since.entry(*id).or_insert(now);
            }
            let settled = |state: &State, id: i32| {
                state
                    .live_since
                    .get(&id)
                    .is_some_and(|since| now.duration_since(*since) >= self.ttl * 2)
            };
            let handed: Vec<CoordinatorShard> = state
                .held
                .keys()
                .copied()
                .filter(|shard| {
                    preferred(*shard, &live)
                        .is_some_and(|p| p != self.node_id && settled(&state, p))
                })
                .collect();
            for shard in handed {
                if let Some(h) = state.held.remove(&shard) {
                    to_hand_over.push(h.lease);
                }
            }
            state.holders = known
                .iter()
                .filter(|(_, (_, secs))| *secs > 0.0)
                .map(|(s, (node, secs))| (*s, (*node, now + Duration::from_secs_f64(*secs))))
                .collect();
            for shard in (0..COORDINATOR_SHARDS).map(CoordinatorShard) {
                if state.held.contains_key(&shard) {
                    state.expired_since.remove(&shard);
                    continue;
                }
                let free = known.get(&shard).is_none_or(|(_, secs)| *secs <= 0.0);
                if !free {
                    state.expired_since.remove(&shard);
                    continue;
                }
                let since = *state.expired_since.entry(shard).or_insert(now);
                let abandoned = now.duration_since(since) >= self.ttl;
                if preferred(shard, &live) == Some(self.node_id) || abandoned {
                    to_take.push(shard);
                }
            }
        }
        for l in to_hand_over {
            tracing::info!(lease = %l.name, epoch = l.epoch, "handing a coordinator shard to its preferred broker");
            if let Err(error) = lease::release(&self.db, &l).await {
                tracing::debug!(%error, lease = %l.name, "releasing a coordinator lease failed");
            }
        }
        for shard in to_take {
            let sent = Instant::now();
            match lease::acquire(
                &self.db,
                &self.kind.lease_name(shard),
                &self.holder,
                self.ttl,
            )
            .await
            {
                Ok(Some(l)) => {
                    let failover = previous
                        .get(&shard)
                        .is_some_and(|prev| is_failover(prev, &self.holder, self.node_id, &live));
                    if failover {
                        self.failovers.fetch_add(1, Ordering::Relaxed);
                    }
                    tracing::info!(
                        kind = self.kind.label(),
                        shard = shard.0,
                        epoch = l.epoch,
                        failover,
                        "coordinator lease taken"
                    );
                    let deadline = self.deadline(sent);
                    let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
                    state.expired_since.remove(&shard);
                    state.held.insert(shard, Held { lease: l, deadline });
                }
                Ok(None) => {}
                Err(error) => tracing::debug!(%error, "taking a coordinator lease failed"),
            }
        }
    }
}

/// Whether taking a shard last held by `previous` is a failover: the holder is gone (no longer
/// a live broker, or an earlier incarnation of this broker) rather than live and handing the
/// shard over.
fn is_failover(previous: &str, me: &str, my_node: i32, live: &[i32]) -> bool {
    if previous == me {
        return false;
    }
    match holder_node(previous) {
        Some(node) => node == my_node || !live.contains(&node),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_holders_parse() {
        let shard = CoordinatorShard(7);
        assert_eq!(lease_name(shard), "group-coordinator/07");
        assert_eq!(shard_of(&lease_name(shard)), Some(shard));
        assert_eq!(shard_of("group-coordinator/99"), None);
        assert_eq!(shard_of("job/orphans"), None);
        assert_eq!(holder_node("3/0190-abc"), Some(3));
        assert_eq!(holder_node("broker-3"), None);
        let txn = CoordinatorKind::Txn.lease_name(shard);
        assert_eq!(txn, "txn-coordinator/07");
        assert_eq!(shard_of(&txn), None);
        assert_eq!(
            CoordinatorKind::parse(&txn),
            Some((CoordinatorKind::Txn, shard))
        );
        assert_eq!(
            CoordinatorKind::parse("group-coordinator/03"),
            Some((CoordinatorKind::Group, CoordinatorShard(3)))
        );
    }

    #[test]
    fn failovers_are_takeovers_from_gone_holders() {
        let me = "2/bbbb";
        // From a broker no longer live, or from this broker's earlier incarnation.
        assert!(is_failover("1/aaaa", me, 2, &[2, 3]));
        assert!(is_failover("2/old", me, 2, &[2, 3]));
        // A hand-over from a live broker, or this very holder renewing.
        assert!(!is_failover("3/cccc", me, 2, &[2, 3]));
        assert!(!is_failover(me, me, 2, &[2, 3]));
        assert!(!is_failover("intruder", me, 2, &[2, 3]));
    }

    #[test]
    fn every_shard_has_one_preferred_live_broker_spread_evenly() {
        let live = [0, 2, 5];
        let mut counts = BTreeMap::new();
        for s in 0..COORDINATOR_SHARDS {
            let p = preferred(CoordinatorShard(s), &live).unwrap();
            *counts.entry(p).or_insert(0) += 1;
        }
        assert_eq!(counts.len(), 3);
        assert!(counts.values().all(|&c| c >= 5), "{counts:?}");
        assert_eq!(preferred(CoordinatorShard(0), &[]), None);
    }
}
