//! What the settings actions share: a stream-metadata update on the blocking pool, the
//! enhanced-monitoring change, the stream a resource ARN names, and the resource request.
//! These settings are recorded (and shown by `DescribeStream`), not enforced.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};

use super::StreamRef;
use crate::error::{KinesisError, Result};
use crate::service::{Context, parse};
use crate::stream::{self, stream_arn};

/// `StartStreamEncryption` / `StopStreamEncryption`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Encryption {
    #[serde(flatten)]
    pub(crate) stream: StreamRef,
    pub(crate) encryption_type: String,
    pub(crate) key_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Monitoring {
    #[serde(flatten)]
    stream: StreamRef,
    shard_level_metrics: Vec<String>,
}

/// `TagResource`, `UntagResource`, `ListTagsForResource`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Resource {
    #[serde(rename = "ResourceARN")]
    pub(crate) resource_arn: String,
    #[serde(default)]
    pub(crate) tags: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub(crate) tag_keys: Option<Vec<String>>,
}

/// Applies `f` to the stream's metadata, durably.
pub(crate) async fn update(
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

/// `EnableEnhancedMonitoring` (`enable`) or `DisableEnhancedMonitoring`.
pub(crate) async fn monitoring(ctx: &Context, input: Value, enable: bool) -> Result<Value> {
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

/// The stream a resource ARN (a stream's or one of its consumers') names.
pub(crate) fn stream_of_resource(ctx: &Context, arn: &str) -> Result<stream::StreamView> {
    let stream_arn = arn.split("/consumer/").next().unwrap_or(arn);
    stream::resolve(&ctx.broker, None, Some(stream_arn))
}

/// `InvalidArgumentException` unless the encryption type is `KMS`.
pub(crate) fn check_kms(encryption_type: &str) -> Result<()> {
    if encryption_type != "KMS" {
        return Err(KinesisError::invalid("EncryptionType must be KMS"));
    }
    Ok(())
}
