//! `ListStreams`: every visible topic the caller may DESCRIBE (with an authorizer; as Kafka
//! filters Metadata), by name, paginated.

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{limit, seconds};
use crate::authz::{Caller, may_describe};
use crate::error::{KinesisError, Result};
use crate::service::{Context, parse};
use crate::stream::{self, is_visible};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Request {
    #[serde(default)]
    limit: Option<i64>,
    #[serde(default)]
    exclusive_start_stream_name: Option<String>,
    #[serde(default)]
    next_token: Option<String>,
}

pub(crate) async fn handle(ctx: &Context, caller: &Caller, input: Value) -> Result<Value> {
    let req: Request = parse(input)?;
    let limit = limit("limit", req.limit, 100, 10_000)?;
    let after = match (&req.next_token, &req.exclusive_start_stream_name) {
        (Some(token), _) => Some(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(token)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| KinesisError::invalid("invalid NextToken"))?,
        ),
        (None, Some(name)) => Some(name.clone()),
        (None, None) => None,
    };
    let creating = i64::try_from(ctx.config.creating_delay.as_millis()).unwrap_or(i64::MAX);
    let now = ctx.now_ms();
    let topics: Vec<_> = ctx
        .broker
        .topics()
        .into_iter()
        .filter(|t| is_visible(t))
        .filter(|t| after.as_deref().is_none_or(|a| t.name() > a))
        .filter(|t| may_describe(ctx, caller, t.name()))
        .collect();
    let has_more = topics.len() > limit;
    let page: Vec<_> = topics
        .into_iter()
        .take(limit)
        .map(|t| stream::view(&ctx.broker, t))
        .collect();
    let names: Vec<&str> = page.iter().map(|v| v.name()).collect();
    let summaries: Vec<Value> = page
        .iter()
        .map(|v| {
            json!({
                "StreamName": v.name(),
                "StreamARN": stream::stream_arn(&ctx.config.region, v.name()),
                "StreamStatus": v.status(now, creating),
                "StreamModeDetails": {"StreamMode": v.meta.mode},
                "StreamCreationTimestamp": seconds(v.meta.created_ms),
            })
        })
        .collect();
    let mut out = json!({
        "StreamNames": names,
        "HasMoreStreams": has_more,
        "StreamSummaries": summaries,
    });
    if has_more && let Some(last) = names.last() {
        out["NextToken"] =
            json!(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(last.as_bytes()));
    }
    Ok(out)
}
