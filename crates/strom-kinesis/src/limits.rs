//! AWS-limits mode: per-shard token buckets that throttle like a provisioned Kinesis shard.
//!
//! Off by default ([`crate::KinesisConfig::aws_limits`]). When on, every shard has four buckets,
//! each holding at most one second of its rate and refilled continuously:
//!
//! | Bucket | Rate | Spent by |
//! |---|---|---|
//! | write records | 1,000/s | each record of `PutRecord`/`PutRecords` |
//! | write bytes | 1 MiB/s | data + partition key of each record |
//! | read calls | 5/s | each `GetRecords` |
//! | read bytes | 2 MiB/s | bytes returned by `GetRecords` (may go negative: a 10 MiB read blocks the shard's reads for a few seconds, as on AWS) |
//!
//! Control-plane calls are limited per account as on AWS ([`control_plane_rate`]: e.g.
//! `CreateStream` 5/s, `DescribeStream` 10/s, `DescribeLimits` 1/s), one bucket per action
//! holding one second of its rate; a call beyond it gets `LimitExceededException`. With
//! shared buckets each action's bucket is a row of the shared store too (the nil topic id,
//! the action's index as the shard: [`control_plane_key`]), so the rate holds for the cluster.
//!
//! Memory is bounded: the table holds one entry per recently used shard, and when it grows past
//! [`MAX_SHARDS`] entries idle for more than a second are dropped (a full bucket is the same as
//! no entry). Nothing sleeps: a request that does not fit is refused at once.
//!
//! **Across brokers** (cluster mode) the buckets must be the shard's, not each broker's: with
//! [`SharedBuckets`] configured ([`crate::KinesisConfig::shared_limits`]) every admission reads,
//! charges and stores the shard's levels in one atomic step of the shared store (one row per
//! shard in PostgreSQL, see `strom-cluster`'s `KinesisBuckets`), with the same arithmetic as
//! the local table ([`BucketLevels`]). A PutRecords takes one step per shard it writes, a
//! GetRecords one before its read and one to charge the bytes it returned. If the shared store
//! fails, the broker falls back to its own buckets for that call (logged): limits then hold per
//! broker until the store answers again.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use uuid::Uuid;

/// Write records per shard per second.
pub const WRITE_RECORDS_PER_SEC: f64 = 1_000.0;
/// Write bytes per shard per second (1 MiB).
pub const WRITE_BYTES_PER_SEC: f64 = 1_048_576.0;
/// `GetRecords` calls per shard per second.
pub const READ_CALLS_PER_SEC: f64 = 5.0;
/// Read bytes per shard per second (2 MiB).
pub const READ_BYTES_PER_SEC: f64 = 2_097_152.0;
/// Table size above which idle shards are forgotten.
pub const MAX_SHARDS: usize = 16_384;

/// The control-plane actions AWS limits per account, with their calls per second (AWS's
/// documented quotas); the position of an action is its row in the shared store.
const CONTROL_PLANE: &[(&str, f64)] = &[
    ("CreateStream", 5.0),
    ("DeleteStream", 5.0),
    ("DescribeStream", 10.0),
    ("DescribeStreamSummary", 20.0),
    ("ListStreams", 5.0),
    ("MergeShards", 5.0),
    ("SplitShard", 5.0),
    ("DescribeLimits", 1.0),
    ("RegisterStreamConsumer", 5.0),
    ("DeregisterStreamConsumer", 5.0),
    ("DescribeStreamConsumer", 20.0),
    ("ListStreamConsumers", 5.0),
    ("AddTagsToStream", 5.0),
    ("RemoveTagsFromStream", 5.0),
    ("ListTagsForStream", 5.0),
];

/// Calls per second AWS allows `action` per account, if it is one of the limited
/// control-plane actions.
pub fn control_plane_rate(action: &str) -> Option<f64> {
    CONTROL_PLANE
        .iter()
        .find(|(a, _)| *a == action)
        .map(|(_, rate)| *rate)
}

/// The shared store's row of `action`'s account-wide bucket (its tokens are kept as the
/// row's read calls), if the action is limited.
pub fn control_plane_key(action: &str) -> Option<ShardKey> {
    let index = CONTROL_PLANE.iter().position(|(a, _)| *a == action)?;
    Some(ShardKey {
        topic: Uuid::nil(),
        shard: u32::try_from(index).ok()?,
    })
}

