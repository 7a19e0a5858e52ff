//! Crash test: a child process appends with `fsync = always` from several threads and is
//! killed with SIGKILL at random moments. After every kill the log is reopened: every batch the
//! child saw acknowledged must be there, intact, at the offset it was given, and nothing after a
//! torn write may be served.
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
use strom_log::{FsyncPolicy, LogConfig, PartitionLog, SystemClock};
use strom_record::{BatchBuilder, DecodeLimits, Record, decode_records};

const CHILD_ENV: &str = "STROM_CRASH_CHILD";
const THREADS: usize = 4;
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

/// Runs in the child: append forever, printing `ack <thread> <seq> <base_offset>` after each
/// acknowledged append.
#[test]
#[ignore = "run as a child process by crash_kill9_rounds"]
fn crash_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (dir, round) = spec.split_once('|').unwrap();
    let round: u32 = round.parse().unwrap();
    let log = Arc::new(PartitionLog::open(dir.as_ref(), config(), Arc::new(SystemClock)).unwrap());
    let stdout = Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let log = Arc::clone(&log);
            let stdout = Arc::clone(&stdout);
            std::thread::spawn(move || {
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
                    let info = log.append(&mut batch, 0).unwrap();
                    let mut out = stdout.lock().unwrap();
                    writeln!(out, "ack {t} {seq} {}", info.base_offset).unwrap();
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
fn crash_kill9_rounds() {
    let rounds: u32 = std::env::var("STROM_CRASH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
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
                if let ["ack", t, seq, base] = parts[..] {
                    acks.push((
                        t.parse::<usize>().unwrap(),
                        seq.parse::<u64>().unwrap(),
                        base.parse::<i64>().unwrap(),
                    ));
                }
            }
            acks
        });
        std::thread::sleep(Duration::from_millis(20 + rng.below(120)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let acks = reader.join().unwrap();
        total_acked += acks.len();

        // Reopen (recovery) and check.
        let log = PartitionLog::open(dir.path(), config(), Arc::new(SystemClock)).unwrap();
        let mut batches: HashMap<i64, Vec<Bytes>> = HashMap::new();
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
                    header.base_offset,
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
        for (t, seq, base) in &acks {
            let values = batches
                .get(base)
                .unwrap_or_else(|| panic!("round {round}: acknowledged batch at {base} lost"));
            let expected: Vec<Bytes> = (0..RECORDS_PER_BATCH)
                .map(|i| Bytes::from(value(round, *t, *seq, i)))
                .collect();
            assert_eq!(values, &expected, "round {round}: batch at {base} differs");
        }
        drop(log);
        done += 1;
    }
    assert!(
        done >= rounds.min(10),
        "only {done} rounds ran in the time budget"
    );
    assert!(total_acked > 0, "the child never acknowledged anything");
    eprintln!(
        "crash test: {done} rounds, {total_acked} acknowledged batches verified (seed {seed})"
    );
}
