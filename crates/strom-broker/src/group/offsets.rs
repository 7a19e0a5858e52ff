//! Committed offsets: an in-memory cache backed by the internal topic `__consumer_offsets`.
//!
//! Every commit is appended as one record batch (one record per partition) to partition 0 of
//! `__consumer_offsets` before the cache changes, so an acknowledged commit is as durable as the
//! topic's fsync policy makes it. On start the cache is rebuilt by replaying the partition.
//!
//! ## Record encoding (all integers big-endian)
//!
//! ```text
//! key   = version:u16 (=1) | group_len:u16 | group | topic_len:u16 | topic | partition:i32
//! value = version:u16 (=1) | offset:i64 | leader_epoch:i32 | commit_timestamp:i64
//!         | metadata_len:i32 (-1 = null) | metadata
//! ```
//!
//! A record with a null value (a tombstone) deletes the key's offset (OffsetDelete,
//! DeleteGroups). Unknown versions are skipped on replay.
//!
//! Group state (membership, generations, epochs, assignments) shares the topic under its own
//! key version:
//!
//! ```text
//! key   = version:u16 (=2) | group_len:u16 | group
//! value = version:u16 (=2) | JSON of `GroupRecord` (classic or consumer-protocol snapshot)
//! ```
//!
//! Offsets committed inside a transaction (TxnOffsetCommit) wait under a third key version until
//! the transaction ends; its commit writes them as ordinary offsets together with tombstones of
//! these keys, its abort writes only the tombstones:
//!
//! ```text
//! key   = version:u16 (=3) | producer_id:i64 | group_len:u16 | group | topic_len:u16 | topic
//!         | partition:i32
//! value = as for version 1
//! ```

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Buf, BufMut, Bytes};

/// The internal topic holding committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// One committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    /// The next offset to consume.
    pub offset: i64,
    /// Leader epoch of the last consumed record, -1 if unknown.
    pub leader_epoch: i32,
    /// Client metadata.
    pub metadata: Option<String>,
    /// When it was committed (ms since the epoch).
    pub commit_timestamp: i64,
}

/// Offsets of every group: group → (topic, partition) → offset.
pub(crate) type OffsetCache = BTreeMap<String, BTreeMap<(String, i32), CommittedOffset>>;

const VERSION: u16 = 1;
const GROUP_VERSION: u16 = 2;
const TXN_VERSION: u16 = 3;
/// Key version of a coordinator shard's fence (cluster mode, see `group::authority`): a
/// tombstone that replay ignores and compaction drops; it exists to be committed.
const FENCE_VERSION: u16 = 4;

/// Key version of a transaction's completion (cluster mode): written by the transaction
/// coordinator, read by the coordinators of the transaction's groups.
const TXN_DONE_VERSION: u16 = 5;

/// A transaction's end as recorded for one of its groups in `__consumer_offsets` (cluster
/// mode): the group's coordinator settles `producer_id`'s pending offsets of `group` when it
/// reads it (in its tail of the topic, or in a takeover's replay).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TxnDone {
    pub(crate) producer_id: i64,
    pub(crate) group: String,
    pub(crate) commit: bool,
    /// The lease epoch of the transaction coordinator that wrote it.
    pub(crate) coordinator_epoch: i32,
    /// Unique per record written, so one read twice is applied once.
    pub(crate) nonce: u64,
}

/// Encodes a completion record (key, value).
pub(crate) fn encode_txn_done(done: &TxnDone) -> (Bytes, Bytes) {
    let mut key = Vec::with_capacity(12 + done.group.len());
    key.put_u16(TXN_DONE_VERSION);
    key.put_i64(done.producer_id);
    put_str(&mut key, &done.group);
    let mut value = Vec::with_capacity(15);
    value.put_u16(TXN_DONE_VERSION);
    value.put_u8(u8::from(done.commit));
    value.put_i32(done.coordinator_epoch);
    value.put_u64(done.nonce);
    (Bytes::from(key), Bytes::from(value))
}

/// Decodes a completion record; `None` for any other record (or a tombstone).
pub(crate) fn decode_txn_done(mut key: Bytes, value: Option<Bytes>) -> Option<TxnDone> {
    if key.remaining() < 10 || key.get_u16() != TXN_DONE_VERSION {
        return None;
    }
    let producer_id = key.get_i64();
    let group = get_str(&mut key)?;
    let mut value = value?;
    if key.has_remaining() || value.remaining() != 15 || value.get_u16() != TXN_DONE_VERSION {
        return None;
    }
    let commit = value.get_u8() != 0;
    let coordinator_epoch = value.get_i32();
    let nonce = value.get_u64();
    Some(TxnDone {
        producer_id,
        group,
        commit,
        coordinator_epoch,
        nonce,
    })
}

