//! One-shot measurement of the engines' own ceilings on this machine: moto's PUT/GET rate and
//! PostgreSQL's commit rate (fsync on), plus the rate of the writer's own commit transaction
//! with an in-memory object store. Starts its own servers on loopback and stops them; every loop
//! has a fixed count.
//!
//! ```text
//! cargo run -p strom-cluster --example ceilings
//! ```
//!
//! Numbers from a shared 2-core machine are noisy; they are ceilings to compare against, not
//! results.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::join_all;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use strom_cluster::testkit::{MotoServer, PostgresServer};
use strom_cluster::{ClusterConfig, Db, FlushConfig, TopicPartition, Writer, WriterConfig};
use strom_record::{BatchBuilder, Record};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Latencies of one run, printed as a row.
struct Run {
    name: String,
    ops: usize,
    bytes: usize,
    wall: Duration,
    latencies: Vec<Duration>,
}

impl Run {
    fn print(mut self) {
        self.latencies.sort();
        let pct = |p: f64| {
            let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
            self.latencies.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e3)
        };
        let secs = self.wall.as_secs_f64();
        println!(
            "| {} | {} | {:.0} | {:.1} | {:.1} | {:.1} |",
            self.name,
            self.ops,
            self.ops as f64 / secs,
            self.bytes as f64 / secs / (1 << 20) as f64,
            pct(0.5),
            pct(0.99),
        );
    }
}

/// Runs `ops` calls of `op` with `concurrency` in flight.
async fn measure<F, Fut>(
    name: String,
    ops: usize,
    bytes_per_op: usize,
    concurrency: usize,
    op: F,
) -> Result<Run, BoxError>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), BoxError>> + Send,
{
    let op = Arc::new(op);
    let started = Instant::now();
    let lanes = (0..concurrency).map(|lane| {
        let op = op.clone();
        async move {
            let mut lat = Vec::new();
            for i in (lane..ops).step_by(concurrency) {
                let t = Instant::now();
                op(i).await?;
                lat.push(t.elapsed());
            }
            Ok::<_, BoxError>(lat)
        }
    });
    let mut latencies = Vec::new();
    for lane in join_all(lanes).await {
        latencies.extend(lane?);
    }
    Ok(Run {
        name,
        ops,
        bytes: ops * bytes_per_op,
        wall: started.elapsed(),
        latencies,
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), BoxError> {
    let (pg, s3) = tokio::task::spawn_blocking(|| {
        let pg = PostgresServer::start_with_fsync(true)?;
        let s3 = MotoServer::start()?;
        s3.create_bucket("bench")?;
        Ok::<_, BoxError>((pg, s3))
    })
    .await??;
    let mut config = ClusterConfig::new(&pg.url(), "s3://bench/ceilings")?;
    config.s3.endpoint = Some(s3.endpoint());
    config.s3.region = Some("us-east-1".into());
    config.s3.allow_http = Some(true);
    config.s3.access_key_id = Some("test".into());
    config.s3.secret_access_key = Some("test".into());
    let store = config.build_object_store()?;

    println!("| operation | ops | ops/s | MiB/s | p50 ms | p99 ms |");
    println!("|---|---|---|---|---|---|");
    for (size, ops, conc) in [
        (64 << 10, 200, 1),
        (1 << 20, 100, 1),
        (1 << 20, 100, 4),
        (8 << 20, 24, 2),
    ] {
        let body = Bytes::from(vec![7u8; size]);
        let s = store.clone();
        measure(
            format!("moto PUT {} KiB x{conc}", size >> 10),
            ops,
            size,
            conc,
            move |i| {
                let s = s.clone();
                let body = body.clone();
                async move {
                    s.put(&Path::from(format!("ceilings/{size}/{i}")), body.into())
                        .await?;
                    Ok(())
                }
            },
        )
        .await?
        .print();
    }
    for (range, conc) in [(64 << 10, 1), (64 << 10, 4), (1 << 20, 4)] {
        let s = store.clone();
        measure(
            format!("moto GET range {} KiB x{conc}", range >> 10),
            200,
            range,
            conc,
            move |i| {
                let s = s.clone();
                async move {
                    let start = (i % 16) as u64 * (range as u64 / 2);
                    let key = Path::from(format!("ceilings/{}/{}", 8 << 20, i % 24));
                    s.get_range(&key, start..start + range as u64).await?;
                    Ok(())
                }
            },
        )
        .await?
        .print();
    }

    let pg_config = config.postgres_config()?;
    {
        let db = Db::new(pg_config.clone());
        db.conn()
            .await?
            .batch_execute("CREATE TABLE bench (id int PRIMARY KEY, n bigint); INSERT INTO bench SELECT g, 0 FROM generate_series(0, 63) g")
            .await?;
    }
    for conc in [1, 8] {
        let dbs: Arc<Vec<Db>> = Arc::new((0..conc).map(|_| Db::new(pg_config.clone())).collect());
        measure(
            format!("postgres commit (1-row UPDATE, fsync on) x{conc}"),
            400,
            0,
            conc,
            move |i| {
                let dbs = dbs.clone();
                async move {
                    let conn = dbs[i % conc].conn().await?;
                    let id = (i % 64) as i32;
                    conn.execute("UPDATE bench SET n = n + 1 WHERE id = $1", &[&id])
                        .await?;
                    Ok(())
                }
            },
        )
        .await?
        .print();
    }

    // The writer's own commit transaction (10 partitions per flush), object PUT in memory.
    {
        let db = Db::new(pg_config.clone());
        strom_cluster::schema::migrate(&mut *db.conn().await?).await?;
        strom_cluster::metadata::create_topic(&db, "t", 10, &serde_json::json!({})).await?;
        let writer = Writer::start(
            WriterConfig {
                flush: FlushConfig {
                    max_delay: Duration::from_millis(1),
                    max_bytes: 1 << 20,
                    max_buffered_bytes: 64 << 20,
                    timeout: Duration::from_secs(60),
                    ..FlushConfig::default()
                },
                prefix: "ceilings".into(),
                name: "bench".into(),
            },
            db,
            Arc::new(object_store::memory::InMemory::new()),
            None,
        );
        let record = Record::new(0, None, Some(Bytes::from(vec![1u8; 1024])));
        let batch = Bytes::from(BatchBuilder::new().build(&[record])?);
        let w = writer.clone();
        let rounds = 200;
        let run = measure(
            "writer flush commit (10 partitions x 1 KiB, in-memory PUT)".into(),
            rounds,
            10 * batch.len(),
            1,
            move |_| {
                let w = w.clone();
                let batch = batch.clone();
                async move {
                    let appends =
                        (0..10).map(|p| w.append(TopicPartition::new("t", p), batch.clone()));
                    for r in join_all(appends).await {
                        r?;
                    }
                    Ok(())
                }
            },
        )
        .await?;
        let stats = writer.stats();
        run.print();
        println!(
            "\n(writer: {} commits, {} PostgreSQL transactions, {} objects for {rounds} rounds of 10 appends)",
            stats.commits, stats.transactions, stats.objects
        );
        writer.shutdown(Duration::from_secs(30)).await?;
    }
    drop(s3);
    drop(pg);
    Ok(())
}
