//! Data plane through aws-sdk-kinesis: PutRecord(s), every iterator type, GetRecords paging,
//! ordering per shard, and the errors clients must see.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::{Blob, DateTime};
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, Record, ShardIteratorType};
use strom_kinesis::KinesisConfig;

use super::harness::{Both, code, single_node_only};

async fn iterator(k: &Client, stream: &str, shard: &str, kind: ShardIteratorType) -> String {
    k.get_shard_iterator()
        .stream_name(stream)
        .shard_id(shard)
        .shard_iterator_type(kind)
        .send()
        .await
        .unwrap()
        .shard_iterator()
        .unwrap()
        .to_owned()
}

/// Follows next iterators from `it` in pages of `limit` until a page is empty (at most 200
/// pages); returns the records and the iterator after them.
pub(crate) async fn drain(k: &Client, mut it: String, limit: i32) -> (Vec<Record>, String) {
    let mut out = Vec::new();
    for _ in 0..200 {
        let page = k
            .get_records()
            .shard_iterator(&it)
            .limit(limit)
            .send()
            .await
            .unwrap();
        it = page.next_shard_iterator().expect("open shard").to_owned();
        if page.records().is_empty() {
            assert_eq!(page.millis_behind_latest(), Some(0));
            return (out, it);
        }
        out.extend(page.records().iter().cloned());
    }
    panic!("shard did not drain");
}

