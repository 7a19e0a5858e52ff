//! Shared set-up for the cluster tests: one real PostgreSQL and one moto S3 server per test,
//! torn down when the [`Env`] drops.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::ObjectStore;
use strom_cluster::testkit::{MotoServer, PostgresServer};
use strom_cluster::{
    ClusterConfig, Db, FlushConfig, ObjectCache, Reader, ReaderConfig, Writer, WriterConfig,
};
use strom_record::{BatchBuilder, Record};

/// Upper bound for any single test step that waits on the servers.
pub const STEP: Duration = Duration::from_secs(60);

pub const BUCKET: &str = "strom-test";
pub const PREFIX: &str = "cluster";

/// Real PostgreSQL and moto, a migrated schema and a bucket.
pub struct Env {
    pub pg: PostgresServer,
    pub s3: MotoServer,
    pub config: ClusterConfig,
    pub store: Arc<dyn ObjectStore>,
}

impl Env {
    /// Starts both servers (blocking work off the async threads), creates the bucket and
    /// migrates the schema.
    pub async fn start() -> Env {
        let (pg, s3) = tokio::task::spawn_blocking(|| {
            let pg = PostgresServer::start().expect("start postgres");
            let s3 = MotoServer::start().expect("start moto");
            s3.create_bucket(BUCKET).expect("create bucket");
            (pg, s3)
        })
        .await
        .expect("harness thread");
        let mut config =
            ClusterConfig::new(&pg.url(), &format!("s3://{BUCKET}/{PREFIX}")).expect("config");
        config.s3.endpoint = Some(s3.endpoint());
        config.s3.region = Some("us-east-1".into());
        config.s3.allow_http = Some(true);
        config.s3.access_key_id = Some("test".into());
        config.s3.secret_access_key = Some("test".into());
        config.s3.max_retries = 2;
        config.s3.retry_timeout = Duration::from_secs(3);
        config.s3.request_timeout = Duration::from_secs(5);
        config.s3.connect_timeout = Duration::from_secs(1);
        let store = config.build_object_store().expect("object store");
        let env = Env {
            pg,
            s3,
            config,
            store,
        };
        let db = env.db();
        let mut conn = db.conn().await.expect("connect");
        strom_cluster::schema::migrate(&mut conn)
            .await
            .expect("migrate");
        env
    }

    pub fn db(&self) -> Db {
        Db::new(self.config.postgres_config().expect("pg config"))
    }

    pub fn writer(
        &self,
        name: &str,
        flush: FlushConfig,
        cache: Option<Arc<ObjectCache>>,
    ) -> Writer {
        Writer::start(
            WriterConfig {
                flush,
                prefix: PREFIX.into(),
                name: name.into(),
            },
            self.db(),
            self.store.clone(),
            cache,
        )
    }

    pub fn reader(&self, cache_bytes: u64) -> Reader {
        Reader::new(
            Db::with_connections(self.config.postgres_config().expect("pg config"), 4),
            self.store.clone(),
            Arc::new(ObjectCache::new(cache_bytes)),
            ReaderConfig::default(),
        )
    }

    pub async fn create_topic(&self, name: &str, partitions: i32) {
        strom_cluster::metadata::create_topic(&self.db(), name, partitions, &serde_json::json!({}))
            .await
            .expect("create topic");
    }
}

/// A broker's cluster node on this environment (the fast flush policy), with `adjust` applied to
/// its configuration first.
pub async fn node_with(
    env: &Env,
    adjust: impl FnOnce(&mut ClusterConfig),
) -> (
    strom_cluster::ClusterNode,
    Arc<strom_cluster::ClusterBackend>,
) {
    let mut config = env.config.clone();
    config.flush = fast_flush();
    adjust(&mut config);
    let node = tokio::time::timeout(STEP, strom_cluster::ClusterNode::start(config, None))
        .await
        .expect("bounded")
        .expect("start node");
    let backend = node.backend();
    (node, backend)
}

/// [`node_with`] with the environment's configuration as it is.
pub async fn node(
    env: &Env,
) -> (
    strom_cluster::ClusterNode,
    Arc<strom_cluster::ClusterBackend>,
) {
    node_with(env, |_| {}).await
}

/// Runs a blocking seam call off the async threads, bounded by [`STEP`].
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::time::timeout(STEP, tokio::task::spawn_blocking(f))
        .await
        .expect("bounded")
        .expect("blocking task")
}

/// A short flush delay so tests run fast.
pub fn fast_flush() -> FlushConfig {
    FlushConfig {
        max_delay: Duration::from_millis(20),
        max_bytes: 1 << 20,
        max_buffered_bytes: 8 << 20,
        timeout: Duration::from_secs(20),
        ..FlushConfig::default()
    }
}

/// A batch of records with the given values, timestamps from 1000 on; `producer` = (id, epoch,
/// base sequence) for an idempotent batch.
pub fn batch(producer: Option<(i64, i16, i32)>, values: &[String]) -> Bytes {
    batch_at(producer, 1_000, values)
}

/// As [`batch`], with record `i` at timestamp `ts0 + i`.
pub fn batch_at(producer: Option<(i64, i16, i32)>, ts0: i64, values: &[String]) -> Bytes {
    let mut builder = BatchBuilder::new();
    if let Some((id, epoch, seq)) = producer {
        builder.producer_id = id;
        builder.producer_epoch = epoch;
        builder.base_sequence = seq;
    }
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record::new(ts0 + i as i64, None, Some(Bytes::from(v.clone()))))
        .collect();
    Bytes::from(builder.build(&records).expect("build batch"))
}

/// `n` values `prefix-0` .. `prefix-(n-1)`.
pub fn values(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

/// Every record of a partition as (offset, value), read through `reader` from offset 0.
pub async fn read_all(reader: &Reader, tp: &strom_cluster::TopicPartition) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    let mut offset = reader.offsets(tp).await.expect("offsets").log_start_offset;
    loop {
        let fetched = reader.fetch(tp, offset, 64 << 10).await.expect("fetch");
        if fetched.batches.is_empty() {
            break;
        }
        for b in fetched.batches {
            let decoded = strom_record::decode_records(&b, strom_record::DecodeLimits::default())
                .expect("decode");
            for r in decoded.records {
                if r.offset >= offset {
                    let v = r.value.map(|v| String::from_utf8_lossy(&v).into_owned());
                    out.push((r.offset, v.unwrap_or_default()));
                }
            }
            offset = decoded.header.next_offset();
        }
    }
    out
}
