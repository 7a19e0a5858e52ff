//! The fixed 61-byte header of a record batch (magic 2), read and patched in place.
//!
//! Layout (big-endian), as in the Kafka protocol guide:
//!
//! ```text
//! offset  size  field
//!      0     8  baseOffset
//!      8     4  batchLength            (bytes after this field)
//!     12     4  partitionLeaderEpoch   ┐ not covered by the CRC: the broker
//!     16     1  magic (= 2)            ┘ assigns offset and epoch without re-hashing
//!     17     4  crc (CRC-32C of bytes 21..end)
//!     21     2  attributes             compression:3 | timestampType:1 | transactional:1 | control:1 | deleteHorizon:1
//!     23     4  lastOffsetDelta
//!     27     8  baseTimestamp
//!     35     8  maxTimestamp
//!     43     8  producerId
//!     51     2  producerEpoch
//!     53     4  baseSequence
//!     57     4  recordsCount
//!     61     …  records (possibly compressed)
//! ```
//!
//! [`BatchHeader::parse`] reads these fields without looking at the records;
//! [`validate_batch`] adds the CRC and consistency checks a broker must do before storing a batch
//! a client sent; the `set_*` functions patch a batch in place the way a leader does when it
//! appends (base offset, leader epoch, log-append time).

use crate::{Error, Result};

/// Size of the fixed batch header in bytes.
pub const HEADER_LEN: usize = 61;
/// Bytes before the `batchLength` field's value starts counting (baseOffset + batchLength).
pub const LOG_OVERHEAD: usize = 12;
/// The only record-batch format version Strom accepts and writes.
pub const MAGIC: i8 = 2;
/// `producerId` of a batch written by a non-idempotent producer.
pub const NO_PRODUCER_ID: i64 = -1;
/// `producerEpoch` of a batch written by a non-idempotent producer.
pub const NO_PRODUCER_EPOCH: i16 = -1;
/// `baseSequence` of a batch written by a non-idempotent producer.
pub const NO_SEQUENCE: i32 = -1;
/// `partitionLeaderEpoch` meaning "not assigned".
pub const NO_PARTITION_LEADER_EPOCH: i32 = -1;
/// A timestamp meaning "none" (Kafka's `RecordBatch.NO_TIMESTAMP`).
pub const NO_TIMESTAMP: i64 = -1;

const BASE_OFFSET: usize = 0;
const BATCH_LENGTH: usize = 8;
const PARTITION_LEADER_EPOCH: usize = 12;
const MAGIC_POS: usize = 16;
const CRC: usize = 17;
const ATTRIBUTES: usize = 21;
const LAST_OFFSET_DELTA: usize = 23;
const BASE_TIMESTAMP: usize = 27;
const MAX_TIMESTAMP: usize = 35;
const PRODUCER_ID: usize = 43;
const PRODUCER_EPOCH: usize = 51;
const BASE_SEQUENCE: usize = 53;
const RECORDS_COUNT: usize = 57;
/// Start of the CRC-covered region.
const CRC_START: usize = ATTRIBUTES;

const TIMESTAMP_TYPE_BIT: i16 = 1 << 3;
const TRANSACTIONAL_BIT: i16 = 1 << 4;
const CONTROL_BIT: i16 = 1 << 5;
const DELETE_HORIZON_BIT: i16 = 1 << 6;
pub(crate) const COMPRESSION_MASK: i16 = 0x07;

/// Compression codec of a batch's records section (attribute bits 0–2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    /// Records are stored as they are.
    None,
    /// gzip (RFC 1952).
    Gzip,
    /// Snappy, raw or in the xerial framing the Java client writes.
    Snappy,
    /// LZ4 frame format.
    Lz4,
    /// Zstandard.
    Zstd,
}

impl Compression {
    /// The codec id stored in the attribute bits.
    pub fn id(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }
}

impl TryFrom<u8> for Compression {
    type Error = Error;

