//! SigV4 authentication through aws-sdk-kinesis: a configured key works, a wrong secret and an
//! unknown key are refused with AWS's exceptions, and shard iterators cannot be forged.

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::config::retry::RetryConfig;
use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{ShardIteratorType, StartingPosition, SubscribeToShardEventStream};
use base64::Engine as _;
use strom_broker::BrokerConfig;
use strom_broker::acl::{AclBinding, AclOperation, AclPermission, PatternType, ResourceType};
use strom_kinesis::KinesisConfig;
use strom_kinesis::sigv4::{AccessKey, KinesisAuth};

use super::harness::{Both, WAIT, code};

fn client_with(endpoint: &str, id: &str, secret: &str) -> Client {
    let config = aws_sdk_kinesis::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(id, secret, None, None, "static"))
        .endpoint_url(endpoint)
        .retry_config(RetryConfig::disabled())
        .build();
    Client::from_conf(config)
}

fn signed_config() -> KinesisConfig {
    KinesisConfig {
        auth: KinesisAuth::SigV4(vec![
            AccessKey {
                id: "AKIDALICE".into(),
                secret: "alice-secret".into(),
                principal: "User:alice".into(),
            },
            AccessKey {
                id: "AKIDBOB".into(),
                secret: "bob-secret".into(),
                principal: "User:bob".into(),
            },
        ]),
        ..KinesisConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_key_works_and_others_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let both = Both::start_with(dir.path(), signed_config()).await;
    let run = async {
        let k = client_with(&both.endpoint(), "AKIDALICE", "alice-secret");
        k.create_stream()
            .stream_name("s")
            .shard_count(1)
            .send()
            .await
            .unwrap();
        k.put_record()
            .stream_name("s")
            .partition_key("k")
            .data(Blob::new(&b"hello"[..]))
            .send()
            .await
            .unwrap();
        let it = k
            .get_shard_iterator()
            .stream_name("s")
            .shard_id("shardId-000000000000")
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap()
            .shard_iterator()
            .unwrap()
            .to_owned();
        let page = k.get_records().shard_iterator(&it).send().await.unwrap();
        assert_eq!(page.records().len(), 1);
        assert_eq!(page.records()[0].data().as_ref(), b"hello");

        // A tampered iterator (one byte of the offset changed) is refused.
        let mut raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&it)
            .unwrap();
        raw[28] ^= 1;
        let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
        let err = k
            .get_records()
            .shard_iterator(forged)
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&err), "InvalidArgumentException");

        let wrong = client_with(&both.endpoint(), "AKIDALICE", "not-the-secret");
        let err = wrong.list_streams().send().await.unwrap_err();
        assert_eq!(code(&err), "InvalidSignatureException");
        let err = wrong
            .put_record()
            .stream_name("s")
            .partition_key("k")
            .data(Blob::new(&b"intruder"[..]))
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&err), "InvalidSignatureException");

        let unknown = client_with(&both.endpoint(), "AKIDMALLORY", "alice-secret");
        let err = unknown.list_streams().send().await.unwrap_err();
        assert_eq!(code(&err), "UnrecognizedClientException");

        // Nothing the refused clients sent was written.
        let page = k.get_records().shard_iterator(&it).send().await.unwrap();
        assert_eq!(page.records().len(), 1);
    };
    tokio::time::timeout(WAIT, run).await.expect("bounded");
    both.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iterators_survive_a_restart_on_the_same_data_dir_and_not_another() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = tempfile::tempdir().unwrap();
    let config = || KinesisConfig {
        iterator_secret_file: Some(secrets.path().join("key")),
        ..KinesisConfig::default()
    };
    let both = Both::start_with(dir.path(), config()).await;
    let k = both.client();
    let it = tokio::time::timeout(WAIT, async {
        k.create_stream()
            .stream_name("s")
            .shard_count(1)
            .send()
            .await
            .unwrap();
        k.get_shard_iterator()
            .stream_name("s")
            .shard_id("shardId-000000000000")
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap()
            .shard_iterator()
            .unwrap()
            .to_owned()
    })
    .await
    .expect("bounded");
    both.stop().await;

    let both = Both::start_with(dir.path(), config()).await;
    let k = both.client();
    tokio::time::timeout(WAIT, k.get_records().shard_iterator(&it).send())
        .await
        .expect("bounded")
        .unwrap();
    both.stop().await;

    // Another secret directory: another key, the token is not this server's.
    let other = tempfile::tempdir().unwrap();
    let both = Both::start_with(
        dir.path(),
        KinesisConfig {
            iterator_secret_file: Some(other.path().join("key")),
            ..KinesisConfig::default()
        },
    )
    .await;
    let k = both.client();
    let err = tokio::time::timeout(WAIT, k.get_records().shard_iterator(&it).send())
        .await
        .expect("bounded")
        .unwrap_err();
    assert_eq!(code(&err), "InvalidArgumentException");
    both.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_acls_govern_kinesis_operations() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = BrokerConfig::new(dir.path());
    broker.authorizer.enabled = true;
    let both = Both::start_with_broker(broker, signed_config()).await;
    let allow = |principal: &str, op: AclOperation| AclBinding {
        resource_type: ResourceType::Topic,
        resource_name: "s".to_owned(),
        pattern_type: PatternType::Literal,
        principal: principal.to_owned(),
        host: "*".to_owned(),
        operation: op,
        permission: AclPermission::Allow,
    };
    both.broker
        .broker()
        .create_acls_blocking(vec![
            allow("User:alice", AclOperation::All),
            allow("User:bob", AclOperation::Describe),
        ])
        .unwrap();
    let run = async {
        let alice = client_with(&both.endpoint(), "AKIDALICE", "alice-secret");
        let bob = client_with(&both.endpoint(), "AKIDBOB", "bob-secret");
        let err = bob
            .create_stream()
            .stream_name("s")
            .shard_count(1)
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&err), "AccessDeniedException");
        alice
            .create_stream()
            .stream_name("s")
            .shard_count(1)
            .send()
            .await
            .unwrap();
        alice
            .put_record()
            .stream_name("s")
            .partition_key("k")
            .data(Blob::new(&b"a"[..]))
            .send()
            .await
            .unwrap();
        // DESCRIBE is allowed to bob, WRITE and READ are not.
        bob.describe_stream_summary()
            .stream_name("s")
            .send()
            .await
            .unwrap();
        let err = bob
            .put_record()
            .stream_name("s")
            .partition_key("k")
            .data(Blob::new(&b"b"[..]))
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&err), "AccessDeniedException");
        let err = bob
            .get_shard_iterator()
            .stream_name("s")
            .shard_id("shardId-000000000000")
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&err), "AccessDeniedException");
        let it = alice
            .get_shard_iterator()
            .stream_name("s")
            .shard_id("shardId-000000000000")
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap()
            .shard_iterator()
            .unwrap()
            .to_owned();
        // An iterator names its stream: bob cannot read with alice's.
        let err = bob
            .get_records()
            .shard_iterator(&it)
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&err), "AccessDeniedException");
        let page = alice
            .get_records()
            .shard_iterator(&it)
            .send()
            .await
            .unwrap();
        assert_eq!(page.records().len(), 1);
        // Enhanced fan-out, signed: alice registers and subscribes, bob may not subscribe.
        let consumer_arn = alice
            .register_stream_consumer()
            .stream_arn("arn:aws:kinesis:us-east-1:000000000000:stream/s")
            .consumer_name("efo")
            .send()
            .await
            .unwrap()
            .consumer()
            .unwrap()
            .consumer_arn()
            .to_owned();
        let start = StartingPosition::builder()
            .r#type(ShardIteratorType::TrimHorizon)
            .build()
            .unwrap();
        let mut events = alice
            .subscribe_to_shard()
            .consumer_arn(&consumer_arn)
            .shard_id("shardId-000000000000")
            .starting_position(start.clone())
            .send()
            .await
            .unwrap();
        let first = events.event_stream.recv().await.unwrap().unwrap();
        let SubscribeToShardEventStream::SubscribeToShardEvent(event) = first else {
            panic!("not a records event: {first:?}");
        };
        assert_eq!(event.records().len(), 1);
        drop(events);
        let err = bob
            .subscribe_to_shard()
            .consumer_arn(&consumer_arn)
            .shard_id("shardId-000000000000")
            .starting_position(start)
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&err), "AccessDeniedException");
        let err = bob
            .delete_stream()
            .stream_name("s")
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&err), "AccessDeniedException");
    };
    tokio::time::timeout(WAIT, run).await.expect("bounded");
    both.stop().await;
}
