//! The broker: the registry of topics and partitions, and every admin operation on them.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::Duration;

use strom_log::{Clock, SystemClock};
use uuid::Uuid;

use crate::config::{self, ConfigEntry, TopicSettings};
use crate::error::{Error, Result};
use crate::metadata::{METADATA_DIR, MetadataEvent};
use crate::partition::Partition;
use crate::storage::local::LocalBackend;
use crate::storage::{LogConfig, MetadataStore, PartitionIndex, StorageBackend, TopicPartition};
use crate::topic::{ConfigOp, CreateTopic, Topic, TopicSummary, validate_topic_name};

/// The most partitions one topic may have.
pub const MAX_PARTITIONS: i32 = 10_000;

/// How many producer ids one metadata event reserves.
const PRODUCER_ID_BLOCK: i64 = 1000;

/// Producer-id allocation state: ids in `next..reserved_until` are free to hand out.
#[derive(Debug, Clone, Copy)]
struct ProducerIds {
    next: i64,
    reserved_until: i64,
}

/// Broker-wide settings.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Where partitions and metadata live.
    pub data_dir: PathBuf,
    /// This broker's node id (`node.id`).
    pub node_id: i32,
    /// Create unknown topics on Metadata and Produce requests (`auto.create.topics.enable`).
    pub auto_create_topics: bool,
    /// Partition count of auto-created topics and of CreateTopics with -1 (`num.partitions`).
    pub num_partitions: i32,
    /// Broker-level defaults for topic configs (Kafka's topic-config names, e.g. `retention.ms`).
    pub topic_defaults: BTreeMap<String, String>,
    /// How often retention runs (`log.retention.check.interval.ms`).
    pub retention_check_interval: Duration,
    /// Group coordinator settings (session timeout range, initial rebalance delay).
    pub group: crate::group::GroupConfig,
    /// Log cleaner settings (`log.cleaner.*`).
    pub cleaner: crate::cleaner::CleanerConfig,
    /// The authorizer (off by default; see [`crate::acl`]).
    pub authorizer: crate::acl::AuthorizerConfig,
}

impl BrokerConfig {
    /// The defaults for a data directory: node 0, auto-creation on, one partition per topic.
    pub fn new(data_dir: impl Into<PathBuf>) -> BrokerConfig {
        BrokerConfig {
            data_dir: data_dir.into(),
            node_id: 0,
            auto_create_topics: true,
            num_partitions: 1,
            topic_defaults: BTreeMap::new(),
            retention_check_interval: Duration::from_secs(300),
            group: crate::group::GroupConfig::default(),
            cleaner: crate::cleaner::CleanerConfig::default(),
            authorizer: crate::acl::AuthorizerConfig::default(),
        }
    }
}

#[derive(Debug, Default)]
struct Registry {
    by_name: BTreeMap<String, Arc<Topic>>,
    by_id: HashMap<Uuid, String>,
}

/// The broker core. Cheap to share (`Arc<Broker>`); all state behind short locks.
///
/// Ownership: the topic registry is a map of immutable [`Topic`] snapshots behind an `RwLock`
/// (readers clone an `Arc`); admin operations are serialised by the metadata-log mutex, which
/// they hold while they touch disk. Methods named `*_blocking` do file I/O and must run on a
/// blocking thread; [`Broker::run_blocking`] does that for async callers.
#[derive(Debug)]
pub struct Broker {
    config: BrokerConfig,
    cluster_id: String,
    clock: Arc<dyn Clock>,
    registry: RwLock<Registry>,
    admin: Mutex<Box<dyn MetadataStore>>,
    /// When the last poll of a shared metadata store began (set under the admin lock).
    last_poll: Mutex<Option<std::time::Instant>>,
    producer_ids: Mutex<ProducerIds>,
    pub(crate) groups: crate::group::GroupCoordinator,
    pub(crate) streams: crate::stream::StreamRegistry,
    pub(crate) txns: crate::txn::TxnCoordinator,
    /// Where partitions and metadata are stored (the local backend unless another was passed
    /// to [`Broker::open_with_backend`]).
    storage: Arc<dyn StorageBackend>,
    /// Dynamic broker and group configs, and the static broker values (see
    /// [`crate::broker_config`]).
    pub(crate) dynamic: crate::broker_config::DynamicConfigs,
    pub(crate) cleaner: crate::cleaner::LogCleaner,
    /// ACLs and the authorizer settings.
    pub(crate) acls: crate::acl::AclStore,
    /// SCRAM credentials.
    pub(crate) scram: crate::scram::ScramStore,
    /// Client quotas.
    pub(crate) quotas: crate::quota::QuotaStore,
}

#[derive(Debug)]
struct ReplayedTopic {
    name: String,
    partitions: i32,
    configs: BTreeMap<String, String>,
}

impl Broker {
    /// Opens the broker on its data dir: replays metadata, opens every partition, removes
    /// partition directories of deleted topics. BLOCKING.
    pub fn open(config: BrokerConfig) -> Result<Broker> {
        Broker::open_with_clock(config, Arc::new(SystemClock))
    }

