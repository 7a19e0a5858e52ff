//! Idempotent producers (KIP-98 without transactions): librdkafka with `enable.idempotence`
//! across a broker restart writes every record exactly once and in order; raw produce requests
//! get Kafka's exact answers for a replayed batch (no error, the original base offset), a
//! sequence gap (45) and an old epoch (47).

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, ProduceResponse};
use rdkafka::Offset;
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use strom_broker::BrokerConfig;
use strom_kafka::KafkaConfig;
use strom_record::{BatchBuilder, Record};
use strom_tests::TestBroker;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::client;
use super::raw::{call, produce_request};

fn batch(pid: i64, epoch: i16, seq: i32, n: usize) -> Vec<u8> {
    let mut b = BatchBuilder::new();
    b.producer_id = pid;
    b.producer_epoch = epoch;
    b.base_sequence = seq;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let records: Vec<Record> = (0..n)
        .map(|i| Record::new(now, None, Some(Bytes::from(format!("{seq}-{i}")))))
        .collect();
    b.build(&records).unwrap()
}

/// `(error_code, base_offset)` of producing `records` to partition 0 of `topic`.
async fn produce(s: &mut TcpStream, topic: &str, records: Vec<u8>) -> (i16, i64) {
    let r: ProduceResponse = call(s, ApiKey::Produce, 9, &produce_request(topic, 0, records)).await;
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_gap_and_old_epoch_get_kafka_error_codes() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    client::create_topic(&broker.bootstrap(), "idem-raw", 1).await;
    let mut s = TcpStream::connect(broker.addr()).await.unwrap();
    let pid = 4242;
    assert_eq!(
        produce(&mut s, "idem-raw", batch(pid, 1, 0, 3)).await,
        (0, 0)
    );
    assert_eq!(
        produce(&mut s, "idem-raw", batch(pid, 1, 3, 2)).await,
        (0, 3)
    );
    // A replay of an acknowledged batch: no error, its original base offset, not written again.
    assert_eq!(
        produce(&mut s, "idem-raw", batch(pid, 1, 0, 3)).await,
        (0, 0)
    );
    assert_eq!(
        produce(&mut s, "idem-raw", batch(pid, 1, 3, 2)).await,
        (0, 3)
    );
    // A gap: OUT_OF_ORDER_SEQUENCE_NUMBER.
    assert_eq!(produce(&mut s, "idem-raw", batch(pid, 1, 6, 1)).await.0, 45);
    // An older epoch: INVALID_PRODUCER_EPOCH.
    assert_eq!(produce(&mut s, "idem-raw", batch(pid, 0, 5, 1)).await.0, 47);
    // In sequence again.
    assert_eq!(
        produce(&mut s, "idem-raw", batch(pid, 1, 5, 1)).await,
        (0, 5)
    );
    let messages =
        client::consume(&broker.bootstrap(), "idem-raw", &[0], Offset::Beginning, 6).await;
    let offsets: Vec<i64> = messages.iter().map(|m| m.offset()).collect();
    assert_eq!(offsets, (0..6).collect::<Vec<_>>());

    // The state survives a restart: the replay is still recognised, the gap still refused.
    let broker = broker.restart(BrokerConfig::new(dir.path())).await;
    let mut s = TcpStream::connect(broker.addr()).await.unwrap();
    assert_eq!(
        produce(&mut s, "idem-raw", batch(pid, 1, 5, 1)).await,
        (0, 5)
    );
    assert_eq!(produce(&mut s, "idem-raw", batch(pid, 1, 7, 1)).await.0, 45);
    assert_eq!(produce(&mut s, "idem-raw", batch(pid, 0, 6, 1)).await.0, 47);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_producer_across_a_broker_restart_writes_each_record_once_in_order() {
    const N: usize = 3000;
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let bootstrap = broker.bootstrap();
    client::create_topic(&bootstrap, "exactly", 1).await;
    let producer: rdkafka::producer::FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("broker.address.family", "v4")
        .set("enable.idempotence", "true")
        .set("max.in.flight.requests.per.connection", "5")
        .set("linger.ms", "2")
        .set("batch.num.messages", "20")
        .set("retry.backoff.ms", "50")
        .set("message.timeout.ms", "60000")
        .set("log_level", "3")
        .create()
        .unwrap();
    let sender = tokio::spawn(async move {
        let mut pending = Vec::with_capacity(N);
        for i in 0..N {
            let payload = format!("exactly-{i}");
            let record = FutureRecord::<(), _>::to("exactly").payload(&payload);
            pending.push(producer.send_result(record).map_err(|(e, _)| e).unwrap());
            if i % 50 == 49 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        for d in pending {
            d.await.unwrap().expect("delivered");
        }
    });
    // Drop every connection mid-stream: in-flight requests are lost or answered, and
    // librdkafka resends them with the same producer id and sequence numbers.
    tokio::time::sleep(Duration::from_millis(250)).await;
    let broker = broker.restart(BrokerConfig::new(dir.path())).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let broker = broker.restart(BrokerConfig::new(dir.path())).await;
    tokio::time::timeout(Duration::from_secs(90), sender)
        .await
        .expect("all delivered in time")
        .unwrap();

    let end = broker
        .broker()
        .partition("exactly", 0)
        .unwrap()
        .high_watermark();
    let messages =
        client::consume(&broker.bootstrap(), "exactly", &[0], Offset::Beginning, N).await;
    for (i, m) in messages.iter().enumerate() {
        assert_eq!(m.offset(), i as i64, "dense offsets");
        assert_eq!(
            client::payload(m),
            format!("exactly-{i}"),
            "each record once, in order"
        );
    }
    assert_eq!(end, N as i64, "nothing after the last record");
    broker.stop().await;
}

/// Forwards connections to `upstream`. Each bump of `cut` stops the answers of every open
/// connection at once while its requests still reach the broker for 100 ms, then closes it:
/// batches get appended whose acknowledgement the client never sees.
async fn lossy_proxy(
    listener: TcpListener,
    upstream: std::net::SocketAddr,
    cut: watch::Receiver<u64>,
) {
    while let Ok((client, _)) = listener.accept().await {
        let Ok(server) = TcpStream::connect(upstream).await else {
            continue;
        };
        let mut cut = cut.clone();
        tokio::spawn(async move {
            let generation = *cut.borrow();
            let (mut cr, mut cw) = client.into_split();
            let (mut sr, mut sw) = server.into_split();
            let requests = tokio::spawn(async move { tokio::io::copy(&mut cr, &mut sw).await });
            tokio::select! {
                _ = tokio::io::copy(&mut sr, &mut cw) => {}
                _ = cut.wait_for(|g| *g != generation) => {}
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            requests.abort();
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_producer_with_lost_acknowledgements_writes_each_record_once_in_order() {
    const N: usize = 3000;
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_addr = listener.local_addr().unwrap();
    let kafka = KafkaConfig {
        advertised_host: Some("127.0.0.1".into()),
        advertised_port: Some(proxy_addr.port()),
        ..KafkaConfig::default()
    };
    let broker = TestBroker::start_with(BrokerConfig::new(dir.path()), kafka).await;
    let (cut, cuts) = watch::channel(0u64);
    tokio::spawn(lossy_proxy(listener, broker.addr(), cuts));
    let bootstrap = proxy_addr.to_string();
    client::create_topic(&bootstrap, "lossy", 1).await;
    let producer: rdkafka::producer::FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("broker.address.family", "v4")
        .set("enable.idempotence", "true")
        .set("max.in.flight.requests.per.connection", "5")
        .set("linger.ms", "2")
        .set("batch.num.messages", "20")
        .set("retry.backoff.ms", "50")
        .set("socket.timeout.ms", "2000")
        .set("message.timeout.ms", "60000")
        .set("log_level", "3")
        .create()
        .unwrap();
    let sender = tokio::spawn(async move {
        let mut pending = Vec::with_capacity(N);
        for i in 0..N {
            let payload = format!("lossy-{i}");
            let record = FutureRecord::<(), _>::to("lossy").payload(&payload);
            pending.push(producer.send_result(record).map_err(|(e, _)| e).unwrap());
            if i % 20 == 19 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        for d in pending {
            d.await.unwrap().expect("delivered");
        }
    });
    // Cut while records flow (the producer connects lazily, so not too early).
    tokio::time::sleep(Duration::from_millis(500)).await;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        cut.send_modify(|g| *g += 1);
    }
    tokio::time::timeout(Duration::from_secs(90), sender)
        .await
        .expect("all delivered in time")
        .unwrap();
    let end = broker
        .broker()
        .partition("lossy", 0)
        .unwrap()
        .high_watermark();
    let messages = client::consume(&broker.bootstrap(), "lossy", &[0], Offset::Beginning, N).await;
    for (i, m) in messages.iter().enumerate() {
        assert_eq!(m.offset(), i as i64, "dense offsets");
        assert_eq!(
            client::payload(m),
            format!("lossy-{i}"),
            "each record once, in order"
        );
    }
    assert_eq!(end, N as i64, "nothing after the last record");
    broker.stop().await;
}
