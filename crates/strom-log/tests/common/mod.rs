//! Helpers shared by this crate's integration tests.
#![allow(dead_code, unreachable_pub)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use bytes::Bytes;
use strom_log::{CleanupPolicy, Clock, FsyncPolicy, LogConfig, PartitionLog, Throttler};

pub mod crash;
use strom_record::{
    BatchBuilder, BatchHeader, DecodeLimits, DecodedRecord, Record, decode_records,
};

/// A batch of records with the given timestamps and values `"{tag}-{i}"`.
pub fn batch(tag: &str, timestamps: &[i64]) -> Vec<u8> {
    let records: Vec<Record> = timestamps
        .iter()
        .enumerate()
        .map(|(i, &ts)| {
            Record::new(
                ts,
                Some(Bytes::from(format!("k{i}"))),
                Some(Bytes::from(format!("{tag}-{i}"))),
            )
        })
        .collect();
    BatchBuilder::new().build(&records).unwrap()
}

/// Calls `f` with the header and bytes of every stored batch from the log start up to where
/// reads stop, reading at most `max_bytes` at a time; returns the offset after the last batch.
pub fn scan_batches(
    log: &PartitionLog,
    max_bytes: usize,
    mut f: impl FnMut(&BatchHeader, Bytes),
) -> i64 {
    let mut offset = log.log_start_offset();
    while let Some(slice) = log.read(offset, max_bytes).unwrap().data {
        let bytes = slice.read_to_bytes().unwrap();
        assert!(!bytes.is_empty());
        let mut pos = 0;
        while pos < bytes.len() {
            let header = strom_record::check_stored_batch(&bytes[pos..]).unwrap();
            let batch = bytes.slice(pos..pos + header.total_len());
            f(&header, batch);
            offset = header.next_offset();
            pos += header.total_len();
        }
    }
    offset
}

/// Calls `f` with every record from the log start up to where reads stop, skipping records
/// before the log start in its first batch; checks that each batch ends past the last.
pub fn scan_records(log: &PartitionLog, max_bytes: usize, mut f: impl FnMut(DecodedRecord)) {
    let mut from = log.log_start_offset();
    scan_batches(log, max_bytes, |header, batch| {
        for r in decode_records(&batch, DecodeLimits::default())
            .unwrap()
            .records
        {
            if r.offset >= from {
                f(r);
            }
        }
        assert!(header.next_offset() > from);
        from = header.next_offset();
    });
}

/// Every record readable from the log start to the high watermark, as (offset, timestamp, value).
pub fn read_all(log: &PartitionLog) -> Vec<(i64, i64, Bytes)> {
    let mut out = Vec::new();
    scan_records(log, 4096, |r| {
        out.push((r.offset, r.timestamp, r.value.unwrap()))
    });
    out
}

/// A compacted (not deleted) log that syncs nothing, with small index intervals.
pub fn compact_config(segment_bytes: u64, delete_retention_ms: i64) -> LogConfig {
    LogConfig {
        segment_bytes,
        index_interval_bytes: 128,
        retention_ms: None,
        fsync: FsyncPolicy::Never,
        cleanup: CleanupPolicy {
            delete: false,
            compact: true,
        },
        delete_retention_ms,
        ..LogConfig::default()
    }
}

/// One whole clean of `log` at time `now`, unthrottled and not cancelled.
pub fn clean(log: &PartitionLog, now: i64) -> strom_log::CleanStats {
    log.clean(now, &Throttler::unlimited(), &AtomicBool::new(false))
        .unwrap()
}

/// Deletes the producer-state snapshots in `dir`, so that a reopen rebuilds them from the log.
pub fn remove_snapshots(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "snapshot") {
            std::fs::remove_file(p).unwrap();
        }
    }
}

pub fn open(dir: &std::path::Path, config: LogConfig, clock: Arc<dyn Clock>) -> PartitionLog {
    PartitionLog::open(dir, config, clock).unwrap()
}

/// A tiny deterministic generator (xorshift), so randomized tests are reproducible from a seed.
pub struct Rng(pub u64);

impl Rng {
    /// A value in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}
