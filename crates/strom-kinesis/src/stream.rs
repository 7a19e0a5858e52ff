//! The Kinesis view of a topic: names, ARNs, shard ids, hash-key ranges, status.

use std::sync::Arc;

use md5::{Digest as _, Md5};
use serde_json::{Value, json};
use strom_broker::stream::StreamMeta;
use strom_broker::{Broker, Partition, Topic};

use crate::error::{KinesisError, Result};
use crate::sequence::SequenceNumber;

/// The account id in ARNs.
pub const ACCOUNT: &str = "000000000000";

/// The longest stream name AWS accepts.
pub const MAX_NAME_LEN: usize = 128;

/// A resolved stream: its topic and its Kinesis metadata (stored or derived).
#[derive(Debug, Clone)]
pub struct StreamView {
    /// The topic.
    pub topic: Arc<Topic>,
    /// The metadata.
    pub meta: Arc<StreamMeta>,
}

/// `shardId-000000000007` for partition 7.
pub fn shard_id(index: usize) -> String {
    format!("shardId-{index:012}")
}

/// The partition index of a shard id. Accepts `shardId-<digits>` and, like AWS, bare digits.
pub fn parse_shard_id(id: &str) -> Option<usize> {
    let digits = id.strip_prefix("shardId-").unwrap_or(id);
    if digits.is_empty() || digits.len() > 12 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The ARN of a stream.
pub fn stream_arn(region: &str, name: &str) -> String {
    format!("arn:aws:kinesis:{region}:{ACCOUNT}:stream/{name}")
}

/// The stream name in an ARN.
pub fn name_from_arn(arn: &str) -> Result<&str> {
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(_), Some("kinesis"), Some(_), Some(_), Some(res)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(KinesisError::invalid(format!("invalid stream ARN {arn:?}")));
    };
    let name = res.strip_prefix("stream/").unwrap_or(res);
    let name = name.split('/').next().unwrap_or(name);
    validate_name(name)?;
    Ok(name)
}

/// AWS's rules for stream (and consumer) names: 1..=128 of `[a-zA-Z0-9_.-]`.
pub fn validate_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > MAX_NAME_LEN
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
    {
        return Err(KinesisError::validation(format!(
            "1 validation error detected: Value '{}' at 'streamName' failed to satisfy constraint: \
             Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+ and have length \
             between 1 and {MAX_NAME_LEN}",
            name.chars().take(200).collect::<String>()
        )));
    }
    Ok(())
}

/// Topics Kinesis never shows (Kafka-internal ones).
pub fn is_visible(topic: &Topic) -> bool {
    !topic.is_internal() && !topic.name().starts_with("__")
}

/// Finds a stream by name or ARN (at least one must be given).
pub fn resolve(broker: &Broker, name: Option<&str>, arn: Option<&str>) -> Result<StreamView> {
    let name = match (name, arn) {
        (Some(n), _) => {
            validate_name(n)?;
            n
        }
        (None, Some(a)) => name_from_arn(a)?,
        (None, None) => {
            return Err(KinesisError::invalid(
                "Either StreamName or StreamARN must be provided",
            ));
        }
    };
    let topic = match broker.topic(name) {
        Ok(t) => t,
        // Cluster mode: another broker may have created it since this one last read the
        // shared metadata (every 250 ms); a miss reads it first, as Kafka requests do.
        Err(_) if broker.live_brokers().is_some() => {
            tokio::task::block_in_place(|| broker.topic_or_create_blocking(name, false))
                .map_err(|_| KinesisError::stream_not_found(name))?
        }
        Err(_) => return Err(KinesisError::stream_not_found(name)),
    };
    if !is_visible(&topic) {
        return Err(KinesisError::stream_not_found(name));
    }
    Ok(view(broker, topic))
}

/// The Kinesis view of a topic.
pub fn view(broker: &Broker, topic: Arc<Topic>) -> StreamView {
    let meta = match broker.stream_meta(topic.id()) {
        Some(m) => m,
        None => Arc::new(StreamMeta::derived(
            topic.partition_count(),
            topic.settings().retention_ms,
        )),
    };
    StreamView { topic, meta }
}

impl StreamView {
    /// The stream name.
    pub fn name(&self) -> &str {
        self.topic.name()
    }

    /// The same stream as the broker has it now (its topic by id, and its metadata), or
    /// `ResourceNotFoundException` when it was deleted meanwhile.
    pub fn refresh(&self, broker: &Broker) -> Result<StreamView> {
        let topic = broker
            .topic_by_id(self.topic.id())
            .map_err(|_| KinesisError::stream_not_found(self.name()))?;
        Ok(view(broker, topic))
    }

