//! # strom-kafka
//!
//! The Kafka wire-protocol front end: a TCP listener, one task per connection, 4-byte framing
//! with a `socket.request.max.bytes` limit, and one handler module per API under `api/`. Message
//! structs, versioned codecs and header versions come from the `kafka-protocol` crate; only the
//! semantics are ours. The front end holds no state beyond each connection: everything else is
//! the [`strom_broker::Broker`]'s.
//!
//! Requests on one connection are handled strictly in order (as Kafka does), so a client may
//! pipeline requests and gets the responses in the same order; `acks=0` produce requests get no
//! response. Malformed frames, unknown API keys and unsupported versions (other than
//! ApiVersions, which answers with its ranges) close the connection after a `tracing` line.
//!
//! ## APIs and versions
//!
//! The table Strom advertises is [`api::SUPPORTED_APIS`]: Produce 3–13, Fetch 4–17,
//! ListOffsets 1–8, Metadata 0–13, ApiVersions 0–4, CreateTopics 2–7, DeleteTopics 1–6,
//! DeleteRecords 0–2, InitProducerId 0–5, OffsetForLeaderEpoch 2–4, DescribeConfigs 1–4,
//! AlterConfigs 0–2, DescribeLogDirs 1–4, CreatePartitions 0–3, IncrementalAlterConfigs 0–1,
//! DescribeCluster 0–2, and the classic consumer-group APIs FindCoordinator 0–5, JoinGroup 0–9,
//! SyncGroup 0–5, Heartbeat 0–4, LeaveGroup 0–5, OffsetCommit 2–9, OffsetFetch 1–9,
//! DescribeGroups 0–5, ListGroups 0–5, DeleteGroups 0–2, OffsetDelete 0, the transaction APIs
//! AddPartitionsToTxn 0–3, AddOffsetsToTxn 0–4, EndTxn 0–4, TxnOffsetCommit 0–4,
//! DescribeTransactions 0, ListTransactions 0–1 and DescribeProducers 0, and the KIP-848
//! consumer protocol's ConsumerGroupHeartbeat 0–1 and ConsumerGroupDescribe 0–1 (librdkafka
//! 2.12 with `group.protocol=consumer` requires ConsumerGroupHeartbeat 1; it picks
//! FindCoordinator 2, JoinGroup 5, SyncGroup 3, Heartbeat 3, LeaveGroup 1, OffsetCommit 9,
//! OffsetFetch 9). Versions clients were seen to pick: librdkafka 2.12 (Produce 10,
//! Fetch 16, Metadata 13, ListOffsets 7), librdkafka 2.0 / kcat (Produce 7, Fetch 11,
//! Metadata 4, ListOffsets 2), kafka-python 3.0 (Produce 9, Fetch 12, InitProducerId 4),
//! kafkajs 2.2 (Produce 7, Metadata 6, InitProducerId 1).
//!
//! Idempotent producers (epoch and sequence checks, duplicates answered with their original
//! offsets) and transactions (markers, `read_committed`) are served by the broker core and its
//! storage. SASL (PLAIN, SCRAM-SHA-256/512, OAUTHBEARER, KIP-368 re-authentication) is in
//! [`sasl`]: SaslHandshake 0–1, SaslAuthenticate 0–2. Not yet: fetch sessions (every Fetch answer carries session id 0, so clients
//! send full requests).
//!
//! The front end depends on `strom-broker` only, never on a storage backend: storage failures
//! reach it as [`strom_broker::StorageError`], mapped to Kafka codes in `error_code.rs`.
//!
//! ## Known hazard
//!
//! `kafka-protocol` 0.18.0 pre-allocates `Vec::with_capacity(count)` from array counts read off
//! the wire, before decoding any element: a 14-byte request claiming 2^31−1 elements makes the
//! system allocator abort the process. Every process that runs this front end must therefore
//! install `strom_alloc::GuardedAlloc` as its global allocator (the `strom` binary and the
//! end-to-end tests do): it maps such reservations lazily, so the decode fails cleanly. The test
//! `hostile_array_count_does_not_abort` covers it. Remove once the codec bounds the capacity by
//! the remaining bytes (upstream PRs are open).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod api;
pub mod authz;
pub mod client;
pub mod connection;
pub mod error_code;
pub mod frame;
pub mod metrics;
pub mod quota;
pub mod sasl;
pub mod session;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use strom_broker::Broker;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

