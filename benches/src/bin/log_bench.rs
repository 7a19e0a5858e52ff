//! Storage-engine throughput: appends per fsync policy, record size and appender count, reads
//! from the page cache, and recovery time. Usage:
//!
//! ```text
//! cargo run --release -p strom-bench --bin log_bench -- [DIR] [MIB_PER_RUN] [RUNS]
//! ```
//!
//! DIR defaults to a temporary directory on the same file system as the working directory.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use strom_bench::{mb_per_s, median};
use strom_log::{FsyncPolicy, LogConfig, PartitionLog, SystemClock};
use strom_record::{BatchBuilder, Record};

const BATCH_BYTES: usize = 64 * 1024;

/// A ~64 KiB batch of records of `record_size` value bytes.
fn batch(record_size: usize) -> Vec<u8> {
    let per_record = record_size + 20;
    let n = (BATCH_BYTES - 61) / per_record;
    let records: Vec<Record> = (0..n)
        .map(|i| {
            let value: Vec<u8> = (0..record_size).map(|j| (i * 31 + j * 7) as u8).collect();
            Record::new(1_700_000_000_000 + i as i64, None, Some(Bytes::from(value)))
        })
        .collect();
    BatchBuilder::new().build(&records).unwrap_or_default()
}

struct Run {
    policy: &'static str,
    record_size: usize,
    appenders: usize,
    preallocate: bool,
}

