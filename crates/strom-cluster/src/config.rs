//! Cluster configuration: where PostgreSQL and the object store are, and the writer's limits.
//!
//! The `strom` binary fills a [`ClusterConfig`] from flags, the TOML file and `STROM_CLUSTER_*`
//! variables; this module parses the two URLs and builds the object-store client. S3 settings
//! start from the standard `AWS_*` variables (`AWS_ENDPOINT_URL`, `AWS_REGION`,
//! `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_ALLOW_HTTP`, … as read
//! by `object_store`'s `AmazonS3Builder::from_env`) and, below them, the AWS profile chain
//! (`AWS_PROFILE`, `~/.aws/credentials`, `~/.aws/config`: [`crate::profile`]); explicit
//! [`S3Settings`] fields override both. The PostgreSQL URL may carry libpq's `sslmode`,
//! `sslrootcert`, `sslcert` and `sslkey` ([`crate::tls`]); every session runs with [`ClusterConfig::postgres_timeouts`].

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::{BackoffConfig, ClientConfigKey, ObjectStore, RetryConfig};

use crate::error::{Error, Result, StoreOp};
use crate::lifecycle::MergeConfig;
use crate::profile::AwsProfile;
use crate::tls::{PgConfig, PgTimeouts};

/// `s3://BUCKET/PREFIX`: the bucket and the key prefix under which Strom writes its objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectStoreUrl {
    /// Bucket name.
    pub bucket: String,
    /// Key prefix without leading or trailing `/`; may be empty.
    pub prefix: String,
}

impl FromStr for ObjectStoreUrl {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let invalid = |reason| Error::InvalidConfig {
            setting: "object_store",
            value: s.to_owned(),
            reason,
        };
        let rest = s
            .strip_prefix("s3://")
            .ok_or_else(|| invalid("expected s3://BUCKET/PREFIX"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(invalid("bucket name is empty"));
        }
        let prefix = prefix.trim_matches('/');
        if prefix.split('/').any(|p| p == "." || p == "..") {
            return Err(invalid("prefix may not contain . or .. segments"));
        }
        Ok(ObjectStoreUrl {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        })
    }
}

impl std::fmt::Display for ObjectStoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.prefix)
    }
}

/// S3 client settings that override the `AWS_*` environment.
#[derive(Debug, Clone, Default)]
pub struct S3Settings {
    /// Endpoint URL of an S3-compatible store (`http://127.0.0.1:9000`); path-style requests.
    pub endpoint: Option<String>,
    /// Region (signing); `us-east-1` when neither this nor `AWS_REGION` is set.
    pub region: Option<String>,
    /// Allow plain `http://` endpoints (local stores).
    pub allow_http: Option<bool>,
    /// Access key id.
    pub access_key_id: Option<String>,
    /// Secret access key.
    pub secret_access_key: Option<String>,
    /// Attempts after the first for one request (object_store's backoff between them).
    pub max_retries: usize,
    /// Give up retrying a request after this long.
    pub retry_timeout: Duration,
    /// Timeout of one HTTP request.
    pub request_timeout: Duration,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
}

impl S3Settings {
    /// Defaults: environment only, 5 retries within 30 s, 30 s per request, 5 s to connect.
    pub fn new() -> Self {
        S3Settings {
            max_retries: 5,
            retry_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            ..S3Settings::default()
        }
    }
}

/// When the writer flushes and how much it may buffer.
///
/// A flush is dispatched when the first of these holds: `max_bytes` are buffered, `max_delay`
/// has passed since its first batch arrived, or no flush is in flight and either no batch
/// arrived for `quiet` (every producer is waiting for an acknowledgement, so waiting longer
/// only adds latency) or its first batch is four `quiet` periods old (a steady stream). Up to `max_in_flight` flushes upload at once while the writer keeps collecting;
/// their commits still run one at a time, in flush order.
#[derive(Debug, Clone, Copy)]
pub struct FlushConfig {
    /// Flush at most this long after the first batch of a flush arrived.
    pub max_delay: Duration,
    /// Flush as soon as this many bytes are buffered.
    pub max_bytes: usize,
    /// Bytes accepted but not yet committed (buffered plus in flight); appends wait beyond it.
    pub max_buffered_bytes: usize,
    /// Bound on each stage of one flush (reserving its object key, the PUT with its retries,
    /// the commit); past it the flush fails with a retriable timeout and the stage's database
    /// connection is reopened. Must exceed the object store's own retry timeout to let its
    /// retries run.
    pub timeout: Duration,
    /// Flushes uploading or committing at once (at least 1); the writer collects the next
    /// flush meanwhile.
    pub max_in_flight: usize,
    /// With no flush in flight, flush once no batch arrived for this long (or at the latest
    /// four times this long after the flush's first batch).
    pub quiet: Duration,
    /// Attempts of one object PUT (at least 1), with exponential backoff between them, on top
    /// of the object-store client's own retries of each request.
    pub put_attempts: u32,
}