    /// `CREATING`, `UPDATING` or `ACTIVE` at `now_ms`.
    pub fn status(&self, now_ms: i64, creating_ms: i64) -> &'static str {
        if now_ms < self.meta.created_ms.saturating_add(creating_ms) {
            "CREATING"
        } else if now_ms < self.meta.updating_until_ms {
            "UPDATING"
        } else {
            "ACTIVE"
        }
    }

    /// The partition of shard `index`, if the shard exists.
    pub fn partition(&self, index: usize) -> Option<&Arc<Partition>> {
        if index < self.meta.shards.len() {
            self.topic.partitions().get(index)
        } else {
            None
        }
    }

    /// The partition of a shard id, or `ResourceNotFoundException`.
    pub fn shard(&self, shard_id_str: &str) -> Result<(usize, &Arc<Partition>)> {
        parse_shard_id(shard_id_str)
            .and_then(|i| self.partition(i).map(|p| (i, p)))
            .ok_or_else(|| {
                KinesisError::new(
                    crate::error::ErrorKind::ResourceNotFound,
                    format!(
                        "Shard {shard_id_str} in stream {} under account {ACCOUNT} does not exist",
                        self.name()
                    ),
                )
            })
    }

    /// This view, or in cluster mode, when `missing` holds for it (a shard or consumer named
    /// by the request is not in it), the stream as it is after reading what other brokers
    /// appended to the shared metadata since the last poll (a shard another broker just made
    /// by resharding, a consumer it just registered).
    pub fn synced_if(
        self,
        broker: &Broker,
        missing: impl FnOnce(&StreamView) -> bool,
    ) -> Result<StreamView> {
        if broker.live_brokers().is_none() || !missing(&self) {
            return Ok(self);
        }
        if let Err(e) = tokio::task::block_in_place(|| broker.sync_metadata_blocking()) {
            tracing::warn!(error = %e, "reading other brokers' metadata failed");
        }
        self.refresh(broker)
    }

    /// Indexes of the open shards.
    pub fn open_shards(&self) -> impl Iterator<Item = usize> + '_ {
        self.meta
            .shards
            .iter()
            .enumerate()
            .filter(|(_, s)| s.closed_at_offset.is_none())
            .map(|(i, _)| i)
    }

    /// The open shard whose hash range holds `hash`.
    pub fn shard_for_hash(&self, hash: u128) -> Option<usize> {
        self.meta.shards.iter().enumerate().find_map(|(i, s)| {
            (s.closed_at_offset.is_none()
                && s.starting_hash_key <= hash
                && hash <= s.ending_hash_key
                && i < self.topic.partitions().len())
            .then_some(i)
        })
    }

    /// The JSON `Shard` structure of shard `index`.
    pub fn shard_json(&self, index: usize) -> Value {
        let Some(s) = self.meta.shards.get(index) else {
            return Value::Null;
        };
        let shard = u32::try_from(index).unwrap_or(u32::MAX);
        let mut range = json!({
            "StartingSequenceNumber": SequenceNumber::new(shard, 0).to_string(),
        });
        if let Some(end) = s.closed_at_offset {
            range["EndingSequenceNumber"] = Value::String(
                SequenceNumber::new(shard, end.saturating_sub(1).max(0) as u64).to_string(),
            );
        }
        let mut out = json!({
            "ShardId": shard_id(index),
            "HashKeyRange": {
                "StartingHashKey": s.starting_hash_key.to_string(),
                "EndingHashKey": s.ending_hash_key.to_string(),
            },
            "SequenceNumberRange": range,
        });
        if let Some(p) = s.parent {
            out["ParentShardId"] = Value::String(shard_id(p.max(0) as usize));
        }
        if let Some(p) = s.adjacent_parent {
            out["AdjacentParentShardId"] = Value::String(shard_id(p.max(0) as usize));
        }
        out
    }
}

/// MD5 of the partition key as a big-endian 128-bit integer: the key's hash key.
pub fn hash_key(partition_key: &str) -> u128 {
    u128::from_be_bytes(Md5::digest(partition_key.as_bytes()).into())
}

/// Parses an `ExplicitHashKey` (decimal, `0..=2^128-1`).
pub fn parse_hash_key(s: &str) -> Result<u128> {
    if s.is_empty() || s.len() > 39 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(KinesisError::invalid(format!(
            "Invalid ExplicitHashKey. ExplicitHashKey must be in the range: [0, 2^128-1]. Specified value was {s}"
        )));
    }
    s.parse().map_err(|_| {
        KinesisError::invalid(format!(
            "Invalid ExplicitHashKey. ExplicitHashKey must be in the range: [0, 2^128-1]. Specified value was {s}"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ids() {
        assert_eq!(shard_id(7), "shardId-000000000007");
        assert_eq!(parse_shard_id("shardId-000000000007"), Some(7));
        assert_eq!(parse_shard_id("7"), Some(7));
        assert_eq!(parse_shard_id("shardId-x"), None);
        assert_eq!(
            name_from_arn("arn:aws:kinesis:us-east-1:000000000000:stream/abc").unwrap(),
            "abc"
        );
        assert!(name_from_arn("arn:aws:s3:::b").is_err());
        assert!(validate_name("a b").is_err());
        assert!(validate_name(&"a".repeat(129)).is_err());
        assert_eq!(parse_hash_key(&u128::MAX.to_string()).unwrap(), u128::MAX);
        assert!(parse_hash_key("340282366920938463463374607431768211456").is_err());
        // MD5("") = d41d8cd98f00b204e9800998ecf8427e
        assert_eq!(hash_key(""), 0xd41d8cd98f00b204e9800998ecf8427e);
    }
}
