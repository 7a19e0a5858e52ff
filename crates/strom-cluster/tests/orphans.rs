//! The orphan collector deletes objects of flushes that never committed (and objects with no
//! row at all), only under its lease, and leaves committed data alone.

mod support;

use std::time::Duration;

use bytes::Bytes;
use futures_util::TryStreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use strom_cluster::collector::{CollectStats, LEASE, collect_orphans};
use strom_cluster::lease::{Lease, acquire};
use strom_cluster::{Error, TopicPartition};
use support::{Env, PREFIX, batch, fast_flush, read_all, values};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphans_are_collected_under_the_lease_and_committed_objects_stay() {
    let env = Env::start().await;
    env.create_topic("t", 1).await;
    let tp = TopicPartition::new("t", 0);
    let writer = env.writer("w", fast_flush(), None);
    writer
        .append(tp.clone(), batch(None, &values("kept", 2)))
        .await
        .unwrap();
    // A flush whose only batch is rejected indexes nothing: its object stays pending.
    let rejected = writer
        .append(TopicPartition::new("nope", 0), batch(None, &values("x", 1)))
        .await;
    assert!(matches!(rejected, Err(Error::UnknownPartition { .. })));
    // An object nobody recorded (as if written by a broken tool).
    let stray = Path::from(format!("{PREFIX}/data/stray.batches"));
    env.store
        .put(&stray, Bytes::from_static(b"junk").into())
        .await
        .unwrap();
    assert_eq!(objects(&env).await.len(), 3);
    // The writer's unused spare keys (pending rows without objects) go with it.
    writer.shutdown(support::STEP).await.unwrap();

    let db = env.db();
    let grace = Duration::ZERO;
    // Not the lease holder: nothing is claimed and the sweep refuses.
    let mine = acquire(&db, LEASE, "a", Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    let impostor = Lease {
        holder: "b".into(),
        ..mine.clone()
    };
    tokio::time::sleep(Duration::from_millis(1100)).await; // listings have 1 s resolution
    let err = collect_orphans(&db, &env.store, PREFIX, &impostor, grace)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::LeaseLost { .. }), "{err}");
    assert_eq!(objects(&env).await.len(), 3);

    // With a long grace period, nothing is old enough.
    let stats = collect_orphans(&db, &env.store, PREFIX, &mine, Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(stats, CollectStats::default());

    let stats = collect_orphans(&db, &env.store, PREFIX, &mine, grace)
        .await
        .unwrap();
    assert_eq!(
        stats,
        CollectStats {
            pending_deleted: 1,
            unknown_deleted: 1
        }
    );
    let left = objects(&env).await;
    assert_eq!(left.len(), 1);
    let rows = db
        .conn()
        .await
        .unwrap()
        .query("SELECT key, state FROM strom_objects", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, String>(0), left[0]);
    assert_eq!(rows[0].get::<_, String>(1), "committed");
    let reader = env.reader(1 << 20);
    assert_eq!(
        read_all(&reader, &tp).await.len(),
        2,
        "committed data still readable"
    );
    // A second pass finds nothing.
    let stats = collect_orphans(&db, &env.store, PREFIX, &mine, grace)
        .await
        .unwrap();
    assert_eq!(stats, CollectStats::default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_broker_collects_at_a_time_and_another_takes_over_when_it_dies() {
    use strom_cluster::collector::{CollectorConfig, spawn};
    let env = Env::start().await;
    env.create_topic("t", 1).await;
    let writer = env.writer("w", fast_flush(), None);
    let orphan = || async {
        let r = writer
            .append(TopicPartition::new("nope", 0), batch(None, &values("x", 1)))
            .await;
        assert!(matches!(r, Err(Error::UnknownPartition { .. })));
    };
    let config = |holder: &str| CollectorConfig {
        prefix: PREFIX.into(),
        holder: holder.into(),
        lease_ttl: Duration::from_secs(2),
        // Long enough that no flush of this test is claimed while in progress.
        grace: Duration::from_secs(1),
        interval: Duration::from_millis(100),
    };
    let a = spawn(env.db(), env.store.clone(), config("a"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let b = spawn(env.db(), env.store.clone(), config("b"));
    let db = env.db();
    let holder = || async {
        let states = strom_cluster::lease::list(&db).await.unwrap();
        let s = states
            .iter()
            .find(|s| s.name == LEASE)
            .expect("lease taken");
        (s.holder.clone(), s.epoch)
    };
    let until_empty = || async {
        tokio::time::timeout(support::STEP, async {
            while !objects(&env).await.is_empty() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await
        .expect("orphans collected");
    };
    orphan().await;
    until_empty().await;
    assert_eq!(holder().await, ("a".to_string(), 1));

    // a dies without releasing; b takes over once the lease expires, with a new epoch.
    a.abort();
    orphan().await;
    until_empty().await;
    assert_eq!(holder().await, ("b".to_string(), 2));
    b.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_slower_than_the_grace_period_fails_instead_of_indexing_a_collected_object() {
    let env = Env::start().await;
    env.create_topic("t", 1).await;
    let tp = TopicPartition::new("t", 0);
    let writer = env.writer("w", fast_flush(), None);
    let db = env.db();
    let lease = acquire(&db, LEASE, "a", Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();

    // The store stalls mid-flush: the object is recorded 'pending', its PUT hangs.
    env.s3.pause();
    let append = {
        let (w, tp) = (writer.clone(), tp.clone());
        tokio::spawn(async move { w.append(tp, batch(None, &values("late", 1))).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The collector claims it meanwhile (its delete waits for the store too).
    let collect = {
        let (db, store, lease) = (env.db(), env.store.clone(), lease.clone());
        tokio::spawn(
            async move { collect_orphans(&db, &store, PREFIX, &lease, Duration::ZERO).await },
        )
    };
    // Resume the store only once the collector has claimed the object: on a loaded machine
    // a fixed pause may end before the collector task ran, and the flush would then commit.
    let claimed = std::time::Instant::now();
    loop {
        let conn = db.conn().await.unwrap();
        let deleting: i64 = conn
            .query_one(
                "SELECT count(*) FROM strom_objects WHERE state = 'deleting'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if deleting > 0 {
            break;
        }
        assert!(
            claimed.elapsed() < support::STEP,
            "the collector never claimed the object"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    env.s3.resume();
    let err = tokio::time::timeout(support::STEP, append)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, Error::ObjectCollected { .. }), "{err}");
    assert!(err.is_retriable());
    tokio::time::timeout(support::STEP, collect)
        .await
        .unwrap()
        .unwrap()
        .unwrap();

    // Nothing was indexed; a later pass removes the object if the PUT landed after the delete.
    let reader = env.reader(1 << 20);
    assert!(read_all(&reader, &tp).await.is_empty());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    collect_orphans(&db, &env.store, PREFIX, &lease, Duration::ZERO)
        .await
        .unwrap();
    assert!(objects(&env).await.is_empty());
    // The retry goes through.
    let ok = writer
        .append(tp.clone(), batch(None, &values("retry", 1)))
        .await
        .unwrap();
    assert_eq!(ok.base_offset, 0);
}
