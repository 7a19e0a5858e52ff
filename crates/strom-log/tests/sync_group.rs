//! Partition logs sharing a broker-wide commit window (`SyncGroup`): `Always` appends from many
//! threads over many partitions are acknowledged only once visible and synced by the group,
//! and survive a reopen; `Interval` and `Never` logs ignore the group.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use strom_log::{FsyncPolicy, LogConfig, PartitionLog, SyncGroup, SystemClock};
use strom_record::{BatchBuilder, Record};

fn batch(tag: &str) -> Vec<u8> {
    BatchBuilder::new()
        .build(&[Record::new(1, None, Some(Bytes::from(tag.to_owned())))])
        .unwrap()
}

fn open(dir: &std::path::Path, fsync: FsyncPolicy) -> PartitionLog {
    let config = LogConfig {
        fsync,
        segment_bytes: 16 * 1024,
        ..LogConfig::default()
    };
    PartitionLog::open(dir, config, Arc::new(SystemClock)).unwrap()
}

#[test]
fn always_appends_across_partitions_are_synced_by_the_group_and_survive_reopen() {
    const PARTITIONS: usize = 6;
    const THREADS: usize = 12;
    const PER_THREAD: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    let group = SyncGroup::new();
    let logs: Vec<PartitionLog> = (0..PARTITIONS)
        .map(|p| {
            let log = open(&dir.path().join(format!("p{p}")), FsyncPolicy::Always);
            log.join_sync_group(group.clone());
            log
        })
        .collect();
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let logs = &logs;
            s.spawn(move || {
                for i in 0..PER_THREAD {
                    let log = &logs[(t + i) % PARTITIONS];
                    let info = log.append(&mut batch(&format!("{t}/{i}")), 0).unwrap();
                    assert!(
                        log.high_watermark() > info.last_offset,
                        "acknowledged before visible"
                    );
                }
            });
        }
    });
    let appended = (THREADS * PER_THREAD) as u64;
    assert!(group.sync_count() > 0 && group.window_count() > 0);
    assert!(group.sync_count() <= appended);
    // Each log counts the group's syncs of its files, once per sync.
    let per_log: u64 = logs.iter().map(PartitionLog::sync_count).sum();
    assert!(per_log >= PARTITIONS as u64 && per_log <= group.sync_count());
    for log in &logs {
        assert_eq!(log.high_watermark(), log.log_end_offset());
    }
    let total: i64 = logs.iter().map(PartitionLog::log_end_offset).sum();
    assert_eq!(total, appended as i64);
    drop(logs);
    let reopened: i64 = (0..PARTITIONS)
        .map(|p| open(&dir.path().join(format!("p{p}")), FsyncPolicy::Always).log_end_offset())
        .sum();
    assert_eq!(reopened, appended as i64);
}

#[test]
fn interval_and_never_logs_do_not_use_the_group() {
    let dir = tempfile::tempdir().unwrap();
    let group = SyncGroup::new();
    for (name, policy) in [
        ("interval", FsyncPolicy::Interval(Duration::from_secs(3600))),
        ("never", FsyncPolicy::Never),
    ] {
        let log = open(&dir.path().join(name), policy);
        log.join_sync_group(group.clone());
        let info = log.append(&mut batch(name), 0).unwrap();
        assert_eq!(log.high_watermark(), info.last_offset + 1);
        log.flush().unwrap();
    }
    assert_eq!(group.sync_count(), 0);
}

#[test]
fn flush_of_an_always_log_in_a_group_goes_through_the_group() {
    let dir = tempfile::tempdir().unwrap();
    let group = SyncGroup::new();
    let log = open(dir.path(), FsyncPolicy::Always);
    log.join_sync_group(group.clone());
    log.append(&mut batch("a"), 0).unwrap();
    let after_append = group.sync_count();
    assert!(after_append >= 1);
    // Nothing new to sync: the high watermark already covers the log end.
    log.flush().unwrap();
    assert_eq!(group.sync_count(), after_append);
}

