//! Crash test for the cleaner: a child process appends keyed records (some tombstones) with
//! `fsync = always` while another of its threads cleans the log over and over, and is killed
//! with SIGKILL at random moments (also in the middle of segment swaps). After every kill the
//! log is reopened: no `.cleaned`/`.swap` file is left, offsets strictly increase (no
//! duplicate), every record read is one that was written at that offset, and every key's
//! latest acknowledged write is there (or, for a tombstone, the key is gone).
//!
//! The child is this same test binary, re-run with `STROM_CLEAN_CRASH_CHILD` set so that only
//! the ignored `clean_crash_child` test runs.

mod common;

use common::crash::{KillRounds, ack, child_spec, field};

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use strom_log::{FsyncPolicy, LogConfig, PartitionLog, SystemClock};
use strom_record::{BatchBuilder, DecodeLimits, Record, decode_records};

const CHILD_ENV: &str = "STROM_CLEAN_CRASH_CHILD";
const KEYS: u64 = 17;

fn config() -> LogConfig {
    LogConfig {
        index_interval_bytes: 512,
        fsync: FsyncPolicy::Always,
        // Tombstones go on the first clean that sees them superseded nothing later.
        ..common::compact_config(4 * 1024, 0)
    }
}

fn key(n: u64) -> Bytes {
    Bytes::from(format!("key-{}", n % KEYS))
}

/// The value of write `n` of `round`; every eleventh write is a tombstone.
fn value(round: u32, n: u64) -> Option<Bytes> {
    (!n.is_multiple_of(11))
        .then(|| Bytes::from(format!("{round}/{n}/{}", "x".repeat((n % 9) as usize * 40))))
}

/// Runs in the child: append forever (printing `ack <n> <offset>`), cleaning beside it.
#[test]
#[ignore = "run as a child process by crash_clean_kill9_rounds"]
fn clean_crash_child() {
    let Some((dir, round)) = child_spec(CHILD_ENV) else {
        return;
    };
    let log = Arc::new(PartitionLog::open(&dir, config(), Arc::new(SystemClock)).unwrap());
    let cleaner = {
        let log = Arc::clone(&log);
        std::thread::spawn(move || {
            loop {
                common::clean(&log, strom_log::Clock::now_ms(&SystemClock));
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    for n in 0u64.. {
        let record = Record::new(n as i64, Some(key(n)), value(round, n));
        let mut batch = BatchBuilder::new().build(&[record]).unwrap();
        let info = log.append(&mut batch, 0).unwrap();
        ack(format_args!("{n} {}", info.base_offset));
    }
    cleaner.join().unwrap();
}

/// What the log holds: key → (offset, value) of its latest record, checking every record.
/// Also returns how many records were read.
fn read_latest(
    log: &PartitionLog,
    written: &HashMap<i64, (Bytes, Option<Bytes>)>,
    round: u32,
) -> (HashMap<Bytes, (i64, Option<Bytes>)>, usize) {
    let mut latest = HashMap::new();
    let mut count = 0;
    let mut previous = -1;
    let end = common::scan_batches(log, 1 << 20, |_, batch| {
        for r in decode_records(&batch, DecodeLimits::default())
            .unwrap()
            .records
        {
            assert!(
                r.offset > previous,
                "round {round}: offset {} after {previous}",
                r.offset
            );
            previous = r.offset;
            let k = r.key.clone().unwrap();
            if let Some((wk, wv)) = written.get(&r.offset) {
                assert_eq!(
                    (&k, &r.value),
                    (wk, wv),
                    "round {round}: record at {} differs",
                    r.offset
                );
            }
            latest.insert(k, (r.offset, r.value));
            count += 1;
        }
    });
    assert!(end <= log.log_end_offset());
    (latest, count)
}

#[test]
fn crash_clean_kill9_rounds() {
    // Every acknowledged write: offset → (key, value); and each key's latest.
    let mut written: HashMap<i64, (Bytes, Option<Bytes>)> = HashMap::new();
    let mut acked_latest: HashMap<Bytes, (i64, Option<Bytes>)> = HashMap::new();
    let mut records_left = 0;
    let mut unacked_seen = 0;
    let ran = KillRounds {
        child_test: "clean_crash_child",
        child_env: CHILD_ENV,
        default_rounds: 30,
        default_seed: 0xc1ea,
        min_delay_ms: 50,
        delay_spread_ms: 250,
    }
    .run(|round, dir, acks| {
        for a in &acks {
            let [n, offset] = &a[..] else { continue };
            let (n, offset): (u64, i64) = (field(n), field(offset));
            let (k, v) = (key(n), value(round, n));
            written.insert(offset, (k.clone(), v.clone()));
            acked_latest.insert(k, (offset, v));
        }

        let log = PartitionLog::open(dir, config(), Arc::new(SystemClock)).unwrap();
        let leftovers: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".cleaned") || n.ends_with(".swap") || n.ends_with(".swap-end"))
            .collect();
        assert!(
            leftovers.is_empty(),
            "round {round}: leftovers {leftovers:?}"
        );
        let (latest, count) = read_latest(&log, &written, round);
        records_left = count;
        let mut observed = Vec::new();
        for (k, (offset, v)) in &acked_latest {
            match latest.get(k) {
                // A later write the child made but was killed before acknowledging.
                Some((o, lv)) if o > offset => observed.push((k.clone(), (*o, lv.clone()))),
                Some((o, lv)) if o == offset => assert_eq!(lv, v, "round {round}: {k:?}"),
                None if v.is_none() => {}
                other => panic!(
                    "round {round}: key {k:?} acknowledged at {offset} ({v:?}) but the log has {other:?}"
                ),
            }
        }
        // An unacknowledged write found durable is history from now on: a later clean may
        // apply it (an unacknowledged tombstone then removes the key), so later rounds expect
        // it, not the older acknowledged write it superseded.
        unacked_seen += observed.len();
        acked_latest.extend(observed);
    });
    assert!(!written.is_empty(), "the child never acknowledged anything");
    // 17 keys: after compaction far fewer records remain than were written.
    assert!(
        records_left < written.len() / 2,
        "the cleaner did not compact: {records_left} of {} records left",
        written.len()
    );
    eprintln!(
        "clean crash test: {} rounds, {} acknowledged writes, {unacked_seen} unacknowledged writes \
         found durable, {records_left} records left (seed {})",
        ran.done,
        written.len(),
        ran.seed
    );
}