/// A bucket that holds at most one second of `rate` and refills continuously.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
}

impl Bucket {
    fn full(rate: f64) -> Bucket {
        Bucket { tokens: rate }
    }

    fn refill(&mut self, rate: f64, elapsed: Duration) {
        self.tokens = (self.tokens + rate * elapsed.as_secs_f64()).min(rate);
    }
}

/// The tokens in a shard's four buckets (see the module docs), as kept in a shared store.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketLevels {
    /// Write records.
    pub write_records: f64,
    /// Write bytes.
    pub write_bytes: f64,
    /// Read calls.
    pub read_calls: f64,
    /// Read bytes (may be negative: a read overdrew it).
    pub read_bytes: f64,
}

impl BucketLevels {
    /// Every bucket full (a shard not used for a while).
    pub fn full() -> BucketLevels {
        BucketLevels {
            write_records: WRITE_RECORDS_PER_SEC,
            write_bytes: WRITE_BYTES_PER_SEC,
            read_calls: READ_CALLS_PER_SEC,
            read_bytes: READ_BYTES_PER_SEC,
        }
    }

    /// The levels `elapsed_secs` later (each bucket refilled at its rate, up to one second).
    fn refilled(self, elapsed_secs: f64) -> BucketLevels {
        let e = elapsed_secs.max(0.0);
        BucketLevels {
            write_records: (self.write_records + WRITE_RECORDS_PER_SEC * e)
                .min(WRITE_RECORDS_PER_SEC),
            write_bytes: (self.write_bytes + WRITE_BYTES_PER_SEC * e).min(WRITE_BYTES_PER_SEC),
            read_calls: (self.read_calls + READ_CALLS_PER_SEC * e).min(READ_CALLS_PER_SEC),
            read_bytes: (self.read_bytes + READ_BYTES_PER_SEC * e).min(READ_BYTES_PER_SEC),
        }
    }

    /// Admits each record (of `sizes` bytes, in order) that fits, spending its tokens.
    fn take_writes(&mut self, sizes: &[usize]) -> Vec<bool> {
        sizes
            .iter()
            .map(|&bytes| {
                let bytes = bytes as f64;
                if self.write_records >= 1.0 && self.write_bytes >= bytes {
                    self.write_records -= 1.0;
                    self.write_bytes -= bytes;
                    true
                } else {
                    false
                }
            })
            .collect()
    }

    /// Admits one read call (a call token, and read bytes not overdrawn).
    fn take_read(&mut self) -> bool {
        if self.read_calls >= 1.0 && self.read_bytes > 0.0 {
            self.read_calls -= 1.0;
            true
        } else {
            false
        }
    }

    /// Charges the bytes a read returned (never more than five seconds of debt).
    fn charge_read(&mut self, bytes: usize) {
        self.read_bytes = (self.read_bytes - bytes as f64).max(-4.0 * READ_BYTES_PER_SEC);
    }
}

/// A shard in the shared store: the stream's topic id and the shard's index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ShardKey {
    /// The stream's topic id.
    pub topic: Uuid,
    /// The shard (partition) index.
    pub shard: u32,
}

/// What a step of the shared store is given: the shard's stored levels and the seconds since
/// they were stored (`None`: never stored, the buckets are full); it returns the new levels.
pub type LevelsUpdate<'a> =
    Box<dyn FnOnce(Option<(BucketLevels, f64)>) -> BucketLevels + Send + 'a>;

/// The shared store's step failed (the database did not answer, …).
#[derive(Debug, thiserror::Error)]
#[error("the shared limit buckets are unavailable")]
pub struct SharedBucketsError {
    /// The underlying failure.
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// Per-shard buckets kept outside the broker, shared by every broker of a cluster.
pub trait SharedBuckets: Send + Sync + std::fmt::Debug {
    /// Reads `key`'s levels, replaces them by what `update` returns, atomically with respect
    /// to every other broker's steps on the same shard, and measures time by one clock for all.
    fn update<'a>(
        &'a self,
        key: ShardKey,
        update: LevelsUpdate<'a>,
    ) -> Pin<Box<dyn Future<Output = Result<(), SharedBucketsError>> + Send + 'a>>;
}

