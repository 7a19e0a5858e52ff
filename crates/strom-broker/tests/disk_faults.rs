//! Disk faults at the broker: a failed `fdatasync` poisons one partition's log; the writer
//! gets a storage error, other partitions keep serving, and the broker reopens (recovers) the
//! partition in the background so writes resume without a restart.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use strom_broker::{Broker, BrokerConfig, CreateTopic, Error, StorageError, partition_dir};
use strom_log::fault::{self, FailNth, FaultError, FileKind, FileOp};
use strom_record::{BatchBuilder, DecodeLimits, Record, decode_records};

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A broker on `dir` with topic `t` of `partitions` partitions.
fn broker_with_topic(dir: &Path, partitions: i32) -> Broker {
    let broker = Broker::open(BrokerConfig::new(dir)).unwrap();
    broker
        .create_topic_blocking(CreateTopic {
            name: "t".into(),
            partitions: Some(partitions),
            ..CreateTopic::default()
        })
        .unwrap();
    broker
}

/// A fault plan failing the next `op` on a segment of `topic`'s partition 0 with EIO.
fn fail_next(dir: &Path, topic: &str, op: FileOp) -> Arc<FailNth> {
    Arc::new(FailNth::new(
        &partition_dir(dir, topic, 0),
        FileKind::Segment,
        op,
        1,
        FaultError::Io,
    ))
}

/// Waits (at most 20 s) until `p` has been recovered at least `count` times and is not
/// recovering.
fn wait_recovered(p: &strom_broker::Partition, count: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while p.recoveries() < count || p.is_recovering() {
        assert!(Instant::now() < deadline, "recovery {count} never happened");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The values read back, without the unacknowledged `lost` ones.
fn acked<'a>(values: &'a [String], lost: &str) -> Vec<&'a str> {
    values
        .iter()
        .map(String::as_str)
        .filter(|v| *v != lost)
        .collect()
}

fn batch(value: &str) -> Vec<u8> {
    BatchBuilder::new()
        .build(&[Record::new(
            now_ms(),
            None,
            Some(Bytes::copy_from_slice(value.as_bytes())),
        )])
        .unwrap()
}

fn values(broker: &Broker, partition: i32) -> Vec<String> {
    let p = broker.partition("t", partition).unwrap();
    let mut offset = 0;
    let mut out = Vec::new();
    loop {
        let read = p.read_blocking(offset, 1 << 20).unwrap();
        if read.records.is_empty() {
            return out;
        }
        let mut rest = read.records;
        while !rest.is_empty() {
            let h = strom_record::BatchHeader::parse(&rest).unwrap();
            let b = rest.split_to(h.total_len());
            for r in decode_records(&b, DecodeLimits::default()).unwrap().records {
                assert_eq!(r.offset, offset, "dense offsets");
                out.push(String::from_utf8(r.value.unwrap().to_vec()).unwrap());
                offset += 1;
            }
        }
    }
}

#[test]
fn a_failed_fdatasync_is_recovered_in_the_background_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker_with_topic(dir.path(), 2);
    let p0 = broker.partition("t", 0).unwrap();
    let p1 = broker.partition("t", 1).unwrap();
    p0.append_blocking(&mut batch("a")).unwrap();
    p1.append_blocking(&mut batch("x")).unwrap();

    // The next fdatasync of partition 0's segment fails with EIO.
    let plan = fail_next(dir.path(), "t", FileOp::Sync);
    let guard = fault::install(plan.clone());
    let err = p0.append_blocking(&mut batch("lost")).unwrap_err();
    assert!(
        matches!(err, Error::Storage(StorageError::Unavailable { .. })),
        "the writer sees the I/O error: {err}"
    );
    assert_eq!(plan.fired(), 1);

    // The other partition keeps serving, and partition 0 stays readable meanwhile.
    p1.append_blocking(&mut batch("y")).unwrap();
    assert_eq!(values(&broker, 1), ["x", "y"]);
    assert_eq!(values(&broker, 0).first().map(String::as_str), Some("a"));

    // Writes to partition 0 fail with a storage error until the background reopen is done,
    // then succeed, without a restart.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match p0.append_blocking(&mut batch("b")) {
            Ok(_) => break,
            Err(Error::Storage(StorageError::Poisoned)) => {
                assert!(Instant::now() < deadline, "partition 0 never recovered");
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("unexpected error while recovering: {e}"),
        }
    }
    drop(guard);
    assert_eq!(p0.recoveries(), 1);
    assert!(!p0.is_recovering());
    // "lost" was never acknowledged: recovery may keep it (it reached the page cache intact)
    // or not; everything acknowledged is there, in order.
    let got = values(&broker, 0);
    assert_eq!(acked(&got, "lost"), ["a", "b"]);
    broker.shutdown_blocking().unwrap();

    // And it all survives a restart.
    let broker = Broker::open(BrokerConfig::new(dir.path())).unwrap();
    assert_eq!(values(&broker, 0), got);
    assert_eq!(values(&broker, 1), ["x", "y"]);
}

