//! One client connection: read a frame, handle it, write the response, in order; and the
//! connection limits (`max.connections`, `max.connections.per.ip`) checked at accept.
//!
//! A response must leave within `connections.max.idle.ms` too: a client that stops reading
//! would otherwise hold the request-memory permits of its request (and of a Fetch response)
//! forever.

use std::collections::HashMap;
use std::io::IoSlice;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::Context;
use crate::api::{self, Outcome};
use crate::frame;

/// Initial buffer for a frame body; grows as bytes really arrive, so a large size prefix alone
/// does not allocate.
const INITIAL_FRAME_CAPACITY: usize = 64 * 1024;

pub(crate) async fn serve(stream: TcpStream, peer: SocketAddr, context: Arc<Context>) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(%peer, error = %e, "set_nodelay failed");
    }
    tracing::debug!(%peer, "connection opened");
    context.metrics.connection_opened();
    serve_requests(stream, peer, &context).await;
    context.metrics.connection_closed();
}

async fn serve_requests(stream: TcpStream, peer: SocketAddr, context: &Context) {
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    // No write buffer: every response is written whole and at once (see below), so a buffer
    // would only add a copy.
    loop {
        let mut prefix = [0u8; 4];
        match tokio::time::timeout(context.idle_timeout, reader.read_exact(&mut prefix)).await {
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
        let mut body = Vec::with_capacity(len.min(INITIAL_FRAME_CAPACITY));
        // The body must arrive within the idle timeout too: a client that announces a large
        // frame and trickles it would otherwise hold its request-memory permits forever.
        let mut limited = (&mut reader).take(len as u64);
        let read = limited.read_to_end(&mut body);
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
        let mut request = match frame::decode_request(Bytes::from(body)) {
            Ok(request) => request,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "closing connection");
                context.metrics.closed_on_error();
                return;
            }
        };
        request.peer = Some(peer);
        let started = std::time::Instant::now();
        let api_key = request.api_key;
        let outcome = api::handle(context, request).await;
        context.metrics.request(api_key, started.elapsed());
        let write = async {
            match &outcome {
                Outcome::Respond(bytes) => writer.write_all(bytes).await.map(|()| true),
                Outcome::RespondVectored(parts, _held) => {
                    write_all_vectored(&mut writer, parts).await.map(|()| true)
                }
                Outcome::NoResponse => Ok(true),
                Outcome::Close => Ok(false),
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
