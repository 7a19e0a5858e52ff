//! A small batch whose records section inflates to a gigabyte must be rejected as soon as the
//! output passes the caller's limit, without inflating the rest.

use std::io::Write;
use std::time::{Duration, Instant};

use bytes::Bytes;
use strom_record::{
    BatchBuilder, Compression, DecodeLimits, Error, HEADER_LEN, Record, decode_records,
    find_by_timestamp, record_offsets_and_timestamps, validate_batch, validate_records,
};

const CHUNK: usize = 1 << 20;
/// Copies of the compressed chunk: 1 GiB once inflated (snappy: 64 MiB).
const COPIES: usize = 1024;
const LIMIT: usize = 1 << 20;

/// One compressed unit (a gzip member, an LZ4 or zstd frame, a xerial snappy stream) of `CHUNK`
/// zero bytes; concatenations of units are valid streams.
fn unit(codec: Compression) -> Vec<u8> {
    let zeros = vec![0u8; CHUNK];
    match codec {
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            e.write_all(&zeros).unwrap();
            e.finish().unwrap()
        }
        Compression::Lz4 => {
            let mut e = lz4_flex::frame::FrameEncoder::new(Vec::new());
            e.write_all(&zeros).unwrap();
            e.finish().unwrap()
        }
        Compression::Zstd => zstd::bulk::compress(&zeros, 19).unwrap(),
        Compression::Snappy => {
            let block = snap::raw::Encoder::new().compress_vec(&zeros).unwrap();
            let mut out = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01".to_vec();
            out.extend_from_slice(&(block.len() as i32).to_be_bytes());
            out.extend_from_slice(&block);
            out
        }
        Compression::None => unreachable!(),
    }
}

/// A batch with a valid header and CRC around `body`.
fn batch_around(codec: Compression, body: &[u8]) -> Vec<u8> {
    let mut batch = BatchBuilder::new()
        .compression(codec)
        .build(&[Record::new(0, None, None)])
        .unwrap();
    batch.truncate(HEADER_LEN);
    batch.extend_from_slice(body);
    let batch_length = (batch.len() - 12) as i32;
    batch[8..12].copy_from_slice(&batch_length.to_be_bytes());
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    batch
}

fn assert_rejected_quickly(codec: Compression, batch: &[u8]) {
    validate_batch(batch, Default::default()).unwrap();
    let limits = DecodeLimits {
        max_decompressed_bytes: LIMIT,
        ..DecodeLimits::default()
    };
    let too_large = Error::DecompressedTooLarge { limit: LIMIT };
    let started = Instant::now();
    assert_eq!(
        validate_records(batch, limits),
        Err(too_large.clone()),
        "{codec:?}"
    );
    assert_eq!(
        decode_records(&Bytes::copy_from_slice(batch), limits),
        Err(too_large.clone()),
        "{codec:?}"
    );
    assert_eq!(
        record_offsets_and_timestamps(batch, limits),
        Err(too_large.clone()),
        "{codec:?}"
    );
    assert_eq!(
        find_by_timestamp(batch, 0, limits),
        Err(too_large),
        "{codec:?}"
    );
    // Inflating the whole gigabyte four times would take far longer, even in a debug build.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{codec:?} took {:?}",
        started.elapsed()
    );
}

#[test]
fn streamed_bombs_stop_at_the_limit() {
    for codec in [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        // Snappy cannot inflate more than about 21 times, so its bomb is smaller.
        let copies = if codec == Compression::Snappy {
            64
        } else {
            COPIES
        };
        let body = unit(codec).repeat(copies);
        assert!(body.len() < 8 << 20, "{codec:?}: {} bytes", body.len());
        assert_rejected_quickly(codec, &batch_around(codec, &body));
    }
}

#[test]
fn raw_snappy_block_declaring_four_gigabytes_is_rejected_before_allocating() {
    // Varint length 2^32 - 1, then a literal tag; the decoder must not get that far.
    let body = [0xff, 0xff, 0xff, 0xff, 0x0f, 0x00, 0x00];
    assert_rejected_quickly(
        Compression::Snappy,
        &batch_around(Compression::Snappy, &body),
    );
}

#[test]
fn zstd_frame_declaring_a_huge_window_is_refused() {
    // Frame header: magic, descriptor with no content size and a window descriptor asking for a
    // 2^31-byte window (exponent 21 + 10), then an empty last raw block. Decoding must fail
    // rather than reserve the window.
    let body = [0x28, 0xb5, 0x2f, 0xfd, 0x00, 21 << 3, 0x01, 0x00, 0x00];
    let batch = batch_around(Compression::Zstd, &body);
    let limits = DecodeLimits {
        max_decompressed_bytes: LIMIT,
        ..DecodeLimits::default()
    };
    assert!(matches!(
        validate_records(&batch, limits),
        Err(Error::Decompression {
            codec: Compression::Zstd,
            ..
        })
    ));
}
