//! The log cleaner: background OS threads that compact the partitions of topics whose
//! `cleanup.policy` contains `compact` (internal topics included), as Kafka's `LogCleaner` does.
//!
//! Each of `log.cleaner.threads` threads loops: it asks every compacted partition what is
//! cleanable ([`strom_log::PartitionLog::cleanable`], cheap: segment sizes and the checkpoint),
//! records that for metrics, picks the *filthiest* partition — the highest dirty ratio above the
//! topic's `min.cleanable.dirty.ratio`, or any the log says must be cleaned now (a dirty record
//! older than `max.compaction.lag.ms`, or a kept tombstone past `delete.retention.ms`), as
//! Kafka's `grabFilthiestCompactedLog` does (with its strict `>` on the ratio)
//! — marks it in progress so no other thread takes it, and calls
//! [`strom_log::PartitionLog::clean`]. With nothing to do it sleeps `log.cleaner.backoff.ms`
//! (woken early by shutdown). All threads share one [`Throttler`]
//! (`log.cleaner.io.max.bytes.per.second`).
//!
//! Configs are read on every pass (the topic snapshot, and the log's own config which
//! AlterConfigs replaces through `set_config`), so runtime changes apply without a restart.
//! Cleaning never takes the partition's writer lock for the copy (the log's contract), so it
//! never blocks appends or fetches. Shutdown sets the cancel flag, which `clean` polls, and
//! joins the threads before partitions are closed.
//!
//! Owner: the `LogCleaner` inside the [`Broker`]; its per-partition state (the last
//! cleanability reading and running totals) sits behind one short `Mutex`, never held across
//! I/O.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use strom_log::{CleanStats, CleanableInfo, Throttler};
use uuid::Uuid;

use crate::broker::Broker;
use crate::partition::Partition;

/// Broker settings of the log cleaner, with Kafka's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanerConfig {
    /// `log.cleaner.enable`: run the cleaner at all (default true).
    pub enable: bool,
    /// `log.cleaner.threads`: cleaner threads (default 1; 0 behaves as disabled).
    pub threads: usize,
    /// `log.cleaner.io.max.bytes.per.second`: I/O budget shared by all cleaner threads
    /// (`None`: unlimited, the default).
    pub io_max_bytes_per_second: Option<u64>,
    /// `log.cleaner.backoff.ms`: how long a thread sleeps when nothing is cleanable
    /// (default 15 s).
    pub backoff: Duration,
}

impl Default for CleanerConfig {
    fn default() -> Self {
        CleanerConfig {
            enable: true,
            threads: 1,
            io_max_bytes_per_second: None,
            backoff: Duration::from_millis(15_000),
        }
    }
}

/// One partition's cleaner state: the last cleanability reading and totals since the broker
/// started. Read by `/metrics` and tests through [`Broker::cleaner_status`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PartitionCleanerState {
    /// Dirty bytes over all cleanable bytes at the last reading.
    pub dirty_ratio: f64,
    /// Bytes not yet cleaned below the uncleanable point, at the last reading.
    pub dirty_bytes: u64,
    /// Bytes already cleaned, at the last reading.
    pub clean_bytes: u64,
    /// Timestamp of the oldest dirty record at the last reading (the cleaner lag is now minus
    /// this).
    pub oldest_dirty_timestamp: Option<i64>,
    /// Log bytes the cleaner read in completed cleans.
    pub bytes_read_total: u64,
    /// Log bytes the cleaner wrote in completed cleans.
    pub bytes_written_total: u64,
    /// Records removed by completed cleans.
    pub records_removed_total: u64,
    /// Completed cleans (including ones that found nothing to remove).
    pub cleans_total: u64,
    /// Cleans that failed.
    pub errors_total: u64,
    /// When the last clean completed (ms since the epoch).
    pub last_clean_ms: Option<i64>,
}

impl PartitionCleanerState {
    /// Milliseconds between the oldest dirty record and `now_ms` (0 when nothing is dirty).
    pub fn lag_ms(&self, now_ms: i64) -> i64 {
        self.oldest_dirty_timestamp
            .map_or(0, |ts| now_ms.saturating_sub(ts).max(0))
    }
}

/// One row of [`Broker::cleaner_status`].
#[derive(Debug, Clone, PartialEq)]
pub struct CleanerStatus {
    /// The topic.
    pub topic: String,
    /// The partition index.
    pub partition: i32,
    /// Its state.
    pub state: PartitionCleanerState,
}

