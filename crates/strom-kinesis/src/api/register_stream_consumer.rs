//! `RegisterStreamConsumer`: add an enhanced fan-out consumer to the stream metadata.

use serde_json::{Value, json};
use strom_broker::stream::ConsumerMeta;

use super::consumer_common::{ConsumerRef, consumer_json, resolve};
use crate::error::{ErrorKind, KinesisError, Result};
use crate::service::{Context, parse};
use crate::stream::validate_name;

/// AWS's limit of registered consumers per stream.
const MAX_CONSUMERS: usize = 20;

pub(crate) async fn handle(ctx: &Context, input: Value) -> Result<Value> {
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
