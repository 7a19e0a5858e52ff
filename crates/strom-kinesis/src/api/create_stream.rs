//! `CreateStream`: a topic with one partition per shard and Kinesis metadata.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};
use strom_broker::CreateTopic;
use strom_broker::stream::StreamMeta;

use crate::error::{ErrorKind, KinesisError, Result};
use crate::service::{Context, parse};
use crate::stream::{ACCOUNT, validate_name};

/// Shards of an on-demand stream (AWS starts on-demand streams with 4).
pub(crate) const ON_DEMAND_SHARDS: i64 = 4;
/// The most shards one stream may have here.
pub(crate) const MAX_SHARDS: i64 = 10_000;
/// Kinesis records are up to 1 MiB and PutRecords up to 5 MiB: batches must fit.
pub(crate) const MAX_MESSAGE_BYTES: &str = "10485760";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Request {
    stream_name: String,
    #[serde(default)]
    shard_count: Option<i64>,
    #[serde(default)]
    stream_mode_details: Option<ModeDetails>,
    #[serde(default)]
    tags: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ModeDetails {
    pub(crate) stream_mode: String,
}

pub(crate) async fn handle(ctx: &Context, input: Value) -> Result<Value> {
    let req: Request = parse(input)?;
    validate_name(&req.stream_name)?;
    let mode = req
        .stream_mode_details
        .map(|m| m.stream_mode)
        .unwrap_or_else(|| "PROVISIONED".to_owned());
    let shards = match (mode.as_str(), req.shard_count) {
        ("ON_DEMAND", None) => ON_DEMAND_SHARDS,
        ("ON_DEMAND" | "PROVISIONED", Some(n)) => n,
        ("PROVISIONED", None) => {
            return Err(KinesisError::invalid(
                "ShardCount is required for a PROVISIONED stream",
            ));
        }
        (other, _) => {
            return Err(KinesisError::validation(format!(
                "1 validation error detected: Value '{other}' at 'streamModeDetails.streamMode' \
                 failed to satisfy constraint: Member must satisfy enum value set: [ON_DEMAND, PROVISIONED]"
            )));
        }
    };
    if shards < 1 {
        return Err(KinesisError::validation(format!(
            "1 validation error detected: Value '{shards}' at 'shardCount' failed to satisfy \
             constraint: Member must have value greater than or equal to 1"
        )));
    }
    if shards > MAX_SHARDS {
        return Err(KinesisError::new(
            ErrorKind::LimitExceeded,
            format!(
                "This request would exceed the shard limit for the account {ACCOUNT}. Requested {shards}, limit {MAX_SHARDS}."
            ),
        ));
    }
    let mut meta = StreamMeta::new(shards as usize, &mode, ctx.now_ms());
    meta.tags = req.tags.unwrap_or_default();
    let configs = BTreeMap::from([
        ("max.message.bytes".to_owned(), MAX_MESSAGE_BYTES.to_owned()),
        (
            "retention.ms".to_owned(),
            (i64::from(meta.retention_hours) * 3_600_000).to_string(),
        ),
    ]);
    let name = req.stream_name.clone();
    let topic = CreateTopic {
        name: req.stream_name,
        partitions: Some(shards as i32),
        replication_factor: None,
        configs,
        validate_only: false,
    };
    ctx.blocking(move |b| {
        b.create_stream_blocking(topic, meta).map_err(|e| match e {
            strom_broker::Error::TopicAlreadyExists { .. } => KinesisError::new(
                ErrorKind::ResourceInUse,
                format!("Stream {name} under account {ACCOUNT} already exists."),
            ),
            e => e.into(),
        })
    })
    .await?;
    Ok(json!({}))
}
