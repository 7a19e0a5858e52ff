//! Decoding the records inside one batch: the deep check a broker does on produce
//! ([`validate_records`]), full decoding for consumers that are not Kafka clients
//! ([`decode_records`]), and the light walk the log needs for timestamp lookups
//! ([`record_offsets_and_timestamps`], [`find_by_timestamp`]).
//!
//! Each record in the (decompressed) records section is laid out as
//!
//! ```text
//! length: varint             bytes of the record after this field
//! attributes: int8           unused
//! timestampDelta: varlong    timestamp - batch baseTimestamp
//! offsetDelta: varint        offset - batch baseOffset
//! keyLength: varint          -1 = null key
//! key: bytes
//! valueLength: varint        -1 = null value
//! value: bytes
//! headerCount: varint
//! [headerKeyLength: varint, headerKey: bytes, headerValueLength: varint (-1 = null), headerValue: bytes]*
//! ```
//!
//! where `varint` and `varlong` are zig-zag encoded and at most 5 and 10 bytes long.
//!
//! Two sets of rules apply. Batches a client sends ([`validate_records`]) must have offset deltas
//! `0, 1, 2, …`; batches already in the log (every other function here) only need strictly
//! increasing deltas within `0..=lastOffsetDelta`, because compaction removes records from the
//! middle of a batch. In both, the section must hold exactly `recordsCount` well-formed records
//! and nothing after them.

use std::borrow::Cow;
use std::ops::Range;

use bytes::Bytes;

use crate::batch::{HEADER_LEN, LOG_OVERHEAD};
use crate::compression::decompress;
use crate::varint::{VarintError, get_varint, get_varlong};
use crate::{
    BatchHeader, Compression, Error, Record, RecordHeader, Result, TimestampType, ValidationLimits,
    check_stored_batch, validate_batch,
};

/// Default for [`DecodeLimits::max_decompressed_bytes`]: 64 MiB.
pub const DEFAULT_MAX_DECOMPRESSED_BYTES: usize = 64 << 20;

/// The smallest possible encoded record: one byte each for length, attributes, timestamp delta,
/// offset delta, key length, value length and header count.
const MIN_RECORD_LEN: usize = 7;

/// Limits a caller imposes while decoding the records of a batch from an untrusted source.
///
/// Decoding allocates at most the decompressed section plus, for [`decode_records`], one
/// [`DecodedRecord`] per record found (records are at least 7 bytes each, so this is bounded by
/// the section's size too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest accepted total batch size (header included), as
    /// [`ValidationLimits::max_batch_bytes`].
    pub max_batch_bytes: usize,
    /// Largest accepted records section after decompression. Decompression stops and fails with
    /// [`Error::DecompressedTooLarge`] as soon as the output would exceed it. Not applied to
    /// uncompressed batches, whose section is bounded by `max_batch_bytes`.
    pub max_decompressed_bytes: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_batch_bytes: ValidationLimits::default().max_batch_bytes,
            max_decompressed_bytes: DEFAULT_MAX_DECOMPRESSED_BYTES,
        }
    }
}

impl DecodeLimits {
    /// The batch-level part of these limits.
    pub fn validation(&self) -> ValidationLimits {
        ValidationLimits {
            max_batch_bytes: self.max_batch_bytes,
        }
    }
}

/// One record decoded from a batch, with its absolute offset and timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedRecord {
    /// Absolute offset: the batch's `baseOffset` plus the record's offset delta.
    pub offset: i64,
    /// Absolute timestamp in milliseconds: the batch's `baseTimestamp` plus the record's delta
    /// for `CreateTime` batches, the batch's `maxTimestamp` for `LogAppendTime` batches (as Kafka
    /// clients report it).
    pub timestamp: i64,
    /// Key; `None` is a null key.
    pub key: Option<Bytes>,
    /// Value; `None` is a null value.
    pub value: Option<Bytes>,
    /// Headers in batch order; keys may repeat.
    pub headers: Vec<RecordHeader>,
}

impl From<DecodedRecord> for Record {
    fn from(record: DecodedRecord) -> Self {
        Record {
            timestamp: record.timestamp,
            key: record.key,
            value: record.value,
            headers: record.headers,
        }
    }
}

/// A batch's header and its decoded records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedBatch {
    /// The fixed batch header.
    pub header: BatchHeader,
    /// The records, in offset order.
    pub records: Vec<DecodedRecord>,
}

