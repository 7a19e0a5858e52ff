//! `UpdateStreamMode`: record `PROVISIONED` or `ON_DEMAND`.

use serde::Deserialize;
use serde_json::{Value, json};

use super::settings_common::update;
use crate::error::{KinesisError, Result};
use crate::service::{Context, parse};
use crate::stream;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Request {
    #[serde(rename = "StreamARN")]
    stream_arn: String,
    stream_mode_details: super::create_stream::ModeDetails,
}

pub(crate) async fn handle(ctx: &Context, input: Value) -> Result<Value> {
    let req: Request = parse(input)?;
    let mode = req.stream_mode_details.stream_mode;
    if mode != "PROVISIONED" && mode != "ON_DEMAND" {
        return Err(KinesisError::validation(format!(
            "1 validation error detected: Value '{mode}' at 'streamModeDetails.streamMode' failed to satisfy constraint"
        )));
    }
    let view = stream::resolve(&ctx.broker, None, Some(&req.stream_arn))?;
    update(ctx, &view, move |m| m.mode = mode).await?;
    Ok(json!({}))
}
