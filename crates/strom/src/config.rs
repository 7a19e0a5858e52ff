//! Settings for `strom serve`: built-in defaults < TOML file < `STROM_*` environment < flags.
//!
//! ```toml
//! data_dir = "./strom-data"
//! log = "info"
//!
//! [kafka]
//! listen = "127.0.0.1:9092"
//! advertised_host = "localhost"
//! advertised_port = 9092
//! max_request_bytes = 104857600          # socket.request.max.bytes
//! queued_max_request_bytes = 536870912   # request bytes in memory across connections
//! connections_max_idle_ms = 600000
//! fetch_max_bytes = 31457280             # broker fetch.max.bytes: cap of one Fetch response
//! max_connections = 2147483647           # max.connections (excess connections are closed)
//! max_connections_per_ip = 2147483647    # max.connections.per.ip
//! # SASL settings of the SASL_PLAINTEXT / SASL_SSL listeners (required when there is one).
//! sasl_enabled_mechanisms = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"]
//! connections_max_reauth_ms = 0          # KIP-368 session lifetime; 0: none
//! sasl_oauthbearer_jwks_file = "jwks.json"            # keys that sign OAUTHBEARER tokens, or
//! # sasl_oauthbearer_jwks_url = "https://idp/jwks"    # fetched at start and every refresh
//! # sasl_oauthbearer_jwks_refresh_ms = 3600000
//! sasl_oauthbearer_expected_issuer = "https://idp"    # optional `iss` check
//! sasl_oauthbearer_expected_audience = "strom"        # optional `aud` check
//! sasl_oauthbearer_clock_skew_seconds = 30
//! # listeners = "INTERNAL://127.0.0.1:9092,EXTERNAL://0.0.0.0:9093"   # replaces listen
//! # advertised_listeners = "EXTERNAL://kafka.example.com:9093"
//! # listener_security_protocol_map = "INTERNAL:PLAINTEXT,EXTERNAL:SSL"
//!
//! [http]
//! listen = "127.0.0.1:9644"           # /metrics and /health
//! tls = false                         # HTTPS with the [tls] files; also --http-tls
//!
//! [kinesis]
//! listen = "127.0.0.1:4567"           # Kinesis Data Streams API (JSON 1.1 and CBOR)
//! region = "us-east-1"                # used in stream ARNs
//! aws_limits = false                  # throttle shards like AWS (1 MiB/s, 1000 rec/s in; 2 MiB/s, 5 reads/s out)
//! max_in_flight_bytes = 536870912     # request bodies + GetRecords responses in memory at once; beyond: LimitExceededException
//! max_connections = 2147483647        # excess connections are closed
//! tls = false                         # HTTPS (HTTP/2 by ALPN) with the [tls] files; also --kinesis-tls
//! auth = "sigv4"                      # "none" (any credentials) | "sigv4"; also --kinesis-auth.
//!                                     # Unset: sigv4 when access keys are configured, else none on
//!                                     # loopback; beyond loopback without keys it must be explicit.
//! # iterator_secret_file = "/etc/strom/iterator.key"  # default <data_dir>/kinesis-iterator.secret;
//!                                     # give every broker of a cluster the same 32-byte file
//! [[kinesis.access_key]]              # repeatable; also STROM_KINESIS_ACCESS_KEY=ID:SECRET:User:name
//! id = "AKIAEXAMPLE"
//! secret = "..."
//! principal = "User:alice"            # what the ACLs see
//! # session_token = "..."             # a temporary key: requests must send X-Amz-Security-Token
//! # expires_at = "2026-12-31T23:59:59Z"  # refused after it (ExpiredTokenException)
//!
//! [broker]
//! node_id = 0
//! auto_create_topics = true
//! num_partitions = 1
//! retention_check_interval_ms = 300000
//!
//! [group]                   # group.* broker settings, Kafka's defaults
//! min_session_timeout_ms = 1000
//! max_session_timeout_ms = 1800000
//! initial_rebalance_delay_ms = 3000      # also --group-initial-rebalance-delay-ms
//! consumer_heartbeat_interval_ms = 5000  # KIP-848 (group.protocol=consumer) groups
//! consumer_session_timeout_ms = 45000
//! consumer_max_size = 100              # members per group; unlimited if unset
//! offsets_retention_minutes = 10080     # offsets.retention.minutes: empty groups' offsets expire
//! offsets_retention_check_interval_ms = 600000
//!
//! [log_cleaner]             # log.cleaner.* broker settings, Kafka's defaults
//! enable = true                        # also --log-cleaner-enable
//! threads = 1                          # also --log-cleaner-threads
//! io_max_bytes_per_second = 52428800   # unlimited if unset; also --log-cleaner-io-max-bytes-per-second
//! backoff_ms = 15000                   # also --log-cleaner-backoff-ms
//!
//! [cluster]                 # cluster mode; both URLs or neither (single node)
//! postgres = "postgres://strom:secret@127.0.0.1:5432/strom"   # also --cluster-postgres
//! object_store = "s3://bucket/prefix"  # also --cluster-object-store
//! s3_endpoint = "http://127.0.0.1:9000" # else AWS_ENDPOINT_URL, else AWS S3
//! s3_region = "us-east-1"              # else AWS_REGION
//! s3_allow_http = false                # plain-HTTP endpoints (local stores)
//! lease_ttl_ms = 10000                 # a dead broker leaves Metadata after about this
//! flush_delay_ms = 250                 # longest wait before a flush to the object store
//! # Background jobs (each also a --cluster-* flag and STROM_CLUSTER_* variable):
//! job_interval_ms = 5000               # between passes of each job; default lease_ttl_ms / 2
//! object_delete_delay_ms = 60000       # unreferenced objects stay readable this long
//! orphan_grace_ms = 600000             # uncommitted objects older than this are deleted
//! merge_min_age_ms = 60000             # younger objects are not merged
//! merge_small_object_bytes = 4194304   # objects with fewer live bytes are merged
//! merge_target_bytes = 33554432        # a merged object holds up to about this much
//!
//! [security]
//! authorizer = false                   # ACLs (CreateAcls/DescribeAcls/DeleteAcls); off: SECURITY_DISABLED
//! super_users = ["User:admin"]         # super.users: allowed everything
//! allow_everyone_if_no_acl_found = false  # allow.everyone.if.no.acl.found
//!
//! [tls]                     # TLS files; see listeners.rs for [[listener]] tables
//! cert = "server.pem"                  # also --tls-cert
//! key = "server.key"                   # also --tls-key
//! client_ca = "clients.pem"            # CAs for client certificates; also --tls-client-ca
//! client_auth = "none"                 # ssl.client.auth: none | requested | required
//! principal_mapping_rules = "DEFAULT"  # ssl.principal.mapping.rules; --ssl-principal-mapping-rules
//! reload_check_interval_ms = 10000     # files re-read when changed, and on SIGHUP
//!
//! [topic_defaults]          # Kafka topic-config names; defaults for every topic
//! "retention.ms" = "604800000"
//! "strom.fsync" = "always"
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use serde::Deserialize;
use strom_broker::BrokerConfig;
use strom_kafka::KafkaConfig;
use strom_kinesis::KinesisConfig;