/// A record's absolute offset and timestamp, without its contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OffsetAndTimestamp {
    /// Absolute offset of the record.
    pub offset: i64,
    /// Absolute timestamp of the record, as in [`DecodedRecord::timestamp`].
    pub timestamp: i64,
}

/// The deep check a broker does on a batch a client produced, beyond [`validate_batch`] (which
/// it runs first): the records section decompresses within `limits`, parses to exactly
/// `recordsCount` well-formed records with offset deltas `0, 1, 2, …` and nothing after them.
pub fn validate_records(batch: &[u8], limits: DecodeLimits) -> Result<()> {
    let header = validate_batch(batch, limits.validation())?;
    let section = records_section(batch, &header, limits)?;
    walk(&section, &header, Deltas::Dense, &mut NoVisitor)
}

/// [`validate_records`], also reporting the records without a key (what a compacted topic
/// refuses): their indexes in the batch, in order, empty when every record has a key. The
/// records are walked once, for both.
pub fn validate_records_keyed(batch: &[u8], limits: DecodeLimits) -> Result<Vec<usize>> {
    let header = validate_batch(batch, limits.validation())?;
    let section = records_section(batch, &header, limits)?;
    let mut keyless = Vec::new();
    walk(
        &section,
        &header,
        Deltas::Dense,
        &mut Positions(|r: &RawRecord| {
            if r.key.is_none() {
                keyless.push(r.index);
            }
            Ok(Flow::Continue)
        }),
    )?;
    Ok(keyless)
}

/// Decodes every record of the stored batch at the start of `batch`.
///
/// Checks the batch as [`check_stored_batch`] does (complete, CRC matches), its size against
/// `limits`, then the records as described in the [module docs](self). Keys, values and headers
/// of an uncompressed batch are slices of `batch`; those of a compressed batch are slices of one
/// buffer holding the decompressed section.
///
/// ```
/// use bytes::Bytes;
/// use strom_record::{decode_records, set_base_offset, BatchBuilder, Compression, DecodeLimits, Record};
///
/// let mut batch = BatchBuilder::new()
///     .compression(Compression::Zstd)
///     .build(&[Record::new(7, Some(Bytes::from("k")), None), Record::new(9, None, Some(Bytes::from("v")))])?;
/// set_base_offset(&mut batch, 100)?;
/// let decoded = decode_records(&Bytes::from(batch), DecodeLimits::default())?;
/// let offsets: Vec<_> = decoded.records.iter().map(|r| (r.offset, r.timestamp)).collect();
/// assert_eq!(offsets, [(100, 7), (101, 9)]);
/// assert_eq!(decoded.records[1].value.as_deref(), Some(&b"v"[..]));
/// # Ok::<(), strom_record::Error>(())
/// ```
pub fn decode_records(batch: &Bytes, limits: DecodeLimits) -> Result<DecodedBatch> {
    let header = check_stored(batch, limits)?;
    let section = match records_section(batch, &header, limits)? {
        // Borrowed means uncompressed: slice the caller's buffer instead of copying.
        Cow::Borrowed(_) => batch.slice(HEADER_LEN..header.total_len()),
        Cow::Owned(decompressed) => Bytes::from(decompressed),
    };
    let capacity = usize::try_from(header.records_count)
        .unwrap_or(0)
        .min(section.len() / MIN_RECORD_LEN);
    let mut visitor = Collect {
        section: &section,
        clock: Clock::of(&header),
        base_offset: header.base_offset,
        headers: Vec::new(),
        records: Vec::with_capacity(capacity),
    };
    walk(&section, &header, Deltas::Increasing, &mut visitor)?;
    Ok(DecodedBatch {
        header,
        records: visitor.records,
    })
}

/// The absolute offset and timestamp of every record of the stored batch at the start of
/// `batch`, in offset order, without materialising keys, values or headers. Checks exactly what
/// [`decode_records`] checks.
pub fn record_offsets_and_timestamps(
    batch: &[u8],
    limits: DecodeLimits,
) -> Result<Vec<OffsetAndTimestamp>> {
    let header = check_stored(batch, limits)?;
    let section = records_section(batch, &header, limits)?;
    let capacity = usize::try_from(header.records_count)
        .unwrap_or(0)
        .min(section.len() / MIN_RECORD_LEN);
    let mut out = Vec::with_capacity(capacity);
    let clock = Clock::of(&header);
    walk(
        &section,
        &header,
        Deltas::Increasing,
        &mut Positions(|record: &RawRecord| {
            out.push(position(&header, clock, record)?);
            Ok(Flow::Continue)
        }),
    )?;
    Ok(out)
}

