//! Test kit for Strom's end-to-end tests: start a real broker in-process on an ephemeral port
//! with a temporary (or given) data directory, and stop it the way `strom serve` does.
//!
//! The tests themselves live in `tests/tests/` (one binary, one module per area).

pub mod cluster;
pub mod jwt;
pub mod tls;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use strom_broker::scram::{ScramMechanism, ScramUpsertion, salted_password};
use strom_broker::{Broker, BrokerConfig};
use strom_kafka::{KafkaConfig, KafkaServer, ListenerInfo};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Logs to the test output; `STROM_TEST_LOG` sets the filter (default `warn`).
pub fn init_tracing() {
    let filter = std::env::var("STROM_TEST_LOG").unwrap_or_else(|_| "warn".to_owned());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_test_writer()
        .try_init();
}

/// A running broker with a Kafka listener on `127.0.0.1:<ephemeral>`.
#[derive(Debug)]
pub struct TestBroker {
    addr: SocketAddr,
    listeners: Vec<(Arc<ListenerInfo>, SocketAddr)>,
    broker: Arc<Broker>,
    data_dir: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
    /// In a cluster: this broker's connection to it, left after the broker stopped.
    cluster: Option<strom_cluster::ClusterNode>,
}

impl TestBroker {
    /// Starts a broker with default settings on `data_dir`.
    pub async fn start(data_dir: &Path) -> TestBroker {
        TestBroker::start_with(BrokerConfig::new(data_dir), KafkaConfig::default()).await
    }

    /// Starts a broker with the given settings; the listen port is replaced by an ephemeral one
    /// (named listeners in `kafka.listeners` bind where they say).
    pub async fn start_with(config: BrokerConfig, kafka: KafkaConfig) -> TestBroker {
        TestBroker::start_on(config, kafka, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Stops this broker and starts a new one on the same address and data directory, as a
    /// broker restart looks to connected clients.
    pub async fn restart(self, config: BrokerConfig) -> TestBroker {
        let addr = self.addr;
        self.stop().await;
        TestBroker::start_on(config, KafkaConfig::default(), addr).await
    }

    /// Starts a broker of the cluster `slot` (see [`cluster`]): joins it, opens the broker on
    /// the cluster backend with the node id it was given, binds the Kafka listener on an
    /// ephemeral port and advertises it to the other brokers, as `strom serve --cluster-*` does.
    pub async fn start_in_cluster(
        mut config: BrokerConfig,
        mut kafka: KafkaConfig,
        slot: &cluster::ClusterSlot,
    ) -> TestBroker {
        init_tracing();
        let node = slot.join().await;
        config.node_id = node.node_id();
        kafka.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        let broker = Broker::start_with_backend(config.clone(), node.backend())
            .await
            .expect("broker starts on the cluster backend");
        let mut started = TestBroker::serve(config, kafka, broker).await;
        let mut addresses = std::collections::BTreeMap::new();
        addresses.insert(
            strom_cluster::membership::KAFKA_ADDRESS.to_owned(),
            started.addr.to_string(),
        );
        for (info, _) in &started.listeners {
            addresses.insert(
                strom_cluster::membership::kafka_listener_key(&info.name),
                format!("{}:{}", info.advertised_host, info.advertised_port),
            );
        }
        node.advertise(&addresses)
            .await
            .expect("listeners advertised");
        started.cluster = Some(node);
        started
    }

    /// In a cluster: this broker's connection to it.
    pub fn cluster_node(&self) -> Option<&strom_cluster::ClusterNode> {
        self.cluster.as_ref()
    }

    async fn start_on(
        config: BrokerConfig,
        mut kafka: KafkaConfig,
        listen: SocketAddr,
    ) -> TestBroker {
        init_tracing();
        kafka.listen = listen;
        let broker = Broker::start(config.clone()).await.expect("broker starts");
        TestBroker::serve(config, kafka, broker).await
    }

    /// Binds the Kafka listener of the opened `broker` and serves it.
    async fn serve(config: BrokerConfig, kafka: KafkaConfig, broker: Arc<Broker>) -> TestBroker {
        let data_dir = config.data_dir.clone();
        let server = KafkaServer::bind(kafka, Arc::clone(&broker))
            .await
            .expect("listener binds");
        let addr = server.local_addr().expect("bound address");
        let listeners = server.listeners().expect("bound addresses");
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(server.serve(async move {
            let _ = stopped.await;
        }));
        TestBroker {
            addr,
            listeners,
            broker,
            data_dir,
            stop: Some(stop),
            server: Some(server),
            cluster: None,
        }
    }

    /// `host:port` for client `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    /// The listener address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bound address of the listener named `name`.
    pub fn listener_addr(&self, name: &str) -> SocketAddr {
        self.listeners
            .iter()
            .find(|(info, _)| info.name == name)
            .map(|(_, addr)| *addr)
            .unwrap_or_else(|| panic!("no listener {name}"))
    }

    /// The broker core.
    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// Sets `user`'s password for both SCRAM mechanisms (SASL/PLAIN checks them too), one
    /// request per mechanism as Kafka allows one alteration per user per request. Several
    /// users are set in one metadata change per mechanism.
    pub async fn set_scram_passwords(&self, users: &[(&str, &str)]) {
        self.set_scram_passwords_for(&ScramMechanism::ALL, users)
            .await;
    }

    /// [`TestBroker::set_scram_passwords`] for the given mechanisms only (SASL/PLAIN needs
    /// SCRAM-SHA-256's or SCRAM-SHA-512's; each costs a PBKDF2 per user).
    pub async fn set_scram_passwords_for(
        &self,
        mechanisms: &[ScramMechanism],
        users: &[(&str, &str)],
    ) {
        for &m in mechanisms {
            let upsertions: Vec<ScramUpsertion> = users
                .iter()
                .map(|(user, password)| {
                    let salt = format!("salt-of-{user}-{password}").into_bytes();
                    ScramUpsertion {
                        user: (*user).to_owned(),
                        mechanism: m.code(),
                        iterations: 4096,
                        salted_password: salted_password(m, password.as_bytes(), &salt, 4096),
                        salt,
                    }
                })
                .collect();
            let results = self
                .broker
                .run_blocking(move |b| Ok(b.alter_scram_credentials_blocking(&[], &upsertions)))
                .await
                .expect("credentials are stored");
            for (user, r) in results {
                r.unwrap_or_else(|e| panic!("password of {user}: {e}"));
            }
        }
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Stops accepting, closes connections, flushes and closes every partition.
    pub async fn stop(mut self) {
        self.shutdown().await;
    }

    async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
        self.broker
            .run_blocking(|b| b.shutdown_blocking())
            .await
            .expect("partitions close cleanly");
        if let Some(node) = self.cluster.take() {
            node.shutdown(std::time::Duration::from_secs(10)).await;
        }
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
