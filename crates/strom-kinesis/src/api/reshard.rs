//! The transaction shared by `SplitShard`, `MergeShards` and `UpdateShardCount`: grow the
//! topic by the number of child shards, then, under the broker's admin lock, close the parents
//! at their log end and append the children (shard `n` is always partition `n`).
//!
//! The close runs under the stream's write fence ([`crate::fence`]), and puts route and append
//! under its read side, so a record acknowledged by `PutRecord(s)` is either below its parent's
//! end offset or in a child. The parents' partitions are sealed
//! ([`strom_broker::Partition::seal_blocking`]) inside the same step, and the seal is what
//! fixes the end offset, so a Kafka produce racing the close is either below it or refused
//! (`POLICY_VIOLATION`). Parents get `closed_ms`, children
//! `created_ms`: the time of the close, which `ListShards`' timestamp filters use.

use strom_broker::stream::{ShardMeta, StreamMeta};

use crate::error::{ErrorKind, KinesisError, Result};
use crate::service::Context;
use crate::stream::StreamView;

/// What a reshard does to the shard list it is given: returns the new children and the
/// indexes of the shards to close. Must not change existing entries itself.
pub(crate) type Plan = Box<dyn FnOnce(&StreamMeta) -> Result<(Vec<ShardMeta>, Vec<usize>)> + Send>;

pub(crate) async fn reshard(ctx: &Context, view: &StreamView, plan: Plan) -> Result<()> {
    let creating = i64::try_from(ctx.config.creating_delay.as_millis()).unwrap_or(i64::MAX);
    let now = ctx.now_ms();
    if view.status(now, creating) != "ACTIVE" {
        return Err(KinesisError::new(
            ErrorKind::ResourceInUse,
            format!("Stream {} is not ACTIVE", view.name()),
        ));
    }
    let (children, to_close) = plan(&view.meta)?;
    let shards = view.meta.shards.len();
    if view.topic.partition_count() as usize != shards {
        return Err(KinesisError::invalid(format!(
            "stream {} has {} partitions but {shards} shards (partitions added by a Kafka client); it cannot be resharded",
            view.name(),
            view.topic.partition_count()
        )));
    }
    let total = shards + children.len();
    if total > strom_broker::MAX_PARTITIONS as usize {
        return Err(KinesisError::new(
            ErrorKind::LimitExceeded,
            "the stream would exceed the shard limit",
        ));
    }
    let name = view.name().to_owned();
    let id = view.topic.id();
    let updating_ms = i64::try_from(ctx.config.updating_delay.as_millis()).unwrap_or(i64::MAX);
    // Moved into the blocking call, so it is held until the close is done even if this
    // request is dropped meanwhile.
    let fence = ctx.fence.reshard(id).await;
    ctx.blocking(move |b| {
        let _fence = fence;
        b.grow_stream_blocking(&name, total as i32)?;
        let topic = b.topic_by_id(id)?;
        let closed_ms = b.clock().now_ms();
        b.update_stream_meta_blocking(id, move |m, _| {
            if m.shards.len() != shards {
                return Err(strom_broker::Error::InvalidPartitions {
                    count: m.shards.len() as i32,
                    reason: "another reshard changed the stream meanwhile",
                });
            }
            for &i in &to_close {
                // The seal waits for data writes in flight and refuses later ones, so
                // `end` is final: no Kafka produce lands on the parent past it.
                let end = topic.partition(i as i32)?.seal_blocking()?;
                if let Some(s) = m.shards.get_mut(i) {
                    s.closed_at_offset = Some(end);
                    s.closed_ms = Some(closed_ms);
                }
            }
            m.shards.extend(children.into_iter().map(|mut c| {
                c.created_ms = Some(closed_ms);
                c
            }));
            m.updating_until_ms = now.saturating_add(updating_ms);
            Ok(())
        })
        .map_err(|e| match e {
            strom_broker::Error::InvalidPartitions { reason, .. } => {
                KinesisError::new(ErrorKind::ResourceInUse, reason)
            }
            e => e.into(),
        })
    })
    .await
}

/// An open shard by id, or the right exception.
pub(crate) fn open_shard(view: &StreamView, id: &str) -> Result<usize> {
    let (i, _) = view.shard(id)?;
    match view.meta.shards.get(i) {
        Some(s) if s.closed_at_offset.is_none() => Ok(i),
        _ => Err(KinesisError::new(
            ErrorKind::ResourceInUse,
            format!("Shard {id} in stream {} is closed", view.name()),
        )),
    }
}

/// A new open child shard.
pub(crate) fn child(start: u128, end: u128, parent: usize, adjacent: Option<usize>) -> ShardMeta {
    ShardMeta {
        starting_hash_key: start,
        ending_hash_key: end,
        parent: Some(parent as i32),
        adjacent_parent: adjacent.map(|a| a as i32),
        closed_at_offset: None,
        created_ms: None,
        closed_ms: None,
    }
}