/// The first record (lowest offset) of the stored batch at the start of `batch` whose timestamp
/// is at least `timestamp`, as Kafka's `ListOffsets` by timestamp needs; `None` if there is none.
/// Timestamps within a `CreateTime` batch need not be ordered, so this walks the records until it
/// finds one. Checks the batch and the records it walks as [`decode_records`] does.
pub fn find_by_timestamp(
    batch: &[u8],
    timestamp: i64,
    limits: DecodeLimits,
) -> Result<Option<OffsetAndTimestamp>> {
    let header = check_stored(batch, limits)?;
    let section = records_section(batch, &header, limits)?;
    let clock = Clock::of(&header);
    let mut found = None;
    walk(
        &section,
        &header,
        Deltas::Increasing,
        &mut Positions(|record: &RawRecord| {
            let here = position(&header, clock, record)?;
            if here.timestamp >= timestamp {
                found = Some(here);
                return Ok(Flow::Stop);
            }
            Ok(Flow::Continue)
        }),
    )?;
    Ok(found)
}

/// [`check_stored_batch`] plus the size limit and the header fields record decoding relies on.
pub(crate) fn check_stored(batch: &[u8], limits: DecodeLimits) -> Result<BatchHeader> {
    let header = check_stored_batch(batch)?;
    if header.total_len() > limits.max_batch_bytes {
        return Err(Error::InvalidBatchLength {
            length: header.batch_length,
            min: (HEADER_LEN - LOG_OVERHEAD) as i32,
            max: i32::try_from(limits.max_batch_bytes.saturating_sub(LOG_OVERHEAD))
                .unwrap_or(i32::MAX),
        });
    }
    if header.records_count < 0 {
        return Err(Error::InconsistentHeader {
            reason: "recordsCount must not be negative",
        });
    }
    if header
        .base_offset
        .checked_add(i64::from(header.last_offset_delta))
        .is_none()
    {
        return Err(Error::InconsistentHeader {
            reason: "baseOffset + lastOffsetDelta overflows",
        });
    }
    Ok(header)
}

/// The records section of a checked batch, decompressed if needed. Borrowed exactly when the
/// batch is uncompressed (or holds no records and no bytes, as compaction can leave).
pub(crate) fn records_section<'a>(
    batch: &'a [u8],
    header: &BatchHeader,
    limits: DecodeLimits,
) -> Result<Cow<'a, [u8]>> {
    let total = header.total_len();
    let body = batch.get(HEADER_LEN..total).ok_or(Error::Truncated {
        needed: total,
        available: batch.len(),
    })?;
    match header.compression()? {
        Compression::None => Ok(Cow::Borrowed(body)),
        _ if body.is_empty() && header.records_count == 0 => Ok(Cow::Owned(Vec::new())),
        codec => decompress(codec, body, limits.max_decompressed_bytes).map(Cow::Owned),
    }
}

/// How record timestamps are derived from the batch header.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Clock {
    /// `baseTimestamp + timestampDelta`.
    Create { base: i64 },
    /// Every record has the batch's `maxTimestamp`.
    LogAppend { time: i64 },
}

impl Clock {
    pub(crate) fn of(header: &BatchHeader) -> Self {
        match header.timestamp_type() {
            TimestampType::CreateTime => Clock::Create {
                base: header.base_timestamp,
            },
            TimestampType::LogAppendTime => Clock::LogAppend {
                time: header.max_timestamp,
            },
        }
    }

    pub(crate) fn timestamp(self, delta: i64) -> i64 {
        match self {
            // The builder encodes with a wrapping subtraction, so this inverts it for any i64.
            Clock::Create { base } => base.wrapping_add(delta),
            Clock::LogAppend { time } => time,
        }
    }
}

pub(crate) fn position(
    header: &BatchHeader,
    clock: Clock,
    record: &RawRecord,
) -> Result<OffsetAndTimestamp> {
    // `check_stored` made sure base + lastOffsetDelta fits and `walk` that deltas are within it;
    // the checked add keeps that reasoning out of the panic-free proof.
    let offset = header
        .base_offset
        .checked_add(i64::from(record.offset_delta))
        .ok_or(Error::MalformedRecord {
            index: record.index,
            reason: "offset overflows",
        })?;
    Ok(OffsetAndTimestamp {
        offset,
        timestamp: clock.timestamp(record.timestamp_delta),
    })
}

