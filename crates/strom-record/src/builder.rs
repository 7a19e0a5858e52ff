//! Building record batches from plain records, for callers that are not Kafka clients
//! (the Kinesis front end, the CLI, internal topics, tests).

use bytes::Bytes;

use crate::batch::{self, BatchHeader, HEADER_LEN, LOG_OVERHEAD};
use crate::varint::{put_varint, put_varlong, varint_len, varlong_len};
use crate::{Compression, Error, Record, Result, TimestampType};

/// Settings for one batch; [`BatchBuilder::build`] turns records into batch bytes.
///
/// ```
/// use bytes::Bytes;
/// use strom_record::{BatchBuilder, Record, validate_batch, ValidationLimits};
///
/// let records = vec![Record::new(1_700_000_000_000, Some(Bytes::from("k")), Some(Bytes::from("v")))];
/// let batch = BatchBuilder::new().build(&records)?;
/// let header = validate_batch(&batch, ValidationLimits::default())?;
/// assert_eq!(header.records_count, 1);
/// # Ok::<(), strom_record::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct BatchBuilder {
    /// Base offset written into the header (the log overwrites it on append).
    pub base_offset: i64,
    /// Leader epoch written into the header.
    pub partition_leader_epoch: i32,
    /// Codec for the records section.
    pub compression: Compression,
    /// Timestamp type bit.
    pub timestamp_type: TimestampType,
    /// Producer id, or [`batch::NO_PRODUCER_ID`].
    pub producer_id: i64,
    /// Producer epoch, or [`batch::NO_PRODUCER_EPOCH`].
    pub producer_epoch: i16,
    /// Sequence of the first record, or [`batch::NO_SEQUENCE`].
    pub base_sequence: i32,
    /// Transactional bit.
    pub transactional: bool,
    /// Control bit.
    pub control: bool,
}

impl Default for BatchBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl BatchBuilder {
    /// A builder for an uncompressed, non-transactional `CreateTime` batch at offset 0.
    pub fn new() -> Self {
        BatchBuilder {
            base_offset: 0,
            partition_leader_epoch: batch::NO_PARTITION_LEADER_EPOCH,
            compression: Compression::None,
            timestamp_type: TimestampType::CreateTime,
            producer_id: batch::NO_PRODUCER_ID,
            producer_epoch: batch::NO_PRODUCER_EPOCH,
            base_sequence: batch::NO_SEQUENCE,
            transactional: false,
            control: false,
        }
    }

    /// Sets the codec.
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// Encodes `records` (at least one) as one batch. Record `i` gets offset delta `i`; the
    /// batch's base timestamp is the first record's and its max timestamp the largest.
    pub fn build(&self, records: &[Record]) -> Result<Vec<u8>> {
        let first = records.first().ok_or(Error::OutOfRange {
            what: "a batch needs at least one record",
        })?;
        let count = i32::try_from(records.len()).map_err(|_| Error::OutOfRange {
            what: "record count",
        })?;
        let base_timestamp = first.timestamp;
        let max_timestamp = records
            .iter()
            .map(|r| r.timestamp)
            .max()
            .unwrap_or(base_timestamp);

        let approx: usize = records.iter().map(Record::approx_len).sum();
        let mut out = Vec::with_capacity(HEADER_LEN + approx);
        out.resize(HEADER_LEN, 0);
        if self.compression == Compression::None {
            // Uncompressed: the records go straight after the header, no intermediate copy.
            for (i, record) in records.iter().enumerate() {
                encode_record(&mut out, record, i as i32, base_timestamp)?;
            }
        } else {
            let mut raw = Vec::with_capacity(approx);
            for (i, record) in records.iter().enumerate() {
                encode_record(&mut raw, record, i as i32, base_timestamp)?;
            }
            out.extend_from_slice(&crate::compression::compress(self.compression, &raw)?);
        }

        let total = out.len();
        let batch_length = i32::try_from(total - LOG_OVERHEAD).map_err(|_| Error::OutOfRange {
            what: "batch length",
        })?;
        let header = BatchHeader {
            base_offset: self.base_offset,
            batch_length,
            partition_leader_epoch: self.partition_leader_epoch,
            magic: batch::MAGIC,
            crc: 0,
            attributes: batch::attributes(
                self.compression,
                self.timestamp_type,
                self.transactional,
                self.control,
            ),
            last_offset_delta: count - 1,
            base_timestamp,
            max_timestamp,
            producer_id: self.producer_id,
            producer_epoch: self.producer_epoch,
            base_sequence: self.base_sequence,
            records_count: count,
        };
        batch::write_header(&mut out, &header)?;
        Ok(out)
    }
}

fn bytes_len(b: Option<&Bytes>) -> Result<i32> {
    match b {
        None => Ok(-1),
        Some(b) => i32::try_from(b.len()).map_err(|_| Error::OutOfRange {
            what: "field length",
        }),
    }
}

