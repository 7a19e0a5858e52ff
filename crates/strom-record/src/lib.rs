//! # strom-record
//!
//! The Kafka record-batch v2 format (magic 2), the unit Strom stores, replicates and serves:
//! parse and validate batches from untrusted bytes, build batches from plain records, and patch
//! the fields a leader assigns on append. Pure bytes in, values or typed [`Error`]s out: no I/O,
//! no async, no allocation proportional to anything but the input.
//!
//! Both front ends and the fuzzers share this crate: the Kafka front end hands produce payloads
//! to [`batches`] and the log stores them untouched apart from [`set_base_offset`],
//! [`set_partition_leader_epoch`] and [`set_log_append_time`]; the Kinesis front end and the CLI
//! build batches with [`BatchBuilder`].
//!
//! Below the header sit the records. [`validate_records`] is the deep check on produce (records
//! parse exactly, offset deltas are dense); [`decode_records`] turns a stored batch into
//! [`DecodedRecord`]s that share the input's buffer; [`record_offsets_and_timestamps`] and
//! [`find_by_timestamp`] serve time-index lookups without materialising records. Compressed
//! sections (gzip, snappy, LZ4, zstd) are inflated under [`DecodeLimits`], so a small batch
//! cannot expand into a large allocation.
//!
//! ```
//! use bytes::Bytes;
//! use strom_record::{batches, BatchBuilder, Record, ValidationLimits};
//!
//! let mut batch = BatchBuilder::new().build(&[
//!     Record::new(1_000, None, Some(Bytes::from("a"))),
//!     Record::new(1_005, None, Some(Bytes::from("b"))),
//! ])?;
//! strom_record::set_base_offset(&mut batch, 42)?;
//! let (header, range) = batches(&batch, ValidationLimits::default()).next().unwrap()?;
//! assert_eq!((header.base_offset, header.last_offset(), range.len()), (42, 43, batch.len()));
//! assert_eq!(header.max_timestamp, 1_005);
//! # Ok::<(), strom_record::Error>(())
//! ```
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]

mod batch;
mod builder;
pub mod compact;
mod compression;
mod control;
mod decode;
mod error;
mod record;
mod retain;
mod varint;

pub use batch::{
    BatchHeader, Batches, Compression, HEADER_LEN, LOG_OVERHEAD, MAGIC, NO_PARTITION_LEADER_EPOCH,
    NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE, NO_TIMESTAMP, TimestampType, ValidationLimits,
    attributes, batches, check_stored_batch, set_base_offset, set_log_append_time,
    set_partition_leader_epoch, stored_batches, validate_batch,
};
pub use builder::BatchBuilder;
pub use control::{ControlType, Marker, control_type_of_key, marker_batch, parse_marker};
pub use decode::{
    DEFAULT_MAX_DECOMPRESSED_BYTES, DecodeLimits, DecodedBatch, DecodedRecord, OffsetAndTimestamp,
    decode_records, find_by_timestamp, record_offsets_and_timestamps, validate_records,
    validate_records_keyed,
};
pub use error::{Error, Result};
pub use record::{Record, RecordHeader};
pub use retain::{RecordView, RetainedBatch, retain_records};
