//! TEMPORARY shim of the cleaner API contract (h-clean-log owns the real one): the types and
//! signatures only, cleaning nothing, so the broker's wiring compiles. Dropped when h-clean-log
//! is merged.

use std::sync::atomic::AtomicBool;

use crate::PartitionLog;
use crate::error::Result;

/// A shared byte-rate limiter for cleaner threads (shim: never sleeps).
#[derive(Debug)]
pub struct Throttler {
    bytes_per_sec: Option<u64>,
}

impl Throttler {
    /// A limiter of `bytes_per_sec` (`None`: unlimited).
    pub fn new(bytes_per_sec: Option<u64>) -> Throttler {
        Throttler { bytes_per_sec }
    }

    /// Accounts for `bytes` of I/O, sleeping as needed (shim: never sleeps).
    pub fn consume(&self, bytes: u64) {
        let _ = (self.bytes_per_sec, bytes);
    }
}

/// What the cleaner could do on a partition now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CleanableInfo {
    /// First offset not yet cleaned.
    pub first_dirty_offset: i64,
    /// First offset the cleaner may not touch yet.
    pub first_uncleanable_offset: i64,
    /// Bytes of already-cleaned segments.
    pub clean_bytes: u64,
    /// Bytes of cleanable dirty segments.
    pub dirty_bytes: u64,
    /// `dirty_bytes / (clean_bytes + dirty_bytes)`.
    pub dirty_ratio: f64,
    /// A dirty record is older than `max.compaction.lag.ms`.
    pub must_clean: bool,
    /// Timestamp of the oldest dirty record.
    pub oldest_dirty_timestamp: Option<i64>,
}

/// What one clean did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CleanStats {
    /// Bytes read.
    pub bytes_read: u64,
    /// Bytes written.
    pub bytes_written: u64,
    /// Records dropped.
    pub records_removed: u64,
    /// Segments rewritten.
    pub segments_cleaned: usize,
    /// The checkpoint before the clean.
    pub first_dirty_offset: i64,
    /// The offset the clean reached (the new checkpoint).
    pub end_offset: i64,
}

impl PartitionLog {
    /// What is cleanable now (shim: nothing).
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

    /// Cleans the cleanable range (shim: does nothing).
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
