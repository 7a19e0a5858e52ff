//! A broker with both front ends on ephemeral ports, and an SDK client for it; or, in the
//! `kinesis_cluster` test binary (`crate::CLUSTER`), three brokers of a cluster over real
//! PostgreSQL and moto (`strom_tests::cluster`), each with its Kinesis listener.
//!
//! In a cluster the test bodies run unchanged: `broker` is the first broker, `kinesis` the
//! second broker's Kinesis address (raw requests), and every SDK client made for one of the
//! cluster's endpoints sends each request to the next broker in turn, so a stream is created
//! through one broker, its iterator obtained through another and read through a third.
//! A restart on the same data directory (stop, then start on it again) restarts the cluster's
//! brokers on the same database and prefix, as a restart of every `strom serve` would.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::config::interceptors::BeforeTransmitInterceptorContextMut;
use aws_sdk_kinesis::config::retry::RetryConfig;
use aws_sdk_kinesis::config::{
    BehaviorVersion, ConfigBag, Credentials, Intercept, Region, RuntimeComponents,
};
use aws_sdk_kinesis::error::BoxError;
use strom_broker::BrokerConfig;
use strom_kafka::KafkaConfig;
use strom_kinesis::{KinesisConfig, KinesisServer};
use strom_tests::TestBroker;
use strom_tests::cluster::{ClusterSlot, Running};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Bound on every wait in these tests.
pub(crate) const WAIT: Duration = Duration::from_secs(30);

/// Brokers in a cluster test binary.
const CLUSTER_BROKERS: usize = 3;

/// A running broker with Kafka and Kinesis listeners (in a cluster: the first of three).
pub(crate) struct Both {
    pub(crate) broker: TestBroker,
    pub(crate) kinesis: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    cluster: Option<ClusterRest>,
}

/// The rest of a cluster: the other brokers, their Kinesis listeners, the slot.
struct ClusterRest {
    /// The brokers after the first, each with its Kinesis listener's stop and task.
    others: Vec<(TestBroker, oneshot::Sender<()>, JoinHandle<()>)>,
    /// Every broker's Kinesis address, the first broker's first.
    kinesis: Vec<SocketAddr>,
    slot: ClusterSlot,
    /// Where the slot is parked when the brokers stop (the first broker's data directory).
    dir: PathBuf,
    _running: Running,
}

/// Clusters whose brokers stopped, by data directory, for a restart on the same directory;
/// dropped (database and all) once their directory is gone.
static PARKED: Mutex<Vec<(PathBuf, ClusterSlot)>> = Mutex::new(Vec::new());

/// Every cluster's Kinesis addresses by the port of each of them: an SDK client made for any
/// of them sends its requests to each in turn.
static ENDPOINTS: Mutex<Vec<Vec<SocketAddr>>> = Mutex::new(Vec::new());

/// The parked slot of `dir`, or a new one; parked slots whose directory is gone are dropped.
fn slot_for(dir: &Path) -> ClusterSlot {
    let mut parked = PARKED.lock().unwrap_or_else(|p| p.into_inner());
    parked.retain(|(d, _)| d.exists());
    match parked.iter().position(|(d, _)| d == dir) {
        Some(i) => parked.swap_remove(i).1,
        None => ClusterSlot::new().expect("a cluster slot"),
    }
}

impl Both {
    pub(crate) async fn start(dir: &Path) -> Both {
        Both::start_with(dir, KinesisConfig::default()).await
    }

    pub(crate) async fn start_with(dir: &Path, config: KinesisConfig) -> Both {
        Both::start_with_broker(BrokerConfig::new(dir), config).await
    }

    pub(crate) async fn start_with_broker(
        broker_config: BrokerConfig,
        config: KinesisConfig,
    ) -> Both {
        if crate::CLUSTER {
            Both::start_cluster(broker_config, config).await
        } else {
            Both::start_single(broker_config, config).await
        }
    }

