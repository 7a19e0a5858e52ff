//! The SIGKILL harness shared by the `crash_*kill9*` tests: the parent re-runs this same test
//! binary as a child (only one ignored test runs, selected by an environment variable), lets it
//! write and print `ack ...` lines, kills it with SIGKILL at a random moment, and then reopens
//! the log to check that every acknowledged write survived.

use std::collections::HashMap;
use std::fmt::Display;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use strom_log::{FsyncPolicy, LogConfig, PartitionLog};
use strom_record::{BatchBuilder, DecodeLimits, Record, decode_records};

use super::{Rng, scan_batches};

/// Records in each batch the appending children write.
pub const RECORDS_PER_BATCH: usize = 3;

/// The config of the appending crash tests: every append synced, small segments so kills also
/// land during rolls.
pub fn appending_config() -> LogConfig {
    LogConfig {
        segment_bytes: 64 * 1024,
        index_interval_bytes: 1024,
        fsync: FsyncPolicy::Always,
        retention_ms: None,
        ..LogConfig::default()
    }
}

/// The value of record `i` of the `seq`-th batch thread `thread` appends in `round`.
pub fn value(round: u32, thread: usize, seq: u64, i: usize) -> String {
    // Vary the size so batches straddle pages and index intervals.
    let pad = "x".repeat((seq as usize * 37 + i * 11) % 700);
    format!("{round}/{thread}/{seq}/{i}/{pad}")
}

/// The values of the `seq`-th batch thread `thread` appends in `round`.
pub fn batch_values(round: u32, thread: usize, seq: u64) -> Vec<Bytes> {
    (0..RECORDS_PER_BATCH)
        .map(|i| Bytes::from(value(round, thread, seq, i)))
        .collect()
}

/// The `seq`-th batch thread `thread` appends in `round`, encoded.
pub fn thread_batch(round: u32, thread: usize, seq: u64) -> Vec<u8> {
    let records: Vec<Record> = batch_values(round, thread, seq)
        .into_iter()
        .map(|v| Record::new(seq as i64, None, Some(v)))
        .collect();
    BatchBuilder::new().build(&records).unwrap()
}

/// In the child: the log directory and round the parent passed in `env`, or `None` when this
/// process is not a child (the ignored child test then does nothing).
pub fn child_spec(env: &str) -> Option<(PathBuf, u32)> {
    let spec = std::env::var(env).ok()?;
    let (dir, round) = spec.split_once('|').unwrap();
    Some((PathBuf::from(dir), round.parse().unwrap()))
}

/// In the child: tells the parent that a write was acknowledged, as the line `ack <fields>`.
pub fn ack(fields: impl Display) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "ack {fields}").unwrap();
    out.flush().unwrap();
}

/// Parses one field of an `ack` line.
pub fn field<T: std::str::FromStr>(s: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    s.parse().unwrap()
}

/// How a kill-9 test runs its rounds.
pub struct KillRounds<'a> {
    /// The name of the ignored test the child runs.
    pub child_test: &'a str,
    /// The variable that tells the child test it is the child (and where and which round).
    pub child_env: &'a str,
    /// Rounds when `STROM_CRASH_ROUNDS` is not set.
    pub default_rounds: u32,
    /// Seed of the kill delays when `STROM_CRASH_SEED` is not set.
    pub default_seed: u64,
    /// The child is killed after `min_delay_ms` plus a random part below `delay_spread_ms`.
    pub min_delay_ms: u64,
    /// See `min_delay_ms`.
    pub delay_spread_ms: u64,
}

/// What a [`KillRounds::run`] did.
pub struct Ran {
    /// Rounds that ran in the time budget.
    pub done: u32,
    /// The seed used.
    pub seed: u64,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

impl KillRounds<'_> {
    /// Runs the rounds (at most 120 s of them) on one directory: each spawns the child, kills it
    /// with SIGKILL after a random delay and calls `check(round, dir, acks)` with the fields
    /// after `ack` of every acknowledgement line the child printed. Asserts that at least
    /// `min(rounds, 10)` rounds ran.
    pub fn run(&self, mut check: impl FnMut(u32, &Path, Vec<Vec<String>>)) -> Ran {
        let rounds: u32 = env_or("STROM_CRASH_ROUNDS", self.default_rounds);
        let seed: u64 = env_or("STROM_CRASH_SEED", self.default_seed);
        let budget = Duration::from_secs(120);
        let mut rng = Rng(seed | 1);
        let dir = tempfile::tempdir().unwrap();
        let exe = std::env::current_exe().unwrap();
        let started = Instant::now();
        let mut done = 0;
        for round in 0..rounds {
            if started.elapsed() > budget {
                break;
            }
            let mut child = Command::new(&exe)
                .args([
                    self.child_test,
                    "--exact",
                    "--ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(self.child_env, format!("{}|{round}", dir.path().display()))
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let stdout = child.stdout.take().unwrap();
            // Read acks on a thread; kill after a random delay, then collect what was
            // acknowledged.
            let reader = std::thread::spawn(move || {
                let mut acks = Vec::new();
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    let mut parts = line.split_whitespace();
                    if parts.next() == Some("ack") {
                        acks.push(parts.map(str::to_owned).collect());
                    }
                }
                acks
            });
            std::thread::sleep(Duration::from_millis(
                self.min_delay_ms + rng.below(self.delay_spread_ms),
            ));
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            let acks = reader.join().unwrap();
            check(round, dir.path(), acks);
            done += 1;
        }
        assert!(
            done >= rounds.min(10),
            "only {done} rounds ran in the time budget"
        );
        Ran { done, seed }
    }
}

/// Every batch readable from the log start, by base offset, as its record values. Asserts that
/// offsets are dense and that everything up to the log end is readable.
pub fn read_dense(log: &PartitionLog) -> HashMap<i64, Vec<Bytes>> {
    let mut batches = HashMap::new();
    let mut expected = log.log_start_offset();
    let end = scan_batches(log, 1 << 20, |header, batch| {
        assert_eq!(header.base_offset, expected, "offsets must be dense");
        expected = header.next_offset();
        let decoded = decode_records(&batch, DecodeLimits::default()).unwrap();
        batches.insert(
            header.base_offset,
            decoded
                .records
                .into_iter()
                .map(|r| r.value.unwrap())
                .collect(),
        );
    });
    assert_eq!(
        end,
        log.log_end_offset(),
        "everything up to the log end is readable"
    );
    batches
}

/// Asserts that the batch found at `at` (`None`: not found) is the `seq`-th batch thread
/// `thread` appended in `round`.
pub fn check_acked(
    round: u32,
    at: impl Display,
    found: Option<&Vec<Bytes>>,
    thread: usize,
    seq: u64,
) {
    let values = found.unwrap_or_else(|| panic!("round {round}: acknowledged batch at {at} lost"));
    assert_eq!(
        values,
        &batch_values(round, thread, seq),
        "round {round}: batch at {at} differs"
    );
}
