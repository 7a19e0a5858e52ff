//! Bounded resources on the Kinesis listener: the connection limit and the in-flight request
//! memory budget, over raw sockets.

use std::time::Duration;

use strom_kinesis::KinesisConfig;
use strom_kinesis::service::{MAX_BODY_BYTES, MIN_IN_FLIGHT_BYTES};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::harness::{Both, WAIT};

fn request_head(target: &str, content_length: usize) -> String {
    format!(
        "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {content_length}\r\nX-Amz-Target: Kinesis_20131202.{target}\r\n\r\n"
    )
}

/// Holds `bytes` of the in-flight memory budget: requests announcing bodies (at most the
/// largest accepted each) that never arrive. Dropping the connections frees them.
async fn hog_budget(both: &Both, bytes: usize) -> Vec<TcpStream> {
    let mut hogs = Vec::new();
    let mut left = bytes;
    while left > 0 {
        let len = left.min(MAX_BODY_BYTES);
        let mut hog = TcpStream::connect(both.kinesis).await.unwrap();
        hog.write_all(request_head("ListStreams", len).as_bytes())
            .await
            .unwrap();
        hogs.push(hog);
        left -= len;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    hogs
}

/// Sends `target` with the JSON `body` on a new connection; returns the status and body.
async fn call(both: &Both, target: &str, body: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(both.kinesis).await.ok()?;
    let mut req =
        request_head(target, body.len()).replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await.ok()?;
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut raw))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.get(9..12)?.parse().ok()?;
    Some((status, text))
}

/// Sends ListStreams on a new connection; returns the status and body.
async fn list_streams(both: &Both) -> Option<(u16, String)> {
    call(both, "ListStreams", "{}").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let config = KinesisConfig {
        max_connections: 1,
        ..KinesisConfig::default()
    };
    let both = Both::start_with(dir.path(), config).await;
    let held = TcpStream::connect(both.kinesis).await.unwrap();
    // Give the server time to accept the held connection.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        list_streams(&both).await,
        None,
        "the second connection is closed"
    );
    drop(held);
    let mut answered = None;
    for _ in 0..50 {
        if let Some(reply) = list_streams(&both).await {
            answered = Some(reply);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(answered.map(|(s, _)| s), Some(200), "a slot frees on close");
    both.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_the_memory_budget_get_limit_exceeded() {
    let dir = tempfile::tempdir().unwrap();
    // The budget is raised to its minimum; requests announcing that much between them and
    // not sending their bodies yet hold all of it.
    let config = KinesisConfig {
        max_in_flight_bytes: 1,
        ..KinesisConfig::default()
    };
    let both = Both::start_with(dir.path(), config).await;
    let hogs = hog_budget(&both, MIN_IN_FLIGHT_BYTES).await;
    let (status, text) = list_streams(&both).await.expect("an answer");
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("LimitExceededException"), "{text}");
    drop(hogs);
    let mut ok = false;
    for _ in 0..50 {
        if let Some((200, _)) = list_streams(&both).await {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok, "the budget frees when the hog goes away");
    both.stop().await;
}

/// GetRecords responses count against the same budget: with all but 1 MiB of it held by
/// request bodies, small requests still pass but a GetRecords (which reserves the most its
/// response can take) gets `LimitExceededException`, and passes once the budget frees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_records_responses_count_against_the_memory_budget() {
    let dir = tempfile::tempdir().unwrap();
    let config = KinesisConfig {
        max_in_flight_bytes: 1,
        ..KinesisConfig::default()
    };
    let both = Both::start_with(dir.path(), config).await;
    let k = both.client();
    k.create_stream()
        .stream_name("m")
        .shard_count(1)
        .send()
        .await
        .unwrap();
    k.put_record()
        .stream_name("m")
        .partition_key("p")
        .data(aws_sdk_kinesis::primitives::Blob::new("x"))
        .send()
        .await
        .unwrap();
    let iterator = k
        .get_shard_iterator()
        .stream_name("m")
        .shard_id("shardId-000000000000")
        .shard_iterator_type(aws_sdk_kinesis::types::ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap()
        .shard_iterator()
        .unwrap()
        .to_owned();
    let get = format!("{{\"ShardIterator\":\"{iterator}\"}}");

    let hogs = hog_budget(&both, MIN_IN_FLIGHT_BYTES - 1024 * 1024).await;
    let (status, text) = list_streams(&both).await.expect("an answer");
    assert_eq!(status, 200, "a small request fits: {text}");
    let (status, text) = call(&both, "GetRecords", &get).await.expect("an answer");
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("LimitExceededException"), "{text}");

    drop(hogs);
    let mut answered = None;
    for _ in 0..50 {
        match call(&both, "GetRecords", &get).await {
            Some((200, text)) => {
                answered = Some(text);
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let text = answered.expect("GetRecords passes once the budget frees");
    assert!(text.contains("\"Records\":[{"), "{text}");
    both.stop().await;
}

/// SubscribeToShard events count against the same budget: while the budget is held, a
/// subscription waits for room before it reads (no event, no failure), and delivers the
/// records once the budget frees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_to_shard_events_wait_for_the_memory_budget() {
    use aws_sdk_kinesis::types::{
        ShardIteratorType, StartingPosition, SubscribeToShardEventStream,
    };

    let dir = tempfile::tempdir().unwrap();
    let config = KinesisConfig {
        max_in_flight_bytes: 1,
        ..KinesisConfig::default()
    };
    let both = Both::start_with(dir.path(), config).await;
    let k = both.client();
    k.create_stream()
        .stream_name("s")
        .shard_count(1)
        .send()
        .await
        .unwrap();
    let consumer_arn = k
        .register_stream_consumer()
        .stream_arn("arn:aws:kinesis:us-east-1:000000000000:stream/s")
        .consumer_name("efo")
        .send()
        .await
        .unwrap()
        .consumer()
        .unwrap()
        .consumer_arn()
        .to_owned();
    k.put_record()
        .stream_name("s")
        .partition_key("p")
        .data(aws_sdk_kinesis::primitives::Blob::new(vec![7u8]))
        .send()
        .await
        .unwrap();

    let hogs = hog_budget(&both, MIN_IN_FLIGHT_BYTES - 1024 * 1024).await;
    // The budget is the listener's own: subscribe on the one the hogs hold (in a cluster,
    // a different broker from the one the stream was created and written through).
    let mut out = both
        .broker_client(1)
        .subscribe_to_shard()
        .consumer_arn(&consumer_arn)
        .shard_id("shardId-000000000000")
        .starting_position(
            StartingPosition::builder()
                .r#type(ShardIteratorType::TrimHorizon)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let early = tokio::time::timeout(Duration::from_millis(1500), out.event_stream.recv()).await;
    assert!(
        early.is_err(),
        "an event was read without room in the budget: {early:?}"
    );

    drop(hogs);
    let event = tokio::time::timeout(WAIT, out.event_stream.recv())
        .await
        .expect("an event once the budget frees")
        .unwrap();
    match event {
        Some(SubscribeToShardEventStream::SubscribeToShardEvent(e)) => {
            let data: Vec<u8> = e.records().iter().map(|r| r.data().as_ref()[0]).collect();
            assert_eq!(data, [7]);
        }
        other => panic!("unexpected {other:?}"),
    }
    both.stop().await;
}
