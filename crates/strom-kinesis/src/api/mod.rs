//! One module per Kinesis action, named after it; [`dispatch`] maps the action name to its
//! handler. Helpers shared by a family of actions live in `consumer_common`,
//! `retention_common`, `settings_common` and `reshard`.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{ErrorKind, KinesisError, Result};
use crate::service::{Context, Reply};
use crate::stream::{self, StreamView};
use crate::wire::Encoding;

mod add_tags_to_stream;
mod consumer_common;
mod create_stream;
mod decrease_stream_retention_period;
mod delete_resource_policy;
mod delete_stream;
mod deregister_stream_consumer;
mod describe_account_settings;
mod describe_limits;
mod describe_stream;
mod describe_stream_consumer;
mod describe_stream_summary;
mod disable_enhanced_monitoring;
mod enable_enhanced_monitoring;
pub(crate) mod get_records;
mod get_resource_policy;
mod get_shard_iterator;
mod increase_stream_retention_period;
mod list_shards;
mod list_stream_consumers;
mod list_streams;
mod list_tags_for_resource;
mod list_tags_for_stream;
mod merge_shards;
mod put_record;
mod put_records;
mod put_resource_policy;
mod register_stream_consumer;
mod remove_tags_from_stream;
mod reshard;
mod retention_common;
mod settings_common;
mod split_shard;
mod start_stream_encryption;
mod stop_stream_encryption;
pub(crate) mod subscribe_to_shard;
mod tag_resource;
mod untag_resource;
mod update_account_settings;
mod update_max_record_size;
mod update_shard_count;
mod update_stream_mode;
mod update_stream_record_distribution_strategy;
mod update_stream_warm_throughput;

/// Runs one action. `GetRecords` and `PutRecords` write their responses themselves (in
/// `encoding`); every other action answers in the JSON value model.
pub(crate) async fn dispatch(
    ctx: &Context,
    caller: &crate::authz::Caller,
    encoding: Encoding,
    action: &str,
    input: Value,
) -> Result<Reply> {
    match action {
        "PutRecords" => put_records::handle(ctx, encoding, input).await,
        "GetRecords" => get_records::handle(ctx, encoding, input).await,
        _ => dispatch_value(ctx, caller, action, input)
            .await
            .map(Reply::Value),
    }
}

/// The data-plane actions among those of [`dispatch_value`]: they decide on this broker's
/// view of the stream (a shard they name that is missing from it syncs first,
/// `StreamView::synced_if`).
const DATA_PLANE: &[&str] = &["PutRecord", "GetShardIterator"];

/// The actions that answer in the JSON value model (all but the two in [`dispatch`]).
async fn dispatch_value(
    ctx: &Context,
    caller: &crate::authz::Caller,
    action: &str,
    input: Value,
) -> Result<Value> {
    // Control plane, in cluster mode: first read what other brokers appended to the shared
    // metadata (one query), so a stream, shard, consumer, tag or ACL created or removed
    // through any broker is seen (or gone) by the next call through any other, as on a
    // single node, rather than up to one metadata-tail interval (250 ms) later; a
    // MergeShards names the shards a SplitShard through another broker just made. AWS
    // limits these calls to a few per second, so the query costs little; the data plane
    // (puts, reads, iterators, subscriptions) does not pay it.
    if !DATA_PLANE.contains(&action) {
        // AWS-limits mode: the account's rate of this action (cluster-wide when shared).
        if !ctx.limiter.admit_control(action).await {
            return Err(KinesisError::new(
                ErrorKind::LimitExceeded,
                format!(
                    "Rate exceeded for {action} under account {}.",
                    crate::stream::ACCOUNT
                ),
            ));
        }
        ctx.cluster_sync().await;
    }
    match action {
        "CreateStream" => create_stream::handle(ctx, input).await,
        "DeleteStream" => delete_stream::handle(ctx, input).await,
        "DescribeStream" => describe_stream::handle(ctx, input).await,
        "DescribeStreamSummary" => describe_stream_summary::handle(ctx, input).await,
        "ListStreams" => list_streams::handle(ctx, caller, input).await,
        "ListShards" => list_shards::handle(ctx, input).await,
        "PutRecord" => put_record::handle(ctx, input).await,
        "GetShardIterator" => get_shard_iterator::handle(ctx, input).await,
        "IncreaseStreamRetentionPeriod" => {
            increase_stream_retention_period::handle(ctx, input).await
        }
        "DecreaseStreamRetentionPeriod" => {
            decrease_stream_retention_period::handle(ctx, input).await
        }
        "AddTagsToStream" => add_tags_to_stream::handle(ctx, input).await,
        "RemoveTagsFromStream" => remove_tags_from_stream::handle(ctx, input).await,
        "ListTagsForStream" => list_tags_for_stream::handle(ctx, input).await,
        "SplitShard" => split_shard::handle(ctx, input).await,
        "MergeShards" => merge_shards::handle(ctx, input).await,
        "UpdateShardCount" => update_shard_count::handle(ctx, input).await,
        "RegisterStreamConsumer" => register_stream_consumer::handle(ctx, input).await,
        "DescribeStreamConsumer" => describe_stream_consumer::handle(ctx, input).await,
        "ListStreamConsumers" => list_stream_consumers::handle(ctx, input).await,
        "DeregisterStreamConsumer" => deregister_stream_consumer::handle(ctx, input).await,
        "StartStreamEncryption" => start_stream_encryption::handle(ctx, input).await,
        "StopStreamEncryption" => stop_stream_encryption::handle(ctx, input).await,
        "EnableEnhancedMonitoring" => enable_enhanced_monitoring::handle(ctx, input).await,
        "DisableEnhancedMonitoring" => disable_enhanced_monitoring::handle(ctx, input).await,
        "UpdateStreamMode" => update_stream_mode::handle(ctx, input).await,
        "DescribeLimits" => describe_limits::handle(ctx, input).await,
        "DescribeAccountSettings" => describe_account_settings::handle(ctx, input).await,
        "GetResourcePolicy" => get_resource_policy::handle(ctx, input).await,
        "TagResource" => tag_resource::handle(ctx, input).await,
        "UntagResource" => untag_resource::handle(ctx, input).await,
        "ListTagsForResource" => list_tags_for_resource::handle(ctx, input).await,
        // Recorded nowhere: Strom has no policies, warm throughput or record-size knobs.
        "PutResourcePolicy" => put_resource_policy::handle(ctx, input).await,
        "DeleteResourcePolicy" => delete_resource_policy::handle(ctx, input).await,
        "UpdateAccountSettings" => update_account_settings::handle(ctx, input).await,
        "UpdateMaxRecordSize" => update_max_record_size::handle(ctx, input).await,
        "UpdateStreamWarmThroughput" => update_stream_warm_throughput::handle(ctx, input).await,
        "UpdateStreamRecordDistributionStrategy" => {
            update_stream_record_distribution_strategy::handle(ctx, input).await
        }
        _ => Err(KinesisError::new(
            ErrorKind::UnknownOperation,
            format!(
                "unknown operation {:?}",
                action.chars().take(100).collect::<String>()
            ),
        )),
    }
}

