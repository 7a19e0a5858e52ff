//! `UpdateStreamWarmThroughput`: Strom has no warm throughput.
//! Accepted and recorded nowhere; an empty answer.

use serde_json::{Value, json};

use crate::error::Result;
use crate::service::Context;

pub(crate) async fn handle(_ctx: &Context, _input: Value) -> Result<Value> {
    Ok(json!({}))
}
