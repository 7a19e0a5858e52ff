//! The read path: exact batches with committed offsets, byte limits, ListOffsets, caching and
//! long-poll wake-ups.

mod support;

use std::time::Duration;

use bytes::Bytes;
use strom_cluster::reader::{ListedOffset, OffsetSpec};
use strom_cluster::{Error, Notifier, TopicPartition};
use strom_record::{DecodeLimits, decode_records};
use support::{Env, STEP, batch_at, fast_flush, read_all, values};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reader_returns_exactly_the_committed_batches_with_their_offsets() {
    let env = Env::start().await;
    env.create_topic("t", 2).await;
    let tp = TopicPartition::new("t", 0);
    let other = TopicPartition::new("t", 1);
    let writer = env.writer("w", fast_flush(), None);
    // Batches of 1..=4 records with increasing timestamps; partition 1 interleaved so objects
    // hold both partitions.
    let mut sent = Vec::new();
    for i in 0..12 {
        let n = i % 4 + 1;
        let vals = values(&format!("b{i}"), n);
        let b = batch_at(None, 10_000 + 100 * i as i64, &vals);
        let (a, _) = tokio::join!(
            writer.append(tp.clone(), b.clone()),
            writer.append(other.clone(), batch_at(None, 0, &values("o", 2)))
        );
        sent.push((a.unwrap(), b, vals));
    }

    let reader = env.reader(1 << 20);
    let all = reader.fetch(&tp, 0, usize::MAX).await.unwrap();
    assert_eq!(all.batches.len(), sent.len());
    assert_eq!(all.high_watermark, 30);
    assert_eq!(all.log_start_offset, 0);
    for (got, (appended, original, vals)) in all.batches.iter().zip(&sent) {
        // Same bytes except the 8-byte base offset.
        assert_eq!(got.len(), original.len());
        assert_eq!(got[8..], original[8..]);
        let decoded = decode_records(got, DecodeLimits::default()).expect("valid batch, CRC ok");
        assert_eq!(decoded.header.base_offset, appended.base_offset);
        let offsets: Vec<i64> = decoded.records.iter().map(|r| r.offset).collect();
        assert_eq!(
            offsets,
            (appended.base_offset..=appended.last_offset).collect::<Vec<_>>()
        );
        let got_vals: Vec<Bytes> = decoded
            .records
            .into_iter()
            .filter_map(|r| r.value)
            .collect();
        let want: Vec<Bytes> = vals.iter().map(|v| Bytes::from(v.clone())).collect();
        assert_eq!(got_vals, want);
    }
    assert_eq!(read_all(&reader, &other).await.len(), 24);

    // Many fetches at once share the reader's connections.
    let fetches = (0..16).map(|i| reader.fetch(&tp, i, 1 << 10));
    for (i, r) in futures_util::future::join_all(fetches)
        .await
        .into_iter()
        .enumerate()
    {
        let first = strom_record::BatchHeader::parse(&r.unwrap().batches[0]).unwrap();
        assert!(first.base_offset <= i as i64 && i as i64 <= first.last_offset());
    }

    // A fetch inside a batch returns that whole batch; max_bytes stops after at least one.
    let inside = reader.fetch(&tp, 4, 1).await.unwrap();
    assert_eq!(inside.batches.len(), 1);
    let h = strom_record::BatchHeader::parse(&inside.batches[0]).unwrap();
    assert_eq!((h.base_offset, h.last_offset()), (3, 5));
    let two = reader
        .fetch(&tp, 0, all.batches[0].len() + 1)
        .await
        .unwrap();
    assert_eq!(two.batches.len(), 2);
    // At the high watermark: nothing; beyond it: out of range.
    assert!(
        reader
            .fetch(&tp, 30, 1 << 20)
            .await
            .unwrap()
            .batches
            .is_empty()
    );
    assert!(matches!(
        reader.fetch(&tp, 31, 1 << 20).await,
        Err(Error::OffsetOutOfRange {
            offset: 31,
            high_watermark: 30,
            ..
        })
    ));

    // ListOffsets from the index.
    let list = |spec| reader.list_offset(&tp, spec);
    assert_eq!(
        list(OffsetSpec::Earliest).await.unwrap(),
        ListedOffset {
            offset: 0,
            timestamp: -1
        }
    );
    assert_eq!(
        list(OffsetSpec::Latest).await.unwrap(),
        ListedOffset {
            offset: 30,
            timestamp: -1
        }
    );
    // Batch 5 (2 records, offsets 11..=12) starts at ts 10_500; 10_501 is its second record.
    assert_eq!(
        list(OffsetSpec::Timestamp(10_501)).await.unwrap(),
        ListedOffset {
            offset: 12,
            timestamp: 10_501
        }
    );
    assert_eq!(
        list(OffsetSpec::Timestamp(0)).await.unwrap(),
        ListedOffset {
            offset: 0,
            timestamp: 10_000
        }
    );
    assert_eq!(
        list(OffsetSpec::Timestamp(99_999)).await.unwrap(),
        ListedOffset {
            offset: -1,
            timestamp: -1
        }
    );
    // Batch 11 has 4 records at 11_100..=11_103, offsets 26..=29.
    assert_eq!(
        list(OffsetSpec::MaxTimestamp).await.unwrap(),
        ListedOffset {
            offset: 29,
            timestamp: 11_103
        }
    );
    writer.shutdown(STEP).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_reads_come_from_the_writers_cache_and_long_polls_wake_on_commit() {
    let mut env = Env::start().await;
    env.create_topic("t", 1).await;
    let tp = TopicPartition::new("t", 0);
    let cache = std::sync::Arc::new(strom_cluster::ObjectCache::new(1 << 20));
    let writer = env.writer("w", fast_flush(), Some(cache.clone()));
    let reader = strom_cluster::Reader::new(
        env.db(),
        env.store.clone(),
        cache.clone(),
        strom_cluster::ReaderConfig::default(),
    );
    let notifier = Notifier::start(env.config.postgres_config().unwrap());
    let mut hw = notifier.subscribe(&tp).await.unwrap();
    assert_eq!(*hw.borrow_and_update(), 0);

    // A consumer long-polls at the tail; a commit wakes it.
    let waiter = tokio::spawn(async move {
        tokio::time::timeout(STEP, hw.changed())
            .await
            .expect("woken")
            .unwrap();
        *hw.borrow()
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let a = writer
        .append(tp.clone(), batch_at(None, 1, &values("x", 3)))
        .await
        .unwrap();
    assert_eq!(waiter.await.unwrap(), a.last_offset + 1);

    // The writer put the batch in the shared cache: served without a download, so it is
    // served even with the object store down.
    tokio::task::block_in_place(|| env.s3.stop());
    let got = reader.fetch(&tp, 0, 1 << 20).await.unwrap();
    assert_eq!(got.batches.len(), 1);
    assert_eq!(
        strom_record::BatchHeader::parse(&got.batches[0])
            .unwrap()
            .base_offset,
        0
    );
    assert!(cache.stats().hits >= 1);
    // A reader with its own cold cache must download, and fails retriably.
    let cold = env.reader(1 << 20);
    let err = cold.fetch(&tp, 0, 1 << 20).await.unwrap_err();
    assert!(
        matches!(err, Error::ObjectStore { .. }) && err.is_retriable(),
        "{err}"
    );
}
