//! `DescribeLimits`: fixed limits and the current open-shard and on-demand-stream counts.

use serde_json::{Value, json};

use crate::error::Result;
use crate::service::Context;
use crate::stream;

pub(crate) async fn handle(ctx: &Context, _input: Value) -> Result<Value> {
    let streams: Vec<_> = ctx
        .broker
        .topics()
        .into_iter()
        .filter(|t| stream::is_visible(t))
        .map(|t| stream::view(&ctx.broker, t))
        .collect();
    let open: usize = streams.iter().map(|v| v.open_shards().count()).sum();
    let on_demand = streams
        .iter()
        .filter(|v| v.meta.mode == "ON_DEMAND")
        .count();
    Ok(json!({
        "ShardLimit": 10_000,
        "OpenShardCount": open,
        "OnDemandStreamCount": on_demand,
        "OnDemandStreamCountLimit": 10_000,
    }))
}