/// The parsed fields of one record; byte fields as ranges of the records section.
#[derive(Debug, Clone)]
pub(crate) struct RawRecord {
    pub(crate) index: usize,
    pub(crate) timestamp_delta: i64,
    pub(crate) offset_delta: i32,
    pub(crate) key: Option<Range<usize>>,
    pub(crate) value: Option<Range<usize>>,
    /// The whole encoded record (length prefix included) in the section.
    pub(crate) span: Range<usize>,
}

/// Whether [`walk`] goes on after a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    Continue,
    Stop,
}

/// Receives the parts of each record as [`walk`] parses them: the headers first, in order, then
/// the record itself.
pub(crate) trait Visitor {
    fn header(&mut self, _key: Range<usize>, _value: Option<Range<usize>>) {}
    fn record(&mut self, record: &RawRecord) -> Result<Flow>;
}

struct NoVisitor;

impl Visitor for NoVisitor {
    fn record(&mut self, _: &RawRecord) -> Result<Flow> {
        Ok(Flow::Continue)
    }
}

/// Adapts a closure that only wants offsets and timestamps.
pub(crate) struct Positions<F>(pub(crate) F);

impl<F: FnMut(&RawRecord) -> Result<Flow>> Visitor for Positions<F> {
    fn record(&mut self, record: &RawRecord) -> Result<Flow> {
        (self.0)(record)
    }
}

/// Builds [`DecodedRecord`]s sharing the section's buffer.
struct Collect<'a> {
    section: &'a Bytes,
    clock: Clock,
    base_offset: i64,
    headers: Vec<RecordHeader>,
    records: Vec<DecodedRecord>,
}

impl Collect<'_> {
    fn slice(&self, range: Range<usize>) -> Bytes {
        // Ranges come from `walk`, which only yields ranges inside the section.
        if range.end <= self.section.len() && range.start <= range.end {
            self.section.slice(range)
        } else {
            Bytes::new()
        }
    }
}

impl Visitor for Collect<'_> {
    fn header(&mut self, key: Range<usize>, value: Option<Range<usize>>) {
        let header = RecordHeader {
            key: self.slice(key),
            value: value.map(|v| self.slice(v)),
        };
        self.headers.push(header);
    }

    fn record(&mut self, record: &RawRecord) -> Result<Flow> {
        let offset = self
            .base_offset
            .checked_add(i64::from(record.offset_delta))
            .ok_or(Error::MalformedRecord {
                index: record.index,
                reason: "offset overflows",
            })?;
        let decoded = DecodedRecord {
            offset,
            timestamp: self.clock.timestamp(record.timestamp_delta),
            key: record.key.clone().map(|r| self.slice(r)),
            value: record.value.clone().map(|r| self.slice(r)),
            headers: std::mem::take(&mut self.headers),
        };
        self.records.push(decoded);
        Ok(Flow::Continue)
    }
}

/// Which offset deltas are legal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Deltas {
    /// Record `i` has delta `i` (batches from clients).
    Dense,
    /// Strictly increasing, within `0..=lastOffsetDelta` (stored batches, possibly compacted).
    Increasing,
}

/// Parses the records section of a batch with `header`, handing each record to `visitor`.
pub(crate) fn walk(
    section: &[u8],
    header: &BatchHeader,
    deltas: Deltas,
    visitor: &mut impl Visitor,
) -> Result<()> {
    let count = usize::try_from(header.records_count).map_err(|_| Error::InconsistentHeader {
        reason: "recordsCount must not be negative",
    })?;
    let mut pos = 0;
    let mut previous_delta: Option<i32> = None;
    // Every iteration consumes at least one byte or fails, so this loop is bounded by the
    // section's length whatever `count` claims.
    for index in 0..count {
        if pos >= section.len() {
            return Err(Error::MalformedRecord {
                index,
                reason: "records section ends before recordsCount records",
            });
        }
        let record = parse_record(section, &mut pos, index, visitor)?;
        let delta_ok = match deltas {
            Deltas::Dense => usize::try_from(record.offset_delta).is_ok_and(|d| d == index),
            Deltas::Increasing => {
                record.offset_delta >= 0
                    && record.offset_delta <= header.last_offset_delta
                    && previous_delta.is_none_or(|p| record.offset_delta > p)
            }
        };
        if !delta_ok {
            return Err(Error::MalformedRecord {
                index,
                reason: match deltas {
                    Deltas::Dense => "offset delta is not the record's index in the batch",
                    Deltas::Increasing => {
                        "offset delta is not increasing within 0..=lastOffsetDelta"
                    }
                },
            });
        }
        previous_delta = Some(record.offset_delta);
        if visitor.record(&record)? == Flow::Stop {
            return Ok(());
        }
    }
    if pos != section.len() {
        return Err(Error::MalformedRecord {
            index: count,
            reason: "bytes left after the last record",
        });
    }
    Ok(())
}