/// Flags of `strom serve`; each also reads a `STROM_*` variable.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// TOML config file (lowest precedence after the built-in defaults).
    #[arg(long, env = "STROM_CONFIG", value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Where partitions and metadata live [default: ./strom-data].
    #[arg(long, env = "STROM_DATA_DIR", value_name = "DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// Kafka listener address [default: 127.0.0.1:9092].
    #[arg(long, env = "STROM_KAFKA_LISTEN", value_name = "ADDR")]
    pub(crate) kafka_listen: Option<SocketAddr>,
    /// Kinesis Data Streams listener address [default: 127.0.0.1:4567].
    #[arg(long, env = "STROM_KINESIS_LISTEN", value_name = "ADDR")]
    pub(crate) kinesis_listen: Option<SocketAddr>,
    /// Enforce AWS's per-shard Kinesis throughput limits (ProvisionedThroughputExceededException)
    /// [default: false].
    #[arg(
        long,
        env = "STROM_KINESIS_AWS_LIMITS",
        value_name = "BOOL",
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub(crate) kinesis_aws_limits: Option<bool>,
    /// Kinesis request authentication: `none` (any credentials) or `sigv4` (configured access
    /// keys) [default: sigv4 when keys are configured, else none on loopback].
    #[arg(long, env = "STROM_KINESIS_AUTH", value_name = "none|sigv4")]
    pub(crate) kinesis_auth: Option<String>,
    /// One Kinesis access key, `ID:SECRET:PRINCIPAL` (e.g. `AKIA1:s3cr3t:User:alice`); prefer
    /// the environment variable over the flag, which other users can see in the process list.
    #[arg(
        long,
        env = "STROM_KINESIS_ACCESS_KEY",
        value_name = "ID:SECRET:PRINCIPAL"
    )]
    pub(crate) kinesis_access_key: Option<String>,
    /// Admin HTTP listener (/metrics, /health) [default: 127.0.0.1:9644].
    #[arg(long, env = "STROM_HTTP_LISTEN", value_name = "ADDR")]
    pub(crate) http_listen: Option<SocketAddr>,
    /// Host name clients are told to connect to [default: the listen IP].
    #[arg(long, env = "STROM_KAFKA_ADVERTISED_HOST", value_name = "HOST")]
    pub(crate) advertised_host: Option<String>,
    /// Port clients are told to connect to [default: the listen port].
    #[arg(long, env = "STROM_KAFKA_ADVERTISED_PORT", value_name = "PORT")]
    pub(crate) advertised_port: Option<u16>,
    /// Largest request frame accepted (socket.request.max.bytes) [default: 104857600].
    #[arg(long, env = "STROM_KAFKA_MAX_REQUEST_BYTES", value_name = "BYTES")]
    pub(crate) max_request_bytes: Option<usize>,
    /// SASL mechanisms of the SASL_PLAINTEXT and SASL_SSL listeners, comma-separated
    /// (`PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`, `OAUTHBEARER`); required when such a
    /// listener exists [default: none].
    #[arg(long, env = "STROM_KAFKA_SASL_ENABLED_MECHANISMS", value_name = "LIST")]
    pub(crate) sasl_enabled_mechanisms: Option<String>,
    /// `connections.max.reauth.ms` (KIP-368): longest SASL session [default: 0, none].
    #[arg(long, env = "STROM_KAFKA_CONNECTIONS_MAX_REAUTH_MS", value_name = "MS")]
    pub(crate) connections_max_reauth_ms: Option<u64>,
    /// JWKS file of the keys that sign OAUTHBEARER tokens.
    #[arg(
        long,
        env = "STROM_KAFKA_SASL_OAUTHBEARER_JWKS_FILE",
        value_name = "PATH"
    )]
    pub(crate) sasl_oauthbearer_jwks_file: Option<PathBuf>,
    /// JWKS endpoint (http or https) of the keys that sign OAUTHBEARER tokens, fetched at
    /// start and every `sasl_oauthbearer_jwks_refresh_ms` (TOML; default one hour) after.
    #[arg(
        long,
        env = "STROM_KAFKA_SASL_OAUTHBEARER_JWKS_URL",
        value_name = "URL"
    )]
    pub(crate) sasl_oauthbearer_jwks_url: Option<String>,
    /// This broker's node id [default: 0].
    #[arg(long, env = "STROM_BROKER_NODE_ID", value_name = "ID")]
    pub(crate) node_id: Option<i32>,
    /// Create unknown topics on Metadata and Produce [default: true].
    #[arg(long, env = "STROM_BROKER_AUTO_CREATE_TOPICS", value_name = "BOOL")]
    pub(crate) auto_create_topics: Option<bool>,
    /// Partitions of auto-created topics [default: 1].
    #[arg(long, env = "STROM_BROKER_NUM_PARTITIONS", value_name = "N")]
    pub(crate) num_partitions: Option<i32>,
    /// How long a new classic group waits for more members before its first rebalance
    /// (`group.initial.rebalance.delay.ms`) [default: 3000]; 0 suits tests and development.
    #[arg(
        long,
        env = "STROM_GROUP_INITIAL_REBALANCE_DELAY_MS",
        value_name = "MS"
    )]
    pub(crate) group_initial_rebalance_delay_ms: Option<i32>,
    /// Run the log cleaner, which compacts topics with `cleanup.policy=compact`
    /// (`log.cleaner.enable`) [default: true].
    #[arg(long, env = "STROM_LOG_CLEANER_ENABLE", value_name = "BOOL")]
    pub(crate) log_cleaner_enable: Option<bool>,
    /// Log cleaner threads (`log.cleaner.threads`) [default: 1].
    #[arg(long, env = "STROM_LOG_CLEANER_THREADS", value_name = "N")]
    pub(crate) log_cleaner_threads: Option<usize>,
    /// I/O budget of all cleaner threads together (`log.cleaner.io.max.bytes.per.second`)
    /// [default: unlimited].
    #[arg(
        long,
        env = "STROM_LOG_CLEANER_IO_MAX_BYTES_PER_SECOND",
        value_name = "BYTES"
    )]
    pub(crate) log_cleaner_io_max_bytes_per_second: Option<u64>,
    /// How long a cleaner thread sleeps when nothing is cleanable (`log.cleaner.backoff.ms`)
    /// [default: 15000].
    #[arg(long, env = "STROM_LOG_CLEANER_BACKOFF_MS", value_name = "MS")]
    pub(crate) log_cleaner_backoff_ms: Option<u64>,
    /// Enable the ACL authorizer (Kafka's `authorizer.class.name`); without it the ACL APIs
    /// answer SECURITY_DISABLED [default: false].
    #[arg(
        long,
        env = "STROM_SECURITY_AUTHORIZER",
        value_name = "BOOL",
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub(crate) authorizer: Option<bool>,
    /// Principals allowed everything, `;`-separated as Kafka's `super.users`
    /// (e.g. `User:admin;User:ops`) [default: none].
    #[arg(long, env = "STROM_SECURITY_SUPER_USERS", value_name = "PRINCIPALS")]
    pub(crate) super_users: Option<String>,
    /// Allow an action on a resource no ACL matches (`allow.everyone.if.no.acl.found`)
    /// [default: false].
    #[arg(
        long,
        env = "STROM_SECURITY_ALLOW_EVERYONE_IF_NO_ACL_FOUND",
        value_name = "BOOL",
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub(crate) allow_everyone_if_no_acl_found: Option<bool>,
    /// Log filter, tracing-subscriber syntax [default: info].
    /// Kafka listeners, Kafka's `listeners` (`NAME://host:port,…`; an empty host binds every
    /// interface); replaces --kafka-listen and the `[[listener]]` tables.
    #[arg(long, env = "STROM_KAFKA_LISTENERS", value_name = "LIST")]
    pub(crate) listeners: Option<String>,
    /// Addresses given to each listener's clients, Kafka's `advertised.listeners`
    /// (`NAME://host:port,…`) [default: the bound address].
    #[arg(long, env = "STROM_KAFKA_ADVERTISED_LISTENERS", value_name = "LIST")]
    pub(crate) advertised_listeners: Option<String>,
    /// Security protocol of each listener name, Kafka's `listener.security.protocol.map`
    /// (`INTERNAL:PLAINTEXT,EXTERNAL:SSL`) [default: PLAINTEXT, SSL, SASL_PLAINTEXT and
    /// SASL_SSL map to themselves].
    #[arg(
        long,
        env = "STROM_KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
        value_name = "MAP"
    )]
    pub(crate) listener_security_protocol_map: Option<String>,
    /// PEM certificate chain of the TLS listeners (`[tls] cert`).
    #[arg(long, env = "STROM_TLS_CERT", value_name = "FILE")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// PEM private key of the TLS listeners (`[tls] key`).
    #[arg(long, env = "STROM_TLS_KEY", value_name = "FILE")]
    pub(crate) tls_key: Option<PathBuf>,
    /// PEM bundle of CAs trusted for client certificates (`[tls] client_ca`).
    #[arg(long, env = "STROM_TLS_CLIENT_CA", value_name = "FILE")]
    pub(crate) tls_client_ca: Option<PathBuf>,
    /// Client certificates, Kafka's `ssl.client.auth`: none, requested or required
    /// [default: none].
    #[arg(long, env = "STROM_TLS_CLIENT_AUTH", value_name = "MODE")]
    pub(crate) tls_client_auth: Option<String>,
    /// Kafka's `ssl.principal.mapping.rules` for client certificates, e.g.
    /// `RULE:^CN=([^,]*),.*$/$1/L,DEFAULT` (`[tls] principal_mapping_rules`) [default: DEFAULT].
    #[arg(long, env = "STROM_SSL_PRINCIPAL_MAPPING_RULES", value_name = "RULES")]
    pub(crate) ssl_principal_mapping_rules: Option<String>,
    /// Serve the Kinesis endpoint over HTTPS (HTTP/2 by ALPN) with the `[tls]` files
    /// [default: false].
    #[arg(
        long,
        env = "STROM_KINESIS_TLS",
        value_name = "BOOL",
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub(crate) kinesis_tls: Option<bool>,
    /// Serve the admin HTTP port (/metrics, /health) over HTTPS with the `[tls]` files
    /// [default: false].
    #[arg(
        long,
        env = "STROM_HTTP_TLS",
        value_name = "BOOL",
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub(crate) http_tls: Option<bool>,
    #[arg(long, env = "STROM_LOG", value_name = "FILTER")]
    pub(crate) log: Option<String>,
    /// Cluster mode: PostgreSQL URL of the sequencer and metadata
    /// (`postgres://user:pass@host:port/db`); needs --cluster-object-store too.
    #[arg(long, env = "STROM_CLUSTER_POSTGRES", value_name = "URL")]
    pub(crate) cluster_postgres: Option<String>,
    /// Cluster mode: where record batches are stored (`s3://BUCKET/PREFIX`).
    #[arg(long, env = "STROM_CLUSTER_OBJECT_STORE", value_name = "URL")]
    pub(crate) cluster_object_store: Option<String>,
    /// S3 endpoint of an S3-compatible store [default: AWS_ENDPOINT_URL, else AWS S3].
    #[arg(long, env = "STROM_CLUSTER_S3_ENDPOINT", value_name = "URL")]
    pub(crate) cluster_s3_endpoint: Option<String>,
    /// S3 region [default: AWS_REGION, else us-east-1].
    #[arg(long, env = "STROM_CLUSTER_S3_REGION", value_name = "REGION")]
    pub(crate) cluster_s3_region: Option<String>,
    /// Allow a plain http:// S3 endpoint (local stores) [default: false].
    #[arg(
        long,
        env = "STROM_CLUSTER_S3_ALLOW_HTTP",
        value_name = "BOOL",
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub(crate) cluster_s3_allow_http: Option<bool>,
    /// How long a broker's registration lives without a heartbeat: a dead broker leaves
    /// Metadata after about this long [default: 10000].
    #[arg(long, env = "STROM_CLUSTER_LEASE_TTL_MS", value_name = "MS")]
    pub(crate) cluster_lease_ttl_ms: Option<u64>,
    /// Longest wait before a produced batch is flushed to the object store [default: 250].
    #[arg(long, env = "STROM_CLUSTER_FLUSH_DELAY_MS", value_name = "MS")]
    pub(crate) cluster_flush_delay_ms: Option<u64>,
    /// PostgreSQL `statement_timeout` of the broker's sessions; 0 turns it off [default: 30000].
    #[arg(long, env = "STROM_CLUSTER_PG_STATEMENT_TIMEOUT_MS", value_name = "MS")]
    pub(crate) cluster_pg_statement_timeout_ms: Option<u64>,
    /// PostgreSQL `lock_timeout` of the broker's sessions; 0 turns it off [default: 10000].
    #[arg(long, env = "STROM_CLUSTER_PG_LOCK_TIMEOUT_MS", value_name = "MS")]
    pub(crate) cluster_pg_lock_timeout_ms: Option<u64>,
    /// Time between two passes of each background job (retention, compaction, merging,
    /// object reclaim, orphan collection) [default: half the lease TTL].
    #[arg(long, env = "STROM_CLUSTER_JOB_INTERVAL_MS", value_name = "MS")]
    pub(crate) cluster_job_interval_ms: Option<u64>,
    /// How long an object no index row names stays readable before it is deleted
    /// [default: 60000].
    #[arg(long, env = "STROM_CLUSTER_OBJECT_DELETE_DELAY_MS", value_name = "MS")]
    pub(crate) cluster_object_delete_delay_ms: Option<u64>,
    /// Age after which an uncommitted object is deleted as an orphan; must exceed the longest
    /// flush [default: 600000].
    #[arg(long, env = "STROM_CLUSTER_ORPHAN_GRACE_MS", value_name = "MS")]
    pub(crate) cluster_orphan_grace_ms: Option<u64>,
    /// Objects younger than this are not merged [default: 60000].
    #[arg(long, env = "STROM_CLUSTER_MERGE_MIN_AGE_MS", value_name = "MS")]
    pub(crate) cluster_merge_min_age_ms: Option<u64>,
    /// An object with fewer live bytes than this is merged with others [default: 4194304].
    #[arg(
        long,
        env = "STROM_CLUSTER_MERGE_SMALL_OBJECT_BYTES",
        value_name = "BYTES"
    )]
    pub(crate) cluster_merge_small_object_bytes: Option<u64>,
    /// A merged object holds up to about this many bytes [default: 33554432].
    #[arg(long, env = "STROM_CLUSTER_MERGE_TARGET_BYTES", value_name = "BYTES")]
    pub(crate) cluster_merge_target_bytes: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    log: Option<String>,
    #[serde(default)]
    kafka: FileKafka,
    #[serde(default)]
    broker: FileBroker,
    #[serde(default)]
    http: FileHttp,
    #[serde(default)]
    kinesis: FileKinesis,
    #[serde(default)]
    group: FileGroup,
    #[serde(default)]
    log_cleaner: FileLogCleaner,
    #[serde(default)]
    security: FileSecurity,
    #[serde(default)]
    topic_defaults: BTreeMap<String, String>,
    #[serde(default)]
    cluster: FileCluster,
    #[serde(default)]
    tls: crate::listeners::FileTls,
    #[serde(default)]
    listener: Vec<crate::listeners::FileListener>,
}