    /// [`Broker::open`] with an injected clock (tests).
    pub fn open_with_clock(config: BrokerConfig, clock: Arc<dyn Clock>) -> Result<Broker> {
        let storage = LocalBackend::open(&config.data_dir, Arc::clone(&clock))?;
        Broker::open_with_backend(config, clock, Arc::new(storage))
    }

    /// [`Broker::open`] on a given storage backend (the cluster backend, or a local one opened
    /// by the caller). `config.data_dir` still holds what is local to this broker (the group
    /// offsets checkpoint). BLOCKING.
    pub fn open_with_backend(
        config: BrokerConfig,
        clock: Arc<dyn Clock>,
        storage: Arc<dyn StorageBackend>,
    ) -> Result<Broker> {
        config::validate(&config.topic_defaults)?;
        if config.num_partitions < 1 || config.num_partitions > MAX_PARTITIONS {
            return Err(Error::InvalidPartitions {
                count: config.num_partitions,
                reason: "num.partitions must be between 1 and 10000",
            });
        }
        // Durably: its parent is fsynced, so a crash cannot lose the directory with what the
        // broker then writes in it (partition directories are created the same way). Whatever
        // the backend, `<data-dir>/metadata/` holds what is local to this broker (the group
        // coordinator's offsets checkpoint).
        strom_log::create_dir_durable(&config.data_dir.join(METADATA_DIR))?;
        let (mut meta, events) = storage.open_metadata()?;

        let mut cluster_id = None;
        let mut producer_ids_until = 0i64;
        let mut topics: BTreeMap<Uuid, ReplayedTopic> = BTreeMap::new();
        let mut streams = BTreeMap::new();
        let dynamic = crate::broker_config::DynamicConfigs::default();
        let acls = crate::acl::AclStore::new(config.authorizer.clone());
        let scram = crate::scram::ScramStore::default();
        let quotas = crate::quota::QuotaStore::default();
        for event in events {
            match event {
                MetadataEvent::ClusterInitialized { cluster_id: id } => cluster_id = Some(id),
                MetadataEvent::TopicCreated {
                    name,
                    id,
                    partitions,
                    configs,
                } => {
                    topics.insert(
                        id,
                        ReplayedTopic {
                            name,
                            partitions,
                            configs,
                        },
                    );
                }
                MetadataEvent::PartitionsCreated { id, total } => {
                    if let Some(t) = topics.get_mut(&id) {
                        t.partitions = total;
                    }
                }
                MetadataEvent::ConfigsSet { id, configs } => {
                    if let Some(t) = topics.get_mut(&id) {
                        t.configs = configs;
                    }
                }
                MetadataEvent::TopicDeleted { id } => {
                    topics.remove(&id);
                    streams.remove(&id);
                }
                MetadataEvent::DynamicConfigsSet { resource, configs } => {
                    dynamic.set(&resource, configs);
                }
                MetadataEvent::StreamMetaSet { id, stream } => {
                    streams.insert(id, stream);
                }
                MetadataEvent::ProducerIdsReserved { until } => {
                    producer_ids_until = producer_ids_until.max(until);
                }
                MetadataEvent::AclsCreated { .. } | MetadataEvent::AclsDeleted { .. } => {
                    acls.apply(&event);
                }
                MetadataEvent::ScramCredentialsAltered { .. } => scram.apply(&event),
                MetadataEvent::ClientQuotasAltered { .. } => quotas.apply(&event),
                MetadataEvent::LogStarted { .. } => {}
            }
        }
        let cluster_id = match cluster_id {
            Some(id) => id,
            None => {
                let id = Uuid::new_v4().simple().to_string();
                meta.append(&MetadataEvent::ClusterInitialized {
                    cluster_id: id.clone(),
                })?;
                id
            }
        };

        let mut registry = Registry::default();
        let topic_defaults = merged_topic_defaults(&config.topic_defaults, &dynamic);
        for (id, t) in topics {
            let settings = TopicSettings::resolve(&topic_defaults, &t.configs)?;
            let mut partitions = Vec::new();
            for index in 0..t.partitions {
                let store = storage.open_partition(
                    TopicPartition {
                        topic: &t.name,
                        index: PartitionIndex(index),
                    },
                    settings.log_config(),
                )?;
                partitions.push(Arc::new(Partition::new(&t.name, index, store)));
            }
            registry.by_id.insert(id, t.name.clone());
            registry.by_name.insert(
                t.name.clone(),
                Arc::new(Topic {
                    name: t.name,
                    id,
                    partitions,
                    overrides: t.configs,
                    settings,
                }),
            );
        }
        storage.remove_orphans(&|topic, index| {
            registry
                .by_name
                .get(topic)
                .is_some_and(|t| index.0 >= 0 && index.0 < t.partition_count())
        });
        for (id, stream) in &streams {
            let topic = registry
                .by_id
                .get(id)
                .and_then(|name| registry.by_name.get(name));
            if let Some(topic) = topic {
                crate::stream::seal_closed_shards(topic, stream);
            }
        }
        let offsets_partition = registry
            .by_name
            .get(crate::group::OFFSETS_TOPIC)
            .and_then(|t| t.partitions().first().map(|p| (t.id, Arc::clone(p))));
        let groups = crate::group::GroupCoordinator::open(
            config.group,
            offsets_partition,
            config
                .data_dir
                .join(METADATA_DIR)
                .join(crate::group::offsets::CHECKPOINT_FILE),
            clock.now_ms(),
            storage.coordinator_leases(),
        )?;
        for (group, configs) in dynamic.groups() {
            groups.set_group_timeouts(&group, &configs);
        }
        register_statics(&config, &dynamic);
        let txns = crate::txn::TxnCoordinator::open(
            registry
                .by_name
                .get(crate::txn::TRANSACTION_STATE_TOPIC)
                .and_then(|t| t.partitions().first().cloned()),
            storage.txn_coordinator_leases(),
        )?;
        tracing::info!(
            data_dir = %config.data_dir.display(),
            topics = registry.by_name.len(),
            %cluster_id,
            "broker opened"
        );
        let cleaner = crate::cleaner::LogCleaner::new(config.cleaner);
        let broker = Broker {
            config,
            cluster_id,
            clock,
            registry: RwLock::new(registry),
            admin: Mutex::new(meta),
            last_poll: Mutex::new(None),
            producer_ids: Mutex::new(ProducerIds {
                next: producer_ids_until,
                reserved_until: producer_ids_until,
            }),
            groups,
            streams: crate::stream::StreamRegistry::from_replay(streams),
            txns,
            storage,
            dynamic,
            cleaner,
            acls,
            scram,
            quotas,
        };
        broker.migrate_internal_segment_bytes_blocking();
        // Transactions a crash left prepared are completed before anyone reads.
        broker.apply_dynamic_broker_configs();
        let completed = broker.tick_transactions_blocking();
        if completed > 0 {
            tracing::info!(completed, "completed transactions left prepared");
        }
        Ok(broker)
    }

