//! What the four consumer actions share: how a consumer is named (stream ARN + name, or
//! consumer ARN), its ARN, its JSON shape and the not-found error. Registrations are stream
//! metadata ([`strom_broker::stream::ConsumerMeta`]).

use serde::Deserialize;
use serde_json::{Value, json};
use strom_broker::stream::ConsumerMeta;

use super::seconds;
use crate::error::{ErrorKind, KinesisError, Result};
use crate::service::Context;
use crate::stream::{self, StreamView, stream_arn};

/// A consumer named by `StreamARN` + `ConsumerName` or by `ConsumerARN`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ConsumerRef {
    #[serde(default, rename = "StreamARN")]
    pub(crate) stream_arn: Option<String>,
    #[serde(default)]
    pub(crate) consumer_name: Option<String>,
    #[serde(default, rename = "ConsumerARN")]
    pub(crate) consumer_arn: Option<String>,
}

fn consumer_arn(ctx: &Context, view: &StreamView, c: &ConsumerMeta) -> String {
    format!(
        "{}/consumer/{}:{}",
        stream_arn(&ctx.config.region, view.name()),
        c.name,
        c.created_ms / 1000
    )
}

/// The `Consumer` structure.
pub(crate) fn consumer_json(ctx: &Context, view: &StreamView, c: &ConsumerMeta) -> Value {
    json!({
        "ConsumerName": c.name,
        "ConsumerARN": consumer_arn(ctx, view, c),
        "ConsumerStatus": "ACTIVE",
        "ConsumerCreationTimestamp": seconds(c.created_ms),
    })
}

/// Resolves (stream, consumer name) from a stream ARN + name or a consumer ARN.
pub(crate) fn resolve(ctx: &Context, r: &ConsumerRef) -> Result<(StreamView, String)> {
    if let Some(arn) = &r.consumer_arn {
        let (stream_part, rest) = arn
            .split_once("/consumer/")
            .ok_or_else(|| KinesisError::invalid(format!("invalid ConsumerARN {arn:?}")))?;
        let name = rest.split(':').next().unwrap_or(rest).to_owned();
        let view = stream::resolve(&ctx.broker, None, Some(stream_part))?
            .synced_if(&ctx.broker, |v| {
                !v.meta.consumers.iter().any(|c| c.name == name)
            })?;
        return Ok((view, name));
    }
    let (Some(arn), Some(name)) = (&r.stream_arn, &r.consumer_name) else {
        return Err(KinesisError::invalid(
            "Either ConsumerARN or both StreamARN and ConsumerName must be provided",
        ));
    };
    let view = stream::resolve(&ctx.broker, None, Some(arn))?.synced_if(&ctx.broker, |v| {
        !v.meta.consumers.iter().any(|c| c.name == *name)
    })?;
    Ok((view, name.clone()))
}

/// `ResourceNotFoundException` for a consumer.
pub(crate) fn not_found(name: &str) -> KinesisError {
    KinesisError::new(
        ErrorKind::ResourceNotFound,
        format!(
            "Consumer {name} under account {} not found.",
            stream::ACCOUNT
        ),
    )
}
