//! Read-path faults and PostgreSQL session settings, against real servers:
//!
//! - a frozen (`SIGSTOP`) or stopped object store makes a fetch fail with a retriable error
//!   within the reader's GET bound (not hang); once the store answers again the same fetch
//!   succeeds;
//! - a frozen or stopped PostgreSQL makes a fetch fail with a retriable error within the
//!   database bound; once it is back the reader reconnects by itself.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use strom_cluster::{Db, ObjectCache, Reader, ReaderConfig, TopicPartition};
use support::{Env, STEP, batch, values};

/// A reader that never serves from its cache (every fetch downloads), with `get_timeout`.
fn uncached_reader(env: &Env, get_timeout: Duration) -> Reader {
    Reader::new(
        Db::with_connections(env.config.postgres_config().unwrap(), 2),
        env.store.clone(),
        Arc::new(ObjectCache::new(0)),
        ReaderConfig {
            get_timeout,
            ..ReaderConfig::default()
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_store_outages_fail_reads_retriably_and_reads_recover() {
    let mut env = Env::start().await;
    env.create_topic("t", 1).await;
    let tp = TopicPartition::new("t", 0);
    let writer = env.writer("w", support::fast_flush(), None);
    writer
        .append(tp.clone(), batch(None, &values("v", 3)))
        .await
        .unwrap();
    let reader = uncached_reader(&env, Duration::from_secs(2));
    assert_eq!(
        reader.fetch(&tp, 0, 1 << 20).await.unwrap().batches.len(),
        1
    );

    // Frozen store: the GET gets no answer; the fetch gives up after the bound.
    env.s3.pause();
    let started = Instant::now();
    let err = tokio::time::timeout(STEP, reader.fetch(&tp, 0, 1 << 20))
        .await
        .expect("fetch bounded")
        .unwrap_err();
    let waited = started.elapsed();
    assert!(err.is_retriable(), "{err}");
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_secs(8),
        "gave up after {waited:?}: {err}"
    );
    env.s3.resume();
    let back = reader.fetch(&tp, 0, 1 << 20).await.unwrap();
    assert_eq!(back.batches.len(), 1);

    // Stopped store (connections refused): retried with backoff, then a retriable error.
    env.s3.stop();
    let started = Instant::now();
    let err = tokio::time::timeout(STEP, reader.fetch(&tp, 0, 1 << 20))
        .await
        .expect("fetch bounded")
        .unwrap_err();
    assert!(err.is_retriable(), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10), "{err}");
    // Offsets come from PostgreSQL alone and keep being served.
    assert_eq!(reader.offsets(&tp).await.unwrap().next_offset, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outages_fail_reads_retriably_and_readers_reconnect() {
    let mut env = Env::start().await;
    env.create_topic("t", 1).await;
    let tp = TopicPartition::new("t", 0);
    let writer = env.writer("w", support::fast_flush(), None);
    writer
        .append(tp.clone(), batch(None, &values("v", 2)))
        .await
        .unwrap();
    // Short statement timeout: the client-side bound is it plus the connect bound (2 × the
    // URL's connect_timeout of 5 s).
    env.config.postgres_timeouts.statement = Duration::from_secs(1);
    let reader = uncached_reader(&env, Duration::from_secs(2));
    assert_eq!(
        reader.fetch(&tp, 0, 1 << 20).await.unwrap().high_watermark,
        2
    );

    // Frozen: the open connections get no answer and new ones no handshake.
    env.pg.pause();
    let started = Instant::now();
    let err = tokio::time::timeout(STEP, reader.fetch(&tp, 0, 1 << 20))
        .await
        .expect("fetch bounded")
        .unwrap_err();
    assert!(err.is_retriable(), "{err}");
    assert!(started.elapsed() < Duration::from_secs(20), "{err}");
    env.pg.resume();
    let back = tokio::time::timeout(STEP, reader.fetch(&tp, 0, 1 << 20))
        .await
        .expect("bounded")
        .expect("the reader reconnects after the freeze");
    assert_eq!(back.high_watermark, 2);

    // Down: refused at once, retriable; back on the same port: the reader reconnects.
    env.pg.stop();
    let err = tokio::time::timeout(STEP, reader.fetch(&tp, 0, 1 << 20))
        .await
        .expect("fetch bounded")
        .unwrap_err();
    assert!(err.is_retriable(), "{err}");
    tokio::task::block_in_place(|| env.pg.restart()).unwrap();
    let started = Instant::now();
    loop {
        match reader.fetch(&tp, 0, 1 << 20).await {
            Ok(f) => {
                assert_eq!(f.high_watermark, 2);
                break;
            }
            Err(e) => {
                assert!(e.is_retriable(), "{e}");
                assert!(started.elapsed() < STEP, "no recovery: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
