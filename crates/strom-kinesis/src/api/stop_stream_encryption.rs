//! `StopStreamEncryption`: forget the recorded KMS key.

use serde_json::{Value, json};

use super::settings_common::{Encryption, update};
use crate::error::Result;
use crate::service::{Context, parse};

pub(crate) async fn handle(ctx: &Context, input: Value) -> Result<Value> {
    let req: Encryption = parse(input)?;
    let view = req.stream.resolve(ctx)?;
    update(ctx, &view, |m| m.encryption_key = None).await?;
    Ok(json!({}))
}
