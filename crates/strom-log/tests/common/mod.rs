//! Helpers shared by this crate's integration tests.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;

use bytes::Bytes;
use strom_log::{Clock, LogConfig, PartitionLog};
use strom_record::{BatchBuilder, DecodeLimits, Record, decode_records};

/// A batch of records with the given timestamps and values `"{tag}-{i}"`.
pub fn batch(tag: &str, timestamps: &[i64]) -> Vec<u8> {
    let records: Vec<Record> = timestamps
        .iter()
        .enumerate()
        .map(|(i, &ts)| {
            Record::new(
                ts,
                Some(Bytes::from(format!("k{i}"))),
                Some(Bytes::from(format!("{tag}-{i}"))),
            )
        })
        .collect();
    BatchBuilder::new().build(&records).unwrap()
}

/// Every record readable from the log start to the high watermark, as (offset, timestamp, value).
pub fn read_all(log: &PartitionLog) -> Vec<(i64, i64, Bytes)> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    loop {
        let read = log.read(offset, 4096).unwrap();
        let Some(slice) = read.data else { break };
        let bytes = slice.read_to_bytes().unwrap();
        assert!(!bytes.is_empty());
        let mut pos = 0;
        while pos < bytes.len() {
            let header = strom_record::check_stored_batch(&bytes[pos..]).unwrap();
            let batch = bytes.slice(pos..pos + header.total_len());
            for r in decode_records(&batch, DecodeLimits::default())
                .unwrap()
                .records
            {
                if r.offset >= offset {
                    out.push((r.offset, r.timestamp, r.value.unwrap()));
                }
            }
            offset = header.next_offset();
            pos += header.total_len();
        }
    }
    out
}

pub fn open(dir: &std::path::Path, config: LogConfig, clock: Arc<dyn Clock>) -> PartitionLog {
    PartitionLog::open(dir, config, clock).unwrap()
}

/// A tiny deterministic generator (xorshift), so randomized tests are reproducible from a seed.
pub struct Rng(pub u64);

impl Rng {
    /// A value in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}
