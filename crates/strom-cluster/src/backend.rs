//! The cluster backend behind the broker's storage seam: [`ClusterBackend`] implements
//! `strom_broker::storage::StorageBackend` over this crate's [`Writer`], [`Reader`] and
//! [`Notifier`], the shared metadata store ([`crate::metadata_store`]) and the broker registry
//! ([`crate::membership`]).
//!
//! ```text
//!  strom serve --cluster-postgres URL --cluster-object-store s3://BUCKET/PREFIX
//!    ClusterNode::start ── connect, migrate, register (node id allocated if not given)
//!    Broker::open_with_backend(ClusterBackend)
//!      open_metadata  → ClusterMetadataStore (strom_metadata_events, replayed then tailed)
//!      open_partition → ClusterPartitionStore (append → Writer, read → Reader, hw ← Notifier)
//!      members        → Membership (live brokers, refreshed every second)
//!      coordinator_leases → CoordinatorLeaseKeeper (group-coordinator shard leases)
//!      txn_coordinator_leases → a second keeper (transaction-coordinator shard leases)
//! ```
//!
//! **Blocking bridge.** The seam's calls block (the broker makes them from blocking threads);
//! the engine is async. [`Bridge::run`] spawns the future on the broker's runtime and waits
//! for its answer on a plain channel, so the engine's I/O runs on the runtime's drivers. A
//! call from an async worker thread (a `/metrics` scrape) waits inside `block_in_place`, which
//! first hands the worker's queued tasks (the one just spawned among them) to another thread,
//! instead of panicking as `Handle::block_on` would or waiting forever.

use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;
use strom_broker::metadata::MetadataEvent;
use strom_broker::storage::{
    ClusterMembers, CoordinatorLeases, LogConfig, MetadataStore, PartitionStore, StorageBackend,
    StorageError, TopicPartition as SeamPartition,
};
use tokio::runtime::Handle;

use crate::cache::ObjectCache;
use crate::config::ClusterConfig;
use crate::coordinator::{CoordinatorKind, CoordinatorLeaseKeeper};
use crate::db::Db;
use crate::error::{DbOp, Error, Result};
use crate::membership::Membership;
use crate::metadata::TopicPartition;
use crate::metadata_store::ClusterMetadataStore;
use crate::notify::Notifier;
use crate::partition_store::ClusterPartitionStore;
use crate::reader::{Reader, ReaderConfig};
use crate::writer::{Writer, WriterConfig};

/// Bytes of served batches the object cache keeps (tail reads, recent catch-up).
const CACHE_BYTES: u64 = 256 << 20;
/// PostgreSQL connections of the read path (fetches and ListOffsets run concurrently).
const READER_CONNECTIONS: usize = 8;
/// How often a broker reads the metadata events other brokers appended.
const METADATA_POLL: Duration = Duration::from_millis(250);

/// Runs the engine's futures for blocking callers.
#[derive(Debug, Clone)]
pub(crate) struct Bridge {
    handle: Handle,
}

impl Bridge {
    /// Runs `future` on the runtime and waits for it. [`StorageError::Closed`] when the
    /// runtime is shutting down and dropped the task.
    pub(crate) fn run<F>(&self, future: F) -> std::result::Result<F::Output, StorageError>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let _ = tx.send(future.await);
        });
        let wait = || rx.recv().map_err(|_| StorageError::Closed);
        // Called on an async worker (e.g. a `/metrics` scrape asking `size_bytes`), the task
        // just spawned sits in this worker's LIFO slot, which other workers do not steal:
        // waiting plainly would never end. `block_in_place` hands the worker's queue to
        // another thread first. (On blocking threads it just runs `wait`.)
        match Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(wait)
            }
            _ => wait(),
        }
    }

    /// The runtime's handle.
    pub(crate) fn handle(&self) -> &Handle {
        &self.handle
    }
}

/// What every partition store of one broker shares.
#[derive(Debug)]
pub(crate) struct Engine {
    pub(crate) bridge: Bridge,
    pub(crate) writer: Writer,
    pub(crate) reader: Reader,
    pub(crate) notifier: Notifier,
    /// Partition-level admin statements (DeleteRecords, producer listings).
    pub(crate) admin: Db,
}

