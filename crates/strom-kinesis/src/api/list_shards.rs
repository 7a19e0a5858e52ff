//! `ListShards`: a page of a stream's shards, with `ShardFilter` and `NextToken`.

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{StreamRef, limit};
use crate::error::{KinesisError, Result};
use crate::service::{Context, parse};
use crate::stream::{self, parse_shard_id};
use strom_broker::stream::ShardMeta;

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
    /// Epoch seconds (the JSON model's timestamp shape; CBOR's tag 1 arrives converted).
    #[serde(default)]
    timestamp: Option<f64>,
}

/// Which shards a `ShardFilter` keeps, besides where the page starts.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Keep {
    /// Open now (`AT_LATEST`).
    Open,
    /// Open at this time, epoch ms (`AT_TIMESTAMP`, `AT_TRIM_HORIZON`).
    OpenAt(i64),
    /// Open at this time or later, epoch ms (`FROM_TIMESTAMP`, `FROM_TRIM_HORIZON`, the
    /// default, `AFTER_SHARD_ID`).
    OpenFrom(i64),
}

/// The filter's timestamp in epoch ms.
fn filter_ms(filter: &ShardFilter) -> Result<i64> {
    let t = filter.timestamp.ok_or_else(|| {
        KinesisError::invalid(format!(
            "ShardFilter {} needs a Timestamp",
            filter.kind.as_str()
        ))
    })?;
    if !t.is_finite() {
        return Err(KinesisError::invalid("Timestamp must be a finite number"));
    }
    Ok((t * 1000.0).round() as i64)
}

/// What `filter` keeps, and the first shard index it allows. `trim_ms` is the stream's trim
/// horizon as a time: now minus the retention period, but not before the stream was created.
fn keep(filter: Option<&ShardFilter>, trim_ms: i64) -> Result<(Keep, usize)> {
    let Some(filter) = filter else {
        return Ok((Keep::OpenFrom(trim_ms), 0));
    };
    if filter.shard_id.is_some() && filter.kind != "AFTER_SHARD_ID" {
        return Err(KinesisError::invalid(
            "ShardId can only be used with ShardFilter type AFTER_SHARD_ID",
        ));
    }
    if filter.timestamp.is_some()
        && !matches!(filter.kind.as_str(), "AT_TIMESTAMP" | "FROM_TIMESTAMP")
    {
        return Err(KinesisError::invalid(
            "Timestamp can only be used with ShardFilter types AT_TIMESTAMP and FROM_TIMESTAMP",
        ));
    }
    Ok(match filter.kind.as_str() {
        "AFTER_SHARD_ID" => {
            let id = filter.shard_id.as_deref().ok_or_else(|| {
                KinesisError::invalid("ShardFilter AFTER_SHARD_ID needs a ShardId")
            })?;
            let after = parse_shard_id(id)
                .ok_or_else(|| KinesisError::invalid(format!("invalid ShardId {id:?}")))?;
            (Keep::OpenFrom(trim_ms), after.saturating_add(1))
        }
        "AT_LATEST" => (Keep::Open, 0),
        "AT_TRIM_HORIZON" => (Keep::OpenAt(trim_ms), 0),
        "FROM_TRIM_HORIZON" => (Keep::OpenFrom(trim_ms), 0),
        "AT_TIMESTAMP" => (Keep::OpenAt(filter_ms(filter)?), 0),
        // AWS: a time before the trim horizon is corrected to the trim horizon.
        "FROM_TIMESTAMP" => (Keep::OpenFrom(filter_ms(filter)?.max(trim_ms)), 0),
        other => {
            return Err(KinesisError::validation(format!(
                "1 validation error detected: Value '{other}' at 'shardFilter.type' failed to satisfy constraint: \
                 Member must satisfy enum value set: [AFTER_SHARD_ID, AT_TRIM_HORIZON, FROM_TRIM_HORIZON, AT_LATEST, AT_TIMESTAMP, FROM_TIMESTAMP]"
            )));
        }
    })
}

impl Keep {
    fn keeps(self, shard: &ShardMeta, stream_created_ms: i64) -> bool {
        match self {
            Keep::Open => !shard.is_closed(),
            Keep::OpenAt(t) => shard.open_at(stream_created_ms, t),
            Keep::OpenFrom(t) => shard.open_from(t),
        }
    }
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
    let (view, start) = match &req.next_token {
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
    let meta = &view.meta;
    let retention_ms = i64::from(meta.retention_hours).saturating_mul(3_600_000);
    let trim_ms = ctx
        .now_ms()
        .saturating_sub(retention_ms)
        .max(meta.created_ms);
    let (keep, first) = keep(req.shard_filter.as_ref(), trim_ms)?;
    let start = start.max(first);
    let total = meta.shards.len();
    let candidates: Vec<usize> = (start.min(total)..total)
        .filter(|&i| {
            meta.shards
                .get(i)
                .is_some_and(|s| keep.keeps(s, meta.created_ms))
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