/// `PutRecords` from a JSON 1.1 body, decoded straight into its typed request (borrowing
/// from `body`), answered in JSON.
pub(crate) async fn put_records_json(ctx: &Context, body: &[u8]) -> Result<Reply> {
    put_records::handle_json(ctx, body).await
}

/// `StreamName` and/or `StreamARN`, as most actions take them.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct StreamRef {
    #[serde(default)]
    pub(crate) stream_name: Option<String>,
    #[serde(default, rename = "StreamARN")]
    pub(crate) stream_arn: Option<String>,
}

impl StreamRef {
    pub(crate) fn resolve(&self, ctx: &Context) -> Result<StreamView> {
        stream::resolve(
            &ctx.broker,
            self.stream_name.as_deref(),
            self.stream_arn.as_deref(),
        )
    }
}

/// Epoch milliseconds as the JSON model's fractional seconds.
pub(crate) fn seconds(ms: i64) -> Value {
    json!(ms as f64 / 1000.0)
}

/// Fields shared by `StreamDescription` and `StreamDescriptionSummary`.
pub(crate) fn description_common(
    ctx: &Context,
    view: &StreamView,
) -> serde_json::Map<String, Value> {
    let meta = &view.meta;
    let mut out = serde_json::Map::new();
    out.insert("StreamName".into(), json!(view.name()));
    out.insert(
        "StreamARN".into(),
        json!(stream::stream_arn(&ctx.config.region, view.name())),
    );
    let creating = i64::try_from(ctx.config.creating_delay.as_millis()).unwrap_or(i64::MAX);
    out.insert(
        "StreamStatus".into(),
        json!(view.status(ctx.now_ms(), creating)),
    );
    out.insert("StreamModeDetails".into(), json!({"StreamMode": meta.mode}));
    out.insert("RetentionPeriodHours".into(), json!(meta.retention_hours));
    out.insert("StreamCreationTimestamp".into(), seconds(meta.created_ms));
    out.insert(
        "EnhancedMonitoring".into(),
        json!([{"ShardLevelMetrics": meta.shard_level_metrics}]),
    );
    match &meta.encryption_key {
        Some(k) => {
            out.insert("EncryptionType".into(), json!("KMS"));
            out.insert("KeyId".into(), json!(k));
        }
        None => {
            out.insert("EncryptionType".into(), json!("NONE"));
        }
    }
    out
}

/// Checks an optional limit against `1..=max`, returning `default` when absent.
pub(crate) fn limit(name: &str, value: Option<i64>, default: usize, max: usize) -> Result<usize> {
    match value {
        None => Ok(default),
        Some(v) if v >= 1 && (v as u64) <= max as u64 => Ok(v as usize),
        Some(v) => Err(KinesisError::validation(format!(
            "1 validation error detected: Value '{v}' at '{name}' failed to satisfy constraint: \
             Member must have value between 1 and {max}"
        ))),
    }
}
