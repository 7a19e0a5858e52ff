//! The write path: buffer batches from many partitions, flush them as one object, commit their
//! offsets in one PostgreSQL transaction, then answer every producer.
//!
//! ```text
//! append() ──bytes permit──▶ buffer ──(max_bytes | max_delay | quiet)──▶ flush (≤ max_in_flight):
//!   1. take a reserved object key (a 'pending' row the orphan collector can find)
//!   2. PUT object (batches grouped by partition)      -- unique key, never overwritten
//!   3. wait until every earlier flush has finished, then (one transaction)
//!      BEGIN
//!      UPDATE strom_objects SET state='committed', size WHERE key AND state='pending'
//!      SELECT … strom_partitions … ORDER BY topic, partition FOR UPDATE
//!      per batch: idempotence check, offsets from next_offset
//!      INSERT strom_batches, UPSERT strom_producer_states, UPDATE strom_partitions
//!      pg_notify('strom_commits', …) per partition
//!      refresh this writer's reserved keys, reserve new ones to replace those used
//!      COMMIT
//!   4. complete each waiter with its offsets (or its own typed error)
//! ```
//!
//! **Flush policy.** The writer keeps collecting while flushes upload and commit. A flush is
//! dispatched when `max_bytes` are buffered, when `max_delay` has passed since its first batch,
//! or — with no flush uploading — once no batch arrived for `quiet` (all producers wait for
//! acknowledgements, so a longer wait is pure latency; an idempotent librdkafka producer has at
//! most five requests in flight per broker) or, under a steady stream with no such gap, once
//! its first batch is `QUIET_CAP` × `quiet` old. With a flush uploading, the next one waits for
//! size, delay or the end of that upload (then starts at once: group commit), so it uploads
//! while the one before it commits, a batch waits at most for one upload before its own, and
//! there is one commit per flush rather than per request. A flush cycle is therefore the
//! longer of an upload and a commit, not their sum. Up to `max_in_flight` flushes are in
//! flight at once.
//!
//! **One transaction per flush.** The 'pending' row that lets the orphan collector find an
//! object whose flush never committed must exist before the PUT. Instead of an INSERT per flush,
//! the writer keeps `max_in_flight` spare rows reserved: each commit transaction also refreshes
//! the `created_at` of the writer's reserved and in-flight keys (so the collector's grace runs
//! from the last commit) and reserves new ones for those used. A flush takes a spare refreshed
//! less than [`SPARE_FRESH`] ago; only when there is none (start, idle for longer than that,
//! after a failed commit) does it reserve its key in a transaction of its own. Spares that were
//! never used are deleted at shutdown; those of a killed broker are rows without objects, which
//! the collector removes after the grace period like any orphan. The orphan grace must
//! therefore exceed [`SPARE_FRESH`] plus the longest flush.
//!
//! **Ordering.** Commits run one at a time in flush order (each flush waits for the one before
//! it to finish), and a partition's batches keep their arrival order inside a flush, so batches
//! a producer sends through one writer keep their order.
//! Between writers, the database orders: partition rows are locked in `(topic, partition)` order,
//! so two writers' transactions over overlapping partitions serialise without deadlock.
//!
//! **Failures.** A PUT is attempted `put_attempts` times with exponential backoff (each attempt
//! retried again by the object-store client). A failed step 1, 2 or 3, or a stage that exceeds
//! the flush timeout (a stalled database or store), fails every waiter of the flush with a
//! retriable [`Error`], and so does every flush that was already dispatched behind it when it
//! failed, as requests in flight behind a failure do on a Kafka broker: committing them would put
//! their batches before the retries of the failed ones. Flushes dispatched after the failure are
//! not affected. Nothing was acknowledged and, if step 2 ran, the object stays `pending` until the
//! orphan collector removes it. A commit whose outcome is unknown (connection lost during
//! `COMMIT`) is also reported as retriable: an idempotent producer's retry is then recognised as
//! a duplicate and answered with the original offsets. Per-batch rejections (sequence gap, fenced
//! epoch, unknown partition) fail only that batch; the rest of the flush commits.
//!
//! **Back-pressure.** Every append holds permits for its bytes from a semaphore of
//! `max_buffered_bytes` until its flush completes (buffered and in flight alike), so a slow
//! object store or database makes producers wait instead of growing memory.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use strom_record::BatchHeader;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_postgres::types::Type;

use crate::cache::ObjectCache;
use crate::config::FlushConfig;
use crate::db::Db;
use crate::error::{DbOp, Error, Result, StoreOp};
use crate::metadata::TopicPartition;
use crate::notify::{CHANNEL, payload};
use crate::reader::{IndexEntry, served};

/// A spare object key is used only if its row was refreshed less than this long ago; older ones
/// are refreshed (or replaced) in a transaction of their own first. The orphan grace period must
/// exceed this plus the longest flush.
pub const SPARE_FRESH: Duration = Duration::from_secs(1);

/// With no flush in flight, a flush starts at the latest this many `quiet` periods after its
/// first batch, even if batches keep arriving (group commit: under a steady stream the quiet gap
/// never comes, and the flush delay must not govern).
const QUIET_CAP: u32 = 4;

/// First pause between two attempts of a PUT; doubles up to [`PUT_BACKOFF_MAX`].
const PUT_BACKOFF: Duration = Duration::from_millis(100);
/// Longest pause between two attempts of a PUT.
const PUT_BACKOFF_MAX: Duration = Duration::from_secs(2);

/// A duration in whole microseconds, for log fields.
fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Where committed offsets landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Offset of the batch's first record.
    pub base_offset: i64,
    /// Offset of its last record.
    pub last_offset: i64,
    /// The batch was a retry of one already committed; the offsets are the original ones and
    /// nothing new was written.
    pub duplicate: bool,
}

/// A batch handed to the writer ([`Writer::enqueue`]), not committed yet.
#[derive(Debug)]
#[must_use = "the batch is not acknowledged until wait returns"]
pub struct Enqueued {
    rx: oneshot::Receiver<Result<Appended>>,
}

impl Enqueued {
    /// Waits until the batch's flush committed: its offsets, or why it was not written.
    pub async fn wait(self) -> Result<Appended> {
        self.rx.await.map_err(|_| Error::WriterClosed)?
    }
}

/// Writer settings.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Flush policy and buffer bound.
    pub flush: FlushConfig,
    /// Object key prefix (from `s3://BUCKET/PREFIX`); objects go under `PREFIX/data/`.
    pub prefix: String,
    /// Name recorded with each object (the broker id), for diagnosis.
    pub name: String,
}

/// Counters of a writer, for `strom cluster status`, benchmarks and tests. Commits per GiB
/// is `transactions / (bytes / 2^30)`; objects per GiB `objects / (bytes / 2^30)`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Flushes that committed.
    pub commits: u64,
    /// Flushes that failed (every waiter got an error).
    pub failed_flushes: u64,
    /// Objects uploaded (committed or not).
    pub objects: u64,
    /// Bytes uploaded.
    pub bytes: u64,
    /// PostgreSQL transactions the writer ran: commit transactions (committed or rolled back),
    /// key reservations of their own, and the release of spare keys at shutdown.
    pub transactions: u64,
    /// PUT attempts that failed and were tried again.
    pub put_retries: u64,
}