impl Default for FlushConfig {
    fn default() -> Self {
        FlushConfig {
            max_delay: Duration::from_millis(250),
            max_bytes: 8 << 20,
            max_buffered_bytes: 64 << 20,
            timeout: Duration::from_secs(60),
            max_in_flight: 4,
            quiet: Duration::from_millis(2),
            put_attempts: 3,
        }
    }
}

/// Everything the cluster backend needs to connect and run.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// PostgreSQL connection URL (`postgres://user:pass@host:port/db`, with `sslmode`,
    /// `sslrootcert`, `sslcert` and `sslkey` as libpq reads them).
    pub postgres: String,
    /// Server-side timeouts of every PostgreSQL session of the broker.
    pub postgres_timeouts: PgTimeouts,
    /// Bucket and prefix of the objects.
    pub object_store: ObjectStoreUrl,
    /// S3 client overrides.
    pub s3: S3Settings,
    /// Writer flush policy.
    pub flush: FlushConfig,
    /// How long a broker registration or a job lease lives without renewal.
    pub lease_ttl: Duration,
    /// How old a `pending` object must be before the orphan collector deletes it; must exceed the
    /// longest flush (PUT plus commit), or a slow flush fails with [`Error::ObjectCollected`].
    pub orphan_grace: Duration,
    /// When the shared metadata event table is compacted into its snapshot.
    pub metadata_compaction: MetadataCompaction,
    /// How often the background jobs run, how long retired objects stay readable, and
    /// which objects are merged.
    pub lifecycle: LifecycleSettings,
}

/// Settings of the background jobs ([`crate::lifecycle`]) that an operator may change:
/// `[cluster]` `job_interval_ms`, `object_delete_delay_ms`, `merge_min_age_ms`,
/// `merge_small_object_bytes` and `merge_target_bytes` (the orphan grace is
/// [`ClusterConfig::orphan_grace`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LifecycleSettings {
    /// Time between two passes of each job; `None`: half the lease TTL.
    pub job_interval: Option<Duration>,
    /// How long an object no index row names any more stays readable before it is deleted
    /// (Kafka's `file.delete.delay.ms`): a fetch that read the index just before a rewrite
    /// or retention still finds the bytes.
    pub delete_delay: Duration,
    /// Which objects are merged and how big a merged object gets.
    pub merge: MergeConfig,
}

impl Default for LifecycleSettings {
    /// Passes every half lease TTL, objects deleted a minute after their last row went,
    /// [`MergeConfig::default`].
    fn default() -> Self {
        LifecycleSettings {
            job_interval: None,
            delete_delay: Duration::from_secs(60),
            merge: MergeConfig::default(),
        }
    }
}

/// The shortest job interval accepted: passes more often only load PostgreSQL.
pub const MIN_JOB_INTERVAL: Duration = Duration::from_millis(100);
/// The shortest lease TTL accepted (heartbeats run every third of it).
pub const MIN_LEASE_TTL: Duration = Duration::from_millis(300);
/// The largest merged object accepted: S3's limit of one PUT (a merge uploads in one PUT).
pub const MAX_MERGE_TARGET_BYTES: u64 = 5 << 30;

/// When the shared metadata event table (`strom_metadata_events`) is folded into its snapshot
/// row, so the table stays bounded by the live state rather than by history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetadataCompaction {
    /// Compact once the events after the snapshot exceed `max(min_events, 2 × live events)`
    /// (the local metadata log's rule).
    pub min_events: usize,
    /// Events the snapshot covers are deleted only once this old, so a broker that stopped
    /// tailing for less than this (a pause, a slow poll) still reads every event it missed.
    pub keep_events_for: Duration,
}