#[derive(Debug, Clone, Copy)]
struct ShardBuckets {
    last: Instant,
    write_records: Bucket,
    write_bytes: Bucket,
    read_calls: Bucket,
    read_bytes: Bucket,
}

impl ShardBuckets {
    fn new(now: Instant) -> ShardBuckets {
        ShardBuckets {
            last: now,
            write_records: Bucket::full(WRITE_RECORDS_PER_SEC),
            write_bytes: Bucket::full(WRITE_BYTES_PER_SEC),
            read_calls: Bucket::full(READ_CALLS_PER_SEC),
            read_bytes: Bucket::full(READ_BYTES_PER_SEC),
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last);
        self.last = now;
        self.write_records.refill(WRITE_RECORDS_PER_SEC, elapsed);
        self.write_bytes.refill(WRITE_BYTES_PER_SEC, elapsed);
        self.read_calls.refill(READ_CALLS_PER_SEC, elapsed);
        self.read_bytes.refill(READ_BYTES_PER_SEC, elapsed);
    }

    fn is_full(&self) -> bool {
        self.write_records.tokens >= WRITE_RECORDS_PER_SEC
            && self.write_bytes.tokens >= WRITE_BYTES_PER_SEC
            && self.read_calls.tokens >= READ_CALLS_PER_SEC
            && self.read_bytes.tokens >= READ_BYTES_PER_SEC
    }
}

/// The per-shard buckets of one listener. Disabled, every check passes without a lock.
#[derive(Debug)]
pub struct ShardLimiter {
    enabled: bool,
    shards: Mutex<HashMap<(Uuid, u32), ShardBuckets>>,
    /// This listener's control-plane buckets by action: tokens and when last refilled.
    control: Mutex<HashMap<&'static str, (Bucket, Instant)>>,
    /// The cluster's buckets, when shared (cluster mode); the table above is then the
    /// fallback for a step the shared store failed.
    shared: Option<Arc<dyn SharedBuckets>>,
}

impl ShardLimiter {
    /// A limiter; `enabled = false` admits everything.
    pub fn new(enabled: bool) -> ShardLimiter {
        ShardLimiter::with_shared(enabled, None)
    }

    /// A limiter whose buckets are kept in `shared` (every broker of a cluster), when given.
    pub fn with_shared(enabled: bool, shared: Option<Arc<dyn SharedBuckets>>) -> ShardLimiter {
        ShardLimiter {
            enabled,
            shards: Mutex::new(HashMap::new()),
            control: Mutex::new(HashMap::new()),
            shared,
        }
    }

    /// Admits one call of the control-plane `action` under AWS's per-account rate
    /// ([`control_plane_rate`]), cluster-wide when the buckets are shared; actions AWS does
    /// not limit this way are always admitted.
    pub async fn admit_control(&self, action: &str) -> bool {
        if !self.enabled {
            return true;
        }
        let (Some(rate), Some(key)) = (control_plane_rate(action), control_plane_key(action))
        else {
            return true;
        };
        if let Some(shared) = self.shared.as_ref() {
            let mut admitted = None;
            let step = shared
                .update(
                    key,
                    Box::new(|stored| {
                        let tokens = stored.map_or(rate, |(l, elapsed)| {
                            (l.read_calls + rate * elapsed.max(0.0)).min(rate)
                        });
                        let ok = tokens >= 1.0;
                        admitted = Some(ok);
                        BucketLevels {
                            write_records: 0.0,
                            write_bytes: 0.0,
                            read_calls: if ok { tokens - 1.0 } else { tokens },
                            read_bytes: 0.0,
                        }
                    }),
                )
                .await;
            match (step, admitted) {
                (Ok(()), Some(ok)) => return ok,
                (Err(error), _) => {
                    tracing::warn!(%error, action, "shared control-plane limits failed; this broker's own buckets apply");
                }
                (Ok(()), None) => {}
            }
        }
        self.admit_control_at(action, Instant::now())
    }

