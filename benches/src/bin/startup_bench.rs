//! Start-up time against live state (issue 15): `Broker::open` on data directories built
//! through the broker API with N offset commits over 100 groups, after a clean shutdown and
//! after a kill-style drop (no shutdown, no final checkpoint). Usage:
//!
//! ```text
//! cargo run --release -p strom-bench --bin startup_bench -- [--dir DIR] [--opens N]
//! ```
//!
//! Every data directory has one topic `t` of 100 or 1 000 partitions, and `strom.fsync=never`
//! as the topic default (syncing each of a million commits would measure the disk while
//! building). A commit call commits `width` partitions of `t` for one group; live state = 100
//! groups × `width` keys. The row with no commits for each topic size is what opening its
//! partitions costs by itself. While building, the
//! periodic offsets checkpoint of a running server (every 5 s) is stood in for by
//! `checkpoint_offsets_blocking(false)` after every 10 000 committed offsets: it writes a
//! checkpoint when more than `max(100 000, 2 × live)` records were appended since the last.
//! Each timed open starts from a fresh copy of the built directory (`cp -a`, then `sync`), so
//! every open sees the same files; the figure is the median of `--opens`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Parser;
use strom_bench::median;
use strom_broker::group::OffsetCommit;
use strom_broker::{Broker, BrokerConfig, CreateTopic};

const GROUPS: usize = 100;
const CHECKPOINT_EVERY_OFFSETS: usize = 10_000;

#[derive(Parser, Debug)]
struct Args {
    /// Directory for the data (deleted at the end).
    #[arg(long, default_value = "target/startup-bench")]
    dir: PathBuf,
    /// Timed opens per row.
    #[arg(long, default_value_t = 5)]
    opens: usize,
}

fn config(dir: &Path) -> BrokerConfig {
    let mut c = BrokerConfig::new(dir);
    c.topic_defaults = BTreeMap::from([("strom.fsync".to_owned(), "never".to_owned())]);
    c
}

/// One row: live keys = `GROUPS × width`, commits = `GROUPS × width × rounds`, on a topic of
/// `partitions` partitions.
struct Scenario {
    partitions: i32,
    width: i32,
    rounds: usize,
}

/// Builds the data directory; `crash` drops the broker without shutting it down.
fn build(dir: &Path, s: &Scenario, crash: bool) -> Result<(), String> {
    let _ = std::fs::remove_dir_all(dir);
    let broker = Broker::open(config(dir)).map_err(|e| format!("open: {e}"))?;
    broker
        .create_topic_blocking(CreateTopic {
            name: "t".into(),
            partitions: Some(s.partitions),
            ..CreateTopic::default()
        })
        .map_err(|e| format!("create topic: {e}"))?;
    let mut since_checkpoint = 0usize;
    for round in 0..s.rounds {
        for g in 0..GROUPS {
            let commits = (0..s.width)
                .map(|p| OffsetCommit {
                    topic: "t".into(),
                    partition: p,
                    offset: round as i64,
                    leader_epoch: -1,
                    metadata: None,
                })
                .collect();
            let results = broker
                .commit_offsets_blocking(&format!("group-{g}"), "", -1, None, commits)
                .map_err(|e| format!("commit: {e}"))?;
            if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
                return Err(format!("commit of a partition: {e}"));
            }
            since_checkpoint += s.width as usize;
            if since_checkpoint >= CHECKPOINT_EVERY_OFFSETS {
                since_checkpoint = 0;
                broker
                    .checkpoint_offsets_blocking(false)
                    .map_err(|e| format!("checkpoint: {e}"))?;
            }
        }
    }
    if !crash {
        broker
            .shutdown_blocking()
            .map_err(|e| format!("shutdown: {e}"))?;
    }
    drop(broker);
    Ok(())
}

/// Bytes under `dir` (recursively).
fn du(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => du(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Times `Broker::open` on fresh copies of `built`: (median ms, all ms, records replayed).
fn time_opens(
    built: &Path,
    scratch: &Path,
    opens: usize,
    groups: usize,
) -> Option<(f64, Vec<f64>, u64)> {
    let mut times = Vec::new();
    let mut replayed = 0;
    for _ in 0..opens {
        let _ = std::fs::remove_dir_all(scratch);
        let copied = std::process::Command::new("cp")
            .arg("-a")
            .arg(built)
            .arg(scratch)
            .status()
            .is_ok_and(|s| s.success());
        if !copied {
            eprintln!("cp -a {} failed", built.display());
            return None;
        }
        let _ = std::process::Command::new("sync").status();
        let start = Instant::now();
        let broker = match Broker::open(config(scratch)) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("open failed: {e}");
                return None;
            }
        };
        times.push(start.elapsed().as_secs_f64() * 1e3);
        replayed = broker.groups().replayed_at_open();
        if broker.groups().list().len() != groups {
            eprintln!("open lost groups: {}", broker.groups().list().len());
        }
        drop(broker);
    }
    let shown = times.clone();
    let _ = std::fs::remove_dir_all(scratch);
    Some((median(&mut times), shown, replayed))
}

fn main() {
    let args = Args::parse();
    let _ = std::fs::create_dir_all(&args.dir);
    let built = args.dir.join("built");
    let scratch = args.dir.join("open");
    let s = |partitions, width, rounds| Scenario {
        partitions,
        width,
        rounds,
    };
    // Per topic size: no commits (what opening the partitions costs), then growing history.
    let scenarios = [
        s(100, 1, 0),
        s(100, 1, 1),
        s(100, 1, 100),
        s(100, 1, 10_000),
        s(1000, 1000, 0),
        s(1000, 1000, 1),
        s(1000, 1000, 10),
    ];
    println!(
        "| partitions | live keys | commits | close | build s | `__consumer_offsets` MB | records replayed | open ms (runs) | median ms |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for s in &scenarios {
        for crash in [false, true] {
            let start = Instant::now();
            if let Err(e) = build(&built, s, crash) {
                eprintln!("build failed: {e}");
                continue;
            }
            let build_s = start.elapsed().as_secs_f64();
            let offsets_mb = std::fs::read_dir(&built)
                .into_iter()
                .flatten()
                .filter_map(Result::ok)
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with("__consumer_offsets")
                })
                .map(|e| du(&e.path()))
                .sum::<u64>() as f64
                / 1e6;
            let Some((med, times, replayed)) = time_opens(
                &built,
                &scratch,
                args.opens,
                if s.rounds == 0 { 0 } else { GROUPS },
            ) else {
                continue;
            };
            let shown: Vec<String> = times.iter().map(|t| format!("{t:.1}")).collect();
            println!(
                "| {} | {} | {} | {} | {build_s:.1} | {offsets_mb:.1} | {replayed} | {} | **{med:.1}** |",
                s.partitions,
                if s.rounds == 0 {
                    0
                } else {
                    GROUPS * s.width as usize
                },
                GROUPS * s.width as usize * s.rounds,
                if crash { "kill (drop)" } else { "clean" },
                shown.join(" / "),
            );
        }
    }
    let _ = std::fs::remove_dir_all(&args.dir);
}