    fn try_from(id: u8) -> Result<Self> {
        Ok(match id {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            id => return Err(Error::UnknownCompression { id }),
        })
    }
}

/// What a batch's timestamps mean (attribute bit 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimestampType {
    /// Set by the producer when it created the record (`CreateTime`).
    CreateTime,
    /// Set by the broker when it appended the batch (`LogAppendTime`); every record's timestamp
    /// is then the batch's `maxTimestamp`.
    LogAppendTime,
}

/// The decoded fixed header of one record batch. Cheap to copy; holds no reference to the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record (assigned by the broker; 0 as sent by clients).
    pub base_offset: i64,
    /// Bytes of the batch after the `batchLength` field.
    pub batch_length: i32,
    /// Leader epoch of the broker that appended the batch.
    pub partition_leader_epoch: i32,
    /// Format version; always [`MAGIC`] once parsed.
    pub magic: i8,
    /// Stored CRC-32C of bytes 21..end.
    pub crc: u32,
    /// Raw attribute bits.
    pub attributes: i16,
    /// Offset of the last record relative to `base_offset`.
    pub last_offset_delta: i32,
    /// Timestamp of the first record.
    pub base_timestamp: i64,
    /// Largest timestamp in the batch (the log-append time when that type is set).
    pub max_timestamp: i64,
    /// Idempotent/transactional producer id, or [`NO_PRODUCER_ID`].
    pub producer_id: i64,
    /// Producer epoch, or [`NO_PRODUCER_EPOCH`].
    pub producer_epoch: i16,
    /// Sequence number of the first record, or [`NO_SEQUENCE`].
    pub base_sequence: i32,
    /// Number of records in the batch.
    pub records_count: i32,
}

impl BatchHeader {
    /// Parses the fixed header at the start of `buf`. Checks only that 61 bytes are there, that
    /// the magic is 2 and that `batchLength` covers at least the header; it does not check the
    /// CRC nor that the whole batch is present (see [`validate_batch`]).
    pub fn parse(buf: &[u8]) -> Result<Self> {
        let header = buf.get(..HEADER_LEN).ok_or(Error::Truncated {
            needed: HEADER_LEN,
            available: buf.len(),
        })?;
        let magic = read_i8(header, MAGIC_POS);
        if magic != MAGIC {
            return Err(Error::UnsupportedMagic { magic });
        }
        let batch_length = read_i32(header, BATCH_LENGTH);
        let min = (HEADER_LEN - LOG_OVERHEAD) as i32;
        if batch_length < min {
            return Err(Error::InvalidBatchLength {
                length: batch_length,
                min,
                max: i32::MAX,
            });
        }
        Ok(BatchHeader {
            base_offset: read_i64(header, BASE_OFFSET),
            batch_length,
            partition_leader_epoch: read_i32(header, PARTITION_LEADER_EPOCH),
            magic,
            crc: read_u32(header, CRC),
            attributes: read_i16(header, ATTRIBUTES),
            last_offset_delta: read_i32(header, LAST_OFFSET_DELTA),
            base_timestamp: read_i64(header, BASE_TIMESTAMP),
            max_timestamp: read_i64(header, MAX_TIMESTAMP),
            producer_id: read_i64(header, PRODUCER_ID),
            producer_epoch: read_i16(header, PRODUCER_EPOCH),
            base_sequence: read_i32(header, BASE_SEQUENCE),
            records_count: read_i32(header, RECORDS_COUNT),
        })
    }

    /// Total size of the batch on the wire and on disk, header included.
    pub fn total_len(&self) -> usize {
        // batch_length >= 49 after `parse`, so the cast is lossless.
        LOG_OVERHEAD + self.batch_length as usize
    }