/// The group's `fdatasync` goes through the fault seam: an injected failure on one partition's
/// segment fails and poisons that partition only, while another partition in the same group
/// keeps appending.
#[test]
fn an_injected_fdatasync_failure_in_the_group_poisons_only_that_partition() {
    use strom_log::fault::{self, FailNth, FaultError, FileKind, FileOp};

    let dir = tempfile::tempdir().unwrap();
    let group = SyncGroup::new();
    let failing = open(&dir.path().join("failing"), FsyncPolicy::Always);
    let healthy = open(&dir.path().join("healthy"), FsyncPolicy::Always);
    failing.join_sync_group(group.clone());
    healthy.join_sync_group(group.clone());
    let plan = Arc::new(FailNth::new(
        &dir.path().join("failing"),
        FileKind::Segment,
        FileOp::Sync,
        1,
        FaultError::Io,
    ));
    let _guard = fault::install(plan.clone());
    let err = failing.append(&mut batch("lost"), 0).unwrap_err();
    assert!(matches!(err, strom_log::Error::Io { .. }), "{err:?}");
    assert_eq!(plan.fired(), 1, "the group's sync went through the seam");
    assert!(failing.is_poisoned());
    assert_eq!(failing.high_watermark(), 0, "nothing unsynced is visible");
    assert!(matches!(
        failing.append(&mut batch("refused"), 0),
        Err(strom_log::Error::Poisoned)
    ));
    let info = healthy.append(&mut batch("kept"), 0).unwrap();
    assert_eq!(info.base_offset, 0);
    assert_eq!(healthy.high_watermark(), 1);
}

/// A log abandoned (as healing does) between `append_deferred` and `await_durable` makes the
/// second half fail at once instead of waiting or syncing a file recovery may be rewriting.
#[test]
fn await_durable_on_an_abandoned_log_fails_without_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let group = SyncGroup::new();
    let log = open(dir.path(), FsyncPolicy::Always);
    log.join_sync_group(group.clone());
    let pending = log.append_deferred(&mut batch("pending"), 0).unwrap();
    log.abandon();
    let started = std::time::Instant::now();
    let err = log.await_durable(pending).unwrap_err();
    assert!(
        matches!(err, strom_log::Error::Closed | strom_log::Error::Poisoned),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        log.high_watermark(),
        0,
        "the unsynced write never became visible"
    );
    assert_eq!(group.sync_count(), 0, "nothing synced for it");
}

/// Writes made before anyone waits share one window: `append_deferred` enters the written
/// segment in the open window, so whichever waiter comes first starts a window that already
/// holds every partition written, and each file is synced once. (Entering only at the wait
/// would let the first waiter start a window alone.) Nothing is visible before its wait.
#[test]
fn deferred_writes_made_before_any_wait_share_one_window() {
    const PARTITIONS: usize = 6;
    let dir = tempfile::tempdir().unwrap();
    let group = SyncGroup::new();
    let logs: Vec<PartitionLog> = (0..PARTITIONS)
        .map(|p| {
            let log = open(&dir.path().join(format!("p{p}")), FsyncPolicy::Always);
            log.join_sync_group(group.clone());
            log
        })
        .collect();
    for round in 0..3u64 {
        let pending: Vec<_> = logs
            .iter()
            .map(|log| log.append_deferred(&mut batch("x"), 0).unwrap())
            .collect();
        for log in &logs {
            assert!(
                log.high_watermark() < log.log_end_offset(),
                "visible before synced"
            );
        }
        // Wait in reverse order, one thread per partition.
        std::thread::scope(|s| {
            for (log, p) in logs.iter().zip(pending).rev() {
                s.spawn(move || log.await_durable(p).unwrap());
            }
        });
        assert_eq!(group.window_count(), round + 1, "one window per round");
        assert_eq!(group.sync_count(), (round + 1) * PARTITIONS as u64);
        for log in &logs {
            assert_eq!(log.high_watermark(), log.log_end_offset());
        }
    }
}
