//! Log compaction throughput (issue 15): how fast `PartitionLog::clean` rewrites a compacted
//! log against the disk's sequential read + write ceiling measured in the same run, and what a
//! cleaner running beside appends costs them. Usage:
//!
//! ```text
//! cargo run --release -p strom-bench --bin cleaner_bench -- [--dir DIR] [--mib N] [--runs N]
//!     [--keys 1000,1000000] [--append-mib N] [--beside-mib N] [--only clean|append]
//! ```
//!
//! Clean: each run writes a fresh compacted log of `--mib` MiB (1 KiB values, keys
//! `key-00000042` round-robin over K keys, ~64 KiB batches, `fsync=never`, 256 MiB segments),
//! rolls it, `sync`s, reads its segment files once with 1 MiB `pread`s (the read ceiling, same
//! bytes, same cache state the clean starts from), then times one unthrottled `clean`. The
//! write ceiling is the clean's output size written with 64 KiB `pwrite`s to a new file and
//! one `fdatasync`. "vs ceiling" = the time the ceiling needs for the clean's bytes read and
//! written, divided by the clean's time. With `--cold` the log's pages are dropped from the
//! page cache before the read ceiling and before the clean, and the ceiling reads the log once
//! (the clean's second pass finds it in the page cache its first pass filled).
//!
//! Append beside the cleaner: appends of `--append-mib` MiB (~64 KiB batches of 1 KiB
//! records, no keys needed: the log is not compacted) to a fresh log, alone and with a thread
//! cleaning other compacted logs (`--beside-mib` MiB of dirty data over K keys, prepared
//! before the clock starts) for the whole run.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use strom_bench::{mb_per_s, median};
use strom_log::{
    CleanupPolicy, Clock, FsyncPolicy, LogConfig, PartitionLog, SystemClock, Throttler,
};
use strom_record::{BatchBuilder, Record};

const BATCH_BYTES: usize = 64 * 1024;
const RECORD_BYTES: usize = 1000;
const SEGMENT_BYTES: u64 = 256 << 20;

#[derive(Parser, Debug)]
struct Args {
    /// Directory for the data (deleted at the end).
    #[arg(long, default_value = "target/cleaner-bench")]
    dir: PathBuf,
    /// Size of the compacted log each clean run writes.
    #[arg(long, default_value_t = 1024)]
    mib: u64,
    /// Runs per row.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Key counts, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1000,1000000")]
    keys: Vec<u64>,
    /// Bytes appended per append run with `fsync=never` (half of it with `fsync=always`,
    /// which is 3-5x slower: the cleaner must stay busy for the whole run).
    #[arg(long, default_value_t = 512)]
    append_mib: u64,
    /// Dirty bytes the cleaner beside the appends has to clean (in 256 MiB logs).
    #[arg(long, default_value_t = 1536)]
    beside_mib: u64,
    /// Clean from disk: drop the log's pages from the page cache (after the `sync`) before the
    /// read ceiling and again before the clean.
    #[arg(long)]
    cold: bool,
    /// I/O limit of the cleaner beside the appends, MiB/s (`log.cleaner.io.max.bytes.per.second`);
    /// unlimited if unset, as the broker's default.
    #[arg(long)]
    cleaner_mib_per_s: Option<u64>,
    /// `clean` or `append`: run only that part.
    #[arg(long, default_value = "")]
    only: String,
}

/// A ~64 KiB batch of 1 KiB records; with `keys`, record `i` of the log (starting at
/// `first`) gets key `i mod keys`.
fn batch(first: u64, keys: Option<u64>) -> Vec<u8> {
    let per_record = RECORD_BYTES + 32;
    let n = (BATCH_BYTES - 61) / per_record;
    let records: Vec<Record> = (0..n as u64)
        .map(|i| {
            let seq = first + i;
            let value: Vec<u8> = (0..RECORD_BYTES)
                .map(|j| (seq as usize * 31 + j * 7) as u8)
                .collect();
            let key = keys.map(|k| Bytes::from(format!("key-{:08}", seq % k)));
            Record::new(
                1_700_000_000_000 + seq as i64,
                key,
                Some(Bytes::from(value)),
            )
        })
        .collect();
    BatchBuilder::new().build(&records).unwrap_or_default()
}

fn records_per_batch() -> u64 {
    ((BATCH_BYTES - 61) / (RECORD_BYTES + 32)) as u64
}

