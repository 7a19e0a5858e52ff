//! Topic and broker configs as Kafka tools see them: every Kafka topic config is accepted and
//! described with its source, type and synonyms; the broker resource; errors Kafka gives.

use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::{ApiKey, DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{AdminOptions, AlterConfig, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::error::RDKafkaErrorCode;
use strom_tests::TestBroker;
use tokio::net::TcpStream;

use super::client::{self, WAIT};
use super::raw::call;

/// Kafka 4.x topic configs (and the 3.x names 4.0 removed), as a Connect or Streams
/// deployment sets them, each at a non-default but valid value.
const KAFKA_TOPIC_CONFIGS: &[(&str, &str)] = &[
    ("cleanup.policy", "compact,delete"),
    ("compression.gzip.level", "5"),
    ("compression.lz4.level", "10"),
    ("compression.type", "zstd"),
    ("compression.zstd.level", "7"),
    ("delete.retention.ms", "1000"),
    ("file.delete.delay.ms", "1000"),
    ("flush.messages", "10"),
    ("flush.ms", "1000"),
    ("follower.replication.throttled.replicas", "*"),
    ("index.interval.bytes", "8192"),
    ("leader.replication.throttled.replicas", "0:0"),
    ("local.retention.bytes", "-2"),
    ("local.retention.ms", "-2"),
    ("max.compaction.lag.ms", "86400000"),
    ("max.message.bytes", "2000000"),
    ("message.downconversion.enable", "false"),
    ("message.format.version", "3.0-IV1"),
    ("message.timestamp.after.max.ms", "86400000"),
    ("message.timestamp.before.max.ms", "86400000"),
    ("message.timestamp.difference.max.ms", "86400000"),
    ("message.timestamp.type", "LogAppendTime"),
    ("min.cleanable.dirty.ratio", "0.1"),
    ("min.compaction.lag.ms", "100"),
    ("min.insync.replicas", "1"),
    ("preallocate", "true"),
    ("remote.storage.enable", "false"),
    ("retention.bytes", "1073741824"),
    ("retention.ms", "86400000"),
    ("segment.bytes", "104857600"),
    ("segment.index.bytes", "1048576"),
    ("segment.jitter.ms", "10"),
    ("segment.ms", "3600000"),
    ("unclean.leader.election.enable", "false"),
];

fn name(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

async fn describe_raw(
    stream: &mut TcpStream,
    resource_type: i8,
    resource: &str,
) -> DescribeConfigsResponse {
    let request = DescribeConfigsRequest::default()
        .with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(resource_type)
                .with_resource_name(name(resource))
                // An empty list means every key, as null does.
                .with_configuration_keys(Some(Vec::new())),
        ])
        .with_include_synonyms(true)
        .with_include_documentation(true);
    call(stream, ApiKey::DescribeConfigs, 4, &request).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kafka_topic_config_is_accepted_and_described() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let admin = client::admin(&broker.bootstrap());
    let opts = AdminOptions::new().operation_timeout(Some(WAIT));

    let mut topic = NewTopic::new("all-configs", 1, TopicReplication::Fixed(1));
    for (k, v) in KAFKA_TOPIC_CONFIGS {
        topic = topic.set(k, v);
    }
    let created = admin.create_topics(&[topic], &opts).await.unwrap();
    assert_eq!(created[0].as_ref().map(String::as_str), Ok("all-configs"));

    // A plain topic: every Kafka config is listed, at Kafka's default, source DEFAULT_CONFIG.
    admin
        .create_topics(
            &[NewTopic::new("plain", 1, TopicReplication::Fixed(1))],
            &opts,
        )
        .await
        .unwrap()[0]
        .clone()
        .unwrap();
    let mut stream = TcpStream::connect(broker.addr()).await.unwrap();
    let plain = describe_raw(&mut stream, 2, "plain").await;
    let configs = &plain.results[0].configs;
    assert_eq!(plain.results[0].error_code, 0);
    for (k, _) in KAFKA_TOPIC_CONFIGS {
        let c = configs
            .iter()
            .find(|c| c.name.as_str() == *k)
            .unwrap_or_else(|| panic!("{k} not described"));
        assert_eq!(c.config_source, 5, "{k} source");
        assert!(c.documentation.is_some(), "{k} has documentation");
        assert!(!c.synonyms.is_empty(), "{k} has synonyms");
        assert_eq!(c.synonyms[0].source, 5);
    }
    let ratio = configs
        .iter()
        .find(|c| c.name.as_str() == "min.cleanable.dirty.ratio")
        .unwrap();
    assert_eq!(ratio.config_type, 6, "DOUBLE");
    assert_eq!(ratio.value.as_deref(), Some("0.5"));
    let retention = configs
        .iter()
        .find(|c| c.name.as_str() == "retention.ms")
        .unwrap();
    assert_eq!(retention.config_type, 5, "LONG");
    assert_eq!(retention.synonyms[0].name.as_str(), "log.retention.ms");
    let flush = configs
        .iter()
        .find(|c| c.name.as_str() == "flush.ms")
        .unwrap();
    assert!(
        flush
            .documentation
            .as_ref()
            .is_some_and(|d| d.contains("without effect")),
        "flush.ms says it has no effect"
    );

    // The topic with every config set: each is DYNAMIC_TOPIC_CONFIG at the value given, and
    // the synonyms list the topic value first, then the default under the broker's name.
    let all = describe_raw(&mut stream, 2, "all-configs").await;
    let configs = &all.results[0].configs;
    for (k, v) in KAFKA_TOPIC_CONFIGS {
        let c = configs.iter().find(|c| c.name.as_str() == *k).unwrap();
        assert_eq!(c.value.as_deref(), Some(*v), "{k}");
        assert_eq!(c.config_source, 1, "{k} source");
        assert_eq!(c.synonyms.len(), 2, "{k} synonyms");
        assert_eq!(c.synonyms[0].source, 1);
        assert_eq!(c.synonyms[1].source, 5);
    }

    // Alter through IncrementalAlterConfigs-style AlterConfigs with a config Kafka has but
    // Strom does not act on: accepted.
    let altered = admin
        .alter_configs(
            &[AlterConfig::new(ResourceSpecifier::Topic("plain"))
                .set("flush.messages", "1")
                .set("delete.retention.ms", "5000")],
            &opts,
        )
        .await
        .unwrap();
    assert!(altered[0].is_ok(), "{altered:?}");

    // librdkafka's AdminClient lists Kafka's broker names on the broker resource. (AlterConfigs
    // on a missing topic is checked over a raw socket in `conformance.rs`: rust-rdkafka reports
    // every AlterConfigs resource as Ok whatever its error code.)
    let described = admin
        .describe_configs(&[ResourceSpecifier::Broker(0)], &opts)
        .await
        .unwrap();
    let broker_cfg = described[0].as_ref().expect("broker configs");
    assert_eq!(
        broker_cfg
            .get("log.retention.ms")
            .and_then(|e| e.value.as_deref()),
        Some("604800000")
    );
    assert_eq!(
        broker_cfg
            .get("fetch.max.bytes")
            .and_then(|e| e.value.as_deref()),
        Some("31457280")
    );

    // Bad values are INVALID_CONFIG, as in Kafka.
    let bad = admin
        .create_topics(
            &[NewTopic::new("bad", 1, TopicReplication::Fixed(1))
                .set("min.cleanable.dirty.ratio", "2")],
            &opts,
        )
        .await
        .unwrap();
    assert_eq!(
        bad[0].as_ref().map_err(|(_, code)| *code),
        Err(RDKafkaErrorCode::InvalidConfig)
    );
    broker.stop().await;
}

async fn incremental(
    stream: &mut TcpStream,
    resource_type: i8,
    resource: &str,
    ops: &[(&str, i8, Option<&str>)],
) -> i16 {
    use kafka_protocol::messages::incremental_alter_configs_request::{
        AlterConfigsResource, AlterableConfig,
    };
    use kafka_protocol::messages::{
        IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
    };
    let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(resource_type)
            .with_resource_name(name(resource))
            .with_configs(
                ops.iter()
                    .map(|(k, op, v)| {
                        AlterableConfig::default()
                            .with_name(name(k))
                            .with_config_operation(*op)
                            .with_value(v.map(name))
                    })
                    .collect(),
            ),
    ]);
    let r: IncrementalAlterConfigsResponse =
        call(stream, ApiKey::IncrementalAlterConfigs, 1, &request).await;
    r.responses[0].error_code
}

