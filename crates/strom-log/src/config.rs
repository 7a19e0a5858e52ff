//! Per-partition settings, named after Kafka's topic configs.

use std::time::Duration;

use strom_record::TimestampType;

/// When appended data is forced to stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FsyncPolicy {
    /// `fdatasync` before an append returns; concurrent appends share one sync (group commit).
    /// Readers see only synced data. An acknowledged write survives power loss.
    #[default]
    Always,
    /// `fdatasync` at most this long after a write (checked on append and by [`flush`] calls
    /// from the owner's timer). Survives process crashes; power loss can lose the last interval.
    ///
    /// [`flush`]: crate::PartitionLog::flush
    Interval(Duration),
    /// Never sync on the write path (segments are still synced when they are rolled and on
    /// close). Survives process crashes (the page cache keeps the data); power loss can lose
    /// everything since the last roll.
    Never,
}

/// `cleanup.policy`: what happens to old data. Kafka's `delete`, `compact` or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CleanupPolicy {
    /// `delete`: time and size retention ([`LogConfig::retention_ms`],
    /// [`LogConfig::retention_bytes`]) delete old segments.
    pub delete: bool,
    /// `compact`: the cleaner keeps only the latest record of each key
    /// ([`crate::PartitionLog::clean`]).
    pub compact: bool,
}

impl Default for CleanupPolicy {
    /// Kafka's default, `delete` only.
    fn default() -> Self {
        CleanupPolicy {
            delete: true,
            compact: false,
        }
    }
}

/// Kafka's default `delete.retention.ms`: one day.
pub const DEFAULT_DELETE_RETENTION_MS: i64 = 24 * 60 * 60 * 1000;

/// Kafka's default `min.cleanable.dirty.ratio`.
pub const DEFAULT_MIN_CLEANABLE_DIRTY_RATIO: f64 = 0.5;

/// Settings of one partition log. Field docs name the Kafka topic config each one mirrors.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// `segment.bytes`: roll to a new segment when the active one would exceed this. Capped at
    /// `i32::MAX` because positions in the index are 32-bit.
    pub segment_bytes: u64,
    /// `segment.ms`: roll a non-empty segment this long after its first append. `None`: never.
    pub segment_ms: Option<i64>,
    /// `retention.ms`: delete segments whose newest record is older. `None` (-1): keep forever.
    pub retention_ms: Option<i64>,
    /// `retention.bytes`: delete oldest segments while the log is larger. `None` (-1): no limit.
    pub retention_bytes: Option<u64>,
    /// `max.message.bytes`: largest accepted batch, header included.
    pub max_message_bytes: usize,
    /// `index.interval.bytes`: bytes of log between two sparse index entries.
    pub index_interval_bytes: u32,
    /// `message.timestamp.type`: keep producer timestamps or stamp the append time.
    pub timestamp_type: TimestampType,
    /// Durability policy (Strom's `flush` setting; see [`FsyncPolicy`]).
    pub fsync: FsyncPolicy,
    /// `segment.preallocate`: reserve `segment_bytes` of disk when a segment is created.
    pub preallocate: bool,
    /// `producer.id.expiration.ms`: forget an idempotent producer whose last batch is older.
    pub producer_id_expiration_ms: i64,
    /// `cleanup.policy`: retention applies only with `delete`, compaction only with `compact`.
    pub cleanup: CleanupPolicy,
    /// `delete.retention.ms`: how long the cleaner keeps a tombstone (and an empty
    /// transaction's marker) once it could remove it; see [`crate::PartitionLog::clean`].
    pub delete_retention_ms: i64,
    /// `min.compaction.lag.ms`: a segment whose newest record is younger is not cleaned yet.
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`: a dirty record older than this makes the log due for cleaning
    /// whatever its dirty ratio ([`crate::CleanableInfo::must_clean`]); the active segment of a
    /// compacted log rolls at least this often.
    pub max_compaction_lag_ms: i64,
    /// `min.cleanable.dirty.ratio`: the dirty share of the cleanable bytes above which the
    /// cleaner picks the log (the broker's scheduler reads it; the log does not).
    pub min_cleanable_dirty_ratio: f64,
    /// `message.timestamp.before.max.ms` (KIP-937): with `CreateTime`, refuse a batch whose
    /// first timestamp is more than this far behind the broker's clock.
    pub timestamp_before_max_ms: i64,
    /// `message.timestamp.after.max.ms` (KIP-937): with `CreateTime`, refuse a batch whose
    /// largest timestamp is more than this far ahead of the broker's clock.
    pub timestamp_after_max_ms: i64,
}

/// One week in milliseconds: Kafka's default `retention.ms` and `segment.ms`.
pub const ONE_WEEK_MS: i64 = 7 * 24 * 60 * 60 * 1000;

/// Kafka 4's default `message.timestamp.after.max.ms`: one hour.
pub const DEFAULT_TIMESTAMP_AFTER_MAX_MS: i64 = 60 * 60 * 1000;

/// Kafka's default `producer.id.expiration.ms`: one day.
pub const DEFAULT_PRODUCER_ID_EXPIRATION_MS: i64 = 24 * 60 * 60 * 1000;

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: Some(ONE_WEEK_MS),
            retention_ms: Some(ONE_WEEK_MS),
            retention_bytes: None,
            max_message_bytes: 1_048_588,
            index_interval_bytes: 4096,
            timestamp_type: TimestampType::CreateTime,
            fsync: FsyncPolicy::Always,
            preallocate: false,
            producer_id_expiration_ms: DEFAULT_PRODUCER_ID_EXPIRATION_MS,
            cleanup: CleanupPolicy::default(),
            delete_retention_ms: DEFAULT_DELETE_RETENTION_MS,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            min_cleanable_dirty_ratio: DEFAULT_MIN_CLEANABLE_DIRTY_RATIO,
            timestamp_before_max_ms: i64::MAX,
            timestamp_after_max_ms: DEFAULT_TIMESTAMP_AFTER_MAX_MS,
        }
    }
}

impl LogConfig {
    /// The segment size limit actually used: `segment_bytes` clamped to what 32-bit index
    /// positions can address, and to at least one header.
    pub(crate) fn effective_segment_bytes(&self) -> u64 {
        self.segment_bytes
            .clamp(strom_record::HEADER_LEN as u64, i32::MAX as u64)
    }

    /// The age at which the active segment rolls: `segment.ms`, or for a compacted log
    /// `max.compaction.lag.ms` if smaller (as Kafka does), so its data becomes cleanable.
    pub(crate) fn effective_segment_ms(&self) -> Option<i64> {
        let lag = (self.cleanup.compact
            && self.max_compaction_lag_ms > 0
            && self.max_compaction_lag_ms < i64::MAX)
            .then_some(self.max_compaction_lag_ms);
        match (self.segment_ms, lag) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}