/// Whether a key is a completion record's (whatever its value).
pub(crate) fn is_txn_done_key(key: &[u8]) -> bool {
    key.get(..2) == Some(&TXN_DONE_VERSION.to_be_bytes()[..])
}

/// The completions applied per producer and group: the highest coordinator epoch seen and the
/// nonces of the last few records applied (a record read twice, by a takeover's replay and the
/// tail, is applied once; one of an older coordinator epoch is ignored).
#[derive(Debug, Default, Clone)]
pub(crate) struct TxnDoneSeen {
    by_producer: BTreeMap<(i64, String), (i32, std::collections::VecDeque<u64>)>,
}

impl TxnDoneSeen {
    /// How many nonces are remembered per producer.
    const NONCES: usize = 64;

    /// Whether `done` is to be applied (new, and not of an older coordinator epoch than one
    /// applied for its producer). Does not record it.
    pub(crate) fn admits(&self, done: &TxnDone) -> bool {
        match self
            .by_producer
            .get(&(done.producer_id, done.group.clone()))
        {
            None => true,
            Some((epoch, nonces)) => {
                done.coordinator_epoch >= *epoch && !nonces.contains(&done.nonce)
            }
        }
    }

    /// Records `done` as applied.
    pub(crate) fn record(&mut self, done: &TxnDone) {
        let (epoch, nonces) = self
            .by_producer
            .entry((done.producer_id, done.group.clone()))
            .or_default();
        *epoch = (*epoch).max(done.coordinator_epoch);
        if nonces.len() == Self::NONCES {
            nonces.pop_front();
        }
        nonces.push_back(done.nonce);
    }

    /// Takes in what another view recorded (a takeover's replay) for the groups `ours` says.
    pub(crate) fn merge(&mut self, other: TxnDoneSeen, ours: impl Fn(&str) -> bool) {
        for ((pid, group), (epoch, nonces)) in other.by_producer {
            if !ours(&group) {
                continue;
            }
            for nonce in nonces {
                self.record(&TxnDone {
                    producer_id: pid,
                    group: group.clone(),
                    commit: false,
                    coordinator_epoch: epoch,
                    nonce,
                });
            }
        }
    }
}

/// The key of coordinator shard `shard`'s fence record.
pub(crate) fn encode_fence_key(shard: u32) -> Bytes {
    let mut buf = Vec::with_capacity(6);
    buf.put_u16(FENCE_VERSION);
    buf.put_u32(shard);
    Bytes::from(buf)
}

/// Offsets committed in open transactions: producer id → (group, topic, partition) → offset.
pub(crate) type PendingTxnOffsets = BTreeMap<i64, BTreeMap<(String, String, i32), CommittedOffset>>;

fn put_str(buf: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
    buf.put_u16(len);
    buf.put_slice(bytes.get(..usize::from(len)).unwrap_or_default());
}

fn get_str(buf: &mut Bytes) -> Option<String> {
    if buf.remaining() < 2 {
        return None;
    }
    let len = usize::from(buf.get_u16());
    if buf.remaining() < len {
        return None;
    }
    String::from_utf8(buf.split_to(len).to_vec()).ok()
}

/// Encodes the key of `(group, topic, partition)`.
pub(crate) fn encode_key(group: &str, topic: &str, partition: i32) -> Bytes {
    let mut buf = Vec::with_capacity(10 + group.len() + topic.len());
    buf.put_u16(VERSION);
    put_str(&mut buf, group);
    put_str(&mut buf, topic);
    buf.put_i32(partition);
    Bytes::from(buf)
}

/// Decodes a key; `None` if malformed or of an unknown version.
pub(crate) fn decode_key(mut key: Bytes) -> Option<(String, String, i32)> {
    if key.remaining() < 2 || key.get_u16() != VERSION {
        return None;
    }
    let group = get_str(&mut key)?;
    let topic = get_str(&mut key)?;
    if key.remaining() != 4 {
        return None;
    }
    Some((group, topic, key.get_i32()))
}

