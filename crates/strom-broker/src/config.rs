//! Topic-level configuration with Kafka's names and defaults.
//!
//! A topic stores only its *overrides* (`BTreeMap<String, String>`, persisted in the metadata log);
//! the effective value of a key is the topic override, else the broker-level default (from the
//! server config), else the static default in [`TOPIC_CONFIGS`]. [`TopicSettings`] is the typed,
//! validated result, and [`TopicSettings::log_config`] turns it into the storage engine's
//! [`strom_log::LogConfig`].
//!
//! [`TOPIC_CONFIGS`] holds every topic config Kafka 4.x defines (and the 3.x names 4.0 removed,
//! which older tools still send), each with Kafka's type, validator, default and broker-level
//! synonym. Each entry says whether Strom honours it or accepts it without effect, and why
//! ([`Effect`]); DescribeConfigs shows that reason in the key's documentation. Keys without a
//! typed field in [`TopicSettings`] are validated and stored, and components that act on them
//! read the effective value from the topic's overrides.
//!
//! Durability is a Strom-specific pair of keys (Kafka's own `flush.messages`/`flush.ms` are about
//! page-cache flushing and default to "never", which is not the policy Strom promises):
//!
//! | key | values | default |
//! |---|---|---|
//! | `strom.fsync` | `always` (acknowledge only after `fdatasync`; one commit window across partitions), `interval`, `never` | `always` |
//! | `strom.fsync.interval.ms` | flush period when `strom.fsync=interval` | `1000` |

use std::collections::BTreeMap;
use std::time::Duration;

use strom_log::{CleanupPolicy, FsyncPolicy, LogConfig, TimestampType};

use crate::error::{Error, Result};

/// The value type of a config key, as Kafka's DescribeConfigs reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    /// `true` or `false`.
    Boolean,
    /// Free text from a fixed set of values.
    String,
    /// A 32-bit integer.
    Int,
    /// A 16-bit integer.
    Short,
    /// A 64-bit integer.
    Long,
    /// A floating-point number.
    Double,
    /// A comma-separated list.
    List,
}

/// How a value of a config key is checked (Kafka's validator for the key).
#[derive(Debug, Clone, Copy)]
pub enum Validator {
    /// An integer in `[min, max]`.
    Range {
        /// Smallest accepted value.
        min: i64,
        /// Largest accepted value.
        max: i64,
    },
    /// An integer in `[min, max]`, or exactly `or` (gzip's level: 1–9 or -1).
    RangeOr {
        /// Smallest accepted value.
        min: i64,
        /// Largest accepted value.
        max: i64,
        /// The one value outside the range that is accepted too.
        or: i64,
    },
    /// A number in `[min, max]`.
    Fraction {
        /// Smallest accepted value.
        min: f64,
        /// Largest accepted value.
        max: f64,
    },
    /// `true` or `false`.
    Bool,
    /// One of these words.
    OneOf(&'static [&'static str]),
    /// A non-empty comma-separated list of these words.
    ListOf(&'static [&'static str]),
    /// Kafka's throttled-replica list: empty, `*`, or `partition:broker` pairs.
    ThrottledReplicas,
    /// A Kafka release or metadata version such as `3.0-IV1` or `2.8`.
    KafkaVersion,
    /// Any text (class names, commands).
    Any,
}

/// Whether Strom acts on a config key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// The value changes Strom's behaviour.
    Honoured,
    /// The key is accepted, validated, stored and described, but changes nothing; the reason
    /// says why.
    NoEffect(&'static str),
}

/// Static description of one topic config key.
#[derive(Debug, Clone, Copy)]
pub struct ConfigDef {
    /// Kafka's name of the key.
    pub name: &'static str,
    /// Its value type.
    pub kind: ConfigType,
    /// The static default.
    pub default: &'static str,
    /// How values are checked.
    pub validator: Validator,
    /// The broker-level name of the same setting (Kafka's synonym, e.g. `log.retention.ms`),
    /// if Kafka has one.
    pub broker_synonym: Option<&'static str>,
    /// Whether Strom acts on it.
    pub effect: Effect,
    /// One line of documentation.
    pub doc: &'static str,
}

const LONG_MAX: i64 = i64::MAX;
const INT_MAX: i64 = i32::MAX as i64;
const SINGLE_NODE: &str = "replication and leader election do not exist on a single node";
const NO_TIERED: &str = "Strom has no tiered (remote) storage";
const NO_DOWNCONVERSION: &str =
    "Strom stores and serves record batches v2 only and never converts formats";
const FSYNC_INSTEAD: &str = "Strom's durability is strom.fsync / strom.fsync.interval.ms";

const fn def(
    name: &'static str,
    kind: ConfigType,
    default: &'static str,
    validator: Validator,
    broker_synonym: Option<&'static str>,
    effect: Effect,
    doc: &'static str,
) -> ConfigDef {
    ConfigDef {
        name,
        kind,
        default,
        validator,
        broker_synonym,
        effect,
        doc,
    }
}

const fn range(min: i64, max: i64) -> Validator {
    Validator::Range { min, max }
}

