//! `RemoveTagsFromStream`: drop tags by key (absent keys are ignored).

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
    tag_keys: Vec<String>,
}

pub(crate) async fn handle(ctx: &Context, input: Value) -> Result<Value> {
    let req: Request = parse(input)?;
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