/// Encodes a committed offset.
pub(crate) fn encode_value(value: &CommittedOffset) -> Bytes {
    let metadata = value.metadata.as_deref().map(str::as_bytes);
    let mut buf = Vec::with_capacity(26 + metadata.map_or(0, <[u8]>::len));
    buf.put_u16(VERSION);
    buf.put_i64(value.offset);
    buf.put_i32(value.leader_epoch);
    buf.put_i64(value.commit_timestamp);
    match metadata {
        Some(m) => {
            buf.put_i32(i32::try_from(m.len()).unwrap_or(i32::MAX));
            buf.put_slice(m);
        }
        None => buf.put_i32(-1),
    }
    Bytes::from(buf)
}

/// Decodes a committed offset; `None` if malformed or of an unknown version.
pub(crate) fn decode_value(mut value: Bytes) -> Option<CommittedOffset> {
    if value.remaining() < 26 || value.get_u16() != VERSION {
        return None;
    }
    let offset = value.get_i64();
    let leader_epoch = value.get_i32();
    let commit_timestamp = value.get_i64();
    let len = value.get_i32();
    let metadata = if len < 0 {
        None
    } else {
        let len = usize::try_from(len).ok()?;
        if value.remaining() != len {
            return None;
        }
        Some(String::from_utf8(value.to_vec()).ok()?)
    };
    Some(CommittedOffset {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp,
    })
}

/// Encodes the key of a group's state record.
pub(crate) fn encode_group_key(group: &str) -> Bytes {
    let mut buf = Vec::with_capacity(4 + group.len());
    buf.put_u16(GROUP_VERSION);
    put_str(&mut buf, group);
    Bytes::from(buf)
}

/// The group of a group-state key; `None` for any other key.
pub(crate) fn decode_group_key(mut key: Bytes) -> Option<String> {
    if key.remaining() < 2 || key.get_u16() != GROUP_VERSION {
        return None;
    }
    let group = get_str(&mut key)?;
    key.is_empty().then_some(group)
}

/// Encodes a group-state value.
pub(crate) fn encode_group_value(json: &[u8]) -> Bytes {
    let mut buf = Vec::with_capacity(2 + json.len());
    buf.put_u16(GROUP_VERSION);
    buf.put_slice(json);
    Bytes::from(buf)
}

/// The JSON of a group-state value; `None` if of another version.
pub(crate) fn decode_group_value(mut value: Bytes) -> Option<Bytes> {
    (value.remaining() >= 2 && value.get_u16() == GROUP_VERSION).then_some(value)
}

/// Encodes the key of an offset pending in producer `producer_id`'s transaction.
pub(crate) fn encode_txn_key(producer_id: i64, group: &str, topic: &str, partition: i32) -> Bytes {
    let mut buf = Vec::with_capacity(18 + group.len() + topic.len());
    buf.put_u16(TXN_VERSION);
    buf.put_i64(producer_id);
    put_str(&mut buf, group);
    put_str(&mut buf, topic);
    buf.put_i32(partition);
    Bytes::from(buf)
}

/// Decodes a pending-transaction key; `None` for any other key.
pub(crate) fn decode_txn_key(mut key: Bytes) -> Option<(i64, String, String, i32)> {
    if key.remaining() < 10 || key.get_u16() != TXN_VERSION {
        return None;
    }
    let producer_id = key.get_i64();
    let group = get_str(&mut key)?;
    let topic = get_str(&mut key)?;
    if key.remaining() != 4 {
        return None;
    }
    Some((producer_id, group, topic, key.get_i32()))
}

/// Applies one replayed pending-transaction record; `false` if the key is not one.
pub(crate) fn apply_txn(
    pending: &mut PendingTxnOffsets,
    key: &Bytes,
    value: Option<Bytes>,
) -> bool {
    let Some((pid, group, topic, partition)) = decode_txn_key(key.clone()) else {
        return false;
    };
    let k = (group, topic, partition);
    match value.and_then(decode_value) {
        Some(v) => {
            pending.entry(pid).or_default().insert(k, v);
        }
        None => {
            if let Some(p) = pending.get_mut(&pid) {
                p.remove(&k);
                if p.is_empty() {
                    pending.remove(&pid);
                }
            }
        }
    }
    true
}

