//! AWS-limits mode through aws-sdk-kinesis: per-shard write and read throttling and the
//! account's control-plane call rates when `KinesisConfig::aws_limits` is on, none when it is
//! off. (Against a cluster every call goes to the next broker: the rates hold for the
//! cluster.)

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType};
use strom_kinesis::KinesisConfig;

use super::harness::{Both, code};

const THROTTLED: &str = "ProvisionedThroughputExceededException";

fn message(stream: &str) -> String {
    format!(
        "Rate exceeded for shard shardId-000000000000 in stream {stream} under account 000000000000."
    )
}

async fn start(dir: &std::path::Path, aws_limits: bool, stream: &str) -> (Both, Client) {
    let config = KinesisConfig {
        aws_limits,
        ..KinesisConfig::default()
    };
    let both = Both::start_with(dir, config).await;
    let k = both.client();
    k.create_stream()
        .stream_name(stream)
        .shard_count(1)
        .send()
        .await
        .unwrap();
    (both, k)
}

/// Puts three batches of 500 ten-byte records at once; returns (ok, throttled) counts.
async fn put_1500(k: &Client, stream: &str) -> (usize, usize) {
    let mut ok = 0;
    let mut throttled = 0;
    for batch in 0..3 {
        let records: Vec<_> = (0..500)
            .map(|i| {
                PutRecordsRequestEntry::builder()
                    .partition_key(format!("k{batch}-{i}"))
                    .data(Blob::new(vec![b'x'; 10]))
                    .build()
                    .unwrap()
            })
            .collect();
        let out = k
            .put_records()
            .stream_name(stream)
            .set_records(Some(records))
            .send()
            .await
            .unwrap();
        let mut failed = 0;
        for r in out.records() {
            match r.error_code() {
                None => {
                    assert!(r.sequence_number().is_some());
                    ok += 1;
                }
                Some(c) => {
                    assert_eq!(c, THROTTLED);
                    assert_eq!(r.error_message(), Some(message(stream).as_str()));
                    assert!(r.sequence_number().is_none());
                    failed += 1;
                }
            }
        }
        assert_eq!(out.failed_record_count(), Some(failed));
        throttled += failed as usize;
    }
    (ok, throttled)
}

/// Ten GetRecords calls back to back; returns each call's error code (`None` = served).
async fn read_10(k: &Client, stream: &str) -> Vec<Option<String>> {
    let it = k
        .get_shard_iterator()
        .stream_name(stream)
        .shard_id("shardId-000000000000")
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap()
        .shard_iterator
        .unwrap();
    let mut out = Vec::new();
    for _ in 0..10 {
        match k.get_records().shard_iterator(&it).limit(1).send().await {
            Ok(r) => {
                assert_eq!(r.records().len(), 1);
                out.push(None);
            }
            Err(e) => {
                assert_eq!(e.raw_response().map(|r| r.status().as_u16()), Some(400));
                if let Some(s) = e.as_service_error() {
                    use aws_sdk_kinesis::error::ProvideErrorMetadata as _;
                    assert_eq!(s.message(), Some(message(stream).as_str()));
                }
                out.push(Some(code(&e)));
            }
        }
    }
    out
}

/// One 1 MiB PutRecords, then four 1 MiB PutRecord calls at once; returns the error codes of
/// the four (`None` = appended). Each needs a full second of the shard's 1 MiB/s.
async fn put_large(k: &Client, stream: &str) -> Vec<Option<String>> {
    const BIG: usize = 1024 * 1024 - 1;
    let entry = PutRecordsRequestEntry::builder()
        .partition_key("a")
        .data(Blob::new(vec![b'y'; BIG]))
        .build()
        .unwrap();
    let out = k
        .put_records()
        .stream_name(stream)
        .records(entry)
        .send()
        .await
        .unwrap();
    assert_eq!(out.failed_record_count(), Some(0));
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let k = k.clone();
            let stream = stream.to_owned();
            tokio::spawn(async move {
                k.put_record()
                    .stream_name(stream)
                    .partition_key("b")
                    .data(Blob::new(vec![b'y'; BIG]))
                    .send()
                    .await
            })
        })
        .collect();
    let mut codes = Vec::new();
    for t in tasks {
        codes.push(match t.await.unwrap() {
            Ok(_) => None,
            Err(e) => {
                assert_eq!(e.raw_response().map(|r| r.status().as_u16()), Some(400));
                if let Some(s) = e.as_service_error() {
                    use aws_sdk_kinesis::error::ProvideErrorMetadata as _;
                    assert_eq!(s.message(), Some(message(stream).as_str()));
                }
                Some(code(&e))
            }
        });
    }
    codes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_limits_throttle_writes_and_reads() {
    let dir = tempfile::tempdir().unwrap();
    let (both, k) = start(dir.path(), true, "lim").await;
    let started = std::time::Instant::now();
    let (ok, throttled) = put_1500(&k, "lim").await;
    let elapsed_ms = started.elapsed().as_millis() as usize;
    assert!(
        throttled > 0,
        "1500 records in {elapsed_ms} ms: none throttled"
    );
    assert_eq!(ok + throttled, 1500);
    // One second of records, plus what refilled while the requests ran.
    assert!(
        ok >= 1000 && ok <= 1000 + elapsed_ms + 1,
        "{ok} admitted in {elapsed_ms} ms"
    );

    // The first five reads of a second are served, a sixth right after is refused.
    let reads = read_10(&k, "lim").await;
    assert!(reads[..5].iter().all(Option::is_none), "{reads:?}");
    assert!(
        reads[5..].iter().any(|c| c.as_deref() == Some(THROTTLED)),
        "{reads:?}"
    );

    // 1 MiB/s: 5 MiB arriving within a second or two cannot all be appended; PutRecord is
    // refused with HTTP 400.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let codes = put_large(&k, "lim").await;
    assert!(
        codes.iter().any(|c| c.as_deref() == Some(THROTTLED)),
        "{codes:?}"
    );
    both.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_limits_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let (both, k) = start(dir.path(), false, "free").await;
    assert_eq!(put_1500(&k, "free").await, (1500, 0));
    assert!(read_10(&k, "free").await.iter().all(Option::is_none));
    assert!(put_large(&k, "free").await.iter().all(Option::is_none));
    both.stop().await;
}

/// Control-plane calls beyond the account's rate get `LimitExceededException` (ListStreams:
/// five per second): a burst of 40 at once is mostly refused, and no more are admitted than
/// one second of the rate plus what refilled while the burst ran.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_calls_beyond_the_accounts_rate_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (both, k) = start(dir.path(), true, "cp").await;
    let started = std::time::Instant::now();
    let calls: Vec<_> = (0..40)
        .map(|_| {
            let k = k.clone();
            tokio::spawn(async move { k.list_streams().send().await })
        })
        .collect();
    let mut admitted = 0;
    let mut refused = 0;
    for call in calls {
        match call.await.unwrap() {
            Ok(_) => admitted += 1,
            Err(e) => {
                assert_eq!(code(&e), "LimitExceededException");
                refused += 1;
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    assert!(
        refused > 0,
        "{admitted} admitted in {elapsed:.2}s, none refused"
    );
    assert!(
        f64::from(admitted) <= 5.0 + 5.0 * elapsed + 1.0,
        "{admitted} ListStreams admitted in {elapsed:.2}s"
    );
    both.stop().await;
}