/// A legacy AlterConfigs (version `version`) of one config of broker 0; its error code.
async fn alter_broker(stream: &mut TcpStream, version: i16, key: &str, value: &str) -> i16 {
    use kafka_protocol::messages::alter_configs_request::{AlterConfigsResource, AlterableConfig};
    use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};
    let request = AlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(4)
            .with_resource_name(name("0"))
            .with_configs(vec![
                AlterableConfig::default()
                    .with_name(name(key))
                    .with_value(Some(name(value))),
            ]),
    ]);
    let r: AlterConfigsResponse = call(stream, ApiKey::AlterConfigs, version, &request).await;
    r.responses[0].error_code
}

fn find<'a>(
    r: &'a DescribeConfigsResponse,
    key: &str,
) -> &'a kafka_protocol::messages::describe_configs_response::DescribeConfigsResourceResult {
    r.results[0]
        .configs
        .iter()
        .find(|c| c.name.as_str() == key)
        .unwrap_or_else(|| panic!("{key} not described"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_and_group_config_resources() {
    use strom_broker::BrokerConfig;

    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    super::client::create_topic(&broker.bootstrap(), "t", 1).await;
    let mut s = TcpStream::connect(broker.addr()).await.unwrap();

    // The broker resource: static and dynamic names with values and sources.
    let d = describe_raw(&mut s, 4, "0").await;
    assert_eq!(d.results[0].error_code, 0);
    let fetch = find(&d, "fetch.max.bytes");
    assert_eq!(fetch.value.as_deref(), Some("31457280"));
    assert_eq!((fetch.config_source, fetch.read_only), (4, true));
    let retention = find(&d, "log.retention.ms");
    assert_eq!((retention.config_source, retention.read_only), (5, false));
    assert!(find(&d, "num.partitions").read_only);
    for name in [
        "log.segment.bytes",
        "message.max.bytes",
        "auto.create.topics.enable",
        "default.replication.factor",
        "max.connections",
        "max.connections.per.ip",
        "log.cleaner.io.max.bytes.per.second",
        "log.cleaner.min.cleanable.ratio",
        "offsets.retention.minutes",
        "group.consumer.session.timeout.ms",
    ] {
        find(&d, name);
    }

    // A dynamic topic default applies to topics without an override, at once.
    assert_eq!(
        incremental(&mut s, 4, "", &[("log.retention.ms", 0, Some("1000"))]).await,
        0
    );
    let t = describe_raw(&mut s, 2, "t").await;
    let r = find(&t, "retention.ms");
    assert_eq!((r.value.as_deref(), r.config_source), (Some("1000"), 3));
    assert_eq!(
        broker.broker().topic("t").unwrap().settings().retention_ms,
        Some(1000)
    );

    // Static configs cannot change at runtime: INVALID_REQUEST, as Kafka answers.
    assert_eq!(alter_broker(&mut s, 1, "num.partitions", "3").await, 42);
    assert_eq!(
        incremental(&mut s, 4, "0", &[("log.retention.ms", 0, Some("soon"))]).await,
        42
    );

    // What librdkafka's 0081 changes on the broker resource: names Kafka makes dynamic that
    // Strom accepts without effect, and a list APPEND/SUBTRACT on a topic-config synonym.
    assert_eq!(
        incremental(
            &mut s,
            4,
            "0",
            &[
                ("background.threads", 0, Some("9")),
                ("log.cleanup.policy", 2, Some("compact")),
            ]
        )
        .await,
        0
    );
    let d = describe_raw(&mut s, 4, "0").await;
    assert_eq!(
        find(&d, "log.cleanup.policy").value.as_deref(),
        Some("delete,compact")
    );
    assert_eq!(
        incremental(
            &mut s,
            4,
            "0",
            &[
                ("background.threads", 1, Some("")),
                ("log.cleanup.policy", 3, Some("compact")),
            ]
        )
        .await,
        0
    );
    let t = describe_raw(&mut s, 2, "t").await;
    assert_eq!(find(&t, "cleanup.policy").value.as_deref(), Some("delete"));
    assert_eq!(
        alter_broker(&mut s, 2, "sasl.kerberos.min.time.before.relogin", "58000").await,
        0
    );

    // The cleaner's I/O throttle changes without a restart; its thread count does not.
    assert_eq!(
        incremental(
            &mut s,
            4,
            "",
            &[("log.cleaner.io.max.bytes.per.second", 0, Some("1048576"))]
        )
        .await,
        0
    );
    assert_eq!(
        broker.broker().cleaner_config().io_max_bytes_per_second,
        Some(1_048_576)
    );
    assert_eq!(
        incremental(&mut s, 4, "", &[("log.cleaner.threads", 0, Some("2"))]).await,
        42
    );

    // max.connections.per.ip changes without a restart.
    assert_eq!(
        incremental(&mut s, 4, "0", &[("max.connections.per.ip", 0, Some("1"))]).await,
        0
    );
    let mut extra = TcpStream::connect(broker.addr()).await.unwrap();
    assert!(
        super::raw::closed_by_server(&mut extra).await,
        "a second connection from this IP is closed"
    );
    assert_eq!(
        incremental(&mut s, 4, "0", &[("max.connections.per.ip", 1, None)]).await,
        0
    );
    let mut again = TcpStream::connect(broker.addr()).await.unwrap();
    assert_eq!(
        describe_raw(&mut again, 4, "").await.results[0].error_code,
        0
    );

    // Group configs (KIP-848), bounded by the broker's group.consumer.* settings.
    let g = describe_raw(&mut s, 32, "grp").await;
    assert_eq!(
        find(&g, "consumer.session.timeout.ms").value.as_deref(),
        Some("45000")
    );
    assert_eq!(
        incremental(
            &mut s,
            32,
            "grp",
            &[("consumer.session.timeout.ms", 0, Some("50000"))]
        )
        .await,
        0
    );
    assert_eq!(
        incremental(
            &mut s,
            32,
            "grp",
            &[("consumer.session.timeout.ms", 0, Some("1000"))]
        )
        .await,
        40,
        "INVALID_CONFIG below group.consumer.min.session.timeout.ms"
    );
    assert_eq!(
        incremental(
            &mut s,
            32,
            "grp",
            &[("consumer.heartbeat.interval.ms", 0, Some("6000"))]
        )
        .await,
        0
    );
    let g = describe_raw(&mut s, 32, "grp").await;
    let session = find(&g, "consumer.session.timeout.ms");
    assert_eq!(
        (session.value.as_deref(), session.config_source),
        (Some("50000"), 8)
    );

    // The KIP-848 engine uses the group's own heartbeat interval.
    {
        use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
        use kafka_protocol::messages::{
            ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, GroupId, TopicName,
        };
        let hb = ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(name("grp")))
            .with_member_id(name("m1"))
            .with_member_epoch(0)
            .with_rebalance_timeout_ms(10_000)
            .with_subscribed_topic_names(Some(vec![TopicName(name("t"))]))
            .with_topic_partitions(Some(Vec::<TopicPartitions>::new()));
        let r: ConsumerGroupHeartbeatResponse =
            call(&mut s, ApiKey::ConsumerGroupHeartbeat, 1, &hb).await;
        assert_eq!((r.error_code, r.heartbeat_interval_ms), (0, 6000));
    }

    // Everything dynamic survives a restart.
    drop((s, again));
    let broker = broker.restart(BrokerConfig::new(dir.path())).await;
    let mut s = TcpStream::connect(broker.addr()).await.unwrap();
    let t = describe_raw(&mut s, 2, "t").await;
    assert_eq!(find(&t, "retention.ms").value.as_deref(), Some("1000"));
    let g = describe_raw(&mut s, 32, "grp").await;
    assert_eq!(
        find(&g, "consumer.heartbeat.interval.ms").value.as_deref(),
        Some("6000")
    );
    assert_eq!(
        broker.broker().cleaner_config().io_max_bytes_per_second,
        Some(1_048_576),
        "the dynamic throttle is back in force after the restart"
    );
    broker.stop().await;
}
