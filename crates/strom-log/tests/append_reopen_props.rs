//! Property test: any sequence of appends, rolls, retention, deletions, truncations and reopens
//! leaves a log that returns exactly the records appended (and not removed), in order, at the
//! offsets assigned; and timestamp lookup agrees with a linear scan.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::read_all;
use proptest::prelude::*;
use strom_log::{FsyncPolicy, LogConfig, ManualClock, PartitionLog};
use strom_record::{BatchBuilder, Compression, Record};

#[derive(Debug, Clone)]
enum Op {
    /// Append one batch (or two in one call) of records with these timestamps.
    Append(Vec<i64>, bool, u8),
    Roll,
    /// Delete records before the offset at this fraction (per mille) of the readable range.
    DeleteBefore(u16),
    /// Truncate at the base of the batch at this fraction of the batch list.
    Truncate(u16),
    /// Retention by size with this limit.
    RetainBytes(u16),
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (prop::collection::vec(0i64..1000, 1..6), any::<bool>(), 0u8..3).prop_map(|(t, two, c)| Op::Append(t, two, c)),
        1 => Just(Op::Roll),
        1 => (0u16..1000).prop_map(Op::DeleteBefore),
        1 => (0u16..1000).prop_map(Op::Truncate),
        1 => (200u16..4000).prop_map(Op::RetainBytes),
        1 => Just(Op::Reopen),
    ]
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 600,
        index_interval_bytes: 128,
        retention_ms: None,
        fsync: FsyncPolicy::Never,
        ..LogConfig::default()
    }
}

/// The model: every record the log should hold, with its offset and timestamp, plus batch bases.
#[derive(Debug, Default)]
struct Model {
    records: Vec<(i64, i64, Bytes)>,
    batch_bases: Vec<i64>,
    end: i64,
}

fn build(tag: usize, timestamps: &[i64], codec: u8) -> Vec<u8> {
    let records: Vec<Record> = timestamps
        .iter()
        .enumerate()
        .map(|(i, &ts)| Record::new(ts, None, Some(Bytes::from(format!("r{tag}-{i}")))))
        .collect();
    let compression = match codec {
        0 => Compression::None,
        1 => Compression::Lz4,
        _ => Compression::Zstd,
    };
    BatchBuilder::new()
        .compression(compression)
        .build(&records)
        .unwrap()
}

proptest! {
    #[test]
    fn log_matches_model(ops in prop::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(1_000_000));
        let mut log = PartitionLog::open(dir.path(), config(), clock.clone()).unwrap();
        let mut model = Model::default();
        for (step, op) in ops.into_iter().enumerate() {
            match op {
                Op::Append(ts, two, codec) => {
                    let mut buf = build(step, &ts, codec);
                    if two {
                        buf.extend(build(step + 10_000, &ts, codec));
                    }
                    let info = log.append(&mut buf, 1).unwrap();
                    prop_assert_eq!(info.base_offset, model.end);
                    for (tag, _) in [(step, ()), (step + 10_000, ())].iter().take(if two { 2 } else { 1 }) {
                        model.batch_bases.push(model.end);
                        for (i, &t) in ts.iter().enumerate() {
                            model.records.push((model.end, t, Bytes::from(format!("r{tag}-{i}"))));
                            model.end += 1;
                        }
                    }
                    prop_assert_eq!(info.last_offset, model.end - 1);
                }
                Op::Roll => log.roll().unwrap(),
                Op::DeleteBefore(f) => {
                    let start = log.log_start_offset();
                    let target = start + (model.end - start) * i64::from(f) / 1000;
                    log.delete_records_before(target).unwrap();
                    prop_assert_eq!(log.log_start_offset(), target.max(start));
                }
                Op::Truncate(f) => {
                    let start = log.log_start_offset();
                    let candidates: Vec<i64> = model.batch_bases.iter().copied().filter(|&b| b >= start).collect();
                    if let Some(&at) = candidates.get(candidates.len() * usize::from(f) / 1000) {
                        log.truncate_to(at).unwrap();
                        model.records.retain(|r| r.0 < at);
                        model.batch_bases.retain(|&b| b < at);
                        model.end = at;
                    }
                }
                Op::RetainBytes(limit) => {
                    log.set_config(LogConfig { retention_bytes: Some(u64::from(limit)), ..config() });
                    log.apply_retention().unwrap();
                    log.set_config(config());
                    prop_assert!(log.size_bytes() <= u64::from(limit).max(600) + 600);
                }
                Op::Reopen => {
                    drop(log);
                    log = PartitionLog::open(dir.path(), config(), clock.clone()).unwrap();
                }
            }
            prop_assert_eq!(log.log_end_offset(), model.end);
            prop_assert_eq!(log.high_watermark(), model.end);
        }
        let start = log.log_start_offset();
        let expected: Vec<_> = model.records.iter().filter(|r| r.0 >= start).cloned().collect();
        prop_assert_eq!(read_all(&log), expected.clone());

        for t in [0, 1, 250, 500, 999, 1000] {
            let linear = expected.iter().find(|r| r.1 >= t).map(|r| (r.0, r.1));
            prop_assert_eq!(log.offset_for_timestamp(t).unwrap(), linear, "timestamp {}", t);
        }
        let max = expected.iter().map(|r| r.1).max();
        let linear_max = max.and_then(|m| expected.iter().find(|r| r.1 == m).map(|r| (r.0, r.1)));
        prop_assert_eq!(log.max_timestamp().unwrap(), linear_max);

        drop(log);
        let log = PartitionLog::open(dir.path(), config(), clock).unwrap();
        prop_assert_eq!(read_all(&log), expected);
    }
}
