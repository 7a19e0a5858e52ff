//! Broker-level configs (Kafka's BROKER config resource) and group configs (KIP-848's GROUP
//! resource): the names Kafka clients and tools ask for, their current values, and the dynamic
//! ones changeable at runtime.
//!
//! Layers, highest precedence first: dynamic for this broker (`AlterConfigs` on resource name
//! = node id), dynamic cluster default (resource name `""`), static (the server config file and
//! the listeners' settings, registered at start-up), Kafka's default. Dynamic values are stored
//! durably as `DynamicConfigsSet` events in the metadata log and replayed at start-up.
//!
//! The topic-config synonyms (`log.retention.ms`, `log.segment.bytes`, `message.max.bytes`, …;
//! see [`crate::config::ConfigDef::broker_synonym`]) are broker configs too: a dynamic value
//! becomes the default of every topic without an override of its own, at once (the topics'
//! settings are re-resolved). The other dynamic names are read by the component they govern
//! (the Kafka listener's connection limits; the log cleaner's
//! `log.cleaner.io.max.bytes.per.second`). The cleaner's other settings are static here (set in
//! the `[log_cleaner]` table; Kafka can change them at runtime).
//!
//! Group configs: `consumer.session.timeout.ms` and `consumer.heartbeat.interval.ms` per
//! consumer-protocol group, within the broker's `group.consumer.{min,max}.*` bounds; the KIP-848
//! engine uses them for that group.

use std::collections::BTreeMap;
use std::sync::{PoisonError, RwLock};

use serde::{Deserialize, Serialize};

use crate::config::{
    ConfigSource, ConfigSynonym, ConfigType, TOPIC_CONFIGS, Validator, invalid_config,
};
use crate::error::Result;

/// Static description of one broker config.
#[derive(Debug, Clone, Copy)]
pub struct BrokerConfigDef {
    /// Kafka's name.
    pub name: &'static str,
    /// Its value type.
    pub kind: ConfigType,
    /// Kafka's default (Strom's where Strom differs, said in `doc`).
    pub default: &'static str,
    /// How values are checked.
    pub validator: Validator,
    /// Changeable at runtime through AlterConfigs / IncrementalAlterConfigs.
    pub dynamic: bool,
    /// One line of documentation.
    pub doc: &'static str,
}

const INT_MAX: i64 = i32::MAX as i64;
const LONG_MAX: i64 = i64::MAX;

const fn b(
    name: &'static str,
    kind: ConfigType,
    default: &'static str,
    validator: Validator,
    dynamic: bool,
    doc: &'static str,
) -> BrokerConfigDef {
    BrokerConfigDef {
        name,
        kind,
        default,
        validator,
        dynamic,
        doc,
    }
}

const fn range(min: i64, max: i64) -> Validator {
    Validator::Range { min, max }
}

