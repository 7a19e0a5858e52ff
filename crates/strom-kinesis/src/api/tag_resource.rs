//! `TagResource`: tags on a stream named by its ARN (or one of its consumers' ARNs).

use serde_json::{Value, json};

use super::settings_common::{Resource, stream_of_resource, update};
use crate::error::Result;
use crate::service::{Context, parse};

pub(crate) async fn handle(ctx: &Context, input: Value) -> Result<Value> {
    let req: Resource = parse(input)?;
    let view = stream_of_resource(ctx, &req.resource_arn)?;
    let tags = req.tags.unwrap_or_default();
    update(ctx, &view, move |m| m.tags.extend(tags)).await?;
    Ok(json!({}))
}