/// Appends until one succeeds, at most for 20 s; returns the errors seen on the way.
fn append_until_ok(p: &strom_broker::Partition, value: &str) -> Vec<Error> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut errors = Vec::new();
    loop {
        match p.append_blocking(&mut batch(value)) {
            Ok(_) => return errors,
            Err(e) => {
                assert!(Instant::now() < deadline, "never succeeded: {e}");
                errors.push(e);
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

#[test]
fn a_disk_that_keeps_failing_is_recovered_from_each_time_and_a_full_disk_needs_no_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker_with_topic(dir.path(), 2);
    let p0 = broker.partition("t", 0).unwrap();
    let p1 = broker.partition("t", 1).unwrap();
    p0.append_blocking(&mut batch("a")).unwrap();
    let p0_dir = partition_dir(dir.path(), "t", 0);

    // Every fdatasync of partition 0 fails until healed: each append poisons, each poisoning
    // is recovered from.
    let plan = Arc::new(
        FailNth::new(&p0_dir, FileKind::Segment, FileOp::Sync, 1, FaultError::Io).sticky(),
    );
    let guard = fault::install(plan.clone());
    for round in 1..=3u64 {
        let err = p0.append_blocking(&mut batch("lost")).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Storage(StorageError::Unavailable { .. } | StorageError::Poisoned)
            ),
            "{err}"
        );
        p1.append_blocking(&mut batch(&format!("x{round}")))
            .unwrap();
        wait_recovered(&p0, round);
    }
    plan.heal();
    drop(guard);
    append_until_ok(&p0, "b");

    // A full disk: the write is undone, the log is not poisoned, nothing to recover; the
    // append after space returns succeeds at once.
    let full = Arc::new(
        FailNth::new(
            &p0_dir,
            FileKind::Segment,
            FileOp::Write,
            1,
            FaultError::NoSpace,
        )
        .sticky(),
    );
    let guard = fault::install(full.clone());
    let recoveries = p0.recoveries();
    for _ in 0..3 {
        let err = p0.append_blocking(&mut batch("refused")).unwrap_err();
        let Error::Storage(StorageError::Unavailable { source, .. }) = &err else {
            panic!("{err}");
        };
        assert_eq!(
            source
                .downcast_ref::<std::io::Error>()
                .and_then(std::io::Error::raw_os_error),
            Some(28)
        );
    }
    assert!(!p0.is_recovering());
    full.heal();
    drop(guard);
    p0.append_blocking(&mut batch("c")).unwrap();
    assert_eq!(p0.recoveries(), recoveries);

    let got = values(&broker, 0);
    assert_eq!(acked(&got, "lost"), ["a", "b", "c"]);
    assert!(!got.iter().any(|v| v == "refused"));
    assert_eq!(values(&broker, 1), ["x1", "x2", "x3"]);
}