/// Broker configs other than the topic-config synonyms, sorted by name. Names documented
/// "accepted without effect" are dynamic in Kafka (tools and librdkafka's admin tests change
/// them at runtime) and stored and described here, but Strom has nothing they act on.
pub const BROKER_CONFIGS: &[BrokerConfigDef] = &[
    b(
        "auto.create.topics.enable",
        ConfigType::Boolean,
        "true",
        Validator::Bool,
        false,
        "create unknown topics on Metadata requests",
    ),
    b(
        "background.threads",
        ConfigType::Int,
        "10",
        range(1, INT_MAX),
        true,
        "threads for background work (accepted without effect: Strom sizes its own pools)",
    ),
    b(
        "connections.max.idle.ms",
        ConfigType::Long,
        "600000",
        range(1, LONG_MAX),
        false,
        "close connections silent this long",
    ),
    b(
        "connections.max.reauth.ms",
        ConfigType::Long,
        "0",
        range(0, LONG_MAX),
        false,
        "longest SASL session before re-authentication (KIP-368; 0: none)",
    ),
    b(
        "default.replication.factor",
        ConfigType::Int,
        "1",
        range(1, 1),
        false,
        "replication factor of auto-created topics (single node: 1)",
    ),
    b(
        "fetch.max.bytes",
        ConfigType::Int,
        "31457280",
        range(1024, INT_MAX),
        false,
        "most record bytes one Fetch response carries (first batch always whole)",
    ),
    b(
        "group.consumer.heartbeat.interval.ms",
        ConfigType::Int,
        "5000",
        range(1, INT_MAX),
        false,
        "heartbeat interval of consumer-protocol members",
    ),
    b(
        "group.consumer.max.heartbeat.interval.ms",
        ConfigType::Int,
        "15000",
        range(1, INT_MAX),
        false,
        "largest consumer.heartbeat.interval.ms a group may set",
    ),
    b(
        "group.consumer.max.session.timeout.ms",
        ConfigType::Int,
        "60000",
        range(1, INT_MAX),
        false,
        "largest consumer.session.timeout.ms a group may set",
    ),
    b(
        "group.consumer.max.size",
        ConfigType::Int,
        "2147483647",
        range(1, INT_MAX),
        false,
        "most members of a consumer-protocol group",
    ),
    b(
        "group.consumer.min.heartbeat.interval.ms",
        ConfigType::Int,
        "5000",
        range(1, INT_MAX),
        false,
        "smallest consumer.heartbeat.interval.ms a group may set",
    ),
    b(
        "group.consumer.min.session.timeout.ms",
        ConfigType::Int,
        "45000",
        range(1, INT_MAX),
        false,
        "smallest consumer.session.timeout.ms a group may set",
    ),
    b(
        "group.consumer.session.timeout.ms",
        ConfigType::Int,
        "45000",
        range(1, INT_MAX),
        false,
        "session timeout of consumer-protocol members",
    ),
    b(
        "group.initial.rebalance.delay.ms",
        ConfigType::Int,
        "3000",
        range(0, INT_MAX),
        false,
        "wait before the first rebalance of an empty classic group",
    ),
    b(
        "group.max.session.timeout.ms",
        ConfigType::Int,
        "1800000",
        range(1, INT_MAX),
        false,
        "largest session timeout of classic members",
    ),
    b(
        "group.min.session.timeout.ms",
        ConfigType::Int,
        "6000",
        range(1, INT_MAX),
        false,
        "smallest session timeout of classic members",
    ),
    b(
        "log.cleaner.backoff.ms",
        ConfigType::Long,
        "15000",
        range(0, LONG_MAX),
        false,
        "cleaner sleep when there is nothing to clean",
    ),
    b(
        "log.cleaner.dedupe.buffer.size",
        ConfigType::Long,
        "134217728",
        range(0, LONG_MAX),
        false,
        "memory for the cleaner's key map (not used: Strom's cleaner sizes its map per segment)",
    ),
    b(
        "log.cleaner.enable",
        ConfigType::Boolean,
        "true",
        Validator::Bool,
        false,
        "run the log cleaner for compacted topics",
    ),
    b(
        "log.cleaner.io.buffer.load.factor",
        ConfigType::Double,
        "0.9",
        Validator::Fraction { min: 0.0, max: 1.0 },
        false,
        "load factor of the cleaner's key map (not used by Strom's cleaner)",
    ),
    b(
        "log.cleaner.io.buffer.size",
        ConfigType::Int,
        "524288",
        range(0, INT_MAX),
        false,
        "cleaner I/O buffer size (not used by Strom's cleaner)",
    ),
    b(
        "log.cleaner.io.max.bytes.per.second",
        ConfigType::Double,
        "1.7976931348623157E308",
        Validator::Fraction {
            min: 0.0,
            max: f64::MAX,
        },
        true,
        "cleaner I/O throttle (read plus write)",
    ),
    b(
        "log.cleaner.threads",
        ConfigType::Int,
        "1",
        range(0, INT_MAX),
        false,
        "cleaner threads",
    ),
    b(
        "log.retention.check.interval.ms",
        ConfigType::Long,
        "300000",
        range(1, LONG_MAX),
        false,
        "how often retention runs",
    ),
    b(
        "max.connection.creation.rate",
        ConfigType::Int,
        "2147483647",
        range(0, INT_MAX),
        true,
        "new connections per second at most (accepted without effect)",
    ),
    b(
        "max.connections",
        ConfigType::Int,
        "2147483647",
        range(0, INT_MAX),
        true,
        "open Kafka connections at most; excess ones are closed at accept",
    ),
    b(
        "max.connections.per.ip",
        ConfigType::Int,
        "2147483647",
        range(0, INT_MAX),
        true,
        "open Kafka connections per client IP at most",
    ),
    b(
        "metric.reporters",
        ConfigType::List,
        "",
        Validator::Any,
        true,
        "metrics reporter classes (accepted without effect: Strom serves /metrics itself)",
    ),
    b(
        "node.id",
        ConfigType::Int,
        "0",
        range(0, INT_MAX),
        false,
        "this broker's id",
    ),
    b(
        "num.io.threads",
        ConfigType::Int,
        "8",
        range(1, INT_MAX),
        true,
        "request handler threads (accepted without effect: Strom runs on Tokio)",
    ),
    b(
        "num.network.threads",
        ConfigType::Int,
        "3",
        range(1, INT_MAX),
        true,
        "network threads (accepted without effect: Strom runs on Tokio)",
    ),
    b(
        "num.partitions",
        ConfigType::Int,
        "1",
        range(1, 10_000),
        false,
        "partitions of auto-created topics",
    ),
    b(
        "num.recovery.threads.per.data.dir",
        ConfigType::Int,
        "2",
        range(1, INT_MAX),
        true,
        "log recovery threads per data directory (accepted without effect)",
    ),
    b(
        "num.replica.fetchers",
        ConfigType::Int,
        "1",
        range(1, INT_MAX),
        true,
        "replica fetcher threads (accepted without effect: single node)",
    ),
    b(
        "offsets.retention.minutes",
        ConfigType::Int,
        "10080",
        range(1, INT_MAX),
        false,
        "committed offsets of an empty group expire after this long",
    ),
    b(
        "queued.max.request.bytes",
        ConfigType::Long,
        "536870912",
        range(-1, LONG_MAX),
        false,
        "request and fetch-response bytes in memory across connections (Strom's default; Kafka's is -1)",
    ),
    b(
        "sasl.enabled.mechanisms",
        ConfigType::List,
        "",
        Validator::Any,
        false,
        "SASL mechanisms of the Kafka listener (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER)",
    ),
    b(
        "sasl.kerberos.kinit.cmd",
        ConfigType::String,
        "/usr/bin/kinit",
        Validator::Any,
        true,
        "Kerberos kinit command (accepted without effect: Strom has no Kerberos)",
    ),
    b(
        "sasl.kerberos.min.time.before.relogin",
        ConfigType::Long,
        "60000",
        range(0, LONG_MAX),
        true,
        "Kerberos relogin interval (accepted without effect: Strom has no Kerberos)",
    ),
    b(
        "sasl.kerberos.ticket.renew.jitter",
        ConfigType::Double,
        "0.05",
        Validator::Fraction { min: 0.0, max: 1.0 },
        true,
        "Kerberos ticket renewal jitter (accepted without effect: Strom has no Kerberos)",
    ),
    b(
        "sasl.kerberos.ticket.renew.window.factor",
        ConfigType::Double,
        "0.8",
        Validator::Fraction { min: 0.0, max: 1.0 },
        true,
        "Kerberos ticket renewal window (accepted without effect: Strom has no Kerberos)",
    ),
    b(
        "socket.request.max.bytes",
        ConfigType::Int,
        "104857600",
        range(1, INT_MAX),
        false,
        "largest request frame",
    ),
];

