//! Produce and consume with librdkafka: keys, headers, timestamps, ordering, restart.

use std::time::Duration;

use rdkafka::Offset;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, Timestamp};
use rdkafka::producer::FutureRecord;
use strom_tests::TestBroker;

use super::client::{self, WAIT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_headers_and_timestamps_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let bootstrap = broker.bootstrap();
    client::create_topic(&bootstrap, "roundtrip", 2).await;

    let producer = client::producer(&bootstrap);
    for i in 0..20i64 {
        let key = format!("key-{i}");
        let value = format!("value-{i}");
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "h1",
                value: Some("v1"),
            })
            .insert(Header {
                key: "n",
                value: Some(&i.to_string()),
            });
        let delivery = producer
            .send(
                FutureRecord::to("roundtrip")
                    .partition((i % 2) as i32)
                    .key(&key)
                    .payload(&value)
                    .headers(headers)
                    .timestamp(1_700_000_000_000 + i),
                WAIT,
            )
            .await
            .expect("delivered");
        assert_eq!(delivery.partition, (i % 2) as i32);
        assert_eq!(delivery.offset, i / 2);
    }

    let messages = client::consume(&bootstrap, "roundtrip", &[0, 1], Offset::Beginning, 20).await;
    let mut seen = 0;
    for m in &messages {
        let i: i64 = client::payload(m)
            .trim_start_matches("value-")
            .parse()
            .unwrap();
        assert_eq!(m.key(), Some(format!("key-{i}").as_bytes()));
        assert_eq!(m.partition(), (i % 2) as i32);
        assert_eq!(m.offset(), i / 2);
        assert_eq!(m.timestamp(), Timestamp::CreateTime(1_700_000_000_000 + i));
        let headers = m.headers().expect("headers");
        assert_eq!(headers.count(), 2);
        assert_eq!(headers.get(0).key, "h1");
        assert_eq!(headers.get(0).value, Some(&b"v1"[..]));
        assert_eq!(headers.get(1).value, Some(i.to_string().as_bytes()));
        seen += 1;
    }
    assert_eq!(seen, 20);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_records_keep_their_order() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let bootstrap = broker.bootstrap();
    // Auto-created on first produce (num.partitions = 1).
    let producer = client::producer(&bootstrap);
    let mut deliveries = Vec::with_capacity(10_000);
    for i in 0..10_000 {
        let payload = format!("{i}");
        let future = producer.send_result(FutureRecord::<(), _>::to("ordered").payload(&payload));
        deliveries.push(future.map_err(|(e, _)| e).expect("queued"));
    }
    for (i, d) in deliveries.into_iter().enumerate() {
        let delivery = d.await.expect("not cancelled").expect("delivered");
        assert_eq!(delivery.offset, i as i64);
    }
    let messages = client::consume(&bootstrap, "ordered", &[0], Offset::Beginning, 10_000).await;
    for (i, m) in messages.iter().enumerate() {
        assert_eq!(m.offset(), i as i64);
        assert_eq!(client::payload(m), i.to_string());
    }
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let bootstrap = broker.bootstrap();
    client::create_topic(&bootstrap, "durable", 3).await;
    let topic_id = broker.broker().topic("durable").unwrap().id();
    let producer = client::producer(&bootstrap);
    for i in 0..300 {
        let payload = format!("m{i}");
        producer
            .send(
                FutureRecord::to("durable")
                    .partition(i % 3)
                    .key("k")
                    .payload(&payload),
                WAIT,
            )
            .await
            .expect("delivered");
    }
    drop(producer);
    broker.stop().await;

    let broker = TestBroker::start(dir.path()).await;
    let bootstrap = broker.bootstrap();
    assert_eq!(broker.broker().topic("durable").unwrap().id(), topic_id);
    let messages = client::consume(&bootstrap, "durable", &[0, 1, 2], Offset::Beginning, 300).await;
    let mut per_partition = [0i64; 3];
    for m in &messages {
        let p = m.partition() as usize;
        assert_eq!(m.offset(), per_partition[p]);
        per_partition[p] += 1;
    }
    assert_eq!(per_partition, [100, 100, 100]);

    // New writes continue after the recovered offsets.
    let producer = client::producer(&bootstrap);
    let d = producer
        .send(
            FutureRecord::to("durable")
                .partition(1)
                .key("k")
                .payload("after"),
            WAIT,
        )
        .await
        .expect("delivered");
    assert_eq!(d.offset, 100);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_waits_for_new_records() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let bootstrap = broker.bootstrap();
    client::create_topic(&bootstrap, "live", 1).await;
    let reader = {
        let bootstrap = bootstrap.clone();
        tokio::spawn(async move { client::consume(&bootstrap, "live", &[0], Offset::End, 1).await })
    };
    // Give the consumer time to fetch at the end of the log and park in a long poll.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let producer = client::producer(&bootstrap);
    producer
        .send(FutureRecord::to("live").key("k").payload("hello"), WAIT)
        .await
        .expect("delivered");
    let messages = reader.await.unwrap();
    assert_eq!(client::payload(&messages[0]), "hello");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_compression_codec_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let bootstrap = broker.bootstrap();
    // The rdkafka crate's default build has no libzstd; the kcat test below covers zstd.
    for codec in ["gzip", "snappy", "lz4"] {
        let topic = format!("codec-{codec}");
        let producer: rdkafka::producer::FutureProducer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("compression.codec", codec)
            .set("linger.ms", "20")
            .create()
            .unwrap();
        let mut pending = Vec::new();
        for i in 0..200 {
            let payload = format!("{codec} record {i} {}", "x".repeat(i % 50));
            let record = FutureRecord::<(), _>::to(&topic).payload(&payload);
            pending.push(producer.send_result(record).map_err(|(e, _)| e).unwrap());
        }
        for (i, d) in pending.into_iter().enumerate() {
            assert_eq!(d.await.unwrap().unwrap().offset, i as i64, "{codec}");
        }
        let messages = client::consume(&bootstrap, &topic, &[0], Offset::Beginning, 200).await;
        for (i, m) in messages.iter().enumerate() {
            assert!(client::payload(m).starts_with(&format!("{codec} record {i} ")));
        }
    }
    broker.stop().await;
}

