//! A bounded in-memory cache of object byte ranges, least recently used first out.
//!
//! Keys are `(object key, byte offset, length)` of one batch: batches are immutable once
//! committed, so an entry never goes stale; it only leaves when the cache is over its byte budget.
//! The writer inserts the batches it just committed (so consumers at the tail of a partition are
//! served from memory on the broker that wrote them), and the reader inserts what it fetched (so
//! a second consumer catching up does not download again). The byte count is the sum of the
//! entries' lengths; entries cut from one downloaded range share its buffer, so memory can briefly
//! exceed the budget by at most one range per partial eviction.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use bytes::Bytes;

/// Where one batch lives in an object.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RangeKey {
    /// Object key.
    pub object: String,
    /// Byte offset in the object.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<RangeKey, (Bytes, u64)>,
    /// Use tick → key; the smallest tick is the least recently used.
    order: BTreeMap<u64, RangeKey>,
    tick: u64,
    bytes: u64,
    hits: u64,
    misses: u64,
}

/// LRU cache of batch bytes bounded by total length.
#[derive(Debug)]
pub struct ObjectCache {
    capacity: u64,
    inner: Mutex<Inner>,
}

/// Hit and size counters of an [`ObjectCache`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    /// Bytes held.
    pub bytes: u64,
    /// Entries held.
    pub entries: usize,
    /// Lookups answered from memory.
    pub hits: u64,
    /// Lookups that had to download.
    pub misses: u64,
}

impl ObjectCache {
    /// A cache that holds at most `capacity` bytes.
    pub fn new(capacity: u64) -> Self {
        ObjectCache {
            capacity,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves counters at worst slightly off; keep serving.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The bytes of `key`, marking it recently used.
    pub fn get(&self, key: &RangeKey) -> Option<Bytes> {
        let mut inner = self.lock();
        inner.tick += 1;
        let tick = inner.tick;
        let Some((bytes, used)) = inner.entries.get_mut(key) else {
            inner.misses += 1;
            return None;
        };
        let old = std::mem::replace(used, tick);
        let bytes = bytes.clone();
        inner.order.remove(&old);
        inner.order.insert(tick, key.clone());
        inner.hits += 1;
        Some(bytes)
    }

    /// Adds an entry, evicting the least recently used ones beyond the capacity. An entry larger
    /// than the whole capacity is not kept.
    pub fn insert(&self, key: RangeKey, bytes: Bytes) {
        let len = bytes.len() as u64;
        if len > self.capacity {
            return;
        }
        let mut inner = self.lock();
        inner.tick += 1;
        let tick = inner.tick;
        if let Some((old, used)) = inner.entries.insert(key.clone(), (bytes, tick)) {
            inner.order.remove(&used);
            inner.bytes -= old.len() as u64;
        }
        inner.order.insert(tick, key);
        inner.bytes += len;
        while inner.bytes > self.capacity {
            let Some((_, victim)) = inner.order.pop_first() else {
                break;
            };
            if let Some((old, _)) = inner.entries.remove(&victim) {
                inner.bytes -= old.len() as u64;
            }
        }
    }

    /// Current counters.
    pub fn stats(&self) -> CacheStats {
        let inner = self.lock();
        CacheStats {
            bytes: inner.bytes,
            entries: inner.entries.len(),
            hits: inner.hits,
            misses: inner.misses,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(i: u64) -> RangeKey {
        RangeKey {
            object: "o".into(),
            offset: i,
            len: 1,
        }
    }

    #[test]
    fn evicts_least_recently_used() {
        let cache = ObjectCache::new(10);
        cache.insert(key(1), Bytes::from(vec![0; 4]));
        cache.insert(key(2), Bytes::from(vec![0; 4]));
        assert!(cache.get(&key(1)).is_some());
        cache.insert(key(3), Bytes::from(vec![0; 4]));
        assert!(cache.get(&key(2)).is_none(), "2 was least recently used");
        assert!(cache.get(&key(1)).is_some());
        assert!(cache.get(&key(3)).is_some());
        assert_eq!(cache.stats().bytes, 8);
        cache.insert(key(4), Bytes::from(vec![0; 11]));
        assert!(cache.get(&key(4)).is_none(), "larger than the cache");
    }

    proptest! {
        #[test]
        fn never_exceeds_capacity_and_counts_exactly(
            ops in proptest::collection::vec((0u64..20, 0usize..9, any::<bool>()), 0..200)
        ) {
            let cache = ObjectCache::new(32);
            for (k, len, is_get) in ops {
                if is_get {
                    if let Some(b) = cache.get(&key(k)) {
                        prop_assert!(b.iter().all(|x| *x == k as u8));
                    }
                } else {
                    cache.insert(key(k), Bytes::from(vec![k as u8; len]));
                }
                let inner = cache.lock();
                let sum: u64 = inner.entries.values().map(|(b, _)| b.len() as u64).sum();
                prop_assert_eq!(sum, inner.bytes);
                prop_assert!(inner.bytes <= 32);
                prop_assert_eq!(inner.order.len(), inner.entries.len());
            }
        }
    }
}
