//! The lifecycle jobs against real PostgreSQL and moto: retention by time and size,
//! DeleteRecords and DeleteTopics making their data go away, merging small objects,
//! compaction, readers during merges and compactions, and a job's lease passing to another
//! broker when its holder dies; a node running its jobs with custom settings (interval,
//! delete delay, merge thresholds).

mod support;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{FutureExt, TryStreamExt};
use object_store::path::Path;
use strom_cluster::lease::{Lease, acquire};
use strom_cluster::lifecycle::{
    self, Job, MergeConfig, RunnerConfig, compaction, job_runs, merge, reclaim, retention,
};
use strom_cluster::{Db, Error, Reader, TopicPartition};
use strom_record::{BatchBuilder, Record};
use support::{Env, PREFIX, STEP, batch, batch_at, fast_flush, read_all, values};

const TTL: Duration = Duration::from_secs(30);

async fn lease(db: &Db, job: &str) -> Lease {
    acquire(db, &lifecycle::lease_name(job), "tester", TTL)
        .await
        .unwrap()
        .expect("lease free")
}

async fn objects(env: &Env) -> Vec<String> {
    let mut keys: Vec<String> = env
        .store
        .list(Some(&Path::from(format!("{PREFIX}/data"))))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    keys.sort();
    keys
}

async fn rows(db: &Db, topic: &str) -> i64 {
    db.conn()
        .await
        .unwrap()
        .query_one(
            "SELECT count(*) FROM strom_batches WHERE topic = $1",
            &[&topic],
        )
        .await
        .unwrap()
        .get(0)
}

