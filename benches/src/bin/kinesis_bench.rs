//! Kinesis Data Streams throughput and latency against a running endpoint (Strom, or any
//! Kinesis emulator): PutRecords throughput (batches of 500, several concurrent clients),
//! GetRecords read throughput (one reader per shard), put → GetRecords end-to-end latency, and
//! PutRecords → SubscribeToShard end-to-end latency (an enhanced fan-out subscription over
//! cleartext HTTP/2 with prior knowledge, AWS event-stream frames; `--no-subscribe` for
//! emulators without it). Speaks plain HTTP/1.1 keep-alive JSON 1.1 with a syntactically valid
//! but unchecked SigV4 header (emulators check its shape, not the signature).
//!
//! ```text
//! strom serve --data-dir /tmp/kbench --kafka-listen 127.0.0.1:19092 --kinesis-listen 127.0.0.1:14567 &
//! cargo run --release -p strom-bench --bin kinesis_bench -- --endpoint 127.0.0.1:14567 --size 100
//! ```

use std::borrow::Cow;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
use aws_smithy_types::event_stream::{HeaderValue, Message};
use base64::Engine as _;
use clap::Parser;
use serde::Deserialize;
use serde_json::{Value, json};
use strom_bench::{median, percentile};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Result<T> = std::result::Result<T, BoxError>;

/// Benchmark options.
#[derive(Debug, Parser)]
struct Args {
    /// Kinesis endpoint, HOST:PORT (plain HTTP).
    #[arg(long, default_value = "127.0.0.1:4567")]
    endpoint: String,
    /// Stream name prefix; each run uses fresh streams.
    #[arg(long, default_value = "kbench")]
    stream: String,
    /// Shards of the throughput stream.
    #[arg(long, default_value_t = 4)]
    shards: u32,
    /// Record data size in bytes.
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Records per run.
    #[arg(long, default_value_t = 200_000)]
    count: usize,
    /// Concurrent PutRecords clients (one connection each).
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Records per PutRecords.
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Latency samples (one PutRecord every `--interval-ms`).
    #[arg(long, default_value_t = 300)]
    samples: usize,
    /// Pause between latency samples.
    #[arg(long, default_value_t = 5)]
    interval_ms: u64,
    /// Runs; every run and the median are printed.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Skip the SubscribeToShard latency phase (for endpoints without HTTP/2 or consumers).
    #[arg(long)]
    no_subscribe: bool,
    /// Label printed with the results.
    #[arg(long, default_value = "target")]
    label: String,
}

/// One keep-alive HTTP/1.1 connection.
struct Conn {
    io: BufReader<TcpStream>,
    host: String,
}

fn amz_date() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

impl Conn {
    async fn connect(endpoint: &str) -> Result<Conn> {
        let tcp = TcpStream::connect(endpoint).await?;
        tcp.set_nodelay(true)?;
        Ok(Conn {
            io: BufReader::with_capacity(1 << 20, tcp),
            host: endpoint.to_owned(),
        })
    }

    /// Calls `action`; returns the decoded JSON or an error with the AWS error body.
    async fn call(&mut self, action: &str, body: &Value) -> Result<Value> {
        let out = self.call_raw(action, &serde_json::to_vec(body)?).await?;
        if out.is_empty() {
            // Some emulators answer CreateStream with an empty body.
            return Ok(Value::Null);
        }
        Ok(serde_json::from_slice(&out)?)
    }

