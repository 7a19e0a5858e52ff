//! A topic written by a transactional Kafka producer, read through Kinesis: GetRecords returns
//! committed records only: no aborted ones, no markers, and nothing of a transaction still open.

use std::time::Duration;

use aws_sdk_kinesis::types::ShardIteratorType;
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use super::harness::Both;
use crate::kafka_client;

const T: Duration = Duration::from_secs(30);

/// A transactional producer on `both`, its transactions initialised.
fn transactional_producer(both: &Both, id: &str) -> FutureProducer {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", both.bootstrap())
        .set("broker.address.family", "v4")
        .set("transactional.id", id)
        .set("log_level", "3")
        .create()
        .unwrap();
    tokio::task::block_in_place(|| producer.init_transactions(T)).unwrap();
    producer
}

/// Sends `value` to partition 0 of `topic` and waits for its delivery.
async fn send(producer: &FutureProducer, topic: &str, value: &str) {
    producer
        .send(
            FutureRecord::<(), _>::to(topic).partition(0).payload(value),
            T,
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();
}

/// The data of what up to ten GetRecords calls from `it` return, stopping once `want`
/// records have come.
async fn read(k: &aws_sdk_kinesis::Client, mut it: String, want: usize) -> Vec<String> {
    let mut got = Vec::new();
    for _ in 0..10 {
        let out = k.get_records().shard_iterator(&it).send().await.unwrap();
        got.extend(
            out.records()
                .iter()
                .map(|r| String::from_utf8(r.data().as_ref().to_vec()).unwrap()),
        );
        it = out.next_shard_iterator.unwrap();
        if got.len() > want {
            break;
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_records_skips_aborted_and_open_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let both = Both::start(dir.path()).await;
    kafka_client::create_topic(&both.bootstrap(), "tk", 1).await;
    let producer = transactional_producer(&both, "kinesis-reader-tx");
    for (values, commit) in [
        (&["c1", "c2"][..], true),
        (&["a1"][..], false),
        (&["c3"][..], true),
    ] {
        producer.begin_transaction().unwrap();
        for v in values {
            send(&producer, "tk", v).await;
        }
        if commit {
            tokio::task::block_in_place(|| producer.commit_transaction(T)).unwrap();
        } else {
            tokio::task::block_in_place(|| producer.flush(T)).unwrap();
            tokio::task::block_in_place(|| producer.abort_transaction(T)).unwrap();
        }
    }
    producer.begin_transaction().unwrap();
    send(&producer, "tk", "still-open").await;

    let k = both.client();
    let it = k
        .get_shard_iterator()
        .stream_name("tk")
        .shard_id("shardId-000000000000")
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap()
        .shard_iterator
        .unwrap();
    // Ten calls, well past the three committed records: nothing more may come.
    assert_eq!(read(&k, it, usize::MAX).await, ["c1", "c2", "c3"]);
    tokio::task::block_in_place(|| producer.abort_transaction(T)).unwrap();
    both.stop().await;
}

/// A LATEST iterator taken while a transaction is open starts at the last stable offset, so the
/// transaction's records are read once it commits (starting at the high watermark would skip
/// them for good).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_taken_during_an_open_transaction_reads_it_after_commit() {
    let dir = tempfile::tempdir().unwrap();
    let both = Both::start(dir.path()).await;
    kafka_client::create_topic(&both.bootstrap(), "tl", 1).await;
    let producer = transactional_producer(&both, "kinesis-latest-tx");
    producer.begin_transaction().unwrap();
    for v in ["t1", "t2"] {
        send(&producer, "tl", v).await;
    }
    let k = both.client();
    let it = k
        .get_shard_iterator()
        .stream_name("tl")
        .shard_id("shardId-000000000000")
        .shard_iterator_type(ShardIteratorType::Latest)
        .send()
        .await
        .unwrap()
        .shard_iterator
        .unwrap();
    tokio::task::block_in_place(|| producer.commit_transaction(T)).unwrap();
    assert_eq!(read(&k, it, 2).await, ["t1", "t2"]);
    both.stop().await;
}
