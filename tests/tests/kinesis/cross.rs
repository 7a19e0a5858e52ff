//! One log, two protocols: Kinesis writes read by librdkafka, librdkafka writes read by
//! GetRecords.

use std::time::Duration;

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType};
use rdkafka::Offset;
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;

use super::harness::Both;
use crate::kafka_client;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_records_are_kafka_records() {
    let dir = tempfile::tempdir().unwrap();
    let both = Both::start(dir.path()).await;
    let k = both.client();
    k.create_stream()
        .stream_name("x")
        .shard_count(1)
        .send()
        .await
        .unwrap();
    let entries: Vec<_> = (0..10)
        .map(|i| {
            PutRecordsRequestEntry::builder()
                .partition_key(format!("pk{i}"))
                .data(Blob::new(vec![i as u8, 0xff, 0x00]))
                .build()
                .unwrap()
        })
        .collect();
    let out = k
        .put_records()
        .stream_name("x")
        .set_records(Some(entries))
        .send()
        .await
        .unwrap();
    assert_eq!(out.failed_record_count(), Some(0));
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;

    let msgs = kafka_client::consume(&both.bootstrap(), "x", &[0], Offset::Beginning, 10).await;
    for (i, m) in msgs.iter().enumerate() {
        assert_eq!(m.offset(), i as i64);
        assert_eq!(m.key(), Some(format!("pk{i}").as_bytes()));
        assert_eq!(m.payload(), Some(&[i as u8, 0xff, 0x00][..]));
        let ts = m.timestamp().to_millis().unwrap();
        assert!(
            ts <= before && ts > before - 60_000,
            "arrival time is the record timestamp"
        );
    }
    both.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_records_come_out_of_get_records() {
    let dir = tempfile::tempdir().unwrap();
    let both = Both::start(dir.path()).await;
    kafka_client::create_topic(&both.bootstrap(), "kt", 2).await;
    let producer = kafka_client::producer(&both.bootstrap());
    for i in 0..6 {
        let value = format!("v{i}");
        let key = format!("k{i}");
        let mut rec = FutureRecord::to("kt").partition(i % 2).payload(&value);
        if i != 5 {
            rec = rec.key(&key);
        }
        producer.send(rec, Duration::from_secs(10)).await.unwrap();
    }
    // A transaction-free producer writes no control batches; write one through the broker
    // directly so GetRecords must skip it.
    let control = strom_record::BatchBuilder {
        control: true,
        transactional: true,
        producer_id: 1,
        producer_epoch: 0,
        ..strom_record::BatchBuilder::new()
    }
    .build(&[strom_record::Record::new(
        0,
        Some(bytes::Bytes::from_static(&[0, 0, 0, 1])),
        Some(bytes::Bytes::from_static(&[0, 0, 0, 0, 0, 0])),
    )])
    .unwrap();
    let p1 = both.broker.broker().partition("kt", 1).unwrap();
    p1.append(control).await.unwrap();
    producer
        .send(
            FutureRecord::to("kt")
                .partition(1)
                .key("after")
                .payload("tail"),
            Duration::from_secs(10),
        )
        .await
        .unwrap();

    let k = both.client();
    let mut seen = Vec::new();
    for shard in ["shardId-000000000000", "shardId-000000000001"] {
        let it = k
            .get_shard_iterator()
            .stream_name("kt")
            .shard_id(shard)
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap();
        let page = k
            .get_records()
            .shard_iterator(it.shard_iterator().unwrap())
            .send()
            .await
            .unwrap();
        for r in page.records() {
            seen.push((
                shard,
                r.partition_key().unwrap().to_owned(),
                String::from_utf8(r.data().as_ref().to_vec()).unwrap(),
            ));
        }
    }
    assert_eq!(
        seen,
        [
            ("shardId-000000000000", "k0".to_owned(), "v0".to_owned()),
            ("shardId-000000000000", "k2".to_owned(), "v2".to_owned()),
            ("shardId-000000000000", "k4".to_owned(), "v4".to_owned()),
            ("shardId-000000000001", "k1".to_owned(), "v1".to_owned()),
            ("shardId-000000000001", "k3".to_owned(), "v3".to_owned()),
            ("shardId-000000000001", "-".to_owned(), "v5".to_owned()),
            (
                "shardId-000000000001",
                "after".to_owned(),
                "tail".to_owned()
            ),
        ]
    );
    both.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_closed_by_resharding_is_read_only_for_kafka_produce() {
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};

    let dir = tempfile::tempdir().unwrap();
    let both = Both::start(dir.path()).await;
    let k = both.client();
    k.create_stream()
        .stream_name("sealed")
        .shard_count(1)
        .send()
        .await
        .unwrap();
    k.split_shard()
        .stream_name("sealed")
        .shard_to_split("shardId-000000000000")
        .new_starting_hash_key((1u128 << 127).to_string())
        .send()
        .await
        .unwrap();

    let producer = kafka_client::producer(&both.bootstrap());
    let closed = producer
        .send(
            FutureRecord::to("sealed")
                .partition(0)
                .key("k")
                .payload("v"),
            Duration::from_secs(30),
        )
        .await;
    match closed {
        Err((KafkaError::MessageProduction(code), _)) => {
            assert_eq!(code, RDKafkaErrorCode::PolicyViolation)
        }
        other => panic!("produce to a closed shard: {other:?}"),
    }
    // The children are open for Kafka producers.
    let open = producer
        .send(
            FutureRecord::to("sealed")
                .partition(1)
                .key("k")
                .payload("v"),
            Duration::from_secs(30),
        )
        .await;
    assert!(open.is_ok(), "{open:?}");
    both.stop().await;
}

/// Kafka producers racing a SplitShard: the parent's end is fixed by sealing its partition, so
/// every record acknowledged on the parent is at or below the ending sequence number
/// DescribeStream reports, nothing is stored past it, and GetRecords of the parent reads
/// exactly up to it and then names the children.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_producers_racing_a_split_end_at_the_parents_ending_sequence() {
    use rdkafka::consumer::Consumer;
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};

    let dir = tempfile::tempdir().unwrap();
    let both = Both::start(dir.path()).await;
    let k = both.client();
    k.create_stream()
        .stream_name("race")
        .shard_count(1)
        .send()
        .await
        .unwrap();

    let producers: Vec<_> = (0..4)
        .map(|_| kafka_client::producer(&both.bootstrap()))
        .collect();
    let mut senders = tokio::task::JoinSet::new();
    for i in 0..16 {
        let producer = producers[i % producers.len()].clone();
        senders.spawn(async move {
            let mut acked = Vec::new();
            for n in 0.. {
                let payload = format!("{i}-{n}");
                let sent = producer
                    .send(
                        FutureRecord::to("race")
                            .partition(0)
                            .key("k")
                            .payload(&payload),
                        Duration::from_secs(30),
                    )
                    .await;
                match sent {
                    Ok(delivery) => acked.push(delivery.offset),
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::PolicyViolation), _)) => {
                        return acked;
                    }
                    Err(other) => panic!("produce racing a split: {other:?}"),
                }
            }
            acked
        });
    }
    // Let the producers get going, then split under them.
    tokio::time::sleep(Duration::from_millis(300)).await;
    k.split_shard()
        .stream_name("race")
        .shard_to_split("shardId-000000000000")
        .new_starting_hash_key((1u128 << 127).to_string())
        .send()
        .await
        .unwrap();
    let mut acked = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(done) = senders.join_next().await {
            acked.extend(done.unwrap());
        }
    })
    .await
    .expect("every producer is refused once the shard is closed");
    assert!(!acked.is_empty(), "some produces landed before the split");

    let described = k
        .describe_stream()
        .stream_name("race")
        .send()
        .await
        .unwrap();
    let shards = described.stream_description().unwrap().shards();
    let ending = shards[0]
        .sequence_number_range()
        .unwrap()
        .ending_sequence_number()
        .expect("the parent is closed")
        .to_owned();
    // `49` + shard (10 digits) + offset (20 digits) + 24 zeros.
    let ending_offset: i64 = ending[12..32].parse().unwrap();
    let max_acked = acked.iter().copied().max().unwrap();
    assert!(
        max_acked <= ending_offset,
        "offset {max_acked} acknowledged past the parent's end {ending_offset}"
    );

    // Nothing is stored on the parent past its end.
    let consumer = kafka_client::consumer(&both.bootstrap());
    let (_, high) = consumer
        .fetch_watermarks("race", 0, Duration::from_secs(30))
        .unwrap();
    assert_eq!(
        high,
        ending_offset + 1,
        "records stored past the parent's end"
    );

    // GetRecords of the parent reads up to its end, then names the children.
    let mut iterator = k
        .get_shard_iterator()
        .stream_name("race")
        .shard_id("shardId-000000000000")
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap()
        .shard_iterator()
        .unwrap()
        .to_owned();
    let mut last = None;
    let mut pages = 0;
    let children = loop {
        pages += 1;
        assert!(pages < 1000, "GetRecords of a closed parent never ended");
        let page = k
            .get_records()
            .shard_iterator(&iterator)
            .send()
            .await
            .unwrap();
        if let Some(r) = page.records().last() {
            last = Some(r.sequence_number().to_owned());
        }
        match page.next_shard_iterator() {
            Some(next) => iterator = next.to_owned(),
            None => break page.child_shards().to_vec(),
        }
    };
    assert_eq!(last.as_deref(), Some(ending.as_str()));
    let children: Vec<_> = children.iter().map(|c| c.shard_id().to_owned()).collect();
    assert_eq!(children, ["shardId-000000000001", "shardId-000000000002"]);
    both.stop().await;
}
