//! Actions Strom accepts and records nowhere (it has no resource policies, warm throughput,
//! record-size or distribution knobs): `PutResourcePolicy`, `DeleteResourcePolicy`,
//! `UpdateAccountSettings`, `UpdateMaxRecordSize`, `UpdateStreamWarmThroughput`,
//! `UpdateStreamRecordDistributionStrategy`. One empty answer serves them all.

use serde_json::{Value, json};

use crate::error::Result;
use crate::service::Context;

pub(crate) async fn handle(_ctx: &Context, _input: Value) -> Result<Value> {
    Ok(json!({}))
}