    /// Opens the broker on the blocking pool and starts its background tasks (interval flushes
    /// and retention). Needs a Tokio runtime.
    pub async fn start(config: BrokerConfig) -> Result<Arc<Broker>> {
        let broker = tokio::task::spawn_blocking(move || Broker::open(config))
            .await
            .map_err(|_| Error::ShuttingDown)??;
        let broker = Arc::new(broker);
        broker.start_background();
        Ok(broker)
    }

    /// [`Broker::start`] on a given storage backend (see [`Broker::open_with_backend`]).
    pub async fn start_with_backend(
        config: BrokerConfig,
        storage: Arc<dyn StorageBackend>,
    ) -> Result<Arc<Broker>> {
        let broker = tokio::task::spawn_blocking(move || {
            Broker::open_with_backend(config, Arc::new(SystemClock), storage)
        })
        .await
        .map_err(|_| Error::ShuttingDown)??;
        let broker = Arc::new(broker);
        broker.start_background();
        Ok(broker)
    }

    /// Starts interval flushers, the retention task (both stop when the broker is dropped) and
    /// the log cleaner threads (stopped by [`Broker::shutdown_blocking`], or at their next wake
    /// once the broker is dropped).
    pub fn start_background(self: &Arc<Self>) {
        self.cleaner.start(self);
        for topic in self.topics() {
            for p in topic.partitions() {
                p.ensure_flusher();
            }
        }
        self.start_group_state_writer();
        let weak: Weak<Broker> = Arc::downgrade(self);
        if let Some(every) = self.storage.metadata_poll_interval() {
            let metadata = Weak::clone(&weak);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    let Some(broker) = metadata.upgrade() else {
                        return;
                    };
                    let synced =
                        tokio::task::spawn_blocking(move || broker.sync_metadata_blocking()).await;
                    if let Ok(Err(e)) = synced {
                        tracing::warn!(error = %e, "reading other brokers' metadata failed");
                    }
                }
            });
        }
        let groups = Weak::clone(&weak);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let Some(broker) = groups.upgrade() else {
                    return;
                };
                broker.groups.tick(broker.clock.now_ms());
            }
        });
        if self.groups.is_leased() || self.txns.is_leased() {
            // Cluster mode: follow the coordinator-shard leases (take over, give up).
            let leases = Weak::clone(&weak);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let Some(broker) = leases.upgrade() else {
                        return;
                    };
                    let synced = tokio::task::spawn_blocking(move || {
                        broker.sync_coordinator_leases_blocking()
                    })
                    .await;
                    if let Ok(Err(e)) = synced {
                        tracing::warn!(error = %e, "taking coordinator shards over failed");
                    }
                }
            });
        }
        let txns = Weak::clone(&weak);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let Some(broker) = txns.upgrade() else {
                    return;
                };
                let _ =
                    tokio::task::spawn_blocking(move || broker.tick_transactions_blocking()).await;
            }
        });
        let checkpoints = Weak::clone(&weak);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                let Some(broker) = checkpoints.upgrade() else {
                    return;
                };
                let written =
                    tokio::task::spawn_blocking(move || broker.checkpoint_offsets_blocking(false))
                        .await;
                if let Ok(Err(e)) = written {
                    tracing::warn!(error = %e, "offsets checkpoint failed");
                }
            }
        });
        let expiry = Weak::clone(&weak);
        let expiry_period = Duration::from_millis(
            u64::try_from(self.config.group.offsets_retention_check_interval_ms)
                .unwrap_or(1)
                .max(1),
        );
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(expiry_period).await;
                let Some(broker) = expiry.upgrade() else {
                    return;
                };
                let expired =
                    tokio::task::spawn_blocking(move || broker.expire_offsets_blocking()).await;
                if let Ok(Err(e)) = expired {
                    tracing::warn!(error = %e, "offset expiry failed");
                }
            }
        });
        let period = self.config.retention_check_interval;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                let Some(broker) = weak.upgrade() else { return };
                let _ =
                    tokio::task::spawn_blocking(move || broker.apply_retention_blocking()).await;
            }
        });
    }

    /// Runs a blocking broker operation on the blocking pool.
    pub async fn run_blocking<T, F>(self: &Arc<Self>, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Broker) -> Result<T> + Send + 'static,
    {
        let this = Arc::clone(self);
        tokio::task::spawn_blocking(move || f(&this))
            .await
            .map_err(|_| Error::ShuttingDown)?
    }

    /// The broker's configuration.
    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    /// The cluster id (generated on first start, persisted).
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// The broker's commit window (its `window_count` and `sync_count` say how many sync
    /// rounds and `fdatasync` calls durable appends have cost), on the local backend.
    pub fn durability(&self) -> Option<&crate::durability::Durability> {
        self.storage.as_local().map(LocalBackend::durability)
    }

    /// The storage backend partitions and metadata are opened through.
    pub fn storage(&self) -> &Arc<dyn StorageBackend> {
        &self.storage
    }

    /// This broker's node id.
    pub fn node_id(&self) -> i32 {
        self.config.node_id
    }

    /// The broker's clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    fn registry(&self) -> std::sync::RwLockReadGuard<'_, Registry> {
        self.registry.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn registry_mut(&self) -> std::sync::RwLockWriteGuard<'_, Registry> {
        self.registry
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn admin(&self) -> std::sync::MutexGuard<'_, Box<dyn MetadataStore>> {
        self.admin.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// [`admin`](Self::admin), after applying what other brokers sharing the metadata store
    /// appended (cluster mode), so an admin operation decides on the latest state. A failed
    /// poll is logged: the store's own checks still refuse an event that conflicts. BLOCKING.
    pub(crate) fn admin_synced(&self) -> std::sync::MutexGuard<'_, Box<dyn MetadataStore>> {
        let mut meta = self.admin();
        if self.storage.metadata_poll_interval().is_some() {
            self.note_poll();
            match meta.poll() {
                Ok(events) => self.apply_remote_events(events),
                Err(e) => tracing::warn!(error = %e, "reading other brokers' metadata failed"),
            }
        }
        meta
    }

    /// Applies what other brokers appended to the shared metadata store since the last call
    /// (cluster mode; nothing on a single node). Returns how many events were read. BLOCKING.
    pub fn sync_metadata_blocking(&self) -> Result<usize> {
        let mut meta = self.admin();
        self.note_poll();
        let events = meta.poll()?;
        let n = events.len();
        self.apply_remote_events(events);
        Ok(n)
    }

    /// [`Broker::sync_metadata_blocking`] for a request that arrived at `asked`, skipped when
    /// a poll began after that (while this caller waited for the admin lock): it read
    /// everything other brokers had appended by `asked`. Requests arriving together so share
    /// one query instead of queueing one each. BLOCKING.
    pub fn sync_metadata_since_blocking(&self, asked: std::time::Instant) -> Result<usize> {
        let mut meta = self.admin();
        let fresh = self
            .last_poll
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some_and(|began| began > asked);
        if fresh {
            return Ok(0);
        }
        self.note_poll();
        let events = meta.poll()?;
        let n = events.len();
        self.apply_remote_events(events);
        Ok(n)
    }

    /// Records that a metadata poll begins now (called under the admin lock).
    fn note_poll(&self) {
        *self
            .last_poll
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(std::time::Instant::now());
    }

    /// The live brokers sharing this broker's storage (cluster mode), sorted by node id;
    /// `None` on a single node. Does not block.
    pub fn live_brokers(&self) -> Option<Vec<crate::storage::BrokerEndpoint>> {
        self.storage.members().map(|m| m.live_brokers())
    }

    /// Whether this broker is registered in its cluster
    /// ([`crate::storage::ClusterMembers::self_registered`]); always on a single node.
    pub fn self_registered(&self) -> bool {
        self.storage.members().is_none_or(|m| m.self_registered())
    }

    /// [`Broker::live_brokers`] with each broker's address on the Kafka listener named
    /// `listener` (its default address when it registered none of that name).
    pub fn live_brokers_on(&self, listener: &str) -> Option<Vec<crate::storage::BrokerEndpoint>> {
        self.storage.members().map(|m| m.live_brokers_on(listener))
    }

    /// Applies metadata events read from a shared store to the registry, idempotently (an
    /// event this broker appended itself, or one already applied, changes nothing). Called
    /// with the admin lock held. Failures to open a partition are logged and the topic is
    /// left as it was: the next poll does not repeat the event, so the broker serves the
    /// topic after its next restart (cluster partitions open without I/O, so this does not
    /// happen in practice).
    pub(crate) fn apply_remote_events(&self, events: Vec<MetadataEvent>) {
        for event in events {
            match event {
                MetadataEvent::TopicCreated {
                    name,
                    id,
                    partitions,
                    configs,
                } => {
                    if let Ok(existing) = self.topic(&name) {
                        if existing.id == id {
                            continue;
                        }
                        // The topic was deleted and created again meanwhile.
                        self.forget_topic(&existing);
                    }
                    let settings = match TopicSettings::resolve(&self.topic_defaults(), &configs) {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::warn!(topic = %name, error = %e, "ignoring topic with bad configs");
                            continue;
                        }
                    };
                    let mut opened = Vec::new();
                    for index in 0..partitions {
                        match self.open_partition(&name, index, settings.log_config()) {
                            Ok(p) => opened.push(Arc::new(p)),
                            Err(e) => {
                                tracing::warn!(topic = %name, partition = index, error = %e, "opening partition failed");
                                break;
                            }
                        }
                    }
                    if opened.len() != usize::try_from(partitions).unwrap_or(0) {
                        continue;
                    }
                    let topic = Arc::new(Topic {
                        name: name.clone(),
                        id,
                        partitions: opened,
                        overrides: configs,
                        settings,
                    });
                    let mut reg = self.registry_mut();
                    reg.by_id.insert(id, name.clone());
                    reg.by_name.insert(name.clone(), topic);
                    drop(reg);
                    tracing::info!(topic = %name, %id, partitions, "topic created by another broker");
                }
                MetadataEvent::PartitionsCreated { id, total } => {
                    let Ok(topic) = self.topic_by_id(id) else {
                        continue;
                    };
                    let mut partitions = topic.partitions.clone();
                    for index in topic.partition_count()..total {
                        match self.open_partition(&topic.name, index, topic.settings.log_config()) {
                            Ok(p) => partitions.push(Arc::new(p)),
                            Err(e) => {
                                tracing::warn!(topic = %topic.name, partition = index, error = %e, "opening partition failed");
                                break;
                            }
                        }
                    }
                    if partitions.len() == topic.partitions.len() {
                        continue;
                    }
                    self.replace_topic(Topic {
                        name: topic.name.clone(),
                        id,
                        partitions,
                        overrides: topic.overrides.clone(),
                        settings: topic.settings.clone(),
                    });
                }
                MetadataEvent::ConfigsSet { id, configs } => {
                    let Ok(topic) = self.topic_by_id(id) else {
                        continue;
                    };
                    if topic.overrides == configs {
                        continue;
                    }
                    let Ok(settings) = TopicSettings::resolve(&self.topic_defaults(), &configs)
                    else {
                        continue;
                    };
                    for p in &topic.partitions {
                        p.set_config(settings.log_config());
                    }
                    self.replace_topic(Topic {
                        name: topic.name.clone(),
                        id,
                        partitions: topic.partitions.clone(),
                        overrides: configs,
                        settings,
                    });
                }
                MetadataEvent::TopicDeleted { id } => {
                    if let Ok(topic) = self.topic_by_id(id) {
                        self.forget_topic(&topic);
                        tracing::info!(topic = %topic.name, %id, "topic deleted by another broker");
                    }
                }
                MetadataEvent::DynamicConfigsSet { resource, configs } => {
                    self.dynamic.set(&resource, configs);
                    self.apply_dynamic_broker_configs();
                }
                MetadataEvent::StreamMetaSet { id, stream } => {
                    self.apply_remote_stream_meta(id, stream);
                }
                // Sets of bindings and per-user credentials: applying one twice changes nothing.
                MetadataEvent::AclsCreated { .. } | MetadataEvent::AclsDeleted { .. } => {
                    self.acls.apply(&event);
                }
                MetadataEvent::ScramCredentialsAltered { .. } => self.scram.apply(&event),
                MetadataEvent::ClientQuotasAltered { .. } => self.quotas.apply(&event),
                MetadataEvent::ClusterInitialized { .. }
                | MetadataEvent::ProducerIdsReserved { .. }
                | MetadataEvent::LogStarted { .. } => {}
            }
        }
    }

    /// Drops a topic from the registry and closes its partitions without removing their data
    /// (another broker deleted it in the shared store, which removes the data).
    fn forget_topic(&self, topic: &Topic) {
        {
            let mut reg = self.registry_mut();
            reg.by_name.remove(&topic.name);
            reg.by_id.remove(&topic.id);
        }
        self.streams.forget(topic.id);
        for p in &topic.partitions {
            if let Err(e) = p.close_blocking() {
                tracing::debug!(topic = %topic.name, partition = p.index(), error = %e, "closing partition failed");
            }
        }
    }

    /// Opens (creating) partition `index` of topic `name` on the storage backend. BLOCKING.
    fn open_partition(&self, name: &str, index: i32, config: LogConfig) -> Result<Partition> {
        let store = self.storage.open_partition(
            TopicPartition {
                topic: name,
                index: PartitionIndex(index),
            },
            config,
        )?;
        Ok(Partition::new(name, index, store))
    }

    /// Every topic, sorted by name.
    pub fn topics(&self) -> Vec<Arc<Topic>> {
        self.registry().by_name.values().cloned().collect()
    }

    /// A topic by name.
    pub fn topic(&self, name: &str) -> Result<Arc<Topic>> {
        self.registry()
            .by_name
            .get(name)
            .cloned()
            .ok_or_else(|| Error::UnknownTopic {
                name: name.to_owned(),
            })
    }

    /// A topic by id.
    pub fn topic_by_id(&self, id: Uuid) -> Result<Arc<Topic>> {
        let reg = self.registry();
        reg.by_id
            .get(&id)
            .and_then(|name| reg.by_name.get(name))
            .cloned()
            .ok_or(Error::UnknownTopicId { id })
    }

    /// A partition by topic name and index.
    pub fn partition(&self, topic: &str, index: i32) -> Result<Arc<Partition>> {
        Ok(Arc::clone(self.topic(topic)?.partition(index)?))
    }

    /// The topic, auto-creating it with the defaults when allowed (`auto_create` and the broker's
    /// `auto.create.topics.enable`). BLOCKING when it creates.
    ///
    /// On a shared metadata store (cluster mode) a topic this broker does not know yet is
    /// first looked for among the events other brokers appended.
    pub fn topic_or_create_blocking(&self, name: &str, auto_create: bool) -> Result<Arc<Topic>> {
        let found = match self.topic(name) {
            Err(_) if self.storage.metadata_poll_interval().is_some() => {
                if let Err(e) = self.sync_metadata_blocking() {
                    tracing::warn!(error = %e, "reading other brokers' metadata failed");
                }
                self.topic(name)
            }
            other => other,
        };
        match found {
            Ok(t) => Ok(t),
            Err(e) if !(auto_create && self.config.auto_create_topics) => Err(e),
            Err(_) => {
                validate_topic_name(name)?;
                let req = CreateTopic {
                    name: name.to_owned(),
                    ..CreateTopic::default()
                };
                match self.create_topic_blocking(req) {
                    Ok(_) | Err(Error::TopicAlreadyExists { .. }) => self.topic(name),
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Creates a topic (or only validates the request). BLOCKING.
    pub fn create_topic_blocking(&self, req: CreateTopic) -> Result<TopicSummary> {
        validate_topic_name(&req.name)?;
        let partitions = match req.partitions {
            None | Some(-1) => self.config.num_partitions,
            Some(n) if (1..=MAX_PARTITIONS).contains(&n) => n,
            Some(n) => {
                return Err(Error::InvalidPartitions {
                    count: n,
                    reason: "must be between 1 and 10000",
                });
            }
        };
        match req.replication_factor {
            None | Some(-1) | Some(1) => {}
            Some(factor) => return Err(Error::InvalidReplicationFactor { factor }),
        }
        config::validate(&req.configs)?;
        let settings = TopicSettings::resolve(&self.topic_defaults(), &req.configs)?;

        let mut meta = self.admin_synced();
        if self.registry().by_name.contains_key(&req.name) {
            return Err(Error::TopicAlreadyExists { name: req.name });
        }
        if req.validate_only {
            return Ok(TopicSummary {
                name: req.name,
                id: Uuid::nil(),
                partitions,
                replication_factor: 1,
                overrides: req.configs,
            });
        }
        let id = Uuid::new_v4();
        let mut opened = Vec::new();
        for index in 0..partitions {
            match self.open_partition(&req.name, index, settings.log_config()) {
                Ok(p) => opened.push(Arc::new(p)),
                Err(e) => {
                    for p in opened {
                        let _ = p.delete_blocking(self.storage.as_ref());
                    }
                    return Err(e);
                }
            }
        }
        if let Err(e) = meta.append(&MetadataEvent::TopicCreated {
            name: req.name.clone(),
            id,
            partitions,
            configs: req.configs.clone(),
        }) {
            for p in opened {
                // The backend decides what deleting means: the cluster backend only closes
                // the handles (the data belongs to the topic in the shared store).
                let _ = p.delete_blocking(self.storage.as_ref());
            }
            if matches!(e, Error::TopicAlreadyExists { .. })
                && let Ok(events) = meta.poll()
            {
                // Another broker created it first: learn it, so the caller can use it.
                self.apply_remote_events(events);
            }
            return Err(e);
        }
        for p in &opened {
            p.ensure_flusher();
        }
        let topic = Arc::new(Topic {
            name: req.name.clone(),
            id,
            partitions: opened,
            overrides: req.configs.clone(),
            settings,
        });
        {
            let mut reg = self.registry_mut();
            reg.by_id.insert(id, req.name.clone());
            reg.by_name.insert(req.name.clone(), topic);
        }
        tracing::info!(topic = %req.name, %id, partitions, "topic created");
        Ok(TopicSummary {
            name: req.name,
            id,
            partitions,
            replication_factor: 1,
            overrides: req.configs,
        })
    }

    /// Deletes a topic and its data. BLOCKING.
    pub fn delete_topic_blocking(&self, name: &str) -> Result<Uuid> {
        let mut meta = self.admin_synced();
        let topic = self.topic(name)?;
        meta.append(&MetadataEvent::TopicDeleted { id: topic.id })?;
        self.streams.forget(topic.id);
        {
            let mut reg = self.registry_mut();
            reg.by_name.remove(name);
            reg.by_id.remove(&topic.id);
        }
        let id = topic.id;
        let partitions = topic.partitions.clone();
        drop(topic);
        for p in partitions {
            if let Err(e) = p.delete_blocking(self.storage.as_ref()) {
                // The metadata says "deleted"; a leftover directory is swept at the next start.
                tracing::warn!(topic = name, error = %e, "could not remove partition directory");
            }
        }
        tracing::info!(topic = name, %id, "topic deleted");
        Ok(id)
    }

    /// Deletes a topic by id. BLOCKING.
    pub fn delete_topic_by_id_blocking(&self, id: Uuid) -> Result<String> {
        let name = self.topic_by_id(id)?.name.clone();
        self.delete_topic_blocking(&name)?;
        Ok(name)
    }

    /// Grows a topic to `total` partitions. BLOCKING.
    pub fn create_partitions_blocking(
        &self,
        name: &str,
        total: i32,
        validate_only: bool,
    ) -> Result<()> {
        let mut meta = self.admin_synced();
        let topic = self.topic(name)?;
        let current = topic.partition_count();
        if total <= current {
            return Err(Error::InvalidPartitions {
                count: total,
                reason: "a topic's partition count can only grow",
            });
        }
        if total > MAX_PARTITIONS {
            return Err(Error::InvalidPartitions {
                count: total,
                reason: "must be at most 10000",
            });
        }
        if validate_only {
            return Ok(());
        }
        let mut partitions = topic.partitions.clone();
        for index in current..total {
            partitions.push(Arc::new(self.open_partition(
                name,
                index,
                topic.settings.log_config(),
            )?));
        }
        meta.append(&MetadataEvent::PartitionsCreated {
            id: topic.id,
            total,
        })?;
        for p in &partitions {
            p.ensure_flusher();
        }
        self.replace_topic(Topic {
            name: topic.name.clone(),
            id: topic.id,
            partitions,
            overrides: topic.overrides.clone(),
            settings: topic.settings.clone(),
        });
        Ok(())
    }

    /// Replaces all config overrides of a topic (AlterConfigs). BLOCKING.
    pub fn set_topic_configs_blocking(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<()> {
        // A missing topic is reported before any config error, as Kafka does.
        self.topic(name)?;
        config::validate(&configs)?;
        let settings = TopicSettings::resolve(&self.topic_defaults(), &configs)?;
        let mut meta = self.admin_synced();
        let topic = self.topic(name)?;
        if validate_only {
            return Ok(());
        }
        meta.append(&MetadataEvent::ConfigsSet {
            id: topic.id,
            configs: configs.clone(),
        })?;
        for p in &topic.partitions {
            p.set_config(settings.log_config());
        }
        self.replace_topic(Topic {
            name: topic.name.clone(),
            id: topic.id,
            partitions: topic.partitions.clone(),
            overrides: configs,
            settings,
        });
        Ok(())
    }

    /// Applies incremental config changes (IncrementalAlterConfigs). BLOCKING.
    pub fn incremental_alter_configs_blocking(
        &self,
        name: &str,
        ops: &[ConfigOp],
        validate_only: bool,
    ) -> Result<()> {
        let topic = self.topic(name)?;
        let mut configs = topic.overrides.clone();
        let defaults = config::describe(&self.topic_defaults(), &configs);
        let current = |key: &str| {
            defaults
                .iter()
                .find(|e| e.def.name == key)
                .map(|e| e.value.clone())
                .unwrap_or_default()
        };
        for op in ops {
            match op {
                ConfigOp::Set(k, v) => {
                    configs.insert(k.clone(), v.clone());
                }
                ConfigOp::Delete(k) => {
                    if config::config_def(k).is_none() {
                        return Err(Error::InvalidConfig {
                            key: k.clone(),
                            value: String::new(),
                            reason: "unknown topic config".to_owned(),
                        });
                    }
                    configs.remove(k);
                }
                ConfigOp::Append(k, v) | ConfigOp::Subtract(k, v) => {
                    let is_list =
                        config::config_def(k).is_some_and(|d| d.kind == config::ConfigType::List);
                    if !is_list {
                        return Err(Error::InvalidConfig {
                            key: k.clone(),
                            value: v.clone(),
                            reason: "APPEND and SUBTRACT need a list config".to_owned(),
                        });
                    }
                    let base = configs.get(k).cloned().unwrap_or_else(|| current(k));
                    let append = matches!(op, ConfigOp::Append(..));
                    configs.insert(k.clone(), config::apply_list_op(&base, v, append));
                }
            }
        }
        self.set_topic_configs_blocking(name, configs, validate_only)
    }

    /// The effective configuration of a topic.
    pub fn describe_topic_configs(&self, name: &str) -> Result<Vec<ConfigEntry>> {
        let topic = self.topic(name)?;
        Ok(config::describe_layers(
            &self.config.topic_defaults,
            &self.dynamic.topic_defaults(),
            &topic.overrides,
        ))
    }

    /// Hands out a producer id that was never handed out before, not even before a restart
    /// (ids are reserved in durable blocks through the metadata log). BLOCKING when a new
    /// block must be reserved.
    pub fn allocate_producer_id_blocking(&self) -> Result<i64> {
        let mut ids = self
            .producer_ids
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(allocated) = self.admin().allocate_producer_id() {
            // A cluster-wide allocator: remember the highest id seen, so epoch bumps of the
            // ids handed out so far are recognised (`producer_id_was_allocated`).
            let id = allocated?;
            ids.next = ids.next.max(id.saturating_add(1));
            ids.reserved_until = ids.reserved_until.max(ids.next);
            return Ok(id);
        }
        if ids.next >= ids.reserved_until {
            let until = ids.reserved_until + PRODUCER_ID_BLOCK;
            self.admin()
                .append(&MetadataEvent::ProducerIdsReserved { until })?;
            ids.reserved_until = until;
        }
        let id = ids.next;
        ids.next += 1;
        Ok(id)
    }

    /// Whether `id` was handed out by [`Broker::allocate_producer_id_blocking`] (in this run or
    /// an earlier one).
    pub fn producer_id_was_allocated(&self, id: i64) -> bool {
        let ids = self
            .producer_ids
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        (0..ids.next).contains(&id) || (0..ids.reserved_until).contains(&id)
    }

    /// Topic defaults: the server config's, with the dynamic broker-level ones over them.
    pub fn topic_defaults(&self) -> BTreeMap<String, String> {
        merged_topic_defaults(&self.config.topic_defaults, &self.dynamic)
    }

    pub(crate) fn replace_topic(&self, topic: Topic) {
        let mut reg = self.registry_mut();
        reg.by_name.insert(topic.name.clone(), Arc::new(topic));
    }

    /// Applies retention to every partition now. BLOCKING.
    pub fn apply_retention_blocking(&self) -> Result<usize> {
        let mut deleted = 0;
        for topic in self.topics() {
            for p in topic.partitions() {
                match p.apply_retention_blocking() {
                    Ok(n) => deleted += n,
                    Err(e) => {
                        tracing::warn!(topic = topic.name(), partition = p.index(), error = %e, "retention failed")
                    }
                }
            }
        }
        Ok(deleted)
    }

    /// Flushes and closes every partition (graceful shutdown). BLOCKING.
    pub fn shutdown_blocking(&self) -> Result<()> {
        // A clean in progress stops at its next check of the cancel flag; joined before the
        // partitions it works on are closed.
        self.cleaner.stop();
        let mut first_error = None;
        if let Err(e) = self.write_group_states_blocking() {
            tracing::error!(error = %e, "writing group state at shutdown failed");
            first_error = Some(e);
        }
        // The next start then replays nothing of __consumer_offsets beyond the checkpoint.
        if let Err(e) = self.checkpoint_offsets_blocking(true) {
            tracing::warn!(error = %e, "offsets checkpoint at shutdown failed");
        }
        for topic in self.topics() {
            for p in topic.partitions() {
                if let Err(e) = p.close_blocking() {
                    tracing::error!(topic = topic.name(), partition = p.index(), error = %e, "close failed");
                    first_error.get_or_insert(e);
                }
            }
        }
        tracing::info!("broker closed");
        first_error.map_or(Ok(()), Err)
    }
}

/// The server config's topic defaults with the dynamic broker-level ones over them.
fn merged_topic_defaults(
    statics: &BTreeMap<String, String>,
    dynamic: &crate::broker_config::DynamicConfigs,
) -> BTreeMap<String, String> {
    let mut out = statics.clone();
    out.extend(dynamic.topic_defaults());
    out
}

/// Records the broker's static settings under Kafka's names, for DescribeConfigs.
fn register_statics(config: &BrokerConfig, dynamic: &crate::broker_config::DynamicConfigs) {
    let g = &config.group;
    let c = &g.consumer;
    let cleaner = &config.cleaner;
    for (name, value) in [
        ("log.cleaner.enable", cleaner.enable.to_string()),
        ("log.cleaner.threads", cleaner.threads.to_string()),
        (
            "log.cleaner.backoff.ms",
            cleaner.backoff.as_millis().to_string(),
        ),
        (
            "log.cleaner.io.max.bytes.per.second",
            cleaner
                .io_max_bytes_per_second
                .map_or_else(|| "1.7976931348623157E308".to_owned(), |r| r.to_string()),
        ),
        (
            "offsets.retention.minutes",
            (g.offsets_retention_ms / 60_000).to_string(),
        ),
        ("node.id", config.node_id.to_string()),
        (
            "auto.create.topics.enable",
            config.auto_create_topics.to_string(),
        ),
        ("num.partitions", config.num_partitions.to_string()),
        (
            "log.retention.check.interval.ms",
            config.retention_check_interval.as_millis().to_string(),
        ),
        (
            "group.min.session.timeout.ms",
            g.min_session_timeout_ms.to_string(),
        ),
        (
            "group.max.session.timeout.ms",
            g.max_session_timeout_ms.to_string(),
        ),
        (
            "group.initial.rebalance.delay.ms",
            g.initial_rebalance_delay_ms.to_string(),
        ),
        (
            "group.consumer.heartbeat.interval.ms",
            c.heartbeat_interval_ms.to_string(),
        ),
        (
            "group.consumer.session.timeout.ms",
            c.session_timeout_ms.to_string(),
        ),
        (
            "group.consumer.max.size",
            i32::try_from(c.max_size).unwrap_or(i32::MAX).to_string(),
        ),
    ] {
        dynamic.set_static(name, value);
    }
}

/// `<data-dir>/<topic>-<partition>`.
pub fn partition_dir(data_dir: &Path, topic: &str, partition: i32) -> PathBuf {
    data_dir.join(format!("{topic}-{partition}"))
}
