//! `PutRecord`: one record, through the same path as `PutRecords`.

use serde::Deserialize;
use serde_json::{Value, json};

use super::StreamRef;
use super::put_records::{Entry, put, sequence_number};
use crate::error::{ErrorKind, KinesisError, Result};
use crate::sequence::SequenceNumber;
use crate::service::{Context, parse};
use crate::stream::shard_id;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Request {
    #[serde(flatten)]
    stream: StreamRef,
    #[serde(flatten)]
    entry: Entry,
    #[serde(default)]
    sequence_number_for_ordering: Option<String>,
}

pub(crate) async fn handle(ctx: &Context, input: Value) -> Result<Value> {
    let req: Request = parse(input)?;
    let view = req.stream.resolve(ctx)?;
    // Appends to a shard are serialised by the log, so every record already gets a sequence
    // number greater than any earlier one in its shard; the parameter only needs to be valid.
    if let Some(s) = &req.sequence_number_for_ordering {
        s.parse::<SequenceNumber>()
            .map_err(|e| KinesisError::invalid(e.to_string()))?;
    }
    let (view, results) = put(ctx, &view, std::slice::from_ref(&req.entry)).await?;
    let result = results
        .into_iter()
        .next()
        .unwrap_or_else(|| Err(KinesisError::new(ErrorKind::InternalFailure, "no result")));
    let (shard, offset) = result?;
    let encryption = if view.meta.encryption_key.is_some() {
        "KMS"
    } else {
        "NONE"
    };
    Ok(json!({
        "ShardId": shard_id(shard),
        "SequenceNumber": sequence_number(shard, offset),
        "EncryptionType": encryption,
    }))
}
