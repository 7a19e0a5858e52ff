//! The resharding fence: one async read/write lock per stream (topic id).
//!
//! `PutRecord(s)` hold the read side from routing a record to a shard until its append has
//! returned; resharding holds the write side while it fixes the parents' end offsets and adds
//! the children. So a put either finishes before a parent's end is fixed (and its records are
//! below that end) or routes against the new shard list (and never picks the closed parent):
//! no record Kinesis acknowledged lands on a closed parent past its end.
//!
//! Entries are weak: a stream nobody is writing to or resharding holds no lock, and dead
//! entries are dropped once the table grows past [`PRUNE_AT`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock};
use uuid::Uuid;

/// Table size above which dead entries are dropped on the next lookup.
const PRUNE_AT: usize = 1024;

/// Per-stream resharding locks.
#[derive(Debug, Default)]
pub struct ReshardFence {
    locks: Mutex<HashMap<Uuid, Weak<RwLock<()>>>>,
}

impl ReshardFence {
    fn lock_for(&self, topic_id: Uuid) -> Arc<RwLock<()>> {
        let mut table = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(lock) = table.get(&topic_id).and_then(Weak::upgrade) {
            return lock;
        }
        if table.len() >= PRUNE_AT {
            table.retain(|_, w| w.strong_count() > 0);
        }
        let lock = Arc::new(RwLock::new(()));
        table.insert(topic_id, Arc::downgrade(&lock));
        lock
    }

    /// Held by a put from routing to the end of its append.
    pub async fn put(&self, topic_id: Uuid) -> OwnedRwLockReadGuard<()> {
        self.lock_for(topic_id).read_owned().await
    }

    /// Held by a reshard while it closes parents and adds children.
    pub async fn reshard(&self, topic_id: Uuid) -> OwnedRwLockWriteGuard<()> {
        self.lock_for(topic_id).write_owned().await
    }

    /// Live entries (for tests).
    #[cfg(test)]
    fn live(&self) -> usize {
        self.locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .filter(|w| w.strong_count() > 0)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_reshard_waits_for_puts_and_puts_wait_for_a_reshard() {
        let fence = Arc::new(ReshardFence::default());
        let id = Uuid::new_v4();
        let put = fence.put(id).await;
        let f = Arc::clone(&fence);
        let reshard = tokio::spawn(async move {
            let _w = f.reshard(id).await;
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!reshard.is_finished(), "the reshard waits for the put");
        drop(put);
        reshard.await.unwrap();

        let w = fence.reshard(id).await;
        let f = Arc::clone(&fence);
        let put = tokio::spawn(async move {
            let _r = f.put(id).await;
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!put.is_finished(), "a put waits for the reshard");
        drop(w);
        put.await.unwrap();
        // Another stream is not affected, and unused locks are not kept.
        let _other = fence.reshard(Uuid::new_v4()).await;
        assert_eq!(fence.live(), 1);
    }
}