/// Every topic config key Strom understands, sorted by name: all of Kafka's (4.x, plus the
/// older names Kafka 3.x still accepts) and Strom's own `strom.*` keys.
pub const TOPIC_CONFIGS: &[ConfigDef] = &[
    def(
        "cleanup.policy",
        ConfigType::List,
        "delete",
        Validator::ListOf(&["compact", "delete"]),
        Some("log.cleanup.policy"),
        Effect::Honoured,
        "delete (time/size retention) and/or compact (the log cleaner keeps the latest record per key)",
    ),
    def(
        "compression.gzip.level",
        ConfigType::Int,
        "-1",
        Validator::RangeOr {
            min: 1,
            max: 9,
            or: -1,
        },
        Some("compression.gzip.level"),
        Effect::NoEffect(
            "Strom stores batches as the producer compressed them and never recompresses",
        ),
        "gzip level used when the broker recompresses (1-9, or -1 for the codec's default)",
    ),
    def(
        "compression.lz4.level",
        ConfigType::Int,
        "9",
        range(1, 17),
        Some("compression.lz4.level"),
        Effect::NoEffect(
            "Strom stores batches as the producer compressed them and never recompresses",
        ),
        "lz4 level used when the broker recompresses",
    ),
    def(
        "compression.type",
        ConfigType::String,
        "producer",
        Validator::OneOf(&["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"]),
        Some("compression.type"),
        Effect::NoEffect("Strom stores batches as the producer compressed them (as producer does)"),
        "final compression of a topic's batches; Strom keeps the producer's",
    ),
    def(
        "compression.zstd.level",
        ConfigType::Int,
        "3",
        range(-131_072, 22),
        Some("compression.zstd.level"),
        Effect::NoEffect(
            "Strom stores batches as the producer compressed them and never recompresses",
        ),
        "zstd level used when the broker recompresses",
    ),
    def(
        "delete.retention.ms",
        ConfigType::Long,
        "86400000",
        range(0, LONG_MAX),
        Some("log.cleaner.delete.retention.ms"),
        Effect::Honoured,
        "how long tombstones (null values) of a compacted topic stay readable after cleaning",
    ),
    def(
        "file.delete.delay.ms",
        ConfigType::Long,
        "60000",
        range(0, LONG_MAX),
        Some("log.segment.delete.delay.ms"),
        Effect::NoEffect("Strom removes a deleted segment once no reader holds it"),
        "delay before a deleted segment's file is removed",
    ),
    def(
        "flush.messages",
        ConfigType::Long,
        "9223372036854775807",
        range(1, LONG_MAX),
        Some("log.flush.interval.messages"),
        Effect::NoEffect(FSYNC_INSTEAD),
        "fsync after this many messages (Kafka); see strom.fsync",
    ),
    def(
        "flush.ms",
        ConfigType::Long,
        "9223372036854775807",
        range(0, LONG_MAX),
        Some("log.flush.interval.ms"),
        Effect::NoEffect(FSYNC_INSTEAD),
        "fsync at least this often (Kafka); see strom.fsync",
    ),
    def(
        "follower.replication.throttled.replicas",
        ConfigType::List,
        "",
        Validator::ThrottledReplicas,
        Some("follower.replication.throttled.replicas"),
        Effect::NoEffect(SINGLE_NODE),
        "replicas whose replication is throttled on the follower side",
    ),
    def(
        "index.interval.bytes",
        ConfigType::Int,
        "4096",
        range(0, INT_MAX),
        Some("log.index.interval.bytes"),
        Effect::Honoured,
        "bytes of log between two offset-index entries",
    ),
    def(
        "leader.replication.throttled.replicas",
        ConfigType::List,
        "",
        Validator::ThrottledReplicas,
        Some("leader.replication.throttled.replicas"),
        Effect::NoEffect(SINGLE_NODE),
        "replicas whose replication is throttled on the leader side",
    ),
    def(
        "local.retention.bytes",
        ConfigType::Long,
        "-2",
        range(-2, LONG_MAX),
        Some("log.local.retention.bytes"),
        Effect::NoEffect(NO_TIERED),
        "local size limit with tiered storage (-2: retention.bytes)",
    ),
    def(
        "local.retention.ms",
        ConfigType::Long,
        "-2",
        range(-2, LONG_MAX),
        Some("log.local.retention.ms"),
        Effect::NoEffect(NO_TIERED),
        "local age limit with tiered storage (-2: retention.ms)",
    ),
    def(
        "max.compaction.lag.ms",
        ConfigType::Long,
        "9223372036854775807",
        range(1, LONG_MAX),
        Some("log.cleaner.max.compaction.lag.ms"),
        Effect::Honoured,
        "longest a record stays uncompacted in a compacted topic",
    ),
    def(
        "max.message.bytes",
        ConfigType::Int,
        "1048588",
        range(0, INT_MAX),
        Some("message.max.bytes"),
        Effect::Honoured,
        "largest record batch accepted",
    ),
    def(
        "message.downconversion.enable",
        ConfigType::Boolean,
        "true",
        Validator::Bool,
        Some("log.message.downconversion.enable"),
        Effect::NoEffect(NO_DOWNCONVERSION),
        "down-convert batches for old consumers (removed in Kafka 4.0)",
    ),
    def(
        "message.format.version",
        ConfigType::String,
        "3.0-IV1",
        Validator::KafkaVersion,
        Some("log.message.format.version"),
        Effect::NoEffect(NO_DOWNCONVERSION),
        "on-disk message format (deprecated since Kafka 3.0; always v2 in Strom)",
    ),
    def(
        "message.timestamp.after.max.ms",
        ConfigType::Long,
        "3600000",
        range(0, LONG_MAX),
        Some("log.message.timestamp.after.max.ms"),
        Effect::Honoured,
        "with CreateTime, refuse (INVALID_TIMESTAMP) a batch whose timestamp is more than this far ahead of the broker's clock (KIP-937; 1 hour since Kafka 4.0)",
    ),
    def(
        "message.timestamp.before.max.ms",
        ConfigType::Long,
        "9223372036854775807",
        range(0, LONG_MAX),
        Some("log.message.timestamp.before.max.ms"),
        Effect::Honoured,
        "with CreateTime, refuse (INVALID_TIMESTAMP) a batch whose timestamp is more than this far behind the broker's clock (KIP-937)",
    ),
    def(
        "message.timestamp.difference.max.ms",
        ConfigType::Long,
        "9223372036854775807",
        range(0, LONG_MAX),
        Some("log.message.timestamp.difference.max.ms"),
        Effect::NoEffect(
            "replaced by message.timestamp.before/after.max.ms (KIP-937; removed in Kafka 4.0)",
        ),
        "largest difference between CreateTime and the broker's clock (deprecated)",
    ),
    def(
        "message.timestamp.type",
        ConfigType::String,
        "CreateTime",
        Validator::OneOf(&["CreateTime", "LogAppendTime"]),
        Some("log.message.timestamp.type"),
        Effect::Honoured,
        "CreateTime or LogAppendTime",
    ),
    def(
        "min.cleanable.dirty.ratio",
        ConfigType::Double,
        "0.5",
        Validator::Fraction { min: 0.0, max: 1.0 },
        Some("log.cleaner.min.cleanable.ratio"),
        Effect::Honoured,
        "clean a compacted log once this share of it is dirty",
    ),
    def(
        "min.compaction.lag.ms",
        ConfigType::Long,
        "0",
        range(0, LONG_MAX),
        Some("log.cleaner.min.compaction.lag.ms"),
        Effect::Honoured,
        "shortest time a record stays uncompacted",
    ),
    def(
        "min.insync.replicas",
        ConfigType::Int,
        "1",
        range(1, INT_MAX),
        Some("min.insync.replicas"),
        Effect::Honoured,
        "acks=all produce fails with NOT_ENOUGH_REPLICAS above the in-sync count (1 on a single node)",
    ),
    def(
        "preallocate",
        ConfigType::Boolean,
        "false",
        Validator::Bool,
        Some("log.preallocate"),
        Effect::Honoured,
        "preallocate segment files",
    ),
    def(
        "producer.id.expiration.ms",
        ConfigType::Long,
        "86400000",
        range(1, LONG_MAX),
        Some("producer.id.expiration.ms"),
        Effect::Honoured,
        "forget an idempotent producer's sequence state this long after its last batch (a broker config in Kafka; here also per topic)",
    ),
    def(
        "remote.log.copy.disable",
        ConfigType::Boolean,
        "false",
        Validator::Bool,
        None,
        Effect::NoEffect(NO_TIERED),
        "stop copying segments to remote storage (KIP-950)",
    ),
    def(
        "remote.log.delete.on.disable",
        ConfigType::Boolean,
        "false",
        Validator::Bool,
        None,
        Effect::NoEffect(NO_TIERED),
        "delete remote segments when tiered storage is turned off (KIP-950)",
    ),
    def(
        "remote.storage.enable",
        ConfigType::Boolean,
        "false",
        Validator::Bool,
        None,
        Effect::NoEffect(NO_TIERED),
        "tiered storage for this topic",
    ),
    def(
        "retention.bytes",
        ConfigType::Long,
        "-1",
        range(-1, LONG_MAX),
        Some("log.retention.bytes"),
        Effect::Honoured,
        "per-partition size limit, -1 for none",
    ),
    def(
        "retention.ms",
        ConfigType::Long,
        "604800000",
        range(-1, LONG_MAX),
        Some("log.retention.ms"),
        Effect::Honoured,
        "age limit, -1 for none",
    ),
    def(
        "segment.bytes",
        ConfigType::Int,
        "1073741824",
        range(1024, INT_MAX),
        Some("log.segment.bytes"),
        Effect::Honoured,
        "segment size before rolling (at least 1024 in Strom)",
    ),
    def(
        "segment.index.bytes",
        ConfigType::Int,
        "10485760",
        range(4, INT_MAX),
        Some("log.index.size.max.bytes"),
        Effect::NoEffect(
            "Strom's offset and time indexes grow as needed; a segment rolls on segment.bytes/segment.ms",
        ),
        "largest offset index of a segment",
    ),
    def(
        "segment.jitter.ms",
        ConfigType::Long,
        "0",
        range(0, LONG_MAX),
        Some("log.roll.jitter.ms"),
        Effect::NoEffect("segments roll exactly at segment.ms; Strom has no roll storms to spread"),
        "random jitter subtracted from segment.ms",
    ),
    def(
        "segment.ms",
        ConfigType::Long,
        "604800000",
        range(1, LONG_MAX),
        Some("log.roll.ms"),
        Effect::Honoured,
        "segment age before rolling",
    ),
    def(
        "strom.fsync",
        ConfigType::String,
        "always",
        Validator::OneOf(&["always", "interval", "never"]),
        None,
        Effect::Honoured,
        "always (ack after fdatasync, group commit), interval or never",
    ),
    def(
        "strom.fsync.interval.ms",
        ConfigType::Long,
        "1000",
        range(1, INT_MAX),
        None,
        Effect::Honoured,
        "flush period when strom.fsync=interval",
    ),
    def(
        "unclean.leader.election.enable",
        ConfigType::Boolean,
        "false",
        Validator::Bool,
        Some("unclean.leader.election.enable"),
        Effect::NoEffect(SINGLE_NODE),
        "elect an out-of-sync replica as leader as a last resort",
    ),
];