fn compacted_config(fsync: FsyncPolicy) -> LogConfig {
    LogConfig {
        fsync,
        segment_bytes: SEGMENT_BYTES,
        cleanup: CleanupPolicy {
            delete: false,
            compact: true,
        },
        ..LogConfig::default()
    }
}

/// Flushes all dirty data, so the next timed step does not compete with earlier writeback.
fn sync_all() {
    let _ = std::process::Command::new("sync").status();
}

fn open(dir: &Path, config: LogConfig) -> Option<PartitionLog> {
    match PartitionLog::open(dir, config, Arc::new(SystemClock)) {
        Ok(l) => Some(l),
        Err(e) => {
            eprintln!("open {} failed: {e}", dir.display());
            None
        }
    }
}

/// Writes `bytes` of keyed records over `keys` keys to a fresh compacted log in `dir` and
/// rolls it, so all of it is cleanable. Returns the log and the bytes written.
fn write_compacted(dir: &Path, bytes: u64, keys: u64) -> Option<(PartitionLog, u64)> {
    let _ = std::fs::remove_dir_all(dir);
    let log = open(dir, compacted_config(FsyncPolicy::Never))?;
    let mut written = 0u64;
    let mut seq = 0u64;
    while written < bytes {
        let mut b = batch(seq, Some(keys));
        seq += records_per_batch();
        written += b.len() as u64;
        if let Err(e) = log.append(&mut b, 0) {
            eprintln!("append failed: {e}");
            return None;
        }
    }
    if let Err(e) = log.roll() {
        eprintln!("roll failed: {e}");
        return None;
    }
    Some((log, written))
}

/// Drops every file of `dir` from the page cache (`dd iflag=nocache count=0`, i.e.
/// `posix_fadvise(DONTNEED)`; writing `/proc/sys/vm/drop_caches` is not allowed here). Pages
/// must be clean: call after a `sync`.
fn drop_cache(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
        let mut arg = std::ffi::OsString::from("if=");
        arg.push(&path);
        let _ = std::process::Command::new("dd")
            .arg(arg)
            .args(["iflag=nocache", "count=0", "status=none"])
            // A temporary file the open log replaces may be gone by now.
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// Reads every `.log` file in `dir` with 1 MiB `pread`s; MB/s.
fn read_ceiling(dir: &Path) -> f64 {
    use std::os::unix::fs::FileExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0.0;
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    files.sort();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    let start = Instant::now();
    for path in files {
        let Ok(file) = std::fs::File::open(&path) else {
            continue;
        };
        let mut pos = 0u64;
        while let Ok(n) = file.read_at(&mut buf, pos) {
            if n == 0 {
                break;
            }
            pos += n as u64;
        }
        bytes += pos;
    }
    mb_per_s(bytes, start.elapsed())
}

/// Writes `bytes` with 64 KiB `pwrite`s to a new file in `dir` and one `fdatasync`; MB/s.
fn write_ceiling(dir: &Path, bytes: u64) -> f64 {
    use std::os::unix::fs::FileExt;
    let path = dir.join("ceiling.raw");
    let Ok(file) = std::fs::File::create(&path) else {
        return 0.0;
    };
    let buf = vec![0x5au8; BATCH_BYTES];
    let start = Instant::now();
    let mut pos = 0u64;
    while pos < bytes.max(1) {
        if file.write_all_at(&buf, pos).is_err() {
            return 0.0;
        }
        pos += buf.len() as u64;
    }
    if file.sync_data().is_err() {
        return 0.0;
    }
    let rate = mb_per_s(pos, start.elapsed());
    let _ = std::fs::remove_file(&path);
    rate
}

struct CleanSample {
    seconds: f64,
    log_bytes: u64,
    read: u64,
    written: u64,
    removed: u64,
    read_ceiling: f64,
    write_ceiling: f64,
}

fn clean_run(dir: &Path, mib: u64, keys: u64, cold: bool) -> Option<CleanSample> {
    let (log, log_bytes) = write_compacted(dir, mib << 20, keys)?;
    sync_all();
    if cold {
        drop_cache(dir);
    }
    let read_ceiling = read_ceiling(dir);
    if cold {
        drop_cache(dir);
    }
    let cancel = AtomicBool::new(false);
    let throttler = Throttler::unlimited();
    let now = SystemClock.now_ms();
    let start = Instant::now();
    let stats = match log.clean(now, &throttler, &cancel) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("clean failed: {e}");
            return None;
        }
    };
    let seconds = start.elapsed().as_secs_f64();
    let _ = log.close();
    let write_ceiling = write_ceiling(dir, stats.bytes_written);
    let _ = std::fs::remove_dir_all(dir);
    Some(CleanSample {
        seconds,
        log_bytes,
        read: stats.bytes_read,
        written: stats.bytes_written,
        removed: stats.records_removed,
        read_ceiling,
        write_ceiling,
    })
}

