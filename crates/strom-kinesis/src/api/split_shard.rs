//! `SplitShard`: close a shard and open two children that split its hash range.

use serde::Deserialize;
use serde_json::{Value, json};

use super::StreamRef;
use super::reshard::{self, child, open_shard};
use crate::error::{KinesisError, Result};
use crate::service::{Context, parse};
use crate::stream::parse_hash_key;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Request {
    #[serde(flatten)]
    stream: StreamRef,
    shard_to_split: String,
    new_starting_hash_key: String,
}

pub(crate) async fn handle(ctx: &Context, input: Value) -> Result<Value> {
    let req: Request = parse(input)?;
    let view = req.stream.resolve(ctx)?;
    let parent = open_shard(&view, &req.shard_to_split)?;
    let new_start = parse_hash_key(&req.new_starting_hash_key)?;
    let plan: reshard::Plan = Box::new(move |meta| {
        let p = meta
            .shards
            .get(parent)
            .ok_or_else(|| KinesisError::invalid("no such shard"))?;
        if new_start <= p.starting_hash_key || new_start > p.ending_hash_key {
            return Err(KinesisError::invalid(format!(
                "NewStartingHashKey {new_start} must be greater than {} and at most {}",
                p.starting_hash_key, p.ending_hash_key
            )));
        }
        Ok((
            vec![
                child(p.starting_hash_key, new_start - 1, parent, None),
                child(new_start, p.ending_hash_key, parent, None),
            ],
            vec![parent],
        ))
    });
    reshard::reshard(ctx, &view, plan).await?;
    Ok(json!({}))
}