/// Partitions are keyed by topic id, so a topic deleted and created again starts afresh.
type Key = (Uuid, i32);

#[derive(Debug)]
struct Entry {
    topic: String,
    state: PartitionCleanerState,
    in_progress: bool,
}

/// The cleaner's threads and shared state. Owned by the [`Broker`].
#[derive(Debug)]
pub(crate) struct LogCleaner {
    config: CleanerConfig,
    throttler: Throttler,
    signal: Arc<Signal>,
    entries: Mutex<HashMap<Key, Entry>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// Shutdown signalling, shared with the threads so that a sleeping thread holds no reference
/// to the broker.
#[derive(Debug, Default)]
struct Signal {
    cancel: AtomicBool,
    sleep: Mutex<()>,
    wake: Condvar,
}

impl Signal {
    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Acquire)
    }

    fn cancel(&self) {
        let _guard = self.sleep.lock().unwrap_or_else(PoisonError::into_inner);
        self.cancel.store(true, Ordering::Release);
        self.wake.notify_all();
    }

    /// Sleeps up to `period`, returning early on shutdown.
    fn sleep(&self, period: Duration) {
        let guard = self.sleep.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = self
            .wake
            .wait_timeout_while(guard, period, |()| !self.cancelled())
            .unwrap_or_else(PoisonError::into_inner);
    }
}

/// A partition chosen for cleaning, with the reading that chose it.
struct Candidate {
    key: Key,
    partition: Arc<Partition>,
    must_clean: bool,
    dirty_ratio: f64,
}