    /// Calls `action` with an encoded JSON body; returns the response body or an error with
    /// the AWS error body.
    async fn call_raw(&mut self, action: &str, body: &[u8]) -> Result<Vec<u8>> {
        let date = amz_date();
        let head = format!(
            "POST / HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-amz-json-1.1\r\n\
             X-Amz-Target: Kinesis_20131202.{action}\r\nX-Amz-Date: {date}\r\n\
             Authorization: AWS4-HMAC-SHA256 Credential=AKIDBENCH/{}/us-east-1/kinesis/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=00\r\n\
             Content-Length: {}\r\n\r\n",
            self.host,
            &date[..8],
            body.len()
        );
        let stream = self.io.get_mut();
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body).await?;
        let mut line = String::new();
        self.io.read_line(&mut line).await?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .ok_or("no status line")?
            .parse()?;
        let mut length = None;
        let mut chunked = false;
        loop {
            line.clear();
            if self.io.read_line(&mut line).await? == 0 {
                return Err("connection closed".into());
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let lower = l.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                length = Some(v.trim().parse::<usize>()?);
            } else if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
                chunked = true;
            }
        }
        let mut out = Vec::new();
        if chunked {
            loop {
                line.clear();
                self.io.read_line(&mut line).await?;
                let size = usize::from_str_radix(line.trim(), 16)?;
                let start = out.len();
                out.resize(start + size + 2, 0);
                self.io.read_exact(&mut out[start..]).await?;
                out.truncate(start + size);
                if size == 0 {
                    break;
                }
            }
        } else {
            out.resize(length.ok_or("no content-length")?, 0);
            self.io.read_exact(&mut out).await?;
        }
        if status != 200 {
            return Err(
                format!("{action}: HTTP {status}: {}", String::from_utf8_lossy(&out)).into(),
            );
        }
        Ok(out)
    }
}

/// The part of a `PutRecords` response the put phase reads (the rest is skipped unparsed).
#[derive(Debug, Deserialize)]
struct PutRecordsOut {
    #[serde(rename = "FailedRecordCount", default)]
    failed: u64,
}

/// The part of a `GetRecords` response the get phase reads, borrowed from the body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetRecordsOut<'a> {
    #[serde(borrow, default)]
    records: Option<Vec<RecordOut<'a>>>,
    #[serde(borrow, default)]
    next_shard_iterator: Option<Cow<'a, str>>,
    #[serde(default)]
    millis_behind_latest: Option<u64>,
}

/// One record of a `GetRecords` response: only its base64 data.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RecordOut<'a> {
    #[serde(borrow)]
    data: Cow<'a, str>,
}

/// Writes a `PutRecords` body of `n` records carrying `data` (already base64), with partition
/// keys `c<client>-<i>` for `i` in `from..from + n`. Built by hand, so the harness's own
/// encoding costs one copy per record rather than a JSON value tree.
fn put_records_body(
    out: &mut Vec<u8>,
    stream: &str,
    data: &str,
    client: usize,
    from: usize,
    n: usize,
) {
    use std::io::Write as _;
    out.clear();
    out.extend_from_slice(b"{\"StreamName\":");
    // A stream name is [a-zA-Z0-9_.-]; encoding it as JSON cannot fail.
    let _ = serde_json::to_writer(&mut *out, stream);
    out.extend_from_slice(b",\"Records\":[");
    for i in from..from + n {
        if i > from {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"Data\":\"");
        out.extend_from_slice(data.as_bytes());
        let _ = write!(out, "\",\"PartitionKey\":\"c{client}-{i}\"}}");
    }
    out.extend_from_slice(b"]}");
}

async fn create_stream(endpoint: &str, name: &str, shards: u32) -> Result<Vec<String>> {
    let mut c = Conn::connect(endpoint).await?;
    c.call(
        "CreateStream",
        &json!({"StreamName": name, "ShardCount": shards}),
    )
    .await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let d = c
            .call("DescribeStream", &json!({"StreamName": name}))
            .await?;
        let desc = &d["StreamDescription"];
        if desc["StreamStatus"] == "ACTIVE" {
            let ids = desc["Shards"]
                .as_array()
                .ok_or("no Shards")?
                .iter()
                .filter_map(|s| s["ShardId"].as_str().map(str::to_owned))
                .collect();
            return Ok(ids);
        }
        if Instant::now() > deadline {
            return Err("stream never became ACTIVE".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn iterator(c: &mut Conn, stream: &str, shard: &str, kind: &str) -> Result<String> {
    let r = c
        .call(
            "GetShardIterator",
            &json!({"StreamName": stream, "ShardId": shard, "ShardIteratorType": kind}),
        )
        .await?;
    Ok(r["ShardIterator"]
        .as_str()
        .ok_or("no ShardIterator")?
        .to_owned())
}

/// PutRecords from `clients` connections; returns (elapsed, records appended).
async fn put_phase(args: &Args, stream: &str) -> Result<(Duration, usize)> {
    let data = base64::engine::general_purpose::STANDARD.encode(vec![b'x'; args.size]);
    let per_client = args.count / args.clients;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..args.clients {
        let endpoint = args.endpoint.clone();
        let stream = stream.to_owned();
        let data = data.clone();
        let batch = args.batch;
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::connect(&endpoint).await?;
            let mut sent = 0usize;
            let mut ok = 0usize;
            let mut body = Vec::new();
            while sent < per_client {
                let n = batch.min(per_client - sent);
                put_records_body(&mut body, &stream, &data, client, sent, n);
                let r = c.call_raw("PutRecords", &body).await?;
                let r: PutRecordsOut = serde_json::from_slice(&r)?;
                ok += n.saturating_sub(r.failed as usize);
                sent += n;
            }
            Ok::<usize, BoxError>(ok)
        }));
    }
    let mut ok = 0;
    for t in tasks {
        ok += t.await??;
    }
    Ok((started.elapsed(), ok))
}

