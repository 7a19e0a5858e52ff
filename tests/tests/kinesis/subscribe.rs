//! SubscribeToShard through aws-sdk-kinesis: the event stream delivers records written before
//! and after the subscription started, in order, with continuation sequence numbers.

use std::time::Duration;

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{ShardIteratorType, StartingPosition, SubscribeToShardEventStream};

use super::harness::{Both, WAIT, code};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_to_shard_streams_old_and_new_records() {
    let dir = tempfile::tempdir().unwrap();
    let both = Both::start(dir.path()).await;
    let k = both.client();
    k.create_stream()
        .stream_name("sub")
        .shard_count(1)
        .send()
        .await
        .unwrap();
    let arn = "arn:aws:kinesis:us-east-1:000000000000:stream/sub";
    let consumer = k
        .register_stream_consumer()
        .stream_arn(arn)
        .consumer_name("efo")
        .send()
        .await
        .unwrap();
    let consumer_arn = consumer.consumer().unwrap().consumer_arn().to_owned();
    for i in 0..3u8 {
        k.put_record()
            .stream_name("sub")
            .partition_key("p")
            .data(Blob::new(vec![i]))
            .send()
            .await
            .unwrap();
    }
    let start = StartingPosition::builder()
        .r#type(ShardIteratorType::TrimHorizon)
        .build()
        .unwrap();
    let mut out = k
        .subscribe_to_shard()
        .consumer_arn(&consumer_arn)
        .shard_id("shardId-000000000000")
        .starting_position(start.clone())
        .send()
        .await
        .unwrap();
    let writer = {
        let k = k.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            for i in 3..6u8 {
                k.put_record()
                    .stream_name("sub")
                    .partition_key("p")
                    .data(Blob::new(vec![i]))
                    .send()
                    .await
                    .unwrap();
            }
        })
    };
    let mut seen = Vec::new();
    let mut continuation = String::new();
    tokio::time::timeout(WAIT, async {
        while seen.len() < 6 {
            match out.event_stream.recv().await.unwrap() {
                Some(SubscribeToShardEventStream::SubscribeToShardEvent(e)) => {
                    seen.extend(e.records().iter().map(|r| r.data().as_ref()[0]));
                    continuation = e.continuation_sequence_number().to_owned();
                }
                Some(other) => panic!("unexpected event {other:?}"),
                None => panic!("stream ended early"),
            }
        }
    })
    .await
    .expect("six records arrive within the wait");
    writer.await.unwrap();
    assert_eq!(seen, [0, 1, 2, 3, 4, 5]);
    assert_eq!(continuation.len(), 56);

    let unknown = k
        .subscribe_to_shard()
        .consumer_arn(format!("{arn}/consumer/nobody:1"))
        .shard_id("shardId-000000000000")
        .starting_position(start)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&unknown), "ResourceNotFoundException");
    both.stop().await;
}