pub use frame::DEFAULT_MAX_REQUEST_BYTES;
pub use session::{ListenerInfo, SecurityProtocol, Session};

/// One named Kafka listener (Kafka's `listeners` entry with its `advertised.listeners` entry
/// and its protocol from `listener.security.protocol.map`).
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// The listener's name (`PLAINTEXT`, `INTERNAL`, `EXTERNAL`, …).
    pub name: String,
    /// Its security protocol.
    pub security_protocol: SecurityProtocol,
    /// Address to bind (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Host name its clients are told to connect to; defaults to the bound IP, or
    /// `localhost` when bound to an unspecified address.
    pub advertised_host: Option<String>,
    /// Port its clients are told to connect to; defaults to the bound port.
    pub advertised_port: Option<u16>,
    /// The TLS configuration, required for SSL and SASL_SSL and refused otherwise.
    pub tls: Option<Arc<strom_tls::TlsServer>>,
}

impl ListenerConfig {
    /// A PLAINTEXT listener named `PLAINTEXT` on `listen`.
    pub fn plaintext(listen: SocketAddr) -> ListenerConfig {
        ListenerConfig {
            name: "PLAINTEXT".to_owned(),
            security_protocol: SecurityProtocol::Plaintext,
            listen,
            advertised_host: None,
            advertised_port: None,
            tls: None,
        }
    }
}

/// Settings of the Kafka listeners.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// The named listeners. Empty: one PLAINTEXT listener from `listen`, `advertised_host`
    /// and `advertised_port`.
    pub listeners: Vec<ListenerConfig>,
    /// Address of the single PLAINTEXT listener used when `listeners` is empty
    /// (`127.0.0.1:9092` by default; port 0 picks a free port).
    pub listen: SocketAddr,
    /// Host name clients are told to connect to (Metadata); defaults to the bound IP, or
    /// `localhost` when bound to an unspecified address.
    pub advertised_host: Option<String>,
    /// Port clients are told to connect to; defaults to the bound port.
    pub advertised_port: Option<u16>,
    /// `socket.request.max.bytes`: larger frames close the connection.
    pub max_request_bytes: usize,
    /// `queued.max.request.bytes`: request bytes held in memory across all connections at once.
    /// A connection whose next frame does not fit waits (TCP back-pressure) until others finish.
    /// Raised to `max_request_bytes` if smaller, so every legal frame can be admitted.
    pub max_queued_request_bytes: usize,
    /// `connections.max.idle.ms`: connections silent this long are closed, and a response
    /// the client does not read within this long closes its connection.
    pub idle_timeout: std::time::Duration,
    /// Broker-wide `fetch.max.bytes`: the most record bytes one Fetch response carries,
    /// whatever the request asks (the first batch is still returned whole if larger).
    pub fetch_max_bytes: usize,
    /// `max.connections`: connections accepted beyond this many open ones are closed at once.
    pub max_connections: usize,
    /// `max.connections.per.ip`: connections from one IP address beyond this many are closed
    /// at once.
    pub max_connections_per_ip: usize,
    /// The SASL settings of every SASL_PLAINTEXT and SASL_SSL listener: their connections
    /// must authenticate before other APIs. Required when such a listener exists (bind
    /// refuses one without); other listeners ignore it.
    pub sasl: Option<sasl::SaslConfig>,
}

