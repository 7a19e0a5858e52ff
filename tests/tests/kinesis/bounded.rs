//! Bounded resources on the Kinesis listener: the connection limit and the in-flight request
//! memory budget, over raw sockets.

use std::time::Duration;

use strom_kinesis::KinesisConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::harness::{Both, WAIT};

fn request_head(target: &str, content_length: usize) -> String {
    format!(
        "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {content_length}\r\nX-Amz-Target: Kinesis_20131202.{target}\r\n\r\n"
    )
}

/// Sends ListStreams on a new connection; returns the status and body.
async fn list_streams(both: &Both) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(both.kinesis).await.ok()?;
    let body = "{}";
    let mut req = request_head("ListStreams", body.len())
        .replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await.ok()?;
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut raw))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text.get(9..12)?.parse().ok()?;
    Some((status, text))
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
    // The budget is at least one largest body (16 MiB): a request announcing that much and
    // not sending it yet holds all of it.
    let config = KinesisConfig {
        max_in_flight_bytes: 1,
        ..KinesisConfig::default()
    };
    let both = Both::start_with(dir.path(), config).await;
    let mut hog = TcpStream::connect(both.kinesis).await.unwrap();
    hog.write_all(request_head("ListStreams", 16 * 1024 * 1024).as_bytes())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, text) = list_streams(&both).await.expect("an answer");
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("LimitExceededException"), "{text}");
    drop(hog);
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
