//! `next_readable_offset`: where a salvaging reader resumes after a read failed on damage.

mod common;

use std::sync::Arc;

use common::{batch, open};
use strom_log::{FsyncPolicy, LogConfig, SystemClock};

#[test]
fn resumes_at_the_next_index_entry_or_segment_after_a_damaged_header() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 2048,
        index_interval_bytes: 200,
        fsync: FsyncPolicy::Always,
        retention_ms: None,
        ..LogConfig::default()
    };
    let log = open(dir.path(), config.clone(), Arc::new(SystemClock));
    for i in 0..60 {
        log.append(&mut batch(&format!("v{i}"), &[i, i]), 0)
            .unwrap();
    }
    assert!(log.segment_count() >= 3);
    let end = log.log_end_offset();
    log.close().unwrap();
    drop(log);

    // Destroy the length of the third batch of the first segment (offsets 4..=5).
    let first = dir.path().join(format!("{:020}.log", 0));
    let mut bytes = std::fs::read(&first).unwrap();
    let mut pos = 0;
    for _ in 0..2 {
        pos += strom_record::check_stored_batch(&bytes[pos..])
            .unwrap()
            .total_len();
    }
    bytes[pos + 8..pos + 12].copy_from_slice(&0x7fff_fff0_i32.to_be_bytes());
    std::fs::write(&first, &bytes).unwrap();

    let log = open(dir.path(), config, Arc::new(SystemClock));
    assert_eq!(log.log_end_offset(), end, "a closed segment is not cut");
    let fails = |o: i64| {
        log.read(o, 1 << 20)
            .and_then(|r| r.data.map(|d| d.read_to_vec()).transpose())
            .is_err()
    };
    assert!(fails(4), "the damaged batch is not readable");
    let next = log.next_readable_offset(4).unwrap();
    assert!(next > 5, "resumes past the damaged batch, at {next}");
    assert!(!fails(next), "the log reads again at {next}");
    // Nothing after the last offset.
    assert_eq!(log.next_readable_offset(end - 1), None);
}
