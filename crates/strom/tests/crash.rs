//! `kill -9` the broker while producers write with `acks=all`, restart it on the same data
//! directory, and check that every acknowledged record is there, in order, once.

use std::io::BufRead;
use std::path::Path;
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use strom_kafka::client::Client;
use strom_record::{BatchBuilder, BatchHeader, DecodeLimits, Record, decode_records};
use tokio::sync::Mutex;

mod common;

fn start(data_dir: &Path) -> (Child, String) {
    let (child, mut stdout) = common::spawn_serve(data_dir);
    loop {
        let mut line = String::new();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "broker exited early"
        );
        if let Some(rest) = line.trim().strip_prefix("kafka:") {
            let addr = rest.split_whitespace().next().unwrap().to_owned();
            // Keep draining stdout so the broker never blocks on a full pipe.
            std::thread::spawn(move || for _ in stdout.lines() {});
            return (child, addr);
        }
    }
}

fn batch(partition: i32, first: u64, n: u64) -> Bytes {
    let records: Vec<Record> = (first..first + n)
        .map(|i| Record::new(1, None, Some(Bytes::from(format!("p{partition}-{i}")))))
        .collect();
    Bytes::from(BatchBuilder::new().build(&records).unwrap())
}

async fn read_all(addr: &str, partition: i32) -> Vec<String> {
    let mut client = Client::connect(addr).await.unwrap();
    let mut offset = 0;
    let mut out = Vec::new();
    loop {
        let fetched = client
            .fetch("crash", partition, offset, 0, 1 << 20)
            .await
            .unwrap();
        if fetched.records.is_empty() {
            assert!(offset >= fetched.high_watermark);
            return out;
        }
        let mut rest = fetched.records;
        while !rest.is_empty() {
            let header = BatchHeader::parse(&rest).unwrap();
            let b = rest.split_to(header.total_len());
            for r in decode_records(&b, DecodeLimits::default()).unwrap().records {
                if r.offset >= offset {
                    assert_eq!(r.offset, offset, "offsets are dense");
                    out.push(String::from_utf8(r.value.unwrap().to_vec()).unwrap());
                    offset += 1;
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = start(dir.path());
    let mut admin = Client::connect(&addr).await.unwrap();
    admin
        .create_topic("crash", 2, &Default::default())
        .await
        .unwrap();

    // Two producers per partition would race on order; one per partition keeps the expected
    // sequence simple: record i of partition p is "p{p}-{i}", acknowledged in order.
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new([0u64; 2]));
    let mut producers = Vec::new();
    for partition in 0..2 {
        let (addr, stop, acked) = (addr.clone(), Arc::clone(&stop), Arc::clone(&acked));
        producers.push(tokio::spawn(async move {
            let mut client = Client::connect(&addr).await.unwrap();
            let mut next = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let n = 1 + next % 7;
                match client
                    .produce("crash", partition, -1, batch(partition, next, n))
                    .await
                {
                    Ok(base) => {
                        assert_eq!(base as u64, next);
                        next += n;
                        acked.lock().await[partition as usize] = next;
                    }
                    Err(_) => return, // the broker died
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    for p in producers {
        p.await.unwrap();
    }
    let acked = *acked.lock().await;
    assert!(
        acked.iter().all(|&n| n > 0),
        "nothing was acknowledged: {acked:?}"
    );

    let (mut child, addr) = start(dir.path());
    for partition in 0..2 {
        let values = read_all(&addr, partition).await;
        assert!(
            values.len() as u64 >= acked[partition as usize],
            "partition {partition}: {} records survived, {} were acknowledged",
            values.len(),
            acked[partition as usize]
        );
        for (i, v) in values.iter().enumerate() {
            assert_eq!(v, &format!("p{partition}-{i}"));
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
}
