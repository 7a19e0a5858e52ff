//! Damage in the middle of a segment: where it ends, and taking only it out of service.
//!
//! A batch that fails its CRC-32C, or a header that is garbage, somewhere inside a segment that
//! was synced (so not a torn write of a crash, but a bad disk or a stray write) must not take
//! the rest of the partition with it. The damaged stretch is located — from the last intact
//! batch before it to the next intact batch after it — and recorded as a
//! [`DamagedRange`] of the segment: reads of its offsets fail with
//! [`crate::Error::DamagedRange`], reads before and after it are served as usual, and walks over
//! the segment skip it. Offsets are never silently skipped: a reader positioned in the range
//! gets the error, not the next offset.
//!
//! The next intact batch is found by scanning forward from the damage for a plausible header
//! (magic 2, a base offset not below the damaged one and below the segment's end, a length
//! inside the segment) whose whole batch passes its CRC. A false positive needs a 32-bit CRC to
//! match by chance on bytes that also parse as a header with sane offsets.
//!
//! Damage is found lazily, by the first read that meets it ([`locate`]), or at open when a
//! closed segment's indexes do not match it and it is rebuilt ([`salvage_scan`]). Ranges are
//! kept in memory only: after a restart the damage is found again the same way.

use strom_record::{BatchHeader, HEADER_LEN, check_stored_batch};

use crate::recovery::{self, Scan};
use crate::segment::{BatchPosition, DamagedRange, Segment};
use crate::{Error, Result};

/// Bytes read at a time when scanning for the next intact batch.
const CHUNK: usize = 1 << 20;
/// Offset of the magic byte in a batch header.
const MAGIC_POS: usize = 16;

/// The header of an intact batch at `position` (below `limit`) with a base offset in
/// `[min_offset, max_offset)`, if there is one.
fn intact_at(
    segment: &Segment,
    position: u64,
    limit: u64,
    min_offset: i64,
    max_offset: i64,
) -> Result<Option<BatchHeader>> {
    if position + HEADER_LEN as u64 > limit {
        return Ok(None);
    }
    let mut header = [0u8; HEADER_LEN];
    segment.read_at(&mut header, position)?;
    let Ok(h) = BatchHeader::parse(&header) else {
        return Ok(None);
    };
    if !plausible(&h, position, limit, min_offset, max_offset) {
        return Ok(None);
    }
    let mut buf = vec![0u8; h.total_len()];
    segment.read_at(&mut buf, position)?;
    Ok(check_stored_batch(&buf).ok())
}

fn plausible(h: &BatchHeader, position: u64, limit: u64, min_offset: i64, max_offset: i64) -> bool {
    h.base_offset >= min_offset
        && h.base_offset < max_offset
        && h.last_offset_delta >= 0
        && position + h.total_len() as u64 <= limit
}

/// The first intact batch starting at or after `from` (below `limit`) whose base offset is in
/// `[min_offset, max_offset)`: its header and position.
pub(crate) fn resync(
    segment: &Segment,
    from: u64,
    limit: u64,
    min_offset: i64,
    max_offset: i64,
) -> Result<Option<(BatchHeader, u64)>> {
    let mut buf = vec![0u8; CHUNK];
    let mut at = from;
    while at + HEADER_LEN as u64 <= limit {
        let len = usize::try_from((limit - at).min(CHUNK as u64)).unwrap_or(CHUNK);
        let chunk = buf.get_mut(..len).unwrap_or_default();
        segment.read_at(chunk, at)?;
        for i in 0..=len - HEADER_LEN {
            if chunk.get(i + MAGIC_POS) != Some(&2) {
                continue;
            }
            let Some(Ok(h)) = chunk.get(i..).map(BatchHeader::parse) else {
                continue;
            };
            let position = at + i as u64;
            if plausible(&h, position, limit, min_offset, max_offset)
                && let Some(h) = intact_at(segment, position, limit, min_offset, max_offset)?
            {
                return Ok(Some((h, position)));
            }
        }
        // The next chunk overlaps this one by a header, so no candidate is missed.
        at += (len - HEADER_LEN + 1) as u64;
    }
    Ok(None)
}

/// The damaged range that starts at `position` (where a batch with base offset `first_offset`
/// should be): up to the next intact batch, or to `end_offset` and the end of the segment
/// (`limit`) if there is none. Records it in the segment.
fn take_out_of_service(
    segment: &Segment,
    position: u64,
    first_offset: i64,
    limit: u64,
    end_offset: i64,
) -> Result<DamagedRange> {
    let next = resync(segment, position + 1, limit, first_offset, end_offset)?;
    let range = DamagedRange {
        first_offset,
        end_offset: next.map_or(end_offset, |(h, _)| h.base_offset),
        position,
        resume_position: next.map_or(limit, |(_, p)| p),
    };
    segment.add_damaged(range);
    tracing::warn!(
        segment = %segment.log_path.display(),
        first_offset = range.first_offset,
        end_offset = range.end_offset,
        position = range.position,
        damaged_bytes = range.resume_position - range.position,
        "damaged batches taken out of service; the data before and after them stays readable"
    );
    Ok(range)
}

