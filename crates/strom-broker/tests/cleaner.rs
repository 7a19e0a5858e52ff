//! The broker's log cleaner against real data dirs: it cleans only compacted topics and follows
//! runtime config changes; `__consumer_offsets` cleaned like any topic replays to the same
//! committed offsets after a restart; shutdown stops sleeping cleaner threads at once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use strom_broker::group::{OFFSETS_TOPIC, OffsetCommit};
use strom_broker::{Broker, BrokerConfig, Clock, CreateTopic, ManualClock};
use strom_record::{BatchBuilder, Record};

const START_MS: i64 = 1_800_000_000_000;

fn keyed(now: i64, key: &str, value: &str) -> Vec<u8> {
    BatchBuilder::new()
        .build(&[Record::new(
            now,
            Some(Bytes::copy_from_slice(key.as_bytes())),
            Some(Bytes::copy_from_slice(value.as_bytes())),
        )])
        .unwrap()
}

fn configs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A broker with the background cleaner off (passes run on the test's thread) and a manual
/// clock, so segments roll exactly when the test moves time past `segment.ms`.
fn open(dir: &std::path::Path, clock: &Arc<ManualClock>) -> Broker {
    let mut config = BrokerConfig::new(dir);
    config.cleaner.enable = false;
    Broker::open_with_clock(config, Arc::clone(clock) as Arc<dyn Clock>).unwrap()
}

/// Appends 20 updates of each of 10 keys, then rolls the segment (time moves past segment.ms
/// and one more record is appended).
fn write_updates(broker: &Broker, clock: &ManualClock, topic: &str) {
    let p = broker.partition(topic, 0).unwrap();
    for round in 0..20 {
        for k in 0..10 {
            p.append_blocking(&mut keyed(
                clock.now_ms(),
                &format!("k{k}"),
                &format!("{round}"),
            ))
            .unwrap();
        }
    }
    clock.advance(10);
    p.append_blocking(&mut keyed(clock.now_ms(), "roll", "roll"))
        .unwrap();
}

#[test]
fn only_compacted_topics_are_cleaned_and_config_changes_apply_at_the_next_pass() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(START_MS));
    let broker = open(dir.path(), &clock);
    let small = [("segment.ms", "5"), ("min.cleanable.dirty.ratio", "0.01")];
    broker
        .create_topic_blocking(CreateTopic {
            name: "events".into(),
            partitions: Some(1),
            configs: configs(&small),
            ..CreateTopic::default()
        })
        .unwrap();
    write_updates(&broker, &clock, "events");
    let p = broker.partition("events", 0).unwrap();
    let size = p.size_bytes();
    assert!(!broker.clean_once_blocking(), "cleanup.policy=delete");
    assert!(broker.cleaner_status().is_empty());
    assert_eq!(p.size_bytes(), size);

    let mut compact = configs(&small);
    compact.insert("cleanup.policy".into(), "compact".into());
    broker
        .set_topic_configs_blocking("events", compact, false)
        .unwrap();
    assert!(broker.clean_once_blocking(), "compact after AlterConfigs");
    assert!(p.size_bytes() < size / 5, "{} -> {}", size, p.size_bytes());
    let status = broker.cleaner_status();
    assert_eq!(status.len(), 1);
    let s = status[0].state;
    assert_eq!(
        (status[0].topic.as_str(), status[0].partition),
        ("events", 0)
    );
    assert_eq!(s.cleans_total, 1);
    assert_eq!(s.records_removed_total, 190, "19 older updates of 10 keys");
    assert!(s.bytes_read_total > s.bytes_written_total);
    assert_eq!(s.last_clean_ms, Some(clock.now_ms()));
    assert!(!broker.clean_once_blocking(), "nothing dirty any more");

    // Raising the ratio to 1 stops cleaning (Kafka's strict `>`), lowering it resumes.
    write_updates(&broker, &clock, "events");
    let mut strict = configs(&[("segment.ms", "5"), ("min.cleanable.dirty.ratio", "1")]);
    strict.insert("cleanup.policy".into(), "compact".into());
    broker
        .set_topic_configs_blocking("events", strict, false)
        .unwrap();
    assert!(!broker.clean_once_blocking(), "dirty ratio at most 1");
    let dirty = broker.cleaner_status()[0].state;
    assert!(dirty.dirty_ratio > 0.5, "{dirty:?}");
    assert!(dirty.oldest_dirty_timestamp.is_some());
    assert_eq!(dirty.lag_ms(clock.now_ms() + 1_000), 1_010, "{dirty:?}");
    let mut loose = configs(&small);
    loose.insert("cleanup.policy".into(), "compact".into());
    broker
        .set_topic_configs_blocking("events", loose, false)
        .unwrap();
    assert!(broker.clean_once_blocking());
    broker.shutdown_blocking().unwrap();
}

