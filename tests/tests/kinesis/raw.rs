//! Raw HTTP/1.1: CBOR requests built by hand (no Rust client speaks Kinesis CBOR), and bodies
//! and headers no SDK would send. Every answer is a 400 with AWS's error shape, never a 500.

use ciborium::value::Value as Cbor;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::harness::{Both, WAIT};

struct Reply {
    status: u16,
    headers: String,
    body: Vec<u8>,
}

async fn post(both: &Both, target: Option<&str>, content_type: &str, body: &[u8]) -> Reply {
    let mut s = tokio::net::TcpStream::connect(both.kinesis).await.unwrap();
    let mut req = format!(
        "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\nAuthorization: AWS4-HMAC-SHA256 Credential=x/20260101/us-east-1/kinesis/aws4_request, SignedHeaders=host, Signature=00\r\n",
        body.len()
    );
    if let Some(t) = target {
        req.push_str(&format!("X-Amz-Target: {t}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("header end");
    let headers = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let status = headers[9..12].parse().unwrap();
    Reply {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

const JSON: &str = "application/x-amz-json-1.1";
const CBOR: &str = "application/x-amz-cbor-1.1";

fn cbor(v: Cbor) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::ser::into_writer(&v, &mut out).unwrap();
    out
}

fn map(entries: Vec<(&str, Cbor)>) -> Cbor {
    Cbor::Map(
        entries
            .into_iter()
            .map(|(k, v)| (Cbor::Text(k.into()), v))
            .collect(),
    )
}

fn get<'a>(m: &'a Cbor, key: &str) -> &'a Cbor {
    let Cbor::Map(entries) = m else {
        panic!("not a map: {m:?}")
    };
    &entries
        .iter()
        .find(|(k, _)| k == &Cbor::Text(key.into()))
        .unwrap_or_else(|| panic!("no {key} in {m:?}"))
        .1
}

async fn cbor_call(both: &Both, op: &str, body: Cbor) -> Cbor {
    let r = post(
        both,
        Some(&format!("Kinesis_20131202.{op}")),
        CBOR,
        &cbor(body),
    )
    .await;
    assert!(
        r.headers
            .contains("content-type: application/x-amz-cbor-1.1"),
        "{}",
        r.headers
    );
    let v: Cbor = ciborium::de::from_reader(&r.body[..]).unwrap();
    assert_eq!(r.status, 200, "{op}: {v:?}");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cbor_round_trip_with_millisecond_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let both = Both::start(dir.path()).await;
    cbor_call(
        &both,
        "CreateStream",
        map(vec![
            ("StreamName", Cbor::Text("c".into())),
            ("ShardCount", Cbor::Integer(1.into())),
        ]),
    )
    .await;
    let start_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let put = cbor_call(
        &both,
        "PutRecord",
        map(vec![
            ("StreamName", Cbor::Text("c".into())),
            ("PartitionKey", Cbor::Text("pk".into())),
            ("Data", Cbor::Bytes(vec![0, 1, 2, 0xfe])),
        ]),
    )
    .await;
    let Cbor::Text(seq) = get(&put, "SequenceNumber") else {
        panic!()
    };
    assert_eq!(seq.len(), 56);
    // AT_TIMESTAMP with tag 1 around epoch milliseconds, as the Java SDK sends it.
    let it = cbor_call(
        &both,
        "GetShardIterator",
        map(vec![
            ("StreamName", Cbor::Text("c".into())),
            ("ShardId", Cbor::Text("shardId-000000000000".into())),
            ("ShardIteratorType", Cbor::Text("AT_TIMESTAMP".into())),
            (
                "Timestamp",
                Cbor::Tag(1, Box::new(Cbor::Integer((start_ms - 5_000).into()))),
            ),
        ]),
    )
    .await;
    let records = cbor_call(
        &both,
        "GetRecords",
        map(vec![("ShardIterator", get(&it, "ShardIterator").clone())]),
    )
    .await;
    let Cbor::Array(recs) = get(&records, "Records") else {
        panic!()
    };
    assert_eq!(recs.len(), 1);
    assert_eq!(get(&recs[0], "Data"), &Cbor::Bytes(vec![0, 1, 2, 0xfe]));
    assert_eq!(get(&recs[0], "PartitionKey"), &Cbor::Text("pk".into()));
    let Cbor::Tag(1, ts) = get(&recs[0], "ApproximateArrivalTimestamp") else {
        panic!()
    };
    let Cbor::Integer(ms) = **ts else { panic!() };
    let ms = i128::from(ms) as i64;
    assert!(
        (start_ms - 5_000..start_ms + 60_000).contains(&ms),
        "arrival {ms} is epoch milliseconds"
    );

    // A timestamp in the future (as seconds would look when read as milliseconds ×1000) is refused.
    let r = post(
        &both,
        Some("Kinesis_20131202.GetShardIterator"),
        CBOR,
        &cbor(map(vec![
            ("StreamName", Cbor::Text("c".into())),
            ("ShardId", Cbor::Text("shardId-000000000000".into())),
            ("ShardIteratorType", Cbor::Text("AT_TIMESTAMP".into())),
            (
                "Timestamp",
                Cbor::Tag(1, Box::new(Cbor::Integer((start_ms * 1000).into()))),
            ),
        ])),
    )
    .await;
    assert_eq!(r.status, 400);
    let v: Cbor = ciborium::de::from_reader(&r.body[..]).unwrap();
    assert_eq!(
        get(&v, "__type"),
        &Cbor::Text("InvalidArgumentException".into())
    );
    both.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_aws_errors() {
    let dir = tempfile::tempdir().unwrap();
    let both = Both::start(dir.path()).await;
    let cases: Vec<(Option<&str>, &str, Vec<u8>, &str)> = vec![
        (
            Some("Kinesis_20131202.ListStreams"),
            JSON,
            b"{not json".to_vec(),
            "SerializationException",
        ),
        (
            Some("Kinesis_20131202.ListStreams"),
            JSON,
            b"[1,2]".to_vec(),
            "SerializationException",
        ),
        (
            Some("Kinesis_20131202.ListStreams"),
            CBOR,
            vec![0xff, 0xfe, 0x00],
            "SerializationException",
        ),
        (
            Some("Kinesis_20131202.ListStreams"),
            CBOR,
            vec![0x9f; 10_000],
            "SerializationException",
        ),
        (
            Some("Kinesis_20131202.ListStreams"),
            JSON,
            br#"{"Limit":"ten"}"#.to_vec(),
            "SerializationException",
        ),
        (
            Some("Kinesis_20131202.ListStreams"),
            JSON,
            br#"{"Limit":0}"#.to_vec(),
            "ValidationException",
        ),
        (
            Some("Kinesis_20131202.NoSuchThing"),
            JSON,
            b"{}".to_vec(),
            "UnknownOperationException",
        ),
        (
            Some("Other_1.ListStreams"),
            JSON,
            b"{}".to_vec(),
            "UnknownOperationException",
        ),
        (None, JSON, b"{}".to_vec(), "UnknownOperationException"),
        (
            Some("Kinesis_20131202.CreateStream"),
            JSON,
            b"{}".to_vec(),
            "ValidationException",
        ),
        (
            Some("Kinesis_20131202.PutRecord"),
            JSON,
            br#"{"StreamName":"x","PartitionKey":"k","Data":"!!!"}"#.to_vec(),
            "ResourceNotFoundException",
        ),
        (
            Some("Kinesis_20131202.GetRecords"),
            JSON,
            br#"{"ShardIterator":"\u0000\u00ff"}"#.to_vec(),
            "InvalidArgumentException",
        ),
        (
            Some("Kinesis_20131202.DescribeStream"),
            JSON,
            br#"{"StreamName":"a b"}"#.to_vec(),
            "ValidationException",
        ),
        (
            Some("Kinesis_20131202.DescribeStream"),
            JSON,
            br#"{}"#.to_vec(),
            "InvalidArgumentException",
        ),
    ];
    for (target, ct, body, want) in cases {
        let r = post(&both, target, ct, &body).await;
        assert_eq!(r.status, 400, "{target:?} {want}");
        assert!(
            r.headers
                .contains(&format!("x-amzn-errortype: {}", want.to_ascii_lowercase())),
            "{}",
            r.headers
        );
        let v: Value = if ct == CBOR {
            let c: Cbor = ciborium::de::from_reader(&r.body[..]).unwrap();
            let Cbor::Text(t) = get(&c, "__type").clone() else {
                panic!()
            };
            json!({"__type": t})
        } else {
            serde_json::from_slice(&r.body).unwrap()
        };
        assert_eq!(
            v["__type"],
            want,
            "{target:?} {:?}",
            String::from_utf8_lossy(&body)
        );
    }
    // Still serving.
    let r = post(&both, Some("Kinesis_20131202.ListStreams"), JSON, b"").await;
    assert_eq!(r.status, 200);
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["StreamNames"], json!([]));
    both.stop().await;
}

/// Undoes HTTP/1.1 chunked transfer encoding.
fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let size =
            usize::from_str_radix(std::str::from_utf8(&body[..line_end]).unwrap().trim(), 16)
                .unwrap();
        body = &body[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cbor_subscribe_to_shard_frames() {
    let dir = tempfile::tempdir().unwrap();
    let config = strom_kinesis::KinesisConfig {
        subscription_duration: std::time::Duration::from_millis(300),
        ..strom_kinesis::KinesisConfig::default()
    };
    let both = Both::start_with(dir.path(), config).await;
    cbor_call(
        &both,
        "CreateStream",
        map(vec![
            ("StreamName", Cbor::Text("e".into())),
            ("ShardCount", Cbor::Integer(1.into())),
        ]),
    )
    .await;
    cbor_call(
        &both,
        "PutRecord",
        map(vec![
            ("StreamName", Cbor::Text("e".into())),
            ("PartitionKey", Cbor::Text("pk".into())),
            ("Data", Cbor::Bytes(vec![9, 8, 7])),
        ]),
    )
    .await;
    let reg = cbor_call(
        &both,
        "RegisterStreamConsumer",
        map(vec![
            (
                "StreamARN",
                Cbor::Text("arn:aws:kinesis:us-east-1:000000000000:stream/e".into()),
            ),
            ("ConsumerName", Cbor::Text("c".into())),
        ]),
    )
    .await;
    let arn = get(get(&reg, "Consumer"), "ConsumerARN").clone();
    let r = post(
        &both,
        Some("Kinesis_20131202.SubscribeToShard"),
        CBOR,
        &cbor(map(vec![
            ("ConsumerARN", arn),
            ("ShardId", Cbor::Text("shardId-000000000000".into())),
            (
                "StartingPosition",
                map(vec![("Type", Cbor::Text("TRIM_HORIZON".into()))]),
            ),
        ])),
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(
        r.headers
            .contains("content-type: application/vnd.amazon.eventstream"),
        "{}",
        r.headers
    );
    let body = dechunk(&r.body);
    let mut payloads = Vec::new();
    let mut rest = &body[..];
    while rest.len() >= 16 {
        let total = u32::from_be_bytes(rest[0..4].try_into().unwrap()) as usize;
        let headers = u32::from_be_bytes(rest[4..8].try_into().unwrap()) as usize;
        payloads.push(rest[12 + headers..total - 4].to_vec());
        rest = &rest[total..];
    }
    assert!(
        payloads.len() >= 2,
        "initial-response and at least one event"
    );
    let event: Cbor = ciborium::de::from_reader(&payloads[1][..]).unwrap();
    let Cbor::Array(recs) = get(&event, "Records") else {
        panic!()
    };
    assert_eq!(get(&recs[0], "Data"), &Cbor::Bytes(vec![9, 8, 7]));
    assert!(matches!(
        get(&recs[0], "ApproximateArrivalTimestamp"),
        Cbor::Tag(1, _)
    ));
    both.stop().await;
}