/// Applies one replayed record to the cache.
pub(crate) fn apply(cache: &mut OffsetCache, key: Option<Bytes>, value: Option<Bytes>) {
    let Some((group, topic, partition)) = key.and_then(decode_key) else {
        return;
    };
    match value {
        None => {
            if let Some(g) = cache.get_mut(&group) {
                g.remove(&(topic, partition));
                if g.is_empty() {
                    cache.remove(&group);
                }
            }
        }
        Some(v) => {
            if let Some(offset) = decode_value(v) {
                cache
                    .entry(group)
                    .or_default()
                    .insert((topic, partition), offset);
            }
        }
    }
}

/// A checkpoint of the coordinator's state as of offset `end` of `__consumer_offsets-0`: the
/// records a fully compacted topic would hold below `end` (every committed offset, every live
/// group-state record, every pending transactional offset), in the topic's own encodings.
///
/// File `<data-dir>/metadata/consumer-offsets.checkpoint` (all integers big-endian):
///
/// ```text
/// magic "SOCP" | version:u16 (=1) | topic_id:16 bytes | end:i64 | count:u32
/// | count × (key_len:u32 | key | value_len:u32 | value) | crc32c:u32 of everything before
/// ```
///
/// The topic stays the source of truth: opening loads a checkpoint only if its CRC matches,
/// its topic id is the current topic's and `end` is at most the partition's high watermark,
/// then replays the topic from `end`; otherwise it replays the whole topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    /// Id of the `__consumer_offsets` topic the checkpoint belongs to.
    pub(crate) topic_id: uuid::Uuid,
    /// The first offset not covered.
    pub(crate) end: i64,
    /// `(key, value)` records, no tombstones.
    pub(crate) records: Vec<(Bytes, Bytes)>,
}

/// The checkpoint's file name under `<data-dir>/metadata/`.
pub(crate) const CHECKPOINT_FILE: &str = "consumer-offsets.checkpoint";

const CHECKPOINT_MAGIC: &[u8; 4] = b"SOCP";
const CHECKPOINT_VERSION: u16 = 1;

/// Encodes a checkpoint file.
pub(crate) fn encode_checkpoint(c: &Checkpoint) -> Vec<u8> {
    let size: usize = c.records.iter().map(|(k, v)| 8 + k.len() + v.len()).sum();
    let mut buf = Vec::with_capacity(38 + size);
    buf.put_slice(CHECKPOINT_MAGIC);
    buf.put_u16(CHECKPOINT_VERSION);
    buf.put_slice(c.topic_id.as_bytes());
    buf.put_i64(c.end);
    buf.put_u32(u32::try_from(c.records.len()).unwrap_or(u32::MAX));
    for (k, v) in c.records.iter().take(u32::MAX as usize) {
        buf.put_u32(u32::try_from(k.len()).unwrap_or(u32::MAX));
        buf.put_slice(k);
        buf.put_u32(u32::try_from(v.len()).unwrap_or(u32::MAX));
        buf.put_slice(v);
    }
    let crc = crc32c::crc32c(&buf);
    buf.put_u32(crc);
    buf
}

/// Decodes a checkpoint file; `None` if it is damaged or of another version.
pub(crate) fn decode_checkpoint(bytes: &[u8]) -> Option<Checkpoint> {
    let (body, crc) = bytes.split_at_checked(bytes.len().checked_sub(4)?)?;
    if crc32c::crc32c(body) != u32::from_be_bytes(crc.try_into().ok()?) {
        return None;
    }
    let mut buf = Bytes::copy_from_slice(body);
    if buf.remaining() < 34 || &buf.split_to(4)[..] != CHECKPOINT_MAGIC {
        return None;
    }
    if buf.get_u16() != CHECKPOINT_VERSION {
        return None;
    }
    let topic_id = uuid::Uuid::from_slice(&buf.split_to(16)).ok()?;
    let end = buf.get_i64();
    let count = buf.get_u32() as usize;
    let mut records = Vec::with_capacity(count.min(buf.remaining() / 8));
    for _ in 0..count {
        let mut field = || {
            if buf.remaining() < 4 {
                return None;
            }
            let len = buf.get_u32() as usize;
            (buf.remaining() >= len).then(|| buf.split_to(len))
        };
        let key = field()?;
        let value = field()?;
        records.push((key, value));
    }
    buf.is_empty().then_some(Checkpoint {
        topic_id,
        end,
        records,
    })
}