struct Pending {
    tp: TopicPartition,
    batch: Bytes,
    header: BatchHeader,
    reply: oneshot::Sender<Result<Appended>>,
    _permit: OwnedSemaphorePermit,
}

/// Handle to a writer task; cheap to clone. Dropping every handle (or [`Writer::shutdown`])
/// flushes what is buffered and stops the task.
#[derive(Debug, Clone)]
pub struct Writer {
    tx: mpsc::UnboundedSender<Pending>,
    budget: Arc<Semaphore>,
    limit: usize,
    stats: Arc<std::sync::Mutex<WriterStats>>,
    task: Arc<std::sync::Mutex<Option<JoinHandle<()>>>>,
    /// Set by [`Writer::shutdown`]: the task stops taking batches, flushes what it holds at
    /// once and ends, whatever other clones of the handle still exist.
    close: Arc<tokio::sync::watch::Sender<bool>>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("tp", &self.tp)
            .field("len", &self.batch.len())
            .finish()
    }
}

impl Writer {
    /// Starts the writer task on the current Tokio runtime. Commits run on `db`; the writer
    /// opens a second connection with the same settings for reserving object keys, so an
    /// upload never waits behind a commit.
    pub fn start(
        config: WriterConfig,
        db: Db,
        store: Arc<dyn ObjectStore>,
        cache: Option<Arc<ObjectCache>>,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let limit = config
            .flush
            .max_buffered_bytes
            .min(Semaphore::MAX_PERMITS)
            // Batch lengths are stored as int4 and permits counted in u32.
            .min(i32::MAX as usize);
        let stats = Arc::new(std::sync::Mutex::new(WriterStats::default()));
        let flusher = Arc::new(Flusher {
            config,
            record_db: Db::new(db.config().clone()),
            commit_db: db,
            store,
            cache,
            stats: stats.clone(),
            keys: std::sync::Mutex::new(Keys::default()),
            dispatched: AtomicU64::new(0),
            failures: std::sync::Mutex::new(Failures::default()),
        });
        let (close, closed) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(flusher.run(rx, closed));
        Writer {
            tx,
            budget: Arc::new(Semaphore::new(limit)),
            limit,
            stats,
            task: Arc::new(std::sync::Mutex::new(Some(task))),
            close: Arc::new(close),
        }
    }

    /// Appends one record batch (already validated: CRC, records) to `tp` and waits until it is
    /// committed. The batch's header supplies the producer id, epoch, base sequence and record
    /// count; its base offset is ignored (offsets are assigned at commit).
    pub async fn append(&self, tp: TopicPartition, batch: Bytes) -> Result<Appended> {
        self.enqueue(tp, batch).await?.wait().await
    }

    /// The first half of [`append`](Self::append): waits for buffer space and hands the batch
    /// to the writer task, returning once its place in the flush order is taken (batches
    /// enqueued one after another are committed in that order); [`Enqueued::wait`] then waits
    /// for the commit.
    pub async fn enqueue(&self, tp: TopicPartition, batch: Bytes) -> Result<Enqueued> {
        let header = BatchHeader::parse(&batch).map_err(|source| Error::InvalidBatch { source })?;
        if header.total_len() != batch.len() {
            return Err(Error::BatchLength {
                declared: header.total_len(),
                given: batch.len(),
            });
        }
        if batch.len() > self.limit {
            return Err(Error::BatchTooLarge {
                size: batch.len(),
                limit: self.limit,
            });
        }
        // len <= limit <= i32::MAX, checked above.
        let permits = u32::try_from(batch.len()).map_err(|_| Error::BatchTooLarge {
            size: batch.len(),
            limit: self.limit,
        })?;
        let permit = self
            .budget
            .clone()
            .acquire_many_owned(permits)
            .await
            .map_err(|_| Error::WriterClosed)?;
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Pending {
                tp,
                batch,
                header,
                reply,
                _permit: permit,
            })
            .map_err(|_| Error::WriterClosed)?;
        Ok(Enqueued { rx })
    }

    /// Bytes accepted and not yet answered (buffered or in a flush); never above the
    /// configured `max_buffered_bytes`.
    pub fn buffered_bytes(&self) -> usize {
        self.limit - self.budget.available_permits()
    }

    /// Counters so far.
    pub fn stats(&self) -> WriterStats {
        *self
            .stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Stops the writer: batches not yet handed over are refused ([`Error::WriterClosed`]), the
    /// task flushes what it holds at once (not after the flush delay), deletes its unused
    /// spare keys and ends, even while other clones of the handle live on; waits at most
    /// `timeout` for that.
    pub async fn shutdown(self, timeout: Duration) -> Result<()> {
        let task = self
            .task
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        self.budget.close();
        self.close.send_replace(true);
        drop(self.tx);
        if let Some(task) = task {
            tokio::time::timeout(timeout, task)
                .await
                .map_err(|_| Error::Timeout { waited: timeout })?
                .map_err(|_| Error::WriterClosed)?;
        }
        Ok(())
    }
}

/// The writer's reserved object keys (see the module docs).
#[derive(Debug, Default)]
struct Keys {
    /// Reserved rows no flush has taken yet, with when their `created_at` was last set (an
    /// instant taken before the statement that set it, so never later than the row's time).
    spare: VecDeque<(String, Instant)>,
    /// Keys taken by flushes that have not finished.
    taken: HashSet<String>,
}

/// A flush that failed on its own (not because one before it failed).
#[derive(Debug)]
struct Failure {
    /// Its place in the flush order.
    seq: u64,
    /// Flushes dispatched before it failed, which it takes down with it.
    cutoff: u64,
    error: Error,
}

/// Failures whose cutoff later flushes may still be below (module docs, "Failures").
#[derive(Debug, Default)]
struct Failures(Vec<Failure>);

impl Failures {
    /// Flush `seq` failed on its own when `dispatched` flushes had been dispatched.
    fn record(&mut self, seq: u64, dispatched: u64, error: Error) {
        if dispatched > seq + 1 {
            self.0.push(Failure {
                seq,
                cutoff: dispatched,
                error,
            });
        }
    }

    /// For flush `seq`, asked once every earlier flush has finished (so in flush order): the
    /// error of an earlier flush that failed after `seq` was dispatched.
    fn behind(&mut self, seq: u64) -> Option<Error> {
        let error = self
            .0
            .iter()
            .find(|f| f.seq < seq && seq < f.cutoff)
            .map(|f| f.error.clone());
        // No later flush is below these cutoffs.
        self.0.retain(|f| f.cutoff > seq + 1);
        error
    }
}

struct Flusher {
    config: WriterConfig,
    /// Reserves object keys when no fresh spare is left (the upload stage).
    record_db: Db,
    /// Runs commit transactions (the commit stage), one at a time.
    commit_db: Db,
    store: Arc<dyn ObjectStore>,
    cache: Option<Arc<ObjectCache>>,
    stats: Arc<std::sync::Mutex<WriterStats>>,
    keys: std::sync::Mutex<Keys>,
    /// Flushes dispatched so far; the next one's place in the flush order.
    dispatched: AtomicU64,
    /// Recent failures whose cutoff is not yet passed.
    failures: std::sync::Mutex<Failures>,
}

/// One flush between its stages: batches grouped by partition, laid out in one object.
struct Flush {
    /// Its object key, once taken (empty before).
    key: Path,
    items: Vec<Pending>,
    /// Byte offset of each item in the object.
    placed: Vec<u64>,
    object: Bytes,
}

