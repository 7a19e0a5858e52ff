//! The broker-wide durability coordinator: one commit window for every partition.
//!
//! Under `strom.fsync=always` (`FsyncPolicy::Always`) a produce request touching six partitions
//! used to make six partition logs run six independent group commits, each `fdatasync`ing its
//! own segment whenever its append finished. Staggered like that, each sync forces its own
//! file-system journal commit and the device serialises them. Every partition of the broker
//! now joins one [`SyncGroup`]: appends that finish while a window is syncing form the next
//! window, whose segment files are `fdatasync`ed at the same time (by the appenders waiting
//! on it), so one commit round covers every partition written in the window. A partition's
//! high watermark moves, and its appenders are answered, only after the sync of its own file
//! in a window that started after their write returned, so the contract is unchanged.
//! Kafka Produce and Kinesis PutRecords both share the windows; a PutRecords writes all its
//! shards before any of them waits, so its shards are synced in one window. Policies other
//! than `Always` do not use the group.

use strom_log::{PartitionLog, SyncGroup};

/// The broker's commit window (see the module docs). Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Durability {
    group: SyncGroup,
}

impl Durability {
    /// A coordinator with no windows yet.
    pub fn new() -> Durability {
        Durability::default()
    }

    /// Makes `log`'s `Always` appends sync in this broker's windows.
    pub(crate) fn enroll(&self, log: &PartitionLog) {
        log.join_sync_group(self.group.clone());
    }

    /// Commit windows completed since the broker started.
    pub fn window_count(&self) -> u64 {
        self.group.window_count()
    }

    /// `fdatasync` calls made by the windows since the broker started.
    pub fn sync_count(&self) -> u64 {
        self.group.sync_count()
    }
}
