//! GetRecords across a compacted range: a stream whose topic is `cleanup.policy=compact`, written
//! with PutRecords and cleaned by the broker's cleaner, reads back (SDK, small pages) as the
//! latest record per partition key, in order, with next iterators that carry on across the
//! offset gaps; AT/AFTER_SEQUENCE_NUMBER of an offset compacted away start at the next record
//! kept, for GetRecords and for SubscribeToShard.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{
    PutRecordsRequestEntry, ShardIteratorType, StartingPosition, SubscribeToShardEventStream,
};
use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};

use super::data::drain;
use super::harness::{Both, WAIT, single_node_only};
use crate::kafka_client;

const STREAM: &str = "compacted";
const SHARD: &str = "shardId-000000000000";

async fn iterator(k: &Client, kind: ShardIteratorType, sequence: Option<&str>) -> String {
    k.get_shard_iterator()
        .stream_name(STREAM)
        .shard_id(SHARD)
        .shard_iterator_type(kind)
        .set_starting_sequence_number(sequence.map(str::to_owned))
        .send()
        .await
        .unwrap()
        .shard_iterator()
        .unwrap()
        .to_owned()
}

/// The offset inside a sequence number (`49` + 10 shard digits + 20 offset digits + 24 zeros).
fn offset_of(sequence: &str) -> i64 {
    sequence[12..32].parse().unwrap()
}

fn sequence_at(template: &str, offset: i64) -> String {
    format!("{}{offset:020}{}", &template[..12], &template[32..])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_records_reads_the_survivors_of_a_compacted_range() {
    if single_node_only(
        "drives the broker's own cleaner (clean_once_blocking, cleaner_status); a cluster \
         compacts in its lifecycle job (crates/strom/tests/cluster_lifecycle.rs)",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let both = Both::start(dir.path()).await;
    let admin = kafka_client::admin(&both.bootstrap());
    let topic = NewTopic::new(STREAM, 1, TopicReplication::Fixed(1))
        .set("cleanup.policy", "compact")
        .set("segment.ms", "200")
        .set("min.cleanable.dirty.ratio", "0.01");
    for r in admin
        .create_topics(&[topic], &AdminOptions::new().operation_timeout(Some(WAIT)))
        .await
        .unwrap()
    {
        r.expect("topic created");
    }
    let k = both.client();
    let mut latest: BTreeMap<String, String> = BTreeMap::new();
    for round in 0..4 {
        // The last round updates only even keys, so survivors of rounds 2 and 3 interleave
        // with offsets compacted away between them.
        let entries: Vec<_> = (0..500)
            .filter(|i| round < 3 || i % 2 == 0)
            .map(|i| {
                let (key, data) = (format!("pk{:02}", i % 20), format!("{round}-{i}"));
                latest.insert(key.clone(), data.clone());
                PutRecordsRequestEntry::builder()
                    .partition_key(key)
                    .data(Blob::new(data))
                    .build()
                    .unwrap()
            })
            .collect();
        let out = k
            .put_records()
            .stream_name(STREAM)
            .set_records(Some(entries))
            .send()
            .await
            .unwrap();
        assert_eq!(out.failed_record_count(), Some(0));
    }
    // Let segment.ms pass so the next put rolls the segment holding the updates.
    tokio::time::sleep(Duration::from_millis(250)).await;
    k.put_record()
        .stream_name(STREAM)
        .partition_key("last")
        .data(Blob::new("last"))
        .send()
        .await
        .unwrap();
    latest.insert("last".into(), "last".into());

    let broker = std::sync::Arc::clone(both.broker.broker());
    let deadline = Instant::now() + WAIT;
    loop {
        let b = std::sync::Arc::clone(&broker);
        tokio::task::spawn_blocking(move || b.clean_once_blocking())
            .await
            .unwrap();
        let removed = broker
            .cleaner_status()
            .iter()
            .find(|s| s.topic == STREAM)
            .map_or(0, |s| s.state.records_removed_total);
        if removed > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "never cleaned");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let records = drain(
        &k,
        iterator(&k, ShardIteratorType::TrimHorizon, None).await,
        7,
    )
    .await
    .0;
    assert_eq!(records.len(), latest.len(), "one record per partition key");
    let mut seen = BTreeMap::new();
    let mut previous = -1;
    for r in &records {
        let offset = offset_of(r.sequence_number());
        assert!(offset > previous, "sequence numbers increase");
        previous = offset;
        seen.insert(
            r.partition_key().unwrap_or_default().to_owned(),
            String::from_utf8(r.data().as_ref().to_vec()).unwrap(),
        );
    }
    assert_eq!(seen, latest);

    // Start positions inside a gap.
    let offsets: Vec<i64> = records
        .iter()
        .map(|r| offset_of(r.sequence_number()))
        .collect();
    let i = offsets
        .windows(2)
        .position(|w| w[1] > w[0] + 1)
        .expect("compaction left a gap");
    let template = records[i].sequence_number();
    let in_gap = sequence_at(template, offsets[i] + 1);
    for kind in [
        ShardIteratorType::AtSequenceNumber,
        ShardIteratorType::AfterSequenceNumber,
    ] {
        let from_gap = drain(&k, iterator(&k, kind.clone(), Some(&in_gap)).await, 3)
            .await
            .0;
        let first = from_gap.first().map(|r| offset_of(r.sequence_number()));
        assert_eq!(first, Some(offsets[i + 1]), "{kind:?} inside the gap");
        assert_eq!(from_gap.len(), records.len() - i - 1, "{kind:?}");
    }

    // SubscribeToShard (same page reader, over the event stream) from inside the gap.
    let consumer_arn = k
        .register_stream_consumer()
        .stream_arn(format!(
            "arn:aws:kinesis:us-east-1:000000000000:stream/{STREAM}"
        ))
        .consumer_name("efo")
        .send()
        .await
        .unwrap()
        .consumer()
        .unwrap()
        .consumer_arn()
        .to_owned();
    let start = StartingPosition::builder()
        .r#type(ShardIteratorType::AtSequenceNumber)
        .sequence_number(&in_gap)
        .build()
        .unwrap();
    let mut out = k
        .subscribe_to_shard()
        .consumer_arn(&consumer_arn)
        .shard_id(SHARD)
        .starting_position(start)
        .send()
        .await
        .unwrap();
    let want: Vec<i64> = offsets[i + 1..].to_vec();
    let mut got: Vec<i64> = Vec::new();
    tokio::time::timeout(WAIT, async {
        while got.len() < want.len() {
            match out.event_stream.recv().await.unwrap() {
                Some(SubscribeToShardEventStream::SubscribeToShardEvent(e)) => {
                    got.extend(e.records().iter().map(|r| offset_of(r.sequence_number())));
                }
                Some(other) => panic!("unexpected event {other:?}"),
                None => panic!("stream ended early"),
            }
        }
    })
    .await
    .expect("the survivors arrive");
    assert_eq!(got, want);
    both.stop().await;
}