impl Flush {
    fn new(mut items: Vec<Pending>) -> Self {
        // Group by partition, keeping arrival order within each (stable sort).
        items.sort_by(|a, b| a.tp.cmp(&b.tp));
        let size: usize = items.iter().map(|p| p.batch.len()).sum();
        let mut object = BytesMut::with_capacity(size);
        let mut placed = Vec::with_capacity(items.len());
        for item in &items {
            placed.push(object.len() as u64);
            object.extend_from_slice(&item.batch);
        }
        Flush {
            key: Path::default(),
            items,
            placed,
            object: object.freeze(),
        }
    }
}

/// Held by a flush while it uploads; dropping it (also when the flush task unwinds) tells the
/// collector loop that the upload stage is free, so the next flush may start uploading while
/// this one waits for its commit.
struct UploadDone(mpsc::UnboundedSender<()>);

impl Drop for UploadDone {
    fn drop(&mut self) {
        // The loop may be gone already (shutdown): nothing to tell.
        let _ = self.0.send(());
    }
}

/// What the collector loop of [`Flusher::run`] holds between flushes.
struct Collecting {
    items: Vec<Pending>,
    bytes: usize,
    /// When the buffer's first batch arrived.
    first_arrival: Instant,
    /// `first_arrival` plus `max_delay`.
    deadline: Instant,
    /// When the last batch arrived.
    last_arrival: Instant,
}

impl Flusher {
    /// Collects batches and dispatches flushes (module docs: flush policy), each running as
    /// its own task: up to `max_in_flight` at once, each committing only after the one before
    /// it finished. When `closed` turns true the channel is closed: what it already holds is
    /// flushed at once (no waiting for the delay), then the task waits for its flushes,
    /// deletes its spare keys and ends.
    async fn run(
        self: Arc<Self>,
        mut rx: mpsc::UnboundedReceiver<Pending>,
        mut closed: tokio::sync::watch::Receiver<bool>,
    ) {
        let policy = self.config.flush;
        let depth = policy.max_in_flight.max(1);
        let mut flushes: JoinSet<()> = JoinSet::new();
        let mut buffer = Collecting {
            items: Vec::new(),
            bytes: 0,
            first_arrival: Instant::now(),
            deadline: Instant::now(),
            last_arrival: Instant::now(),
        };
        // The channel may still yield batches.
        let mut open = true;
        // Shutdown asked: flush everything at once.
        let mut closing = false;
        // Resolves when the last dispatched flush has finished.
        let mut previous: Option<oneshot::Receiver<()>> = None;
        // Flushes still uploading, and where each says it is done (its `UploadDone` dropped).
        let mut uploading = 0_usize;
        let (upload_done, mut uploads) = mpsc::unbounded_channel::<()>();
        loop {
            let now = Instant::now();
            if !buffer.items.is_empty() && flushes.len() < depth {
                let due = !open
                    || closing
                    || buffer.bytes >= policy.max_bytes
                    || now >= buffer.deadline
                    || (uploading == 0
                        && (now >= buffer.last_arrival + policy.quiet
                            || now >= buffer.first_arrival + policy.quiet * QUIET_CAP));
                if due {
                    let items = std::mem::take(&mut buffer.items);
                    buffer.bytes = 0;
                    let seq = self.dispatched.fetch_add(1, Ordering::SeqCst);
                    let (done, next) = oneshot::channel();
                    let after = previous.replace(next);
                    let collected = now.saturating_duration_since(buffer.first_arrival);
                    uploading += 1;
                    let uploaded = UploadDone(upload_done.clone());
                    flushes.spawn(
                        self.clone()
                            .flush(seq, items, collected, uploaded, after, done),
                    );
                    continue;
                }
            }
            if !open && buffer.items.is_empty() {
                break;
            }
            let wake = if buffer.items.is_empty() || flushes.len() >= depth {
                None
            } else if uploading == 0 {
                Some(
                    buffer
                        .deadline
                        .min(buffer.last_arrival + policy.quiet)
                        .min(buffer.first_arrival + policy.quiet * QUIET_CAP),
                )
            } else {
                Some(buffer.deadline)
            };
            // A full buffer waits for a free slot instead of growing the object; the byte
            // budget bounds what queues in the channel meanwhile.
            let receiving = open && buffer.bytes < policy.max_bytes;
            tokio::select! {
                biased;
                Some(_) = flushes.join_next(), if !flushes.is_empty() => {}
                Some(()) = uploads.recv(), if uploading > 0 => uploading -= 1,
                _ = closed.changed(), if !closing => {
                    closing = true;
                    rx.close();
                }
                next = rx.recv(), if receiving => match next {
                    Some(item) => {
                        let now = Instant::now();
                        if buffer.items.is_empty() {
                            buffer.first_arrival = now;
                            buffer.deadline = now + policy.max_delay;
                        }
                        buffer.last_arrival = now;
                        buffer.bytes += item.batch.len();
                        buffer.items.push(item);
                    }
                    None => open = false,
                },
                () = tokio::time::sleep_until(wake.unwrap_or(now)), if wake.is_some() => {}
            }
        }
        while flushes.join_next().await.is_some() {}
        self.release_spares().await;
    }

    /// One flush from upload to answers. `after` resolves once the flush dispatched before
    /// this one has finished (so has every earlier one); `done` is dropped when this one has.
    /// `collected` is how long its first batch waited in the buffer before the dispatch.
    async fn flush(
        self: Arc<Self>,
        seq: u64,
        items: Vec<Pending>,
        collected: Duration,
        upload: UploadDone,
        after: Option<oneshot::Receiver<()>>,
        done: oneshot::Sender<()>,
    ) {
        let started = Instant::now();
        let mut flush = Flush::new(items);
        let (batches, bytes) = (flush.items.len(), flush.object.len());
        let uploaded = self.upload(&mut flush).await;
        drop(upload);
        let upload_done = Instant::now();
        if let Err(error) = &uploaded {
            self.failed(seq, error.clone());
        }
        if let Some(after) = after {
            // Ok or dropped (a panicked flush): either way it has finished.
            let _ = after.await;
        }
        let turn = Instant::now();
        let key = flush.key.to_string();
        match uploaded {
            Err(error) => self.fail(flush, error),
            Ok(()) => match self.behind_failure(seq) {
                Some(error) => self.fail(flush, error),
                None => {
                    if let Err(error) = self.commit(flush).await {
                        self.failed(seq, error);
                    }
                }
            },
        }
        self.keys().taken.remove(&key);
        drop(done);
        // Where a flush's time goes, for diagnosis (`--log strom_cluster::writer=debug`).
        let ended = Instant::now();
        tracing::debug!(
            seq,
            batches,
            bytes,
            collected_us = micros(collected),
            upload_us = micros(upload_done - started),
            wait_previous_us = micros(turn - upload_done),
            commit_us = micros(ended - turn),
            "flush finished"
        );
    }

    /// Records that flush `seq` failed on its own: every flush dispatched so far after it
    /// fails with it.
    fn failed(&self, seq: u64, error: Error) {
        let dispatched = self.dispatched.load(Ordering::SeqCst);
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .record(seq, dispatched, error);
    }

