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
    let view = req.stream.resolve(ctx)?;
    let (index, partition) = view.shard(&req.shard_id)?;
    let sequence = || -> Result<SequenceNumber> {
        let s = req.starting_sequence_number.as_deref().ok_or_else(|| {
            KinesisError::invalid(format!(
                "StartingSequenceNumber is required for {}",
                req.shard_iterator_type
            ))
        })?;
        let seq: SequenceNumber =
            s.parse()
                .map_err(|e: crate::sequence::InvalidSequenceNumber| {
                    KinesisError::invalid(e.to_string())
                })?;
        if seq.shard as usize != index {
            return Err(KinesisError::invalid(format!(
                "Invalid StartingSequenceNumber. It encodes a different shard than {}",
                req.shard_id
            )));
        }
        Ok(seq)
    };
    let offset: i64 = match req.shard_iterator_type.as_str() {
        "TRIM_HORIZON" => partition.log_start_offset(),
        "LATEST" => partition.high_watermark(),
        "AT_SEQUENCE_NUMBER" => i64::try_from(sequence()?.offset).unwrap_or(i64::MAX),
        "AFTER_SEQUENCE_NUMBER" => i64::try_from(sequence()?.offset)
            .unwrap_or(i64::MAX)
            .saturating_add(1),
        "AT_TIMESTAMP" => {
            let secs = req
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
                .map_or_else(|| partition.high_watermark(), |(offset, _)| offset)
        }
        other => {
            return Err(KinesisError::validation(format!(
                "1 validation error detected: Value '{other}' at 'shardIteratorType' failed to \
                 satisfy constraint: Member must satisfy enum value set: [AT_SEQUENCE_NUMBER, \
                 AFTER_SEQUENCE_NUMBER, TRIM_HORIZON, LATEST, AT_TIMESTAMP]"
            )));
        }
    };
    let offset = offset.max(0);
    let iterator = ShardIterator {
        topic_id: view.topic.id(),
        shard: u32::try_from(index).unwrap_or(u32::MAX),
        offset: offset as u64,
        issued_ms: ctx.now_ms(),
    };
    Ok(json!({ "ShardIterator": ctx.iterator_key.encode(&iterator) }))
}