impl Default for MetadataCompaction {
    fn default() -> Self {
        MetadataCompaction {
            min_events: 1000,
            keep_events_for: Duration::from_secs(600),
        }
    }
}

impl ClusterConfig {
    /// Parses the two URLs; every other setting takes its default.
    pub fn new(postgres: &str, object_store: &str) -> Result<Self> {
        PgConfig::parse(postgres, PgTimeouts::default())?;
        Ok(ClusterConfig {
            postgres: postgres.to_owned(),
            postgres_timeouts: PgTimeouts::default(),
            object_store: object_store.parse()?,
            s3: S3Settings::new(),
            flush: FlushConfig::default(),
            lease_ttl: Duration::from_secs(10),
            orphan_grace: Duration::from_secs(600),
            metadata_compaction: MetadataCompaction::default(),
            lifecycle: LifecycleSettings::default(),
        })
    }

    /// Time between two passes of each background job.
    pub fn job_interval(&self) -> Duration {
        self.lifecycle.job_interval.unwrap_or(self.lease_ttl / 2)
    }

    /// Refuses settings that cannot work: a lease TTL under [`MIN_LEASE_TTL`], a job interval
    /// under [`MIN_JOB_INTERVAL`], an orphan grace not longer than a flush may take (its
    /// stage bound, [`FlushConfig::timeout`]: a slower flush would lose its object), merge
    /// sizes of zero, a merge target below the small-object size (no two small objects
    /// would fit) or above [`MAX_MERGE_TARGET_BYTES`].
    pub fn validate(&self) -> Result<()> {
        let invalid = |setting, value: String, reason| {
            Err(Error::InvalidConfig {
                setting,
                value,
                reason,
            })
        };
        let ms = |d: Duration| format!("{} ms", d.as_millis());
        if self.lease_ttl < MIN_LEASE_TTL {
            return invalid(
                "lease_ttl_ms",
                ms(self.lease_ttl),
                "must be at least 300 ms",
            );
        }
        if self.job_interval() < MIN_JOB_INTERVAL {
            return invalid(
                "job_interval_ms",
                ms(self.job_interval()),
                "must be at least 100 ms",
            );
        }
        if self.orphan_grace <= self.flush.timeout {
            return invalid(
                "orphan_grace_ms",
                ms(self.orphan_grace),
                "must exceed the flush timeout (60000 ms by default): a pending object younger than the longest flush is not an orphan",
            );
        }
        let merge = &self.lifecycle.merge;
        if merge.small_object_bytes == 0 {
            return invalid(
                "merge_small_object_bytes",
                merge.small_object_bytes.to_string(),
                "must be positive",
            );
        }
        if merge.target_bytes < merge.small_object_bytes {
            return invalid(
                "merge_target_bytes",
                merge.target_bytes.to_string(),
                "must be at least merge_small_object_bytes",
            );
        }
        if merge.target_bytes > MAX_MERGE_TARGET_BYTES {
            return invalid(
                "merge_target_bytes",
                merge.target_bytes.to_string(),
                "must be at most 5 GiB (one PUT)",
            );
        }
        Ok(())
    }

    /// The parsed PostgreSQL configuration (TLS mode, session timeouts).
    pub fn postgres_config(&self) -> Result<PgConfig> {
        PgConfig::parse(&self.postgres, self.postgres_timeouts)
    }

