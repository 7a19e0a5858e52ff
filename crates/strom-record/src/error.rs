//! The one error type of this crate: everything that can be wrong with bytes that claim to be
//! record batches.

use crate::Compression;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What is wrong with a record batch. Every variant carries what was expected and what was found,
/// so the front end can log it and map it to the protocol's own error code
/// (`CORRUPT_MESSAGE`, `INVALID_RECORD`, `UNSUPPORTED_COMPRESSION_TYPE`…).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Fewer bytes were available than the format requires at this point.
    #[error("truncated batch: needed {needed} bytes, found {available}")]
    Truncated {
        /// Bytes the format requires.
        needed: usize,
        /// Bytes actually available.
        available: usize,
    },
    /// The `batchLength` field is smaller than the fixed header or larger than allowed.
    #[error("invalid batch length {length} (minimum {min}, maximum {max})")]
    InvalidBatchLength {
        /// The value of the `batchLength` field.
        length: i32,
        /// The smallest legal value.
        min: i32,
        /// The largest value this caller accepts.
        max: i32,
    },
    /// The magic byte is not 2 (message formats v0 and v1 are not accepted).
    #[error("unsupported record batch magic {magic} (only 2 is supported)")]
    UnsupportedMagic {
        /// The magic byte found.
        magic: i8,
    },
    /// The CRC-32C stored in the header does not match the bytes it covers.
    #[error("crc mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch {
        /// CRC stored in the batch header.
        stored: u32,
        /// CRC computed over the batch.
        computed: u32,
    },
    /// The compression codec bits name no known codec.
    #[error("unknown compression codec id {id}")]
    UnknownCompression {
        /// The three low attribute bits.
        id: u8,
    },
    /// The header fields contradict each other (record count, offset delta, timestamps).
    #[error("inconsistent batch header: {reason}")]
    InconsistentHeader {
        /// Which rule was broken.
        reason: &'static str,
    },
    /// Decompressing the records section failed.
    #[error("{codec:?} decompression failed: {reason}")]
    Decompression {
        /// Codec named by the batch.
        codec: Compression,
        /// What the decoder reported.
        reason: String,
    },
    /// Decompressing would produce more bytes than the caller's limit.
    #[error("decompressed records exceed the limit of {limit} bytes")]
    DecompressedTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// Compressing records failed.
    #[error("{codec:?} compression failed: {reason}")]
    Compression {
        /// Codec asked for.
        codec: Compression,
        /// What the encoder reported.
        reason: String,
    },
    /// A record inside the batch does not parse.
    #[error("malformed record {index} of the batch: {reason}")]
    MalformedRecord {
        /// Zero-based index of the record within the batch.
        index: usize,
        /// Which rule was broken.
        reason: &'static str,
    },
    /// A value does not fit the field that must hold it when building a batch.
    #[error("value out of range while building a batch: {what}")]
    OutOfRange {
        /// The field that overflowed.
        what: &'static str,
    },
}
