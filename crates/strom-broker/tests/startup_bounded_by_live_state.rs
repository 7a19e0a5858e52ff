//! Start-up time depends on live state, not history (issue 15): a broker that has seen
//! 1 000 000 offset commits for 100 groups reopens as fast as one that saw each group commit
//! once, because `__consumer_offsets` is replayed from the offsets checkpoint on.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use strom_broker::group::OffsetCommit;
use strom_broker::{Broker, BrokerConfig, CreateTopic};

const GROUPS: usize = 100;
const PARTITIONS: i32 = 100;

fn config(dir: &Path) -> BrokerConfig {
    let mut c = BrokerConfig::new(dir);
    // Syncing every one of 10 000 appends would measure the disk, not the replay; the
    // checkpoint flushes the topic before it is written, which is what durability needs here.
    c.topic_defaults = BTreeMap::from([("strom.fsync".to_owned(), "never".to_owned())]);
    c
}

/// A broker with topic `t` (100 partitions) where every group commits every partition `rounds`
/// times (one OffsetCommit of 100 partitions per group and round), then shuts down cleanly.
fn commit_rounds(dir: &Path, rounds: usize, checkpoint_every: Option<usize>) -> Broker {
    let broker = Broker::open(config(dir)).unwrap();
    broker
        .create_topic_blocking(CreateTopic {
            name: "t".into(),
            partitions: Some(PARTITIONS),
            ..CreateTopic::default()
        })
        .unwrap();
    let mut calls = 0;
    for round in 0..rounds {
        for g in 0..GROUPS {
            let commits = (0..PARTITIONS)
                .map(|p| OffsetCommit {
                    topic: "t".into(),
                    partition: p,
                    offset: round as i64,
                    leader_epoch: -1,
                    metadata: None,
                })
                .collect();
            let r = broker
                .commit_offsets_blocking(&format!("group-{g}"), "", -1, None, commits)
                .unwrap();
            assert!(r.iter().all(Result::is_ok));
            calls += 1;
            // What the broker's periodic checkpoint task does in a running server.
            if checkpoint_every.is_some_and(|n| calls % n == 0) {
                broker.checkpoint_offsets_blocking(false).unwrap();
            }
        }
    }
    broker
}

/// The fastest of `runs` opens (the least disturbed by other work on the machine), with the
/// number of records the open replayed.
fn reopen(dir: &Path, runs: usize) -> (Duration, u64) {
    let mut best = Duration::MAX;
    let mut replayed = 0;
    for _ in 0..runs {
        let start = Instant::now();
        let broker = Broker::open(config(dir)).unwrap();
        best = best.min(start.elapsed());
        replayed = broker.groups().replayed_at_open();
        assert_eq!(broker.groups().list().len(), GROUPS);
        drop(broker);
    }
    (best, replayed)
}

#[test]
fn reopen_after_a_million_commits_is_as_fast_as_after_one_per_group() {
    let fresh = tempfile::tempdir().unwrap();
    let history = tempfile::tempdir().unwrap();
    // Same live state (100 groups × 100 partitions): 100 commits vs 1 000 000.
    commit_rounds(fresh.path(), 1, None)
        .shutdown_blocking()
        .unwrap();
    let busy = commit_rounds(history.path(), 100, None);
    let last = busy.groups().fetch_offsets("group-7", None);
    assert_eq!(last.len(), PARTITIONS as usize);
    busy.shutdown_blocking().unwrap();
    drop(busy);

    let (fresh_time, fresh_replayed) = reopen(fresh.path(), 3);
    let (history_time, history_replayed) = reopen(history.path(), 3);
    eprintln!("reopen: after 100 commits {fresh_time:?}, after 1 000 000 {history_time:?}");
    // Neither replays the topic: both start from the shutdown checkpoint.
    assert_eq!((fresh_replayed, history_replayed), (0, 0));
    let broker = Broker::open(config(history.path())).unwrap();
    assert_eq!(broker.groups().fetch_offsets("group-7", None), last);
    drop(broker);
    // Both load the same 10 000 live offsets and open the same partitions; what differs is
    // the size of `__consumer_offsets` (tens of MiB vs tens of KiB), whose recovery after a
    // clean close reads the index and the last indexed batch only. 3× absorbs scheduling noise
    // on a shared machine; the 250 ms constant covers opening one larger segment file and page-
    // cache misses, independent of the number of commits. A full replay of 1 000 000 records
    // takes seconds in this build, far above the bound.
    assert!(
        history_time <= fresh_time * 3 + Duration::from_millis(250),
        "reopen after 1M commits took {history_time:?}, after 100 commits {fresh_time:?}"
    );
}

/// After a crash (no shutdown checkpoint), the replay is bounded by the checkpoint interval
/// (`max(100 000, 2 × live)` records), not by the history.
#[test]
fn reopen_after_a_crash_replays_only_the_tail_since_the_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let broker = commit_rounds(dir.path(), 30, Some(10));
    let expected = broker.groups().fetch_offsets("group-42", None);
    drop(broker); // a crash: no shutdown, no final checkpoint
    let broker = Broker::open(config(dir.path())).unwrap();
    let replayed = broker.groups().replayed_at_open();
    assert!(
        replayed <= 100_000 + 10 * PARTITIONS as u64 * 10,
        "replayed {replayed} of 300 000 records"
    );
    assert_eq!(broker.groups().fetch_offsets("group-42", None), expected);
}