    /// Offset of the last record (`base_offset + last_offset_delta`).
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(i64::from(self.last_offset_delta))
    }

    /// Offset the next batch will start at.
    pub fn next_offset(&self) -> i64 {
        self.last_offset().saturating_add(1)
    }

    /// The codec of the records section.
    pub fn compression(&self) -> Result<Compression> {
        Compression::try_from((self.attributes & COMPRESSION_MASK) as u8)
    }

    /// What the timestamps mean.
    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & TIMESTAMP_TYPE_BIT != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    /// Whether the batch belongs to a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    /// Whether the batch holds control records (transaction markers).
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }

    /// Whether compaction set a delete horizon in `base_timestamp` (KIP-534).
    pub fn has_delete_horizon(&self) -> bool {
        self.attributes & DELETE_HORIZON_BIT != 0
    }
}

/// Builds the attribute bits from their parts.
pub fn attributes(
    compression: Compression,
    timestamp_type: TimestampType,
    transactional: bool,
    control: bool,
) -> i16 {
    let mut bits = i16::from(compression.id());
    if timestamp_type == TimestampType::LogAppendTime {
        bits |= TIMESTAMP_TYPE_BIT;
    }
    if transactional {
        bits |= TRANSACTIONAL_BIT;
    }
    if control {
        bits |= CONTROL_BIT;
    }
    bits
}

/// Limits a caller imposes while validating a batch from an untrusted source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValidationLimits {
    /// Largest accepted total batch size (header included), Kafka's `max.message.bytes`.
    pub max_batch_bytes: usize,
}

impl Default for ValidationLimits {
    fn default() -> Self {
        ValidationLimits {
            max_batch_bytes: i32::MAX as usize,
        }
    }
}

/// Checks one complete batch at the start of `buf` the way a broker must before storing it:
/// header parses, the whole batch is present, its size is within `limits`, the CRC-32C matches,
/// the codec is known and the header fields agree with each other (Kafka's rules for batches
/// from clients: `recordsCount > 0` and `lastOffsetDelta == recordsCount - 1`, unless the batch
/// is a control batch, which has exactly one record).
///
/// Records inside are not decoded here; [`crate::validate_records`] does that when a caller
/// wants the deep check. Returns the parsed header; the batch occupies
/// `buf[..header.total_len()]`.
pub fn validate_batch(buf: &[u8], limits: ValidationLimits) -> Result<BatchHeader> {
    let header = BatchHeader::parse(buf)?;
    let total = header.total_len();
    if total > limits.max_batch_bytes {
        return Err(Error::InvalidBatchLength {
            length: header.batch_length,
            min: (HEADER_LEN - LOG_OVERHEAD) as i32,
            max: i32::try_from(limits.max_batch_bytes.saturating_sub(LOG_OVERHEAD))
                .unwrap_or(i32::MAX),
        });
    }
    let batch = buf.get(..total).ok_or(Error::Truncated {
        needed: total,
        available: buf.len(),
    })?;
    let computed = crc32c::crc32c(batch.get(CRC_START..).unwrap_or_default());
    if computed != header.crc {
        return Err(Error::CrcMismatch {
            stored: header.crc,
            computed,
        });
    }
    header.compression()?;
    if header.records_count <= 0 {
        return Err(Error::InconsistentHeader {
            reason: "recordsCount must be positive",
        });
    }
    if i64::from(header.last_offset_delta) != i64::from(header.records_count) - 1 {
        return Err(Error::InconsistentHeader {
            reason: "lastOffsetDelta must equal recordsCount - 1",
        });
    }
    if header.is_control() && header.records_count != 1 {
        return Err(Error::InconsistentHeader {
            reason: "a control batch holds exactly one record",
        });
    }
    Ok(header)
}