async fn object_states(db: &Db) -> BTreeMap<String, i64> {
    db.conn()
        .await
        .unwrap()
        .query(
            "SELECT state, count(*) FROM strom_objects GROUP BY state",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A batch of keyed records `(key, value)` (`None` key: keyless; `None` value: tombstone).
fn keyed(ts: i64, records: &[(Option<&str>, Option<&str>)]) -> Bytes {
    let records: Vec<Record> = records
        .iter()
        .map(|(k, v)| {
            Record::new(
                ts,
                k.map(|k| Bytes::from(k.to_owned())),
                v.map(|v| Bytes::from(v.to_owned())),
            )
        })
        .collect();
    Bytes::from(BatchBuilder::new().build(&records).unwrap())
}

/// One record of key `k` from idempotent producer 1000 (epoch 0) at `sequence`.
fn idempotent(ts: i64, sequence: i32, value: &str) -> Bytes {
    let mut builder = BatchBuilder::new();
    builder.producer_id = 1000;
    builder.producer_epoch = 0;
    builder.base_sequence = sequence;
    let record = Record::new(
        ts,
        Some(Bytes::from_static(b"k")),
        Some(Bytes::from(value.to_owned())),
    );
    Bytes::from(builder.build(&[record]).unwrap())
}

/// Every record from the log start as (offset, key, value), checking offsets strictly grow.
async fn read_keyed(
    reader: &Reader,
    tp: &TopicPartition,
) -> Vec<(i64, Option<String>, Option<String>)> {
    let text = |b: Option<Bytes>| b.map(|b| String::from_utf8_lossy(&b).into_owned());
    let mut out: Vec<(i64, Option<String>, Option<String>)> = Vec::new();
    let offsets = reader.offsets(tp).await.unwrap();
    let mut offset = offsets.log_start_offset;
    while offset < offsets.next_offset {
        let fetched = reader.fetch(tp, offset, 64 << 10).await.unwrap();
        assert!(!fetched.batches.is_empty(), "no batch at {offset}");
        for b in fetched.batches {
            let decoded =
                strom_record::decode_records(&b, strom_record::DecodeLimits::default()).unwrap();
            for r in decoded.records {
                if r.offset >= offset {
                    if let Some(last) = out.last() {
                        assert!(
                            r.offset > last.0,
                            "offsets grow: {} after {}",
                            r.offset,
                            last.0
                        );
                    }
                    out.push((r.offset, text(r.key), text(r.value)));
                }
            }
            offset = offset.max(decoded.header.next_offset());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_by_time_and_size_drops_rows_and_reclaims_only_unreferenced_objects() {
    let env = Env::start().await;
    let db = env.db();
    env.create_topic("keep", 1).await;
    strom_cluster::metadata::create_topic(
        &db,
        "timed",
        2,
        &serde_json::json!({"retention.ms": "3600000"}),
    )
    .await
    .unwrap();
    // Batches of one size; retention.bytes holds two of them.
    let one = batch_at(None, now_ms(), &values("s", 2));
    let len = one.len() as i64;
    strom_cluster::metadata::create_topic(
        &db,
        "sized",
        1,
        &serde_json::json!({"retention.ms": "-1", "retention.bytes": (2 * len).to_string()}),
    )
    .await
    .unwrap();
    let writer = env.writer("w", fast_flush(), None);
    let timed0 = TopicPartition::new("timed", 0);
    let timed1 = TopicPartition::new("timed", 1);
    // Three old batches of timed-0, each its own flush (object).
    for i in 0..3 {
        writer
            .append(
                timed0.clone(),
                batch_at(None, 1_000, &values(&format!("old{i}"), 2)),
            )
            .await
            .unwrap();
    }
    // One flush holding an old batch of timed-0 and a new one of timed-1: the object stays.
    let a = writer
        .enqueue(timed0.clone(), batch_at(None, 2_000, &values("old3", 1)))
        .await
        .unwrap();
    let b = writer
        .enqueue(timed1.clone(), batch_at(None, now_ms(), &values("new1", 1)))
        .await
        .unwrap();
    a.wait().await.unwrap();
    b.wait().await.unwrap();
    writer
        .append(timed0.clone(), batch_at(None, now_ms(), &values("new0", 2)))
        .await
        .unwrap();
    let sized = TopicPartition::new("sized", 0);
    for _ in 0..5 {
        writer.append(sized.clone(), one.clone()).await.unwrap();
    }
    writer
        .append(
            TopicPartition::new("keep", 0),
            batch_at(None, now_ms(), &values("k", 1)),
        )
        .await
        .unwrap();
    let before = objects(&env).await.len();
    assert_eq!(before, 3 + 1 + 1 + 5 + 1);

    let reader = env.reader(1 << 20);
    assert_eq!(read_all(&reader, &timed0).await.len(), 9);
    let l = lease(&db, "retention").await;
    let stats = retention::apply_retention(&db, &l).await.unwrap();
    assert_eq!(stats.partitions_advanced, 2, "{stats:?}");
    assert_eq!(stats.rows_dropped, 4 + 3, "{stats:?}");
    // timed-0: everything older than an hour went, the new batch stays.
    assert_eq!(
        read_all(&reader, &timed0).await,
        vec![(7, "new0-0".to_owned()), (8, "new0-1".to_owned())]
    );
    assert!(matches!(
        reader.fetch(&timed0, 0, 1 << 20).await,
        Err(Error::OffsetOutOfRange {
            log_start_offset: 7,
            ..
        })
    ));
    // sized: Kafka's rule deletes the oldest batch while what is left still reaches
    // retention.bytes: 3 of 5 go.
    let kept = 2;
    let offsets = reader.offsets(&sized).await.unwrap();
    assert_eq!(offsets.log_start_offset, 6, "batch of {len} bytes");
    assert_eq!(rows(&db, "sized").await, kept);
    // Untouched: timed-1 and "keep" (default retention, 7 days) are new.
    assert_eq!(read_all(&reader, &timed1).await.len(), 1);
    assert_eq!(rows(&db, "keep").await, 1);

    // Reclaim: with no delay, unreferenced objects are retired and deleted in one pass; the
    // shared object (timed-1's new batch) stays.
    let r = lease(&db, "reclaim").await;
    let stats = reclaim::reclaim(&db, &env.store, &r, Duration::ZERO)
        .await
        .unwrap();
    let dropped_objects = 3 + 3;
    assert_eq!(stats.retired, dropped_objects as u64, "{stats:?}");
    assert_eq!(stats.deleted, dropped_objects as u64, "{stats:?}");
    assert_eq!(objects(&env).await.len(), before - dropped_objects);
    assert_eq!(read_all(&reader, &timed1).await.len(), 1);
    assert_eq!(read_all(&reader, &timed0).await.len(), 2);

    // With a delay, an unreferenced object is retired but stays readable.
    let sized_start = reader.offsets(&sized).await.unwrap().next_offset - 2;
    env.db()
        .conn()
        .await
        .unwrap()
        .execute(
            "UPDATE strom_partitions SET log_start_offset = $1 WHERE topic = 'sized'",
            &[&sized_start],
        )
        .await
        .unwrap();
    retention::apply_retention(&db, &l).await.unwrap();
    let stats = reclaim::reclaim(&db, &env.store, &r, Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!((stats.retired, stats.deleted), (1, 0));
    assert_eq!(object_states(&db).await.get("retired"), Some(&(kept - 1)));
    writer.shutdown(STEP).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_records_and_delete_topic_data_goes_away() {
    use strom_broker::metadata::MetadataEvent;
    use strom_broker::storage::{
        LogConfig, Offset, PartitionIndex, StorageBackend, TopicPartition as SeamTp,
    };
    let env = Env::start().await;
    let mut config = env.config.clone();
    config.flush = fast_flush();
    let node = tokio::time::timeout(STEP, strom_cluster::ClusterNode::start(config, None))
        .await
        .unwrap()
        .unwrap();
    let backend = node.backend();
    let id = uuid::Uuid::new_v4();
    let b2 = backend.clone();
    tokio::task::spawn_blocking(move || {
        let (mut meta, _) = b2.open_metadata().unwrap();
        meta.append(&MetadataEvent::TopicCreated {
            name: "gone".into(),
            id,
            partitions: 1,
            configs: BTreeMap::new(),
        })
        .unwrap();
        let store = b2
            .open_partition(
                SeamTp {
                    topic: "gone",
                    index: PartitionIndex(0),
                },
                LogConfig::default(),
            )
            .unwrap();
        for i in 0..4 {
            let b = batch_at(None, now_ms(), &values(&format!("b{i}"), 3));
            let mut payload = bytes::BytesMut::from(&b[..]);
            store.append(&mut payload, 0).unwrap();
        }
        // DeleteRecords below offset 7: batches 0 and 1 (offsets 0..=5) go entirely, batch 2
        // (6..=8) straddles and stays.
        assert_eq!(store.delete_records(Offset(7)).unwrap(), Offset(7));
    })
    .await
    .unwrap();
    let db = env.db();
    assert_eq!(objects(&env).await.len(), 4);
    let l = lease(&db, "retention").await;
    let r = lease(&db, "reclaim").await;
    let stats = retention::apply_retention(&db, &l).await.unwrap();
    assert_eq!(stats.rows_dropped, 2);
    reclaim::reclaim(&db, &env.store, &r, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(objects(&env).await.len(), 2, "DeleteRecords' data deleted");
    let reader = env.reader(1 << 20);
    let tp = TopicPartition::new("gone", 0);
    let left: Vec<i64> = read_all(&reader, &tp).await.iter().map(|r| r.0).collect();
    assert_eq!(left, vec![7, 8, 9, 10, 11]);

    // DeleteTopics: the rows go with the topic, the objects with the next reclaim.
    let b2 = backend.clone();
    tokio::task::spawn_blocking(move || {
        let (mut meta, _) = b2.open_metadata().unwrap();
        meta.append(&MetadataEvent::TopicDeleted { id }).unwrap();
    })
    .await
    .unwrap();
    assert_eq!(rows(&db, "gone").await, 0);
    reclaim::reclaim(&db, &env.store, &r, Duration::ZERO)
        .await
        .unwrap();
    assert!(
        objects(&env).await.is_empty(),
        "deleted topic's objects deleted"
    );
    // The writer keeps reserved 'pending' keys while it runs (one transaction per flush); its
    // shutdown releases them, after which no object row is left at all.
    node.shutdown(STEP).await;
    assert!(object_states(&db).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merging_small_objects_keeps_every_batch_and_stale_readers_recover() {
    let env = Env::start().await;
    let db = env.db();
    env.create_topic("m", 2).await;
    let writer = env.writer("w", fast_flush(), None);
    let tps = [TopicPartition::new("m", 0), TopicPartition::new("m", 1)];
    for i in 0..6 {
        for tp in &tps {
            writer
                .append(tp.clone(), batch(None, &values(&format!("v{i}"), 3)))
                .await
                .unwrap();
        }
    }
    assert_eq!(objects(&env).await.len(), 12);
    // A reader that cached the index before the merge.
    let stale = env.reader(0);
    let mut before = Vec::new();
    for tp in &tps {
        before.push(read_all(&stale, tp).await);
    }
    let m = lease(&db, "merge").await;
    let config = MergeConfig {
        small_object_bytes: 1 << 20,
        target_bytes: 8 << 20,
        min_age: Duration::ZERO,
    };
    let stats = merge::merge_small_objects(&db, &env.store, PREFIX, &m, config)
        .await
        .unwrap();
    assert_eq!(
        (
            stats.objects_merged,
            stats.objects_written,
            stats.rows_moved
        ),
        (12, 1, 12),
        "{stats:?}"
    );
    // Nothing small left to merge with: a second pass does nothing.
    let again = merge::merge_small_objects(&db, &env.store, PREFIX, &m, config)
        .await
        .unwrap();
    assert_eq!(again.objects_merged, 0);
    let r = lease(&db, "reclaim").await;
    let stats = reclaim::reclaim(&db, &env.store, &r, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(stats.deleted, 12);
    assert_eq!(objects(&env).await.len(), 1);
    for (tp, before) in tps.iter().zip(&before) {
        assert_eq!(&read_all(&env.reader(0), tp).await, before, "fresh reader");
        assert_eq!(
            &read_all(&stale, tp).await,
            before,
            "reader with a stale index"
        );
    }
    writer.shutdown(STEP).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_keeps_the_latest_record_per_key_as_kafka_does() {
    let env = Env::start().await;
    let db = env.db();
    for (name, delete_retention) in [("c-keep", "86400000"), ("c-drop", "0")] {
        strom_cluster::metadata::create_topic(
            &db,
            name,
            1,
            &serde_json::json!({
                "cleanup.policy": "compact",
                "delete.retention.ms": delete_retention,
                "min.cleanable.dirty.ratio": "0.1",
            }),
        )
        .await
        .unwrap();
    }
    let writer = env.writer("w", fast_flush(), None);
    let now = now_ms();
    for name in ["c-keep", "c-drop"] {
        let tp = TopicPartition::new(name, 0);
        // Offsets: 0..=3 round 0 of a..d, 4..=7 round 1, 8 keyless, 9 tombstone of b,
        // 10..=11 round 2 of a and c, 12 the last batch (never cleaned) with a again.
        let batches = [
            keyed(
                now,
                &[
                    (Some("a"), Some("a0")),
                    (Some("b"), Some("b0")),
                    (Some("c"), Some("c0")),
                    (Some("d"), Some("d0")),
                ],
            ),
            keyed(
                now,
                &[
                    (Some("a"), Some("a1")),
                    (Some("b"), Some("b1")),
                    (Some("c"), Some("c1")),
                    (Some("d"), Some("d1")),
                ],
            ),
            keyed(now, &[(None, Some("keyless"))]),
            keyed(now, &[(Some("b"), None)]),
            keyed(now, &[(Some("a"), Some("a2")), (Some("c"), Some("c2"))]),
            keyed(now, &[(Some("a"), Some("a3"))]),
        ];
        for b in batches {
            writer.append(tp.clone(), b).await.unwrap();
        }
    }
    let reader = env.reader(1 << 20);
    // The reader caches both partitions' index and bytes before the clean; what it serves
    // after the clean must be the cleaned log (another broker's reader, in a cluster).
    for name in ["c-keep", "c-drop"] {
        let all = read_keyed(&reader, &TopicPartition::new(name, 0)).await;
        assert_eq!(all.len(), 13, "{name} before the clean: {all:?}");
    }
    let c = lease(&db, "compaction").await;
    let stats = compaction::compact(&db, &env.store, PREFIX, &c)
        .await
        .unwrap();
    assert_eq!(stats.partitions_cleaned, 2, "{stats:?}");
    assert_eq!(stats.conflicts, 0);
    let s = |v: &str| Some(v.to_owned());
    // The last batch (a3) is never cleaned, so the map ends before it and a2 stays, as a
    // record in Kafka's active segment does not supersede anything yet. b's tombstone
    // supersedes b1 and stays for delete.retention.ms; the keyless record goes.
    let expect_keep = vec![
        (7, s("d"), s("d1")),
        (9, s("b"), None),
        (10, s("a"), s("a2")),
        (11, s("c"), s("c2")),
        (12, s("a"), s("a3")),
    ];
    assert_eq!(
        read_keyed(&reader, &TopicPartition::new("c-keep", 0)).await,
        expect_keep
    );
    let expect_drop: Vec<_> = expect_keep.iter().filter(|r| r.0 != 9).cloned().collect();
    assert_eq!(
        read_keyed(&reader, &TopicPartition::new("c-drop", 0)).await,
        expect_drop
    );
    // Offsets, the high watermark and ListOffsets are unchanged.
    let offsets = reader
        .offsets(&TopicPartition::new("c-keep", 0))
        .await
        .unwrap();
    assert_eq!((offsets.log_start_offset, offsets.next_offset), (0, 13));
    // Nothing dirty: a second pass does nothing.
    let again = compaction::compact(&db, &env.store, PREFIX, &c)
        .await
        .unwrap();
    assert_eq!(again.partitions_cleaned, 0, "{again:?}");
    // New updates are dirty again; the previous last batch is cleaned now.
    let tp = TopicPartition::new("c-drop", 0);
    writer
        .append(
            tp.clone(),
            keyed(now, &[(Some("a"), Some("a4")), (Some("d"), Some("d2"))]),
        )
        .await
        .unwrap();
    writer
        .append(tp.clone(), keyed(now, &[(Some("e"), Some("e0"))]))
        .await
        .unwrap();
    let stats = compaction::compact(&db, &env.store, PREFIX, &c)
        .await
        .unwrap();
    assert_eq!(stats.partitions_cleaned, 1, "{stats:?}");
    assert_eq!(
        read_keyed(&reader, &tp).await,
        vec![
            (11, s("c"), s("c2")),
            (13, s("a"), s("a4")),
            (14, s("d"), s("d2")),
            (15, s("e"), s("e0")),
        ]
    );
    // The replaced objects are reclaimed; what is left still reads the same.
    let r = lease(&db, "reclaim").await;
    reclaim::reclaim(&db, &env.store, &r, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(read_keyed(&env.reader(0), &tp).await.len(), 4);

    // An idempotent producer's last five batches stay indexed even when compaction empties
    // them, so a late retry of one is still recognised as a duplicate.
    strom_cluster::metadata::create_topic(
        &db,
        "c-idem",
        1,
        &serde_json::json!({"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.1"}),
    )
    .await
    .unwrap();
    let tp = TopicPartition::new("c-idem", 0);
    for seq in 0..8 {
        writer
            .append(tp.clone(), idempotent(now, seq, &format!("p{seq}")))
            .await
            .unwrap();
    }
    writer
        .append(tp.clone(), keyed(now, &[(Some("k"), Some("last"))]))
        .await
        .unwrap();
    let stats = compaction::compact(&db, &env.store, PREFIX, &c)
        .await
        .unwrap();
    // p7 is the latest below the last batch (never in the map) and stays; p0..p2 go with
    // their batches; p3..p6 go, their batches stay empty.
    assert_eq!(
        (stats.batches_removed, stats.batches_rewritten),
        (3, 4),
        "{stats:?}"
    );
    assert_eq!(rows(&db, "c-idem").await, 6);
    assert_eq!(
        read_keyed(&reader, &tp).await,
        vec![(7, s("k"), s("p7")), (8, s("k"), s("last"))]
    );
    let retry = writer
        .append(tp.clone(), idempotent(now, 6, "p6"))
        .await
        .unwrap();
    assert!(retry.duplicate, "{retry:?}");
    assert_eq!(retry.base_offset, 6);
    assert_eq!(reader.offsets(&tp).await.unwrap().next_offset, 9);
    writer.shutdown(STEP).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_during_merges_and_compactions_see_each_offset_once() {
    let env = Env::start().await;
    let db = env.db();
    strom_cluster::metadata::create_topic(
        &db,
        "live",
        1,
        &serde_json::json!({"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.01"}),
    )
    .await
    .unwrap();
    let tp = TopicPartition::new("live", 0);
    let writer = env.writer("w", fast_flush(), None);
    let now = now_ms();
    // 40 batches of 5 records over 20 keys: unique values so the latest per key is known.
    // The last batch (offsets 195..=199) is never cleaned and never in the offset map, so
    // what compaction keeps is the latest per key below it, and that batch.
    let mut latest: HashMap<String, (i64, String)> = HashMap::new();
    let mut latest_below_last = HashMap::new();
    let mut offset = 0i64;
    for i in 0..40 {
        let recs: Vec<(String, String)> = (0..5)
            .map(|j| (format!("k{}", (i * 5 + j) % 20), format!("v{i}-{j}")))
            .collect();
        let refs: Vec<(Option<&str>, Option<&str>)> = recs
            .iter()
            .map(|(k, v)| (Some(k.as_str()), Some(v.as_str())))
            .collect();
        writer.append(tp.clone(), keyed(now, &refs)).await.unwrap();
        if i == 39 {
            latest_below_last = latest.clone();
        }
        for (k, v) in recs {
            latest.insert(k, (offset, v));
            offset += 1;
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    // Background: merge, compact and reclaim (no delay) over and over.
    let jobs = {
        let (db, store, stop) = (env.db(), env.store.clone(), Arc::clone(&stop));
        tokio::spawn(async move {
            let m = lease(&db, "merge").await;
            let c = lease(&db, "compaction").await;
            let r = lease(&db, "reclaim").await;
            let config = MergeConfig {
                small_object_bytes: 1 << 20,
                target_bytes: 4 << 10,
                min_age: Duration::ZERO,
            };
            let mut passes = 0;
            while !stop.load(Ordering::Relaxed) || passes < 3 {
                merge::merge_small_objects(&db, &store, PREFIX, &m, config)
                    .await
                    .unwrap();
                compaction::compact(&db, &store, PREFIX, &c).await.unwrap();
                // A second of delay: a reader that just read the index finds the bytes.
                reclaim::reclaim(&db, &store, &r, Duration::from_secs(1))
                    .await
                    .unwrap();
                passes += 1;
            }
            passes
        })
    };
    // Readers meanwhile: each full read has strictly growing offsets (checked in
    // read_keyed), the latest record of every key, and the last batch whole.
    let reader = env.reader(1 << 20);
    let started = Instant::now();
    let mut reads = 0;
    while started.elapsed() < Duration::from_secs(4) || reads < 3 {
        let got = read_keyed(&reader, &tp).await;
        let by_offset: HashMap<i64, (Option<String>, Option<String>)> = got
            .iter()
            .map(|(o, k, v)| (*o, (k.clone(), v.clone())))
            .collect();
        for (k, (o, v)) in &latest {
            assert_eq!(by_offset.get(o), Some(&(Some(k.clone()), Some(v.clone()))));
        }
        for o in 195..200 {
            assert!(by_offset.contains_key(&o), "last batch offset {o}");
        }
        reads += 1;
        assert!(started.elapsed() < STEP);
    }
    stop.store(true, Ordering::Relaxed);
    let passes = tokio::time::timeout(STEP, jobs).await.unwrap().unwrap();
    assert!(passes >= 3);
    // At the end: exactly the latest record per key, plus the last batch.
    let got = read_keyed(&env.reader(0), &tp).await;
    let mut expect: Vec<i64> = latest_below_last.values().map(|(o, _)| *o).collect();
    expect.extend(195..200);
    expect.sort();
    expect.dedup();
    assert_eq!(got.iter().map(|r| r.0).collect::<Vec<_>>(), expect);
    writer.shutdown(STEP).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_passes_to_another_broker_when_its_holder_dies_and_stale_holders_are_fenced() {
    let env = Env::start().await;
    let db = Arc::new(env.db());
    let ttl = Duration::from_millis(1500);
    let runner = |holder: &str| RunnerConfig {
        holder: holder.into(),
        lease_ttl: ttl,
    };
    let job = {
        let db = Arc::clone(&db);
        Job {
            name: "retention",
            interval: Duration::from_millis(100),
            pass: Arc::new(move |lease| {
                let db = Arc::clone(&db);
                async move { Ok(retention::apply_retention(&db, &lease).await?.to_json()) }.boxed()
            }),
        }
    };
    let wait_for = |holder: &'static str| {
        let db = Arc::clone(&db);
        async move {
            let started = Instant::now();
            loop {
                let runs = job_runs(&db).await.unwrap();
                if let Some(run) = runs
                    .iter()
                    .find(|r| r.name == "retention" && r.holder == holder)
                {
                    return run.clone();
                }
                assert!(started.elapsed() < STEP, "{holder} never ran the job");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let a = lifecycle::spawn_job(Arc::clone(&db), runner("broker-a"), job.clone());
    let run_a = wait_for("broker-a").await;
    assert!(run_a.ok, "{run_a:?}");
    // b starts while a holds the lease: b does not run it.
    let b = lifecycle::spawn_job(Arc::clone(&db), runner("broker-b"), job.clone());
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        job_runs(&db)
            .await
            .unwrap()
            .iter()
            .all(|r| r.holder == "broker-a")
    );
    // a dies without releasing (as kill -9 would): b takes over after the lease expires.
    a.abort();
    let died = Instant::now();
    let run_b = wait_for("broker-b").await;
    assert!(
        run_b.ok && run_b.epoch > run_a.epoch,
        "{run_b:?} after {run_a:?}"
    );
    assert!(died.elapsed() < ttl + Duration::from_secs(5));
    b.abort();
    // a's lease is stale: a pass under it changes nothing.
    env.create_topic("t", 1).await;
    let writer = env.writer("w", fast_flush(), None);
    writer
        .append(TopicPartition::new("t", 0), batch(None, &values("x", 1)))
        .await
        .unwrap();
    let stale = Lease {
        name: lifecycle::lease_name("retention"),
        holder: "broker-a".into(),
        epoch: run_a.epoch,
        ttl,
    };
    let stats = retention::apply_retention(&db, &stale).await.unwrap();
    assert_eq!(stats.partitions_advanced, 0);
    assert_eq!(rows(&db, "t").await, 1);
    // The status shows the job and who ran it.
    let status = strom_cluster::status::cluster_status(&db).await.unwrap();
    assert!(
        status
            .jobs
            .iter()
            .any(|j| j.name == "retention" && j.holder == "broker-b")
    );
    assert_eq!(status.last_commit_secs.len(), 1);
    writer.shutdown(STEP).await.unwrap();
}

/// One transactional record `key`=`value` of `producer` (epoch 0, sequence 0).
fn transactional(ts: i64, producer: i64, key: &str, value: &str) -> Bytes {
    let builder = BatchBuilder {
        producer_id: producer,
        producer_epoch: 0,
        base_sequence: 0,
        transactional: true,
        ..BatchBuilder::new()
    };
    let record = Record::new(
        ts,
        Some(Bytes::from(key.to_owned())),
        Some(Bytes::from(value.to_owned())),
    );
    Bytes::from(builder.build(&[record]).unwrap())
}

/// The data records (control batches left out) from the log start as (offset, key, value).
async fn read_data(reader: &Reader, tp: &TopicPartition) -> Vec<(i64, String, String)> {
    let text =
        |b: Option<Bytes>| b.map_or_else(String::new, |b| String::from_utf8_lossy(&b).into_owned());
    let mut out = Vec::new();
    let offsets = reader.offsets(tp).await.unwrap();
    let mut offset = offsets.log_start_offset;
    while offset < offsets.next_offset {
        let fetched = reader.fetch(tp, offset, 64 << 10).await.unwrap();
        assert!(!fetched.batches.is_empty(), "no batch at {offset}");
        for b in fetched.batches {
            let decoded =
                strom_record::decode_records(&b, strom_record::DecodeLimits::default()).unwrap();
            if !decoded.header.is_control() {
                for r in decoded.records.into_iter().filter(|r| r.offset >= offset) {
                    out.push((r.offset, text(r.key), text(r.value)));
                }
            }
            offset = offset.max(decoded.header.next_offset());
        }
    }
    out
}

async fn count(db: &Db, sql: &str, topic: &str) -> i64 {
    db.conn()
        .await
        .unwrap()
        .query_one(sql, &[&topic])
        .await
        .unwrap()
        .get(0)
}

/// Compaction treats transactions as the single-node cleaner does: an aborted record neither
/// supersedes nor survives, nothing from the first open transaction on is cleaned; retention
/// drops the aborted-transaction rows wholly below the log start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_and_retention_keep_the_transaction_index_right() {
    use strom_record::{ControlType, marker_batch};
    let env = Env::start().await;
    let db = env.db();
    strom_cluster::metadata::create_topic(
        &db,
        "c-txn",
        1,
        &serde_json::json!({
            "cleanup.policy": "compact,delete",
            "delete.retention.ms": "0",
            "min.cleanable.dirty.ratio": "0.1",
        }),
    )
    .await
    .unwrap();
    let tp = TopicPartition::new("c-txn", 0);
    let writer = env.writer("w", fast_flush(), None);
    let now = now_ms();
    let marker =
        |producer, control| Bytes::from(marker_batch(producer, 0, control, 0, now).unwrap());
    // 0 a0; 1 a (aborted) + 2 its ABORT; 3 b (committed) + 4 its COMMIT; 5 c (open
    // transaction: the LSO); 6 a plain update of a; 7 the last batch.
    let batches = [
        keyed(now, &[(Some("a"), Some("a0"))]),
        transactional(now, 500, "a", "aborted"),
        marker(500, ControlType::Abort),
        transactional(now, 501, "b", "committed"),
        marker(501, ControlType::Commit),
        transactional(now, 502, "c", "open"),
        keyed(now, &[(Some("a"), Some("a1"))]),
        keyed(now, &[(Some("e"), Some("e0"))]),
    ];
    for b in batches {
        writer.append(tp.clone(), b).await.unwrap();
    }
    let reader = env.reader(1 << 20);
    assert_eq!(reader.offsets(&tp).await.unwrap().last_stable_offset(), 5);
    let c = lease(&db, "compaction").await;
    let stats = compaction::compact(&db, &env.store, PREFIX, &c)
        .await
        .unwrap();
    assert_eq!(stats.partitions_cleaned, 1, "{stats:?}");
    let s = |v: &str| v.to_owned();
    // The aborted record is gone and did not supersede a0; a1 (past the open transaction) is
    // not in the map yet, so a0 stays too; nothing from offset 5 on was touched.
    assert_eq!(
        read_data(&reader, &tp).await,
        vec![
            (0, s("a"), s("a0")),
            (3, s("b"), s("committed")),
            (5, s("c"), s("open")),
            (6, s("a"), s("a1")),
            (7, s("e"), s("e0")),
        ]
    );
    assert_eq!(
        count(
            &db,
            "SELECT cleaned_offset FROM strom_compaction WHERE topic = $1",
            "c-txn"
        )
        .await,
        5,
        "the clean stops at the last stable offset"
    );
    // The emptied batch is producer 500's last (kept for duplicate detection), so its ABORT
    // marker and the aborted-transaction row stay.
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM strom_aborted_txns WHERE topic = $1",
            "c-txn"
        )
        .await,
        1
    );

    // The log start passes the aborted transaction's marker: retention drops its row.
    db.conn()
        .await
        .unwrap()
        .execute(
            "UPDATE strom_partitions SET log_start_offset = 3 WHERE topic = 'c-txn'",
            &[],
        )
        .await
        .unwrap();
    let r = lease(&db, "retention").await;
    retention::apply_retention(&db, &r).await.unwrap();
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM strom_aborted_txns WHERE topic = $1",
            "c-txn"
        )
        .await,
        0,
        "an aborted transaction wholly below the log start is dropped"
    );
    assert_eq!(reader.offsets(&tp).await.unwrap().last_stable_offset(), 5);
    writer.shutdown(STEP).await.unwrap();
}

/// Objects' rows by state, and the keys of the retired ones.
async fn retired_keys(db: &Db) -> Vec<String> {
    db.conn()
        .await
        .unwrap()
        .query(
            "SELECT key FROM strom_objects WHERE state = 'retired' ORDER BY key",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_runs_its_jobs_with_the_configured_interval_delete_delay_and_merge_thresholds() {
    use strom_broker::metadata::MetadataEvent;
    use strom_broker::storage::{
        LogConfig, Offset, PartitionIndex, StorageBackend, TopicPartition as SeamTp,
    };
    let env = Env::start().await;
    // With the defaults (a pass every 5 s, objects deleted 60 s after retirement, merging
    // only objects older than a minute) nothing below would happen within the test's bound.
    let delete_delay = Duration::from_secs(3);
    let (node, backend) = support::node_with(&env, |c| {
        c.lifecycle.job_interval = Some(Duration::from_millis(200));
        c.lifecycle.delete_delay = delete_delay;
        c.lifecycle.merge = MergeConfig {
            small_object_bytes: 1 << 20,
            target_bytes: 8 << 20,
            min_age: Duration::ZERO,
        };
    })
    .await;
    let collector = node.start_collector().unwrap();
    let id = uuid::Uuid::new_v4();
    let b2 = backend.clone();
    tokio::task::spawn_blocking(move || {
        let (mut meta, _) = b2.open_metadata().unwrap();
        meta.append(&MetadataEvent::TopicCreated {
            name: "jobs".into(),
            id,
            partitions: 1,
            configs: BTreeMap::new(),
        })
        .unwrap();
        let store = b2
            .open_partition(
                SeamTp {
                    topic: "jobs",
                    index: PartitionIndex(0),
                },
                LogConfig::default(),
            )
            .unwrap();
        for i in 0..4 {
            let b = batch_at(None, now_ms(), &values(&format!("b{i}"), 3));
            let mut payload = bytes::BytesMut::from(&b[..]);
            store.append(&mut payload, 0).unwrap();
        }
        // Batches 0 and 1 (offsets 0..=5) go; 2 and 3 stay, in objects the merge takes.
        assert_eq!(store.delete_records(Offset(6)).unwrap(), Offset(6));
    })
    .await
    .unwrap();
    let db = env.db();
    let tp = TopicPartition::new("jobs", 0);
    // Well below the default merge age and delete delay.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen_retired = std::collections::BTreeSet::new();
    loop {
        // A retired object stays readable for the delete delay: when a pass retires one,
        // its bytes are still in the store (the next deletion is seconds away).
        let listed = objects(&env).await;
        for key in retired_keys(&db).await {
            if seen_retired.insert(key.clone()) {
                assert!(
                    listed.contains(&key),
                    "{key} deleted before the delete delay"
                );
            }
        }
        if listed.len() == 1 && seen_retired.len() == 4 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "jobs did not merge and reclaim: {listed:?}, retired seen {seen_retired:?}, {:?}",
            object_states(&db).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Two objects went by DeleteRecords + retention, two by merging into the one left.
    assert_eq!(rows(&db, "jobs").await, 2);
    let reader = env.reader(1 << 20);
    let left: Vec<i64> = read_all(&reader, &tp).await.iter().map(|r| r.0).collect();
    assert_eq!(left, (6..12).collect::<Vec<_>>());
    let runs = job_runs(&db).await.unwrap();
    let merged = runs.iter().find(|r| r.name == "merge").expect("merge ran");
    assert!(merged.runs >= 2, "passes every 200 ms: {merged:?}");
    collector.abort();
    node.shutdown(STEP).await;
}
