//! Opening segments after a clean or unclean shutdown.
//!
//! Closed segments were synced (log and indexes) when they were rolled, so opening one costs a
//! check of its index files and one header read; only when an index is missing, torn or
//! inconsistent with the log is the segment scanned and its indexes rebuilt.
//!
//! The last segment may end in a torn write. Its index is trusted up to the last entry whose
//! batch is still intact on disk; from there to the end of the file every batch is checked
//! (header, CRC-32C, offset continuity) and the file is cut at the first one that fails. So
//! recovery reads at most one index interval plus the unsynced tail, whatever the log's size.

use std::path::Path;

use strom_record::{HEADER_LEN, check_stored_batch};
use tracing::{info, warn};

use crate::Result;
use crate::index::offset::OffsetEntry;
use crate::index::time::TimeEntry;
use crate::locks::write_lock;
use crate::segment::{BatchPosition, Segment};

/// What scanning part of a segment found.
#[derive(Debug)]
pub(crate) struct Scan {
    /// End of the last intact batch.
    pub(crate) valid_end: u64,
    /// Offset after the last intact batch.
    pub(crate) next_offset: i64,
    /// The last intact batch, if any was scanned.
    pub(crate) last_batch: Option<BatchPosition>,
    /// Why the scan stopped before the end of the file, if it did.
    pub(crate) stopped: Option<String>,
}

/// Checks every batch from `start` (where a batch with base offset `expected` must begin) to
/// `file_len`, appending index entries as the writer would have. Stops at the first batch that
/// is torn, corrupt or out of sequence.
pub(crate) fn scan(
    segment: &Segment,
    start: u64,
    expected: i64,
    file_len: u64,
    index_interval: u32,
) -> Result<Scan> {
    let mut pos = start;
    let mut expected = expected;
    let mut last_batch = None;
    let mut bytes_since_entry = 0u64;
    let mut buf = Vec::new();
    let mut stopped = None;
    while pos < file_len {
        if pos + HEADER_LEN as u64 > file_len {
            stopped = Some(format!("torn batch header at position {pos}"));
            break;
        }
        let mut header_buf = [0u8; HEADER_LEN];
        segment.read_at(&mut header_buf, pos)?;
        let header = match strom_record::BatchHeader::parse(&header_buf) {
            Ok(h) => h,
            Err(e) => {
                stopped = Some(format!("bad batch header at position {pos}: {e}"));
                break;
            }
        };
        let total = header.total_len() as u64;
        if pos + total > file_len {
            stopped = Some(format!(
                "torn batch at position {pos}: {total} bytes announced, {} present",
                file_len - pos
            ));
            break;
        }
        buf.resize(header.total_len(), 0);
        segment.read_at(&mut buf, pos)?;
        if let Err(e) = check_stored_batch(&buf) {
            stopped = Some(format!("corrupt batch at position {pos}: {e}"));
            break;
        }
        // Dense, except in compacted segments where they only increase.
        if !segment.follows(header.base_offset, expected) {
            stopped = Some(format!(
                "batch at position {pos} has base offset {}, expected {expected}",
                header.base_offset
            ));
            break;
        }
        segment.observe_timestamp(header.max_timestamp);
        segment.index_batch(&header, pos, &mut bytes_since_entry, index_interval)?;
        last_batch = Some(BatchPosition {
            header,
            position: pos,
        });
        expected = header.next_offset();
        pos += total;
    }
    Ok(Scan {
        valid_end: pos,
        next_offset: expected,
        last_batch,
        stopped,
    })
}

/// Length of the prefix of `entries` that is strictly increasing, starts at or after `base`
/// and points inside `size` bytes.
fn valid_offset_prefix(entries: &[OffsetEntry], base: i64, size: u64) -> usize {
    let mut prev: Option<&OffsetEntry> = None;
    for (i, e) in entries.iter().enumerate() {
        let ok = e.offset >= base
            && e.position < size
            && prev.is_none_or(|p| e.offset > p.offset && e.position > p.position);
        if !ok {
            return i;
        }
        prev = Some(e);
    }
    entries.len()
}