    /// Builds the S3 client from the AWS profile, the environment, then these settings.
    pub fn build_object_store(&self) -> Result<Arc<dyn ObjectStore>> {
        let s3 = &self.s3;
        let mut builder = AmazonS3Builder::from_env();
        let profile = AwsProfile::from_env()?;
        if let Some(profile) = &profile {
            builder = profile.apply(builder);
        }
        let mut builder = builder.with_bucket_name(self.object_store.bucket.clone());
        if let Some(endpoint) = &s3.endpoint {
            builder = builder.with_endpoint(endpoint.clone());
        }
        if let Some(region) = &s3.region {
            builder = builder.with_region(region.clone());
        }
        if let Some(allow) = s3.allow_http {
            builder = builder.with_allow_http(allow);
        }
        if let Some(key) = &s3.access_key_id {
            builder = builder.with_access_key_id(key.clone());
        }
        if let Some(secret) = &s3.secret_access_key {
            builder = builder.with_secret_access_key(secret.clone());
        }
        // Last: a credential provider overrides every key the builder has, so the profile's
        // credential_process is used only when nothing above set keys.
        if let Some(profile) = &profile {
            profile.check_supported(&builder)?;
            if let Some(provider) = profile.credential_provider(&builder)? {
                builder = builder.with_credentials(Arc::new(provider));
            }
        }
        let store = builder
            .with_retry(RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(50),
                    max_backoff: Duration::from_secs(2),
                    base: 2.0,
                },
                max_retries: s3.max_retries,
                retry_timeout: s3.retry_timeout,
            })
            // Set key by key: `with_client_options` would drop what the environment set
            // (AWS_ALLOW_HTTP and other client keys).
            .with_config(
                AmazonS3ConfigKey::Client(ClientConfigKey::Timeout),
                millis(s3.request_timeout),
            )
            .with_config(
                AmazonS3ConfigKey::Client(ClientConfigKey::ConnectTimeout),
                millis(s3.connect_timeout),
            )
            .build()
            .map_err(Error::store(StoreOp::Build, None))?;
        Ok(Arc::new(store))
    }
}

fn millis(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

/// The URL without its password, for error messages.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bucket_and_prefix() {
        let url: ObjectStoreUrl = "s3://b/a/c/".parse().unwrap();
        assert_eq!(url.bucket, "b");
        assert_eq!(url.prefix, "a/c");
        let url: ObjectStoreUrl = "s3://b".parse().unwrap();
        assert_eq!(url.prefix, "");
        assert!("http://b/x".parse::<ObjectStoreUrl>().is_err());
        assert!("s3:///x".parse::<ObjectStoreUrl>().is_err());
        assert!("s3://b/../x".parse::<ObjectStoreUrl>().is_err());
    }

    #[test]
    fn rejects_bad_postgres_url_without_leaking_password() {
        let err = ClusterConfig::new("postgres://u:secret@h:notaport/db", "s3://b/p").unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
        let config = ClusterConfig::new("postgres://u:pw@127.0.0.1:5432/db", "s3://b/p").unwrap();
        assert_eq!(config.object_store.bucket, "b");
    }

    #[test]
    fn lifecycle_defaults_and_validation() {
        let base = ClusterConfig::new("postgres://u@127.0.0.1:5432/db", "s3://b/p").unwrap();
        base.validate().unwrap();
        assert_eq!(base.job_interval(), base.lease_ttl / 2);
        assert_eq!(base.lifecycle.delete_delay, Duration::from_secs(60));
        assert_eq!(base.lifecycle.merge, MergeConfig::default());

        let mut custom = base.clone();
        custom.lifecycle.job_interval = Some(Duration::from_millis(250));
        custom.lifecycle.delete_delay = Duration::ZERO;
        custom.lifecycle.merge = MergeConfig {
            small_object_bytes: 1,
            target_bytes: 1,
            min_age: Duration::ZERO,
        };
        custom.validate().unwrap();
        assert_eq!(custom.job_interval(), Duration::from_millis(250));

        let refused = |change: &dyn Fn(&mut ClusterConfig), setting: &str| {
            let mut c = base.clone();
            change(&mut c);
            match c.validate() {
                Err(Error::InvalidConfig { setting: s, .. }) => assert_eq!(s, setting),
                other => panic!("{setting}: {other:?}"),
            }
        };
        refused(
            &|c| c.lifecycle.job_interval = Some(Duration::from_millis(99)),
            "job_interval_ms",
        );
        refused(
            &|c| c.lease_ttl = Duration::from_millis(150),
            "lease_ttl_ms",
        );
        refused(&|c| c.orphan_grace = c.flush.timeout, "orphan_grace_ms");
        refused(
            &|c| c.lifecycle.merge.small_object_bytes = 0,
            "merge_small_object_bytes",
        );
        refused(
            &|c| c.lifecycle.merge.target_bytes = c.lifecycle.merge.small_object_bytes - 1,
            "merge_target_bytes",
        );
        refused(
            &|c| c.lifecycle.merge.target_bytes = MAX_MERGE_TARGET_BYTES + 1,
            "merge_target_bytes",
        );
    }
}