/// `[cluster]`: cluster mode (stateless brokers over PostgreSQL and object storage).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCluster {
    postgres: Option<String>,
    object_store: Option<String>,
    s3_endpoint: Option<String>,
    s3_region: Option<String>,
    s3_allow_http: Option<bool>,
    lease_ttl_ms: Option<u64>,
    flush_delay_ms: Option<u64>,
    pg_statement_timeout_ms: Option<u64>,
    pg_lock_timeout_ms: Option<u64>,
    job_interval_ms: Option<u64>,
    object_delete_delay_ms: Option<u64>,
    orphan_grace_ms: Option<u64>,
    merge_min_age_ms: Option<u64>,
    merge_small_object_bytes: Option<u64>,
    merge_target_bytes: Option<u64>,
}

/// `[security]`: the authorizer (Kafka's `super.users`, `allow.everyone.if.no.acl.found`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSecurity {
    authorizer: Option<bool>,
    super_users: Option<Vec<String>>,
    allow_everyone_if_no_acl_found: Option<bool>,
}

/// `[group]`: the group coordinator, with Kafka's broker setting names minus `group.`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileGroup {
    min_session_timeout_ms: Option<i32>,
    max_session_timeout_ms: Option<i32>,
    initial_rebalance_delay_ms: Option<i32>,
    consumer_heartbeat_interval_ms: Option<i32>,
    consumer_session_timeout_ms: Option<i32>,
    consumer_max_size: Option<usize>,
    offsets_retention_minutes: Option<i64>,
    offsets_retention_check_interval_ms: Option<i64>,
}

/// `[log_cleaner]`: Kafka's `log.cleaner.*` broker settings minus the prefix.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLogCleaner {
    enable: Option<bool>,
    threads: Option<usize>,
    io_max_bytes_per_second: Option<u64>,
    backoff_ms: Option<u64>,
}

