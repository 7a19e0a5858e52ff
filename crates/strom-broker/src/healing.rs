//! A partition's log that recovers by itself from a poisoning I/O failure.
//!
//! When `fdatasync` fails, the kernel may already have dropped the dirty pages, so the log
//! cannot know what of its unsynced tail is on disk: [`PartitionLog`] poisons itself and refuses
//! writes ([`strom_log::Error::Poisoned`], which the front ends answer with
//! `KAFKA_STORAGE_ERROR` / a 500 `InternalFailure`). The process does not need to restart for
//! that: [`HealingLog`] notices the poisoning after a failed operation and, on a background
//! thread, abandons the log (no sync, nothing written) and opens it again. The open runs
//! recovery, which keeps what is intact on disk and cuts what is not; nothing it cuts was
//! acknowledged under `flush=always` (an append is acknowledged only after its sync succeeded,
//! and the failed sync acknowledged nothing). Until the new log is in place, writes to this
//! partition fail with `Poisoned` and reads are served by the old log (its files stay open);
//! other partitions are not involved at all. If the open fails (the disk is still failing), it
//! is retried with a backoff until it succeeds or the partition is closed.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use strom_log::{Clock, LogConfig, PartitionLog};
use tokio::sync::watch;
use tracing::{info, warn};

/// First wait before retrying a failed reopen; doubles up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_millis(50);
/// Longest wait between reopen attempts.
const MAX_RETRY: Duration = Duration::from_secs(5);

/// A partition's current [`PartitionLog`], replaced by a recovered one after a poisoning
/// failure, plus the high-watermark channel fetch waiters watch. See the module docs.
#[derive(Debug)]
pub(crate) struct HealingLog {
    dir: PathBuf,
    clock: Arc<dyn Clock>,
    current: RwLock<Arc<PartitionLog>>,
    high_watermark: watch::Sender<i64>,
    recovering: AtomicBool,
    closed: AtomicBool,
    recoveries: AtomicU64,
    /// The broker's commit window every instance of the log joins (a reopened one too).
    durability: crate::durability::Durability,
}

impl HealingLog {
    /// Opens (creating or recovering) the log in `dir`. BLOCKING.
    pub(crate) fn open(
        dir: PathBuf,
        config: LogConfig,
        clock: Arc<dyn Clock>,
        durability: crate::durability::Durability,
    ) -> strom_log::Result<Arc<HealingLog>> {
        let log = PartitionLog::open(&dir, config, Arc::clone(&clock))?;
        durability.enroll(&log);
        let (high_watermark, _) = watch::channel(log.high_watermark());
        Ok(Arc::new(HealingLog {
            dir,
            clock,
            current: RwLock::new(Arc::new(log)),
            high_watermark,
            recovering: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            recoveries: AtomicU64::new(0),
            durability,
        }))
    }

    /// The log to use now.
    pub(crate) fn get(&self) -> Arc<PartitionLog> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// How many times the log was recovered after a poisoning failure since the broker started.
    pub(crate) fn recoveries(&self) -> u64 {
        self.recoveries.load(Ordering::Relaxed)
    }

    /// Whether a recovery is under way (writes fail until it is done).
    pub(crate) fn is_recovering(&self) -> bool {
        self.recovering.load(Ordering::Acquire)
    }

    /// A receiver that sees every new high watermark (for long-poll fetches).
    pub(crate) fn subscribe(&self) -> watch::Receiver<i64> {
        self.high_watermark.subscribe()
    }

    /// Publishes the current log's high watermark to fetch waiters, if it changed.
    pub(crate) fn publish(&self) {
        let hw = self.get().high_watermark();
        self.high_watermark.send_if_modified(|current| {
            if *current != hw {
                *current = hw;
                true
            } else {
                false
            }
        });
    }

    /// Marks the log closed (no recovery will install a new one) and wakes every fetch waiter.
    pub(crate) fn mark_closed(&self) {
        self.closed.store(true, Ordering::Release);
        self.high_watermark.send_modify(|_| {});
    }

    /// After [`HealingLog::mark_closed`]: waits (boundedly) until a recovery under way has
    /// stopped, so nothing opens, and so recreates, the directory once the caller removes it.
    pub(crate) fn wait_for_recovery(&self) {
        let deadline = std::time::Instant::now() + MAX_RETRY * 4;
        while self.recovering.load(Ordering::Acquire) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// To call after an operation on [`HealingLog::get`]'s log failed: if the log is poisoned
    /// and no recovery runs yet, starts one on a background thread.
    pub(crate) fn heal_if_poisoned(self: &Arc<Self>) {
        if !self.get().is_poisoned() || self.closed.load(Ordering::Acquire) {
            return;
        }
        if self.recovering.swap(true, Ordering::AcqRel) {
            return;
        }
        warn!(dir = %self.dir.display(), "partition log poisoned by an I/O failure; reopening it in the background");
        let this = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("strom-log-recover".into())
            .spawn(move || this.recover());
        if let Err(e) = spawned {
            warn!(dir = %self.dir.display(), "cannot start the recovery thread, will retry at the next failure: {e}");
            self.recovering.store(false, Ordering::Release);
        }
    }

    /// Abandons the poisoned log and opens it again until that succeeds or the log is closed.
    fn recover(&self) {
        let old = self.get();
        old.abandon();
        let mut delay = FIRST_RETRY;
        loop {
            if self.closed.load(Ordering::Acquire) {
                break;
            }
            // Read each time: a config change made meanwhile went to the old log.
            match PartitionLog::open(&self.dir, old.config(), Arc::clone(&self.clock)) {
                Ok(log) => {
                    self.durability.enroll(&log);
                    let log = Arc::new(log);
                    {
                        let mut current =
                            self.current.write().unwrap_or_else(PoisonError::into_inner);
                        // Checked under the lock: a close either sees the new log or is seen here.
                        if self.closed.load(Ordering::Acquire) {
                            drop(current);
                            log.abandon();
                            break;
                        }
                        *current = Arc::clone(&log);
                    }
                    self.recoveries.fetch_add(1, Ordering::Relaxed);
                    info!(
                        dir = %self.dir.display(),
                        log_end_offset = log.log_end_offset(),
                        high_watermark = log.high_watermark(),
                        "partition log recovered after an I/O failure; writes resume"
                    );
                    // The watermark may have moved down (unsynced data cut under a weaker
                    // fsync policy): publish it either way and wake waiters.
                    let hw = log.high_watermark();
                    self.high_watermark.send_modify(|current| *current = hw);
                    break;
                }
                Err(e) => {
                    warn!(dir = %self.dir.display(), retry_in_ms = delay.as_millis() as u64, "reopening the partition log failed: {e}");
                    // In slices, so a close does not wait for a whole backoff.
                    let until = std::time::Instant::now() + delay;
                    while std::time::Instant::now() < until && !self.closed.load(Ordering::Acquire)
                    {
                        std::thread::sleep(FIRST_RETRY.min(until - std::time::Instant::now()));
                    }
                    delay = (delay * 2).min(MAX_RETRY);
                }
            }
        }
        self.recovering.store(false, Ordering::Release);
    }
}
