//! Corruption test: flip bytes in, truncate, extend or delete the files of a copy of a log at
//! random, then reopen. Recovery must never panic, and the reopened log must never serve a
//! batch that differs from what was written: every batch handed out passes its CRC and holds
//! the original records at the original offsets.

mod common;

use common::Rng;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use strom_log::{FsyncPolicy, LogConfig, PartitionLog, SystemClock};
use strom_record::{DecodeLimits, decode_records};

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 4 * 1024,
        index_interval_bytes: 512,
        fsync: FsyncPolicy::Never,
        retention_ms: None,
        ..LogConfig::default()
    }
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

/// Reads whatever the log serves; checks it against `original` (offset → value).
fn check_served(log: &PartitionLog, original: &HashMap<i64, Bytes>) -> usize {
    let mut served = 0;
    let mut offset = log.log_start_offset();
    loop {
        let read = match log.read(offset, 4096) {
            Ok(r) => r,
            Err(_) => break,
        };
        let Some(slice) = read.data else { break };
        let Ok(bytes) = slice.read_to_bytes() else {
            break;
        };
        if bytes.is_empty() {
            break;
        }
        let mut pos = 0;
        while pos < bytes.len() {
            let header =
                strom_record::check_stored_batch(&bytes[pos..]).expect("served batch passes CRC");
            let batch = bytes.slice(pos..pos + header.total_len());
            for r in decode_records(&batch, DecodeLimits::default())
                .expect("served batch decodes")
                .records
            {
                assert_eq!(
                    original.get(&r.offset),
                    r.value.as_ref(),
                    "record at {} differs",
                    r.offset
                );
                served += 1;
            }
            offset = header.next_offset();
            pos += header.total_len();
        }
    }
    served
}

#[test]
fn random_damage_never_panics_nor_serves_corrupt_batches() {
    let pristine = tempfile::tempdir().unwrap();
    let mut original = HashMap::new();
    {
        let log = PartitionLog::open(pristine.path(), config(), Arc::new(SystemClock)).unwrap();
        for i in 0..300i64 {
            let n = 1 + (i % 4) as usize;
            let ts: Vec<i64> = (0..n as i64).map(|j| i * 10 + j).collect();
            let mut b = common::batch(&format!("b{i}"), &ts);
            let info = log.append(&mut b, 0).unwrap();
            for j in 0..n {
                original.insert(
                    info.base_offset + j as i64,
                    Bytes::from(format!("b{i}-{j}")),
                );
            }
        }
        assert!(log.segment_count() > 4);
    }
    let total = original.len();
    let mut rng = Rng(0xdead_beef);
    let mut opened = 0;
    for _ in 0..200 {
        let copy = tempfile::tempdir().unwrap();
        copy_dir(pristine.path(), copy.path());
        let all = files(copy.path());
        let target = &all[rng.below(all.len() as u64) as usize];
        let mut data = std::fs::read(target).unwrap();
        match rng.below(5) {
            0 | 1 if !data.is_empty() => {
                for _ in 0..=rng.below(3) {
                    let at = rng.below(data.len() as u64) as usize;
                    data[at] ^= 1 << rng.below(8);
                }
            }
            2 => data.truncate(rng.below(data.len() as u64 + 1) as usize),
            3 => data.extend((0..rng.below(200)).map(|_| rng.below(256) as u8)),
            _ => {
                std::fs::remove_file(target).unwrap();
                data.clear();
            }
        }
        if target.exists() {
            std::fs::write(target, &data).unwrap();
        }
        match PartitionLog::open(copy.path(), config(), Arc::new(SystemClock)) {
            Ok(log) => {
                opened += 1;
                let served = check_served(&log, &original);
                assert!(served <= total);
                // The log stays writable after recovery.
                let mut b = common::batch("after", &[1]);
                log.append(&mut b, 0).unwrap();
            }
            Err(e) => eprintln!("open refused damaged log: {e}"),
        }
    }
    assert!(
        opened > 150,
        "recovery should cope with most damage, opened {opened}/200"
    );
}
