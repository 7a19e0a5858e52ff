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

/// The smallest in-flight memory budget: the largest request body plus the most a
/// `GetRecords` response reserves, so one request always fits while it holds its body.
pub const MIN_IN_FLIGHT_BYTES: usize = MAX_BODY_BYTES + crate::api::get_records::MAX_RESPONSE_BOUND;

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
    /// handled, plus one per byte a `GetRecords` response or a `SubscribeToShard` event may
    /// take, held until it is sent ([`KinesisConfig::max_in_flight_bytes`]).
    pub memory: Arc<tokio::sync::Semaphore>,
    /// The permits `memory` was created with (no reservation asks for more).
    pub memory_capacity: usize,
    /// Shard appends running on the blocking pool at once ([`APPEND_SLOTS`] permits).
    pub append_slots: Arc<tokio::sync::Semaphore>,
    /// Connections open now (against [`KinesisConfig::max_connections`]).
    pub open_connections: Arc<std::sync::atomic::AtomicUsize>,
    /// The access keys requests must be signed with; `None`: any credentials
    /// ([`crate::sigv4::KinesisAuth::None`]).
    pub keys: Option<crate::sigv4::KeyRing>,
}

impl Context {
    /// A context whose iterator key is [`KinesisConfig::iterator_secret`] when given (cluster
    /// mode), else the secret kept in [`KinesisConfig::iterator_secret_file`] (created there at
    /// first start, so shard iterators survive a restart), else a random one.
    pub fn new(
        config: KinesisConfig,
        broker: Arc<Broker>,
    ) -> Result<Context, crate::iterator::SecretError> {
        let iterator_key = match (config.iterator_secret, &config.iterator_secret_file) {
            (Some(secret), _) => IteratorKey::from_bytes(secret),
            (None, Some(path)) => IteratorKey::load_or_create(path)?,
            (None, None) => IteratorKey::random(),
        };
        let memory_capacity = config
            .max_in_flight_bytes
            .clamp(MIN_IN_FLIGHT_BYTES, tokio::sync::Semaphore::MAX_PERMITS);
        let keys = match &config.auth {
            crate::sigv4::KinesisAuth::None => None,
            crate::sigv4::KinesisAuth::SigV4(keys) => Some(crate::sigv4::KeyRing::new(keys)),
        };
        Ok(Context {
            keys,
            iterator_key,
            broker,
            closing: tokio::sync::watch::Sender::new(false),
            fence: ReshardFence::default(),
            memory: Arc::new(tokio::sync::Semaphore::new(memory_capacity)),
            memory_capacity,
            open_connections: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            append_slots: Arc::new(tokio::sync::Semaphore::new(APPEND_SLOTS)),
            limiter: ShardLimiter::with_shared(config.aws_limits, config.shared_limits.clone()),
            config,
        })
    }

    /// Now, by the broker's clock, in epoch milliseconds.
    pub fn now_ms(&self) -> i64 {
        self.broker.clock().now_ms()
    }

