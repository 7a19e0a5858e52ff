//! The HTTP layer: routing on `X-Amz-Target`, body encodings, AWS error responses.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use strom_broker::Broker;

use crate::KinesisConfig;
use crate::error::{ErrorKind, KinesisError, Result};
use crate::fence::ReshardFence;
use crate::iterator::IteratorKey;
use crate::limits::ShardLimiter;
use crate::wire::{self, Encoding};

/// The largest request body accepted: a 5 MiB PutRecords grows by a third in base64.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

const TARGET_PREFIX: &str = "Kinesis_20131202.";

/// What every handler gets: the broker, the settings, the iterator key.
#[derive(Debug)]
pub struct Context {
    /// The broker core.
    pub broker: Arc<Broker>,
    /// Listener settings.
    pub config: KinesisConfig,
    /// Signs shard iterators.
    pub iterator_key: IteratorKey,
    /// Becomes `true` when the server stops; long-lived responses (SubscribeToShard) end then,
    /// so a graceful shutdown does not wait for them.
    pub closing: tokio::sync::watch::Sender<bool>,
    /// Per-shard throughput buckets (admit everything unless `config.aws_limits`).
    pub limiter: ShardLimiter,
    /// Orders puts against resharding (see [`crate::fence`]).
    pub fence: ReshardFence,
}

impl Context {
    /// A context whose iterator key is derived from the broker's cluster id (durable, so
    /// shard iterators survive a restart of the broker).
    pub fn new(config: KinesisConfig, broker: Arc<Broker>) -> Context {
        let iterator_key = IteratorKey::derive(broker.cluster_id().as_bytes());
        Context {
            iterator_key,
            broker,
            limiter: ShardLimiter::new(config.aws_limits),
            config,
            closing: tokio::sync::watch::Sender::new(false),
            fence: ReshardFence::default(),
        }
    }

    /// Now, by the broker's clock, in epoch milliseconds.
    pub fn now_ms(&self) -> i64 {
        self.broker.clock().now_ms()
    }

    /// Runs a blocking broker call on the blocking pool.
    pub async fn blocking<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Broker) -> Result<T> + Send + 'static,
    {
        let broker = Arc::clone(&self.broker);
        tokio::task::spawn_blocking(move || f(&broker))
            .await
            .map_err(|_| {
                KinesisError::new(ErrorKind::InternalFailure, "the broker is shutting down")
            })?
    }
}

/// What a handler answers: a value in the JSON value model (encoded by [`wire::encode`]), or a
/// body the handler already wrote in the request's encoding (the data plane's hot paths).
#[derive(Debug)]
pub enum Reply {
    /// A response in the JSON value model.
    Value(Value),
    /// A response body already encoded in the request's encoding.
    Encoded(Vec<u8>),
}

/// Deserialises a request structure from the decoded body.
pub fn parse<T: DeserializeOwned>(input: Value) -> Result<T> {
    serde_json::from_value(input).map_err(parse_error)
}

/// The exception for a request that does not deserialise: a missing member is a
/// `ValidationException`, anything else (wrong type, malformed body) a `SerializationException`.
pub fn parse_error(e: serde_json::Error) -> KinesisError {
    let msg = e.to_string();
    if msg.starts_with("missing field") {
        KinesisError::validation(format!("1 validation error detected: {msg}"))
    } else {
        KinesisError::new(ErrorKind::Serialization, msg)
    }
}

/// The axum router: `POST /` (any path, in fact) is the API.
pub fn router(context: Arc<Context>) -> Router {
    Router::new()
        .fallback(handle)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(context)
}

async fn handle(State(ctx): State<Arc<Context>>, headers: HeaderMap, body: Bytes) -> Response {
    let encoding = Encoding::from_content_type(
        headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
    );
    let request_id = uuid::Uuid::new_v4().to_string();
    let result = match headers.get("x-amz-target").and_then(|v| v.to_str().ok()) {
        None => Err(KinesisError::new(
            ErrorKind::UnknownOperation,
            "missing X-Amz-Target header",
        )),
        Some(target) => match target.strip_prefix(TARGET_PREFIX) {
            None => Err(KinesisError::new(
                ErrorKind::UnknownOperation,
                format!("unknown target {target:?}"),
            )),
            // The hot path: a JSON PutRecords body decodes straight into its typed request,
            // without the generic value model.
            Some("PutRecords")
                if encoding == Encoding::Json && !body.iter().all(u8::is_ascii_whitespace) =>
            {
                crate::api::put_records_json(&ctx, &body).await
            }
            Some(action) => match wire::decode(encoding, &body) {
                Err(e) => Err(KinesisError::new(ErrorKind::Serialization, e.to_string())),
                Ok(input) if action == "SubscribeToShard" => {
                    match crate::api::subscribe_to_shard::handle(Arc::clone(&ctx), encoding, input)
                        .await
                    {
                        Ok(response) => return response,
                        Err(e) => Err(e),
                    }
                }
                Ok(input) => crate::api::dispatch(&ctx, encoding, action, input).await,
            },
        },
    };
    let (status, body, error_type) = match result {
        Ok(Reply::Value(v)) => (StatusCode::OK, wire::encode(encoding, &v), None),
        Ok(Reply::Encoded(body)) => (StatusCode::OK, body, None),
        Err(e) => (
            e.kind.status(),
            wire::encode(
                encoding,
                &json!({"__type": e.kind.name(), "message": e.message}),
            ),
            Some(e.kind.name()),
        ),
    };
    let mut response = (status, body).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(encoding.content_type()),
    );
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        h.insert("x-amzn-requestid", v);
    }
    if let Some(t) = error_type {
        h.insert("x-amzn-errortype", HeaderValue::from_static(t));
    }
    response
}
