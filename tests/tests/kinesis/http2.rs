//! SubscribeToShard over cleartext HTTP/2 with prior knowledge (the `h2` client, as the AWS SDKs
//! speak it to the real service), an unsigned JSON 1.1 request, and the response's AWS
//! event-stream frames decoded with `aws-smithy-eventstream`.

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::Blob;
use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
use aws_smithy_types::event_stream::{HeaderValue, Message};
use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use serde_json::{Value, json};

use super::harness::{Both, WAIT};

/// The string value of header `name` of an event-stream message.
pub(crate) fn header<'a>(m: &'a Message, name: &str) -> &'a str {
    m.headers()
        .iter()
        .find(|h| h.name().as_str() == name)
        .and_then(|h| match h.value() {
            HeaderValue::String(s) => Some(s.as_str()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no string header {name} in {m:?}"))
}

/// Reads the next whole event-stream message from an HTTP/2 response body.
pub(crate) async fn next_message(
    body: &mut h2::RecvStream,
    buf: &mut BytesMut,
    decoder: &mut MessageFrameDecoder,
) -> Option<Message> {
    loop {
        if let DecodedFrame::Complete(m) = decoder.decode_frame(&mut *buf).unwrap() {
            return Some(m);
        }
        let chunk = body.data().await?.unwrap();
        body.flow_control().release_capacity(chunk.len()).unwrap();
        buf.extend_from_slice(&chunk);
    }
}

async fn put(k: &Client, data: u8) -> String {
    k.put_record()
        .stream_name("h2")
        .partition_key("p")
        .data(Blob::new(vec![data; 3]))
        .send()
        .await
        .unwrap()
        .sequence_number
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_to_shard_over_http2_prior_knowledge() {
    let dir = tempfile::tempdir().unwrap();
    let both = Both::start(dir.path()).await;
    let k = both.client();
    k.create_stream()
        .stream_name("h2")
        .shard_count(1)
        .send()
        .await
        .unwrap();
    let consumer_arn = k
        .register_stream_consumer()
        .stream_arn("arn:aws:kinesis:us-east-1:000000000000:stream/h2")
        .consumer_name("efo")
        .send()
        .await
        .unwrap()
        .consumer
        .unwrap()
        .consumer_arn;
    let mut expected = Vec::new();
    for i in 0..3u8 {
        expected.push((i, put(&k, i).await));
    }

    // HTTP/2 with prior knowledge: no upgrade, the client preface goes first.
    let tcp = tokio::net::TcpStream::connect(both.kinesis).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    let conn = tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut client = client.ready().await.unwrap();
    let request = http::Request::builder()
        .method("POST")
        .uri(format!("http://{}/", both.kinesis))
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amz-target", "Kinesis_20131202.SubscribeToShard")
        .body(())
        .unwrap();
    let body = json!({
        "ConsumerARN": consumer_arn,
        "ShardId": "shardId-000000000000",
        "StartingPosition": {"Type": "TRIM_HORIZON"},
    });
    let (response, mut send) = client.send_request(request, false).unwrap();
    send.send_data(Bytes::from(serde_json::to_vec(&body).unwrap()), true)
        .unwrap();
    let response = tokio::time::timeout(WAIT, response).await.unwrap().unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/vnd.amazon.eventstream"
    );
    let mut stream = response.into_body();
    let mut buf = BytesMut::new();
    let mut decoder = MessageFrameDecoder::new();

    let first = tokio::time::timeout(WAIT, next_message(&mut stream, &mut buf, &mut decoder))
        .await
        .unwrap()
        .expect("initial-response");
    assert_eq!(header(&first, ":message-type"), "event");
    assert_eq!(header(&first, ":event-type"), "initial-response");
    let initial: Value = serde_json::from_slice(first.payload()).unwrap();
    assert_eq!(initial, json!({}));

    // Records put during the subscription arrive on the same stream.
    let writer = {
        let k = k.clone();
        tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 3..6u8 {
                seqs.push((i, put(&k, i).await));
            }
            seqs
        })
    };
    let mut seen: Vec<(u8, String)> = Vec::new();
    let mut events = 0;
    let mut last_continuation = String::new();
    tokio::time::timeout(WAIT, async {
        while seen.len() < 6 {
            let m = next_message(&mut stream, &mut buf, &mut decoder)
                .await
                .expect("stream ended early");
            assert_eq!(header(&m, ":message-type"), "event");
            assert_eq!(header(&m, ":event-type"), "SubscribeToShardEvent");
            assert_eq!(header(&m, ":content-type"), "application/x-amz-json-1.1");
            let e: Value = serde_json::from_slice(m.payload()).unwrap();
            events += 1;
            let behind = e["MillisBehindLatest"]
                .as_i64()
                .expect("MillisBehindLatest");
            assert!(behind >= 0, "{e}");
            let continuation = e["ContinuationSequenceNumber"]
                .as_str()
                .expect("ContinuationSequenceNumber")
                .to_owned();
            let records = e["Records"].as_array().expect("Records");
            for r in records {
                let data = base64::engine::general_purpose::STANDARD
                    .decode(r["Data"].as_str().unwrap())
                    .unwrap();
                assert_eq!(data.len(), 3);
                assert_eq!(r["PartitionKey"], "p");
                assert!(r["ApproximateArrivalTimestamp"].is_number(), "{r}");
                seen.push((data[0], r["SequenceNumber"].as_str().unwrap().to_owned()));
            }
            if let Some(last) = seen.last()
                && !records.is_empty()
            {
                // The continuation is the last record delivered.
                assert_eq!(continuation, last.1, "{e}");
                // Everything up to the high watermark was read: not behind.
                assert_eq!(behind, 0, "{e}");
            }
            last_continuation = continuation;
        }
    })
    .await
    .unwrap();
    expected.extend(writer.await.unwrap());
    assert_eq!(seen, expected);
    assert!(events >= 2, "records before and during the subscription");
    assert_eq!(last_continuation, expected[5].1);
    // Sequence numbers (56 digits, so compared as strings of one length) increase.
    assert!(seen.iter().all(|(_, s)| s.len() == 56), "{seen:?}");
    assert!(seen.windows(2).all(|w| w[0].1 < w[1].1), "{seen:?}");

    drop(stream);
    drop(client);
    conn.abort();
    both.stop().await;
}
