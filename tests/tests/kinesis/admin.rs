//! Stream control plane through aws-sdk-kinesis: create, describe, list, paginate, delete,
//! tags and retention surviving a restart, and the Kafka ↔ Kinesis view of one topic.

use aws_sdk_kinesis::types::{
    ShardFilter, ShardFilterType, StreamMode, StreamModeDetails, StreamStatus,
};
use rdkafka::producer::Producer;

use super::harness::{Both, WAIT, code};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_describe_list_delete() {
    let dir = tempfile::tempdir().unwrap();
    let both = Both::start(dir.path()).await;
    let k = both.client();

    k.create_stream()
        .stream_name("orders")
        .shard_count(3)
        .send()
        .await
        .unwrap();
    let d = k
        .describe_stream()
        .stream_name("orders")
        .send()
        .await
        .unwrap();
    let d = d.stream_description().unwrap();
    assert_eq!(d.stream_name(), "orders");
    assert_eq!(
        d.stream_arn(),
        "arn:aws:kinesis:us-east-1:000000000000:stream/orders"
    );
    assert_eq!(d.stream_status(), &StreamStatus::Active);
    assert_eq!(d.retention_period_hours(), 24);
    assert!(!d.has_more_shards());
    let shards = d.shards();
    assert_eq!(shards.len(), 3);
    assert_eq!(shards[0].shard_id(), "shardId-000000000000");
    assert_eq!(shards[2].shard_id(), "shardId-000000000002");
    let ranges: Vec<(u128, u128)> = shards
        .iter()
        .map(|s| {
            let r = s.hash_key_range().unwrap();
            (
                r.starting_hash_key().parse().unwrap(),
                r.ending_hash_key().parse().unwrap(),
            )
        })
        .collect();
    assert_eq!(ranges[0].0, 0);
    assert_eq!(ranges[0].1, 113427455640312821154458202477256070484);
    assert_eq!(ranges[1].0, ranges[0].1 + 1);
    assert_eq!(ranges[2].1, u128::MAX);
    assert!(shards.iter().all(|s| s.parent_shard_id().is_none()));
    assert!(
        shards[0]
            .sequence_number_range()
            .unwrap()
            .ending_sequence_number()
            .is_none()
    );

    // By ARN too, and the summary.
    let s = k
        .describe_stream_summary()
        .stream_arn("arn:aws:kinesis:us-east-1:000000000000:stream/orders")
        .send()
        .await
        .unwrap();
    let s = s.stream_description_summary().unwrap();
    assert_eq!(s.open_shard_count(), 3);
    assert_eq!(
        s.stream_mode_details().unwrap().stream_mode(),
        &StreamMode::Provisioned
    );

    let again = k
        .create_stream()
        .stream_name("orders")
        .shard_count(1)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&again), "ResourceInUseException");

    let list = k.list_streams().send().await.unwrap();
    assert_eq!(list.stream_names(), ["orders"]);
    assert_eq!(list.stream_summaries()[0].stream_arn(), d.stream_arn());

    k.delete_stream()
        .stream_name("orders")
        .send()
        .await
        .unwrap();
    let gone = k
        .describe_stream()
        .stream_name("orders")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&gone), "ResourceNotFoundException");
    assert!(
        k.list_streams()
            .send()
            .await
            .unwrap()
            .stream_names()
            .is_empty()
    );
    both.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modes_and_bad_requests() {
    let dir = tempfile::tempdir().unwrap();
    let both = Both::start(dir.path()).await;
    let k = both.client();
    k.create_stream()
        .stream_name("od")
        .stream_mode_details(
            StreamModeDetails::builder()
                .stream_mode(StreamMode::OnDemand)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let s = k
        .describe_stream_summary()
        .stream_name("od")
        .send()
        .await
        .unwrap();
    let s = s.stream_description_summary().unwrap();
    assert_eq!(s.open_shard_count(), 4);
    assert_eq!(
        s.stream_mode_details().unwrap().stream_mode(),
        &StreamMode::OnDemand
    );

    for bad in ["has space", "slash/no", &"x".repeat(129)] {
        let e = k
            .create_stream()
            .stream_name(bad)
            .shard_count(1)
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&e), "ValidationException", "{bad}");
    }
    let e = k
        .create_stream()
        .stream_name("zero")
        .shard_count(0)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "ValidationException");
    let e = k
        .create_stream()
        .stream_name("noshards")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidArgumentException");
    let e = k
        .describe_stream()
        .stream_name("nope")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "ResourceNotFoundException");
    let e = k
        .delete_stream()
        .stream_name("nope")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "ResourceNotFoundException");
    let e = k
        .describe_stream()
        .stream_arn("arn:aws:kinesis:us-east-1:000000000000:stream/nope")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "ResourceNotFoundException");
    both.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagination_of_streams_and_shards() {
    let dir = tempfile::tempdir().unwrap();
    let both = Both::start(dir.path()).await;
    let k = both.client();
    for i in 0..5 {
        k.create_stream()
            .stream_name(format!("s{i}"))
            .shard_count(5)
            .send()
            .await
            .unwrap();
    }
    // ListStreams with NextToken.
    let mut names = Vec::new();
    let mut token = None;
    loop {
        let page = k
            .list_streams()
            .limit(2)
            .set_next_token(token.clone())
            .send()
            .await
            .unwrap();
        assert!(page.stream_names().len() <= 2);
        names.extend(page.stream_names().iter().cloned());
        if !page.has_more_streams() {
            assert!(page.next_token().is_none());
            break;
        }
        token = page.next_token().map(str::to_owned);
        assert!(token.is_some());
    }
    assert_eq!(names, ["s0", "s1", "s2", "s3", "s4"]);
    // ExclusiveStartStreamName.
    let page = k
        .list_streams()
        .exclusive_start_stream_name("s2")
        .send()
        .await
        .unwrap();
    assert_eq!(page.stream_names(), ["s3", "s4"]);

    // DescribeStream shard pages.
    let d = k
        .describe_stream()
        .stream_name("s0")
        .limit(2)
        .send()
        .await
        .unwrap();
    let d = d.stream_description().unwrap();
    assert_eq!(d.shards().len(), 2);
    assert!(d.has_more_shards());
    let d2 = k
        .describe_stream()
        .stream_name("s0")
        .limit(2)
        .exclusive_start_shard_id("shardId-000000000001")
        .send()
        .await
        .unwrap();
    let ids: Vec<_> = d2
        .stream_description()
        .unwrap()
        .shards()
        .iter()
        .map(|s| s.shard_id().to_owned())
        .collect();
    assert_eq!(ids, ["shardId-000000000002", "shardId-000000000003"]);

    // ListShards with NextToken (which must come without StreamName).
    let mut ids = Vec::new();
    let first = k
        .list_shards()
        .stream_name("s0")
        .max_results(2)
        .send()
        .await
        .unwrap();
    ids.extend(first.shards().iter().map(|s| s.shard_id().to_owned()));
    let mut token = first.next_token().map(str::to_owned);
    while let Some(t) = token {
        let page = k
            .list_shards()
            .next_token(&t)
            .max_results(2)
            .send()
            .await
            .unwrap();
        ids.extend(page.shards().iter().map(|s| s.shard_id().to_owned()));
        token = page.next_token().map(str::to_owned);
    }
    assert_eq!(ids.len(), 5);
    assert_eq!(ids[4], "shardId-000000000004");
    let both_given = k
        .list_shards()
        .stream_name("s1")
        .next_token(first.next_token().unwrap())
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&both_given), "InvalidArgumentException");
    let after = k
        .list_shards()
        .stream_name("s0")
        .exclusive_start_shard_id("shardId-000000000002")
        .send()
        .await
        .unwrap();
    assert_eq!(after.shards().len(), 2);
    let filtered = k
        .list_shards()
        .stream_name("s0")
        .shard_filter(
            ShardFilter::builder()
                .r#type(ShardFilterType::AfterShardId)
                .shard_id("shardId-000000000003")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(filtered.shards().len(), 1);
    assert_eq!(filtered.shards()[0].shard_id(), "shardId-000000000004");
    both.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_and_retention_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let both = Both::start(dir.path()).await;
    let k = both.client();
    k.create_stream()
        .stream_name("keep")
        .shard_count(2)
        .send()
        .await
        .unwrap();
    k.add_tags_to_stream()
        .stream_name("keep")
        .tags("team", "data")
        .tags("env", "test")
        .send()
        .await
        .unwrap();
    k.remove_tags_from_stream()
        .stream_name("keep")
        .tag_keys("env")
        .send()
        .await
        .unwrap();
    k.increase_stream_retention_period()
        .stream_name("keep")
        .retention_period_hours(48)
        .send()
        .await
        .unwrap();
    let e = k
        .decrease_stream_retention_period()
        .stream_name("keep")
        .retention_period_hours(72)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidArgumentException");
    let topic = both.broker.broker().topic("keep").unwrap();
    assert_eq!(
        topic.overrides().get("retention.ms").map(String::as_str),
        Some("172800000")
    );
    both.stop().await;

    let both = Both::start(dir.path()).await;
    let k = both.client();
    let d = k
        .describe_stream_summary()
        .stream_name("keep")
        .send()
        .await
        .unwrap();
    assert_eq!(
        d.stream_description_summary()
            .unwrap()
            .retention_period_hours(),
        48
    );
    let tags = k
        .list_tags_for_stream()
        .stream_name("keep")
        .send()
        .await
        .unwrap();
    let tags: Vec<_> = tags
        .tags()
        .iter()
        .map(|t| (t.key().to_owned(), t.value().unwrap_or("").to_owned()))
        .collect();
    assert_eq!(tags, [("team".to_owned(), "data".to_owned())]);
    both.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_topics_are_streams_and_streams_are_topics() {
    let dir = tempfile::tempdir().unwrap();
    let both = Both::start(dir.path()).await;
    let k = both.client();
    crate::kafka_client::create_topic(&both.bootstrap(), "from-kafka", 2).await;
    k.create_stream()
        .stream_name("from-kinesis")
        .shard_count(3)
        .send()
        .await
        .unwrap();

    let list = k.list_streams().send().await.unwrap();
    assert_eq!(list.stream_names(), ["from-kafka", "from-kinesis"]);
    let d = k
        .describe_stream()
        .stream_name("from-kafka")
        .send()
        .await
        .unwrap();
    let shards = d.stream_description().unwrap().shards();
    assert_eq!(shards.len(), 2);
    assert_eq!(
        shards[1].hash_key_range().unwrap().starting_hash_key(),
        "170141183460469231731687303715884105728"
    );

    let producer = crate::kafka_client::producer(&both.bootstrap());
    let md = producer
        .client()
        .fetch_metadata(Some("from-kinesis"), WAIT)
        .unwrap();
    let t = &md.topics()[0];
    assert_eq!(t.name(), "from-kinesis");
    assert!(t.error().is_none());
    assert_eq!(t.partitions().len(), 3);
    both.stop().await;
}
