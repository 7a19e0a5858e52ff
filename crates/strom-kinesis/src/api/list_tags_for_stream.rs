//! `ListTagsForStream`: a page of tags in key order (`ExclusiveStartTagKey`, `Limit`).

use serde::Deserialize;
use serde_json::{Value, json};

use super::StreamRef;
use crate::error::Result;
use crate::service::{Context, parse};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Request {
    #[serde(flatten)]
    stream: StreamRef,
    #[serde(default)]
    exclusive_start_tag_key: Option<String>,
    #[serde(default)]
    limit: Option<i64>,
}

pub(crate) async fn handle(ctx: &Context, input: Value) -> Result<Value> {
    let req: Request = parse(input)?;
    let view = req.stream.resolve(ctx)?;
    let limit = super::limit("limit", req.limit, 50, 50)?;
    let tags: Vec<(&String, &String)> = view
        .meta
        .tags
        .iter()
        .filter(|(k, _)| req.exclusive_start_tag_key.as_ref().is_none_or(|s| *k > s))
        .collect();
    let has_more = tags.len() > limit;
    let page: Vec<Value> = tags
        .into_iter()
        .take(limit)
        .map(|(k, v)| json!({"Key": k, "Value": v}))
        .collect();
    Ok(json!({"Tags": page, "HasMoreTags": has_more}))
}
