//! One segment: a `<base-offset>.log` file of record batches plus its two sparse indexes.
//!
//! Only the log's writer (under `PartitionLog`'s writer lock) appends to or truncates a segment;
//! readers share it through an `Arc` and read with positional reads, bounded by the high
//! watermark, so they never block the writer. Closed segments are immutable.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use strom_record::{BatchHeader, HEADER_LEN};

use crate::index::offset::{OffsetEntry, OffsetIndex};
use crate::index::time::{TimeEntry, TimeIndex};
use crate::locks::{read_lock, write_lock};
use crate::txn_index::TxnIndex;
use crate::{Error, Result};

/// File name stem of a segment: the base offset as 20 zero-padded digits (Kafka's naming).
pub(crate) fn file_stem(base_offset: i64) -> String {
    format!("{base_offset:020}")
}

/// A segment of the partition log.
#[derive(Debug)]
pub(crate) struct Segment {
    pub(crate) base_offset: i64,
    pub(crate) log_path: PathBuf,
    pub(crate) file: Arc<File>,
    /// Bytes of valid batches. Written by the writer after the bytes are in the file.
    size: AtomicU64,
    /// Largest record timestamp in the segment, `-1` if none.
    max_timestamp: AtomicI64,
    pub(crate) offset_index: RwLock<OffsetIndex>,
    pub(crate) time_index: RwLock<TimeIndex>,
    /// Aborted transactions whose marker is in this segment (`.txnindex`).
    pub(crate) txn_index: RwLock<TxnIndex>,
    /// Ranges found damaged (see `salvage`), by position; reads in them fail, walks skip them.
    damaged: RwLock<Vec<DamagedRange>>,
    /// Whether offsets may skip between batches (the segment was written by the cleaner, or
    /// lies below the offset the cleaner may have compacted). Otherwise they must be dense,
    /// which catches a damaged base offset (it is not covered by the CRC).
    gaps: AtomicBool,
}

/// A damaged stretch of a segment taken out of service: the offsets `[first_offset,
/// end_offset)` stored at bytes `[position, resume_position)`, where an intact batch with base
/// offset `end_offset` starts (or the segment ends).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DamagedRange {
    pub(crate) first_offset: i64,
    pub(crate) end_offset: i64,
    pub(crate) position: u64,
    pub(crate) resume_position: u64,
}

/// Where a batch sits in a segment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchPosition {
    pub(crate) header: BatchHeader,
    pub(crate) position: u64,
}

impl Segment {
    /// Opens or creates the files of the segment at `base_offset` in `dir`. The caller decides
    /// what the valid size is (recovery) and installs the index entries.
    pub(crate) fn open_files(
        dir: &Path,
        base_offset: i64,
    ) -> Result<(Self, Vec<OffsetEntry>, Vec<TimeEntry>, bool)> {
        Self::open_files_with_suffix(dir, base_offset, "")
    }

    /// [`Segment::open_files`] for files named `<base>.<ext><suffix>` (the cleaner writes
    /// `.cleaned` segments).
    pub(crate) fn open_files_with_suffix(
        dir: &Path,
        base_offset: i64,
        suffix: &str,
    ) -> Result<(Self, Vec<OffsetEntry>, Vec<TimeEntry>, bool)> {
        let stem = file_stem(base_offset);
        let log_path = dir.join(format!("{stem}.log{suffix}"));
        let file = crate::fs::open_rw(&log_path, "open segment")?;
        let len = file
            .metadata()
            .map_err(|e| Error::io("stat segment", &log_path, e))?
            .len();
        let (offset_index, offset_entries, torn_offset) =
            OffsetIndex::open(&dir.join(format!("{stem}.index{suffix}")), base_offset)?;
        let (time_index, time_entries, torn_time) =
            TimeIndex::open(&dir.join(format!("{stem}.timeindex{suffix}")), base_offset)?;
        let txn_index = TxnIndex::open(dir.join(format!("{stem}.txnindex{suffix}")), base_offset)?;
        let segment = Segment {
            base_offset,
            log_path,
            file: Arc::new(file),
            size: AtomicU64::new(len),
            max_timestamp: AtomicI64::new(-1),
            offset_index: RwLock::new(offset_index),
            time_index: RwLock::new(time_index),
            txn_index: RwLock::new(txn_index),
            damaged: RwLock::new(Vec::new()),
            gaps: AtomicBool::new(false),
        };
        Ok((
            segment,
            offset_entries,
            time_entries,
            torn_offset || torn_time,
        ))
    }

