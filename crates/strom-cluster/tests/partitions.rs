//! Partial network partitions: one broker's writer reaches PostgreSQL and the object store
//! through TCP proxies the test cuts ([`strom_cluster::testkit::TcpProxy`]), another broker's
//! writer reaches both directly.
//!
//! For each path in turn (the object store cut while PostgreSQL is reachable, then the
//! reverse), while it is cut: the partitioned broker answers an idempotent producer with
//! retriable errors and commits nothing of it, while the other broker keeps acknowledging
//! appends to the same partition; once the path is back, the producer's retry of the same
//! batch succeeds through the partitioned broker. At the end the partition is gapless and
//! holds every acknowledged batch exactly once. (Whole-server outages, stalls and read-side
//! faults are in `write_path.rs` and `read_faults.rs`.)

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use strom_cluster::testkit::TcpProxy;
use strom_cluster::{Db, FlushConfig, PgConfig, TopicPartition, Writer, WriterConfig};
use support::{Env, PREFIX, STEP, batch, fast_flush, read_all, values};

/// A flush stage of the partitioned broker gives up after this long (a cut path answers
/// nothing, so only its own bounds end the wait).
const STAGE: Duration = Duration::from_secs(4);

async fn bounded<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(STEP, f).await.expect("bounded step")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_cut_off_from_one_engine_fails_retriably_commits_nothing_and_recovers() {
    let env = Env::start().await;
    env.create_topic("t", 1).await;
    let tp = TopicPartition::new("t", 0);
    let pg_proxy = TcpProxy::start(SocketAddr::from(([127, 0, 0, 1], env.pg.port()))).unwrap();
    let s3_addr: SocketAddr = env
        .s3
        .endpoint()
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let s3_proxy = TcpProxy::start(s3_addr).unwrap();

    // Broker A: both engines through the proxies, short bounds.
    let mut config = env.config.clone();
    config.postgres = format!(
        "postgres://postgres@127.0.0.1:{}/postgres?connect_timeout=1",
        pg_proxy.port()
    );
    config.s3.endpoint = Some(format!("http://{}", s3_proxy.addr()));
    config.s3.request_timeout = Duration::from_secs(2);
    let pg_a = PgConfig::parse(&config.postgres, config.postgres_timeouts).unwrap();
    let writer_a = Writer::start(
        WriterConfig {
            flush: FlushConfig {
                timeout: STAGE,
                ..fast_flush()
            },
            prefix: PREFIX.into(),
            name: "a".into(),
        },
        Db::new(pg_a),
        config.build_object_store().unwrap(),
        None,
    );
    // Broker B: direct.
    let writer_b = env.writer("b", fast_flush(), None);
    let reader = env.reader(1 << 20);
    let pid = strom_cluster::metadata::allocate_producer_id(&env.db())
        .await
        .unwrap();

    let mut acked: Vec<(i64, String)> = Vec::new();
    let first = bounded(writer_a.append(tp.clone(), batch(Some((pid, 0, 0)), &values("a0", 1))))
        .await
        .expect("both paths up");
    acked.push((first.base_offset, "a0-0".into()));

    for (round, (what, proxy)) in [("object store", &s3_proxy), ("postgres", &pg_proxy)]
        .into_iter()
        .enumerate()
    {
        let seq = i32::try_from(round).unwrap() + 1;
        let name = format!("a{seq}");
        let pending = batch(Some((pid, 0, seq)), &values(&name, 1));
        proxy.cut();
        let err = bounded(writer_a.append(tp.clone(), pending.clone()))
            .await
            .expect_err(what);
        assert!(err.is_retriable(), "{what} cut: {err}");

        // The other broker keeps serving the same partition meanwhile.
        for i in 0..3 {
            let v = format!("b{round}-{i}");
            let ok = bounded(writer_b.append(tp.clone(), batch(None, std::slice::from_ref(&v))))
                .await
                .unwrap_or_else(|e| panic!("{what} cut, broker b: {e}"));
            acked.push((ok.base_offset, v));
        }
        // A second attempt while still cut fails too.
        let err = bounded(writer_a.append(tp.clone(), pending.clone()))
            .await
            .expect_err(what);
        assert!(err.is_retriable(), "{what} cut: {err}");
        // Nothing of the partitioned producer was committed.
        let records = read_all(&reader, &tp).await;
        assert!(
            !records.iter().any(|(_, v)| v.starts_with(&name)),
            "{what} cut: {name} committed: {records:?}"
        );

        // The path comes back: the same batch, retried, is committed once.
        proxy.restore();
        let deadline = Instant::now() + STEP;
        let ok = loop {
            match bounded(writer_a.append(tp.clone(), pending.clone())).await {
                Ok(ok) => break ok,
                Err(e) => {
                    assert!(e.is_retriable(), "{what} restored: {e}");
                    assert!(Instant::now() < deadline, "{what}: never recovered: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        };
        assert!(!ok.duplicate, "{what}: nothing was committed before");
        acked.push((ok.base_offset, format!("{name}-0")));
    }

    let records = read_all(&reader, &tp).await;
    let offsets: Vec<i64> = records.iter().map(|r| r.0).collect();
    assert_eq!(
        offsets,
        (0..records.len() as i64).collect::<Vec<_>>(),
        "gapless"
    );
    assert_eq!(
        records.len(),
        acked.len(),
        "nothing unacknowledged: {records:?}"
    );
    for (offset, v) in &acked {
        assert_eq!(
            records.iter().filter(|r| &r.1 == v).count(),
            1,
            "{v} exactly once"
        );
        assert!(records.contains(&(*offset, v.clone())), "{v} at {offset}");
    }
    // The producer's batches in its order.
    let mine: Vec<&str> = records
        .iter()
        .filter(|r| r.1.starts_with('a'))
        .map(|r| r.1.as_str())
        .collect();
    assert_eq!(mine, ["a0-0", "a1-0", "a2-0"]);
    bounded(writer_a.shutdown(STEP)).await.ok();
    bounded(writer_b.shutdown(STEP)).await.unwrap();
}
