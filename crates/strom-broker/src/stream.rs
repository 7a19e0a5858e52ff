//! Kinesis stream metadata that has no Kafka counterpart: per-shard hash-key ranges and
//! lineage, closed shards, retention in hours, tags, consumers, stream mode and encryption.
//!
//! A Kinesis stream *is* a topic and a shard *is* a partition (shard `n` is partition `n`).
//! What only Kinesis needs is kept here as one [`StreamMeta`] per topic id, owned by the
//! [`StreamRegistry`] and changed only through it ([`Broker::set_stream_meta_blocking`]
//! delegates to it), which appends a
//! [`MetadataEvent::StreamMetaSet`] (the complete new value) to the metadata log first, so it
//! survives a restart. Topics without a [`StreamMeta`] (created by Kafka clients) are shown to
//! Kinesis clients with [`StreamMeta::derived`]: every partition an open shard, hash ranges split
//! evenly. The broker does not interpret these fields; the Kinesis front end does.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use uuid::Uuid;

use crate::broker::Broker;
use crate::error::{Error, Result};
use crate::metadata::MetadataEvent;
use crate::storage::MetadataStore;
use crate::topic::{CreateTopic, Topic, TopicSummary};

/// One shard: its hash-key range, lineage, and whether it was closed by resharding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardMeta {
    /// First hash key (inclusive); stored as a decimal string.
    #[serde(with = "decimal_u128")]
    pub starting_hash_key: u128,
    /// Last hash key (inclusive); stored as a decimal string.
    #[serde(with = "decimal_u128")]
    pub ending_hash_key: u128,
    /// Partition index of the parent shard, if this shard came from a split or merge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<i32>,
    /// Partition index of the second parent of a merge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adjacent_parent: Option<i32>,
    /// The first offset this shard does not hold, once resharding closed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_at_offset: Option<i64>,
    /// When the shard was opened (stream creation or the reshard that made it), epoch ms.
    /// `None` in events written before shard times were kept: the stream's creation time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_ms: Option<i64>,
    /// When resharding closed the shard, epoch ms. `None` while open, and for shards closed
    /// before shard times were kept (closed at an unknown time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_ms: Option<i64>,
}

impl ShardMeta {
    /// When the shard was opened: its own time, else the stream's creation time.
    pub fn opened_ms(&self, stream_created_ms: i64) -> i64 {
        self.created_ms.unwrap_or(stream_created_ms)
    }

    /// Whether resharding closed the shard.
    pub fn is_closed(&self) -> bool {
        self.closed_at_offset.is_some()
    }

    /// Whether the shard was open at `t_ms` (opened at or before it, and still open or closed
    /// at or after it). A shard closed at an unknown time counts as closed after `t_ms`.
    pub fn open_at(&self, stream_created_ms: i64, t_ms: i64) -> bool {
        self.opened_ms(stream_created_ms) <= t_ms && self.open_from(t_ms)
    }

    /// Whether the shard was open at `t_ms` or later: still open, or closed at or after
    /// `t_ms` (a shard closed at an unknown time counts as closed after it).
    pub fn open_from(&self, t_ms: i64) -> bool {
        !self.is_closed() || self.closed_ms.is_none_or(|c| c >= t_ms)
    }
}

/// A registered enhanced fan-out consumer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerMeta {
    /// Consumer name.
    pub name: String,
    /// Registration time, epoch milliseconds.
    pub created_ms: i64,
}

/// Everything Kinesis knows about a stream beyond its topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamMeta {
    /// One entry per partition, index = partition index.
    pub shards: Vec<ShardMeta>,
    /// Creation time, epoch milliseconds.
    pub created_ms: i64,
    /// `PROVISIONED` or `ON_DEMAND`.
    pub mode: String,
    /// Retention period in hours.
    pub retention_hours: i32,
    /// Tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Registered consumers.
    #[serde(default)]
    pub consumers: Vec<ConsumerMeta>,
    /// `KMS` key id when server-side encryption was started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_key: Option<String>,
    /// Enhanced-monitoring shard-level metrics that were enabled.
    #[serde(default)]
    pub shard_level_metrics: Vec<String>,
    /// Until when (epoch ms) the stream reports `UPDATING` after a reshard.
    #[serde(default)]
    pub updating_until_ms: i64,
}