/// Debian's kcat links librdkafka 2.0.2, an older protocol client than the rdkafka crate's
/// 2.12. Skipped (with a note) when kcat is not installed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcat_with_old_librdkafka_produces_and_consumes() {
    use std::process::Stdio;
    use tokio::io::AsyncWriteExt;
    use tokio::process::Command;

    // `cargo test` puts the build's own librdkafka (rdkafka-sys, 2.12) on LD_LIBRARY_PATH;
    // without removing it kcat would silently load that one instead of the system's 2.0.
    let kcat = || {
        let mut c = Command::new("kcat");
        c.env_remove("LD_LIBRARY_PATH");
        c
    };
    let Ok(version) = kcat().arg("-V").output().await else {
        eprintln!("kcat not installed (apt-get install kcat); skipping");
        return;
    };
    let version = String::from_utf8_lossy(&version.stdout).to_string();
    assert!(version.contains("librdkafka 2.0"), "{version}");
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let bootstrap = broker.bootstrap();
    for codec in ["zstd", "lz4", "snappy"] {
        let mut producer = kcat()
            .args(["-b", &bootstrap, "-P", "-t", codec, "-K:", "-z", codec])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = producer.stdin.take().unwrap();
        for i in 0..100 {
            stdin
                .write_all(format!("k{i}:v{i}\n").as_bytes())
                .await
                .unwrap();
        }
        drop(stdin);
        let status = tokio::time::timeout(WAIT, producer.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(status.success());
        let out = tokio::time::timeout(
            WAIT,
            kcat()
                .args([
                    "-b",
                    &bootstrap,
                    "-C",
                    "-t",
                    codec,
                    "-o",
                    "beginning",
                    "-e",
                    "-q",
                    "-f",
                    "%k=%s@%o\n",
                ])
                .output(),
        )
        .await
        .unwrap()
        .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        let expected: Vec<String> = (0..100).map(|i| format!("k{i}=v{i}@{i}")).collect();
        assert_eq!(lines, expected);
    }
    // And rdkafka 2.12 reads what librdkafka 2.0 wrote.
    // (rdkafka's default build has no zstd, so read the lz4 topic.)
    let messages = client::consume(&bootstrap, "lz4", &[0], Offset::Offset(50), 50).await;
    assert_eq!(client::payload(&messages[0]), "v50");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_zero_and_acks_one_are_stored() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let bootstrap = broker.bootstrap();
    client::create_topic(&bootstrap, "acks", 1).await;
    for acks in ["0", "1"] {
        let producer: rdkafka::producer::FutureProducer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("acks", acks)
            .create()
            .unwrap();
        for i in 0..50 {
            let payload = format!("acks{acks}-{i}");
            producer
                .send(FutureRecord::<(), _>::to("acks").payload(&payload), WAIT)
                .await
                .expect("delivered");
        }
    }
    let messages = client::consume(&bootstrap, "acks", &[0], Offset::Beginning, 100).await;
    assert_eq!(client::payload(&messages[0]), "acks0-0");
    assert_eq!(client::payload(&messages[50]), "acks1-0");
    assert_eq!(messages[99].offset(), 99);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_producer_gets_a_producer_id() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let bootstrap = broker.bootstrap();
    let producer: rdkafka::producer::FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    for i in 0..100 {
        let payload = format!("idem-{i}");
        let d = producer
            .send(FutureRecord::<(), _>::to("idem").payload(&payload), WAIT)
            .await
            .expect("delivered");
        assert_eq!(d.offset, i);
    }
    let messages = client::consume(&bootstrap, "idem", &[0], Offset::Beginning, 100).await;
    assert_eq!(client::payload(&messages[99]), "idem-99");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_producers_get_dense_unique_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let bootstrap = broker.bootstrap();
    client::create_topic(&bootstrap, "busy", 4).await;
    let mut tasks = Vec::new();
    for producer_id in 0..6 {
        let bootstrap = bootstrap.clone();
        tasks.push(tokio::spawn(async move {
            let producer = client::producer(&bootstrap);
            let mut pending = Vec::new();
            for i in 0..1000 {
                let payload = format!("{producer_id}-{i}");
                let record = FutureRecord::<(), _>::to("busy")
                    .partition(i % 4)
                    .payload(&payload);
                pending.push(producer.send_result(record).map_err(|(e, _)| e).unwrap());
            }
            let mut offsets = Vec::new();
            for d in pending {
                let d = d.await.unwrap().expect("delivered");
                offsets.push((d.partition, d.offset));
            }
            offsets
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_unstable();
    all.dedup();
    assert_eq!(
        all.len(),
        6000,
        "every acknowledged (partition, offset) is unique"
    );
    for p in 0..4 {
        let offsets: Vec<i64> = all
            .iter()
            .filter(|(q, _)| *q == p)
            .map(|(_, o)| *o)
            .collect();
        assert_eq!(
            offsets,
            (0..1500).collect::<Vec<i64>>(),
            "partition {p} is dense"
        );
    }
    let messages =
        client::consume(&bootstrap, "busy", &[0, 1, 2, 3], Offset::Beginning, 6000).await;
    let mut payloads: Vec<String> = messages
        .iter()
        .map(|m| client::payload(m).to_owned())
        .collect();
    payloads.sort();
    payloads.dedup();
    assert_eq!(payloads.len(), 6000);
    broker.stop().await;
}

/// One producer, many requests in flight over one connection, six partitions: the broker writes
/// each Produce in order and answers it once durable while later ones are already being
/// written (deferred responses), so every partition must still hold exactly what was sent, in
/// send order, at the acknowledged offsets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_produce_over_six_partitions_keeps_order_and_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let bootstrap = broker.bootstrap();
    client::create_topic(&bootstrap, "pipelined", 6).await;
    let producer = client::producer(&bootstrap);
    let mut deliveries = Vec::with_capacity(6000);
    for i in 0..6000i32 {
        let payload = format!("{}-{}", i % 6, i / 6);
        let record = FutureRecord::<(), _>::to("pipelined")
            .partition(i % 6)
            .payload(&payload);
        deliveries.push(producer.send_result(record).map_err(|(e, _)| e).unwrap());
    }
    for (i, d) in deliveries.into_iter().enumerate() {
        let d = d.await.expect("not cancelled").expect("delivered");
        assert_eq!(
            (d.partition, d.offset),
            (i as i32 % 6, i as i64 / 6),
            "record {i} acknowledged at its place in send order"
        );
    }
    for p in 0..6 {
        let messages =
            client::consume(&bootstrap, "pipelined", &[p], Offset::Beginning, 1000).await;
        for (n, m) in messages.iter().enumerate() {
            assert_eq!(m.offset(), n as i64);
            assert_eq!(client::payload(m), format!("{p}-{n}"));
        }
    }
    broker.stop().await;
}