/// Reads every shard from TRIM_HORIZON to the end, one reader per shard.
async fn get_phase(args: &Args, stream: &str, shards: &[String]) -> Result<(Duration, usize, u64)> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for shard in shards {
        let endpoint = args.endpoint.clone();
        let stream = stream.to_owned();
        let shard = shard.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::connect(&endpoint).await?;
            let mut it = iterator(&mut c, &stream, &shard, "TRIM_HORIZON").await?;
            let mut records = 0usize;
            let mut bytes = 0u64;
            loop {
                let body = serde_json::to_vec(&json!({"ShardIterator": it, "Limit": 10000}))?;
                let raw = c.call_raw("GetRecords", &body).await?;
                let r: GetRecordsOut<'_> = serde_json::from_slice(&raw)?;
                let recs = r.records.ok_or("no Records")?;
                for rec in &recs {
                    bytes += (rec.data.len() / 4 * 3) as u64;
                }
                records += recs.len();
                if recs.is_empty() && r.millis_behind_latest == Some(0) {
                    break;
                }
                it = match r.next_shard_iterator {
                    Some(s) => s.into_owned(),
                    None => break,
                };
            }
            Ok::<(usize, u64), BoxError>((records, bytes))
        }));
    }
    let mut records = 0;
    let mut bytes = 0;
    for t in tasks {
        let (r, b) = t.await??;
        records += r;
        bytes += b;
    }
    Ok((started.elapsed(), records, bytes))
}

/// One writer puts a record every `interval_ms` carrying its send time; one reader polls
/// GetRecords back to back. Returns sorted latencies in microseconds.
async fn latency_phase(args: &Args, stream: &str, shard: &str) -> Result<Vec<u32>> {
    let origin = Instant::now();
    let mut reader = Conn::connect(&args.endpoint).await?;
    let mut it = iterator(&mut reader, stream, shard, "LATEST").await?;
    let samples = args.samples;
    let writer = {
        let endpoint = args.endpoint.clone();
        let stream = stream.to_owned();
        let interval = Duration::from_millis(args.interval_ms);
        tokio::spawn(async move {
            let mut c = Conn::connect(&endpoint).await?;
            for _ in 0..samples {
                let sent = origin.elapsed().as_micros() as u64;
                let data = base64::engine::general_purpose::STANDARD.encode(sent.to_be_bytes());
                c.call(
                    "PutRecord",
                    &json!({"StreamName": stream, "PartitionKey": "l", "Data": data}),
                )
                .await?;
                tokio::time::sleep(interval).await;
            }
            Ok::<(), BoxError>(())
        })
    };
    let mut lat = Vec::with_capacity(samples);
    let deadline = Instant::now() + Duration::from_secs(120);
    while lat.len() < samples && Instant::now() < deadline {
        let r = reader
            .call("GetRecords", &json!({"ShardIterator": it}))
            .await?;
        let now = origin.elapsed().as_micros() as u64;
        for rec in r["Records"].as_array().ok_or("no Records")? {
            let d = base64::engine::general_purpose::STANDARD
                .decode(rec["Data"].as_str().unwrap_or_default())?;
            let sent = u64::from_be_bytes(d.get(..8).ok_or("short record")?.try_into()?);
            lat.push(u32::try_from(now.saturating_sub(sent)).unwrap_or(u32::MAX));
        }
        it = r["NextShardIterator"]
            .as_str()
            .ok_or("no NextShardIterator")?
            .to_owned();
    }
    writer.await??;
    lat.sort_unstable();
    Ok(lat)
}