    /// This listener's own control-plane bucket of `action` at `now`.
    fn admit_control_at(&self, action: &str, now: Instant) -> bool {
        let Some(&(name, rate)) = CONTROL_PLANE.iter().find(|(a, _)| *a == action) else {
            return true;
        };
        let mut control = match self.control.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let (bucket, last) = control
            .entry(name)
            .or_insert_with(|| (Bucket::full(rate), now));
        bucket.refill(rate, now.saturating_duration_since(*last));
        *last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// One step of the shared store on `topic`/`shard`: `f` gets the refilled levels and
    /// returns its answer. `None` without a shared store or when its step failed (logged).
    async fn shared_step<T: Send>(
        &self,
        topic: Uuid,
        shard: u32,
        f: impl FnOnce(&mut BucketLevels) -> T + Send,
    ) -> Option<T> {
        let shared = self.shared.as_ref()?;
        let mut answer = None;
        let step = shared
            .update(
                ShardKey { topic, shard },
                Box::new(|stored| {
                    let mut levels = stored.map_or_else(BucketLevels::full, |(l, e)| l.refilled(e));
                    answer = Some(f(&mut levels));
                    levels
                }),
            )
            .await;
        match step {
            Ok(()) => answer,
            Err(error) => {
                tracing::warn!(%error, %topic, shard, "shared shard limits failed; this broker's own buckets apply");
                None
            }
        }
    }

    /// Admits each record of a request into a shard (`sizes`: data + partition key of each, in
    /// order), cluster-wide when the buckets are shared; per record whether it was admitted.
    pub async fn admit_writes(&self, topic: Uuid, shard: u32, sizes: &[usize]) -> Vec<bool> {
        if !self.enabled {
            return vec![true; sizes.len()];
        }
        if let Some(admitted) = self
            .shared_step(topic, shard, |l| l.take_writes(sizes))
            .await
        {
            return admitted;
        }
        let now = Instant::now();
        sizes
            .iter()
            .map(|&bytes| self.admit_write(topic, shard, bytes, now))
            .collect()
    }

    /// Admits one `GetRecords` call on a shard, cluster-wide when the buckets are shared.
    pub async fn admit_read_call(&self, topic: Uuid, shard: u32) -> bool {
        if !self.enabled {
            return true;
        }
        if let Some(admitted) = self
            .shared_step(topic, shard, BucketLevels::take_read)
            .await
        {
            return admitted;
        }
        self.admit_read(topic, shard, Instant::now())
    }

    /// Charges the bytes a `GetRecords` returned, cluster-wide when the buckets are shared.
    pub async fn charge_read_bytes(&self, topic: Uuid, shard: u32, bytes: usize) {
        if !self.enabled {
            return;
        }
        if self
            .shared_step(topic, shard, |l| l.charge_read(bytes))
            .await
            .is_none()
        {
            self.charge_read(topic, shard, bytes, Instant::now());
        }
    }

    /// Whether AWS limits are enforced.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    fn with<T>(
        &self,
        topic: Uuid,
        shard: u32,
        now: Instant,
        f: impl FnOnce(&mut ShardBuckets) -> T,
    ) -> T {
        let mut shards = match self.shards.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if shards.len() >= MAX_SHARDS && !shards.contains_key(&(topic, shard)) {
            shards.retain(|_, b| {
                b.refill(now);
                !b.is_full()
            });
            if shards.len() >= MAX_SHARDS {
                // Every entry is busy: forget them all (limits restart full) rather than grow.
                shards.clear();
            }
        }
        let buckets = shards
            .entry((topic, shard))
            .or_insert_with(|| ShardBuckets::new(now));
        buckets.refill(now);
        f(buckets)
    }

    /// Admits one record of `bytes` (data + partition key) into a shard, or refuses it.
    pub fn admit_write(&self, topic: Uuid, shard: u32, bytes: usize, now: Instant) -> bool {
        if !self.enabled {
            return true;
        }
        self.with(topic, shard, now, |b| {
            let bytes = bytes as f64;
            if b.write_records.tokens >= 1.0 && b.write_bytes.tokens >= bytes {
                b.write_records.tokens -= 1.0;
                b.write_bytes.tokens -= bytes;
                true
            } else {
                false
            }
        })
    }