/// The log cleaner and a failing disk: a clean whose swap fails (the rename of the cleaned
/// segment over the old one) poisons the partition's log; the broker reopens it in the
/// background (the open completes or rolls back the swap), and the next clean, which takes
/// the partition's current (healed) log, compacts it. Every latest value survives throughout.
#[test]
fn a_clean_whose_swap_fails_heals_and_the_next_pass_cleans_the_healed_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = BrokerConfig::new(dir.path());
    config.cleaner.enable = false; // passes run on this thread
    let broker = Broker::open(config).unwrap();
    let mut configs = std::collections::BTreeMap::new();
    configs.insert("cleanup.policy".to_owned(), "compact".to_owned());
    configs.insert("segment.bytes".to_owned(), "1024".to_owned());
    broker
        .create_topic_blocking(CreateTopic {
            name: "c".into(),
            partitions: Some(1),
            configs,
            ..CreateTopic::default()
        })
        .unwrap();
    let p = broker.partition("c", 0).unwrap();
    let mut latest = std::collections::BTreeMap::new();
    for i in 0..120 {
        let key = format!("k{}", i % 5);
        let value = format!("v{i}");
        let mut b = BatchBuilder::new()
            .build(&[Record::new(
                now_ms(),
                Some(Bytes::from(key.clone())),
                Some(Bytes::from(value.clone())),
            )])
            .unwrap();
        p.append_blocking(&mut b).unwrap();
        latest.insert(key, value);
    }
    // Key → value as read now (later records win); and how many records there are.
    let read = |p: &strom_broker::Partition| {
        let mut offset = p.log_start_offset();
        let mut map = std::collections::BTreeMap::new();
        let mut count = 0;
        loop {
            let r = p.read_blocking(offset, 1 << 20).unwrap();
            if r.records.is_empty() {
                return (map, count);
            }
            let mut rest = r.records;
            while !rest.is_empty() {
                let h = strom_record::BatchHeader::parse(&rest).unwrap();
                let b = rest.split_to(h.total_len());
                for r in decode_records(&b, DecodeLimits::default()).unwrap().records {
                    let key = String::from_utf8(r.key.unwrap().to_vec()).unwrap();
                    map.insert(key, String::from_utf8(r.value.unwrap().to_vec()).unwrap());
                    count += 1;
                }
                offset = h.next_offset();
            }
        }
    };
    let (before, written) = read(&p);
    assert_eq!(before, latest);

    let throttler = strom_log::Throttler::unlimited();
    let cancel = std::sync::atomic::AtomicBool::new(false);
    let plan = fail_next(dir.path(), "c", FileOp::Rename);
    let guard = fault::install(plan.clone());
    let err = p.clean_blocking(now_ms(), &throttler, &cancel).unwrap_err();
    assert_eq!(plan.fired(), 1, "the swap's rename failed: {err}");
    // The partition heals in the background.
    wait_recovered(&p, 1);
    drop(guard);
    assert_eq!(read(&p).0, latest, "nothing lost by the failed swap");

    // The next pass cleans the healed log.
    let stats = p.clean_blocking(now_ms(), &throttler, &cancel).unwrap();
    assert!(stats.segments_cleaned > 0, "{stats:?}");
    let (after, remaining) = read(&p);
    assert_eq!(after, latest);
    assert!(
        remaining < written / 2,
        "{remaining} of {written} records left"
    );
    p.append_blocking(&mut batch("after")).unwrap_err(); // keyless: refused on a compacted topic
    broker.shutdown_blocking().unwrap();

    let broker = Broker::open(BrokerConfig::new(dir.path())).unwrap();
    let p = broker.partition("c", 0).unwrap();
    assert_eq!(read(&p).0, latest);
}

/// Deferred appends (write now, wait for durability later, as a Kafka connection pipelining
/// Produce requests does): a failed `fdatasync` in the broker's commit window fails the first
/// waiter; a second write made before it, whose log healing replaced meanwhile, fails with
/// the storage error at once instead of waiting, and the healed partition takes new writes.
#[test]
fn a_deferred_append_whose_log_was_healed_meanwhile_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker_with_topic(dir.path(), 1);
    let p = broker.partition("t", 0).unwrap();
    p.append_blocking(&mut batch("a")).unwrap();
    let first = p.append_deferred_blocking(&mut batch("b")).unwrap();
    let second = p.append_deferred_blocking(&mut batch("c")).unwrap();
    let plan = fail_next(dir.path(), "t", FileOp::Sync);
    let guard = fault::install(plan.clone());
    let err = p.await_durable_blocking(first).unwrap_err();
    assert!(
        matches!(err, Error::Storage(StorageError::Unavailable { .. })),
        "{err}"
    );
    assert_eq!(
        plan.fired(),
        1,
        "the commit window's sync went through the seam"
    );
    drop(guard);
    wait_recovered(&p, 1);
    let started = Instant::now();
    let err = p.await_durable_blocking(second).unwrap_err();
    assert!(
        matches!(err, Error::Storage(StorageError::Poisoned)),
        "a storage error: {err}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    let info = p.append_blocking(&mut batch("d")).unwrap();
    assert_eq!(values(&broker, 0).last().map(String::as_str), Some("d"));
    assert_eq!(p.high_watermark(), info.last_offset + 1);
    // "b" and "c" were never acknowledged; recovery keeps them if intact on disk (it may),
    // and everything acknowledged is there.
    let kept = values(&broker, 0);
    assert_eq!(kept.first().map(String::as_str), Some("a"));
}
