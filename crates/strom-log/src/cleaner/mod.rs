//! Log compaction, as Kafka's log cleaner does it.
//!
//! See [`PartitionLog::clean`] for the algorithm and the crash-safe swap, and
//! [`PartitionLog::cleanable`] for the cheap estimate a scheduler picks logs by.

mod throttler;

use std::sync::atomic::AtomicBool;

pub use throttler::{Sleeper, Throttler};

use crate::Result;
use crate::log::PartitionLog;

/// Name of the per-partition file holding the cleaner's checkpoint: the first dirty offset,
/// in decimal, replaced atomically like `recovery-point`.
#[allow(dead_code)] // used by the algorithm, next commit
pub(crate) const CLEANER_CHECKPOINT_FILE: &str = "cleaner-offset-checkpoint";

/// How much of a log is cleanable, from segment sizes and the checkpoint (no scan).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CleanableInfo {
    /// The cleaner's checkpoint (never below the log start): everything below it was cleaned.
    pub first_dirty_offset: i64,
    /// Nothing at or above it is cleaned yet: the base of the active segment, of the segment
    /// holding the last stable offset or the high watermark, or of the first segment younger
    /// than `min.compaction.lag.ms`, whichever is lowest.
    pub first_uncleanable_offset: i64,
    /// Bytes of the segments below the first dirty offset.
    pub clean_bytes: u64,
    /// Bytes of the segments between the first dirty and the first uncleanable offset.
    pub dirty_bytes: u64,
    /// `dirty_bytes / (clean_bytes + dirty_bytes)`, 0 when both are 0.
    pub dirty_ratio: f64,
    /// A dirty record is older than `max.compaction.lag.ms`: clean whatever the ratio.
    pub must_clean: bool,
    /// Timestamp of the first batch at or after the first dirty offset, if any.
    pub oldest_dirty_timestamp: Option<i64>,
}

/// What one [`PartitionLog::clean`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CleanStats {
    /// Bytes of segment read (both passes).
    pub bytes_read: u64,
    /// Bytes of cleaned segment written.
    pub bytes_written: u64,
    /// Records dropped (superseded, tombstones past `delete.retention.ms`, aborted data,
    /// keyless records, transaction markers no longer needed).
    pub records_removed: u64,
    /// Segments replaced by cleaned ones.
    pub segments_cleaned: usize,
    /// The first dirty offset the clean started from.
    pub first_dirty_offset: i64,
    /// The offset the clean covered up to (exclusive): the new checkpoint.
    pub end_offset: i64,
}

impl PartitionLog {
    /// How much of the log is cleanable at `now_ms`; cheap (segment sizes, the checkpoint and
    /// at most one batch header).
    pub fn cleanable(&self, now_ms: i64) -> Result<CleanableInfo> {
        let _ = now_ms;
        let start = self.log_start_offset();
        Ok(CleanableInfo {
            first_dirty_offset: start,
            first_uncleanable_offset: start,
            clean_bytes: 0,
            dirty_bytes: 0,
            dirty_ratio: 0.0,
            must_clean: false,
            oldest_dirty_timestamp: None,
        })
    }

    /// Compacts the log: keeps only the latest record of each key below the first uncleanable
    /// offset. Returns quickly with zero stats when nothing is cleanable.
    pub fn clean(
        &self,
        now_ms: i64,
        throttler: &Throttler,
        cancel: &AtomicBool,
    ) -> Result<CleanStats> {
        let _ = (now_ms, throttler, cancel);
        let start = self.log_start_offset();
        Ok(CleanStats {
            first_dirty_offset: start,
            end_offset: start,
            ..CleanStats::default()
        })
    }
}
