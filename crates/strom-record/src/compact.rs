//! The record-level rules of log compaction, shared by the single-node cleaner (`strom-log`)
//! and cluster mode's compaction job (`strom-cluster`): the key → latest offset map of the
//! dirty range, and what happens to one record. Pure: the callers read and write the bytes
//! (with [`crate::retain_records`]) and decide which range is dirty.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

/// The key → latest offset map of a clean's dirty range. Keys are stored as 128-bit hashes
/// (two SipHash passes with different prefixes), as Kafka stores MD5 digests: a collision would
/// need about 2^64 keys.
#[derive(Debug, Default, Clone)]
pub struct OffsetMap {
    latest: HashMap<u128, i64>,
}

fn key_hash(key: &[u8]) -> u128 {
    let half = |salt: u8| {
        let mut h = std::hash::DefaultHasher::new();
        salt.hash(&mut h);
        key.hash(&mut h);
        h.finish()
    };
    (u128::from(half(0)) << 64) | u128::from(half(1))
}

impl OffsetMap {
    /// Notes a record of `key` at `offset` (the map keeps the largest offset per key).
    pub fn put(&mut self, key: &[u8], offset: i64) {
        let slot = self.latest.entry(key_hash(key)).or_insert(offset);
        *slot = (*slot).max(offset);
    }

    /// Whether a later record of `key` than `offset` is in the map.
    pub fn superseded(&self, key: &[u8], offset: i64) -> bool {
        self.latest
            .get(&key_hash(key))
            .is_some_and(|&latest| latest > offset)
    }

    /// Keys in the map.
    pub fn len(&self) -> usize {
        self.latest.len()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.latest.is_empty()
    }
}

/// What the rules decide for one data record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The record goes.
    Remove,
    /// The record stays.
    Keep,
    /// The record stays and is a tombstone: the caller notes when it expires (its batch's max
    /// timestamp plus `delete.retention.ms`) so a clean is due then.
    KeepTombstone,
}

/// Kafka's rules for one data record under compaction (not for records of aborted
/// transactions or control batches, which the caller handles).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactionRules {
    /// The clean's "now", in milliseconds since the epoch.
    pub now_ms: i64,
    /// `delete.retention.ms`.
    pub delete_retention_ms: i64,
}

impl CompactionRules {
    /// Whether a tombstone in a batch whose max timestamp is `batch_max_timestamp` may go.
    pub fn tombstone_expired(&self, batch_max_timestamp: i64) -> bool {
        self.now_ms.saturating_sub(batch_max_timestamp) >= self.delete_retention_ms
    }

    /// The verdict for a record at `offset` with `key` (`None`: keyless) whose value is null
    /// or not, in a batch whose max timestamp is `batch_max_timestamp`: keyless records go
    /// (produced before compaction was enabled, as in Kafka), records with a later one of
    /// their key in `map` go, tombstones go once [`Self::tombstone_expired`].
    pub fn verdict(
        &self,
        map: &OffsetMap,
        key: Option<&[u8]>,
        offset: i64,
        value_is_null: bool,
        batch_max_timestamp: i64,
    ) -> Verdict {
        let Some(key) = key else {
            return Verdict::Remove;
        };
        if map.superseded(key, offset) {
            return Verdict::Remove;
        }
        if value_is_null {
            if self.tombstone_expired(batch_max_timestamp) {
                return Verdict::Remove;
            }
            return Verdict::KeepTombstone;
        }
        Verdict::Keep
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_as_kafka() {
        let mut map = OffsetMap::default();
        map.put(b"a", 5);
        map.put(b"a", 3);
        map.put(b"b", 7);
        assert_eq!(map.len(), 2);
        assert!(map.superseded(b"a", 4) && !map.superseded(b"a", 5) && !map.superseded(b"c", 0));
        let rules = CompactionRules {
            now_ms: 1_000,
            delete_retention_ms: 100,
        };
        let v = |key: Option<&[u8]>, offset, null, ts| rules.verdict(&map, key, offset, null, ts);
        assert_eq!(v(None, 9, false, 1_000), Verdict::Remove);
        assert_eq!(v(Some(b"a"), 4, false, 1_000), Verdict::Remove);
        assert_eq!(v(Some(b"a"), 5, false, 0), Verdict::Keep);
        assert_eq!(v(Some(b"c"), 1, true, 950), Verdict::KeepTombstone);
        assert_eq!(v(Some(b"c"), 1, true, 900), Verdict::Remove);
    }
}
