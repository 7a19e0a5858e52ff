//! Crash test: a child process appends with `fsync = always` from several threads and is
//! killed with SIGKILL at random moments. After every kill the log is reopened: every batch the
//! child saw acknowledged must be there, intact, at the offset it was given, and nothing after a
//! torn write may be served.
//!
//! The child is this same test binary, re-run with `STROM_CRASH_CHILD` set so that only the
//! ignored `crash_child` test runs.

mod common;

use common::crash::{
    KillRounds, ack, appending_config, check_acked, child_spec, field, read_dense, thread_batch,
};

use std::sync::Arc;

use strom_log::{PartitionLog, SystemClock};

const CHILD_ENV: &str = "STROM_CRASH_CHILD";
const THREADS: usize = 4;

/// Runs in the child: append forever, printing `ack <thread> <seq> <base_offset>` after each
/// acknowledged append.
#[test]
#[ignore = "run as a child process by crash_kill9_rounds"]
fn crash_child() {
    let Some((dir, round)) = child_spec(CHILD_ENV) else {
        return;
    };
    let log =
        Arc::new(PartitionLog::open(&dir, appending_config(), Arc::new(SystemClock)).unwrap());
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for seq in 0.. {
                    let mut batch = thread_batch(round, t, seq);
                    let info = log.append(&mut batch, 0).unwrap();
                    ack(format_args!("{t} {seq} {}", info.base_offset));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn crash_kill9_rounds() {
    let mut total_acked = 0usize;
    let ran = KillRounds {
        child_test: "crash_child",
        child_env: CHILD_ENV,
        default_rounds: 50,
        default_seed: 0x5eed,
        min_delay_ms: 20,
        delay_spread_ms: 120,
    }
    .run(|round, dir, acks| {
        let acks: Vec<(usize, u64, i64)> = acks
            .iter()
            .filter_map(|a| match &a[..] {
                [t, seq, base] => Some((field(t), field(seq), field(base))),
                _ => None,
            })
            .collect();
        total_acked += acks.len();

        // Reopen (recovery) and check.
        let log = PartitionLog::open(dir, appending_config(), Arc::new(SystemClock)).unwrap();
        let batches = read_dense(&log);
        for (t, seq, base) in &acks {
            check_acked(round, base, batches.get(base), *t, *seq);
        }
    });
    assert!(total_acked > 0, "the child never acknowledged anything");
    eprintln!(
        "crash test: {} rounds, {total_acked} acknowledged batches verified (seed {})",
        ran.done, ran.seed
    );
}