/// One broker's connection to the cluster: the engine, the metadata store's database and the
/// registration. Made by [`ClusterNode::start`]; [`ClusterNode::backend`] is what the broker
/// opens its storage through.
#[derive(Debug)]
pub struct ClusterNode {
    config: ClusterConfig,
    engine: Arc<Engine>,
    membership: Arc<Membership>,
    store: Arc<dyn ObjectStore>,
    leases: Arc<CoordinatorLeaseKeeper>,
    txn_leases: Arc<CoordinatorLeaseKeeper>,
}

impl ClusterNode {
    /// Connects to PostgreSQL (migrating the schema), builds the object-store client, starts
    /// the writer, reader and commit listener on the current runtime, and registers this
    /// broker under `node_id`, or under the smallest id no live broker holds when `None`.
    /// Settings [`ClusterConfig::validate`] refuses are an error before anything connects.
    pub async fn start(config: ClusterConfig, node_id: Option<i32>) -> Result<ClusterNode> {
        config.validate()?;
        let pg = config.postgres_config()?;
        {
            let mut client = crate::db::connect(&pg).await?;
            crate::schema::migrate(&mut client).await?;
        }
        let store = config.build_object_store()?;
        let membership = Arc::new(Membership::join(&config, node_id).await?);
        let cache = Arc::new(ObjectCache::new(CACHE_BYTES));
        let writer = Writer::start(
            WriterConfig {
                flush: config.flush,
                prefix: config.object_store.prefix.clone(),
                name: format!("broker-{}", membership.node_id()),
            },
            Db::new(pg.clone()),
            Arc::clone(&store),
            Some(Arc::clone(&cache)),
        );
        let reader = Reader::new(
            Db::with_connections(pg.clone(), READER_CONNECTIONS),
            Arc::clone(&store),
            cache,
            ReaderConfig::default(),
        );
        let admin = Db::new(pg.clone());
        let notifier = Notifier::start(pg);
        let engine = Arc::new(Engine {
            bridge: Bridge {
                handle: Handle::current(),
            },
            writer,
            reader,
            notifier,
            admin,
        });
        let keeper = |kind| -> Result<Arc<CoordinatorLeaseKeeper>> {
            Ok(Arc::new(CoordinatorLeaseKeeper::start(
                kind,
                config.postgres_config()?,
                membership.node_id(),
                Arc::clone(&membership) as Arc<dyn ClusterMembers>,
                config.lease_ttl,
            )))
        };
        let leases = keeper(CoordinatorKind::Group)?;
        let txn_leases = keeper(CoordinatorKind::Txn)?;
        Ok(ClusterNode {
            config,
            engine,
            membership,
            store,
            leases,
            txn_leases,
        })
    }

    /// The 32-byte secret `name` shared by every broker of the cluster: the stored one, or
    /// `candidate` if this is the first broker to ask (stored then, in the same statement, so
    /// two brokers asking at once agree). For keys that must be the same on every broker and
    /// known to no client (the Kinesis shard-iterator key).
    pub async fn shared_secret(&self, name: &str, candidate: [u8; 32]) -> Result<[u8; 32]> {
        let db = &self.engine.admin;
        let value: Vec<u8> = db
            .bounded(async {
                let conn = db.conn().await?;
                conn.execute(
                    "INSERT INTO strom_secrets (name, value) VALUES ($1, $2)
                     ON CONFLICT (name) DO NOTHING",
                    &[&name, &candidate.as_slice()],
                )
                .await
                .map_err(Error::pg(DbOp::Secret))?;
                conn.query_one("SELECT value FROM strom_secrets WHERE name = $1", &[&name])
                    .await
                    .and_then(|row| row.try_get(0))
                    .map_err(Error::pg(DbOp::Secret))
            })
            .await?;
        <[u8; 32]>::try_from(value.as_slice()).map_err(|_| Error::BadSecret {
            name: name.to_owned(),
            len: value.len(),
        })
    }

    /// The Kinesis AWS-limits buckets every broker shares (on connections of their own).
    pub fn kinesis_buckets(&self) -> Result<crate::kinesis::KinesisBuckets> {
        Ok(crate::kinesis::KinesisBuckets::new(
            self.config.postgres_config()?,
        ))
    }

    /// This broker's node id (given, or allocated at registration).
    pub fn node_id(&self) -> i32 {
        self.membership.node_id()
    }

