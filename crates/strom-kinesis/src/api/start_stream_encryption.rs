//! `StartStreamEncryption`: record the KMS key (reflected in `DescribeStream` and puts'
//! `EncryptionType`; nothing is encrypted).

use serde_json::{Value, json};

use super::settings_common::{Encryption, check_kms, update};
use crate::error::Result;
use crate::service::{Context, parse};

pub(crate) async fn handle(ctx: &Context, input: Value) -> Result<Value> {
    let req: Encryption = parse(input)?;
    check_kms(&req.encryption_type)?;
    let view = req.stream.resolve(ctx)?;
    update(ctx, &view, move |m| m.encryption_key = Some(req.key_id)).await?;
    Ok(json!({}))
}
