//! `ListShards`: a page of a stream's shards, with `ShardFilter` and `NextToken`.

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{StreamRef, limit};
use crate::error::{KinesisError, Result};
use crate::service::{Context, parse};
use crate::stream::{self, parse_shard_id};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Request {
    #[serde(flatten)]
    stream: StreamRef,
    #[serde(default)]
    next_token: Option<String>,
    #[serde(default)]
    exclusive_start_shard_id: Option<String>,
    #[serde(default)]
    max_results: Option<i64>,
    #[serde(default)]
    shard_filter: Option<ShardFilter>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ShardFilter {
    #[serde(rename = "Type")]
    kind: String,
    #[serde(default)]
    shard_id: Option<String>,
}

/// `<stream name>/<next shard index>`, base64.
fn encode_token(name: &str, next: usize) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{name}/{next}"))
}

fn decode_token(token: &str) -> Option<(String, usize)> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (name, next) = s.rsplit_once('/')?;
    Some((name.to_owned(), next.parse().ok()?))
}

pub(crate) async fn handle(ctx: &Context, input: Value) -> Result<Value> {
    let req: Request = parse(input)?;
    let max = limit("maxResults", req.max_results, 1000, 10_000)?;
    let (view, mut start) = match &req.next_token {
        Some(token) => {
            let (name, next) =
                decode_token(token).ok_or_else(|| KinesisError::invalid("invalid NextToken"))?;
            // AWS refuses StreamName next to NextToken, but botocore's ListShards paginator
            // sends both; accept the redundant name when it is the token's own stream.
            if req.stream.stream_name.as_deref().is_some_and(|n| n != name)
                || req.exclusive_start_shard_id.is_some()
            {
                return Err(KinesisError::invalid(
                    "NextToken and StreamName/ExclusiveStartShardId cannot be provided together.",
                ));
            }
            (stream::resolve(&ctx.broker, Some(&name), None)?, next)
        }
        None => {
            let view = req.stream.resolve(ctx)?;
            let start = match req.exclusive_start_shard_id.as_deref() {
                Some(id) => parse_shard_id(id).map_or(usize::MAX, |i| i.saturating_add(1)),
                None => 0,
            };
            (view, start)
        }
    };
    let mut open_only = false;
    if let Some(filter) = &req.shard_filter {
        match filter.kind.as_str() {
            "AFTER_SHARD_ID" => {
                let id = filter.shard_id.as_deref().ok_or_else(|| {
                    KinesisError::invalid("ShardFilter AFTER_SHARD_ID needs a ShardId")
                })?;
                let after = parse_shard_id(id)
                    .ok_or_else(|| KinesisError::invalid(format!("invalid ShardId {id:?}")))?;
                start = start.max(after.saturating_add(1));
            }
            "AT_LATEST" => open_only = true,
            "AT_TRIM_HORIZON" | "FROM_TRIM_HORIZON" | "AT_TIMESTAMP" | "FROM_TIMESTAMP" => {}
            other => {
                return Err(KinesisError::validation(format!(
                    "1 validation error detected: Value '{other}' at 'shardFilter.type' failed to satisfy constraint"
                )));
            }
        }
    }
    let total = view.meta.shards.len();
    let candidates: Vec<usize> = (start.min(total)..total)
        .filter(|&i| {
            !open_only
                || view
                    .meta
                    .shards
                    .get(i)
                    .is_some_and(|s| s.closed_at_offset.is_none())
        })
        .collect();
    let page: Vec<usize> = candidates.iter().copied().take(max).collect();
    let mut out = json!({
        "Shards": page.iter().map(|&i| view.shard_json(i)).collect::<Vec<_>>(),
    });
    if candidates.len() > page.len()
        && let Some(&last) = page.last()
    {
        out["NextToken"] = json!(encode_token(view.name(), last + 1));
    }
    Ok(out)
}