/// The topics of a classic member's `consumer` protocol subscription (Kafka's
/// `ConsumerProtocolSubscription`, versions 0–3: `version:i16 | topics:[string]` first, the
/// rest ignored); `None` if the bytes are not one.
pub(crate) fn subscribed_topics(metadata: &[u8]) -> Option<Vec<String>> {
    let mut buf = Bytes::copy_from_slice(metadata);
    if buf.remaining() < 6 || !(0..=3).contains(&buf.get_i16()) {
        return None;
    }
    let count = usize::try_from(buf.get_i32()).ok()?;
    let mut topics = Vec::with_capacity(count.min(buf.remaining() / 2));
    for _ in 0..count {
        topics.push(get_str(&mut buf)?);
    }
    Some(topics)
}

/// What offset expiry knows of a group's membership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Membership {
    /// No group state: offsets of a standalone consumer (assign + commit).
    Standalone,
    /// A group without members since `since` (`None`: unknown, e.g. restored after a restart).
    Empty {
        /// When it lost its last member.
        since: Option<i64>,
    },
    /// A group with members, subscribed to these topics (`None`: not known, e.g. a classic
    /// group, whose subscriptions are opaque to the coordinator, or a regex subscription).
    Active {
        /// The union of the members' subscribed topic names.
        subscribed: Option<BTreeSet<String>>,
    },
}