    /// What `/metrics` reads of this broker's cluster engine (held by the metrics collector,
    /// which outlives no runtime: it only reads counters and in-memory lease state).
    pub fn observer(&self) -> ClusterObserver {
        ClusterObserver {
            writer: self.engine.writer.clone(),
            leases: Arc::clone(&self.leases),
        }
    }

    /// The storage backend to open the broker with.
    pub fn backend(&self) -> Arc<ClusterBackend> {
        Arc::new(ClusterBackend {
            config: self.config.clone(),
            engine: Arc::clone(&self.engine),
            membership: Arc::clone(&self.membership),
            leases: Arc::clone(&self.leases),
            txn_leases: Arc::clone(&self.txn_leases),
        })
    }

    /// Publishes where this broker listens (listener name → `host:port`: `kafka`, `kinesis`,
    /// `http`, and `kafka.<LISTENER>` per Kafka listener); Metadata on every broker lists
    /// the client's own listener's (`kafka.<name>`), else the `kafka` one.
    pub async fn advertise(&self, addresses: &crate::registry::BrokerAddresses) -> Result<()> {
        self.membership.advertise(addresses).await
    }

    /// Starts the background jobs (orphan collector, retention, compaction, merging, object
    /// reclaim; [`crate::lifecycle`]): every broker runs a task per job and the one holding
    /// the job's lease does the work. They run until the runtime stops; the handle is the
    /// orphan collector's.
    pub fn start_collector(&self) -> Result<tokio::task::JoinHandle<()>> {
        let mut config = crate::lifecycle::LifecycleConfig::new(
            self.config.object_store.prefix.clone(),
            crate::lifecycle::RunnerConfig {
                holder: format!("broker-{}", self.node_id()),
                lease_ttl: self.config.lease_ttl,
            },
            self.config.orphan_grace,
        );
        config.interval = self.config.job_interval();
        config.delete_delay = self.config.lifecycle.delete_delay;
        config.merge = self.config.lifecycle.merge;
        let mut handles = crate::lifecycle::spawn(
            self.config.postgres_config()?,
            Arc::clone(&self.store),
            &config,
        )
        .into_iter();
        // `jobs` lists the orphan collector first; the others run detached.
        handles.next().ok_or(Error::InvalidConfig {
            setting: "lifecycle jobs",
            value: String::new(),
            reason: "no job to run",
        })
    }

    /// Clean shutdown: flushes what the writer holds (bounded by `timeout`) and deregisters,
    /// so the broker leaves Metadata at once instead of after its lease.
    pub async fn shutdown(&self, timeout: Duration) {
        if let Err(error) = self.engine.writer.clone().shutdown(timeout).await {
            tracing::warn!(%error, "cluster writer did not stop in time");
        }
        self.leases.release_all().await;
        self.txn_leases.release_all().await;
        if let Err(error) = self.membership.leave().await {
            tracing::warn!(%error, "deregistering the broker failed; its lease will lapse");
        }
    }
}

/// Read-only counters and lease state of one broker's cluster engine, for `/metrics`
/// ([`ClusterNode::observer`]).
#[derive(Debug, Clone)]
pub struct ClusterObserver {
    writer: Writer,
    leases: Arc<CoordinatorLeaseKeeper>,
}

impl ClusterObserver {
    /// The writer's counters since start (flushes, PostgreSQL transactions, objects, bytes,
    /// PUT retries).
    pub fn writer_stats(&self) -> crate::writer::WriterStats {
        self.writer.stats()
    }

    /// The coordinator-shard leases this broker holds, with the time left on each.
    pub fn coordinator_shards(&self) -> Vec<crate::coordinator::HeldShard> {
        self.leases.held_shards()
    }

    /// Coordinator shards this broker took over from a holder that was gone (failovers).
    pub fn coordinator_failovers(&self) -> u64 {
        self.leases.failovers()
    }
}

/// The cluster storage backend of one broker (see the module docs).
#[derive(Debug)]
pub struct ClusterBackend {
    config: ClusterConfig,
    engine: Arc<Engine>,
    membership: Arc<Membership>,
    leases: Arc<CoordinatorLeaseKeeper>,
    txn_leases: Arc<CoordinatorLeaseKeeper>,
}

