//! A partition sealed as a closed Kinesis shard: appends racing the seal end at the offset the
//! seal returns, transaction markers still pass, and the seal survives a restart (issue 15).

use std::sync::{Arc, Barrier};
use std::thread;

use bytes::Bytes;
use strom_broker::{Broker, BrokerConfig, CreateTopic, Error, stream::StreamMeta};
use strom_record::{BatchBuilder, ControlType, Record, marker_batch};

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn data(producer: Option<(i64, i16)>) -> Vec<u8> {
    let record = Record::new(
        now_ms(),
        Some(Bytes::from_static(b"k")),
        Some(Bytes::from_static(b"v")),
    );
    let mut builder = BatchBuilder::new();
    if let Some((id, epoch)) = producer {
        builder.producer_id = id;
        builder.producer_epoch = epoch;
        builder.base_sequence = 0;
        builder.transactional = true;
    }
    builder.build(&[record]).unwrap()
}

#[test]
fn appends_racing_a_seal_end_at_its_offset_and_the_seal_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = BrokerConfig::new(dir.path());
    let broker = Arc::new(Broker::open(config.clone()).unwrap());
    let summary = broker
        .create_stream_blocking(
            CreateTopic {
                name: "s".into(),
                partitions: Some(1),
                ..CreateTopic::default()
            },
            StreamMeta::derived(1, None),
        )
        .unwrap();
    let partition = broker.partition("s", 0).unwrap();
    // A transaction open across the seal.
    let producer = (broker.allocate_producer_id_blocking().unwrap(), 0);
    partition
        .append_blocking(&mut data(Some(producer)))
        .unwrap();

    let start = Arc::new(Barrier::new(5));
    let writers: Vec<_> = (0..4)
        .map(|_| {
            let partition = Arc::clone(&partition);
            let start = Arc::clone(&start);
            thread::spawn(move || {
                start.wait();
                let mut acked = Vec::new();
                loop {
                    match partition.append_blocking(&mut data(None)) {
                        Ok(info) => acked.push(info.last_offset),
                        Err(Error::PartitionSealed { .. }) => return acked,
                        Err(e) => panic!("append racing the seal: {e}"),
                    }
                }
            })
        })
        .collect();
    start.wait();
    thread::sleep(std::time::Duration::from_millis(20));
    let end = broker
        .update_stream_meta_blocking(summary.id, |meta, _| {
            let end = broker.partition("s", 0)?.seal_blocking()?;
            meta.shards[0].closed_at_offset = Some(end);
            Ok(end)
        })
        .unwrap();
    let acked: Vec<i64> = writers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    assert!(
        acked.iter().all(|&o| o < end),
        "an append landed past the seal"
    );
    assert_eq!(partition.log_end_offset(), end);
    assert!(partition.is_sealed());

    // The open transaction can still end; data cannot follow.
    let mut marker =
        marker_batch(producer.0, producer.1, ControlType::Commit, 0, now_ms()).unwrap();
    partition.append_blocking(&mut marker).unwrap();
    assert_eq!(partition.log_end_offset(), end + 1);
    assert!(matches!(
        partition.append_deferred_blocking(&mut data(None)),
        Err(Error::PartitionSealed { partition: 0, .. })
    ));

    drop(partition);
    broker.shutdown_blocking().unwrap();
    drop(broker);
    let broker = Broker::open(config).unwrap();
    let partition = broker.partition("s", 0).unwrap();
    assert!(
        partition.is_sealed(),
        "the seal is re-established from the stream's metadata"
    );
    assert!(matches!(
        partition.append_blocking(&mut data(None)),
        Err(Error::PartitionSealed { .. })
    ));
    assert_eq!(partition.log_end_offset(), end + 1);
}
