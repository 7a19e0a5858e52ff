//! Enhanced fan-out consumers: `RegisterStreamConsumer`, `DescribeStreamConsumer`,
//! `ListStreamConsumers`, `DeregisterStreamConsumer`. Registrations are stream metadata;
//! SubscribeToShard is not served yet.

use serde::Deserialize;
use serde_json::{Value, json};
use strom_broker::stream::ConsumerMeta;

use super::seconds;
use crate::error::{ErrorKind, KinesisError, Result};
use crate::service::{Context, parse};
use crate::stream::{self, StreamView, stream_arn, validate_name};

/// AWS's limit of registered consumers per stream.
const MAX_CONSUMERS: usize = 20;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ConsumerRef {
    #[serde(default, rename = "StreamARN")]
    stream_arn: Option<String>,
    #[serde(default)]
    consumer_name: Option<String>,
    #[serde(default, rename = "ConsumerARN")]
    consumer_arn: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListRequest {
    #[serde(rename = "StreamARN")]
    stream_arn: String,
}

fn consumer_arn(ctx: &Context, view: &StreamView, c: &ConsumerMeta) -> String {
    format!(
        "{}/consumer/{}:{}",
        stream_arn(&ctx.config.region, view.name()),
        c.name,
        c.created_ms / 1000
    )
}

fn consumer_json(ctx: &Context, view: &StreamView, c: &ConsumerMeta) -> Value {
    json!({
        "ConsumerName": c.name,
        "ConsumerARN": consumer_arn(ctx, view, c),
        "ConsumerStatus": "ACTIVE",
        "ConsumerCreationTimestamp": seconds(c.created_ms),
    })
}

/// Resolves (stream, consumer name) from a stream ARN + name or a consumer ARN.
fn resolve(ctx: &Context, r: &ConsumerRef) -> Result<(StreamView, String)> {
    if let Some(arn) = &r.consumer_arn {
        let (stream_part, rest) = arn
            .split_once("/consumer/")
            .ok_or_else(|| KinesisError::invalid(format!("invalid ConsumerARN {arn:?}")))?;
        let name = rest.split(':').next().unwrap_or(rest).to_owned();
        let view = stream::resolve(&ctx.broker, None, Some(stream_part))?;
        return Ok((view, name));
    }
    let (Some(arn), Some(name)) = (&r.stream_arn, &r.consumer_name) else {
        return Err(KinesisError::invalid(
            "Either ConsumerARN or both StreamARN and ConsumerName must be provided",
        ));
    };
    Ok((stream::resolve(&ctx.broker, None, Some(arn))?, name.clone()))
}

fn not_found(name: &str) -> KinesisError {
    KinesisError::new(
        ErrorKind::ResourceNotFound,
        format!(
            "Consumer {name} under account {} not found.",
            stream::ACCOUNT
        ),
    )
}

pub(crate) async fn register(ctx: &Context, input: Value) -> Result<Value> {
    let r: ConsumerRef = parse(input)?;
    let (view, name) = resolve(ctx, &r)?;
    validate_name(&name)?;
    let now = ctx.now_ms();
    let id = view.topic.id();
    let for_meta = name.clone();
    ctx.blocking(move |b| {
        b.update_stream_meta_blocking(id, move |m, _| {
            if m.consumers.iter().any(|c| c.name == for_meta) {
                return Err(strom_broker::Error::TopicAlreadyExists { name: for_meta });
            }
            if m.consumers.len() >= MAX_CONSUMERS {
                return Err(strom_broker::Error::InvalidPartitions {
                    count: m.consumers.len() as i32,
                    reason: "a stream has at most 20 consumers",
                });
            }
            m.consumers.push(ConsumerMeta {
                name: for_meta,
                created_ms: now,
            });
            Ok(())
        })
        .map_err(|e| match e {
            strom_broker::Error::TopicAlreadyExists { name } => KinesisError::new(
                ErrorKind::ResourceInUse,
                format!("Consumer {name} already exists"),
            ),
            strom_broker::Error::InvalidPartitions { reason, .. } => {
                KinesisError::new(ErrorKind::LimitExceeded, reason)
            }
            e => e.into(),
        })
    })
    .await?;
    let c = ConsumerMeta {
        name,
        created_ms: now,
    };
    Ok(json!({ "Consumer": consumer_json(ctx, &view, &c) }))
}

pub(crate) async fn describe(ctx: &Context, input: Value) -> Result<Value> {
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

pub(crate) async fn list(ctx: &Context, input: Value) -> Result<Value> {
    let r: ListRequest = parse(input)?;
    let view = stream::resolve(&ctx.broker, None, Some(&r.stream_arn))?;
    let consumers: Vec<Value> = view
        .meta
        .consumers
        .iter()
        .map(|c| consumer_json(ctx, &view, c))
        .collect();
    Ok(json!({ "Consumers": consumers }))
}

pub(crate) async fn deregister(ctx: &Context, input: Value) -> Result<Value> {
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