fn valid_time_prefix(entries: &[TimeEntry], base: i64, size: u64) -> usize {
    let mut prev: Option<&TimeEntry> = None;
    for (i, e) in entries.iter().enumerate() {
        let ok = e.offset >= base
            && e.position < size
            && e.max_timestamp >= 0
            && prev.is_none_or(|p| {
                e.offset > p.offset && e.position > p.position && e.max_timestamp > p.max_timestamp
            });
        if !ok {
            return i;
        }
        prev = Some(e);
    }
    entries.len()
}

/// Whether the batch the entry points at is intact and starts at the entry's offset.
fn entry_is_intact(segment: &Segment, entry: &OffsetEntry, file_len: u64) -> Result<bool> {
    let mut header_buf = [0u8; HEADER_LEN];
    if entry.position + HEADER_LEN as u64 > file_len {
        return Ok(false);
    }
    segment.read_at(&mut header_buf, entry.position)?;
    let Ok(header) = strom_record::BatchHeader::parse(&header_buf) else {
        return Ok(false);
    };
    if header.base_offset != entry.offset || entry.position + header.total_len() as u64 > file_len {
        return Ok(false);
    }
    let mut buf = vec![0u8; header.total_len()];
    segment.read_at(&mut buf, entry.position)?;
    Ok(check_stored_batch(&buf).is_ok())
}

/// A segment starting below `gaps_below` (the cleaner's bound, see `cleaner::Checkpoint`)
/// may have been compacted: its offsets may skip.
fn mark_gaps(segment: &Segment, gaps_below: i64) {
    if segment.base_offset < gaps_below {
        segment.allow_gaps();
    }
}

/// Rebuilds both indexes of `segment` from a scan of the whole file and cuts the file at the
/// first bad batch, or with `salvage` (the next segment's base offset) takes damaged stretches
/// out of service and keeps the rest (see `salvage`). Returns the scan.
fn rebuild(
    segment: &Segment,
    file_len: u64,
    index_interval: u32,
    salvage: Option<i64>,
) -> Result<Scan> {
    write_lock(&segment.offset_index).install(Vec::new(), true)?;
    write_lock(&segment.time_index).install(Vec::new(), true)?;
    segment.reset_max_timestamp();
    let scan = match salvage {
        Some(end_offset) => {
            crate::salvage::salvage_scan(segment, file_len, index_interval, end_offset)?
        }
        None => scan(segment, 0, segment.base_offset, file_len, index_interval)?,
    };
    segment.seal_time_index(scan.last_batch)?;
    if scan.valid_end < file_len {
        segment.truncate_to(scan.valid_end)?;
    }
    segment.set_size(scan.valid_end);
    Ok(scan)
}

/// Opens a closed segment that was synced (below the recovery point): trusts its indexes when
/// they are consistent with the file, else rebuilds them by scanning the segment. Damage found
/// by the scan is taken out of service, never cut: the segment was synced whole, so damage in
/// it is not a torn write of a crash, and what follows it was acknowledged. `next_base` is the
/// next segment's base offset; a segment starting below `gaps_below` (the cleaner's bound) may
/// skip offsets (compaction).
pub(crate) fn open_closed(
    dir: &Path,
    base_offset: i64,
    index_interval: u32,
    next_base: i64,
    gaps_below: i64,
) -> Result<Segment> {
    let (segment, offsets, times, torn) = Segment::open_files(dir, base_offset)?;
    mark_gaps(&segment, gaps_below);
    let file_len = segment.file_len()?;
    let offsets_ok = valid_offset_prefix(&offsets, base_offset, file_len) == offsets.len();
    let times_ok = valid_time_prefix(&times, base_offset, file_len) == times.len();
    let last_ok = match offsets.last() {
        Some(last) => entry_is_intact(&segment, last, file_len)?,
        None => true,
    };
    if !torn && offsets_ok && times_ok && last_ok && (file_len == 0 || !times.is_empty()) {
        if let Some(last) = times.last() {
            segment.observe_timestamp(last.max_timestamp);
        }
        write_lock(&segment.offset_index).install(offsets, false)?;
        write_lock(&segment.time_index).install(times, false)?;
        segment.set_size(file_len);
        return Ok(segment);
    }
    warn!(
        segment = %segment.log_path.display(),
        "index missing or inconsistent with the log; rebuilding it from the segment"
    );
    let scan = rebuild(&segment, file_len, index_interval, Some(next_base))?;
    if let Some(reason) = scan.stopped {
        warn!(
            segment = %segment.log_path.display(),
            truncated_bytes = file_len - scan.valid_end,
            "closed segment truncated during index rebuild: {reason}"
        );
    }
    segment.sync_all()?;
    Ok(segment)
}

