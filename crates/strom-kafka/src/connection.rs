//! One client connection: read a frame, handle it, write the response, in order; and the
//! connection limits (`max.connections`, `max.connections.per.ip`) checked at accept.
//!
//! Responses are written by a writer task, in request order. A Produce with acks returns
//! [`Outcome::Deferred`] once its writes are done: the reader goes on to the next request
//! while the writer task waits for the first one's durability, so a producer with several
//! requests in flight has several in the broker's commit windows instead of one sync round
//! per request. Any other request first waits until every deferred response before it is
//! written, so it observes what a strictly one-at-a-time connection would.
//!
//! A response must leave within `connections.max.idle.ms` too (counted from when it is ready,
//! not while a deferred answer waits for durability): a client that stops reading would
//! otherwise hold the request-memory permits of its request (and of a Fetch response)
//! forever. Those permits travel with the queued response and are released once it is
//! written (or dropped with the connection).

use std::collections::HashMap;
use std::io::IoSlice;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};

use crate::api::{self, Outcome};
use crate::sasl;
use crate::session::{ListenerInfo, Session};
use crate::{Context, frame};
use kafka_protocol::messages::ApiKey;

/// Largest frame body whose buffer is allocated whole before its bytes arrive (they are
/// admitted against the request-memory budget first, and untouched pages cost nothing); a
/// larger one starts at this size and grows as bytes really arrive.
const PREALLOCATED_FRAME_CAPACITY: usize = 16 * 1024 * 1024;

/// Responses queued for the writer task at most (deferred Produce answers in flight on one
/// connection); the reader waits for room beyond it. Request memory is bounded separately by
/// the admission permits each queued response holds.
const MAX_QUEUED_RESPONSES: usize = 32;

/// One response on its way to the socket.
struct Reply {
    outcome: Outcome,
    api_key: kafka_protocol::messages::ApiKey,
    started: std::time::Instant,
    /// Released once the response is written.
    _admitted: OwnedSemaphorePermit,
    /// Signalled once written (for deferred responses, which later requests may wait on).
    written: Option<oneshot::Sender<()>>,
}

/// Socket read buffer under TLS: rustls asks its transport for at most 4 KiB at a time (a TLS
/// record holds up to 16 KiB), so without it every 4 KiB of a request costs a `recv`; through
/// it one call takes whatever the socket holds, up to this much (allocated once per TLS
/// connection).
const TLS_READ_BUFFER: usize = 64 * 1024;

/// Sets a new connection up (TLS handshake on an SSL listener, its [`Session`]) and serves it.
pub(crate) async fn accept(
    stream: TcpStream,
    peer: SocketAddr,
    listener: Arc<ListenerInfo>,
    tls: Option<Arc<strom_tls::TlsServer>>,
    context: Arc<Context>,
) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(%peer, error = %e, "set_nodelay failed");
    }
    tracing::debug!(%peer, listener = %listener.name, "connection opened");
    context.metrics.connection_opened();
    match tls {
        None => {
            let session = Arc::new(Session::new(listener, peer, None));
            let (reader, writer) = stream.into_split();
            serve_requests(reader, writer, session, &context).await;
        }
        Some(tls) => {
            // A 1 MB request is then ~16 socket reads instead of ~256.
            let buffered = tokio::io::BufReader::with_capacity(TLS_READ_BUFFER, stream);
            let handshake = tls.acceptor().accept(buffered);
            match tokio::time::timeout(strom_tls::HANDSHAKE_TIMEOUT, handshake).await {
                Ok(Ok(stream)) => {
                    let principal = match tls.principal(stream.get_ref().1) {
                        Ok(principal) => principal,
                        Err(refused) => {
                            // Kafka fails the client's authentication: no request is served.
                            tracing::info!(%peer, listener = %listener.name, error = %refused, "client certificate refused");
                            context.metrics.connection_closed();
                            return;
                        }
                    };
                    tracing::debug!(%peer, principal = ?principal, "TLS handshake done");
                    let session = Arc::new(Session::new(listener, peer, principal));
                    let (reader, writer) = tokio::io::split(stream);
                    serve_requests(reader, writer, session, &context).await;
                }
                Ok(Err(e)) => {
                    tracing::info!(%peer, listener = %listener.name, error = %e, "TLS handshake failed");
                }
                Err(_) => {
                    tracing::info!(%peer, listener = %listener.name, "TLS handshake timed out");
                }
            }
        }
    }
    context.metrics.connection_closed();
}

