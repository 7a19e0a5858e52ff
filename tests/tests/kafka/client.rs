//! Helpers around the rdkafka client.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::Offset;
use rdkafka::TopicPartitionList;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::FutureProducer;

/// Per-test timeout for waiting on the client.
pub(crate) const WAIT: Duration = Duration::from_secs(30);

fn base(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("log_level", "4");
    c
}

/// A producer with `acks=all`.
pub(crate) fn producer(bootstrap: &str) -> FutureProducer {
    base(bootstrap)
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000")
        .create()
        .expect("producer")
}

/// A consumer with no group coordination: explicit assignment, no commits.
pub(crate) fn consumer(bootstrap: &str) -> StreamConsumer {
    base(bootstrap)
        .set("group.id", "strom-tests-unused")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("consumer")
}

/// A consumer like [`consumer`] reading with `isolation.level` = `isolation`
/// (`read_committed` or `read_uncommitted`).
pub(crate) fn isolated_consumer(bootstrap: &str, isolation: &str) -> StreamConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("group.id", "strom-tests-unused")
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .set("fetch.wait.max.ms", "100")
        .set("log_level", "3")
        .create()
        .expect("consumer")
}

/// An admin client.
pub(crate) fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    base(bootstrap).create().expect("admin client")
}

/// Creates a topic through the admin API and checks the result.
pub(crate) async fn create_topic(bootstrap: &str, name: &str, partitions: i32) {
    let admin = admin(bootstrap);
    let results = admin
        .create_topics(
            &[NewTopic::new(name, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(WAIT)),
        )
        .await
        .expect("create_topics request");
    for r in results {
        r.expect("topic created");
    }
}

/// Assigns `partitions` of `topic` from `offset` and reads exactly `count` messages.
pub(crate) async fn consume(
    bootstrap: &str,
    topic: &str,
    partitions: &[i32],
    offset: Offset,
    count: usize,
) -> Vec<OwnedMessage> {
    let consumer = consumer(bootstrap);
    let mut tpl = TopicPartitionList::new();
    for &p in partitions {
        tpl.add_partition_offset(topic, p, offset)
            .expect("partition offset");
    }
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let msg = tokio::time::timeout(WAIT, consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("timed out after {} of {count} messages", out.len()))
            .expect("consume");
        out.push(msg.detach());
    }
    out
}

/// The payload as UTF-8.
pub(crate) fn payload(m: &OwnedMessage) -> &str {
    std::str::from_utf8(m.payload().unwrap_or_default()).expect("utf-8 payload")
}
