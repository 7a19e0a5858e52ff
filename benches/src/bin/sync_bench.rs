//! Durable sync across partitions: which way of making a commit window durable scales with the
//! number of files? Plain std (plus `rustix` for `syncfs`), no broker, no log format. Usage:
//!
//! ```text
//! cargo run --release -p strom-bench --bin sync_bench -- [DIR] [MIB_PER_RUN] [ROUNDS] [WINDOW_KIB]
//! ```
//!
//! For N = 1, 6, 24 files, 64 KiB writes go round-robin across the files; every `WINDOW_KIB`
//! (default 1 MiB) of writes the window is made durable by one of the candidates:
//!
//! - `seq`: `fdatasync` each file written in the window, one after the other;
//! - `pool`: `fdatasync` the dirty files concurrently, one thread per file (at most 8);
//! - `syncfs`: one `syncfs` on the file system;
//! - `journal`: every write also goes to one appended journal file; one `fdatasync` of the
//!   journal per window; the partition files are synced once at the end, inside the clock
//!   (their checkpoint);
//! - `journal-pre`: the same with a journal whose blocks were written (zeros) and synced before
//!   the clock starts, so a window's `fdatasync` changes no file metadata.
//!
//! Rounds alternate the candidates (every candidate once per round) so load on a shared machine
//! spreads over all of them; the table reports the median and the range in MB/s (10^6 bytes/s).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use strom_bench::{mb_per_s, median};

const WRITE: usize = 64 * 1024;
const MODES: [&str; 5] = ["seq", "pool", "syncfs", "journal", "journal-pre"];

fn open(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(path)
}

/// One timed run; returns MB/s of partition data made durable.
fn run(dir: &Path, mode: &str, files: usize, total: u64, window: u64) -> std::io::Result<f64> {
    let run_dir = dir.join(format!("{mode}-{files}"));
    let _ = std::fs::remove_dir_all(&run_dir);
    std::fs::create_dir_all(&run_dir)?;
    let parts: Vec<File> = (0..files)
        .map(|i| open(&run_dir.join(format!("p{i}.log"))))
        .collect::<std::io::Result<_>>()?;
    let journal = if mode.starts_with("journal") {
        let j = open(&run_dir.join("journal"))?;
        if mode == "journal-pre" {
            let zeros = vec![0u8; 1 << 20];
            let mut at = 0;
            while at < total {
                j.write_all_at(&zeros, at)?;
                at += zeros.len() as u64;
            }
            j.sync_all()?;
        }
        Some(j)
    } else {
        None
    };
    let data: Vec<u8> = (0..WRITE).map(|i| (i * 7 + 3) as u8).collect();
    let mut positions = vec![0u64; files];
    let mut dirty = vec![false; files];
    let mut journal_pos = 0u64;
    let mut in_window = 0u64;
    let mut written = 0u64;
    let mut next = 0usize;
    let start = Instant::now();
    while written < total {
        let i = next % files;
        next += 1;
        let (Some(file), Some(pos)) = (parts.get(i), positions.get_mut(i)) else {
            break;
        };
        file.write_all_at(&data, *pos)?;
        *pos += WRITE as u64;
        if let Some(d) = dirty.get_mut(i) {
            *d = true;
        }
        if let Some(j) = &journal {
            j.write_all_at(&data, journal_pos)?;
            journal_pos += WRITE as u64;
        }
        written += WRITE as u64;
        in_window += WRITE as u64;
        if in_window >= window || written >= total {
            in_window = 0;
            sync_window(mode, &parts, &mut dirty, journal.as_ref())?;
        }
    }
    if journal.is_some() {
        // The checkpoint: partition data must reach the disk too before the journal is reused.
        for f in &parts {
            f.sync_data()?;
        }
    }
    let elapsed = start.elapsed();
    drop(parts);
    drop(journal);
    std::fs::remove_dir_all(&run_dir)?;
    Ok(mb_per_s(written, elapsed))
}

fn sync_window(
    mode: &str,
    parts: &[File],
    dirty: &mut [bool],
    journal: Option<&File>,
) -> std::io::Result<()> {
    match mode {
        "seq" => {
            for (f, d) in parts.iter().zip(dirty.iter_mut()) {
                if std::mem::take(d) {
                    f.sync_data()?;
                }
            }
        }
        "pool" => {
            let todo: Vec<&File> = parts
                .iter()
                .zip(dirty.iter_mut())
                .filter_map(|(f, d)| std::mem::take(d).then_some(f))
                .collect();
            let threads = todo.len().clamp(1, 8);
            let per = todo.len().div_ceil(threads);
            std::thread::scope(|s| -> std::io::Result<()> {
                let handles: Vec<_> = todo
                    .chunks(per.max(1))
                    .map(|chunk| {
                        s.spawn(move || -> std::io::Result<()> {
                            for f in chunk {
                                f.sync_data()?;
                            }
                            Ok(())
                        })
                    })
                    .collect();
                for h in handles {
                    h.join()
                        .map_err(|_| std::io::Error::other("sync thread panicked"))??;
                }
                Ok(())
            })?;
        }
        "syncfs" => {
            dirty.iter_mut().for_each(|d| *d = false);
            if let Some(f) = parts.first() {
                rustix::fs::syncfs(f)?;
            }
        }
        _ => {
            dirty.iter_mut().for_each(|d| *d = false);
            if let Some(j) = journal {
                j.sync_data()?;
            }
        }
    }
    Ok(())
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let dir = args.get(1).map_or_else(
        || {
            std::env::current_dir()
                .unwrap_or_default()
                .join("target/sync-bench")
        },
        PathBuf::from,
    );
    let mib: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(256);
    let rounds: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(3);
    let window_kib: u64 = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(1024);
    std::fs::create_dir_all(&dir)?;
    let total = mib << 20;
    let window = window_kib << 10;
    let counts = [1usize, 6, 24];
    let mut samples: Vec<Vec<Vec<f64>>> = vec![vec![Vec::new(); MODES.len()]; counts.len()];
    for round in 0..rounds {
        for (ci, &files) in counts.iter().enumerate() {
            // Alternate the order every round so no candidate always runs after the same one.
            let order: Vec<usize> = if round % 2 == 0 {
                (0..MODES.len()).collect()
            } else {
                (0..MODES.len()).rev().collect()
            };
            for mi in order {
                let Some(mode) = MODES.get(mi) else { continue };
                let v = run(&dir, mode, files, total, window)?;
                eprintln!("round {round} files {files} {mode}: {v:.0} MB/s");
                if let Some(s) = samples.get_mut(ci).and_then(|c| c.get_mut(mi)) {
                    s.push(v);
                }
            }
        }
    }
    println!("| files | {} |", MODES.join(" | "));
    println!("|---|{}", "---|".repeat(MODES.len()));
    for (ci, files) in counts.iter().enumerate() {
        let cells: Vec<String> = samples
            .get_mut(ci)
            .map(|c| {
                c.iter_mut()
                    .map(|s| {
                        let lo = s.iter().copied().fold(f64::INFINITY, f64::min);
                        let hi = s.iter().copied().fold(0.0, f64::max);
                        format!("{:.0} ({lo:.0}–{hi:.0})", median(s))
                    })
                    .collect()
            })
            .unwrap_or_default();
        println!("| {files} | {} |", cells.join(" | "));
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
