//! The Fetch response, framed by hand around the record bytes.
//!
//! `kafka-protocol`'s encoder copies every partition's records into one contiguous frame; for a
//! consumer reading from the page cache that copy was a fifth of the broker's CPU. This encoder
//! writes the same bytes (the tests compare them with `kafka-protocol`'s output for every
//! version Strom serves) but as a list of [`Bytes`]: small chunks of encoded fields, and between
//! them the records exactly as the log read returned them, so the connection hands them to one
//! `writev` without copying them again.
//!
//! The schema (Kafka's `FetchResponse.json`, versions 4–17; flexible from 12):
//!
//! ```text
//! response header   correlation_id: i32, v12+: tagged fields
//! throttle_time_ms  i32
//! v7+               error_code: i16, session_id: i32
//! responses         [topic]            (v12+: compact array)
//!   v4–12           topic: string      (v12: compact string)
//!   v13+            topic_id: uuid
//!   partitions      [partition]
//!     partition_index: i32, error_code: i16, high_watermark: i64, last_stable_offset: i64
//!     v5+           log_start_offset: i64
//!     aborted_transactions: [producer_id: i64, first_offset: i64, v12+: tagged fields]
//!     v11+          preferred_read_replica: i32 (always -1)
//!     records       bytes, never null   (v12+: compact bytes)
//!     v12+          tagged fields (diverging_epoch, current_leader, snapshot_id: never sent)
//!   v12+            tagged fields
//! v12+              tagged fields (node_endpoints, v16+: never sent)
//! ```
//!
//! `aborted_transactions` is always an array (empty unless the read is `read_committed`), and
//! `records` is never null: librdkafka rejects a null record set.

use bytes::{BufMut, Bytes, BytesMut};
use uuid::Uuid;

use crate::frame::EncodeError;

/// The first flexible version (compact arrays and strings, tagged fields).
const FLEXIBLE: i16 = 12;
/// The first version that names topics by id instead of by name.
const TOPIC_IDS: i16 = 13;

/// One aborted transaction: the producer and the first offset of its transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AbortedTxn {
    /// The producer id.
    pub(crate) producer_id: i64,
    /// The first offset of the aborted transaction.
    pub(crate) first_offset: i64,
}

/// One partition of a Fetch response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PartitionResponse {
    /// The partition index.
    pub(crate) index: i32,
    /// The partition's error code (0 for none).
    pub(crate) error_code: i16,
    /// The high watermark.
    pub(crate) high_watermark: i64,
    /// The last stable offset.
    pub(crate) last_stable_offset: i64,
    /// The log start offset (sent from v5).
    pub(crate) log_start_offset: i64,
    /// The aborted transactions overlapping `records` (empty unless `read_committed`).
    pub(crate) aborted: Vec<AbortedTxn>,
    /// Whole record batches, as read from the log.
    pub(crate) records: Bytes,
}

impl PartitionResponse {
    /// A partition that failed with `error_code`: no records, offsets unknown (`-1`).
    pub(crate) fn error(index: i32, error_code: i16) -> PartitionResponse {
        PartitionResponse {
            index,
            error_code,
            high_watermark: -1,
            last_stable_offset: -1,
            log_start_offset: -1,
            aborted: Vec::new(),
            records: Bytes::new(),
        }
    }
}

/// One topic of a Fetch response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TopicResponse {
    /// The topic name (sent up to v12).
    pub(crate) name: String,
    /// The topic id (sent from v13).
    pub(crate) id: Uuid,
    /// The partitions, in request order.
    pub(crate) partitions: Vec<PartitionResponse>,
}

/// A whole Fetch response frame as chunks to write in order: their concatenation is the size
/// prefix, the response header and the body. Record bytes are not copied.
///
/// Fails only if a length does not fit the wire (a record set or the frame above 2 GiB).
/// The top-level fields of a Fetch response before its topics.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ResponseHead {
    /// `throttle_time_ms`.
    pub(crate) throttle_time_ms: i32,
    /// `error_code` (v7+).
    pub(crate) error_code: i16,
    /// `session_id` (v7+).
    pub(crate) session_id: i32,
}

