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