    /// Reserves `bytes` (at most the whole budget) in the in-flight memory budget, waiting at
    /// most [`MEMORY_BUDGET_WAIT`]; when there is no room by then, `LimitExceededException`
    /// (which AWS SDKs retry with back-off, as a throttling error).
    pub async fn reserve(
        &self,
        bytes: usize,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, KinesisError> {
        let permits = u32::try_from(bytes.clamp(1, self.memory_capacity)).unwrap_or(u32::MAX);
        match tokio::time::timeout(
            MEMORY_BUDGET_WAIT,
            Arc::clone(&self.memory).acquire_many_owned(permits),
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

    /// In cluster mode, applies what other brokers appended to the shared metadata since the
    /// last read (one query, shared by the calls waiting for it together), so what follows
    /// decides on the latest streams, consumers, tags and ACLs; `false` on a single node (nothing to read). A failed read is logged and the
    /// caller goes on with what this broker has.
    pub async fn cluster_sync(&self) -> bool {
        if self.broker.live_brokers().is_none() {
            return false;
        }
        let asked = std::time::Instant::now();
        if let Err(e) = self
            .blocking(move |b| {
                b.sync_metadata_since_blocking(asked)
                    .map_err(KinesisError::from)
            })
            .await
        {
            tracing::warn!(error = %e, "reading other brokers' metadata failed");
        }
        true
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
    /// A reply holding a reservation in the in-flight memory budget ([`Context::reserve`]):
    /// once encoded, the reservation is cut to the body's size and held until the body is
    /// sent (`GetRecords`).
    Reserved(Box<Reply>, tokio::sync::OwnedSemaphorePermit),
}

/// A response body that holds its share of the in-flight memory budget until it is sent (or
/// the connection drops it).
struct ReservedBody {
    data: Option<bytes::Bytes>,
    _reservation: tokio::sync::OwnedSemaphorePermit,
}

impl http_body::Body for ReservedBody {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::task::Poll::Ready(self.data.take().map(|d| Ok(http_body::Frame::data(d))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.data.as_ref().map_or(0, |d| d.len() as u64))
    }
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
    ctx.reserve(announced.min(MAX_BODY_BYTES)).await
}

/// The principal requests act as when authentication is off.
pub const ANONYMOUS: &str = "User:ANONYMOUS";

/// Authenticates a request whose body has been read: the principal it acts as.
fn authenticate(
    ctx: &Context,
    parts: &axum::http::request::Parts,
    body: &[u8],
) -> Result<String, KinesisError> {
    let Some(keys) = &ctx.keys else {
        return Ok(ANONYMOUS.to_owned());
    };
    let mut headers: Vec<(&str, &[u8])> = parts
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_bytes()))
        .collect();
    // HTTP/2 carries the host in the `:authority` pseudo-header, which is the URI's authority.
    let authority = parts.uri.authority().map(|a| a.as_str().to_owned());
    if !parts.headers.contains_key(header::HOST)
        && let Some(a) = &authority
    {
        headers.push(("host", a.as_bytes()));
    }
    let req = crate::sigv4::SignedRequest {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or(""),
        headers: &headers,
        body,
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    match keys.verify(&req, now_ms) {
        Ok(principal) => Ok(principal.to_owned()),
        Err(e) => {
            tracing::debug!(error = %e, "kinesis request refused by SigV4 verification");
            Err(e.into())
        }
    }
}

async fn handle(State(ctx): State<Arc<Context>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let headers = &parts.headers;
    let encoding = Encoding::from_content_type(
        headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
    );
    let request_id = uuid::Uuid::new_v4().to_string();
    // Held until the handler has answered.
    let _admitted = match admit(&ctx, headers).await {
        Ok(permit) => permit,
        Err(e) => return error_response(encoding, &request_id, e),
    };
    // The body must arrive in time: a client announcing a large body and trickling it would
    // otherwise hold its share of the budget forever.
    let read = axum::body::to_bytes(body, MAX_BODY_BYTES);
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
    let principal = match authenticate(&ctx, &parts, &body) {
        Ok(p) => p,
        Err(e) => return error_response(encoding, &request_id, e),
    };
    let caller = crate::authz::Caller {
        principal,
        host: parts
            .extensions
            .get::<axum::extract::ConnectInfo<crate::PeerAddr>>()
            .map_or_else(|| String::from("127.0.0.1"), |c| c.0.0.ip().to_string()),
    };
    if ctx.broker.acls().enabled()
        && let Some(action) = headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .and_then(|t| t.strip_prefix(TARGET_PREFIX))
    {
        // Decoded once more here (only with an authorizer) to find the stream; a body that
        // does not decode is refused by its handler below.
        let input = wire::decode(encoding, &body).unwrap_or(Value::Null);
        if let Err(e) = crate::authz::check(&ctx, &caller, action, &input) {
            // In cluster mode an ACL granted through another broker a moment ago may not be
            // applied here yet (the metadata tail runs every 250 ms): a refusal is decided
            // again on the latest ACLs, so a grant is in force on every broker once its
            // CreateAcls was answered. (A revocation reaches the other brokers within the
            // tail's interval, as ACL changes reach Kafka's brokers asynchronously.)
            let refused = if ctx.cluster_sync().await {
                crate::authz::check(&ctx, &caller, action, &input).err()
            } else {
                Some(e)
            };
            if let Some(e) = refused {
                return error_response(encoding, &request_id, e);
            }
        }
    }
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
                Ok(input) => crate::api::dispatch(&ctx, &caller, encoding, action, input).await,
            },
        },
    };
    let (body, reservation) = match result {
        Ok(reply) => reply_body(encoding, reply),
        Err(e) => return error_response(encoding, &request_id, e),
    };
    let body = match reservation {
        None => axum::body::Body::from(body),
        Some(mut reservation) => {
            // Keep what the body holds until it is sent; give back the rest of the bound now.
            let excess = reservation.num_permits().saturating_sub(body.len().max(1));
            drop(reservation.split(excess));
            axum::body::Body::new(ReservedBody {
                data: Some(bytes::Bytes::from(body)),
                _reservation: reservation,
            })
        }
    };
    finish(encoding, &request_id, StatusCode::OK, body, None)
}

/// A reply's encoded body and the memory reservation it carries, if any.
fn reply_body(
    encoding: Encoding,
    reply: Reply,
) -> (Vec<u8>, Option<tokio::sync::OwnedSemaphorePermit>) {
    match reply {
        Reply::Value(v) => (wire::encode(encoding, &v), None),
        Reply::Encoded(body) => (body, None),
        Reply::Reserved(reply, reservation) => (reply_body(encoding, *reply).0, Some(reservation)),
    }
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
        axum::body::Body::from(body),
        Some(e.kind.name()),
    )
}

fn finish(
    encoding: Encoding,
    request_id: &str,
    status: StatusCode,
    body: axum::body::Body,
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