/// Group configs (KIP-848's GROUP resource), sorted by name.
pub const GROUP_CONFIGS: &[BrokerConfigDef] = &[
    b(
        "consumer.heartbeat.interval.ms",
        ConfigType::Int,
        "5000",
        range(1, INT_MAX),
        true,
        "heartbeat interval of this group's consumer-protocol members",
    ),
    b(
        "consumer.session.timeout.ms",
        ConfigType::Int,
        "45000",
        range(1, INT_MAX),
        true,
        "session timeout of this group's consumer-protocol members",
    ),
];

/// A dynamic config layer's owner, as stored in the metadata log.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DynamicResource {
    /// This broker (resource name = its node id).
    Broker,
    /// Every broker's default (resource name `""`).
    ClusterDefault,
    /// A consumer group.
    Group {
        /// The group id.
        group: String,
    },
}

/// One broker or group config as DescribeConfigs shows it.
#[derive(Debug, Clone)]
pub struct ResourceConfigEntry {
    /// Kafka's name.
    pub name: String,
    /// The effective value.
    pub value: String,
    /// Where it came from.
    pub source: ConfigSource,
    /// Not changeable at runtime.
    pub read_only: bool,
    /// Its value type.
    pub kind: ConfigType,
    /// Documentation.
    pub doc: &'static str,
    /// Every layer that sets it, effective first.
    pub synonyms: Vec<ConfigSynonym>,
}