    async fn start_single(broker_config: BrokerConfig, mut config: KinesisConfig) -> Both {
        // As `strom serve` does: the iterator secret lives in the data directory.
        if config.iterator_secret_file.is_none() {
            config.iterator_secret_file = Some(
                broker_config
                    .data_dir
                    .join(strom_kinesis::iterator::SECRET_FILE),
            );
        }
        let broker = TestBroker::start_with(broker_config, KafkaConfig::default()).await;
        config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        let server = KinesisServer::bind(config, Arc::clone(broker.broker()))
            .await
            .expect("kinesis listener binds");
        let kinesis = server.local_addr().expect("bound address");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(async move {
            let _ = stopped.await;
        }));
        Both {
            broker,
            kinesis,
            stop: Some(stop),
            task: Some(task),
            cluster: None,
        }
    }

    /// Three brokers of one cluster on `broker_config` (the first on its data directory, the
    /// others on `broker-N` under it), each with a Kinesis listener on `config`.
    async fn start_cluster(broker_config: BrokerConfig, config: KinesisConfig) -> Both {
        let running = Running::acquire().await;
        let dir = broker_config.data_dir.clone();
        let slot = {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || slot_for(&dir))
                .await
                .expect("slot set-up does not panic")
        };
        let mut started = Vec::new();
        for n in 0..CLUSTER_BROKERS {
            let mut broker_config = broker_config.clone();
            if n > 0 {
                broker_config.data_dir = dir.join(format!("broker-{n}"));
            }
            let broker =
                TestBroker::start_in_cluster(broker_config, KafkaConfig::default(), &slot).await;
            let node = broker.cluster_node().expect("a cluster broker");
            let mut config = strom_tests::cluster::kinesis_config(node, config.clone()).await;
            config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
            let server = KinesisServer::bind(config, Arc::clone(broker.broker()))
                .await
                .expect("kinesis listener binds");
            let kinesis = server.local_addr().expect("bound address");
            let (stop, stopped) = oneshot::channel::<()>();
            let task = tokio::spawn(server.serve(async move {
                let _ = stopped.await;
            }));
            started.push((broker, kinesis, stop, task));
        }
        let kinesis: Vec<SocketAddr> = started.iter().map(|(_, k, _, _)| *k).collect();
        ENDPOINTS
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(kinesis.clone());
        let mut started = started.into_iter();
        let (broker, _, stop, task) = started.next().expect("a first broker");
        Both {
            broker,
            kinesis: kinesis[1],
            stop: Some(stop),
            task: Some(task),
            cluster: Some(ClusterRest {
                others: started.map(|(b, _, s, t)| (b, s, t)).collect(),
                kinesis,
                slot,
                dir,
                _running: running,
            }),
        }
    }

    pub(crate) fn endpoint(&self) -> String {
        format!("http://{}", self.kinesis)
    }

    pub(crate) fn client(&self) -> Client {
        client(&self.endpoint())
    }

    /// A client of the `n`th broker alone (in start order from 0; on a single node, the
    /// broker whatever `n`).
    pub(crate) fn broker_client(&self, n: usize) -> Client {
        let addr = match &self.cluster {
            Some(rest) => rest.kinesis[n % rest.kinesis.len()],
            None => self.kinesis,
        };
        fixed_client(&format!("http://{addr}"))
    }

    pub(crate) fn bootstrap(&self) -> String {
        self.broker.bootstrap()
    }

    pub(crate) async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(WAIT, task).await;
        }
        self.broker.stop().await;
        if let Some(rest) = self.cluster.take() {
            for (broker, stop, task) in rest.others {
                let _ = stop.send(());
                let _ = tokio::time::timeout(WAIT, task).await;
                broker.stop().await;
            }
            ENDPOINTS
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|e| *e != rest.kinesis);
            PARKED
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((rest.dir, rest.slot));
        }
    }
}

/// Sends each request to the next of a cluster's Kinesis endpoints (before signing, so the
/// signature covers the broker it goes to).
#[derive(Debug)]
struct RoundRobin {
    brokers: Vec<SocketAddr>,
    next: AtomicUsize,
}