/// Looks a key up in [`TOPIC_CONFIGS`].
pub fn config_def(name: &str) -> Option<&'static ConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.name == name)
}

impl Validator {
    /// Checks `value` for `key`.
    pub fn check(&self, key: &str, value: &str) -> Result<()> {
        let v = value.trim();
        match *self {
            Validator::Range { min, max } => {
                parse_i64(key, value, min, max)?;
            }
            Validator::RangeOr { min, max, or } => {
                let n: i64 = v
                    .parse()
                    .map_err(|_| invalid(key, value, "expected an integer"))?;
                if n != or && !(min..=max).contains(&n) {
                    return Err(invalid(
                        key,
                        value,
                        format!("expected a value in [{min}, {max}] or {or}"),
                    ));
                }
            }
            Validator::Fraction { min, max } => {
                let n: f64 = v
                    .parse()
                    .map_err(|_| invalid(key, value, "expected a number"))?;
                if !(min..=max).contains(&n) {
                    return Err(invalid(
                        key,
                        value,
                        format!("expected a value in [{min}, {max}]"),
                    ));
                }
            }
            Validator::Bool => {
                // Kafka's ConfigDef parses booleans case-insensitively.
                if !v.eq_ignore_ascii_case("true") && !v.eq_ignore_ascii_case("false") {
                    return Err(invalid(key, value, "expected true or false"));
                }
            }
            Validator::OneOf(allowed) => {
                one_of(key, value, allowed)?;
            }
            Validator::ListOf(allowed) => {
                let mut any = false;
                for part in v.split(',') {
                    one_of(key, part, allowed)?;
                    any = true;
                }
                if !any {
                    return Err(invalid(key, value, "expected a non-empty list"));
                }
            }
            Validator::ThrottledReplicas => {
                if !(v.is_empty() || v == "*" || v.split(',').all(is_replica_pair)) {
                    return Err(invalid(
                        key,
                        value,
                        "expected *, or a list of partition:broker pairs",
                    ));
                }
            }
            Validator::Any => {}
            Validator::KafkaVersion => {
                if !is_kafka_version(v) {
                    return Err(invalid(
                        key,
                        value,
                        "expected a Kafka version such as 3.0-IV1",
                    ));
                }
            }
        }
        Ok(())
    }
}