/// The offsets of one group that have expired at `now` under `offsets.retention.ms`
/// `retention_ms`, with Kafka's rules (`GroupMetadata.removeExpiredOffsets`):
///
/// - a standalone committer's offset expires `retention_ms` after its commit;
/// - an empty group's offsets expire `retention_ms` after it became empty (never earlier than
///   `retention_ms` after their own commit, so an offset committed to an already-empty group
///   keeps its full retention); with the time unknown, after their commit;
/// - a group with members keeps the offsets of topics it subscribes to; those of other topics
///   expire `retention_ms` after their commit (KIP-496), when the subscriptions are known.
pub(crate) fn expired(
    offsets: &BTreeMap<(String, i32), CommittedOffset>,
    membership: &Membership,
    now: i64,
    retention_ms: i64,
) -> Vec<(String, i32)> {
    let due = |base: i64| base.saturating_add(retention_ms) <= now;
    offsets
        .iter()
        .filter(|((topic, _), o)| match membership {
            Membership::Standalone => due(o.commit_timestamp),
            Membership::Empty { since } => {
                due(since.map_or(o.commit_timestamp, |s| s.max(o.commit_timestamp)))
            }
            Membership::Active {
                subscribed: Some(topics),
            } => !topics.contains(topic) && due(o.commit_timestamp),
            Membership::Active { subscribed: None } => false,
        })
        .map(|(tp, _)| tp.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_round_trips_and_damage_is_refused() {
        let c = Checkpoint {
            topic_id: uuid::Uuid::new_v4(),
            end: 1_000_000,
            records: vec![
                (encode_key("g", "t", 0), Bytes::from_static(b"v")),
                (encode_group_key("g"), Bytes::new()),
            ],
        };
        let bytes = encode_checkpoint(&c);
        assert_eq!(decode_checkpoint(&bytes), Some(c.clone()));
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert_eq!(decode_checkpoint(&bad), None, "flip at {i}");
        }
        for len in 0..bytes.len() {
            assert_eq!(decode_checkpoint(&bytes[..len]), None, "cut at {len}");
        }
    }

    #[test]
    fn consumer_protocol_subscriptions_parse() {
        let mut v1 = Vec::new();
        v1.put_i16(1);
        v1.put_i32(2);
        for t in ["a", "bc"] {
            v1.put_u16(t.len() as u16);
            v1.put_slice(t.as_bytes());
        }
        v1.put_i32(-1); // user data: null
        v1.put_i32(0); // owned partitions
        assert_eq!(
            subscribed_topics(&v1),
            Some(vec!["a".to_owned(), "bc".to_owned()])
        );
        assert_eq!(subscribed_topics(&v1[..8]), None);
        assert_eq!(subscribed_topics(b"sub"), None);
        let mut future = v1.clone();
        future[1] = 9;
        assert_eq!(subscribed_topics(&future), None);
    }

    #[test]
    fn expiry_follows_kafkas_rules() {
        let at = |ts: i64| CommittedOffset {
            offset: 1,
            leader_epoch: -1,
            metadata: None,
            commit_timestamp: ts,
        };
        let offsets: BTreeMap<(String, i32), CommittedOffset> = BTreeMap::from([
            (("a".to_owned(), 0), at(100)),
            (("b".to_owned(), 0), at(500)),
        ]);
        let names = |v: Vec<(String, i32)>| v.into_iter().map(|(t, _)| t).collect::<Vec<_>>();
        let run = |m: &Membership, now| names(expired(&offsets, m, now, 1000));
        // Standalone: by commit time, each on its own.
        assert!(run(&Membership::Standalone, 1099).is_empty());
        assert_eq!(run(&Membership::Standalone, 1100), ["a"]);
        assert_eq!(run(&Membership::Standalone, 1500), ["a", "b"]);
        // Empty since 700: nothing before 1700, then everything.
        let empty = Membership::Empty { since: Some(700) };
        assert!(run(&empty, 1699).is_empty());
        assert_eq!(run(&empty, 1700), ["a", "b"]);
        // An offset committed after the group emptied keeps its own full retention.
        let early = Membership::Empty { since: Some(200) };
        assert_eq!(run(&early, 1200), ["a"]);
        // Unknown empty time: by commit time.
        assert_eq!(run(&Membership::Empty { since: None }, 1100), ["a"]);
        // Members subscribed to "b": only "a" can expire (KIP-496), by commit time.
        let active = Membership::Active {
            subscribed: Some(BTreeSet::from(["b".to_owned()])),
        };
        assert!(run(&active, 1099).is_empty());
        assert_eq!(run(&active, 1_000_000), ["a"]);
        // Unknown subscriptions: nothing expires while there are members.
        assert!(run(&Membership::Active { subscribed: None }, i64::MAX).is_empty());
        // No overflow at the edges.
        assert!(names(expired(&offsets, &Membership::Standalone, 0, i64::MAX)).is_empty());
    }

    #[test]
    fn key_and_value_round_trip() {
        let key = encode_key("g", "topic", 7);
        assert_eq!(decode_key(key), Some(("g".into(), "topic".into(), 7)));
        for metadata in [None, Some(String::new()), Some("meta".to_owned())] {
            let v = CommittedOffset {
                offset: 42,
                leader_epoch: 3,
                metadata,
                commit_timestamp: 1_700_000_000_000,
            };
            assert_eq!(decode_value(encode_value(&v)), Some(v));
        }
        assert_eq!(decode_key(Bytes::from_static(b"\0\x02xx")), None);
        assert_eq!(
            decode_group_key(encode_group_key("grp")),
            Some("grp".into())
        );
        assert_eq!(decode_group_key(encode_key("g", "t", 0)), None);
        assert_eq!(decode_key(encode_group_key("grp")), None);
        let v = decode_group_value(encode_group_value(b"{}"));
        assert_eq!(v.as_deref(), Some(&b"{}"[..]));
        assert_eq!(decode_value(Bytes::from_static(b"\0\x01")), None);
    }

    #[test]
    fn pending_transaction_offsets_replay_and_are_distinct_keys() {
        let key = encode_txn_key(9, "g", "t", 2);
        assert_eq!(
            decode_txn_key(key.clone()),
            Some((9, "g".into(), "t".into(), 2))
        );
        assert_eq!(decode_key(key.clone()), None);
        assert_eq!(decode_txn_key(encode_key("g", "t", 2)), None);
        let v = CommittedOffset {
            offset: 5,
            leader_epoch: -1,
            metadata: None,
            commit_timestamp: 0,
        };
        let mut pending = PendingTxnOffsets::new();
        assert!(apply_txn(&mut pending, &key, Some(encode_value(&v))));
        assert_eq!(pending[&9][&("g".into(), "t".into(), 2)], v);
        assert!(apply_txn(&mut pending, &key, None));
        assert!(pending.is_empty());
        assert!(!apply_txn(&mut pending, &encode_key("g", "t", 2), None));
    }

    #[test]
    fn tombstone_removes() {
        let mut cache = OffsetCache::new();
        let v = CommittedOffset {
            offset: 1,
            leader_epoch: -1,
            metadata: None,
            commit_timestamp: 0,
        };
        apply(
            &mut cache,
            Some(encode_key("g", "t", 0)),
            Some(encode_value(&v)),
        );
        assert_eq!(cache["g"][&("t".to_owned(), 0)], v);
        apply(&mut cache, Some(encode_key("g", "t", 0)), None);
        assert!(cache.is_empty());
    }
}
