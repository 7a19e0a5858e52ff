//! Rewriting a stored batch with a subset of its records, for log compaction.
//!
//! Kafka's cleaner keeps a batch's offset range when it drops records from it: the rewritten
//! batch has the same `baseOffset` and `lastOffsetDelta`, and each kept record its original
//! offset delta, so offsets have gaps but never move. [`retain_records`] does exactly that,
//! copying the kept records' bytes unchanged (their timestamp and offset deltas stay valid
//! because the base offset and base timestamp do not change).

use crate::batch::{self, COMPRESSION_MASK, HEADER_LEN, LOG_OVERHEAD};
use crate::decode::{
    Clock, Deltas, Flow, Positions, RawRecord, check_stored, position, records_section, walk,
};
use crate::{BatchHeader, Compression, DecodeLimits, Error, Result, TimestampType};

/// A record as a caller of [`retain_records`] sees it when deciding whether to keep it.
#[derive(Debug, Clone, Copy)]
pub struct RecordView<'a> {
    /// Absolute offset.
    pub offset: i64,
    /// Absolute timestamp (see [`crate::DecodedRecord::timestamp`]).
    pub timestamp: i64,
    /// Key; `None` is a null key.
    pub key: Option<&'a [u8]>,
    /// Whether the value is null (a tombstone under compaction).
    pub value_is_null: bool,
}

/// The result of [`retain_records`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetainedBatch {
    /// Header of the rewritten batch (the original's when nothing was removed).
    pub header: BatchHeader,
    /// The rewritten batch: the original bytes when every record was kept; a header-only batch
    /// with `recordsCount` 0 when none was.
    pub bytes: Vec<u8>,
    /// Records kept.
    pub kept: usize,
    /// Records removed.
    pub removed: usize,
}