/// The dynamic layers and the static values, behind one lock.
#[derive(Debug, Default)]
pub(crate) struct DynamicConfigs {
    inner: RwLock<Layers>,
}

#[derive(Debug, Default, Clone)]
struct Layers {
    broker: BTreeMap<String, String>,
    cluster: BTreeMap<String, String>,
    statics: BTreeMap<String, String>,
    groups: BTreeMap<String, BTreeMap<String, String>>,
}

/// Definition of a broker config: one of [`BROKER_CONFIGS`] or a topic-config synonym (then
/// with the topic config's name).
fn broker_def(name: &str) -> Option<(BrokerConfigDef, Option<&'static str>)> {
    if let Some(d) = BROKER_CONFIGS.iter().find(|d| d.name == name) {
        return Some((*d, None));
    }
    TOPIC_CONFIGS
        .iter()
        .find(|d| d.broker_synonym == Some(name))
        .map(|d| {
            let def = BrokerConfigDef {
                name: d.broker_synonym.unwrap_or(d.name),
                kind: d.kind,
                default: d.default,
                validator: d.validator,
                // Kafka cannot change the message format dynamically.
                dynamic: d.name != "message.format.version",
                doc: d.doc,
            };
            (def, Some(d.name))
        })
}

/// Every broker config name, sorted.
fn all_broker_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = BROKER_CONFIGS.iter().map(|d| d.name).collect();
    names.extend(TOPIC_CONFIGS.iter().filter_map(|d| d.broker_synonym));
    names.sort_unstable();
    names.dedup();
    names
}

/// Checks a broker config change: known, dynamic, valid value.
pub fn validate_broker_change(name: &str, value: Option<&str>) -> Result<()> {
    let Some((def, _)) = broker_def(name) else {
        return Err(invalid_config(
            name,
            value.unwrap_or(""),
            "Cannot update these configs dynamically: unknown broker config",
        ));
    };
    if !def.dynamic {
        return Err(invalid_config(
            name,
            value.unwrap_or(""),
            "Cannot update these configs dynamically",
        ));
    }
    if let Some(v) = value {
        def.validator.check(name, v)?;
    }
    Ok(())
}

/// Checks a group config change against the broker's bounds.
pub fn validate_group_change(name: &str, value: Option<&str>, bounds: &GroupBounds) -> Result<()> {
    let Some(def) = GROUP_CONFIGS.iter().find(|d| d.name == name) else {
        return Err(invalid_config(
            name,
            value.unwrap_or(""),
            "unknown group config",
        ));
    };
    let Some(v) = value else { return Ok(()) };
    def.validator.check(name, v)?;
    let n: i64 = v.trim().parse().unwrap_or(0);
    let (min, max, min_name, max_name) = match name {
        "consumer.session.timeout.ms" => (
            bounds.min_session_ms,
            bounds.max_session_ms,
            "group.consumer.min.session.timeout.ms",
            "group.consumer.max.session.timeout.ms",
        ),
        _ => (
            bounds.min_heartbeat_ms,
            bounds.max_heartbeat_ms,
            "group.consumer.min.heartbeat.interval.ms",
            "group.consumer.max.heartbeat.interval.ms",
        ),
    };
    if n < i64::from(min) || n > i64::from(max) {
        return Err(invalid_config(
            name,
            v,
            format!("must be between {min_name} ({min}) and {max_name} ({max})"),
        ));
    }
    Ok(())
}

