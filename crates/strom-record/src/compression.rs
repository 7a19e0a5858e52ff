//! Compression of a batch's records section, with decompression bounded by a caller's limit.
//!
//! The codecs and the byte formats Kafka clients use for them:
//!
//! | Codec  | What is written | What is read |
//! |--------|-----------------|--------------|
//! | gzip   | one gzip member (RFC 1952), level 6 as the Java client | any number of concatenated members |
//! | snappy | the xerial framing the Java client writes (see below) | xerial framing, or raw snappy as librdkafka writes |
//! | lz4    | one LZ4 frame, 64 KiB independent blocks (the only block mode the Java client reads) | LZ4 frames |
//! | zstd   | one zstd frame with its content size, level 3 as the Java client | zstd frames |
//!
//! The xerial snappy framing is `\x82SNAPPY\x00`, a big-endian `i32` version and `i32`
//! compatible version (both 1), then blocks of `[length: i32 big-endian][raw snappy block]`,
//! each block compressing at most 32 KiB. Java clients write and read it, librdkafka reads it,
//! so it is the format every consumer accepts; it is also what a Java producer sends us.
//!
//! Decompression never trusts sizes the input declares: streaming decoders are read through a
//! `take(limit + 1)` adapter, snappy blocks are checked against the limit from their declared
//! length before any buffer is allocated, and zstd's window is capped so that a tiny frame cannot
//! make the decoder reserve a huge buffer.

use std::io::{Read, Write};

use crate::{Compression, Error, Result};

/// The xerial snappy stream header's magic (8 bytes).
const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";
/// Magic plus the version and compatible-version fields.
const XERIAL_HEADER_LEN: usize = 16;
/// Version and compatible version written after the magic (as snappy-java does).
const XERIAL_VERSION: i32 = 1;
/// Uncompressed bytes per xerial block on write (snappy-java's default block size).
const XERIAL_BLOCK: usize = 32 * 1024;
/// Magic number, FLG, BD and header checksum of an LZ4 frame.
const LZ4_MIN_FRAME_HEADER: usize = 7;
/// Compression level for gzip, the Java client's default (`Deflater.DEFAULT_COMPRESSION`).
const GZIP_LEVEL: u32 = 6;
/// Compression level for zstd, the Java client's and librdkafka's default.
const ZSTD_LEVEL: i32 = 3;
/// Smallest and largest `log2` of the zstd window the decoder accepts. Level 19 writes
/// 2^23-byte windows when the input size is unknown; beyond 2^27 zstd itself refuses by default.
const ZSTD_MIN_WINDOW_LOG: u32 = 23;
const ZSTD_MAX_WINDOW_LOG: u32 = 27;

/// Compresses the raw records section with `codec`.
pub(crate) fn compress(codec: Compression, raw: &[u8]) -> Result<Vec<u8>> {
    let failed = |reason: String| Error::Compression { codec, reason };
    match codec {
        Compression::None => Ok(raw.to_vec()),
        Compression::Gzip => {
            let mut encoder = flate2::write::GzEncoder::new(
                Vec::with_capacity(raw.len() / 2 + 64),
                flate2::Compression::new(GZIP_LEVEL),
            );
            encoder.write_all(raw).map_err(|e| failed(e.to_string()))?;
            encoder.finish().map_err(|e| failed(e.to_string()))
        }
        Compression::Snappy => xerial_compress(raw).map_err(|e| failed(e.to_string())),
        Compression::Lz4 => {
            let info = lz4_flex::frame::FrameInfo::new()
                .block_size(lz4_flex::frame::BlockSize::Max64KB)
                .block_mode(lz4_flex::frame::BlockMode::Independent);
            let mut encoder = lz4_flex::frame::FrameEncoder::with_frame_info(
                info,
                Vec::with_capacity(raw.len() / 2 + 64),
            );
            encoder.write_all(raw).map_err(|e| failed(e.to_string()))?;
            encoder.finish().map_err(|e| failed(e.to_string()))
        }
        Compression::Zstd => {
            zstd::bulk::compress(raw, ZSTD_LEVEL).map_err(|e| failed(e.to_string()))
        }
    }
}

