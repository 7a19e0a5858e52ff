//! `GetShardIterator`: a signed token for a position in a shard.

use serde::Deserialize;
use serde_json::{Value, json};

use super::StreamRef;
use crate::error::{KinesisError, Result};
use crate::iterator::ShardIterator;
use crate::sequence::SequenceNumber;
use crate::service::{Context, parse};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Request {
    #[serde(flatten)]
    stream: StreamRef,
    shard_id: String,
    shard_iterator_type: String,
    #[serde(default)]
    starting_sequence_number: Option<String>,
    /// Epoch seconds (the wire layer turned CBOR milliseconds into seconds).
    #[serde(default)]
    timestamp: Option<f64>,
}

pub(crate) async fn handle(ctx: &Context, input: Value) -> Result<Value> {
    let req: Request = parse(input)?;
    let view = req
        .stream
        .resolve(ctx)?
        .synced_if(&ctx.broker, |v| v.shard(&req.shard_id).is_err())?;
    let (index, partition) = view.shard(&req.shard_id)?;
    let position = Position {
        kind: &req.shard_iterator_type,
        sequence_number: req.starting_sequence_number.as_deref(),
        timestamp: req.timestamp,
    };
    let offset = start_offset(ctx, partition, index, &req.shard_id, &position).await?;
    let iterator = ShardIterator {
        topic_id: view.topic.id(),
        shard: u32::try_from(index).unwrap_or(u32::MAX),
        offset: offset as u64,
        issued_ms: ctx.now_ms(),
    };
    Ok(json!({ "ShardIterator": ctx.iterator_key.encode(&iterator) }))
}

/// A starting position, as `GetShardIterator` and `SubscribeToShard` take it.
#[derive(Debug)]
pub(crate) struct Position<'a> {
    pub(crate) kind: &'a str,
    pub(crate) sequence_number: Option<&'a str>,
    /// Epoch seconds.
    pub(crate) timestamp: Option<f64>,
}

/// The first offset to read for a starting position (never negative).
pub(crate) async fn start_offset(
    ctx: &Context,
    partition: &std::sync::Arc<strom_broker::Partition>,
    index: usize,
    shard_id: &str,
    position: &Position<'_>,
) -> Result<i64> {
    let sequence = || -> Result<SequenceNumber> {
        let s = position.sequence_number.ok_or_else(|| {
            KinesisError::invalid(format!(
                "StartingSequenceNumber is required for {}",
                position.kind
            ))
        })?;
        let seq: SequenceNumber =
            s.parse()
                .map_err(|e: crate::sequence::InvalidSequenceNumber| {
                    KinesisError::invalid(e.to_string())
                })?;
        if seq.shard as usize != index {
            return Err(KinesisError::invalid(format!(
                "Invalid StartingSequenceNumber. It encodes a different shard than {shard_id}"
            )));
        }
        Ok(seq)
    };
    let offset: i64 = match position.kind {
        "TRIM_HORIZON" => partition.log_start_offset(),
        // Readers see only committed records, so "just after the most recent record" is the
        // last stable offset: starting at the high watermark would skip the records of a
        // transaction still open at that moment once it commits.
        "LATEST" => partition.last_stable_offset(),
        "AT_SEQUENCE_NUMBER" => i64::try_from(sequence()?.offset).unwrap_or(i64::MAX),
        "AFTER_SEQUENCE_NUMBER" => i64::try_from(sequence()?.offset)
            .unwrap_or(i64::MAX)
            .saturating_add(1),
        "AT_TIMESTAMP" => {
            let secs = position
                .timestamp
                .ok_or_else(|| KinesisError::invalid("Timestamp is required for AT_TIMESTAMP"))?;
            if !secs.is_finite() {
                return Err(KinesisError::invalid("Timestamp must be a finite number"));
            }
            let ms = (secs * 1000.0).round() as i64;
            if ms > ctx.now_ms() + 60_000 {
                return Err(KinesisError::invalid(format!(
                    "The timestampInMillis parameter cannot be greater than the currentTimestampInMillis. timestampInMillis: {ms}, currentTimestampInMillis: {}",
                    ctx.now_ms()
                )));
            }
            let p = std::sync::Arc::clone(partition);
            ctx.blocking(move |_| Ok(p.offset_for_timestamp_blocking(ms)?))
                .await?
                .map_or_else(|| partition.last_stable_offset(), |(offset, _)| offset)
        }
        other => {
            return Err(KinesisError::validation(format!(
                "1 validation error detected: Value '{other}' at 'shardIteratorType' failed to \
                 satisfy constraint: Member must satisfy enum value set: [AT_SEQUENCE_NUMBER, \
                 AFTER_SEQUENCE_NUMBER, TRIM_HORIZON, LATEST, AT_TIMESTAMP]"
            )));
        }
    };
    Ok(offset.max(0))
}
