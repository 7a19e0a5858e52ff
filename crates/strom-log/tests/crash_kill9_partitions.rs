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

use common::Rng;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use strom_log::{FsyncPolicy, LogConfig, PartitionLog, SyncGroup, SystemClock};
use strom_record::{BatchBuilder, DecodeLimits, Record, decode_records};

const CHILD_ENV: &str = "STROM_CRASH_CHILD";
const THREADS: usize = 12;
const PARTITIONS: usize = 8;
const DEFERRED: usize = 4;
const RECORDS_PER_BATCH: usize = 3;

fn config() -> LogConfig {
    LogConfig {
        // Small segments so kills also land during rolls.
        segment_bytes: 64 * 1024,
        index_interval_bytes: 1024,
        fsync: FsyncPolicy::Always,
        retention_ms: None,
        ..LogConfig::default()
    }
}

fn value(round: u32, thread: usize, seq: u64, i: usize) -> String {
    // Vary the size so batches straddle pages and index intervals.
    let pad = "x".repeat((seq as usize * 37 + i * 11) % 700);
    format!("{round}/{thread}/{seq}/{i}/{pad}")
}

fn open_all(dir: &std::path::Path, group: Option<&SyncGroup>) -> Vec<PartitionLog> {
    (0..PARTITIONS)
        .map(|p| {
            let log =
                PartitionLog::open(&dir.join(format!("p{p}")), config(), Arc::new(SystemClock))
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
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (dir, round) = spec.split_once('|').unwrap();
    let round: u32 = round.parse().unwrap();
    let group = SyncGroup::new();
    let logs = Arc::new(open_all(dir.as_ref(), Some(&group)));
    let stdout = Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let logs = Arc::clone(&logs);
            let stdout = Arc::clone(&stdout);
            std::thread::spawn(move || {
                // Odd threads pipeline like a Kafka connection: up to `DEFERRED` writes made
                // with `append_deferred` before the oldest is awaited and acknowledged.
                let mut in_flight = std::collections::VecDeque::new();
                for seq in 0.. {
                    let records: Vec<Record> = (0..RECORDS_PER_BATCH)
                        .map(|i| {
                            Record::new(
                                seq as i64,
                                None,
                                Some(Bytes::from(value(round, t, seq, i))),
                            )
                        })
                        .collect();
                    let mut batch = BatchBuilder::new().build(&records).unwrap();
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
                    let mut out = stdout.lock().unwrap();
                    writeln!(out, "ack {t} {seq} {p} {}", info.base_offset).unwrap();
                    out.flush().unwrap();
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
    let rounds: u32 = std::env::var("STROM_CRASH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let seed = std::env::var("STROM_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_u64);
    let budget = Duration::from_secs(120);
    let mut rng = Rng(seed | 1);
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let started = Instant::now();
    let mut total_acked = 0usize;
    let mut done = 0;
    for round in 0..rounds {
        if started.elapsed() > budget {
            break;
        }
        let mut child = Command::new(&exe)
            .args([
                "crash_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, format!("{}|{round}", dir.path().display()))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        // Read acks on a thread; kill after a random delay, then collect what was acknowledged.
        let reader = std::thread::spawn(move || {
            let mut acks = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let parts: Vec<&str> = line.split_whitespace().collect();
                if let ["ack", t, seq, p, base] = parts[..] {
                    acks.push((
                        t.parse::<usize>().unwrap(),
                        seq.parse::<u64>().unwrap(),
                        p.parse::<usize>().unwrap(),
                        base.parse::<i64>().unwrap(),
                    ));
                }
            }
            acks
        });
        // Longer than the single-log test: the child opens every partition first.
        std::thread::sleep(Duration::from_millis(60 + rng.below(240)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let acks = reader.join().unwrap();
        total_acked += acks.len();

        // Reopen (recovery) and check every partition.
        let logs = open_all(dir.path(), None);
        let mut batches: HashMap<(usize, i64), Vec<Bytes>> = HashMap::new();
        for (p, log) in logs.iter().enumerate() {
            let mut offset = log.log_start_offset();
            while let Some(slice) = log.read(offset, 1 << 20).unwrap().data {
                let bytes = slice.read_to_bytes().unwrap();
                let mut pos = 0;
                while pos < bytes.len() {
                    let header = strom_record::check_stored_batch(&bytes[pos..]).unwrap();
                    assert_eq!(header.base_offset, offset, "offsets must be dense");
                    let batch = bytes.slice(pos..pos + header.total_len());
                    let decoded = decode_records(&batch, DecodeLimits::default()).unwrap();
                    batches.insert(
                        (p, header.base_offset),
                        decoded
                            .records
                            .into_iter()
                            .map(|r| r.value.unwrap())
                            .collect(),
                    );
                    offset = header.next_offset();
                    pos += header.total_len();
                }
            }
            assert_eq!(
                offset,
                log.log_end_offset(),
                "everything up to the log end is readable"
            );
        }
        for (t, seq, p, base) in &acks {
            let values = batches
                .get(&(*p, *base))
                .unwrap_or_else(|| panic!("round {round}: acknowledged batch at {p}/{base} lost"));
            let expected: Vec<Bytes> = (0..RECORDS_PER_BATCH)
                .map(|i| Bytes::from(value(round, *t, *seq, i)))
                .collect();
            assert_eq!(
                values, &expected,
                "round {round}: batch at {p}/{base} differs"
            );
        }
        drop(logs);
        done += 1;
    }
    assert!(
        done >= rounds.min(10),
        "only {done} rounds ran in the time budget"
    );
    assert!(total_acked > 0, "the child never acknowledged anything");
    eprintln!(
        "multi-partition crash test: {done} rounds, {total_acked} acknowledged batches verified (seed {seed})"
    );
}