/// The most cleaner threads accepted (each holds a key map while it cleans).
const MAX_CLEANER_THREADS: usize = 64;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileKafka {
    listen: Option<SocketAddr>,
    advertised_host: Option<String>,
    advertised_port: Option<u16>,
    max_request_bytes: Option<usize>,
    queued_max_request_bytes: Option<usize>,
    connections_max_idle_ms: Option<u64>,
    fetch_max_bytes: Option<usize>,
    max_connections: Option<usize>,
    max_connections_per_ip: Option<usize>,
    sasl_enabled_mechanisms: Option<Vec<String>>,
    connections_max_reauth_ms: Option<u64>,
    sasl_oauthbearer_jwks_file: Option<PathBuf>,
    sasl_oauthbearer_jwks_url: Option<String>,
    sasl_oauthbearer_jwks_refresh_ms: Option<u64>,
    sasl_oauthbearer_expected_issuer: Option<String>,
    sasl_oauthbearer_expected_audience: Option<String>,
    sasl_oauthbearer_clock_skew_seconds: Option<u64>,
    listeners: Option<String>,
    advertised_listeners: Option<String>,
    listener_security_protocol_map: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileHttp {
    listen: Option<SocketAddr>,
    tls: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileKinesis {
    listen: Option<SocketAddr>,
    region: Option<String>,
    aws_limits: Option<bool>,
    max_in_flight_bytes: Option<usize>,
    max_connections: Option<usize>,
    tls: Option<bool>,
    auth: Option<String>,
    #[serde(default)]
    access_key: Vec<FileAccessKey>,
    iterator_secret_file: Option<PathBuf>,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAccessKey {
    id: String,
    secret: String,
    principal: String,
    session_token: Option<String>,
    expires_at: Option<String>,
}

impl std::fmt::Debug for FileAccessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileAccessKey")
            .field("id", &self.id)
            .field("principal", &self.principal)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// An RFC 3339 UTC time `yyyy-mm-ddThh:mm:ssZ` (how AWS writes a credential's `Expiration`)
/// in epoch milliseconds.
fn rfc3339_utc_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 20
        || b.get(4) != Some(&b'-')
        || b.get(7) != Some(&b'-')
        || b.get(13) != Some(&b':')
        || b.get(16) != Some(&b':')
    {
        return None;
    }
    let basic: String = s.chars().filter(|c| *c != '-' && *c != ':').collect();
    strom_kinesis::sigv4::parse_amz_date(&basic)
}

/// The Kinesis authentication setting from the flag/variable or file and the access keys.
fn kinesis_auth(
    listen: SocketAddr,
    mode: Option<&str>,
    file_keys: &[FileAccessKey],
    arg_key: Option<&str>,
) -> anyhow::Result<strom_kinesis::sigv4::KinesisAuth> {
    use strom_kinesis::sigv4::{AccessKey, KinesisAuth};
    let mut keys: Vec<AccessKey> = file_keys
        .iter()
        .map(|k| {
            let expires_at_ms = match &k.expires_at {
                None => None,
                Some(at) => Some(rfc3339_utc_ms(at).ok_or_else(|| {
                    anyhow::anyhow!(
                        "Kinesis access key {:?}: expires_at {at:?} must be yyyy-mm-ddThh:mm:ssZ",
                        k.id
                    )
                })?),
            };
            Ok(AccessKey {
                id: k.id.clone(),
                secret: k.secret.clone(),
                principal: k.principal.clone(),
                session_token: k.session_token.clone(),
                expires_at_ms,
            })
        })
        .collect::<anyhow::Result<_>>()?;
    if let Some(v) = arg_key {
        let mut parts = v.splitn(3, ':');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(id), Some(secret), Some(principal)) => keys.push(AccessKey {
                id: id.to_owned(),
                secret: secret.to_owned(),
                principal: principal.to_owned(),
                ..AccessKey::default()
            }),
            _ => anyhow::bail!("the Kinesis access key must be ID:SECRET:PRINCIPAL"),
        }
    }
    for k in &keys {
        if k.session_token.as_deref() == Some("") {
            anyhow::bail!(
                "Kinesis access key {:?}: session_token must not be empty",
                k.id
            );
        }
        if k.expires_at_ms.is_some() && k.session_token.is_none() {
            anyhow::bail!(
                "Kinesis access key {:?}: expires_at is for a temporary key, which needs a session_token",
                k.id
            );
        }
        if k.id.is_empty() || k.id.contains('/') || k.secret.is_empty() {
            anyhow::bail!(
                "Kinesis access key {:?}: the id must be non-empty without '/', the secret non-empty",
                k.id
            );
        }
        if !matches!(k.principal.split_once(':'), Some((kind, name)) if !kind.is_empty() && !name.is_empty())
        {
            anyhow::bail!(
                "Kinesis access key {:?}: principal {:?} must be <type>:<name>, e.g. User:alice",
                k.id,
                k.principal
            );
        }
    }
    match mode {
        Some("none") => Ok(KinesisAuth::None),
        Some("sigv4") if keys.is_empty() => {
            anyhow::bail!("kinesis auth = \"sigv4\" needs at least one [[kinesis.access_key]]")
        }
        Some("sigv4") => Ok(KinesisAuth::SigV4(keys)),
        Some(other) => anyhow::bail!("kinesis auth {other:?} must be \"none\" or \"sigv4\""),
        None if !keys.is_empty() => Ok(KinesisAuth::SigV4(keys)),
        None if listen.ip().is_loopback() => Ok(KinesisAuth::None),
        None => anyhow::bail!(
            "the Kinesis listener {listen} is reachable beyond loopback: configure \
             [[kinesis.access_key]] entries (kinesis.auth = \"sigv4\"), or set \
             kinesis.auth = \"none\" to accept any credentials"
        ),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBroker {
    node_id: Option<i32>,
    auto_create_topics: Option<bool>,
    num_partitions: Option<i32>,
    retention_check_interval_ms: Option<u64>,
}

/// The merged settings.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) log: Option<String>,
    /// Cluster mode's settings; `None` runs the single-node broker.
    pub(crate) cluster: Option<strom_cluster::ClusterConfig>,
    /// The node id given by flag, variable or file (cluster mode allocates one otherwise).
    pub(crate) node_id: Option<i32>,
    pub(crate) http_listen: SocketAddr,
    /// The admin port's TLS configuration, when it serves HTTPS.
    pub(crate) http_tls: Option<Arc<strom_tls::TlsServer>>,
    /// Every TLS configuration loaded, reloaded on SIGHUP and when their files change.
    pub(crate) tls: Vec<Arc<strom_tls::TlsServer>>,
    /// How often the TLS files are checked for changes.
    pub(crate) tls_reload_check_interval: Duration,
    broker: BrokerConfig,
    kafka: KafkaConfig,
    /// The OAUTHBEARER JWKS endpoint and its refresh interval, if keys come from one.
    pub(crate) jwks_url: Option<(String, Duration)>,
    kinesis: KinesisConfig,
}

impl Settings {
    pub(crate) fn load(args: &ServeArgs) -> anyhow::Result<Settings> {
        let file = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading config file {}", path.display()))?;
                toml::from_str::<FileConfig>(&text)
                    .with_context(|| format!("parsing config file {}", path.display()))?
            }
            None => FileConfig::default(),
        };
        let data_dir = args
            .data_dir
            .clone()
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("./strom-data"));
        let mut broker = BrokerConfig::new(data_dir);
        if let Some(v) = args.node_id.or(file.broker.node_id) {
            broker.node_id = v;
        }
        if let Some(v) = args.auto_create_topics.or(file.broker.auto_create_topics) {
            broker.auto_create_topics = v;
        }
        if let Some(v) = args.num_partitions.or(file.broker.num_partitions) {
            broker.num_partitions = v;
        }
        if let Some(ms) = file.broker.retention_check_interval_ms {
            broker.retention_check_interval = Duration::from_millis(ms.max(1));
        }
        let g = &mut broker.group;
        let fg = &file.group;
        if let Some(v) = fg.min_session_timeout_ms {
            g.min_session_timeout_ms = v;
        }
        if let Some(v) = fg.max_session_timeout_ms {
            g.max_session_timeout_ms = v;
        }
        if let Some(v) = args
            .group_initial_rebalance_delay_ms
            .or(fg.initial_rebalance_delay_ms)
        {
            g.initial_rebalance_delay_ms = v;
        }
        if let Some(v) = fg.consumer_heartbeat_interval_ms {
            g.consumer.heartbeat_interval_ms = v;
        }
        if let Some(v) = fg.consumer_session_timeout_ms {
            g.consumer.session_timeout_ms = v;
        }
        if let Some(v) = fg.consumer_max_size {
            g.consumer.max_size = v;
        }
        if let Some(v) = fg.offsets_retention_minutes {
            g.offsets_retention_ms = v.saturating_mul(60_000);
        }
        if let Some(v) = fg.offsets_retention_check_interval_ms {
            g.offsets_retention_check_interval_ms = v;
        }
        validate_group(g)?;
        let c = &mut broker.cleaner;
        let fc = &file.log_cleaner;
        if let Some(v) = args.log_cleaner_enable.or(fc.enable) {
            c.enable = v;
        }
        if let Some(v) = args.log_cleaner_threads.or(fc.threads) {
            if v > MAX_CLEANER_THREADS {
                anyhow::bail!("log cleaner threads ({v}) must be at most {MAX_CLEANER_THREADS}");
            }
            c.threads = v;
        }
        if let Some(v) = args
            .log_cleaner_io_max_bytes_per_second
            .or(fc.io_max_bytes_per_second)
        {
            if v == 0 {
                anyhow::bail!("log cleaner io_max_bytes_per_second must be positive");
            }
            c.io_max_bytes_per_second = Some(v);
        }
        if let Some(ms) = args.log_cleaner_backoff_ms.or(fc.backoff_ms) {
            if ms == 0 {
                anyhow::bail!("log cleaner backoff_ms must be positive");
            }
            c.backoff = Duration::from_millis(ms);
        }
        let a = &mut broker.authorizer;
        if let Some(v) = args.authorizer.or(file.security.authorizer) {
            a.enabled = v;
        }
        let super_users = match &args.super_users {
            Some(list) => Some(
                list.split(';')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect::<Vec<_>>(),
            ),
            None => file.security.super_users.clone(),
        };
        if let Some(users) = super_users {
            for u in &users {
                if !matches!(u.split_once(':'), Some((kind, name)) if !kind.is_empty() && !name.is_empty())
                {
                    anyhow::bail!("super user {u:?} must be <type>:<name>, e.g. User:admin");
                }
            }
            a.super_users = users;
        }
        if let Some(v) = args
            .allow_everyone_if_no_acl_found
            .or(file.security.allow_everyone_if_no_acl_found)
        {
            a.allow_everyone_if_no_acl_found = v;
        }
        strom_broker::config::validate(&file.topic_defaults)
            .context("invalid [topic_defaults] in the config file")?;
        broker.topic_defaults = file.topic_defaults;

        let mut kafka = KafkaConfig::default();
        kafka.sasl = sasl_config(args, &file.kafka)?;
        let file_jwks_url = file.kafka.sasl_oauthbearer_jwks_url.clone();
        let jwks_refresh_ms = file
            .kafka
            .sasl_oauthbearer_jwks_refresh_ms
            .unwrap_or(3_600_000);
        if let Some(v) = args.kafka_listen.or(file.kafka.listen) {
            kafka.listen = v;
        }
        kafka.advertised_host = args.advertised_host.clone().or(file.kafka.advertised_host);
        kafka.advertised_port = args.advertised_port.or(file.kafka.advertised_port);
        if let Some(v) = args.max_request_bytes.or(file.kafka.max_request_bytes) {
            kafka.max_request_bytes = v;
        }
        if let Some(v) = file.kafka.queued_max_request_bytes {
            kafka.max_queued_request_bytes = v;
        }
        if let Some(ms) = file.kafka.connections_max_idle_ms {
            kafka.idle_timeout = Duration::from_millis(ms.max(1));
        }
        if let Some(v) = file.kafka.fetch_max_bytes {
            kafka.fetch_max_bytes = v.max(1);
        }
        if let Some(v) = file.kafka.max_connections {
            kafka.max_connections = v;
        }
        if let Some(v) = file.kafka.max_connections_per_ip {
            kafka.max_connections_per_ip = v;
        }
        let explicit_secret_file = file.kinesis.iterator_secret_file.clone();
        let mut kinesis = KinesisConfig {
            iterator_secret_file: Some(
                file.kinesis
                    .iterator_secret_file
                    .clone()
                    .unwrap_or_else(|| broker.data_dir.join(strom_kinesis::iterator::SECRET_FILE)),
            ),
            ..KinesisConfig::default()
        };
        if let Some(v) = args.kinesis_listen.or(file.kinesis.listen) {
            kinesis.listen = v;
        }
        if let Some(v) = file.kinesis.region {
            kinesis.region = v;
        }
        if let Some(v) = args.kinesis_aws_limits.or(file.kinesis.aws_limits) {
            kinesis.aws_limits = v;
        }
        if let Some(v) = file.kinesis.max_in_flight_bytes {
            kinesis.max_in_flight_bytes = v;
        }
        if let Some(v) = file.kinesis.max_connections {
            kinesis.max_connections = v;
        }
        kinesis.auth = kinesis_auth(
            kinesis.listen,
            args.kinesis_auth
                .as_deref()
                .or(file.kinesis.auth.as_deref()),
            &file.kinesis.access_key,
            args.kinesis_access_key.as_deref(),
        )?;
        let mut global_tls = file.tls.clone();
        global_tls.cert = args.tls_cert.clone().or(global_tls.cert);
        global_tls.key = args.tls_key.clone().or(global_tls.key);
        global_tls.client_ca = args.tls_client_ca.clone().or(global_tls.client_ca);
        global_tls.client_auth = args.tls_client_auth.clone().or(global_tls.client_auth);
        global_tls.principal_mapping_rules = args
            .ssl_principal_mapping_rules
            .clone()
            .or(global_tls.principal_mapping_rules);
        let strings = crate::listeners::ListenerStrings {
            listeners: args.listeners.clone().or(file.kafka.listeners.clone()),
            advertised_listeners: args
                .advertised_listeners
                .clone()
                .or(file.kafka.advertised_listeners.clone()),
            protocol_map: args
                .listener_security_protocol_map
                .clone()
                .or(file.kafka.listener_security_protocol_map.clone()),
        };
        let kinesis_tls = args.kinesis_tls.or(file.kinesis.tls).unwrap_or(false);
        let http_tls = args.http_tls.or(file.http.tls).unwrap_or(false);
        let resolved = crate::listeners::resolve(
            &strings,
            file.listener,
            &global_tls,
            kinesis_tls || http_tls,
        )?;
        kafka.listeners = resolved.listeners;
        if kafka.sasl.is_none()
            && let Some(l) = kafka
                .listeners
                .iter()
                .find(|l| l.security_protocol.uses_sasl())
        {
            anyhow::bail!(
                "listener {} is {} but no SASL mechanism is enabled (sasl_enabled_mechanisms)",
                l.name,
                l.security_protocol
            );
        }
        if kinesis_tls {
            kinesis.tls.clone_from(&resolved.http_tls);
        }
        let cluster = cluster_config(args, file.cluster)?;
        if cluster.is_some() && explicit_secret_file.is_none() {
            // Cluster mode: every broker uses the secret kept in PostgreSQL (`strom serve`
            // fetches it), so an iterator from one broker is valid on all of them.
            kinesis.iterator_secret_file = None;
        }
        Ok(Settings {
            http_tls: resolved.http_tls.filter(|_| http_tls),
            tls: resolved.tls,
            tls_reload_check_interval: resolved.reload_check_interval,
            log: args.log.clone().or(file.log),
            cluster,
            node_id: args.node_id.or(file.broker.node_id),
            http_listen: args
                .http_listen
                .or(file.http.listen)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9644))),
            broker,
            jwks_url: args
                .sasl_oauthbearer_jwks_url
                .clone()
                .or_else(|| file_jwks_url.clone())
                .map(|u| (u, Duration::from_millis(jwks_refresh_ms.max(1000)))),
            kafka,
            kinesis,
        })
    }

    pub(crate) fn broker_config(&self) -> BrokerConfig {
        self.broker.clone()
    }

    pub(crate) fn kafka_config(&self) -> KafkaConfig {
        self.kafka.clone()
    }

    pub(crate) fn kinesis_config(&self) -> KinesisConfig {
        self.kinesis.clone()
    }
}