fn is_replica_pair(s: &str) -> bool {
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    s.trim()
        .split_once(':')
        .is_some_and(|(p, b)| digits(p.trim()) && digits(b.trim()))
}

/// `0.10.2`, `2.8`, `3.0-IV1`, `3.9-IV0`…: dot-separated numbers, optionally `-IV<n>`.
fn is_kafka_version(s: &str) -> bool {
    let (release, iv) = match s.split_once("-IV") {
        Some((r, n)) => (r, Some(n)),
        None => (s, None),
    };
    let numbers = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    let parts: Vec<&str> = release.split('.').collect();
    (2..=4).contains(&parts.len()) && parts.iter().all(|p| numbers(p)) && iv.is_none_or(numbers)
}

/// Where an effective value came from (Kafka's `ConfigSource`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    /// Set on the topic (`DYNAMIC_TOPIC_CONFIG`).
    Topic,
    /// Set at runtime on this broker's resource (`DYNAMIC_BROKER_CONFIG`).
    DynamicBrokerNode,
    /// Set at runtime on the broker resource as the default for all topics
    /// (`DYNAMIC_DEFAULT_BROKER_CONFIG`).
    DynamicBroker,
    /// Set in the broker's server config as the default for all topics
    /// (`STATIC_BROKER_CONFIG`).
    Broker,
    /// Strom's built-in default, which is Kafka's (`DEFAULT_CONFIG`).
    Default,
    /// Set on a consumer group (`GROUP_CONFIG`, KIP-848).
    Group,
}

/// One layer that contributes to an effective value, in DescribeConfigs' synonym order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigSynonym {
    /// The key's name at that layer (`retention.ms` on a topic, `log.retention.ms` on the
    /// broker).
    pub name: String,
    /// The value set at that layer.
    pub value: String,
    /// The layer.
    pub source: ConfigSource,
}

/// One effective config value of a topic.
#[derive(Debug, Clone)]
pub struct ConfigEntry {
    /// The key's definition.
    pub def: &'static ConfigDef,
    /// The effective value.
    pub value: String,
    /// Where it came from.
    pub source: ConfigSource,
    /// Every layer that sets the key, highest precedence first (the first is the effective
    /// value).
    pub synonyms: Vec<ConfigSynonym>,
}

/// Typed, validated effective configuration of a topic.
#[derive(Debug, Clone)]
pub struct TopicSettings {
    /// `cleanup.policy` contains `delete`.
    pub cleanup_delete: bool,
    /// `cleanup.policy` contains `compact`.
    pub cleanup_compact: bool,
    /// `compression.type`.
    pub compression_type: String,
    /// `delete.retention.ms`: how long a tombstone (and a transaction marker) stays readable
    /// after the cleaner first reaches it.
    pub delete_retention_ms: i64,
    /// `max.compaction.lag.ms`: a dirty record older than this makes its partition cleanable
    /// whatever its dirty ratio.
    pub max_compaction_lag_ms: i64,
    /// `min.cleanable.dirty.ratio`: the share of dirty bytes above which a partition is
    /// cleaned.
    pub min_cleanable_dirty_ratio: f64,
    /// `min.compaction.lag.ms`: records younger than this are never compacted.
    pub min_compaction_lag_ms: i64,
    /// `index.interval.bytes`.
    pub index_interval_bytes: u32,
    /// `max.message.bytes`.
    pub max_message_bytes: usize,
    /// `message.timestamp.type`.
    pub timestamp_type: TimestampType,
    /// `message.timestamp.after.max.ms`.
    pub timestamp_after_max_ms: i64,
    /// `message.timestamp.before.max.ms`.
    pub timestamp_before_max_ms: i64,
    /// `min.insync.replicas`.
    pub min_insync_replicas: i32,
    /// `preallocate`.
    pub preallocate: bool,
    /// `producer.id.expiration.ms`.
    pub producer_id_expiration_ms: i64,
    /// `retention.bytes` (None = unlimited).
    pub retention_bytes: Option<u64>,
    /// `retention.ms` (None = unlimited).
    pub retention_ms: Option<i64>,
    /// `segment.bytes`.
    pub segment_bytes: u64,
    /// `segment.ms`.
    pub segment_ms: i64,
    /// `strom.fsync`.
    pub fsync_mode: FsyncMode,
    /// `strom.fsync.interval.ms`.
    pub fsync_interval: Duration,
}

/// The `strom.fsync` policy names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncMode {
    /// Acknowledge only after `fdatasync` (group commit).
    Always,
    /// Flush every `strom.fsync.interval.ms`.
    Interval,
    /// Leave flushing to the operating system.
    Never,
}

/// An [`Error::InvalidConfig`] for `key=value`.
/// A list config's value after an incremental APPEND (`append`) or SUBTRACT of the
/// comma-separated `items` on `base`: an appended item not yet in the list goes to its end, a
/// subtracted one is removed; empty items are ignored.
pub(crate) fn apply_list_op(base: &str, items: &str, append: bool) -> String {
    let mut list: Vec<&str> = base
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    for item in items.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if append {
            if !list.contains(&item) {
                list.push(item);
            }
        } else {
            list.retain(|i| *i != item);
        }
    }
    list.join(",")
}

