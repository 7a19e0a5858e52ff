//! `DeleteStream`: deletes the topic (and with it the stream metadata).

use serde::Deserialize;
use serde_json::{Value, json};

use super::StreamRef;
use crate::error::{ErrorKind, KinesisError, Result};
use crate::service::{Context, parse};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Request {
    #[serde(flatten)]
    stream: StreamRef,
    #[serde(default)]
    enforce_consumer_deletion: Option<bool>,
}

pub(crate) async fn handle(ctx: &Context, input: Value) -> Result<Value> {
    let req: Request = parse(input)?;
    let view = req.stream.resolve(ctx)?;
    if !view.meta.consumers.is_empty() && req.enforce_consumer_deletion != Some(true) {
        return Err(KinesisError::new(
            ErrorKind::ResourceInUse,
            format!(
                "Stream {} has registered consumers; set EnforceConsumerDeletion to delete it",
                view.name()
            ),
        ));
    }
    let name = view.name().to_owned();
    ctx.blocking(move |b| Ok(b.delete_topic_blocking(&name)?))
        .await?;
    Ok(json!({}))
}