/// The Kafka listener's SASL settings: `None` unless mechanisms are enabled.
fn sasl_config(
    args: &ServeArgs,
    file: &FileKafka,
) -> anyhow::Result<Option<strom_kafka::sasl::SaslConfig>> {
    use strom_kafka::sasl::{Mechanism, OAuthBearerConfig, SaslConfig};
    let names: Vec<String> = match (&args.sasl_enabled_mechanisms, &file.sasl_enabled_mechanisms) {
        (Some(list), _) => list
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect(),
        (None, Some(list)) => list.clone(),
        (None, None) => Vec::new(),
    };
    if names.is_empty() {
        return Ok(None);
    }
    let mut mechanisms = Vec::new();
    for name in &names {
        let m = Mechanism::from_name(name).with_context(|| {
            format!(
                "unknown SASL mechanism {name:?} (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER)"
            )
        })?;
        if !mechanisms.contains(&m) {
            mechanisms.push(m);
        }
    }
    let jwks = args
        .sasl_oauthbearer_jwks_file
        .clone()
        .or_else(|| file.sasl_oauthbearer_jwks_file.clone());
    let url = args
        .sasl_oauthbearer_jwks_url
        .clone()
        .or_else(|| file.sasl_oauthbearer_jwks_url.clone());
    let oauthbearer = match (jwks, url) {
        (Some(_), Some(_)) => {
            anyhow::bail!("give the OAUTHBEARER keys as a JWKS file or a JWKS URL, not both")
        }
        (None, None) => None,
        (file_path, _) => {
            // With a URL the keys are fetched before the listener binds (main.rs).
            let bytes = match &file_path {
                Some(path) => std::fs::read(path)
                    .with_context(|| format!("reading the JWKS file {}", path.display()))?,
                None => br#"{"keys":[]}"#.to_vec(),
            };
            let where_ = file_path
                .as_ref()
                .map_or_else(|| "the JWKS URL".to_owned(), |p| p.display().to_string());
            let mut c = OAuthBearerConfig::from_jwks_json(&bytes)
                .with_context(|| format!("parsing the JWKS file {where_}"))?;
            c.expected_issuer = file.sasl_oauthbearer_expected_issuer.clone();
            c.expected_audience = file.sasl_oauthbearer_expected_audience.clone();
            if let Some(s) = file.sasl_oauthbearer_clock_skew_seconds {
                c.clock_skew = Duration::from_secs(s);
            }
            Some(c)
        }
    };
    if mechanisms.contains(&Mechanism::OAuthBearer) && oauthbearer.is_none() {
        anyhow::bail!(
            "OAUTHBEARER needs sasl_oauthbearer_jwks_file or sasl_oauthbearer_jwks_url (the keys that sign tokens)"
        );
    }
    let reauth_ms = args
        .connections_max_reauth_ms
        .or(file.connections_max_reauth_ms)
        .unwrap_or(0);
    Ok(Some(SaslConfig {
        mechanisms,
        max_reauth: (reauth_ms > 0).then(|| Duration::from_millis(reauth_ms)),
        oauthbearer,
    }))
}

