//! # strom-kinesis
//!
//! The Kinesis Data Streams front end: an HTTP service (axum, HTTP/1.1 and cleartext HTTP/2)
//! that answers `POST /` with `X-Amz-Target: Kinesis_20131202.<Action>` in JSON 1.1 or CBOR,
//! over the same broker the Kafka front end uses. A stream *is* a topic, a shard *is* a
//! partition, a sequence number encodes (shard, offset) ([`sequence`]), a shard iterator is a
//! signed token ([`iterator`]). Kinesis-only metadata (hash ranges, lineage, tags…) is kept by
//! the broker ([`strom_broker::stream`]); this crate holds no state beyond a request.
//!
//! Where does a request enter? [`service`] decodes the body ([`wire`]), dispatches on the
//! action name to `api/<action>.rs`, and maps [`error::KinesisError`] to AWS's error shape.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod admission;
pub(crate) mod api;
mod authz;
pub mod error;
pub mod fence;
pub mod iterator;
pub mod limits;
pub mod sequence;
pub mod service;
pub mod sigv4;
pub mod stream;
pub mod wire;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use strom_broker::Broker;
use tokio::net::TcpListener;

pub use error::{ErrorKind, KinesisError};
pub use service::Context;

/// Kinesis listener settings.
#[derive(Debug, Clone)]
pub struct KinesisConfig {
    /// Listen address (default `127.0.0.1:4567`).
    pub listen: SocketAddr,
    /// Region used in ARNs.
    pub region: String,
    /// How long a new stream reports `CREATING` (default 0).
    pub creating_delay: Duration,
    /// How long a resharded stream reports `UPDATING` (default 0).
    pub updating_delay: Duration,
    /// How long a shard iterator stays valid (AWS: 5 minutes).
    pub iterator_ttl: Duration,
    /// How long one SubscribeToShard call streams before it ends (AWS: 5 minutes).
    pub subscription_duration: Duration,
    /// Enforce AWS's per-shard throughput limits (1 MiB/s or 1,000 records/s written, 2 MiB/s
    /// and 5 `GetRecords` calls/s read) with `ProvisionedThroughputExceededException`
    /// (default off; see [`limits`]).
    pub aws_limits: bool,
    /// Where the AWS-limits buckets are kept when every broker of a cluster must share them
    /// (cluster mode: PostgreSQL); `None`: in this broker's memory.
    pub shared_limits: Option<Arc<dyn limits::SharedBuckets>>,
    /// Request-body and `GetRecords`-response bytes held in memory across all Kinesis
    /// requests at once (like Kafka's `queued.max.request.bytes`); a request that does not fit
    /// within [`service::MEMORY_BUDGET_WAIT`] gets `LimitExceededException`. A `GetRecords`
    /// reserves the most its response can take (about 25 MiB at `Limit` 10,000) before it
    /// reads, and holds the encoded body's size until the body is sent; a `SubscribeToShard`
    /// event does the same per read (waiting for room instead of failing). Raised to
    /// [`service::MIN_IN_FLIGHT_BYTES`] (about 41 MiB) if smaller.
    pub max_in_flight_bytes: usize,
    /// Open connections at most; further connections are closed at accept (warn log).
    pub max_connections: usize,
    /// Serve HTTPS with this configuration (its ALPN should offer `h2`, which
    /// SubscribeToShard needs, and `http/1.1`); `None`: cleartext HTTP/1.1 and HTTP/2.
    pub tls: Option<Arc<strom_tls::TlsServer>>,
    /// The file holding the shard-iterator secret (created at first start; `strom serve` uses
    /// [`iterator::SECRET_FILE`] in the data directory); `None`: a random secret per process,
    /// so iterators do not survive a restart.
    pub iterator_secret_file: Option<std::path::PathBuf>,
    /// The shard-iterator secret itself, when the broker got it elsewhere (cluster mode: the
    /// secret every broker shares, kept in PostgreSQL, so an iterator is valid on any broker);
    /// takes precedence over [`iterator_secret_file`](Self::iterator_secret_file).
    pub iterator_secret: Option<[u8; 32]>,
    /// How requests are authenticated (default: any credentials, for loopback development).
    pub auth: sigv4::KinesisAuth,
}

/// Default [`KinesisConfig::max_in_flight_bytes`]: 512 MiB.
pub const DEFAULT_MAX_IN_FLIGHT_BYTES: usize = 512 * 1024 * 1024;

impl Default for KinesisConfig {
    fn default() -> Self {
        KinesisConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 4567)),
            region: "us-east-1".to_owned(),
            creating_delay: Duration::ZERO,
            updating_delay: Duration::ZERO,
            iterator_ttl: Duration::from_secs(300),
            subscription_duration: Duration::from_secs(300),
            aws_limits: false,
            shared_limits: None,
            max_in_flight_bytes: DEFAULT_MAX_IN_FLIGHT_BYTES,
            max_connections: i32::MAX as usize,
            tls: None,
            iterator_secret_file: None,
            iterator_secret: None,
            auth: sigv4::KinesisAuth::None,
        }
    }
}

/// The client's address, in each request's extensions as `ConnectInfo<PeerAddr>` (host of
/// the ACL checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

impl
    axum::extract::connect_info::Connected<
        axum::serve::IncomingStream<'_, admission::LimitedListener>,
    > for PeerAddr
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, admission::LimitedListener>) -> Self {
        PeerAddr(*stream.remote_addr())
    }
}

impl
    axum::extract::connect_info::Connected<
        axum::serve::IncomingStream<'_, strom_tls::TlsListener<admission::LimitedListener>>,
    > for PeerAddr
{
    fn connect_info(
        stream: axum::serve::IncomingStream<'_, strom_tls::TlsListener<admission::LimitedListener>>,
    ) -> Self {
        PeerAddr(*stream.remote_addr())
    }
}

/// A bound Kinesis listener.
#[derive(Debug)]
pub struct KinesisServer {
    listener: TcpListener,
    context: Arc<Context>,
}

impl KinesisServer {
    /// Binds the listener.
    pub async fn bind(
        config: KinesisConfig,
        broker: Arc<Broker>,
    ) -> std::io::Result<KinesisServer> {
        let context = Context::new(config, broker).map_err(std::io::Error::other)?;
        let listener = TcpListener::bind(context.config.listen).await?;
        Ok(KinesisServer {
            listener,
            context: Arc::new(context),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes.
    pub async fn serve(self, shutdown: impl std::future::Future<Output = ()> + Send + 'static) {
        let closing = self.context.closing.clone();
        let max_connections = self.context.config.max_connections;
        let open_connections = Arc::clone(&self.context.open_connections);
        let tls = self.context.config.tls.clone();
        let app = service::router(self.context);
        let shutdown = async move {
            shutdown.await;
            closing.send_replace(true);
        };
        let listener =
            admission::LimitedListener::new(self.listener, max_connections, open_connections);
        let served = match tls {
            None => {
                axum::serve(
                    listener,
                    app.into_make_service_with_connect_info::<PeerAddr>(),
                )
                .with_graceful_shutdown(shutdown)
                .await
            }
            Some(tls) => {
                axum::serve(
                    strom_tls::TlsListener::new(listener, tls),
                    app.into_make_service_with_connect_info::<PeerAddr>(),
                )
                .with_graceful_shutdown(shutdown)
                .await
            }
        };
        if let Err(e) = served {
            tracing::error!(error = %e, "kinesis listener failed");
        }
    }
}
