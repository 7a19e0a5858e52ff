//! `IncreaseStreamRetentionPeriod`: a longer retention, in hours (24–8760); a shorter one is
//! refused (see [`super::retention_common`]).

use serde_json::Value;

use super::retention_common::{Direction, change};
use crate::error::Result;
use crate::service::Context;

pub(crate) async fn handle(ctx: &Context, input: Value) -> Result<Value> {
    change(ctx, input, Direction::Increase).await
}