/// Cluster mode's settings from flags and the `[cluster]` table; `None` when neither URL is
/// given, an error when only one is.
fn cluster_config(
    args: &ServeArgs,
    file: FileCluster,
) -> anyhow::Result<Option<strom_cluster::ClusterConfig>> {
    let postgres = args.cluster_postgres.clone().or(file.postgres);
    let object_store = args.cluster_object_store.clone().or(file.object_store);
    let (postgres, object_store) = match (postgres, object_store) {
        (None, None) => return Ok(None),
        (Some(p), Some(o)) => (p, o),
        _ => anyhow::bail!(
            "cluster mode needs both --cluster-postgres and --cluster-object-store (or [cluster] postgres and object_store)"
        ),
    };
    let mut config = strom_cluster::ClusterConfig::new(&postgres, &object_store)
        .context("invalid cluster settings")?;
    config.s3.endpoint = args.cluster_s3_endpoint.clone().or(file.s3_endpoint);
    config.s3.region = args.cluster_s3_region.clone().or(file.s3_region);
    config.s3.allow_http = args.cluster_s3_allow_http.or(file.s3_allow_http);
    if let Some(ms) = args.cluster_lease_ttl_ms.or(file.lease_ttl_ms) {
        config.lease_ttl = Duration::from_millis(ms);
    }
    let lifecycle = &mut config.lifecycle;
    if let Some(ms) = args.cluster_job_interval_ms.or(file.job_interval_ms) {
        lifecycle.job_interval = Some(Duration::from_millis(ms));
    }
    if let Some(ms) = args
        .cluster_object_delete_delay_ms
        .or(file.object_delete_delay_ms)
    {
        lifecycle.delete_delay = Duration::from_millis(ms);
    }
    if let Some(ms) = args.cluster_merge_min_age_ms.or(file.merge_min_age_ms) {
        lifecycle.merge.min_age = Duration::from_millis(ms);
    }
    if let Some(bytes) = args
        .cluster_merge_small_object_bytes
        .or(file.merge_small_object_bytes)
    {
        lifecycle.merge.small_object_bytes = bytes;
    }
    if let Some(bytes) = args.cluster_merge_target_bytes.or(file.merge_target_bytes) {
        lifecycle.merge.target_bytes = bytes;
    }
    if let Some(ms) = args.cluster_orphan_grace_ms.or(file.orphan_grace_ms) {
        config.orphan_grace = Duration::from_millis(ms);
    }
    if let Some(ms) = args.cluster_flush_delay_ms.or(file.flush_delay_ms) {
        config.flush.max_delay = Duration::from_millis(ms);
    }
    if let Some(ms) = args
        .cluster_pg_statement_timeout_ms
        .or(file.pg_statement_timeout_ms)
    {
        config.postgres_timeouts.statement = Duration::from_millis(ms);
    }
    if let Some(ms) = args.cluster_pg_lock_timeout_ms.or(file.pg_lock_timeout_ms) {
        config.postgres_timeouts.lock = Duration::from_millis(ms);
    }
    config.validate().context("invalid [cluster] settings")?;
    // Checked again with the timeouts: the URL's sslmode, sslrootcert, sslcert and sslkey must make sense.
    config
        .postgres_config()
        .context("invalid cluster PostgreSQL settings")?;
    Ok(Some(config))
}

