//! Crash test across partitions: a child process appends with `fsync = always` to many
//! partition logs that share one broker-wide commit window (`SyncGroup`), from more threads than
//! partitions, and is killed with SIGKILL at random moments. After every kill each log is
//! reopened: every batch the child saw acknowledged must be there, intact, in its partition at
//! the offset it was given, and nothing after a torn write may be served. Half the threads
//! pipeline their appends (`append_deferred` now, `await_durable` later, as a Kafka connection
//! with deferred Produce answers does) and acknowledge only after `await_durable`.
//!
//! The child is this same test binary, re-run with `STROM_CRASH_CHILD` set so that only the
//! ignored `crash_child` test runs.

mod common;

use common::crash::{
    KillRounds, ack, appending_config, check_acked, child_spec, field, read_dense, thread_batch,
};

use std::sync::Arc;

use strom_log::{PartitionLog, SyncGroup, SystemClock};

const CHILD_ENV: &str = "STROM_CRASH_CHILD";
const THREADS: usize = 12;
const PARTITIONS: usize = 8;
const DEFERRED: usize = 4;

fn open_all(dir: &std::path::Path, group: Option<&SyncGroup>) -> Vec<PartitionLog> {
    (0..PARTITIONS)
        .map(|p| {
            let log = PartitionLog::open(
                &dir.join(format!("p{p}")),
                appending_config(),
                Arc::new(SystemClock),
            )
            .unwrap();
            if let Some(g) = group {
                log.join_sync_group(g.clone());
            }
            log
        })
        .collect()
}

/// Runs in the child: append forever, each thread cycling over the partitions, printing
/// `ack <thread> <seq> <partition> <base_offset>` after each acknowledged append.
#[test]
#[ignore = "run as a child process by crash_kill9_partitions_rounds"]
fn crash_child() {
    let Some((dir, round)) = child_spec(CHILD_ENV) else {
        return;
    };
    let group = SyncGroup::new();
    let logs = Arc::new(open_all(&dir, Some(&group)));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let logs = Arc::clone(&logs);
            std::thread::spawn(move || {
                // Odd threads pipeline like a Kafka connection: up to `DEFERRED` writes made
                // with `append_deferred` before the oldest is awaited and acknowledged.
                let mut in_flight = std::collections::VecDeque::new();
                for seq in 0.. {
                    let mut batch = thread_batch(round, t, seq);
                    let p = (t + seq as usize) % PARTITIONS;
                    let log = &logs[p];
                    in_flight.push_back((seq, p, log.append_deferred(&mut batch, 0).unwrap()));
                    let depth = if t % 2 == 1 { DEFERRED } else { 1 };
                    if in_flight.len() < depth {
                        continue;
                    }
                    let Some((seq, p, pending)) = in_flight.pop_front() else {
                        continue;
                    };
                    let log = &logs[p];
                    let info = log.await_durable(pending).unwrap();
                    // Visible to readers no later than acknowledged.
                    assert!(log.high_watermark() > info.last_offset);
                    ack(format_args!("{t} {seq} {p} {}", info.base_offset));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn crash_kill9_partitions_rounds() {
    let mut total_acked = 0usize;
    let ran = KillRounds {
        child_test: "crash_child",
        child_env: CHILD_ENV,
        default_rounds: 30,
        default_seed: 0x5eed,
        // Longer than the single-log test: the child opens every partition first.
        min_delay_ms: 60,
        delay_spread_ms: 240,
    }
    .run(|round, dir, acks| {
        let acks: Vec<(usize, u64, usize, i64)> = acks
            .iter()
            .filter_map(|a| match &a[..] {
                [t, seq, p, base] => Some((field(t), field(seq), field(p), field(base))),
                _ => None,
            })
            .collect();
        total_acked += acks.len();

        // Reopen (recovery) and check every partition.
        let logs = open_all(dir, None);
        let batches: Vec<_> = logs.iter().map(read_dense).collect();
        for (t, seq, p, base) in &acks {
            check_acked(
                round,
                format_args!("{p}/{base}"),
                batches[*p].get(base),
                *t,
                *seq,
            );
        }
    });
    assert!(total_acked > 0, "the child never acknowledged anything");
    eprintln!(
        "multi-partition crash test: {} rounds, {total_acked} acknowledged batches verified (seed {})",
        ran.done, ran.seed
    );
}