impl StorageBackend for ClusterBackend {
    fn open_metadata(&self) -> strom_broker::Result<(Box<dyn MetadataStore>, Vec<MetadataEvent>)> {
        let pg = self.config.postgres_config().map_err(storage)?;
        let (store, events) = ClusterMetadataStore::open(
            self.engine.bridge.clone(),
            Db::new(pg),
            self.membership.node_id(),
            self.config.metadata_compaction,
        )?;
        Ok((Box::new(store), events))
    }

    fn open_partition(
        &self,
        partition: SeamPartition<'_>,
        config: LogConfig,
    ) -> strom_broker::Result<Arc<dyn PartitionStore>> {
        let tp = TopicPartition::new(partition.topic, partition.index.0);
        Ok(Arc::new(ClusterPartitionStore::open(
            Arc::clone(&self.engine),
            tp,
            config,
        )?))
    }

    fn metadata_poll_interval(&self) -> Option<Duration> {
        Some(METADATA_POLL)
    }

    fn members(&self) -> Option<Arc<dyn ClusterMembers>> {
        Some(Arc::clone(&self.membership) as Arc<dyn ClusterMembers>)
    }

    fn coordinator_leases(&self) -> Option<Arc<dyn CoordinatorLeases>> {
        Some(Arc::clone(&self.leases) as Arc<dyn CoordinatorLeases>)
    }

    fn txn_coordinator_leases(&self) -> Option<Arc<dyn CoordinatorLeases>> {
        Some(Arc::clone(&self.txn_leases) as Arc<dyn CoordinatorLeases>)
    }
}

/// The seam's error for an engine error.
pub(crate) fn storage_error(error: Error) -> StorageError {
    match error {
        Error::OffsetOutOfRange {
            offset,
            log_start_offset,
            high_watermark,
            ..
        } => StorageError::OffsetOutOfRange {
            requested: offset,
            start: log_start_offset,
            end: high_watermark,
        },
        Error::OutOfOrderSequence {
            producer_id,
            producer_epoch,
            expected,
            received,
            ..
        } => StorageError::OutOfOrderSequence {
            producer_id,
            epoch: producer_epoch,
            expected,
            found: received,
        },
        Error::ProducerFenced {
            producer_id,
            producer_epoch,
            current_epoch,
            ..
        } => StorageError::ProducerFenced {
            producer_id,
            epoch: producer_epoch,
            current_epoch,
        },
        Error::InvalidTxnState { producer_id, .. } => StorageError::InvalidTxnState {
            producer_id,
            reason: "a non-transactional batch while its transaction is open",
        },
        Error::InvalidBatch { source } => StorageError::InvalidBatch(source),
        Error::BatchTooLarge { size, limit } => StorageError::BatchTooLarge { size, max: limit },
        // The partition's rows are gone: another broker deleted the topic.
        Error::UnknownPartition { .. } => StorageError::Closed,
        Error::PartitionSealed { .. } => StorageError::Sealed,
        Error::CorruptIndex {
            key, base_offset, ..
        } => StorageError::Corrupt {
            location: key,
            reason: format!("index row at offset {base_offset} does not match the object"),
        },
        other => {
            let op = match &other {
                Error::Postgres { .. } => "postgres",
                Error::ObjectStore { .. } => "object store",
                Error::Timeout { .. } => "cluster flush",
                _ => "cluster backend",
            };
            let resource = match &other {
                Error::ObjectStore { key: Some(key), .. } | Error::ObjectCollected { key } => {
                    key.clone()
                }
                _ => String::new(),
            };
            StorageError::Unavailable {
                op,
                resource,
                source: Arc::new(other),
            }
        }
    }
}

/// The broker's error for an engine error.
pub(crate) fn storage(error: Error) -> strom_broker::Error {
    strom_broker::Error::Storage(storage_error(error))
}

/// [`crate::status::cluster_status`] of the cluster whose PostgreSQL is at `postgres_url`
/// (`strom cluster status`; no broker needed).
pub async fn status_at(postgres_url: &str) -> Result<crate::status::ClusterStatus> {
    let config = crate::tls::PgConfig::parse(postgres_url, crate::tls::PgTimeouts::default())?;
    crate::status::cluster_status(&Db::new(config)).await
}
