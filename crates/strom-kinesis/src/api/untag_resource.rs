//! `UntagResource`: drop tags by key from the stream a resource ARN names.

use serde_json::{Value, json};

use super::settings_common::{Resource, stream_of_resource, update};
use crate::error::Result;
use crate::service::{Context, parse};

pub(crate) async fn handle(ctx: &Context, input: Value) -> Result<Value> {
    let req: Resource = parse(input)?;
    let view = stream_of_resource(ctx, &req.resource_arn)?;
    let keys = req.tag_keys.unwrap_or_default();
    update(ctx, &view, move |m| {
        for k in &keys {
            m.tags.remove(k);
        }
    })
    .await?;
    Ok(json!({}))
}
