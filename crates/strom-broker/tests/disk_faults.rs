//! Disk faults at the broker: a failed `fdatasync` poisons one partition's log; the writer
//! gets a storage error, other partitions keep serving, and the broker reopens (recovers) the
//! partition in the background so writes resume without a restart.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use strom_broker::{Broker, BrokerConfig, CreateTopic, Error, partition_dir};
use strom_log::fault::{self, FailNth, FaultError, FileKind, FileOp};
use strom_record::{BatchBuilder, DecodeLimits, Record, decode_records};

fn batch(value: &str) -> Vec<u8> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    BatchBuilder::new()
        .build(&[Record::new(
            now,
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
    let broker = Broker::open(BrokerConfig::new(dir.path())).unwrap();
    broker
        .create_topic_blocking(CreateTopic {
            name: "t".into(),
            partitions: Some(2),
            ..CreateTopic::default()
        })
        .unwrap();
    let p0 = broker.partition("t", 0).unwrap();
    let p1 = broker.partition("t", 1).unwrap();
    p0.append_blocking(&mut batch("a")).unwrap();
    p1.append_blocking(&mut batch("x")).unwrap();

    // The next fdatasync of partition 0's segment fails with EIO.
    let plan = Arc::new(FailNth::new(
        &partition_dir(dir.path(), "t", 0),
        FileKind::Segment,
        FileOp::Sync,
        1,
        FaultError::Io,
    ));
    let guard = fault::install(plan.clone());
    let err = p0.append_blocking(&mut batch("lost")).unwrap_err();
    assert!(
        matches!(err, Error::Log(strom_log::Error::Io { .. })),
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
            Err(Error::Log(strom_log::Error::Poisoned)) => {
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
    let acked: Vec<&str> = got
        .iter()
        .map(String::as_str)
        .filter(|v| *v != "lost")
        .collect();
    assert_eq!(acked, ["a", "b"]);
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
    let broker = Broker::open(BrokerConfig::new(dir.path())).unwrap();
    broker
        .create_topic_blocking(CreateTopic {
            name: "t".into(),
            partitions: Some(2),
            ..CreateTopic::default()
        })
        .unwrap();
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
                Error::Log(strom_log::Error::Io { .. } | strom_log::Error::Poisoned)
            ),
            "{err}"
        );
        p1.append_blocking(&mut batch(&format!("x{round}")))
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while p0.recoveries() < round || p0.is_recovering() {
            assert!(Instant::now() < deadline, "round {round} never recovered");
            std::thread::sleep(Duration::from_millis(10));
        }
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
        let Error::Log(strom_log::Error::Io { source, .. }) = &err else {
            panic!("{err}");
        };
        assert_eq!(source.raw_os_error(), Some(28));
    }
    assert!(!p0.is_recovering());
    full.heal();
    drop(guard);
    p0.append_blocking(&mut batch("c")).unwrap();
    assert_eq!(p0.recoveries(), recoveries);

    let got = values(&broker, 0);
    let acked: Vec<&str> = got
        .iter()
        .map(String::as_str)
        .filter(|v| *v != "lost")
        .collect();
    assert_eq!(acked, ["a", "b", "c"]);
    assert!(!got.iter().any(|v| v == "refused"));
    assert_eq!(values(&broker, 1), ["x1", "x2", "x3"]);
}
