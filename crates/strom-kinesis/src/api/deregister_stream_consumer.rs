//! `DeregisterStreamConsumer`: drop a consumer from the stream metadata.

use serde_json::{Value, json};

use super::consumer_common::{ConsumerRef, not_found, resolve};
use crate::error::Result;
use crate::service::{Context, parse};

pub(crate) async fn handle(ctx: &Context, input: Value) -> Result<Value> {
    let r: ConsumerRef = parse(input)?;
    let (view, name) = resolve(ctx, &r)?;
    if !view.meta.consumers.iter().any(|c| c.name == name) {
        return Err(not_found(&name));
    }
    let id = view.topic.id();
    ctx.blocking(move |b| {
        Ok(b.update_stream_meta_blocking(id, move |m, _| {
            m.consumers.retain(|c| c.name != name);
            Ok(())
        })?)
    })
    .await?;
    Ok(json!({}))
}
