//! # strom-log
//!
//! The storage engine: one partition stored as an append-only log of Kafka record batches on
//! disk, which never loses what it acknowledged under its fsync policy.
//!
//! A partition is a directory of segments. Each segment is a `<base-offset>.log` file of
//! batches (byte-for-byte what clients sent, with offset, leader epoch and log-append time
//! patched in) and two sparse indexes (`.index`: offset → position, `.timeindex`: largest
//! timestamp so far → position). Only the last segment is written; closed segments are
//! immutable until retention deletes them whole or the cleaner replaces them.
//!
//! - Writes: [`PartitionLog::append`] validates batches (CRC-32C, header, size), assigns offsets,
//!   writes and, with [`FsyncPolicy::Always`], returns only after `fdatasync` — shared by
//!   concurrent appenders (group commit).
//! - Reads: [`PartitionLog::read`] returns whole batches as a [`FileSlice`] of a segment file,
//!   below the high watermark, ready for `sendfile` or a copy.
//! - Recovery: [`PartitionLog::open`] checks the tail of the last segment from its last index
//!   entry and cuts a torn or corrupt write; its cost depends on the unsynced tail, not the
//!   size of the log.
//! - Retention and truncation: [`PartitionLog::apply_retention`],
//!   [`PartitionLog::delete_records_before`], [`PartitionLog::truncate_to`].
//! - Compaction (`cleanup.policy=compact`): [`PartitionLog::cleanable`] estimates the dirty
//!   share cheaply; [`PartitionLog::clean`] keeps the latest record of each key, preserving
//!   offsets (compacted segments have gaps), and swaps cleaned segments in crash-safely. Cleaner
//!   threads share one [`Throttler`].
//!
//! The crate knows nothing of topics or protocols and spawns no tasks; every call blocks on file
//! I/O and belongs on a blocking thread.
//!
//! ```
//! use std::sync::Arc;
//! use bytes::Bytes;
//! use strom_log::{LogConfig, PartitionLog, SystemClock};
//! use strom_record::{BatchBuilder, Record};
//!
//! let dir = tempfile::tempdir()?;
//! let log = PartitionLog::open(dir.path(), LogConfig::default(), Arc::new(SystemClock))?;
//! let mut batch = BatchBuilder::new().build(&[Record::new(1, None, Some(Bytes::from("hi")))])?;
//! let info = log.append(&mut batch, 0)?;
//! assert_eq!((info.base_offset, log.high_watermark()), (0, 1));
//! let read = log.read(0, 1 << 20)?;
//! assert_eq!(read.data.unwrap().read_to_vec()?, batch);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod cleaner;
mod clock;
mod config;
mod error;
pub mod fault;
mod fs;
mod fsync;
mod index;
mod locks;
mod log;
pub mod producer_state;
mod recovery;
mod salvage;
mod segment;
mod sync_group;
mod txn_index;

pub use cleaner::{CleanStats, CleanableInfo, Sleeper, Throttler};
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{
    CleanupPolicy, DEFAULT_DELETE_RETENTION_MS, DEFAULT_MIN_CLEANABLE_DIRTY_RATIO,
    DEFAULT_PRODUCER_ID_EXPIRATION_MS, DEFAULT_TIMESTAMP_AFTER_MAX_MS, FsyncPolicy, LogConfig,
    ONE_WEEK_MS,
};
pub use error::{Error, Result};
pub use fs::create_dir_durable;
pub use log::{
    AppendInfo, CommittedRead, FileSlice, PartitionLog, PendingAppend, ReadResult, validate_payload,
};
pub use producer_state::{CompletedTxn, ProducerStateManager};
pub use strom_record::TimestampType;
pub use sync_group::SyncGroup;
pub use txn_index::{AbortedFilter, AbortedTxn, OngoingTxn, ProducerInfo, TXN_INDEX_ENTRY_LEN};
