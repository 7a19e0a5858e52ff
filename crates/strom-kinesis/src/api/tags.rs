//! `AddTagsToStream`, `RemoveTagsFromStream`, `ListTagsForStream`.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};

use super::StreamRef;
use crate::error::{KinesisError, Result};
use crate::service::{Context, parse};

const MAX_TAGS: usize = 50;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AddRequest {
    #[serde(flatten)]
    stream: StreamRef,
    tags: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RemoveRequest {
    #[serde(flatten)]
    stream: StreamRef,
    tag_keys: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListRequest {
    #[serde(flatten)]
    stream: StreamRef,
    #[serde(default)]
    exclusive_start_tag_key: Option<String>,
    #[serde(default)]
    limit: Option<i64>,
}

pub(crate) async fn add(ctx: &Context, input: Value) -> Result<Value> {
    let req: AddRequest = parse(input)?;
    let view = req.stream.resolve(ctx)?;
    let id = view.topic.id();
    ctx.blocking(move |b| {
        b.update_stream_meta_blocking(id, |m, _| {
            let mut tags = m.tags.clone();
            tags.extend(req.tags);
            if tags.len() > MAX_TAGS {
                return Err(strom_broker::Error::InvalidConfig {
                    key: "tags".to_owned(),
                    value: tags.len().to_string(),
                    reason: format!("a stream has at most {MAX_TAGS} tags"),
                });
            }
            m.tags = tags;
            Ok(())
        })
        .map_err(|e| match e {
            strom_broker::Error::InvalidConfig { reason, .. } => KinesisError::invalid(reason),
            e => e.into(),
        })
    })
    .await?;
    Ok(json!({}))
}

pub(crate) async fn remove(ctx: &Context, input: Value) -> Result<Value> {
    let req: RemoveRequest = parse(input)?;
    let view = req.stream.resolve(ctx)?;
    let id = view.topic.id();
    ctx.blocking(move |b| {
        Ok(b.update_stream_meta_blocking(id, |m, _| {
            for k in &req.tag_keys {
                m.tags.remove(k);
            }
            Ok(())
        })?)
    })
    .await?;
    Ok(json!({}))
}

pub(crate) async fn list(ctx: &Context, input: Value) -> Result<Value> {
    let req: ListRequest = parse(input)?;
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
