//! A broker with both front ends on ephemeral ports, and an SDK client for it.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::config::retry::RetryConfig;
use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};
use strom_broker::BrokerConfig;
use strom_kafka::KafkaConfig;
use strom_kinesis::{KinesisConfig, KinesisServer};
use strom_tests::TestBroker;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Bound on every wait in these tests.
pub(crate) const WAIT: Duration = Duration::from_secs(30);

/// A running broker with Kafka and Kinesis listeners.
pub(crate) struct Both {
    pub(crate) broker: TestBroker,
    pub(crate) kinesis: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
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
        mut config: KinesisConfig,
    ) -> Both {
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
        }
    }

    pub(crate) fn endpoint(&self) -> String {
        format!("http://{}", self.kinesis)
    }

    pub(crate) fn client(&self) -> Client {
        client(&self.endpoint())
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
    }
}

/// The official SDK client with static dummy credentials, a fixed region, no retries.
pub(crate) fn client(endpoint: &str) -> Client {
    signed_client(endpoint, "AKIDTEST", "secret", None)
}

/// The official SDK client signing with the access key `id`, its `secret` and, for a temporary
/// key, its session `token`; a fixed region, no retries.
pub(crate) fn signed_client(endpoint: &str, id: &str, secret: &str, token: Option<&str>) -> Client {
    let config = aws_sdk_kinesis::Config::builder()
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