pub(crate) fn invalid_config(key: &str, value: &str, reason: impl Into<String>) -> Error {
    invalid(key, value, reason)
}

fn invalid(key: &str, value: &str, reason: impl Into<String>) -> Error {
    Error::InvalidConfig {
        key: key.to_owned(),
        value: value.to_owned(),
        reason: reason.into(),
    }
}

fn parse_i64(key: &str, value: &str, min: i64, max: i64) -> Result<i64> {
    let v: i64 = value
        .trim()
        .parse()
        .map_err(|_| invalid(key, value, "expected an integer"))?;
    if v < min || v > max {
        return Err(invalid(
            key,
            value,
            format!("expected a value in [{min}, {max}]"),
        ));
    }
    Ok(v)
}

fn one_of<'a>(key: &str, value: &'a str, allowed: &[&str]) -> Result<&'a str> {
    let v = value.trim();
    if allowed.contains(&v) {
        Ok(v)
    } else {
        Err(invalid(
            key,
            value,
            format!("expected one of {}", allowed.join(", ")),
        ))
    }
}

/// A `double` config in `[0, 1]` (Kafka's `Range.between(0, 1)`).
fn parse_ratio(key: &str, value: &str) -> Result<f64> {
    let v: f64 = value
        .trim()
        .parse()
        .map_err(|_| invalid(key, value, "expected a number"))?;
    if !(0.0..=1.0).contains(&v) {
        return Err(invalid(key, value, "expected a value in [0, 1]"));
    }
    Ok(v)
}

/// Checks one key/value pair: the key must be known and the value must parse and be in range.
pub fn validate_entry(key: &str, value: &str) -> Result<()> {
    let mut settings = TopicSettings::static_defaults();
    settings.apply(key, value)
}

/// Checks that every key is known and every value valid.
pub fn validate(overrides: &BTreeMap<String, String>) -> Result<()> {
    for (k, v) in overrides {
        validate_entry(k, v)?;
    }
    Ok(())
}

impl TopicSettings {
    fn static_defaults() -> TopicSettings {
        let mut s = TopicSettings {
            cleanup_delete: true,
            cleanup_compact: false,
            compression_type: "producer".to_owned(),
            delete_retention_ms: 86_400_000,
            max_compaction_lag_ms: i64::MAX,
            min_cleanable_dirty_ratio: 0.5,
            min_compaction_lag_ms: 0,
            index_interval_bytes: 4096,
            max_message_bytes: 1_048_588,
            timestamp_type: TimestampType::CreateTime,
            timestamp_after_max_ms: strom_log::DEFAULT_TIMESTAMP_AFTER_MAX_MS,
            timestamp_before_max_ms: i64::MAX,
            min_insync_replicas: 1,
            preallocate: false,
            producer_id_expiration_ms: strom_log::DEFAULT_PRODUCER_ID_EXPIRATION_MS,
            retention_bytes: None,
            retention_ms: Some(604_800_000),
            segment_bytes: 1 << 30,
            segment_ms: 604_800_000,
            fsync_mode: FsyncMode::Always,
            fsync_interval: Duration::from_millis(1000),
        };
        // The table is the source of truth for defaults; applying it keeps both in step.
        for def in TOPIC_CONFIGS {
            // Static defaults are valid by construction (checked by a unit test).
            let _ = s.apply(def.name, def.default);
        }
        s
    }

    /// Resolves the effective settings from broker-level defaults and topic overrides.
    pub fn resolve(
        broker_defaults: &BTreeMap<String, String>,
        overrides: &BTreeMap<String, String>,
    ) -> Result<TopicSettings> {
        let mut s = TopicSettings::static_defaults();
        for (k, v) in broker_defaults {
            s.apply(k, v)?;
        }
        for (k, v) in overrides {
            s.apply(k, v)?;
        }
        // Kafka refuses this pair (LogConfig.validateValues) whatever the cleanup policy.
        if s.min_compaction_lag_ms > s.max_compaction_lag_ms {
            let value = overrides
                .get("min.compaction.lag.ms")
                .or_else(|| broker_defaults.get("min.compaction.lag.ms"))
                .cloned()
                .unwrap_or_else(|| s.min_compaction_lag_ms.to_string());
            return Err(invalid(
                "min.compaction.lag.ms",
                &value,
                "min.compaction.lag.ms must not be above max.compaction.lag.ms",
            ));
        }
        Ok(s)
    }

    /// The `cleanup.policy` as the storage engine takes it.
    pub fn cleanup_policy(&self) -> CleanupPolicy {
        CleanupPolicy {
            delete: self.cleanup_delete,
            compact: self.cleanup_compact,
        }
    }

    /// The storage engine's fsync policy for these settings.
    pub fn fsync(&self) -> FsyncPolicy {
        match self.fsync_mode {
            FsyncMode::Always => FsyncPolicy::Always,
            FsyncMode::Interval => FsyncPolicy::Interval(self.fsync_interval),
            FsyncMode::Never => FsyncPolicy::Never,
        }
    }