async fn serve_requests<R, W>(reader: R, writer: W, session: Arc<Session>, context: &Arc<Context>)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let peer = session.peer;
    let (replies, queue) = mpsc::channel(MAX_QUEUED_RESPONSES);
    let writer_task = tokio::spawn(write_replies(writer, queue, peer, Arc::clone(context)));
    read_requests(reader, &replies, &session, context).await;
    // The writer task drains what was queued (deferred answers included), then ends.
    drop(replies);
    let _ = writer_task.await;
}

/// Writes queued responses in order; ends when the queue closes, a write fails, or a response
/// says to close the connection.
async fn write_replies<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut queue: mpsc::Receiver<Reply>,
    peer: SocketAddr,
    context: Arc<Context>,
) {
    // No write buffer: every response is written whole and at once (see below), so a buffer
    // would only add a copy.
    while let Some(reply) = queue.recv().await {
        let outcome = match reply.outcome {
            Outcome::Deferred(deferred) => deferred.outcome().await,
            outcome => outcome,
        };
        context
            .metrics
            .request(reply.api_key, reply.started.elapsed());
        let out = &mut writer;
        // Owns the outcome: its memory permits (`RespondVectored`'s) are released once it is
        // written, or dropped on failure or timeout.
        let write = async move {
            match outcome {
                // The flush is a no-op on TCP; TLS holds encrypted records until flushed.
                Outcome::Respond(bytes) => {
                    out.write_all(&bytes).await?;
                    out.flush().await.map(|()| true)
                }
                Outcome::RespondVectored(parts, held) => {
                    write_all_vectored(out, &parts).await?;
                    drop(held);
                    out.flush().await.map(|()| true)
                }
                Outcome::RespondThenClose(bytes) => out.write_all(&bytes).await.map(|()| false),
                Outcome::NoResponse => Ok(true),
                // A deferred answer never defers again; treat one that does as a handler bug.
                Outcome::Close | Outcome::Deferred(_) => Ok(false),
            }
        };
        // Every response leaves at once, unbuffered. Holding it back while a pipelined request
        // is handled would delay it by that request's time: a long-poll Fetch behind a Produce
        // would hold the Produce answer for up to `max_wait_ms`.
        match tokio::time::timeout(context.idle_timeout, write).await {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => {
                context.metrics.closed_on_error();
                return;
            }
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "write failed");
                return;
            }
            Err(_) => {
                tracing::warn!(%peer, "client does not read its responses, closing connection");
                return;
            }
        }
        if let Some(done) = reply.written {
            let _ = done.send(());
        }
    }
}