/// Strom's default broker `fetch.max.bytes`: 30 MiB (Kafka's is 55 MiB).
///
/// librdkafka receives each Fetch response into one buffer of the response's size. glibc's
/// malloc serves a block above 32 MiB (its largest mmap threshold) from a fresh mapping every
/// time, so a response of librdkafka's default 50 MiB is faulted in and unmapped again at every
/// response: measured, 6 partitions cost librdkafka ~1.6x the CPU per GB of one partition and
/// read at 0.67 of its rate. Below 32 MiB the buffer is reused (BENCHMARKS.md, "Consume across
/// partitions"). A response is still as large as the client asks up to this cap; smaller
/// responses cost clients only more round trips.
pub const DEFAULT_FETCH_MAX_BYTES: usize = 30 * 1024 * 1024;

/// Kafka's default `max.connections` and `max.connections.per.ip`: no limit (`i32::MAX`).
pub const DEFAULT_MAX_CONNECTIONS: usize = i32::MAX as usize;

/// Default `queued.max.request.bytes`: 512 MiB.
pub const DEFAULT_MAX_QUEUED_REQUEST_BYTES: usize = 512 * 1024 * 1024;

/// Default `connections.max.idle.ms`: 10 minutes.
pub const DEFAULT_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            listeners: Vec::new(),
            listen: SocketAddr::from(([127, 0, 0, 1], 9092)),
            advertised_host: None,
            advertised_port: None,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            max_queued_request_bytes: DEFAULT_MAX_QUEUED_REQUEST_BYTES,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            fetch_max_bytes: DEFAULT_FETCH_MAX_BYTES,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS,
            sasl: None,
        }
    }
}

/// What every connection of every listener shares: the broker, the limits and the metrics.
#[derive(Debug)]
pub struct Context {
    /// The broker core.
    pub broker: Arc<Broker>,
    /// Host name of the first listener; Metadata answers a connection with its own
    /// listener's ([`Session::listener`]), this only a request that came over none.
    pub advertised_host: String,
    /// Port of the first listener (see `advertised_host`).
    pub advertised_port: i32,
    /// `socket.request.max.bytes`.
    pub max_request_bytes: usize,
    /// Admission control for request bytes in memory (`queued.max.request.bytes`), one permit
    /// per byte, capped at [`tokio::sync::Semaphore::MAX_PERMITS`].
    pub request_memory: Arc<tokio::sync::Semaphore>,
    /// The request-memory budget's size in permits.
    request_memory_capacity: usize,
    /// Idle connections are closed after this long.
    pub idle_timeout: std::time::Duration,
    /// Request, connection and byte counters.
    pub metrics: metrics::KafkaMetrics,
    /// Produce appends running on the blocking pool at once ([`APPEND_SLOTS`] permits).
    pub append_slots: Arc<tokio::sync::Semaphore>,
    /// Broker-wide `fetch.max.bytes`.
    pub fetch_max_bytes: usize,
    /// Open connections, in total and per client IP, against `max.connections` and
    /// `max.connections.per.ip` (both changeable at runtime).
    pub connections: Arc<connection::ConnectionLimits>,
    /// `max.connections` and `max.connections.per.ip` from the server config, in force when
    /// no dynamic value is set.
    static_connection_limits: (usize, usize),
    /// SASL settings of the SASL_* listeners.
    pub sasl: Option<sasl::SaslConfig>,
    /// Client quota rates and throttling (see [`quota`]).
    pub quotas: quota::QuotaManager,
}

/// How many partition appends may run on the blocking pool at once, across all Kafka
/// connections: a request naming thousands of partitions waits for slots instead of taking
/// thousands of threads.
pub const APPEND_SLOTS: usize = 64;

