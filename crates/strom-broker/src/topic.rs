//! Topics: names, ids, partitions and config overrides.

use std::collections::BTreeMap;
use std::sync::Arc;

use uuid::Uuid;

use crate::config::TopicSettings;
use crate::error::{Error, Result};
use crate::partition::Partition;

/// Kafka's longest legal topic name.
pub const MAX_TOPIC_NAME_LEN: usize = 249;

/// Checks a topic name against Kafka's rules: 1..=249 characters from `[a-zA-Z0-9._-]`, and
/// not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        Some("the name is empty")
    } else if name == "." || name == ".." {
        Some("'.' and '..' are not allowed")
    } else if name.len() > MAX_TOPIC_NAME_LEN {
        Some("the name is longer than 249 characters")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        Some("only ASCII letters, digits, '.', '_' and '-' are allowed")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::InvalidTopicName {
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// An immutable snapshot of a topic. Changes (new partitions, new configs) publish a new
/// snapshot that shares the existing [`Partition`]s.
#[derive(Debug)]
pub struct Topic {
    pub(crate) name: String,
    pub(crate) id: Uuid,
    pub(crate) partitions: Vec<Arc<Partition>>,
    pub(crate) overrides: BTreeMap<String, String>,
    pub(crate) settings: TopicSettings,
}

impl Topic {
    /// The topic name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The topic id (a v4 UUID, persisted).
    pub fn id(&self) -> Uuid {
        self.id
    }

    /// All partitions, indexed by partition number.
    pub fn partitions(&self) -> &[Arc<Partition>] {
        &self.partitions
    }

    /// One partition.
    pub fn partition(&self, index: i32) -> Result<&Arc<Partition>> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.partitions.get(i))
            .ok_or_else(|| Error::UnknownPartition {
                topic: self.name.clone(),
                partition: index,
            })
    }

    /// The number of partitions.
    pub fn partition_count(&self) -> i32 {
        i32::try_from(self.partitions.len()).unwrap_or(i32::MAX)
    }

    /// The topic's config overrides.
    pub fn overrides(&self) -> &BTreeMap<String, String> {
        &self.overrides
    }

    /// The effective, typed settings.
    pub fn settings(&self) -> &TopicSettings {
        &self.settings
    }

    /// Whether the topic is one of Kafka's internal topics (`__consumer_offsets`,
    /// `__transaction_state`); other names starting with `__` are ordinary topics, as in Kafka.
    pub fn is_internal(&self) -> bool {
        matches!(
            self.name.as_str(),
            "__consumer_offsets" | "__transaction_state"
        )
    }
}

/// The result of a (possibly validate-only) topic creation.
#[derive(Debug, Clone)]
pub struct TopicSummary {
    /// The topic name.
    pub name: String,
    /// The topic id (nil for validate-only requests).
    pub id: Uuid,
    /// The partition count.
    pub partitions: i32,
    /// The replication factor (always 1).
    pub replication_factor: i16,
    /// The config overrides.
    pub overrides: BTreeMap<String, String>,
}

/// A request to create a topic.
#[derive(Debug, Clone, Default)]
pub struct CreateTopic {
    /// The topic name.
    pub name: String,
    /// Partition count, `None` (or -1 on the wire) for the broker default.
    pub partitions: Option<i32>,
    /// Replication factor, `None` (or -1) for the default; only 1 is possible on one node.
    pub replication_factor: Option<i16>,
    /// Topic config overrides.
    pub configs: BTreeMap<String, String>,
    /// Check everything but create nothing.
    pub validate_only: bool,
}

/// One change of an incremental config update (IncrementalAlterConfigs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigOp {
    /// Set the key to a value.
    Set(String, String),
    /// Remove the override (back to the default).
    Delete(String),
    /// Append values to a list key.
    Append(String, String),
    /// Remove values from a list key.
    Subtract(String, String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        for ok in ["a", "A-b_c.9", &"x".repeat(249)] {
            validate_topic_name(ok).unwrap();
        }
        for bad in ["", ".", "..", "a b", "a/b", "é", &"x".repeat(250)] {
            assert!(
                matches!(
                    validate_topic_name(bad),
                    Err(Error::InvalidTopicName { .. })
                ),
                "{bad}"
            );
        }
    }
}
