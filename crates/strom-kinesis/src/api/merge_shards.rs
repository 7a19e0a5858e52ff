//! `MergeShards`: close two adjacent shards and open one child covering both ranges.

use serde::Deserialize;
use serde_json::{Value, json};

use super::StreamRef;
use super::reshard::{self, child, open_shard};
use crate::error::{KinesisError, Result};
use crate::service::{Context, parse};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Request {
    #[serde(flatten)]
    stream: StreamRef,
    shard_to_merge: String,
    adjacent_shard_to_merge: String,
}

pub(crate) async fn handle(ctx: &Context, input: Value) -> Result<Value> {
    let req: Request = parse(input)?;
    let view = req.stream.resolve(ctx)?;
    let a = open_shard(&view, &req.shard_to_merge)?;
    let b = open_shard(&view, &req.adjacent_shard_to_merge)?;
    let plan: reshard::Plan = Box::new(move |meta| {
        let (Some(sa), Some(sb)) = (meta.shards.get(a), meta.shards.get(b)) else {
            return Err(KinesisError::invalid("no such shard"));
        };
        let adjacent = a != b
            && (sa.ending_hash_key.checked_add(1) == Some(sb.starting_hash_key)
                || sb.ending_hash_key.checked_add(1) == Some(sa.starting_hash_key));
        if !adjacent {
            return Err(KinesisError::invalid(format!(
                "Shards {} and {} are not adjacent",
                crate::stream::shard_id(a),
                crate::stream::shard_id(b)
            )));
        }
        let start = sa.starting_hash_key.min(sb.starting_hash_key);
        let end = sa.ending_hash_key.max(sb.ending_hash_key);
        Ok((vec![child(start, end, a, Some(b))], vec![a, b]))
    });
    reshard::reshard(ctx, &view, plan).await?;
    Ok(json!({}))
}