impl Context {
    /// Puts the dynamic broker configs the Kafka listener honours into force
    /// (`max.connections`, `max.connections.per.ip`): after an AlterConfigs on the broker
    /// resource, and at start-up for the values stored before a restart.
    pub fn apply_dynamic_configs(&self) {
        let get = |name: &str| {
            self.broker
                .dynamic_broker_config(name)
                .and_then(|v| v.trim().parse::<usize>().ok())
        };
        let (total, per_ip) = self.static_connection_limits;
        self.connections
            .set_max_connections(get("max.connections").unwrap_or(total));
        self.connections
            .set_max_connections_per_ip(get("max.connections.per.ip").unwrap_or(per_ip));
    }

    /// The most permits a Fetch may reserve for its response: half the budget, so that a
    /// connection holding its (small) Fetch request can always get them once others finish.
    pub(crate) fn fetch_memory_limit(&self) -> usize {
        (self.request_memory_capacity / 2).clamp(1, u32::MAX as usize)
    }

    /// The most permits one request may take (the semaphore's size).
    pub(crate) fn request_memory_limit(&self) -> usize {
        self.max_request_bytes
            .min(tokio::sync::Semaphore::MAX_PERMITS)
            .min(u32::MAX as usize)
    }
}

/// A bound listener.
#[derive(Debug)]
struct Bound {
    listener: TcpListener,
    info: Arc<ListenerInfo>,
    tls: Option<Arc<strom_tls::TlsServer>>,
}

/// The bound Kafka listeners, sharing one [`Context`].
#[derive(Debug)]
pub struct KafkaServer {
    listeners: Vec<Bound>,
    context: Arc<Context>,
}

/// A listener configuration that cannot be bound as given.
fn invalid(message: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, message)
}

impl KafkaServer {
    /// Binds every listener.
    pub async fn bind(config: KafkaConfig, broker: Arc<Broker>) -> std::io::Result<KafkaServer> {
        let configs = if config.listeners.is_empty() {
            vec![ListenerConfig {
                advertised_host: config.advertised_host.clone(),
                advertised_port: config.advertised_port,
                ..ListenerConfig::plaintext(config.listen)
            }]
        } else {
            config.listeners.clone()
        };
        let mut listeners = Vec::with_capacity(configs.len());
        for l in configs {
            if l.security_protocol.uses_tls() != l.tls.is_some() {
                return Err(invalid(format!(
                    "listener {} ({}) {} a TLS configuration",
                    l.name,
                    l.security_protocol,
                    if l.tls.is_some() {
                        "must not have"
                    } else {
                        "needs"
                    }
                )));
            }
            if l.security_protocol.uses_sasl() && config.sasl.is_none() {
                return Err(invalid(format!(
                    "listener {} ({}) needs SASL mechanisms (sasl_enabled_mechanisms)",
                    l.name, l.security_protocol
                )));
            }
            if listeners.iter().any(|b: &Bound| b.info.name == l.name) {
                return Err(invalid(format!("listener {} is named twice", l.name)));
            }
            let listener = TcpListener::bind(l.listen).await?;
            let local = listener.local_addr()?;
            let advertised_host = l.advertised_host.unwrap_or_else(|| {
                if local.ip().is_unspecified() {
                    "localhost".to_owned()
                } else {
                    local.ip().to_string()
                }
            });
            let advertised_port = i32::from(l.advertised_port.unwrap_or(local.port()));
            listeners.push(Bound {
                listener,
                info: Arc::new(ListenerInfo {
                    name: l.name,
                    security_protocol: l.security_protocol,
                    advertised_host,
                    advertised_port,
                }),
                tls: l.tls,
            });
        }
        let (advertised_host, advertised_port) = listeners
            .first()
            .map(|b| (b.info.advertised_host.clone(), b.info.advertised_port))
            .ok_or_else(|| invalid("no Kafka listener configured".to_owned()))?;
        let request_memory_capacity = config
            .max_queued_request_bytes
            .max(config.max_request_bytes)
            .min(tokio::sync::Semaphore::MAX_PERMITS);
        let server = KafkaServer {
            listeners,
            context: Arc::new(Context {
                broker,
                advertised_host,
                advertised_port,
                max_request_bytes: config.max_request_bytes,
                request_memory: Arc::new(tokio::sync::Semaphore::new(request_memory_capacity)),
                request_memory_capacity,
                idle_timeout: config.idle_timeout,
                metrics: metrics::KafkaMetrics::default(),
                append_slots: Arc::new(tokio::sync::Semaphore::new(APPEND_SLOTS)),
                fetch_max_bytes: config.fetch_max_bytes.max(1),
                connections: Arc::new(connection::ConnectionLimits::new(
                    config.max_connections,
                    config.max_connections_per_ip,
                )),
                static_connection_limits: (config.max_connections, config.max_connections_per_ip),
                sasl: config.sasl.clone(),
                quotas: quota::QuotaManager::default(),
            }),
        };
        let statics = [
            ("fetch.max.bytes", config.fetch_max_bytes.to_string()),
            ("max.connections", config.max_connections.to_string()),
            (
                "max.connections.per.ip",
                config.max_connections_per_ip.to_string(),
            ),
            (
                "socket.request.max.bytes",
                config.max_request_bytes.to_string(),
            ),
            (
                "queued.max.request.bytes",
                config.max_queued_request_bytes.to_string(),
            ),
            (
                "connections.max.idle.ms",
                config.idle_timeout.as_millis().to_string(),
            ),
            (
                "connections.max.reauth.ms",
                config
                    .sasl
                    .as_ref()
                    .and_then(|s| s.max_reauth)
                    .map_or(0, |d| d.as_millis())
                    .to_string(),
            ),
            (
                "sasl.enabled.mechanisms",
                config
                    .sasl
                    .as_ref()
                    .map(|s| {
                        s.mechanisms
                            .iter()
                            .map(|m| m.name())
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .unwrap_or_default(),
            ),
        ];
        for (name, value) in statics {
            server.context.broker.set_static_broker_config(name, value);
        }
        server.context.apply_dynamic_configs();
        Ok(server)
    }

    /// The first listener's bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match self.listeners.first() {
            Some(b) => b.listener.local_addr(),
            None => Err(invalid("no Kafka listener configured".to_owned())),
        }
    }

