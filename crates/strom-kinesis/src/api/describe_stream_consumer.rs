//! `DescribeStreamConsumer`: one registered consumer, by stream ARN + name or consumer ARN.

use serde_json::{Value, json};

use super::consumer_common::{ConsumerRef, consumer_json, not_found, resolve};
use crate::error::Result;
use crate::service::{Context, parse};
use crate::stream::stream_arn;

pub(crate) async fn handle(ctx: &Context, input: Value) -> Result<Value> {
    let r: ConsumerRef = parse(input)?;
    let (view, name) = resolve(ctx, &r)?;
    let c = view
        .meta
        .consumers
        .iter()
        .find(|c| c.name == name)
        .ok_or_else(|| not_found(&name))?;
    let mut d = consumer_json(ctx, &view, c);
    d["StreamARN"] = json!(stream_arn(&ctx.config.region, view.name()));
    Ok(json!({ "ConsumerDescription": d }))
}
