//! New connections per second: each of `--concurrency` tasks connects, (with `--tls-ca`) makes
//! a full TLS handshake (rustls, no session resumption), sends one request, reads its
//! answer and closes, over and over for `--seconds`. Without `--tls-ca` the same loop runs in
//! plaintext, so the two in one session give the handshake's cost (benches/tls.sh).
//!
//! ```text
//! tls_connect_bench --addr 127.0.0.1:9093 --tls-ca ca.pem --protocol kafka --concurrency 8
//! tls_connect_bench --addr 127.0.0.1:4567 --tls-ca ca.pem --protocol http --concurrency 8
//! ```
//!
//! `kafka` sends ApiVersions v3 and reads its response; `http` sends `GET /` over HTTP/1.1
//! with `Connection: close` and reads until the server closes (any status counts: the round
//! trip is what is measured). Prints one line per run and a `summary` line with the median.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use clap::Parser;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, RequestHeader};
use kafka_protocol::protocol::{Encodable, StrBytes};
use strom_bench::median;
use strom_bench::raw_fetch::Tls;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// The request each connection sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Protocol {
    /// Kafka ApiVersions v3.
    Kafka,
    /// HTTP/1.1 `GET /`, `Connection: close`.
    Http,
}

/// Benchmark options.
#[derive(Debug, Clone, Parser)]
struct Args {
    /// Address to connect to.
    #[arg(long)]
    addr: String,
    /// Speak TLS, trusting the CAs of this PEM file.
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<std::path::PathBuf>,
    /// The name the server's certificate is checked against.
    #[arg(long, default_value = "localhost")]
    tls_server_name: String,
    /// What each connection asks.
    #[arg(long, value_enum, default_value_t = Protocol::Kafka)]
    protocol: Protocol,
    /// Connections made at the same time.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Length of one run.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Runs; the summary is their median.
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

/// One connection's request bytes.
fn request(protocol: Protocol) -> Result<Vec<u8>, String> {
    match protocol {
        Protocol::Http => {
            Ok(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".to_vec())
        }
        Protocol::Kafka => {
            const VERSION: i16 = 3;
            let header = RequestHeader::default()
                .with_request_api_key(ApiKey::ApiVersions as i16)
                .with_request_api_version(VERSION)
                .with_correlation_id(1)
                .with_client_id(Some(StrBytes::from_static_str("tls-connect-bench")));
            let body = ApiVersionsRequest::default()
                .with_client_software_name(StrBytes::from_static_str("strom-bench"))
                .with_client_software_version(StrBytes::from_static_str("1"));
            let mut payload = BytesMut::new();
            header
                .encode(
                    &mut payload,
                    ApiKey::ApiVersions.request_header_version(VERSION),
                )
                .map_err(|e| e.to_string())?;
            body.encode(&mut payload, VERSION)
                .map_err(|e| e.to_string())?;
            let len = i32::try_from(payload.len()).map_err(|e| e.to_string())?;
            let mut frame = Vec::with_capacity(payload.len() + 4);
            frame.put_i32(len);
            frame.extend_from_slice(&payload);
            Ok(frame)
        }
    }
}

/// Sends `request` and reads the whole answer.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    protocol: Protocol,
    request: &[u8],
) -> std::io::Result<()> {
    stream.write_all(request).await?;
    stream.flush().await?;
    match protocol {
        Protocol::Kafka => {
            let mut size = [0u8; 4];
            stream.read_exact(&mut size).await?;
            let size = usize::try_from(i32::from_be_bytes(size))
                .map_err(|_| std::io::Error::other("negative response size"))?;
            let mut body = vec![0u8; size];
            stream.read_exact(&mut body).await?;
        }
        Protocol::Http => {
            let mut sink = Vec::new();
            match stream.read_to_end(&mut sink).await {
                Ok(_) => {}
                // A TLS server that closes without close_notify after `Connection: close`.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !sink.is_empty() => {}
                Err(e) => return Err(e),
            }
            if sink.is_empty() {
                return Err(std::io::Error::other("empty HTTP answer"));
            }
        }
    }
    Ok(())
}

/// One connection: connect, handshake, one exchange, close.
async fn connect_once(args: &Args, tls: Option<&Tls>, request: &[u8]) -> std::io::Result<()> {
    let tcp = TcpStream::connect(&args.addr).await?;
    tcp.set_nodelay(true)?;
    match tls {
        Some(tls) => {
            let connector = tokio_rustls::TlsConnector::from(Arc::clone(tls.config()));
            let mut stream = connector.connect(tls.server_name().clone(), tcp).await?;
            exchange(&mut stream, args.protocol, request).await?;
            let _ = stream.shutdown().await;
        }
        None => {
            let mut stream = tcp;
            exchange(&mut stream, args.protocol, request).await?;
            let _ = stream.shutdown().await;
        }
    }
    Ok(())
}

/// One run: connections per second, and the failures.
async fn run(args: &Arc<Args>, tls: Option<&Arc<Tls>>, request: &Arc<Vec<u8>>) -> (f64, u64) {
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + Duration::from_secs(args.seconds);
    let mut tasks = Vec::with_capacity(args.concurrency);
    for _ in 0..args.concurrency {
        let (args, tls, request) = (Arc::clone(args), tls.cloned(), Arc::clone(request));
        let (done, failed) = (Arc::clone(&done), Arc::clone(&failed));
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                match connect_once(&args, tls.as_deref(), &request).await {
                    Ok(()) => done.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        if failed.fetch_add(1, Ordering::Relaxed) == 0 {
                            eprintln!("connection failed: {e}");
                        }
                        // Do not spin on a refused connection.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        0
                    }
                };
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    (
        done.load(Ordering::Relaxed) as f64 / elapsed,
        failed.load(Ordering::Relaxed),
    )
}

fn main() {
    let args = Args::parse();
    let tls = match &args.tls_ca {
        Some(ca) => match Tls::new(ca, &args.tls_server_name) {
            Ok(t) => Some(Arc::new(t)),
            Err(e) => {
                eprintln!("TLS config: {e}");
                std::process::exit(2);
            }
        },
        None => None,
    };
    let request = match request(args.protocol) {
        Ok(r) => Arc::new(r),
        Err(e) => {
            eprintln!("request: {e}");
            std::process::exit(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("runtime: {e}");
            std::process::exit(2);
        }
    };
    let args = Arc::new(args);
    let mut rates = Vec::with_capacity(args.runs);
    let mut failures = 0;
    for i in 0..args.runs {
        let (rate, failed) = runtime.block_on(run(&args, tls.as_ref(), &request));
        println!(
            "run {} {:?} {} concurrency={}: {rate:.0} connections/s, {failed} failed",
            i + 1,
            args.protocol,
            if tls.is_some() { "tls" } else { "plaintext" },
            args.concurrency
        );
        rates.push(rate);
        failures += failed;
    }
    println!(
        "summary protocol={:?} tls={} concurrency={} runs={} conn_per_s={:.0} failed={failures}",
        args.protocol,
        tls.is_some(),
        args.concurrency,
        args.runs,
        median(&mut rates)
    );
    if failures > 0 {
        std::process::exit(1);
    }
}