    /// Admits one `GetRecords` call on a shard (a call token, and read bytes not overdrawn).
    pub fn admit_read(&self, topic: Uuid, shard: u32, now: Instant) -> bool {
        if !self.enabled {
            return true;
        }
        self.with(topic, shard, now, |b| {
            if b.read_calls.tokens >= 1.0 && b.read_bytes.tokens > 0.0 {
                b.read_calls.tokens -= 1.0;
                true
            } else {
                false
            }
        })
    }

    /// Charges the bytes a `GetRecords` returned; the bucket may go negative.
    pub fn charge_read(&self, topic: Uuid, shard: u32, bytes: usize, now: Instant) {
        if !self.enabled {
            return;
        }
        self.with(topic, shard, now, |b| {
            // Never more than five seconds of debt (a 10 MiB read).
            b.read_bytes.tokens =
                (b.read_bytes.tokens - bytes as f64).max(-4.0 * READ_BYTES_PER_SEC);
        });
    }

    /// How many shards the table holds (for tests).
    pub fn tracked(&self) -> usize {
        match self.shards.lock() {
            Ok(g) => g.len(),
            Err(poisoned) => poisoned.into_inner().len(),
        }
    }
}

/// AWS's message for a throttled shard.
pub fn rate_exceeded_message(shard_id: &str, stream: &str) -> String {
    format!(
        "Rate exceeded for shard {shard_id} in stream {stream} under account {}.",
        crate::stream::ACCOUNT
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disabled_admits_everything() {
        let l = ShardLimiter::new(false);
        let t = Uuid::new_v4();
        let now = Instant::now();
        for _ in 0..10_000 {
            assert!(l.admit_write(t, 0, 1 << 20, now));
            assert!(l.admit_read(t, 0, now));
        }
        assert_eq!(l.tracked(), 0);
    }

    #[test]
    fn thousand_records_per_second() {
        let l = ShardLimiter::new(true);
        let t = Uuid::new_v4();
        let now = Instant::now();
        let admitted = (0..1500).filter(|_| l.admit_write(t, 0, 10, now)).count();
        assert_eq!(admitted, 1000);
        // Another shard has its own bucket.
        assert!(l.admit_write(t, 1, 10, now));
        // Half a second later, half a second of tokens.
        let later = now + Duration::from_millis(500);
        let admitted = (0..1500).filter(|_| l.admit_write(t, 0, 10, later)).count();
        assert_eq!(admitted, 500);
    }

    #[test]
    fn one_mebibyte_per_second() {
        let l = ShardLimiter::new(true);
        let t = Uuid::new_v4();
        let now = Instant::now();
        assert!(l.admit_write(t, 0, 1 << 19, now));
        assert!(l.admit_write(t, 0, 1 << 19, now));
        assert!(!l.admit_write(t, 0, 1, now));
    }

    #[test]
    fn five_reads_per_second_and_byte_debt() {
        let l = ShardLimiter::new(true);
        let t = Uuid::new_v4();
        let now = Instant::now();
        assert_eq!((0..6).filter(|_| l.admit_read(t, 0, now)).count(), 5);
        let later = now + Duration::from_secs(1);
        assert!(l.admit_read(t, 0, later));
        l.charge_read(t, 0, 10 << 20, later);
        // Overdrawn: refused until the debt is repaid (about four seconds later).
        assert!(!l.admit_read(t, 0, later + Duration::from_secs(3)));
        assert!(l.admit_read(t, 0, later + Duration::from_secs(5)));
    }

    #[test]
    fn memory_is_bounded() {
        let l = ShardLimiter::new(true);
        let t = Uuid::new_v4();
        let now = Instant::now();
        for shard in 0..(MAX_SHARDS as u32 * 2) {
            l.admit_write(t, shard, 1, now);
        }
        assert!(l.tracked() <= MAX_SHARDS);
    }

    /// Shared buckets in memory, as a cluster's store behaves: one level per shard, time since
    /// the last step; `fail` makes every step fail.
    #[derive(Debug, Default)]
    struct InMemory {
        rows: Mutex<HashMap<ShardKey, (BucketLevels, Instant)>>,
        fail: bool,
    }

    impl SharedBuckets for InMemory {
        fn update<'a>(
            &'a self,
            key: ShardKey,
            update: LevelsUpdate<'a>,
        ) -> Pin<Box<dyn Future<Output = Result<(), SharedBucketsError>> + Send + 'a>> {
            Box::pin(async move {
                if self.fail {
                    return Err(SharedBucketsError {
                        source: "down".into(),
                    });
                }
                let mut rows = self.rows.lock().unwrap();
                let now = Instant::now();
                let stored = rows
                    .get(&key)
                    .map(|(l, at)| (*l, now.duration_since(*at).as_secs_f64()));
                rows.insert(key, (update(stored), now));
                Ok(())
            })
        }
    }

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn limiters_sharing_buckets_admit_one_shards_rate_together() {
        let shared: Arc<dyn SharedBuckets> = Arc::new(InMemory::default());
        let one = ShardLimiter::with_shared(true, Some(Arc::clone(&shared)));
        let two = ShardLimiter::with_shared(true, Some(shared));
        let t = Uuid::new_v4();
        let admitted = block_on(async {
            let a = one.admit_writes(t, 0, &[10; 700]).await;
            let b = two.admit_writes(t, 0, &[10; 700]).await;
            a.into_iter().chain(b).filter(|ok| *ok).count()
        });
        // 1,000 plus what refilled in the few microseconds between the steps.
        assert!((1_000..1_010).contains(&admitted), "{admitted}");
        // Reads too: five calls per second between both.
        let reads = block_on(async {
            let mut n = 0;
            for i in 0..10 {
                let l = if i % 2 == 0 { &one } else { &two };
                n += usize::from(l.admit_read_call(t, 0).await);
            }
            n
        });
        assert_eq!(reads, 5);
        // The local tables were never used.
        assert_eq!((one.tracked(), two.tracked()), (0, 0));
    }

    #[test]
    fn a_failed_shared_step_falls_back_to_this_brokers_buckets() {
        let down: Arc<dyn SharedBuckets> = Arc::new(InMemory {
            fail: true,
            ..InMemory::default()
        });
        let l = ShardLimiter::with_shared(true, Some(down));
        let t = Uuid::new_v4();
        let admitted = block_on(l.admit_writes(t, 0, &[10; 1_500]));
        assert_eq!(admitted.iter().filter(|ok| **ok).count(), 1_000);
        assert_eq!(l.tracked(), 1);
    }

    #[test]
    fn control_plane_calls_at_the_accounts_rate() {
        let l = ShardLimiter::new(true);
        let now = Instant::now();
        assert!(l.admit_control_at("DescribeLimits", now));
        assert!(!l.admit_control_at("DescribeLimits", now));
        // Each action has its own bucket.
        assert_eq!(
            (0..8)
                .filter(|_| l.admit_control_at("ListStreams", now))
                .count(),
            5
        );
        assert!(l.admit_control_at("DescribeLimits", now + Duration::from_secs(1)));
        // Data-plane and unlisted actions are not limited this way.
        assert!((0..100).all(|_| l.admit_control_at("GetShardIterator", now)));
        // Off: everything passes.
        let off = ShardLimiter::new(false);
        assert!(block_on(async {
            off.admit_control("DescribeLimits").await && off.admit_control("DescribeLimits").await
        }));
    }

    #[test]
    fn limiters_sharing_buckets_share_the_control_plane_rate() {
        let shared: Arc<dyn SharedBuckets> = Arc::new(InMemory::default());
        let one = ShardLimiter::with_shared(true, Some(Arc::clone(&shared)));
        let two = ShardLimiter::with_shared(true, Some(shared));
        let admitted = block_on(async {
            let mut n = 0;
            for i in 0..10 {
                let l = if i % 2 == 0 { &one } else { &two };
                n += usize::from(l.admit_control("CreateStream").await);
            }
            n
        });
        // Five per second for both together (the steps take microseconds).
        assert_eq!(admitted, 5);
        assert!(control_plane_key("CreateStream").is_some_and(|k| k.topic.is_nil()));
        assert_eq!(control_plane_key("PutRecords"), None);
    }

    #[test]
    fn message_is_aws_shaped() {
        assert_eq!(
            rate_exceeded_message("shardId-000000000000", "demo"),
            "Rate exceeded for shard shardId-000000000000 in stream demo under account 000000000000."
        );
    }
}
