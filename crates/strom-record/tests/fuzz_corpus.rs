//! Replays the `record_batch` fuzz corpus (seeds and any crash inputs kept as regressions)
//! through the same checks as the fuzz target, so `cargo test` covers them without a fuzzer.
//!
//! The seeds themselves come from `write_seed_corpus` below:
//! `cargo test -p strom-record --test fuzz_corpus -- --ignored` rewrites them.

use std::path::PathBuf;

use bytes::Bytes;
use strom_record::{BatchBuilder, Compression, Record, RecordHeader, TimestampType};

#[allow(unreachable_pub, dead_code)]
#[path = "../../../fuzz/src/record_batch.rs"]
mod record_batch;

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/record_batch")
}

#[test]
fn replay_record_batch_corpus() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .expect("fuzz/corpus/record_batch exists")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "the corpus has seeds");
    for file in files {
        let data = std::fs::read(&file).unwrap();
        let outcome = std::panic::catch_unwind(|| record_batch::check(&data));
        assert!(
            outcome.is_ok(),
            "{} fails the record_batch checks",
            file.display()
        );
    }
}

/// Flags byte for single-batch seeds: fix the length and the CRC (both no-ops on a valid batch,
/// but they keep mutated inputs past the CRC check).
const FIX_ALL: u8 = 3;
/// Flags byte for message sets: fix only the first batch's CRC.
const FIX_CRC: u8 = 2;

const CODECS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

fn sample_records() -> Vec<Record> {
    let mut with_headers = Record::new(
        1_700_000_000_500,
        Some(Bytes::from("key-2")),
        Some(Bytes::from("value with headers")),
    );
    with_headers.headers = vec![
        RecordHeader {
            key: Bytes::from("h"),
            value: Some(Bytes::from("1")),
        },
        RecordHeader {
            key: Bytes::from("h"),
            value: None,
        },
    ];
    vec![
        Record::new(1_700_000_000_000, None, Some(Bytes::from("first"))),
        with_headers,
        Record::new(1_699_999_999_000, Some(Bytes::new()), None),
    ]
}

fn write(name: &str, flags: u8, bytes: &[u8]) {
    let mut data = vec![flags];
    data.extend_from_slice(bytes);
    std::fs::write(corpus_dir().join(name), data).unwrap();
}

#[test]
#[ignore = "rewrites the seed corpus; run by hand"]
fn write_seed_corpus() {
    std::fs::create_dir_all(corpus_dir()).unwrap();
    let records = sample_records();
    for codec in CODECS {
        let name = format!("{codec:?}").to_lowercase();
        let builder = BatchBuilder::new().compression(codec);
        let one = builder.build(&records[..1]).unwrap();
        write(&format!("seed-{name}-one"), FIX_ALL, &one);
        let three = builder.build(&records).unwrap();
        write(&format!("seed-{name}-three"), FIX_ALL, &three);

        let mut appended = three.clone();
        strom_record::set_base_offset(&mut appended, 1_000).unwrap();
        strom_record::set_partition_leader_epoch(&mut appended, 3).unwrap();
        strom_record::set_log_append_time(&mut appended, 1_700_000_001_000).unwrap();
        write(&format!("seed-{name}-log-append-time"), FIX_ALL, &appended);

        let mut set = one.clone();
        let mut second = three.clone();
        strom_record::set_base_offset(&mut second, 1).unwrap();
        set.extend_from_slice(&second);
        write(&format!("seed-{name}-message-set"), FIX_CRC, &set);
    }

    let mut idempotent = BatchBuilder::new().compression(Compression::Zstd);
    idempotent.producer_id = 42;
    idempotent.producer_epoch = 1;
    idempotent.base_sequence = 7;
    idempotent.transactional = true;
    write(
        "seed-zstd-transactional",
        FIX_ALL,
        &idempotent.build(&records).unwrap(),
    );

    let mut control = BatchBuilder::new();
    control.control = true;
    control.transactional = true;
    control.producer_id = 42;
    // A commit marker: key = version 0, type 1; value = version 0, coordinator epoch 0.
    let marker = Record::new(
        1_700_000_002_000,
        Some(Bytes::from_static(&[0, 0, 0, 1])),
        Some(Bytes::from_static(&[0, 0, 0, 0, 0, 0])),
    );
    write(
        "seed-control-commit",
        FIX_ALL,
        &control.build(&[marker]).unwrap(),
    );

    let mut log_append = BatchBuilder::new().compression(Compression::Lz4);
    log_append.timestamp_type = TimestampType::LogAppendTime;
    write(
        "seed-lz4-built-log-append",
        FIX_ALL,
        &log_append.build(&records).unwrap(),
    );

    let big: Vec<Record> = (0..64)
        .map(|i| Record::new(i, None, Some(Bytes::from(vec![i as u8; 1_500]))))
        .collect();
    for codec in [Compression::Snappy, Compression::Lz4] {
        let name = format!("{codec:?}").to_lowercase();
        let batch = BatchBuilder::new().compression(codec).build(&big).unwrap();
        write(&format!("seed-{name}-multi-block"), FIX_ALL, &batch);
    }
}