/// The broker's bounds for group configs (`group.consumer.{min,max}.*`).
#[derive(Debug, Clone, Copy)]
pub struct GroupBounds {
    /// `group.consumer.min.session.timeout.ms`.
    pub min_session_ms: i32,
    /// `group.consumer.max.session.timeout.ms`.
    pub max_session_ms: i32,
    /// `group.consumer.min.heartbeat.interval.ms`.
    pub min_heartbeat_ms: i32,
    /// `group.consumer.max.heartbeat.interval.ms`.
    pub max_heartbeat_ms: i32,
}

impl Default for GroupBounds {
    fn default() -> Self {
        GroupBounds {
            min_session_ms: 45_000,
            max_session_ms: 60_000,
            min_heartbeat_ms: 5_000,
            max_heartbeat_ms: 15_000,
        }
    }
}

impl DynamicConfigs {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Layers> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Layers> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Replaces one dynamic layer (replay and AlterConfigs).
    pub(crate) fn set(&self, resource: &DynamicResource, configs: BTreeMap<String, String>) {
        let mut l = self.write();
        match resource {
            DynamicResource::Broker => l.broker = configs,
            DynamicResource::ClusterDefault => l.cluster = configs,
            DynamicResource::Group { group } => {
                if configs.is_empty() {
                    l.groups.remove(group);
                } else {
                    l.groups.insert(group.clone(), configs);
                }
            }
        }
    }

    /// One dynamic layer's values.
    pub(crate) fn get(&self, resource: &DynamicResource) -> BTreeMap<String, String> {
        let l = self.read();
        match resource {
            DynamicResource::Broker => l.broker.clone(),
            DynamicResource::ClusterDefault => l.cluster.clone(),
            DynamicResource::Group { group } => l.groups.get(group).cloned().unwrap_or_default(),
        }
    }

    /// Every group's dynamic configs.
    pub(crate) fn groups(&self) -> BTreeMap<String, BTreeMap<String, String>> {
        self.read().groups.clone()
    }

    /// Records a static value (from the server config or a listener's settings).
    pub(crate) fn set_static(&self, name: &str, value: String) {
        self.write().statics.insert(name.to_owned(), value);
    }

    /// The effective dynamic value of a broker config, if one is set.
    pub(crate) fn dynamic_value(&self, name: &str) -> Option<String> {
        let l = self.read();
        l.broker.get(name).or_else(|| l.cluster.get(name)).cloned()
    }

    /// Dynamic topic defaults, keyed by topic-config name (broker over cluster layer).
    pub(crate) fn topic_defaults(&self) -> BTreeMap<String, String> {
        let l = self.read();
        let mut out = BTreeMap::new();
        for layer in [&l.cluster, &l.broker] {
            for (k, v) in layer {
                if let Some((_, Some(topic_name))) = broker_def(k) {
                    out.insert(topic_name.to_owned(), v.clone());
                }
            }
        }
        out
    }

    /// Every broker config with its value, source and synonyms. `static_topic_defaults` are
    /// the server config's topic defaults (keyed by topic-config name).
    pub(crate) fn describe_broker(
        &self,
        static_topic_defaults: &BTreeMap<String, String>,
    ) -> Vec<ResourceConfigEntry> {
        let l = self.read();
        all_broker_names()
            .into_iter()
            .filter_map(|name| {
                let (def, topic_name) = broker_def(name)?;
                let statik = topic_name
                    .and_then(|t| static_topic_defaults.get(t))
                    .or_else(|| l.statics.get(name));
                let mut synonyms = Vec::new();
                for (value, source) in [
                    (l.broker.get(name), ConfigSource::DynamicBrokerNode),
                    (l.cluster.get(name), ConfigSource::DynamicBroker),
                    (statik, ConfigSource::Broker),
                ] {
                    if let Some(v) = value {
                        synonyms.push(ConfigSynonym {
                            name: name.to_owned(),
                            value: v.clone(),
                            source,
                        });
                    }
                }
                synonyms.push(ConfigSynonym {
                    name: name.to_owned(),
                    value: def.default.to_owned(),
                    source: ConfigSource::Default,
                });
                let first = synonyms.first()?.clone();
                Some(ResourceConfigEntry {
                    name: name.to_owned(),
                    value: first.value,
                    source: first.source,
                    read_only: !def.dynamic,
                    kind: def.kind,
                    doc: def.doc,
                    synonyms,
                })
            })
            .collect()
    }