fn append_run(dir: &Path, run: &Run, total: u64) -> f64 {
    let fsync = match run.policy {
        "always" => FsyncPolicy::Always,
        "interval" => FsyncPolicy::Interval(Duration::from_millis(100)),
        _ => FsyncPolicy::Never,
    };
    let config = LogConfig {
        fsync,
        preallocate: run.preallocate,
        segment_bytes: std::env::var("SEG_MIB")
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(256)
            << 20,
        ..LogConfig::default()
    };
    settle(dir);
    let log = match PartitionLog::open(dir, config, Arc::new(SystemClock)) {
        Ok(l) => Arc::new(l),
        Err(e) => {
            eprintln!("open failed: {e}");
            return 0.0;
        }
    };
    let template = batch(run.record_size);
    let per_thread = total / run.appenders as u64 / template.len() as u64;
    let start = Instant::now();
    let threads: Vec<_> = (0..run.appenders)
        .map(|_| {
            let log = Arc::clone(&log);
            let mut buf = template.clone();
            std::thread::spawn(move || {
                for _ in 0..per_thread {
                    if let Err(e) = log.append(&mut buf, 0) {
                        eprintln!("append failed: {e}");
                        return;
                    }
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    let elapsed = start.elapsed();
    let bytes = per_thread * run.appenders as u64 * template.len() as u64;
    let _ = log.close();
    mb_per_s(bytes, elapsed)
}

/// Removes the previous run's files and flushes all dirty data, so every run starts from the
/// same state instead of competing with the previous run's writeback.
fn settle(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::process::Command::new("sync").status();
}

/// The ceiling measured in the same process: plain 64 KiB `pwrite`s to a new file, optionally
/// with one `fdatasync` per MiB (what fio's `--fdatasync=16` does).
fn raw_write_run(dir: &Path, total: u64, sync_every_mib: bool) -> f64 {
    use std::os::unix::fs::FileExt;
    settle(dir);
    let _ = std::fs::create_dir_all(dir);
    let Ok(file) = std::fs::File::create(dir.join("raw")) else {
        return 0.0;
    };
    let buf = batch(1000);
    let n = total / buf.len() as u64;
    let start = Instant::now();
    let mut pos = 0u64;
    for i in 0..n {
        if file.write_all_at(&buf, pos).is_err() {
            return 0.0;
        }
        pos += buf.len() as u64;
        if sync_every_mib && i % 16 == 15 && file.sync_data().is_err() {
            return 0.0;
        }
    }
    mb_per_s(pos, start.elapsed())
}

fn read_run(dir: &Path) -> f64 {
    let log = match PartitionLog::open(dir, LogConfig::default(), Arc::new(SystemClock)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("open failed: {e}");
            return 0.0;
        }
    };
    let start = Instant::now();
    let mut offset = log.log_start_offset();
    let mut bytes = 0u64;
    while let Ok(read) = log.read(offset, 1 << 20) {
        let Some(slice) = read.data else { break };
        let Ok(data) = slice.read_to_vec() else { break };
        bytes += data.len() as u64;
        let mut pos = 0;
        while let Some(Ok(h)) = data.get(pos..).map(strom_record::BatchHeader::parse) {
            offset = h.next_offset();
            pos += h.total_len();
        }
    }
    mb_per_s(bytes, start.elapsed())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let base = args
        .get(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::env::current_dir()
                .unwrap_or_default()
                .join("target/log-bench")
        });
    let mib: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1024);
    let runs: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(3);
    let total = mib << 20;
    let dir = base.join("p0");
    let _ = std::fs::create_dir_all(&base);

    let plan = [
        Run {
            policy: "never",
            record_size: 1000,
            appenders: 1,
            preallocate: false,
        },
        Run {
            policy: "never",
            record_size: 100,
            appenders: 1,
            preallocate: false,
        },
        Run {
            policy: "never",
            record_size: 1000,
            appenders: 2,
            preallocate: false,
        },
        Run {
            policy: "never",
            record_size: 100,
            appenders: 2,
            preallocate: false,
        },
        Run {
            policy: "interval",
            record_size: 1000,
            appenders: 1,
            preallocate: false,
        },
        Run {
            policy: "always",
            record_size: 1000,
            appenders: 1,
            preallocate: false,
        },
        Run {
            policy: "always",
            record_size: 1000,
            appenders: 8,
            preallocate: false,
        },
        Run {
            policy: "always",
            record_size: 100,
            appenders: 8,
            preallocate: false,
        },
        Run {
            policy: "always",
            record_size: 1000,
            appenders: 8,
            preallocate: true,
        },
        Run {
            policy: "never",
            record_size: 1000,
            appenders: 1,
            preallocate: true,
        },
    ];
    println!("| append: fsync | record | appenders | prealloc | MB/s runs | median MB/s |");
    println!("|---|---|---|---|---|---|");
    for (label, sync) in [
        ("raw pwrite 64 KiB (ceiling)", false),
        ("raw pwrite + fdatasync/MiB (ceiling)", true),
    ] {
        let volume = if sync { total / 4 } else { total };
        let mut samples: Vec<f64> = (0..runs)
            .map(|_| raw_write_run(&dir, volume, sync))
            .collect();
        let shown: Vec<String> = samples.iter().map(|s| format!("{s:.0}")).collect();
        println!(
            "| {label} | - | 1 | - | {} | **{:.0}** |",
            shown.join(" / "),
            median(&mut samples)
        );
    }
    let only = args.get(4).cloned().unwrap_or_default();
    for run in plan.iter().filter(|r| r.policy.contains(only.as_str())) {
        // fsync=always with one appender is bounded by sync latency: use a smaller volume.
        let volume = if run.policy == "always" && run.appenders == 1 {
            total / 8
        } else {
            total
        };
        let mut samples: Vec<f64> = (0..runs).map(|_| append_run(&dir, run, volume)).collect();
        let shown: Vec<String> = samples.iter().map(|s| format!("{s:.0}")).collect();
        println!(
            "| {} | {} B | {} | {} | {} | **{:.0}** |",
            run.policy,
            run.record_size,
            run.appenders,
            run.preallocate,
            shown.join(" / "),
            median(&mut samples)
        );
    }

    // Reads: a log written once with fsync=never, then read back from the page cache.
    let _ = append_run(&dir, &plan[0], total);
    let mut samples: Vec<f64> = (0..runs).map(|_| read_run(&dir)).collect();
    let shown: Vec<String> = samples.iter().map(|s| format!("{s:.0}")).collect();
    println!();
    println!("| read (page cache, 1 MiB reads, CRC-checked copy) | MB/s runs | median MB/s |");
    println!("|---|---|---|");
    println!(
        "| {mib} MiB log | {} | **{:.0}** |",
        shown.join(" / "),
        median(&mut samples)
    );

    // Recovery: reopening a large log costs the same as a small one.
    println!();
    println!("| recovery: open after writing | log size | open time |");
    println!("|---|---|---|");
    for size_mib in [16u64, mib] {
        let _ = append_run(&dir, &plan[0], size_mib << 20);
        let start = Instant::now();
        let opened = PartitionLog::open(&dir, LogConfig::default(), Arc::new(SystemClock));
        let elapsed = start.elapsed();
        let segments = opened.map(|l| l.segment_count()).unwrap_or(0);
        println!(
            "| {segments} segments | {size_mib} MiB | {:.2} ms |",
            elapsed.as_secs_f64() * 1e3
        );
    }
    let _ = std::fs::remove_dir_all(&base);
}
