//! Topic-level configuration with Kafka's names and defaults.
//!
//! A topic stores only its *overrides* (`BTreeMap<String, String>`, persisted in the metadata log);
//! the effective value of a key is the topic override, else the broker-level default (from the
//! server config), else the static default in [`TOPIC_CONFIGS`]. [`TopicSettings`] is the typed,
//! validated result, and [`TopicSettings::log_config`] turns it into the storage engine's
//! [`strom_log::LogConfig`].
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

use strom_log::{FsyncPolicy, LogConfig, TimestampType};

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
    /// A 64-bit integer.
    Long,
    /// A comma-separated list.
    List,
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
    /// One line of documentation.
    pub doc: &'static str,
}

/// Every topic config key Strom understands, sorted by name.
pub const TOPIC_CONFIGS: &[ConfigDef] = &[
    ConfigDef {
        name: "cleanup.policy",
        kind: ConfigType::List,
        default: "delete",
        doc: "delete and/or compact (compaction is not implemented yet; compact topics keep all data)",
    },
    ConfigDef {
        name: "compression.type",
        kind: ConfigType::String,
        default: "producer",
        doc: "accepted for compatibility; batches are stored as produced",
    },
    ConfigDef {
        name: "index.interval.bytes",
        kind: ConfigType::Int,
        default: "4096",
        doc: "bytes of log between two offset-index entries",
    },
    ConfigDef {
        name: "max.message.bytes",
        kind: ConfigType::Int,
        default: "1048588",
        doc: "largest record batch accepted",
    },
    ConfigDef {
        name: "message.timestamp.type",
        kind: ConfigType::String,
        default: "CreateTime",
        doc: "CreateTime or LogAppendTime",
    },
    ConfigDef {
        name: "min.insync.replicas",
        kind: ConfigType::Int,
        default: "1",
        doc: "acks=all produce fails with NOT_ENOUGH_REPLICAS above the in-sync count (1 on a single node)",
    },
    ConfigDef {
        name: "preallocate",
        kind: ConfigType::Boolean,
        default: "false",
        doc: "preallocate segment files",
    },
    ConfigDef {
        name: "producer.id.expiration.ms",
        kind: ConfigType::Long,
        default: "86400000",
        doc: "forget an idempotent producer's sequence state this long after its last batch (a broker config in Kafka; here also per topic)",
    },
    ConfigDef {
        name: "retention.bytes",
        kind: ConfigType::Long,
        default: "-1",
        doc: "per-partition size limit, -1 for none",
    },
    ConfigDef {
        name: "retention.ms",
        kind: ConfigType::Long,
        default: "604800000",
        doc: "age limit, -1 for none",
    },
    ConfigDef {
        name: "segment.bytes",
        kind: ConfigType::Int,
        default: "1073741824",
        doc: "segment size before rolling (at least 1024)",
    },
    ConfigDef {
        name: "segment.ms",
        kind: ConfigType::Long,
        default: "604800000",
        doc: "segment age before rolling",
    },
    ConfigDef {
        name: "strom.fsync",
        kind: ConfigType::String,
        default: "always",
        doc: "always (ack after fdatasync, group commit), interval or never",
    },
    ConfigDef {
        name: "strom.fsync.interval.ms",
        kind: ConfigType::Long,
        default: "1000",
        doc: "flush period when strom.fsync=interval",
    },
];

/// Looks a key up in [`TOPIC_CONFIGS`].
pub fn config_def(name: &str) -> Option<&'static ConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.name == name)
}

/// Where an effective value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    /// Set on the topic.
    Topic,
    /// Set in the broker's server config as the default for all topics.
    Broker,
    /// Strom's built-in default.
    Default,
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
    /// `index.interval.bytes`.
    pub index_interval_bytes: u32,
    /// `max.message.bytes`.
    pub max_message_bytes: usize,
    /// `message.timestamp.type`.
    pub timestamp_type: TimestampType,
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
            index_interval_bytes: 4096,
            max_message_bytes: 1_048_588,
            timestamp_type: TimestampType::CreateTime,
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
        Ok(s)
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
            "index.interval.bytes" => {
                self.index_interval_bytes = parse_i64(key, value, 0, i64::from(i32::MAX))? as u32;
            }
            "max.message.bytes" => {
                self.max_message_bytes = parse_i64(key, value, 0, i64::from(i32::MAX))? as usize;
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
                self.preallocate = one_of(key, value, &["true", "false"])? == "true";
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
            _ => return Err(invalid(key, value, "unknown topic config")),
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
        }
    }
}

/// The effective value and source of every key for a topic.
pub fn describe(
    broker_defaults: &BTreeMap<String, String>,
    overrides: &BTreeMap<String, String>,
) -> Vec<ConfigEntry> {
    TOPIC_CONFIGS
        .iter()
        .map(|def| {
            let (value, source) = if let Some(v) = overrides.get(def.name) {
                (v.clone(), ConfigSource::Topic)
            } else if let Some(v) = broker_defaults.get(def.name) {
                (v.clone(), ConfigSource::Broker)
            } else {
                (def.default.to_owned(), ConfigSource::Default)
            };
            ConfigEntry { def, value, source }
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
}
