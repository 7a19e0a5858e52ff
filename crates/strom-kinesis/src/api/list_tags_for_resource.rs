//! `ListTagsForResource`: every tag of the stream a resource ARN names.

use serde_json::{Value, json};

use super::settings_common::{Resource, stream_of_resource};
use crate::error::Result;
use crate::service::{Context, parse};

pub(crate) async fn handle(ctx: &Context, input: Value) -> Result<Value> {
    let req: Resource = parse(input)?;
    let view = stream_of_resource(ctx, &req.resource_arn)?;
    let tags: Vec<Value> = view
        .meta
        .tags
        .iter()
        .map(|(k, v)| json!({"Key": k, "Value": v}))
        .collect();
    Ok(json!({ "Tags": tags }))
}