/// Reads fields from the bytes of one record; positions are relative to the whole section.
struct Fields<'a> {
    /// The section up to the end of the current record.
    buf: &'a [u8],
    pos: usize,
    index: usize,
}

impl Fields<'_> {
    fn malformed(&self, reason: &'static str) -> Error {
        Error::MalformedRecord {
            index: self.index,
            reason,
        }
    }

    fn rest(&self) -> &[u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    fn varint(&mut self) -> Result<i32> {
        let (value, n) = get_varint(self.rest()).map_err(|e| self.varint_error(e))?;
        self.pos += n;
        Ok(value)
    }

    fn varlong(&mut self) -> Result<i64> {
        let (value, n) = get_varlong(self.rest()).map_err(|e| self.varint_error(e))?;
        self.pos += n;
        Ok(value)
    }

    fn varint_error(&self, e: VarintError) -> Error {
        self.malformed(e.reason())
    }

    fn byte(&mut self) -> Result<u8> {
        let b = *self
            .rest()
            .first()
            .ok_or(self.malformed("record ends inside its attributes"))?;
        self.pos += 1;
        Ok(b)
    }

    /// A length-prefixed byte field; `-1` is null.
    fn bytes(&mut self) -> Result<Option<Range<usize>>> {
        let len = self.varint()?;
        if len == -1 {
            return Ok(None);
        }
        let len = usize::try_from(len).map_err(|_| self.malformed("field length below -1"))?;
        if len > self.rest().len() {
            return Err(self.malformed("field runs past the end of the record"));
        }
        let start = self.pos;
        self.pos += len;
        Ok(Some(start..self.pos))
    }
}