/// Rejects group settings Kafka would refuse to start with.
fn validate_group(g: &strom_broker::group::GroupConfig) -> anyhow::Result<()> {
    let c = &g.consumer;
    if g.min_session_timeout_ms <= 0 || g.min_session_timeout_ms > g.max_session_timeout_ms {
        anyhow::bail!(
            "[group] min_session_timeout_ms ({}) must be positive and at most max_session_timeout_ms ({})",
            g.min_session_timeout_ms,
            g.max_session_timeout_ms
        );
    }
    if g.initial_rebalance_delay_ms < 0 {
        anyhow::bail!("group initial rebalance delay must not be negative");
    }
    if c.heartbeat_interval_ms <= 0 || c.heartbeat_interval_ms >= c.session_timeout_ms {
        anyhow::bail!(
            "[group] consumer_heartbeat_interval_ms ({}) must be positive and below consumer_session_timeout_ms ({})",
            c.heartbeat_interval_ms,
            c.session_timeout_ms
        );
    }
    if c.max_size == 0 {
        anyhow::bail!("[group] consumer_max_size must be at least 1");
    }
    if g.offsets_retention_ms < 60_000 {
        anyhow::bail!("[group] offsets_retention_minutes must be at least 1");
    }
    if g.offsets_retention_check_interval_ms < 1 {
        anyhow::bail!("[group] offsets_retention_check_interval_ms must be positive");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: ServeArgs,
    }

    #[test]
    fn group_settings_from_file_and_flag() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("strom.toml");
        std::fs::write(
            &path,
            "[group]\ninitial_rebalance_delay_ms = 500\nconsumer_heartbeat_interval_ms = 1000\nconsumer_session_timeout_ms = 10000\nmax_session_timeout_ms = 60000\noffsets_retention_minutes = 60\noffsets_retention_check_interval_ms = 5000\n",
        )
        .unwrap();
        let file_only = Wrapper::parse_from(["x", "--config", path.to_str().unwrap()]);
        let g = Settings::load(&file_only.args).unwrap().broker.group;
        assert_eq!(g.initial_rebalance_delay_ms, 500);
        assert_eq!(g.max_session_timeout_ms, 60_000);
        assert_eq!(g.consumer.heartbeat_interval_ms, 1_000);
        assert_eq!(g.consumer.session_timeout_ms, 10_000);
        assert_eq!(g.offsets_retention_ms, 3_600_000);
        assert_eq!(g.offsets_retention_check_interval_ms, 5_000);
        let flag = Wrapper::parse_from([
            "x",
            "--config",
            path.to_str().unwrap(),
            "--group-initial-rebalance-delay-ms",
            "0",
        ]);
        let g = Settings::load(&flag.args).unwrap().broker.group;
        assert_eq!(g.initial_rebalance_delay_ms, 0);
        let defaults = strom_broker::group::GroupConfig::default();
        assert_eq!(
            defaults.offsets_retention_ms,
            10_080 * 60_000,
            "Kafka's 7 days"
        );
        assert_eq!(defaults.offsets_retention_check_interval_ms, 600_000);

        std::fs::write(&path, "[group]\nconsumer_heartbeat_interval_ms = 50000\n").unwrap();
        let bad = Wrapper::parse_from(["x", "--config", path.to_str().unwrap()]);
        let e = Settings::load(&bad.args).unwrap_err().to_string();
        assert!(e.contains("consumer_heartbeat_interval_ms"), "{e}");
        std::fs::write(&path, "[group]\nsession_timeout = 5\n").unwrap();
        let unknown = Wrapper::parse_from(["x", "--config", path.to_str().unwrap()]);
        assert!(Settings::load(&unknown.args).is_err());
    }

    #[test]
    fn sasl_settings() {
        use strom_kafka::sasl::Mechanism;
        let w = Wrapper::parse_from(["x"]);
        assert!(Settings::load(&w.args).unwrap().kafka.sasl.is_none());
        let w = Wrapper::parse_from([
            "x",
            "--sasl-enabled-mechanisms",
            "SCRAM-SHA-512, PLAIN",
            "--connections-max-reauth-ms",
            "60000",
        ]);
        let sasl = Settings::load(&w.args).unwrap().kafka.sasl.unwrap();
        assert_eq!(
            sasl.mechanisms,
            vec![Mechanism::ScramSha512, Mechanism::Plain]
        );
        assert_eq!(sasl.max_reauth, Some(Duration::from_secs(60)));
        let w = Wrapper::parse_from(["x", "--sasl-enabled-mechanisms", "GSSAPI"]);
        let e = format!("{:#}", Settings::load(&w.args).unwrap_err());
        assert!(e.contains("GSSAPI"), "{e}");
        // OAUTHBEARER needs keys: a file or a URL, not both.
        let w = Wrapper::parse_from(["x", "--sasl-enabled-mechanisms", "OAUTHBEARER"]);
        assert!(Settings::load(&w.args).is_err());
        let dir = tempfile::tempdir().unwrap();
        let jwks = dir.path().join("jwks.json");
        std::fs::write(&jwks, r#"{"keys":[]}"#).unwrap();
        let path = dir.path().join("strom.toml");
        std::fs::write(
            &path,
            format!(
                "[kafka]\nsasl_enabled_mechanisms = [\"OAUTHBEARER\"]\nsasl_oauthbearer_jwks_file = {:?}\nsasl_oauthbearer_expected_issuer = \"idp\"\n",
                jwks.to_str().unwrap()
            ),
        )
        .unwrap();
        let w = Wrapper::parse_from(["x", "--config", path.to_str().unwrap()]);
        let s = Settings::load(&w.args).unwrap();
        let oauth = s.kafka.sasl.unwrap().oauthbearer.unwrap();
        assert_eq!(oauth.expected_issuer.as_deref(), Some("idp"));
        assert!(s.jwks_url.is_none());
        let w = Wrapper::parse_from([
            "x",
            "--config",
            path.to_str().unwrap(),
            "--sasl-oauthbearer-jwks-url",
            "http://127.0.0.1:1/jwks",
        ]);
        assert!(Settings::load(&w.args).is_err(), "file and URL together");
    }

    #[test]
    fn sasl_listeners_need_mechanisms_and_mechanisms_need_no_sasl_listener() {
        // Mechanisms alone do not make the default PLAINTEXT listener require SASL.
        let w = Wrapper::parse_from(["x", "--sasl-enabled-mechanisms", "PLAIN"]);
        let kafka = Settings::load(&w.args).unwrap().kafka;
        assert!(kafka.sasl.is_some());
        assert!(kafka.listeners.is_empty());
        // (SASL_SSL is refused the same way once its TLS files load.)
        let w = Wrapper::parse_from(["x", "--listeners", "SASL_PLAINTEXT://127.0.0.1:0"]);
        let e = format!("{:#}", Settings::load(&w.args).unwrap_err());
        assert!(
            e.contains("SASL_PLAINTEXT") && e.contains("SASL mechanism"),
            "{e}"
        );
        let w = Wrapper::parse_from([
            "x",
            "--listeners",
            "INTERNAL://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0",
            "--listener-security-protocol-map",
            "INTERNAL:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT",
            "--sasl-enabled-mechanisms",
            "SCRAM-SHA-256",
        ]);
        let kafka = Settings::load(&w.args).unwrap().kafka;
        let protocols: Vec<_> = kafka
            .listeners
            .iter()
            .map(|l| l.security_protocol)
            .collect();
        assert_eq!(
            protocols,
            vec![
                strom_kafka::SecurityProtocol::Plaintext,
                strom_kafka::SecurityProtocol::SaslPlaintext
            ]
        );
    }

    #[test]
    fn listener_tables_flags_and_tls_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("strom.toml");
        std::fs::write(
            &path,
            "[[listener]]\nname = \"internal\"\nlisten = \"127.0.0.1:9092\"\n\n[[listener]]\nname = \"EXTERNAL\"\nlisten = \"0.0.0.0:9093\"\nadvertised_host = \"kafka.example\"\nsecurity_protocol = \"PLAINTEXT\"\n",
        )
        .unwrap();
        // INTERNAL has no protocol of its own and is not in the default map.
        let w = Wrapper::parse_from(["x", "--config", path.to_str().unwrap()]);
        let e = format!("{:#}", Settings::load(&w.args).unwrap_err());
        assert!(e.contains("INTERNAL") && e.contains("protocol map"), "{e}");
        std::fs::write(
            &path,
            "[kafka]\nlistener_security_protocol_map = \"INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT\"\n[[listener]]\nname = \"internal\"\nlisten = \"127.0.0.1:9092\"\n\n[[listener]]\nname = \"EXTERNAL\"\nlisten = \"0.0.0.0:9093\"\nadvertised_host = \"kafka.example\"\nsecurity_protocol = \"PLAINTEXT\"\n",
        )
        .unwrap();
        let kafka = Settings::load(&w.args).unwrap().kafka;
        let got: Vec<_> = kafka
            .listeners
            .iter()
            .map(|l| {
                (
                    l.name.as_str(),
                    l.security_protocol,
                    l.listen.to_string(),
                    l.advertised_host.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "INTERNAL",
                    strom_kafka::SecurityProtocol::Plaintext,
                    "127.0.0.1:9092".to_owned(),
                    None
                ),
                (
                    "EXTERNAL",
                    strom_kafka::SecurityProtocol::Plaintext,
                    "0.0.0.0:9093".to_owned(),
                    Some("kafka.example")
                ),
            ]
        );

        // Flags replace the tables, with the map naming INTERNAL.
        let w = Wrapper::parse_from([
            "x",
            "--config",
            path.to_str().unwrap(),
            "--listeners",
            "INTERNAL://127.0.0.1:0",
            "--listener-security-protocol-map",
            "INTERNAL:PLAINTEXT",
        ]);
        let kafka = Settings::load(&w.args).unwrap().kafka;
        assert_eq!(kafka.listeners.len(), 1);
        assert_eq!(kafka.listeners[0].name, "INTERNAL");

        // An SSL listener reads its files at load, and says which one is missing.
        let w = Wrapper::parse_from([
            "x",
            "--listeners",
            "SSL://127.0.0.1:0",
            "--tls-cert",
            "/nonexistent/server.pem",
            "--tls-key",
            "/nonexistent/server.key",
        ]);
        let e = format!("{:#}", Settings::load(&w.args).unwrap_err());
        assert!(e.contains("/nonexistent/server.pem"), "{e}");
        let w = Wrapper::parse_from([
            "x",
            "--listeners",
            "SSL://127.0.0.1:0",
            "--tls-cert",
            "/x.pem",
            "--tls-key",
            "/x.key",
            "--tls-client-auth",
            "always",
        ]);
        let e = format!("{:#}", Settings::load(&w.args).unwrap_err());
        assert!(e.contains("client auth"), "{e}");
    }

    #[test]
    fn file_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("strom.toml");
        std::fs::write(
            &path,
            "data_dir = \"/from/file\"\n[kafka]\nlisten = \"127.0.0.1:1234\"\n[broker]\nnum_partitions = 3\n[topic_defaults]\n\"retention.ms\" = \"1000\"\n",
        )
        .unwrap();
        let w = Wrapper::parse_from([
            "x",
            "--config",
            path.to_str().unwrap(),
            "--data-dir",
            "/from/flag",
        ]);
        let s = Settings::load(&w.args).unwrap();
        assert_eq!(s.broker.data_dir, PathBuf::from("/from/flag"));
        assert_eq!(s.broker.num_partitions, 3);
        assert_eq!(s.kafka.listen.port(), 1234);
        assert_eq!(s.broker.topic_defaults.get("retention.ms").unwrap(), "1000");
    }

    #[test]
    fn kinesis_aws_limits_flag_and_file() {
        let w = Wrapper::parse_from(["x"]);
        assert!(!Settings::load(&w.args).unwrap().kinesis.aws_limits);
        let w = Wrapper::parse_from(["x", "--kinesis-aws-limits"]);
        assert!(Settings::load(&w.args).unwrap().kinesis.aws_limits);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("strom.toml");
        std::fs::write(&path, "[kinesis]\naws_limits = true\n").unwrap();
        let w = Wrapper::parse_from(["x", "--config", path.to_str().unwrap()]);
        assert!(Settings::load(&w.args).unwrap().kinesis.aws_limits);
        let w = Wrapper::parse_from([
            "x",
            "--config",
            path.to_str().unwrap(),
            "--kinesis-aws-limits=false",
        ]);
        assert!(!Settings::load(&w.args).unwrap().kinesis.aws_limits);
    }

    #[test]
    fn kinesis_auth_defaults_and_keys() {
        use strom_kinesis::sigv4::KinesisAuth;
        let w = Wrapper::parse_from(["x"]);
        assert_eq!(
            Settings::load(&w.args).unwrap().kinesis.auth,
            KinesisAuth::None
        );
        // Beyond loopback without keys: the setting must be explicit.
        let w = Wrapper::parse_from(["x", "--kinesis-listen", "0.0.0.0:4567"]);
        assert!(Settings::load(&w.args).is_err());
        let w = Wrapper::parse_from([
            "x",
            "--kinesis-listen",
            "0.0.0.0:4567",
            "--kinesis-auth",
            "none",
        ]);
        assert_eq!(
            Settings::load(&w.args).unwrap().kinesis.auth,
            KinesisAuth::None
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("strom.toml");
        std::fs::write(
            &path,
            "[kinesis]\nlisten = \"0.0.0.0:4567\"\n[[kinesis.access_key]]\nid = \"AK1\"\nsecret = \"s1\"\nprincipal = \"User:alice\"\n",
        )
        .unwrap();
        let w = Wrapper::parse_from([
            "x",
            "--config",
            path.to_str().unwrap(),
            "--kinesis-access-key",
            "AK2:s2:User:bob",
        ]);
        let KinesisAuth::SigV4(keys) = Settings::load(&w.args).unwrap().kinesis.auth else {
            panic!("keys configured: sigv4");
        };
        let got: Vec<_> = keys
            .iter()
            .map(|k| (k.id.as_str(), k.secret.as_str(), k.principal.as_str()))
            .collect();
        assert_eq!(
            got,
            [("AK1", "s1", "User:alice"), ("AK2", "s2", "User:bob")]
        );
        for bad in [
            vec!["x", "--kinesis-auth", "sigv4"],
            vec!["x", "--kinesis-auth", "maybe"],
            vec!["x", "--kinesis-access-key", "AK:secret:alice"],
            vec!["x", "--kinesis-access-key", "AK:secret"],
        ] {
            let w = Wrapper::parse_from(bad.clone());
            assert!(Settings::load(&w.args).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn kinesis_temporary_keys_from_file() {
        use strom_kinesis::sigv4::KinesisAuth;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("strom.toml");
        let load = |body: &str| {
            std::fs::write(&path, body).unwrap();
            let w = Wrapper::parse_from(["x", "--config", path.to_str().unwrap()]);
            Settings::load(&w.args).map(|s| s.kinesis.auth)
        };
        let key =
            "[[kinesis.access_key]]\nid = \"ASIA1\"\nsecret = \"s1\"\nprincipal = \"User:alice\"\n";
        let Ok(KinesisAuth::SigV4(keys)) = load(&format!(
            "{key}session_token = \"tok\"\nexpires_at = \"2026-12-06T20:00:00Z\"\n"
        )) else {
            panic!("a temporary key loads");
        };
        assert_eq!(keys[0].session_token.as_deref(), Some("tok"));
        assert_eq!(keys[0].expires_at_ms, Some(1_796_587_200_000));
        let Ok(KinesisAuth::SigV4(keys)) = load(&format!("{key}session_token = \"tok\"\n")) else {
            panic!("a temporary key without expiry loads");
        };
        assert_eq!(keys[0].expires_at_ms, None);
        for bad in [
            format!("{key}session_token = \"tok\"\nexpires_at = \"tomorrow\"\n"),
            format!("{key}session_token = \"tok\"\nexpires_at = \"2026-12-06 20:00:00\"\n"),
            format!("{key}expires_at = \"2026-12-06T20:00:00Z\"\n"),
            format!("{key}session_token = \"\"\n"),
        ] {
            assert!(load(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn listener_limits_from_file() {
        let w = Wrapper::parse_from(["x"]);
        let s = Settings::load(&w.args).unwrap();
        assert_eq!(s.kafka.fetch_max_bytes, 30 * 1024 * 1024);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("strom.toml");
        std::fs::write(
            &path,
            "[kafka]
fetch_max_bytes = 1048576
max_connections = 100
max_connections_per_ip = 10
[kinesis]
max_in_flight_bytes = 33554432
max_connections = 50
",
        )
        .unwrap();
        let w = Wrapper::parse_from(["x", "--config", path.to_str().unwrap()]);
        let s = Settings::load(&w.args).unwrap();
        assert_eq!(
            (
                s.kafka.fetch_max_bytes,
                s.kafka.max_connections,
                s.kafka.max_connections_per_ip
            ),
            (1_048_576, 100, 10)
        );
        assert_eq!(
            (s.kinesis.max_in_flight_bytes, s.kinesis.max_connections),
            (33_554_432, 50)
        );
    }

    #[test]
    fn log_cleaner_settings_from_file_and_flags() {
        let w = Wrapper::parse_from(["x"]);
        let c = Settings::load(&w.args).unwrap().broker.cleaner;
        assert_eq!(c, strom_broker::cleaner::CleanerConfig::default());
        assert!(c.enable && c.threads == 1 && c.io_max_bytes_per_second.is_none());
        assert_eq!(c.backoff, Duration::from_millis(15_000));

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("strom.toml");
        std::fs::write(
            &path,
            "[log_cleaner]\nthreads = 2\nio_max_bytes_per_second = 1048576\nbackoff_ms = 200\n",
        )
        .unwrap();
        let w = Wrapper::parse_from(["x", "--config", path.to_str().unwrap()]);
        let c = Settings::load(&w.args).unwrap().broker.cleaner;
        assert_eq!(
            (c.threads, c.io_max_bytes_per_second, c.backoff),
            (2, Some(1 << 20), Duration::from_millis(200))
        );
        let w = Wrapper::parse_from([
            "x",
            "--config",
            path.to_str().unwrap(),
            "--log-cleaner-threads",
            "3",
            "--log-cleaner-enable",
            "false",
        ]);
        let c = Settings::load(&w.args).unwrap().broker.cleaner;
        assert_eq!((c.threads, c.enable), (3, false));

        for bad in [
            "[log_cleaner]\nthreads = 65\n",
            "[log_cleaner]\nbackoff_ms = 0\n",
            "[log_cleaner]\nio_max_bytes_per_second = 0\n",
            "[log_cleaner]\nthreds = 1\n",
        ] {
            std::fs::write(&path, bad).unwrap();
            let w = Wrapper::parse_from(["x", "--config", path.to_str().unwrap()]);
            assert!(Settings::load(&w.args).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn security_settings_from_file_env_style_flags() {
        let w = Wrapper::parse_from(["x"]);
        let a = Settings::load(&w.args).unwrap().broker.authorizer;
        assert_eq!(a, strom_broker::acl::AuthorizerConfig::default());
        assert!(!a.enabled);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("strom.toml");
        std::fs::write(
            &path,
            "[security]\nauthorizer = true\nsuper_users = [\"User:admin\"]\nallow_everyone_if_no_acl_found = true\n",
        )
        .unwrap();
        let w = Wrapper::parse_from(["x", "--config", path.to_str().unwrap()]);
        let a = Settings::load(&w.args).unwrap().broker.authorizer;
        assert!(a.enabled && a.allow_everyone_if_no_acl_found);
        assert_eq!(a.super_users, vec!["User:admin".to_owned()]);
        let w = Wrapper::parse_from([
            "x",
            "--config",
            path.to_str().unwrap(),
            "--super-users",
            "User:a; User:b",
            "--allow-everyone-if-no-acl-found=false",
        ]);
        let a = Settings::load(&w.args).unwrap().broker.authorizer;
        assert_eq!(
            a.super_users,
            vec!["User:a".to_owned(), "User:b".to_owned()]
        );
        assert!(a.enabled && !a.allow_everyone_if_no_acl_found);
        let w = Wrapper::parse_from(["x", "--super-users", "admin"]);
        assert!(Settings::load(&w.args).is_err());
    }

    #[test]
    fn cluster_settings_from_file_and_flags() {
        let w = Wrapper::parse_from(["x"]);
        assert!(Settings::load(&w.args).unwrap().cluster.is_none());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("strom.toml");
        std::fs::write(
            &path,
            "[cluster]\npostgres = \"postgres://u:p@127.0.0.1:5432/db\"\nobject_store = \"s3://bucket/a/b\"\ns3_region = \"eu-west-1\"\nlease_ttl_ms = 3000\npg_lock_timeout_ms = 2500\n",
        )
        .unwrap();
        let w = Wrapper::parse_from([
            "x",
            "--config",
            path.to_str().unwrap(),
            "--cluster-object-store",
            "s3://other/p",
            "--cluster-s3-endpoint",
            "http://127.0.0.1:9000",
            "--cluster-s3-allow-http",
            "--cluster-pg-statement-timeout-ms",
            "12000",
        ]);
        let s = Settings::load(&w.args).unwrap();
        let c = s.cluster.unwrap();
        assert_eq!(c.postgres_timeouts.statement, Duration::from_secs(12));
        assert_eq!(c.postgres_timeouts.lock, Duration::from_millis(2500));
        assert_eq!(c.object_store.bucket, "other");
        assert_eq!(c.object_store.prefix, "p");
        assert_eq!(c.s3.region.as_deref(), Some("eu-west-1"));
        assert_eq!(c.s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(c.s3.allow_http, Some(true));
        assert_eq!(c.lease_ttl, Duration::from_secs(3));
        assert_eq!(s.node_id, None);
        // One URL without the other is refused.
        let w = Wrapper::parse_from(["x", "--cluster-postgres", "postgres://h/db"]);
        assert!(Settings::load(&w.args).is_err());
        let w = Wrapper::parse_from([
            "x",
            "--cluster-postgres",
            "postgres://h/db",
            "--cluster-object-store",
            "http://not-s3",
        ]);
        assert!(Settings::load(&w.args).is_err());
    }

    #[test]
    fn cluster_lifecycle_settings_from_file_and_flags_and_refused_nonsense() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("strom.toml");
        let urls = "[cluster]\npostgres = \"postgres://u@127.0.0.1:5432/db\"\nobject_store = \"s3://b/p\"\n";
        let load = |extra: &str, flags: &[&str]| {
            std::fs::write(&path, format!("{urls}{extra}")).unwrap();
            let mut argv = vec!["x", "--config", path.to_str().unwrap()];
            argv.extend_from_slice(flags);
            Settings::load(&Wrapper::parse_from(argv).args).map(|s| s.cluster.unwrap())
        };
        let c = load("", &[]).unwrap();
        assert_eq!(c.lifecycle, strom_cluster::LifecycleSettings::default());
        assert_eq!(c.job_interval(), c.lease_ttl / 2);
        assert_eq!(c.orphan_grace, Duration::from_secs(600));

        let c = load(
            "job_interval_ms = 700\nobject_delete_delay_ms = 0\norphan_grace_ms = 120000\n\
             merge_min_age_ms = 5000\nmerge_small_object_bytes = 1000\nmerge_target_bytes = 9000\n",
            &["--cluster-merge-target-bytes", "8000"],
        )
        .unwrap();
        assert_eq!(c.job_interval(), Duration::from_millis(700));
        assert_eq!(c.lifecycle.delete_delay, Duration::ZERO);
        assert_eq!(c.orphan_grace, Duration::from_secs(120));
        assert_eq!(c.lifecycle.merge.min_age, Duration::from_secs(5));
        assert_eq!(c.lifecycle.merge.small_object_bytes, 1000);
        assert_eq!(c.lifecycle.merge.target_bytes, 8000, "the flag wins");

        for (extra, named) in [
            ("job_interval_ms = 0\n", "job_interval_ms"),
            ("orphan_grace_ms = 1000\n", "orphan_grace_ms"),
            ("merge_small_object_bytes = 0\n", "merge_small_object_bytes"),
            ("merge_target_bytes = 10\n", "merge_target_bytes"),
            ("lease_ttl_ms = 10\n", "lease_ttl_ms"),
        ] {
            let err = load(extra, &[]).unwrap_err();
            assert!(format!("{err:#}").contains(named), "{extra}: {err:#}");
        }
        let err = load("merge_size = 1\n", &[]).unwrap_err();
        assert!(format!("{err:#}").contains("merge_size"), "{err:#}");
    }

    #[test]
    fn bad_topic_default_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("strom.toml");
        std::fs::write(&path, "[topic_defaults]\n\"retention.ms\" = \"soon\"\n").unwrap();
        let w = Wrapper::parse_from(["x", "--config", path.to_str().unwrap()]);
        assert!(Settings::load(&w.args).is_err());
    }
}
