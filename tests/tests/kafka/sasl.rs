//! SASL on the Kafka listener: librdkafka with each mechanism (PLAIN, SCRAM-SHA-256,
//! SCRAM-SHA-512, OAUTHBEARER with a token signed by a key generated here), refusals with the
//! error librdkafka reports, ACLs applied to the SASL principal, KIP-368 re-authentication,
//! SCRAM over a SASL_SSL listener (certificates made by the test); and
//! the protocol details librdkafka does not exercise (SaslHandshake v0 raw tokens, requests
//! before authentication, session expiry, re-authentication after a password change) over a
//! raw socket.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, MetadataResponse,
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::ClientContext;
use rdkafka::client::OAuthToken;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::ConsumerContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use strom_broker::BrokerConfig;
use strom_broker::acl::{AclBinding, AclOperation, AclPermission, PatternType, ResourceType};
use strom_kafka::sasl::{Mechanism, OAuthBearerConfig, SaslConfig};
use strom_kafka::{KafkaConfig, ListenerConfig, SecurityProtocol};
use strom_tests::TestBroker;
use strom_tests::jwt::Issuer;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::raw::{call, closed_by_server, read_frame};

const BOUND: Duration = Duration::from_secs(90);

/// Errors librdkafka reported through the client context.
#[derive(Clone, Default)]
struct Errors(Arc<Mutex<Vec<(KafkaError, String)>>>);

impl Errors {
    async fn wait_for_auth_failure(&self) -> String {
        for _ in 0..200 {
            let found = self.0.lock().unwrap().iter().find_map(|(e, reason)| {
                matches!(e, KafkaError::Global(RDKafkaErrorCode::Authentication))
                    .then(|| reason.clone())
            });
            if let Some(reason) = found {
                return reason;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "no authentication error reported: {:?}",
            self.0.lock().unwrap()
        );
    }
}

#[derive(Clone, Default)]
struct Ctx {
    errors: Errors,
}

impl ConsumerContext for Ctx {}
impl ConsumerContext for TokenCtx {}

impl ClientContext for Ctx {
    fn error(&self, error: KafkaError, reason: &str) {
        self.errors
            .0
            .lock()
            .unwrap()
            .push((error, reason.to_owned()));
    }
}

/// A context that hands librdkafka a fixed token.
#[derive(Clone)]
struct TokenCtx {
    token: String,
    errors: Errors,
}

impl ClientContext for TokenCtx {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn error(&self, error: KafkaError, reason: &str) {
        self.errors
            .0
            .lock()
            .unwrap()
            .push((error, reason.to_owned()));
    }