/// Parses the record starting at `*pos` and advances `*pos` past it.
fn parse_record(
    section: &[u8],
    pos: &mut usize,
    index: usize,
    visitor: &mut impl Visitor,
) -> Result<RawRecord> {
    let malformed = |reason| Error::MalformedRecord { index, reason };
    let record_start = *pos;
    let rest = section.get(*pos..).unwrap_or_default();
    let (length, n) = get_varint(rest).map_err(|e| malformed(e.reason()))?;
    let length = usize::try_from(length).map_err(|_| malformed("record length is negative"))?;
    let start = *pos + n;
    let end = start
        .checked_add(length)
        .filter(|&end| end <= section.len())
        .ok_or(malformed("record runs past the end of the records section"))?;
    let mut fields = Fields {
        buf: section.get(..end).unwrap_or_default(),
        pos: start,
        index,
    };
    let _attributes = fields.byte()?;
    let timestamp_delta = fields.varlong()?;
    let offset_delta = fields.varint()?;
    let key = fields.bytes()?;
    let value = fields.bytes()?;
    let header_count = fields.varint()?;
    if header_count < 0 {
        return Err(malformed("header count is negative"));
    }
    for _ in 0..header_count {
        // Each header takes at least two bytes, so a huge count fails on the record's end.
        let key = fields.bytes()?.ok_or(malformed("header key is null"))?;
        let value = fields.bytes()?;
        visitor.header(key, value);
    }
    if fields.pos != end {
        return Err(malformed("record length does not match its fields"));
    }
    *pos = end;
    Ok(RawRecord {
        index,
        timestamp_delta,
        offset_delta,
        key,
        value,
        span: record_start..end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{self, write_header};
    use crate::varint::{put_varint, put_varlong};
    use crate::{BatchBuilder, set_base_offset, set_log_append_time};

    #[test]
    fn validate_records_keyed_reports_keyless_records_of_any_codec() {
        for compression in [crate::Compression::None, crate::Compression::Lz4] {
            let records = [
                crate::Record::new(1, Some(Bytes::from_static(b"k")), None),
                crate::Record::new(2, None, Some(Bytes::from_static(b"v"))),
                crate::Record::new(3, Some(Bytes::new()), None),
                crate::Record::new(4, None, None),
            ];
            let batch = BatchBuilder::new()
                .compression(compression)
                .build(&records)
                .unwrap();
            assert_eq!(
                validate_records_keyed(&batch, DecodeLimits::default()).unwrap(),
                [1, 3]
            );
            let keyed = BatchBuilder::new()
                .compression(compression)
                .build(&records[..1])
                .unwrap();
            assert!(
                validate_records_keyed(&keyed, DecodeLimits::default())
                    .unwrap()
                    .is_empty()
            );
            let mut damaged = batch.clone();
            let last = damaged.len() - 1;
            damaged[last] ^= 1;
            assert!(validate_records_keyed(&damaged, DecodeLimits::default()).is_err());
        }
    }

    fn put_field(out: &mut Vec<u8>, field: Option<&[u8]>) {
        match field {
            None => put_varint(out, -1),
            Some(b) => {
                put_varint(out, b.len() as i32);
                out.extend_from_slice(b);
            }
        }
    }

    /// The body of a record (everything after its length).
    fn body(
        ts_delta: i64,
        offset_delta: i32,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&[u8], Option<&[u8]>)],
    ) -> Vec<u8> {
        let mut out = vec![0u8];
        put_varlong(&mut out, ts_delta);
        put_varint(&mut out, offset_delta);
        put_field(&mut out, key);
        put_field(&mut out, value);
        put_varint(&mut out, headers.len() as i32);
        for (k, v) in headers {
            put_field(&mut out, Some(k));
            put_field(&mut out, *v);
        }
        out
    }

    fn framed(body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        put_varint(&mut out, body.len() as i32);
        out.extend_from_slice(body);
        out
    }

    fn simple(offset_delta: i32) -> Vec<u8> {
        framed(&body(
            offset_delta as i64,
            offset_delta,
            None,
            Some(b"v"),
            &[],
        ))
    }

    /// A batch around an arbitrary records section, with a correct CRC.
    fn batch_around(
        section: &[u8],
        codec: Compression,
        records_count: i32,
        last_offset_delta: i32,
    ) -> Vec<u8> {
        let body = crate::compression::compress(codec, section).unwrap();
        let mut out = vec![0u8; HEADER_LEN];
        out.extend_from_slice(&body);
        let header = BatchHeader {
            base_offset: 0,
            batch_length: (out.len() - LOG_OVERHEAD) as i32,
            partition_leader_epoch: -1,
            magic: batch::MAGIC,
            crc: 0,
            attributes: batch::attributes(codec, TimestampType::CreateTime, false, false),
            last_offset_delta,
            base_timestamp: 1_000,
            max_timestamp: 1_000 + i64::from(last_offset_delta),
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            records_count,
        };
        write_header(&mut out, &header).unwrap();
        out
    }

    fn limits() -> DecodeLimits {
        DecodeLimits::default()
    }

    fn malformed(result: Result<impl std::fmt::Debug>) -> (usize, &'static str) {
        match result {
            Err(Error::MalformedRecord { index, reason }) => (index, reason),
            other => panic!("expected a malformed record, got {other:?}"),
        }
    }

    #[test]
    fn decodes_what_the_builder_wrote_for_every_codec() {
        let mut record = Record::new(2_000, Some(Bytes::from("key")), None);
        record.headers = vec![
            RecordHeader {
                key: Bytes::from("h"),
                value: Some(Bytes::from("1")),
            },
            RecordHeader {
                key: Bytes::from("h"),
                value: None,
            },
        ];
        let records = vec![
            Record::new(1_000, None, Some(Bytes::from("first"))),
            record,
            Record::new(500, Some(Bytes::new()), Some(Bytes::new())),
        ];
        for codec in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let mut batch = BatchBuilder::new()
                .compression(codec)
                .build(&records)
                .unwrap();
            set_base_offset(&mut batch, 40).unwrap();
            validate_records(&batch, limits()).unwrap();
            let decoded = decode_records(&Bytes::from(batch), limits()).unwrap();
            assert_eq!(decoded.header.records_count, 3);
            let offsets: Vec<i64> = decoded.records.iter().map(|r| r.offset).collect();
            assert_eq!(offsets, [40, 41, 42], "{codec:?}");
            let back: Vec<Record> = decoded.records.into_iter().map(Record::from).collect();
            assert_eq!(back, records, "{codec:?}");
        }
    }

    #[test]
    fn uncompressed_fields_share_the_input_buffer() {
        let batch = BatchBuilder::new()
            .build(&[Record::new(1, None, Some(Bytes::from("value")))])
            .unwrap();
        let batch = Bytes::from(batch);
        let decoded = decode_records(&batch, limits()).unwrap();
        let value = decoded.records[0].value.as_ref().unwrap();
        let inside = batch.as_ptr_range();
        assert!(inside.contains(&value.as_ptr()));
    }

    #[test]
    fn log_append_time_applies_to_every_record() {
        let mut batch = BatchBuilder::new()
            .compression(Compression::Lz4)
            .build(&[Record::new(1, None, None), Record::new(2, None, None)])
            .unwrap();
        set_log_append_time(&mut batch, 99_000).unwrap();
        let decoded = decode_records(&Bytes::from(batch.clone()), limits()).unwrap();
        assert!(decoded.records.iter().all(|r| r.timestamp == 99_000));
        let positions = record_offsets_and_timestamps(&batch, limits()).unwrap();
        assert_eq!(
            positions,
            [
                OffsetAndTimestamp {
                    offset: 0,
                    timestamp: 99_000
                },
                OffsetAndTimestamp {
                    offset: 1,
                    timestamp: 99_000
                }
            ]
        );
    }

    #[test]
    fn find_by_timestamp_returns_the_first_record_at_or_after() {
        let records: Vec<Record> = [50, 10, 70, 60]
            .into_iter()
            .map(|ts| Record::new(ts, None, None))
            .collect();
        let mut batch = BatchBuilder::new().build(&records).unwrap();
        set_base_offset(&mut batch, 10).unwrap();
        let find = |ts| find_by_timestamp(&batch, ts, limits()).unwrap();
        let at = |offset, timestamp| Some(OffsetAndTimestamp { offset, timestamp });
        assert_eq!(find(0), at(10, 50));
        assert_eq!(find(55), at(12, 70));
        assert_eq!(find(61), at(12, 70));
        assert_eq!(find(71), None);
    }

    #[test]
    fn compacted_batches_with_gaps_decode_but_do_not_validate() {
        let section = [simple(0), simple(2), simple(5)].concat();
        let batch = batch_around(&section, Compression::None, 3, 5);
        let decoded = decode_records(&Bytes::from(batch.clone()), limits()).unwrap();
        let offsets: Vec<i64> = decoded.records.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, [0, 2, 5]);
        assert!(matches!(
            validate_records(&batch, limits()),
            Err(Error::InconsistentHeader { .. })
        ));
    }

    #[test]
    fn stored_deltas_must_increase_within_the_batch() {
        for deltas in [[0, 0], [1, 0], [0, 6], [-1, 0]] {
            let section = [simple(deltas[0]), simple(deltas[1])].concat();
            let batch = batch_around(&section, Compression::None, 2, 5);
            let (index, _) = malformed(decode_records(&Bytes::from(batch), limits()));
            assert!(index <= 1, "{deltas:?}");
        }
    }

    #[test]
    fn empty_compacted_batch_decodes_to_nothing() {
        let mut batch = batch_around(&[], Compression::None, 0, 3);
        // Mark as zstd with an empty body, as compaction can leave it.
        batch[22] |= Compression::Zstd.id() as i8 as u8;
        let crc = crc32c::crc32c(&batch[21..]);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
        let decoded = decode_records(&Bytes::from(batch), limits()).unwrap();
        assert!(decoded.records.is_empty());
    }

    #[test]
    fn produce_validation_requires_dense_deltas() {
        let section = [simple(0), simple(2)].concat();
        let batch = batch_around(&section, Compression::None, 2, 1);
        assert_eq!(
            malformed(validate_records(&batch, limits())),
            (1, "offset delta is not the record's index in the batch")
        );
    }

    #[test]
    fn record_count_must_match_the_section() {
        let section = [simple(0), simple(1)].concat();
        for codec in [Compression::None, Compression::Gzip] {
            let fewer = batch_around(&section, codec, 3, 2);
            assert_eq!(
                malformed(validate_records(&fewer, limits())),
                (2, "records section ends before recordsCount records")
            );
            let more = batch_around(&section, codec, 1, 0);
            assert_eq!(
                malformed(validate_records(&more, limits())),
                (1, "bytes left after the last record")
            );
        }
    }

    #[test]
    fn malformed_records_are_reported_with_their_index() {
        let good = simple(0);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            // length -1
            (vec![0x01], "record length is negative"),
            // length 100 with 2 bytes following
            (
                vec![0xc8, 0x01, 0, 0],
                "record runs past the end of the records section",
            ),
            // attributes missing
            (vec![0x00], "record ends inside its attributes"),
            (framed(&[0, 0, 0, 0x03]), "field length below -1"),
            (
                framed(&[0, 0, 0, 0x02, b'k', 0x01]),
                "varint runs past the end of the record",
            ),
            (
                framed(&[0, 0, 0, 0x10, b'k']),
                "field runs past the end of the record",
            ),
            (framed(&[0, 0, 0, 1, 1, 0x01]), "header count is negative"),
            (
                framed(&[0, 0, 0, 1, 1, 0x02, 0x01, 0x01]),
                "header key is null",
            ),
            (
                framed(&[0, 0, 0, 1, 1, 0, 0xff]),
                "record length does not match its fields",
            ),
            (
                framed(&[0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 1, 0]),
                "varint is too long for its type",
            ),
            (
                framed(&[
                    0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0, 1, 1, 0,
                ]),
                "varint is too long for its type",
            ),
        ];
        for (bad, reason) in cases {
            let section = [good.clone(), bad].concat();
            let batch = batch_around(&section, Compression::None, 2, 1);
            assert_eq!(malformed(validate_records(&batch, limits())), (1, reason));
            assert_eq!(
                malformed(decode_records(&Bytes::from(batch.clone()), limits())),
                (1, reason)
            );
            assert_eq!(
                malformed(record_offsets_and_timestamps(&batch, limits())),
                (1, reason)
            );
        }
    }

    #[test]
    fn null_header_values_and_empty_header_keys_are_fine() {
        let section = framed(&body(0, 0, None, None, &[(b"", None), (b"", Some(b""))]));
        let batch = batch_around(&section, Compression::None, 1, 0);
        validate_records(&batch, limits()).unwrap();
        let decoded = decode_records(&Bytes::from(batch), limits()).unwrap();
        let headers = &decoded.records[0].headers;
        assert_eq!(headers.len(), 2);
        assert_eq!(headers[0].value, None);
        assert_eq!(headers[1].value, Some(Bytes::new()));
    }

    #[test]
    fn decompression_limit_applies() {
        let records = vec![Record::new(0, None, Some(Bytes::from(vec![7u8; 100_000])))];
        let batch = BatchBuilder::new()
            .compression(Compression::Gzip)
            .build(&records)
            .unwrap();
        let small = DecodeLimits {
            max_decompressed_bytes: 50_000,
            ..DecodeLimits::default()
        };
        let too_large = Err(Error::DecompressedTooLarge { limit: 50_000 });
        assert_eq!(validate_records(&batch, small), too_large);
        assert_eq!(
            decode_records(&Bytes::from(batch.clone()), small),
            Err(Error::DecompressedTooLarge { limit: 50_000 })
        );
        assert_eq!(
            record_offsets_and_timestamps(&batch, small),
            Err(Error::DecompressedTooLarge { limit: 50_000 })
        );
    }

    #[test]
    fn batch_size_limit_applies() {
        let batch = BatchBuilder::new()
            .build(&[Record::new(0, None, Some(Bytes::from(vec![7u8; 1_000])))])
            .unwrap();
        let small = DecodeLimits {
            max_batch_bytes: 500,
            ..DecodeLimits::default()
        };
        assert!(matches!(
            validate_records(&batch, small),
            Err(Error::InvalidBatchLength { .. })
        ));
        assert!(matches!(
            decode_records(&Bytes::from(batch), small),
            Err(Error::InvalidBatchLength { .. })
        ));
    }

    #[test]
    fn offsets_that_overflow_are_rejected() {
        let mut batch = batch_around(&[simple(0), simple(1)].concat(), Compression::None, 2, 1);
        set_base_offset(&mut batch, i64::MAX).unwrap();
        assert!(matches!(
            decode_records(&Bytes::from(batch.clone()), limits()),
            Err(Error::InconsistentHeader { .. })
        ));
        // Produce validation ignores the base offset, which the leader overwrites.
        validate_records(&batch, limits()).unwrap();
    }

    #[test]
    fn extreme_timestamps_round_trip() {
        let records = vec![
            Record::new(i64::MAX, None, None),
            Record::new(i64::MIN, None, None),
            Record::new(-1, None, None),
        ];
        let batch = BatchBuilder::new().build(&records).unwrap();
        let decoded = decode_records(&Bytes::from(batch), limits()).unwrap();
        let timestamps: Vec<i64> = decoded.records.iter().map(|r| r.timestamp).collect();
        assert_eq!(timestamps, [i64::MAX, i64::MIN, -1]);
    }
}