/// `u128` as a decimal string: JSON numbers that large do not survive serde's buffering of
/// internally tagged enums (the metadata events are one).
mod decimal_u128 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &u128, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The whole hash-key space, `0..=2^128-1`, split into `count` contiguous ranges the way AWS
/// does: each range is `2^128 / count` keys wide, the last one takes the remainder.
pub fn even_hash_ranges(count: usize) -> Vec<(u128, u128)> {
    match count {
        0 => return Vec::new(),
        1 => return vec![(0, u128::MAX)],
        _ => {}
    }
    let n = count as u128;
    // floor(2^128 / n), computed without 2^128: one more than floor((2^128 - 1) / n) exactly
    // when n divides 2^128.
    let width = u128::MAX / n + u128::from(u128::MAX % n == n - 1);
    (0..count)
        .map(|i| {
            let start = width.saturating_mul(i as u128);
            let end = if i + 1 == count {
                u128::MAX
            } else {
                start.saturating_add(width - 1)
            };
            (start, end)
        })
        .collect()
}

impl StreamMeta {
    /// A new provisioned/on-demand stream of `shards` open shards with even hash ranges.
    pub fn new(shards: usize, mode: &str, created_ms: i64) -> StreamMeta {
        StreamMeta {
            shards: even_hash_ranges(shards)
                .into_iter()
                .map(|(starting_hash_key, ending_hash_key)| ShardMeta {
                    starting_hash_key,
                    ending_hash_key,
                    parent: None,
                    adjacent_parent: None,
                    closed_at_offset: None,
                    created_ms: Some(created_ms),
                    closed_ms: None,
                })
                .collect(),
            created_ms,
            mode: mode.to_owned(),
            retention_hours: 24,
            tags: BTreeMap::new(),
            consumers: Vec::new(),
            encryption_key: None,
            shard_level_metrics: Vec::new(),
            updating_until_ms: 0,
        }
    }

    /// The view of a topic that was not created through Kinesis: `partitions` open shards with
    /// even ranges, retention from `retention.ms` (rounded up to hours).
    pub fn derived(partitions: i32, retention_ms: Option<i64>) -> StreamMeta {
        let mut meta = StreamMeta::new(usize::try_from(partitions).unwrap_or(0), "PROVISIONED", 0);
        meta.retention_hours = match retention_ms {
            Some(ms) => i32::try_from((ms.max(0) as u64).div_ceil(3_600_000)).unwrap_or(i32::MAX),
            None => i32::MAX,
        };
        meta
    }
}

/// The Kinesis stream registry: the owner of every topic's [`StreamMeta`].
///
/// Ownership: the table is a map of immutable snapshots behind an `RwLock` (readers clone an
/// `Arc`). It changes only through `store` and `update`,
/// which first append a [`MetadataEvent::StreamMetaSet`] to the [`MetadataStore`] they are
/// handed (the broker holds its admin lock around the call, which serialises changes with
/// topic creation and deletion), and through `forget` when the topic goes.
/// The registry knows nothing else of the broker: what it needs of a topic (its partition
/// count and retention, for the derived value) is passed in.
#[derive(Debug)]
pub struct StreamRegistry {
    by_topic: RwLock<BTreeMap<Uuid, Arc<StreamMeta>>>,
    /// Counts changes (installed or forgotten metadata, this broker's or another's): a
    /// SubscribeToShard stream waits on it to see its shard close promptly.
    changes: watch::Sender<u64>,
}

impl Default for StreamRegistry {
    fn default() -> Self {
        StreamRegistry {
            by_topic: RwLock::default(),
            changes: watch::Sender::new(0),
        }
    }
}

/// What the registry needs to know of a topic to change its stream metadata.
#[derive(Debug, Clone, Copy)]
pub struct StreamTopic {
    /// The topic id.
    pub id: Uuid,
    /// Its current partition count.
    pub partitions: i32,
    /// Its `retention.ms`, if bounded.
    pub retention_ms: Option<i64>,
}

impl StreamRegistry {
    /// The registry as the metadata replay left it.
    pub(crate) fn from_replay(streams: BTreeMap<Uuid, StreamMeta>) -> StreamRegistry {
        StreamRegistry {
            by_topic: RwLock::new(streams.into_iter().map(|(k, v)| (k, Arc::new(v))).collect()),
            changes: watch::Sender::new(0),
        }
    }