/// Opens a closed segment that was not known to be synced when the log stopped (at or above
/// the recovery point): scans it whole, rebuilding its indexes and cutting it at the first bad
/// batch, then syncs it. The returned scan says whether it was cut. With `salvage` (the next
/// segment's base offset) damage is taken out of service instead, as in [`open_closed`]: for a
/// log whose policy syncs every segment before the next one gets data.
pub(crate) fn open_unflushed_closed(
    dir: &Path,
    base_offset: i64,
    index_interval: u32,
    salvage: Option<i64>,
    gaps_below: i64,
) -> Result<(Segment, Scan)> {
    let (segment, _, _, _) = Segment::open_files(dir, base_offset)?;
    mark_gaps(&segment, gaps_below);
    let file_len = segment.file_len()?;
    let scan = rebuild(&segment, file_len, index_interval, salvage)?;
    if let Some(reason) = &scan.stopped {
        warn!(
            segment = %segment.log_path.display(),
            truncated_bytes = file_len - scan.valid_end,
            "recovery truncated an unflushed segment: {reason}"
        );
    }
    segment.sync_all()?;
    Ok((segment, scan))
}

/// Opens the last segment and recovers its tail. Returns the segment and the next offset.
pub(crate) fn open_active(
    dir: &Path,
    base_offset: i64,
    index_interval: u32,
    gaps_below: i64,
) -> Result<(Segment, i64)> {
    let (segment, mut offsets, times, _torn) = Segment::open_files(dir, base_offset)?;
    mark_gaps(&segment, gaps_below);
    let file_len = segment.file_len()?;

    // Trust the offset index up to its last entry whose batch is intact.
    let valid = valid_offset_prefix(&offsets, base_offset, file_len);
    offsets.truncate(valid);
    while let Some(last) = offsets.last() {
        if entry_is_intact(&segment, last, file_len)? {
            break;
        }
        offsets.pop();
    }
    let (start, expected) = offsets
        .last()
        .map_or((0, base_offset), |e| (e.position, e.offset));
    let mut times_kept = times;
    let valid_times = valid_time_prefix(&times_kept, base_offset, file_len);
    times_kept.truncate(valid_times);
    // An entry at `start` covers every batch up to and including the one there (intact).
    times_kept.retain(|t| t.position <= start);
    if let Some(last) = times_kept.last() {
        segment.observe_timestamp(last.max_timestamp);
    }
    write_lock(&segment.offset_index).install(offsets, true)?;
    write_lock(&segment.time_index).install(times_kept, true)?;

    let scan = scan(&segment, start, expected, file_len, index_interval)?;
    if scan.valid_end < file_len {
        let reason = scan.stopped.as_deref().unwrap_or("unknown");
        warn!(
            segment = %segment.log_path.display(),
            valid_bytes = scan.valid_end,
            truncated_bytes = file_len - scan.valid_end,
            next_offset = scan.next_offset,
            "recovery truncated the log tail: {reason}"
        );
        segment.truncate_to(scan.valid_end)?;
        crate::fs::sync_data(&segment.file, "fdatasync segment", &segment.log_path)?;
    } else {
        info!(
            segment = %segment.log_path.display(),
            scanned_bytes = file_len - start,
            next_offset = scan.next_offset,
            "recovered active segment"
        );
    }
    segment.set_size(scan.valid_end);
    Ok((segment, scan.next_offset))
}