fn xerial_compress(raw: &[u8]) -> std::result::Result<Vec<u8>, snap::Error> {
    let mut out = Vec::with_capacity(XERIAL_HEADER_LEN + raw.len() / 2 + 64);
    out.extend_from_slice(XERIAL_MAGIC);
    out.extend_from_slice(&XERIAL_VERSION.to_be_bytes());
    out.extend_from_slice(&XERIAL_VERSION.to_be_bytes());
    let mut encoder = snap::raw::Encoder::new();
    let mut block = Vec::new();
    for chunk in raw.chunks(XERIAL_BLOCK) {
        block.resize(snap::raw::max_compress_len(chunk.len()), 0);
        let n = encoder.compress(chunk, &mut block)?;
        // A block compresses at most 32 KiB, so its compressed length fits an i32.
        let len = i32::try_from(n).unwrap_or(i32::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(block.get(..n).unwrap_or_default());
    }
    Ok(out)
}

/// Decompresses a records section written with `codec`, failing with
/// [`Error::DecompressedTooLarge`] as soon as the output would exceed `limit` bytes.
pub(crate) fn decompress(codec: Compression, compressed: &[u8], limit: usize) -> Result<Vec<u8>> {
    match codec {
        Compression::None => {
            if compressed.len() > limit {
                return Err(Error::DecompressedTooLarge { limit });
            }
            Ok(compressed.to_vec())
        }
        Compression::Gzip => read_bounded(
            codec,
            flate2::read::MultiGzDecoder::new(compressed),
            compressed.len(),
            limit,
        ),
        Compression::Snappy => snappy_decompress(compressed, limit),
        Compression::Lz4 => lz4_decompress(compressed, limit),
        Compression::Zstd => {
            let failed = |e: std::io::Error| Error::Decompression {
                codec,
                reason: e.to_string(),
            };
            let mut decoder =
                zstd::stream::read::Decoder::with_buffer(compressed).map_err(failed)?;
            decoder
                .window_log_max(zstd_window_log_max(limit))
                .map_err(failed)?;
            read_bounded(codec, decoder, compressed.len(), limit)
        }
    }
}

/// The largest zstd window (as `log2`) worth accepting for output of at most `limit` bytes:
/// enough for any window a producer picks at its usual levels, never more than zstd's default cap.
fn zstd_window_log_max(limit: usize) -> u32 {
    let needed = usize::BITS - limit.leading_zeros();
    needed.clamp(ZSTD_MIN_WINDOW_LOG, ZSTD_MAX_WINDOW_LOG)
}

/// Reads `decoder` to its end, allowing at most `limit` bytes of output.
fn read_bounded(
    codec: Compression,
    decoder: impl Read,
    compressed_len: usize,
    limit: usize,
) -> Result<Vec<u8>> {
    // Guess a typical ratio for the first allocation, but never reserve beyond the limit.
    let mut out = Vec::with_capacity(compressed_len.saturating_mul(4).min(limit));
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    decoder
        .take(cap)
        .read_to_end(&mut out)
        .map_err(|e| Error::Decompression {
            codec,
            reason: e.to_string(),
        })?;
    if out.len() > limit {
        return Err(Error::DecompressedTooLarge { limit });
    }
    Ok(out)
}

/// Decodes concatenated LZ4 frames. The frame decoder reports the end of each frame as the end
/// of its output, so it is driven until the input is used up; whatever follows a frame must be
/// another frame.
fn lz4_decompress(compressed: &[u8], limit: usize) -> Result<Vec<u8>> {
    let mut decoder = lz4_flex::frame::FrameDecoder::new(compressed);
    let mut out = Vec::with_capacity(compressed.len().saturating_mul(4).min(limit));
    // Every pass consumes at least a frame's magic number or fails.
    while !decoder.get_ref().is_empty() {
        // The decoder takes input too short for a frame header for a clean end of input.
        if decoder.get_ref().len() < LZ4_MIN_FRAME_HEADER {
            return Err(Error::Decompression {
                codec: Compression::Lz4,
                reason: "truncated lz4 frame header".to_owned(),
            });
        }
        let room = limit.saturating_sub(out.len());
        let cap = u64::try_from(room).unwrap_or(u64::MAX).saturating_add(1);
        (&mut decoder)
            .take(cap)
            .read_to_end(&mut out)
            .map_err(|e| Error::Decompression {
                codec: Compression::Lz4,
                reason: e.to_string(),
            })?;
        if out.len() > limit {
            return Err(Error::DecompressedTooLarge { limit });
        }
    }
    Ok(out)
}

fn snappy_decompress(compressed: &[u8], limit: usize) -> Result<Vec<u8>> {
    if compressed.starts_with(XERIAL_MAGIC) {
        xerial_decompress(compressed, limit)
    } else {
        let mut out = Vec::new();
        snappy_block(compressed, &mut out, limit)?;
        Ok(out)
    }
}

/// Decodes a xerial-framed stream that starts with [`XERIAL_MAGIC`]. Like snappy-java, a header
/// found where a block length is expected starts a concatenated stream.
fn xerial_decompress(compressed: &[u8], limit: usize) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = compressed;
    while !rest.is_empty() {
        if rest.starts_with(XERIAL_MAGIC) {
            rest = rest
                .get(XERIAL_HEADER_LEN..)
                .ok_or(snappy_error("xerial snappy header is truncated"))?;
            continue;
        }
        let (len, tail) = rest
            .split_first_chunk::<4>()
            .ok_or(snappy_error("xerial snappy block length is truncated"))?;
        let len = usize::try_from(i32::from_be_bytes(*len))
            .map_err(|_| snappy_error("xerial snappy block length is negative"))?;
        let block = tail
            .get(..len)
            .ok_or(snappy_error("xerial snappy block is truncated"))?;
        snappy_block(block, &mut out, limit)?;
        rest = tail.get(len..).unwrap_or_default();
    }
    Ok(out)
}

