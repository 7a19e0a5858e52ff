//! Shard creation and close times: ListShards' ShardFilter types (AT_TIMESTAMP, FROM_TIMESTAMP
//! and the trim-horizon ones), across a restart; and puts racing a split (the reshard fence):
//! every acknowledged record is read back from the parent, then the children.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::{Blob, DateTime};
use aws_sdk_kinesis::types::{
    PutRecordsRequestEntry, ShardFilter, ShardFilterType, ShardIteratorType,
};

use super::harness::{Both, WAIT, code};

const HALF: u128 = 1 << 127;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

async fn tick() -> i64 {
    tokio::time::sleep(Duration::from_millis(60)).await;
    let t = now_ms();
    tokio::time::sleep(Duration::from_millis(60)).await;
    t
}

fn filter(kind: ShardFilterType, at_ms: Option<i64>) -> ShardFilter {
    let mut b = ShardFilter::builder().r#type(kind);
    if let Some(ms) = at_ms {
        b = b.timestamp(DateTime::from_millis(ms));
    }
    b.build().unwrap()
}

/// Shard indexes ListShards returns for `f` (every page).
async fn shards(k: &Client, stream: &str, f: Option<ShardFilter>) -> Vec<usize> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut req = k.list_shards().max_results(2);
        req = match &token {
            Some(t) => req.next_token(t),
            None => req.stream_name(stream),
        };
        if let Some(f) = &f {
            req = req.shard_filter(f.clone());
        }
        let page = req.send().await.unwrap();
        out.extend(page.shards().iter().map(|s| {
            s.shard_id()
                .trim_start_matches("shardId-")
                .parse::<usize>()
                .unwrap()
        }));
        match page.next_token() {
            Some(t) => token = Some(t.to_owned()),
            None => return out,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_shards_filters_by_shard_times() {
    let dir = tempfile::tempdir().unwrap();
    let both = Both::start(dir.path()).await;
    let k = both.client();
    let before = now_ms() - 1;
    k.create_stream()
        .stream_name("t")
        .shard_count(1)
        .send()
        .await
        .unwrap();
    let t_one = tick().await;
    k.split_shard()
        .stream_name("t")
        .shard_to_split("shardId-000000000000")
        .new_starting_hash_key(HALF.to_string())
        .send()
        .await
        .unwrap();
    let t_two = tick().await;
    k.merge_shards()
        .stream_name("t")
        .shard_to_merge("shardId-000000000001")
        .adjacent_shard_to_merge("shardId-000000000002")
        .send()
        .await
        .unwrap();
    let t_three = tick().await;

    use ShardFilterType::*;
    let check = |k: Client| async move {
        assert_eq!(shards(&k, "t", None).await, [0, 1, 2, 3], "default");
        assert_eq!(shards(&k, "t", Some(filter(AtLatest, None))).await, [3]);
        assert_eq!(
            shards(&k, "t", Some(filter(AtTrimHorizon, None))).await,
            [0],
            "open at the trim horizon (the stream is younger than its retention)"
        );
        assert_eq!(
            shards(&k, "t", Some(filter(FromTrimHorizon, None))).await,
            [0, 1, 2, 3]
        );
        for (t, at, from) in [
            (before, vec![], vec![0, 1, 2, 3]),
            (t_one, vec![0], vec![0, 1, 2, 3]),
            (t_two, vec![1, 2], vec![1, 2, 3]),
            (t_three, vec![3], vec![3]),
        ] {
            assert_eq!(
                shards(&k, "t", Some(filter(AtTimestamp, Some(t)))).await,
                at,
                "AT_TIMESTAMP {t}"
            );
            assert_eq!(
                shards(&k, "t", Some(filter(FromTimestamp, Some(t)))).await,
                from,
                "FROM_TIMESTAMP {t}"
            );
        }
        let after = ShardFilter::builder()
            .r#type(AfterShardId)
            .shard_id("shardId-000000000001")
            .build()
            .unwrap();
        assert_eq!(shards(&k, "t", Some(after)).await, [2, 3]);
        let missing = k
            .list_shards()
            .stream_name("t")
            .shard_filter(filter(AtTimestamp, None))
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&missing), "InvalidArgumentException");
        let stray = k
            .list_shards()
            .stream_name("t")
            .shard_filter(filter(AtLatest, Some(t_one)))
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&stray), "InvalidArgumentException");
    };
    check(both.client()).await;
    both.stop().await;
    // The times are part of the stream's durable metadata.
    let both = Both::start(dir.path()).await;
    check(both.client()).await;
    both.stop().await;
}