/// Rewrites the stored batch at the start of `batch` keeping only the records for which `keep`
/// returns `true`, in order.
///
/// Everything in the header stays as it was (base offset, `lastOffsetDelta`, leader epoch,
/// producer id, epoch and base sequence, attributes, base timestamp) except `recordsCount`,
/// `batchLength`, the CRC and, for `CreateTime` batches, `maxTimestamp` (the largest kept
/// timestamp). A compressed batch is re-compressed with the same codec. A batch left with no
/// record becomes a header-only batch, uncompressed (as Kafka writes an empty batch), which a
/// caller keeps when the batch must survive for its producer's sake.
///
/// Checks the batch as [`crate::decode_records`] does; `keep` is not called if it fails.
///
/// ```
/// use bytes::Bytes;
/// use strom_record::{decode_records, retain_records, BatchBuilder, DecodeLimits, Record};
///
/// let records: Vec<_> = (0..4).map(|i| Record::new(i, Some(Bytes::from(vec![b'a' + i as u8])), None)).collect();
/// let batch = BatchBuilder::new().build(&records)?;
/// let out = retain_records(&batch, DecodeLimits::default(), |r| r.offset % 2 == 1)?;
/// assert_eq!((out.kept, out.removed, out.header.last_offset_delta), (2, 2, 3));
/// let decoded = decode_records(&Bytes::from(out.bytes), DecodeLimits::default())?;
/// let offsets: Vec<_> = decoded.records.iter().map(|r| r.offset).collect();
/// assert_eq!(offsets, [1, 3]);
/// # Ok::<(), strom_record::Error>(())
/// ```
pub fn retain_records(
    batch: &[u8],
    limits: DecodeLimits,
    mut keep: impl FnMut(&RecordView<'_>) -> bool,
) -> Result<RetainedBatch> {
    let header = check_stored(batch, limits)?;
    let section = records_section(batch, &header, limits)?;
    let clock = Clock::of(&header);
    let mut kept_spans = Vec::new();
    let mut kept_max_ts = None::<i64>;
    let mut removed = 0usize;
    walk(
        &section,
        &header,
        Deltas::Increasing,
        &mut Positions(|record: &RawRecord| {
            let at = position(&header, clock, record)?;
            let view = RecordView {
                offset: at.offset,
                timestamp: at.timestamp,
                key: record.key.clone().and_then(|r| section.get(r)),
                value_is_null: record.value.is_none(),
            };
            if keep(&view) {
                kept_spans.push(record.span.clone());
                kept_max_ts = Some(kept_max_ts.map_or(at.timestamp, |m| m.max(at.timestamp)));
            } else {
                removed += 1;
            }
            Ok(Flow::Continue)
        }),
    )?;
    let kept = kept_spans.len();
    let total = header.total_len();
    if removed == 0 {
        let bytes = batch
            .get(..total)
            .ok_or(Error::Truncated {
                needed: total,
                available: batch.len(),
            })?
            .to_vec();
        return Ok(RetainedBatch {
            header,
            bytes,
            kept,
            removed,
        });
    }
    let mut out = vec![0u8; HEADER_LEN];
    let mut attributes = header.attributes;
    let mut max_timestamp = header.max_timestamp;
    if kept == 0 {
        attributes &= !COMPRESSION_MASK;
    } else {
        let mut raw = Vec::with_capacity(kept_spans.iter().map(|s| s.len()).sum());
        for span in kept_spans {
            raw.extend_from_slice(section.get(span).unwrap_or_default());
        }
        match header.compression()? {
            Compression::None => out.extend_from_slice(&raw),
            codec => out.extend_from_slice(&crate::compression::compress(codec, &raw)?),
        }
        if header.timestamp_type() == TimestampType::CreateTime
            && let Some(ts) = kept_max_ts
        {
            max_timestamp = ts;
        }
    }
    let batch_length = i32::try_from(out.len() - LOG_OVERHEAD).map_err(|_| Error::OutOfRange {
        what: "batch length",
    })?;
    let new_header = BatchHeader {
        batch_length,
        attributes,
        max_timestamp,
        records_count: i32::try_from(kept).map_err(|_| Error::OutOfRange {
            what: "record count",
        })?,
        ..header
    };
    batch::write_header(&mut out, &new_header)?;
    let new_header = BatchHeader::parse(&out)?;
    Ok(RetainedBatch {
        header: new_header,
        bytes: out,
        kept,
        removed,
    })
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::{BatchBuilder, Record, decode_records, set_base_offset, set_log_append_time};

    fn records(n: i64) -> Vec<Record> {
        (0..n)
            .map(|i| {
                Record::new(
                    1_000 + i * 10,
                    Some(Bytes::from(format!("k{i}"))),
                    (i % 3 != 0).then(|| Bytes::from(format!("v{i}"))),
                )
            })
            .collect()
    }

    #[test]
    fn keeps_offsets_header_fields_and_contents_for_every_codec() {
        for codec in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let mut builder = BatchBuilder::new().compression(codec);
            builder.producer_id = 7;
            builder.producer_epoch = 3;
            builder.base_sequence = 11;
            builder.partition_leader_epoch = 5;
            let input = records(6);
            let mut batch = builder.build(&input).unwrap();
            set_base_offset(&mut batch, 100).unwrap();
            let original =
                decode_records(&Bytes::from(batch.clone()), DecodeLimits::default()).unwrap();
            let out = retain_records(&batch, DecodeLimits::default(), |r| {
                r.offset != 100 && r.offset != 105
            })
            .unwrap();
            assert_eq!((out.kept, out.removed), (4, 2));
            let h = out.header;
            assert_eq!(h.base_offset, 100);
            assert_eq!(h.last_offset_delta, 5, "the offset range is kept");
            assert_eq!(h.records_count, 4);
            assert_eq!(
                (h.producer_id, h.producer_epoch, h.base_sequence),
                (7, 3, 11)
            );
            assert_eq!(h.partition_leader_epoch, 5);
            assert_eq!(h.compression().unwrap(), codec);
            assert_eq!(h.base_timestamp, original.header.base_timestamp);
            assert_eq!(h.max_timestamp, 1_040, "largest kept timestamp");
            let decoded = decode_records(&Bytes::from(out.bytes), DecodeLimits::default()).unwrap();
            assert_eq!(decoded.header, h);
            let expected: Vec<_> = original
                .records
                .into_iter()
                .filter(|r| r.offset != 100 && r.offset != 105)
                .collect();
            assert_eq!(decoded.records, expected);
        }
    }

    #[test]
    fn keeping_everything_returns_the_original_bytes() {
        let batch = BatchBuilder::new()
            .compression(Compression::Lz4)
            .build(&records(3))
            .unwrap();
        let out = retain_records(&batch, DecodeLimits::default(), |_| true).unwrap();
        assert_eq!(out.bytes, batch);
        assert_eq!((out.kept, out.removed), (3, 0));
    }

    #[test]
    fn removing_everything_leaves_an_empty_uncompressed_batch() {
        let mut builder = BatchBuilder::new().compression(Compression::Zstd);
        builder.producer_id = 1;
        builder.producer_epoch = 0;
        builder.base_sequence = 40;
        let batch = builder.build(&records(4)).unwrap();
        let out = retain_records(&batch, DecodeLimits::default(), |_| false).unwrap();
        assert_eq!(out.bytes.len(), HEADER_LEN);
        assert_eq!(out.header.records_count, 0);
        assert_eq!(out.header.last_offset_delta, 3);
        assert_eq!(out.header.base_sequence, 40);
        assert_eq!(out.header.compression().unwrap(), Compression::None);
        let decoded = decode_records(&Bytes::from(out.bytes), DecodeLimits::default()).unwrap();
        assert!(decoded.records.is_empty());
    }

    #[test]
    fn views_show_keys_tombstones_and_timestamps() {
        let batch = BatchBuilder::new().build(&records(3)).unwrap();
        let mut seen = Vec::new();
        retain_records(&batch, DecodeLimits::default(), |r| {
            seen.push((
                r.offset,
                r.timestamp,
                r.key.map(<[u8]>::to_vec),
                r.value_is_null,
            ));
            true
        })
        .unwrap();
        assert_eq!(
            seen,
            vec![
                (0, 1_000, Some(b"k0".to_vec()), true),
                (1, 1_010, Some(b"k1".to_vec()), false),
                (2, 1_020, Some(b"k2".to_vec()), false),
            ]
        );
    }

    #[test]
    fn log_append_time_keeps_its_max_timestamp() {
        let mut batch = BatchBuilder::new().build(&records(3)).unwrap();
        set_log_append_time(&mut batch, 9_999).unwrap();
        let out = retain_records(&batch, DecodeLimits::default(), |r| r.offset == 0).unwrap();
        assert_eq!(out.header.max_timestamp, 9_999);
        assert_eq!(out.header.timestamp_type(), TimestampType::LogAppendTime);
    }

    #[test]
    fn a_damaged_batch_is_refused() {
        let mut batch = BatchBuilder::new().build(&records(2)).unwrap();
        let last = batch.len() - 1;
        batch[last] ^= 0xff;
        let mut called = false;
        assert!(
            retain_records(&batch, DecodeLimits::default(), |_| {
                called = true;
                true
            })
            .is_err()
        );
        assert!(!called);
    }
}