    /// The error of an earlier flush that failed after flush `seq` was dispatched, if any.
    /// Called once every earlier flush has finished.
    fn behind_failure(&self, seq: u64) -> Option<Error> {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .behind(seq)
    }

    fn keys(&self) -> std::sync::MutexGuard<'_, Keys> {
        self.keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn count(&self, f: impl FnOnce(&mut WriterStats)) {
        f(&mut self
            .stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner));
    }

    /// Bounds `stage` by the flush timeout; on timeout the stage's connection is reopened, as
    /// it may be mid-statement or mid-transaction with an unknown outcome.
    async fn bounded<T>(
        &self,
        db: &Db,
        stage: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let timeout = self.config.flush.timeout;
        match tokio::time::timeout(timeout, stage).await {
            Ok(result) => result,
            Err(_) => {
                db.reset().await;
                Err(Error::Timeout { waited: timeout })
            }
        }
    }

    /// Steps 1 and 2 of the module docs: take a reserved key (reserving one if no fresh spare
    /// is left), then PUT the object under it, attempted up to `put_attempts` times.
    async fn upload(&self, flush: &mut Flush) -> Result<()> {
        let spare = {
            let mut keys = self.keys();
            match keys.spare.pop_front() {
                Some((key, refreshed)) if refreshed.elapsed() < SPARE_FRESH => {
                    keys.taken.insert(key.clone());
                    Some(key)
                }
                Some(stale) => {
                    // Spares are refreshed together: the others are as old.
                    keys.spare.push_front(stale);
                    None
                }
                None => None,
            }
        };
        let key = match spare {
            Some(key) => key,
            None => {
                self.bounded(&self.record_db, self.reserve_own_key())
                    .await?
            }
        };
        flush.key = Path::from(key.as_str());
        let size = flush.object.len() as u64;
        let attempts = self.config.flush.put_attempts.max(1);
        self.bounded(&self.record_db, async {
            let mut backoff = PUT_BACKOFF;
            let mut attempt = 1;
            loop {
                match self.store.put(&flush.key, flush.object.clone().into()).await {
                    Ok(_) => break,
                    Err(error) if attempt < attempts => {
                        tracing::debug!(%error, object = %flush.key, attempt, "object PUT failed, retrying");
                        self.count(|s| s.put_retries += 1);
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(PUT_BACKOFF_MAX);
                        attempt += 1;
                    }
                    Err(error) => return Err(Error::store(StoreOp::Put, Some(&key))(error)),
                }
            }
            self.count(|s| {
                s.objects += 1;
                s.bytes += size;
            });
            Ok(())
        })
        .await
    }

    /// A transaction of its own (no fresh spare left): refreshes the stale spares still
    /// pending, reserves this flush's key and new spares up to `max_in_flight`. Returns the
    /// flush's key, already marked taken.
    async fn reserve_own_key(&self) -> Result<String> {
        let own = object_key(&self.config.prefix).to_string();
        let stale: Vec<String> = self.keys().spare.drain(..).map(|(k, _)| k).collect();
        let wanted = self.config.flush.max_in_flight.max(1);
        let mut new = vec![own.clone()];
        new.extend((stale.len()..wanted).map(|_| object_key(&self.config.prefix).to_string()));
        let stamp = Instant::now();
        let conn = self.record_db.conn().await?;
        self.count(|s| s.transactions += 1);
        let valid =
            reserve_keys(&*conn, &stale, &new, &self.config.name, DbOp::RecordObject).await?;
        drop(conn);
        let mut keys = self.keys();
        keys.taken.insert(own.clone());
        keys.spare
            .extend(valid.into_iter().filter(|k| *k != own).map(|k| (k, stamp)));
        Ok(own)
    }

    /// Deletes the rows of unused spare keys (at shutdown), bounded by the flush timeout.
    async fn release_spares(&self) {
        let spare: Vec<String> = self.keys().spare.drain(..).map(|(k, _)| k).collect();
        if spare.is_empty() {
            return;
        }
        let released = self
            .bounded(&self.record_db, async {
                let conn = self.record_db.conn().await?;
                self.count(|s| s.transactions += 1);
                conn.execute(
                    "DELETE FROM strom_objects WHERE key = ANY($1) AND state = 'pending'",
                    &[&spare],
                )
                .await
                .map_err(Error::pg(DbOp::RecordObject))
            })
            .await;
        if let Err(error) = released {
            // The collector removes them after the grace period.
            tracing::debug!(%error, keys = spare.len(), "releasing spare object keys failed");
        }
    }

    /// Step 3 and 4: the commit transaction, then every waiter's answer. The error, if the
    /// whole flush failed.
    async fn commit(&self, flush: Flush) -> Result<()> {
        let key = flush.key.to_string();
        // Keys to refresh (spares and other flushes' keys), and how many new spares to reserve.
        let (refresh, new) = {
            let keys = self.keys();
            let refresh: Vec<String> = keys
                .spare
                .iter()
                .map(|(k, _)| k.clone())
                .chain(keys.taken.iter().filter(|k| **k != key).cloned())
                .collect();
            let wanted = self.config.flush.max_in_flight.max(1);
            let new: Vec<String> = (keys.spare.len()..wanted)
                .map(|_| object_key(&self.config.prefix).to_string())
                .collect();
            (refresh, new)
        };
        let stamp = Instant::now();
        let result = self
            .bounded(&self.commit_db, async {
                let mut conn = self.commit_db.conn().await?;
                self.count(|s| s.transactions += 1);
                commit(
                    &mut conn,
                    &flush,
                    &Reservation {
                        refresh: &refresh,
                        new: &new,
                        writer: &self.config.name,
                    },
                )
                .await
            })
            .await;
        let (outcomes, valid) = match result {
            Ok(done) => done,
            Err(error) => {
                if matches!(error, Error::ObjectCollected { .. }) {
                    // The collector runs with a grace shorter than this writer's pace: its
                    // spares may be claimed too.
                    self.keys().spare.clear();
                }
                self.fail(flush, error.clone());
                return Err(error);
            }
        };
        if let Some(valid) = valid {
            let valid: HashSet<String> = valid.into_iter().collect();
            let mut keys = self.keys();
            // Spares the collector claimed are gone; the others are fresh again (spares
            // reserved meanwhile by an upload were not part of this refresh).
            keys.spare
                .retain(|(k, _)| valid.contains(k) || !refresh.contains(k));
            for (k, refreshed) in &mut keys.spare {
                if refresh.contains(k) {
                    *refreshed = stamp;
                }
            }
            keys.spare.extend(
                new.into_iter()
                    .filter(|k| valid.contains(k))
                    .map(|k| (k, stamp)),
            );
        }
        self.count(|s| s.commits += 1);
        let Flush {
            key, items, placed, ..
        } = flush;
        for ((item, outcome), offset) in items.into_iter().zip(outcomes).zip(placed) {
            if let (Some(cache), Ok(appended)) = (&self.cache, &outcome)
                && !appended.duplicate
            {
                let entry = IndexEntry {
                    base_offset: appended.base_offset,
                    last_offset: appended.last_offset,
                    object_key: key.to_string(),
                    byte_offset: offset,
                    byte_length: item.batch.len() as u64,
                    max_timestamp: item.header.max_timestamp,
                };
                if let Ok(batch) = served(&item.tp, &entry, &item.batch) {
                    cache.insert(entry.range_key(), batch);
                }
            }
            let _ = item.reply.send(outcome);
        }
        Ok(())
    }

    fn fail(&self, flush: Flush, error: Error) {
        self.count(|s| s.failed_flushes += 1);
        tracing::warn!(%error, object = %flush.key, batches = flush.items.len(), "flush failed");
        for item in flush.items {
            let _ = item.reply.send(Err(error.clone()));
        }
    }
}

