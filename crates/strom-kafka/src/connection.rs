//! One client connection: read a frame, handle it, write the response, in order.

use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::Arc;

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
        let written = match &outcome {
            Outcome::Respond(bytes) => writer.write_all(bytes).await,
            Outcome::RespondVectored(parts) => write_all_vectored(&mut writer, parts).await,
            Outcome::NoResponse => continue,
            Outcome::Close => {
                context.metrics.closed_on_error();
                return;
            }
        };
        // Every response leaves at once, unbuffered. Holding it back while a pipelined request
        // is handled would delay it by that request's time: a long-poll Fetch behind a Produce
        // would hold the Produce answer for up to `max_wait_ms`.
        if let Err(e) = written {
            tracing::debug!(%peer, error = %e, "write failed");
            return;
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
