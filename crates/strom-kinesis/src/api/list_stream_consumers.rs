//! `ListStreamConsumers`: every consumer registered on a stream.

use serde::Deserialize;
use serde_json::{Value, json};

use super::consumer_common::consumer_json;
use crate::error::Result;
use crate::service::{Context, parse};
use crate::stream;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Request {
    #[serde(rename = "StreamARN")]
    stream_arn: String,
}

pub(crate) async fn handle(ctx: &Context, input: Value) -> Result<Value> {
    let r: Request = parse(input)?;
    let view = stream::resolve(&ctx.broker, None, Some(&r.stream_arn))?;
    let consumers: Vec<Value> = view
        .meta
        .consumers
        .iter()
        .map(|c| consumer_json(ctx, &view, c))
        .collect();
    Ok(json!({ "Consumers": consumers }))
}