    /// Length of the file on disk (may exceed `size()` before recovery truncates a torn tail).
    pub(crate) fn file_len(&self) -> Result<u64> {
        Ok(self
            .file
            .metadata()
            .map_err(|e| Error::io("stat segment", &self.log_path, e))?
            .len())
    }

    /// Marks the segment as possibly compacted: offsets may skip between batches.
    pub(crate) fn allow_gaps(&self) {
        self.gaps.store(true, Ordering::Release);
    }

    /// Whether `base_offset` may follow a batch that ended before `expected` (the offset
    /// after it): always when equal; when larger, only in a possibly compacted segment.
    pub(crate) fn follows(&self, base_offset: i64, expected: i64) -> bool {
        base_offset == expected || (base_offset > expected && self.gaps.load(Ordering::Acquire))
    }

    pub(crate) fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }

    pub(crate) fn set_size(&self, size: u64) {
        self.size.store(size, Ordering::Release);
    }

    pub(crate) fn max_timestamp(&self) -> i64 {
        self.max_timestamp.load(Ordering::Acquire)
    }

    /// Records that a batch with `max_timestamp` was appended (only the writer calls this).
    pub(crate) fn observe_timestamp(&self, max_timestamp: i64) {
        self.max_timestamp
            .fetch_max(max_timestamp, Ordering::AcqRel);
    }

    pub(crate) fn reset_max_timestamp(&self) {
        self.max_timestamp.store(-1, Ordering::Release);
    }

    /// Reads exactly `buf.len()` bytes at `position`.
    pub(crate) fn read_at(&self, buf: &mut [u8], position: u64) -> Result<()> {
        self.file
            .read_exact_at(buf, position)
            .map_err(|e| Error::io("read segment", &self.log_path, e))
    }

    /// Reads the batch header at `position`, if a whole header lies below `limit`.
    pub(crate) fn header_at(&self, position: u64, limit: u64) -> Result<Option<BatchHeader>> {
        if position + HEADER_LEN as u64 > limit {
            return Ok(None);
        }
        let mut buf = [0u8; HEADER_LEN];
        self.read_at(&mut buf, position)?;
        match BatchHeader::parse(&buf) {
            Ok(h) if position + h.total_len() as u64 <= limit => Ok(Some(h)),
            Ok(h) => Err(Error::Corrupt {
                path: self.log_path.clone(),
                reason: format!(
                    "batch at {position} of {} bytes runs past the end {limit}",
                    h.total_len()
                ),
            }),
            Err(e) => Err(Error::Corrupt {
                path: self.log_path.clone(),
                reason: format!("batch header at {position}: {e}"),
            }),
        }
    }

    /// The damaged ranges known in this segment, by position.
    pub(crate) fn damaged_ranges(&self) -> Vec<DamagedRange> {
        read_lock(&self.damaged).clone()
    }

    /// Takes a damaged range out of service (idempotent).
    pub(crate) fn add_damaged(&self, range: DamagedRange) {
        let mut all = write_lock(&self.damaged);
        if !all.contains(&range) {
            all.push(range);
            all.sort_by_key(|r| r.position);
        }
    }

    /// The error for a read at `offset`, if it falls in a damaged range.
    pub(crate) fn check_damaged(&self, offset: i64) -> Result<()> {
        match read_lock(&self.damaged)
            .iter()
            .find(|r| r.first_offset <= offset && offset < r.end_offset)
        {
            Some(r) => Err(Error::DamagedRange {
                path: self.log_path.clone(),
                first_offset: r.first_offset,
                end_offset: r.end_offset,
            }),
            None => Ok(()),
        }
    }

    /// Where a walk towards `offset` may start: the index hint, or the end of a damaged range
    /// below `offset` if that is further on (a walk from before it would run into the damage).
    pub(crate) fn start_for(&self, offset: i64) -> (i64, u64) {
        let entry = read_lock(&self.offset_index).lookup(offset);
        read_lock(&self.damaged)
            .iter()
            .filter(|r| r.end_offset <= offset && r.resume_position > entry.position)
            .map(|r| (r.end_offset, r.resume_position))
            .next_back()
            .unwrap_or((entry.offset, entry.position))
    }

    /// The first batch at or after the index hint whose last offset is `>= offset`, scanning
    /// no further than `limit` bytes. `None` if the segment holds no such batch. An offset in a
    /// damaged range is an [`Error::DamagedRange`].
    pub(crate) fn find_batch(&self, offset: i64, limit: u64) -> Result<Option<BatchPosition>> {
        self.check_damaged(offset)?;
        let (start_offset, start_position) = self.start_for(offset);
        let mut found = None;
        self.walk(start_offset, start_position, limit, |b| {
            if b.header.last_offset() >= offset {
                found = Some(b);
                return Ok(false);
            }
            Ok(true)
        })?;
        Ok(found)
    }

    /// Visits the batches from the one at `position` (whose base offset must be `offset`, or
    /// at least `offset` in a compacted segment) up to `limit`, while `visit` returns `true`.
    ///
    /// The walk checks that offsets are dense (in a possibly compacted segment: increasing):
    /// the base offset is not covered by the batch CRC, so a damaged one would otherwise move
    /// records to other offsets.
    pub(crate) fn walk(
        &self,
        offset: i64,
        position: u64,
        limit: u64,
        mut visit: impl FnMut(BatchPosition) -> Result<bool>,
    ) -> Result<()> {
        let mut position = position;
        let mut expected = offset;
        let damaged = self.damaged_ranges();
        loop {
            if let Some(d) = damaged.iter().find(|d| d.position == position) {
                position = d.resume_position;
                expected = d.end_offset;
                continue;
            }
            let Some(header) = self.header_at(position, limit)? else {
                break;
            };
            if !self.follows(header.base_offset, expected) {
                return Err(Error::Corrupt {
                    path: self.log_path.clone(),
                    reason: format!(
                        "batch at {position} has base offset {}, expected {expected}",
                        header.base_offset
                    ),
                });
            }
            if !visit(BatchPosition { header, position })? {
                break;
            }
            position += header.total_len() as u64;
            expected = header.next_offset();
        }
        Ok(())
    }

    /// Appends the index entries for a batch just written at `position`, if the interval since
    /// the last entry has passed. `bytes_since_entry` is the writer's running counter.
    pub(crate) fn index_batch(
        &self,
        header: &BatchHeader,
        position: u64,
        bytes_since_entry: &mut u64,
        interval: u32,
    ) -> Result<()> {
        if *bytes_since_entry >= u64::from(interval) {
            write_lock(&self.offset_index).push(OffsetEntry {
                offset: header.base_offset,
                position,
            })?;
            let max_ts = self.max_timestamp();
            if max_ts >= 0 {
                write_lock(&self.time_index).maybe_push(TimeEntry {
                    max_timestamp: max_ts,
                    offset: header.base_offset,
                    position,
                })?;
            }
            *bytes_since_entry = 0;
        }
        *bytes_since_entry += header.total_len() as u64;
        Ok(())
    }

    /// Writes a final time-index entry so a closed segment's largest timestamp is on disk.
    pub(crate) fn seal_time_index(&self, last: Option<BatchPosition>) -> Result<()> {
        let max_ts = self.max_timestamp();
        if let Some(last) = last
            && max_ts >= 0
        {
            write_lock(&self.time_index).maybe_push(TimeEntry {
                max_timestamp: max_ts,
                offset: last.header.base_offset,
                position: last.position,
            })?;
        }
        Ok(())
    }

    /// `fdatasync` the log file and its indexes.
    pub(crate) fn sync_all(&self) -> Result<()> {
        crate::fs::sync_data(&self.file, "fdatasync segment", &self.log_path)?;
        write_lock(&self.offset_index).sync()?;
        write_lock(&self.time_index).sync()?;
        read_lock(&self.txn_index).sync()
    }

    /// Cuts the segment back to `position` (a batch boundary) on disk and in both indexes.
    pub(crate) fn truncate_to(&self, position: u64) -> Result<()> {
        crate::fs::set_len(&self.file, position, "truncate segment", &self.log_path)?;
        self.set_size(position);
        // Ranges in the cut part are gone; new batches may be written where they were.
        write_lock(&self.damaged).retain(|r| r.resume_position <= position);
        write_lock(&self.offset_index).truncate_to_position(position)?;
        write_lock(&self.time_index).truncate_to_position(position)?;
        Ok(())
    }

    /// Removes the segment's files (log, indexes, transaction index).
    pub(crate) fn delete_files(&self) -> Result<()> {
        let index_path = read_lock(&self.offset_index).path().to_path_buf();
        let txn_path = read_lock(&self.txn_index).path().to_path_buf();
        for path in [
            self.log_path.clone(),
            index_path.clone(),
            index_path.with_extension("timeindex"),
            txn_path,
        ] {
            crate::fs::remove_file(&path, "delete segment file")?;
        }
        Ok(())
    }
}
