//! `DisableEnhancedMonitoring`: remove shard-level metrics from the recorded set.

use serde_json::Value;

use super::settings_common::monitoring;
use crate::error::Result;
use crate::service::Context;

pub(crate) async fn handle(ctx: &Context, input: Value) -> Result<Value> {
    monitoring(ctx, input, false).await
}
