//! Resharding across the brokers of a cluster (only in `kinesis_cluster`): MergeShards and
//! UpdateShardCount through broker 1 while records are put through broker 2 and a
//! SubscribeToShard stream is open on broker 3. Every acknowledged record is read back once,
//! in acknowledgement order, from the shard its put named (GetRecords through every broker);
//! the subscription on broker 3 delivers exactly the parent's records and ends with the
//! children in `ChildShards`; ListShards through broker 3 shows the lineage.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{
    ScalingType, Shard, ShardIteratorType, StartingPosition, SubscribeToShardEventStream,
};
use tokio::task::JoinHandle;

use super::harness::{Both, WAIT, code};

/// Records acknowledged per shard id, in acknowledgement order.
type Acked = BTreeMap<String, Vec<u32>>;

/// `2^128 / quarters` steps: the first hash key of each quarter of the hash space plus one.
fn quarter_keys() -> [String; 4] {
    let q = 1u128 << 126;
    [1, q + 1, 2 * q + 1, 3 * q + 1].map(|k| k.to_string())
}

/// Puts numbered records through `k` (one broker), cycling over the four quarters of the
/// hash space, until `stop` is set and at least `min` were acknowledged; then returns what
/// each shard acknowledged. A refused put is tried again (it was not acknowledged, so it must
/// not have been written); only `LimitExceeded`/`ResourceInUse` refusals are expected.
fn putter(k: Client, stream: &'static str, stop: Arc<AtomicBool>, min: u32) -> JoinHandle<Acked> {
    tokio::spawn(async move {
        let keys = quarter_keys();
        let mut acked = Acked::new();
        let mut n = 0u32;
        while !stop.load(Ordering::Relaxed) || n < min {
            let key = &keys[n as usize % keys.len()];
            let put = k
                .put_record()
                .stream_name(stream)
                .partition_key("p")
                .explicit_hash_key(key)
                .data(Blob::new(n.to_be_bytes().to_vec()))
                .send()
                .await;
            match put {
                Ok(out) => {
                    acked.entry(out.shard_id().to_owned()).or_default().push(n);
                    n += 1;
                }
                Err(e) => {
                    let c = code(&e);
                    assert!(
                        c == "LimitExceededException" || c == "ResourceInUseException",
                        "put {n}: {e:?}"
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        acked
    })
}

/// A SubscribeToShard from TRIM_HORIZON through `k` (one broker), read to its end: the
/// records it delivered and the child shard ids of the event that ended it.
async fn subscribe_to_end(
    k: Client,
    consumer_arn: String,
    shard: &'static str,
) -> JoinHandle<(Vec<u32>, Vec<(String, Vec<String>)>)> {
    let mut out = k
        .subscribe_to_shard()
        .consumer_arn(consumer_arn)
        .shard_id(shard)
        .starting_position(
            StartingPosition::builder()
                .r#type(ShardIteratorType::TrimHorizon)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    tokio::spawn(async move {
        let mut seen = Vec::new();
        tokio::time::timeout(Duration::from_secs(120), async {
            loop {
                match out.event_stream.recv().await.unwrap() {
                    Some(SubscribeToShardEventStream::SubscribeToShardEvent(e)) => {
                        seen.extend(e.records().iter().map(|r| number(r.data().as_ref())));
                        if !e.child_shards().is_empty() {
                            let children = e
                                .child_shards()
                                .iter()
                                .map(|c| (c.shard_id().to_owned(), c.parent_shards().to_vec()))
                                .collect();
                            return (seen, children);
                        }
                    }
                    Some(other) => panic!("unexpected event {other:?}"),
                    None => panic!("the subscription ended without ChildShards"),
                }
            }
        })
        .await
        .expect("the subscription ends with ChildShards")
    })
}

fn number(data: &[u8]) -> u32 {
    u32::from_be_bytes(data.try_into().expect("4-byte records"))
}

/// Every record of `shard` through GetRecords, the client taking turns over the brokers: to
/// the end of a closed shard, or until `want` records of an open one were read.
async fn read_shard(both: &Both, stream: &str, shard: &Shard, want: usize) -> Vec<u32> {
    let clients: Vec<Client> = (0..3).map(|n| both.broker_client(n)).collect();
    let closed = shard
        .sequence_number_range()
        .and_then(|r| r.ending_sequence_number())
        .is_some();
    let mut it = clients[0]
        .get_shard_iterator()
        .stream_name(stream)
        .shard_id(shard.shard_id())
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap()
        .shard_iterator()
        .unwrap()
        .to_owned();
    let mut out = Vec::new();
    let mut turn = 1;
    tokio::time::timeout(WAIT, async {
        loop {
            let page = clients[turn % clients.len()]
                .get_records()
                .shard_iterator(&it)
                .send()
                .await
                .unwrap();
            turn += 1;
            out.extend(page.records().iter().map(|r| number(r.data().as_ref())));
            match page.next_shard_iterator() {
                // A closed shard read to its end.
                None => {
                    assert!(closed, "{} ended but is open", shard.shard_id());
                    return;
                }
                Some(next) => it = next.to_owned(),
            }
            if !closed && out.len() >= want && page.records().is_empty() {
                return;
            }
            if page.records().is_empty() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{} not read within the wait", shard.shard_id()));
    out
}

/// Every shard of `stream` through ListShards on `k`.
async fn list_shards(k: &Client, stream: &str) -> Vec<Shard> {
    k.list_shards()
        .stream_name(stream)
        .send()
        .await
        .unwrap()
        .shards()
        .to_vec()
}

/// Creates `stream` with two shards and an EFO consumer through broker 1; returns the
/// consumer's ARN.
async fn stream_with_consumer(both: &Both, stream: &str) -> String {
    let k1 = both.broker_client(0);
    k1.create_stream()
        .stream_name(stream)
        .shard_count(2)
        .send()
        .await
        .unwrap();
    k1.register_stream_consumer()
        .stream_arn(format!(
            "arn:aws:kinesis:us-east-1:000000000000:stream/{stream}"
        ))
        .consumer_name("efo")
        .send()
        .await
        .unwrap()
        .consumer()
        .unwrap()
        .consumer_arn()
        .to_owned()
}

/// Checks that every shard of `stream` holds exactly what its puts acknowledged, in order,
/// each record once, and returns the shards (as broker 3 lists them).
async fn check_every_record_once(both: &Both, stream: &str, acked: &Acked) -> Vec<Shard> {
    let shards = list_shards(&both.broker_client(2), stream).await;
    let mut total = 0;
    for shard in &shards {
        let want = acked.get(shard.shard_id()).cloned().unwrap_or_default();
        let got = read_shard(both, stream, shard, want.len()).await;
        assert_eq!(got, want, "records of {}", shard.shard_id());
        total += got.len();
    }
    let acked_total: usize = acked.values().map(Vec::len).sum();
    assert_eq!(
        total, acked_total,
        "every acknowledged record is in a shard"
    );
    shards
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_on_one_broker_while_another_puts_and_a_third_subscribes() {
    let dir = tempfile::tempdir().unwrap();
    let both = Both::start(dir.path()).await;
    let consumer = stream_with_consumer(&both, "m").await;

    // Broker 3 subscribes to the first parent; broker 2 puts over the whole hash space.
    let subscription =
        subscribe_to_end(both.broker_client(2), consumer, "shardId-000000000000").await;
    let stop = Arc::new(AtomicBool::new(false));
    let puts = putter(both.broker_client(1), "m", Arc::clone(&stop), 0);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Broker 1 merges the two shards while the puts go on.
    both.broker_client(0)
        .merge_shards()
        .stream_name("m")
        .shard_to_merge("shardId-000000000000")
        .adjacent_shard_to_merge("shardId-000000000001")
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let acked = puts.await.unwrap();
    for shard in [
        "shardId-000000000000",
        "shardId-000000000001",
        "shardId-000000000002",
    ] {
        assert!(
            acked.get(shard).is_some_and(|r| !r.is_empty()),
            "records acknowledged by {shard}: {acked:?}"
        );
    }

    let (delivered, children) = subscription.await.unwrap();
    assert_eq!(
        delivered, acked["shardId-000000000000"],
        "the subscription on broker 3 delivers the parent's records, in order, once"
    );
    assert_eq!(
        children,
        [(
            "shardId-000000000002".to_owned(),
            vec![
                "shardId-000000000000".to_owned(),
                "shardId-000000000001".to_owned()
            ]
        )]
    );

    let shards = check_every_record_once(&both, "m", &acked).await;
    let lineage: Vec<_> = shards
        .iter()
        .map(|s| {
            (
                s.shard_id(),
                s.parent_shard_id(),
                s.adjacent_parent_shard_id(),
                s.sequence_number_range()
                    .unwrap()
                    .ending_sequence_number()
                    .is_some(),
            )
        })
        .collect();
    assert_eq!(
        lineage,
        [
            ("shardId-000000000000", None, None, true),
            ("shardId-000000000001", None, None, true),
            (
                "shardId-000000000002",
                Some("shardId-000000000000"),
                Some("shardId-000000000001"),
                false
            ),
        ]
    );
    both.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_shard_count_on_one_broker_while_another_puts_and_a_third_subscribes() {
    let dir = tempfile::tempdir().unwrap();
    let both = Both::start(dir.path()).await;
    let consumer = stream_with_consumer(&both, "u").await;
    let subscription =
        subscribe_to_end(both.broker_client(2), consumer, "shardId-000000000001").await;
    let stop = Arc::new(AtomicBool::new(false));
    let puts = putter(both.broker_client(1), "u", Arc::clone(&stop), 0);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Up from two shards to four, then down to two, through broker 1.
    for target in [4, 2] {
        let scaled = both
            .broker_client(0)
            .update_shard_count()
            .stream_name("u")
            .target_shard_count(target)
            .scaling_type(ScalingType::UniformScaling)
            .send()
            .await
            .unwrap();
        assert_eq!(scaled.target_shard_count(), Some(target));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let acked = puts.await.unwrap();

    let (delivered, children) = subscription.await.unwrap();
    assert_eq!(
        delivered, acked["shardId-000000000001"],
        "the subscription on broker 3 delivers the parent's records, in order, once"
    );
    assert!(!children.is_empty());
    for (_, parents) in &children {
        assert!(
            parents.contains(&"shardId-000000000001".to_owned()),
            "{children:?}"
        );
    }

    let shards = check_every_record_once(&both, "u", &acked).await;
    // Two open shards covering the hash space; every other shard closed; every parent named
    // by a shard is listed, and closed.
    let open: Vec<_> = shards
        .iter()
        .filter(|s| {
            s.sequence_number_range()
                .unwrap()
                .ending_sequence_number()
                .is_none()
        })
        .map(|s| {
            let r = s.hash_key_range().unwrap();
            (
                r.starting_hash_key().to_owned(),
                r.ending_hash_key().to_owned(),
            )
        })
        .collect();
    let half = 1u128 << 127;
    assert_eq!(
        open,
        [
            ("0".to_owned(), (half - 1).to_string()),
            (half.to_string(), u128::MAX.to_string())
        ]
    );
    for shard in &shards {
        for parent in [shard.parent_shard_id(), shard.adjacent_parent_shard_id()]
            .into_iter()
            .flatten()
        {
            let p = shards
                .iter()
                .find(|s| s.shard_id() == parent)
                .unwrap_or_else(|| panic!("parent {parent} of {} listed", shard.shard_id()));
            assert!(
                p.sequence_number_range()
                    .unwrap()
                    .ending_sequence_number()
                    .is_some(),
                "parent {parent} is closed"
            );
        }
    }
    both.stop().await;
}
