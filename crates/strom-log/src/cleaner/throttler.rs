//! [`Throttler`]: a byte-rate limit shared by the cleaner threads.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::clock::{Clock, SystemClock};
use crate::locks::lock;

/// How long a measuring window lasts before the throttler starts a fresh one, so a burst after
/// a quiet period is not allowed to "spend" the idle time.
const WINDOW_MS: i64 = 1_000;

/// How the throttler waits: a real sleep, or (in tests) something that moves a manual clock.
pub type Sleeper = Arc<dyn Fn(Duration) + Send + Sync>;

#[derive(Debug)]
struct Window {
    /// Clock reading when the window started.
    start_ms: i64,
    /// Bytes consumed since then.
    bytes: u64,
}

/// A byte-rate limiter (Kafka's `log.cleaner.io.max.bytes.per.second`), shared by every
/// cleaner thread through an `Arc`: [`Throttler::consume`] sleeps as long as needed to keep the
/// rate of all callers together at or below the limit.
///
/// Callers serialise on one mutex that is held while sleeping, so the waiting itself is
/// rate-limited too: a thread arriving while another sleeps waits for it, then is measured
/// against the same window.
pub struct Throttler {
    /// The limit; 0 means unlimited. Changeable at runtime ([`Throttler::set_bytes_per_sec`]).
    bytes_per_sec: std::sync::atomic::AtomicU64,
    clock: Arc<dyn Clock>,
    sleep: Sleeper,
    window: Mutex<Window>,
}

impl std::fmt::Debug for Throttler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Throttler")
            .field("bytes_per_sec", &self.bytes_per_sec())
            .finish_non_exhaustive()
    }
}

impl Throttler {
    /// A limiter at `bytes_per_sec` (`None`: unlimited) on the system clock.
    pub fn new(bytes_per_sec: Option<u64>) -> Self {
        Throttler::with_clock(
            bytes_per_sec,
            Arc::new(SystemClock),
            Arc::new(std::thread::sleep),
        )
    }

    /// A limiter reading time from `clock` and waiting with `sleep` (tests pass a sleeper that
    /// advances a [`crate::ManualClock`]).
    pub fn with_clock(bytes_per_sec: Option<u64>, clock: Arc<dyn Clock>, sleep: Sleeper) -> Self {
        let start_ms = clock.now_ms();
        Throttler {
            bytes_per_sec: std::sync::atomic::AtomicU64::new(bytes_per_sec.unwrap_or(0)),
            clock,
            sleep,
            window: Mutex::new(Window { start_ms, bytes: 0 }),
        }
    }

    /// An unlimited throttler (never sleeps).
    pub fn unlimited() -> Self {
        Throttler::new(None)
    }

    /// The configured rate, `None` if unlimited.
    pub fn bytes_per_sec(&self) -> Option<u64> {
        Some(
            self.bytes_per_sec
                .load(std::sync::atomic::Ordering::Relaxed),
        )
        .filter(|&r| r > 0)
    }

    /// Changes the rate (`None` or 0: unlimited); the next [`Throttler::consume`] uses it.
    pub fn set_bytes_per_sec(&self, bytes_per_sec: Option<u64>) {
        self.bytes_per_sec.store(
            bytes_per_sec.unwrap_or(0),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Accounts for `bytes` of I/O, sleeping first if the rate so far in the current window is
    /// above the limit.
    pub fn consume(&self, bytes: u64) {
        let Some(rate) = self.bytes_per_sec() else {
            return;
        };
        let mut window = lock(&self.window);
        window.bytes = window.bytes.saturating_add(bytes);
        let now = self.clock.now_ms();
        let elapsed = now.saturating_sub(window.start_ms).max(0);
        // Time the bytes of this window should have taken at the limit.
        let due_ms =
            i64::try_from(u128::from(window.bytes) * 1000 / u128::from(rate)).unwrap_or(i64::MAX);
        if due_ms > elapsed {
            let wait = u64::try_from(due_ms - elapsed).unwrap_or(u64::MAX);
            (self.sleep)(Duration::from_millis(wait));
        }
        let now = self.clock.now_ms();
        if now.saturating_sub(window.start_ms) >= WINDOW_MS {
            window.start_ms = now;
            window.bytes = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ManualClock;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A throttler on a manual clock whose sleeps advance the clock and are summed.
    fn manual(rate: Option<u64>) -> (Throttler, Arc<ManualClock>, Arc<AtomicU64>) {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let slept = Arc::new(AtomicU64::new(0));
        let (c, s) = (Arc::clone(&clock), Arc::clone(&slept));
        let sleeper: Sleeper = Arc::new(move |d: Duration| {
            let ms = d.as_millis() as u64;
            s.fetch_add(ms, Ordering::SeqCst);
            c.advance(ms as i64);
        });
        let clock_dyn: Arc<dyn Clock> = clock.clone();
        (
            Throttler::with_clock(rate, clock_dyn, sleeper),
            clock,
            slept,
        )
    }

    #[test]
    fn unlimited_never_sleeps() {
        let (t, _, slept) = manual(None);
        for _ in 0..100 {
            t.consume(1 << 30);
        }
        assert_eq!(slept.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn sleeps_to_hold_the_rate() {
        // 1000 bytes/s: 5000 bytes at once must take 5 s.
        let (t, _, slept) = manual(Some(1_000));
        t.consume(5_000);
        assert_eq!(slept.load(Ordering::SeqCst), 5_000);
    }

    #[test]
    fn many_small_consumes_add_up_to_the_rate() {
        let (t, clock, slept) = manual(Some(10_000));
        let start = clock.now_ms();
        for _ in 0..100 {
            t.consume(1_000);
        }
        // 100 000 bytes at 10 000 B/s: ten seconds, give or take one window's rounding.
        let took = clock.now_ms() - start;
        assert!((9_800..=10_200).contains(&took), "took {took} ms");
        assert_eq!(slept.load(Ordering::SeqCst) as i64, took);
    }

    #[test]
    fn time_that_passed_counts() {
        let (t, clock, slept) = manual(Some(1_000));
        clock.advance(500);
        t.consume(400);
        assert_eq!(slept.load(Ordering::SeqCst), 0, "under the rate: no sleep");
    }

    #[test]
    fn shared_between_threads() {
        let (t, clock, _) = manual(Some(1_000));
        let t = Arc::new(t);
        let start = clock.now_ms();
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let t = Arc::clone(&t);
                std::thread::spawn(move || {
                    for _ in 0..10 {
                        t.consume(100);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        // 4000 bytes at 1000 B/s together.
        let took = clock.now_ms() - start;
        assert!((3_800..=4_200).contains(&took), "took {took} ms");
    }
}
