//! Brokers of a cluster in-process, for running the single-node end-to-end tests against a
//! cluster: each broker is a [`TestBroker`] opened on the cluster backend
//! ([`TestBroker::start_in_cluster`]), as `strom serve --cluster-*` opens it.
//!
//! One real PostgreSQL and one moto S3 server (strom-cluster's test harness) are shared by all
//! clusters of one test process (started by the first; their processes and scratch
//! directories go when the process exits, by the harness's watchdogs); each cluster gets a
//! database and an object prefix of its own ([`ClusterSlot`]), so tests running at once see
//! nothing of each other, as with a data directory each on a single node. At most
//! [`MAX_CLUSTERS`] clusters run at once ([`Running`]: each broker holds a dozen PostgreSQL
//! sessions).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use strom_cluster::testkit::{HarnessError, MotoServer, PostgresServer};
use strom_cluster::{ClusterConfig, ClusterNode, FlushConfig};
use strom_kinesis::KinesisConfig;
use strom_kinesis::iterator::IteratorKey;
use tokio::sync::{Semaphore, SemaphorePermit};

/// Clusters of one test process running at once.
pub const MAX_CLUSTERS: usize = 3;
/// The bucket every cluster of the process writes to, under its own prefix.
const BUCKET: &str = "strom-tests";

static SERVERS: OnceLock<Arc<Servers>> = OnceLock::new();
static RUNNING: Semaphore = Semaphore::const_new(MAX_CLUSTERS);
static NEXT: AtomicUsize = AtomicUsize::new(0);

/// The PostgreSQL and S3 servers the process's clusters share.
#[derive(Debug)]
struct Servers {
    pg: PostgresServer,
    s3: MotoServer,
}

impl Servers {
    /// The process's servers, started by the first caller (blocking).
    fn shared() -> Arc<Servers> {
        Arc::clone(SERVERS.get_or_init(|| {
            let pg = PostgresServer::start().expect("start postgres");
            let s3 = MotoServer::start().expect("start moto");
            s3.create_bucket(BUCKET).expect("create bucket");
            Arc::new(Servers { pg, s3 })
        }))
    }
}

/// Leave to run one cluster (at most [`MAX_CLUSTERS`] at once); hold it while its brokers run.
#[derive(Debug)]
pub struct Running {
    _permit: SemaphorePermit<'static>,
}

impl Running {
    /// Waits until fewer than [`MAX_CLUSTERS`] clusters run.
    pub async fn acquire() -> Running {
        Running {
            _permit: RUNNING
                .acquire()
                .await
                .expect("the semaphore is never closed"),
        }
    }
}

/// One cluster's share of the servers: a database and an object prefix of its own (the
/// database is dropped with the slot). Drop it after its brokers stopped.
#[derive(Debug)]
pub struct ClusterSlot {
    servers: Arc<Servers>,
    database: String,
    url: String,
}

impl ClusterSlot {
    /// Creates a new database (starting the servers first if this is the process's first
    /// cluster). Blocks: call it from a blocking thread.
    pub fn new() -> Result<ClusterSlot, HarnessError> {
        let database = format!("strom_{}", NEXT.fetch_add(1, Ordering::Relaxed));
        let servers = Servers::shared();
        let url = servers.pg.create_database(&database)?;
        Ok(ClusterSlot {
            servers,
            database,
            url,
        })
    }

    /// A broker's cluster settings: this slot's database and prefix, short leases and flushes
    /// (as the cluster process tests use).
    pub fn config(&self) -> ClusterConfig {
        let mut config = ClusterConfig::new(&self.url, &format!("s3://{BUCKET}/{}", self.database))
            .expect("valid cluster URLs");
        config.s3.endpoint = Some(self.servers.s3.endpoint());
        config.s3.region = Some("us-east-1".to_owned());
        config.s3.allow_http = Some(true);
        config.s3.access_key_id = Some("test".to_owned());
        config.s3.secret_access_key = Some("test".to_owned());
        config.lease_ttl = Duration::from_secs(2);
        config.flush = FlushConfig {
            max_delay: Duration::from_millis(20),
            ..FlushConfig::default()
        };
        config
    }

    /// Joins a new broker to this slot's cluster (node id: the smallest free one).
    pub async fn join(&self) -> ClusterNode {
        ClusterNode::start(self.config(), None)
            .await
            .expect("broker joins the cluster")
    }
}

impl Drop for ClusterSlot {
    fn drop(&mut self) {
        if let Err(error) = self.servers.pg.drop_database(&self.database) {
            tracing::warn!(%error, database = %self.database, "test database not dropped");
        }
    }
}

/// `config` as `strom serve` completes it for a broker of a cluster: the shard-iterator key
/// every broker shares (unless `config` names a secret file) and, in AWS-limits mode, the
/// per-shard buckets in PostgreSQL.
pub async fn kinesis_config(node: &ClusterNode, mut config: KinesisConfig) -> KinesisConfig {
    if config.iterator_secret_file.is_none() {
        config.iterator_secret = Some(
            node.shared_secret("kinesis-iterator", IteratorKey::random_secret())
                .await
                .expect("the cluster's iterator secret"),
        );
    }
    if config.aws_limits {
        config.shared_limits = Some(Arc::new(strom_cluster::kinesis_limits::ClusterShardLimits(
            node.kinesis_buckets().expect("limit buckets"),
        )));
    }
    config
}