/// Keys a commit transaction refreshes and reserves for its writer.
struct Reservation<'a> {
    /// Reserved keys whose `created_at` is set to now (those still pending).
    refresh: &'a [String],
    /// New keys to reserve.
    new: &'a [String],
    /// The writer's name, recorded with each row.
    writer: &'a str,
}

/// Refreshes the rows of `refresh` still pending and inserts `new` ones as pending; one
/// statement. Returns the keys of both that are reserved now.
async fn reserve_keys(
    conn: &impl tokio_postgres::GenericClient,
    refresh: &[String],
    new: &[String],
    writer: &str,
    op: DbOp,
) -> Result<Vec<String>> {
    let rows = conn
        .query_typed(
            "WITH refreshed AS (
                 UPDATE strom_objects SET created_at = now()
                 WHERE key = ANY($1) AND state = 'pending' RETURNING key),
             reserved AS (
                 INSERT INTO strom_objects (key, size, state, writer)
                 SELECT k, 0, 'pending', $3 FROM unnest($2::text[]) AS k RETURNING key)
             SELECT key FROM refreshed UNION ALL SELECT key FROM reserved",
            &[
                (&refresh, Type::TEXT_ARRAY),
                (&new, Type::TEXT_ARRAY),
                (&writer, Type::TEXT),
            ],
        )
        .await
        .map_err(Error::pg(op))?;
    rows.iter()
        .map(|r| r.try_get(0).map_err(Error::pg(op)))
        .collect()
}

/// A fresh object key: time-ordered uuid, so listings sort by creation.
fn object_key(prefix: &str) -> Path {
    let name = format!("data/{}.batches", uuid::Uuid::now_v7());
    if prefix.is_empty() {
        Path::from(name)
    } else {
        Path::from(format!("{prefix}/{name}"))
    }
}

/// Kafka's sequence arithmetic: sequences wrap from `i32::MAX` to 0.
fn add_sequence(sequence: i32, increment: i32) -> i32 {
    if sequence > i32::MAX - increment {
        increment - (i32::MAX - sequence) - 1
    } else {
        sequence + increment
    }
}

#[derive(Debug, Clone, Copy)]
struct ProducerState {
    epoch: i16,
    /// -1 when no batch of `epoch` was written (its epoch came from a transaction marker).
    last_sequence: i32,
    last_offset: i64,
    /// First offset of the producer's open transaction on the partition.
    txn_first_offset: Option<i64>,
    /// Coordinator epoch of the producer's last transaction marker, -1 if none.
    coordinator_epoch: i32,
}

/// A transaction an ABORT marker ended, for `strom_aborted_txns`.
struct AbortedRow<'a> {
    tp: &'a TopicPartition,
    producer_id: i64,
    first_offset: i64,
    last_offset: i64,
}

/// One accepted batch, as it goes into `strom_batches`.
struct Row<'a> {
    item: &'a Pending,
    byte_offset: i64,
    base_offset: i64,
    last_offset: i64,
    last_sequence: i32,
}

