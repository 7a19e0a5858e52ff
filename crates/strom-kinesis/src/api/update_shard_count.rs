//! `UpdateShardCount` (`UNIFORM_SCALING`): close every open shard and open `TargetShardCount`
//! children with even hash ranges; each child's parent is the old shard holding its first
//! hash key, its adjacent parent the old shard holding its last one when that differs.

use serde::Deserialize;
use serde_json::{Value, json};
use strom_broker::stream::even_hash_ranges;

use super::StreamRef;
use super::reshard::{self, child};
use crate::error::{KinesisError, Result};
use crate::service::{Context, parse};
use crate::stream::stream_arn;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Request {
    #[serde(flatten)]
    stream: StreamRef,
    target_shard_count: i64,
    #[serde(default)]
    scaling_type: Option<String>,
}

pub(crate) async fn handle(ctx: &Context, input: Value) -> Result<Value> {
    let req: Request = parse(input)?;
    let view = req.stream.resolve(ctx)?;
    if let Some(t) = req.scaling_type.as_deref()
        && t != "UNIFORM_SCALING"
    {
        return Err(KinesisError::validation(format!(
            "1 validation error detected: Value '{t}' at 'scalingType' failed to satisfy constraint: Member must satisfy enum value set: [UNIFORM_SCALING]"
        )));
    }
    let open: Vec<usize> = view.open_shards().collect();
    let current = open.len() as i64;
    let target = req.target_shard_count;
    if target < 1 || target > current.saturating_mul(2) || target.saturating_mul(2) < current {
        return Err(KinesisError::invalid(format!(
            "TargetShardCount {target} must be between half and double the current open shard count {current}"
        )));
    }
    let plan: reshard::Plan = Box::new(move |meta| {
        let holder = |hash: u128| {
            open.iter().copied().find(|&i| {
                meta.shards
                    .get(i)
                    .is_some_and(|s| s.starting_hash_key <= hash && hash <= s.ending_hash_key)
            })
        };
        let mut children = Vec::new();
        for (start, end) in even_hash_ranges(target as usize) {
            let parent = holder(start).ok_or_else(|| {
                KinesisError::invalid("the open shards do not cover the hash space")
            })?;
            let last = holder(end).filter(|&l| l != parent);
            children.push(child(start, end, parent, last));
        }
        Ok((children, open))
    });
    reshard::reshard(ctx, &view, plan).await?;
    Ok(json!({
        "StreamName": view.name(),
        "StreamARN": stream_arn(&ctx.config.region, view.name()),
        "CurrentShardCount": current,
        "TargetShardCount": target,
    }))
}