fn entry(key: &str, data: &[u8]) -> PutRecordsRequestEntry {
    PutRecordsRequestEntry::builder()
        .partition_key(key)
        .data(Blob::new(data))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_and_get_in_order_per_shard() {
    let dir = tempfile::tempdir().unwrap();
    let both = Both::start(dir.path()).await;
    let k = both.client();
    k.create_stream()
        .stream_name("s")
        .shard_count(2)
        .send()
        .await
        .unwrap();

    // PutRecords: 40 records over 8 keys, then 10 single PutRecords.
    let entries: Vec<_> = (0..40)
        .map(|i| entry(&format!("key-{}", i % 8), format!("r{i}").as_bytes()))
        .collect();
    let out = k
        .put_records()
        .stream_name("s")
        .set_records(Some(entries))
        .send()
        .await
        .unwrap();
    assert_eq!(out.failed_record_count(), Some(0));
    assert_eq!(out.records().len(), 40);
    let mut expected: BTreeMap<String, Vec<(String, String, String)>> = BTreeMap::new();
    for (i, r) in out.records().iter().enumerate() {
        let shard = r.shard_id().unwrap().to_owned();
        let seq = r.sequence_number().unwrap().to_owned();
        assert_eq!(seq.len(), 56);
        expected
            .entry(shard)
            .or_default()
            .push((seq, format!("key-{}", i % 8), format!("r{i}")));
    }
    for i in 40..50 {
        let key = format!("key-{}", i % 8);
        let r = k
            .put_record()
            .stream_name("s")
            .partition_key(&key)
            .data(Blob::new(format!("r{i}")))
            .send()
            .await
            .unwrap();
        expected.entry(r.shard_id().to_owned()).or_default().push((
            r.sequence_number().to_owned(),
            key,
            format!("r{i}"),
        ));
    }
    assert_eq!(expected.len(), 2, "8 keys land on both shards");

    for (shard, want) in &expected {
        // Sequence numbers increase within a shard, as numbers and as strings.
        assert!(want.windows(2).all(|w| w[0].0 < w[1].0));
        let it = iterator(&k, "s", shard, ShardIteratorType::TrimHorizon).await;
        let (got, _) = drain(&k, it, 7).await;
        let got: Vec<_> = got
            .iter()
            .map(|r| {
                (
                    r.sequence_number().to_owned(),
                    r.partition_key().unwrap().to_owned(),
                    String::from_utf8(r.data().as_ref().to_vec()).unwrap(),
                )
            })
            .collect();
        assert_eq!(&got, want, "shard {shard}");
    }
    // The same key always lands on the same shard: MD5(key) picks the hash range.
    let mut by_key: BTreeMap<String, String> = BTreeMap::new();
    for (shard, recs) in &expected {
        for (_, key, _) in recs {
            assert_eq!(
                by_key.entry(key.clone()).or_insert_with(|| shard.clone()),
                shard
            );
        }
    }
    both.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_iterator_type() {
    let dir = tempfile::tempdir().unwrap();
    let both = Both::start(dir.path()).await;
    let k = both.client();
    k.create_stream()
        .stream_name("it")
        .shard_count(1)
        .send()
        .await
        .unwrap();
    let shard = "shardId-000000000000";
    let latest_before = iterator(&k, "it", shard, ShardIteratorType::Latest).await;
    let mut seqs = Vec::new();
    for i in 0..5 {
        let r = k
            .put_record()
            .stream_name("it")
            .partition_key("p")
            .data(Blob::new(vec![i]))
            .send()
            .await
            .unwrap();
        seqs.push(r.sequence_number().to_owned());
    }
    tokio::time::sleep(Duration::from_millis(30)).await;
    let between = DateTime::from_millis(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64,
    );
    tokio::time::sleep(Duration::from_millis(30)).await;
    for i in 5..8 {
        let r = k
            .put_record()
            .stream_name("it")
            .partition_key("p")
            .data(Blob::new(vec![i]))
            .send()
            .await
            .unwrap();
        seqs.push(r.sequence_number().to_owned());
    }
    let data = |recs: &[Record]| {
        recs.iter()
            .map(|r| r.data().as_ref()[0])
            .collect::<Vec<u8>>()
    };

    let (all, _) = drain(
        &k,
        iterator(&k, "it", shard, ShardIteratorType::TrimHorizon).await,
        100,
    )
    .await;
    assert_eq!(data(&all), [0, 1, 2, 3, 4, 5, 6, 7]);
    let (from_old_latest, _) = drain(&k, latest_before, 100).await;
    assert_eq!(data(&from_old_latest), [0, 1, 2, 3, 4, 5, 6, 7]);

    let at = k
        .get_shard_iterator()
        .stream_name("it")
        .shard_id(shard)
        .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
        .starting_sequence_number(&seqs[3])
        .send()
        .await
        .unwrap();
    let (recs, _) = drain(&k, at.shard_iterator().unwrap().to_owned(), 100).await;
    assert_eq!(data(&recs), [3, 4, 5, 6, 7]);
    assert_eq!(recs[0].sequence_number(), seqs[3]);

    let after = k
        .get_shard_iterator()
        .stream_name("it")
        .shard_id(shard)
        .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
        .starting_sequence_number(&seqs[3])
        .send()
        .await
        .unwrap();
    let (recs, _) = drain(&k, after.shard_iterator().unwrap().to_owned(), 100).await;
    assert_eq!(data(&recs), [4, 5, 6, 7]);

    let ts = k
        .get_shard_iterator()
        .stream_name("it")
        .shard_id(shard)
        .shard_iterator_type(ShardIteratorType::AtTimestamp)
        .timestamp(between)
        .send()
        .await
        .unwrap();
    let (recs, _) = drain(&k, ts.shard_iterator().unwrap().to_owned(), 100).await;
    assert_eq!(data(&recs), [5, 6, 7]);
    let arrival = recs[0].approximate_arrival_timestamp().unwrap();
    assert!(arrival.to_millis().unwrap() >= between.to_millis().unwrap());

    // LATEST now: nothing until the next put, then exactly that.
    let latest = iterator(&k, "it", shard, ShardIteratorType::Latest).await;
    let page = k
        .get_records()
        .shard_iterator(&latest)
        .send()
        .await
        .unwrap();
    assert!(page.records().is_empty());
    k.put_record()
        .stream_name("it")
        .partition_key("p")
        .data(Blob::new(vec![8]))
        .send()
        .await
        .unwrap();
    let page = k
        .get_records()
        .shard_iterator(page.next_shard_iterator().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(data(page.records()), [8]);

    // Limit pages.
    let it = iterator(&k, "it", shard, ShardIteratorType::TrimHorizon).await;
    let page = k
        .get_records()
        .shard_iterator(&it)
        .limit(3)
        .send()
        .await
        .unwrap();
    assert_eq!(data(page.records()), [0, 1, 2]);
    assert!(page.millis_behind_latest().unwrap() >= 0);
    let page = k
        .get_records()
        .shard_iterator(page.next_shard_iterator().unwrap())
        .limit(3)
        .send()
        .await
        .unwrap();
    assert_eq!(data(page.records()), [3, 4, 5]);
    both.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_hash_key_picks_the_shard() {
    let dir = tempfile::tempdir().unwrap();
    let both = Both::start(dir.path()).await;
    let k = both.client();
    k.create_stream()
        .stream_name("h")
        .shard_count(4)
        .send()
        .await
        .unwrap();
    for (hash, shard) in [
        ("0", "shardId-000000000000"),
        (
            "85070591730234615865843651857942052864",
            "shardId-000000000001",
        ),
        (
            "340282366920938463463374607431768211455",
            "shardId-000000000003",
        ),
    ] {
        let r = k
            .put_record()
            .stream_name("h")
            .partition_key("same")
            .explicit_hash_key(hash)
            .data(Blob::new("x"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.shard_id(), shard, "{hash}");
    }
    let e = k
        .put_record()
        .stream_name("h")
        .partition_key("k")
        .explicit_hash_key("340282366920938463463374607431768211456")
        .data(Blob::new("x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidArgumentException");
    both.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_clients_see() {
    let dir = tempfile::tempdir().unwrap();
    let config = KinesisConfig {
        iterator_ttl: Duration::from_millis(500),
        ..KinesisConfig::default()
    };
    let both = Both::start_with(dir.path(), config).await;
    let k = both.client();
    k.create_stream()
        .stream_name("e")
        .shard_count(1)
        .send()
        .await
        .unwrap();

    let e = k
        .put_record()
        .stream_name("nope")
        .partition_key("k")
        .data(Blob::new("x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "ResourceNotFoundException");
    let e = k
        .put_record()
        .stream_name("e")
        .partition_key("k")
        .data(Blob::new(vec![0u8; 1024 * 1024 + 1]))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "ValidationException");
    let e = k
        .put_record()
        .stream_name("e")
        .partition_key("k".repeat(257))
        .data(Blob::new("x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "ValidationException");
    let too_many: Vec<_> = (0..501).map(|i| entry(&i.to_string(), b"x")).collect();
    let e = k
        .put_records()
        .stream_name("e")
        .set_records(Some(too_many))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "ValidationException");
    let too_big: Vec<_> = (0..6)
        .map(|i| entry(&i.to_string(), &vec![1u8; 1024 * 1024 - 10]))
        .collect();
    let e = k
        .put_records()
        .stream_name("e")
        .set_records(Some(too_big))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidArgumentException");
    // A full-size record (1 MiB including the key) is accepted.
    let ok = k
        .put_record()
        .stream_name("e")
        .partition_key("k")
        .data(Blob::new(vec![2u8; 1024 * 1024 - 1]))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.shard_id(), "shardId-000000000000");

    let e = k
        .get_records()
        .shard_iterator("AAAA")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidArgumentException");
    let it = iterator(
        &k,
        "e",
        "shardId-000000000000",
        ShardIteratorType::TrimHorizon,
    )
    .await;
    let mut forged = it.clone().into_bytes();
    let last = forged.len() - 5;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let e = k
        .get_records()
        .shard_iterator(String::from_utf8(forged).unwrap())
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidArgumentException");
    let e = k
        .get_shard_iterator()
        .stream_name("e")
        .shard_id("shardId-000000000009")
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "ResourceNotFoundException");
    let e = k
        .get_shard_iterator()
        .stream_name("e")
        .shard_id("shardId-000000000000")
        .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
        .starting_sequence_number("12345")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidArgumentException");
    let e = k
        .get_records()
        .shard_iterator(&it)
        .limit(10_001)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "ValidationException");

    tokio::time::sleep(Duration::from_millis(700)).await;
    let e = k
        .get_records()
        .shard_iterator(&it)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "ExpiredIteratorException");

    // An iterator of a deleted stream is refused even after a stream of the same name returns.
    if single_node_only(
        "a broker that has not yet read the delete (metadata tail, 250 ms) serves the old \
         iterator; partitions are keyed by topic name in the shared index, so its read finds \
         the new stream's (empty) shard",
    ) {
        both.stop().await;
        return;
    }
    let it = iterator(
        &k,
        "e",
        "shardId-000000000000",
        ShardIteratorType::TrimHorizon,
    )
    .await;
    k.delete_stream().stream_name("e").send().await.unwrap();
    k.create_stream()
        .stream_name("e")
        .shard_count(1)
        .send()
        .await
        .unwrap();
    let e = k
        .get_records()
        .shard_iterator(&it)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "ResourceNotFoundException");
    both.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shard_iterators_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let both = Both::start(dir.path()).await;
    let k = both.client();
    k.create_stream()
        .stream_name("durable")
        .shard_count(1)
        .send()
        .await
        .unwrap();
    k.put_record()
        .stream_name("durable")
        .partition_key("p")
        .data(Blob::new("before"))
        .send()
        .await
        .unwrap();
    let it = iterator(
        &k,
        "durable",
        "shardId-000000000000",
        ShardIteratorType::TrimHorizon,
    )
    .await;
    both.stop().await;

    let both = Both::start(dir.path()).await;
    let k = both.client();
    let out = k.get_records().shard_iterator(&it).send().await.unwrap();
    assert_eq!(out.records().len(), 1);
    assert_eq!(out.records()[0].data().as_ref(), b"before");
    // A forged iterator is still refused.
    let mut forged = it.clone();
    forged.pop();
    forged.push(if it.ends_with('A') { 'B' } else { 'A' });
    let e = k
        .get_records()
        .shard_iterator(forged)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidArgumentException");
    both.stop().await;
}

/// A PutRecords over many shards under `strom.fsync=always` (the default) costs one commit
/// window: every shard is written first, then all wait together, so the first waiter starts a
/// window that already holds every shard's segment and each file is `fdatasync`ed once.
/// Counted with the broker's commit-window counters, not timed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_records_over_many_shards_costs_one_commit_window() {
    if single_node_only(
        "counts the local backend's commit windows; a cluster broker's writer commits one \
         object per flush instead (crates/strom-cluster/tests/write_path.rs)",
    ) {
        return;
    }
    const SHARDS: u128 = 8;
    let dir = tempfile::tempdir().unwrap();
    let both = Both::start(dir.path()).await;
    let k = both.client();
    k.create_stream()
        .stream_name("w")
        .shard_count(SHARDS as i32)
        .send()
        .await
        .unwrap();
    // The first hash key of each shard (the hash space split evenly).
    let step = u128::MAX / SHARDS + 1;
    let durability = both
        .broker
        .broker()
        .durability()
        .expect("the local backend has a commit window");
    for round in 0..3 {
        let entries: Vec<_> = (0..SHARDS * 4)
            .map(|i| {
                PutRecordsRequestEntry::builder()
                    .partition_key("k")
                    .explicit_hash_key(((i % SHARDS) * step).to_string())
                    .data(Blob::new(format!("r{round}-{i}")))
                    .build()
                    .unwrap()
            })
            .collect();
        let (windows, syncs) = (durability.window_count(), durability.sync_count());
        let out = k
            .put_records()
            .stream_name("w")
            .set_records(Some(entries))
            .send()
            .await
            .unwrap();
        assert_eq!(out.failed_record_count(), Some(0));
        let shards: std::collections::BTreeSet<_> =
            out.records().iter().filter_map(|r| r.shard_id()).collect();
        assert_eq!(shards.len(), SHARDS as usize, "every shard written");
        // A waiter returns once its own file is synced; the window is counted when its last
        // sync ends, a moment later. (Syncs are counted before any waiter returns.)
        let settle = std::time::Instant::now() + Duration::from_secs(5);
        while durability.window_count() == windows && std::time::Instant::now() < settle {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(
            durability.window_count() - windows,
            1,
            "round {round}: one commit window for {SHARDS} shards"
        );
        assert_eq!(
            durability.sync_count() - syncs,
            SHARDS as u64,
            "round {round}: one fdatasync per shard"
        );
    }
    both.stop().await;
}