/// Checks the batches of `segment` from the walk start for `offset` up to the one holding it.
/// If one is damaged, takes the damaged range out of service and returns it; `None` if every
/// batch up to `offset` is intact. `end_offset` is the offset after the segment (the next
/// segment's base, or the log end for the active one).
pub(crate) fn locate(
    segment: &Segment,
    offset: i64,
    end_offset: i64,
) -> Result<Option<DamagedRange>> {
    let limit = segment.size();
    let (mut expected, mut position) = segment.start_for(offset);
    let damaged = segment.damaged_ranges();
    while position < limit {
        if let Some(d) = damaged.iter().find(|d| d.position == position) {
            if d.end_offset > offset {
                return Ok(Some(*d));
            }
            position = d.resume_position;
            expected = d.end_offset;
            continue;
        }
        match intact_at(segment, position, limit, expected, end_offset)? {
            Some(h) if h.last_offset() >= offset => return Ok(None),
            Some(h) => {
                position += h.total_len() as u64;
                expected = h.next_offset();
            }
            None => {
                return take_out_of_service(segment, position, expected, limit, end_offset)
                    .map(Some);
            }
        }
    }
    Ok(None)
}

/// How many damaged ranges one salvaging walk takes out of service before it gives up.
const MAX_RANGES_PER_WALK: usize = 64;

/// [`Segment::walk`] for scans that answer from the intact data (timestamp lookups, the
/// producer-state rebuild): damage the walk or `visit` meets (a header that does not parse or
/// breaks the offset order, a batch failing its CRC — [`Error::Corrupt`] or
/// [`Error::InvalidBatch`]) is located and taken out of service ([`locate`], which logs each
/// range once), and the walk goes on after it, so no batch is visited twice. Damage that
/// cannot be located is returned as the error. `end_offset` is the offset after the segment.
pub(crate) fn walk_salvaging(
    segment: &Segment,
    offset: i64,
    position: u64,
    limit: u64,
    end_offset: i64,
    mut visit: impl FnMut(BatchPosition) -> Result<bool>,
) -> Result<()> {
    let (mut offset, mut position) = (offset, position);
    let mut ranges = 0;
    loop {
        // Where the walk is: the batch being visited, or the one after the last visited.
        let mut reached = (offset, position);
        let result = segment.walk(offset, position, limit, |b| {
            reached = (b.header.base_offset, b.position);
            let more = visit(b)?;
            reached = (
                b.header.next_offset(),
                b.position + b.header.total_len() as u64,
            );
            Ok(more)
        });
        let error = match result {
            Err(e @ (Error::Corrupt { .. } | Error::InvalidBatch(_))) => e,
            other => return other,
        };
        // `locate` checks every batch up to `reached`, so it may first find damage the walk
        // already stepped over (a CRC the walk does not check); ask until the range at or
        // after `reached`.
        let resume = loop {
            ranges += 1;
            if ranges > MAX_RANGES_PER_WALK {
                return Err(error);
            }
            match locate(segment, reached.0, end_offset)? {
                Some(r) if r.resume_position > reached.1 => break r,
                Some(_) => {}
                None => return Err(error),
            }
        };
        offset = resume.end_offset;
        position = resume.resume_position;
    }
}

/// Scans a whole closed segment that was synced (its indexes already emptied), indexing its
/// intact batches and taking damaged stretches out of service instead of cutting the segment
/// at the first one. `end_offset` is the next segment's base. The result never reports a stop:
/// the segment keeps its length.
pub(crate) fn salvage_scan(
    segment: &Segment,
    file_len: u64,
    index_interval: u32,
    end_offset: i64,
) -> Result<Scan> {
    let mut scan = recovery::scan(segment, 0, segment.base_offset, file_len, index_interval)?;
    while scan.stopped.is_some() && scan.valid_end < file_len {
        let range = take_out_of_service(
            segment,
            scan.valid_end,
            scan.next_offset,
            file_len,
            end_offset,
        )?;
        if range.resume_position >= file_len {
            scan.valid_end = file_len;
            scan.next_offset = range.end_offset;
            scan.stopped = None;
            break;
        }
        let rest = recovery::scan(
            segment,
            range.resume_position,
            range.end_offset,
            file_len,
            index_interval,
        )?;
        scan = Scan {
            valid_end: rest.valid_end,
            next_offset: rest.next_offset,
            last_batch: rest.last_batch.or(scan.last_batch),
            stopped: rest.stopped,
        };
    }
    Ok(scan)
}
