//! SigV4 authentication through aws-sdk-kinesis: a configured key works, a wrong secret and an
//! unknown key are refused with AWS's exceptions, and shard iterators cannot be forged;
//! requests presigned by the AWS signing library (aws-sigv4) work until they expire; a
//! temporary key needs its session token and is refused after its expiry; ListStreams lists
//! only what the principal may DESCRIBE.

use std::time::{Duration, SystemTime};

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::config::Credentials;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{ShardIteratorType, StartingPosition, SubscribeToShardEventStream};
use base64::Engine as _;
use strom_broker::BrokerConfig;
use strom_broker::acl::{AclBinding, AclOperation, AclPermission, PatternType, ResourceType};
use strom_kinesis::KinesisConfig;
use strom_kinesis::sigv4::{AccessKey, KinesisAuth};

use super::harness::{Both, WAIT, code, create_stream, signed_client};

fn client_with(endpoint: &str, id: &str, secret: &str) -> Client {
    signed_client(endpoint, id, secret, None)
}

fn signed_config() -> KinesisConfig {
    KinesisConfig {
        auth: KinesisAuth::SigV4(vec![
            AccessKey {
                id: "AKIDALICE".into(),
                secret: "alice-secret".into(),
                principal: "User:alice".into(),
                ..AccessKey::default()
            },
            AccessKey {
                id: "AKIDBOB".into(),
                secret: "bob-secret".into(),
                principal: "User:bob".into(),
                ..AccessKey::default()
            },
            AccessKey {
                id: "AKIDCAROL".into(),
                secret: "carol-secret".into(),
                principal: "User:carol".into(),
                ..AccessKey::default()
            },
            AccessKey {
                id: "ASIATEMP".into(),
                secret: "temp-secret".into(),
                principal: "User:alice".into(),
                session_token: Some("session-token-1".into()),
                expires_at_ms: Some(now_ms() + 3_600_000),
            },
            AccessKey {
                id: "ASIAOLD".into(),
                secret: "old-secret".into(),
                principal: "User:alice".into(),
                session_token: Some("session-token-0".into()),
                expires_at_ms: Some(now_ms() - 1000),
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

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A ListStreams request presigned by the AWS signing library: the signature in the query
/// string, valid `expires` from `time`. The path with its query and the headers to send.
fn presign_list_streams(
    endpoint: std::net::SocketAddr,
    key: (&str, &str, Option<&str>),
    time: SystemTime,
    expires: Duration,
    body: &[u8],
) -> (String, Vec<(String, String)>) {
    use aws_sigv4::http_request::{
        SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
    };
    use aws_sigv4::sign::v4;
    let identity = Credentials::new(key.0, key.1, key.2.map(str::to_owned), None, "test").into();
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(expires);
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("kinesis")
        .time(time)
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let headers = vec![
        ("host".to_owned(), endpoint.to_string()),
        (
            "x-amz-target".to_owned(),
            "Kinesis_20131202.ListStreams".to_owned(),
        ),
        (
            "content-type".to_owned(),
            "application/x-amz-json-1.1".to_owned(),
        ),
    ];
    let url = format!("http://{endpoint}/");
    let signable = SignableRequest::new(
        "POST",
        &url,
        headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SignableBody::Bytes(body),
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    let mut request = http::Request::builder()
        .method("POST")
        .uri(&url)
        .body(())
        .unwrap();
    instructions.apply_to_request_http1x(&mut request);
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap();
    assert!(path.contains("X-Amz-Signature="), "presigned: {path}");
    (path, headers)
}

/// Sends one HTTP/1.1 request over a new connection; the status and the body.
async fn post_raw(
    addr: std::net::SocketAddr,
    path: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut head = format!("POST {path} HTTP/1.1\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    ));
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(body).await.unwrap();
    let mut response = Vec::new();
    conn.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text}"));
    let body = text
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_owned());
    (status, body)
}

/// The `__type` of an error body, or the whole body.
fn error_type(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("__type").and_then(|t| t.as_str()).map(str::to_owned))
        .unwrap_or_else(|| body.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presigned_requests_work_until_they_expire() {
    let dir = tempfile::tempdir().unwrap();
    let both = Both::start_with(dir.path(), signed_config()).await;
    let run = async {
        let alice = client_with(&both.endpoint(), "AKIDALICE", "alice-secret");
        create_stream(&alice, "presigned", 1).await;
        let alice_key = ("AKIDALICE", "alice-secret", None);
        let minute = Duration::from_secs(60);

        let (path, headers) =
            presign_list_streams(both.kinesis, alice_key, SystemTime::now(), minute, b"{}");
        let (status, body) = post_raw(both.kinesis, &path, &headers, b"{}").await;
        assert_eq!(status, 200, "{body}");
        let listed: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(listed["StreamNames"], serde_json::json!(["presigned"]));

        // Another body than the one signed.
        let (status, body) = post_raw(both.kinesis, &path, &headers, b"{\"Limit\":1}").await;
        assert_eq!(
            (status, error_type(&body).as_str()),
            (400, "InvalidSignatureException")
        );
        // Signed ten minutes ago for one minute: expired.
        let ago = SystemTime::now() - Duration::from_secs(600);
        let (path, headers) = presign_list_streams(both.kinesis, alice_key, ago, minute, b"{}");
        let (status, body) = post_raw(both.kinesis, &path, &headers, b"{}").await;
        assert_eq!(
            (status, error_type(&body).as_str()),
            (400, "InvalidSignatureException")
        );
        assert!(body.contains("expired"), "{body}");
        // ... for an hour: still valid.
        let hour = Duration::from_secs(3600);
        let (path, headers) = presign_list_streams(both.kinesis, alice_key, ago, hour, b"{}");
        assert_eq!(post_raw(both.kinesis, &path, &headers, b"{}").await.0, 200);
        // A wrong secret.
        let (path, headers) = presign_list_streams(
            both.kinesis,
            ("AKIDALICE", "guess", None),
            SystemTime::now(),
            minute,
            b"{}",
        );
        let (_, body) = post_raw(both.kinesis, &path, &headers, b"{}").await;
        assert_eq!(error_type(&body), "InvalidSignatureException");
        // A temporary key's token travels in the query string.
        let temp = ("ASIATEMP", "temp-secret", Some("session-token-1"));
        let (path, headers) =
            presign_list_streams(both.kinesis, temp, SystemTime::now(), minute, b"{}");
        assert!(path.contains("X-Amz-Security-Token="), "{path}");
        assert_eq!(post_raw(both.kinesis, &path, &headers, b"{}").await.0, 200);
        let temp = ("ASIATEMP", "temp-secret", Some("session-token-2"));
        let (path, headers) =
            presign_list_streams(both.kinesis, temp, SystemTime::now(), minute, b"{}");
        let (_, body) = post_raw(both.kinesis, &path, &headers, b"{}").await;
        assert_eq!(error_type(&body), "UnrecognizedClientException");
    };
    tokio::time::timeout(WAIT, run).await.expect("bounded");
    both.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporary_keys_need_their_session_token_until_they_expire() {
    let dir = tempfile::tempdir().unwrap();
    let both = Both::start_with(dir.path(), signed_config()).await;
    let run = async {
        let endpoint = both.endpoint();
        let temp = signed_client(
            &endpoint,
            "ASIATEMP",
            "temp-secret",
            Some("session-token-1"),
        );
        create_stream(&temp, "temporary", 1).await;
        temp.put_record()
            .stream_name("temporary")
            .partition_key("k")
            .data(Blob::new(&b"with a token"[..]))
            .send()
            .await
            .unwrap();
        let no_token = signed_client(&endpoint, "ASIATEMP", "temp-secret", None);
        let err = no_token.list_streams().send().await.unwrap_err();
        assert_eq!(code(&err), "UnrecognizedClientException");
        let wrong = signed_client(
            &endpoint,
            "ASIATEMP",
            "temp-secret",
            Some("session-token-0"),
        );
        let err = wrong.list_streams().send().await.unwrap_err();
        assert_eq!(code(&err), "UnrecognizedClientException");
        let expired = signed_client(&endpoint, "ASIAOLD", "old-secret", Some("session-token-0"));
        let err = expired.list_streams().send().await.unwrap_err();
        assert_eq!(code(&err), "ExpiredTokenException");
        // A permanent key with a session token: refused too.
        let permanent = signed_client(&endpoint, "AKIDALICE", "alice-secret", Some("x"));
        let err = permanent.list_streams().send().await.unwrap_err();
        assert_eq!(code(&err), "UnrecognizedClientException");
    };
    tokio::time::timeout(WAIT, run).await.expect("bounded");
    both.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_streams_shows_only_what_the_principal_may_describe() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = BrokerConfig::new(dir.path());
    broker.authorizer.enabled = true;
    broker.authorizer.super_users = vec!["User:alice".to_owned()];
    let both = Both::start_with_broker(broker, signed_config()).await;
    let acl = |name: &str, pattern: PatternType, principal: &str, op: AclOperation| AclBinding {
        resource_type: ResourceType::Topic,
        resource_name: name.to_owned(),
        pattern_type: pattern,
        principal: principal.to_owned(),
        host: "*".to_owned(),
        operation: op,
        permission: AclPermission::Allow,
    };
    both.broker
        .broker()
        .create_acls_blocking(vec![
            acl(
                "s1",
                PatternType::Literal,
                "User:bob",
                AclOperation::Describe,
            ),
            // READ implies DESCRIBE, as in Kafka.
            acl("s3", PatternType::Literal, "User:bob", AclOperation::Read),
        ])
        .unwrap();
    let run = async {
        let endpoint = both.endpoint();
        let alice = client_with(&endpoint, "AKIDALICE", "alice-secret");
        for name in ["s1", "s2", "s3", "s4"] {
            create_stream(&alice, name, 1).await;
        }
        let names = |c: Client, limit: Option<i32>| async move {
            let mut all = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let page = c
                    .list_streams()
                    .set_limit(limit)
                    .set_next_token(token.clone())
                    .send()
                    .await
                    .unwrap();
                all.extend(page.stream_names().iter().cloned());
                let summaries: Vec<&str> = page
                    .stream_summaries()
                    .iter()
                    .map(|s| s.stream_name())
                    .collect();
                assert_eq!(summaries, page.stream_names(), "summaries match the names");
                if !page.has_more_streams() {
                    break;
                }
                token = page.next_token().map(str::to_owned);
                assert!(token.is_some(), "more streams without a NextToken");
            }
            all
        };
        assert_eq!(names(alice.clone(), None).await, ["s1", "s2", "s3", "s4"]);
        let bob = client_with(&endpoint, "AKIDBOB", "bob-secret");
        assert_eq!(names(bob.clone(), None).await, ["s1", "s3"]);
        assert_eq!(names(bob.clone(), Some(1)).await, ["s1", "s3"]);
        let carol = client_with(&endpoint, "AKIDCAROL", "carol-secret");
        assert!(names(carol.clone(), None).await.is_empty());

        // ListStreamConsumers names its stream: DESCRIBE on it is needed.
        let arn = "arn:aws:kinesis:us-east-1:000000000000:stream/s1";
        alice
            .register_stream_consumer()
            .stream_arn(arn)
            .consumer_name("efo")
            .send()
            .await
            .unwrap();
        let consumers = bob
            .list_stream_consumers()
            .stream_arn(arn)
            .send()
            .await
            .unwrap();
        assert_eq!(consumers.consumers().len(), 1);
        let err = carol
            .list_stream_consumers()
            .stream_arn(arn)
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&err), "AccessDeniedException");
        let err = bob
            .list_stream_consumers()
            .stream_arn("arn:aws:kinesis:us-east-1:000000000000:stream/s2")
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&err), "AccessDeniedException");
    };
    tokio::time::timeout(WAIT, run).await.expect("bounded");
    both.stop().await;
}