/// Reads and handles requests until the client goes away, the connection must close, or the
/// writer task stopped.
async fn read_requests<R: AsyncRead + Unpin>(
    reader: R,
    replies: &mpsc::Sender<Reply>,
    session: &Arc<Session>,
    context: &Context,
) {
    let peer = session.peer;
    let mut reader = BufReader::new(reader);
    // The SASL exchange's state; a successful one sets the session's principal.
    let mut auth = sasl::Session::new(session.listener.security_protocol.uses_sasl());
    // Written signal of the last deferred response queued, if not yet observed.
    let mut last_deferred: Option<oneshot::Receiver<()>> = None;
    loop {
        let mut prefix = [0u8; 4];
        let read = tokio::select! {
            read = tokio::time::timeout(context.idle_timeout, reader.read_exact(&mut prefix)) => read,
            // The writer task ended (write failed or close): stop reading.
            () = replies.closed() => return,
        };
        match read {
            Ok(Ok(_)) => {}
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                tracing::debug!(%peer, "connection closed by client");
                return;
            }
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "read failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "closing idle connection");
                return;
            }
        }
        let len = match frame::frame_len(prefix, context.max_request_bytes) {
            Ok(len) => len,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "closing connection");
                context.metrics.closed_on_error();
                return;
            }
        };
        // Admission: hold permits for the frame's bytes until its response is written, so the
        // request bytes in memory across all connections stay bounded.
        let permits =
            u32::try_from(len.clamp(1, context.request_memory_limit())).unwrap_or(u32::MAX);
        let Ok(_admitted) = Arc::clone(&context.request_memory)
            .acquire_many_owned(permits)
            .await
        else {
            return;
        };
        // The frame's whole size at once: growing the buffer as it filled copied every large
        // Produce again.
        let mut body = Vec::with_capacity(len.min(PREALLOCATED_FRAME_CAPACITY));
        // The body must arrive within the idle timeout too: a client that announces a large
        // frame and trickles it would otherwise hold its request-memory permits forever.
        let read = async {
            let mut limited = (&mut reader).take(len as u64);
            while body.len() < len {
                if limited.read_buf(&mut body).await? == 0 {
                    break;
                }
            }
            Ok::<usize, std::io::Error>(body.len())
        };
        match tokio::time::timeout(context.idle_timeout, read).await {
            Ok(Ok(n)) if n == len => {}
            Ok(Ok(n)) => {
                tracing::warn!(%peer, expected = len, got = n, "truncated frame, closing connection");
                context.metrics.closed_on_error();
                return;
            }
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "read failed");
                return;
            }
            Err(_) => {
                tracing::warn!(%peer, expected = len, got = body.len(), "frame body too slow, closing connection");
                context.metrics.closed_on_error();
                return;
            }
        }
        if auth.expects_raw_token() {
            // After SaslHandshake v0 the client sends bare SASL tokens; answer likewise.
            let outcome = raw_token(context, &mut auth, &body, peer);
            if let Some(principal) = auth.principal() {
                session.set_principal(principal);
            }
            let close = matches!(outcome, Outcome::Close);
            let reply = Reply {
                outcome,
                api_key: kafka_protocol::messages::ApiKey::SaslAuthenticate,
                started: std::time::Instant::now(),
                _admitted,
                written: None,
            };
            if replies.send(reply).await.is_err() || close {
                return;
            }
            continue;
        }
        let mut request = match frame::decode_request(Bytes::from(body)) {
            Ok(request) => request,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "closing connection");
                context.metrics.closed_on_error();
                return;
            }
        };
        request.peer = Some(peer);
        request.session = Some(Arc::clone(session));
        let started = std::time::Instant::now();
        let api_key = request.api_key;
        let version = request.version();
        let client_id = request.header.client_id.clone();
        let sasl_api = matches!(api_key, ApiKey::SaslHandshake | ApiKey::SaslAuthenticate);
        if !sasl_api && api_key != ApiKey::ApiVersions && !auth.may_serve() {
            tracing::info!(%peer, ?api_key, "request before SASL authentication, closing connection");
            context.metrics.closed_on_error();
            return;
        }
        if !sasl_api && auth.expired(started) {
            tracing::info!(%peer, ?api_key, principal = ?auth.principal(), "SASL session expired without re-authentication, closing connection");
            context.metrics.sasl_session_expired();
            return;
        }
        if api_key != kafka_protocol::messages::ApiKey::Produce
            && let Some(done) = last_deferred.take()
        {
            // Not a Produce: handle it only once every answer before it is on the wire.
            if done.await.is_err() {
                return;
            }
        }
        let outcome = if sasl_api {
            let outcome = api::handle_sasl(context, &request, &mut auth);
            if let Some(principal) = auth.principal() {
                session.set_principal(principal);
            }
            outcome
        } else {
            api::handle(context, request).await
        };
        // Quotas (KIP-219): the response leaves at once carrying the request's longest
        // throttle time (byte rate or request time); the connection is muted (nothing more
        // is read) for that long after it.
        let mute = context.quotas.after_request(
            context.broker.quotas(),
            session,
            client_id.as_deref().unwrap_or(""),
            api_key,
            started.elapsed(),
        );
        let outcome = outcome.with_throttle(
            api_key,
            version,
            i32::try_from(mute.as_millis()).unwrap_or(i32::MAX),
        );
        let close = matches!(outcome, Outcome::Close | Outcome::RespondThenClose(_));
        let written = if matches!(outcome, Outcome::Deferred(_)) {
            let (tx, rx) = oneshot::channel();
            last_deferred = Some(rx);
            Some(tx)
        } else {
            None
        };
        let reply = Reply {
            outcome,
            api_key,
            started,
            _admitted,
            written,
        };
        if replies.send(reply).await.is_err() || close {
            return;
        }
        if !mute.is_zero() {
            tracing::debug!(%peer, ?api_key, mute_ms = mute.as_millis(), "client quota exceeded, muting connection");
            tokio::select! {
                () = tokio::time::sleep(mute) => {}
                () = replies.closed() => return,
            }
        }
    }
}