    fn generate_oauth_token(
        &self,
        _config: Option<&str>,
    ) -> Result<OAuthToken, Box<dyn std::error::Error>> {
        Ok(OAuthToken {
            token: self.token.clone(),
            principal_name: "alice".to_owned(),
            lifetime_ms: now_ms() + 3_600_000,
        })
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// One SASL_PLAINTEXT listener named `SASL_PLAINTEXT` on a free loopback port.
fn sasl_listener() -> ListenerConfig {
    ListenerConfig {
        name: "SASL_PLAINTEXT".to_owned(),
        security_protocol: SecurityProtocol::SaslPlaintext,
        ..ListenerConfig::plaintext(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
    }
}

fn sasl(mechanisms: &[Mechanism], reauth: Option<Duration>) -> KafkaConfig {
    KafkaConfig {
        listeners: vec![sasl_listener()],
        sasl: Some(SaslConfig {
            mechanisms: mechanisms.to_vec(),
            max_reauth: reauth,
            oauthbearer: None,
        }),
        ..KafkaConfig::default()
    }
}

async fn set_password(broker: &TestBroker, user: &str, password: &str) {
    broker.set_scram_passwords(&[(user, password)]).await;
}

fn client_config(broker: &TestBroker, mechanism: &str, user: &str, password: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", broker.bootstrap())
        .set("security.protocol", "SASL_PLAINTEXT")
        .set("sasl.mechanisms", mechanism)
        .set("sasl.username", user)
        .set("sasl.password", password)
        .set("message.timeout.ms", "10000");
    c
}

/// Produces one record and reads it back with a consumer authenticated the same way.
async fn round_trip<C: ConsumerContext + Clone + 'static>(
    config: &ClientConfig,
    ctx: C,
    topic: &str,
) {
    let producer: FutureProducer<C> = config.create_with_context(ctx.clone()).unwrap();
    let delivered = producer
        .send(
            FutureRecord::to(topic).key("k").payload("hello"),
            Duration::from_secs(10),
        )
        .await;
    let (partition, offset) = match delivered {
        Ok(d) => (d.partition, d.offset),
        Err((e, _)) => panic!("produce failed: {e}"),
    };
    let mut consumer_config = config.clone();
    consumer_config
        .set("group.id", format!("g-{topic}"))
        .set("auto.offset.reset", "earliest");
    let consumer: BaseConsumer<C> = consumer_config.create_with_context(ctx).unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, rdkafka::Offset::Offset(offset))
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let payload = tokio::task::spawn_blocking(move || {
        for _ in 0..100 {
            if let Some(m) = consumer.poll(Duration::from_millis(100)) {
                let m = m.unwrap();
                return rdkafka::Message::payload(&m).map(<[u8]>::to_vec);
            }
        }
        None
    })
    .await
    .unwrap();
    assert_eq!(payload.as_deref(), Some(&b"hello"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_authenticates_with_plain_and_scram() {
    tokio::time::timeout(BOUND, async {
        let dir = tempfile::tempdir().unwrap();
        let kafka = sasl(
            &[
                Mechanism::Plain,
                Mechanism::ScramSha256,
                Mechanism::ScramSha512,
            ],
            None,
        );
        let broker = TestBroker::start_with(BrokerConfig::new(dir.path()), kafka).await;
        set_password(&broker, "alice", "alice-secret").await;
        for (mechanism, topic) in [
            ("PLAIN", "sasl-plain"),
            ("SCRAM-SHA-256", "sasl-scram-256"),
            ("SCRAM-SHA-512", "sasl-scram-512"),
        ] {
            let config = client_config(&broker, mechanism, "alice", "alice-secret");
            round_trip(&config, Ctx::default(), topic).await;
        }
        broker.stop().await;
    })
    .await
    .expect("bounded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_reports_authentication_failure_for_a_wrong_password() {
    tokio::time::timeout(BOUND, async {
        let dir = tempfile::tempdir().unwrap();
        let kafka = sasl(&[Mechanism::Plain, Mechanism::ScramSha256], None);
        let broker = TestBroker::start_with(BrokerConfig::new(dir.path()), kafka).await;
        set_password(&broker, "alice", "right").await;
        for (mechanism, expected) in [
            ("PLAIN", "Invalid username or password"),
            (
                "SCRAM-SHA-256",
                "invalid credentials with SASL mechanism SCRAM-SHA-256",
            ),
        ] {
            let ctx = Ctx::default();
            let config = client_config(&broker, mechanism, "alice", "wrong");
            let producer: FutureProducer<Ctx> = config.create_with_context(ctx.clone()).unwrap();
            let p = producer.clone();
            let _ = tokio::task::spawn_blocking(move || {
                p.client().fetch_metadata(None, Duration::from_secs(3))
            })
            .await;
            let reason = ctx.errors.wait_for_auth_failure().await;
            assert!(reason.contains(expected), "{mechanism}: {reason}");
        }
        // A mechanism the listener does not enable.
        let ctx = Ctx::default();
        let config = client_config(&broker, "SCRAM-SHA-512", "alice", "right");
        let producer: FutureProducer<Ctx> = config.create_with_context(ctx.clone()).unwrap();
        let _ = tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(None, Duration::from_secs(3))
        })
        .await;
        let reason = ctx.errors.wait_for_auth_failure().await;
        assert!(reason.contains("SCRAM-SHA-512"), "{reason}");
        broker.stop().await;
    })
    .await
    .expect("bounded");
}

fn oauth_kafka(issuer: &Issuer) -> KafkaConfig {
    let mut oauth = OAuthBearerConfig::from_jwks_json(issuer.jwks().as_bytes()).unwrap();
    oauth.expected_issuer = Some(strom_tests::jwt::ISSUER.to_owned());
    oauth.expected_audience = Some("strom".to_owned());
    oauth.clock_skew = Duration::from_secs(1);
    KafkaConfig {
        listeners: vec![sasl_listener()],
        sasl: Some(SaslConfig {
            mechanisms: vec![Mechanism::OAuthBearer],
            max_reauth: None,
            oauthbearer: Some(oauth),
        }),
        ..KafkaConfig::default()
    }
}

fn oauth_client(broker: &TestBroker) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", broker.bootstrap())
        .set("security.protocol", "SASL_PLAINTEXT")
        .set("sasl.mechanisms", "OAUTHBEARER")
        .set("message.timeout.ms", "10000");
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_authenticates_with_a_signed_oauthbearer_token_and_expired_ones_are_refused() {
    tokio::time::timeout(BOUND, async {
        let dir = tempfile::tempdir().unwrap();
        let issuer = Issuer::new();
        let broker =
            TestBroker::start_with(BrokerConfig::new(dir.path()), oauth_kafka(&issuer)).await;
        let ctx = TokenCtx {
            token: issuer.token("alice", now_ms() / 1000 + 3600, "strom"),
            errors: Errors::default(),
        };
        round_trip(&oauth_client(&broker), ctx, "sasl-oauth").await;

        let refused = [
            issuer.token("alice", now_ms() / 1000 - 60, "strom"),
            issuer.token("alice", now_ms() / 1000 + 3600, "someone-else"),
            Issuer::new().token("alice", now_ms() / 1000 + 3600, "strom"),
        ];
        for token in refused {
            let ctx = TokenCtx {
                token,
                errors: Errors::default(),
            };
            let producer: FutureProducer<TokenCtx> = oauth_client(&broker)
                .create_with_context(ctx.clone())
                .unwrap();
            let _ = tokio::task::spawn_blocking(move || {
                producer
                    .client()
                    .fetch_metadata(None, Duration::from_secs(3))
            })
            .await;
            let reason = ctx.errors.wait_for_auth_failure().await;
            assert!(reason.contains("invalid_token"), "{reason}");
        }
        broker.stop().await;
    })
    .await
    .expect("bounded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acls_apply_to_the_sasl_principal() {
    tokio::time::timeout(BOUND, async {
        let dir = tempfile::tempdir().unwrap();
        let mut config = BrokerConfig::new(dir.path());
        config.authorizer.enabled = true;
        config.authorizer.super_users = vec!["User:admin".to_owned()];
        let kafka = sasl(&[Mechanism::ScramSha256], None);
        let broker = TestBroker::start_with(config, kafka).await;
        set_password(&broker, "alice", "a").await;
        set_password(&broker, "bob", "b").await;
        set_password(&broker, "admin", "root").await;
        // The admin creates the topic; alice may write and read it, bob may not.
        round_trip(
            &client_config(&broker, "SCRAM-SHA-256", "admin", "root"),
            Ctx::default(),
            "guarded",
        )
        .await;
        let allow = |op| AclBinding {
            resource_type: ResourceType::Topic,
            resource_name: "guarded".to_owned(),
            pattern_type: PatternType::Literal,
            principal: "User:alice".to_owned(),
            host: "*".to_owned(),
            operation: op,
            permission: AclPermission::Allow,
        };
        let mut acls = vec![allow(AclOperation::Write), allow(AclOperation::Read)];
        acls.push(AclBinding {
            resource_type: ResourceType::Group,
            resource_name: "*".to_owned(),
            pattern_type: PatternType::Literal,
            principal: "User:alice".to_owned(),
            host: "*".to_owned(),
            operation: AclOperation::Read,
            permission: AclPermission::Allow,
        });
        broker
            .broker()
            .run_blocking(move |b| b.create_acls_blocking(acls))
            .await
            .unwrap();
        round_trip(
            &client_config(&broker, "SCRAM-SHA-256", "alice", "a"),
            Ctx::default(),
            "guarded",
        )
        .await;
        let producer: FutureProducer<Ctx> = client_config(&broker, "SCRAM-SHA-256", "bob", "b")
            .create_with_context(Ctx::default())
            .unwrap();
        let refused = producer
            .send(
                FutureRecord::to("guarded").key("k").payload("no"),
                Duration::from_secs(10),
            )
            .await;
        match refused {
            Err((KafkaError::MessageProduction(code), _)) => {
                assert_eq!(code, RDKafkaErrorCode::TopicAuthorizationFailed)
            }
            other => panic!("bob's write: {:?}", other.map(|d| d.offset)),
        }
        broker.stop().await;
    })
    .await
    .expect("bounded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_reauthenticates_before_the_session_expires() {
    tokio::time::timeout(BOUND, async {
        let dir = tempfile::tempdir().unwrap();
        let kafka = sasl(&[Mechanism::ScramSha512], Some(Duration::from_secs(2)));
        let broker = TestBroker::start_with(BrokerConfig::new(dir.path()), kafka).await;
        set_password(&broker, "alice", "pw").await;
        let config = client_config(&broker, "SCRAM-SHA-512", "alice", "pw");
        let ctx = Ctx::default();
        let producer: FutureProducer<Ctx> = config.create_with_context(ctx.clone()).unwrap();
        // Seven seconds of produce over a 2 s session: librdkafka re-authenticates (KIP-368)
        // on the same connection, and every send succeeds.
        for i in 0..14 {
            producer
                .send(
                    FutureRecord::to("reauth")
                        .key("k")
                        .payload(&format!("m{i}")),
                    Duration::from_secs(10),
                )
                .await
                .map_err(|(e, _)| e)
                .unwrap();
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let auth_errors = ctx
            .errors
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|(e, _)| matches!(e, KafkaError::Global(RDKafkaErrorCode::Authentication)))
            .count();
        assert_eq!(auth_errors, 0);
        broker.stop().await;
    })
    .await
    .expect("bounded");
}

async fn handshake(stream: &mut TcpStream, version: i16, mechanism: &str) -> SaslHandshakeResponse {
    call(
        stream,
        ApiKey::SaslHandshake,
        version,
        &SaslHandshakeRequest::default()
            .with_mechanism(StrBytes::from_string(mechanism.to_owned())),
    )
    .await
}

async fn authenticate(
    stream: &mut TcpStream,
    version: i16,
    token: &[u8],
) -> SaslAuthenticateResponse {
    call(
        stream,
        ApiKey::SaslAuthenticate,
        version,
        &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::copy_from_slice(token)),
    )
    .await
}

async fn metadata(stream: &mut TcpStream) -> MetadataResponse {
    call(stream, ApiKey::Metadata, 12, &MetadataRequest::default()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_protocol_rules_over_a_raw_socket() {
    tokio::time::timeout(BOUND, async {
        let dir = tempfile::tempdir().unwrap();
        let kafka = sasl(&[Mechanism::Plain], Some(Duration::from_millis(1500)));
        let broker = TestBroker::start_with(BrokerConfig::new(dir.path()), kafka).await;
        set_password(&broker, "alice", "old").await;

        // ApiVersions is served before authentication, anything else closes the connection.
        let mut s = TcpStream::connect(broker.addr()).await.unwrap();
        let v: ApiVersionsResponse = call(
            &mut s,
            ApiKey::ApiVersions,
            3,
            &ApiVersionsRequest::default()
                .with_client_software_name(StrBytes::from_static_str("raw"))
                .with_client_software_version(StrBytes::from_static_str("1")),
        )
        .await;
        assert!(
            v.api_keys
                .iter()
                .any(|k| k.api_key == ApiKey::SaslAuthenticate as i16 && k.max_version == 2)
        );
        s.write_all(&super::raw::frame(
            ApiKey::Metadata,
            12,
            1,
            &MetadataRequest::default(),
        ))
        .await
        .unwrap();
        assert!(closed_by_server(&mut s).await);

        // An unknown mechanism: UNSUPPORTED_SASL_MECHANISM with the enabled list, then closed.
        let mut s = TcpStream::connect(broker.addr()).await.unwrap();
        let r = handshake(&mut s, 1, "GSSAPI").await;
        assert_eq!(r.error_code, ResponseError::UnsupportedSaslMechanism.code());
        assert_eq!(r.mechanisms, vec![StrBytes::from_static_str("PLAIN")]);
        assert!(closed_by_server(&mut s).await);

        // SaslAuthenticate before SaslHandshake: ILLEGAL_SASL_STATE.
        let mut s = TcpStream::connect(broker.addr()).await.unwrap();
        let r = authenticate(&mut s, 1, b"\0alice\0old").await;
        assert_eq!(r.error_code, ResponseError::IllegalSaslState.code());

        // Wrong password: SASL_AUTHENTICATION_FAILED with a message, then closed.
        let mut s = TcpStream::connect(broker.addr()).await.unwrap();
        assert_eq!(handshake(&mut s, 1, "PLAIN").await.error_code, 0);
        let r = authenticate(&mut s, 2, b"\0alice\0nope").await;
        assert_eq!(r.error_code, ResponseError::SaslAuthenticationFailed.code());
        assert_eq!(
            r.error_message.as_deref(),
            Some("Authentication failed: Invalid username or password")
        );
        assert!(closed_by_server(&mut s).await);

        // SaslHandshake v0: the token goes raw, the answer comes raw, then Kafka requests.
        let mut s = TcpStream::connect(broker.addr()).await.unwrap();
        assert_eq!(handshake(&mut s, 0, "PLAIN").await.error_code, 0);
        let token = b"\0alice\0old";
        let mut raw = (token.len() as u32).to_be_bytes().to_vec();
        raw.extend_from_slice(token);
        s.write_all(&raw).await.unwrap();
        assert_eq!(read_frame(&mut s).await.as_deref(), Some(&b""[..]));
        assert!(metadata(&mut s).await.brokers.len() == 1);
        // A v0 session has no way to learn its lifetime; it ends all the same.
        tokio::time::sleep(Duration::from_millis(1700)).await;
        s.write_all(&super::raw::frame(
            ApiKey::Metadata,
            12,
            1,
            &MetadataRequest::default(),
        ))
        .await
        .unwrap();
        assert!(closed_by_server(&mut s).await);

        // v1: session_lifetime_ms; re-authentication renews it; after a password change the
        // old password fails the re-authentication and the connection closes.
        let mut s = TcpStream::connect(broker.addr()).await.unwrap();
        assert_eq!(handshake(&mut s, 1, "PLAIN").await.error_code, 0);
        let r = authenticate(&mut s, 1, b"\0alice\0old").await;
        assert_eq!(r.error_code, 0);
        assert_eq!(r.session_lifetime_ms, 1500);
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert_eq!(handshake(&mut s, 1, "PLAIN").await.error_code, 0);
        assert_eq!(authenticate(&mut s, 1, b"\0alice\0old").await.error_code, 0);
        tokio::time::sleep(Duration::from_millis(1000)).await;
        metadata(&mut s).await; // 2 s after the first authentication: renewed, still open
        set_password(&broker, "alice", "new").await;
        assert_eq!(handshake(&mut s, 1, "PLAIN").await.error_code, 0);
        let r = authenticate(&mut s, 1, b"\0alice\0old").await;
        assert_eq!(r.error_code, ResponseError::SaslAuthenticationFailed.code());
        assert!(closed_by_server(&mut s).await);

        // A session that is not renewed: the next request closes the connection.
        let mut s = TcpStream::connect(broker.addr()).await.unwrap();
        assert_eq!(handshake(&mut s, 1, "PLAIN").await.error_code, 0);
        assert_eq!(authenticate(&mut s, 1, b"\0alice\0new").await.error_code, 0);
        metadata(&mut s).await;
        tokio::time::sleep(Duration::from_millis(1700)).await;
        s.write_all(&super::raw::frame(
            ApiKey::Metadata,
            12,
            1,
            &MetadataRequest::default(),
        ))
        .await
        .unwrap();
        assert!(closed_by_server(&mut s).await);
        broker.stop().await;
    })
    .await
    .expect("bounded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_apis_on_a_listener_without_sasl_are_illegal_state() {
    tokio::time::timeout(BOUND, async {
        let dir = tempfile::tempdir().unwrap();
        // SASL is configured, for the SASL_PLAINTEXT listener only.
        let mut kafka = sasl(&[Mechanism::Plain], None);
        kafka.listeners.insert(
            0,
            ListenerConfig::plaintext(std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
        );
        let broker = TestBroker::start_with(BrokerConfig::new(dir.path()), kafka).await;
        let mut s = TcpStream::connect(broker.listener_addr("PLAINTEXT"))
            .await
            .unwrap();
        let r = handshake(&mut s, 1, "PLAIN").await;
        assert_eq!(r.error_code, ResponseError::IllegalSaslState.code());
        let r = authenticate(&mut s, 2, b"\0a\0b").await;
        assert_eq!(r.error_code, ResponseError::IllegalSaslState.code());
        // The connection is still usable, unauthenticated.
        assert_eq!(metadata(&mut s).await.brokers.len(), 1);
        // The SASL listener of the same broker closes a connection that skips SASL.
        let mut s = TcpStream::connect(broker.listener_addr("SASL_PLAINTEXT"))
            .await
            .unwrap();
        s.write_all(&super::raw::frame(
            ApiKey::Metadata,
            12,
            1,
            &MetadataRequest::default(),
        ))
        .await
        .unwrap();
        assert!(closed_by_server(&mut s).await);
        broker.stop().await;
    })
    .await
    .expect("bounded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_client_authenticates_with_plain_and_scram() {
    use strom_kafka::client::sasl::SaslCredentials;
    use strom_kafka::client::{Client, ClientError};
    tokio::time::timeout(BOUND, async {
        let dir = tempfile::tempdir().unwrap();
        let kafka = sasl(
            &[
                Mechanism::Plain,
                Mechanism::ScramSha256,
                Mechanism::ScramSha512,
            ],
            None,
        );
        let broker = TestBroker::start_with(BrokerConfig::new(dir.path()), kafka).await;
        set_password(&broker, "op", "op-pw").await;
        let creds = |mechanism, password: &str| SaslCredentials {
            mechanism,
            username: "op".to_owned(),
            password: password.to_owned(),
        };
        for m in [
            Mechanism::Plain,
            Mechanism::ScramSha256,
            Mechanism::ScramSha512,
        ] {
            let mut c = Client::connect_with(&broker.bootstrap(), Some(&creds(m, "op-pw")))
                .await
                .unwrap();
            c.topics(None).await.unwrap();
            match Client::connect_with(&broker.bootstrap(), Some(&creds(m, "nope"))).await {
                Err(ClientError::Kafka { error, .. }) => {
                    assert_eq!(error, ResponseError::SaslAuthenticationFailed, "{m}")
                }
                other => panic!("{m}: {:?}", other.map(|_| ())),
            }
        }
        // A group member's own connection to the coordinator authenticates as well.
        let mut c = Client::connect_with(
            &broker.bootstrap(),
            Some(&creds(Mechanism::ScramSha256, "op-pw")),
        )
        .await
        .unwrap();
        c.create_topic("cli-sasl", 1, &Default::default())
            .await
            .unwrap();
        let mut member = strom_kafka::client::group::GroupMember::connect(
            &mut c,
            &broker.bootstrap(),
            "cli-group",
            vec!["cli-sasl".to_owned()],
            strom_kafka::client::group::MemberTimeouts::default(),
        )
        .await
        .unwrap();
        member
            .join(&std::collections::BTreeMap::from([(
                "cli-sasl".to_owned(),
                1,
            )]))
            .await
            .unwrap();
        member.leave().await.unwrap();
        // Without credentials the listener closes the connection at the first request.
        let mut c = Client::connect(&broker.bootstrap()).await.unwrap();
        assert!(c.topics(None).await.is_err());
        broker.stop().await;
    })
    .await
    .expect("bounded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_authenticates_with_scram_over_a_sasl_ssl_listener() {
    use strom_tests::tls::TestCa;
    use strom_tls::{ClientAuth, TlsFiles, TlsServer};
    tokio::time::timeout(BOUND, async {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new("Strom Test CA");
        let ca_pem = ca.write_cert(&dir.path().join("ca.pem"));
        let server = ca.server(dir.path(), "server", "localhost");
        let tls = TlsServer::load(
            TlsFiles {
                cert_chain: server.cert,
                private_key: server.key,
                client_ca: None,
                client_auth: ClientAuth::None,
            },
            Vec::new(),
        )
        .unwrap();
        let mut kafka = sasl(&[Mechanism::ScramSha512], None);
        kafka.listeners = vec![ListenerConfig {
            name: "SASL_SSL".to_owned(),
            security_protocol: SecurityProtocol::SaslSsl,
            tls: Some(tls),
            ..sasl_listener()
        }];
        let broker =
            TestBroker::start_with(BrokerConfig::new(dir.path().join("data")), kafka).await;
        set_password(&broker, "alice", "alice-secret").await;
        let ssl = |password: &str| {
            let mut c = client_config(&broker, "SCRAM-SHA-512", "alice", password);
            c.set("security.protocol", "SASL_SSL")
                .set("ssl.ca.location", ca_pem.to_str().unwrap())
                .set("ssl.endpoint.identification.algorithm", "https");
            c
        };
        round_trip(&ssl("alice-secret"), Ctx::default(), "sasl-ssl").await;

        // A wrong password over TLS is still SASL_AUTHENTICATION_FAILED.
        let ctx = Ctx::default();
        let producer: FutureProducer<Ctx> = ssl("wrong").create_with_context(ctx.clone()).unwrap();
        let _ = tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(None, Duration::from_secs(3))
        })
        .await;
        let reason = ctx.errors.wait_for_auth_failure().await;
        assert!(
            reason.contains("invalid credentials with SASL mechanism SCRAM-SHA-512"),
            "{reason}"
        );

        // A SASL_PLAINTEXT client gets nothing from the TLS port.
        let mut plain = client_config(&broker, "SCRAM-SHA-512", "alice", "alice-secret");
        plain.set("socket.timeout.ms", "3000");
        let consumer: BaseConsumer = plain.create().unwrap();
        let listed = tokio::task::spawn_blocking(move || {
            consumer
                .fetch_metadata(None, Duration::from_secs(3))
                .map(|m| m.brokers().len())
        })
        .await
        .unwrap();
        assert!(
            listed.is_err(),
            "SASL_PLAINTEXT metadata over TLS: {listed:?}"
        );
        broker.stop().await;
    })
    .await
    .expect("bounded");
}