    /// Every listener with its bound address, in configuration order.
    pub fn listeners(&self) -> std::io::Result<Vec<(Arc<ListenerInfo>, SocketAddr)>> {
        self.listeners
            .iter()
            .map(|b| Ok((Arc::clone(&b.info), b.listener.local_addr()?)))
            .collect()
    }

    /// The shared context (advertised address, broker).
    pub fn context(&self) -> &Arc<Context> {
        &self.context
    }

    /// Accepts connections on every listener until `shutdown` completes, then stops every
    /// connection task.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut loops = JoinSet::new();
        for bound in self.listeners {
            loops.spawn(accept_loop(
                bound,
                Arc::clone(&self.context),
                stopped.clone(),
            ));
        }
        shutdown.await;
        stop.send_replace(true);
        while loops.join_next().await.is_some() {}
    }
}

/// Accepts one listener's connections until `stop` turns true.
async fn accept_loop(
    bound: Bound,
    context: Arc<Context>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            accepted = bound.listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let Some(slot) = context.connections.admit(peer.ip()) else {
                        tracing::warn!(%peer, listener = %bound.info.name, "connection limit reached (max.connections or max.connections.per.ip), closing the new connection");
                        context.metrics.connection_refused();
                        drop(stream);
                        continue;
                    };
                    let context = Arc::clone(&context);
                    let info = Arc::clone(&bound.info);
                    let tls = bound.tls.clone();
                    connections.spawn(async move {
                        let _slot = slot;
                        connection::accept(stream, peer, info, tls, context).await;
                    });
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    tracing::info!(listener = %bound.info.name, connections = connections.len(), "kafka listener stopping");
    connections.shutdown().await;
}
