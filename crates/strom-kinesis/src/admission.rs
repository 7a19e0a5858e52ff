//! The Kinesis listener's connection limit: a [`Listener`] that closes connections accepted
//! beyond `max_connections` open ones (with a warning), and sets `TCP_NODELAY` on the others
//! (a SubscribeToShard response is a stream of small HTTP/2 writes, and Nagle's algorithm held
//! one back behind the peer's delayed ACK, ~40 ms at p99).

use std::io::IoSlice;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use axum::serve::Listener;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// A TCP listener that admits at most `max` open connections.
#[derive(Debug)]
pub(crate) struct LimitedListener {
    inner: TcpListener,
    max: usize,
    open: Arc<AtomicUsize>,
}

impl LimitedListener {
    /// Wraps `inner`; `open` counts the connections open now.
    pub(crate) fn new(inner: TcpListener, max: usize, open: Arc<AtomicUsize>) -> Self {
        LimitedListener { inner, max, open }
    }
}

impl Listener for LimitedListener {
    type Io = CountedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        {
            loop {
                // The TcpListener impl logs accept errors and backs off itself.
                let (stream, peer) = Listener::accept(&mut self.inner).await;
                if self.open.fetch_add(1, Ordering::AcqRel) >= self.max {
                    self.open.fetch_sub(1, Ordering::AcqRel);
                    tracing::warn!(%peer, max = self.max, "kinesis connection limit reached, closing the new connection");
                    drop(stream);
                    continue;
                }
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!(error = %e, "TCP_NODELAY not set on a Kinesis connection");
                }
                let counted = CountedStream {
                    inner: stream,
                    open: Arc::clone(&self.open),
                };
                return (counted, peer);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// An admitted connection; gives its slot back when dropped.
#[derive(Debug)]
pub(crate) struct CountedStream {
    inner: TcpStream,
    open: Arc<AtomicUsize>,
}

impl Drop for CountedStream {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
    }
}

impl AsyncRead for CountedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for CountedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
