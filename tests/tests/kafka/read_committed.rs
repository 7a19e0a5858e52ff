//! read_committed with librdkafka: transactional batches and markers written straight through
//! the broker's `Partition`, some committed, some aborted, between plain records. A
//! read_committed consumer sees committed + plain records only and stops at the LSO while a
//! transaction is open; read_uncommitted sees every data record.

use std::time::Duration;

use bytes::Bytes;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use strom_record::{BatchBuilder, ControlType, Record, marker_batch};
use strom_tests::TestBroker;

use super::client;

fn batch(pid: i64, seq: i32, values: &[&str]) -> Vec<u8> {
    let builder = BatchBuilder {
        producer_id: pid,
        producer_epoch: if pid < 0 { -1 } else { 0 },
        base_sequence: if pid < 0 { -1 } else { seq },
        transactional: pid >= 0,
        ..BatchBuilder::new()
    };
    let records: Vec<Record> = values
        .iter()
        .map(|v| Record::new(1_700_000_000_000, None, Some(Bytes::from(v.to_string()))))
        .collect();
    builder.build(&records).unwrap()
}

/// Every data record from the beginning until `want` arrived or 5 s passed.
fn read(bootstrap: &str, isolation: &str, want: usize) -> Vec<String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("group.id", format!("rc-{isolation}-{want}"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("rc", 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while out.len() < want && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            out.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_committed_skips_aborted_and_stops_at_the_lso() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let bootstrap = broker.bootstrap();
    client::create_topic(&bootstrap, "rc", 1).await;
    let p = broker.broker().partition("rc", 0).unwrap();
    p.append(batch(-1, -1, &["plain-0"])).await.unwrap();
    p.append(batch(1, 0, &["c1-a", "c1-b"])).await.unwrap();
    p.append(batch(2, 0, &["a2-a"])).await.unwrap();
    p.append(batch(-1, -1, &["plain-1"])).await.unwrap();
    p.append(marker_batch(2, 0, ControlType::Abort, 0, 1).unwrap())
        .await
        .unwrap();
    p.append(marker_batch(1, 0, ControlType::Commit, 0, 1).unwrap())
        .await
        .unwrap();
    p.append(batch(3, 0, &["open-3"])).await.unwrap();
    p.append(batch(-1, -1, &["plain-2"])).await.unwrap();
    let lso = p.last_stable_offset();
    assert_eq!(lso, 7, "the open transaction of producer 3 starts at 7");
    assert_eq!(p.high_watermark(), 9);

    let b = bootstrap.clone();
    let committed = tokio::task::spawn_blocking(move || read(&b, "read_committed", 5))
        .await
        .unwrap();
    assert_eq!(committed, ["plain-0", "c1-a", "c1-b", "plain-1"]);
    let b = bootstrap.clone();
    let all = tokio::task::spawn_blocking(move || read(&b, "read_uncommitted", 7))
        .await
        .unwrap();
    assert_eq!(
        all,
        [
            "plain-0", "c1-a", "c1-b", "a2-a", "plain-1", "open-3", "plain-2"
        ]
    );

    // The marker moves the LSO: the committed reader continues.
    p.append(marker_batch(3, 0, ControlType::Commit, 0, 1).unwrap())
        .await
        .unwrap();
    assert_eq!(p.last_stable_offset(), p.high_watermark());
    let b = bootstrap.clone();
    let committed = tokio::task::spawn_blocking(move || read(&b, "read_committed", 6))
        .await
        .unwrap();
    assert_eq!(
        committed,
        ["plain-0", "c1-a", "c1-b", "plain-1", "open-3", "plain-2"]
    );
    broker.stop().await;
}