    /// The Kinesis metadata stored for a topic, if it has any.
    pub fn get(&self, id: Uuid) -> Option<Arc<StreamMeta>> {
        self.by_topic
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
            .cloned()
    }

    /// A receiver that sees every change of any stream's metadata (a counter).
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    pub(crate) fn install(&self, id: Uuid, meta: StreamMeta) {
        self.by_topic
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, Arc::new(meta));
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Replaces a topic's metadata: durable in `metadata` first, then visible. BLOCKING.
    pub(crate) fn store(
        &self,
        metadata: &mut dyn MetadataStore,
        id: Uuid,
        meta: StreamMeta,
    ) -> Result<()> {
        metadata.append(&MetadataEvent::StreamMetaSet {
            id,
            stream: meta.clone(),
        })?;
        self.install(id, meta);
        Ok(())
    }

    /// Reads, changes (with `f`, given the current value or the derived one and the partition
    /// count) and stores a topic's metadata. The caller serialises updates (admin lock), so
    /// concurrent updates do not lose each other's changes. BLOCKING.
    pub(crate) fn update<T>(
        &self,
        metadata: &mut dyn MetadataStore,
        topic: StreamTopic,
        f: impl FnOnce(&mut StreamMeta, i32) -> Result<T>,
    ) -> Result<T> {
        let mut meta = match self.get(topic.id) {
            Some(m) => (*m).clone(),
            None => StreamMeta::derived(topic.partitions, topic.retention_ms),
        };
        let out = f(&mut meta, topic.partitions)?;
        self.store(metadata, topic.id, meta)?;
        Ok(out)
    }