    fn apply(&mut self, key: &str, value: &str) -> Result<()> {
        let Some(def) = config_def(key) else {
            return Err(invalid(key, value, "unknown topic config"));
        };
        def.validator.check(key, value)?;
        match key {
            "cleanup.policy" => {
                let mut delete = false;
                let mut compact = false;
                for part in value.split(',') {
                    match one_of(key, part, &["delete", "compact"])? {
                        "delete" => delete = true,
                        _ => compact = true,
                    }
                }
                self.cleanup_delete = delete;
                self.cleanup_compact = compact;
            }
            "compression.type" => {
                self.compression_type = one_of(
                    key,
                    value,
                    &["producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"],
                )?
                .to_owned();
            }
            "delete.retention.ms" => {
                self.delete_retention_ms = parse_i64(key, value, 0, i64::MAX)?;
            }
            "max.compaction.lag.ms" => {
                self.max_compaction_lag_ms = parse_i64(key, value, 1, i64::MAX)?;
            }
            "min.cleanable.dirty.ratio" => {
                self.min_cleanable_dirty_ratio = parse_ratio(key, value)?;
            }
            "min.compaction.lag.ms" => {
                self.min_compaction_lag_ms = parse_i64(key, value, 0, i64::MAX)?;
            }
            "index.interval.bytes" => {
                self.index_interval_bytes = parse_i64(key, value, 0, i64::from(i32::MAX))? as u32;
            }
            "max.message.bytes" => {
                self.max_message_bytes = parse_i64(key, value, 0, i64::from(i32::MAX))? as usize;
            }
            "message.timestamp.after.max.ms" => {
                self.timestamp_after_max_ms = parse_i64(key, value, 0, i64::MAX)?;
            }
            "message.timestamp.before.max.ms" => {
                self.timestamp_before_max_ms = parse_i64(key, value, 0, i64::MAX)?;
            }
            "message.timestamp.type" => {
                self.timestamp_type = match one_of(key, value, &["CreateTime", "LogAppendTime"])? {
                    "CreateTime" => TimestampType::CreateTime,
                    _ => TimestampType::LogAppendTime,
                };
            }
            "min.insync.replicas" => {
                self.min_insync_replicas = parse_i64(key, value, 1, i64::from(i32::MAX))? as i32;
            }
            "preallocate" => {
                self.preallocate = value.trim().eq_ignore_ascii_case("true");
            }
            "producer.id.expiration.ms" => {
                self.producer_id_expiration_ms = parse_i64(key, value, 1, i64::MAX)?;
            }
            "retention.bytes" => {
                let v = parse_i64(key, value, -1, i64::MAX)?;
                self.retention_bytes = (v >= 0).then_some(v as u64);
            }
            "retention.ms" => {
                let v = parse_i64(key, value, -1, i64::MAX)?;
                self.retention_ms = (v >= 0).then_some(v);
            }
            "segment.bytes" => {
                self.segment_bytes = parse_i64(key, value, 1024, i64::from(i32::MAX))? as u64;
            }
            "segment.ms" => {
                self.segment_ms = parse_i64(key, value, 1, i64::MAX)?;
            }
            "strom.fsync" => {
                self.fsync_mode = match one_of(key, value, &["always", "interval", "never"])? {
                    "always" => FsyncMode::Always,
                    "interval" => FsyncMode::Interval,
                    _ => FsyncMode::Never,
                };
            }
            "strom.fsync.interval.ms" => {
                let ms = parse_i64(key, value, 1, i64::from(i32::MAX))? as u64;
                self.fsync_interval = Duration::from_millis(ms);
            }
            // Accepted without effect (see the table), or honoured by a component that reads
            // the overrides itself.
            _ => {}
        }
        Ok(())
    }

    /// The storage engine configuration for a partition of this topic.
    pub fn log_config(&self) -> LogConfig {
        LogConfig {
            segment_bytes: self.segment_bytes,
            segment_ms: Some(self.segment_ms),
            retention_ms: if self.cleanup_delete {
                self.retention_ms
            } else {
                None
            },
            retention_bytes: if self.cleanup_delete {
                self.retention_bytes
            } else {
                None
            },
            max_message_bytes: self.max_message_bytes,
            index_interval_bytes: self.index_interval_bytes,
            timestamp_type: self.timestamp_type,
            fsync: self.fsync(),
            preallocate: self.preallocate,
            producer_id_expiration_ms: self.producer_id_expiration_ms,
            cleanup: self.cleanup_policy(),
            delete_retention_ms: self.delete_retention_ms,
            min_compaction_lag_ms: self.min_compaction_lag_ms,
            max_compaction_lag_ms: self.max_compaction_lag_ms,
            min_cleanable_dirty_ratio: self.min_cleanable_dirty_ratio,
            timestamp_before_max_ms: self.timestamp_before_max_ms,
            timestamp_after_max_ms: self.timestamp_after_max_ms,
        }
    }
}

/// The effective value and source of every key for a topic, with only static broker
/// defaults.
pub fn describe(
    broker_defaults: &BTreeMap<String, String>,
    overrides: &BTreeMap<String, String>,
) -> Vec<ConfigEntry> {
    describe_layers(broker_defaults, &BTreeMap::new(), overrides)
}

