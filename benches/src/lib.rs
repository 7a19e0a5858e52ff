//! Benchmark harnesses for Strom. Each binary in `src/bin` measures one layer and prints a
//! markdown table; the numbers, with the machine's limits measured in the same session, go to
//! `BENCHMARKS.md`.

use std::time::Duration;

pub mod raw_fetch;
pub mod raw_produce;

/// Median of a non-empty list of samples.
pub fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    let n = samples.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => samples.get(n / 2).copied().unwrap_or(0.0),
        _ => {
            let a = samples.get(n / 2 - 1).copied().unwrap_or(0.0);
            let b = samples.get(n / 2).copied().unwrap_or(0.0);
            (a + b) / 2.0
        }
    }
}

/// Megabytes (10^6 bytes) per second.
pub fn mb_per_s(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / elapsed.as_secs_f64() / 1e6
}

/// The `p` quantile (0..=1) of sorted microsecond samples, in milliseconds.
pub fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted.get(idx).copied().unwrap_or(0)) / 1000.0
}

/// User + system CPU time of a process (all threads) in seconds, from `/proc/PID/stat`
/// (fields 14 and 15, in clock ticks of 1/100 s on Linux).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    proc_stat(pid).map(|(cpu, _)| cpu)
}

/// Minor page faults of process `pid` so far (all threads), from Linux `/proc/PID/stat`;
/// `None` elsewhere or if the process is gone.
pub fn minor_faults(pid: u32) -> Option<u64> {
    proc_stat(pid).map(|(_, faults)| faults)
}

/// CPU seconds (user + system) and minor faults of process `pid`.
fn proc_stat(pid: u32) -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after it are plain.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    // From field 3 (state): minflt is field 10, utime 14, stime 15.
    let mut fields = rest.split(' ').skip(7);
    let minflt: u64 = fields.next()?.parse().ok()?;
    let mut fields = fields.skip(3);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(((utime + stime) as f64 / 100.0, minflt))
}
