//! Actions that only change stream settings Strom records but does not enforce (encryption,
//! enhanced monitoring, stream mode) or that describe fixed limits. Accepted so that no SDK
//! call meets `UnknownOperationException`.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};

use super::StreamRef;
use crate::error::{KinesisError, Result};
use crate::service::{Context, parse};
use crate::stream::{self, stream_arn};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Encryption {
    #[serde(flatten)]
    stream: StreamRef,
    encryption_type: String,
    key_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Monitoring {
    #[serde(flatten)]
    stream: StreamRef,
    shard_level_metrics: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Mode {
    #[serde(rename = "StreamARN")]
    stream_arn: String,
    stream_mode_details: super::create_stream::ModeDetails,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Resource {
    #[serde(rename = "ResourceARN")]
    resource_arn: String,
    #[serde(default)]
    tags: Option<BTreeMap<String, String>>,
    #[serde(default)]
    tag_keys: Option<Vec<String>>,
}

async fn update(
    ctx: &Context,
    view: &stream::StreamView,
    f: impl FnOnce(&mut strom_broker::stream::StreamMeta) + Send + 'static,
) -> Result<()> {
    let id = view.topic.id();
    ctx.blocking(move |b| {
        Ok(b.update_stream_meta_blocking(id, move |m, _| {
            f(m);
            Ok(())
        })?)
    })
    .await
}

pub(crate) async fn start_encryption(ctx: &Context, input: Value) -> Result<Value> {
    let req: Encryption = parse(input)?;
    if req.encryption_type != "KMS" {
        return Err(KinesisError::invalid("EncryptionType must be KMS"));
    }
    let view = req.stream.resolve(ctx)?;
    update(ctx, &view, move |m| m.encryption_key = Some(req.key_id)).await?;
    Ok(json!({}))
}

pub(crate) async fn stop_encryption(ctx: &Context, input: Value) -> Result<Value> {
    let req: Encryption = parse(input)?;
    let view = req.stream.resolve(ctx)?;
    update(ctx, &view, |m| m.encryption_key = None).await?;
    Ok(json!({}))
}

async fn monitoring(ctx: &Context, input: Value, enable: bool) -> Result<Value> {
    let req: Monitoring = parse(input)?;
    let view = req.stream.resolve(ctx)?;
    let current = view.meta.shard_level_metrics.clone();
    let wanted = req.shard_level_metrics;
    let all = [
        "IncomingBytes",
        "IncomingRecords",
        "OutgoingBytes",
        "OutgoingRecords",
        "WriteProvisionedThroughputExceeded",
        "ReadProvisionedThroughputExceeded",
        "IteratorAgeMilliseconds",
    ];
    let expand = |v: &[String]| -> Vec<String> {
        if v.iter().any(|m| m == "ALL") {
            all.iter().map(|s| (*s).to_owned()).collect()
        } else {
            v.to_vec()
        }
    };
    let wanted = expand(&wanted);
    let mut desired: Vec<String> = if enable {
        let mut d = current.clone();
        for w in &wanted {
            if !d.contains(w) {
                d.push(w.clone());
            }
        }
        d
    } else {
        current
            .iter()
            .filter(|m| !wanted.contains(m))
            .cloned()
            .collect()
    };
    desired.sort();
    let stored = desired.clone();
    update(ctx, &view, move |m| m.shard_level_metrics = stored).await?;
    Ok(json!({
        "StreamName": view.name(),
        "StreamARN": stream_arn(&ctx.config.region, view.name()),
        "CurrentShardLevelMetrics": current,
        "DesiredShardLevelMetrics": desired,
    }))
}

pub(crate) async fn enable_monitoring(ctx: &Context, input: Value) -> Result<Value> {
    monitoring(ctx, input, true).await
}

pub(crate) async fn disable_monitoring(ctx: &Context, input: Value) -> Result<Value> {
    monitoring(ctx, input, false).await
}

pub(crate) async fn update_mode(ctx: &Context, input: Value) -> Result<Value> {
    let req: Mode = parse(input)?;
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

pub(crate) async fn describe_limits(ctx: &Context, _input: Value) -> Result<Value> {
    let streams: Vec<_> = ctx
        .broker
        .topics()
        .into_iter()
        .filter(|t| stream::is_visible(t))
        .map(|t| stream::view(&ctx.broker, t))
        .collect();
    let open: usize = streams.iter().map(|v| v.open_shards().count()).sum();
    let on_demand = streams
        .iter()
        .filter(|v| v.meta.mode == "ON_DEMAND")
        .count();
    Ok(json!({
        "ShardLimit": 10_000,
        "OpenShardCount": open,
        "OnDemandStreamCount": on_demand,
        "OnDemandStreamCountLimit": 10_000,
    }))
}

pub(crate) async fn describe_account_settings(_ctx: &Context, _input: Value) -> Result<Value> {
    Ok(json!({}))
}

pub(crate) async fn accepted(_ctx: &Context, _input: Value) -> Result<Value> {
    Ok(json!({}))
}

pub(crate) async fn get_resource_policy(_ctx: &Context, _input: Value) -> Result<Value> {
    Ok(json!({ "Policy": "{}" }))
}

fn stream_of_resource(ctx: &Context, arn: &str) -> Result<stream::StreamView> {
    let stream_arn = arn.split("/consumer/").next().unwrap_or(arn);
    stream::resolve(&ctx.broker, None, Some(stream_arn))
}

pub(crate) async fn tag_resource(ctx: &Context, input: Value) -> Result<Value> {
    let req: Resource = parse(input)?;
    let view = stream_of_resource(ctx, &req.resource_arn)?;
    let tags = req.tags.unwrap_or_default();
    update(ctx, &view, move |m| m.tags.extend(tags)).await?;
    Ok(json!({}))
}

pub(crate) async fn untag_resource(ctx: &Context, input: Value) -> Result<Value> {
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

pub(crate) async fn list_tags_for_resource(ctx: &Context, input: Value) -> Result<Value> {
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