/// The effective value, source and synonyms of every key for a topic: topic overrides over
/// dynamic broker defaults over static broker defaults over the built-in default. Broker
/// layers are keyed by topic-config name (`retention.ms`) and reported under the broker's name
/// for the setting (`log.retention.ms`), as Kafka does.
pub fn describe_layers(
    static_defaults: &BTreeMap<String, String>,
    dynamic_defaults: &BTreeMap<String, String>,
    overrides: &BTreeMap<String, String>,
) -> Vec<ConfigEntry> {
    TOPIC_CONFIGS
        .iter()
        .map(|def| {
            let broker_name = def.broker_synonym.unwrap_or(def.name);
            let mut synonyms = Vec::with_capacity(2);
            let layers = [
                (overrides, def.name, ConfigSource::Topic),
                (dynamic_defaults, broker_name, ConfigSource::DynamicBroker),
                (static_defaults, broker_name, ConfigSource::Broker),
            ];
            for (map, name, source) in layers {
                if let Some(v) = map.get(def.name) {
                    synonyms.push(ConfigSynonym {
                        name: name.to_owned(),
                        value: v.clone(),
                        source,
                    });
                }
            }
            synonyms.push(ConfigSynonym {
                name: broker_name.to_owned(),
                value: def.default.to_owned(),
                source: ConfigSource::Default,
            });
            let (value, source) = synonyms
                .first()
                .map_or((def.default.to_owned(), ConfigSource::Default), |s| {
                    (s.value.clone(), s.source)
                });
            ConfigEntry {
                def,
                value,
                source,
                synonyms,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn static_defaults_are_valid() {
        for def in TOPIC_CONFIGS {
            validate_entry(def.name, def.default).unwrap();
        }
    }

    #[test]
    fn resolves_overrides_and_fsync_interval() {
        let s = TopicSettings::resolve(
            &map(&[("retention.ms", "-1")]),
            &map(&[
                ("strom.fsync", "interval"),
                ("strom.fsync.interval.ms", "250"),
            ]),
        )
        .unwrap();
        assert_eq!(s.retention_ms, None);
        assert!(matches!(s.fsync(), FsyncPolicy::Interval(d) if d == Duration::from_millis(250)));
        let s =
            TopicSettings::resolve(&BTreeMap::new(), &map(&[("strom.fsync", "interval")])).unwrap();
        assert!(matches!(s.fsync(), FsyncPolicy::Interval(d) if d == Duration::from_millis(1000)));
    }

    #[test]
    fn rejects_unknown_and_bad_values() {
        assert!(matches!(
            validate_entry("no.such.key", "1"),
            Err(Error::InvalidConfig { .. })
        ));
        assert!(validate_entry("retention.ms", "abc").is_err());
        assert!(validate_entry("retention.ms", "-2").is_err());
        assert!(validate_entry("cleanup.policy", "compact,delete").is_ok());
        assert!(validate_entry("cleanup.policy", "shred").is_err());
        assert!(validate_entry("message.timestamp.type", "LogAppendTime").is_ok());
        assert!(validate_entry("segment.bytes", "10").is_err());
    }

    #[test]
    fn table_is_sorted_unique_and_every_default_matches_its_type() {
        for pair in TOPIC_CONFIGS.windows(2) {
            assert!(
                pair[0].name < pair[1].name,
                "{} / {}",
                pair[0].name,
                pair[1].name
            );
        }
        for def in TOPIC_CONFIGS {
            def.validator.check(def.name, def.default).unwrap();
            let typed = match def.kind {
                ConfigType::Int | ConfigType::Short => def.default.parse::<i32>().is_ok(),
                ConfigType::Long => def.default.parse::<i64>().is_ok(),
                ConfigType::Double => def.default.parse::<f64>().is_ok(),
                ConfigType::Boolean => matches!(def.default, "true" | "false"),
                ConfigType::String | ConfigType::List => true,
            };
            assert!(
                typed,
                "{} default {:?} is not a {:?}",
                def.name, def.default, def.kind
            );
        }
    }

    #[test]
    fn every_kafka_topic_config_is_accepted_at_its_default() {
        // Kafka 4.x LogConfig's topic configs, plus the 3.x names removed in 4.0.
        let kafka = [
            ("cleanup.policy", "delete"),
            ("compression.gzip.level", "-1"),
            ("compression.lz4.level", "9"),
            ("compression.type", "producer"),
            ("compression.zstd.level", "3"),
            ("delete.retention.ms", "86400000"),
            ("file.delete.delay.ms", "60000"),
            ("flush.messages", "9223372036854775807"),
            ("flush.ms", "9223372036854775807"),
            ("follower.replication.throttled.replicas", ""),
            ("index.interval.bytes", "4096"),
            ("leader.replication.throttled.replicas", ""),
            ("local.retention.bytes", "-2"),
            ("local.retention.ms", "-2"),
            ("max.compaction.lag.ms", "9223372036854775807"),
            ("max.message.bytes", "1048588"),
            ("message.downconversion.enable", "true"),
            ("message.format.version", "3.0-IV1"),
            ("message.timestamp.after.max.ms", "3600000"),
            ("message.timestamp.before.max.ms", "9223372036854775807"),
            ("message.timestamp.difference.max.ms", "9223372036854775807"),
            ("message.timestamp.type", "CreateTime"),
            ("min.cleanable.dirty.ratio", "0.5"),
            ("min.compaction.lag.ms", "0"),
            ("min.insync.replicas", "1"),
            ("preallocate", "false"),
            ("remote.log.copy.disable", "false"),
            ("remote.log.delete.on.disable", "false"),
            ("remote.storage.enable", "false"),
            ("retention.bytes", "-1"),
            ("retention.ms", "604800000"),
            ("segment.bytes", "1073741824"),
            ("segment.index.bytes", "10485760"),
            ("segment.jitter.ms", "0"),
            ("segment.ms", "604800000"),
            ("unclean.leader.election.enable", "false"),
        ];
        for (name, default) in kafka {
            let def = config_def(name).unwrap_or_else(|| panic!("{name} missing"));
            assert_eq!(def.default, default, "{name}");
            validate_entry(name, default).unwrap();
        }
    }

    #[test]
    fn validators_refuse_what_kafka_refuses() {
        for (key, bad) in [
            ("compression.gzip.level", "0"),
            ("compression.gzip.level", "10"),
            ("compression.lz4.level", "18"),
            ("compression.zstd.level", "23"),
            ("min.cleanable.dirty.ratio", "1.5"),
            ("min.cleanable.dirty.ratio", "half"),
            ("delete.retention.ms", "-1"),
            ("flush.messages", "0"),
            ("max.compaction.lag.ms", "0"),
            ("local.retention.ms", "-3"),
            ("segment.index.bytes", "3"),
            ("unclean.leader.election.enable", "yes"),
            ("leader.replication.throttled.replicas", "0:a"),
            ("message.format.version", "latest"),
            ("cleanup.policy", ""),
        ] {
            assert!(validate_entry(key, bad).is_err(), "{key}={bad:?} accepted");
        }
        for (key, good) in [
            ("compression.gzip.level", "9"),
            ("min.cleanable.dirty.ratio", "0.01"),
            ("leader.replication.throttled.replicas", "*"),
            ("follower.replication.throttled.replicas", "0:1, 1:1"),
            ("message.format.version", "2.8"),
            ("message.format.version", "0.10.2-IV0"),
            ("preallocate", "TRUE"),
        ] {
            validate_entry(key, good).unwrap_or_else(|e| panic!("{key}={good:?}: {e}"));
        }
    }

    #[test]
    fn describe_reports_layers_as_synonyms() {
        let entries = describe_layers(
            &map(&[("retention.ms", "1000")]),
            &map(&[("retention.ms", "2000")]),
            &map(&[("retention.ms", "3000")]),
        );
        let e = entries
            .iter()
            .find(|e| e.def.name == "retention.ms")
            .unwrap();
        assert_eq!((e.value.as_str(), e.source), ("3000", ConfigSource::Topic));
        let names: Vec<_> = e
            .synonyms
            .iter()
            .map(|s| (s.name.as_str(), s.value.as_str(), s.source))
            .collect();
        assert_eq!(
            names,
            [
                ("retention.ms", "3000", ConfigSource::Topic),
                ("log.retention.ms", "2000", ConfigSource::DynamicBroker),
                ("log.retention.ms", "1000", ConfigSource::Broker),
                ("log.retention.ms", "604800000", ConfigSource::Default),
            ]
        );
        let flush = entries.iter().find(|e| e.def.name == "flush.ms").unwrap();
        assert_eq!(flush.source, ConfigSource::Default);
        assert!(matches!(flush.def.effect, Effect::NoEffect(_)));
    }

    proptest::proptest! {
        /// Every integer key accepts exactly its range (and gzip's -1), whatever the value.
        #[test]
        fn integer_validators_accept_exactly_their_range(n in proptest::num::i64::ANY, pick in 0usize..64) {
            let ints: Vec<&ConfigDef> = TOPIC_CONFIGS
                .iter()
                .filter(|d| matches!(d.validator, Validator::Range { .. } | Validator::RangeOr { .. }))
                .collect();
            let def = ints[pick % ints.len()];
            let expected = match def.validator {
                Validator::Range { min, max } => (min..=max).contains(&n),
                Validator::RangeOr { min, max, or } => n == or || (min..=max).contains(&n),
                _ => unreachable!(),
            };
            proptest::prop_assert_eq!(validate_entry(def.name, &n.to_string()).is_ok(), expected, "{}={}", def.name, n);
        }

        /// A list config accepts any non-empty combination of its words, in any order.
        #[test]
        fn cleanup_policy_accepts_combinations(words in proptest::collection::vec(proptest::sample::select(vec!["compact", "delete"]), 1..4)) {
            let value = words.join(",");
            let s = TopicSettings::resolve(&BTreeMap::new(), &map(&[("cleanup.policy", &value)])).unwrap();
            proptest::prop_assert_eq!(s.cleanup_compact, words.contains(&"compact"));
            proptest::prop_assert_eq!(s.cleanup_delete, words.contains(&"delete"));
        }
    }

    #[test]
    fn parses_compaction_settings_into_the_log_config() {
        let s = TopicSettings::resolve(
            &map(&[("delete.retention.ms", "5000")]),
            &map(&[
                ("cleanup.policy", " delete , compact"),
                ("min.cleanable.dirty.ratio", "0.01"),
                ("min.compaction.lag.ms", "10"),
                ("max.compaction.lag.ms", "60000"),
            ]),
        )
        .unwrap();
        let log = s.log_config();
        assert_eq!(
            log.cleanup,
            CleanupPolicy {
                delete: true,
                compact: true
            }
        );
        assert_eq!(log.delete_retention_ms, 5000);
        assert_eq!(log.min_compaction_lag_ms, 10);
        assert_eq!(log.max_compaction_lag_ms, 60_000);
        assert!((log.min_cleanable_dirty_ratio - 0.01).abs() < f64::EPSILON);
        assert_eq!(log.retention_ms, Some(604_800_000));

        let compact =
            TopicSettings::resolve(&BTreeMap::new(), &map(&[("cleanup.policy", "compact")]))
                .unwrap()
                .log_config();
        assert_eq!(
            compact.cleanup,
            CleanupPolicy {
                delete: false,
                compact: true
            }
        );
        assert_eq!(
            (compact.retention_ms, compact.retention_bytes),
            (None, None)
        );

        let defaults = TopicSettings::resolve(&BTreeMap::new(), &BTreeMap::new())
            .unwrap()
            .log_config();
        assert_eq!(defaults.cleanup, CleanupPolicy::default());
        assert_eq!(defaults.delete_retention_ms, 86_400_000);
        assert_eq!(defaults.min_compaction_lag_ms, 0);
        assert_eq!(defaults.max_compaction_lag_ms, i64::MAX);
        assert!((defaults.min_cleanable_dirty_ratio - 0.5).abs() < f64::EPSILON);
    }

    #[test]
    fn rejects_bad_compaction_settings() {
        for (key, value) in [
            ("cleanup.policy", ""),
            ("cleanup.policy", "compact,"),
            ("cleanup.policy", "Compact"),
            ("min.cleanable.dirty.ratio", "1.5"),
            ("min.cleanable.dirty.ratio", "-0.1"),
            ("min.cleanable.dirty.ratio", "NaN"),
            ("min.cleanable.dirty.ratio", "half"),
            ("delete.retention.ms", "-1"),
            ("min.compaction.lag.ms", "-1"),
            ("max.compaction.lag.ms", "0"),
        ] {
            assert!(
                matches!(validate_entry(key, value), Err(Error::InvalidConfig { .. })),
                "{key}={value:?} was accepted"
            );
        }
        for (key, value) in [
            ("cleanup.policy", "compact,delete"),
            ("cleanup.policy", "delete,compact"),
            ("min.cleanable.dirty.ratio", "0"),
            ("min.cleanable.dirty.ratio", "1"),
            ("delete.retention.ms", "0"),
        ] {
            assert!(
                validate_entry(key, value).is_ok(),
                "{key}={value:?} refused"
            );
        }
        let conflict = TopicSettings::resolve(
            &BTreeMap::new(),
            &map(&[
                ("min.compaction.lag.ms", "2000"),
                ("max.compaction.lag.ms", "1000"),
            ]),
        );
        assert!(matches!(
            conflict,
            Err(Error::InvalidConfig { ref key, .. }) if key == "min.compaction.lag.ms"
        ));
    }
}