/// Checks a stored batch during recovery or reads: the header parses, the whole batch is present
/// and the CRC matches. Unlike [`validate_batch`] it accepts any header field values, because
/// compaction can legitimately leave `lastOffsetDelta` larger than `recordsCount - 1`.
pub fn check_stored_batch(buf: &[u8]) -> Result<BatchHeader> {
    let header = BatchHeader::parse(buf)?;
    let total = header.total_len();
    let batch = buf.get(..total).ok_or(Error::Truncated {
        needed: total,
        available: buf.len(),
    })?;
    let computed = crc32c::crc32c(batch.get(CRC_START..).unwrap_or_default());
    if computed != header.crc {
        return Err(Error::CrcMismatch {
            stored: header.crc,
            computed,
        });
    }
    if header.last_offset_delta < 0 {
        return Err(Error::InconsistentHeader {
            reason: "lastOffsetDelta must not be negative",
        });
    }
    Ok(header)
}

/// Iterates over the complete batches packed one after another in `buf` (a Kafka "message set"
/// as carried by Produce and Fetch), validating each with [`validate_batch`]. Yields the header
/// and the batch's byte range; stops after the first error.
pub fn batches(buf: &[u8], limits: ValidationLimits) -> Batches<'_> {
    Batches {
        buf,
        pos: 0,
        check: Check::Produced(limits),
        failed: false,
    }
}

/// Iterates over the batches of a stored message set (what a log read returns), checking only
/// the framing: each header parses and each batch is whole. The CRC and the records are left to
/// [`crate::decode_records`], which every reader runs on the batches it keeps, so the walk adds
/// no checksum pass of its own; header values that only produced batches must have
/// (compaction's `lastOffsetDelta` gaps, empty batches) are accepted. Stops after the first
/// error.
pub fn stored_batches(buf: &[u8]) -> Batches<'_> {
    Batches {
        buf,
        pos: 0,
        check: Check::Framing,
        failed: false,
    }
}

/// What [`Batches`] checks of each batch.
#[derive(Debug, Clone, Copy)]
enum Check {
    /// Everything [`validate_batch`] checks.
    Produced(ValidationLimits),
    /// The header parses and the whole batch is present.
    Framing,
}

fn framing(buf: &[u8]) -> Result<BatchHeader> {
    let header = BatchHeader::parse(buf)?;
    if buf.len() < header.total_len() {
        return Err(Error::Truncated {
            needed: header.total_len(),
            available: buf.len(),
        });
    }
    Ok(header)
}

/// Iterator returned by [`batches`] and [`stored_batches`].
#[derive(Debug, Clone)]
pub struct Batches<'a> {
    buf: &'a [u8],
    pos: usize,
    check: Check,
    failed: bool,
}

