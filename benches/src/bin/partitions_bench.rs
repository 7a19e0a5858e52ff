//! Storage engine, many partitions, `fsync = always`: each partition log running its own group
//! commit (`own`) against all logs sharing one broker-wide commit window (`group`,
//! `strom_log::SyncGroup`). No network. Usage:
//!
//! ```text
//! cargo run --release -p strom-bench --bin partitions_bench -- [DIR] [MIB_PER_RUN] [ROUNDS]
//! ```
//!
//! Like a producer with several requests in flight: `IN_FLIGHT` request threads each build a
//! ~1 MiB request split evenly over the N partitions (1, 6, 24) and append every partition's
//! batch on its own thread (as the broker's blocking pool does), waiting for all before the
//! next request. Rounds alternate the two modes; the table reports the median and range in MB/s.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use strom_bench::{mb_per_s, median};
use strom_log::{FsyncPolicy, LogConfig, PartitionLog, SyncGroup, SystemClock};
use strom_record::{BatchBuilder, Record};

const REQUEST_BYTES: usize = 1 << 20;
const IN_FLIGHT: usize = 4;
const RECORD: usize = 1024;

/// One batch of 1 KiB records, about `bytes` long.
fn batch(bytes: usize) -> Vec<u8> {
    let n = (bytes / (RECORD + 20)).max(1);
    let records: Vec<Record> = (0..n)
        .map(|i| {
            let value: Vec<u8> = (0..RECORD).map(|j| (i * 31 + j * 7) as u8).collect();
            Record::new(1_700_000_000_000 + i as i64, None, Some(Bytes::from(value)))
        })
        .collect();
    BatchBuilder::new().build(&records).unwrap_or_default()
}

fn run(dir: &Path, partitions: usize, grouped: bool, total: u64) -> f64 {
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::process::Command::new("sync").status();
    let config = LogConfig {
        fsync: FsyncPolicy::Always,
        ..LogConfig::default()
    };
    let group = SyncGroup::new();
    let mut logs = Vec::new();
    for p in 0..partitions {
        match PartitionLog::open(
            &dir.join(format!("p{p}")),
            config.clone(),
            Arc::new(SystemClock),
        ) {
            Ok(log) => {
                if grouped {
                    log.join_sync_group(group.clone());
                }
                logs.push(log);
            }
            Err(e) => {
                eprintln!("open failed: {e}");
                return 0.0;
            }
        }
    }
    let template = batch(REQUEST_BYTES / partitions);
    let requests = total / (template.len() * partitions) as u64 / IN_FLIGHT as u64;
    let logs = &logs;
    let template = &template;
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..IN_FLIGHT {
            s.spawn(move || {
                for _ in 0..requests {
                    std::thread::scope(|r| {
                        for log in logs {
                            r.spawn(move || {
                                let mut buf = template.clone();
                                if let Err(e) = log.append(&mut buf, 0) {
                                    eprintln!("append failed: {e}");
                                }
                            });
                        }
                    });
                }
            });
        }
    });
    let elapsed = start.elapsed();
    let bytes = requests * IN_FLIGHT as u64 * (template.len() * partitions) as u64;
    for log in logs {
        let _ = log.close();
    }
    mb_per_s(bytes, elapsed)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = args.get(1).map_or_else(
        || {
            std::env::current_dir()
                .unwrap_or_default()
                .join("target/partitions-bench")
        },
        std::path::PathBuf::from,
    );
    let mib: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(256);
    let rounds: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(3);
    let counts = [1usize, 6, 24];
    let mut samples = vec![[Vec::new(), Vec::new()]; counts.len()];
    for round in 0..rounds {
        for (ci, &n) in counts.iter().enumerate() {
            let order = if round % 2 == 0 {
                [false, true]
            } else {
                [true, false]
            };
            for grouped in order {
                let v = run(&dir, n, grouped, mib << 20);
                let mode = if grouped { "group" } else { "own" };
                eprintln!("round {round} partitions {n} {mode}: {v:.0} MB/s");
                if let Some(s) = samples.get_mut(ci) {
                    s[usize::from(grouped)].push(v);
                }
            }
        }
    }
    println!("| partitions | own group commit | shared window (SyncGroup) |");
    println!("|---|---|---|");
    for (n, s) in counts.iter().zip(samples.iter_mut()) {
        let cells: Vec<String> = s
            .iter_mut()
            .map(|v| {
                let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = v.iter().copied().fold(0.0, f64::max);
                format!("{:.0} ({lo:.0}–{hi:.0})", median(v))
            })
            .collect();
        println!("| {n} | {} |", cells.join(" | "));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