/// One raw SASL token (after SaslHandshake v0): the answer is a size-prefixed token with no
/// Kafka header; a failure closes the connection without an answer, as Kafka does for v0.
fn raw_token(
    context: &Context,
    auth: &mut sasl::Session,
    token: &[u8],
    peer: SocketAddr,
) -> Outcome {
    match auth.authenticate(context.sasl.as_ref(), context.broker.scram(), token, true) {
        Ok(answer) => {
            let bytes = match answer {
                Ok(done) => {
                    context.metrics.sasl_authentication(true);
                    done.response
                }
                Err(challenge) => challenge,
            };
            let Ok(len) = u32::try_from(bytes.len()) else {
                return Outcome::Close;
            };
            let mut frame = Vec::with_capacity(4 + bytes.len());
            frame.extend_from_slice(&len.to_be_bytes());
            frame.extend_from_slice(&bytes);
            Outcome::Respond(Bytes::from(frame))
        }
        Err(e) => {
            tracing::info!(%peer, error = %e, "SASL authentication failed, closing connection");
            context.metrics.sasl_authentication(false);
            Outcome::Close
        }
    }
}

/// Writes every chunk, in order, with as few `writev` calls as the socket allows; the record
/// sets go from their read buffers straight to the socket.
async fn write_all_vectored<W: AsyncWrite + Unpin>(
    writer: &mut W,
    parts: &[Bytes],
) -> std::io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = parts
        .iter()
        .filter(|p| !p.is_empty())
        .map(|p| IoSlice::new(p))
        .collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        let n = writer.write_vectored(rest).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut rest, n);
    }
    Ok(())
}

/// Open connections against `max.connections` and `max.connections.per.ip`. The limits can be
/// changed at runtime (dynamic broker configs); connections already open stay open.
#[derive(Debug)]
pub struct ConnectionLimits {
    max_total: AtomicUsize,
    max_per_ip: AtomicUsize,
    open: Mutex<OpenConnections>,
}

#[derive(Debug, Default)]
struct OpenConnections {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

impl ConnectionLimits {
    /// Limits with nothing open yet.
    pub fn new(max_total: usize, max_per_ip: usize) -> ConnectionLimits {
        ConnectionLimits {
            max_total: AtomicUsize::new(max_total),
            max_per_ip: AtomicUsize::new(max_per_ip),
            open: Mutex::new(OpenConnections::default()),
        }
    }

    /// Sets `max.connections`.
    pub fn set_max_connections(&self, n: usize) {
        self.max_total.store(n, Ordering::Relaxed);
    }

    /// Sets `max.connections.per.ip`.
    pub fn set_max_connections_per_ip(&self, n: usize) {
        self.max_per_ip.store(n, Ordering::Relaxed);
    }

    /// `(max.connections, max.connections.per.ip)` now.
    pub fn limits(&self) -> (usize, usize) {
        (
            self.max_total.load(Ordering::Relaxed),
            self.max_per_ip.load(Ordering::Relaxed),
        )
    }

    /// Counts a new connection from `ip` if both limits allow it; the slot is given back when
    /// the returned guard drops.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<ConnectionSlot> {
        let (max_total, max_per_ip) = self.limits();
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let from_ip = open.per_ip.get(&ip).copied().unwrap_or(0);
        if open.total >= max_total || from_ip >= max_per_ip {
            return None;
        }
        open.total += 1;
        open.per_ip.insert(ip, from_ip + 1);
        Some(ConnectionSlot {
            limits: Arc::clone(self),
            ip,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .total
    }
}

/// One admitted connection; frees its slot on drop.
#[derive(Debug)]
pub struct ConnectionSlot {
    limits: Arc<ConnectionLimits>,
    ip: IpAddr,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut open = self
            .limits
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.per_ip.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.per_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_count_and_free_slots() {
        let limits = Arc::new(ConnectionLimits::new(3, 2));
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let a1 = limits.admit(a).unwrap();
        let _a2 = limits.admit(a).unwrap();
        assert!(limits.admit(a).is_none(), "per-ip limit");
        let _b1 = limits.admit(b).unwrap();
        assert!(limits.admit(b).is_none(), "total limit");
        drop(a1);
        assert_eq!(limits.open(), 2);
        let _b2 = limits.admit(b).unwrap();
        limits.set_max_connections(10);
        assert!(limits.admit(b).is_none(), "per-ip still applies");
        limits.set_max_connections_per_ip(3);
        assert!(limits.admit(b).is_some());
    }
}