impl Iterator for Batches<'_> {
    type Item = Result<(BatchHeader, std::ops::Range<usize>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let rest = self.buf.get(self.pos..)?;
        if rest.is_empty() {
            return None;
        }
        let checked = match self.check {
            Check::Produced(limits) => validate_batch(rest, limits),
            Check::Framing => framing(rest),
        };
        match checked {
            Ok(header) => {
                let start = self.pos;
                self.pos += header.total_len();
                Some(Ok((header, start..self.pos)))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// Sets `baseOffset` of the batch at the start of `batch`. The field is outside the CRC.
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) -> Result<()> {
    write_bytes(batch, BASE_OFFSET, &base_offset.to_be_bytes())
}

/// Sets `partitionLeaderEpoch` of the batch at the start of `batch`. Outside the CRC.
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) -> Result<()> {
    write_bytes(batch, PARTITION_LEADER_EPOCH, &epoch.to_be_bytes())
}

/// Marks the batch as `LogAppendTime` with the given append time in `maxTimestamp`, and
/// recomputes the CRC over the whole batch, which must be complete in `batch`.
pub fn set_log_append_time(batch: &mut [u8], append_time_ms: i64) -> Result<()> {
    let header = BatchHeader::parse(batch)?;
    let total = header.total_len();
    if batch.len() < total {
        return Err(Error::Truncated {
            needed: total,
            available: batch.len(),
        });
    }
    let attributes = header.attributes | TIMESTAMP_TYPE_BIT;
    write_bytes(batch, ATTRIBUTES, &attributes.to_be_bytes())?;
    write_bytes(batch, MAX_TIMESTAMP, &append_time_ms.to_be_bytes())?;
    let crc = crc32c::crc32c(batch.get(CRC_START..total).unwrap_or_default());
    write_bytes(batch, CRC, &crc.to_be_bytes())
}

fn write_bytes(buf: &mut [u8], at: usize, bytes: &[u8]) -> Result<()> {
    let available = buf.len();
    let dst = buf.get_mut(at..at + bytes.len()).ok_or(Error::Truncated {
        needed: at + bytes.len(),
        available,
    })?;
    dst.copy_from_slice(bytes);
    Ok(())
}

/// Reads `N` bytes at `at` from a slice already known to hold the fixed header.
fn array<const N: usize>(buf: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(src) = buf.get(at..at + N) {
        out.copy_from_slice(src);
    }
    out
}

fn read_i8(buf: &[u8], at: usize) -> i8 {
    i8::from_be_bytes(array(buf, at))
}
fn read_i16(buf: &[u8], at: usize) -> i16 {
    i16::from_be_bytes(array(buf, at))
}
fn read_i32(buf: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(array(buf, at))
}
fn read_u32(buf: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(array(buf, at))
}
fn read_i64(buf: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(array(buf, at))
}

/// Writes a fixed header into the first 61 bytes of `out` and the CRC over `out[21..]`, which must
/// already hold the records section after the header. Used by the batch builder.
pub(crate) fn write_header(out: &mut [u8], header: &BatchHeader) -> Result<()> {
    write_bytes(out, BASE_OFFSET, &header.base_offset.to_be_bytes())?;
    write_bytes(out, BATCH_LENGTH, &header.batch_length.to_be_bytes())?;
    write_bytes(
        out,
        PARTITION_LEADER_EPOCH,
        &header.partition_leader_epoch.to_be_bytes(),
    )?;
    write_bytes(out, MAGIC_POS, &MAGIC.to_be_bytes())?;
    write_bytes(out, ATTRIBUTES, &header.attributes.to_be_bytes())?;
    write_bytes(
        out,
        LAST_OFFSET_DELTA,
        &header.last_offset_delta.to_be_bytes(),
    )?;
    write_bytes(out, BASE_TIMESTAMP, &header.base_timestamp.to_be_bytes())?;
    write_bytes(out, MAX_TIMESTAMP, &header.max_timestamp.to_be_bytes())?;
    write_bytes(out, PRODUCER_ID, &header.producer_id.to_be_bytes())?;
    write_bytes(out, PRODUCER_EPOCH, &header.producer_epoch.to_be_bytes())?;
    write_bytes(out, BASE_SEQUENCE, &header.base_sequence.to_be_bytes())?;
    write_bytes(out, RECORDS_COUNT, &header.records_count.to_be_bytes())?;
    let crc = crc32c::crc32c(out.get(CRC_START..).unwrap_or_default());
    write_bytes(out, CRC, &crc.to_be_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BatchBuilder, Record};

    fn sample() -> Vec<u8> {
        BatchBuilder::new()
            .build(&[Record::new(10, None, None), Record::new(20, None, None)])
            .unwrap()
    }

    /// Rewrites one big-endian field and recomputes the CRC.
    fn patch(batch: &mut [u8], at: usize, bytes: &[u8]) {
        batch[at..at + bytes.len()].copy_from_slice(bytes);
        let crc = crc32c::crc32c(&batch[CRC_START..]);
        batch[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
    }

    #[test]
    fn parse_reads_every_field() {
        let batch = sample();
        let header = BatchHeader::parse(&batch).unwrap();
        assert_eq!(header.base_offset, 0);
        assert_eq!(header.total_len(), batch.len());
        assert_eq!(header.magic, MAGIC);
        assert_eq!(header.records_count, 2);
        assert_eq!(header.last_offset_delta, 1);
        assert_eq!((header.base_timestamp, header.max_timestamp), (10, 20));
        assert_eq!(header.producer_id, NO_PRODUCER_ID);
        assert_eq!(header.producer_epoch, NO_PRODUCER_EPOCH);
        assert_eq!(header.base_sequence, NO_SEQUENCE);
        assert_eq!(header.partition_leader_epoch, NO_PARTITION_LEADER_EPOCH);
        assert_eq!(header.compression(), Ok(Compression::None));
        assert_eq!(header.timestamp_type(), TimestampType::CreateTime);
        assert!(!header.is_transactional() && !header.is_control() && !header.has_delete_horizon());
        assert_eq!(header.next_offset(), 2);
    }

    #[test]
    fn parse_rejects_short_input_other_magic_and_tiny_lengths() {
        let batch = sample();
        assert_eq!(
            BatchHeader::parse(&batch[..60]),
            Err(Error::Truncated {
                needed: HEADER_LEN,
                available: 60
            })
        );
        let mut v1 = batch.clone();
        v1[MAGIC_POS] = 1;
        assert_eq!(
            BatchHeader::parse(&v1),
            Err(Error::UnsupportedMagic { magic: 1 })
        );
        let mut tiny = batch.clone();
        tiny[BATCH_LENGTH..BATCH_LENGTH + 4].copy_from_slice(&48i32.to_be_bytes());
        assert!(matches!(
            BatchHeader::parse(&tiny),
            Err(Error::InvalidBatchLength { length: 48, .. })
        ));
    }

    #[test]
    fn attribute_bits_compose() {
        let bits = attributes(Compression::Zstd, TimestampType::LogAppendTime, true, true);
        assert_eq!(bits, 4 | 8 | 16 | 32);
        for id in 0..=4 {
            assert_eq!(Compression::try_from(id).unwrap().id(), id);
        }
        assert_eq!(
            Compression::try_from(5),
            Err(Error::UnknownCompression { id: 5 })
        );
    }

    #[test]
    fn validate_batch_enforces_the_produce_rules() {
        let batch = sample();
        assert!(validate_batch(&batch, ValidationLimits::default()).is_ok());

        let small = ValidationLimits {
            max_batch_bytes: batch.len() - 1,
        };
        assert!(matches!(
            validate_batch(&batch, small),
            Err(Error::InvalidBatchLength { .. })
        ));

        let mut zero = batch.clone();
        patch(&mut zero, RECORDS_COUNT, &0i32.to_be_bytes());
        assert!(matches!(
            validate_batch(&zero, ValidationLimits::default()),
            Err(Error::InconsistentHeader { .. })
        ));
        // Accepted from the log, where compaction can leave such batches.
        assert!(check_stored_batch(&zero).is_ok());

        let mut gap = batch.clone();
        patch(&mut gap, LAST_OFFSET_DELTA, &5i32.to_be_bytes());
        assert!(matches!(
            validate_batch(&gap, ValidationLimits::default()),
            Err(Error::InconsistentHeader { .. })
        ));
        assert!(check_stored_batch(&gap).is_ok());

        let mut negative = batch.clone();
        patch(&mut negative, LAST_OFFSET_DELTA, &(-1i32).to_be_bytes());
        assert!(matches!(
            check_stored_batch(&negative),
            Err(Error::InconsistentHeader { .. })
        ));

        let mut codec = batch.clone();
        patch(&mut codec, ATTRIBUTES, &7i16.to_be_bytes());
        assert_eq!(
            validate_batch(&codec, ValidationLimits::default()),
            Err(Error::UnknownCompression { id: 7 })
        );

        let mut control = batch.clone();
        patch(&mut control, ATTRIBUTES, &CONTROL_BIT.to_be_bytes());
        assert!(matches!(
            validate_batch(&control, ValidationLimits::default()),
            Err(Error::InconsistentHeader { .. })
        ));
    }

    #[test]
    fn batches_walks_a_message_set_and_stops_at_the_first_error() {
        let one = sample();
        let mut set = one.clone();
        set.extend_from_slice(&one);
        set.extend_from_slice(&one[..30]);
        let mut it = batches(&set, ValidationLimits::default());
        assert_eq!(it.next().unwrap().unwrap().1, 0..one.len());
        assert_eq!(it.next().unwrap().unwrap().1, one.len()..2 * one.len());
        assert!(matches!(it.next(), Some(Err(Error::Truncated { .. }))));
        assert!(it.next().is_none());
        assert!(batches(&[], ValidationLimits::default()).next().is_none());
    }

    #[test]
    fn stored_batches_check_framing_only() {
        let one = sample();
        let mut gapped = one.clone();
        // What compaction leaves: lastOffsetDelta past recordsCount - 1.
        patch(&mut gapped, LAST_OFFSET_DELTA, &9i32.to_be_bytes());
        let mut set = one.clone();
        set.extend_from_slice(&gapped);
        assert!(matches!(
            batches(&set, ValidationLimits::default()).nth(1),
            Some(Err(_))
        ));
        let walked: Vec<_> = stored_batches(&set)
            .map(|b| b.map(|(h, r)| (h.last_offset_delta, r)))
            .collect();
        assert_eq!(
            walked.into_iter().map(|b| b.unwrap()).collect::<Vec<_>>(),
            [(1, 0..one.len()), (9, one.len()..2 * one.len())]
        );
        set.extend_from_slice(&one[..HEADER_LEN + 1]);
        let mut it = stored_batches(&set).skip(2);
        assert!(matches!(it.next(), Some(Err(Error::Truncated { .. }))));
        assert!(it.next().is_none());
        // A flipped bit passes the walk; decoding the batch reports it.
        let mut flipped = one.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        let (_, range) = stored_batches(&flipped).next().unwrap().unwrap();
        assert!(matches!(
            crate::decode_records(
                &bytes::Bytes::copy_from_slice(&flipped[range]),
                crate::DecodeLimits::default()
            ),
            Err(Error::CrcMismatch { .. })
        ));
        let mut bad_magic = one.clone();
        bad_magic[MAGIC_POS] = 1;
        assert!(matches!(
            stored_batches(&bad_magic).next(),
            Some(Err(Error::UnsupportedMagic { magic: 1 }))
        ));
    }

    #[test]
    fn patchers_change_only_their_fields() {
        let mut batch = sample();
        set_base_offset(&mut batch, 77).unwrap();
        set_partition_leader_epoch(&mut batch, 5).unwrap();
        let header = validate_batch(&batch, ValidationLimits::default()).unwrap();
        assert_eq!((header.base_offset, header.partition_leader_epoch), (77, 5));

        set_log_append_time(&mut batch, 1_234).unwrap();
        let header = validate_batch(&batch, ValidationLimits::default()).unwrap();
        assert_eq!(header.timestamp_type(), TimestampType::LogAppendTime);
        assert_eq!(header.max_timestamp, 1_234);
        assert_eq!(header.base_timestamp, 10);
    }

    #[test]
    fn patchers_reject_short_buffers() {
        let batch = sample();
        let mut short = batch[..7].to_vec();
        assert!(matches!(
            set_base_offset(&mut short, 1),
            Err(Error::Truncated { .. })
        ));
        let mut short = batch[..15].to_vec();
        assert!(matches!(
            set_partition_leader_epoch(&mut short, 1),
            Err(Error::Truncated { .. })
        ));
        let mut headless = batch[..HEADER_LEN + 1].to_vec();
        assert!(matches!(
            set_log_append_time(&mut headless, 1),
            Err(Error::Truncated { .. })
        ));
    }
}
