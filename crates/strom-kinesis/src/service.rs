//! The HTTP layer: routing on `X-Amz-Target`, body encodings, AWS error responses.

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
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

/// How long a request waits for room in the in-flight memory budget before it is refused with
/// `LimitExceededException` (which AWS SDKs retry with back-off, as a throttling error).
pub const MEMORY_BUDGET_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// How many shard appends of PutRecords requests run on the blocking pool at once, across all
/// requests.
pub const APPEND_SLOTS: usize = 64;

/// How long a request body may take to arrive once its headers have.
pub const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

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
    /// In-flight request memory: one permit per request-body byte, held while the request is
    /// handled ([`KinesisConfig::max_in_flight_bytes`]).
    pub memory: Arc<tokio::sync::Semaphore>,
    /// Shard appends running on the blocking pool at once ([`APPEND_SLOTS`] permits).
    pub append_slots: Arc<tokio::sync::Semaphore>,
    /// Connections open now (against [`KinesisConfig::max_connections`]).
    pub open_connections: Arc<std::sync::atomic::AtomicUsize>,
}

impl Context {
    /// A context whose iterator key is derived from the broker's cluster id (durable, so
    /// shard iterators survive a restart of the broker).
    pub fn new(config: KinesisConfig, broker: Arc<Broker>) -> Context {
        let iterator_key = IteratorKey::derive(broker.cluster_id().as_bytes());
        Context {
            iterator_key,
            broker,
            closing: tokio::sync::watch::Sender::new(false),
            fence: ReshardFence::default(),
            memory: Arc::new(tokio::sync::Semaphore::new(
                config
                    .max_in_flight_bytes
                    .clamp(MAX_BODY_BYTES, tokio::sync::Semaphore::MAX_PERMITS),
            )),
            open_connections: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            append_slots: Arc::new(tokio::sync::Semaphore::new(APPEND_SLOTS)),
            limiter: ShardLimiter::new(config.aws_limits),
            config,
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

/// Reserves room for a request body in the in-flight memory budget: its `Content-Length`, or
/// the largest body accepted when the length is not announced. Waits at most
/// [`MEMORY_BUDGET_WAIT`].
async fn admit(
    ctx: &Context,
    headers: &HeaderMap,
) -> Result<tokio::sync::OwnedSemaphorePermit, KinesisError> {
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(MAX_BODY_BYTES);
    let permits = u32::try_from(announced.clamp(1, MAX_BODY_BYTES)).unwrap_or(u32::MAX);
    match tokio::time::timeout(
        MEMORY_BUDGET_WAIT,
        Arc::clone(&ctx.memory).acquire_many_owned(permits),
    )
    .await
    {
        Ok(Ok(permit)) => Ok(permit),
        _ => {
            tracing::warn!(
                bytes = permits,
                "kinesis in-flight request memory exhausted, refusing a request"
            );
            Err(KinesisError::new(
                ErrorKind::LimitExceeded,
                "the broker's in-flight request memory is exhausted; retry with back-off",
            ))
        }
    }
}

async fn handle(State(ctx): State<Arc<Context>>, request: Request) -> Response {
    let headers = request.headers().clone();
    let encoding = Encoding::from_content_type(
        headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
    );
    let request_id = uuid::Uuid::new_v4().to_string();
    // Held until the handler has answered.
    let _admitted = match admit(&ctx, &headers).await {
        Ok(permit) => permit,
        Err(e) => return error_response(encoding, &request_id, e),
    };
    // The body must arrive in time: a client announcing a large body and trickling it would
    // otherwise hold its share of the budget forever.
    let read = axum::body::to_bytes(request.into_body(), MAX_BODY_BYTES);
    let body = match tokio::time::timeout(BODY_READ_TIMEOUT, read).await {
        Ok(Ok(body)) => body,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "kinesis request body not read");
            return StatusCode::PAYLOAD_TOO_LARGE.into_response();
        }
        Err(_) => {
            tracing::warn!("kinesis request body too slow, refusing it");
            return StatusCode::REQUEST_TIMEOUT.into_response();
        }
    };
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
        Err(e) => return error_response(encoding, &request_id, e),
    };
    finish(encoding, &request_id, status, body, error_type)
}

fn error_response(encoding: Encoding, request_id: &str, e: KinesisError) -> Response {
    let body = wire::encode(
        encoding,
        &json!({"__type": e.kind.name(), "message": e.message}),
    );
    finish(
        encoding,
        request_id,
        e.kind.status(),
        body,
        Some(e.kind.name()),
    )
}

fn finish(
    encoding: Encoding,
    request_id: &str,
    status: StatusCode,
    body: Vec<u8>,
    error_type: Option<&'static str>,
) -> Response {
    let mut response = (status, body).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(encoding.content_type()),
    );
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-amzn-requestid", v);
    }
    if let Some(t) = error_type {
        h.insert("x-amzn-errortype", HeaderValue::from_static(t));
    }
    response
}