pub(crate) fn encode(
    correlation_id: i32,
    version: i16,
    head: ResponseHead,
    topics: &[TopicResponse],
) -> Result<Vec<Bytes>, EncodeError> {
    let flexible = version >= FLEXIBLE;
    let mut meta = BytesMut::with_capacity(64 + topics.len() * 64);
    // (position in `meta`, records) pairs: each record set goes right after its position.
    let mut splices: Vec<(usize, &Bytes)> = Vec::new();
    let mut records_len = 0usize;
    meta.put_i32(0); // size, patched below
    meta.put_i32(correlation_id);
    if flexible {
        put_uvarint(&mut meta, 0); // response header v1: no tagged fields
    }
    meta.put_i32(head.throttle_time_ms);
    if version >= 7 {
        meta.put_i16(head.error_code);
        meta.put_i32(head.session_id);
    }
    put_array_len(&mut meta, flexible, topics.len())?;
    for topic in topics {
        if version >= TOPIC_IDS {
            meta.put_slice(topic.id.as_bytes());
        } else if flexible {
            put_uvarint(&mut meta, len_plus_one(topic.name.len())?);
            meta.put_slice(topic.name.as_bytes());
        } else {
            let len = i16::try_from(topic.name.len())
                .map_err(|_| EncodeError("topic name longer than 32767 bytes".to_owned()))?;
            meta.put_i16(len);
            meta.put_slice(topic.name.as_bytes());
        }
        put_array_len(&mut meta, flexible, topic.partitions.len())?;
        for p in &topic.partitions {
            meta.put_i32(p.index);
            meta.put_i16(p.error_code);
            meta.put_i64(p.high_watermark);
            meta.put_i64(p.last_stable_offset);
            if version >= 5 {
                meta.put_i64(p.log_start_offset);
            }
            put_array_len(&mut meta, flexible, p.aborted.len())?;
            for a in &p.aborted {
                meta.put_i64(a.producer_id);
                meta.put_i64(a.first_offset);
                if flexible {
                    put_uvarint(&mut meta, 0);
                }
            }
            if version >= 11 {
                meta.put_i32(-1); // preferred_read_replica: none
            }
            if flexible {
                put_uvarint(&mut meta, len_plus_one(p.records.len())?);
            } else {
                meta.put_i32(i32::try_from(p.records.len()).map_err(|_| too_large())?);
            }
            if !p.records.is_empty() {
                splices.push((meta.len(), &p.records));
                records_len += p.records.len();
            }
            if flexible {
                put_uvarint(&mut meta, 0); // partition tagged fields
            }
        }
        if flexible {
            put_uvarint(&mut meta, 0); // topic tagged fields
        }
    }
    if flexible {
        put_uvarint(&mut meta, 0); // response tagged fields
    }
    let size = (meta.len() - 4)
        .checked_add(records_len)
        .and_then(|s| i32::try_from(s).ok())
        .ok_or_else(too_large)?;
    meta[..4].copy_from_slice(&size.to_be_bytes());
    let meta = meta.freeze();
    let mut parts = Vec::with_capacity(2 * splices.len() + 1);
    let mut from = 0;
    for (at, records) in splices {
        parts.push(meta.slice(from..at));
        parts.push(records.clone());
        from = at;
    }
    parts.push(meta.slice(from..));
    Ok(parts)
}

fn too_large() -> EncodeError {
    EncodeError("fetch response larger than 2 GiB".to_owned())
}

/// Kafka's compact lengths are the length plus one (zero means null).
fn len_plus_one(len: usize) -> Result<u32, EncodeError> {
    u32::try_from(len)
        .ok()
        .and_then(|l| l.checked_add(1))
        .ok_or_else(too_large)
}

fn put_array_len(buf: &mut BytesMut, flexible: bool, len: usize) -> Result<(), EncodeError> {
    if flexible {
        put_uvarint(buf, len_plus_one(len)?);
    } else {
        buf.put_i32(i32::try_from(len).map_err(|_| too_large())?);
    }
    Ok(())
}

/// An unsigned LEB128 varint, as Kafka's flexible versions use.
fn put_uvarint(buf: &mut BytesMut, mut value: u32) {
    while value >= 0x80 {
        // Truncation intended: the low seven bits with the continuation bit.
        buf.put_u8((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    buf.put_u8(value as u8);
}

#[cfg(test)]
mod tests;
