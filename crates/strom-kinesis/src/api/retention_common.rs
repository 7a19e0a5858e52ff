//! What `IncreaseStreamRetentionPeriod` and `DecreaseStreamRetentionPeriod` share: the
//! request, the 24–8760 hour bounds, and the change itself (hours in the stream metadata,
//! `retention.ms` on the topic).

use serde::Deserialize;
use serde_json::{Value, json};

use super::StreamRef;
use crate::error::{KinesisError, Result};
use crate::service::{Context, parse};

const MIN_HOURS: i64 = 24;
const MAX_HOURS: i64 = 8760;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Request {
    #[serde(flatten)]
    stream: StreamRef,
    retention_period_hours: i64,
}

/// Which way a retention change may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    /// `IncreaseStreamRetentionPeriod`: the new period may not be shorter.
    Increase,
    /// `DecreaseStreamRetentionPeriod`: the new period may not be longer.
    Decrease,
}

/// Checks the requested period against the bounds and `direction`, then records it.
pub(crate) async fn change(ctx: &Context, input: Value, direction: Direction) -> Result<Value> {
    let increase = direction == Direction::Increase;
    let req: Request = parse(input)?;
    let view = req.stream.resolve(ctx)?;
    let hours = req.retention_period_hours;
    if !(MIN_HOURS..=MAX_HOURS).contains(&hours) {
        return Err(KinesisError::invalid(format!(
            "Minimum allowed retention period is {MIN_HOURS} hours and maximum is {MAX_HOURS} hours. Requested retention period ({hours} hours) is out of range."
        )));
    }
    let current = i64::from(view.meta.retention_hours);
    if increase && hours < current {
        return Err(KinesisError::invalid(format!(
            "Requested retention period ({hours} hours) for stream {} can not be shorter than existing retention period ({current} hours). Use DecreaseRetentionPeriod API.",
            view.name()
        )));
    }
    if !increase && hours > current {
        return Err(KinesisError::invalid(format!(
            "Requested retention period ({hours} hours) for stream {} can not be longer than existing retention period ({current} hours). Use IncreaseRetentionPeriod API.",
            view.name()
        )));
    }
    let id = view.topic.id();
    let name = view.name().to_owned();
    ctx.blocking(move |b| {
        let ops = [strom_broker::ConfigOp::Set(
            "retention.ms".to_owned(),
            (hours * 3_600_000).to_string(),
        )];
        b.incremental_alter_configs_blocking(&name, &ops, false)?;
        b.update_stream_meta_blocking(id, |m, _| {
            m.retention_hours = hours as i32;
            Ok(())
        })?;
        Ok(())
    })
    .await?;
    Ok(json!({}))
}
