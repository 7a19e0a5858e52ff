//! The write path against real PostgreSQL and moto: offsets from concurrent writers, idempotent
//! producers across writers, and outages of either engine.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::join_all;
use futures_util::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use strom_cluster::{Error, FlushConfig, TopicPartition, Writer, WriterConfig};
use support::{Env, STEP, batch, fast_flush, read_all, values};

async fn bounded<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(STEP, f).await.expect("step bounded")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_assign_gapless_unique_offsets_and_keep_each_writers_order() {
    let env = Env::start().await;
    env.create_topic("t", 3).await;
    const WRITERS: usize = 3;
    const BATCHES: usize = 25;
    const RECORDS: usize = 3;
    let writers: Vec<Writer> = (0..WRITERS)
        .map(|w| env.writer(&format!("w{w}"), fast_flush(), None))
        .collect();
    let mut tasks = Vec::new();
    for (w, writer) in writers.iter().enumerate() {
        for p in 0..3 {
            let writer = writer.clone();
            tasks.push(tokio::spawn(async move {
                // Pipelined, as a producer with several requests in flight: appends enter the
                // writer in call order.
                let appends = (0..BATCHES).map(|i| {
                    let writer = writer.clone();
                    async move {
                        let b = batch(None, &values(&format!("w{w}-p{p}-{i}"), RECORDS));
                        (i, writer.append(TopicPartition::new("t", p), b).await)
                    }
                });
                let results = join_all(appends).await;
                results
                    .into_iter()
                    .map(|(i, r)| (w, p, i, r.expect("append")))
                    .collect::<Vec<_>>()
            }));
        }
    }
    let mut acked = Vec::new();
    for task in tasks {
        acked.extend(bounded(task).await.unwrap());
    }
    let reader = env.reader(64 << 20);
    for p in 0..3 {
        let tp = TopicPartition::new("t", p);
        let records = bounded(read_all(&reader, &tp)).await;
        let offsets: Vec<i64> = records.iter().map(|r| r.0).collect();
        let expected: Vec<i64> = (0..(WRITERS * BATCHES * RECORDS) as i64).collect();
        assert_eq!(offsets, expected, "partition {p}: gapless from 0");
        let unique: HashSet<&String> = records.iter().map(|r| &r.1).collect();
        assert_eq!(unique.len(), records.len(), "no record twice");
        // Each writer's batches appear in the order it sent them.
        for w in 0..WRITERS {
            let seen: Vec<usize> = records
                .iter()
                .filter_map(|(_, v)| {
                    let rest = v.strip_prefix(&format!("w{w}-p{p}-"))?;
                    let (i, k) = rest.split_once('-')?;
                    (k == "0").then(|| i.parse().ok()).flatten()
                })
                .collect();
            assert_eq!(seen, (0..BATCHES).collect::<Vec<_>>(), "writer {w} order");
        }
        // Each acknowledgement names the offsets where its batch is.
        let by_offset: BTreeMap<i64, &String> = records.iter().map(|(o, v)| (*o, v)).collect();
        for (w, ap, i, a) in &acked {
            if *ap == p {
                assert_eq!(a.last_offset - a.base_offset, RECORDS as i64 - 1);
                assert_eq!(by_offset[&a.base_offset], &format!("w{w}-p{p}-{i}-0"));
                assert!(!a.duplicate);
            }
        }
    }
    let commits: u64 = writers.iter().map(|w| w.stats().commits).sum();
    assert!(
        commits < (WRITERS * BATCHES * 3) as u64,
        "flushes batch appends: {commits} commits"
    );
    for w in writers {
        w.shutdown(STEP).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_retry_through_another_writer_gets_the_original_offsets() {
    let env = Env::start().await;
    env.create_topic("t", 1).await;
    let tp = TopicPartition::new("t", 0);
    let db = env.db();
    let pid = strom_cluster::metadata::allocate_producer_id(&db)
        .await
        .unwrap();
    let pid2 = strom_cluster::metadata::allocate_producer_id(&db)
        .await
        .unwrap();
    assert_ne!(pid, pid2);
    let a = env.writer("a", fast_flush(), None);
    let b = env.writer("b", fast_flush(), None);

    let first = batch(Some((pid, 0, 0)), &values("s0", 3));
    let second = batch(Some((pid, 0, 3)), &values("s3", 2));
    let r1 = a.append(tp.clone(), first.clone()).await.unwrap();
    let r2 = a.append(tp.clone(), second.clone()).await.unwrap();
    assert_eq!((r1.base_offset, r1.last_offset, r2.base_offset), (0, 2, 3));

    // The producer "failed over" to writer b and retries both batches: original offsets.
    let d1 = b.append(tp.clone(), first.clone()).await.unwrap();
    let d2 = b.append(tp.clone(), second.clone()).await.unwrap();
    assert!(d1.duplicate && d2.duplicate);
    assert_eq!((d1.base_offset, d1.last_offset), (0, 2));
    assert_eq!((d2.base_offset, d2.last_offset), (3, 4));

    // Next in sequence through b is accepted; a gap is rejected without effect.
    let r3 = b
        .append(tp.clone(), batch(Some((pid, 0, 5)), &values("s5", 1)))
        .await
        .unwrap();
    assert_eq!(r3.base_offset, 5);
    let gap = b
        .append(tp.clone(), batch(Some((pid, 0, 9)), &values("s9", 1)))
        .await
        .unwrap_err();
    assert!(
        matches!(
            gap,
            Error::OutOfOrderSequence {
                expected: 6,
                received: 9,
                ..
            }
        ),
        "{gap}"
    );
    assert!(!gap.is_retriable());

    // A retry landing in the same flush as its original is recognised too.
    let slow = env.writer(
        "slow",
        FlushConfig {
            max_delay: Duration::from_millis(300),
            ..fast_flush()
        },
        None,
    );
    let twice = batch(Some((pid2, 0, 0)), &values("p2", 2));
    let (x, y) = tokio::join!(
        slow.append(tp.clone(), twice.clone()),
        slow.append(tp.clone(), twice.clone())
    );
    let (x, y) = (x.unwrap(), y.unwrap());
    assert_eq!(x.base_offset, y.base_offset);
    assert!(x.duplicate != y.duplicate);

    // A bumped epoch restarts sequences at 0 and fences the old epoch.
    let bumped = a
        .append(tp.clone(), batch(Some((pid, 1, 0)), &values("e1", 1)))
        .await
        .unwrap();
    assert_eq!(bumped.base_offset, 8);
    let fenced = a
        .append(tp.clone(), batch(Some((pid, 0, 6)), &values("old", 1)))
        .await
        .unwrap_err();
    assert!(
        matches!(
            fenced,
            Error::ProducerFenced {
                producer_epoch: 0,
                current_epoch: 1,
                ..
            }
        ),
        "{fenced}"
    );

    // An unknown partition fails only its own batch of a flush.
    let (bad, good) = tokio::join!(
        slow.append(TopicPartition::new("t", 7), batch(None, &values("x", 1))),
        slow.append(tp.clone(), batch(None, &values("ok", 1)))
    );
    assert!(matches!(
        bad,
        Err(Error::UnknownPartition { partition: 7, .. })
    ));
    assert_eq!(good.unwrap().base_offset, 9);

    let reader = env.reader(1 << 20);
    let got: Vec<String> = read_all(&reader, &tp)
        .await
        .into_iter()
        .map(|r| r.1)
        .collect();
    let want: Vec<String> = [
        values("s0", 3),
        values("s3", 2),
        values("s5", 1),
        values("p2", 2),
        values("e1", 1),
        values("ok", 1),
    ]
    .concat();
    assert_eq!(got, want, "every batch once, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_fails_appends_retriably_and_acknowledges_only_committed_batches() {
    let mut env = Env::start().await;
    env.create_topic("t", 2).await;
    let notifier = strom_cluster::Notifier::start(env.config.postgres_config().unwrap());
    let tp0 = TopicPartition::new("t", 0);
    let mut watch = notifier.subscribe(&tp0).await.unwrap();
    assert_eq!(*watch.borrow(), 0);

    let writer = Arc::new(env.writer("w", fast_flush(), None));
    // Producers append continuously while PostgreSQL is killed and restarted.
    let producer = {
        let writer = writer.clone();
        tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut failed = 0;
            for i in 0..120 {
                let p = i % 2;
                let v = vec![format!("r{i}")];
                let r = writer
                    .append(TopicPartition::new("t", p), batch(None, &v))
                    .await;
                match r {
                    Ok(a) => acked.push((p, a.base_offset, v[0].clone())),
                    Err(e) => {
                        assert!(e.is_retriable(), "{e}");
                        failed += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
            (acked, failed)
        })
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    tokio::task::block_in_place(|| env.pg.stop());
    tokio::time::sleep(Duration::from_millis(500)).await;
    tokio::task::block_in_place(|| env.pg.restart()).expect("restart postgres");
    let (acked, failed) = bounded(producer).await.unwrap();
    assert!(failed > 0, "the outage was observed");
    assert!(!acked.is_empty());

    // Works again after the restart, and long polls wake on the commit.
    let before = *watch.borrow_and_update();
    let last = bounded(writer.append(tp0.clone(), batch(None, &values("after", 1))))
        .await
        .expect("append after restart");
    bounded(async {
        while *watch.borrow_and_update() <= last.base_offset {
            watch.changed().await.unwrap();
        }
    })
    .await;
    assert!(*watch.borrow() > before);

    // Every acknowledged record is where its acknowledgement said, exactly once.
    let reader = env.reader(1 << 20);
    for p in 0..2 {
        let tp = TopicPartition::new("t", p);
        let records = read_all(&reader, &tp).await;
        let offsets: Vec<i64> = records.iter().map(|r| r.0).collect();
        assert_eq!(offsets, (0..records.len() as i64).collect::<Vec<_>>());
        let by_offset: BTreeMap<i64, &String> = records.iter().map(|(o, v)| (*o, v)).collect();
        for (ap, offset, v) in &acked {
            if *ap == p {
                assert_eq!(by_offset.get(offset), Some(&v), "acked {v} at {offset}");
                assert_eq!(records.iter().filter(|r| &r.1 == v).count(), 1);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_store_outage_fails_appends_retriably_then_recovers() {
    let mut env = Env::start().await;
    env.create_topic("t", 1).await;
    let tp = TopicPartition::new("t", 0);
    let writer = env.writer("w", fast_flush(), None);
    assert_eq!(
        writer
            .append(tp.clone(), batch(None, &values("a", 1)))
            .await
            .unwrap()
            .base_offset,
        0
    );

    tokio::task::block_in_place(|| env.s3.stop());
    let err = bounded(writer.append(tp.clone(), batch(None, &values("lost", 1))))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ObjectStore { .. }), "{err}");
    assert!(err.is_retriable());

    tokio::task::block_in_place(|| {
        env.s3.restart().expect("restart moto");
        env.s3.create_bucket(support::BUCKET).expect("bucket");
    });
    let ok = bounded(writer.append(tp.clone(), batch(None, &values("b", 1))))
        .await
        .unwrap();
    assert_eq!(ok.base_offset, 1, "the failed batch took no offset");
    let stats = writer.stats();
    assert_eq!((stats.commits, stats.failed_flushes), (2, 1));
    // The writer's unused spare keys go with it, so only the failed object is left pending.
    bounded(writer.shutdown(STEP)).await.unwrap();
    let pending: i64 = env
        .db()
        .conn()
        .await
        .unwrap()
        .query_one(
            "SELECT count(*) FROM strom_objects WHERE state = 'pending'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        pending, 1,
        "the failed upload is left for the orphan collector"
    );
    let status = strom_cluster::status::cluster_status(&env.db())
        .await
        .unwrap();
    let newest = strom_cluster::schema::MIGRATIONS
        .last()
        .map_or(0, |m| m.version);
    assert_eq!(status.schema_version, newest);
    assert_eq!(
        (status.uncommitted_objects, status.committed_objects),
        (1, 2)
    );
    assert!(status.oldest_uncommitted_secs.is_some_and(|s| s >= 0.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_object_store_holds_producers_back_instead_of_buffering_more() {
    let env = Env::start().await;
    env.create_topic("t", 1).await;
    let tp = TopicPartition::new("t", 0);
    let b = batch(None, &values("x", 10));
    let writer = env.writer(
        "w",
        FlushConfig {
            max_buffered_bytes: 2 * b.len(),
            ..fast_flush()
        },
        None,
    );
    env.s3.pause();
    let appends: Vec<_> = (0..3)
        .map(|_| {
            let (w, tp, b) = (writer.clone(), tp.clone(), b.clone());
            tokio::spawn(async move { w.append(tp, b).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        writer.buffered_bytes(),
        2 * b.len(),
        "two admitted, the third waits"
    );
    assert!(appends.iter().all(|a| !a.is_finished()));
    env.s3.resume();
    let mut ok = 0;
    for a in appends {
        match bounded(a).await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => assert!(e.is_retriable(), "{e}"),
        }
    }
    assert!(
        ok >= 1,
        "the waiting append went through once the store was back"
    );
    assert_eq!(writer.buffered_bytes(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_postgres_times_the_flush_out_retriably_and_the_writer_recovers() {
    let env = Env::start().await;
    env.create_topic("t", 1).await;
    let tp = TopicPartition::new("t", 0);
    let writer = env.writer(
        "w",
        FlushConfig {
            timeout: Duration::from_secs(1),
            ..fast_flush()
        },
        None,
    );
    let a = writer
        .append(tp.clone(), batch(None, &values("a", 1)))
        .await
        .unwrap();
    assert_eq!(a.base_offset, 0);

    env.pg.pause();
    let started = std::time::Instant::now();
    let err = bounded(writer.append(tp.clone(), batch(None, &values("stuck", 1))))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Timeout { .. }) && err.is_retriable(),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    env.pg.resume();

    let b = bounded(writer.append(tp.clone(), batch(None, &values("b", 1))))
        .await
        .expect("works once the database answers again");
    let reader = env.reader(1 << 20);
    let got: Vec<String> = read_all(&reader, &tp)
        .await
        .into_iter()
        .map(|r| r.1)
        .collect();
    assert_eq!(got, ["a-0", "b-0"], "the timed-out batch was not committed");
    assert_eq!(b.base_offset, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_flushes_at_once_and_stops_while_other_handles_live() {
    let env = Env::start().await;
    env.create_topic("t", 1).await;
    // A flush delay far longer than the test: only the shutdown can flush this batch in time.
    let slow = FlushConfig {
        max_delay: Duration::from_secs(60),
        ..fast_flush()
    };
    let writer = env.writer("w", slow, None);
    let other_handle = writer.clone();
    let tp = TopicPartition::new("t", 0);
    let enqueued = bounded(writer.enqueue(tp.clone(), batch(None, &values("s", 2))))
        .await
        .expect("enqueue");
    let started = std::time::Instant::now();
    bounded(writer.shutdown(Duration::from_secs(20)))
        .await
        .expect("the writer stops although another handle lives");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "stopped by the shutdown, not by a timeout"
    );
    let appended = bounded(enqueued.wait()).await.expect("flushed at shutdown");
    assert_eq!((appended.base_offset, appended.last_offset), (0, 1));
    // The remaining handle refuses new batches instead of buffering them for nobody.
    let refused = bounded(other_handle.append(tp.clone(), batch(None, &values("late", 1)))).await;
    assert!(
        matches!(refused, Err(Error::WriterClosed)),
        "late append: {refused:?}"
    );
    let reader = env.reader(1 << 20);
    assert_eq!(bounded(read_all(&reader, &tp)).await.len(), 2);
}

/// What [`FaultyStore`] does with a PUT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PutMode {
    /// Passes it on (after the store's delay).
    Normal,
    /// Holds it until the mode changes (a stalled store).
    Stall,
    /// Fails it at once.
    Fail,
}

/// An object store that delays, stalls or fails PUTs on demand and counts how many run at
/// once; every other call goes straight to the real store (moto).
#[derive(Debug)]
struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    mode: tokio::sync::watch::Sender<PutMode>,
    put_delay: Duration,
    active: AtomicUsize,
    max_active: AtomicUsize,
    failed: AtomicUsize,
}

impl FaultyStore {
    fn new(inner: Arc<dyn ObjectStore>, put_delay: Duration) -> Arc<Self> {
        Arc::new(FaultyStore {
            inner,
            mode: tokio::sync::watch::channel(PutMode::Normal).0,
            put_delay,
            active: AtomicUsize::new(0),
            max_active: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
        })
    }

    fn set(&self, mode: PutMode) {
        self.mode.send_replace(mode);
    }
}

impl std::fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FaultyStore({})", self.inner)
    }
}

/// Decrements the active-PUT count when a PUT ends or is dropped (timed out).
struct Active<'a>(&'a AtomicUsize);

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[async_trait::async_trait]
impl ObjectStore for FaultyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let now = self.active.fetch_add(1, Ordering::SeqCst) + 1;
        let _active = Active(&self.active);
        self.max_active.fetch_max(now, Ordering::SeqCst);
        let mut mode = self.mode.subscribe();
        loop {
            let current = *mode.borrow_and_update();
            match current {
                PutMode::Normal => break,
                PutMode::Fail => {
                    self.failed.fetch_add(1, Ordering::SeqCst);
                    return Err(object_store::Error::Generic {
                        store: "faulty",
                        source: "injected PUT failure".into(),
                    });
                }
                PutMode::Stall => {
                    if mode.changed().await.is_err() {
                        break;
                    }
                }
            }
        }
        tokio::time::sleep(self.put_delay).await;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[std::ops::Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

fn writer_on(env: &Env, store: Arc<dyn ObjectStore>, flush: FlushConfig) -> Writer {
    Writer::start(
        WriterConfig {
            flush,
            prefix: support::PREFIX.into(),
            name: "w".into(),
        },
        env.db(),
        store,
        None,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_flushes_keep_each_producers_order_and_idempotence() {
    let env = Env::start().await;
    env.create_topic("t", 3).await;
    // Slow PUTs and small flushes: several flushes are in flight at once.
    let store = FaultyStore::new(env.store.clone(), Duration::from_millis(150));
    let writer = writer_on(
        &env,
        store.clone(),
        FlushConfig {
            max_bytes: 2 << 10,
            max_in_flight: 4,
            ..fast_flush()
        },
    );
    let db = env.db();
    const PRODUCERS: usize = 6;
    const BATCHES: i32 = 30;
    let mut tasks = Vec::new();
    for n in 0..PRODUCERS {
        let pid = strom_cluster::metadata::allocate_producer_id(&db)
            .await
            .unwrap();
        let writer = writer.clone();
        // Two producers per partition.
        let tp = TopicPartition::new("t", (n % 3) as i32);
        tasks.push(tokio::spawn(async move {
            // Each batch carries 2 records, so sequence numbers advance by 2. Enqueued in
            // order (each takes its place before the next), answered later: a producer with
            // many requests in flight.
            let mut enqueued = Vec::new();
            for i in 0..BATCHES {
                let b = batch(Some((pid, 0, 2 * i)), &values(&format!("p{n}-{i}"), 2));
                enqueued.push(writer.enqueue(tp.clone(), b).await.expect("enqueue"));
                if i == 3 {
                    // A retry of batch 1 while later batches are in flight.
                    let retry = batch(Some((pid, 0, 2)), &values(&format!("p{n}-1"), 2));
                    enqueued.push(writer.enqueue(tp.clone(), retry).await.expect("enqueue"));
                }
            }
            let mut acked = Vec::new();
            for e in enqueued {
                acked.push(e.wait().await.expect("append"));
            }
            (n, tp, acked)
        }));
    }
    let mut results = Vec::new();
    for task in tasks {
        results.push(bounded(task).await.unwrap());
    }
    assert!(
        store.max_active.load(Ordering::SeqCst) >= 2,
        "flushes overlapped (max {} PUTs at once)",
        store.max_active.load(Ordering::SeqCst)
    );
    let reader = env.reader(64 << 20);
    let mut logs = BTreeMap::new();
    for p in 0..3 {
        let tp = TopicPartition::new("t", p);
        let records = bounded(read_all(&reader, &tp)).await;
        let offsets: Vec<i64> = records.iter().map(|r| r.0).collect();
        assert_eq!(
            offsets,
            (0..2 * 2 * BATCHES as i64).collect::<Vec<_>>(),
            "partition {p}: gapless, no duplicate"
        );
        logs.insert(p, records);
    }
    for (n, tp, acked) in results {
        let log = &logs[&tp.partition];
        // The producer's records, in log order, are its batches in sending order.
        let mine: Vec<&String> = log
            .iter()
            .filter(|(_, v)| v.starts_with(&format!("p{n}-")))
            .map(|(_, v)| v)
            .collect();
        let sent: Vec<String> = (0..BATCHES)
            .flat_map(|i| values(&format!("p{n}-{i}"), 2))
            .collect();
        assert_eq!(mine, sent.iter().collect::<Vec<_>>(), "producer {n} order");
        // Acknowledgements: the retry (5th) got batch 1's offsets; the others are where
        // their records are.
        assert!(acked[4].duplicate, "producer {n}: the retry is a duplicate");
        assert_eq!(acked[4].base_offset, acked[1].base_offset);
        for (k, a) in acked.iter().enumerate().filter(|(k, _)| *k != 4) {
            let i = if k < 4 { k } else { k - 1 };
            assert!(!a.duplicate);
            let at = log.iter().find(|(o, _)| *o == a.base_offset).map(|r| &r.1);
            assert_eq!(at, Some(&format!("p{n}-{i}-0")), "producer {n} batch {i}");
        }
    }
    writer.shutdown(STEP).await.unwrap();
}

/// The transaction id PostgreSQL hands out next, minus one (the call takes one itself).
async fn xid(db: &strom_cluster::Db) -> i64 {
    db.conn()
        .await
        .unwrap()
        .query_one("SELECT txid_current()", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_flush_is_one_postgres_transaction() {
    let env = Env::start().await;
    env.create_topic("t", 3).await;
    let writer = env.writer("w", fast_flush(), None);
    // The first flush also reserves the writer's first keys.
    for p in 0..3 {
        writer
            .append(TopicPartition::new("t", p), batch(None, &values("warm", 1)))
            .await
            .unwrap();
    }
    let before = writer.stats();
    let db = env.db();
    let xid_before = xid(&db).await;
    const ROUNDS: usize = 20;
    for r in 0..ROUNDS {
        let appends = (0..3).map(|p| {
            let b = batch(None, &values(&format!("r{r}"), 5));
            writer.append(TopicPartition::new("t", p), b)
        });
        for a in join_all(appends).await {
            a.unwrap();
        }
    }
    // Every transaction that wrote anything took a transaction id; only the writer wrote.
    let written = xid(&db).await - xid_before - 1;
    let after = writer.stats();
    let commits = after.commits - before.commits;
    let transactions = after.transactions - before.transactions;
    assert!(
        (ROUNDS as u64..=3 * ROUNDS as u64).contains(&commits),
        "{commits} flushes for {ROUNDS} rounds"
    );
    assert_eq!(
        transactions, commits,
        "the writer ran one transaction per flush"
    );
    assert_eq!(
        written, commits as i64,
        "PostgreSQL saw one writing transaction per flush"
    );
    assert_eq!(after.objects - before.objects, commits);
    writer.shutdown(STEP).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_then_failing_store_bounds_memory_fails_retriably_and_recovers() {
    let env = Env::start().await;
    env.create_topic("t", 2).await;
    let store = FaultyStore::new(env.store.clone(), Duration::ZERO);
    const LIMIT: usize = 64 << 10;
    let writer = writer_on(
        &env,
        store.clone(),
        FlushConfig {
            max_buffered_bytes: LIMIT,
            max_bytes: 16 << 10,
            max_in_flight: 2,
            timeout: Duration::from_secs(1),
            put_attempts: 3,
            ..fast_flush()
        },
    );
    let stop = Arc::new(AtomicBool::new(false));
    // Producers with many requests in flight: each enqueues as fast as the writer admits
    // batches, and every answer comes back on `answers`.
    let (answers, mut answered) = tokio::sync::mpsc::unbounded_channel();
    let producers: Vec<_> = (0..4)
        .map(|n| {
            let (writer, stop, answers) = (writer.clone(), stop.clone(), answers.clone());
            tokio::spawn(async move {
                let tp = TopicPartition::new("t", n % 2);
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    let v = format!("n{n}-{i}");
                    i += 1;
                    // ~1 KiB per batch.
                    let values: Vec<String> =
                        (0..8).map(|k| format!("{v}-{k}-{:0>100}", 0)).collect();
                    let enqueued = writer
                        .enqueue(tp.clone(), batch(None, &values))
                        .await
                        .expect("enqueue");
                    let answers = answers.clone();
                    tokio::spawn(async move {
                        let _ = answers.send((tp.partition, v, enqueued.wait().await));
                    });
                }
            })
        })
        .collect();
    drop(answers);
    let sample = |w: &Writer, until: Duration| {
        let w = w.clone();
        async move {
            let end = tokio::time::Instant::now() + until;
            let mut max = 0;
            while tokio::time::Instant::now() < end {
                let b = w.buffered_bytes();
                assert!(b <= LIMIT, "{b} bytes buffered over the limit {LIMIT}");
                max = max.max(b);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            max
        }
    };
    sample(&writer, Duration::from_millis(500)).await;
    let acked_before_stall = writer.stats().commits;
    assert!(acked_before_stall > 0);

    // Stalled: producers fill the buffer and wait; flushes time out after 1 s.
    store.set(PutMode::Stall);
    let max = sample(&writer, Duration::from_millis(2500)).await;
    assert!(
        max > LIMIT - (4 << 10),
        "the buffer filled up to its bound: {max}"
    );
    let timed_out = writer.stats().failed_flushes;
    assert!(timed_out > 0, "stalled flushes timed out");

    // Failing: each PUT is retried, then the flush fails.
    store.set(PutMode::Fail);
    sample(&writer, Duration::from_millis(1500)).await;
    let stats = writer.stats();
    assert!(stats.put_retries > 0, "failed PUTs were retried");
    assert!(stats.failed_flushes > timed_out);

    // Back to normal: appends go through again.
    store.set(PutMode::Normal);
    let recovered = stats.commits;
    bounded(async {
        while writer.stats().commits < recovered + 5 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    for p in producers {
        bounded(p).await.unwrap();
    }
    let (mut acked, mut errors) = (Vec::new(), Vec::new());
    while let Some((p, v, answer)) = bounded(answered.recv()).await {
        match answer {
            Ok(a) => acked.push((p, a.base_offset, v)),
            Err(e) => {
                assert!(e.is_retriable(), "{e}");
                errors.push(e);
            }
        }
    }
    assert!(errors.iter().any(|e| matches!(e, Error::Timeout { .. })));
    assert!(
        errors
            .iter()
            .any(|e| matches!(e, Error::ObjectStore { .. }))
    );

    // The log holds exactly the acknowledged batches, gapless.
    let reader = env.reader(64 << 20);
    for p in 0..2 {
        let tp = TopicPartition::new("t", p);
        let records = bounded(read_all(&reader, &tp)).await;
        let offsets: Vec<i64> = records.iter().map(|r| r.0).collect();
        assert_eq!(offsets, (0..records.len() as i64).collect::<Vec<_>>());
        let mine: Vec<&(i32, i64, String)> = acked.iter().filter(|a| a.0 == p).collect();
        assert_eq!(
            records.len(),
            8 * mine.len(),
            "partition {p}: only acked batches"
        );
        for (_, offset, v) in mine {
            let at = records.iter().find(|r| r.0 == *offset).map(|r| &r.1);
            assert!(
                at.is_some_and(|at| at.starts_with(&format!("{v}-0-"))),
                "{v} at {offset}"
            );
        }
    }
    assert_eq!(writer.buffered_bytes(), 0);
    writer.shutdown(STEP).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_producer_is_answered_once_its_batches_stop_arriving_not_after_the_delay() {
    let env = Env::start().await;
    env.create_topic("t", 2).await;
    // A delay far longer than the test's bound: only the quiet rule can flush in time.
    let writer = env.writer(
        "w",
        FlushConfig {
            max_delay: Duration::from_secs(30),
            ..fast_flush()
        },
        None,
    );
    for round in 0..5 {
        let started = std::time::Instant::now();
        let appends = (0..2).map(|p| {
            writer.append(
                TopicPartition::new("t", p),
                batch(None, &values(&format!("r{round}"), 2)),
            )
        });
        for a in tokio::time::timeout(Duration::from_secs(10), join_all(appends))
            .await
            .expect("answered long before the flush delay")
        {
            a.unwrap();
        }
        assert!(started.elapsed() < Duration::from_secs(10));
    }
    assert_eq!(writer.stats().commits, 5, "one flush per round");
    writer.shutdown(STEP).await.unwrap();
}
