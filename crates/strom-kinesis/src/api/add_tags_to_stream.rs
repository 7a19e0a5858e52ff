//! `AddTagsToStream`: merge tags into the stream's (at most 50).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};

use super::StreamRef;
use crate::error::{KinesisError, Result};
use crate::service::{Context, parse};

const MAX_TAGS: usize = 50;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Request {
    #[serde(flatten)]
    stream: StreamRef,
    tags: BTreeMap<String, String>,
}

pub(crate) async fn handle(ctx: &Context, input: Value) -> Result<Value> {
    let req: Request = parse(input)?;
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
