//! `DescribeStreamSummary`: the stream without its shards.

use serde::Deserialize;
use serde_json::{Value, json};

use super::{StreamRef, description_common};
use crate::error::Result;
use crate::service::{Context, parse};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Request {
    #[serde(flatten)]
    stream: StreamRef,
}

pub(crate) async fn handle(ctx: &Context, input: Value) -> Result<Value> {
    let req: Request = parse(input)?;
    let view = req.stream.resolve(ctx)?;
    let mut out = description_common(ctx, &view);
    out.insert("OpenShardCount".into(), json!(view.open_shards().count()));
    out.insert("ConsumerCount".into(), json!(view.meta.consumers.len()));
    Ok(json!({ "StreamDescriptionSummary": out }))
}