#[test]
fn compacted_consumer_offsets_replay_to_the_same_commits() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(START_MS));
    let broker = open(dir.path(), &clock);
    broker
        .create_topic_blocking(CreateTopic {
            name: "input".into(),
            partitions: Some(2),
            ..CreateTopic::default()
        })
        .unwrap();
    let commit = |group: &str, partition: i32, offset: i64| {
        let results = broker
            .commit_offsets_blocking(
                group,
                "",
                -1,
                None,
                vec![OffsetCommit {
                    topic: "input".into(),
                    partition,
                    offset,
                    leader_epoch: -1,
                    metadata: None,
                }],
            )
            .unwrap();
        assert!(results.iter().all(Result::is_ok));
    };
    commit("g0", 0, 0);
    broker
        .set_topic_configs_blocking(
            OFFSETS_TOPIC,
            configs(&[
                ("cleanup.policy", "compact"),
                ("segment.ms", "5"),
                ("min.cleanable.dirty.ratio", "0.01"),
            ]),
            false,
        )
        .unwrap();
    let mut expected = BTreeMap::new();
    for i in 0..400i64 {
        let (group, partition) = (format!("g{}", i % 5), (i % 2) as i32);
        commit(&group, partition, i);
        expected.insert((group, partition), i);
        if i % 50 == 49 {
            clock.advance(10);
        }
    }
    clock.advance(10);
    commit("g0", 0, 1_000);
    expected.insert(("g0".into(), 0), 1_000);

    let offsets = broker.partition(OFFSETS_TOPIC, 0).unwrap();
    let size = offsets.size_bytes();
    let deadline = Instant::now() + Duration::from_secs(30);
    while broker.clean_once_blocking() {
        assert!(Instant::now() < deadline);
    }
    assert!(
        offsets.size_bytes() < size / 4,
        "{} -> {}",
        size,
        offsets.size_bytes()
    );
    let status = broker.cleaner_status();
    assert!(
        status
            .iter()
            .any(|s| s.topic == OFFSETS_TOPIC && s.state.records_removed_total > 300),
        "{status:?}"
    );
    let read = |b: &Broker| -> BTreeMap<(String, i32), i64> {
        let mut out = BTreeMap::new();
        for g in 0..5 {
            let group = format!("g{g}");
            for ((_, p), c) in b.groups().fetch_offsets(&group, None) {
                if let Some(c) = c {
                    out.insert((group.clone(), p), c.offset);
                }
            }
        }
        out
    };
    assert_eq!(read(&broker), expected);
    broker.shutdown_blocking().unwrap();
    drop(broker);

    let reopened = open(dir.path(), &clock);
    assert_eq!(read(&reopened), expected, "replayed from the compacted log");
    reopened.shutdown_blocking().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_wakes_and_joins_sleeping_cleaner_threads() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = BrokerConfig::new(dir.path());
    config.cleaner.threads = 3;
    config.cleaner.backoff = Duration::from_secs(3_600);
    let broker = Broker::start(config).await.unwrap();
    // Let the threads finish their first pass and go to sleep.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    broker
        .run_blocking(|b| b.shutdown_blocking())
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "shutdown waited {:?} for the cleaner",
        started.elapsed()
    );
}