fn clean_table(args: &Args) {
    println!(
        "{}",
        if args.cold {
            "Cold: the log dropped from the page cache before the read ceiling and the clean."
        } else {
            "Warm: the log in the page cache (just written), for the read ceiling and the clean."
        }
    );
    println!(
        "| keys | log MiB | clean s (runs) | median s | log MB/s | read MB/s (both passes) | written MB | records removed | read ceiling MB/s | write ceiling MB/s (1 fdatasync) | clean vs ceiling |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for &keys in &args.keys {
        let samples: Vec<CleanSample> = (0..args.runs)
            .filter_map(|_| clean_run(&args.dir.join("clean"), args.mib, keys, args.cold))
            .collect();
        if samples.is_empty() {
            continue;
        }
        let mut secs: Vec<f64> = samples.iter().map(|s| s.seconds).collect();
        let shown: Vec<String> = secs.iter().map(|s| format!("{s:.2}")).collect();
        let med = median(&mut secs);
        // The run whose time is the median (or the nearest) gives the byte counts.
        let mid = samples
            .iter()
            .min_by(|a, b| (a.seconds - med).abs().total_cmp(&(b.seconds - med).abs()));
        let Some(mid) = mid else { continue };
        let mut rc: Vec<f64> = samples.iter().map(|s| s.read_ceiling).collect();
        let mut wc: Vec<f64> = samples.iter().map(|s| s.write_ceiling).collect();
        let (rc, wc) = (median(&mut rc), median(&mut wc));
        // Warm: every byte the clean reads (both passes) at the page-cache rate. Cold: the log
        // once from the disk (the second pass finds it in the page cache the first filled).
        let ceiling_read = if args.cold { mid.log_bytes } else { mid.read };
        let ceiling_s = ceiling_read as f64 / 1e6 / rc + mid.written as f64 / 1e6 / wc;
        println!(
            "| {keys} | {} | {} | **{med:.2}** | **{:.0}** | {:.0} | {:.1} | {} | {rc:.0} | {wc:.0} | **{:.0} %** |",
            args.mib,
            shown.join(" / "),
            mid.log_bytes as f64 / 1e6 / med,
            mid.read as f64 / 1e6 / med,
            mid.written as f64 / 1e6,
            mid.removed,
            ceiling_s / med * 100.0,
        );
    }
}

/// Appends `bytes` in ~64 KiB keyless batches from `appenders` threads; MB/s.
fn append_run(dir: &Path, fsync: FsyncPolicy, appenders: usize, bytes: u64) -> f64 {
    let _ = std::fs::remove_dir_all(dir);
    let config = LogConfig {
        fsync,
        segment_bytes: SEGMENT_BYTES,
        ..LogConfig::default()
    };
    let Some(log) = open(dir, config) else {
        return 0.0;
    };
    let log = Arc::new(log);
    let template = batch(0, None);
    let per_thread = bytes / appenders as u64 / template.len() as u64;
    let start = Instant::now();
    let threads: Vec<_> = (0..appenders)
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
    let _ = log.close();
    drop(log);
    let _ = std::fs::remove_dir_all(dir);
    mb_per_s(
        per_thread * appenders as u64 * template.len() as u64,
        elapsed,
    )
}

/// What the cleaner beside an append run did.
struct Beside {
    append_mb_s: f64,
    cleaned_mb_s: f64,
    busy_whole_run: bool,
}