/// The commit transaction of `flush` (module docs, step 3): each batch's outcome, and the keys
/// the reservation left reserved (`None` when nothing was committed and the transaction was
/// rolled back).
async fn commit(
    conn: &mut tokio_postgres::Client,
    flush: &Flush,
    reservation: &Reservation<'_>,
) -> Result<(Vec<Result<Appended>>, Option<Vec<String>>)> {
    let key = flush.key.as_ref();
    let (items, placed) = (&flush.items, &flush.placed);
    let size = flush.object.len() as i64;
    let pg = || Error::pg(DbOp::Commit);
    let tx = conn.transaction().await.map_err(pg())?;

    // Round trips are what a commit costs (a statement's own work here is small): the
    // statements below go out typed (parse, bind and execute in one message, no separate
    // prepare) and those whose parameters do not depend on an earlier answer are pipelined
    // — sent together in this order on the first poll (`biased`: polled in the order written),
    // executed by the server in that order.
    // So the transaction is four round trips (BEGIN, claim+lock+read, writes, COMMIT) plus a
    // duplicate lookup for a retried batch.

    // Lock the touched partitions in (topic, partition) order: no deadlock between writers.
    let mut topics: Vec<&str> = Vec::new();
    let mut partitions: Vec<i32> = Vec::new();
    for item in items {
        let last = topics.last().zip(partitions.last());
        if last != Some((&item.tp.topic.as_str(), &item.tp.partition)) {
            topics.push(&item.tp.topic);
            partitions.push(item.tp.partition);
        }
    }
    // Producer states of every idempotent producer in this flush (read after the lock: the
    // server runs the pipelined statements in order).
    let mut keys: Vec<(&str, i32, i64)> = items
        .iter()
        .filter(|i| i.header.producer_id >= 0)
        .map(|i| (i.tp.topic.as_str(), i.tp.partition, i.header.producer_id))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let state_topics: Vec<&str> = keys.iter().map(|k| k.0).collect();
    let state_partitions: Vec<i32> = keys.iter().map(|k| k.1).collect();
    let state_ids: Vec<i64> = keys.iter().map(|k| k.2).collect();
    let claim = async {
        tx.execute_typed(
            "UPDATE strom_objects SET state = 'committed', size = $2
             WHERE key = $1 AND state = 'pending'",
            &[(&key, Type::TEXT), (&size, Type::INT8)],
        )
        .await
    };
    let lock = async {
        tx.query_typed(
            "SELECT p.topic, p.partition, p.next_offset, p.sealed_at IS NOT NULL
             FROM strom_partitions p
             JOIN unnest($1::text[], $2::int4[]) AS t(topic, partition)
               ON p.topic = t.topic AND p.partition = t.partition
             ORDER BY p.topic, p.partition
             FOR UPDATE OF p",
            &[(&topics, Type::TEXT_ARRAY), (&partitions, Type::INT4_ARRAY)],
        )
        .await
    };
    let read_states = async {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        tx.query_typed(
            "SELECT s.topic, s.partition, s.producer_id, s.producer_epoch, s.last_sequence,
                    s.last_offset, s.txn_first_offset, s.coordinator_epoch
             FROM strom_producer_states s
             JOIN unnest($1::text[], $2::int4[], $3::int8[]) AS k(topic, partition, id)
               ON s.topic = k.topic AND s.partition = k.partition AND s.producer_id = k.id",
            &[
                (&state_topics, Type::TEXT_ARRAY),
                (&state_partitions, Type::INT4_ARRAY),
                (&state_ids, Type::INT8_ARRAY),
            ],
        )
        .await
    };
    let (claimed, rows, state_rows) =
        tokio::try_join!(biased; claim, lock, read_states).map_err(pg())?;
    if claimed != 1 {
        return Err(Error::ObjectCollected {
            key: key.to_owned(),
        });
    }
    let mut next_offsets: BTreeMap<TopicPartition, i64> = BTreeMap::new();
    // Partitions sealed by resharding (Kinesis): their data batches are refused.
    let mut sealed: BTreeSet<TopicPartition> = BTreeSet::new();
    for row in &rows {
        let tp = TopicPartition::new(
            row.try_get::<_, String>(0).map_err(pg())?,
            row.try_get(1).map_err(pg())?,
        );
        if row.try_get::<_, bool>(3).map_err(pg())? {
            sealed.insert(tp.clone());
        }
        next_offsets.insert(tp, row.try_get(2).map_err(pg())?);
    }

    let mut states: HashMap<(TopicPartition, i64), ProducerState> = HashMap::new();
    for row in &state_rows {
        let tp = TopicPartition::new(
            row.try_get::<_, String>(0).map_err(pg())?,
            row.try_get(1).map_err(pg())?,
        );
        let state = ProducerState {
            epoch: row.try_get(3).map_err(pg())?,
            last_sequence: row.try_get(4).map_err(pg())?,
            last_offset: row.try_get(5).map_err(pg())?,
            txn_first_offset: row.try_get(6).map_err(pg())?,
            coordinator_epoch: row.try_get(7).map_err(pg())?,
        };
        states.insert((tp, row.try_get(2).map_err(pg())?), state);
    }

    let mut outcomes = Vec::with_capacity(items.len());
    let mut accepted: Vec<Row<'_>> = Vec::new();
    let mut touched_states: BTreeMap<(TopicPartition, i64), ProducerState> = BTreeMap::new();
    let mut aborted: Vec<AbortedRow<'_>> = Vec::new();
    for (item, &byte_offset) in items.iter().zip(placed) {
        let h = &item.header;
        let Some(next) = next_offsets.get_mut(&item.tp) else {
            outcomes.push(Err(Error::UnknownPartition {
                topic: item.tp.topic.clone(),
                partition: item.tp.partition,
            }));
            continue;
        };
        if !h.is_control() && sealed.contains(&item.tp) {
            outcomes.push(Err(Error::PartitionSealed {
                topic: item.tp.topic.clone(),
                partition: item.tp.partition,
            }));
            continue;
        }
        let last_sequence = add_sequence(h.base_sequence, h.last_offset_delta);
        // A transaction marker (a control batch of a producer; one of a type this version does
        // not know is stored without touching the producer's state, as Kafka does).
        let marker = (h.producer_id >= 0 && h.is_control())
            .then(|| strom_record::parse_marker(&item.batch).ok())
            .flatten();
        let state_key = (item.tp.clone(), h.producer_id);
        if marker.is_some() {
            if let Some(state) = states.get(&state_key)
                && h.producer_epoch < state.epoch
            {
                outcomes.push(Err(Error::ProducerFenced {
                    topic: item.tp.topic.clone(),
                    partition: item.tp.partition,
                    producer_id: h.producer_id,
                    producer_epoch: h.producer_epoch,
                    current_epoch: state.epoch,
                }));
                continue;
            }
        } else if h.producer_id >= 0 && !h.is_control() {
            // A retry of a batch accepted earlier in this same flush.
            let earlier = accepted.iter().find(|r| {
                r.item.tp == item.tp
                    && r.item.header.producer_id == h.producer_id
                    && r.item.header.producer_epoch == h.producer_epoch
                    && r.item.header.base_sequence == h.base_sequence
                    && r.last_sequence == last_sequence
            });
            if let Some(r) = earlier {
                outcomes.push(Ok(Appended {
                    base_offset: r.base_offset,
                    last_offset: r.last_offset,
                    duplicate: true,
                }));
                continue;
            }
            if !h.is_transactional()
                && states
                    .get(&state_key)
                    .is_some_and(|s| s.txn_first_offset.is_some())
            {
                outcomes.push(Err(Error::InvalidTxnState {
                    topic: item.tp.topic.clone(),
                    partition: item.tp.partition,
                    producer_id: h.producer_id,
                }));
                continue;
            }
            if let Some(state) = states.get(&state_key).copied() {
                match check_sequence(&tx, item, state, last_sequence).await? {
                    Check::Accept => {}
                    Check::Duplicate(appended) => {
                        outcomes.push(Ok(appended));
                        continue;
                    }
                    Check::Reject(error) => {
                        outcomes.push(Err(error));
                        continue;
                    }
                }
            } else if h.base_sequence != 0 {
                // A producer's first batch on a partition starts at sequence 0 (also after an
                // epoch bump), and producer states are never expired here: a later first
                // batch means earlier ones failed (a flush whose upload failed) and must not
                // be overtaken, or the producer's order would be broken.
                outcomes.push(Err(Error::OutOfOrderSequence {
                    topic: item.tp.topic.clone(),
                    partition: item.tp.partition,
                    producer_id: h.producer_id,
                    producer_epoch: h.producer_epoch,
                    expected: 0,
                    received: h.base_sequence,
                }));
                continue;
            }
        }
        let base_offset = *next;
        let last_offset = base_offset + i64::from(h.last_offset_delta);
        *next = last_offset + 1;
        let previous = states.get(&state_key).copied();
        let state = if let Some(m) = marker {
            // Closes the producer's open transaction, if any (a marker for a producer with no
            // open transaction completes nothing, as in Kafka); a newer epoch becomes the
            // producer's (the coordinator bumps it when it aborts), and its sequences start
            // again at 0.
            let txn_first_offset = previous.and_then(|s| s.txn_first_offset);
            if let Some(first_offset) = txn_first_offset
                && m.control_type == strom_record::ControlType::Abort
            {
                aborted.push(AbortedRow {
                    tp: &item.tp,
                    producer_id: h.producer_id,
                    first_offset,
                    last_offset: base_offset,
                });
            }
            let last_sequence = match previous {
                Some(s) if s.epoch == h.producer_epoch => s.last_sequence,
                _ => -1,
            };
            Some(ProducerState {
                epoch: h.producer_epoch,
                last_sequence,
                last_offset,
                txn_first_offset: None,
                coordinator_epoch: m.coordinator_epoch,
            })
        } else if h.producer_id >= 0 && !h.is_control() {
            let open = previous.and_then(|s| s.txn_first_offset);
            Some(ProducerState {
                epoch: h.producer_epoch,
                last_sequence,
                last_offset,
                // A transactional batch opens the producer's transaction unless one is open.
                txn_first_offset: if h.is_transactional() {
                    open.or(Some(base_offset))
                } else {
                    open
                },
                coordinator_epoch: previous.map_or(-1, |s| s.coordinator_epoch),
            })
        } else {
            None
        };
        if let Some(state) = state {
            states.insert(state_key.clone(), state);
            touched_states.insert(state_key, state);
        }
        accepted.push(Row {
            item,
            byte_offset: byte_offset as i64,
            base_offset,
            last_offset,
            last_sequence,
        });
        outcomes.push(Ok(Appended {
            base_offset,
            last_offset,
            duplicate: false,
        }));
    }
    if accepted.is_empty() {
        // Nothing to index: leave the object pending for the collector.
        tx.rollback().await.map_err(pg())?;
        return Ok((outcomes, None));
    }

    // The writes, pipelined (none needs another's answer).
    let st_topic: Vec<&str> = touched_states.keys().map(|k| k.0.topic.as_str()).collect();
    let st_partition: Vec<i32> = touched_states.keys().map(|k| k.0.partition).collect();
    let st_id: Vec<i64> = touched_states.keys().map(|k| k.1).collect();
    let st_epoch: Vec<i16> = touched_states.values().map(|s| s.epoch).collect();
    let st_seq: Vec<i32> = touched_states.values().map(|s| s.last_sequence).collect();
    let st_off: Vec<i64> = touched_states.values().map(|s| s.last_offset).collect();
    let st_txn: Vec<Option<i64>> = touched_states
        .values()
        .map(|s| s.txn_first_offset)
        .collect();
    let st_coord: Vec<i32> = touched_states
        .values()
        .map(|s| s.coordinator_epoch)
        .collect();
    let write_states = async {
        if touched_states.is_empty() {
            return Ok(0);
        }
        tx.execute_typed(
            "INSERT INTO strom_producer_states AS s
                 (topic, partition, producer_id, producer_epoch, last_sequence, last_offset,
                  txn_first_offset, coordinator_epoch)
             SELECT * FROM unnest($1::text[], $2::int4[], $3::int8[], $4::int2[], $5::int4[],
                                  $6::int8[], $7::int8[], $8::int4[])
             ON CONFLICT (topic, partition, producer_id) DO UPDATE SET
                 producer_epoch = EXCLUDED.producer_epoch,
                 last_sequence = EXCLUDED.last_sequence,
                 last_offset = EXCLUDED.last_offset,
                 txn_first_offset = EXCLUDED.txn_first_offset,
                 coordinator_epoch = EXCLUDED.coordinator_epoch,
                 updated_at = now()",
            &[
                (&st_topic, Type::TEXT_ARRAY),
                (&st_partition, Type::INT4_ARRAY),
                (&st_id, Type::INT8_ARRAY),
                (&st_epoch, Type::INT2_ARRAY),
                (&st_seq, Type::INT4_ARRAY),
                (&st_off, Type::INT8_ARRAY),
                (&st_txn, Type::INT8_ARRAY),
                (&st_coord, Type::INT4_ARRAY),
            ],
        )
        .await
    };
    let ab_topic: Vec<&str> = aborted.iter().map(|a| a.tp.topic.as_str()).collect();
    let ab_partition: Vec<i32> = aborted.iter().map(|a| a.tp.partition).collect();
    let ab_id: Vec<i64> = aborted.iter().map(|a| a.producer_id).collect();
    let ab_first: Vec<i64> = aborted.iter().map(|a| a.first_offset).collect();
    let ab_last: Vec<i64> = aborted.iter().map(|a| a.last_offset).collect();
    let write_aborted = async {
        if aborted.is_empty() {
            return Ok(0);
        }
        tx.execute_typed(
            "INSERT INTO strom_aborted_txns
                 (topic, partition, producer_id, first_offset, last_offset)
             SELECT * FROM unnest($1::text[], $2::int4[], $3::int8[], $4::int8[], $5::int8[])",
            &[
                (&ab_topic, Type::TEXT_ARRAY),
                (&ab_partition, Type::INT4_ARRAY),
                (&ab_id, Type::INT8_ARRAY),
                (&ab_first, Type::INT8_ARRAY),
                (&ab_last, Type::INT8_ARRAY),
            ],
        )
        .await
    };
    let touched: BTreeMap<&TopicPartition, i64> = accepted
        .iter()
        .map(|r| (&r.item.tp, r.last_offset + 1))
        .collect();
    let t: Vec<&str> = touched.keys().map(|tp| tp.topic.as_str()).collect();
    let p: Vec<i32> = touched.keys().map(|tp| tp.partition).collect();
    let n: Vec<i64> = touched.values().copied().collect();
    let notes: Vec<String> = touched.iter().map(|(tp, n)| payload(tp, *n)).collect();
    let advance = async {
        tx.execute_typed(
            "UPDATE strom_partitions p SET next_offset = u.next
             FROM unnest($1::text[], $2::int4[], $3::int8[]) AS u(topic, partition, next)
             WHERE p.topic = u.topic AND p.partition = u.partition",
            &[
                (&t, Type::TEXT_ARRAY),
                (&p, Type::INT4_ARRAY),
                (&n, Type::INT8_ARRAY),
            ],
        )
        .await
    };
    let notify = async {
        tx.execute_typed(
            "SELECT pg_notify($1, n) FROM unnest($2::text[]) AS n",
            &[(&CHANNEL, Type::TEXT), (&notes, Type::TEXT_ARRAY)],
        )
        .await
    };
    let (inserted, written, aborts, advanced, notified, reserved) = tokio::join!(
        biased;
        insert_batches(&tx, key, &accepted),
        write_states,
        write_aborted,
        advance,
        notify,
        reserve_keys(
            &tx,
            reservation.refresh,
            reservation.new,
            reservation.writer,
            DbOp::Commit,
        ),
    );
    // The first error in pipeline order is the cause; later statements fail as "aborted".
    inserted?;
    written.map_err(pg())?;
    aborts.map_err(pg())?;
    advanced.map_err(pg())?;
    notified.map_err(pg())?;
    let reserved = reserved?;
    tx.commit().await.map_err(pg())?;
    Ok((outcomes, Some(reserved)))
}