/// Every record of `shard` from TRIM_HORIZON until the shard is drained (closed: no next
/// iterator) or, for an open shard, caught up; returns the sequence numbers and the children.
async fn drain(k: &Client, stream: &str, shard: &str) -> (Vec<String>, Vec<String>) {
    let mut it = k
        .get_shard_iterator()
        .stream_name(stream)
        .shard_id(shard)
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap()
        .shard_iterator()
        .map(str::to_owned);
    let mut seqs = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while let Some(i) = it {
        assert!(tokio::time::Instant::now() < deadline, "drain {shard}");
        let page = k.get_records().shard_iterator(i).send().await.unwrap();
        seqs.extend(
            page.records()
                .iter()
                .map(|r| r.sequence_number().to_owned()),
        );
        if !page.child_shards().is_empty() {
            let children = page
                .child_shards()
                .iter()
                .map(|c| c.shard_id().to_owned())
                .collect();
            return (seqs, children);
        }
        if page.records().is_empty() && page.millis_behind_latest() == Some(0) {
            break;
        }
        it = page.next_shard_iterator().map(str::to_owned);
    }
    (seqs, Vec::new())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn puts_racing_a_split_all_land_where_readers_find_them() {
    let dir = tempfile::tempdir().unwrap();
    let both = Both::start(dir.path()).await;
    let k = both.client();
    k.create_stream()
        .stream_name("race")
        .shard_count(1)
        .send()
        .await
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..6u32 {
        let (k, stop) = (k.clone(), Arc::clone(&stop));
        writers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let entries = (0..20)
                    .map(|i| {
                        PutRecordsRequestEntry::builder()
                            .partition_key(format!("w{w}-{n}-{i}"))
                            .data(Blob::new(format!("{w}/{n}/{i}")))
                            .build()
                            .unwrap()
                    })
                    .collect::<Vec<_>>();
                n += 1;
                let out = k
                    .put_records()
                    .stream_name("race")
                    .set_records(Some(entries))
                    .send()
                    .await
                    .unwrap();
                for r in out.records() {
                    if let (Some(shard), Some(seq)) = (r.shard_id(), r.sequence_number()) {
                        acked.push((shard.to_owned(), seq.to_owned()));
                    }
                }
            }
            acked
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    k.split_shard()
        .stream_name("race")
        .shard_to_split("shardId-000000000000")
        .new_starting_hash_key(HALF.to_string())
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut acked = BTreeSet::new();
    for w in writers {
        acked.extend(w.await.unwrap());
    }
    let on = |s: &str| acked.iter().filter(|(shard, _)| shard == s).count();
    assert!(on("shardId-000000000000") > 0, "some puts before the split");
    assert!(
        on("shardId-000000000001") + on("shardId-000000000002") > 0,
        "some puts after it"
    );

    // Follow the lineage: the parent until it names its children, then each child.
    let (parent, children) = drain(&k, "race", "shardId-000000000000").await;
    assert_eq!(children, ["shardId-000000000001", "shardId-000000000002"]);
    let mut read = BTreeSet::new();
    read.extend(
        parent
            .into_iter()
            .map(|s| ("shardId-000000000000".to_owned(), s)),
    );
    for c in &children {
        let (seqs, grandchildren) = drain(&k, "race", c).await;
        assert!(grandchildren.is_empty());
        read.extend(seqs.into_iter().map(|s| (c.clone(), s)));
    }
    let lost: Vec<_> = acked.difference(&read).take(5).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged records not readable, e.g. {lost:?}",
        acked.difference(&read).count()
    );
    assert_eq!(
        read.len(),
        acked.len(),
        "nothing read that was not acknowledged"
    );
    both.stop().await;
}
