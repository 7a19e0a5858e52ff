//! Segments rolled under `fsync = never|interval` are flushed in the background; until then the
//! recovery point stays below them and an unclean restart scans them whole. A damaged one is
//! cut at the damage and everything after it is dropped (it follows lost data).

mod common;

use std::sync::Arc;

use strom_log::{FsyncPolicy, LogConfig, PartitionLog, SystemClock};

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 2048,
        index_interval_bytes: 256,
        fsync: FsyncPolicy::Never,
        retention_ms: None,
        ..LogConfig::default()
    }
}

fn segment_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    v.sort();
    v
}

fn write_log(dir: &std::path::Path) -> usize {
    let log = PartitionLog::open(dir, config(), Arc::new(SystemClock)).unwrap();
    for i in 0..100 {
        log.append(&mut common::batch(&format!("b{i}"), &[i, i]), 0)
            .unwrap();
    }
    let n = log.segment_count();
    assert!(n >= 5);
    log.close().unwrap();
    n
}

#[test]
fn a_crash_before_the_background_flush_rescans_rolled_segments() {
    let dir = tempfile::tempdir().unwrap();
    let segments = write_log(dir.path());
    // A clean close flushed everything and raised the recovery point to the active segment.
    let rp: i64 = std::fs::read_to_string(dir.path().join("recovery-point"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(rp > 0);
    // Pretend the process died before any flush: recovery point back to 0, indexes gone.
    std::fs::write(dir.path().join("recovery-point"), "0\n").unwrap();
    for f in std::fs::read_dir(dir.path()).unwrap() {
        let p = f.unwrap().path();
        if p.extension()
            .is_some_and(|e| e == "index" || e == "timeindex")
        {
            std::fs::remove_file(p).unwrap();
        }
    }
    let log = PartitionLog::open(dir.path(), config(), Arc::new(SystemClock)).unwrap();
    assert_eq!(log.segment_count(), segments);
    assert_eq!(common::read_all(&log).len(), 200);
    assert_eq!(log.offset_for_timestamp(50).unwrap(), Some((100, 50)));
}

#[test]
fn a_damaged_unflushed_segment_is_cut_and_what_follows_dropped() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path());
    std::fs::write(dir.path().join("recovery-point"), "0\n").unwrap();
    let files = segment_files(dir.path());
    // Damage the middle of the second segment.
    let victim = &files[1];
    let mut data = std::fs::read(victim).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0x40;
    std::fs::write(victim, &data).unwrap();
    let second_base: i64 = victim
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();

    let log = PartitionLog::open(dir.path(), config(), Arc::new(SystemClock)).unwrap();
    assert_eq!(
        log.segment_count(),
        2,
        "segments after the damaged one are dropped"
    );
    let end = log.log_end_offset();
    assert!(
        end > second_base && end < 200,
        "log end {end} should be inside the damaged segment"
    );
    let all = common::read_all(&log);
    assert_eq!(all.len() as i64, end);
    assert!(all.iter().enumerate().all(|(i, r)| r.0 == i as i64));
    // The log goes on from there.
    let info = log.append(&mut common::batch("again", &[1]), 0).unwrap();
    assert_eq!(info.base_offset, end);
}