impl LogCleaner {
    pub(crate) fn new(config: CleanerConfig) -> LogCleaner {
        LogCleaner {
            config,
            throttler: Throttler::new(config.io_max_bytes_per_second),
            signal: Arc::new(Signal::default()),
            entries: Mutex::new(HashMap::new()),
            threads: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn config(&self) -> CleanerConfig {
        CleanerConfig {
            io_max_bytes_per_second: self.throttler.bytes_per_sec(),
            ..self.config
        }
    }

    /// Changes `log.cleaner.io.max.bytes.per.second` at runtime (a dynamic broker config);
    /// `None` is unlimited.
    pub(crate) fn set_io_max_bytes_per_second(&self, rate: Option<u64>) {
        self.throttler.set_bytes_per_sec(rate);
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts the threads (once; not when disabled or already stopped).
    pub(crate) fn start(&self, broker: &Arc<Broker>) {
        if !self.config.enable || self.config.threads == 0 || self.signal.cancelled() {
            return;
        }
        let mut threads = self.threads.lock().unwrap_or_else(PoisonError::into_inner);
        if !threads.is_empty() {
            return;
        }
        for i in 0..self.config.threads {
            let weak = Arc::downgrade(broker);
            let signal = Arc::clone(&self.signal);
            let backoff = self.config.backoff;
            let spawned = std::thread::Builder::new()
                .name(format!("strom-cleaner-{i}"))
                .spawn(move || run(&weak, &signal, backoff));
            match spawned {
                Ok(handle) => threads.push(handle),
                Err(e) => tracing::error!(error = %e, "could not start a log cleaner thread"),
            }
        }
        tracing::info!(
            threads = threads.len(),
            max_bytes_per_second = ?self.config.io_max_bytes_per_second,
            backoff_ms = self.config.backoff.as_millis(),
            "log cleaner started"
        );
    }

    /// Stops the threads: sets the cancel flag (a running clean stops at its next check),
    /// wakes sleeping threads and joins them. BLOCKING.
    pub(crate) fn stop(&self) {
        self.signal.cancel();
        let threads =
            std::mem::take(&mut *self.threads.lock().unwrap_or_else(PoisonError::into_inner));
        let current = std::thread::current().id();
        for handle in threads {
            // The last strong reference to the broker may be dropped on a cleaner thread.
            if handle.thread().id() == current {
                continue;
            }
            if handle.join().is_err() {
                tracing::error!("a log cleaner thread panicked");
            }
        }
    }

    /// Records a fresh cleanability reading of every compacted partition, forgets partitions
    /// that are gone, and claims the filthiest one not being cleaned by another thread.
    fn grab_filthiest(&self, broker: &Broker, now_ms: i64) -> Option<Candidate> {
        let mut readings: Vec<(Key, String, Arc<Partition>, CleanableInfo, f64)> = Vec::new();
        for topic in broker.topics() {
            let settings = topic.settings();
            if !settings.cleanup_compact {
                continue;
            }
            for p in topic.partitions() {
                match p.cleanable_blocking(now_ms) {
                    // A backend without the local cleaner compacts by itself.
                    Ok(None) => {}
                    Ok(Some(info)) => readings.push((
                        (topic.id(), p.index()),
                        topic.name().to_owned(),
                        Arc::clone(p),
                        info,
                        settings.min_cleanable_dirty_ratio,
                    )),
                    Err(e) => tracing::debug!(
                        topic = topic.name(),
                        partition = p.index(),
                        error = %e,
                        "cleanability check failed"
                    ),
                }
            }
        }
        let mut entries = self.entries();
        let seen: HashSet<Key> = readings.iter().map(|r| r.0).collect();
        entries.retain(|key, _| seen.contains(key));
        let mut best: Option<Candidate> = None;
        for (key, topic, partition, info, min_ratio) in readings {
            let entry = entries.entry(key).or_insert_with(|| Entry {
                topic,
                state: PartitionCleanerState::default(),
                in_progress: false,
            });
            entry.state.dirty_ratio = info.dirty_ratio;
            entry.state.dirty_bytes = info.dirty_bytes;
            entry.state.clean_bytes = info.clean_bytes;
            entry.state.oldest_dirty_timestamp = info.oldest_dirty_timestamp;
            if entry.in_progress {
                continue;
            }
            // The log sets `must_clean` only when a clean can do something (dirty bytes past
            // max.compaction.lag.ms, or a kept tombstone past delete.retention.ms).
            let must_clean = info.must_clean;
            if !(must_clean || info.dirty_ratio > min_ratio) {
                continue;
            }
            let better = best
                .as_ref()
                .is_none_or(|b| (must_clean, info.dirty_ratio) > (b.must_clean, b.dirty_ratio));
            if better {
                best = Some(Candidate {
                    key,
                    partition,
                    must_clean,
                    dirty_ratio: info.dirty_ratio,
                });
            }
        }
        if let Some(chosen) = &best
            && let Some(entry) = entries.get_mut(&chosen.key)
        {
            entry.in_progress = true;
        }
        best
    }

    /// Records the outcome of a clean and releases the partition.
    fn finish(&self, key: Key, now_ms: i64, outcome: Option<&CleanStats>) {
        let mut entries = self.entries();
        let Some(entry) = entries.get_mut(&key) else {
            return;
        };
        entry.in_progress = false;
        match outcome {
            Some(stats) => {
                let s = &mut entry.state;
                s.bytes_read_total = s.bytes_read_total.saturating_add(stats.bytes_read);
                s.bytes_written_total = s.bytes_written_total.saturating_add(stats.bytes_written);
                s.records_removed_total = s
                    .records_removed_total
                    .saturating_add(stats.records_removed);
                s.cleans_total += 1;
                s.last_clean_ms = Some(now_ms);
                if stats.segments_cleaned > 0 {
                    // The reading that chose this partition is stale now; the next pass
                    // refreshes it, until then report what the clean left dirty: nothing.
                    s.dirty_ratio = 0.0;
                    s.dirty_bytes = 0;
                    s.oldest_dirty_timestamp = None;
                }
            }
            None => entry.state.errors_total += 1,
        }
    }

    /// One pass: pick a partition and clean it. Returns whether anything was cleaned.
    fn pass(&self, broker: &Broker) -> bool {
        let now_ms = broker.clock().now_ms();
        let Some(candidate) = self.grab_filthiest(broker, now_ms) else {
            return false;
        };
        let p = &candidate.partition;
        let result = p.clean_blocking(now_ms, &self.throttler, &self.signal.cancel);
        let done_ms = broker.clock().now_ms();
        match &result {
            Ok(stats) => {
                tracing::debug!(
                    topic = p.topic(),
                    partition = p.index(),
                    dirty_ratio = candidate.dirty_ratio,
                    must_clean = candidate.must_clean,
                    bytes_read = stats.bytes_read,
                    bytes_written = stats.bytes_written,
                    records_removed = stats.records_removed,
                    segments = stats.segments_cleaned,
                    "cleaned"
                );
                self.finish(candidate.key, done_ms, Some(stats));
                stats.segments_cleaned > 0
            }
            Err(e) => {
                if !self.signal.cancelled() {
                    tracing::warn!(topic = p.topic(), partition = p.index(), error = %e, "log cleaning failed");
                }
                self.finish(candidate.key, done_ms, None);
                false
            }
        }
    }

    /// Every compacted partition's cleaner state, sorted by topic and partition.
    pub(crate) fn status(&self) -> Vec<CleanerStatus> {
        let mut rows: Vec<CleanerStatus> = self
            .entries()
            .iter()
            .map(|((_, partition), entry)| CleanerStatus {
                topic: entry.topic.clone(),
                partition: *partition,
                state: entry.state,
            })
            .collect();
        rows.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        rows
    }
}

/// A cleaner thread's loop. Holds the broker only weakly between passes, so a dropped broker
/// ends it.
fn run(broker: &Weak<Broker>, signal: &Signal, backoff: Duration) {
    while !signal.cancelled() {
        let cleaned = match broker.upgrade() {
            Some(b) => b.cleaner.pass(&b),
            None => return,
        };
        if !cleaned {
            signal.sleep(backoff);
        }
    }
}

impl Broker {
    /// Every compacted partition's cleaner state (empty until the cleaner's first pass, and
    /// while it is disabled), sorted by topic and partition.
    pub fn cleaner_status(&self) -> Vec<CleanerStatus> {
        self.cleaner.status()
    }

    /// The log cleaner's settings.
    pub fn cleaner_config(&self) -> CleanerConfig {
        self.cleaner.config()
    }

    /// Runs one cleaner pass on the calling thread (picks the filthiest partition and cleans
    /// it), as a cleaner thread would; returns whether anything was cleaned. For tests and
    /// tools; works with the background cleaner disabled. BLOCKING.
    pub fn clean_once_blocking(&self) -> bool {
        self.cleaner.pass(self)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use bytes::Bytes;
    use strom_log::{Clock, ManualClock};
    use strom_record::{BatchBuilder, Record};

    use super::*;
    use crate::{BrokerConfig, CreateTopic};

    /// A compacted topic whose one partition has `dirty` closed segments of updates of one key.
    fn dirty_topic(broker: &Broker, clock: &ManualClock, name: &str, updates: usize) {
        let configs: BTreeMap<String, String> = [
            ("cleanup.policy", "compact"),
            ("segment.ms", "5"),
            ("min.cleanable.dirty.ratio", "0.01"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        broker
            .create_topic_blocking(CreateTopic {
                name: name.to_owned(),
                partitions: Some(1),
                configs,
                ..CreateTopic::default()
            })
            .unwrap();
        let p = broker.partition(name, 0).unwrap();
        for i in 0..=updates {
            if i == updates {
                clock.advance(10);
            }
            let mut batch = BatchBuilder::new()
                .build(&[Record::new(
                    clock.now_ms(),
                    Some(Bytes::from_static(b"k")),
                    Some(Bytes::from(i.to_string())),
                )])
                .unwrap();
            p.append_blocking(&mut batch).unwrap();
        }
    }

    #[test]
    fn a_claimed_partition_is_not_handed_to_another_thread() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(1_800_000_000_000));
        let mut config = BrokerConfig::new(dir.path());
        config.cleaner.enable = false;
        let broker = Broker::open_with_clock(config, Arc::clone(&clock) as Arc<dyn Clock>).unwrap();
        // "a" is cleaned once, then gets a little dirty data: its ratio is below b's (1.0).
        dirty_topic(&broker, &clock, "a", 50);
        assert!(broker.clean_once_blocking());
        let a = broker.partition("a", 0).unwrap();
        for _ in 0..2 {
            clock.advance(10);
            let mut batch = BatchBuilder::new()
                .build(&[Record::new(
                    clock.now_ms(),
                    Some(Bytes::from_static(b"k")),
                    None,
                )])
                .unwrap();
            a.append_blocking(&mut batch).unwrap();
        }
        dirty_topic(&broker, &clock, "b", 50);
        let now = clock.now_ms();
        let first = broker.cleaner.grab_filthiest(&broker, now).unwrap();
        assert_eq!(first.partition.topic(), "b", "the filthiest first");
        let second = broker.cleaner.grab_filthiest(&broker, now).unwrap();
        assert_eq!(second.partition.topic(), "a", "b is being cleaned");
        assert!(broker.cleaner.grab_filthiest(&broker, now).is_none());
        broker.cleaner.finish(first.key, now, None);
        let again = broker.cleaner.grab_filthiest(&broker, now).unwrap();
        assert_eq!(again.partition.topic(), "b", "released after the clean");
        let errors: Vec<u64> = broker
            .cleaner_status()
            .iter()
            .map(|s| s.state.errors_total)
            .collect();
        assert_eq!(
            errors,
            [0, 1],
            "a, then b whose clean was recorded as failed"
        );
        broker.shutdown_blocking().unwrap();
    }
}