async fn insert_batches(
    tx: &tokio_postgres::Transaction<'_>,
    key: &str,
    rows: &[Row<'_>],
) -> Result<()> {
    let col = |f: &dyn Fn(&Row<'_>) -> i64| rows.iter().map(f).collect::<Vec<i64>>();
    let topic: Vec<&str> = rows.iter().map(|r| r.item.tp.topic.as_str()).collect();
    let partition: Vec<i32> = rows.iter().map(|r| r.item.tp.partition).collect();
    let base = col(&|r| r.base_offset);
    let last = col(&|r| r.last_offset);
    let byte_offset = col(&|r| r.byte_offset);
    let len: Vec<i32> = rows
        .iter()
        .map(|r| i32::try_from(r.item.batch.len()).unwrap_or(i32::MAX))
        .collect();
    let max_ts = col(&|r| r.item.header.max_timestamp);
    let pid = col(&|r| r.item.header.producer_id);
    let epoch: Vec<i16> = rows.iter().map(|r| r.item.header.producer_epoch).collect();
    let base_seq: Vec<i32> = rows.iter().map(|r| r.item.header.base_sequence).collect();
    let last_seq: Vec<i32> = rows.iter().map(|r| r.last_sequence).collect();
    let txn: Vec<bool> = rows
        .iter()
        .map(|r| r.item.header.is_transactional())
        .collect();
    let control: Vec<bool> = rows.iter().map(|r| r.item.header.is_control()).collect();
    tx.execute_typed(
        "INSERT INTO strom_batches (topic, partition, base_offset, last_offset, object_key,
             byte_offset, byte_length, max_timestamp, producer_id, producer_epoch, base_sequence,
             last_sequence, is_transactional, is_control)
         SELECT u.topic, u.partition, u.base, u.last, $5, u.byte_offset, u.len, u.max_ts, u.pid,
                u.epoch, u.base_seq, u.last_seq, u.txn, u.control
         FROM unnest($1::text[], $2::int4[], $3::int8[], $4::int8[], $6::int8[], $7::int4[],
                     $8::int8[], $9::int8[], $10::int2[], $11::int4[], $12::int4[], $13::bool[],
                     $14::bool[])
              AS u(topic, partition, base, last, byte_offset, len, max_ts, pid, epoch, base_seq,
                   last_seq, txn, control)",
        &[
            (&topic, Type::TEXT_ARRAY),
            (&partition, Type::INT4_ARRAY),
            (&base, Type::INT8_ARRAY),
            (&last, Type::INT8_ARRAY),
            (&key, Type::TEXT),
            (&byte_offset, Type::INT8_ARRAY),
            (&len, Type::INT4_ARRAY),
            (&max_ts, Type::INT8_ARRAY),
            (&pid, Type::INT8_ARRAY),
            (&epoch, Type::INT2_ARRAY),
            (&base_seq, Type::INT4_ARRAY),
            (&last_seq, Type::INT4_ARRAY),
            (&txn, Type::BOOL_ARRAY),
            (&control, Type::BOOL_ARRAY),
        ],
    )
    .await
    .map_err(Error::pg(DbOp::Commit))?;
    Ok(())
}

enum Check {
    Accept,
    Duplicate(Appended),
    Reject(Error),
}

/// What Kafka's idempotence rules say about a batch, given the producer's last state on the
/// partition (pure; [`check_sequence`] does the duplicate lookup it may ask for).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Next in sequence (or first of a bumped epoch): append it.
    Accept,
    /// Out of sequence in the current epoch: a duplicate if an earlier batch had exactly these
    /// sequences, else out of order.
    DuplicateOrOutOfOrder { expected: i32 },
    /// Out of sequence after an epoch bump (must start at 0).
    OutOfOrder { expected: i32 },
    /// Older epoch than the one on record.
    Fenced,
}

