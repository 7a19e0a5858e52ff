//! Resharding (SplitShard, MergeShards, UpdateShardCount), consumers and the settings-only
//! actions, through aws-sdk-kinesis.

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{
    EncryptionType, MetricsName, ScalingType, ShardFilter, ShardFilterType, ShardIteratorType,
    StreamMode, StreamModeDetails,
};

use super::harness::{Both, code};

const HALF: u128 = 1 << 127;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_then_merge_keeps_lineage_and_data() {
    let dir = tempfile::tempdir().unwrap();
    let both = Both::start(dir.path()).await;
    let k = both.client();
    k.create_stream()
        .stream_name("r")
        .shard_count(1)
        .send()
        .await
        .unwrap();
    for i in 0..5u8 {
        k.put_record()
            .stream_name("r")
            .partition_key(format!("k{i}"))
            .data(Blob::new(vec![i]))
            .send()
            .await
            .unwrap();
    }
    let parent_it = k
        .get_shard_iterator()
        .stream_name("r")
        .shard_id("shardId-000000000000")
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap()
        .shard_iterator()
        .unwrap()
        .to_owned();
    k.split_shard()
        .stream_name("r")
        .shard_to_split("shardId-000000000000")
        .new_starting_hash_key(HALF.to_string())
        .send()
        .await
        .unwrap();
    let bad = k
        .split_shard()
        .stream_name("r")
        .shard_to_split("shardId-000000000000")
        .new_starting_hash_key("5")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        code(&bad),
        "ResourceInUseException",
        "a closed shard cannot be split"
    );

    let d = k.describe_stream().stream_name("r").send().await.unwrap();
    let shards = d.stream_description().unwrap().shards().to_vec();
    assert_eq!(shards.len(), 3);
    let end = shards[0]
        .sequence_number_range()
        .unwrap()
        .ending_sequence_number()
        .unwrap();
    assert_eq!(end.len(), 56);
    for (s, start, stop) in [(&shards[1], 0u128, HALF - 1), (&shards[2], HALF, u128::MAX)] {
        assert_eq!(s.parent_shard_id(), Some("shardId-000000000000"));
        let r = s.hash_key_range().unwrap();
        assert_eq!(r.starting_hash_key(), start.to_string());
        assert_eq!(r.ending_hash_key(), stop.to_string());
    }
    let open = k
        .list_shards()
        .stream_name("r")
        .shard_filter(
            ShardFilter::builder()
                .r#type(ShardFilterType::AtLatest)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let ids: Vec<_> = open.shards().iter().map(|s| s.shard_id()).collect();
    assert_eq!(ids, ["shardId-000000000001", "shardId-000000000002"]);

    // New records go to the children; the parent drains and then names its children.
    let low = k
        .put_record()
        .stream_name("r")
        .partition_key("x")
        .explicit_hash_key("1")
        .data(Blob::new("low"))
        .send()
        .await
        .unwrap();
    assert_eq!(low.shard_id(), "shardId-000000000001");
    let page = k
        .get_records()
        .shard_iterator(&parent_it)
        .send()
        .await
        .unwrap();
    let data: Vec<u8> = page
        .records()
        .iter()
        .map(|r| r.data().as_ref()[0])
        .collect();
    assert_eq!(data, [0, 1, 2, 3, 4]);
    assert!(
        page.next_shard_iterator().is_none(),
        "a drained closed shard has no next iterator"
    );
    let children: Vec<_> = page
        .child_shards()
        .iter()
        .map(|c| c.shard_id().to_owned())
        .collect();
    assert_eq!(children, ["shardId-000000000001", "shardId-000000000002"]);
    assert_eq!(
        page.child_shards()[0].parent_shards(),
        ["shardId-000000000000"]
    );

    k.merge_shards()
        .stream_name("r")
        .shard_to_merge("shardId-000000000001")
        .adjacent_shard_to_merge("shardId-000000000002")
        .send()
        .await
        .unwrap();
    let d = k.describe_stream().stream_name("r").send().await.unwrap();
    let shards = d.stream_description().unwrap().shards();
    assert_eq!(shards.len(), 4);
    assert_eq!(shards[3].parent_shard_id(), Some("shardId-000000000001"));
    assert_eq!(
        shards[3].adjacent_parent_shard_id(),
        Some("shardId-000000000002")
    );
    assert_eq!(
        shards[3].hash_key_range().unwrap().ending_hash_key(),
        u128::MAX.to_string()
    );
    let r = k
        .put_record()
        .stream_name("r")
        .partition_key("any")
        .data(Blob::new("m"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.shard_id(), "shardId-000000000003");
    let not_adjacent = k
        .merge_shards()
        .stream_name("r")
        .shard_to_merge("shardId-000000000003")
        .adjacent_shard_to_merge("shardId-000000000003")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&not_adjacent), "InvalidArgumentException");
    // The topic grew with the shards: partition n is shard n.
    assert_eq!(
        both.broker.broker().topic("r").unwrap().partition_count(),
        4
    );
    both.stop().await;

    // Lineage survives a restart.
    let both = Both::start(dir.path()).await;
    let k = both.client();
    let s = k
        .describe_stream_summary()
        .stream_name("r")
        .send()
        .await
        .unwrap();
    assert_eq!(
        s.stream_description_summary().unwrap().open_shard_count(),
        1
    );
    both.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_shard_count_scales_uniformly() {
    let dir = tempfile::tempdir().unwrap();
    let both = Both::start(dir.path()).await;
    let k = both.client();
    k.create_stream()
        .stream_name("u")
        .shard_count(2)
        .send()
        .await
        .unwrap();
    let out = k
        .update_shard_count()
        .stream_name("u")
        .target_shard_count(4)
        .scaling_type(ScalingType::UniformScaling)
        .send()
        .await
        .unwrap();
    assert_eq!(
        (out.current_shard_count(), out.target_shard_count()),
        (Some(2), Some(4))
    );
    let d = k.describe_stream().stream_name("u").send().await.unwrap();
    let shards = d.stream_description().unwrap().shards();
    assert_eq!(shards.len(), 6);
    let parents: Vec<_> = shards[2..]
        .iter()
        .map(|s| s.parent_shard_id().unwrap())
        .collect();
    assert_eq!(
        parents,
        [
            "shardId-000000000000",
            "shardId-000000000000",
            "shardId-000000000001",
            "shardId-000000000001"
        ]
    );
    let too_many = k
        .update_shard_count()
        .stream_name("u")
        .target_shard_count(9)
        .scaling_type(ScalingType::UniformScaling)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&too_many), "InvalidArgumentException");
    both.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_and_settings() {
    let dir = tempfile::tempdir().unwrap();
    let both = Both::start(dir.path()).await;
    let k = both.client();
    k.create_stream()
        .stream_name("c")
        .shard_count(1)
        .send()
        .await
        .unwrap();
    let arn = "arn:aws:kinesis:us-east-1:000000000000:stream/c";

    let reg = k
        .register_stream_consumer()
        .stream_arn(arn)
        .consumer_name("app")
        .send()
        .await
        .unwrap();
    let consumer = reg.consumer().unwrap();
    assert!(
        consumer
            .consumer_arn()
            .starts_with(&format!("{arn}/consumer/app:"))
    );
    let dup = k
        .register_stream_consumer()
        .stream_arn(arn)
        .consumer_name("app")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&dup), "ResourceInUseException");
    let d = k
        .describe_stream_consumer()
        .consumer_arn(consumer.consumer_arn())
        .send()
        .await
        .unwrap();
    assert_eq!(d.consumer_description().unwrap().consumer_name(), "app");
    assert_eq!(d.consumer_description().unwrap().stream_arn(), arn);
    let list = k
        .list_stream_consumers()
        .stream_arn(arn)
        .send()
        .await
        .unwrap();
    assert_eq!(list.consumers().len(), 1);
    let busy = k.delete_stream().stream_name("c").send().await.unwrap_err();
    assert_eq!(code(&busy), "ResourceInUseException");
    k.deregister_stream_consumer()
        .stream_arn(arn)
        .consumer_name("app")
        .send()
        .await
        .unwrap();
    let gone = k
        .describe_stream_consumer()
        .stream_arn(arn)
        .consumer_name("app")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&gone), "ResourceNotFoundException");

    k.start_stream_encryption()
        .stream_name("c")
        .encryption_type(EncryptionType::Kms)
        .key_id("alias/aws/kinesis")
        .send()
        .await
        .unwrap();
    let m = k
        .enable_enhanced_monitoring()
        .stream_name("c")
        .shard_level_metrics(MetricsName::IncomingBytes)
        .send()
        .await
        .unwrap();
    assert_eq!(
        m.desired_shard_level_metrics(),
        [MetricsName::IncomingBytes]
    );
    k.update_stream_mode()
        .stream_arn(arn)
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
        .stream_name("c")
        .send()
        .await
        .unwrap();
    let s = s.stream_description_summary().unwrap();
    assert_eq!(s.encryption_type(), Some(&EncryptionType::Kms));
    assert_eq!(s.key_id(), Some("alias/aws/kinesis"));
    assert_eq!(
        s.stream_mode_details().unwrap().stream_mode(),
        &StreamMode::OnDemand
    );
    let put = k
        .put_record()
        .stream_name("c")
        .partition_key("k")
        .data(Blob::new("x"))
        .send()
        .await
        .unwrap();
    assert_eq!(put.encryption_type(), Some(&EncryptionType::Kms));

    let limits = k.describe_limits().send().await.unwrap();
    assert_eq!(limits.open_shard_count(), 1);
    k.tag_resource()
        .resource_arn(arn)
        .tags("a", "b")
        .send()
        .await
        .unwrap();
    let tags = k
        .list_tags_for_resource()
        .resource_arn(arn)
        .send()
        .await
        .unwrap();
    assert_eq!(tags.tags().len(), 1);
    k.put_resource_policy()
        .resource_arn(arn)
        .policy("{}")
        .send()
        .await
        .unwrap();
    k.describe_account_settings().send().await.unwrap();
    both.stop().await;
}