fn put_bytes(out: &mut Vec<u8>, b: Option<&Bytes>) -> Result<()> {
    put_varint(out, bytes_len(b)?);
    if let Some(b) = b {
        out.extend_from_slice(b);
    }
    Ok(())
}

/// Bytes [`put_bytes`] writes for `b`.
fn bytes_field_len(b: Option<&Bytes>) -> Result<usize> {
    Ok(varint_len(bytes_len(b)?) + b.map_or(0, Bytes::len))
}

/// Appends one record: `length:varint attributes:int8 timestampDelta:varlong offsetDelta:varint
/// keyLength:varint key valueLength:varint value headerCount:varint [headerKeyLength:varint
/// headerKey headerValueLength:varint headerValue]`. The length is computed first, so the
/// record is written once, in place.
fn encode_record(
    out: &mut Vec<u8>,
    record: &Record,
    offset_delta: i32,
    base_ts: i64,
) -> Result<()> {
    let timestamp_delta = record.timestamp.wrapping_sub(base_ts);
    let header_count = i32::try_from(record.headers.len()).map_err(|_| Error::OutOfRange {
        what: "header count",
    })?;
    let mut body_len = 1 // record attributes
        + varlong_len(timestamp_delta)
        + varint_len(offset_delta)
        + bytes_field_len(record.key.as_ref())?
        + bytes_field_len(record.value.as_ref())?
        + varint_len(header_count);
    for h in &record.headers {
        body_len += bytes_field_len(Some(&h.key))? + bytes_field_len(h.value.as_ref())?;
    }
    let len = i32::try_from(body_len).map_err(|_| Error::OutOfRange {
        what: "record length",
    })?;
    out.reserve(varint_len(len) + body_len);
    put_varint(out, len);
    out.push(0u8); // record attributes: unused
    put_varlong(out, timestamp_delta);
    put_varint(out, offset_delta);
    put_bytes(out, record.key.as_ref())?;
    put_bytes(out, record.value.as_ref())?;
    put_varint(out, header_count);
    for h in &record.headers {
        put_bytes(out, Some(&h.key))?;
        put_bytes(out, h.value.as_ref())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BatchHeader, validate_batch};

    #[test]
    fn a_batch_needs_a_record() {
        assert!(matches!(
            BatchBuilder::new().build(&[]),
            Err(Error::OutOfRange { .. })
        ));
    }

    #[test]
    fn records_are_encoded_as_the_protocol_says() {
        let batch = BatchBuilder::new()
            .build(&[Record::new(
                5,
                Some(Bytes::from("k")),
                Some(Bytes::from("v")),
            )])
            .unwrap();
        // length 8, attributes, timestampDelta 0, offsetDelta 0, key "k", value "v", no headers.
        assert_eq!(
            &batch[HEADER_LEN..],
            &[0x10, 0x00, 0x00, 0x00, 0x02, b'k', 0x02, b'v', 0x00]
        );
    }

    #[test]
    fn null_fields_and_headers_are_encoded() {
        let mut record = Record::new(7, None, None);
        record.headers.push(crate::RecordHeader {
            key: Bytes::from("h"),
            value: None,
        });
        let batch = BatchBuilder::new()
            .build(&[Record::new(5, None, None), record])
            .unwrap();
        let second = &batch[HEADER_LEN + 7..];
        // length 9, attributes, timestampDelta +2, offsetDelta 1, null key, null value,
        // one header "h" with a null value.
        assert_eq!(
            second,
            &[0x12, 0x00, 0x04, 0x02, 0x01, 0x01, 0x02, 0x02, b'h', 0x01]
        );
    }

    #[test]
    fn header_fields_follow_the_builder() {
        let mut builder = BatchBuilder::new().compression(Compression::Gzip);
        builder.base_offset = 9;
        builder.partition_leader_epoch = 4;
        builder.producer_id = 1;
        builder.producer_epoch = 2;
        builder.base_sequence = 3;
        builder.transactional = true;
        let batch = builder
            .build(&[Record::new(30, None, None), Record::new(10, None, None)])
            .unwrap();
        let header: BatchHeader = validate_batch(&batch, Default::default()).unwrap();
        assert_eq!(header.base_offset, 9);
        assert_eq!(header.partition_leader_epoch, 4);
        assert_eq!(
            (
                header.producer_id,
                header.producer_epoch,
                header.base_sequence
            ),
            (1, 2, 3)
        );
        assert!(header.is_transactional());
        assert_eq!(header.compression(), Ok(Compression::Gzip));
        assert_eq!((header.base_timestamp, header.max_timestamp), (30, 30));
        assert_eq!(header.last_offset_delta, 1);
    }
}