fn verdict(state: ProducerState, epoch: i16, base_sequence: i32) -> Verdict {
    if epoch < state.epoch {
        return Verdict::Fenced;
    }
    let expected = if epoch > state.epoch {
        // A bumped epoch starts its sequences again.
        0
    } else {
        add_sequence(state.last_sequence, 1)
    };
    if base_sequence == expected {
        Verdict::Accept
    } else if epoch == state.epoch {
        Verdict::DuplicateOrOutOfOrder { expected }
    } else {
        Verdict::OutOfOrder { expected }
    }
}

/// Kafka's idempotence rules against the producer's last state on this partition.
async fn check_sequence(
    tx: &tokio_postgres::Transaction<'_>,
    item: &Pending,
    state: ProducerState,
    last_sequence: i32,
) -> Result<Check> {
    let h = &item.header;
    let out_of_order = |expected| {
        Check::Reject(Error::OutOfOrderSequence {
            topic: item.tp.topic.clone(),
            partition: item.tp.partition,
            producer_id: h.producer_id,
            producer_epoch: h.producer_epoch,
            expected,
            received: h.base_sequence,
        })
    };
    let expected = match verdict(state, h.producer_epoch, h.base_sequence) {
        Verdict::Accept => return Ok(Check::Accept),
        Verdict::Fenced => {
            return Ok(Check::Reject(Error::ProducerFenced {
                topic: item.tp.topic.clone(),
                partition: item.tp.partition,
                producer_id: h.producer_id,
                producer_epoch: h.producer_epoch,
                current_epoch: state.epoch,
            }));
        }
        Verdict::OutOfOrder { expected } => return Ok(out_of_order(expected)),
        Verdict::DuplicateOrOutOfOrder { expected } => expected,
    };
    let row = tx
        .query_opt(
            "SELECT base_offset, last_offset FROM strom_batches
             WHERE topic = $1 AND partition = $2 AND producer_id = $3
               AND producer_epoch = $4 AND base_sequence = $5 AND last_sequence = $6",
            &[
                &item.tp.topic,
                &item.tp.partition,
                &h.producer_id,
                &h.producer_epoch,
                &h.base_sequence,
                &last_sequence,
            ],
        )
        .await
        .map_err(Error::pg(DbOp::Commit))?;
    match row {
        Some(row) => Ok(Check::Duplicate(Appended {
            base_offset: row.try_get(0).map_err(Error::pg(DbOp::Commit))?,
            last_offset: row.try_get(1).map_err(Error::pg(DbOp::Commit))?,
            duplicate: true,
        })),
        None => Ok(out_of_order(expected)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_wrap_like_kafka() {
        assert_eq!(add_sequence(0, 4), 4);
        assert_eq!(add_sequence(i32::MAX, 1), 0);
        assert_eq!(add_sequence(i32::MAX - 1, 3), 1);
    }

    #[test]
    fn idempotence_verdicts_follow_kafka() {
        let state = |epoch, last_sequence| ProducerState {
            epoch,
            last_sequence,
            last_offset: 0,
            txn_first_offset: None,
            coordinator_epoch: -1,
        };
        use Verdict::*;
        let cases = [
            // (state epoch, last seq, batch epoch, base seq) -> verdict
            ((0, 4), (0, 5), Accept),
            ((0, 4), (0, 0), DuplicateOrOutOfOrder { expected: 5 }),
            ((0, 4), (0, 7), DuplicateOrOutOfOrder { expected: 5 }),
            ((0, i32::MAX), (0, 0), Accept),
            ((1, 4), (0, 5), Fenced),
            ((1, 4), (2, 0), Accept),
            ((1, 4), (2, 5), OutOfOrder { expected: 0 }),
            ((i16::MAX, 0), (i16::MAX, 1), Accept),
        ];
        for ((se, ss), (be, bs), want) in cases {
            assert_eq!(
                verdict(state(se, ss), be, bs),
                want,
                "{se}/{ss} vs {be}/{bs}"
            );
        }
    }

    proptest::proptest! {
        /// A flush fails with an earlier one exactly when that one failed on its own after
        /// the flush was dispatched, whatever the order in which failures are recorded (an
        /// upload may fail before earlier flushes commit) and however many are in flight.
        #[test]
        fn a_failure_takes_down_exactly_the_flushes_dispatched_behind_it(
            // Per flush: does it fail on its own, and how many flushes are dispatched after
            // it before its failure is recorded.
            flushes in proptest::collection::vec((proptest::bool::weighted(0.3), 0u64..5), 1..40),
        ) {
            let n = flushes.len() as u64;
            let cutoff = |p: u64| (p + 1 + flushes[p as usize].1).min(n);
            let own = |p: u64| flushes[p as usize].0;
            let mut failures = Failures::default();
            let mut recorded = vec![false; flushes.len()];
            for s in 0..n {
                // Failures recorded by now: every earlier flush's (they have finished), and
                // some later ones' (an upload that failed early).
                for p in 0..n {
                    let early = p > s && flushes[p as usize].1 % 2 == 0;
                    if own(p) && !recorded[p as usize] && (p < s || early) {
                        failures.record(p, cutoff(p), Error::WriterClosed);
                        recorded[p as usize] = true;
                    }
                }
                let model = (0..s).any(|p| own(p) && s < cutoff(p));
                proptest::prop_assert_eq!(failures.behind(s).is_some(), model, "flush {}", s);
            }
        }
    }

    #[test]
    fn object_keys_are_unique_and_under_the_prefix() {
        let a = object_key("p/q");
        let b = object_key("p/q");
        assert_ne!(a, b);
        assert!(a.as_ref().starts_with("p/q/data/"));
        assert!(object_key("").as_ref().starts_with("data/"));
    }
}
