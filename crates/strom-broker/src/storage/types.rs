//! Typed numbers and small value types of the storage seam.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use crate::AppendInfo;

/// An offset in a partition (Kafka's 64-bit record offset).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Offset(pub i64);

/// A partition's index within its topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PartitionIndex(pub i32);

/// A producer id (idempotent and transactional producers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ProducerId(pub i64);

impl From<i64> for Offset {
    fn from(v: i64) -> Self {
        Offset(v)
    }
}

impl From<Offset> for i64 {
    fn from(v: Offset) -> Self {
        v.0
    }
}

impl From<i32> for PartitionIndex {
    fn from(v: i32) -> Self {
        PartitionIndex(v)
    }
}

impl From<PartitionIndex> for i32 {
    fn from(v: PartitionIndex) -> Self {
        v.0
    }
}

impl From<i64> for ProducerId {
    fn from(v: i64) -> Self {
        ProducerId(v)
    }
}

impl From<ProducerId> for i64 {
    fn from(v: ProducerId) -> Self {
        v.0
    }
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for PartitionIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for ProducerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Names one partition for a [`crate::storage::StorageBackend`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicPartition<'a> {
    /// The topic's name.
    pub topic: &'a str,
    /// The partition's index.
    pub index: PartitionIndex,
}

/// A write made by [`crate::storage::PartitionStore::append_deferred`]: offsets assigned, not
/// yet as durable as the partition's policy promises. Hand it back to the same store's
/// [`await_durable`](crate::storage::PartitionStore::await_durable) before acknowledging.
///
/// The backend keeps what it needs to wait in [`PendingWrite::instance`], a reference-counted
/// handle it already holds (the local backend: the log instance written to, so a write that
/// healing moved away from is not acknowledged), so no allocation is made per append. The
/// local backend also keeps its own pending append (its commit-window ticket) inline.
#[derive(Debug)]
#[must_use = "an append is not acknowledged until await_durable returns"]
pub struct PendingWrite {
    /// What the append assigned (offsets, timestamps): not yet an acknowledgement.
    pub info: AppendInfo,
    /// The offset just past the write.
    pub end: Offset,
    /// The backend's handle on the storage instance written to.
    pub instance: Arc<dyn Any + Send + Sync>,
    /// The local backend's pending append; `None` for every other backend.
    pub(crate) local: Option<strom_log::PendingAppend>,
}

impl PendingWrite {
    /// A pending write of a backend other than the local one.
    pub fn new(info: AppendInfo, end: Offset, instance: Arc<dyn Any + Send + Sync>) -> Self {
        PendingWrite {
            info,
            end,
            instance,
            local: None,
        }
    }

    /// What the append assigned.
    pub fn info(&self) -> &AppendInfo {
        &self.info
    }
}