/// Reads the next whole event-stream message from an HTTP/2 response body.
async fn next_message(
    body: &mut h2::RecvStream,
    buf: &mut bytes::BytesMut,
    decoder: &mut MessageFrameDecoder,
) -> Result<Option<Message>> {
    loop {
        if let DecodedFrame::Complete(m) = decoder.decode_frame(&mut *buf)? {
            return Ok(Some(m));
        }
        let Some(chunk) = body.data().await else {
            return Ok(None);
        };
        let chunk = chunk?;
        body.flow_control().release_capacity(chunk.len())?;
        buf.extend_from_slice(&chunk);
    }
}

/// A message's `:event-type` header.
fn event_type(m: &Message) -> Option<&str> {
    m.headers()
        .iter()
        .find(|h| h.name().as_str() == ":event-type")
        .and_then(|h| match h.value() {
            HeaderValue::String(s) => Some(s.as_str()),
            _ => None,
        })
}

/// One writer sends a one-record PutRecords every `interval_ms` carrying its send time; one
/// enhanced fan-out consumer, subscribed from LATEST over HTTP/2, timestamps each record as its
/// event arrives. Returns sorted latencies in microseconds.
async fn subscribe_phase(args: &Args, stream: &str, shard: &str) -> Result<Vec<u32>> {
    let origin = Instant::now();
    let mut c = Conn::connect(&args.endpoint).await?;
    let arn = format!("arn:aws:kinesis:us-east-1:000000000000:stream/{stream}");
    let reg = c
        .call(
            "RegisterStreamConsumer",
            &json!({"StreamARN": arn, "ConsumerName": "bench"}),
        )
        .await?;
    let consumer = reg["Consumer"]["ConsumerARN"]
        .as_str()
        .ok_or("no ConsumerARN")?
        .to_owned();
    let tcp = TcpStream::connect(&args.endpoint).await?;
    tcp.set_nodelay(true)?;
    let (client, connection) = h2::client::handshake(tcp).await?;
    let conn = tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut client = client.ready().await?;
    let request = http::Request::builder()
        .method("POST")
        .uri(format!("http://{}/", args.endpoint))
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amz-target", "Kinesis_20131202.SubscribeToShard")
        .body(())?;
    let body = json!({
        "ConsumerARN": consumer,
        "ShardId": shard,
        "StartingPosition": {"Type": "LATEST"},
    });
    let (response, mut send) = client.send_request(request, false)?;
    send.send_data(bytes::Bytes::from(serde_json::to_vec(&body)?), true)?;
    let response = response.await?;
    if response.status() != 200 {
        return Err(format!("SubscribeToShard: HTTP {}", response.status()).into());
    }
    let mut events = response.into_body();
    let mut buf = bytes::BytesMut::new();
    let mut decoder = MessageFrameDecoder::new();
    let first = next_message(&mut events, &mut buf, &mut decoder)
        .await?
        .ok_or("subscription ended before its initial-response")?;
    if event_type(&first) != Some("initial-response") {
        return Err("the first event is not the initial-response".into());
    }
    let samples = args.samples;
    let writer = {
        let endpoint = args.endpoint.clone();
        let stream = stream.to_owned();
        let interval = Duration::from_millis(args.interval_ms);
        tokio::spawn(async move {
            let mut c = Conn::connect(&endpoint).await?;
            for _ in 0..samples {
                let sent = origin.elapsed().as_micros() as u64;
                let data = base64::engine::general_purpose::STANDARD.encode(sent.to_be_bytes());
                c.call(
                    "PutRecords",
                    &json!({"StreamName": stream, "Records": [{"PartitionKey": "l", "Data": data}]}),
                )
                .await?;
                tokio::time::sleep(interval).await;
            }
            Ok::<(), BoxError>(())
        })
    };
    let mut lat = Vec::with_capacity(samples);
    let deadline = Duration::from_secs(120);
    let read = tokio::time::timeout(deadline, async {
        while lat.len() < samples {
            let Some(m) = next_message(&mut events, &mut buf, &mut decoder).await? else {
                break;
            };
            let now = origin.elapsed().as_micros() as u64;
            if event_type(&m) != Some("SubscribeToShardEvent") {
                continue;
            }
            let e: Value = serde_json::from_slice(m.payload())?;
            for rec in e["Records"].as_array().ok_or("no Records")? {
                let d = base64::engine::general_purpose::STANDARD
                    .decode(rec["Data"].as_str().unwrap_or_default())?;
                let sent = u64::from_be_bytes(d.get(..8).ok_or("short record")?.try_into()?);
                lat.push(u32::try_from(now.saturating_sub(sent)).unwrap_or(u32::MAX));
            }
        }
        Ok::<(), BoxError>(())
    })
    .await;
    writer.await??;
    drop(events);
    drop(client);
    conn.abort();
    read.map_err(|_| "SubscribeToShard latency phase timed out")??;
    lat.sort_unstable();
    Ok(lat)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let tag = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let mut put_rps = Vec::new();
    let mut put_mbs = Vec::new();
    let mut get_rps = Vec::new();
    let mut get_mbs = Vec::new();
    let mut p50s = Vec::new();
    let mut p99s = Vec::new();
    let mut sub_p50s = Vec::new();
    let mut sub_p99s = Vec::new();
    for run in 0..args.runs {
        let stream = format!("{}-{tag}-{run}", args.stream);
        let shards = create_stream(&args.endpoint, &stream, args.shards).await?;
        let (elapsed, ok) = put_phase(&args, &stream).await?;
        let secs = elapsed.as_secs_f64();
        let rps = ok as f64 / secs;
        let mbs = (ok * args.size) as f64 / secs / 1e6;
        let (gelapsed, grecords, gbytes) = get_phase(&args, &stream, &shards).await?;
        let gsecs = gelapsed.as_secs_f64();
        let lstream = format!("{}-lat-{tag}-{run}", args.stream);
        let lshards = create_stream(&args.endpoint, &lstream, 1).await?;
        let lat = latency_phase(&args, &lstream, &lshards[0]).await?;
        let p50 = percentile(&lat, 0.50);
        let p99 = percentile(&lat, 0.99);
        println!(
            "{} run {run}: put {ok}/{} records x {} B in {secs:.2}s = {rps:.0} rec/s {mbs:.1} MB/s; \
             get {grecords} records in {gsecs:.2}s = {:.0} rec/s {:.1} MB/s; \
             put->GetRecords latency p50 {p50:.2} ms p99 {p99:.2} ms ({} samples)",
            args.label,
            args.count / args.clients * args.clients,
            args.size,
            grecords as f64 / gsecs,
            gbytes as f64 / gsecs / 1e6,
            lat.len()
        );
        if !args.no_subscribe {
            let sstream = format!("{}-sub-{tag}-{run}", args.stream);
            let sshards = create_stream(&args.endpoint, &sstream, 1).await?;
            let sub = subscribe_phase(&args, &sstream, &sshards[0]).await?;
            let (s50, s99) = (percentile(&sub, 0.50), percentile(&sub, 0.99));
            println!(
                "{} run {run}: PutRecords->SubscribeToShard latency p50 {s50:.2} ms p99 {s99:.2} ms ({} samples)",
                args.label,
                sub.len()
            );
            sub_p50s.push(s50);
            sub_p99s.push(s99);
        }
        put_rps.push(rps);
        put_mbs.push(mbs);
        get_rps.push(grecords as f64 / gsecs);
        get_mbs.push(gbytes as f64 / gsecs / 1e6);
        p50s.push(p50);
        p99s.push(p99);
    }
    println!(
        "{} median of {}: put {:.0} rec/s {:.1} MB/s; get {:.0} rec/s {:.1} MB/s; latency p50 {:.2} ms p99 {:.2} ms",
        args.label,
        args.runs,
        median(&mut put_rps),
        median(&mut put_mbs),
        median(&mut get_rps),
        median(&mut get_mbs),
        median(&mut p50s),
        median(&mut p99s)
    );
    if !args.no_subscribe {
        println!(
            "{} median of {}: PutRecords->SubscribeToShard latency p50 {:.2} ms p99 {:.2} ms",
            args.label,
            args.runs,
            median(&mut sub_p50s),
            median(&mut sub_p99s)
        );
    }
    Ok(())
}