/// One append run with a thread cleaning `logs` (prepared, dirty) until the appends end.
fn append_beside_cleaner(
    dir: &Path,
    fsync: FsyncPolicy,
    appenders: usize,
    bytes: u64,
    logs: Vec<PartitionLog>,
    cleaner_bytes_per_s: Option<u64>,
) -> Beside {
    let stop = Arc::new(AtomicBool::new(false));
    let cleaned = Arc::new(AtomicU64::new(0));
    let ran_out = Arc::new(AtomicBool::new(false));
    let cleaner = {
        let (stop, cleaned, ran_out) = (stop.clone(), cleaned.clone(), ran_out.clone());
        std::thread::spawn(move || {
            let throttler = Throttler::new(cleaner_bytes_per_s);
            for log in &logs {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                match log.clean(SystemClock.now_ms(), &throttler, &stop) {
                    Ok(s) => {
                        cleaned.fetch_add(s.bytes_read, Ordering::Relaxed);
                    }
                    Err(e) => eprintln!("clean failed: {e}"),
                }
            }
            if !stop.load(Ordering::Relaxed) {
                ran_out.store(true, Ordering::Relaxed);
            }
            for log in &logs {
                let _ = log.close();
            }
        })
    };
    // Let the cleaner start reading before the clock starts.
    std::thread::sleep(Duration::from_millis(50));
    let start = Instant::now();
    let append_mb_s = append_run(&dir.join("appends"), fsync, appenders, bytes);
    let elapsed = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    let _ = cleaner.join();
    Beside {
        append_mb_s,
        cleaned_mb_s: mb_per_s(cleaned.load(Ordering::Relaxed), elapsed),
        busy_whole_run: !ran_out.load(Ordering::Relaxed),
    }
}

fn append_table(args: &Args) {
    println!(
        "Cleaner beside the appends: {}",
        args.cleaner_mib_per_s
            .map_or("unthrottled".to_owned(), |m| format!(
                "throttled to {m} MiB/s"
            ))
    );
    println!(
        "| append: fsync | appenders | cleaner keys | alone MB/s (runs) | alone median | beside cleaner MB/s (runs) | beside median | ratio | cleaner read MB/s during (median) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let plans: [(&str, FsyncPolicy, usize); 2] = [
        ("never", FsyncPolicy::Never, 1),
        ("always", FsyncPolicy::Always, 8),
    ];
    let beside_logs = (args.beside_mib.div_ceil(256)).max(1);
    for &keys in &args.keys {
        for (label, fsync, appenders) in plans {
            let volume = match fsync {
                FsyncPolicy::Always => args.append_mib << 19,
                _ => args.append_mib << 20,
            };
            let mut alone = Vec::new();
            let mut beside = Vec::new();
            let mut cleaner_rates = Vec::new();
            let mut busy = true;
            for _ in 0..args.runs {
                // Alternate alone / beside, each from the same settled state.
                sync_all();
                alone.push(append_run(
                    &args.dir.join("appends"),
                    fsync,
                    appenders,
                    volume,
                ));
                let logs: Vec<PartitionLog> = (0..beside_logs)
                    .filter_map(|i| {
                        let bytes = (args.beside_mib << 20) / beside_logs;
                        write_compacted(&args.dir.join(format!("dirty-{i}")), bytes, keys)
                            .map(|(l, _)| l)
                    })
                    .collect();
                sync_all();
                let b = append_beside_cleaner(
                    &args.dir,
                    fsync,
                    appenders,
                    volume,
                    logs,
                    args.cleaner_mib_per_s.map(|m| m << 20),
                );
                for i in 0..beside_logs {
                    let _ = std::fs::remove_dir_all(args.dir.join(format!("dirty-{i}")));
                }
                busy &= b.busy_whole_run;
                beside.push(b.append_mb_s);
                cleaner_rates.push(b.cleaned_mb_s);
            }
            let fmt = |v: &[f64]| {
                v.iter()
                    .map(|s| format!("{s:.0}"))
                    .collect::<Vec<_>>()
                    .join(" / ")
            };
            let (alone_s, beside_s) = (fmt(&alone), fmt(&beside));
            let (a, b) = (median(&mut alone), median(&mut beside));
            println!(
                "| {label} | {appenders} | {keys} | {alone_s} | **{a:.0}** | {beside_s} | **{b:.0}** | **{:.0} %** | {:.0}{} |",
                b / a * 100.0,
                median(&mut cleaner_rates),
                if busy { "" } else { " (ran out of work)" },
            );
        }
    }
}

fn main() {
    let args = Args::parse();
    let _ = std::fs::create_dir_all(&args.dir);
    if args.only != "append" {
        clean_table(&args);
        println!();
    }
    if args.only != "clean" {
        append_table(&args);
    }
    let _ = std::fs::remove_dir_all(&args.dir);
}