    /// A group's configs with their values and sources; broker defaults come from `defaults`
    /// (`consumer.session.timeout.ms` → the broker's `group.consumer.session.timeout.ms`).
    pub(crate) fn describe_group(
        &self,
        group: &str,
        defaults: &BTreeMap<&'static str, String>,
    ) -> Vec<ResourceConfigEntry> {
        let l = self.read();
        let set = l.groups.get(group);
        GROUP_CONFIGS
            .iter()
            .map(|def| {
                let broker_name = format!("group.{}", def.name);
                let broker_value = defaults
                    .get(def.name)
                    .cloned()
                    .unwrap_or_else(|| def.default.to_owned());
                let mut synonyms = Vec::new();
                if let Some(v) = set.and_then(|s| s.get(def.name)) {
                    synonyms.push(ConfigSynonym {
                        name: def.name.to_owned(),
                        value: v.clone(),
                        source: ConfigSource::Group,
                    });
                }
                synonyms.push(ConfigSynonym {
                    name: broker_name,
                    value: broker_value,
                    source: ConfigSource::Broker,
                });
                let first = synonyms[0].clone();
                ResourceConfigEntry {
                    name: def.name.to_owned(),
                    value: first.value,
                    source: first.source,
                    read_only: false,
                    kind: def.kind,
                    doc: def.doc,
                    synonyms,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_sorted_and_defaults_valid() {
        for table in [BROKER_CONFIGS, GROUP_CONFIGS] {
            for pair in table.windows(2) {
                assert!(pair[0].name < pair[1].name, "{}", pair[1].name);
            }
            for d in table {
                d.validator.check(d.name, d.default).unwrap();
            }
        }
        for name in all_broker_names() {
            let (def, _) = broker_def(name).unwrap();
            def.validator.check(name, def.default).unwrap();
        }
    }

    #[test]
    fn dynamic_rules() {
        assert!(validate_broker_change("log.retention.ms", Some("1000")).is_ok());
        assert!(validate_broker_change("max.connections", Some("10")).is_ok());
        assert!(validate_broker_change("log.cleaner.io.max.bytes.per.second", Some("1e6")).is_ok());
        assert!(validate_broker_change("num.partitions", Some("3")).is_err());
        assert!(validate_broker_change("log.cleaner.threads", Some("2")).is_err());
        assert!(validate_broker_change("log.message.format.version", Some("3.0")).is_err());
        assert!(validate_broker_change("no.such", Some("1")).is_err());
        assert!(validate_broker_change("log.retention.ms", Some("soon")).is_err());
        let b = GroupBounds::default();
        assert!(validate_group_change("consumer.session.timeout.ms", Some("50000"), &b).is_ok());
        assert!(validate_group_change("consumer.session.timeout.ms", Some("1000"), &b).is_err());
        assert!(
            validate_group_change("consumer.heartbeat.interval.ms", Some("20000"), &b).is_err()
        );
        assert!(validate_group_change("consumer.other", Some("1"), &b).is_err());
    }

    #[test]
    fn dynamic_topic_defaults_use_topic_names_and_broker_layer_wins() {
        let d = DynamicConfigs::default();
        d.set(
            &DynamicResource::ClusterDefault,
            BTreeMap::from([
                ("log.retention.ms".to_owned(), "1".to_owned()),
                ("max.connections".to_owned(), "5".to_owned()),
            ]),
        );
        d.set(
            &DynamicResource::Broker,
            BTreeMap::from([("log.retention.ms".to_owned(), "2".to_owned())]),
        );
        assert_eq!(
            d.topic_defaults(),
            BTreeMap::from([("retention.ms".to_owned(), "2".to_owned())])
        );
        assert_eq!(d.dynamic_value("max.connections").as_deref(), Some("5"));
        let described = d.describe_broker(&BTreeMap::new());
        let e = described
            .iter()
            .find(|e| e.name == "log.retention.ms")
            .unwrap();
        assert_eq!(
            (e.value.as_str(), e.source),
            ("2", ConfigSource::DynamicBrokerNode)
        );
        assert_eq!(e.synonyms.len(), 3);
        assert!(!e.read_only);
        let n = described
            .iter()
            .find(|e| e.name == "num.partitions")
            .unwrap();
        assert!(n.read_only);
    }
}

/// How a dynamic layer changes.
#[derive(Debug, Clone)]
pub enum ConfigChange {
    /// AlterConfigs: the layer becomes exactly this.
    Replace(BTreeMap<String, String>),
    /// IncrementalAlterConfigs: these operations on the current layer.
    Incremental(Vec<crate::ConfigOp>),
}

fn apply_change(
    current: BTreeMap<String, String>,
    change: ConfigChange,
    kind_of: impl Fn(&str) -> Option<ConfigType>,
    effective: impl Fn(&str) -> String,
) -> Result<BTreeMap<String, String>> {
    use crate::ConfigOp;
    let ops = match change {
        ConfigChange::Replace(map) => return Ok(map),
        ConfigChange::Incremental(ops) => ops,
    };
    let mut out = current;
    for op in ops {
        let (k, v, append) = match op {
            ConfigOp::Set(k, v) => {
                out.insert(k, v);
                continue;
            }
            ConfigOp::Delete(k) => {
                out.remove(&k);
                continue;
            }
            ConfigOp::Append(k, v) => (k, v, true),
            ConfigOp::Subtract(k, v) => (k, v, false),
        };
        if kind_of(&k) != Some(ConfigType::List) {
            return Err(invalid_config(
                &k,
                &v,
                "APPEND and SUBTRACT need a list config",
            ));
        }
        let base = out.get(&k).cloned().unwrap_or_else(|| effective(&k));
        let merged = crate::config::apply_list_op(&base, &v, append);
        out.insert(k, merged);
    }
    Ok(out)
}

impl crate::Broker {
    /// Every broker config (BROKER resource) with its value, source and synonyms.
    pub fn describe_broker_configs(&self) -> Vec<ResourceConfigEntry> {
        self.dynamic.describe_broker(&self.config().topic_defaults)
    }

    /// Records a static broker setting a front end owns (e.g. the Kafka listener's
    /// `fetch.max.bytes`), so DescribeConfigs shows it.
    pub fn set_static_broker_config(&self, name: &str, value: String) {
        self.dynamic.set_static(name, value);
    }

    /// The dynamic broker-level topic defaults, keyed by topic-config name.
    pub fn dynamic_topic_defaults(&self) -> BTreeMap<String, String> {
        self.dynamic.topic_defaults()
    }

    /// The dynamic value of a broker config (this broker's layer over the cluster default),
    /// if one is set.
    pub fn dynamic_broker_config(&self, name: &str) -> Option<String> {
        self.dynamic.dynamic_value(name)
    }

    /// Changes this broker's (`per_broker`) or the cluster-default dynamic configs, durably;
    /// topic-config synonyms apply to every topic at once. Only dynamic configs may change
    /// ([`Error::InvalidConfig`](crate::Error::InvalidConfig) otherwise: Kafka's "Cannot
    /// update these configs dynamically"). BLOCKING.
    pub fn alter_broker_configs_blocking(
        &self,
        per_broker: bool,
        change: ConfigChange,
        validate_only: bool,
    ) -> Result<()> {
        let resource = if per_broker {
            DynamicResource::Broker
        } else {
            DynamicResource::ClusterDefault
        };
        let touched: Vec<(String, Option<String>)> = match &change {
            ConfigChange::Replace(map) => map
                .iter()
                .map(|(k, v)| (k.clone(), Some(v.clone())))
                .collect(),
            ConfigChange::Incremental(ops) => ops
                .iter()
                .map(|op| match op {
                    crate::ConfigOp::Set(k, v)
                    | crate::ConfigOp::Append(k, v)
                    | crate::ConfigOp::Subtract(k, v) => (k.clone(), Some(v.clone())),
                    crate::ConfigOp::Delete(k) => (k.clone(), None),
                })
                .collect(),
        };
        for (k, v) in &touched {
            validate_broker_change(k, v.as_deref())?;
        }
        let mut meta = self.admin();
        let current = self.dynamic.get(&resource);
        let described = self.describe_broker_configs();
        let next = apply_change(
            current,
            change,
            |k| broker_def(k).map(|(d, _)| d.kind),
            |k| {
                described
                    .iter()
                    .find(|e| e.name == k)
                    .map(|e| e.value.clone())
                    .unwrap_or_default()
            },
        )?;
        for (k, v) in &next {
            validate_broker_change(k, Some(v))?;
        }
        if validate_only {
            return Ok(());
        }
        meta.append(&crate::metadata::MetadataEvent::DynamicConfigsSet {
            resource: resource.clone(),
            configs: next.clone(),
        })?;
        self.dynamic.set(&resource, next);
        self.apply_dynamic_broker_configs();
        // Topic defaults may have changed: re-resolve every topic without waiting for a
        // restart.
        let defaults = self.topic_defaults();
        for topic in self.topics() {
            match crate::config::TopicSettings::resolve(&defaults, &topic.overrides) {
                Ok(settings) => {
                    for p in topic.partitions() {
                        p.set_config(settings.log_config());
                    }
                    self.replace_topic(crate::Topic {
                        name: topic.name.clone(),
                        id: topic.id,
                        partitions: topic.partitions.clone(),
                        overrides: topic.overrides.clone(),
                        settings,
                    });
                }
                Err(e) => {
                    tracing::warn!(topic = topic.name(), error = %e, "topic keeps its settings")
                }
            }
        }
        drop(meta);
        Ok(())
    }

    /// Puts the dynamic broker configs the broker core honours itself into force (the
    /// cleaner's I/O throttle); called after a change and at start-up.
    pub(crate) fn apply_dynamic_broker_configs(&self) {
        let rate = match self
            .dynamic
            .dynamic_value("log.cleaner.io.max.bytes.per.second")
        {
            Some(v) => v
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|r| *r >= 1.0 && *r < u64::MAX as f64)
                .map(|r| r as u64),
            None => self.config().cleaner.io_max_bytes_per_second,
        };
        self.cleaner.set_io_max_bytes_per_second(rate);
    }

    /// The broker's `group.consumer.*` values that group configs default to, by group-config
    /// name.
    fn group_defaults(&self) -> BTreeMap<&'static str, String> {
        let c = self.config().group.consumer;
        BTreeMap::from([
            (
                "consumer.session.timeout.ms",
                c.session_timeout_ms.to_string(),
            ),
            (
                "consumer.heartbeat.interval.ms",
                c.heartbeat_interval_ms.to_string(),
            ),
        ])
    }

    /// A group's configs (GROUP resource, KIP-848).
    pub fn describe_group_configs(&self, group: &str) -> Vec<ResourceConfigEntry> {
        self.dynamic.describe_group(group, &self.group_defaults())
    }

    /// Changes a group's configs, durably, and applies them to its consumer-protocol members'
    /// session timeout and heartbeat interval. BLOCKING.
    pub fn alter_group_configs_blocking(
        &self,
        group: &str,
        change: ConfigChange,
        validate_only: bool,
    ) -> Result<()> {
        let bounds = GroupBounds::default();
        let resource = DynamicResource::Group {
            group: group.to_owned(),
        };
        let mut meta = self.admin();
        let current = self.dynamic.get(&resource);
        let defaults = self.group_defaults();
        let next = apply_change(
            current,
            change,
            |_| Some(ConfigType::Int),
            |k| defaults.get(k).cloned().unwrap_or_default(),
        )?;
        for (k, v) in &next {
            validate_group_change(k, Some(v), &bounds)?;
        }
        if validate_only {
            return Ok(());
        }
        meta.append(&crate::metadata::MetadataEvent::DynamicConfigsSet {
            resource: resource.clone(),
            configs: next.clone(),
        })?;
        self.groups().set_group_timeouts(group, &next);
        self.dynamic.set(&resource, next);
        Ok(())
    }
}
