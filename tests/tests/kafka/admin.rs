//! Admin operations through librdkafka's AdminClient.

use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::Producer;
use strom_tests::TestBroker;

use super::client::{self, WAIT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_and_delete_topics() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let bootstrap = broker.bootstrap();
    let admin = client::admin(&bootstrap);
    let opts = AdminOptions::new().operation_timeout(Some(WAIT));

    let results = admin
        .create_topics(
            &[
                NewTopic::new("a", 3, TopicReplication::Fixed(1))
                    .set("retention.ms", "3600000")
                    .set("cleanup.policy", "delete"),
                NewTopic::new("b", 1, TopicReplication::Fixed(1)),
                NewTopic::new("bad name", 1, TopicReplication::Fixed(1)),
                NewTopic::new("c", 1, TopicReplication::Fixed(3)),
                NewTopic::new("d", 1, TopicReplication::Fixed(1)).set("no.such.config", "1"),
            ],
            &opts,
        )
        .await
        .unwrap();
    assert_eq!(results[0], Ok("a".to_owned()));
    assert_eq!(results[1], Ok("b".to_owned()));
    assert_eq!(
        results[2],
        Err(("bad name".to_owned(), RDKafkaErrorCode::InvalidTopic))
    );
    assert_eq!(
        results[3],
        Err(("c".to_owned(), RDKafkaErrorCode::InvalidReplicationFactor))
    );
    assert_eq!(
        results[4],
        Err(("d".to_owned(), RDKafkaErrorCode::InvalidConfig))
    );
    let again = admin
        .create_topics(&[NewTopic::new("a", 1, TopicReplication::Fixed(1))], &opts)
        .await
        .unwrap();
    assert_eq!(
        again[0],
        Err(("a".to_owned(), RDKafkaErrorCode::TopicAlreadyExists))
    );
    let a = broker.broker().topic("a").unwrap();
    assert_eq!(a.partition_count(), 3);
    assert_eq!(a.overrides().get("retention.ms").unwrap(), "3600000");

    // The client sees the topics in metadata, with our advertised address.
    let producer = client::producer(&bootstrap);
    let metadata = producer
        .client()
        .fetch_metadata(None, WAIT)
        .expect("metadata");
    let mut names: Vec<_> = metadata
        .topics()
        .iter()
        .map(|t| t.name().to_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(metadata.brokers()[0].port() as u16, broker.addr().port());

    let deleted = admin.delete_topics(&["a", "missing"], &opts).await.unwrap();
    assert_eq!(deleted[0], Ok("a".to_owned()));
    assert_eq!(
        deleted[1],
        Err((
            "missing".to_owned(),
            RDKafkaErrorCode::UnknownTopicOrPartition
        ))
    );
    assert!(broker.broker().topic("a").is_err());
    assert!(!dir.path().join("a-0").exists());
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configs_partitions_and_delete_records() {
    use rdkafka::Offset;
    use rdkafka::TopicPartitionList;
    use rdkafka::admin::{AlterConfig, ConfigSource, NewPartitions, ResourceSpecifier};
    use rdkafka::consumer::Consumer;
    use rdkafka::message::Message;
    use rdkafka::producer::FutureRecord;

    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let bootstrap = broker.bootstrap();
    let admin = client::admin(&bootstrap);
    let opts = AdminOptions::new().operation_timeout(Some(WAIT));
    admin
        .create_topics(
            &[NewTopic::new("cfg", 1, TopicReplication::Fixed(1)).set("retention.ms", "3600000")],
            &opts,
        )
        .await
        .unwrap()[0]
        .clone()
        .unwrap();

    let described = admin
        .describe_configs(
            &[
                ResourceSpecifier::Topic("cfg"),
                ResourceSpecifier::Broker(0),
            ],
            &opts,
        )
        .await
        .unwrap();
    let topic = described[0].as_ref().expect("topic configs");
    let retention = topic.get("retention.ms").unwrap();
    assert_eq!(retention.value.as_deref(), Some("3600000"));
    assert_eq!(retention.source, ConfigSource::DynamicTopic);
    let segment = topic.get("segment.bytes").unwrap();
    assert_eq!(segment.value.as_deref(), Some("1073741824"));
    assert_eq!(segment.source, ConfigSource::Default);
    let broker_cfg = described[1].as_ref().expect("broker configs");
    assert_eq!(
        broker_cfg.get("num.partitions").unwrap().value.as_deref(),
        Some("1")
    );

    let altered = admin
        .alter_configs(
            &[AlterConfig::new(ResourceSpecifier::Topic("cfg")).set("retention.ms", "1000")],
            &opts,
        )
        .await
        .unwrap();
    assert!(altered[0].is_ok(), "{altered:?}");
    let overrides = broker.broker().topic("cfg").unwrap().overrides().clone();
    assert_eq!(
        overrides.get("retention.ms").map(String::as_str),
        Some("1000")
    );
    let bad = admin
        .alter_configs(
            &[AlterConfig::new(ResourceSpecifier::Topic("cfg")).set("retention.ms", "never")],
            &opts,
        )
        .await
        .unwrap();
    // rdkafka 0.39 reports every AlterConfigs resource as Ok (it never reads the per-resource
    // error), so check the broker's side: the invalid value was refused.
    assert_eq!(bad.len(), 1);
    let overrides = broker.broker().topic("cfg").unwrap().overrides().clone();
    assert_eq!(
        overrides.get("retention.ms").map(String::as_str),
        Some("1000")
    );

    let grown = admin
        .create_partitions(&[NewPartitions::new("cfg", 3)], &opts)
        .await
        .unwrap();
    assert_eq!(grown[0], Ok("cfg".to_owned()));
    assert_eq!(broker.broker().topic("cfg").unwrap().partition_count(), 3);
    let shrunk = admin
        .create_partitions(&[NewPartitions::new("cfg", 2)], &opts)
        .await
        .unwrap();
    assert_eq!(
        shrunk[0],
        Err(("cfg".to_owned(), RDKafkaErrorCode::InvalidPartitions))
    );

    let producer = client::producer(&bootstrap);
    for i in 0..10 {
        producer
            .send(
                FutureRecord::to("cfg")
                    .partition(0)
                    .key("k")
                    .payload(&format!("{i}")),
                WAIT,
            )
            .await
            .unwrap();
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("cfg", 0, Offset::Offset(5))
        .unwrap();
    let deleted = admin.delete_records(&tpl, &opts).await.unwrap();
    let element = deleted.find_partition("cfg", 0).unwrap();
    assert_eq!(element.offset(), Offset::Offset(5));
    let consumer = client::consumer(&bootstrap);
    let (low, high) = consumer.fetch_watermarks("cfg", 0, WAIT).unwrap();
    assert_eq!((low, high), (5, 10));
    let messages = client::consume(&bootstrap, "cfg", &[0], Offset::Beginning, 5).await;
    assert_eq!(messages[0].offset(), 5);
    broker.stop().await;
}
