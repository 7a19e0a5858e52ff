//! `DescribeStream`: the stream and a page of its shards.

use serde::Deserialize;
use serde_json::{Value, json};

use super::{StreamRef, description_common, limit};
use crate::error::Result;
use crate::service::{Context, parse};
use crate::stream::parse_shard_id;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Request {
    #[serde(flatten)]
    stream: StreamRef,
    #[serde(default)]
    limit: Option<i64>,
    #[serde(default)]
    exclusive_start_shard_id: Option<String>,
}

pub(crate) async fn handle(ctx: &Context, input: Value) -> Result<Value> {
    let req: Request = parse(input)?;
    let view = req.stream.resolve(ctx)?;
    let limit = limit("limit", req.limit, 100, 10_000)?;
    let start = match req.exclusive_start_shard_id.as_deref() {
        Some(id) => parse_shard_id(id).map_or(usize::MAX, |i| i.saturating_add(1)),
        None => 0,
    };
    let total = view.meta.shards.len();
    let shards: Vec<Value> = (start.min(total)..total)
        .take(limit)
        .map(|i| view.shard_json(i))
        .collect();
    let has_more = start.saturating_add(shards.len()) < total;
    let mut out = description_common(ctx, &view);
    out.insert("Shards".into(), Value::Array(shards));
    out.insert("HasMoreShards".into(), json!(has_more));
    Ok(json!({ "StreamDescription": out }))
}