impl Intercept for RoundRobin {
    fn name(&self) -> &'static str {
        "RoundRobin"
    }

    fn modify_before_signing(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let n = self.next.fetch_add(1, Ordering::Relaxed) % self.brokers.len();
        let request = context.request_mut();
        let uri: http::Uri = request.uri().parse()?;
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let scheme = uri.scheme_str().unwrap_or("http");
        request.set_uri(format!("{scheme}://{}{path}", self.brokers[n]))?;
        Ok(())
    }
}

/// The cluster whose Kinesis endpoints include `endpoint`'s port, if any.
fn cluster_of(endpoint: &str) -> Option<Vec<SocketAddr>> {
    let port = endpoint.parse::<http::Uri>().ok()?.port_u16()?;
    ENDPOINTS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .find(|e| e.iter().any(|a| a.port() == port))
        .cloned()
}

/// Whether a test (or one step of it) that cannot hold against a cluster is skipped: `true`
/// in the `kinesis_cluster` binary, after saying `why` on stderr; `false` on a single node.
pub(crate) fn single_node_only(why: &str) -> bool {
    if crate::CLUSTER {
        eprintln!("single-node only, not run against the cluster: {why}");
    }
    crate::CLUSTER
}

/// The official SDK client with static dummy credentials, a fixed region, no retries.
pub(crate) fn client(endpoint: &str) -> Client {
    signed_client(endpoint, "AKIDTEST", "secret", None)
}

/// The official SDK client signing with the access key `id`, its `secret` and, for a temporary
/// key, its session `token`; a fixed region, no retries.
pub(crate) fn signed_client(endpoint: &str, id: &str, secret: &str, token: Option<&str>) -> Client {
    let mut config = aws_sdk_kinesis::Config::builder();
    if let Some(brokers) = cluster_of(endpoint) {
        config = config.interceptor(RoundRobin {
            brokers,
            next: AtomicUsize::new(0),
        });
    }
    sdk_client(config, endpoint, id, secret, token)
}

/// The official SDK client of `endpoint` alone (no round robin in a cluster), with the test
/// credentials.
pub(crate) fn fixed_client(endpoint: &str) -> Client {
    sdk_client(
        aws_sdk_kinesis::Config::builder(),
        endpoint,
        "AKIDTEST",
        "secret",
        None,
    )
}

fn sdk_client(
    config: aws_sdk_kinesis::config::Builder,
    endpoint: &str,
    id: &str,
    secret: &str,
    token: Option<&str>,
) -> Client {
    let config = config
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            id,
            secret,
            token.map(str::to_owned),
            None,
            "static",
        ))
        .endpoint_url(endpoint)
        .retry_config(RetryConfig::disabled())
        .build();
    Client::from_conf(config)
}

/// Creates the stream `name` with `shards` shards through `client` and returns its first
/// shard's TRIM_HORIZON iterator (the set-up most stream tests begin with).
pub(crate) async fn create_stream(client: &Client, name: &str, shards: i32) -> String {
    client
        .create_stream()
        .stream_name(name)
        .shard_count(shards)
        .send()
        .await
        .expect("stream created");
    client
        .get_shard_iterator()
        .stream_name(name)
        .shard_id("shardId-000000000000")
        .shard_iterator_type(aws_sdk_kinesis::types::ShardIteratorType::TrimHorizon)
        .send()
        .await
        .expect("shard iterator")
        .shard_iterator()
        .expect("an iterator")
        .to_owned()
}

/// The exception name of an SDK error (`ResourceNotFoundException`, …).
pub(crate) fn code<E, R>(err: &aws_sdk_kinesis::error::SdkError<E, R>) -> String
where
    E: aws_sdk_kinesis::error::ProvideErrorMetadata,
{
    err.as_service_error()
        .and_then(|e| e.code())
        .unwrap_or("<not a service error>")
        .to_owned()
}