    /// Forgets a deleted topic's metadata (its `TopicDeleted` event removes it on replay).
    pub(crate) fn forget(&self, id: Uuid) {
        self.by_topic
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// Seals, on this broker, the partition of every closed shard of `meta` (on open, after a
/// change is stored, and when another broker's change is read): a closed shard is read-only
/// for both APIs. The shared seal of cluster mode was set by the broker that closed the shard.
pub(crate) fn seal_closed_shards(topic: &Topic, meta: &StreamMeta) {
    for (partition, shard) in topic.partitions().iter().zip(&meta.shards) {
        if shard.is_closed() && !partition.is_sealed() {
            partition.seal_local_blocking();
        }
    }
}

/// Makes exactly the partitions of `meta`'s closed shards sealed (after a failed change).
fn restore_seals(topic: &Topic, meta: &StreamMeta) {
    for (partition, shard) in topic.partitions().iter().zip(&meta.shards) {
        if shard.is_closed() {
            partition.seal_local_blocking();
        } else if partition.is_sealed() {
            partition.unseal_blocking();
        }
    }
}

impl Broker {
    /// The Kinesis metadata stored for a topic, if it has any.
    pub fn stream_meta(&self, topic_id: Uuid) -> Option<Arc<StreamMeta>> {
        self.streams.get(topic_id)
    }

    /// A receiver that sees every change of any stream's metadata, made through this broker
    /// or read from another's (cluster mode), e.g. a shard closed by resharding.
    pub fn stream_changes(&self) -> watch::Receiver<u64> {
        self.streams.changes()
    }

    /// Applies another broker's [`MetadataEvent::StreamMetaSet`] (cluster mode): the new value
    /// is installed and the partitions of its closed shards are sealed here too. Called with
    /// the admin lock held. BLOCKING (a seal waits for this broker's writes in flight).
    pub(crate) fn apply_remote_stream_meta(&self, id: Uuid, meta: StreamMeta) {
        if self.streams.get(id).is_some_and(|m| *m == meta) {
            return;
        }
        self.streams.install(id, meta);
        if let (Ok(topic), Some(stored)) = (self.topic_by_id(id), self.streams.get(id)) {
            seal_closed_shards(&topic, &stored);
        }
    }

    /// Creates a topic for a Kinesis stream and stores its metadata. BLOCKING.
    pub fn create_stream_blocking(
        &self,
        req: CreateTopic,
        meta: StreamMeta,
    ) -> Result<TopicSummary> {
        let summary = self.create_topic_blocking(req)?;
        self.set_stream_meta_blocking(summary.id, meta)?;
        Ok(summary)
    }

    /// Replaces the Kinesis metadata of a topic, durably. BLOCKING.
    ///
    /// The partitions of shards it marks closed are sealed
    /// ([`crate::Partition::seal_blocking`]); a caller closing a shard should seal it first and
    /// store the offset the seal returned.
    pub fn set_stream_meta_blocking(&self, topic_id: Uuid, meta: StreamMeta) -> Result<()> {
        let mut metadata = self.admin_synced();
        let topic = self.topic_by_id(topic_id)?;
        self.streams.store(&mut **metadata, topic_id, meta)?;
        if let Some(stored) = self.streams.get(topic_id) {
            seal_closed_shards(&topic, &stored);
        }
        Ok(())
    }

    /// Reads, changes and stores the metadata of a topic under the admin lock, so concurrent
    /// updates do not lose each other's changes. `f` gets the current value (or the derived one)
    /// and the current partition count. BLOCKING.
    pub fn update_stream_meta_blocking<T>(
        &self,
        topic_id: Uuid,
        f: impl FnOnce(&mut StreamMeta, i32) -> Result<T>,
    ) -> Result<T> {
        // Cluster mode: decide on what every broker changed so far, not on this broker's view
        // of up to one metadata poll ago (a tag added through another broker would be lost).
        let mut metadata = self.admin_synced();
        let topic = self.topic_by_id(topic_id)?;
        let stream_topic = StreamTopic {
            id: topic_id,
            partitions: topic.partition_count(),
            retention_ms: topic.settings().retention_ms,
        };
        let before = match self.streams.get(topic_id) {
            Some(m) => (*m).clone(),
            None => StreamMeta::derived(topic.partition_count(), topic.settings().retention_ms),
        };
        match self.streams.update(&mut **metadata, stream_topic, f) {
            Ok(out) => {
                if let Some(stored) = self.streams.get(topic_id) {
                    seal_closed_shards(&topic, &stored);
                }
                Ok(out)
            }
            Err(e) => {
                // `f` may have sealed partitions it meant to close: the stored state stands.
                // In cluster mode that is the latest one: another broker may have closed the
                // same shard meanwhile (why the append was refused), and its seal must stay.
                let mut stored = before;
                if self.live_brokers().is_some() {
                    match metadata.poll() {
                        Ok(events) => self.apply_remote_events(events),
                        Err(e) => {
                            tracing::warn!(error = %e, "reading other brokers' metadata failed")
                        }
                    }
                    if let Some(latest) = self.streams.get(topic_id) {
                        stored = (*latest).clone();
                    }
                }
                restore_seals(&topic, &stored);
                Err(e)
            }
        }
    }

    /// Grows the topic's partitions under the same admin lock discipline; used by resharding.
    /// BLOCKING.
    pub fn grow_stream_blocking(&self, name: &str, total: i32) -> Result<()> {
        match self.create_partitions_blocking(name, total, false) {
            Ok(()) => Ok(()),
            Err(Error::InvalidPartitions { .. })
                if self.topic(name)?.partition_count() >= total =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A metadata store that records events, or refuses them.
    #[derive(Debug, Default)]
    struct Recorded {
        events: Vec<MetadataEvent>,
        refuse: bool,
    }

    impl MetadataStore for Recorded {
        fn append(&mut self, event: &MetadataEvent) -> Result<()> {
            if self.refuse {
                return Err(Error::MetadataPoisoned { path: "m".into() });
            }
            self.events.push(event.clone());
            Ok(())
        }
    }

    #[test]
    fn the_registry_changes_only_after_the_event_is_stored() {
        let registry = StreamRegistry::default();
        let id = Uuid::new_v4();
        let topic = StreamTopic {
            id,
            partitions: 2,
            retention_ms: None,
        };
        let mut metadata = Recorded::default();
        let shards = registry
            .update(&mut metadata, topic, |meta, partitions| {
                meta.retention_hours = 48;
                Ok(partitions)
            })
            .unwrap();
        assert_eq!(shards, 2);
        let stored = registry.get(id).unwrap();
        assert_eq!(stored.retention_hours, 48);
        assert_eq!(stored.shards.len(), 2);
        assert_eq!(
            metadata.events,
            vec![MetadataEvent::StreamMetaSet {
                id,
                stream: (*stored).clone()
            }]
        );

        // A refused append leaves the registry as it was.
        metadata.refuse = true;
        let refused = registry.update(&mut metadata, topic, |meta, _| {
            meta.retention_hours = 72;
            Ok(())
        });
        assert!(refused.is_err());
        assert_eq!(registry.get(id).unwrap().retention_hours, 48);

        registry.forget(id);
        assert!(registry.get(id).is_none());
    }

    #[test]
    fn even_ranges_cover_the_space() {
        for n in [1usize, 2, 3, 4, 7, 10, 500] {
            let r = even_hash_ranges(n);
            assert_eq!(r.len(), n);
            assert_eq!(r[0].0, 0);
            assert_eq!(r[n - 1].1, u128::MAX);
            for w in r.windows(2) {
                assert_eq!(w[0].1 + 1, w[1].0);
            }
        }
        // AWS's two-shard split.
        let two = even_hash_ranges(2);
        assert_eq!(two[0].1, 170141183460469231731687303715884105727);
        assert_eq!(two[1].0, 170141183460469231731687303715884105728);
    }

    #[test]
    fn meta_round_trips_through_the_event_log_encoding() {
        let m = StreamMeta::new(3, "PROVISIONED", 5);
        let ev = MetadataEvent::StreamMetaSet {
            id: Uuid::new_v4(),
            stream: m,
        };
        let s = serde_json::to_string(&ev).unwrap();
        assert_eq!(serde_json::from_str::<MetadataEvent>(&s).unwrap(), ev);
    }

    #[test]
    fn events_without_shard_times_still_read() {
        // A StreamMetaSet stream value as written before shard times were kept.
        let old = r#"{"shards":[{"starting_hash_key":"0","ending_hash_key":"9","closed_at_offset":4},
            {"starting_hash_key":"0","ending_hash_key":"9","parent":0}],
            "created_ms":100,"mode":"PROVISIONED","retention_hours":24}"#;
        let m: StreamMeta = serde_json::from_str(old).unwrap();
        let (closed, child) = (&m.shards[0], &m.shards[1]);
        assert_eq!((closed.created_ms, closed.closed_ms), (None, None));
        assert_eq!(child.opened_ms(m.created_ms), 100);
        // Closed at an unknown time: open at any time from the stream's creation on.
        assert!(closed.open_at(m.created_ms, 100));
        assert!(closed.open_at(m.created_ms, i64::MAX));
        assert!(!closed.open_at(m.created_ms, 99));
        assert!(closed.open_from(i64::MAX));
    }

    #[test]
    fn shard_times_decide_open_at_and_open_from() {
        let mut s = StreamMeta::new(1, "PROVISIONED", 10).shards.remove(0);
        assert_eq!(s.created_ms, Some(10));
        assert!(s.open_at(10, 10) && !s.open_at(10, 9) && s.open_from(1_000));
        s.closed_at_offset = Some(3);
        s.closed_ms = Some(20);
        assert!(s.open_at(10, 20) && !s.open_at(10, 21));
        assert!(s.open_from(20) && s.open_from(0) && !s.open_from(21));
    }

    #[test]
    fn stream_meta_survives_reopen_and_goes_with_the_topic() {
        let dir = tempfile::tempdir().unwrap();
        let broker = Broker::open(crate::BrokerConfig::new(dir.path())).unwrap();
        let req = CreateTopic {
            name: "s".to_owned(),
            partitions: Some(2),
            ..CreateTopic::default()
        };
        let summary = broker
            .create_stream_blocking(req, StreamMeta::new(2, "PROVISIONED", 7))
            .unwrap();
        broker
            .update_stream_meta_blocking(summary.id, |m, _| {
                m.tags.insert("k".to_owned(), "v".to_owned());
                Ok(())
            })
            .unwrap();
        broker.shutdown_blocking().unwrap();
        drop(broker);
        let broker = Broker::open(crate::BrokerConfig::new(dir.path())).unwrap();
        let meta = broker.stream_meta(summary.id).unwrap();
        assert_eq!(meta.shards.len(), 2);
        assert_eq!(meta.tags.get("k").map(String::as_str), Some("v"));
        broker.delete_topic_blocking("s").unwrap();
        assert!(broker.stream_meta(summary.id).is_none());
    }
}
