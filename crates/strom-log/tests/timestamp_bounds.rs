//! KIP-937 timestamp bounds on append, and retention that one far-future timestamp (written
//! before the bounds existed) cannot hold back.

mod common;

use std::sync::Arc;

use common::{batch, open, read_all};
use strom_log::{Error, FsyncPolicy, LogConfig, ManualClock, SystemClock, TimestampType};

const HOUR: i64 = 60 * 60 * 1000;

fn wall_ms() -> i64 {
    SystemClock.now_ms()
}

use strom_log::Clock;

#[test]
fn create_time_batches_outside_the_window_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let now = 1_700_000_000_000;
    let clock = Arc::new(ManualClock::new(now));
    let config = LogConfig {
        timestamp_before_max_ms: 10_000,
        ..LogConfig::default()
    };
    assert_eq!(
        LogConfig::default().timestamp_after_max_ms,
        HOUR,
        "Kafka 4's default"
    );
    let log = open(dir.path(), config.clone(), clock.clone());

    // Inside the window, at both edges.
    log.append(&mut batch("ok", &[now - 10_000, now + HOUR]), 0)
        .unwrap();
    // One millisecond past either edge, in the largest or the first timestamp.
    for timestamps in [
        vec![now, now + HOUR + 1],
        vec![now - 10_001, now],
        vec![now + 100 * 365 * 24 * HOUR],
    ] {
        let err = log.append(&mut batch("bad", &timestamps), 0).unwrap_err();
        assert!(
            matches!(err, Error::InvalidTimestamp { now: n, earliest, latest, .. }
                if n == now && earliest == now - 10_000 && latest == now + HOUR),
            "{timestamps:?}: {err:?}"
        );
    }
    assert_eq!(log.log_end_offset(), 2, "refused batches take no offsets");

    // The window follows the clock.
    clock.advance(HOUR);
    log.append(&mut batch("later", &[now + 2 * HOUR]), 0)
        .unwrap();

    // LogAppendTime replaces the timestamps, so nothing is refused.
    log.set_config(LogConfig {
        timestamp_type: TimestampType::LogAppendTime,
        ..config
    });
    log.append(&mut batch("stamped", &[now + 100 * HOUR]), 0)
        .unwrap();
    assert_eq!(read_all(&log).len(), 4);
}

#[test]
fn a_far_future_segment_does_not_block_retention_forever() {
    let dir = tempfile::tempdir().unwrap();
    let start = wall_ms();
    let clock = Arc::new(ManualClock::new(start));
    // Written as by a broker without the bounds: the first segment claims a century ahead.
    let unbounded = LogConfig {
        segment_bytes: 1024,
        fsync: FsyncPolicy::Never,
        retention_ms: None,
        timestamp_after_max_ms: i64::MAX,
        ..LogConfig::default()
    };
    let log = open(dir.path(), unbounded.clone(), clock.clone());
    log.append(&mut batch("future", &[start + 100 * 365 * 24 * HOUR]), 0)
        .unwrap();
    log.roll().unwrap();
    for i in 0..20 {
        log.append(&mut batch("now", &[start + i]), 0).unwrap();
    }
    log.roll().unwrap();
    let closed = log.segment_count() - 1;
    assert!(closed >= 2);

    // Three hours on, with one hour of retention, everything written has expired.
    clock.set(start + 3 * HOUR);
    // Without the bounds the far-future segment holds everything back, as before KIP-937 ...
    log.set_config(LogConfig {
        retention_ms: Some(HOUR),
        ..unbounded.clone()
    });
    assert_eq!(log.apply_retention().unwrap(), 0);
    // ... with them it is judged by its write time plus after.max.ms, so it and the segments
    // behind it expire.
    log.set_config(LogConfig {
        retention_ms: Some(HOUR),
        timestamp_after_max_ms: HOUR,
        ..unbounded
    });
    assert_eq!(log.apply_retention().unwrap(), closed);
    assert!(read_all(&log).is_empty());
    assert_eq!(log.log_start_offset(), log.log_end_offset());
}