/// Appends the decoding of one raw snappy block to `out`, checking the length the block declares
/// against what is left of `limit` before allocating.
fn snappy_block(block: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<()> {
    let failed = |e: snap::Error| Error::Decompression {
        codec: Compression::Snappy,
        reason: e.to_string(),
    };
    let len = snap::raw::decompress_len(block).map_err(failed)?;
    let start = out.len();
    if len > limit.saturating_sub(start) {
        return Err(Error::DecompressedTooLarge { limit });
    }
    out.resize(start + len, 0);
    let dst = out.get_mut(start..).unwrap_or_default();
    let n = snap::raw::Decoder::new()
        .decompress(block, dst)
        .map_err(failed)?;
    if n != len {
        return Err(snappy_error(
            "snappy block is shorter than its declared length",
        ));
    }
    Ok(())
}

fn snappy_error(reason: &str) -> Error {
    Error::Decompression {
        codec: Compression::Snappy,
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    fn sample(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i % 251) as u8 ^ (i / 1000) as u8)
            .collect()
    }

    #[test]
    fn every_codec_round_trips() {
        for codec in ALL {
            for len in [0, 1, 100, XERIAL_BLOCK, XERIAL_BLOCK + 1, 200_000] {
                let raw = sample(len);
                let packed = compress(codec, &raw).unwrap();
                let unpacked = decompress(codec, &packed, raw.len()).unwrap();
                assert_eq!(unpacked, raw, "{codec:?} {len}");
            }
        }
    }

    #[test]
    fn output_exactly_at_the_limit_is_accepted_and_one_more_byte_is_not() {
        for codec in ALL {
            let raw = sample(10_000);
            let packed = compress(codec, &raw).unwrap();
            assert!(decompress(codec, &packed, 10_000).is_ok(), "{codec:?}");
            assert_eq!(
                decompress(codec, &packed, 9_999),
                Err(Error::DecompressedTooLarge { limit: 9_999 }),
                "{codec:?}"
            );
        }
    }

    #[test]
    fn snappy_writes_the_xerial_framing() {
        let packed = compress(Compression::Snappy, &sample(XERIAL_BLOCK * 2 + 5)).unwrap();
        assert_eq!(&packed[..8], XERIAL_MAGIC);
        assert_eq!(&packed[8..16], &[0, 0, 0, 1, 0, 0, 0, 1]);
        // Three blocks, each a length followed by a raw snappy block.
        let mut rest = &packed[16..];
        let mut blocks = 0;
        while !rest.is_empty() {
            let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
            let block = snap::raw::Decoder::new()
                .decompress_vec(&rest[4..4 + len])
                .unwrap();
            assert!(block.len() <= XERIAL_BLOCK);
            rest = &rest[4 + len..];
            blocks += 1;
        }
        assert_eq!(blocks, 3);
    }

    #[test]
    fn snappy_reads_raw_blocks_as_librdkafka_writes() {
        let raw = sample(70_000);
        let packed = snap::raw::Encoder::new().compress_vec(&raw).unwrap();
        assert_eq!(
            decompress(Compression::Snappy, &packed, 70_000).unwrap(),
            raw
        );
        assert_eq!(
            decompress(Compression::Snappy, &packed, 69_999),
            Err(Error::DecompressedTooLarge { limit: 69_999 })
        );
    }

    #[test]
    fn snappy_reads_concatenated_xerial_streams() {
        let a = sample(1_000);
        let b = sample(3_000);
        let mut packed = compress(Compression::Snappy, &a).unwrap();
        packed.extend(compress(Compression::Snappy, &b).unwrap());
        let unpacked = decompress(Compression::Snappy, &packed, 4_000).unwrap();
        assert_eq!(unpacked, [a, b].concat());
    }

    #[test]
    fn snappy_rejects_broken_xerial_streams() {
        let packed = compress(Compression::Snappy, &sample(1_000)).unwrap();
        for cut in [10, 17, 21, packed.len() - 1] {
            assert!(
                matches!(
                    decompress(Compression::Snappy, &packed[..cut], 1 << 20),
                    Err(Error::Decompression { .. })
                ),
                "cut at {cut}"
            );
        }
        let mut negative = packed.clone();
        negative[16] = 0x80;
        assert!(matches!(
            decompress(Compression::Snappy, &negative, 1 << 20),
            Err(Error::Decompression { .. })
        ));
    }

    #[test]
    fn gzip_reads_concatenated_members() {
        let a = sample(1_000);
        let b = sample(2_000);
        let mut packed = compress(Compression::Gzip, &a).unwrap();
        packed.extend(compress(Compression::Gzip, &b).unwrap());
        let unpacked = decompress(Compression::Gzip, &packed, 3_000).unwrap();
        assert_eq!(unpacked, [a, b].concat());
    }

    #[test]
    fn zstd_reads_concatenated_frames_and_streamed_frames() {
        let a = sample(1_000);
        let mut packed = compress(Compression::Zstd, &a).unwrap();
        // A streamed frame does not declare its content size.
        packed.extend(zstd::stream::encode_all(&a[..], 19).unwrap());
        let unpacked = decompress(Compression::Zstd, &packed, 2_000).unwrap();
        assert_eq!(unpacked, [a.clone(), a].concat());
    }

    #[test]
    fn lz4_reads_concatenated_frames_and_rejects_trailing_garbage() {
        let a = sample(1_000);
        let b = sample(70_000);
        let mut packed = compress(Compression::Lz4, &a).unwrap();
        packed.extend(compress(Compression::Lz4, &b).unwrap());
        let unpacked = decompress(Compression::Lz4, &packed, 71_000).unwrap();
        assert_eq!(unpacked, [a.clone(), b].concat());
        assert_eq!(
            decompress(Compression::Lz4, &packed, 70_999),
            Err(Error::DecompressedTooLarge { limit: 70_999 })
        );
        let mut trailing = compress(Compression::Lz4, &a).unwrap();
        trailing.extend_from_slice(b"junk");
        assert!(matches!(
            decompress(Compression::Lz4, &trailing, 1 << 20),
            Err(Error::Decompression { .. })
        ));
        trailing.extend_from_slice(b" and more junk");
        assert!(matches!(
            decompress(Compression::Lz4, &trailing, 1 << 20),
            Err(Error::Decompression { .. })
        ));
    }

    #[test]
    fn lz4_writes_independent_64k_blocks() {
        let packed = compress(Compression::Lz4, &sample(100)).unwrap();
        assert_eq!(&packed[..4], &[0x04, 0x22, 0x4d, 0x18]);
        let flg = packed[4];
        assert_eq!(flg >> 6, 0b01, "version");
        assert_ne!(flg & 0b0010_0000, 0, "independent blocks");
        assert_eq!((packed[5] >> 4) & 0x7, 4, "64 KiB blocks");
    }

    #[test]
    fn garbage_is_a_decompression_error() {
        for codec in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            for input in [&b""[..], b"\x00", b"not compressed at all", &[0xff; 64]] {
                match decompress(codec, input, 1 << 20) {
                    Err(Error::Decompression { codec: c, .. }) => assert_eq!(c, codec),
                    // Some garbage happens to be a valid empty stream; it must not be more.
                    Ok(out) => assert!(out.is_empty(), "{codec:?} {input:?}"),
                    Err(e) => panic!("{codec:?} {input:?}: {e}"),
                }
            }
        }
    }

    #[test]
    fn trailing_garbage_is_an_error() {
        for codec in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            for junk in [&b"\x00"[..], b"junk", b"much longer junk after the stream"] {
                let mut packed = compress(codec, &sample(1_000)).unwrap();
                packed.extend_from_slice(junk);
                assert!(
                    matches!(
                        decompress(codec, &packed, 1 << 20),
                        Err(Error::Decompression { .. })
                    ),
                    "{codec:?} {junk:?}"
                );
            }
        }
    }

    #[test]
    fn bombs_stop_at_the_limit() {
        let zeros = vec![0u8; 16 << 20];
        for codec in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let packed = compress(codec, &zeros).unwrap();
            assert!(packed.len() < (1 << 20), "{codec:?} {}", packed.len());
            assert_eq!(
                decompress(codec, &packed, 1 << 20),
                Err(Error::DecompressedTooLarge { limit: 1 << 20 }),
                "{codec:?}"
            );
        }
    }

    #[test]
    fn zstd_window_is_capped_but_covers_common_levels() {
        assert_eq!(zstd_window_log_max(0), ZSTD_MIN_WINDOW_LOG);
        assert_eq!(zstd_window_log_max(1 << 20), ZSTD_MIN_WINDOW_LOG);
        assert_eq!(zstd_window_log_max(1 << 24), 25);
        assert_eq!(zstd_window_log_max(usize::MAX), ZSTD_MAX_WINDOW_LOG);
    }
}
